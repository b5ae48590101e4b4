/** policyLoss on CUDA: argument plumbing to native/cuda/policy.cu (two kernels, no wait). */
import { POLICY_STATS, type PolicyLossArgs, type PolicyLossResult } from '../backend.js';
import type { NativePolicyLossArgs } from './native.js';
import { type CudaMemory, optPtr, ptrOf, runWithOutputs, withPoison } from './storage.js';

/** Test hook: responses per block, a multiple of 8 (0: the launcher's choice). */
export const policyTuning = { chunkResponses: 0 };

export function cudaPolicyLoss(mem: CudaMemory, a: PolicyLossArgs): Promise<PolicyLossResult> {
  const T = a.numTokens;
  const loss = mem.empty('f32', [1]);
  const gradLogprobs = mem.empty('f32', [T]);
  const gradEntropy = a.entropy ? mem.empty('f32', [T]) : undefined;
  const tokenLoss = a.tokenLoss ? mem.empty('f32', [T]) : undefined;
  const stats = mem.empty('f32', [POLICY_STATS.length]);
  const { kl, rollout } = a;
  const args: NativePolicyLossArgs = {
    logprobs: ptrOf(a.logprobs),
    oldLogprobs: ptrOf(a.oldLogprobs),
    advantages: ptrOf(a.advantages),
    entropy: optPtr(a.entropy),
    mask: optPtr(a.mask),
    responseOffsets: a.responseOffsets,
    loss: a.loss,
    clipLow: a.clipLow,
    clipHigh: a.clipHigh,
    dualClip: a.dualClip,
    logRatioClamp: a.logRatioClamp,
    gspoLogClamp: a.gspoLogClamp,
    delta: a.delta,
    cispoCap: a.cispoCap,
    sapoTauPos: a.sapoTauPos,
    sapoTauNeg: a.sapoTauNeg,
    ...(kl && {
      klEstimator: kl.estimator,
      refLogprobs: ptrOf(a.refLogprobs!),
      klStraightThrough: kl.straightThrough,
      klCoef: kl.coef,
      klInputClamp: kl.inputClamp,
      klValueClamp: kl.valueClamp,
      klValueClampAll: kl.valueClampAll,
      klAggregation: kl.aggregation,
    }),
    entropyCoef: a.entropyCoef,
    entropyAggregation: a.entropyAggregation,
    ...(rollout && {
      rolloutLevel: rollout.level,
      rolloutLogprobs: ptrOf(a.rolloutLogprobs!),
      rolloutMode: rollout.mode,
      rolloutLower: rollout.lower,
      rolloutUpper: rollout.upper,
      rolloutNormalize: rollout.normalize,
      rolloutLogClamp: rollout.logClamp,
    }),
    aggregation: a.aggregation,
    seqTokenDivisor: a.seqTokenDivisor,
    normBySequences: a.normBySequences,
    scaleFactor: a.scaleFactor,
    ranks: a.ranks,
    tokens: a.tokens,
    sequences: a.sequences,
    chunkResponses: policyTuning.chunkResponses > 0 ? policyTuning.chunkResponses : undefined,
    outLoss: ptrOf(loss),
    outGradLogprobs: ptrOf(gradLogprobs),
    outGradEntropy: optPtr(gradEntropy),
    outTokenLoss: optPtr(tokenLoss),
    outStats: ptrOf(stats),
  };
  return runWithOutputs(
    [loss, gradLogprobs, gradEntropy, tokenLoss, stats],
    () => mem.device.policyLoss(withPoison(args)),
    () => {
      const r: PolicyLossResult = { loss, gradLogprobs, stats };
      if (gradEntropy) r.gradEntropy = gradEntropy;
      if (tokenLoss) r.tokenLoss = tokenLoss;
      return r;
    },
  );
}
