/// <reference types="@webgpu/types" />
/**
 * What every op module of the webgpu backend receives: the runtime (device, buffers, faults,
 * dispatch), the pipeline cache, the tuning knobs, and helpers to pick a module variant.
 * Op modules (logprobs.ts, advantages.ts, thr.ts) export plain functions
 * `(kit: WebGpuKit, args) => Promise<result>`; index.ts wires them into the Backend.
 */
import { GrpoKernelsError } from '../../errors.js';
import type { GpuRuntime } from './runtime.js';
import { defaultWorkgroupSize, PipelineCache } from './shaders.js';

/** Knobs, mainly for tests; defaults suit real use. Mutable on a live backend. */
export interface Tuning {
  /** Use subgroup reductions when the device has 'subgroups' (else workgroup-memory trees). */
  subgroups: boolean;
  /** Read f16 through native `f16` arrays when the device has 'shader-f16' (else unpack u32 words). */
  shaderF16: boolean;
  /** Cap on rows per chunk (tests force chunking with small values). */
  maxChunkRows: number;
  /** logprobs forward: segments per row (test only; overrides the count V alone fixes, so changes the bits). */
  splits: number | undefined;
}

export class WebGpuKit {
  readonly rt: GpuRuntime;
  readonly pipelines: PipelineCache;
  readonly tuning: Tuning;
  /** Workgroup size of every kernel (override constant WG): a power of two from the limits. */
  readonly wg: number;
  /** 16-byte storage buffers to bind where an optional input or output is absent. */
  readonly dummies: GPUBuffer[];

  constructor(rt: GpuRuntime, tuning: Partial<Tuning> = {}) {
    this.rt = rt;
    this.pipelines = new PipelineCache(rt);
    this.tuning = {
      subgroups: true,
      shaderF16: true,
      maxChunkRows: Number.POSITIVE_INFINITY,
      splits: undefined,
      ...tuning,
    };
    this.wg = defaultWorkgroupSize(rt);
    this.dummies = [0, 1, 2, 3].map(() => rt.storageBuffer(16, 'dummy'));
  }

  get useSubgroups(): boolean {
    return this.tuning.subgroups && this.rt.features.has('subgroups');
  }

  get useShaderF16(): boolean {
    return this.tuning.shaderF16 && this.rt.features.has('shader-f16');
  }

  /** The common.wgsl reduction section for the current settings. */
  get reduceSection(): string {
    return this.useSubgroups ? 'reduce_subgroup' : 'reduce_tree';
  }

  /** Throws SHAPE when a vector of `n` 4-byte elements cannot be bound whole. */
  checkVector(argument: string, n: number): void {
    const max = this.rt.limits.maxStorageBufferBindingSize;
    if (n * 4 > max) {
      throw new GrpoKernelsError(
        'SHAPE',
        `${argument}: ${n} elements (${n * 4} bytes) exceed this device's storage binding limit (${max} bytes)`,
        { argument },
      );
    }
  }

  dispose(): void {
    for (const d of this.dummies) this.rt.destroyBuffer(d);
  }
}

/** Scratch buffers of one op: created inside run(), destroyed once it has submitted (or failed). */
export class Scratch {
  readonly #rt: GpuRuntime;
  readonly #made: GPUBuffer[] = [];
  constructor(rt: GpuRuntime) {
    this.#rt = rt;
  }
  buffer(bytes: number, label: string): GPUBuffer {
    const b = this.#rt.storageBuffer(bytes, label);
    this.#made.push(b);
    return b;
  }
  release(): void {
    for (const b of this.#made) this.#rt.destroyBuffer(b);
    this.#made.length = 0;
  }
}

/** Runs `fn` inside rt.run and releases its scratch after submission (or failure). */
export async function runWithScratch<T>(k: WebGpuKit, label: string, fn: (s: Scratch) => T): Promise<T> {
  const s = new Scratch(k.rt);
  try {
    return await k.rt.run(label, () => fn(s));
  } finally {
    s.release();
  }
}
