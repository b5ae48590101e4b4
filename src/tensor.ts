import type { DType, HostArrayMap } from './dtypes.js';
import { GrpoKernelsError } from './errors.js';

/**
 * 'js': the TypeScript float64 reference (and the CPU path in browsers); 'cpu': the native SIMD kernels
 * on every core (the addon); 'webgpu'; 'cuda'.
 */
export type BackendName = 'js' | 'cpu' | 'webgpu' | 'cuda';

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

/** Which context (its backend object) made each tensor; set once by the Context (adopt). */
const owners = new WeakMap<Tensor, object>();
/** Backends of disposed contexts: their tensors are unusable. */
const retired = new WeakSet<object>();

/**
 * Records `owner` (a context's backend object) as the owner of every Tensor in `value` (a tensor,
 * or an op's result object of tensors), and returns `value`. For Context only.
 */
export function adopt<T>(value: T, owner: object): T {
  if (value instanceof Tensor) {
    if (!owners.has(value)) owners.set(value, owner);
  } else if (typeof value === 'object' && value !== null && !ArrayBuffer.isView(value)) {
    for (const v of Object.values(value)) if (v instanceof Tensor) adopt(v, owner);
  }
  return value;
}

/** The backend object of the context that made `t` (undefined for a tensor made outside one). */
export function ownerOf(t: Tensor): object | undefined {
  return owners.get(t);
}

/** Marks a context's backend as disposed: its tensors throw on use from now on. For Context only. */
export function retire(owner: object): void {
  retired.add(owner);
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

  /** The backend's storage; throws if the tensor or its context was disposed. For backends, not for users. */
  get storage(): TensorStorage<D> {
    const owner = owners.get(this);
    if (owner !== undefined && retired.has(owner)) {
      throw new GrpoKernelsError(
        'BACKEND_UNAVAILABLE',
        `tensor [${this.shape.join(', ')}] ${this.dtype}: its ${this.backend} context was disposed`,
      );
    }
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
    try {
      return this.storage.read();
    } catch (e) {
      return Promise.reject(e);
    }
  }

  /**
   * Frees the tensor's memory; later use throws. Calling it twice is harmless, and so is calling it
   * after its context was disposed (which freed everything).
   */
  dispose(): void {
    const s = this.#storage;
    this.#storage = undefined;
    const owner = owners.get(this);
    if (owner === undefined || !retired.has(owner)) s?.free();
  }

  [Symbol.dispose](): void {
    this.dispose();
  }
}
