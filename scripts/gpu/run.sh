#!/usr/bin/env bash
# Runs on a lent GPU machine (H100/H200) in one call of at most ~8 minutes (see scripts/gpu/pack.sh):
#   carry: [".device"], command: "bash scripts/gpu/run.sh", timeout_s: 560
# Steps, most important first, each time-boxed so the whole call ends by DEADLINE_S (default 500 s):
#   1. unpack node, node_modules and dist from .device/; load the carried addon (built with nvcc
#      here), or build it there (sm_90) if it does not load;
#   2. the cuda tests against the cpu reference (none may skip);
#   3. the goal sizes on cuda (scripts/gpu/goals.mjs) and PyTorch at the same sizes, same card;
#   4. the webgpu tests and the webgpu logprobs goal on the NVIDIA Vulkan driver through Dawn;
#   5. compute-sanitizer memcheck and racecheck over the "vs cpu" cuda tests;
#   6. ncu: GPU-side kernel times and DRAM throughput of advantages, logprobs (4096 rows) and THR.
# Logs and JSON land in $LOGS, bundled at the end into $OUT/logs.tar.xz (the device tool brings back
# at most 8 files); steps.txt has each step's exit status (124 = its time box ran out). A failing
# step does not stop the ones after it. ONLY="torch webgpu-tests" runs just the steps named.
set -uo pipefail
cd "$(dirname "$0")/../.."
OUT=${OUT:-/tmp/gpu-out}
LOGS=$(mktemp -d)
mkdir -p "$OUT"
DEV=.device
TMP=$(mktemp -d)
T0=$SECONDS
DEADLINE=${DEADLINE_S:-500}

step() { # name, time box (s), command...
  local name=$1 box=$2
  shift 2
  if [ -n "${ONLY:-}" ] && [[ " $ONLY " != *" $name "* ]]; then return 0; fi
  local left=$((DEADLINE - (SECONDS - T0)))
  ((box > left)) && box=$left
  if ((box < 10)); then
    echo "$name skipped: deadline" | tee -a "$LOGS/steps.txt"
    return 0
  fi
  echo "== $name (box ${box}s)"
  local t0=$SECONDS
  timeout -k 5 "$box" "$@" >"$LOGS/$name.log" 2>&1
  local rc=$?
  echo "$name rc=$rc $((SECONDS - t0))s" | tee -a "$LOGS/steps.txt"
  tail -n 25 "$LOGS/$name.log"
  return 0
}

if ! command -v node >/dev/null; then
  xz -dc "$DEV/node.xz" >"$TMP/node" && chmod +x "$TMP/node"
  export PATH="$TMP:$PATH"
fi
[ -d node_modules ] || tar -xJf "$DEV/node_modules.tar.xz"
[ -d dist ] || tar -xJf "$DEV/dist.tar.xz"
if [ -f "$DEV/addon/grpo_kernels_native.node" ] && [ ! -f build/Release/grpo_kernels_native.node ]; then
  mkdir -p build/Release
  cp "$DEV/addon/grpo_kernels_native.node" build/Release/
  cp "$DEV/addon/native-build-status.json" build/ 2>/dev/null
fi
{
  echo "date $(date -u +%FT%TZ); node $(node --version)"
  nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm,clocks.max.mem --format=csv,noheader
  nvcc --version 2>/dev/null | tail -1
  python3 -c 'import torch; print("torch", torch.__version__, "cuda", torch.version.cuda)' 2>&1
} | tee "$LOGS/device.txt"
echo "unpacked in $((SECONDS - T0))s"

export CMAKE_CUDA_ARCHITECTURES=${GPU_ARCHS:-90}
if ! node --input-type=module -e "const c=await (await import('./dist/index.js')).createContext({backend:'cuda'});console.log(JSON.stringify(c.device));c.dispose()" \
  >"$LOGS/addon-load.log" 2>&1; then
  cat "$LOGS/addon-load.log"
  rm -rf build
  step native 150 env GRPO_KERNELS_REQUIRE_NATIVE=1 node scripts/build-native.mjs
else
  cat "$LOGS/addon-load.log"
fi

# The instructions the kernels are designed around, counted per kernel in the SASS that runs here.
sass_counts() {
  cuobjdump -sass build/Release/grpo_kernels_native.node | awk '
    /Function : / { f = $3 }
    f != "" { for (i = 1; i <= NF; i++) if ($i ~ /^(LDG\.E\.128|MUFU\.EX2|HMMA|HGMMA)/) { split($i, a, "."); n[f " " a[1] "." a[2]]++ } }
    END { for (k in n) print n[k], k }' | sort -k2
}
export -f sass_counts
export PATH="$PATH:/usr/local/cuda/bin"
step sass 20 bash -c sass_counts

VITEST=(node node_modules/vitest/vitest.mjs run --project unit --reporter=verbose)
step cuda-tests 150 "${VITEST[@]}" test/cuda
step goals-cuda 120 node scripts/gpu/goals.mjs --backend cuda
step torch 100 env PYTHONUNBUFFERED=1 python3 bench/cuda/torch_reference.py
# The same sizes natively (bench/cuda/harness.cu: launchers timed with CUDA events beside a copy, no Node).
step harness 60 bash bench/cuda/harness.sh

# The NVIDIA Vulkan driver for Dawn: the carried loader, the driver's own ICD manifest.
# The loader and libglvnd: the driver's ICD (libGLX_nvidia) needs libGLdispatch to start.
for deb in "$DEV"/debs/*.deb; do [ -e "$deb" ] && dpkg -x "$deb" /; done
ldconfig 2>/dev/null || true
for icd in /usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json /usr/share/vulkan/icd.d/nvidia_icd.json \
  /etc/vulkan/icd.d/nvidia_icd.json; do
  if [ -f "$icd" ]; then
    export VK_DRIVER_FILES=$icd VK_ICD_FILENAMES=$icd
    break
  fi
done
step webgpu-tests 90 env CI=1 "${VITEST[@]}" test/webgpu
step goals-webgpu 60 node scripts/gpu/goals.mjs --backend webgpu --only logprobs,copy --rows 16384

SAN=$(command -v compute-sanitizer || echo /usr/local/cuda/bin/compute-sanitizer)
SANV=(node node_modules/vitest/vitest.mjs run --project unit --reporter=verbose test/cuda/ops
  --pool=forks --maxWorkers=1 -t "vs cpu")
step memcheck 75 "$SAN" --tool memcheck --target-processes all --error-exitcode 97 "${SANV[@]}"
step racecheck 75 "$SAN" --tool racecheck --target-processes all --error-exitcode 97 "${SANV[@]}"

NCU=$(command -v ncu || echo /usr/local/cuda/bin/ncu)
step ncu 60 "$NCU" --target-processes all -k 'regex:group_advantages|logprobs_fwd|logprobs_bwd|thr_' -c 60 \
  --metrics gpu__time_duration.sum,dram__throughput.avg.pct_of_peak_sustained_elapsed \
  node scripts/gpu/goals.mjs --backend cuda --only advantages,logprobs,thr --rows 4096 --reps 1 --adv-reps 3

# What bounds the logprobs forward: speed-of-light and memory sections of one 4096-row launch.
step ncu-sol 45 "$NCU" --target-processes all -k regex:logprobs_fwd -c 1 --section SpeedOfLight \
  --section MemoryWorkloadAnalysis --section Occupancy --section LaunchStats \
  node scripts/gpu/goals.mjs --backend cuda --only logprobs --rows 4096 --reps 1

echo "== steps (total $((SECONDS - T0))s)"
cat "$LOGS/steps.txt"
cp "$LOGS/steps.txt" "$LOGS/device.txt" "$OUT/"
tar -cJf "$OUT/logs.tar.xz" -C "$LOGS" .
