/** The advantages family on CUDA: argument plumbing to native/cuda/advantages.cu. */
import type { Tensor } from '../../tensor.js';
import type { AdvantagesArgs, AdvantagesResult, ExpandToTokensArgs, WhitenArgs } from '../backend.js';
import { native } from './native.js';
import { type CudaMemory, optPtr, ptrOf, withOutputs, withPoison } from './storage.js';

/**
 * n when every group has n ≥ 1 members (offsets 0, n, 2n, …), else 0. Such groups go to the addon as
 * `groupSize` + `numGroups`: nothing to convert or upload, the kernel computes the offsets. Stops at the
 * first unequal pair.
 */
export function uniformGroupSize(groupOffsets: Int32Array): number {
  if (groupOffsets.length < 2 || groupOffsets[0] !== 0) return 0;
  const n = groupOffsets[1];
  if (n < 1) return 0;
  for (let g = 2; g < groupOffsets.length; g++) if (groupOffsets[g] - groupOffsets[g - 1] !== n) return 0;
  return n;
}

export function cudaAdvantages(mem: CudaMemory, a: AdvantagesArgs): Promise<AdvantagesResult> {
  const G = a.numGroups;
  const groupSize = uniformGroupSize(a.groupOffsets);
  const perToken = a.estimator === 'reinforce_pp_baseline';
  const n = perToken ? a.numTokens : a.numResponses;
  return withOutputs(mem, async (out) => {
    const advantages = out.empty('f32', [n]);
    const mean = out.empty('f32', [G]);
    const std = out.empty('f32', [G]);
    const degenerate = out.empty('u8', [G]);
    await native(() =>
      mem.device.advantages(
        withPoison({
          rewards: ptrOf(a.rewards),
          ...(groupSize > 0 ? { groupSize, numGroups: G } : { groupOffsets: a.groupOffsets }),
          responseOffsets: a.responseOffsets,
          estimator: a.estimator,
          std: a.std,
          eps: a.eps,
          scale: a.scale,
          singleton: a.singleton,
          nanRewards: a.nanRewards,
          whitenMaskEps: a.whitenMaskEps,
          whitenVariance: a.whitenVariance,
          whitenVarianceEps: a.whitenVarianceEps,
          outAdvantages: ptrOf(advantages),
          advantagesSize: n,
          outMean: ptrOf(mean),
          outStd: ptrOf(std),
          outDegenerate: ptrOf(degenerate),
        }),
      ),
    );
    return { advantages, mean, std, degenerate };
  });
}

export function cudaExpandToTokens(mem: CudaMemory, a: ExpandToTokensArgs): Promise<Tensor<'f32'>> {
  return withOutputs(mem, async (outputs) => {
    const out = outputs.empty('f32', [a.numTokens]);
    await native(() =>
      mem.device.expandToTokens(
        withPoison({ values: ptrOf(a.values), responseOffsets: a.responseOffsets, out: ptrOf(out) }),
      ),
    );
    return out;
  });
}

export function cudaWhiten(mem: CudaMemory, a: WhitenArgs): Promise<Tensor<'f32'>> {
  return withOutputs(mem, async (outputs) => {
    const out = outputs.empty('f32', a.values.shape);
    await native(() =>
      mem.device.whiten(
        withPoison({
          values: ptrOf(a.values),
          mask: optPtr(a.mask),
          n: a.values.size,
          maskEps: a.maskEps,
          variance: a.variance,
          varianceEps: a.varianceEps,
          keepMean: a.keepMean,
          out: ptrOf(out),
        }),
      ),
    );
    return out;
  });
}
