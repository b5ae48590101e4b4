#!/usr/bin/env bash
# Memcheck of the native cpu backend (native/cpu/, its glue native/addon_cpu.cc, ops_cpu.cc and the cpu
# device runtime): builds the addon with the cpu kernels alone (GRPO_WITH_CUDA=OFF), instrumented with
# AddressSanitizer and UndefinedBehaviorSanitizer, into build/cpu-asan/ (a cmake-js build directory of
# its own: build/Release and build/emu* are left alone), then runs the cpu backend's tests against it
# with libasan preloaded (node itself is not instrumented). A kernel that reads or writes outside an
# allocation (the tensors are the engine's malloc'd ArrayBuffers, so they have redzones), a stack array
# or a worker's scratch, or that does undefined arithmetic or calls (a signed overflow, a shift past the
# width, a misaligned access, an out-of-range enum or bool, memset on a null pointer) stops the run
# with the source line. build/emu-asan (scripts/emu-memcheck.sh) is built without the cpu kernels, so
# this is the only sanitized run of native/cpu/. Its first run (2026-11-28) found one report:
# linear_backward's memset on the null data pointer of the empty gradients at d = 0 (lmhead.cc).
#
# Every kernel variant runs: the tests open the AVX2 and the portable paths themselves (and the LM head
# and the logprobs forward on their AVX-512 build where the CPU has AVX-512F/BW; without it, those run
# on AVX2 only) with 1, 2 and 8 threads (8 > the cores, through the test hook cpuTuning.maxThreads),
# and the whole set runs three times: default threads (every core); GRPO_KERNELS_THREADS=1 (the job
# thread alone, no pool); GRPO_KERNELS_THREADS=3 (capped to the cores: 2 here) with
# GRPO_KERNELS_CPU_PORTABLE=1, so the contexts the shared case tables open take the portable kernels.
# Besides the cpu backend's own tests: the API fuzz and the lifetime suite (adversarial and
# out-of-order calls through the cpu glue) and the temperature suite.
#
# Flags: -O2 -g and the sanitizers for every object. The kernel objects' -O3 (CMakeLists.txt's
# per-target options, which come after CMAKE_CXX_FLAGS_RELEASE) is overridden by a trailing -O2 in
# the compile rule (CMAKE_CXX_COMPILE_OBJECT): GCC 12 takes ~5 min per ISA for policy.cc at -O3 with
# both sanitizers and -g (2 GB of memory), 2 min at -O2. cmake-js sets CMAKE_CXX_FLAGS itself, so a
# --CDCMAKE_CXX_FLAGS would be lost: the flags go in CMAKE_CXX_FLAGS_RELEASE.
#
# Time on the 2-core development machine (g++ 12, idle): the build ~5 min from scratch (policy.cc's
# two builds are most of it; seconds to a minute after an edit), each of the three runs ~5-6 min: ~22
# min in all from scratch, ~17 min with the build up to date.
#   scripts/cpu-memcheck.sh               build, then the three runs
#   scripts/cpu-memcheck.sh --build-only  build only
#   scripts/cpu-memcheck.sh FILE...       build, then one run (default threads) of the given test files
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=build/cpu-asan
mkdir -p "$OUT"
SAN='-fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined'
CONFIG=(--CDGRPO_WITH_CUDA=OFF --CDGRPO_STATIC_RUNTIME=OFF "--CDCMAKE_CXX_FLAGS_RELEASE=-O2 -g $SAN"
  "--CDCMAKE_CXX_COMPILE_OBJECT=<CMAKE_CXX_COMPILER> <DEFINES> <INCLUDES> <FLAGS> -O2 -o <OBJECT> -c <SOURCE>"
  "--CDCMAKE_SHARED_LINKER_FLAGS=-fsanitize=address,undefined")
t0=$(date +%s)
# cmake-js compile configures only without a cache: a cache made with other settings is dropped first.
if [ "$(cat "$OUT/memcheck-config.txt" 2>/dev/null)" != "${CONFIG[*]}" ]; then
  rm -f "$OUT/CMakeCache.txt"
  printf '%s' "${CONFIG[*]}" >"$OUT/memcheck-config.txt"
fi
node node_modules/cmake-js/bin/cmake-js compile --out "$OUT" --parallel 2 --log-level warn "${CONFIG[@]}" \
  >"$OUT/build.log" 2>&1 || {
  tail -40 "$OUT/build.log"
  echo "cpu-memcheck: build failed (log: $OUT/build.log)"
  exit 1
}
ADDON="$PWD/$OUT/Release/grpo_kernels_native.node"
[ -f "$ADDON" ] || { echo "cpu-memcheck: $ADDON missing after the build"; exit 1; }
echo "== cpu-memcheck: built $OUT in $(($(date +%s) - t0)) s"
[ "${1:-}" = --build-only ] && exit 0
ASAN_LIB=$(g++ -print-file-name=libasan.so)
[ -f "$ASAN_LIB" ] || { echo "cpu-memcheck: libasan.so not found (g++ $(g++ -dumpversion))"; exit 1; }

FILES=(test/cpu-native test/*.cases.test.ts test/lmhead.test.ts test/policy.test.ts test/thr.test.ts
  test/logprobs.test.ts test/advantages.test.ts test/api-fuzz.test.ts test/lifetime.test.ts
  test/temperature.test.ts)
[ $# -gt 0 ] && FILES=("$@")
run() {
  local t
  t=$(date +%s)
  echo "== cpu-memcheck: ${*:-default threads}"
  # Node's own allocations are not leaks to report; any report ends the process (its file fails).
  env "$@" LD_PRELOAD="$ASAN_LIB" ASAN_OPTIONS=detect_leaks=0:halt_on_error=1 \
    UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1 GRPO_KERNELS_NATIVE_PATH="$ADDON" \
    node node_modules/vitest/vitest.mjs run --project unit "${FILES[@]}"
  echo "== cpu-memcheck: ${*:-default threads}: clean in $(($(date +%s) - t)) s"
}
run
[ $# -gt 0 ] && exit 0
run GRPO_KERNELS_THREADS=1
run GRPO_KERNELS_THREADS=3 GRPO_KERNELS_CPU_PORTABLE=1
echo "== cpu-memcheck: clean (ASan + UBSan; avx512, avx2 and portable kernels; 1 to 8 threads) in $(($(date +%s) - t0)) s"
