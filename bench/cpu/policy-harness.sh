#!/usr/bin/env bash
# Builds and runs bench/cpu/policy-harness.cc (native/cpu/policy.cc's two builds, flags as CMakeLists.txt
# gives them) into build/bench-cpu/. Arguments go to the harness: [avx2|portable] [mean length].
set -euo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
out="$root/build/bench-cpu"
mkdir -p "$out"
flags=(-O3 -fno-math-errno -std=gnu++17 "-I$root/native" -DGK_CPU_HAVE_AVX2=1)
c++ "${flags[@]}" -DGK_CPU_ISA=avx2 -mavx2 -mfma -mf16c -c "$root/native/cpu/policy.cc" -o "$out/policy-avx2.o"
c++ "${flags[@]}" -DGK_CPU_ISA=portable -c "$root/native/cpu/policy.cc" -o "$out/policy-portable.o"
c++ -O2 -std=gnu++17 "-I$root/native" -DGK_CPU_HAVE_AVX2=1 "$root/bench/cpu/policy-harness.cc" \
  "$out/policy-avx2.o" "$out/policy-portable.o" -o "$out/policy-harness"
"$out/policy-harness" "$@"
