#!/usr/bin/env node
// Builds the CUDA emulator addon (docs/cuda.md, "Emulated CUDA"): the cuda backend's glue and device
// runtime (native/addon.cc, ops_cuda.cc, runtime/) and the real native/cuda/*.cu kernels, compiled as
// plain C++ for the CPU, with tools/cuda-emu/cuda_emu.h force-included and tools/cuda-emu/emu_runtime.cc
// standing in for the CUDA runtime. The tests load it through
// GRPO_KERNELS_NATIVE_PATH (vitest project "cuda-emu") to run every CUDA test on a machine without a
// GPU. Test-only: it is never what the package loads, and it proves logic, not GPU behaviour or speed.
//
//   node scripts/build-emu.mjs [--require] [--asan | --coverage] [--quiet]
//     --require  a missing CUDA toolkit (its headers) or a failed build exits 1, and warnings are
//                errors (CI); otherwise it exits 0
//     --asan     AddressSanitizer build into build/emu-asan/ (load it with libasan preloaded)
//     --coverage gcov build into build/emu-cov/ (which kernel lines the cuda tests execute)
//     --harness  also build bench/cuda/harness.cu (the native benchmark) into <out>/harness, for a
//                dry run with tiny sizes (bench/cuda/README.md)
//
// Each .cu is copied to build/emu[-asan]/gen/<name>.cc with every `kernel<<<g, b, s, st>>>(args)`
// rewritten to `::gkemu::launch("kernel", kernel, g, b, s, st)(args)` and a #line directive, so
// compiler messages name the original file and line. Only changed inputs are recompiled.
import { spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { cpus } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const args = new Set(process.argv.slice(2));
const requireBuild = args.has('--require');
const asan = args.has('--asan');
const coverage = args.has('--coverage'); // gcov line counts of the kernels (build/emu-cov)
const quiet = args.has('--quiet'); // say nothing when nothing was recompiled (vitest's global setup)
const harness = args.has('--harness'); // also bench/cuda/harness.cu → <out>/harness
const out = join(root, 'build', asan ? 'emu-asan' : coverage ? 'emu-cov' : 'emu');

// build/emu/emu-build-status.json: what the last build did (test/cuda/helpers.ts quotes its reason).
function record(ok, reason) {
  mkdirSync(out, { recursive: true });
  writeFileSync(join(out, 'emu-build-status.json'), `${JSON.stringify({ ok, reason })}\n`);
}

function stop(reason) {
  record(false, reason);
  console.log(`grpo-kernels: CUDA emulator not built: ${reason}`);
  process.exit(requireBuild ? 1 : 0);
}

function cudaInclude() {
  const candidates = [];
  for (const v of ['CUDA_HOME', 'CUDA_PATH'])
    if (process.env[v]) candidates.push(join(process.env[v], 'include'));
  for (const dir of (process.env.PATH ?? '').split(':')) {
    if (dir && existsSync(join(dir, 'nvcc'))) candidates.push(join(dir, '..', 'include'));
  }
  candidates.push('/usr/local/cuda/include');
  return candidates.find((d) => existsSync(join(d, 'cuda_runtime.h')) && existsSync(join(d, 'cuda_bf16.h')));
}

const cudaInc = cudaInclude();
if (!cudaInc)
  stop('no CUDA toolkit headers (cuda_runtime.h) found via CUDA_HOME, nvcc on PATH or /usr/local/cuda');
const req = createRequire(join(root, 'package.json'));
const napiInc = req('node-api-headers').include_dir;
const addonApiInc = req('node-addon-api').include.replace(/"/g, '');

// kernel<<<config>>>( → ::gkemu::launch("kernel", kernel, config)(   (one line, as every launch site is)
const LAUNCH = /\b([A-Za-z_]\w*(?:<[\w:, ]*>)?)\s*<<<(.*?)>>>\s*\(/g;
export function rewriteLaunches(src) {
  return src.replace(LAUNCH, (_m, kernel, config) => `::gkemu::launch("${kernel}", ${kernel}, ${config})(`);
}

const cuDir = join(root, 'native', 'cuda');
const genDir = join(out, 'gen');
const objDir = join(out, 'obj');
mkdirSync(genDir, { recursive: true });
mkdirSync(objDir, { recursive: true });

// The cuda backend's glue and device runtime (no cpu backend: addon.cc without GRPO_WITH_CPU), the
// emulated CUDA runtime, then the kernels.
const units = [
  join(root, 'native', 'addon.cc'),
  join(root, 'native', 'ops_cuda.cc'),
  join(root, 'native', 'runtime', 'jobs.cc'),
  join(root, 'native', 'runtime', 'cuda_device.cc'),
  join(root, 'tools', 'cuda-emu', 'emu_runtime.cc'),
];
const cuSources = readdirSync(cuDir)
  .filter((n) => n.endsWith('.cu'))
  .map((n) => join(cuDir, n));
// The emulator's own self-test (an executable beside the addon).
const selftestSrc = join(root, 'tools', 'cuda-emu', 'selftest.cu');
const harnessSrc = join(root, 'bench', 'cuda', 'harness.cu');
for (const srcPath of [...cuSources, selftestSrc, ...(harness ? [harnessSrc] : [])]) {
  const f = srcPath.split('/').pop();
  const text = rewriteLaunches(readFileSync(srcPath, 'utf8'));
  if (text.includes('<<<'))
    stop(`${f}: a launch the rewrite does not understand (keep each <<<...>>>( on one line)`);
  const gen = join(genDir, f.replace(/\.cu$/, '.cc'));
  const body = `#line 1 "${srcPath}"\n${text}`;
  if (!existsSync(gen) || readFileSync(gen, 'utf8') !== body) writeFileSync(gen, body);
  units.push(gen);
}

const headers = [
  ...readdirSync(cuDir)
    .filter((n) => n.endsWith('.cuh'))
    .map((n) => join(cuDir, n)),
  ...[
    'args.h',
    'device_wrap.h',
    'enums.h',
    'enum_values.h',
    'policy_args.h',
    'ops.h',
    'runtime/jobs.h',
    'runtime/cuda_device.h',
  ].map((h) => join(root, 'native', h)),
  join(root, 'tools', 'cuda-emu', 'cuda_emu.h'),
];
const newestHeader = Math.max(
  ...headers.map((h) => statSync(h).mtimeMs),
  statSync(fileURLToPath(import.meta.url)).mtimeMs,
);

const flags = [
  '-std=c++17',
  '-O2',
  '-march=native', // inline fma and exp2 (this build only ever runs where it is built)
  '-g',
  '-fPIC',
  '-fno-strict-aliasing', // the kernels pun through reinterpret_cast, as CUDA code does
  '-Wall',
  '-Wno-strict-aliasing',
  '-Wno-unknown-pragmas',
  '-Wno-unused-function',
  '-Wno-psabi', // CUtensorMap (128-byte aligned) passed by value, as __grid_constant__ kernel parameters are
  '-include',
  join(root, 'tools', 'cuda-emu', 'cuda_emu.h'),
  '-DGK_CUDA_EMU=1',
  '-DGRPO_WITH_CUDA=1',
  '-DGRPO_CUDA_ARCHS="emulated"',
  '-DNAPI_VERSION=8',
  '-DNODE_ADDON_API_DISABLE_DEPRECATED',
  '-DNAPI_CPP_EXCEPTIONS',
  `-I${join(root, 'native')}`,
  `-I${cuDir}`,
  `-I${join(root, 'tools', 'cuda-emu')}`,
  `-I${napiInc}`,
  `-I${addonApiInc}`,
  `-I${cudaInc}`,
];
if (asan) flags.push('-fsanitize=address', '-fno-omit-frame-pointer');
if (coverage) flags.push('--coverage', '-O0');
if (requireBuild) flags.push('-Werror'); // CI keeps the kernels warning-free under g++ -Wall

function run(cmd, argv) {
  return new Promise((res) => {
    const p = spawn(cmd, argv, { stdio: ['ignore', 'inherit', 'inherit'] });
    p.on('close', (code) => res(code === 0));
    p.on('error', () => res(false));
  });
}

const objOf = (u) =>
  join(
    objDir,
    `${u
      .split('/')
      .pop()
      .replace(/\.(cc|cu)$/, '')}.o`,
  );
const addonObjects = units.filter((u) => !u.endsWith('selftest.cc') && !u.endsWith('harness.cc')).map(objOf);
// Different flags recompile everything (-Werror aside: it does not change the objects).
const stampFile = join(objDir, 'flags.txt');
const stamp = flags.filter((f) => f !== '-Werror').join(' ');
const sameFlags = existsSync(stampFile) && readFileSync(stampFile, 'utf8') === stamp;
const todo = units
  .map((u) => ({ u, o: objOf(u) }))
  .filter(
    ({ u, o }) =>
      !sameFlags || !existsSync(o) || statSync(o).mtimeMs < Math.max(statSync(u).mtimeMs, newestHeader),
  );
const compiled = todo.length;
const t0 = Date.now();
const lanes = Math.max(1, cpus().length);
let failed = false;
async function worker() {
  for (let job = todo.shift(); job; job = todo.shift()) {
    if (!(await run('g++', [...flags, '-c', job.u, '-o', job.o]))) failed = true;
  }
}
await Promise.all(Array.from({ length: lanes }, worker));
if (failed) stop('g++ failed (messages above)');
writeFileSync(stampFile, stamp);
const target = join(out, 'grpo_kernels_native.node');
const linkFlags = [...(asan ? ['-fsanitize=address'] : []), ...(coverage ? ['--coverage'] : [])];
if (
  (compiled > 0 || !existsSync(target)) &&
  !(await run('g++', ['-shared', ...linkFlags, '-o', target, ...addonObjects]))
)
  stop('link failed');
// Node-API symbols resolve when Node loads the addon; a CUDA runtime call left undefined would only
// fail then, so name it now.
{
  const nm = spawnSync('nm', ['-u', target], { encoding: 'utf8' });
  const missing = (nm.stdout ?? '').split('\n').filter((l) => /\bcuda\w+/.test(l));
  if (missing.length)
    stop(`CUDA runtime calls the emulator lacks: ${missing.map((l) => l.trim()).join(', ')}`);
}
const selftest = join(out, 'emu_selftest');
// common.cu: encode_tensor_map_2d (the TMA checks), beside the emulated runtime.
const selftestObjs = [objOf('selftest.cc'), objOf('common.cc'), objOf('emu_runtime.cc')];
if (
  (compiled > 0 || !existsSync(selftest)) &&
  !(await run('g++', [...linkFlags, '-o', selftest, ...selftestObjs]))
)
  stop('link of emu_selftest failed');
if (harness) {
  // The kernels' objects and the emulated runtime, without the addon's glue and runtime: no Node.
  const exe = join(out, 'harness');
  const objs = [objOf('harness.cc'), ...cuSources.map(objOf), objOf('emu_runtime.cc')];
  if ((compiled > 0 || !existsSync(exe)) && !(await run('g++', [...linkFlags, '-o', exe, ...objs])))
    stop('link of harness failed');
}
record(true, `built from ${cudaInc}`);
if (compiled > 0 || !quiet)
  console.log(
    `grpo-kernels: CUDA emulator built: ${target} (${compiled} files compiled, ${((Date.now() - t0) / 1000).toFixed(1)} s)`,
  );
