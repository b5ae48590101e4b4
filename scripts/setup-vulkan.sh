#!/usr/bin/env bash
# Software Vulkan for the WebGPU backend's tests on machines without a GPU (CI, dev boxes).
#
# Dawn (npm `webgpu`) rejects Debian bookworm's own lavapipe (Mesa 22), so this fetches Mesa 25's
# lavapipe from bookworm-backports WITHOUT touching the system's apt sources: a private sources
# list and private state/cache folders under .cache/vulkan/apt, `apt-get download`, `dpkg -x` into
# .cache/vulkan/root, and an ICD JSON naming libvulkan_lvp.so by absolute path.
#
# Outputs (all under <repo>/.cache/vulkan/, git-ignored):
#   lvp_icd.json   the ICD manifest; the webgpu backend finds it by itself when VK_ICD_FILENAMES
#                  is unset (src/backends/webgpu/gpu.ts, Node only), so nothing needs exporting;
#   env.sh         `export VK_ICD_FILENAMES=...` for anything else (vulkaninfo, other tools), and a
#                  valid XDG_RUNTIME_DIR when the shell has none (scripts/runtime-dir.mjs: without one,
#                  lavapipe prints "error: XDG_RUNTIME_DIR is invalid or not set"; the tests and .ci/run
#                  set it themselves).
# Also prints the export line on stdout (last line).
#
# Needs root (apt-get install of the loader libvulkan1 and libllvm15) and the Debian archive
# already configured in /etc/apt/sources.list.d/debian.sources. Idempotent: a second run with
# the cache in place only re-checks the installed packages. Fails loudly on any error.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT="$(pwd)"
CACHE="$ROOT/.cache/vulkan"
EXTRACT="$CACHE/root"
ICD="$CACHE/lvp_icd.json"
APTDIR="$CACHE/apt"

log() { echo "[setup-vulkan] $*" >&2; }
die() { echo "[setup-vulkan] ERROR: $*" >&2; exit 1; }

[ "$(uname -s)" = Linux ] || die "Linux only (software Vulkan via Debian's Mesa lavapipe)"
command -v apt-get >/dev/null || die "apt-get not found: this script expects Debian bookworm"
command -v dpkg >/dev/null || die "dpkg not found"
SUDO=""
if [ "$(id -u)" != 0 ]; then
  command -v sudo >/dev/null || die "must run as root (or with sudo available) to apt-get install libvulkan1"
  SUDO="sudo"
fi
ARCH="$(dpkg --print-architecture)"

# 1. The Vulkan loader and the LLVM lavapipe links against, from the system's own suites.
need=()
for p in libvulkan1 libllvm15; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || need+=("$p")
done
if [ ${#need[@]} -gt 0 ]; then
  log "apt-get install ${need[*]}"
  $SUDO apt-get update -qq >&2 || die "apt-get update failed"
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${need[@]}" >&2 \
    || die "apt-get install ${need[*]} failed"
fi

# 2. Mesa's lavapipe from bookworm-backports, extracted into the project's cache.
LVP="$(find "$EXTRACT" -name libvulkan_lvp.so -print -quit 2>/dev/null || true)"
if [ -z "$LVP" ]; then
  SRC=/etc/apt/sources.list.d/debian.sources
  [ -r "$SRC" ] || die "$SRC not found: cannot tell which Debian archive to use"
  URI="$(awk '/^URIs:/ { for (i = 2; i <= NF; i++) if ($i ~ /\/debian\/?$/) { print $i; exit } }' "$SRC")"
  [ -n "$URI" ] || die "no .../debian archive URI in $SRC"
  KEYRING="$(awk '/^Signed-By:/ { print $2; exit }' "$SRC")"
  [ -n "$KEYRING" ] || KEYRING=/usr/share/keyrings/debian-archive-keyring.gpg
  log "fetching mesa-vulkan-drivers from $URI bookworm-backports"
  rm -rf "$APTDIR"
  mkdir -p "$APTDIR/lists/partial" "$APTDIR/archives/partial" "$APTDIR/debs"
  printf 'deb [signed-by=%s] %s bookworm-backports main\n' "$KEYRING" "$URI" >"$APTDIR/sources.list"
  APTOPTS=(
    -o "Dir::Etc::SourceList=$APTDIR/sources.list"
    -o "Dir::Etc::SourceParts=/dev/null"
    -o "Dir::State::Lists=$APTDIR/lists"
    -o "Dir::State::status=/var/lib/dpkg/status"
    -o "Dir::Cache=$APTDIR/cache"
    -o "Dir::Cache::archives=$APTDIR/archives"
    -o "APT::Get::List-Cleanup=0"
    -o "Debug::NoLocking=1"
    -o "APT::Sandbox::User=$(id -un)"
  )
  mkdir -p "$APTDIR/cache"
  apt-get "${APTOPTS[@]}" update -qq >&2 || die "apt-get update of the private bookworm-backports list failed"
  # The newest version is the backport (the private list holds bookworm-backports only).
  (cd "$APTDIR/debs" && apt-get "${APTOPTS[@]}" download "mesa-vulkan-drivers:$ARCH" >&2) \
    || die "apt-get download mesa-vulkan-drivers from bookworm-backports failed"
  DEB="$(find "$APTDIR/debs" -name 'mesa-vulkan-drivers_*.deb' -print -quit)"
  [ -n "$DEB" ] || die "mesa-vulkan-drivers .deb not found after download"
  log "extracting $(basename "$DEB")"
  rm -rf "$EXTRACT"
  mkdir -p "$EXTRACT"
  dpkg -x "$DEB" "$EXTRACT" || die "dpkg -x $DEB failed"
  LVP="$(find "$EXTRACT" -name libvulkan_lvp.so -print -quit)"
  [ -n "$LVP" ] || die "libvulkan_lvp.so not in $(basename "$DEB")"
  dpkg-deb -f "$DEB" Depends >"$CACHE/depends.txt" || die "cannot read the Depends of $(basename "$DEB")"
  rm -rf "$APTDIR/lists" "$APTDIR/cache" "$APTDIR/archives"
fi

# 3. Every library lavapipe needs must resolve. On a machine missing some, install the backport
#    package's declared dependencies (names only, first of each alternative) from the system's
#    own suites, then check again.
unresolved() { ldd "$LVP" | awk '/not found/ { print $1 }' || true; }
if command -v ldd >/dev/null; then
  missing="$(unresolved)"
  if [ -n "$missing" ] && [ -s "$CACHE/depends.txt" ]; then
    log "lavapipe needs: $missing; installing the package's dependencies"
    deps="$(tr ',' '\n' <"$CACHE/depends.txt" | sed 's/|.*//; s/(.*)//; s/:any//; s/ //g' | grep -v '^$' | sort -u)"
    todo=()
    for p in $deps; do
      dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || todo+=("$p")
    done
    if [ ${#todo[@]} -gt 0 ]; then
      $SUDO apt-get update -qq >&2 || die "apt-get update failed"
      DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${todo[@]}" >&2 \
        || die "apt-get install ${todo[*]} failed"
    fi
    missing="$(unresolved)"
  fi
  [ -z "$missing" ] || die "libvulkan_lvp.so needs libraries that are not installed: $missing"
fi

# 4. The ICD manifest, by absolute path, and an env file to source.
cat >"$ICD" <<JSON
{
  "file_format_version": "1.0.1",
  "ICD": { "library_path": "$LVP", "api_version": "1.3.0" }
}
JSON
{
  echo "export VK_ICD_FILENAMES=$ICD"
  printf 'eval "$(node %q)"\n' "$ROOT/scripts/runtime-dir.mjs"
} >"$CACHE/env.sh"
log "lavapipe ready: $LVP"
echo "export VK_ICD_FILENAMES=$ICD"
