// XDG_RUNTIME_DIR for software Vulkan (Mesa's lavapipe) in shells that lack a valid one.
//
// Mesa's Vulkan device-select layer asks libwayland for a display when the instance enables
// VK_KHR_wayland_surface (Dawn does) and WAYLAND_DISPLAY is set (any time, in Mesa 22's layer); with
// XDG_RUNTIME_DIR unset or relative, libwayland prints "error: XDG_RUNTIME_DIR is invalid or not set
// in the environment." on stderr. A shell from `su`, `sudo`, ssh without a login session, cron or a CI
// runner often has none. Nothing breaks, but stderr is no longer clean and tests that assert a clean
// stderr fail. So the package's own setup (vitest's setup file, .ci/run, the env.sh that
// scripts/setup-vulkan.sh writes) sets it instead of assuming it from the caller's shell.
//
// Valid (kept): an absolute path to a directory owned by this user with mode 0700, as the XDG Base
// Directory spec requires. Otherwise: a private directory this module creates, mode 0700,
// <os.tmpdir()>/grpo-kernels-runtime-<uid> (reused across runs once checked: a real directory, not a
// link, owned by this user, mode 0700), or a fresh mkdtemp directory when that name is taken by
// something else. No-op where there are no uids (Windows).
//
//   import { ensureRuntimeDir } from './runtime-dir.mjs';  ensureRuntimeDir(process.env);
//   eval "$(node scripts/runtime-dir.mjs)"                 # prints an export line only when needed
import { chmodSync, lstatSync, mkdirSync, mkdtempSync, realpathSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { isAbsolute, join } from 'node:path';
import { fileURLToPath } from 'node:url';

/** Whether `dir` is usable as XDG_RUNTIME_DIR by this user: absolute, a directory, ours, mode 0700. */
export function isValidRuntimeDir(dir, { follow = true } = {}) {
  if (typeof dir !== 'string' || !isAbsolute(dir) || typeof process.getuid !== 'function') return false;
  let st;
  try {
    st = follow ? statSync(dir) : lstatSync(dir);
  } catch {
    return false;
  }
  return st.isDirectory() && st.uid === process.getuid() && (st.mode & 0o777) === 0o700;
}

/** The package's private runtime directory for this user, created if needed (mode 0700). */
export function privateRuntimeDir() {
  const dir = join(tmpdir(), `grpo-kernels-runtime-${process.getuid()}`);
  try {
    mkdirSync(dir, { mode: 0o700 });
    chmodSync(dir, 0o700); // the umask may have cleared bits; never widens.
  } catch (e) {
    if (e?.code !== 'EEXIST') throw e;
  }
  // An existing name must be our own real directory (not a link someone else planted).
  if (isValidRuntimeDir(dir, { follow: false })) return dir;
  return mkdtempSync(join(tmpdir(), 'grpo-kernels-runtime-')); // mkdtemp makes it 0700
}

/**
 * Sets env.XDG_RUNTIME_DIR to the package's private directory when it is unset or invalid; returns
 * the directory in use and whether it changed (and, when it did, what was wrong).
 */
export function ensureRuntimeDir(env = process.env) {
  const current = env.XDG_RUNTIME_DIR;
  if (typeof process.getuid !== 'function') return { dir: current, changed: false };
  if (isValidRuntimeDir(current)) return { dir: current, changed: false };
  const dir = privateRuntimeDir();
  env.XDG_RUNTIME_DIR = dir;
  const was = current === undefined || current === '' ? 'unset' : `invalid (${JSON.stringify(current)})`;
  return { dir, changed: true, was };
}

/** A POSIX shell single-quoted word. */
function shellQuote(s) {
  return `'${s.replaceAll("'", `'\\''`)}'`;
}

if (process.argv[1] && realpathSync(process.argv[1]) === realpathSync(fileURLToPath(import.meta.url))) {
  const env = { ...process.env };
  const r = ensureRuntimeDir(env);
  if (r.changed) process.stdout.write(`export XDG_RUNTIME_DIR=${shellQuote(r.dir)}\n`);
}
