#!/usr/bin/env bash
# Which lines of native/cuda/*.cu the cuda op tests execute, measured on the CUDA emulator built with
# gcov (build/emu-cov). Prints each kernel file's line coverage and its never-executed lines (gcov
# counts a template once per instantiation, so a line may be listed for one dtype only; lines that
# continue a call's argument list show up too). Not part of CI: a tool for finding untested paths.
#   scripts/emu-coverage.sh [vitest filter...]
set -euo pipefail
cd "$(dirname "$0")/.."
node scripts/build-emu.mjs --coverage --require
obj=build/emu-cov/obj
rm -f "$obj"/*.gcda
# One process with worker threads: gcov writes its counts when the process exits normally.
GRPO_KERNELS_NATIVE_PATH="$PWD/build/emu-cov/grpo_kernels_native.node" GRPO_KERNELS_CUDA_EMU=1 \
  node node_modules/vitest/vitest.mjs run --project unit test/cuda/ops --pool=threads --maxWorkers=1 "$@"
cd "$obj"
rm -f ./*.gcov
for f in common logprobs advantages thr; do
  gcov -o . "../gen/$f.cc" 2>/dev/null | grep -A1 "File '.*native/cuda/$f.cu'" | tr '\n' ' ' | sed "s#File '.*native/#native/#; s#'##"
  echo
  grep -n "#####" "$f.cu.gcov" | sed 's/^[0-9]*: *#####: *\([0-9]*\):/    line \1:/' | cut -c1-110 || true
done
