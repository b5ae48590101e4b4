#!/usr/bin/env bash
# For a GPU machine: runs the cuda op tests under compute-sanitizer's memcheck (out-of-bounds and
# misaligned accesses, leaks of device allocations) and racecheck (shared-memory races in the block
# reductions and the THR tiles). Expect each run to take minutes (the tests are slowed ~10-100×).
#   test/cuda/sanitize.sh [vitest filter...]     e.g. test/cuda/sanitize.sh -t logprobs
set -euo pipefail
cd "$(dirname "$0")/../.."
SAN=${COMPUTE_SANITIZER:-$(command -v compute-sanitizer || echo /usr/local/cuda/bin/compute-sanitizer)}
[ -x "$SAN" ] || { echo "compute-sanitizer not found (set COMPUTE_SANITIZER)"; exit 1; }
[ -f build/Release/grpo_kernels_native.node ] || GRPO_KERNELS_REQUIRE_NATIVE=1 node scripts/build-native.mjs
# One worker process, so the sanitizer follows a single Node process tree.
# GRPO_KERNELS_SANITIZER=1: the deliberate out-of-memory case and the 8.6 GB case skip (test/cuda/helpers.ts).
export GRPO_KERNELS_SANITIZER=1
VITEST=(node node_modules/vitest/vitest.mjs run --project unit test/cuda/ops --pool=forks --maxWorkers=1 "$@")
for tool in memcheck racecheck; do
  echo "== compute-sanitizer --tool $tool"
  extra=()
  [ "$tool" = memcheck ] && extra=(--leak-check full)
  "$SAN" --tool "$tool" --target-processes all --report-api-errors no --error-exitcode 97 "${extra[@]}" "${VITEST[@]}"
done
echo "== compute-sanitizer: memcheck and racecheck clean"
