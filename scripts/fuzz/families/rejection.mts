/**
 * Family 'rejection': rolloutRejection with 1 to 11 criteria (every statistic and level, bounds drawn
 * around the statistics' usual values, a k1 lower bound or its default 1/U), as objects or as verl's
 * strings, a mask or none, host arrays or device tensors, sometimes a NaN or ±Inf log-prob at a valid
 * token (NaN and ±Inf always under the mask); one case in ten asks for something refused (a RANGE or
 * DTYPE error on every backend: k1's lower above upper, seq-max with k1, a criterion twice, a bound of 0).
 *
 * Inputs: ≤ 12 responses of ≤ 12 tokens (empty ones), in one case of 16 ≤ 64 responses of ≤ 300 (cuda's
 * warps and webgpu's workgroup path past 64 tokens); λ = ℓ − ℓᵛ of spread 1e-3 to 30 (k3's series near
 * 0, the ±20 clamp).
 *
 * Tolerances: test/cases/rejection.ts REJECTION_TOLERANCES with that table's reference (reference()):
 * the mask exact but for the tokens of a unit within f32 rounding of a bound, the stats' counts likewise,
 * means relative to the mean of the statistics' magnitudes.
 */
import {
  type Context,
  REJECTION_LEVELS,
  REJECTION_STATISTICS,
  type RejectionCriterion,
  type RolloutRejectionOptions,
  type TensorLike,
} from '../../../src/index.js';
import { type Data, REJECTION_TOLERANCES, reference } from '../../../test/cases/rejection.js';
import { offsetsText, raggedLayout } from '../gen.mjs';
import { type Expect, type Family, readValues } from '../harness.mjs';

const VERL_LEVEL = {
  token: 'token',
  'seq-sum': 'seq_sum',
  'seq-mean': 'seq_mean',
  'seq-max': 'seq_max',
} as const;

export const rejectionFamily: Family = {
  name: 'rejection',
  ops: 'rolloutRejection',
  async run(r, s) {
    const big = r.bool(1 / 16);
    const lay = raggedLayout(
      r,
      big
        ? { maxGroups: 8, maxGroupSize: 8, maxLength: 300, maxTokens: 6000, minGroups: 1 }
        : { maxGroups: 4, maxGroupSize: 4, maxLength: 12, maxTokens: 144, minGroups: 0 },
    );
    const T = lay.tokens;
    const spread = r.pick([1e-3, 0.05, 0.3, 1, 30]);
    const lp = Float32Array.from({ length: T }, () => -Math.abs(r.normal()) * 2);
    const roll = Float32Array.from(lp, (v) => v - r.normal() * spread);
    const mask = r.bool(0.5) ? Uint8Array.from({ length: T }, () => (r.bool(0.8) ? 1 : 0)) : undefined;
    const odd = [Number.NaN, Number.POSITIVE_INFINITY, Number.NEGATIVE_INFINITY];
    for (let t = 0; t < T; t++)
      if ((mask && mask[t] === 0) || r.bool(0.01)) (r.bool() ? lp : roll)[t] = r.pick(odd);
    const loose = r.bool(0.1);
    // Criteria: distinct (statistic, level) pairs, bounds near the statistic's scale at this spread.
    const pairs = REJECTION_LEVELS.flatMap((level) =>
      REJECTION_STATISTICS.map((statistic) => ({ statistic, level })),
    ).filter((p) => loose || !(p.level === 'seq-max' && p.statistic === 'k1'));
    const count = r.int(1, r.bool(0.2) ? 11 : 3);
    const criteria: RejectionCriterion[] = [];
    for (let i = 0; i < count && pairs.length > 0; i++) {
      const { statistic, level } = pairs.splice(r.int(0, pairs.length - 1), 1)[0];
      const n = level === 'seq-sum' ? 6 : 1;
      const scale = spread * spread * n;
      if (statistic === 'k1') {
        const U = Math.exp(r.pick([0.5, 1, 2, 4]) * spread * Math.sqrt(n));
        const c: RejectionCriterion = { statistic, level, upper: U };
        if (r.bool(0.7))
          c.lower = r.bool(0.5) ? 1 / U : Math.exp(-r.pick([0.25, 1, 3]) * spread * Math.sqrt(n));
        criteria.push(c);
      } else criteria.push({ statistic, level, upper: Math.max(r.pick([0.1, 0.5, 1, 3]) * scale, 1e-9) });
    }
    if (loose) {
      const c = criteria[0];
      const pick = r.int(0, 2);
      if (pick === 0)
        criteria.push({ ...c }); // twice: RANGE
      else if (pick === 1)
        c.upper = 0; // RANGE
      else if (c.statistic === 'k1')
        c.lower = c.upper * 2; // lower > upper: RANGE
      else c.lower = 0.5; // lower with k2/k3: RANGE
    }
    const strings = !loose && r.bool(0.3);
    const options: RolloutRejectionOptions = strings
      ? {
          criteria: criteria.map((c) => `${VERL_LEVEL[c.level]}_${c.statistic}`).join(','),
          thresholds: criteria
            .map((c) =>
              c.statistic === 'k1' && c.lower !== undefined ? `${c.lower}_${c.upper}` : String(c.upper),
            )
            .join(','),
        }
      : { criteria };
    const tensors = r.bool(0.3);
    const groupOffsets = r.bool(0.3) ? lay.groupOffsets : undefined;
    const data: Data = { offsets: lay.responseOffsets, lp, roll, mask };
    const desc = `T=${T} ro=${offsetsText(lay.responseOffsets)} spread=${spread} ${JSON.stringify(options)} mask=${mask !== undefined} tensors=${tensors}`;
    await s.compare({
      op: 'rolloutRejection',
      desc,
      async run(ctx: Context, keep) {
        const up = <A extends Float32Array | Uint8Array>(a: A): TensorLike<'f32'> | TensorLike<'u8'> =>
          tensors ? keep(ctx.tensor(a as Float32Array)) : a;
        const res = await ctx.rolloutRejection(
          {
            logprobs: up(lp) as TensorLike<'f32'>,
            rolloutLogprobs: up(roll) as TensorLike<'f32'>,
            layout: { responseOffsets: lay.responseOffsets, ...(groupOffsets ? { groupOffsets } : {}) },
            ...(mask ? { mask: tensors ? keep(ctx.tensor(mask)) : mask } : {}),
          },
          options,
        );
        keep(res.mask);
        keep(res.stats);
        return { mask: await readValues(res.mask), stats: await readValues(res.stats) };
      },
      expect() {
        // verl's strings give k1 its lower bound 1/U when none is written, as the objects' default.
        const want = reference(data, criteria);
        const out: Record<string, Expect> = {
          mask: { tol: REJECTION_TOLERANCES.mask, terms: want.mask.terms },
          stats: { tol: REJECTION_TOLERANCES.stats, scale: want.stats.scale, terms: want.stats.terms },
        };
        return out;
      },
    });
  },
};
