/**
 * scripts/runtime-dir.mjs: the XDG_RUNTIME_DIR the software Vulkan driver needs (Mesa's lavapipe
 * prints "error: XDG_RUNTIME_DIR is invalid or not set" without one), set by the package's own setup
 * (test/setup-env.ts, .ci/run, scripts/setup-vulkan.sh's env.sh) instead of assumed from the shell.
 * test/examples.test.ts runs the examples from a shell without one.
 */
import { spawnSync } from 'node:child_process';
import { chmodSync, mkdirSync, mkdtempSync, rmSync, statSync, symlinkSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { ensureRuntimeDir, isValidRuntimeDir } from '../scripts/runtime-dir.mjs';

const posix = typeof process.getuid === 'function';
const tmp = mkdtempSync(join(tmpdir(), "grpo-xdg-it's "));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

/** Runs `fn` with os.tmpdir() pointing at a fresh folder under tmp (the private dir is made there). */
function withTmpdir<T>(name: string, fn: (dir: string) => T): T {
  const dir = join(tmp, name);
  mkdirSync(dir, { recursive: true });
  const saved = process.env.TMPDIR;
  process.env.TMPDIR = dir;
  try {
    return fn(dir);
  } finally {
    if (saved === undefined) delete process.env.TMPDIR;
    else process.env.TMPDIR = saved;
  }
}

function expectPrivate(dir: string | undefined) {
  expect(dir).toBeDefined();
  const st = statSync(dir!);
  expect(st.isDirectory()).toBe(true);
  expect(st.mode & 0o777).toBe(0o700);
  expect(st.uid).toBe(process.getuid!());
}

describe.skipIf(!posix)('ensureRuntimeDir (POSIX: Windows has no uids and no XDG_RUNTIME_DIR)', () => {
  const invalid: [string, () => string | undefined][] = [
    ['unset', () => undefined],
    ['empty', () => ''],
    ['relative', () => 'run/user/0'],
    ['missing', () => join(tmp, 'does-not-exist')],
    [
      'readable by others (0755)',
      () => {
        const d = join(tmp, 'wide');
        mkdirSync(d, { recursive: true });
        chmodSync(d, 0o755);
        return d;
      },
    ],
  ];
  for (const [what, value] of invalid) {
    it(`${what}: replaced by the package's private 0700 directory`, () => {
      withTmpdir(`t-${what.replace(/\W/g, '')}`, (t) => {
        const v = value();
        const env: Record<string, string | undefined> = v === undefined ? {} : { XDG_RUNTIME_DIR: v };
        const r = ensureRuntimeDir(env);
        expect(r.changed).toBe(true);
        expect(r.was).toMatch(v ? /^invalid/ : /^unset$/);
        expect(env.XDG_RUNTIME_DIR).toBe(join(t, `grpo-kernels-runtime-${process.getuid!()}`));
        expectPrivate(env.XDG_RUNTIME_DIR);
        // Reused by the next caller, not one new directory per process.
        const again: Record<string, string | undefined> = {};
        ensureRuntimeDir(again);
        expect(again.XDG_RUNTIME_DIR).toBe(env.XDG_RUNTIME_DIR);
      });
    });
  }

  it('a valid one is kept', () => {
    const d = join(tmp, 'valid');
    mkdirSync(d, { mode: 0o700 });
    chmodSync(d, 0o700);
    expect(isValidRuntimeDir(d)).toBe(true);
    const env = { XDG_RUNTIME_DIR: d };
    expect(ensureRuntimeDir(env)).toEqual({ dir: d, changed: false });
    expect(env.XDG_RUNTIME_DIR).toBe(d);
  });

  it('its private name taken by a link or a wide directory: a fresh mkdtemp directory instead', () => {
    withTmpdir('taken', (t) => {
      const target = join(t, 'elsewhere');
      mkdirSync(target, { mode: 0o700 });
      chmodSync(target, 0o700);
      symlinkSync(target, join(t, `grpo-kernels-runtime-${process.getuid!()}`));
      const env: Record<string, string | undefined> = {};
      ensureRuntimeDir(env);
      expect(env.XDG_RUNTIME_DIR).toMatch(/grpo-kernels-runtime-[^/]{6}$/);
      expect(env.XDG_RUNTIME_DIR).not.toBe(target);
      expectPrivate(env.XDG_RUNTIME_DIR);
    });
  });

  it('from a shell: eval "$(node scripts/runtime-dir.mjs)" exports it, and only when needed', () => {
    const shell = (script: string, env: NodeJS.ProcessEnv) =>
      spawnSync('sh', ['-c', script], { encoding: 'utf8', env });
    const base: NodeJS.ProcessEnv = { ...process.env, TMPDIR: join(tmp, 'shell') };
    mkdirSync(base.TMPDIR!, { recursive: true });
    delete base.XDG_RUNTIME_DIR;
    // The temp folder's name has a quote and a space: the export line must survive the shell.
    const set = shell('eval "$(node scripts/runtime-dir.mjs)" && printf %s "$XDG_RUNTIME_DIR"', base);
    expect(set.stderr).toBe('');
    expect(set.stdout).toBe(join(base.TMPDIR!, `grpo-kernels-runtime-${process.getuid!()}`));
    expectPrivate(set.stdout);
    const kept = shell('node scripts/runtime-dir.mjs', { ...base, XDG_RUNTIME_DIR: set.stdout });
    expect(kept.stdout).toBe('');
    expect(kept.status).toBe(0);
  });

  it('the test workers have one (test/setup-env.ts ran)', () => {
    expect(isValidRuntimeDir(process.env.XDG_RUNTIME_DIR)).toBe(true);
  });
});
