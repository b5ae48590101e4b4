#!/usr/bin/env bash
# CI for the native addon (called by .ci/run after `npm ci`): requires the CUDA build (nvcc is on CI),
# runs the cuda tests (GPU tests skip with their reason on a machine without a GPU), then builds the
# CPU-only stub into build/nocuda and runs the load/error-path tests against it. The CUDA build is
# left in build/Release for the rest of the run.
#   CMAKE_CUDA_ARCHITECTURES=90 scripts/ci-native.sh   # faster: H100 only
set -euo pipefail
cd "$(dirname "$0")/.."

t0=$(date +%s)
echo "== native: CUDA build (required)"
GRPO_KERNELS_REQUIRE_NATIVE=1 node scripts/build-native.mjs
node -e "const m=require('./build/Release/grpo_kernels_native.node'); const i=m.buildInfo();
  if(!i.cuda){console.error('CUDA build expected, got: '+i.reason);process.exit(1)} console.log('   buildInfo', JSON.stringify(i))"
t1=$(date +%s)

echo "== native: CPU-only build (-DGRPO_WITH_CUDA=OFF) into build/nocuda"
GRPO_WITH_CUDA=OFF GRPO_KERNELS_BUILD_DIR=build/nocuda GRPO_KERNELS_REQUIRE_NATIVE=1 node scripts/build-native.mjs
t2=$(date +%s)

echo "== native: cuda tests (load, error paths; op tests when a GPU is present)"
GRPO_KERNELS_NOCUDA_ADDON="$PWD/build/nocuda/Release/grpo_kernels_native.node" npx vitest run test/cuda
t3=$(date +%s)
echo "== native: CUDA build $((t1 - t0)) s, CPU-only build $((t2 - t1)) s, tests $((t3 - t2)) s"
