/**
 * Native cpu tensors: a host typed array, written by the addon's job thread. An op queued but not yet
 * settled may still be writing one (in place, the logits), so read() first waits for every op queued
 * before it (a fence job), unless none is in flight.
 *
 * Freed arrays of 64 KiB or more are kept for the next output of the same size (a caching allocator, as
 * PyTorch's): fresh memory from the OS costs a page fault and a zeroing per 4 KiB on its first write,
 * which for a [256, 151936] f32 gradient (155 MB) took longer than the backward itself. At most 1 GiB
 * is kept; ctx.dispose() releases it. Reuse is safe: a freed array is referenced by no live tensor, and
 * jobs run in call order, so any op still reading it runs before the op that will write it.
 */
import { debugHooks, POISON_I32 } from '../../debug.js';
import { allocHost, bytesPerElement, type DType, type HostArrayMap } from '../../dtypes.js';
import { GrpoKernelsError } from '../../errors.js';
import { Tensor, type TensorStorage } from '../../tensor.js';
import { type NativeCpuDevice, native } from './native.js';

/** The device and its count of ops in flight (read() skips the fence when it is 0). */
export class CpuQueue {
  inFlight = 0;
  readonly #cache = new Map<number, ArrayBuffer[]>();
  #cachedBytes = 0;
  /**
   * `adviseHugePages`: the addon's cpuAdviseHugePages (native/cpu/memory.cc), absent in older builds.
   */
  constructor(
    readonly device: NativeCpuDevice,
    readonly adviseHugePages?: (array: ArrayBufferView) => number,
  ) {}

  /**
   * A copy of uploaded host data. One of 4 MiB or more first gets 2 MiB pages for the whole 2 MiB
   * pages inside it (made at their first write, the copy): one TLB entry per 2 MiB instead of per
   * 4 KiB, which a gather of scattered elements feels (gatherProbs: a TLB miss per probability on 4 KiB
   * pages; 1.2-1.5x faster on 2 MiB ones) and the streaming forward too (logprobs f32 ~1.15x). Outputs
   * keep 4 KiB pages: a [256, 151936] gradient on 2 MiB pages, written beside its logits on 2 MiB pages
   * (each element at the same offset in its page as the one it is computed from), made the backward
   * ~25% slower.
   */
  copy<D extends DType>(dtype: D, data: HostArrayMap[D]): HostArrayMap[D] {
    const out = allocHost(dtype, data.length);
    if (out.byteLength >= HUGE_PAGES_FROM) this.adviseHugePages?.(out);
    (out as { set(source: ArrayLike<number>): void }).set(data);
    return out;
  }

  /** A cached buffer of exactly `bytes` bytes, if one was freed. */
  take(bytes: number): ArrayBuffer | undefined {
    const list = this.#cache.get(bytes);
    const b = list?.pop();
    if (b !== undefined) this.#cachedBytes -= bytes;
    return b;
  }

  /** Keeps a freed array's buffer for reuse (whole buffers of ≥ 64 KiB, up to 1 GiB in all). */
  give(a: ArrayBufferView): void {
    const b = a.buffer;
    const bytes = b.byteLength;
    if (!(b instanceof ArrayBuffer) || a.byteOffset !== 0 || a.byteLength !== bytes) return;
    if (bytes < MIN_CACHED || this.#cachedBytes + bytes > MAX_CACHED) return;
    const list = this.#cache.get(bytes);
    if (list === undefined) this.#cache.set(bytes, [b]);
    else list.push(b);
    this.#cachedBytes += bytes;
  }

  /** Releases every cached buffer. */
  clear(): void {
    this.#cache.clear();
    this.#cachedBytes = 0;
  }

  /** Runs one native op, counting it in flight until it settles. */
  async run(call: () => Promise<void>): Promise<void> {
    this.inFlight++;
    try {
      await native(call);
    } finally {
      this.inFlight--;
    }
  }

  /** Waits for every op queued so far. */
  async fence(): Promise<void> {
    if (this.inFlight > 0) await native(() => this.device.synchronize());
  }
}

export class NativeCpuStorage<D extends DType> implements TensorStorage<D> {
  data: HostArrayMap[D] | undefined;
  constructor(
    readonly queue: CpuQueue,
    data: HostArrayMap[D],
  ) {
    this.data = data;
  }
  async read(): Promise<HostArrayMap[D]> {
    const d = this.data!;
    await this.queue.fence();
    return d.slice() as HostArrayMap[D];
  }
  free(): void {
    // A queued job holds its own reference to the array (native/device_wrap.h): dropping ours is safe,
    // and so is handing the buffer to a later output (jobs run in call order).
    if (this.data !== undefined) this.queue.give(this.data);
    this.data = undefined;
  }
}

/** Wraps a host array as a native cpu Tensor, taking ownership (no copy). */
export function cpuTensor<D extends DType>(
  queue: CpuQueue,
  data: HostArrayMap[D],
  shape: readonly number[],
  dtype: D,
): Tensor<D> {
  return new Tensor(dtype, shape, 'cpu', new NativeCpuStorage(queue, data));
}

/** A fresh output tensor (poisoned for tests when the hook is set, src/debug.ts). */
export function cpuEmpty<D extends DType>(queue: CpuQueue, dtype: D, shape: readonly number[]): Tensor<D> {
  const n = shape.reduce((a, b) => a * b, 1);
  // The test poison is written here, on the main thread: a cached buffer may then be reused only once
  // no queued op can still be reading it. Without poison only jobs write outputs, in call order.
  const reusable = debugHooks.poison === undefined || queue.inFlight === 0;
  const cached = reusable ? queue.take(n * bytesPerElement(dtype)) : undefined;
  const data = cached === undefined ? allocHost(dtype, n) : view(dtype, cached);
  const p = debugHooks.poison;
  if (p !== undefined) {
    if (dtype === 'u8') data.fill(0xab);
    else if (dtype === 'f16' || dtype === 'bf16') data.fill(0x7e01);
    else data.fill(dtype === 'i32' ? POISON_I32 : p);
  }
  return cpuTensor(queue, data, shape, dtype);
}

const MIN_CACHED = 1 << 16;
const MAX_CACHED = 1 << 30;
const HUGE_PAGES_FROM = 4 << 20;

function view<D extends DType>(dtype: D, b: ArrayBuffer): HostArrayMap[D] {
  switch (dtype) {
    case 'f32':
      return new Float32Array(b) as HostArrayMap[D];
    case 'f16':
    case 'bf16':
      return new Uint16Array(b) as HostArrayMap[D];
    case 'i32':
      return new Int32Array(b) as HostArrayMap[D];
    default:
      return new Uint8Array(b) as HostArrayMap[D];
  }
}

/** The host array of a tensor of this backend (no copy). */
export function arrayOf<D extends DType>(t: Tensor<D>): HostArrayMap[D] {
  const s = t.storage;
  if (!(s instanceof NativeCpuStorage)) {
    throw new GrpoKernelsError(
      'DTYPE',
      `tensor [${t.shape.join(', ')}] ${t.dtype}: belongs to the ${t.backend} backend, not cpu`,
    );
  }
  return (s as NativeCpuStorage<D>).data!;
}

/** The array of an optional tensor (undefined passes through). */
export function optArrayOf<D extends DType>(t: Tensor<D> | undefined): HostArrayMap[D] | undefined {
  return t === undefined ? undefined : arrayOf(t);
}
