/**
 * Validation, preset resolution and dispatch of the advantages family: advantages, expandToTokens,
 * whiten. Computes nothing itself: it checks the user's arguments, turns a preset plus explicit
 * options into the explicit conventions of AdvantagesArgs / WhitenArgs, and calls the backend.
 * What each preset sets, and where in each trainer it comes from: docs/PRESETS.md.
 */
import {
  type AdvantagesArgs,
  type AdvantagesResult,
  type Backend,
  ESTIMATORS,
  type Estimator,
  NAN_REWARD_POLICIES,
  type NanRewardPolicy,
  PRESETS,
  type Preset,
  SCALE_KINDS,
  type ScaleKind,
  SINGLETON_POLICIES,
  type SingletonPolicy,
  STD_KINDS,
  type StdKind,
  type WhitenVarianceEps,
} from '../backends/backend.js';
import { fail } from '../errors.js';
import { groupOffsetsFromSize, validateOffsets } from '../layout.js';
import { Tensor } from '../tensor.js';
import {
  checkBoolean,
  checkEnum,
  checkNumber,
  checkOptions,
  type TensorLike,
  withInputs,
} from './validate.js';

export interface AdvantagesOptions {
  /** Ragged groups: responses of group g are [groupOffsets[g], groupOffsets[g+1]). */
  groupOffsets?: Int32Array;
  /** Or fixed-size groups. */
  groupSize?: number;
  /** Needed by 'opo' (lengths) and 'reinforce_pp_baseline' (per-token output); R+1 entries. */
  responseOffsets?: Int32Array;
  /** Default 'grpo'. */
  estimator?: Estimator;
  /** Default 'sample' (n−1). */
  std?: StdKind;
  /** grpo/grpo_passk divisor epsilon, finite ≥ 0. Default 1e-6 (trl preset 1e-4, openrlhf 1e-9). */
  eps?: number;
  /** grpo/grpo_passk divisor: group std, batch std, or none. Default 'group'. */
  scale?: ScaleKind;
  /** Singleton groups. Default 'zero' (verl preset 'mean0', openrlhf 'nan'). */
  singleton?: SingletonPolicy;
  /** NaN rewards: 'propagate' (default) or TRL's 'unscorable' (preset 'trl'); see NAN_REWARD_POLICIES. */
  nanRewards?: NanRewardPolicy;
  /** Sets every convention of one trainer at once; explicit options above override it. */
  preset?: Preset;
}

export interface WhitenOptions {
  /** Same shape as values; nonzero = valid. Default: every element is valid. */
  mask?: TensorLike<'u8'>;
  /** The trainer whose whitening to match; default = TRL's masked_whiten conventions. */
  preset?: Preset;
  /** Add the mean back after scaling (verl's shift_mean=False). Default false. */
  keepMean?: boolean;
}

/** Every convention a preset (or the package default) fixes. docs/PRESETS.md cites the sources. */
export interface Conventions {
  std: StdKind;
  eps: number;
  scale: ScaleKind;
  singleton: SingletonPolicy;
  nanRewards: NanRewardPolicy;
  whitenMaskEps: number;
  whitenVariance: StdKind;
  whitenVarianceEps: WhitenVarianceEps;
}

/** The package default: sample std, eps 1e-6, group scale, singletons 0, TRL-style whitening. */
export const DEFAULT_CONVENTIONS: Readonly<Conventions> = Object.freeze({
  std: 'sample',
  eps: 1e-6,
  scale: 'group',
  singleton: 'zero',
  nanRewards: 'propagate',
  whitenMaskEps: 0,
  whitenVariance: 'sample',
  whitenVarianceEps: 'add',
});

export const PRESET_CONVENTIONS: Readonly<Record<Preset, Readonly<Conventions>>> = Object.freeze({
  // verl/trainer/ppo/core_algos.py compute_*_outcome_advantage: torch.std, epsilon=1e-6,
  // singleton id2mean = 0 / id2std = 1; verl/utils/torch_functional.py masked_whiten.
  verl: Object.freeze({
    std: 'sample',
    eps: 1e-6,
    scale: 'group',
    singleton: 'mean0',
    nanRewards: 'propagate',
    whitenMaskEps: 1e-8,
    whitenVariance: 'sample',
    whitenVarianceEps: 'add',
  }),
  // trl/trainer/grpo_trainer.py _generate_and_score_completions: nanmean / nanstd (n−1) over the
  // scorable rewards, + 1e-4, num_generations == 1 → std 0 → advantage 0, nan_to_num;
  // trl/experimental/ppo masked_whiten.
  trl: Object.freeze({
    std: 'sample',
    eps: 1e-4,
    scale: 'group',
    singleton: 'zero',
    nanRewards: 'unscorable',
    whitenMaskEps: 0,
    whitenVariance: 'sample',
    whitenVarianceEps: 'add',
  }),
  // openrlhf/trainer/ppo_utils/experience_maker.py compute_advantages_and_returns: group_norm
  // std (n−1) + 1e-9, plain n−1 arithmetic for singletons, population variance clamped at 1e-8.
  openrlhf: Object.freeze({
    std: 'sample',
    eps: 1e-9,
    scale: 'group',
    singleton: 'nan',
    nanRewards: 'propagate',
    whitenMaskEps: 0,
    whitenVariance: 'population',
    whitenVarianceEps: 'clamp',
  }),
});

/** A preset's conventions, or the package default when preset is undefined. */
function baseConventions(preset: unknown): Readonly<Conventions> {
  if (preset === undefined) return DEFAULT_CONVENTIONS;
  return PRESET_CONVENTIONS[checkEnum('preset', preset, PRESETS)];
}

/**
 * groupOffsets of R responses in groups of `groupSize`, kept for the next call with the same two
 * numbers (a trainer's every step): building 128k offsets costs ~0.3 ms, as much as the native cpu
 * kernel's whole work on 1M responses. The array never reaches the caller (backends only read it), so
 * nothing can change it behind the cache.
 */
let uniformCache: { numResponses: number; groupSize: number; offsets: Int32Array } | undefined;
function uniformGroupOffsets(numResponses: number, groupSize: number): Int32Array {
  const c = uniformCache;
  if (c !== undefined && c.numResponses === numResponses && c.groupSize === groupSize) return c.offsets;
  const offsets = groupOffsetsFromSize(numResponses, groupSize);
  uniformCache = { numResponses, groupSize, offsets };
  return offsets;
}

/** The R+1 response offsets, validated (`scan`: the backend's first-decrease scan, if it has one). */
function checkResponseOffsets(
  value: unknown,
  numResponses: number,
  scan?: (offsets: Int32Array) => number,
): Int32Array {
  const ro = validateOffsets('responseOffsets', value, undefined, scan);
  if (ro.length !== numResponses + 1) {
    fail(
      'LAYOUT',
      'responseOffsets',
      `expected R+1 = ${numResponses + 1} entries (one more than the rewards), got ${ro.length}`,
    );
  }
  return ro;
}

export async function advantages(
  backend: Backend,
  rewards: unknown,
  options: unknown,
): Promise<AdvantagesResult> {
  const o = checkOptions<AdvantagesOptions>('options', options, [
    'groupOffsets',
    'groupSize',
    'responseOffsets',
    'estimator',
    'std',
    'eps',
    'scale',
    'singleton',
    'nanRewards',
    'preset',
  ]);
  const base = baseConventions(o.preset);
  const estimator = o.estimator === undefined ? 'grpo' : checkEnum('estimator', o.estimator, ESTIMATORS);
  const std = o.std === undefined ? base.std : checkEnum('std', o.std, STD_KINDS);
  const scale = o.scale === undefined ? base.scale : checkEnum('scale', o.scale, SCALE_KINDS);
  const singleton =
    o.singleton === undefined ? base.singleton : checkEnum('singleton', o.singleton, SINGLETON_POLICIES);
  const eps = o.eps === undefined ? base.eps : checkNumber('eps', o.eps, { min: 0, f32: true });
  const nanRewards =
    o.nanRewards === undefined ? base.nanRewards : checkEnum('nanRewards', o.nanRewards, NAN_REWARD_POLICIES);

  return withInputs(backend, async (take) => {
    const rw = take('rewards', rewards, ['f32'], [null]);
    const numResponses = rw.shape[0];
    if ((o.groupOffsets === undefined) === (o.groupSize === undefined)) {
      fail('LAYOUT', 'groupOffsets', 'expected exactly one of groupOffsets or groupSize');
    }
    const groupArg = o.groupOffsets !== undefined ? 'groupOffsets' : 'groupSize';
    const groupOffsets =
      o.groupOffsets !== undefined
        ? validateOffsets('groupOffsets', o.groupOffsets, numResponses, backend.firstDecrease)
        : uniformGroupOffsets(numResponses, checkNumber('groupSize', o.groupSize, { integer: true, min: 1 }));
    const numGroups = groupOffsets.length - 1;

    const needsTokens = estimator === 'opo' || estimator === 'reinforce_pp_baseline';
    if (needsTokens && o.responseOffsets === undefined) {
      fail('LAYOUT', 'responseOffsets', `required by estimator '${estimator}' (response lengths)`);
    }
    const responseOffsets =
      o.responseOffsets === undefined
        ? undefined
        : checkResponseOffsets(o.responseOffsets, numResponses, backend.firstDecrease);

    if (estimator === 'grpo_passk') {
      for (let g = 0; g < numGroups; g++) {
        const n = groupOffsets[g + 1] - groupOffsets[g];
        if (n < 2) {
          fail(
            'LAYOUT',
            groupArg,
            `estimator 'grpo_passk' needs at least 2 responses per group, group ${g} has ${n}`,
          );
        }
      }
    }

    const args: AdvantagesArgs = {
      rewards: rw,
      groupOffsets,
      responseOffsets,
      numResponses,
      numGroups,
      numTokens: responseOffsets === undefined ? 0 : responseOffsets[numResponses],
      estimator,
      std,
      eps,
      scale,
      singleton,
      nanRewards,
      whitenMaskEps: base.whitenMaskEps,
      whitenVariance: base.whitenVariance,
      whitenVarianceEps: base.whitenVarianceEps,
    };
    return backend.advantages(args);
  });
}

export async function expandToTokens(
  backend: Backend,
  values: unknown,
  responseOffsets: unknown,
): Promise<Tensor<'f32'>> {
  return withInputs(backend, async (take) => {
    const v = take('values', values, ['f32'], [null]);
    const ro = checkResponseOffsets(responseOffsets, v.shape[0], backend.firstDecrease);
    return backend.expandToTokens({
      values: v,
      responseOffsets: ro,
      numTokens: ro[ro.length - 1],
    });
  });
}

export async function whiten(backend: Backend, values: unknown, options: unknown): Promise<Tensor<'f32'>> {
  const o = checkOptions<WhitenOptions>('options', options, ['mask', 'preset', 'keepMean']);
  const base = baseConventions(o.preset);
  const keepMean = o.keepMean === undefined ? false : checkBoolean('keepMean', o.keepMean);
  // A Tensor may have any rank; a plain array is 1-D.
  const rank = values instanceof Tensor ? values.shape.length : 1;
  return withInputs(backend, async (take) => {
    const v = take('values', values, ['f32'], new Array<null>(rank).fill(null));
    const mask = o.mask === undefined ? undefined : take('mask', o.mask, ['u8'], v.shape);
    return backend.whiten({
      values: v,
      mask,
      maskEps: base.whitenMaskEps,
      variance: base.whitenVariance,
      varianceEps: base.whitenVarianceEps,
      keepMean,
    });
  });
}
