/**
 * NaN rewards under the advantages' `trl` preset (nanRewards 'unscorable'), on every backend, against
 * TRL's own arithmetic written out here in float64: trl/trainer/grpo_trainer.py
 * _generate_and_score_completions (torch.nanmean, trl.trainer.utils.nanstd, torch.nan_to_num; since
 * #5902, commit 1c7c7f98) and trl/trainer/rloo_trainer.py (nansum − r over scorable_count − 1). A NaN
 * reward is an unscorable completion: left out of its group's mean and std, advantage 0, the rest of
 * the group normalised as usual. For the estimators TRL does not have, every backend is held to the js
 * backend (the reference of those), and the js and native cpu backends to its definition: the
 * advantages of the batch without its NaN rewards, 0 for them (bit for bit).
 *
 * Fold into the shared advantages table (test/cases/advantages.ts) when it lands here.
 */
import { expect } from 'vitest';
import type { AdvantagesOptions } from '../../src/api/advantages.js';
import { ESTIMATORS, type ScaleKind } from '../../src/backends/backend.js';
import { type Context, createContext } from '../../src/context.js';
import { rng } from '../util/rng.js';
import type { Tolerance } from './check.js';
import type { Case, RefCase } from './runner.js';

const F32_MAX = 3.4028234663852886e38;
/** torch.nan_to_num(x, nan=0.0) on f32: NaN → 0, ±Inf → ±f32 max. */
const nanToNum = (x: number) =>
  Number.isNaN(x) ? 0 : x === Infinity ? F32_MAX : x === -Infinity ? -F32_MAX : x;
const nanmean = (xs: number[]) => {
  const v = xs.filter((x) => !Number.isNaN(x));
  return v.reduce((a, b) => a + b, 0) / v.length; // NaN for none (0/0), as torch.nanmean
};
/** trl.trainer.utils.nanstd: nanmean((x − nanmean)²)·c/(c − 1), NaN for c ≤ 1. */
const nanstd = (xs: number[]) => {
  const m = nanmean(xs);
  const variance = nanmean(xs.map((x) => (x - m) ** 2));
  const c = xs.filter((x) => !Number.isNaN(x)).length;
  return Math.sqrt(variance * (c > 1 ? c / (c - 1) : Number.NaN));
};

/** GRPOTrainer, sum_then_normalize, one reward function, fixed group size. */
export function trlGrpoNan(rewards: Float32Array, n: number, scale: ScaleKind): Float64Array {
  const r = Array.from(rewards);
  const out = new Float64Array(r.length);
  const batchStd = r.length > 1 ? nanstd(r) : 0;
  for (let g = 0; g < r.length / n; g++) {
    const xs = r.slice(g * n, g * n + n);
    const mean = nanmean(xs);
    const std = scale === 'batch' ? batchStd : n > 1 ? nanstd(xs) : 0;
    for (let j = 0; j < n; j++) {
      let a = xs[j] - mean;
      if (scale !== 'none') a /= std + 1e-4;
      out[g * n + j] = nanToNum(a);
    }
  }
  return out;
}

/** RLOOTrainer: baseline (nansum − r)/(scorable − 1); num_generations == 1 → 0. */
export function trlRlooNan(rewards: Float32Array, n: number): Float64Array {
  const r = Array.from(rewards);
  const out = new Float64Array(r.length);
  for (let g = 0; g < r.length / n; g++) {
    const xs = r.slice(g * n, g * n + n);
    const scorable = xs.filter((x) => !Number.isNaN(x)).length;
    const s = xs.filter((x) => !Number.isNaN(x)).reduce((a, b) => a + b, 0);
    for (let j = 0; j < n; j++) out[g * n + j] = nanToNum(n > 1 ? xs[j] - (s - xs[j]) / (scorable - 1) : 0);
  }
  return out;
}

/** Rewards in groups of n with NaN holes: a group with every reward NaN, one with a single scorable one. */
function nanRewards(
  seed: number,
  groups: number,
  n: number,
  kind: 'binary' | 'continuous',
  pNaN: number,
): Float32Array {
  const r = rng(seed);
  const out = new Float32Array(groups * n);
  for (let i = 0; i < out.length; i++) {
    out[i] = kind === 'binary' ? (r() < 0.5 ? 1 : 0) : 2 * r() - 0.5;
    if (r() < pNaN) out[i] = Number.NaN;
  }
  if (groups > 2 && n > 1) {
    out.fill(Number.NaN, 0, n); // no scorable reward
    out.fill(Number.NaN, n, 2 * n - 1); // one scorable reward
  }
  if (groups > 3 && n > 2) {
    out.fill(0.5, 2 * n, 3 * n); // zero variance among the scorable
    out[2 * n + 1] = Number.NaN;
  }
  return out;
}

/** Advantages tolerance (f32, a group's two-pass statistics): as the shared table's. */
const TOL: Readonly<Record<string, Tolerance>> = { advantages: { atol: 0, rtol: 2 ** -23, crtol: 2 ** -18 } };

async function runAdvantages(ctx: Context, rewards: Float32Array, options: AdvantagesOptions) {
  const res = await ctx.advantages(rewards, options);
  const adv = await res.advantages.read();
  for (const t of [res.advantages, res.mean, res.std, res.degenerate]) t.dispose();
  return adv;
}

function scaleOf(want: Float64Array, n: number): Float64Array {
  const s = new Float64Array(want.length);
  for (let g = 0; g < want.length / n; g++) {
    let m = 0;
    for (let j = 0; j < n; j++) m = Math.max(m, Math.abs(want[g * n + j]));
    s.fill(m, g * n, g * n + n);
  }
  return s;
}

function trlCase(
  name: string,
  rewards: () => Float32Array,
  n: number,
  options: AdvantagesOptions,
  ref: (r: Float32Array) => Float64Array,
): RefCase {
  return {
    kind: 'reference',
    name,
    tol: TOL,
    run: async (ctx) => ({
      advantages: {
        dtype: 'f32',
        data: await runAdvantages(ctx, rewards(), { groupSize: n, preset: 'trl', ...options }),
      },
    }),
    want: () => {
      const w = ref(rewards());
      return { advantages: { values: w, scale: scaleOf(w, n) } };
    },
  };
}

/** Every estimator under 'unscorable': this backend against the js backend (the reference), elementwise. */
function agreementCase(): Case {
  return {
    kind: 'self',
    name: "every estimator under 'unscorable' (ragged groups, NaN holes): the js backend's numbers",
    run: async (ctx) => {
      const cpu = await createContext({ backend: 'js' });
      const r = rng(77);
      const sizes = Array.from({ length: 40 }, (_, g) => (g === 3 ? 300 : 2 + Math.floor(r() * 9)));
      const go = new Int32Array(sizes.length + 1);
      sizes.forEach((s, g) => {
        go[g + 1] = go[g] + s;
      });
      const R = go[sizes.length];
      const rewards = Float32Array.from({ length: R }, () => (r() < 0.15 ? Number.NaN : 3 * r()));
      rewards.fill(Number.NaN, go[5], go[6]);
      rewards.fill(Number.NaN, go[6], go[7] - 1);
      const ro = new Int32Array(R + 1);
      for (let i = 0; i < R; i++) ro[i + 1] = ro[i] + (i % 7);
      const problems: string[] = [];
      for (const estimator of ESTIMATORS) {
        for (const scale of ['group', 'batch'] as const) {
          const options: AdvantagesOptions = {
            groupOffsets: go,
            responseOffsets: ro,
            estimator,
            scale,
            nanRewards: 'unscorable',
          };
          const want = await runAdvantages(cpu, rewards, options);
          const got = await runAdvantages(ctx, rewards, options);
          let worst = 0;
          for (const v of want) worst = Math.max(worst, Math.abs(v));
          for (let i = 0; i < want.length; i++) {
            if (!Number.isFinite(got[i])) problems.push(`${estimator}/${scale} [${i}] = ${got[i]}`);
            else if (Math.abs(got[i] - want[i]) > 2 ** -18 * worst + 2 ** -23 * Math.abs(want[i])) {
              problems.push(`${estimator}/${scale} [${i}]: ${got[i]} vs js ${want[i]}`);
              break;
            }
          }
        }
      }
      cpu.dispose();
      return problems;
    },
  };
}

/** The js backend's definition: 'unscorable' = the batch without its NaN rewards, 0 for them. */
function definitionCase(): Case {
  return {
    kind: 'self',
    name: "js and cpu: 'unscorable' equals the advantages of the batch without its NaN rewards, 0 for them",
    skip: { webgpu: 'a check of the js reference', cuda: 'a check of the js reference' },
    run: async (ctx) => {
      const problems: string[] = [];
      const rewards = nanRewards(91, 12, 6, 'continuous', 0.2);
      const go = Int32Array.from({ length: 13 }, (_, g) => 6 * g);
      const keep: number[] = [];
      const goC = new Int32Array(13);
      for (let g = 0; g < 12; g++) {
        for (let i = go[g]; i < go[g + 1]; i++) if (!Number.isNaN(rewards[i])) keep.push(i);
        goC[g + 1] = keep.length;
      }
      for (const estimator of ['grpo', 'dr_grpo', 'rloo', 'gpg'] as const) {
        const got = await runAdvantages(ctx, rewards, {
          groupOffsets: go,
          estimator,
          nanRewards: 'unscorable',
        });
        const compact = await runAdvantages(
          ctx,
          Float32Array.from(keep, (i) => rewards[i]),
          { groupOffsets: goC, estimator },
        );
        const want = new Float32Array(rewards.length);
        keep.forEach((i, j) => {
          want[i] = compact[j];
        });
        expect(Array.from(got), estimator).toEqual(Array.from(want));
      }
      return problems;
    },
  };
}

export const ADVANTAGES_NAN_CASES: readonly Case[] = (() => {
  const out: Case[] = [];
  for (const kind of ['binary', 'continuous'] as const) {
    const rewards = nanRewards(kind === 'binary' ? 81 : 82, 40, 8, kind, 0.2);
    for (const scale of ['group', 'batch', 'none'] as const) {
      out.push(
        trlCase(
          `TRL grpo, NaN rewards unscorable, ${kind}, scale ${scale}`,
          () => rewards,
          8,
          { scale },
          (r) => trlGrpoNan(r, 8, scale),
        ),
      );
    }
    out.push(
      trlCase(
        `TRL rloo, NaN rewards unscorable, ${kind}`,
        () => rewards,
        8,
        { estimator: 'rloo' },
        (r) => trlRlooNan(r, 8),
      ),
    );
    const ones = nanRewards(83, 30, 1, kind, 0.3);
    out.push(
      trlCase(
        `TRL grpo, num_generations = 1 with NaN rewards, ${kind}`,
        () => ones,
        1,
        {},
        (r) => trlGrpoNan(r, 1, 'group'),
      ),
    );
  }
  const large = nanRewards(84, 3, 700, 'continuous', 0.1);
  out.push(
    trlCase(
      'TRL grpo, groups of 700 (one workgroup per group) with NaN holes',
      () => large,
      700,
      {},
      (r) => trlGrpoNan(r, 700, 'group'),
    ),
  );
  out.push(agreementCase(), definitionCase());
  return out;
})();
