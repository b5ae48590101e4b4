/**
 * CUDA tensors: a device pointer (bigint) owned by this backend (cudaMallocAsync on its stream,
 * freed in stream order after every queued op) or wrapped from the caller (never freed).
 */
import { debugHooks } from '../../debug.js';
import { allocHost, bytesPerElement, type DType, type HostArrayMap } from '../../dtypes.js';
import { GrpoKernelsError } from '../../errors.js';
import { Tensor, type TensorStorage } from '../../tensor.js';
import type { LogprobsResult } from '../backend.js';
import { type NativeDevice, native, nativeSync } from './native.js';

export class CudaStorage<D extends DType> implements TensorStorage<D> {
  constructor(
    readonly device: NativeDevice,
    readonly ptr: bigint,
    readonly dtype: D,
    readonly length: number,
    /** False for fromDevicePointer: the caller keeps ownership. */
    readonly owned: boolean,
  ) {}

  async read(): Promise<HostArrayMap[D]> {
    const out = allocHost(this.dtype, this.length);
    if (this.length > 0) await native(() => this.device.read(this.ptr, out));
    return out;
  }

  free(): void {
    if (this.owned && this.ptr !== 0n) this.device.free(this.ptr);
  }
}

/** The device-side helpers every op file uses. */
export class CudaMemory {
  constructor(readonly device: NativeDevice) {}

  /** A new uninitialised tensor of this backend. */
  empty<D extends DType>(dtype: D, shape: readonly number[]): Tensor<D> {
    const n = shape.reduce((a, b) => a * b, 1);
    const ptr = nativeSync(() => this.device.alloc(BigInt(n * bytesPerElement(dtype))));
    return new Tensor(dtype, shape, 'cuda', new CudaStorage(this.device, ptr, dtype, n, true));
  }

  upload<D extends DType>(data: HostArrayMap[D], shape: readonly number[], dtype: D): Tensor<D> {
    const t = this.empty(dtype, shape);
    if (data.byteLength > 0) nativeSync(() => this.device.upload(ptrOf(t), data));
    return t;
  }

  wrap<D extends DType>(pointer: bigint | number, shape: readonly number[], dtype: D): Tensor<D> {
    const ptr = typeof pointer === 'bigint' ? pointer : BigInt(pointer);
    const size = bytesPerElement(dtype);
    if (ptr < 0n || (ptr === 0n && shape.some((d) => d > 0))) {
      throw new GrpoKernelsError('RANGE', 'pointer: expected a non-null device pointer', {
        argument: 'pointer',
      });
    }
    if (ptr % BigInt(size) !== 0n) {
      throw new GrpoKernelsError(
        'RANGE',
        `pointer: expected ${size}-byte alignment for ${dtype}, got 0x${ptr.toString(16)}`,
        {
          argument: 'pointer',
        },
      );
    }
    const n = shape.reduce((a, b) => a * b, 1);
    return new Tensor(dtype, shape, 'cuda', new CudaStorage(this.device, ptr, dtype, n, false));
  }
}

/** The device pointer of a tensor of this backend. */
export function ptrOf(t: Tensor): bigint {
  const s = t.storage;
  if (!(s instanceof CudaStorage)) {
    throw new GrpoKernelsError(
      'DTYPE',
      `tensor [${t.shape.join(', ')}] ${t.dtype}: belongs to the ${t.backend} backend, not cuda`,
    );
  }
  return s.ptr;
}

/** The pointer of an optional tensor (undefined passes through). */
export function optPtr(t: Tensor | undefined): bigint | undefined {
  return t === undefined ? undefined : ptrOf(t);
}

/** Adds the test poison (src/debug.ts) to an op's arguments when it is set. */
export function withPoison<A extends object>(args: A): A & { poison?: number } {
  const p = debugHooks.poison;
  return p === undefined ? args : { ...args, poison: p };
}

/** What an op allocates its outputs with (withOutputs). */
export interface OutputScope {
  /** A new uninitialised output tensor (CudaMemory.empty), disposed if the op fails. */
  empty<D extends DType>(dtype: D, shape: readonly number[]): Tensor<D>;
}

/**
 * Runs an op on outputs it allocates through `out` and returns its result. If anything fails (an
 * allocation: OUT_OF_MEMORY thrown after earlier outputs were made; the native call; building the
 * arguments), every output made so far is disposed before the error propagates: a failed op leaves no
 * device memory behind.
 */
export async function withOutputs<R>(mem: CudaMemory, body: (out: OutputScope) => Promise<R>): Promise<R> {
  const made: Tensor[] = [];
  const out: OutputScope = {
    empty(dtype, shape) {
      const t = mem.empty(dtype, shape);
      made.push(t);
      return t;
    },
  };
  try {
    return await body(out);
  } catch (e) {
    for (const t of made) t.dispose();
    throw e;
  }
}

/**
 * A logprobs-shaped op's outputs (logprobs, lse, and entropy / sumSquares when asked), made in `out`,
 * with their pointer arguments: one place for the forward, the LM head's forward and the merge.
 */
export function logprobsOutputs(
  out: OutputScope,
  rows: number,
  want: { entropy?: boolean; sumSquares?: boolean },
) {
  const result: LogprobsResult = { logprobs: out.empty('f32', [rows]), lse: out.empty('f32', [rows]) };
  if (want.entropy) result.entropy = out.empty('f32', [rows]);
  if (want.sumSquares) result.sumSquares = out.empty('f32', [rows]);
  return {
    result,
    args: {
      outLogprobs: ptrOf(result.logprobs),
      outLse: ptrOf(result.lse),
      outEntropy: optPtr(result.entropy),
      outSumSquares: optPtr(result.sumSquares),
    },
  };
}
