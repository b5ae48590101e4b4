#!/usr/bin/env bash
# Installs Debian's headless-capable Chromium (the `chromium` package, /usr/bin/chromium) for the
# browser test (test/browser/webgpu-browser.test.ts). Root, Debian bookworm. Idempotent: when
# /usr/bin/chromium exists it only prints its version. Playwright's own browser download is not
# used; the test drives this Chromium through playwright-core (executablePath).
set -euo pipefail

if [ -x /usr/bin/chromium ]; then
  echo "chromium already installed: $(/usr/bin/chromium --version 2>/dev/null || echo '?')"
  exit 0
fi
if [ "$(id -u)" -ne 0 ]; then
  echo "setup-chromium.sh: needs root to apt-get install chromium" >&2
  exit 1
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends chromium fonts-liberation >/dev/null
echo "chromium installed: $(/usr/bin/chromium --version 2>/dev/null || echo '?')"
