#!/usr/bin/env bash
# Prepares what a session with a lent GPU machine carries there (that machine has no Node and no
# network; at most 64 MiB travel per call). Run here, then call the device tool with
#   carry: [".device"], command: "bash scripts/gpu/run.sh", timeout_s: 560
# Writes .device/ (git-ignored):
#   node.xz                the node binary (xz -9)
#   node_modules.tar.xz    the run-time and test dependencies (no linters, no typescript, Dawn for
#                          linux-x64 only)
#   debs/*.deb             the Vulkan loader and libglvnd, for the webgpu backend on NVIDIA's driver
#   addon/                 the native addon built here (npm ci builds it when nvcc is present), xz -9
#   bench/harness.xz       the native benchmark harness (bench/cuda/harness.cu), built here for the
#                          lent GPUs' architecture only (sm_90a, and sm_90 for the units without wgmma)
# and fails, saying so, if .device/ and the files git would send exceed CARRY_LIMIT_MIB (63 of the
# device tool's 64 MiB; the tracked tree is about 3.5 MB of it).
# dist/ (npm run build) is git-ignored too, so it is packed as .device/dist.tar.xz.
set -euo pipefail
cd "$(dirname "$0")/../.."
OUT=.device
mkdir -p "$OUT/debs"

[ -d node_modules ] || npm ci --no-audit --no-fund
npm run build >/dev/null

echo "[gpu-pack] node $(node --version)"
xz -9 -T2 -c "$(command -v node)" >"$OUT/node.xz"

echo "[gpu-pack] node_modules (without biome, typescript, and Dawn for other platforms)"
# From the folder itself: in a git worktree node_modules may be a symlink, which tar would store as one.
NM=$(realpath node_modules)
xform=()
[ "$(basename "$NM")" = node_modules ] || xform=(--transform "s,^$(basename "$NM"),node_modules,")
tar -C "$(dirname "$NM")" "${xform[@]}" -cf - \
  --exclude='node_modules/@biomejs' \
  --exclude='node_modules/typescript' \
  --exclude='node_modules/playwright-core' \
  --exclude='node_modules/onnxruntime-node' \
  --exclude='node_modules/onnxruntime-common' \
  --exclude='node_modules/webgpu/dist/darwin-universal' \
  --exclude='node_modules/webgpu/dist/win32-x64' \
  --exclude='node_modules/webgpu/dist/win32-arm64' \
  --exclude='node_modules/webgpu/dist/linux-arm64' \
  "$(basename "$NM")" | xz -6 -T2 >"$OUT/node_modules.tar.xz"
listing=$(tar -tJf "$OUT/node_modules.tar.xz")
for f in vitest/vitest.mjs webgpu/package.json; do
  grep -qx "node_modules/$f" <<<"$listing" || { echo "[gpu-pack] node_modules.tar.xz lacks node_modules/$f" >&2; exit 1; }
done
tar -cf - dist | xz -6 >"$OUT/dist.tar.xz"

# The addon built here with this machine's nvcc (sm_80, sm_90a and sm_90, cudart linked statically), so the
# GPU minutes are not spent compiling; run.sh builds there only if this one fails to load.
if [ -f build/Release/grpo_kernels_native.node ]; then
  rm -rf "$OUT/addon"
  mkdir -p "$OUT/addon"
  # Mostly GPU code for three architectures: 36 MB, about 6 MB compressed.
  xz -9 -T2 -c build/Release/grpo_kernels_native.node >"$OUT/addon/grpo_kernels_native.node.xz"
  cp build/native-build-status.json "$OUT/addon/"
fi

# The native benchmark harness (bench/cuda/README.md), built here with nvcc for the H100/H200 alone: the
# three architectures of the addon's build made it 9.3 MB compressed, and the carry is capped.
if command -v nvcc >/dev/null || [ -x /usr/local/cuda/bin/nvcc ]; then
  PATH="$PATH:/usr/local/cuda/bin" GPU_ARCHS="90a-real 90-real" bash bench/cuda/build.sh
fi
if [ -x build/bench/harness ]; then
  mkdir -p "$OUT/bench"
  xz -9 -c build/bench/harness >"$OUT/bench/harness.xz"
fi

# NVIDIA's Vulkan ICD (libGLX_nvidia) needs libglvnd's dispatch libraries, absent on the GPU machine.
echo "[gpu-pack] Vulkan loader and libglvnd (amd64)"
lists=$(mktemp -d)
mkdir -p "$lists/partial"
o=(-o APT::Architecture=amd64 -o APT::Architectures=amd64 -o "Dir::State::Lists=$lists")
apt-get "${o[@]}" update -qq
(cd "$OUT/debs" && rm -f ./*.deb && apt-get "${o[@]}" download libvulkan1 libegl1 libglvnd0 libopengl0 libgl1 libglx0 libgles2 >/dev/null)
rm -rf "$lists"

du -ch "$OUT"/* "$OUT"/debs/* | tail -1
# What one call carries: .device/ and the files git sends (tracked, and untracked but not ignored).
device_bytes=$(du -sb "$OUT" | cut -f1)
tree_bytes=$(git ls-files -z -co --exclude-standard | grep -zv '^node_modules$' | xargs -0 cat 2>/dev/null | wc -c)
limit=$((${CARRY_LIMIT_MIB:-63} * 1048576))
total=$((device_bytes + tree_bytes))
echo "[gpu-pack] carry: .device $((device_bytes / 1048576)) MiB + tree $((tree_bytes / 1024)) KiB = $((total / 1048576)) MiB of $((limit / 1048576))"
if ((total > limit)); then
  echo "[gpu-pack] FAIL: the carry exceeds ${CARRY_LIMIT_MIB:-63} MiB; the device tool would refuse it" >&2
  exit 1
fi
