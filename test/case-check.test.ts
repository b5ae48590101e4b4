/**
 * The case tables' comparison (test/cases/check.ts): each term of the per-element bound
 * |got − want| ≤ atol + rtol·|want| + crtol·scale + stol·terms counts only where the entry and the
 * reference both give it, a non-finite scale never widens the bound, and classes must match.
 */
import { describe, expect, it } from 'vitest';
import { compareElements } from './cases/check.js';

describe('compareElements', () => {
  const want = [1, -2, 0, 4];
  const got = want.map((x) => x + 5e-4);
  it('each term widens the bound by its own amount', () => {
    expect(compareElements(got, want, { atol: 1e-3, rtol: 0 }).problems).toEqual([]);
    expect(compareElements(got, want, { atol: 2.5e-4, rtol: 0 }).problems).toHaveLength(4);
    // rtol: 1e-3·|want| covers all but want = 0.
    expect(compareElements(got, want, { atol: 0, rtol: 1e-3 }).problems).toHaveLength(1);
    const scale = [1, 1, 1, 1];
    const terms = [0, 0, 10, 0];
    expect(compareElements(got, want, { atol: 0, rtol: 0, crtol: 1e-3 }, scale).problems).toEqual([]);
    // stol alone: only element 2 has terms.
    const s = compareElements(got, want, { atol: 0, rtol: 0, stol: 1e-4 }, undefined, terms);
    expect(s.problems).toHaveLength(3);
    expect(s.problems.some((p) => p.startsWith('[2]'))).toBe(false);
    // An entry without stol ignores the terms; terms without the entry's stol too.
    expect(compareElements(got, want, { atol: 0, rtol: 0 }, undefined, terms).problems).toHaveLength(4);
  });
  it('a non-finite scale or terms never widens the bound', () => {
    const bad = [Number.NaN, Number.POSITIVE_INFINITY, Number.NaN, Number.POSITIVE_INFINITY];
    const tol = { atol: 0, rtol: 0, crtol: 1, stol: 1 };
    expect(compareElements(got, want, tol, bad, bad).problems).toHaveLength(4);
  });
  it('classes must match element by element; matching non-finite values pass', () => {
    const w = [Number.NaN, Number.POSITIVE_INFINITY, Number.NEGATIVE_INFINITY, 1];
    expect(compareElements(w, w, { atol: 0, rtol: 0 }).problems).toEqual([]);
    const g = [1, Number.POSITIVE_INFINITY, Number.NaN, 1];
    expect(compareElements(g, w, { atol: 1, rtol: 0 }).problems).toHaveLength(2);
  });
});
