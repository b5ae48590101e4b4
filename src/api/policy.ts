/**
 * Validation, preset resolution and dispatch of policyLoss (POLICY.md). Computes nothing itself: it
 * checks the caller's inputs and options, turns a preset plus explicit options into the explicit
 * conventions of PolicyLossArgs (src/backends/backend.ts), counts the valid tokens and sequences when
 * the host holds the mask (so the kernels need no device-side count), and calls the backend. Which
 * trainer code each convention comes from: docs/PRESETS.md, "Policy loss".
 */
import {
  AGGREGATIONS,
  type Aggregation,
  type Backend,
  KL_ESTIMATORS,
  type KlEstimator,
  POLICY_LOSSES,
  POLICY_STATS,
  type PolicyLossArgs,
  type PolicyLossKind,
  type PolicyLossResult,
  type PolicyStatName,
  PRESETS,
  type Preset,
  ROLLOUT_LEVELS,
  ROLLOUT_MODES,
  type RolloutLevel,
  type RolloutMode,
  type SeqCount,
  type SeqTokenDivisor,
  type TermAggregation,
} from '../backends/backend.js';
import { fail } from '../errors.js';
import { responseOffsetsOf } from '../layout.js';
import { Tensor } from '../tensor.js';
import {
  booleanOption,
  checkEnum,
  checkNumber,
  checkOptions,
  describe,
  enumOption,
  quote,
  type TensorLike,
  withInputs,
} from './validate.js';

/** The per-token inputs of policyLoss, packed along one token axis of length T. */
export interface PolicyLossInputs {
  /** ℓ_t: the current policy's log-probs (the gradient flows into them), f32 [T]. */
  logprobs: TensorLike<'f32'>;
  /** ℓ°_t: the log-probs of the policy that the ratio is taken against, f32 [T]. */
  oldLogprobs: TensorLike<'f32'>;
  /** A_t, one per token (expandToTokens turns per-response advantages into these), f32 [T]. */
  advantages: TensorLike<'f32'>;
  /** Tokens of response r are [responseOffsets[r], responseOffsets[r+1]); groupOffsets is optional. */
  layout: { responseOffsets: Int32Array; groupOffsets?: Int32Array };
  /** ℓʳ_t, the reference policy's log-probs: required with options.kl. */
  refLogprobs?: TensorLike<'f32'>;
  /** ℓᵛ_t, the sampler's log-probs: required with options.rolloutCorrection. */
  rolloutLogprobs?: TensorLike<'f32'>;
  /** H_t, the policy's entropy (logprobs(..., { entropy: true })): gradEntropy is returned with it. */
  entropy?: TensorLike<'f32'>;
  /** m_t, nonzero = valid, u8 [T]; default every token valid. A host Uint8Array lets the host count. */
  mask?: TensorLike<'u8'>;
}

export interface PolicyKlOptions {
  /** Default 'k3' ('k1' under preset 'openrlhf'). */
  estimator?: KlEstimator;
  /** The estimator's value with the gradient of k2 (verl's "k1+", "k3+"). Default false. */
  straightThrough?: boolean;
  /** β, finite ≥ 0 (0 measures the KL without penalising it). Required. */
  coef: number;
  /**
   * TRL's use_bias_correction_kl (DeepSeek-V3.2): the estimator times the token's ratio ρ_t = e^Δ (the
   * loss's, clamped as it clamps Δ), differentiated through both. Token-level ratios only: not with
   * gspo or gmpo. Default false.
   */
  biasCorrection?: boolean;
}

export interface PolicyRolloutOptions {
  /** Default 'token' ('sequence' under preset 'trl', whose default mode is sequence_mask). */
  level?: RolloutLevel;
  /**
   * Default 'truncate' ('mask' under preset 'trl'). 'sequence-mask' (level 'token' only): OpenRLHF's
   * seq-mask-tis, the token weights e^{λ_t} (not truncated) zeroed for a response whose geometric-mean
   * weight e^{mean λ} lies outside [lower, upper].
   */
  mode?: RolloutMode;
  /** L ≥ 0, below upper. Default 0 (0.5 under preset 'openrlhf'). */
  lower?: number;
  /** U > 0. Default 2 (trl 3, openrlhf 5). */
  upper?: number;
  /** Divide the weights by their batch mean (verl's rollout_is_batch_normalize). Default false. */
  normalize?: boolean;
}

export interface PolicyLossOptions {
  /** Default 'ppo'. */
  loss?: PolicyLossKind;
  /** ε_low > 0, default 0.2 (ppo, gspo, cispo; gmpo: a bound on the log-ratio, GMPO's paper uses 0.4). */
  clipLow?: number;
  /** ε_high > 0, default clipLow (DAPO's clip-higher: larger). With cispo under preset 'trl', the cap. */
  clipHigh?: number;
  /** ppo's dual-clip constant c > 1, or 'off'. Default off (3 under preset 'verl'). */
  dualClip?: number | 'off';
  /** c_Δ > 0 or 'off': Δ clamped to ±c_Δ before e^Δ. Default 20 ('off' under preset 'trl'). */
  logRatioClamp?: number | 'off';
  /** TRL's δ > 0 capping the unclipped ratio (ppo, gspo). Default off. */
  delta?: number;
  /** SAPO's temperatures, > 0. Default { pos: 1, neg: 1.05 }. */
  sapoTau?: { pos?: number; neg?: number };
  /**
   * VESPO's gamma weight φ(W) = e^{λ + k·ln W − λ·W} of the sequence ratio W, (k, λ) by the sign of A
   * (A ≥ 0: pos): finite k, λ > 0. Default { kPos: 2, lambdaPos: 3, kNeg: 3, lambdaNeg: 2 } (TRL's).
   */
  vespo?: { kPos?: number; lambdaPos?: number; kNeg?: number; lambdaNeg?: number };
  /** KL penalty β·KL_t (needs inputs.refLogprobs). */
  kl?: PolicyKlOptions;
  /** Entropy bonus: −c_H·H, any finite number. Default 0. c_H ≠ 0 needs inputs.entropy. */
  entropyCoef?: number;
  /** Rollout correction (needs inputs.rolloutLogprobs). */
  rolloutCorrection?: PolicyRolloutOptions;
  /**
   * TRL's off-policy sequence mask (DeepSeek-V3.2, `off_policy_mask_threshold`): the policy term of a
   * token with A_t < 0 is dropped (its count kept) when its response's mean log-ratio
   * κ_r = Σ_valid(ℓᵛ − ℓ)/max(n_r, 1) exceeds δ = threshold (finite). ℓᵛ is inputs.rolloutLogprobs when
   * given (which this option allows without rolloutCorrection), else oldLogprobs. A stop-gradient; the
   * KL and entropy terms are not masked.
   */
  offPolicyMask?: { threshold: number };
  /** Default 'token-mean' ('seq-mean-token-mean' for gspo, sapo and gmpo). */
  aggregation?: Aggregation;
  /** K of 'seq-mean-token-sum-norm', > 0. Default the longest response (verl's padded width); required under preset 'trl'. */
  scaleFactor?: number;
  /** N_tok over every data-parallel rank (integer ≥ 1). Default: this batch's valid tokens. */
  globalTokens?: number;
  /** N_seq over every rank (integer ≥ 1). Default: this batch's (nonempty) sequences. */
  globalSequences?: number;
  /** D, the data-parallel ranks (integer ≥ 1). Default 1. */
  ranks?: number;
  /** Also return the per-token loss. Default false. */
  tokenLoss?: boolean;
  /** Every convention of one trainer at once (docs/PRESETS.md); explicit options override it. */
  preset?: Preset;
}

/** The conventions a preset (or the package default) fixes; docs/PRESETS.md cites the sources. */
export interface PolicyConventions {
  clipLow: number;
  dualClip: number;
  logRatioClamp: number;
  gspoLogClamp: number;
  cispoCap: boolean;
  sapoTauPos: number;
  sapoTauNeg: number;
  klEstimator: KlEstimator;
  /** k3's input clamp and the value clamp (Infinity: none), and whether the latter is for all estimators. */
  klInputClamp: number;
  klValueClamp: number;
  klValueClampAll: boolean;
  klAggregation: TermAggregation;
  entropyAggregation: TermAggregation;
  rolloutLevel: RolloutLevel;
  rolloutMode: RolloutMode;
  rolloutLower: number;
  rolloutUpper: number;
  rolloutLogClamp: number;
  seqTokenDivisor: SeqTokenDivisor;
  seqCount: SeqCount;
  normBySequences: boolean;
  /** Whether seq-mean-token-sum-norm has a default K (the longest response). */
  defaultScaleFactor: boolean;
}

const OFF = Number.POSITIVE_INFINITY;

/** POLICY.md's conventions where it states one (verl's numerics), no dual clip. */
export const POLICY_DEFAULTS: Readonly<PolicyConventions> = Object.freeze({
  clipLow: 0.2,
  dualClip: OFF,
  logRatioClamp: 20,
  gspoLogClamp: 10,
  cispoCap: false,
  sapoTauPos: 1,
  sapoTauNeg: 1.05,
  klEstimator: 'k3',
  klInputClamp: 20,
  klValueClamp: 10,
  klValueClampAll: false,
  klAggregation: 'loss',
  entropyAggregation: 'loss',
  rolloutLevel: 'token',
  rolloutMode: 'truncate',
  rolloutLower: 0,
  rolloutUpper: 2,
  rolloutLogClamp: 20,
  seqTokenDivisor: 'eps',
  seqCount: 'nonempty',
  normBySequences: true,
  defaultScaleFactor: true,
});

export const POLICY_PRESETS: Readonly<Record<Preset, Readonly<PolicyConventions>>> = Object.freeze({
  // verl/trainer/ppo/core_algos.py: compute_policy_loss_vanilla (clamp ±20, clip_ratio_c = 3),
  // compute_policy_loss_gspo (log ratio ≤ 10), compute_policy_loss_cispo (clip band), kl_penalty
  // (low_var_kl: ±20 in, ±10 out), agg_loss (n + 1e-8; seq-mean-token-sum-norm = Σ / K);
  // verl/workers/utils/losses.py ppo_loss (entropy and KL aggregated like the policy term);
  // verl/trainer/ppo/rollout_corr_helper.py (SAFETY_BOUND 20, token level, threshold 2).
  verl: Object.freeze({ ...POLICY_DEFAULTS, dualClip: 3, normBySequences: false }),
  // trl/trainer/grpo_trainer.py _compute_loss: no clamps, cispo min(ρ, ε_high), k3 unclamped,
  // grpo/sapo aggregation (Σ/clamp(n, 1)).mean() over every sequence, dr_grpo Σ/(B·max_len) with
  // no default length, entropy as a token mean; vLLM IS: sequence_mask with clip_max 3, no clamp.
  trl: Object.freeze({
    ...POLICY_DEFAULTS,
    logRatioClamp: OFF,
    gspoLogClamp: OFF,
    cispoCap: true,
    klInputClamp: OFF,
    klValueClamp: OFF,
    entropyAggregation: 'token-mean',
    rolloutLevel: 'sequence',
    rolloutMode: 'mask',
    rolloutUpper: 3,
    rolloutLogClamp: OFF,
    seqTokenDivisor: 'clamp1',
    seqCount: 'all',
    defaultScaleFactor: false,
  }),
  // openrlhf/models/loss.py PolicyLoss (ppo: clamp ±20; gspo: exp of the mean, no clamp),
  // aggregate_loss; openrlhf/models/utils.py compute_approx_kl (k1 default, every estimator clamped
  // to ±10); ppo_actor.py: KL and entropy aggregated as token means; TIS thresholds [0.5, 5].
  openrlhf: Object.freeze({
    ...POLICY_DEFAULTS,
    gspoLogClamp: OFF,
    klEstimator: 'k1',
    klInputClamp: OFF,
    klValueClamp: 10,
    klValueClampAll: true,
    klAggregation: 'token-mean',
    entropyAggregation: 'token-mean',
    rolloutLower: 0.5,
    rolloutUpper: 5,
    rolloutLogClamp: OFF,
  }),
});

/** A number in bounds or the string 'off' (Infinity). */
function numberOrOff(argument: string, value: unknown, bounds: Parameters<typeof checkNumber>[2]): number {
  if (value === 'off') return OFF;
  if (typeof value === 'string') fail('RANGE', argument, `expected a number or 'off', got ${quote(value)}`);
  return checkNumber(argument, value, bounds);
}

/** An option the chosen loss does not read: an error, since ignoring it would hide a mistake. */
function unused(argument: string, value: unknown, loss: PolicyLossKind, readers: readonly PolicyLossKind[]) {
  if (value !== undefined && !readers.includes(loss)) {
    fail(
      'RANGE',
      argument,
      `loss '${loss}' does not use it (it applies to ${readers.map((l) => `'${l}'`).join(', ')}), got ${quote(value)}`,
    );
  }
}

/** A nested options object (kl, rolloutCorrection, sapoTau): an object with known keys. */
function nested<T extends object>(
  argument: string,
  value: unknown,
  keys: readonly (keyof T & string)[],
): Partial<T> {
  if (typeof value !== 'object' || value === null)
    fail('DTYPE', argument, `expected an options object, got ${describe(value)}`);
  return checkOptions<T>(argument, value, keys);
}

/**
 * The valid tokens, the responses with at least one, and the longest response, in one pass over the
 * offsets (and the host mask, when there is one). Hot: 1M responses per call is a usual batch, so
 * without a host mask a native backend's pass does it (Backend.offsetCounts: ~0.1 ms against ~1.3).
 */
function responseCounts(
  offsets: Int32Array,
  hostMask: Uint8Array | undefined,
  native?: (offsets: Int32Array) => [number, number],
): { tokens: number; nonempty: number; maxLength: number } {
  if (hostMask === undefined && native !== undefined) {
    const [nonempty, maxLength] = native(offsets);
    return { tokens: offsets[offsets.length - 1] - offsets[0], nonempty, maxLength };
  }
  let tokens = 0;
  let nonempty = 0;
  let maxLength = 0;
  let start = offsets[0];
  for (let r = 1; r < offsets.length; r++) {
    const end = offsets[r];
    let n = end - start;
    if (n > maxLength) maxLength = n;
    if (hostMask !== undefined) {
      n = 0;
      for (let t = start; t < end; t++) if (hostMask[t] !== 0) n++;
    }
    tokens += n;
    if (n > 0) nonempty++;
    start = end;
  }
  return { tokens, nonempty, maxLength };
}

export async function policyLoss(
  backend: Backend,
  inputs: unknown,
  options: unknown,
): Promise<PolicyLossResult> {
  if (typeof inputs !== 'object' || inputs === null)
    fail(
      'DTYPE',
      'inputs',
      `expected { logprobs, oldLogprobs, advantages, layout, ... }, got ${describe(inputs)}`,
    );
  const x = checkOptions<PolicyLossInputs>('inputs', inputs, [
    'logprobs',
    'oldLogprobs',
    'advantages',
    'layout',
    'refLogprobs',
    'rolloutLogprobs',
    'entropy',
    'mask',
  ]);
  const o = checkOptions<PolicyLossOptions>('options', options, [
    'loss',
    'clipLow',
    'clipHigh',
    'dualClip',
    'logRatioClamp',
    'delta',
    'sapoTau',
    'vespo',
    'kl',
    'entropyCoef',
    'rolloutCorrection',
    'offPolicyMask',
    'aggregation',
    'scaleFactor',
    'globalTokens',
    'globalSequences',
    'ranks',
    'tokenLoss',
    'preset',
  ]);

  // ------------------------------------------------------------ scalar options
  const preset = o.preset === undefined ? undefined : checkEnum('preset', o.preset, PRESETS);
  const conv = preset === undefined ? POLICY_DEFAULTS : POLICY_PRESETS[preset];
  const loss = enumOption('loss', o.loss, POLICY_LOSSES, 'ppo');
  unused('clipLow', o.clipLow, loss, ['ppo', 'gspo', 'cispo', 'gmpo']);
  unused('clipHigh', o.clipHigh, loss, ['ppo', 'gspo', 'cispo', 'gmpo']);
  unused('delta', o.delta, loss, ['ppo', 'gspo']);
  unused('sapoTau', o.sapoTau, loss, ['sapo']);
  unused('vespo', o.vespo, loss, ['vespo']);
  unused('logRatioClamp', o.logRatioClamp, loss, ['ppo', 'cispo', 'sapo', 'reinforce']);
  if (o.dualClip !== undefined && o.dualClip !== 'off') unused('dualClip', o.dualClip, loss, ['ppo']);
  const clipLow =
    o.clipLow === undefined
      ? conv.clipLow
      : checkNumber('clipLow', o.clipLow, { min: 0, exclusiveMin: true, f32: true });
  const clipHigh =
    o.clipHigh === undefined
      ? clipLow
      : checkNumber('clipHigh', o.clipHigh, { min: 0, exclusiveMin: true, f32: true });
  const dualClip =
    o.dualClip === undefined
      ? loss === 'ppo'
        ? conv.dualClip
        : OFF
      : numberOrOff('dualClip', o.dualClip, { min: 1, exclusiveMin: true, f32: true });
  const logRatioClamp =
    o.logRatioClamp === undefined
      ? conv.logRatioClamp
      : numberOrOff('logRatioClamp', o.logRatioClamp, { min: 0, exclusiveMin: true, f32: true });
  const delta =
    o.delta === undefined ? OFF : checkNumber('delta', o.delta, { min: 0, exclusiveMin: true, f32: true });
  let sapoTauPos = conv.sapoTauPos;
  let sapoTauNeg = conv.sapoTauNeg;
  if (o.sapoTau !== undefined) {
    const t = nested<{ pos: number; neg: number }>('sapoTau', o.sapoTau, ['pos', 'neg']);
    if (t.pos !== undefined)
      sapoTauPos = checkNumber('sapoTau.pos', t.pos, { min: 0, exclusiveMin: true, f32: true });
    if (t.neg !== undefined)
      sapoTauNeg = checkNumber('sapoTau.neg', t.neg, { min: 0, exclusiveMin: true, f32: true });
  }
  // trl/trainer/grpo_config.py: vespo_k_pos 2, vespo_lambda_pos 3, vespo_k_neg 3, vespo_lambda_neg 2.
  const vespo = { kPos: 2, lambdaPos: 3, kNeg: 3, lambdaNeg: 2 };
  if (o.vespo !== undefined) {
    const v = nested<typeof vespo>('vespo', o.vespo, ['kPos', 'lambdaPos', 'kNeg', 'lambdaNeg']);
    for (const key of ['kPos', 'kNeg'] as const)
      if (v[key] !== undefined) vespo[key] = checkNumber(`vespo.${key}`, v[key], { f32: true });
    for (const key of ['lambdaPos', 'lambdaNeg'] as const)
      if (v[key] !== undefined)
        vespo[key] = checkNumber(`vespo.${key}`, v[key], { min: 0, exclusiveMin: true, f32: true });
  }

  let kl: PolicyLossArgs['kl'];
  if (o.kl !== undefined) {
    const k = nested<PolicyKlOptions>('kl', o.kl, ['estimator', 'straightThrough', 'coef', 'biasCorrection']);
    const estimator = enumOption('kl.estimator', k.estimator, KL_ESTIMATORS, conv.klEstimator);
    const biasCorrection = booleanOption('kl.biasCorrection', k.biasCorrection, false);
    // The ratio it multiplies is a token's own: gspo's and gmpo's are their response's (TRL's
    // sequence-level form sends the KL's gradient through the whole response; not provided).
    if (biasCorrection && (loss === 'gspo' || loss === 'gmpo'))
      fail(
        'RANGE',
        'kl.biasCorrection',
        `multiplies the KL by a token's ratio, which loss '${loss}' does not have (it applies to 'ppo', 'cispo', 'sapo', 'reinforce', 'vespo'), got true`,
      );
    kl = {
      estimator,
      straightThrough: booleanOption('kl.straightThrough', k.straightThrough, false),
      coef: checkNumber('kl.coef', k.coef, { min: 0, f32: true }),
      inputClamp: conv.klInputClamp,
      valueClamp: conv.klValueClamp,
      valueClampAll: conv.klValueClampAll,
      aggregation: conv.klAggregation,
      biasCorrection,
    };
  }
  const entropyCoef =
    o.entropyCoef === undefined ? 0 : checkNumber('entropyCoef', o.entropyCoef, { f32: true });

  let rollout: PolicyLossArgs['rollout'];
  if (o.rolloutCorrection !== undefined) {
    const r = nested<PolicyRolloutOptions>('rolloutCorrection', o.rolloutCorrection, [
      'level',
      'mode',
      'lower',
      'upper',
      'normalize',
    ]);
    const upper =
      r.upper === undefined
        ? conv.rolloutUpper
        : checkNumber('rolloutCorrection.upper', r.upper, { min: 0, exclusiveMin: true, f32: true });
    const lower =
      r.lower === undefined
        ? conv.rolloutLower
        : checkNumber('rolloutCorrection.lower', r.lower, { min: 0, f32: true });
    if (lower >= upper) {
      fail(
        'RANGE',
        'rolloutCorrection.lower',
        `expected a value below upper (${upper}), got ${r.lower === undefined ? `the default ${lower}` : quote(r.lower)}`,
      );
    }
    const level = enumOption('rolloutCorrection.level', r.level, ROLLOUT_LEVELS, conv.rolloutLevel);
    const mode = enumOption('rolloutCorrection.mode', r.mode, ROLLOUT_MODES, conv.rolloutMode);
    if (mode === 'sequence-mask' && level !== 'token')
      fail(
        'RANGE',
        'rolloutCorrection.level',
        `mode 'sequence-mask' applies token weights (filtered by their response's geometric mean): expected 'token', got ${quote(level)}${r.level === undefined ? ' (the preset default)' : ''}`,
      );
    const normalize = booleanOption('rolloutCorrection.normalize', r.normalize, false);
    // vespo folds the token weights into its sequence ratio W (TRL allows only its token modes).
    if (loss === 'vespo' && level !== 'token')
      fail(
        'RANGE',
        'rolloutCorrection.level',
        `loss 'vespo' folds token-level weights into its sequence ratio: expected 'token', got ${quote(level)}${r.level === undefined ? ' (the preset default)' : ''}`,
      );
    if (loss === 'vespo' && normalize)
      fail(
        'RANGE',
        'rolloutCorrection.normalize',
        `loss 'vespo' folds the weights into its sequence ratio, where a batch mean has no place: expected false, got true`,
      );
    rollout = {
      level,
      mode,
      lower,
      upper,
      normalize,
      logClamp: conv.rolloutLogClamp,
    };
  }

  let offPolicyThreshold: number | undefined;
  if (o.offPolicyMask !== undefined) {
    const m = nested<{ threshold: number }>('offPolicyMask', o.offPolicyMask, ['threshold']);
    offPolicyThreshold = checkNumber('offPolicyMask.threshold', m.threshold, { f32: true });
  }

  const aggregation = enumOption(
    'aggregation',
    o.aggregation,
    AGGREGATIONS,
    loss === 'gspo' || loss === 'sapo' || loss === 'gmpo' ? 'seq-mean-token-mean' : 'token-mean',
  );
  if (o.scaleFactor !== undefined && aggregation !== 'seq-mean-token-sum-norm') {
    fail(
      'RANGE',
      'scaleFactor',
      `only aggregation 'seq-mean-token-sum-norm' uses it (aggregation is '${aggregation}'), got ${quote(o.scaleFactor)}`,
    );
  }
  const scaleFactorOption =
    o.scaleFactor === undefined
      ? undefined
      : checkNumber('scaleFactor', o.scaleFactor, { min: 0, exclusiveMin: true, f32: true });
  if (
    aggregation === 'seq-mean-token-sum-norm' &&
    scaleFactorOption === undefined &&
    !conv.defaultScaleFactor
  ) {
    fail(
      'RANGE',
      'scaleFactor',
      `required by aggregation 'seq-mean-token-sum-norm' under preset '${preset}' (TRL's dr_grpo divides by max_completion_length, which has no default): expected a finite number > 0, got undefined`,
    );
  }
  const count = (argument: string, v: unknown) =>
    v === undefined ? undefined : checkNumber(argument, v, { min: 1, integer: true, f32: true });
  const globalTokens = count('globalTokens', o.globalTokens);
  const globalSequences = count('globalSequences', o.globalSequences);
  const ranks = count('ranks', o.ranks) ?? 1;
  const tokenLoss = booleanOption('tokenLoss', o.tokenLoss, false);

  // ------------------------------------------------------------ tensors
  if (x.refLogprobs !== undefined && kl === undefined) {
    fail('RANGE', 'refLogprobs', 'given without options.kl (pass kl: { coef: 0 } to measure the KL only)');
  }
  if (x.rolloutLogprobs !== undefined && rollout === undefined && offPolicyThreshold === undefined) {
    fail('RANGE', 'rolloutLogprobs', 'given without options.rolloutCorrection or options.offPolicyMask');
  }
  const need = (argument: string, value: unknown, why: string) => {
    if (value === undefined)
      fail('DTYPE', argument, `required by ${why}: expected a Tensor or Float32Array [T], got undefined`);
  };
  if (kl !== undefined) need('refLogprobs', x.refLogprobs, 'options.kl');
  if (rollout !== undefined) need('rolloutLogprobs', x.rolloutLogprobs, 'options.rolloutCorrection');
  if (entropyCoef !== 0) need('entropy', x.entropy, 'options.entropyCoef ≠ 0');

  return withInputs(backend, async (takeAny) => {
    const take = <D extends 'f32' | 'u8'>(
      argument: string,
      value: unknown,
      dtype: D,
      length: number | null,
    ) => takeAny(argument, value, [dtype], [length]);
    const logprobs = take('logprobs', x.logprobs, 'f32', null);
    const T = logprobs.shape[0];
    // T is logprobs' length; where the layout and oldLogprobs agree on another, logprobs is the odd
    // one out and is named (else a short logprobs would be blamed on every other input).
    const ro = (x.layout as { responseOffsets?: unknown } | null | undefined)?.responseOffsets;
    const tLayout = ro instanceof Int32Array && ro.length > 0 ? ro[ro.length - 1] : T;
    const lengthOf = (v: unknown) =>
      v instanceof Tensor
        ? v.shape.length === 1
          ? v.shape[0]
          : -1
        : ArrayBuffer.isView(v)
          ? (v as Float32Array).length
          : -1;
    if (tLayout !== T && lengthOf(x.oldLogprobs) === tLayout)
      fail('SHAPE', 'logprobs', `expected shape [${tLayout}] (the layout's T, and oldLogprobs'), got [${T}]`);
    const oldLogprobs = take('oldLogprobs', x.oldLogprobs, 'f32', T);
    const advantages = take('advantages', x.advantages, 'f32', T);
    const refLogprobs =
      x.refLogprobs === undefined ? undefined : take('refLogprobs', x.refLogprobs, 'f32', T);
    const rolloutLogprobs =
      x.rolloutLogprobs === undefined ? undefined : take('rolloutLogprobs', x.rolloutLogprobs, 'f32', T);
    const entropy = x.entropy === undefined ? undefined : take('entropy', x.entropy, 'f32', T);
    const mask = x.mask === undefined ? undefined : take('mask', x.mask, 'u8', T);

    const responseOffsets = responseOffsetsOf(x.layout, T, backend.firstDecrease);
    const R = responseOffsets.length - 1;

    // The host's counts: from the offsets without a mask, from a host mask, none for a Tensor mask.
    const hostMask = x.mask instanceof Uint8Array ? x.mask : undefined;
    const counts = responseCounts(responseOffsets, hostMask, backend.offsetCounts);
    const maxLength = counts.maxLength;
    const known = mask === undefined || hostMask !== undefined;
    const localTokens = known ? counts.tokens : undefined;
    const localNonempty = known ? counts.nonempty : undefined;
    const seqCount = conv.seqCount;

    const args: PolicyLossArgs = {
      logprobs,
      oldLogprobs,
      advantages,
      refLogprobs,
      rolloutLogprobs,
      entropy,
      mask,
      responseOffsets,
      numTokens: T,
      numResponses: R,
      loss,
      clipLow,
      clipHigh,
      dualClip,
      logRatioClamp,
      gspoLogClamp: conv.gspoLogClamp,
      delta,
      cispoCap: conv.cispoCap,
      sapoTauPos,
      sapoTauNeg,
      vespoKPos: vespo.kPos,
      vespoLambdaPos: vespo.lambdaPos,
      vespoKNeg: vespo.kNeg,
      vespoLambdaNeg: vespo.lambdaNeg,
      kl,
      entropyCoef,
      entropyAggregation: conv.entropyAggregation,
      rollout,
      offPolicyThreshold,
      aggregation,
      seqTokenDivisor: conv.seqTokenDivisor,
      seqCount,
      normBySequences: conv.normBySequences,
      // The padded width of a [R, T] batch is at least the longest response (verl's default K).
      scaleFactor: scaleFactorOption ?? Math.max(maxLength, 1),
      ranks,
      tokens: globalTokens ?? localTokens,
      sequences: globalSequences ?? (seqCount === 'all' ? R : localNonempty),
      tokenLoss,
    };
    return backend.policyLoss(args);
  });
}

/** The stats tensor of a policyLoss result as named numbers (reads it back: a wait). */
export async function readPolicyStats(stats: Tensor<'f32'>): Promise<Record<PolicyStatName, number>> {
  if (!(stats instanceof Tensor))
    fail('DTYPE', 'stats', `expected the stats Tensor of a policyLoss result, got ${describe(stats)}`);
  if (stats.disposed) fail('SHAPE', 'stats', 'expected a live Tensor, got one that was disposed');
  if (stats.dtype !== 'f32') fail('DTYPE', 'stats', `expected dtype f32, got ${stats.dtype}`);
  if (stats.shape.length !== 1 || stats.shape[0] !== POLICY_STATS.length)
    fail('SHAPE', 'stats', `expected shape [${POLICY_STATS.length}], got [${stats.shape.join(', ')}]`);
  try {
    stats.storage; // throws BACKEND_UNAVAILABLE when its context was disposed
  } catch (e) {
    fail('BACKEND_UNAVAILABLE', 'stats', `expected a Tensor of a live context: ${(e as Error).message}`);
  }
  const v = await stats.read();
  const out = {} as Record<PolicyStatName, number>;
  POLICY_STATS.forEach((name, i) => {
    out[name] = v[i];
  });
  return out;
}
