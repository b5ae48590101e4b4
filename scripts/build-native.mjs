#!/usr/bin/env node
// `npm run build:native` (the source build: developers, and platforms without a prebuilt addon;
// scripts/prebuild.mjs uses it for the prebuilt one): builds the native addon
// (build/Release/grpo_kernels_native.node) with cmake-js from CMakeLists.txt: the native cpu backend's
// kernels always, the CUDA backend's when nvcc is found.
//
//   GRPO_KERNELS_SKIP_NATIVE=1     skip the build (cuda then reports the addon missing; cpu falls back to js)
//   GRPO_KERNELS_REQUIRE_NATIVE=1  a failed build fails the install (CI)
//   GRPO_WITH_CUDA=OFF             build without CUDA: the cpu kernels only (passes -DGRPO_WITH_CUDA=OFF)
//   GRPO_KERNELS_BUILD_DIR=dir     build into dir instead of build/ (the addon lands in dir/Release/)
//   GRPO_KERNELS_NATIVE_TIMEOUT_S  build time limit in seconds (default 900)
//   CMAKE_CUDA_ARCHITECTURES       e.g. "90" to build for the H100 only (default "80-real;90a-real;90")
//   GRPO_STATIC_RUNTIME=ON         link libstdc++ and libgcc statically, CUDA without -lineinfo (the prebuilt addon)
//
// A failed build prints one line saying why, records it in <build>/native-build-status.json (the
// cuda and cpu backends quote it), and exits 0 (unless GRPO_KERNELS_REQUIRE_NATIVE=1): js and webgpu
// still work.
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { cpus } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const env = process.env;
const buildDir = resolve(root, env.GRPO_KERNELS_BUILD_DIR || 'build');
const require = env.GRPO_KERNELS_REQUIRE_NATIVE === '1';
const statusFile = join(buildDir, 'native-build-status.json');

function record(ok, reason) {
  try {
    mkdirSync(buildDir, { recursive: true });
    writeFileSync(statusFile, `${JSON.stringify({ ok, reason, date: new Date().toISOString() })}\n`);
  } catch {
    // best effort: the status file only improves the cuda backend's message
  }
}

function finish(ok, reason) {
  record(ok, reason);
  if (ok) {
    console.log(`grpo-kernels: native addon built (${reason})`);
    process.exit(0);
  }
  console.log(
    `grpo-kernels: native addon not built: ${reason}${require ? '' : ' (the js and webgpu backends still work)'}`,
  );
  process.exit(require ? 1 : 0);
}

if (env.GRPO_KERNELS_SKIP_NATIVE === '1') finish(false, 'skipped (GRPO_KERNELS_SKIP_NATIVE=1)');

// Resolved as Node resolves modules: installed as a dependency, cmake-js is usually hoisted into
// the consuming project's node_modules, not ours.
let cmakeJs;
try {
  cmakeJs = join(dirname(createRequire(import.meta.url).resolve('cmake-js/package.json')), 'bin', 'cmake-js');
} catch {
  finish(false, 'cmake-js is not installed (it is a dependency of grpo-kernels: reinstall)');
}
const cmake = spawnSync('cmake', ['--version'], { encoding: 'utf8' });
if (cmake.error || cmake.status !== 0) finish(false, 'cmake not found on PATH (install CMake ≥ 3.18)');

const args = [cmakeJs, 'compile', '--out', buildDir, '--parallel', String(Math.max(1, cpus().length))];
// Both switches are passed every time, ON or OFF: CMake's cache would otherwise keep the last build's
// value (a GRPO_WITH_CUDA=OFF build once, then every later build without CUDA).
args.push(`--CDGRPO_WITH_CUDA=${(env.GRPO_WITH_CUDA || '').toUpperCase() === 'OFF' ? 'OFF' : 'ON'}`);
args.push(`--CDGRPO_STATIC_RUNTIME=${(env.GRPO_STATIC_RUNTIME || '').toUpperCase() === 'ON' ? 'ON' : 'OFF'}`);
if (env.CMAKE_CUDA_ARCHITECTURES) args.push(`--CDCMAKE_CUDA_ARCHITECTURES=${env.CMAKE_CUDA_ARCHITECTURES}`);
// `cmake-js compile` configures only when there is no cache, so the switches above reach CMake only
// then: a cache that holds other values (an OFF build before this ON one) is dropped to reconfigure.
const cachePath = join(buildDir, 'CMakeCache.txt');
if (existsSync(cachePath)) {
  const cache = readFileSync(cachePath, 'utf8');
  const stale = args
    .filter((a) => a.startsWith('--CD'))
    .some((a) => {
      const [key, value] = a.slice(4).split('=');
      const m = cache.match(new RegExp(`^${key}:[A-Z]+=(.*)$`, 'm'));
      return m !== null && m[1] !== value;
    });
  if (stale) rmSync(cachePath);
}

const timeoutS = Number(env.GRPO_KERNELS_NATIVE_TIMEOUT_S || 900);
const t0 = Date.now();
const r = spawnSync(process.execPath, args, {
  cwd: root,
  encoding: 'utf8',
  timeout: timeoutS * 1000,
  maxBuffer: 64 * 1024 * 1024,
});
const seconds = ((Date.now() - t0) / 1000).toFixed(1);
const log = `${r.stdout ?? ''}${r.stderr ?? ''}`;
try {
  mkdirSync(buildDir, { recursive: true });
  writeFileSync(join(buildDir, 'native-build.log'), log);
} catch {
  // ignore
}
if (r.error?.code === 'ETIMEDOUT' || r.signal === 'SIGTERM') {
  finish(false, `cmake-js timed out after ${timeoutS} s (log: ${join(buildDir, 'native-build.log')})`);
}
if (r.error) finish(false, `cmake-js could not run: ${r.error.message}`);
if (r.status !== 0) {
  const firstError = log.split('\n').find((l) => /error/i.test(l) && !/^\s*$/.test(l));
  finish(
    false,
    `cmake-js failed (${firstError?.trim().slice(0, 200) ?? `exit ${r.status}`}; log: ${join(buildDir, 'native-build.log')})`,
  );
}
// CMake's status lines: the cpu kernels built (portable, + avx2 on x86-64) and CUDA's version or absence.
const statusLines = [
  ...new Set(
    log
      .split('\n')
      .filter((l) => l.includes('grpo-kernels:'))
      .map((l) => l.replace(/^.*grpo-kernels:\s*/, '').trim()),
  ),
];
finish(true, `${statusLines.length ? statusLines.join('; ') : 'ok'}, ${seconds} s`);
