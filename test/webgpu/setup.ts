/**
 * Shared setup of the webgpu tests: one WebGpuBackend per test file (wrapped in a Context so ops
 * go through the same API validation as users' calls), the cpu reference context, and the
 * adapter policy: without an adapter the webgpu tests skip with the reason printed, except
 * when env CI is set, where a missing adapter fails the run (requireAdapter()).
 */
import { expect, it } from 'vitest';
import { createWebGpuBackend, type WebGpuBackend } from '../../src/backends/webgpu/index.js';
import { Context, createContext } from '../../src/context.js';
import type { FloatDType } from '../../src/dtypes.js';
import { encodeFloats } from '../../src/dtypes.js';
import { randomNormal } from '../util/rng.js';

export interface Gpu {
  backend: WebGpuBackend;
  ctx: Context;
}

async function open(): Promise<{ gpu?: Gpu; reason?: string }> {
  try {
    const backend = await createWebGpuBackend();
    return { gpu: { backend, ctx: new Context(backend) } };
  } catch (e) {
    return { reason: (e as Error).message };
  }
}

const opened = await open();
/** The backend under test, or undefined (then `skipReason` says why). */
export const gpu: Gpu | undefined = opened.gpu;
export const skipReason: string | undefined = opened.reason;
export const noGpu = gpu === undefined;
if (noGpu) console.warn(`webgpu tests skipped: ${skipReason}`);

/** Fails the run when CI is set and no adapter was found; otherwise records the skip. */
export function requireAdapter(): void {
  it.skipIf(!noGpu || !process.env.CI)('a WebGPU adapter is present (required when env CI is set)', () => {
    expect.fail(`CI is set but the webgpu backend could not start: ${skipReason}`);
  });
}

export const cpu = await createContext({ backend: 'js' });

/** Random logits [n, v] as a host array of `dtype` (N(0, scale²), rounded to the dtype). */
export function randomLogits(seed: number, n: number, v: number, dtype: FloatDType, scale = 3) {
  return encodeFloats(dtype, randomNormal(seed, n * v, scale));
}

/** Resets the tuning knobs to their defaults (tests change them). */
export function resetTuning(b: WebGpuBackend): void {
  Object.assign(b.kit.tuning, {
    subgroups: true,
    shaderF16: true,
    maxChunkRows: Number.POSITIVE_INFINITY,
    splits: undefined,
  });
}
