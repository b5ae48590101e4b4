/**
 * The scratch memory the fused LM head (linearLogprobs, linearLogprobsBackward) allocates on a
 * context's backend for a given shape: the backend's own plan, the one its launches size their
 * scratch with (cpu: the addon's cpuLmheadPlan for the context's threads and LM-head build; js:
 * jsLmheadScratchBytes; webgpu: lmheadPlan under the device's limits; cuda: the addon's lmheadPlan).
 * For benchmarks and capacity planning; it allocates nothing.
 */
import type { DeviceInfo } from '../backends/backend.js';
import { Context } from '../context.js';
import type { FloatDType } from '../dtypes.js';
import { FLOAT_DTYPES } from '../dtypes.js';
import { fail } from '../errors.js';
import type { BackendName } from '../tensor.js';
import type { LinearLogprobsGradDtype } from './lmhead.js';
import { checkEnum, checkNumber, checkOptions, describe } from './validate.js';

export interface LmheadShape {
  /** N, the hidden rows. */
  rows: number;
  /** V, the head's rows (the vocabulary, or a shard of it). */
  vocab: number;
  /** d, the hidden size. */
  dim: number;
  dtype: FloatDType;
  /** The backward's gradients (linearLogprobsBackward's gradDtype): 'f32' (default) or 'input'. */
  gradDtype?: LinearLogprobsGradDtype;
}

/** Bytes of scratch of one forward and of one backward call; NaN where the backend has no plan. */
export async function lmheadScratchBytes(
  ctx: { readonly backend: BackendName; readonly device: DeviceInfo },
  shape: LmheadShape,
): Promise<{ forward: number; backward: number }> {
  // A Context, not an object shaped like one: the plans read its device's limits (webgpu) and thread
  // count (cpu, passed to the addon), and an unknown backend name fell through to the cuda addon.
  if (!(ctx instanceof Context)) fail('DTYPE', 'ctx', `expected a Context, got ${describe(ctx)}`);
  const o = checkOptions<LmheadShape>('shape', shape, ['rows', 'vocab', 'dim', 'dtype', 'gradDtype']);
  if (shape === undefined) fail('DTYPE', 'shape', 'expected { rows, vocab, dim, dtype }, got undefined');
  const rows = checkNumber('shape.rows', o.rows, { integer: true, min: 0, max: 2 ** 31 - 1 });
  const vocab = checkNumber('shape.vocab', o.vocab, { integer: true, min: 1, max: 2 ** 31 - 1 });
  const dim = checkNumber('shape.dim', o.dim, { integer: true, min: 0, max: 2 ** 31 - 1 });
  const dtype = checkEnum('shape.dtype', o.dtype, FLOAT_DTYPES);
  if (o.gradDtype !== undefined) checkEnum('shape.gradDtype', o.gradDtype, ['f32', 'input'] as const);
  // Gradients in the input dtype need scratch of their own only for f16/bf16 inputs (else a no-op).
  const input = shape.gradDtype === 'input' && dtype !== 'f32';
  if (ctx.backend === 'js') {
    // js rounds each f64 sum where it stores it: no scratch of its own.
    const { jsLmheadScratchBytes } = await import('../backends/js/lmhead.js');
    return jsLmheadScratchBytes(rows, vocab, dim);
  }
  if (ctx.backend === 'cpu') {
    const { cpuLmheadScratchBytes } = await import('../backends/cpu/lmhead.js');
    return cpuLmheadScratchBytes(ctx.device, { rows, vocab, dim, dtype, gradDtype: input ? 'input' : 'f32' });
  }
  if (ctx.backend === 'webgpu') {
    const { lmheadPlan } = await import('../backends/webgpu/lmhead.js');
    const d = ctx.device.details;
    const p = lmheadPlan(
      {
        maxStorageBufferBindingSize: Number(d.maxStorageBufferBindingSize),
        minStorageBufferOffsetAlignment: Number(d.minStorageBufferOffsetAlignment),
      },
      rows,
      vocab,
      dim,
      dtype,
    );
    return {
      forward: p.forwardScratchBytes,
      backward: input ? p.backwardInputScratchBytes : p.backwardScratchBytes,
    };
  }
  const { loadNativeAddon } = await import('../backends/cuda/native.js');
  const p = loadNativeAddon().lmheadPlan?.({ rows, vocab, dim, dtype });
  return p === undefined
    ? { forward: Number.NaN, backward: Number.NaN }
    : { forward: p.forwardBytes, backward: input ? p.backwardInputBytes : p.backwardBytes };
}
