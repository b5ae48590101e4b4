#!/usr/bin/env bash
# Builds the native benchmark harness (bench/cuda/harness.cu + native/cuda/*.cu) with nvcc into
# build/bench/harness (the binary alone; objects in build/bench-obj/): sm_80, sm_90a and sm_90 machine
# code + compute_90 PTX (the addon's CMAKE_CUDA_ARCHITECTURES "80-real;90a-real;90"), -O3, cudart
# linked statically (it needs only the driver), -lineinfo for ncu. Needs no GPU, so it runs here and
# the binary (about 6 MB) travels to the GPU machine (bench/cuda/README.md).
#
#   bash bench/cuda/build.sh     # NVCC=/path/to/nvcc; GPU_ARCHS="90" (CMake's notation) for one target
set -euo pipefail
cd "$(dirname "$0")/../.."
NVCC=${NVCC:-$(command -v nvcc || echo /usr/local/cuda/bin/nvcc)}
OUT=build/bench
OBJ=build/bench-obj
mkdir -p "$OUT" "$OBJ"

# gencode: every unit but the wgmma ones (no sm_90a); wg_gencode: lmhead.cu and thr.cu, whose plain 90
# keeps only its PTX where sm_90a is built (CMakeLists.txt, gk_cuda_wgmma: a 9.0 device must take the
# sm_90a code).
gencode=()
wg_gencode=()
sm90a=()
for a in ${GPU_ARCHS:-80-real 90a-real 90}; do
  case $a in 90a*) sm90a=(-DGK_BUILT_SM90A=1) ;; esac
done
for a in ${GPU_ARCHS:-80-real 90a-real 90}; do
  case $a in
    90a*) wg_gencode+=("-gencode=arch=compute_90a,code=sm_90a") ;;
    *-real)
      gencode+=("-gencode=arch=compute_${a%-real},code=sm_${a%-real}")
      [ "$a" = 90-real ] && [ ${#sm90a[@]} -gt 0 ] || wg_gencode+=("-gencode=arch=compute_${a%-real},code=sm_${a%-real}")
      ;;
    *)
      gencode+=("-gencode=arch=compute_$a,code=[sm_$a,compute_$a]")
      if [ "$a" = 90 ] && [ ${#sm90a[@]} -gt 0 ]; then
        wg_gencode+=("-gencode=arch=compute_90,code=compute_90")
      else
        wg_gencode+=("-gencode=arch=compute_$a,code=[sm_$a,compute_$a]")
      fi
      ;;
  esac
done
version="$(node -p "require('./package.json').version" 2>/dev/null || echo unknown)"
version="$version+$(git rev-parse --short HEAD 2>/dev/null || echo nogit)"
[ -z "$(git status --porcelain -- native bench/cuda 2>/dev/null)" ] || version="$version-dirty"
flags=(-std=c++17 -O3 -DNDEBUG -lineinfo --expt-relaxed-constexpr "${sm90a[@]}" -Inative/cuda
  "-DGK_HARNESS_VERSION=\"$version\"")

# Every unit in parallel (about 12 s in all on 2 cores for both architectures).
srcs=(bench/cuda/harness.cu native/cuda/*.cu)
pids=()
for s in "${srcs[@]}"; do
  o="$OBJ/$(basename "${s%.cu}").o"
  case $s in
    */lmhead.cu | */thr.cu) gc=("${wg_gencode[@]}") ;;
    *) gc=("${gencode[@]}") ;;
  esac
  "$NVCC" "${flags[@]}" "${gc[@]}" -c "$s" -o "$o" &
  pids+=($!)
done
rc=0
for p in "${pids[@]}"; do wait "$p" || rc=1; done
((rc == 0)) || { echo "bench/cuda/build.sh: nvcc failed (messages above)" >&2; exit 1; }
objs=()
for s in "${srcs[@]}"; do objs+=("$OBJ/$(basename "${s%.cu}").o"); done
"$NVCC" "${gencode[@]}" "${wg_gencode[@]}" --cudart static -o "$OUT/harness" "${objs[@]}"
echo "built $OUT/harness ($version; archs ${GPU_ARCHS:-80-real 90a-real 90})"
