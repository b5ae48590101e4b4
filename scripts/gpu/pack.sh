#!/usr/bin/env bash
# Prepares what a session with a lent GPU machine carries there (that machine has no Node and no
# network; at most 64 MiB travel per call). Run here, then call the device tool with
#   carry: [".device"], command: "bash scripts/gpu/run.sh"
# Writes .device/ (git-ignored):
#   node.xz                the node binary (xz -9)
#   node_modules.tar.xz    the run-time and test dependencies (no linters, no typescript, Dawn for
#                          linux-x64 only)
#   debs/libvulkan1_*.deb  the Vulkan loader, for the webgpu backend on the NVIDIA Vulkan driver
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
tar -cf - \
  --exclude='node_modules/@biomejs' \
  --exclude='node_modules/typescript' \
  --exclude='node_modules/webgpu/dist/darwin-universal' \
  --exclude='node_modules/webgpu/dist/win32-x64' \
  --exclude='node_modules/webgpu/dist/win32-arm64' \
  --exclude='node_modules/webgpu/dist/linux-arm64' \
  node_modules | xz -6 -T2 >"$OUT/node_modules.tar.xz"
tar -cf - dist | xz -6 >"$OUT/dist.tar.xz"

echo "[gpu-pack] Vulkan loader (libvulkan1, amd64)"
lists=$(mktemp -d)
mkdir -p "$lists/partial"
o=(-o APT::Architecture=amd64 -o APT::Architectures=amd64 -o "Dir::State::Lists=$lists")
apt-get "${o[@]}" update -qq
(cd "$OUT/debs" && rm -f ./*.deb && apt-get "${o[@]}" download libvulkan1 >/dev/null)
rm -rf "$lists"

du -ch "$OUT"/* "$OUT"/debs/* | tail -1
