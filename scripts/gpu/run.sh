#!/usr/bin/env bash
# Runs on a lent GPU machine (H100/H200) in one call of at most ~8 minutes (see scripts/gpu/pack.sh):
#   carry: [".device"], command: "bash scripts/gpu/run.sh", timeout_s: 560
# First, within seconds, and stopping the run with a FATAL line in steps.txt when either fails:
#   - a GPU is seen (nvidia-smi -L);
#   - node, node_modules and dist are unpacked from .device/, and the carried addon (built with nvcc
#     here) has CUDA, opens the device and runs a kernel (scripts/gpu/preflight.mjs); if not, it is
#     built there for sm_90a and sm_90 (step "native", not with GPU_BUILD=0) and checked again.
# Then the steps, most important first, each under its own `timeout` so the whole call ends by
# DEADLINE (DEADLINE_S, default 500 s); PLAN below gives each one's estimate and time box:
#   1. the cuda tests against the cpu reference, failing if any GPU test skipped (vitest-gate.mjs),
#      then the differential fuzzer (scripts/fuzz/differential.mts) on cuda against js from seed 1 for
#      FUZZ_SECS (all families, batch invariance among them: the real tile choices and tensor cores);
#   2. the native harness (bench/cuda/harness.cu) and PyTorch (bench/cuda/torch_reference.py) at the
#      goal sizes, and the same sizes through Node (scripts/gpu/goals.mjs);
#   3. the SASS checks: LDG.E.128, MUFU.EX2 and HMMA/HGMMA counted per kernel, each present;
#   4. compute-sanitizer memcheck over test/cuda/ops*, racecheck over the tensor-core files (ops-lmhead*,
#      ops-thr*; the rest of ops* as the last step, racecheck-rest) (--report-api-errors no; the
#      deliberate out-of-memory and the multi-GB cases skip: GRPO_KERNELS_SANITIZER=1);
#   5. the webgpu tests and the webgpu logprobs and policyLoss goals on the NVIDIA Vulkan driver through Dawn;
#   6. ncu: GPU-side kernel times and DRAM throughput of advantages, logprobs (4096 rows) and THR,
#      the speed-of-light sections of one logprobs forward, and the compute sections of the LM head's
#      forward and THR's scores on both tiles (mma.sync, wgmma).
# Output: $LOGS/steps.txt has the plan, one line per step (ok / FAIL / TIMEOUT / CUT, exit status,
# `est Xs, took Ys`, and the step's own summary, e.g. the test counts) and an overall summary; it is
# copied to $OUT after every step, so a run killed from outside still leaves it. At the end every log
# and JSON file is bundled into $OUT/logs.tar.xz (the device tool brings back at most 8 files). A
# failing step does not stop the ones after it; the exit status is 0 when every step ran and passed,
# 1 when one failed, timed out or was cut, 2 on a FATAL stop.
#
# Environment:
#   ONLY="torch webgpu-tests"  run just the steps named (the checks before them always run)
#   DEADLINE_S=500             the whole run's time; estimates over it print a WARNING at the start
#   GPU_BUILD=0                never build the addon there (a failed check is FATAL at once)
#   NEW_THR_PATHS="7 8 9 10 11" THR's tile sets no GPU has verified, each run by the harness alone
#   NCU_THR_PATHS=0,1,2,3,4,5,6 THR's sets ncu-tiles profiles when the harness step did not run
#   FUZZ_SECS=25               how long the fuzz step draws cases
#   DRY_RUN=1                  here, without a GPU (scripts/gpu/dry-run.sh does it in a copy laid out
#                              as the GPU machine gets it): the CUDA emulator is the GPU
#                              (build/emu, `node scripts/build-emu.mjs --harness`), scripts/gpu/dry/
#                              stands in for nvidia-smi, cuobjdump, compute-sanitizer and ncu, the
#                              benchmarks run at tiny sizes, PyTorch is only parsed, and the webgpu
#                              steps use whatever adapter is here (lavapipe: scripts/setup-vulkan.sh).
#                              DRY_NO_GPU=1 makes the stand-in nvidia-smi see no GPU.
#   bash scripts/gpu/run.sh --plan   prints the plan and whether its estimates fit the deadline
#                                    (exit 1 if not), and runs nothing.
set -uo pipefail
cd "$(dirname "$0")/../.."
ROOT=$PWD
DEV=.device
DRY=${DRY_RUN:-0}
DEADLINE=${DEADLINE_S:-$([ "$DRY" = 1 ] && echo 1000 || echo 500)}
T0=$SECONDS

# The plan: step, estimate (s), time box (s). Estimates for an H100/H200 from the runs of 2026-11-26
# on an H200 (bench/RESULTS.md and those calls' steps.txt): cuda tests 51 s for 90 tests, then over
# 150 s once the batch-invariance file came (its slow array comparisons are fixed since, and the 45 s
# of host-side data in the async-jobs test is gone); goals-cuda 12-13 s; torch 6 s; webgpu tests
# 10-11 s; goals-webgpu 7 s; ncu-sol 4 s; memcheck 5 s and racecheck 10 s over the 57 "vs cpu"
# tests (now all four ops files, one worker: about 3x the tests). harness and ncu were not timed.
# On 2026-11-27 (an H100, 1224 cuda tests): cuda-tests 30 s, memcheck 37 s, racecheck over 150 s (the
# LM-head cases at d = 896 took 40 s each; under the sanitizer they now run at the emulator's sizes),
# harness 10 s, torch 11 s, goals-cuda 19 s, sass 13 s, webgpu tests 18 s, ncu 15 s. Since then the
# harness also runs the wgmma rows (LM head forward on two more tile sets, its backward and THR's
# scores on one more: about +20 s) and ncu-tiles profiles 11 launches (estimated). On 2026-11-27 (an
# H200, sixth session, 1307 cuda tests): cuda-tests 55-60 s, harness 13-19 s, goals-cuda 24 s, memcheck
# 64 s, ncu-tiles 11 s; racecheck over all of ops* ran out of its 200 s box after 1028 tests (924 of
# them ops-cases'), so it is split: the tensor-core files first, the others last (racecheck-rest: what
# time is left, its box clamped to the deadline). The harness now runs in 10 processes (the tile sets no
# GPU has verified one by one: a context and the inputs' generation each, about 1-2 s; ~50 s in all).
# "native" runs only when the carried addon fails its check. SETUP_EST covers the unpacking and the
# checks before the steps.
# On 2026-11-28 (an H200, eleventh session, 1406 cuda tests): cuda-tests 63-64 s, harness 25 s with
# every waiting set (17 s without), torch 11 s, goals-cuda 28 s, sass 20-27 s (its old 20 s box ran out
# once), memcheck 71 s, racecheck 180 s (its box), webgpu tests 22 s, goals-webgpu 25 s, ncu 24 s,
# ncu-sol 6 s. No set waits for a GPU now, so the harness runs `auto` and two compared sets only.
# Twelfth session (no GPU): goals-webgpu also times THR at the goal size (webgpu THR's first GPU
# figure; ~1-2 s of its runs, a few more of input generation), so sass and ncu-sol give back their slack;
# the harness times THR's sets on a batch of 32 groups too (THR_BATCH: ~8 s), racecheck-rest gives it;
# thirteenth: one more waiting THR set (11) in a process of its own (~3 s), racecheck-rest again.
# Nineteenth (no GPU): the differential fuzzer after the cuda tests (FUZZ_SECS 25 and its start, about
# 30 s), taken from racecheck, which ran into its box on 2026-11-28 in any case.
SETUP_EST=15
PLAN=(
  "native        90 150"
  "cuda-tests    60 180"
  "fuzz          30  50"
  "harness       45 150"
  "torch         10  60"
  "goals-cuda    30  60"
  "sass          27  60"
  "memcheck      70 120"
  "racecheck     90 150"
  "webgpu-tests  20  60"
  "goals-webgpu  30  60"
  "ncu           25  60"
  "ncu-sol        6  45"
  "ncu-tiles     30  90"
  "racecheck-rest 10 150"
)
CONDITIONAL=" native "

plan_of() { # name → EST, BOX; a name not in PLAN is a bug in this script
  local row n e b
  for row in "${PLAN[@]}"; do
    read -r n e b <<<"$row"
    if [ "$n" = "$1" ]; then
      EST=$e BOX=$b
      return 0
    fi
  done
  echo "run.sh: step '$1' is not in PLAN" >&2
  return 1
}
selected() { [ -z "${ONLY:-}" ] || [[ " $ONLY " == *" $1 "* ]]; }

# Sums the estimates of the selected steps (conditional ones only when asked) and says whether they fit.
plan_total() { # [extra step names counted although conditional]
  local row n e b total=$SETUP_EST
  for row in "${PLAN[@]}"; do
    read -r n e b <<<"$row"
    if [[ $CONDITIONAL == *" $n "* ]]; then # whatever ONLY says, when it must run
      [[ " $* " == *" $n "* ]] && total=$((total + e))
    elif selected "$n"; then total=$((total + e)); fi
  done
  echo "$total"
}
plan_report() { # prints the plan; returns 1 if the estimates exceed the deadline
  local row n e b total
  total=$(plan_total)
  echo "plan (deadline ${DEADLINE}s${ONLY:+, ONLY=$ONLY}$([ "$DRY" = 1 ] && echo ', DRY_RUN')):"
  printf '  %-13s est %3ss\n' setup "$SETUP_EST"
  for row in "${PLAN[@]}"; do
    read -r n e b <<<"$row"
    selected "$n" || [[ $CONDITIONAL == *" $n "* ]] || continue
    printf '  %-13s est %3ss, box %3ss%s\n' "$n" "$e" "$b" "$([[ $CONDITIONAL == *" $n "* ]] && echo ' (only if the addon fails its check)')"
  done
  echo "  estimates total ${total}s of ${DEADLINE}s (+$(($(plan_total native) - total))s if the addon must be built there)"
  if ((total > DEADLINE)); then
    echo "WARNING: the estimates (${total}s) exceed the deadline (${DEADLINE}s): the last steps will be cut"
    return 1
  fi
  return 0
}

# A typo in ONLY or DEADLINE_S would spend the call on nothing: refuse it before anything runs.
check_args() {
  [[ $DEADLINE =~ ^[0-9]+$ ]] || { echo "run.sh: DEADLINE_S=$DEADLINE is not a number of seconds"; return 1; }
  local name
  for name in ${ONLY:-}; do
    plan_of "$name" 2>/dev/null || { echo "run.sh: ONLY names '$name', which is not a step (PLAN)"; return 1; }
  done
}
if [ "${1:-}" = --plan ]; then
  check_args || exit 1
  plan_report
  exit
fi

OUT=${OUT:-/tmp/gpu-out}
LOGS=$(mktemp -d)
TMP=$(mktemp -d)
mkdir -p "$OUT"
STEPS=$LOGS/steps.txt
: >"$STEPS"
N_OK=0 N_BAD=0 EST_SUM=$SETUP_EST BAD=""

# Writes the overall summary, bundles the logs into $OUT, and exits.
finish() { # exit status
  local rc=$1 t=$((SECONDS - T0))
  ((rc == 0 && N_BAD > 0)) && rc=1
  {
    if ((rc == 2)); then
      echo "== summary: STOPPED (FATAL above) after ${t}s; ${N_OK} ok, ${N_BAD} not ok before it"
    else
      echo "== summary: $((N_OK + N_BAD)) steps: ${N_OK} ok, ${N_BAD} not ok${BAD:+ (${BAD# })}; est ${EST_SUM}s, took ${t}s of ${DEADLINE}s"
    fi
  } | tee -a "$STEPS"
  cp "$STEPS" "$OUT/"
  [ -f "$LOGS/device.txt" ] && cp "$LOGS/device.txt" "$OUT/"
  tar -cJf "$OUT/logs.tar.xz" -C "$LOGS" .
  echo "== steps.txt"
  cat "$STEPS"
  rm -rf "$TMP" "$LOGS"
  exit "$rc"
}
fatal() {
  echo "FATAL after $((SECONDS - T0))s: $*" | tee -a "$STEPS" >&2
  finish 2
}
trap 'echo "run.sh: interrupted" | tee -a "$STEPS"; finish 1' INT TERM

# One line per step in steps.txt: name, ok|FAIL|TIMEOUT|CUT, exit status, est and took, and the
# step's own one-line summary (a command may write it to $STEP_NOTE).
step() { # name, command...
  local name=$1
  shift
  plan_of "$name" || fatal "run.sh: step '$name' is not in PLAN (a typo in run.sh)"
  selected "$name" || return 0
  local est=$EST box=$BOX left=$((DEADLINE - (SECONDS - T0)))
  # A dry run's emulator is slower than a GPU: twice the box (it checks that the steps work, not their
  # time); four times for the webgpu suite, which lavapipe runs at CPU speed (120-200 s on 2 cores).
  [ "$DRY" = 1 ] && box=$((box * 2))
  [ "$DRY" = 1 ] && [ "$name" = webgpu-tests ] && box=$((box * 2))
  ((box > left)) && box=$left
  EST_SUM=$((EST_SUM + est))
  if ((box < 10)); then
    printf '%-13s %-7s est %3ss, %ss left of the deadline\n' "$name" CUT "$est" "$left" | tee -a "$STEPS"
    N_BAD=$((N_BAD + 1)) BAD="$BAD $name"
    cp "$STEPS" "$OUT/"
    return 0
  fi
  echo "== $name (est ${est}s, box ${box}s)"
  local t0=$SECONDS note="$LOGS/$name.note"
  rm -f "$note"
  STEP_NOTE=$note timeout -k 5 "$box" "$@" >"$LOGS/$name.log" 2>&1
  local rc=$? took=$((SECONDS - t0)) status=ok
  if ((rc == 124 || rc == 137)); then
    status=TIMEOUT
  elif ((rc != 0)); then status=FAIL; fi
  local extra=""
  [ -s "$note" ] && extra="  $(head -c 400 "$note" | head -n 1)"
  [ "$status" = TIMEOUT ] && extra="  (box ${box}s ran out)$extra"
  ((took > est + 10 && took > est * 3 / 2)) && extra="  [over estimate]$extra"
  printf '%-13s %-7s rc=%-3s est %3ss, took %3ss%s\n' "$name" "$status" "$rc" "$est" "$took" "$extra" |
    tee -a "$STEPS"
  if [ "$status" = ok ]; then
    N_OK=$((N_OK + 1))
  else
    N_BAD=$((N_BAD + 1)) BAD="$BAD $name"
  fi
  cp "$STEPS" "$OUT/"
  tail -n 25 "$LOGS/$name.log"
  return 0
}

ARGS_ERR=$(check_args) || fatal "$ARGS_ERR"
plan_report | tee -a "$STEPS"

# ------------------------------------------------------------------ is there a GPU at all?
if [ "$DRY" = 1 ]; then
  export PATH="$ROOT/scripts/gpu/dry:$PATH"
  emu=$ROOT/build/emu/grpo_kernels_native.node
  [ -f "$emu" ] || fatal "DRY_RUN needs the CUDA emulator: node scripts/build-emu.mjs --harness"
  export GRPO_KERNELS_NATIVE_PATH=$emu GRPO_KERNELS_CUDA_EMU=1
  GPU_BUILD=0
fi
export PATH="$PATH:/usr/local/cuda/bin"
gpus=$(timeout -k 5 30 nvidia-smi -L 2>&1)
smi=$?
echo "$gpus" >"$LOGS/nvidia-smi.txt"
if ((smi != 0)) || ! grep -q '^GPU [0-9]' <<<"$gpus"; then
  fatal "no GPU seen: nvidia-smi -L exited $smi: $(head -n 1 <<<"${gpus:-(no output)}")"
fi
echo "GPU: $(head -n 1 <<<"$gpus")" | tee -a "$STEPS"

# ------------------------------------------------------------------ unpack
if ! command -v node >/dev/null || [ "${CARRIED_NODE:-0}" = 1 ]; then
  xz -dc "$DEV/node.xz" >"$TMP/node" && chmod +x "$TMP/node" || fatal "cannot unpack $DEV/node.xz"
  export PATH="$TMP:$PATH"
fi
# A node_modules symlink that points nowhere (a worktree's, sent as a link) would take the unpacking.
[ -L node_modules ] && [ ! -e node_modules ] && rm node_modules
if [ ! -d node_modules ]; then
  tar -xJf "$DEV/node_modules.tar.xz" || fatal "cannot unpack $DEV/node_modules.tar.xz"
fi
if [ ! -d dist ]; then
  tar -xJf "$DEV/dist.tar.xz" || fatal "cannot unpack $DEV/dist.tar.xz"
  # Built here from these sources (pack.sh): newer than them, so that vitest's global setup
  # (test/build-setup.ts) does not try to rebuild it with a TypeScript this machine lacks (tsc leaves
  # an output it would write unchanged with its old time, older than a source edited since).
  find dist -type f -exec touch {} +
fi
if [ -f "$DEV/addon/grpo_kernels_native.node.xz" ] && [ ! -f build/Release/grpo_kernels_native.node ]; then
  mkdir -p build/Release
  xz -dc "$DEV/addon/grpo_kernels_native.node.xz" >build/Release/grpo_kernels_native.node ||
    fatal "cannot unpack $DEV/addon/grpo_kernels_native.node.xz"
  cp "$DEV/addon/native-build-status.json" build/ 2>/dev/null
fi
{
  echo "date $(date -u +%FT%TZ); node $(node --version)$([ "$DRY" = 1 ] && echo '; DRY_RUN')"
  nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm,clocks.max.mem --format=csv,noheader
  nvcc --version 2>/dev/null | tail -1
  python3 -c 'import torch; print("torch", torch.__version__, "cuda", torch.version.cuda)' 2>&1 | tail -1
} | tee "$LOGS/device.txt"
echo "unpacked in $((SECONDS - T0))s"

# ------------------------------------------------------------------ does the addon run a kernel?
export CMAKE_CUDA_ARCHITECTURES=${GPU_ARCHS:-90a-real;90}
preflight() {
  timeout -k 5 60 node scripts/gpu/preflight.mjs >"$LOGS/preflight.log" 2>&1
  PRE_RC=$?
  ((PRE_RC == 124 || PRE_RC == 137)) && echo "preflight: no answer within 60 s (a hung driver?)" >>"$LOGS/preflight.log"
  cat "$LOGS/preflight.log"
  PRE_LINE=$(tail -n 1 "$LOGS/preflight.log")
}
preflight
if ((PRE_RC != 0)); then
  # A build there helps when the addon is missing, lacks CUDA or code for this GPU, or has a newer CUDA
  # runtime than the driver supports (nvidia-smi's "CUDA Version"; the nvcc there matches the
  # driver). It does not help when no device opens for another reason.
  rebuild=0
  rt=$(grep -o '"cudaRuntimeVersion":[0-9]*' <<<"$PRE_LINE" | grep -o '[0-9]*$')
  drv=$(nvidia-smi 2>/dev/null | grep -o 'CUDA Version: [0-9.]*' | head -n 1 |
    awk '{ split($3, v, "."); print v[1] * 1000 + v[2] * 10 }')
  echo "addon check failed (rc $PRE_RC); addon CUDA runtime ${rt:-?}, driver supports ${drv:-?}" | tee -a "$STEPS"
  case $PRE_RC in
  2 | 4) rebuild=1 ;;
  3) [ -n "$rt" ] && [ -n "$drv" ] && ((drv < rt)) && rebuild=1 ;;
  esac
  if ((rebuild == 1)) && [ "${GPU_BUILD:-1}" != 0 ] && command -v nvcc >/dev/null; then
    total=$(plan_total native)
    echo "building the addon here; estimates now ${total}s of ${DEADLINE}s" |
      tee -a "$STEPS"
    ((total > DEADLINE)) &&
      echo "WARNING: with the build the estimates (${total}s) exceed the deadline (${DEADLINE}s)" | tee -a "$STEPS"
    rm -rf build
    ONLY="" step native env GRPO_KERNELS_REQUIRE_NATIVE=1 node scripts/build-native.mjs
    preflight
  fi
  ((PRE_RC == 0)) || fatal "the cuda backend is not usable (preflight rc $PRE_RC): $PRE_LINE"
fi
echo "addon ok: $(head -c 300 <<<"$PRE_LINE")" | tee -a "$STEPS"

# ------------------------------------------------------------------ the steps
# The benchmarks' sizes: the goal sizes, or tiny ones on the emulator (the flags come last and win).
TINY=()
[ "$DRY" = 1 ] && TINY=(--rows 64 --vocab 1000 --thr-tokens 40 --thr-d 48 --thr-vocab 24 --groups 50 --reps 2
  --lm-rows 7 --lm-dim 48 --lm-vocab 1000
  --adv-reps 2)
GATE=(node scripts/gpu/vitest-gate.mjs)
[ "$DRY" = 1 ] && GATE+=(--allow emulator)
VITEST=(node node_modules/vitest/vitest.mjs run --project unit --reporter=verbose --reporter=json)

step cuda-tests "${GATE[@]}" --json "$LOGS/cuda-tests.json" -- \
  "${VITEST[@]}" --outputFile.json="$LOGS/cuda-tests.json" test/cuda

# Random calls of every op family on cuda and on js, each output within the case tables' bounds, and
# every unit's bits the same inside two batches (scripts/fuzz/differential.mts); seed 1 onwards, as CI
# runs them on the emulator, so a failure here is the GPU's own. Its SUMMARY line is the step's note.
fuzz_run() {
  node node_modules/tsx/dist/cli.mjs scripts/fuzz/differential.mts --backend cuda --seed 1 --secs "$1" |
    tee "$STEP_NOTE.out"
  local rc=${PIPESTATUS[0]}
  # "SUMMARY cuda seeds 1..29 in 11.1 s: <per family>; failures 0" → its seeds, time and failures.
  grep '^SUMMARY' "$STEP_NOTE.out" | sed -E 's/^SUMMARY cuda (seeds [^:]*):.*; (failures [0-9]+)$/\1, \2/' >"$STEP_NOTE"
  rm -f "$STEP_NOTE.out"
  return "$rc"
}
step fuzz bash -c "$(declare -f fuzz_run); fuzz_run ${FUZZ_SECS:-25}"

# The same sizes natively (bench/cuda/harness.cu: launchers timed with CUDA events beside a copy, no Node),
# in processes of their own: the families, `auto` and the verified tile sets compared with it (LM_COMPARE,
# THR_COMPARE) in one, then each tile set no GPU has verified (NEW_LM_PATHS, NEW_THR_PATHS) alone, under its
# own box, so that one that fails (an error, the mbarrier watchdog's trap (tensor_core.cuh), a hang)
# costs its own rows only, then the LM head's backward on other G chunks (HARNESS_CHUNKS, "ROWSxVOCAB ...").
# Every tile set up to THR's 6 passed its tests and the harness on an H200 on 2026-11-28; THR's 7 and 8
# (the TMA scores on rounded copies), 9 and 10 (those with M TMA-fed too), 11 (10 with M in 128 × 256
# tiles) came after and wait. By default 'tma-wide' (5, the flushing form of the LM head's `auto`, 7)
# and 'wgmma-truncate' (THR's 3) are timed beside `auto`. The sets that passed go to
# $LOGS/harness-paths.txt for ncu-tiles.
NEW_LM_PATHS=${NEW_LM_PATHS-}
NEW_THR_PATHS=${NEW_THR_PATHS-7 8 9 10 11}  # tma-rounded, tma-wide-rounded, tma-m, tma-wide-m, tma-wide-m-wide (emulator only)
LM_COMPARE=${LM_COMPARE-5}
THR_COMPARE=${THR_COMPARE-3}
HARNESS_CHUNKS=${HARNESS_CHUNKS-}
# THR on a trainer's batch as well as on the goal's one group: every THR set that passed, on 32 groups of
# 16 responses × 256 tokens with 1024 columns of V* each (what `auto` must not lose on when it moves).
THR_BATCH=${THR_BATCH---thr-groups 32 --thr-responses 16 --thr-tokens 256 --thr-vocab 1024}
harness_runs() { # harness arguments (sizes) for every run
  local rc=0 lm thr p c batch old fresh
  lm=$(echo 0 $LM_COMPARE | tr ' ' ,)
  thr=$(echo 0 $THR_COMPARE | tr ' ' ,)
  hrun() { # box, harness arguments (3x the box on the emulator, whose speed is the CPU's)
    local box=$1
    [ "$DRY" = 1 ] && box=$((3 * box))
    shift
    echo "[harness-runs] $* (box ${box}s)" >&2
    # --foreground: no process group of its own, so the step's box, when it runs out, ends this
    # harness too instead of leaving it on the GPU beside the next step (harness.sh execs the binary).
    timeout --foreground -k 5 "$box" bash bench/cuda/harness.sh "$@" || {
      echo "[harness-runs] FAILED (rc $?): $*" >&2
      return 1
    }
  }
  # Written after every run, so that ncu-tiles, when this step's box runs out, profiles what passed.
  saved() { printf 'LM_PATHS=%s\nTHR_PATHS=%s\n' "$lm" "$thr" >"$LOGS/harness-paths.txt"; }
  hrun 60 --only logprobs,backward,advantages,thr,lmhead --lm-paths "$lm" --thr-paths "$thr" "$@" || {
    rc=1
    lm=0 thr=0
  }
  saved
  for p in $NEW_LM_PATHS; do hrun 45 --only lmhead --lm-paths "$p" "$@" && lm="$lm,$p" || rc=1; saved; done
  old=$thr fresh=""
  for p in $NEW_THR_PATHS; do
    hrun 30 --only thr --thr-paths "$p" "$@" && thr="$thr,$p" fresh="$fresh $p" || rc=1
    saved
  done
  if [ -n "$THR_BATCH" ]; then
    # The batch reaches what one group does not (several groups per launch, M's batches, the transposes'
    # scratch reused), so a set no GPU has verified runs it alone too: its failure costs its own rows.
    read -r -a batch <<<"$THR_BATCH"
    [ "$DRY" = 1 ] && batch+=(--thr-groups 3 --thr-responses 4) # (then the dry run's tiny sizes)
    hrun 40 --only thr --thr-paths "$old" "${batch[@]}" "$@" || rc=1
    for p in $fresh; do hrun 20 --only thr --thr-paths "$p" "${batch[@]}" "$@" || rc=1; done
  fi
  for c in $HARNESS_CHUNKS; do
    hrun 30 --only lmhead --lm-paths 0 --lm-chunk-rows "${c%x*}" --lm-chunk-vocab "${c#*x}" "$@" || rc=1
  done
  echo "passed: LM head $lm, THR $thr${HARNESS_CHUNKS:+; chunks $HARNESS_CHUNKS}" | tee "$STEP_NOTE"
  return $rc
}
export -f harness_runs
export LOGS DRY NEW_LM_PATHS NEW_THR_PATHS LM_COMPARE THR_COMPARE HARNESS_CHUNKS THR_BATCH
if [ "$DRY" = 1 ]; then
  step harness env GK_HARNESS=build/emu/harness bash -c 'harness_runs "$@"' harness --rows 7 --vocab 1000 \
    --thr-tokens 40 --thr-d 48 --thr-vocab 24 --groups 50 --lm-rows 7 --lm-dim 48 --lm-vocab 1000 \
    --reps 20 --warmup 2
  step torch python3 -c 'import ast, sys; ast.parse(open(sys.argv[1]).read()); print("parsed", sys.argv[1])' \
    bench/cuda/torch_reference.py
else
  step harness bash -c 'harness_runs "$@"' harness
  step torch env PYTHONUNBUFFERED=1 python3 bench/cuda/torch_reference.py
fi
step goals-cuda node scripts/gpu/goals.mjs --backend cuda "${TINY[@]}"

# The instructions the kernels are designed around, counted per kernel in the SASS that runs here;
# the step fails if one of them is absent from the whole addon.
sass_check() {
  cuobjdump -sass "$1" >"$TMP/sass.txt" || return 1
  awk '
    /Function : / { f = $3 }
    f != "" { for (i = 1; i <= NF; i++) if (match($i, /^(LDG\.E\.128|MUFU\.EX2|HMMA\.[0-9]+|HGMMA\.[0-9A-Za-z]+)/)) n[f " " substr($i, RSTART, RLENGTH)]++ }
    END { for (k in n) print n[k], k }' "$TMP/sass.txt" | sort -k2
  local ldg mufu mma line
  ldg=$(grep -c 'LDG\.E\.128' "$TMP/sass.txt")
  mufu=$(grep -c 'MUFU\.EX2' "$TMP/sass.txt")
  mma=$(grep -cE '\b(HMMA|HGMMA)\.' "$TMP/sass.txt")
  line="LDG.E.128 ${ldg}, MUFU.EX2 ${mufu}, HMMA/HGMMA ${mma} instructions"
  ((ldg > 0 && mufu > 0 && mma > 0)) || line="$line -- FAIL: expected each of them in the kernels"
  echo "$line" | tee "$STEP_NOTE"
  [[ $line != *FAIL* ]]
}
export -f sass_check
export TMP
step sass bash -c 'sass_check build/Release/grpo_kernels_native.node'

# compute-sanitizer over the op tests, one worker process so it follows one Node process tree.
# --report-api-errors no: a CUDA call that fails on purpose (the error-path tests) is not an error of
# the kernels; GRPO_KERNELS_SANITIZER=1 skips the deliberate OUT_OF_MEMORY and the 8.6 GB cases.
SAN=$(command -v compute-sanitizer || echo /usr/local/cuda/bin/compute-sanitizer)
# racecheck is the slow one: the tensor-core kernels' files here (shared memory, mbarriers, wgmma), the
# rest at the end (racecheck-rest).
TC_FILES=(test/cuda/ops-lmhead test/cuda/ops-thr)
sanitize() { # step tool vitest-filters...
  local name=$1 tool=$2
  shift 2
  step "$name" env GRPO_KERNELS_SANITIZER=1 "${GATE[@]}" --allow sanitizer --json "$LOGS/$name.json" -- \
    "$SAN" --tool "$tool" --target-processes all --report-api-errors no --error-exitcode 97 \
    "${VITEST[@]}" "$@" --pool=forks --maxWorkers=1 --outputFile.json="$LOGS/$name.json"
}
sanitize memcheck memcheck test/cuda/ops
sanitize racecheck racecheck "${TC_FILES[@]}"

# The NVIDIA Vulkan driver for Dawn: the carried loader, the driver's own ICD manifest.
# The loader and libglvnd: the driver's ICD (libGLX_nvidia) needs libGLdispatch to start.
# Not in a dry run: that would unpack the debs over this machine's /.
if [ "$DRY" != 1 ]; then
  for deb in "$DEV"/debs/*.deb; do [ -e "$deb" ] && dpkg -x "$deb" /; done
  ldconfig 2>/dev/null || true
  for icd in /usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json /usr/share/vulkan/icd.d/nvidia_icd.json \
    /etc/vulkan/icd.d/nvidia_icd.json; do
    if [ -f "$icd" ]; then
      export VK_DRIVER_FILES=$icd VK_ICD_FILENAMES=$icd
      break
    fi
  done
fi
step webgpu-tests env CI=1 "${GATE[@]}" --allow webgpu --json "$LOGS/webgpu-tests.json" -- \
  "${VITEST[@]}" --outputFile.json="$LOGS/webgpu-tests.json" test/webgpu
step goals-webgpu node scripts/gpu/goals.mjs --backend webgpu --only logprobs,policy,lmhead,thr,copy --rows 16384 \
  --lm-rows 1024 "${TINY[@]}"

NCU=$(command -v ncu || echo /usr/local/cuda/bin/ncu)
step ncu "$NCU" --target-processes all -k 'regex:group_advantages|logprobs_fwd|logprobs_bwd|thr_|policy_' -c 80 \
  --metrics gpu__time_duration.sum,dram__throughput.avg.pct_of_peak_sustained_elapsed \
  node scripts/gpu/goals.mjs --backend cuda --only advantages,logprobs,thr,policy --rows 4096 --reps 1 --adv-reps 3 \
  "${TINY[@]}"

# What bounds the logprobs forward: speed-of-light and memory sections of one 4096-row launch.
step ncu-sol "$NCU" --target-processes all -k regex:logprobs_fwd -c 1 --section SpeedOfLight \
  --section MemoryWorkloadAnalysis --section Occupancy --section LaunchStats \
  node scripts/gpu/goals.mjs --backend cuda --only logprobs --rows 4096 --reps 1 "${TINY[@]}"

# What bounds the tensor-core tiles: one launch each, on every tile set the harness step passed
# (harness-paths.txt: `auto`, the compared sets, the waiting ones), of the LM
# head's forward (plain and with entropy; 1024 rows, d 4096, V 151936) and of THR's M, scores and
# rounding pass (each precision mode, 'tf32' only from path 6 on; THR's goal size), through the
# harness: 36 launches with the sets the harness step passes by default, 68 with every set (the dry
# run's ncu stand-in counts them and fails if -c would leave one out; mma.sync's and cp.async-fed
# wgmma's were profiled on 2026-11-27). summarize.mjs tables them per case.
HARN=(bash bench/cuda/harness.sh --lm-rows 1024)
[ "$DRY" = 1 ] && HARN=(env GK_HARNESS=build/emu/harness bash bench/cuda/harness.sh --lm-rows 7 --lm-dim 48
  --lm-vocab 1000 --thr-tokens 40 --thr-d 48 --thr-vocab 24)
# Only the sets that passed in the harness step (if it did not run, those a GPU has verified, or
# NCU_THR_PATHS): a trap would end ncu's process, and with it every profile after it.
LM_PATHS=0,1,2,3,4,5,6,7,8 THR_PATHS=${NCU_THR_PATHS:-0,1,2,3,4,5,6}
[ -f "$LOGS/harness-paths.txt" ] && . "$LOGS/harness-paths.txt"
step ncu-tiles "$NCU" --target-processes all -k 'regex:lm_fwd|thr_scores|thr_m|thr_round' -c 80 --section SpeedOfLight \
  --section ComputeWorkloadAnalysis --section WarpStateStats --section Occupancy --section LaunchStats \
  "${HARN[@]}" --only lmhead,thr --lm-paths "$LM_PATHS" --thr-paths "$THR_PATHS" --reps 1 --warmup 0

# (vitest's --exclude does not reach a project's files: the rest are named one by one.)
REST_FILES=()
for f in test/cuda/ops*.test.ts; do [[ $f == */ops-lmhead* || $f == */ops-thr* ]] || REST_FILES+=("$f"); done
sanitize racecheck-rest racecheck "${REST_FILES[@]}"

finish 0
