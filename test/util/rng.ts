/** Seeded random numbers for tests: the same seed gives the same inputs everywhere. */

/**
 * mulberry32: a small, fast 32-bit generator; uniform in [0, 1). The same generator as the toy
 * trainer's (examples/toy-grpo/trainer/rng.ts), kept here so the tests' inputs depend on no example.
 */
export function rng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** One standard normal sample (Box–Muller) from two draws of `rand`. */
export function gaussian(rand: () => number): number {
  const u = 1 - rand();
  const v = rand();
  return Math.sqrt(-2 * Math.log(u)) * Math.cos(2 * Math.PI * v);
}

/** Standard normal samples (Box–Muller). */
export function normal(rand: () => number): () => number {
  return () => gaussian(rand);
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
