/// <reference types="@webgpu/types" />
/**
 * WebGPU tensors: a TensorStorage holding a GPUBuffer whose size is the tensor's bytes rounded
 * up to 4 (f16/bf16 pack two elements per u32 word, u8 four; kernels read words and unpack).
 * - upload: queue.writeBuffer (padded to 4 bytes);
 * - read(): copy to a MAP_READ staging buffer, map, return the dtype's typed array;
 * - outputs: `outputTensor` allocates and, when debugHooks.poison is set (src/debug.ts), fills
 *   the buffer with it before any kernel runs (f32: the value's bits; i32: its truncation;
 *   u8: 0xAB; f16/bf16: 0x7E01 per element, as the cpu backend does);
 * - wrapped buffers (fromGPUBuffer) are never destroyed by free().
 */
import { debugHooks, POISON_I32 } from '../../debug.js';
import { bytesPerElement, type DType, type HostArrayMap } from '../../dtypes.js';
import { GrpoKernelsError } from '../../errors.js';
import { Tensor, type TensorStorage } from '../../tensor.js';
import { snapshotArgs } from '../snapshot.js';
import { type GpuRuntime, roundUp, Usage } from './runtime.js';

export class GpuStorage<D extends DType> implements TensorStorage<D> {
  readonly rt: GpuRuntime;
  readonly buffer: GPUBuffer;
  readonly dtype: D;
  readonly length: number;
  /** False for a caller's buffer (fromGPUBuffer): free() leaves it alone. */
  readonly owned: boolean;
  /** Ops that hold this storage as an input (pinInputs); free() waits for them. */
  pins = 0;
  /** free() was called while pinned: the last unpin destroys the buffer. */
  released = false;

  constructor(rt: GpuRuntime, buffer: GPUBuffer, dtype: D, length: number, owned: boolean) {
    this.rt = rt;
    this.buffer = buffer;
    this.dtype = dtype;
    this.length = length;
    this.owned = owned;
  }

  get bytes(): number {
    return this.length * bytesPerElement(this.dtype);
  }

  async read(): Promise<HostArrayMap[D]> {
    // After every op called before it (GpuRuntime.ordered): an in-place op's result included.
    const raw = await this.rt.ordered(() => this.rt.readBuffer(this.buffer, roundUp(this.bytes, 4)));
    return hostView(this.dtype, raw, this.length);
  }

  free(): void {
    if (!this.owned) return;
    if (this.pins > 0) this.released = true;
    else this.rt.destroyBuffer(this.buffer);
  }
}

function hostView<D extends DType>(dtype: D, raw: ArrayBuffer, length: number): HostArrayMap[D] {
  switch (dtype) {
    case 'f32':
      return new Float32Array(raw, 0, length) as HostArrayMap[D];
    case 'i32':
      return new Int32Array(raw, 0, length) as HostArrayMap[D];
    case 'f16':
    case 'bf16':
      return new Uint16Array(raw, 0, length) as HostArrayMap[D];
    default:
      return new Uint8Array(raw, 0, length) as HostArrayMap[D];
  }
}

const count = (shape: readonly number[]) => shape.reduce((a, b) => a * b, 1);

/** Uploads a host array as a new tensor. */
export function uploadTensor<D extends DType>(
  rt: GpuRuntime,
  data: HostArrayMap[D],
  shape: readonly number[],
  dtype: D,
): Tensor<D> {
  rt.check();
  const buffer = rt.storageBuffer(data.byteLength, 'tensor');
  rt.writeBuffer(buffer, 0, data);
  return new Tensor(dtype, shape, 'webgpu', new GpuStorage(rt, buffer, dtype, data.length, true));
}

/**
 * A new output tensor, poisoned when debugHooks.poison is set. Call inside GpuRuntime.run() so
 * an allocation failure surfaces as OUT_OF_MEMORY and the buffer is freed if the op fails.
 */
export function outputTensor<D extends DType>(rt: GpuRuntime, dtype: D, shape: readonly number[]): Tensor<D> {
  const n = count(shape);
  const bytes = n * bytesPerElement(dtype);
  const buffer = rt.storageBuffer(bytes, 'output');
  const p = debugHooks.poison;
  if (p !== undefined) fillWords(rt, buffer, roundUp(Math.max(bytes, 4), 4), poisonWord(dtype, p));
  return new Tensor(dtype, shape, 'webgpu', new GpuStorage(rt, buffer, dtype, n, true));
}

/** The u32 pattern that fills a buffer of `dtype` with the poison. */
export function poisonWord(dtype: DType, p: number): number {
  switch (dtype) {
    case 'f32':
      return new Uint32Array(new Float32Array([p]).buffer)[0];
    case 'i32':
      return POISON_I32 >>> 0;
    case 'u8':
      return 0xabababab;
    default:
      return 0x7e017e01;
  }
}

/** Fills `bytes` (a multiple of 4) of a buffer with a u32 word, by writeBuffer in ≤ 4 MiB pieces. */
export function fillWords(rt: GpuRuntime, buffer: GPUBuffer, bytes: number, word: number): void {
  const piece = Math.min(bytes, 4 << 20);
  const pattern = new Uint32Array(piece / 4).fill(word);
  for (let at = 0; at < bytes; at += piece) {
    const n = Math.min(piece, bytes - at);
    rt.device.queue.writeBuffer(buffer, at, pattern, 0, n / 4);
  }
}

/** Wraps a caller's GPUBuffer (no copy; free() does not destroy it). */
export function wrapBuffer<D extends DType>(
  rt: GpuRuntime,
  buffer: unknown,
  shape: readonly number[],
  dtype: D,
): Tensor<D> {
  rt.check();
  const b = buffer as Partial<GPUBuffer>;
  if (!rt.isBuffer(b)) {
    const got =
      buffer === null ? 'null' : typeof buffer === 'object' ? 'another object' : `a ${typeof buffer}`;
    throw new GrpoKernelsError('DTYPE', `buffer: expected a GPUBuffer of this context's WebGPU, got ${got}`, {
      argument: 'buffer',
    });
  }
  if (!Array.isArray(shape) || !shape.every((d) => Number.isInteger(d) && d >= 0)) {
    throw new GrpoKernelsError(
      'SHAPE',
      `shape: expected non-negative integers, got ${JSON.stringify(shape)}`,
      {
        argument: 'shape',
      },
    );
  }
  const n = count(shape);
  const need = roundUp(n * bytesPerElement(dtype), 4);
  if (b.size < need) {
    throw new GrpoKernelsError(
      'SHAPE',
      `buffer: expected at least ${need} bytes for [${shape.join(', ')}] ${dtype} (rounded up to 4), got ${b.size}`,
      { argument: 'buffer' },
    );
  }
  const needUsage = Usage.STORAGE | Usage.COPY_SRC;
  if ((b.usage & needUsage) !== needUsage) {
    throw new GrpoKernelsError('DTYPE', 'buffer: expected usage STORAGE | COPY_SRC (read() copies from it)', {
      argument: 'buffer',
    });
  }
  return new Tensor(dtype, shape, 'webgpu', new GpuStorage(rt, buffer as GPUBuffer, dtype, n, false));
}

/** The storages of tensors that ops in flight hold as inputs (pinInputs), by tensor. */
const inUse = new WeakMap<Tensor, GpuStorage<DType>>();

/**
 * Runs an op (called synchronously, when the API hands it its arguments) on a snapshot of them,
 * with every tensor among them pinned until its promise settles, by which time it has submitted all
 * its work. An op awaits pipelines and room for its device checks before it binds its inputs and
 * uploads its host arrays, and the caller may dispose an input or reuse an array meanwhile, as it may
 * on the other backends (the cpu backend snapshots its host arrays too, the cuda addon copies them):
 * - host arrays (offsets, layouts: metadata the API has already scanned to validate it) are copied
 *   into the snapshot, so a later write by the caller changes nothing;
 * - a tensor disposed meanwhile keeps its storage for the op (gpuStorage finds it) and its buffer
 *   until the op has settled; WebGPU rejects a submit that binds a destroyed buffer, while destroying
 *   one after its submit is safe.
 */
export function pinInputs<A extends object, T>(args: A, op: (snapshot: A) => Promise<T>): Promise<T> {
  const pinned = new Map<Tensor, GpuStorage<DType>>();
  let snapshot: A;
  try {
    snapshot = snapshotArgs(args, (t) => {
      if (!t.disposed && !pinned.has(t)) {
        const s = t.storage;
        if (s instanceof GpuStorage) pinned.set(t, s);
      }
    });
  } catch (e) {
    return Promise.reject(e);
  }
  for (const [t, s] of pinned) {
    s.pins++;
    inUse.set(t, s);
  }
  return op(snapshot).finally(() => {
    for (const [t, s] of pinned) {
      if (--s.pins > 0) continue;
      inUse.delete(t);
      if (s.released) s.rt.destroyBuffer(s.buffer);
    }
  });
}

/** The GpuStorage behind a webgpu tensor (throws for tensors of another backend). */
export function gpuStorage<D extends DType>(t: Tensor<D>, argument = 'tensor'): GpuStorage<D> {
  const s = (t.disposed ? inUse.get(t) : undefined) ?? t.storage;
  if (!(s instanceof GpuStorage)) {
    throw new GrpoKernelsError(
      'DTYPE',
      `${argument}: expected a tensor of the webgpu backend, got ${t.backend}`,
      {
        argument,
      },
    );
  }
  return s as GpuStorage<D>;
}
