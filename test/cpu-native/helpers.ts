/**
 * Shared setup of the native cpu backend's tests: its contexts on both code paths (the AVX2 + FMA +
 * F16C kernels, and the portable ones forced by GRPO_KERNELS_CPU_PORTABLE=1), the js backend as the
 * float64 reference, and a per-element check |got − want| ≤ atol + rtol·|want| + crtol·scale_i that
 * reports mismatches by index and class.
 */
import { expect } from 'vitest';
import { cpuTuning } from '../../src/backends/cpu/index.js';
import { type Context, createContext } from '../../src/index.js';

export interface NativeCpu {
  /** 'avx2' | 'portable': which kernels the context runs. */
  path: string;
  ctx?: Context;
  reason?: string;
}

/**
 * A native cpu context on the given path with `threads` threads (more than the cores only through the
 * test hook cpuTuning.maxThreads), or why there is none: no addon (cpu fell back to js), or, for the
 * AVX2 path, a CPU without AVX2. `avx512: false` keeps the LM head on its AVX2 build
 * (GRPO_KERNELS_CPU_AVX512=0); by default it takes its AVX-512 build where the CPU has one.
 */
export async function openNativeCpu(
  path: 'avx2' | 'portable',
  threads?: number,
  options: { avx512?: boolean } = {},
): Promise<NativeCpu> {
  const saved = process.env.GRPO_KERNELS_CPU_PORTABLE;
  const saved512 = process.env.GRPO_KERNELS_CPU_AVX512;
  const savedCap = cpuTuning.maxThreads;
  if (path === 'portable') process.env.GRPO_KERNELS_CPU_PORTABLE = '1';
  else delete process.env.GRPO_KERNELS_CPU_PORTABLE;
  if (options.avx512 === false) process.env.GRPO_KERNELS_CPU_AVX512 = '0';
  else delete process.env.GRPO_KERNELS_CPU_AVX512;
  if (threads !== undefined) cpuTuning.maxThreads = threads;
  try {
    const ctx = await createContext({ backend: 'cpu', threads });
    if (ctx.backend !== 'cpu') {
      ctx.dispose();
      return { path, reason: `no native cpu backend: ${ctx.skipped.map((s) => s.reason).join('; ')}` };
    }
    if (ctx.device.details.isa !== path) {
      const why = ctx.device.details.portableReason;
      ctx.dispose();
      return { path, reason: `the ${path} kernels do not run here (${String(why)})` };
    }
    return { path, ctx };
  } finally {
    if (saved === undefined) delete process.env.GRPO_KERNELS_CPU_PORTABLE;
    else process.env.GRPO_KERNELS_CPU_PORTABLE = saved;
    if (saved512 === undefined) delete process.env.GRPO_KERNELS_CPU_AVX512;
    else process.env.GRPO_KERNELS_CPU_AVX512 = saved512;
    cpuTuning.maxThreads = savedCap;
  }
}

/** Both paths, each with the default thread count. */
export async function openBothPaths(): Promise<NativeCpu[]> {
  const out = [await openNativeCpu('avx2'), await openNativeCpu('portable')];
  for (const o of out) if (o.reason) console.warn(`test/cpu-native: ${o.path} skipped: ${o.reason}`);
  return out;
}

export const U = 2 ** -24;

export interface Tol {
  atol: number;
  rtol: number;
  /** Times scale[i] (the magnitude the element is computed from); needs `scale`. */
  crtol?: number;
}

function cls(x: number): string {
  return Number.isNaN(x) ? 'NaN' : x === Infinity ? '+Inf' : x === -Infinity ? '-Inf' : 'finite';
}

/**
 * Every element within atol + rtol·|want| + crtol·scale, and NaN/±Inf matching in class. Returns the
 * worst error as a fraction of its bound (for a printout), failing with the first 5 offenders.
 */
export function expectWithin(
  got: ArrayLike<number>,
  want: ArrayLike<number>,
  tol: Tol,
  what: string,
  scale?: ArrayLike<number>,
): number {
  expect(got.length, `${what}: length`).toBe(want.length);
  const bad: string[] = [];
  let worst = 0;
  for (let i = 0; i < want.length; i++) {
    const a = got[i];
    const b = want[i];
    if (!Number.isFinite(b) || !Number.isFinite(a)) {
      if (cls(a) !== cls(b) && bad.length < 5) bad.push(`[${i}] got ${a} (${cls(a)}), want ${b} (${cls(b)})`);
      continue;
    }
    const bound = tol.atol + tol.rtol * Math.abs(b) + (tol.crtol ?? 0) * (scale ? scale[i] : 0);
    const e = Math.abs(a - b);
    if (bound > 0) worst = Math.max(worst, e / bound);
    else if (e > 0) worst = Infinity;
    if (!(e <= bound) && bad.length < 5)
      bad.push(`[${i}] got ${a}, want ${b}, |err| ${e.toExponential(3)} > bound ${bound.toExponential(3)}`);
  }
  expect(bad, `${what}: elements outside the tolerance`).toEqual([]);
  return worst;
}

/** The bits of a float array (f32 as u32, f16/bf16 as they are), for bitwise comparisons. */
export function bits(x: Float32Array | Uint16Array | Int32Array | Uint8Array): number[] {
  if (x instanceof Float32Array) return Array.from(new Uint32Array(x.buffer, x.byteOffset, x.length));
  return Array.from(x);
}
