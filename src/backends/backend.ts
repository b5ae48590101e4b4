/**
 * The one interface every backend fills (ggml-style). The API layer (src/api/) validates the
 * user's arguments, uploads plain arrays, resolves presets and layouts, and hands each op the
 * *resolved* arguments below; backends compute and never re-validate user input. Host copies of
 * small index arrays (offsets, flags) travel with the tensors so that no backend needs a read-back
 * to plan a launch.
 */
import type { DType, FloatDType, HostArrayMap } from '../dtypes.js';
import type { ResolvedLayout } from '../layout.js';
import type { BackendName, Tensor } from '../tensor.js';

export interface DeviceInfo {
  /** Human-readable device name, e.g. "CPU (native, AVX2 + FMA + F16C, 2 threads)", "NVIDIA H100 80GB HBM3". */
  name: string;
  /** Free-form facts worth printing: memory, limits, features. */
  details: Record<string, string | number | boolean>;
}

// ---------------------------------------------------------------- logprobs family
export interface LogprobsArgs {
  logits: Tensor<FloatDType>; // [rows, vocab]
  targets: Tensor<'i32'>; // [rows]
  rows: number;
  vocab: number;
  temperature: number; // finite, > 0
  ignoreIndex: number;
  entropy: boolean;
  sumSquares: boolean;
}
export interface LogprobsResult {
  /** log softmax(logits / T)[target]; 0 for ignored rows. */
  logprobs: Tensor<'f32'>;
  /** logsumexp(logits / T); 0 for ignored rows. */
  lse: Tensor<'f32'>;
  /** −Σ p log p of softmax(logits / T); present when asked for. */
  entropy?: Tensor<'f32'>;
  /** Σ p²; present when asked for. */
  sumSquares?: Tensor<'f32'>;
}
export interface LogprobsBackwardArgs {
  logits: Tensor<FloatDType>; // [rows, vocab]
  targets: Tensor<'i32'>; // [rows]
  lse: Tensor<'f32'>; // [rows], from logprobs()
  gradLogprobs: Tensor<'f32'>; // [rows]
  /** With gradEntropy, the forward's entropy [rows] (needed by its gradient). */
  gradEntropy?: Tensor<'f32'>;
  entropy?: Tensor<'f32'>;
  rows: number;
  vocab: number;
  temperature: number;
  ignoreIndex: number;
  /**
   * Write the gradient over the logits and return the logits tensor itself. Every backend writes
   * in place (no second [rows, vocab] buffer: each element is read, then written, by one thread;
   * on webgpu one invocation owns a whole u32 word, two f16/bf16 elements).
   */
  inPlace: boolean;
}
export interface GatherProbsArgs {
  logits: Tensor<FloatDType>; // [numTokens, vocab]
  lse: Tensor<'f32'>; // [numTokens]
  layout: ResolvedLayout;
  vocab: ResolvedVocab;
  vocabSize: number;
  temperature: number;
  /** Output offset of group g's [T_g, K_g] block: Σ_{h<g} T_h·K_h; length G+1. */
  probsOffsets: Float64Array;
}

// ---------------------------------------------------------------- LM head (linear) log-probs
/**
 * The logits of linearLogprobs are hidden · weightᵀ + bias, never materialised: [rows, vocab] is
 * computed tile by tile and reduced into the online softmax state of each row (docs/DESIGN.md,
 * "Fused LM head"). `weight` may be a vocabulary shard (rows [vocabStart, vocabStart + vocab) of the
 * full head): the states ops take it with its vocabStart; linearLogprobs and its backward take the
 * whole head (vocabStart 0).
 */
export interface LinearLogprobsArgs {
  hidden: Tensor<FloatDType>; // [rows, dim]
  weight: Tensor<FloatDType>; // [vocab, dim], the same dtype as hidden
  /** [vocab], the weight's dtype; absent: no bias. */
  bias?: Tensor<FloatDType>;
  targets: Tensor<'i32'>; // [rows], ids of the full vocabulary
  rows: number;
  dim: number;
  /** Rows of `weight`: the vocabulary, or the shard's width. */
  vocab: number;
  temperature: number;
  ignoreIndex: number;
  entropy: boolean;
  sumSquares: boolean;
}
export interface LinearLogprobsBackwardArgs {
  hidden: Tensor<FloatDType>; // [rows, dim]
  weight: Tensor<FloatDType>; // [vocab, dim]
  bias?: Tensor<FloatDType>; // [vocab]
  targets: Tensor<'i32'>; // [rows]
  lse: Tensor<'f32'>; // [rows], from linearLogprobs()
  gradLogprobs: Tensor<'f32'>; // [rows]
  /** With gradEntropy, the forward's entropy [rows]. */
  gradEntropy?: Tensor<'f32'>;
  entropy?: Tensor<'f32'>;
  rows: number;
  dim: number;
  vocab: number;
  /**
   * The shard: weight holds rows [vocabStart, vocabStart + vocab) of the head (0: the whole head), and
   * targets are ids of the full vocabulary; lse and entropy are the full head's (mergeLogprobStates').
   */
  vocabStart: number;
  /** Targets must lie in [0, targetLimit): vocab for the whole head, 2^31 − 1 for a shard. */
  targetLimit: number;
  temperature: number;
  ignoreIndex: number;
  /**
   * The gradients' dtype: 'f32', or the input's (hidden's, = weight's) dtype when the caller asked for
   * gradDtype 'input'. Accumulated in f32 (f64 on js) either way and rounded once, at the final store,
   * from the f32 result (so the narrow gradients are the f32 ones rounded to nearest even).
   */
  gradDtype: FloatDType;
}
/** The backward's gradients: f32 by default, the input dtype with gradDtype 'input'. */
export interface LinearLogprobsGrads<D extends FloatDType = 'f32'> {
  /** dLoss/dhidden [rows, dim]. */
  gradHidden: Tensor<D>;
  /** dLoss/dweight [vocab, dim]. */
  gradWeight: Tensor<D>;
  /** dLoss/dbias [vocab]; present when a bias was given. */
  gradBias?: Tensor<D>;
}

/**
 * The online softmax state of each row over a vocabulary shard [vocabStart, vocabEnd), on the raw
 * logits x (z = x / T), in natural-log units:
 *   max         = max_j x_j (raw; −Inf when every logit of the shard is −Inf; NaN-free unless the row is)
 *   sumExp      = Σ_j e^{d_j},           d_j = (x_j − max) / T ≤ 0
 *   sumExpDelta = Σ_j e^{d_j}·d_j        (with entropy)
 *   sumExpSq    = Σ_j e^{2 d_j}          (with sumSquares)
 *   targetLogit = x_target when the row's target lies in the shard, else 0
 * Ignored rows (target = ignoreIndex) give 0 everywhere. A NaN logit makes the row's sums NaN, a
 * +Inf logit makes max +Inf (both give NaN outputs once merged, as logprobs does).
 */
export interface LogprobStates {
  max: Tensor<'f32'>; // [rows]
  sumExp: Tensor<'f32'>; // [rows]
  sumExpDelta?: Tensor<'f32'>; // [rows]
  sumExpSq?: Tensor<'f32'>; // [rows]
  targetLogit: Tensor<'f32'>; // [rows]
  /** The shard: columns [vocabStart, vocabEnd) of the full vocabulary. */
  vocabStart: number;
  vocabEnd: number;
  /** The temperature and ignoreIndex the state was computed with (merging checks they agree). */
  temperature: number;
  ignoreIndex: number;
}
/** logprobStates over a shard of materialised logits. */
export interface LogprobStatesArgs {
  logits: Tensor<FloatDType>; // [rows, vocab] = columns [vocabStart, vocabStart + vocab)
  targets: Tensor<'i32'>; // [rows], ids of the full vocabulary
  rows: number;
  vocab: number;
  vocabStart: number;
  temperature: number;
  ignoreIndex: number;
  entropy: boolean;
  sumSquares: boolean;
}
/** linearLogprobStates over a shard of the head: weight [vocab, dim] = rows [vocabStart, +vocab). */
export interface LinearLogprobStatesArgs extends LinearLogprobsArgs {
  vocabStart: number;
}
export interface MergeLogprobStatesArgs {
  /** Ascending, contiguous shards that tile [0, vocab): merged in this order. */
  states: readonly LogprobStates[];
  targets: Tensor<'i32'>; // [rows]
  rows: number;
  /** The full vocabulary: the last state's vocabEnd. */
  vocab: number;
  temperature: number;
  ignoreIndex: number;
  entropy: boolean;
  sumSquares: boolean;
}

// ---------------------------------------------------------------- advantages family
/** Every estimator of docs/ESTIMATORS.md; the one list the API, the backends and the tests share. */
export const ESTIMATORS = [
  'grpo',
  'dr_grpo',
  'rloo',
  'opo',
  'grpo_passk',
  'gpg',
  'reinforce_pp_baseline',
] as const;
export type Estimator = (typeof ESTIMATORS)[number];
export const PRESETS = ['verl', 'trl', 'openrlhf'] as const;
export type Preset = (typeof PRESETS)[number];
export const STD_KINDS = ['sample', 'population'] as const;
export type StdKind = (typeof STD_KINDS)[number];
/**
 * What a singleton group (n = 1) gets:
 * - 'zero': advantage 0, flagged degenerate (the package default);
 * - 'mean0': the group's mean is taken as 0 and its std as 1 (verl);
 * - 'nan': what a plain n−1 formula computes (openrlhf): NaN where it divides 0 by 0.
 */
export const SINGLETON_POLICIES = ['zero', 'mean0', 'nan'] as const;
export type SingletonPolicy = (typeof SINGLETON_POLICIES)[number];
/**
 * NaN rewards: 'propagate' (NaN in, NaN out: the group's statistics and advantages become NaN), or
 * 'unscorable' (TRL): a NaN reward is left out of every statistic (its group's mean and std, the batch
 * std, gpg's α, opo's baseline, reinforce_pp_baseline's whitening), its advantage is 0, the rest of the
 * group is normalised as usual, and then, as torch.nan_to_num, NaN advantages become 0 and ±Inf ±f32 max.
 */
export const NAN_REWARD_POLICIES = ['propagate', 'unscorable'] as const;
export type NanRewardPolicy = (typeof NAN_REWARD_POLICIES)[number];
/** GRPO's divisor: the group's std, the std of every reward in the batch, or none. */
export const SCALE_KINDS = ['group', 'batch', 'none'] as const;
export type ScaleKind = (typeof SCALE_KINDS)[number];

/**
 * How whiten() (and reinforce_pp_baseline's batch whitening) takes its statistics over the n valid
 * elements, with c_i = x_i − mean:
 *   mean = Σ x_i / (n + maskEps)
 *   var  = Σ c_i² / (n + maskEps) · n / (n − 1)   ('sample', Bessel over valid elements)
 *        = Σ c_i² / (n + maskEps)                 ('population')
 *   out  = c_i · rsqrt(var + 1e-8)       ('add')
 *        = c_i · rsqrt(max(var, 1e-8))   ('clamp')
 * package default and trl (TRL's masked_whiten): maskEps 0, 'sample', 'add';
 * verl (verl.utils.torch_functional.masked_whiten): maskEps 1e-8, 'sample', 'add';
 * openrlhf (ExperienceMaker's advantage normalisation): maskEps 0, 'population', 'clamp'.
 * n = 0: every output 0. n = 1 with 'sample': the one valid element gives NaN (0/0 variance;
 * verl and TRL raise there). See docs/PRESETS.md.
 */
export type WhitenVarianceEps = 'add' | 'clamp';

export interface AdvantagesArgs {
  rewards: Tensor<'f32'>; // [R]
  groupOffsets: Int32Array; // [G+1], validated: starts at 0, non-decreasing, ends at R
  /** [R+1], validated. Present when the estimator is opo or reinforce_pp_baseline (else may be absent). */
  responseOffsets?: Int32Array;
  numResponses: number; // R
  numGroups: number; // G
  /** Ttotal = responseOffsets[R] when responseOffsets is present, else 0. */
  numTokens: number;
  estimator: Estimator;
  /** Kind of every group std (and of the batch std under scale 'batch'): n−1 or n. */
  std: StdKind;
  /** Added to the divisor of grpo and grpo_passk (finite, ≥ 0). */
  eps: number;
  /** Divisor of grpo and grpo_passk; ignored by the other estimators. */
  scale: ScaleKind;
  singleton: SingletonPolicy;
  nanRewards: NanRewardPolicy;
  /** reinforce_pp_baseline's whitening convention (see WhitenVarianceEps above). */
  whitenMaskEps: number;
  whitenVariance: StdKind;
  whitenVarianceEps: WhitenVarianceEps;
}
export interface AdvantagesResult {
  /** f32 [R], or f32 [Ttotal] (per token) for reinforce_pp_baseline. */
  advantages: Tensor<'f32'>;
  /** [G] the baseline each group subtracts (opo: length-weighted mean; a singleton under 'mean0': 0). */
  mean: Tensor<'f32'>;
  /** [G] the divisor of grpo/grpo_passk (the batch std under scale 'batch'), else the group's std. */
  std: Tensor<'f32'>;
  /** 1 where the group is degenerate (empty, singleton, zero variance, or opo with Σ L_j = 0). */
  degenerate: Tensor<'u8'>; // [G]
}
export interface ExpandToTokensArgs {
  values: Tensor<'f32'>; // [R]
  responseOffsets: Int32Array; // [R+1]
  numTokens: number;
}
export interface WhitenArgs {
  /** Any shape; the output has the same shape. */
  values: Tensor<'f32'>; // [n]
  /** Same shape as values; nonzero = valid. Absent: every element is valid. */
  mask?: Tensor<'u8'>; // [n]
  /**
   * (x − mean)·rsqrt(var + 1e-8) over the masked elements; masked-out elements give 0.
   * maskEps is added to the mask count in the mean and the variance (verl's masked_mean adds 1e-8);
   * 0 otherwise. variance and varianceEps: see WhitenVarianceEps.
   */
  maskEps: number;
  variance: StdKind;
  varianceEps: WhitenVarianceEps;
  /** Add the mean back after scaling (verl's shift_mean=False); default false. */
  keepMean: boolean;
}

// ---------------------------------------------------------------- THR family
/** Host copies of a restricted vocabulary's index arrays (planning and validation, no read-back). */
export interface VocabHost {
  offsets: Int32Array; // [G+1]
  columns: Int32Array; // [ΣK_g]
  tokenColumn: Int32Array; // [Ttotal]
}
/**
 * A group's restricted vocabulary V*_g, as restrictedVocab() returns it: the device tensors the
 * kernels index with, and their host copies (like a Layout, host metadata travels with it).
 */
export interface RestrictedVocab {
  offsets: Tensor<'i32'>; // [G+1]
  columns: Tensor<'i32'>; // [ΣK_g]
  tokenColumn: Tensor<'i32'>; // [Ttotal]
  host: VocabHost;
}
/** What the backends get: the device tensors, validated, with the host offsets for planning. */
export interface ResolvedVocab {
  offsets: Tensor<'i32'>;
  columns: Tensor<'i32'>;
  tokenColumn: Tensor<'i32'>;
  hostOffsets: Int32Array;
}
export type Weighting = 'length' | 'none';
/**
 * Arithmetic of THR's two matrix products on backends with a choice (cuda): 'f32' (default) is
 * f32-grade (3xTF32 split products on tensor cores), 'tf32' the faster single-pass TF32 form with a
 * looser bound (native/cuda/thr.cu, docs/cuda.md). js (float64), cpu (f32 products, f64 chunk sums)
 * and webgpu (f32) ignore it.
 */
export const THR_PRECISIONS = ['f32', 'tf32'] as const;
export type ThrPrecision = (typeof THR_PRECISIONS)[number];
/**
 * THR's host plan (src/api/thr-plan.ts): what every backend needs from the layout, the correct flags
 * and the degenerate flags, computed once by the API from host metadata. Backends upload or read it;
 * none re-derives it.
 */
export interface ThrPlan {
  /** [G], 1 where group g is degenerate (docs/THR.md item 6, or the flags a caller passed). */
  degenerate: Uint8Array;
  /** [G+1]: group g's correct tokens are correctTokens[correctStart[g]..correctStart[g+1]) (none for
   * a degenerate group). */
  correctStart: Int32Array;
  /** Indices on the packed token axis of the correct tokens of every live group: groups, responses
   * and tokens in order. */
  correctTokens: Int32Array;
  /** Their anchor weights w_u in f64: 1/|y_r| ('length') or 1 ('none'); f32 kernels round them once. */
  correctWeights: Float64Array;
}
/** thrReweight's host plan (src/api/thr-plan.ts). */
export interface ReweightPlan {
  /** [G], as ThrPlan.degenerate: degenerate groups keep their advantages in every mode. */
  degenerate: Uint8Array;
  /** [G], NTHR's eta_g in f64: the fixed eta, or 2·|0.5 − rho_g| (rho_g = #correct / #responses). */
  eta: Float64Array;
}
export interface TokenHiddenRewardArgs {
  hidden: Tensor<FloatDType>; // [Ttotal, d]
  dim: number;
  probs: Tensor<'f32'>; // packed, from gatherProbs
  probsOffsets: Float64Array; // [G+1]
  vocab: ResolvedVocab;
  layout: ResolvedLayout;
  correct: Tensor<'u8'>; // [R]
  hostCorrect: Uint8Array; // [R], values 0 or 1
  /** The degenerate groups and the correct tokens with their weights, planned once by the API. */
  plan: ThrPlan;
  weighting: Weighting;
  beta: number;
  precision: ThrPrecision;
}
/**
 * THR's two halves (tokenHiddenReward = thrAggregate then thrScore): the aggregate M_g = Σ_{u∈P_g}
 * w_u g_u h_uᵀ of every live group, stacked [ΣK_g, dim] f32 (group g's rows at vocab offsets[g];
 * rows of degenerate groups 0), is a sum over correct tokens, so data-parallel shards of a batch
 * all-reduce it (a sum) between the two calls.
 */
export interface ThrAggregateArgs extends Omit<TokenHiddenRewardArgs, 'beta'> {}
export interface ThrScoreArgs extends TokenHiddenRewardArgs {
  /** [ΣK_g, dim] f32, from thrAggregate (summed over the shards). */
  aggregate: Tensor<'f32'>;
}
export interface ThrResult {
  thr: Tensor<'f32'>; // [Ttotal]
  tau: Tensor<'f32'>; // [G], NaN for degenerate groups
}
export const REWEIGHT_MODES = ['thr', 'thr-only', 'nthr'] as const;
export type ReweightMode = (typeof REWEIGHT_MODES)[number];
export interface ThrReweightArgs {
  tokenAdvantages: Tensor<'f32'>; // [Ttotal]
  thr: Tensor<'f32'>; // [Ttotal]
  tau: Tensor<'f32'>; // [G]
  layout: ResolvedLayout;
  correct: Tensor<'u8'>; // [R]
  hostCorrect: Uint8Array;
  /** The degenerate groups and each group's eta, planned once by the API. */
  plan: ReweightPlan;
  p: number; // in [-1, 1]; 0 for 'thr-only'
  mode: ReweightMode;
  mask: boolean;
  /** NTHR's eta as the caller gave it: a fixed number in [0, 1], or 'auto' (per group: plan.eta). */
  eta: number | 'auto';
}

// ---------------------------------------------------------------- policy loss
/** POLICY.md's per-token surrogates; the one list the API, the backends and the tests share. */
export const POLICY_LOSSES = ['ppo', 'gspo', 'cispo', 'sapo', 'reinforce', 'gmpo', 'vespo'] as const;
export type PolicyLossKind = (typeof POLICY_LOSSES)[number];
/** KL estimators of x = ℓ − ℓʳ: k1 = x, abs = |x|, k2 = x²/2, k3 = e^{−x} + x − 1. */
export const KL_ESTIMATORS = ['k1', 'abs', 'k2', 'k3'] as const;
export type KlEstimator = (typeof KL_ESTIMATORS)[number];
/** Rollout-correction weight per token, per sequence (product) or per sequence (geometric mean). */
export const ROLLOUT_LEVELS = ['token', 'sequence', 'geometric'] as const;
export type RolloutLevel = (typeof ROLLOUT_LEVELS)[number];
/**
 * truncate: w ← clamp(w, lower, upper); mask: w ← w·1[lower ≤ w ≤ upper]; sequence-mask (token level
 * only, OpenRLHF's seq-mask-tis): w_t ← w_t·1[lower ≤ e^{mean_r λ} ≤ upper], the token weights kept
 * whole where the response's geometric-mean weight lies in the band.
 */
export const ROLLOUT_MODES = ['truncate', 'mask', 'sequence-mask'] as const;
export type RolloutMode = (typeof ROLLOUT_MODES)[number];
/** POLICY.md "Aggregation": the five ways of turning per-token losses into the scalar. */
export const AGGREGATIONS = [
  'token-mean',
  'token-sum',
  'seq-mean-token-sum',
  'seq-mean-token-mean',
  'seq-mean-token-sum-norm',
] as const;
export type Aggregation = (typeof AGGREGATIONS)[number];
/** How a KL or entropy term is aggregated: like the policy term, or always as a token mean. */
export const TERM_AGGREGATIONS = ['loss', 'token-mean'] as const;
export type TermAggregation = (typeof TERM_AGGREGATIONS)[number];
/** seq-mean-token-mean's per-sequence divisor: n_r + 1e-8 (verl, OpenRLHF) or max(n_r, 1) (TRL). */
export const SEQ_TOKEN_DIVISORS = ['eps', 'clamp1'] as const;
export type SeqTokenDivisor = (typeof SEQ_TOKEN_DIVISORS)[number];
/** The local sequence count of the seq-mean modes: sequences with a valid token (verl) or all (TRL). */
export const SEQ_COUNTS = ['nonempty', 'all'] as const;
export type SeqCount = (typeof SEQ_COUNTS)[number];
/**
 * The entries of policyLoss's `stats` tensor, in order (f32 [POLICY_STATS.length]). Means are over
 * the batch's valid tokens (mask 1); NaN where the quantity was not computed (no KL, no entropy, no
 * rollout correction) or has no element (no valid token).
 */
export const POLICY_STATS = [
  'clipFraction',
  'clipFractionLower',
  'ppoKl',
  'klMean',
  'entropyMean',
  'ratioMin',
  'ratioMean',
  'ratioMax',
  'rolloutWeightMean',
  'rolloutClippedFraction',
  'rolloutEss',
  'tokens',
  'sequences',
] as const;
export type PolicyStatName = (typeof POLICY_STATS)[number];

/** The KL penalty, resolved (present when the caller asked for one; refLogprobs is then given). */
export interface ResolvedKl {
  estimator: KlEstimator;
  /** Value of the estimator, gradient of k2 (verl's "k1+", "k3+"). */
  straightThrough: boolean;
  /** β ≥ 0. */
  coef: number;
  /** k3 only: y = −x clamped to ±inputClamp before e^y (verl 20); Infinity: none. */
  inputClamp: number;
  /** The estimator's value clamped to ±valueClamp (verl: k3, 10; OpenRLHF: every estimator, 10). */
  valueClamp: number;
  /** true: the clamp applies to every estimator (OpenRLHF); false: to k3 only (verl). */
  valueClampAll: boolean;
  aggregation: TermAggregation;
  /**
   * TRL's use_bias_correction_kl: the estimator times the token's ratio ρ_t (differentiated:
   * d(KL·ρ) = dKL·ρ + KL·dρ). Token-level ratios only (not gspo, gmpo).
   */
  biasCorrection: boolean;
}

/** Rollout correction, resolved (present when asked for; rolloutLogprobs is then given). */
export interface ResolvedRollout {
  level: RolloutLevel;
  mode: RolloutMode;
  /** 0 ≤ lower < upper, finite. */
  lower: number;
  upper: number;
  /** Divide the weights by their batch mean (over valid tokens, or nonempty sequences). */
  normalize: boolean;
  /** λ (or Σλ, mean λ) clamped to ±logClamp before e^· (verl's SAFETY_BOUND 20); Infinity: none. */
  logClamp: number;
}

/**
 * policyLoss, resolved (src/api/policy.ts; the math is POLICY.md's, the conventions docs/PRESETS.md's).
 * "Infinity" means "off" for every clamp and cap below.
 */
export interface PolicyLossArgs {
  logprobs: Tensor<'f32'>; // [T]
  oldLogprobs: Tensor<'f32'>; // [T]
  advantages: Tensor<'f32'>; // [T]
  refLogprobs?: Tensor<'f32'>; // [T], with kl
  rolloutLogprobs?: Tensor<'f32'>; // [T], with rollout
  entropy?: Tensor<'f32'>; // [T]; gradEntropy is returned when present
  mask?: Tensor<'u8'>; // [T], nonzero = valid; absent: every token valid
  responseOffsets: Int32Array; // [R+1], validated, ends at T
  numTokens: number;
  numResponses: number;
  loss: PolicyLossKind;
  /** ε_low, ε_high > 0 (cispo with cispoCap: clipHigh is the absolute cap). */
  clipLow: number;
  clipHigh: number;
  /** ppo: dual-clip constant c > 1 (for A < 0, L ← min(L, −A·c)); Infinity: off. */
  dualClip: number;
  /** Δ = ℓ − ℓ° clamped to ±logRatioClamp before e^Δ (every loss but gspo). */
  logRatioClamp: number;
  /** gspo: the sequence log-ratio clamped above at this (verl 10). */
  gspoLogClamp: number;
  /** ppo, gspo: TRL's cap of the unclipped ratio, min(ρ, δ). */
  delta: number;
  /** cispo: TRL's sg[min(ρ, clipHigh)] (true) or verl's sg[clip(ρ, 1 − clipLow, 1 + clipHigh)] (false). */
  cispoCap: boolean;
  sapoTauPos: number;
  sapoTauNeg: number;
  /** vespo's gamma weight φ(W) = e^{λ + k·ln W − λ·W}: k and λ > 0 for A ≥ 0 (pos) and A < 0 (neg). */
  vespoKPos: number;
  vespoLambdaPos: number;
  vespoKNeg: number;
  vespoLambdaNeg: number;
  kl?: ResolvedKl;
  /** c_H (any finite number; 0 with entropy present still returns gradEntropy = 0). */
  entropyCoef: number;
  entropyAggregation: TermAggregation;
  rollout?: ResolvedRollout;
  /**
   * TRL's off-policy sequence mask (DeepSeek-V3.2's δ): a token's policy term is dropped where A_t < 0
   * and its response's κ_r = Σ_valid(ℓᵛ − ℓ)/max(n_r, 1) > δ (ℓᵛ: rolloutLogprobs when given, else
   * oldLogprobs); absent: off.
   */
  offPolicyThreshold?: number;
  aggregation: Aggregation;
  seqTokenDivisor: SeqTokenDivisor;
  seqCount: SeqCount;
  /** seq-mean-token-sum-norm: D·Σ/(N_seq·K) (true) or verl's Σ/K (false). */
  normBySequences: boolean;
  /** K of seq-mean-token-sum-norm (> 0). */
  scaleFactor: number;
  /** D ≥ 1. */
  ranks: number;
  /** N_tok of token-mean terms when the host knows it (global count, or counted from a host mask). */
  tokens?: number;
  /** N_seq of the seq-mean modes when the host knows it. */
  sequences?: number;
  /** Return the per-token loss. */
  tokenLoss: boolean;
}
export interface PolicyLossResult {
  /** The scalar loss, f32 [1] (a device tensor: read it when you need the number). */
  loss: Tensor<'f32'>;
  /** dLoss/dℓ_t, f32 [T]; 0 for masked tokens. */
  gradLogprobs: Tensor<'f32'>;
  /** dLoss/dH_t, f32 [T]; present when entropy was given. */
  gradEntropy?: Tensor<'f32'>;
  /** m_t·(w_t·L_t + β·KL_t − c_H·H_t) before aggregation, f32 [T]; present when asked for. */
  tokenLoss?: Tensor<'f32'>;
  /** f32 [POLICY_STATS.length], in POLICY_STATS order. */
  stats: Tensor<'f32'>;
}

// ---------------------------------------------------------------- rolloutRejection
/**
 * verl's rollout rejection sampling (`rollout_rs`, rollout_corr_helper.py compute_rollout_rejection_mask):
 * per token λ_t = ℓ_t − ℓᵛ_t clamped to ±20 (verl's SAFETY_BOUND), and the divergence statistic
 * k1 = −λ, k2 = λ²/2, k3 = e^λ − 1 − λ, taken per token or as the sum, mean or max over the response's
 * valid tokens. docs/PRESETS.md, "Rollout rejection".
 */
export const REJECTION_STATISTICS = ['k1', 'k2', 'k3'] as const;
export type RejectionStatistic = (typeof REJECTION_STATISTICS)[number];
/** verl's token_k*, seq_sum_k*, seq_mean_k*, seq_max_k* (seq-max: k2 and k3 only). */
export const REJECTION_LEVELS = ['token', 'seq-sum', 'seq-mean', 'seq-max'] as const;
export type RejectionLevel = (typeof REJECTION_LEVELS)[number];
/** The most criteria one call takes: verl's 11 options, each once. */
export const REJECTION_MAX_CRITERIA = 11;

/**
 * One criterion, resolved: a token (level token) or a response (the others) passes where
 * lower ≤ s ≤ upper, the thresholds f32 and s rounded to f32 before the comparison (a NaN s fails). k1: the logs of verl's ratio bounds; k2, k3: lower is
 * −Infinity.
 */
export interface ResolvedRejectionCriterion {
  statistic: RejectionStatistic;
  level: RejectionLevel;
  lower: number;
  upper: number;
}

/**
 * The overall entries of rolloutRejection's `stats` (f32), first: verl's rollout_rs_masked_fraction (the
 * valid tokens rejected by any criterion, over the valid tokens) and rollout_rs_seq_masked_fraction (the
 * responses with a rejected valid token, over every response, empty ones included, as verl's mean).
 */
export const REJECTION_STATS = ['maskedFraction', 'seqMaskedFraction'] as const;
/**
 * Then these, per criterion c, at REJECTION_STATS.length + c·REJECTION_CRITERION_STATS.length: verl's
 * rollout_rs_<option>_{mean, max, min, fraction_high, fraction_low, masked_fraction,
 * seq_masked_fraction}. mean: over the valid tokens (a response's s counted once per valid token, verl's
 * masked_mean of the broadcast); max, min, fractionHigh (s > upper), fractionLow (s < lower): over the
 * valid tokens (token level) or the nonempty responses (the others); maskedFraction: the valid tokens the
 * criterion rejects, over the valid tokens; seqMaskedFraction: the nonempty responses it rejects a token
 * of, over the nonempty responses. A NaN s makes mean, max and min NaN (torch's); an empty set gives NaN
 * (mean, fractions) and −Infinity / +Infinity (max / min).
 */
export const REJECTION_CRITERION_STATS = [
  'mean',
  'max',
  'min',
  'fractionHigh',
  'fractionLow',
  'maskedFraction',
  'seqMaskedFraction',
] as const;
export type RejectionStatName = (typeof REJECTION_STATS)[number];
export type RejectionCriterionStatName = (typeof REJECTION_CRITERION_STATS)[number];

export interface RolloutRejectionArgs {
  logprobs: Tensor<'f32'>; // [T] ℓ, the training policy's (verl's old_log_prob)
  rolloutLogprobs: Tensor<'f32'>; // [T] ℓᵛ, the sampler's
  mask?: Tensor<'u8'>; // [T], nonzero = valid; absent: every token valid
  responseOffsets: Int32Array; // [R+1], validated, ends at T
  numTokens: number;
  numResponses: number;
  /** 1 to REJECTION_MAX_CRITERIA criteria, each (statistic, level) once. */
  criteria: readonly ResolvedRejectionCriterion[];
}
export interface RolloutRejectionResult {
  /** u8 [T]: 1 where the token is valid and passes every criterion, else 0 (policyLoss's mask). */
  mask: Tensor<'u8'>;
  /** f32 [REJECTION_STATS.length + criteria·REJECTION_CRITERION_STATS.length]. */
  stats: Tensor<'f32'>;
}

// ---------------------------------------------------------------- the interface
/** What createContext passes to a backend's constructor. */
export interface BackendOptions {
  /** webgpu: run on this caller's GPUDevice instead of creating one. */
  device?: unknown;
  /** cuda: which device ordinal to use (default 0). */
  deviceIndex?: number;
  /**
   * cpu (native): compute threads (default: env GRPO_KERNELS_THREADS, else every core); at most the
   * cores. Results are bitwise the same for any count.
   */
  threads?: number;
}

export interface Backend {
  readonly name: BackendName;
  readonly device: DeviceInfo;
  /** Uploads a host array (already validated against shape and dtype). */
  upload<D extends DType>(data: HostArrayMap[D], shape: readonly number[], dtype: D): Tensor<D>;
  /**
   * Optional: the lowest i ≥ 1 with offsets[i] < offsets[i − 1], or −1, faster than the API's own loop
   * (the native cpu backend's SIMD scan). The API still makes the check and throws its error.
   */
  firstDecrease?(offsets: Int32Array): number;
  /**
   * Optional: of offsets already found non-decreasing, [nonempty ranges, the longest range's length]
   * (the native backends' one pass; policyLoss's counts of 1M responses).
   */
  offsetCounts?(offsets: Int32Array): [number, number];

  logprobs(args: LogprobsArgs): Promise<LogprobsResult>;
  /** Gradient w.r.t. the logits, [rows, vocab] in the logits' dtype. */
  logprobsBackward(args: LogprobsBackwardArgs): Promise<Tensor<FloatDType>>;
  gatherProbs(args: GatherProbsArgs): Promise<Tensor<'f32'>>;

  /** log-probs of hidden · weightᵀ + bias without the [rows, vocab] logits. */
  linearLogprobs(args: LinearLogprobsArgs): Promise<LogprobsResult>;
  linearLogprobsBackward(args: LinearLogprobsBackwardArgs): Promise<LinearLogprobsGrads<FloatDType>>;
  logprobStates(args: LogprobStatesArgs): Promise<LogprobStates>;
  linearLogprobStates(args: LinearLogprobStatesArgs): Promise<LogprobStates>;
  mergeLogprobStates(args: MergeLogprobStatesArgs): Promise<LogprobsResult>;

  advantages(args: AdvantagesArgs): Promise<AdvantagesResult>;
  expandToTokens(args: ExpandToTokensArgs): Promise<Tensor<'f32'>>;
  whiten(args: WhitenArgs): Promise<Tensor<'f32'>>;

  tokenHiddenReward(args: TokenHiddenRewardArgs): Promise<ThrResult>;
  thrReweight(args: ThrReweightArgs): Promise<Tensor<'f32'>>;
  thrAggregate(args: ThrAggregateArgs): Promise<Tensor<'f32'>>;
  thrScore(args: ThrScoreArgs): Promise<ThrResult>;

  policyLoss(args: PolicyLossArgs): Promise<PolicyLossResult>;
  rolloutRejection(args: RolloutRejectionArgs): Promise<RolloutRejectionResult>;

  /** Resolves when every op queued so far has finished on the device (for timing). */
  synchronize(): Promise<void>;
  /**
   * Bandwidth probe: times a device-to-device copy of `bytes` bytes (warmed up, median of several
   * runs) and returns seconds per copy. A copy moves 2·bytes (read + write).
   */
  copyProbe(bytes: number): Promise<number>;

  /** WebGPU only: wraps a caller's GPUBuffer without copying (the caller keeps ownership). */
  fromGPUBuffer?<D extends DType>(buffer: unknown, shape: readonly number[], dtype: D): Tensor<D>;
  /** CUDA only: wraps a caller's device pointer without copying (the caller keeps ownership). */
  fromDevicePointer?<D extends DType>(
    pointer: bigint | number,
    shape: readonly number[],
    dtype: D,
  ): Tensor<D>;

  /** Frees everything the backend holds; the context is unusable afterwards. */
  dispose(): void;
}
