/**
 * Comparison of a kernel's output against a float64 reference, reporting mismatches by index and
 * class (NaN, ±Inf, finite) as Liger's and onnxruntime's checkers do.
 */
import { expect } from 'vitest';

type Num = ArrayLike<number>;

function cls(x: number): string {
  if (Number.isNaN(x)) return 'NaN';
  if (x === Number.POSITIVE_INFINITY) return '+Inf';
  if (x === Number.NEGATIVE_INFINITY) return '-Inf';
  return 'finite';
}

export interface CloseOptions {
  /** Max relative error over the tensor: max|a − b| / max(max|b|, floor). */
  rtol: number;
  /** Absolute floor of the denominator, so tensors of tiny values are compared absolutely. */
  floor?: number;
  /** Label printed with mismatches. */
  what?: string;
}

/**
 * Max relative error over a tensor (DESIGN.md, "Numerics"): max_i |a_i − b_i| / max(max_i |b_i|, floor).
 * Non-finite values must match in class exactly.
 */
export function maxRelError(actual: Num, expected: Num, floor = 1e-30): { err: number; worst: number } {
  let scale = floor;
  for (let i = 0; i < expected.length; i++)
    if (Number.isFinite(expected[i])) scale = Math.max(scale, Math.abs(expected[i]));
  let err = 0;
  let worst = -1;
  for (let i = 0; i < expected.length; i++) {
    const a = actual[i];
    const b = expected[i];
    if (!Number.isFinite(b) || !Number.isFinite(a)) continue;
    const e = Math.abs(a - b) / scale;
    if (e > err) {
      err = e;
      worst = i;
    }
  }
  return { err, worst };
}

/** Asserts same length, same non-finite classes, and max relative error ≤ rtol. */
export function expectClose(actual: Num, expected: Num, opts: CloseOptions): void {
  const what = opts.what ?? 'output';
  expect(actual.length, `${what}: length`).toBe(expected.length);
  const classMismatch: string[] = [];
  for (let i = 0; i < expected.length && classMismatch.length < 5; i++) {
    if (
      cls(actual[i]) !== cls(expected[i]) &&
      !(cls(expected[i]) !== 'finite' && cls(actual[i]) === cls(expected[i]))
    ) {
      classMismatch.push(
        `[${i}] got ${actual[i]} (${cls(actual[i])}), expected ${expected[i]} (${cls(expected[i])})`,
      );
    }
  }
  expect(classMismatch, `${what}: non-finite class mismatches`).toEqual([]);
  const { err, worst } = maxRelError(actual, expected, opts.floor);
  expect(
    err,
    `${what}: max rel error ${err.toExponential(3)} at [${worst}] (got ${actual[worst]}, expected ${expected[worst]}), rtol ${opts.rtol}`,
  ).toBeLessThanOrEqual(opts.rtol);
}

/** A value no kernel produces by accident, for poisoning outputs before a kernel writes them. */
export const POISON_F32 = -7.0e33;

/** Asserts no element still holds the poison value. */
export function expectNoPoison(values: Num, what = 'output'): void {
  const bad: number[] = [];
  for (let i = 0; i < values.length && bad.length < 5; i++)
    if (values[i] === Math.fround(POISON_F32)) bad.push(i);
  expect(bad, `${what}: elements never written (still poison)`).toEqual([]);
}
