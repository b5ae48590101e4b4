/**
 * Plain C++ tests of native code (no Node, no device): compiled with the system's C++ compiler into
 * build/native-test and run; each prints "ok" (or "skip: why") on success.
 */
import { spawnSync } from 'node:child_process';
import { mkdirSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { expect } from 'vitest';

export const root = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..');
const cxx = process.env.CXX ?? 'g++';
export const hasCompiler = spawnSync(cxx, ['--version']).status === 0;

/** Compiles `sources` (paths from the repository root) with `flags` into `name`, runs it, expects "ok". */
export function compileAndRun(name: string, sources: string[], flags: string[]): string {
  const out = join(root, 'build', 'native-test');
  mkdirSync(out, { recursive: true });
  const exe = join(out, name);
  const build = spawnSync(
    cxx,
    [
      '-std=c++17',
      '-Wall',
      '-Werror',
      `-I${join(root, 'native')}`,
      ...flags,
      ...sources.map((s) => join(root, s)),
      '-o',
      exe,
    ],
    { encoding: 'utf8' },
  );
  expect(build.stderr, 'compile').toBe('');
  expect(build.status).toBe(0);
  const run = spawnSync(exe, { encoding: 'utf8', timeout: 60_000 });
  const said = run.stdout.trim();
  if (said.startsWith('skip:')) console.warn(`test/native/${name}: ${said}`);
  else expect(said).toBe('ok');
  expect(run.status).toBe(0);
  return said;
}
