#!/usr/bin/env bash
# CI for the npm package as users install it (issue 14, docs/install.md). Called by .ci/run after
# scripts/ci-native.sh, whose CUDA build (static C++ runtime, build/Release) becomes the prebuilt addon:
#   1. npm pack: prepack (scripts/prebuild.mjs) checks that addon (it loads, CUDA sm_80 + sm_90 + PTX
#      compute_90, only glibc ≥ 2.34 needed) and puts it in prebuilds/linux-x64/; the tarball must stay
#      ≤ 10 MB and carry what docs/install.md says.
#   2. Two scratch projects install the tarball with install scripts disabled and with nvcc, cmake and
#      every C/C++ compiler hidden from PATH: one without optional dependencies, one that also depends
#      on `webgpu`. In each, scripts/ci-package-check.mjs checks the backends and `auto`'s order, and the
#      README's quick example, `npx grpo-kernels info` and `bench --quick` run.
#   GRPO_KERNELS_PREBUILT_FROM=file  the addon to pack (default build/Release/grpo_kernels_native.node;
#                                    set it to "" to let prepack build one, about 2 minutes)
set -euo pipefail
cd "$(dirname "$0")/.."
repo="$PWD"
t0=$(date +%s)
work="$(mktemp -d /tmp/grpo-package.XXXXXX)"
trap 'rm -rf "$work"' EXIT

export GRPO_KERNELS_PREBUILT_FROM="${GRPO_KERNELS_PREBUILT_FROM-$repo/build/Release/grpo_kernels_native.node}"
echo "== package: npm pack (prepack checks the prebuilt addon: ${GRPO_KERNELS_PREBUILT_FROM:-a fresh build})"
# The lifecycle scripts print to stdout too: the JSON is the last top-level array.
npm pack --pack-destination "$work" --json >"$work/pack.out"
node -e 'const t = require("fs").readFileSync(process.argv[1], "utf8"); process.stdout.write(t.slice(t.lastIndexOf("\n[\n") + 1))' \
  "$work/pack.out" >"$work/pack.json"
node -e '
  const [p] = JSON.parse(require("fs").readFileSync(process.argv[1], "utf8"));
  const files = p.files.map((f) => f.path);
  const mb = (b) => (b / 1e6).toFixed(2) + " MB";
  console.log(`   ${p.filename}: ${mb(p.size)} packed, ${mb(p.unpackedSize)} unpacked, ${files.length} files`);
  const bad = [];
  if (p.size > 10e6) bad.push(`packed size ${mb(p.size)} > 10 MB`);
  for (const f of ["prebuilds/linux-x64/grpo_kernels_native.node", "prebuilds/linux-x64/build.json", "dist/index.js", "shaders/logprobs.wgsl", "README.md", "docs/install.md"])
    if (!files.includes(f)) bad.push(`missing ${f}`);
  const scripts = new Set(["scripts/build-native.mjs", "scripts/runtime-dir.mjs", "scripts/runtime-dir.d.mts", "scripts/setup-vulkan.sh"]);
  for (const f of files)
    if (/^(build|test|tools|bench|\.cache|node_modules)\//.test(f) || (f.startsWith("scripts/") && !scripts.has(f))) bad.push(`carries ${f}`);
  const addon = p.files.find((f) => f.path.endsWith(".node"));
  console.log(`   prebuilt addon ${mb(addon.size)} unpacked; the rest ${mb(p.unpackedSize - addon.size)}`);
  if (bad.length) { console.error("   " + bad.join("\n   ")); process.exit(1); }
' "$work/pack.json"
tarball="$work/$(node -p 'JSON.parse(require("fs").readFileSync(process.argv[1], "utf8"))[0].filename' "$work/pack.json")"
test ! -e prebuilds || { echo "postpack left prebuilds/ in the repository"; exit 1; }

# A PATH with every tool of the current one except compilers, linkers, cmake and the CUDA toolkit.
shim="$work/bin"
mkdir -p "$shim"
hidden='^(nvcc|ptxas|nvlink|fatbinary|cudafe.*|cicc|cmake|ctest|cpack|ccmake|cc|c\+\+|cpp|gcc.*|g\+\+.*|clang.*|ld|ld\..*|make|gmake|ninja|x86_64-linux-gnu-.*)$'
IFS=: read -ra dirs <<<"$PATH"
for d in "${dirs[@]}"; do
  case "$d" in */cuda*) continue ;; esac
  [ -d "$d" ] || continue
  for f in "$d"/*; do
    n="${f##*/}"
    [ -x "$f" ] && [ ! -d "$f" ] && [ ! -e "$shim/$n" ] && ! [[ "$n" =~ $hidden ]] && ln -s "$f" "$shim/$n"
  done
done
for t in nvcc cmake cc c++ gcc g++ make ld; do
  if PATH="$shim" command -v "$t" >/dev/null; then echo "the scratch PATH still has $t"; exit 1; fi
done

scratch() { # name, extra npm install arguments...
  local dir="$work/$1"
  shift
  mkdir -p "$dir"
  printf '{ "name": "scratch", "private": true, "type": "module" }\n' >"$dir/package.json"
  (cd "$dir" && PATH="$shim" npm install --ignore-scripts --no-audit --no-fund --prefer-offline "$@" >/dev/null)
  cp scripts/ci-package-check.mjs "$dir/"
}

run_checks() { # name, mode
  local dir="$work/$1"
  (
    cd "$dir"
    export PATH="$shim"
    node ci-package-check.mjs "$2"
    echo "   the README's quick example (examples/quickstart.ts) on cpu"
    # tsx from the repository (a tool, not part of the install: the scratch project has no --omit'd esbuild)
    node --import "$repo/node_modules/tsx/dist/loader.mjs" node_modules/grpo-kernels/examples/quickstart.ts cpu \
      >"$work/$1-quickstart.log"
    grep -q 'backend: cpu' "$work/$1-quickstart.log"
    echo "   npx grpo-kernels info"
    npx grpo-kernels info >"$work/$1-info.log" 2>/dev/null
    grep -E '^(cpu|cuda) ' "$work/$1-info.log" | sed 's/^/     /'
    grep -q 'addon: prebuilt linux-x64' "$work/$1-info.log"
    echo "   npx grpo-kernels bench --quick --backend cpu"
    npx grpo-kernels bench --quick --backend cpu --no-progress >"$work/$1-bench.log" 2>&1
    grep -c '^cpu ' "$work/$1-bench.log" | sed 's/^/     rows: /'
  )
}

echo "== package: scratch project, no optional dependencies (no webgpu), no compiler, no install scripts"
scratch plain --omit=optional "$tarball"
test ! -e "$work/plain/node_modules/webgpu"
test ! -e "$work/plain/node_modules/cmake-js"
run_checks plain plain

echo "== package: scratch project that also depends on webgpu (lavapipe for the adapter)"
scratch withwebgpu "$tarball" webgpu
VK_ICD_FILENAMES="$repo/.cache/vulkan/lvp_icd.json" run_checks withwebgpu webgpu
echo "== package: $(($(date +%s) - t0)) s"
