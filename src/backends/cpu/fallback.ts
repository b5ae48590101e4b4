/**
 * Ops the native cpu backend has no kernel for yet fall back to the js reference (the same float64
 * code, docs/cpu.md): the reference reads the native tensors' host arrays directly (both storages keep
 * a plain `data` array) once every queued op has settled, and its outputs are adopted as native cpu
 * tensors without a copy. Errors reject the op's promise, as the native ops' do.
 */
import { Tensor } from '../../tensor.js';
import { hostData } from '../js/storage.js';
import { type CpuQueue, cpuTensor } from './storage.js';

function adopt<T>(q: CpuQueue, v: T): T {
  if (v instanceof Tensor) {
    if (v.backend === 'cpu') return v;
    return cpuTensor(q, hostData(v), v.shape, v.dtype) as T;
  }
  if (v !== null && typeof v === 'object' && !ArrayBuffer.isView(v)) {
    const out: Record<string, unknown> = {};
    for (const [k, x] of Object.entries(v as Record<string, unknown>)) out[k] = adopt(q, x);
    return out as T;
  }
  return v;
}

/** Runs a js reference op on native cpu tensors after the queue drains; returns native cpu tensors. */
export async function viaReference<A, R>(q: CpuQueue, reference: (a: A) => R, a: A): Promise<R> {
  await q.fence();
  return adopt(q, reference(a));
}
