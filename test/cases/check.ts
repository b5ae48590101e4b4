/**
 * Per-element comparison of a backend's output with a float64 reference, and the poison check, for
 * the case tables (test/cases/*.ts, run by test/cases/runner.ts).
 *
 * The rule, for every element i (test/cases/tolerances.ts states atol, rtol and crtol per op and dtype):
 *
 *   |got_i − want_i| ≤ atol + rtol·|want_i| + crtol·scale_i + stol·terms_i
 *
 * - atol, rtol: the usual absolute and relative terms.
 * - crtol·scale_i: an error relative to the magnitude of what the element was computed from, for the
 *   outputs whose f32 error is set by their operands rather than by their own size (THR: the group's
 *   largest |THR*|, the form cuda's THR documents; see tolerances.ts). A case gives scale_i with its
 *   reference; an entry without crtol ignores it.
 * - stol·terms_i: the standard forward bound of a sum, u·Σ|terms|, for an output that is a sum of
 *   terms of either sign which may cancel (THR: terms_i = the token's sum with every term made
 *   positive, test/fixtures/thr.ts thrMagnitudes). A case gives terms_i with its reference; an entry
 *   without stol ignores it.
 * - Non-finite values: the class (NaN, +Inf, −Inf) must match exactly, element by element.
 *
 * A failure lists the class mismatches and the elements past their tolerance by index (at most 5 of
 * each), and the worst element as a multiple of its tolerance, as Liger's and onnxruntime's checkers do.
 */
import { expect } from 'vitest';
import { POISON_I32 } from '../../src/debug.js';
import type { DType, HostArray } from '../../src/dtypes.js';
import { POISON_F32 } from '../util/compare.js';

export interface Tolerance {
  atol: number;
  rtol: number;
  /** Relative to the element's scale (its reference's `scale`), when the op's entry has one. */
  crtol?: number;
  /** Relative to Σ|terms| of the element (its reference's `terms`), when the op's entry has one. */
  stol?: number;
}

/** Bit-exact (integers, copies, selections). */
export const EXACT: Tolerance = { atol: 0, rtol: 0 };

export function numClass(x: number): 'NaN' | '+Inf' | '-Inf' | 'finite' {
  if (Number.isNaN(x)) return 'NaN';
  if (x === Number.POSITIVE_INFINITY) return '+Inf';
  if (x === Number.NEGATIVE_INFINITY) return '-Inf';
  return 'finite';
}

export interface Mismatch {
  /** Length, class and tolerance failures, described (at most 5 of each kind). */
  problems: string[];
  /** The largest |got − want| / tolerance over the finite elements (0 when all are exact). */
  worst: number;
  worstAt: number;
}

/** Compares without asserting; `problems` is empty when every element is within its tolerance. */
export function compareElements(
  got: ArrayLike<number>,
  want: ArrayLike<number>,
  tol: Tolerance,
  scale?: ArrayLike<number>,
  terms?: ArrayLike<number>,
): Mismatch {
  const problems: string[] = [];
  if (got.length !== want.length) {
    problems.push(`length ${got.length}, expected ${want.length}`);
    return { problems, worst: Number.POSITIVE_INFINITY, worstAt: -1 };
  }
  const crtol = scale === undefined ? 0 : (tol.crtol ?? 0);
  const stol = terms === undefined ? 0 : (tol.stol ?? 0);
  let classes = 0;
  let over = 0;
  let worst = 0;
  let worstAt = -1;
  for (let i = 0; i < want.length; i++) {
    const a = got[i];
    const b = want[i];
    const ca = numClass(a);
    const cb = numClass(b);
    if (ca !== cb) {
      if (classes++ < 5) problems.push(`[${i}] got ${a} (${ca}), expected ${b} (${cb})`);
      continue;
    }
    if (cb !== 'finite') continue;
    const err = Math.abs(a - b);
    if (err === 0) continue;
    // A non-finite scale (from non-finite inputs) never widens the bound.
    const cs = crtol > 0 && Number.isFinite(scale![i]) ? crtol * scale![i] : 0;
    const ss = stol > 0 && Number.isFinite(terms![i]) ? stol * terms![i] : 0;
    const bound = tol.atol + tol.rtol * Math.abs(b) + cs + ss;
    const ratio = bound > 0 ? err / bound : Number.POSITIVE_INFINITY;
    if (ratio > worst) {
      worst = ratio;
      worstAt = i;
    }
    if (ratio > 1 && over++ < 5)
      problems.push(
        `[${i}] got ${a}, expected ${b}: |err| ${err.toExponential(3)} > ${bound.toExponential(3)} (${ratio.toPrecision(3)}× its tolerance)`,
      );
  }
  if (classes > 5) problems.push(`… ${classes} class mismatches in all`);
  if (over > 5) problems.push(`… ${over} elements past their tolerance in all`);
  return { problems, worst, worstAt };
}

/** Asserts that every element is within its tolerance (see the header). */
export function expectWithin(
  got: ArrayLike<number>,
  want: ArrayLike<number>,
  tol: Tolerance,
  what: string,
  scale?: ArrayLike<number>,
  terms?: ArrayLike<number>,
): Mismatch {
  const m = compareElements(got, want, tol, scale, terms);
  const t = `atol ${tol.atol}, rtol ${tol.rtol}${tol.crtol !== undefined && scale ? `, crtol ${tol.crtol}` : ''}${tol.stol !== undefined && terms ? `, stol ${tol.stol}` : ''}`;
  expect(m.problems, `${what} (${t}): worst ${m.worst.toPrecision(3)}× its tolerance`).toEqual([]);
  return m;
}

/** The value poisoned outputs of `dtype` hold until a kernel writes them (src/debug.ts). */
export function poisonOf(dtype: DType): number {
  switch (dtype) {
    case 'f32':
      return Math.fround(POISON_F32);
    case 'i32':
      return POISON_I32;
    case 'u8':
      return 0xab;
    default:
      return 0x7e01; // f16 / bf16 bits: a NaN no kernel produces
  }
}

/** Asserts that no element of a raw output still holds its dtype's poison. */
export function expectNoPoison(data: HostArray, dtype: DType, what: string): void {
  const p = poisonOf(dtype);
  const at: number[] = [];
  for (let i = 0; i < data.length && at.length < 5; i++) if (data[i] === p) at.push(i);
  expect(at, `${what}: elements never written (still poison)`).toEqual([]);
}

/** Raw words of a float output, for bit comparisons (Uint32 for f32, Uint16 as is). */
export function wordsOf(data: HostArray): Uint32Array | Uint16Array | Int32Array | Uint8Array {
  return data instanceof Float32Array ? new Uint32Array(data.buffer, data.byteOffset, data.length) : data;
}

/** The first index where two outputs differ in their bits (NaN payloads and −0 included), or −1. */
export function firstBitDiff(a: HostArray, b: HostArray): number {
  const u = wordsOf(a);
  const v = wordsOf(b);
  if (u.length !== v.length) return Math.min(u.length, v.length);
  for (let i = 0; i < u.length; i++) if (u[i] !== v[i]) return i;
  return -1;
}

/**
 * Asserts that two outputs have the same bits (length, NaN payloads and −0 included), naming the first
 * differing element: a word loop, where expect(Array.from(...)).toEqual(...) on millions of elements
 * spends seconds in the deep comparison.
 */
export function expectSameBits(got: HostArray, want: HostArray, what = 'bits'): void {
  const i = firstBitDiff(got, want);
  const at =
    i < 0
      ? ''
      : got.length !== want.length
        ? `length ${got.length}, want ${want.length}`
        : `[${i}] has bits ${wordsOf(got)[i]} (${got[i]}), want ${wordsOf(want)[i]} (${want[i]})`;
  expect(at, `${what}: the first element whose bits differ`).toBe('');
}
