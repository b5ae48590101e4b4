/**
 * The native device runtime's job thread (native/runtime/jobs.h), which both native backends share,
 * tested as plain C++ without Node or a device: test/native/runtime_test.cc is compiled with the
 * system's C++ compiler and run. Call order, the sticky error of fire-and-forget jobs, out-of-memory,
 * and the close sequence (queued jobs run, then the device's resources are released, once).
 */
import { spawnSync } from 'node:child_process';
import { mkdirSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..');
const cxx = process.env.CXX ?? 'g++';
const hasCompiler = spawnSync(cxx, ['--version']).status === 0;
if (!hasCompiler)
  console.warn(`test/native/runtime: skipped: no C++ compiler (${cxx}) to build the runtime's test`);

describe.skipIf(!hasCompiler)('native device runtime (C++, no Node)', () => {
  it('jobs run in call order on one thread; fire-and-forget failures are sticky; close drains, then releases', () => {
    const out = join(root, 'build', 'native-test');
    mkdirSync(out, { recursive: true });
    const exe = join(out, 'runtime_test');
    const build = spawnSync(
      cxx,
      [
        '-std=c++17',
        '-O1',
        '-Wall',
        '-Werror',
        '-pthread',
        `-I${join(root, 'native')}`,
        join(root, 'native', 'runtime', 'jobs.cc'),
        join(root, 'test', 'native', 'runtime_test.cc'),
        '-o',
        exe,
      ],
      { encoding: 'utf8' },
    );
    expect(build.stderr, 'compile').toBe('');
    expect(build.status).toBe(0);
    const run = spawnSync(exe, { encoding: 'utf8', timeout: 60_000 });
    expect(run.stdout.trim()).toBe('ok');
    expect(run.status).toBe(0);
  });
});
