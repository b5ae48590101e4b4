/// <reference types="@webgpu/types" />
/**
 * The shared runtime of the webgpu backend: one per backend instance, handed to every op module.
 * It owns the device and does the four things every op needs:
 * - buffers: `createBuffer` / `destroyBuffer`, with a count of live bytes (tests check it);
 * - faults: `run(label, fn)` records work inside 'validation' + 'out-of-memory' error scopes and
 *   turns what they catch into GrpoKernelsError; device loss makes every later call reject with
 *   DEVICE_LOST (`guard` races any await against the loss, so nothing hangs);
 * - dispatch: `dispatch(encoder, pipeline, bindings, workgroups)` (pipelines come from
 *   shaders.ts), `uniform(layout, values)` for a per-dispatch uniform buffer;
 * - read-back: `readBuffer(buffer, bytes)` through a MAP_READ staging buffer.
 */
import { GrpoKernelsError } from '../../errors.js';
import type { AcquiredDevice } from './gpu.js';
import { packUniforms, type UniformLayout, type UniformValues } from './uniforms.js';

/** GPUBufferUsage / GPUMapMode values, spelled out so no global from Dawn is needed. */
export const Usage = {
  MAP_READ: 0x1,
  COPY_SRC: 0x4,
  COPY_DST: 0x8,
  UNIFORM: 0x40,
  STORAGE: 0x80,
  QUERY_RESOLVE: 0x200,
} as const;
const MAP_READ = 0x1;

/** One binding of a dispatch: a whole buffer, or a window [offset, offset + size). */
export interface Binding {
  binding: number;
  buffer: GPUBuffer;
  offset?: number;
  size?: number;
}

/** The device facts ops plan with. */
export interface GpuLimits {
  maxStorageBufferBindingSize: number;
  maxBufferSize: number;
  minStorageBufferOffsetAlignment: number;
  maxComputeWorkgroupsPerDimension: number;
  maxComputeInvocationsPerWorkgroup: number;
  maxComputeWorkgroupSizeX: number;
  maxComputeWorkgroupStorageSize: number;
}

export const roundUp = (n: number, m: number): number => Math.ceil(n / m) * m;

/** A kernel's flag words on their way back to the host, and what they mean (GpuRuntime.deferCheck). */
export interface DeviceCheck {
  staging: GPUBuffer;
  bytes: number;
  /** The error the words report, or undefined when nothing was raised. */
  report(words: Uint32Array): GrpoKernelsError | undefined;
}
/** Ops with checks in flight before the next one waits for the device. */
export const MAX_PENDING_CHECKS = 64;

export class GpuRuntime {
  readonly device: GPUDevice;
  readonly adapter: GPUAdapter | undefined;
  readonly owned: boolean;
  readonly limits: GpuLimits;
  readonly features: ReadonlySet<string>;
  /** Bytes of buffers this backend created and has not destroyed yet (wrapped buffers excluded). */
  liveBytes = 0;
  /** The largest liveBytes since the last reset (tests of the memory bounds set it to liveBytes). */
  peakBytes = 0;
  /** Set once the device is lost (or the backend disposed); every later call rejects with it. */
  lostReason: string | undefined;
  readonly #lost: Promise<never>;
  /** Uncaptured device errors (outside our scopes), rethrown by the next run(). */
  #uncaptured: GPUError | undefined;
  /** Buffers created inside the current run(): destroyed if the run fails. */
  #created: GPUBuffer[] | undefined;
  /** Per-dispatch buffers (uniforms, small host arrays) destroyed once the run has submitted. */
  #transient: GPUBuffer[] = [];
  #checks: DeviceCheck[] = [];
  /** Times the host has waited for the queue (reads, synchronize, device checks): tests. */
  waits = 0;
  readonly #sizes = new WeakMap<GPUBuffer, number>();
  /** GPUBuffer.prototype of this device's implementation (Dawn's or a browser's): see isBuffer. */
  #bufferProto: object | undefined;
  /** The last call queued by ordered(): every op, read and synchronize waits for it to settle. */
  #tail: Promise<unknown> = Promise.resolve();

  constructor(acquired: AcquiredDevice) {
    this.device = acquired.device;
    this.adapter = acquired.adapter;
    this.owned = acquired.owned;
    const l = this.device.limits;
    this.limits = {
      maxStorageBufferBindingSize: l.maxStorageBufferBindingSize,
      maxBufferSize: l.maxBufferSize,
      minStorageBufferOffsetAlignment: l.minStorageBufferOffsetAlignment,
      maxComputeWorkgroupsPerDimension: l.maxComputeWorkgroupsPerDimension,
      maxComputeInvocationsPerWorkgroup: l.maxComputeInvocationsPerWorkgroup,
      maxComputeWorkgroupSizeX: l.maxComputeWorkgroupSizeX,
      maxComputeWorkgroupStorageSize: l.maxComputeWorkgroupStorageSize,
    };
    this.features = new Set([...this.device.features] as string[]);
    this.#lost = this.device.lost.then((info) => {
      this.lostReason ??= `webgpu device lost (${info.reason}): ${info.message}`;
      throw this.lostError();
    });
    this.#lost.catch(() => {}); // observed by guard(); never an unhandled rejection
    this.device.onuncapturederror = (ev: GPUUncapturedErrorEvent) => {
      ev.preventDefault?.();
      this.#uncaptured ??= ev.error;
    };
  }

  lostError(): GrpoKernelsError {
    return new GrpoKernelsError('DEVICE_LOST', this.lostReason ?? 'webgpu device lost');
  }

  /**
   * Runs `fn` once every call queued before it by ordered() has settled, so that the caller's ops,
   * reads and synchronizes reach the queue in the order they were called, as on the other backends
   * (an in-place op called after an op that reads the same tensor must not overwrite it first, and a
   * read called after it must see it). Without this, an op that awaits a pipeline compile was
   * overtaken by a later op whose pipeline was cached (found by test/api-fuzz.test.ts). The host still
   * runs ahead of the device: an op settles when it has submitted, not when the GPU has finished.
   * Never call it from inside an ordered call (it would wait for itself).
   */
  ordered<T>(fn: () => Promise<T>): Promise<T> {
    const p = this.#tail.then(fn);
    this.#tail = p.catch(() => {});
    return p;
  }

  /** Throws DEVICE_LOST when the device is gone. Call at the start of every op. */
  check(): void {
    if (this.lostReason !== undefined) throw this.lostError();
  }

  /**
   * Awaits `p`, rejecting with DEVICE_LOST instead if the device is lost first; any other fault of
   * the device's (a map that fails, ...) becomes a BACKEND_UNAVAILABLE GrpoKernelsError.
   */
  async guard<T>(p: Promise<T>): Promise<T> {
    this.check();
    try {
      return await Promise.race([p, this.#lost]);
    } catch (e) {
      if (this.lostReason !== undefined) throw this.lostError();
      if (e instanceof GrpoKernelsError) throw e;
      throw new GrpoKernelsError(
        'BACKEND_UNAVAILABLE',
        `webgpu: ${(e as Error)?.name ?? 'Error'}: ${(e as Error)?.message ?? e}`,
        {
          cause: e,
        },
      );
    }
  }

  /** Creates a buffer (size rounded up to 4 bytes, at least 4) and counts it in liveBytes. */
  createBuffer(bytes: number, usage: number, label?: string): GPUBuffer {
    const size = Math.max(4, roundUp(bytes, 4));
    if (size > this.limits.maxBufferSize) {
      throw new GrpoKernelsError(
        'OUT_OF_MEMORY',
        `webgpu: a buffer of ${size} bytes${label ? ` (${label})` : ''} exceeds this device's maxBufferSize (${this.limits.maxBufferSize})`,
      );
    }
    const buffer = this.device.createBuffer({ size, usage, label });
    this.#bufferProto ??= Object.getPrototypeOf(buffer) as object;
    this.#sizes.set(buffer, size);
    this.liveBytes += size;
    if (this.liveBytes > this.peakBytes) this.peakBytes = this.liveBytes;
    this.#created?.push(buffer);
    return buffer;
  }

  /**
   * Whether `x` is a GPUBuffer of this WebGPU implementation (not an object that only looks like one,
   * which Dawn refuses with a TypeError when it is bound or copied).
   */
  isBuffer(x: unknown): x is GPUBuffer {
    if (this.#bufferProto === undefined) this.destroyBuffer(this.createBuffer(4, Usage.COPY_DST, 'probe'));
    return typeof x === 'object' && x !== null && Object.prototype.isPrototypeOf.call(this.#bufferProto, x);
  }

  /** Destroys a buffer made by createBuffer (idempotent). */
  destroyBuffer(buffer: GPUBuffer): void {
    const size = this.#sizes.get(buffer);
    if (size === undefined) return;
    this.#sizes.delete(buffer);
    this.liveBytes -= size;
    buffer.destroy();
  }

  /** A storage buffer for `bytes` of tensor data. */
  storageBuffer(bytes: number, label?: string): GPUBuffer {
    return this.createBuffer(bytes, Usage.STORAGE | Usage.COPY_SRC | Usage.COPY_DST, label);
  }

  /** A buffer holding `data`, destroyed after the current run submits. Only inside run(). */
  transientData(data: ArrayBufferView, usage: number, label?: string): GPUBuffer {
    const buffer = this.createBuffer(data.byteLength, usage | Usage.COPY_DST, label);
    this.#transient.push(buffer);
    this.writeBuffer(buffer, 0, data);
    return buffer;
  }

  /** A uniform buffer holding `values` packed by `layout`, destroyed after the run submits. */
  uniform<K extends string>(layout: UniformLayout<K>, values: UniformValues<K>): GPUBuffer {
    return this.transientData(new Uint8Array(packUniforms(layout, values)), Usage.UNIFORM, layout.name);
  }

  /** queue.writeBuffer with the byte count padded to a multiple of 4. */
  writeBuffer(buffer: GPUBuffer, offset: number, data: ArrayBufferView): void {
    let bytes = new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
    if (bytes.byteLength % 4 !== 0) {
      const padded = new Uint8Array(roundUp(bytes.byteLength, 4));
      padded.set(bytes);
      bytes = padded;
    }
    if (bytes.byteLength > 0) this.device.queue.writeBuffer(buffer, offset, bytes as Uint8Array<ArrayBuffer>);
  }

  /**
   * Records GPU work: `fn` runs synchronously inside error scopes (create buffers, encode, and
   * submit through `submit`); then the scopes are popped and any error they caught is thrown
   * as GrpoKernelsError (OUT_OF_MEMORY for allocation failures, BACKEND_UNAVAILABLE for
   * validation errors, which are bugs of ours), after destroying the buffers `fn` created.
   */
  async run<T>(label: string, fn: () => T): Promise<T> {
    this.check();
    if (this.#uncaptured) {
      const e = this.#uncaptured;
      this.#uncaptured = undefined;
      throw this.#toError(label, e);
    }
    const device = this.device;
    device.pushErrorScope('out-of-memory');
    device.pushErrorScope('validation');
    device.pushErrorScope('internal');
    const created: GPUBuffer[] = [];
    this.#created = created;
    const checksBefore = this.#checks.length;
    let result: T | undefined;
    let thrown: unknown;
    try {
      result = fn();
    } catch (e) {
      thrown = e;
    } finally {
      this.#created = undefined;
      for (const b of this.#transient) this.destroyBuffer(b);
      this.#transient = [];
    }
    // The device checks this run registered: a failed run's are dropped with its buffers (their
    // staging buffers are among them), so a later wait neither maps a destroyed buffer nor reports
    // a check of work that never ran.
    const checks = this.#checks.slice(checksBefore);
    const errors = await this.guard(
      Promise.all([device.popErrorScope(), device.popErrorScope(), device.popErrorScope()]),
    );
    const error = errors.find((e) => e !== null);
    if (thrown !== undefined || error) {
      this.#checks = this.#checks.filter((c) => !checks.includes(c));
      for (const b of created) this.destroyBuffer(b);
      if (thrown !== undefined) throw thrown;
      throw this.#toError(label, error!);
    }
    return result as T;
  }

  #toError(label: string, e: GPUError): GrpoKernelsError {
    const kind = e.constructor?.name ?? 'GPUError';
    const oom = kind === 'GPUOutOfMemoryError' || /out of memory/i.test(e.message);
    return new GrpoKernelsError(
      oom ? 'OUT_OF_MEMORY' : 'BACKEND_UNAVAILABLE',
      `webgpu ${label}: ${oom ? 'out of device memory' : kind}: ${e.message}`,
    );
  }

  /** Finishes and submits an encoder. */
  submit(encoder: GPUCommandEncoder): void {
    this.device.queue.submit([encoder.finish()]);
  }

  /**
   * One compute dispatch. `workgroups` is a flat count: it is spread over x and y when it
   * exceeds maxComputeWorkgroupsPerDimension; kernels flatten with `wid.y * nwg.x + wid.x`.
   */
  dispatch(
    pass: GPUComputePassEncoder,
    pipeline: GPUComputePipeline,
    bindings: readonly Binding[],
    workgroups: number,
  ): void {
    if (workgroups <= 0) return;
    const group = this.device.createBindGroup({
      layout: pipeline.getBindGroupLayout(0),
      entries: bindings.map((b) => ({
        binding: b.binding,
        resource: { buffer: b.buffer, offset: b.offset ?? 0, size: b.size },
      })),
    });
    pass.setPipeline(pipeline);
    pass.setBindGroup(0, group);
    const [x, y] = this.grid(workgroups);
    pass.dispatchWorkgroups(x, y);
  }

  /** [x, y] workgroup counts covering `n` flat workgroups (x·y ≥ n). */
  grid(n: number): [number, number] {
    const max = this.limits.maxComputeWorkgroupsPerDimension;
    if (n <= max) return [n, 1];
    const y = Math.ceil(n / max);
    if (y > max) throw new GrpoKernelsError('SHAPE', `webgpu: ${n} workgroups exceed ${max}² per dispatch`);
    return [Math.ceil(n / y), y];
  }

  /**
   * Registers a kernel's device-side check (docs/DESIGN.md, "Errors from the device"): `staging`
   * (MAP_READ, `bytes` bytes) receives the kernel's flag words in queue order, and the next wait
   * (readBuffer, synchronize, or an op that must wait) maps it and throws the first error
   * `report` finds. The op itself returns without waiting. The runtime destroys `staging`.
   */
  deferCheck(check: DeviceCheck): void {
    this.#checks.push(check);
  }

  /** Checks registered and not yet looked at (an op waits for them beyond MAX_PENDING_CHECKS). */
  get pendingChecks(): number {
    return this.#checks.length;
  }

  /**
   * Maps every pending check's staging buffer (the queue has passed them: they were submitted
   * before) and throws the first raised one, in op order; all are forgotten either way.
   */
  async drainChecks(): Promise<void> {
    const checks = this.#checks;
    this.#checks = [];
    let first: GrpoKernelsError | undefined;
    let fault: unknown;
    for (const c of checks) {
      try {
        if (fault === undefined) {
          this.waits++;
          await this.guard(c.staging.mapAsync(MAP_READ));
          const words = new Uint32Array(c.staging.getMappedRange().slice(0, c.bytes));
          c.staging.unmap();
          first ??= c.report(words);
        }
      } catch (e) {
        fault = e;
      } finally {
        this.destroyBuffer(c.staging);
      }
    }
    if (fault !== undefined) throw fault;
    if (first) throw first;
  }

  /** Copies `bytes` (a multiple of 4) from `buffer` at `offset` to the host, after queued work. */
  async readBuffer(buffer: GPUBuffer, bytes: number, offset = 0): Promise<ArrayBuffer> {
    const size = Math.max(4, roundUp(bytes, 4));
    const staging = await this.run('read', () => {
      const s = this.createBuffer(size, Usage.MAP_READ | Usage.COPY_DST, 'staging');
      const enc = this.device.createCommandEncoder();
      enc.copyBufferToBuffer(buffer, offset, s, 0, size);
      this.submit(enc);
      return s;
    });
    try {
      this.waits++;
      await this.guard(staging.mapAsync(MAP_READ));
      const out = staging.getMappedRange().slice(0, bytes);
      staging.unmap();
      await this.drainChecks(); // a raised check of an earlier op rejects this read
      return out;
    } finally {
      this.destroyBuffer(staging);
    }
  }

  /** Resolves when all submitted work is done. */
  async synchronize(): Promise<void> {
    this.waits++;
    await this.guard(this.device.queue.onSubmittedWorkDone());
    await this.drainChecks();
  }

  /** Destroys the device when we own it; later calls reject with DEVICE_LOST. */
  dispose(): void {
    if (this.lostReason === undefined) this.lostReason = 'webgpu backend disposed';
    if (this.owned) this.device.destroy();
  }
}
