/** The advantages family on CUDA: argument plumbing to native/cuda/advantages.cu. */
import type { Tensor } from '../../tensor.js';
import {
  type AdvantagesArgs,
  type AdvantagesResult,
  ESTIMATORS,
  type ExpandToTokensArgs,
  SCALE_KINDS,
  SINGLETON_POLICIES,
  type WhitenArgs,
} from '../backend.js';
import { type CudaMemory, optPtr, ptrOf, runWithOutputs, withPoison } from './storage.js';

// The enums of native/cuda/advantages.cuh (gk::Estimator, gk::ScaleKind, gk::Singleton) follow the
// order of the shared lists in backend.ts: an op passes the index of its value in the list.

export function cudaAdvantages(mem: CudaMemory, a: AdvantagesArgs): Promise<AdvantagesResult> {
  const G = a.numGroups;
  const perToken = a.estimator === 'reinforce_pp_baseline';
  const n = perToken ? a.numTokens : a.numResponses;
  const advantages = mem.empty('f32', [n]);
  const mean = mem.empty('f32', [G]);
  const std = mem.empty('f32', [G]);
  const degenerate = mem.empty('u8', [G]);
  return runWithOutputs(
    [advantages, mean, std, degenerate],
    () =>
      mem.device.advantages(
        withPoison({
          rewards: ptrOf(a.rewards),
          groupOffsets: a.groupOffsets,
          responseOffsets: a.responseOffsets,
          estimator: ESTIMATORS.indexOf(a.estimator),
          stdKind: a.std === 'sample' ? 0 : 1,
          eps: a.eps,
          scale: SCALE_KINDS.indexOf(a.scale),
          singleton: SINGLETON_POLICIES.indexOf(a.singleton),
          whitenMaskEps: a.whitenMaskEps,
          whitenSample: a.whitenVariance === 'sample',
          whitenClamp: a.whitenVarianceEps === 'clamp',
          outAdvantages: ptrOf(advantages),
          advantagesSize: n,
          outMean: ptrOf(mean),
          outStd: ptrOf(std),
          outDegenerate: ptrOf(degenerate),
        }),
      ),
    () => ({ advantages, mean, std, degenerate }),
  );
}

export function cudaExpandToTokens(mem: CudaMemory, a: ExpandToTokensArgs): Promise<Tensor<'f32'>> {
  const out = mem.empty('f32', [a.numTokens]);
  return runWithOutputs(
    [out],
    () =>
      mem.device.expandToTokens(
        withPoison({ values: ptrOf(a.values), responseOffsets: a.responseOffsets, out: ptrOf(out) }),
      ),
    () => out,
  );
}

export function cudaWhiten(mem: CudaMemory, a: WhitenArgs): Promise<Tensor<'f32'>> {
  const out = mem.empty('f32', a.values.shape);
  return runWithOutputs(
    [out],
    () =>
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
    () => out,
  );
}
