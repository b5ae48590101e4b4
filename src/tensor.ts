import type { DType, HostArrayMap } from './dtypes.js';
import { GrpoKernelsError } from './errors.js';

export type BackendName = 'cpu' | 'webgpu' | 'cuda';

/**
 * What a backend keeps for one tensor: its memory (a typed array, a GPUBuffer, a device pointer)
 * and how to read it back and free it. Backends extend this with their own handle fields.
 */
export interface TensorStorage<D extends DType = DType> {
  /** Copies the tensor's elements to a new host array. */
  read(): Promise<HostArrayMap[D]>;
  /** Releases the memory; called once, by Tensor.dispose(). Must not free memory the caller owns. */
  free(): void;
}

/**
 * A tensor owned by a context. Results stay on their backend until read, so ops chain without
 * round trips. Dispose it (or use `using`) to free device memory.
 */
export class Tensor<D extends DType = DType> {
  readonly dtype: D;
  readonly shape: readonly number[];
  readonly backend: BackendName;
  readonly size: number;
  #storage: TensorStorage<D> | undefined;

  constructor(dtype: D, shape: readonly number[], backend: BackendName, storage: TensorStorage<D>) {
    this.dtype = dtype;
    this.shape = Object.freeze([...shape]);
    this.backend = backend;
    this.size = shape.reduce((a, b) => a * b, 1);
    this.#storage = storage;
  }

  get disposed(): boolean {
    return this.#storage === undefined;
  }

  /** The backend's storage; throws if the tensor was disposed. For backends, not for users. */
  get storage(): TensorStorage<D> {
    if (this.#storage === undefined) {
      throw new GrpoKernelsError(
        'SHAPE',
        `tensor [${this.shape.join(', ')}] ${this.dtype}: used after dispose()`,
      );
    }
    return this.#storage;
  }

  /** Copies the elements to a new host typed array (f16/bf16 as raw bits in a Uint16Array). */
  read(): Promise<HostArrayMap[D]> {
    return this.storage.read();
  }

  /** Frees the tensor's memory; later use throws. Calling it twice is harmless. */
  dispose(): void {
    const s = this.#storage;
    this.#storage = undefined;
    s?.free();
  }

  [Symbol.dispose](): void {
    this.dispose();
  }
}
