/**
 * The arguments an op got from the API, with every host typed array among them (offsets, layouts,
 * plans: metadata the API has already scanned to validate it) replaced by a copy of its own, so that the
 * caller may rewrite an array as soon as the call returns. Tensors are kept (`onTensor` sees each one);
 * plain objects and arrays are walked to `depth` levels. A backend whose op reads its host arrays after
 * the call returns takes its arguments through this: webgpu (an op awaits pipelines before it uploads,
 * storage.ts's pinInputs) and the native cpu backend (its addon reads them in place, on its pool's
 * threads, when the job runs). The cuda addon copies them at the call.
 */
import { Tensor } from '../tensor.js';

export function snapshotArgs<A extends object>(args: A, onTensor?: (t: Tensor) => void, depth = 4): A {
  const copy = (v: unknown, left: number): unknown => {
    if (v instanceof Tensor) {
      onTensor?.(v);
      return v;
    }
    if (ArrayBuffer.isView(v)) return (v as unknown as { slice?(): unknown }).slice?.() ?? v;
    if (left > 0 && Array.isArray(v)) return v.map((x) => copy(x, left - 1));
    if (left > 0 && typeof v === 'object' && v !== null && Object.getPrototypeOf(v) === Object.prototype) {
      const out: Record<string, unknown> = {};
      for (const [k, x] of Object.entries(v)) out[k] = copy(x, left - 1);
      return out;
    }
    return v;
  };
  return copy(args, depth) as A;
}
