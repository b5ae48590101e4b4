/**
 * Family 'advantages': advantages (every estimator, preset and convention), whiten, expandToTokens.
 *
 * Inputs: ≤ 6 ragged groups of ≤ 8 responses (singletons, empty groups, no groups) or fixed-size groups
 * (groupSize), response lengths ≤ 12 (empty ones); rewards binary, N(0, 1), 0.25·N(0, 1), constant, or
 * 1e6 + 0.25·N(0, 1) (where an unpivoted f32 mean loses the signal), sometimes with a NaN or +Inf;
 * whiten over ≤ 400 values, some near 1e6, with a mask, a preset and keepMean.
 *
 * Tolerances: test/cases/tolerances.ts (advantages, whiten, expandToTokens), with
 * test/cases/advantages.ts's scales (its groupMax and groupSpread are not exported: written again
 * below): an advantage relative to the largest finite |advantage| of its group (of the whole tensor
 * for the per-token reinforce_pp_baseline), a group's mean relative to the population std of its
 * finite rewards; whiten's entry has no scale (its outputs have unit variance).
 * whiten's scale is the table's (test/cases/advantages.ts whitenScale): σ of the valid finite values
 * for keepMean outputs (the mean added back carries 64u of σ), 0 otherwise.
 */
import {
  type AdvantagesOptions,
  type AdvantagesResult,
  ESTIMATORS,
  groupOffsetsFromSize,
  PRESETS,
  type WhitenOptions,
} from '../../../src/index.js';
import { whitenScale } from '../../../test/cases/advantages.js';
import { TOLERANCES } from '../../../test/cases/tolerances.js';
import { offsetsText, type Rand, raggedLayout } from '../gen.mjs';
import { type Family, type Keep, readValues, type Values } from '../harness.mjs';

/** Every output of an advantages result, read back (all registered first, so none leaks). */
export async function readAdvantages(res: AdvantagesResult, keep: Keep): Promise<Values> {
  for (const t of [res.advantages, res.mean, res.std, res.degenerate]) keep(t);
  return {
    advantages: await readValues(res.advantages),
    mean: await readValues(res.mean),
    std: await readValues(res.std),
    degenerate: await readValues(res.degenerate),
  };
}

/** The largest finite |value| over each span [lo, hi), per element. */
function spanMax(values: ArrayLike<number>, spans: readonly (readonly [number, number])[]): Float64Array {
  const out = new Float64Array(values.length);
  for (const [lo, hi] of spans) {
    let m = 0;
    for (let i = lo; i < hi; i++) if (Number.isFinite(values[i])) m = Math.max(m, Math.abs(values[i]));
    out.fill(m, lo, hi);
  }
  return out;
}

/** Population std of each group's finite rewards (0 for fewer than two). */
function groupSpread(rewards: Float32Array, go: Int32Array): Float64Array {
  const out = new Float64Array(go.length - 1);
  for (let g = 0; g + 1 < go.length; g++) {
    const xs = Array.from(rewards.subarray(go[g], go[g + 1])).filter(Number.isFinite);
    if (xs.length < 2) continue;
    const m = xs.reduce((a, b) => a + b, 0) / xs.length;
    out[g] = Math.sqrt(xs.reduce((a, b) => a + (b - m) ** 2, 0) / xs.length);
  }
  return out;
}

function rewardsOf(r: Rand, n: number): { rewards: Float32Array; kind: string } {
  const kind = r.pick(['binary', 'normal', 'narrow', 'const', 'offset']);
  const rewards = Float32Array.from({ length: n }, () => {
    switch (kind) {
      case 'binary':
        return r.int(0, 1);
      case 'normal':
        return r.normal();
      case 'narrow':
        return 0.25 * r.normal();
      case 'const':
        return 0.5;
      default:
        return 1e6 + 0.25 * r.normal();
    }
  });
  if (n > 0 && r.bool(0.1)) rewards[r.int(0, n - 1)] = r.pick([Number.NaN, Infinity]);
  return { rewards, kind };
}

export const advantagesFamily: Family = {
  name: 'advantages',
  ops: 'advantages, whiten, expandToTokens',
  async run(r, s) {
    // Ragged groups, or fixed-size ones (groupSize) with random response lengths.
    let go: Int32Array;
    let ro: Int32Array;
    const o: AdvantagesOptions = {};
    if (r.bool(0.85)) {
      const lay = raggedLayout(r, { maxGroups: 6, maxGroupSize: 8, maxLength: 12, maxTokens: 400 });
      go = lay.groupOffsets;
      ro = lay.responseOffsets;
      o.groupOffsets = go;
    } else {
      const size = r.int(1, 4);
      go = groupOffsetsFromSize(size * r.int(0, 6), size);
      const lengths = Array.from({ length: go[go.length - 1] }, () => (r.bool(0.1) ? 0 : r.int(1, 12)));
      ro = Int32Array.from([0, ...lengths]);
      for (let i = 1; i < ro.length; i++) ro[i] += ro[i - 1];
      o.groupSize = size;
    }
    const R = go[go.length - 1];
    const { rewards, kind } = rewardsOf(r, R);
    o.estimator = r.pick(ESTIMATORS);
    if (r.bool(0.4)) o.preset = r.pick(PRESETS);
    if (r.bool(0.3)) o.std = r.pick(['sample', 'population'] as const);
    if (r.bool(0.2)) o.eps = r.pick([0, 1e-6, 1e-4, 1e-3]);
    if (r.bool(0.3)) o.scale = r.pick(['group', 'batch', 'none'] as const);
    if (r.bool(0.3)) o.singleton = r.pick(['zero', 'mean0', 'nan'] as const);
    if (r.bool(0.2)) o.nanRewards = r.pick(['propagate', 'unscorable'] as const);
    if (r.bool(0.8)) o.responseOffsets = ro;
    const { groupOffsets: _g, responseOffsets: _r, ...rest } = o;
    const desc = `${JSON.stringify(rest)} go=${offsetsText(go)}${o.responseOffsets ? ` ro=${offsetsText(ro)}` : ''} rewards=${kind}`;
    await s.compare({
      op: 'advantages',
      desc,
      async run(ctx, keep) {
        return readAdvantages(await ctx.advantages(rewards, o), keep);
      },
      expect(js) {
        const tol = TOLERANCES.advantages.f32;
        const perToken = js.advantages.length !== R; // reinforce_pp_baseline: one per token
        const spans: [number, number][] = perToken
          ? [[0, js.advantages.length]]
          : Array.from({ length: go.length - 1 }, (_, g) => [go[g], go[g + 1]]);
        return {
          advantages: { tol: tol.advantages, scale: spanMax(js.advantages, spans) },
          mean: { tol: tol.mean, scale: groupSpread(rewards, go) },
          std: { tol: tol.std },
          degenerate: { tol: tol.degenerate },
        };
      },
    });

    // whiten
    const n = r.pick([0, 1, 2, 3, r.int(0, 60), r.int(0, 400)]);
    const values = Float32Array.from(
      { length: n },
      () => (r.bool(0.2) ? 1e6 : 0) + r.normal() * r.pick([1, 3]),
    );
    if (n > 0 && r.bool(0.1)) values[r.int(0, n - 1)] = r.pick([Number.NaN, Infinity]);
    const w: WhitenOptions = {};
    const mask = r.bool(0.5) ? Uint8Array.from({ length: n }, () => (r.bool(0.7) ? 1 : 0)) : undefined;
    if (mask) w.mask = mask;
    if (r.bool(0.5)) w.preset = r.pick(PRESETS);
    if (r.bool(0.3)) w.keepMean = r.bool();
    await s.compare({
      op: 'whiten',
      desc: `n=${n} mask=${w.mask !== undefined} preset=${w.preset} keepMean=${w.keepMean}`,
      async run(ctx, keep) {
        return { values: await readValues(keep(await ctx.whiten(values, w))) };
      },
      expect() {
        const valid = Array.from(values, (_, i) => (mask?.[i] ?? 1) !== 0);
        return {
          values: {
            tol: TOLERANCES.whiten.f32.values,
            scale: whitenScale(Array.from(values), valid, w.keepMean),
          },
        };
      },
    });

    // expandToTokens over the same responses
    const perResponse = Float32Array.from(r.normals(R));
    await s.compare({
      op: 'expandToTokens',
      desc: `ro=${offsetsText(ro)}`,
      async run(ctx, keep) {
        return { values: await readValues(keep(await ctx.expandToTokens(perResponse, ro))) };
      },
      expect: () => ({ values: { tol: TOLERANCES.expandToTokens.f32.values } }),
    });
  },
};
