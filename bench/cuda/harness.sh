#!/usr/bin/env bash
# Runs the native benchmark harness on the GPU machine (scripts/gpu/run.sh, step "harness"): the
# binary built here by bench/cuda/build.sh, found at build/bench/harness (carried as build/bench) or
# packed by scripts/gpu/pack.sh as .device/bench/harness.xz (or uncompressed, .device/bench/harness);
# when none is there, it is built on the spot for sm_90a and sm_90 (nvcc on that machine; about 15 s).
# Arguments go to the harness (bench/cuda/README.md).
set -euo pipefail
cd "$(dirname "$0")/../.."
exe=build/bench/harness
# GK_HARNESS: another build, e.g. the emulator's (build/emu/harness) in scripts/gpu/run.sh's dry run.
if [ -n "${GK_HARNESS:-}" ]; then
  [ -x "$GK_HARNESS" ] || { echo "[harness] GK_HARNESS=$GK_HARNESS is not an executable" >&2; exit 1; }
  exec "$GK_HARNESS" "$@"
fi
if [ ! -x "$exe" ]; then
  mkdir -p "$(dirname "$exe")"
  if [ -f .device/bench/harness.xz ]; then
    xz -dc .device/bench/harness.xz >"$exe" && chmod +x "$exe"
  elif [ -f .device/bench/harness ]; then
    install -m 755 .device/bench/harness "$exe"
  fi
fi
if [ ! -x "$exe" ]; then
  echo "[harness] no carried binary: building it here for ${GPU_ARCHS:-90a-real 90}" >&2
  export PATH="$PATH:/usr/local/cuda/bin"
  GPU_ARCHS=${GPU_ARCHS:-90a-real 90} bash bench/cuda/build.sh >&2
fi
exec "$exe" "$@"
