#!/usr/bin/env bash
# CI for the native addon (called by .ci/run after `npm ci`): requires the CUDA build (nvcc is on CI),
# runs the cuda tests (GPU tests skip with their reason on a machine without a GPU), then builds the
# addon without CUDA into build/nocuda (the native cpu kernels alone), runs the cpu backend's own tests on it,
# and the load/error-path tests against it. The CUDA build is
# left in build/Release for the rest of the run. Then the CUDA emulator (the same kernels compiled for
# the CPU, docs/cuda.md "Emulated CUDA"): its build is required (npm test then runs every cuda test on
# it) and scripts/emu-memcheck.sh runs the op tests on it under AddressSanitizer.
#   CMAKE_CUDA_ARCHITECTURES=90 scripts/ci-native.sh   # faster: H100 only
set -euo pipefail
cd "$(dirname "$0")/.."

t0=$(date +%s)
echo "== native: CUDA build (required), with the prebuilt addon's static C++ runtime (scripts/ci-package.sh packs it)"
GRPO_STATIC_RUNTIME=ON GRPO_KERNELS_REQUIRE_NATIVE=1 node scripts/build-native.mjs
node -e "const m=require('./build/Release/grpo_kernels_native.node'); const i=m.buildInfo();
  if(!i.cuda){console.error('CUDA build expected, got: '+i.reason);process.exit(1)} console.log('   buildInfo', JSON.stringify(i))"
t1=$(date +%s)

echo "== native: CPU-only build (-DGRPO_WITH_CUDA=OFF) into build/nocuda (the cpu kernels must be there)"
GRPO_WITH_CUDA=OFF GRPO_KERNELS_BUILD_DIR=build/nocuda GRPO_KERNELS_REQUIRE_NATIVE=1 node scripts/build-native.mjs
node -e "const m=require('./build/nocuda/Release/grpo_kernels_native.node'); const i=m.buildInfo();
  if(i.cuda||!i.cpu||!m.CpuDevice){console.error('CPU-only build with the cpu kernels expected, got: '+JSON.stringify(i));process.exit(1)}
  console.log('   buildInfo', JSON.stringify(i), 'cpuInfo', JSON.stringify(m.cpuInfo()))"
# The per-ISA kernel objects must define no weak (COMDAT) symbol: one emitted by both the AVX2 and the
# portable build could be linked from the AVX2 one into the portable path (native/cpu/kernels.h).
weak=$(find build/nocuda/CMakeFiles -path '*gk_cpu_*' -name '*.o' -exec nm -C {} + | grep -E ' [WVu] ' || true)
if [ -n "$weak" ]; then echo "weak symbols in the per-ISA cpu kernels:"; echo "$weak"; exit 1; fi
# The cpu kernels' objects are compiled with the same flags in both builds (only addon.cc and the link
# differ), and npm test runs every test/cpu-native file on the CUDA build. Here: the backend's own tests
# (load, selection, both code paths, threads, the job model, the native boundary), the AVX-512 rows and
# every op's case table on cpu check that this build registers, links and runs every op, in about 45 s
# instead of the whole suite's 140.
echo "== native: the cpu backend's own tests and every op's case table on the CPU-only build"
nocuda="$PWD/build/nocuda/Release/grpo_kernels_native.node"
GRPO_KERNELS_NATIVE_PATH="$nocuda" npx vitest run --project unit test/cpu-native/backend.test.ts test/cpu-native/avx512.test.ts
GRPO_KERNELS_NATIVE_PATH="$nocuda" npx vitest run --project unit test/*.cases.test.ts -t 'on cpu'
t2=$(date +%s)

echo "== native: cuda tests (load, error paths; op tests when a GPU is present)"
GRPO_KERNELS_NOCUDA_ADDON="$PWD/build/nocuda/Release/grpo_kernels_native.node" npx vitest run --project unit test/cuda
t3=$(date +%s)

echo "== native: CUDA emulator build (required; warnings are errors), with the benchmark harness"
node scripts/build-emu.mjs --require --harness
echo "== native: the benchmark harness's dry run on the emulator (tiny sizes; checks it runs, not speed)"
build/emu/harness --rows 7 --vocab 1000 --thr-tokens 40 --thr-d 48 --thr-vocab 24 --groups 50 --lm-rows 16 --lm-dim 32 --lm-vocab 300 --reps 3 --warmup 1 >/dev/null
build/emu/harness --only thr --thr-small-tiles 1 --thr-tokens 40 --thr-d 48 --thr-vocab 24 --reps 2 --warmup 1 >/dev/null
# THR on a batch (run.sh's THR_BATCH), with the TMA-fed M in 256-column scores blocks: its one row, of 3 groups.
cases=$(build/emu/harness --only thr --thr-groups 3 --thr-responses 4 --thr-paths 10 --thr-tokens 12 --thr-d 40 \
  --thr-vocab 30 --reps 2 --warmup 1 2>/dev/null | grep -o '"case":"[^"]*","sizes":{"groups":[0-9]*' | tr '\n' ' ')
want='"case":"tokenHiddenReward/tf32 tma-wide-m","sizes":{"groups":3 '
[ "$cases" = "$want" ] || { echo "harness --thr-groups 3 --thr-paths 10 timed: $cases" >&2; exit 1; }
# The tile sets one process times (scripts/gpu/run.sh runs each waiting set alone): exactly the rows named.
cases=$(build/emu/harness --only lmhead,thr --lm-paths 6 --thr-paths 5 --thr-tokens 40 --thr-d 48 --thr-vocab 24 \
  --lm-rows 16 --lm-dim 32 --lm-vocab 300 --reps 2 --warmup 1 2>/dev/null | grep -o '"case":"[^"]*"' | tr '\n' ' ')
want='"case":"tokenHiddenReward/f32 tma" "case":"tokenHiddenReward/tf32 tma" "case":"linearLogprobs tma-cluster" "case":"linearLogprobs+entropy tma-cluster" "case":"linearLogprobsBackward tma-cluster" '
[ "$cases" = "$want" ] || { echo "harness --lm-paths 6 --thr-paths 5 timed: $cases" >&2; exit 1; }
rc=0
build/emu/harness --lm-paths 9 >/dev/null 2>&1 || rc=$?
[ "$rc" = 2 ] || { echo "harness --lm-paths 9 exited $rc, not 2 (bad arguments)" >&2; exit 1; }
echo "== native: emulated memcheck (AddressSanitizer, reverse thread order)"
bash scripts/emu-memcheck.sh
# The harness under AddressSanitizer too, on THR's batch (its outputs sized per group: a tau of one
# float for 3 groups overflowed unseen in the plain build) with auto and the TMA-fed M.
node scripts/build-emu.mjs --require --asan --harness --quiet
ASAN_OPTIONS=detect_leaks=0:halt_on_error=1 build/emu-asan/harness --only thr --thr-groups 3 --thr-responses 4 \
  --thr-paths 0,10,11 --thr-tokens 12 --thr-d 40 --thr-vocab 30 --reps 1 --warmup 0 >/dev/null
t4=$(date +%s)
echo "== native: CUDA build $((t1 - t0)) s, CPU-only build $((t2 - t1)) s, tests $((t3 - t2)) s, emulator + memcheck $((t4 - t3)) s"
