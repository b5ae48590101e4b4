/** Seeded random numbers for tests and benchmarks: the same seed gives the same inputs everywhere. */

import { mulberry32 } from '../../src/trainer/rng.js';

/** mulberry32 (the toy trainer's generator): uniform in [0, 1). */
export const rng = mulberry32;

/** Standard normal samples (Box–Muller). */
export function normal(rand: () => number): () => number {
  return () => {
    const u = 1 - rand();
    const v = rand();
    return Math.sqrt(-2 * Math.log(u)) * Math.cos(2 * Math.PI * v);
  };
}

export function randomNormal(seed: number, n: number, scale = 1, mean = 0): Float64Array {
  const g = normal(rng(seed));
  const out = new Float64Array(n);
  for (let i = 0; i < n; i++) out[i] = mean + scale * g();
  return out;
}

/** Integers uniform in [lo, hi). */
export function randomInts(seed: number, n: number, lo: number, hi: number): Int32Array {
  const r = rng(seed);
  const out = new Int32Array(n);
  for (let i = 0; i < n; i++) out[i] = lo + Math.floor(r() * (hi - lo));
  return out;
}
