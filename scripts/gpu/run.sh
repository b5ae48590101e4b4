#!/usr/bin/env bash
# Runs on a lent GPU machine (H100/H200), in one call (see scripts/gpu/pack.sh):
#   1. unpacks node, node_modules and dist carried in .device/;
#   2. builds the native addon with nvcc there (sm_90 only, to save time; GPU_ARCHS overrides);
#   3. the cuda tests against the cpu reference, then compute-sanitizer memcheck + racecheck;
#   4. the webgpu tests on the NVIDIA Vulkan driver;
#   5. the benchmarks: every op on every backend (JSON) and PyTorch on the same card;
# and leaves logs and JSON under $OUT (the device tool brings back $OUT). Each step's exit status
# is recorded in $OUT/steps.txt; the script goes on after a failing step so one call gives all.
#   SKIP_SANITIZE=1 skips step 3's sanitizer runs (they take minutes).
set -uo pipefail
cd "$(dirname "$0")/../.."
OUT=${OUT:-/tmp/gpu-out}
mkdir -p "$OUT"
DEV=.device
TMP=$(mktemp -d)

step() { # name, command...
  local name=$1
  shift
  echo "== $name"
  local t0=$SECONDS
  "$@" >"$OUT/$name.log" 2>&1
  local rc=$?
  echo "$name rc=$rc $((SECONDS - t0))s" | tee -a "$OUT/steps.txt"
  tail -n 15 "$OUT/$name.log"
  return 0
}

if ! command -v node >/dev/null; then
  xz -dc "$DEV/node.xz" >"$TMP/node" && chmod +x "$TMP/node"
  export PATH="$TMP:$PATH"
fi
[ -d node_modules ] || tar -xJf "$DEV/node_modules.tar.xz"
[ -d dist ] || tar -xJf "$DEV/dist.tar.xz"
echo "node $(node --version); $(nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader 2>/dev/null)" |
  tee "$OUT/device.txt"
python3 -c 'import torch; print("torch", torch.__version__)' >>"$OUT/device.txt" 2>&1

export CMAKE_CUDA_ARCHITECTURES=${GPU_ARCHS:-90}
step native env GRPO_KERNELS_REQUIRE_NATIVE=1 node scripts/build-native.mjs
step cuda-tests node node_modules/vitest/vitest.mjs run --project unit test/cuda
[ "${SKIP_SANITIZE:-}" = 1 ] || step sanitize bash test/cuda/sanitize.sh

# The NVIDIA Vulkan driver for Dawn: the carried loader, the driver's own ICD manifest.
for deb in "$DEV"/debs/*.deb; do [ -e "$deb" ] && dpkg -x "$deb" /; done
ldconfig 2>/dev/null || true
for icd in /usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json /usr/share/vulkan/icd.d/nvidia_icd.json \
  /etc/vulkan/icd.d/nvidia_icd.json; do
  if [ -f "$icd" ]; then
    export VK_DRIVER_FILES=$icd VK_ICD_FILENAMES=$icd
    break
  fi
done
step info node dist/cli.js info
step webgpu-tests env CI=1 node node_modules/vitest/vitest.mjs run --project unit test/webgpu

step bench node dist/cli.js bench --backend all --no-progress --json "$OUT/bench.json"
step torch python3 bench/cuda/torch_reference.py
cp "$OUT/torch.log" "$OUT/torch.jsonl" 2>/dev/null
echo "== steps"
cat "$OUT/steps.txt"
