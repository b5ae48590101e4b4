/** CPU tensors: the storage is a host typed array; read() copies it. */

import { debugHooks, POISON_I32 } from '../../debug.js';
import { allocHost, type DType, type HostArrayMap } from '../../dtypes.js';
import { Tensor, type TensorStorage } from '../../tensor.js';

export class JsStorage<D extends DType> implements TensorStorage<D> {
  data: HostArrayMap[D] | undefined;
  constructor(data: HostArrayMap[D]) {
    this.data = data;
  }
  read(): Promise<HostArrayMap[D]> {
    const d = this.data!;
    return Promise.resolve(d.slice() as HostArrayMap[D]);
  }
  free(): void {
    this.data = undefined;
  }
}

/** Wraps a host array as a js Tensor, taking ownership (no copy). */
export function jsTensor<D extends DType>(
  data: HostArrayMap[D],
  shape: readonly number[],
  dtype: D,
): Tensor<D> {
  return new Tensor(dtype, shape, 'js', new JsStorage(data));
}

/** The host array behind a js Tensor (no copy). Kernels read inputs through this, never write them. */
export function hostData<D extends DType>(t: Tensor<D>): HostArrayMap[D] {
  return (t.storage as JsStorage<D>).data!;
}

/** A fresh output array, filled with the test poison when one is set (src/debug.ts). */
export function jsOutput<D extends DType>(dtype: D, length: number): HostArrayMap[D] {
  const out = allocHost(dtype, length);
  const p = debugHooks.poison;
  if (p !== undefined) {
    if (dtype === 'u8') out.fill(0xab);
    else if (dtype === 'f16' || dtype === 'bf16') out.fill(0x7e01);
    else out.fill(dtype === 'i32' ? POISON_I32 : p);
  }
  return out;
}
