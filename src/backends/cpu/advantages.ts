/** The advantages family on the native cpu backend: argument plumbing to native/cpu/advantages.cc. */
import type { Tensor } from '../../tensor.js';
import type { AdvantagesArgs, AdvantagesResult, ExpandToTokensArgs, WhitenArgs } from '../backend.js';
import { arrayOf, type CpuQueue, cpuEmpty, optArrayOf } from './storage.js';

export async function cpuAdvantages(q: CpuQueue, a: AdvantagesArgs): Promise<AdvantagesResult> {
  const G = a.numGroups;
  const perToken = a.estimator === 'reinforce_pp_baseline';
  const advantages = cpuEmpty(q, 'f32', [perToken ? a.numTokens : a.numResponses]);
  const mean = cpuEmpty(q, 'f32', [G]);
  const std = cpuEmpty(q, 'f32', [G]);
  const degenerate = cpuEmpty(q, 'u8', [G]);
  await q.run(() =>
    q.device.advantages({
      rewards: arrayOf(a.rewards),
      groupOffsets: a.groupOffsets,
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
      outAdvantages: arrayOf(advantages),
      outMean: arrayOf(mean),
      outStd: arrayOf(std),
      outDegenerate: arrayOf(degenerate),
    }),
  );
  return { advantages, mean, std, degenerate };
}

export async function cpuExpandToTokens(q: CpuQueue, a: ExpandToTokensArgs): Promise<Tensor<'f32'>> {
  const out = cpuEmpty(q, 'f32', [a.numTokens]);
  await q.run(() =>
    q.device.expandToTokens({
      values: arrayOf(a.values),
      responseOffsets: a.responseOffsets,
      out: arrayOf(out),
    }),
  );
  return out;
}

export async function cpuWhiten(q: CpuQueue, a: WhitenArgs): Promise<Tensor<'f32'>> {
  const out = cpuEmpty(q, 'f32', a.values.shape);
  await q.run(() =>
    q.device.whiten({
      values: arrayOf(a.values),
      mask: optArrayOf(a.mask),
      maskEps: a.maskEps,
      variance: a.variance,
      varianceEps: a.varianceEps,
      keepMean: a.keepMean,
      out: arrayOf(out),
    }),
  );
  return out;
}
