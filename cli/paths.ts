/**
 * Output locations (`demo --out DIR`, `bench --json FILE`), checked before any work so that a run of
 * minutes does not end in a raw Node error. Every check is synchronous and cannot block: no recursive
 * mkdir (Node's loops forever on /proc's ENOENT), and a directory proves it takes files by taking one,
 * an empty probe file created and removed at once (/proc and /sys say yes to stat and access, no to
 * creating a file).
 */
import { randomBytes } from 'node:crypto';
import { closeSync, mkdirSync, openSync, rmdirSync, statSync, unlinkSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { usageError } from './errors.js';

/** "ENOENT: no such file or directory" from a Node fs error (its message without the syscall and path). */
function reason(e: unknown): string {
  const msg = e instanceof Error ? e.message : String(e);
  return msg.split(', ')[0];
}

/** The path's stat; undefined where it does not exist (ENOENT, or ENOTDIR: a file on the way). */
function statOrUndefined(path: string, fail: (why: string) => Error) {
  try {
    return statSync(path);
  } catch (e) {
    const code = (e as { code?: string }).code;
    if (code === 'ENOENT' || code === 'ENOTDIR') return undefined;
    throw fail(`cannot look at '${path}' (${reason(e)})`);
  }
}

/** Why `dir` (an existing directory) cannot take a new file, or null: creates and removes an empty one. */
function probe(dir: string): string | null {
  const file = join(dir, `.grpo-kernels-probe-${process.pid}-${randomBytes(4).toString('hex')}`);
  let fd: number;
  try {
    fd = openSync(file, 'wx');
  } catch (e) {
    return `cannot create a file in '${dir}' (${reason(e)})`;
  }
  closeSync(fd);
  try {
    unlinkSync(file);
  } catch (e) {
    return `cannot remove the probe file '${file}' (${reason(e)})`;
  }
  return null;
}

/** A checked output directory: its absolute path, and `undo()` to remove what the check created. */
export interface OutputDir {
  dir: string;
  /** Removes the directories the check created, deepest first, where still empty (a run that failed). */
  undo(): void;
}

/**
 * An output directory: created (with its missing parents) if absent, then probed. A usage error naming
 * the flag says why it cannot be written.
 */
export function writableDir(command: string, flag: string, value: string): OutputDir {
  const dir = resolve(value);
  const fail = (why: string) =>
    usageError(`${command}: --${flag} '${value}' is not a writable directory: ${why}`);
  const missing: string[] = [];
  let p = dir;
  let st = statOrUndefined(p, fail);
  while (st === undefined && dirname(p) !== p) {
    missing.unshift(p);
    p = dirname(p);
    st = statOrUndefined(p, fail);
  }
  if (st === undefined) throw fail(`'${p}' does not exist`);
  if (!st.isDirectory())
    throw fail(missing.length === 0 ? 'it is not a directory' : `'${p}' is not a directory`);
  const created: string[] = [];
  const undo = () => {
    for (const c of created.reverse()) {
      try {
        rmdirSync(c);
      } catch {
        break; // not empty (something was written) or already gone: leave it and its parents
      }
    }
    created.length = 0;
  };
  for (const m of missing) {
    try {
      mkdirSync(m);
    } catch (e) {
      undo();
      throw fail(m === dir ? `cannot create it (${reason(e)})` : `cannot create '${m}' (${reason(e)})`);
    }
    created.push(m);
  }
  const why = probe(dir);
  if (why !== null) {
    undo();
    throw fail(why);
  }
  return { dir, undo };
}

/**
 * An output file in an existing directory: the directory is probed; an existing file must not be a
 * directory and must open for writing (opened without truncating: its content survives a failed run).
 * Returns its absolute path.
 */
export function writableFile(command: string, flag: string, value: string): string {
  const file = resolve(value);
  const fail = (why: string) => usageError(`${command}: --${flag} '${value}' is not a writable file: ${why}`);
  const dir = dirname(file);
  const dirStat = statOrUndefined(dir, fail);
  if (dirStat === undefined) throw fail(`its directory '${dir}' does not exist`);
  if (!dirStat.isDirectory()) throw fail(`'${dir}' is not a directory`);
  const st = statOrUndefined(file, fail);
  if (st?.isDirectory()) throw fail('it is a directory');
  const why = probe(dir);
  if (why !== null) throw fail(why);
  if (st !== undefined) {
    try {
      closeSync(openSync(file, 'r+'));
    } catch (e) {
      throw fail(`cannot open it for writing (${reason(e)})`);
    }
  }
  return file;
}
