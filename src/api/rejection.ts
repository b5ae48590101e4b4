/**
 * Validation and dispatch of rolloutRejection: verl's rollout rejection sampling (`rollout_rs`,
 * verl/trainer/ppo/rollout_corr_helper.py compute_rollout_rejection_mask). Computes nothing itself: it
 * checks the inputs, resolves the criteria (verl's option strings or objects) into f32 thresholds and
 * calls the backend. The mask it returns is policyLoss's `mask`: the rejected tokens leave the loss and
 * its counts, as verl's modified response_mask does. Conventions: docs/PRESETS.md, "Rollout rejection".
 */
import {
  type Backend,
  REJECTION_CRITERION_STATS,
  REJECTION_LEVELS,
  REJECTION_MAX_CRITERIA,
  REJECTION_STATISTICS,
  REJECTION_STATS,
  type RejectionCriterionStatName,
  type RejectionLevel,
  type RejectionStatistic,
  type RejectionStatName,
  type ResolvedRejectionCriterion,
  type RolloutRejectionResult,
} from '../backends/backend.js';
import { fail } from '../errors.js';
import { responseOffsetsOf } from '../layout.js';
import { Tensor } from '../tensor.js';
import {
  checkEnum,
  checkNumber,
  checkOptions,
  describe,
  quote,
  type TensorLike,
  withInputs,
} from './validate.js';

export interface RolloutRejectionInputs {
  /** ℓ_t: the training policy's log-probs (verl's old_log_prob), f32 [T]. */
  logprobs: TensorLike<'f32'>;
  /** ℓᵛ_t: the sampler's log-probs (verl's rollout_log_prob), f32 [T]. */
  rolloutLogprobs: TensorLike<'f32'>;
  /** Tokens of response r are [responseOffsets[r], responseOffsets[r+1]); groupOffsets is optional. */
  layout: { responseOffsets: Int32Array; groupOffsets?: Int32Array };
  /** m_t, nonzero = valid, u8 [T] (verl's response_mask); default every token valid. */
  mask?: TensorLike<'u8'>;
}

/** One rejection criterion: verl's `<level>_<statistic>` option with its threshold. */
export interface RejectionCriterion {
  /** k1 = −λ (log of the rollout/training ratio), k2 = λ²/2, k3 = e^λ − 1 − λ, λ = ℓ − ℓᵛ clamped to ±20. */
  statistic: RejectionStatistic;
  /** Per token, or the response's sum, mean or max of the token statistics (seq-max: k2, k3). */
  level: RejectionLevel;
  /** k2, k3: the largest statistic kept, > 0. k1: the ratio bound U > 0 (the statistic ≤ log U). */
  upper: number;
  /** k1 only: the ratio bound 0 < L ≤ U (the statistic ≥ log L); default 1/U, as verl's. */
  lower?: number;
}

export interface RolloutRejectionOptions {
  /**
   * The criteria, all of which a token must pass: objects, or verl's `rollout_rs` string (comma
   * separated options such as "token_k1,seq_max_k3"; a repeated option counts once, as verl's).
   */
  criteria: readonly RejectionCriterion[] | string;
  /**
   * With a string `criteria`: verl's `rollout_rs_threshold`, one threshold for all or one per
   * (distinct) option, comma separated; a k1 option takes "lower_upper" or an upper U (lower 1/U).
   */
  thresholds?: string | number;
}

const LEVEL_OF_VERL: Record<string, RejectionLevel> = {
  token: 'token',
  seq_sum: 'seq-sum',
  seq_mean: 'seq-mean',
  seq_max: 'seq-max',
};

/** verl's option strings and thresholds as criteria objects (its _parse_rollout_rs_thresholds). */
function criteriaOfVerl(spec: string, thresholds: unknown): RejectionCriterion[] {
  const names: string[] = [];
  for (const part of spec.split(',')) {
    const name = part.trim();
    if (name !== '' && !names.includes(name)) names.push(name);
  }
  if (names.length === 0)
    fail('RANGE', 'criteria', `expected at least one option such as "token_k1", got ${quote(spec)}`);
  const parsed = names.map((name) => {
    const m = /^(token|seq_sum|seq_mean|seq_max)_(k1|k2|k3)$/.exec(name);
    if (m === null || name === 'seq_max_k1')
      fail(
        'RANGE',
        'criteria',
        `unknown option ${quote(name)}: expected token_k{1,2,3}, seq_sum_k{1,2,3}, seq_mean_k{1,2,3} or seq_max_k{2,3}`,
      );
    return { level: LEVEL_OF_VERL[m[1]], statistic: m[2] as RejectionStatistic, name };
  });
  if (thresholds === undefined)
    fail(
      'DTYPE',
      'thresholds',
      "required with a string criteria (verl's rollout_rs_threshold): got undefined",
    );
  let specs: string[];
  if (typeof thresholds === 'number') specs = [String(thresholds)];
  else if (typeof thresholds === 'string')
    specs = thresholds
      .split(',')
      .map((s) => s.trim())
      .filter((s) => s !== '');
  else fail('DTYPE', 'thresholds', `expected a string or a number, got ${describe(thresholds)}`);
  if (specs.length !== 1 && specs.length !== parsed.length)
    fail(
      'RANGE',
      'thresholds',
      `expected one threshold for all options or ${parsed.length} (one per option), got ${specs.length} in ${quote(thresholds)}`,
    );
  const num = (text: string, option: string) => {
    const v = /^[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?$/.test(text) ? Number(text) : Number.NaN;
    if (!Number.isFinite(v) || v <= 0)
      fail('RANGE', 'thresholds', `expected a number > 0 for option ${quote(option)}, got ${quote(text)}`);
    return v;
  };
  return parsed.map(({ level, statistic, name }, i) => {
    const text = specs.length === 1 ? specs[0] : specs[i];
    const cut = text.indexOf('_');
    if (statistic !== 'k1') {
      if (cut >= 0)
        fail(
          'RANGE',
          'thresholds',
          `option ${quote(name)} takes one upper bound without '_', got ${quote(text)}`,
        );
      return { statistic, level, upper: num(text, name) };
    }
    if (cut < 0) return { statistic, level, upper: num(text, name) };
    return { statistic, level, lower: num(text.slice(0, cut), name), upper: num(text.slice(cut + 1), name) };
  });
}

/** The criteria resolved: f32 thresholds on the statistic (k1: the logs of the ratio bounds). */
export function resolveRejectionCriteria(
  criteria: unknown,
  thresholds: unknown,
): ResolvedRejectionCriterion[] {
  let list: unknown[];
  if (typeof criteria === 'string') list = criteriaOfVerl(criteria, thresholds);
  else {
    if (thresholds !== undefined)
      fail(
        'RANGE',
        'thresholds',
        "only a string criteria (verl's rollout_rs) takes thresholds; the objects carry theirs",
      );
    if (!Array.isArray(criteria))
      fail(
        'DTYPE',
        'criteria',
        `expected an array of criteria or verl's rollout_rs string, got ${describe(criteria)}`,
      );
    list = criteria;
  }
  if (list.length === 0 || list.length > REJECTION_MAX_CRITERIA)
    fail('RANGE', 'criteria', `expected 1 to ${REJECTION_MAX_CRITERIA} criteria, got ${list.length}`);
  const out: ResolvedRejectionCriterion[] = [];
  list.forEach((raw, i) => {
    const at = `criteria[${i}]`;
    if (raw === undefined) fail('DTYPE', at, 'expected a criterion object, got undefined');
    const c = checkOptions<RejectionCriterion>(at, raw, ['statistic', 'level', 'upper', 'lower']);
    const statistic = checkEnum(`${at}.statistic`, c.statistic, REJECTION_STATISTICS);
    const level = checkEnum(`${at}.level`, c.level, REJECTION_LEVELS);
    if (level === 'seq-max' && statistic === 'k1')
      fail('RANGE', `${at}.level`, "'seq-max' takes statistic k2 or k3 (verl has no seq_max_k1), got k1");
    if (out.some((o) => o.statistic === statistic && o.level === level))
      fail('RANGE', at, `(${statistic}, ${level}) given twice: expected each criterion once`);
    const upper = checkNumber(`${at}.upper`, c.upper, { min: 0, exclusiveMin: true, f32: true });
    if (statistic !== 'k1') {
      if (c.lower !== undefined)
        fail(
          'RANGE',
          `${at}.lower`,
          `only k1 takes a lower bound (${statistic} is ≥ 0), got ${quote(c.lower)}`,
        );
      out.push({ statistic, level, lower: Number.NEGATIVE_INFINITY, upper: Math.fround(upper) });
      return;
    }
    const lower =
      c.lower === undefined
        ? 1 / upper
        : checkNumber(`${at}.lower`, c.lower, { min: 0, exclusiveMin: true, f32: true });
    if (lower > upper)
      fail(
        'RANGE',
        `${at}.lower`,
        `expected lower ≤ upper (${upper}), got ${quote(lower)}${c.lower === undefined ? ' (the default 1/upper)' : ''}`,
      );
    out.push({ statistic, level, lower: Math.fround(Math.log(lower)), upper: Math.fround(Math.log(upper)) });
  });
  return out;
}

export async function rolloutRejection(
  backend: Backend,
  inputs: RolloutRejectionInputs,
  options: RolloutRejectionOptions,
): Promise<RolloutRejectionResult> {
  if (typeof inputs !== 'object' || inputs === null)
    fail('DTYPE', 'inputs', `expected { logprobs, rolloutLogprobs, layout }, got ${describe(inputs)}`);
  if (options === undefined) fail('DTYPE', 'options', 'expected { criteria }, got undefined');
  const o = checkOptions<RolloutRejectionOptions>('options', options, ['criteria', 'thresholds']);
  const criteria = resolveRejectionCriteria(o.criteria, o.thresholds);
  const x = checkOptions<RolloutRejectionInputs>('inputs', inputs, [
    'logprobs',
    'rolloutLogprobs',
    'layout',
    'mask',
  ]);
  return withInputs(backend, async (take) => {
    const logprobs = take('logprobs', x.logprobs, ['f32'], [null]);
    const T = logprobs.shape[0];
    const rolloutLogprobs = take('rolloutLogprobs', x.rolloutLogprobs, ['f32'], [T]);
    const mask = x.mask === undefined ? undefined : take('mask', x.mask, ['u8'], [T]);
    const responseOffsets = responseOffsetsOf(x.layout, T, backend.firstDecrease);
    return backend.rolloutRejection({
      logprobs,
      rolloutLogprobs,
      mask,
      responseOffsets,
      numTokens: T,
      numResponses: responseOffsets.length - 1,
      criteria,
    });
  });
}

/** rolloutRejection's stats, named: the overall fractions and, per criterion in order, verl's metrics. */
export type RejectionStats = Record<RejectionStatName, number> & {
  criteria: Record<RejectionCriterionStatName, number>[];
};

/** The stats tensor of a rolloutRejection result as named numbers (reads it back: a wait). */
export async function readRejectionStats(stats: Tensor<'f32'>): Promise<RejectionStats> {
  if (!(stats instanceof Tensor))
    fail('DTYPE', 'stats', `expected the stats Tensor of a rolloutRejection result, got ${describe(stats)}`);
  if (stats.disposed) fail('SHAPE', 'stats', 'expected a live Tensor, got one that was disposed');
  if (stats.dtype !== 'f32') fail('DTYPE', 'stats', `expected dtype f32, got ${stats.dtype}`);
  const head = REJECTION_STATS.length;
  const per = REJECTION_CRITERION_STATS.length;
  const n = stats.shape[0];
  if (stats.shape.length !== 1 || n < head + per || (n - head) % per !== 0)
    fail(
      'SHAPE',
      'stats',
      `expected shape [${head} + ${per}·criteria] (1 to ${REJECTION_MAX_CRITERIA} criteria), got [${stats.shape.join(', ')}]`,
    );
  try {
    stats.storage; // throws BACKEND_UNAVAILABLE when its context was disposed
  } catch (e) {
    fail('BACKEND_UNAVAILABLE', 'stats', `expected a Tensor of a live context: ${(e as Error).message}`);
  }
  const v = await stats.read();
  const out = { criteria: [] } as unknown as RejectionStats;
  REJECTION_STATS.forEach((name, i) => {
    out[name] = v[i];
  });
  for (let base = head; base < n; base += per) {
    const c = {} as Record<RejectionCriterionStatName, number>;
    REJECTION_CRITERION_STATS.forEach((name, i) => {
      c[name] = v[base + i];
    });
    out.criteria.push(c);
  }
  return out;
}
