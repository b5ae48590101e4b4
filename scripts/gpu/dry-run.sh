#!/usr/bin/env bash
# The GPU call rehearsed here, without a GPU. Copies what the device tool sends (the tracked files and
# the untracked ones git does not ignore) and .device/ (scripts/gpu/pack.sh) into a scratch folder, and
# runs `DRY_RUN=1 bash scripts/gpu/run.sh` there: node, node_modules and dist unpack from .device/ as
# on the GPU machine (the carried node runs: CARRIED_NODE=1), the CUDA emulator stands in for the GPU
# (build/emu, built if missing), scripts/gpu/dry/ for nvidia-smi, cuobjdump, compute-sanitizer and
# ncu, and the webgpu steps use lavapipe when scripts/setup-vulkan.sh has set it up. Takes 3-5 minutes
# on 2 cores.
#   bash scripts/gpu/dry-run.sh            every step; exit status as run.sh's (0: all ok)
#   bash scripts/gpu/dry-run.sh --no-gpu   nvidia-smi sees no GPU: run.sh must stop at once (exit 2)
# ONLY, DEADLINE_S and OUT (default <scratch>/out) pass through. The scratch folder is kept (its path
# is printed) for the logs; it holds about 200 MB once node_modules is unpacked.
set -euo pipefail
cd "$(dirname "$0")/../.."
ROOT=$PWD
[ -d .device ] || { echo "dry-run: no .device/ here: bash scripts/gpu/pack.sh first" >&2; exit 1; }
if [ ! -f build/emu/grpo_kernels_native.node ] || [ ! -x build/emu/harness ]; then
  node scripts/build-emu.mjs --harness --require
fi
SIM=$(mktemp -d /tmp/gpu-dry.XXXXXX)
echo "[dry-run] scratch copy: $SIM"
# A worktree's node_modules is an untracked symlink, which the device tool would send as a link; the
# main checkout's is an ignored folder, which it does not send. Leave it out either way.
git ls-files -z -co --exclude-standard | grep -zv '^node_modules$' |
  tar -cf - --null --ignore-failed-read -T - | tar -xf - -C "$SIM"
cp -a .device "$SIM/"
mkdir -p "$SIM/build/emu"
cp build/emu/grpo_kernels_native.node build/emu/harness "$SIM/build/emu/"
[ -f .cache/vulkan/lvp_icd.json ] && export VK_ICD_FILENAMES=$ROOT/.cache/vulkan/lvp_icd.json
export DRY_RUN=1 CARRIED_NODE=1 OUT=${OUT:-$SIM/out}
[ "${1:-}" = --no-gpu ] && export DRY_NO_GPU=1
cd "$SIM"
rc=0
bash scripts/gpu/run.sh || rc=$?
echo "[dry-run] run.sh exited $rc; logs in $OUT (steps.txt, logs.tar.xz)"
exit "$rc"
