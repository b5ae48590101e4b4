/**
 * Native cpu tensors: a host typed array, written by the addon's job thread. An op queued but not yet
 * settled may still be writing one (in place, the logits), so read() first waits for every op queued
 * before it (a fence job), unless none is in flight.
 */
import type { DType, HostArrayMap } from '../../dtypes.js';
import { GrpoKernelsError } from '../../errors.js';
import { Tensor, type TensorStorage } from '../../tensor.js';
import { jsOutput } from '../js/storage.js';
import { type NativeCpuDevice, native } from './native.js';

/** The device and its count of ops in flight (read() skips the fence when it is 0). */
export class CpuQueue {
  inFlight = 0;
  constructor(readonly device: NativeCpuDevice) {}

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
    // A queued job holds its own reference to the array (native/addon_cpu.cc): dropping ours is safe.
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
  return cpuTensor(queue, jsOutput(dtype, n), shape, dtype);
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
