#!/usr/bin/env node
// The package's `prepack` script: builds the prebuilt native addon the npm tarball carries for
// linux-x64 (prebuilds/linux-x64/grpo_kernels_native.node), with this machine's toolchain, and checks it
// before it is packed (docs/install.md):
//   - a clean build (build/prebuilt/) with CUDA for sm_80 and sm_90 machine code + compute_90 PTX,
//     cudart and libstdc++ linked statically (GRPO_STATIC_RUNTIME=ON);
//   - stripped of its host symbols (the GPU code keeps its line tables);
//   - it loads in a fresh Node process, buildInfo() says CUDA and the cpu kernels, with the promised
//     architectures; its fat binaries carry exactly sm_80 and sm_90 ELF and compute_90 PTX; it needs
//     no library beyond glibc's and libgcc_s, and glibc ≤ 2.34 symbols (so only the NVIDIA driver, no
//     CUDA toolkit and no newer libstdc++, on the user's machine).
// Writes prebuilds/linux-x64/build.json (what was built, with what, for which glibc). Any failed check
// fails the pack: a tarball never ships an addon that was not checked.
//
//   GRPO_KERNELS_PREBUILT_FROM=file  check and ship this already-built file instead of building (a
//                                    release machine that built it separately); the same checks apply
import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { copyFileSync, mkdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { compareVersions, dynamicNeeds, fatbinEntries } from './lib/native-check.mjs';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const key = `${process.platform}-${process.arch}`;
const ARCHS = '80-real;90a-real;90';
// sm_90a's machine code is an `elf sm_90` entry too (its arch-specific flag aside).
const WANT_GPU_CODE = ['elf sm_80', 'elf sm_90', 'ptx compute_90'];
// glibc's own libraries: everything else (libstdc++, libgcc_s, libcudart) must be linked in.
const ALLOWED_NEEDED = /^(libc|libm|libdl|libpthread|librt|libgcc_s|ld-linux-x86-64)\.so\.[0-9]+$/;
// The newest glibc it may need (docs/install.md promises it): Ubuntu 22.04 has 2.35, RHEL 9 2.34.
const GLIBC_FLOOR = '2.34';

function fail(why) {
  console.error(`prebuild: ${why}`);
  process.exit(1);
}

function tool(cmd, args) {
  const r = spawnSync(cmd, args, { encoding: 'utf8' });
  return r.status === 0 ? `${r.stdout}${r.stderr}` : undefined;
}

if (key !== 'linux-x64') fail(`the prebuilt addon is built on linux-x64 only; this is ${key}`);
const nvcc = tool('nvcc', ['--version']);
if (nvcc === undefined) fail('nvcc not found: the prebuilt addon must carry the CUDA kernels');

const buildDir = join(root, 'build', 'prebuilt');
let built = process.env.GRPO_KERNELS_PREBUILT_FROM;
if (!built) {
  rmSync(buildDir, { recursive: true, force: true });
  const env = { ...process.env, GRPO_KERNELS_BUILD_DIR: buildDir, GRPO_STATIC_RUNTIME: 'ON' };
  env.GRPO_KERNELS_REQUIRE_NATIVE = '1';
  env.CMAKE_CUDA_ARCHITECTURES = ARCHS;
  delete env.GRPO_WITH_CUDA;
  delete env.GRPO_KERNELS_SKIP_NATIVE;
  console.log(`prebuild: building the addon for ${key} (CUDA ${ARCHS}, static C++ runtime) in ${buildDir}`);
  const r = spawnSync(process.execPath, [join(root, 'scripts', 'build-native.mjs')], {
    env,
    stdio: 'inherit',
  });
  if (r.status !== 0) fail(`the build failed (log: ${join(buildDir, 'native-build.log')})`);
  built = join(buildDir, 'Release', 'grpo_kernels_native.node');
}

const outDir = join(root, 'prebuilds', key);
const out = join(outDir, 'grpo_kernels_native.node');
rmSync(outDir, { recursive: true, force: true });
mkdirSync(outDir, { recursive: true });
copyFileSync(built, out);
if (tool('strip', ['--strip-unneeded', out]) === undefined) fail(`strip --strip-unneeded ${out} failed`);

// It loads in a fresh process and says what it is.
const probe = spawnSync(
  process.execPath,
  [
    '-e',
    'const m = require(process.argv[1]); console.log(JSON.stringify({ build: m.buildInfo(), cpu: m.cpuInfo?.(), enums: Object.keys(m.enums?.() ?? {}).length }))',
    out,
  ],
  { encoding: 'utf8' },
);
if (probe.status !== 0) fail(`the prebuilt addon does not load: ${probe.stderr || probe.signal}`);
const info = JSON.parse(probe.stdout);
if (info.build.cuda !== true) fail(`buildInfo() says no CUDA: ${info.build.reason}`);
if (info.build.cpu !== true || info.cpu === undefined) fail('buildInfo() says no cpu kernels');
if (info.build.archs !== ARCHS.replaceAll(';', ','))
  fail(`architectures ${info.build.archs}, promised ${ARCHS}`);
if (info.enums === 0) fail('enums() is empty');

// The GPU code it carries, read from the file itself.
const gpu = fatbinEntries(out);
const kinds = Object.keys(gpu).sort();
if (JSON.stringify(kinds) !== JSON.stringify([...WANT_GPU_CODE].sort())) {
  fail(`GPU code ${JSON.stringify(gpu)}, promised ${WANT_GPU_CODE.join(', ')}`);
}
const units = new Set(Object.values(gpu));
if (units.size !== 1)
  fail(`not every CUDA translation unit carries every architecture: ${JSON.stringify(gpu)}`);

// What it needs from the machine.
const needs = dynamicNeeds(out);
const extra = needs.needed.filter((n) => !ALLOWED_NEEDED.test(n));
if (extra.length > 0) fail(`it needs ${extra.join(', ')} (only glibc's libraries and libgcc_s are allowed)`);
if (compareVersions(needs.glibc, GLIBC_FLOOR) > 0)
  fail(`it needs glibc ${needs.glibc}; the promise is ${GLIBC_FLOOR} (native/compat/glibc.cc)`);
if (needs.glibcxx) fail('it references GLIBCXX symbol versions (libstdc++ must be linked statically)');

const bytes = statSync(out).size;
const manifest = {
  platform: key,
  file: 'grpo_kernels_native.node',
  bytes,
  sha256: createHash('sha256').update(readFileSync(out)).digest('hex'),
  napiVersion: 8,
  cuda: {
    archs: info.build.archs,
    gpuCode: WANT_GPU_CODE,
    translationUnits: [...units][0],
    runtime: 'cudart static',
    runtimeVersion: info.build.cudaRuntimeVersion,
    needs: 'an NVIDIA driver supporting this CUDA runtime version',
  },
  cpu: { kernels: 'portable + avx2 (chosen at run time)' },
  needs: { glibc: `>= ${needs.glibc}`, libraries: needs.needed },
  toolchain: {
    nvcc: /release [^\n]*/.exec(nvcc)?.[0] ?? 'unknown',
    cxx: tool('c++', ['--version'])?.split('\n')[0] ?? 'unknown',
    node: process.version,
  },
  date: new Date().toISOString(),
};
writeFileSync(join(outDir, 'build.json'), `${JSON.stringify(manifest, null, 2)}\n`);
console.log(
  `prebuild: ${out} checked: ${(bytes / 2 ** 20).toFixed(1)} MiB, ${WANT_GPU_CODE.join(' + ')} in ${manifest.cuda.translationUnits} units, ` +
    `glibc >= ${needs.glibc}, needs ${needs.needed.join(' ')}`,
);
