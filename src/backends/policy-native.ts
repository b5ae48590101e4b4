/**
 * policyLoss's native arguments, one interface and one builder for both addon backends: the keys of the
 * params structs gk::PolicyParams (native/cuda/policy.cuh) and gk::cpu::PolicyParams
 * (native/cpu/kernels.h), whose options native/policy_args.h reads the same way for both. The tensors
 * and outputs are each backend's own: device pointers (bigint) on cuda, host typed arrays on cpu.
 */
import type { Tensor } from '../tensor.js';
import type { KlEstimator, PolicyLossArgs, RolloutLevel, RolloutMode, TermAggregation } from './backend.js';

/** The KL keys of policyLoss: all present (klEstimator first) or all absent. */
interface NativePolicyKl<F> {
  klEstimator: KlEstimator;
  refLogprobs: F;
  klStraightThrough: boolean;
  klCoef: number;
  klInputClamp: number;
  klValueClamp: number;
  klValueClampAll: boolean;
  klAggregation: TermAggregation;
  klBiasCorrection: boolean;
}
/**
 * The rollout-correction keys of policyLoss: all present (rolloutLevel first) or all absent
 * (rolloutLogprobs is its own key: the off-policy mask reads it too).
 */
interface NativePolicyRollout {
  rolloutLevel: RolloutLevel;
  rolloutMode: RolloutMode;
  rolloutLower: number;
  rolloutUpper: number;
  rolloutNormalize: boolean;
  rolloutLogClamp: number;
}
/** The keys of PolicyLossArgs that go to the addon as they are. */
type NativePolicyScalar =
  | 'responseOffsets'
  | 'loss'
  | 'clipLow'
  | 'clipHigh'
  | 'dualClip'
  | 'logRatioClamp'
  | 'gspoLogClamp'
  | 'delta'
  | 'cispoCap'
  | 'sapoTauPos'
  | 'sapoTauNeg'
  | 'vespoKPos'
  | 'vespoLambdaPos'
  | 'vespoKNeg'
  | 'vespoLambdaNeg'
  | 'entropyCoef'
  | 'entropyAggregation'
  | 'aggregation'
  | 'seqTokenDivisor'
  | 'normBySequences'
  | 'scaleFactor'
  | 'ranks'
  | 'tokens'
  | 'sequences';
/**
 * policyLoss's argument object with f32 tensors (and outputs) of type F and the u8 mask of type M. "Off"
 * clamps and caps are Infinity. The KL keys and the rollout keys are each all present or all absent (the
 * addon refuses a lone one as unknown).
 */
export type NativePolicyLossArgsOf<F, M> = Partial<NativePolicyKl<F>> &
  Partial<NativePolicyRollout> &
  // The resolved options as the API gives them (tokens, sequences: the host's counts; absent: counted
  // by the kernels).
  Pick<PolicyLossArgs, NativePolicyScalar> & {
    logprobs: F;
    oldLogprobs: F;
    advantages: F;
    entropy?: F;
    mask?: M;
    /** ℓᵛ, with rollout correction or the off-policy mask. */
    rolloutLogprobs?: F;
    /** The off-policy mask's δ; absent: off. */
    offPolicyThreshold?: number;
    outLoss: F;
    outGradLogprobs: F;
    /** With entropy. */
    outGradEntropy?: F;
    outTokenLoss?: F;
    outStats: F;
  };

/** The outputs of one call, as the backend holds them. */
export interface PolicyOutputs<F> {
  loss: F;
  gradLogprobs: F;
  gradEntropy?: F;
  tokenLoss?: F;
  stats: F;
}

/**
 * The argument object of a call: `f32` and `u8` give a backend's view of an input tensor (a device
 * pointer, a host array), `out` its views of the outputs it allocated.
 */
export function policyNativeArgs<F, M>(
  a: PolicyLossArgs,
  f32: (t: Tensor<'f32'>) => F,
  u8: (t: Tensor<'u8'>) => M,
  out: PolicyOutputs<F>,
): NativePolicyLossArgsOf<F, M> {
  const { kl, rollout } = a;
  return {
    logprobs: f32(a.logprobs),
    oldLogprobs: f32(a.oldLogprobs),
    advantages: f32(a.advantages),
    entropy: a.entropy && f32(a.entropy),
    mask: a.mask && u8(a.mask),
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
    vespoKPos: a.vespoKPos,
    vespoLambdaPos: a.vespoLambdaPos,
    vespoKNeg: a.vespoKNeg,
    vespoLambdaNeg: a.vespoLambdaNeg,
    ...(kl && {
      klEstimator: kl.estimator,
      refLogprobs: f32(a.refLogprobs!),
      klStraightThrough: kl.straightThrough,
      klCoef: kl.coef,
      klInputClamp: kl.inputClamp,
      klValueClamp: kl.valueClamp,
      klValueClampAll: kl.valueClampAll,
      klAggregation: kl.aggregation,
      klBiasCorrection: kl.biasCorrection,
    }),
    entropyCoef: a.entropyCoef,
    entropyAggregation: a.entropyAggregation,
    ...(rollout && {
      rolloutLevel: rollout.level,
      rolloutMode: rollout.mode,
      rolloutLower: rollout.lower,
      rolloutUpper: rollout.upper,
      rolloutNormalize: rollout.normalize,
      rolloutLogClamp: rollout.logClamp,
    }),
    rolloutLogprobs: a.rolloutLogprobs && f32(a.rolloutLogprobs),
    offPolicyThreshold: a.offPolicyThreshold,
    aggregation: a.aggregation,
    seqTokenDivisor: a.seqTokenDivisor,
    normBySequences: a.normBySequences,
    scaleFactor: a.scaleFactor,
    ranks: a.ranks,
    tokens: a.tokens,
    sequences: a.sequences,
    outLoss: out.loss,
    outGradLogprobs: out.gradLogprobs,
    outGradEntropy: out.gradEntropy,
    outTokenLoss: out.tokenLoss,
    outStats: out.stats,
  };
}
