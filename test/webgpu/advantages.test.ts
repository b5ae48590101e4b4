/**
 * The advantages family on the webgpu backend (advantages, expandToTokens, whiten) against the cpu
 * reference (float64, one rounding to f32), on the seeded cases of test/fixtures/advantages.ts.
 *
 * Tolerances: max relative error over a tensor (test/util/compare.ts: max|a − b| / max|b|).
 * - ADV_RTOL = 2e-6 for advantages, mean and std. The kernel takes each group's sums in f32 where
 *   the reference uses f64: groups of ≤ SMALL_GROUP (64) members in one invocation, a sequential
 *   sum in index order (adv_small); larger groups a strided sum per invocation, then a
 *   fixed-order tree or subgroup reduction (adv_group). Sums are of deviations from a pivot (the
 *   group's first reward), so the mean's deviation and M2 carry the error of an f32 sum of
 *   like-signed or random-signed terms; then one sqrt and one or two divisions (≤ 1 ulp each).
 *   Batch quantities merge per-group states pairwise (Chan's update), no worse than one more
 *   level of a sum. Measured on lavapipe: ≤ 3.3e-7 over every case below, including the
 *   70001-member group, the 700-member groups summed sequentially (smallMax 1000) and the
 *   'offset' rewards (1e6 + noise, where the naive E[r²] − E[r]² in f32 is wrong by orders of
 *   magnitude); 2e-6 leaves ~6× for devices that sum in another order (subgroup width, FMA
 *   contraction).
 * - expandToTokens: a copy, exact.
 * - whiten: WHITEN_RTOL = 2e-6, the same argument over chunks of 4096 elements merged pairwise
 *   (measured ≤ 1.2e-7, the 1M-element 'offset' case included).
 * - degenerate flags: exact.
 * NaN/±Inf must match the reference in class at every index (expectClose).
 */
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import type { AdvantagesOptions } from '../../src/api/advantages.js';
import {
  ESTIMATORS,
  type Estimator,
  type Preset,
  SCALE_KINDS,
  SINGLETON_POLICIES,
  STD_KINDS,
} from '../../src/backends/backend.js';
import { advantagesTuning, SMALL_GROUP } from '../../src/backends/webgpu/advantages.js';
import type { Context } from '../../src/context.js';
import { setOutputPoison } from '../../src/debug.js';
import {
  type AdvantagesCase,
  type AdvantagesOut,
  makeAdvantagesCase,
  raggedGroupSizes,
  readAdvantages,
} from '../fixtures/advantages.js';
import { expectClose, expectNoPoison, POISON_F32 } from '../util/compare.js';
import { randomInts, randomNormal } from '../util/rng.js';
import { cpu, gpu, noGpu, requireAdapter, resetTuning } from './setup.js';

const ADV_RTOL = 2e-6;
const WHITEN_RTOL = 2e-6;

requireAdapter();

const PRESETS: readonly (Preset | undefined)[] = [undefined, 'verl', 'trl', 'openrlhf'];

function optionsOf(c: AdvantagesCase, o: AdvantagesOptions): AdvantagesOptions {
  return { groupOffsets: c.groupOffsets, responseOffsets: c.responseOffsets, ...o };
}

async function compare(c: AdvantagesCase, o: AdvantagesOptions, what: string): Promise<AdvantagesOut> {
  const opts = optionsOf(c, o);
  const got = await readAdvantages(gpu!.ctx, c.rewards, opts);
  const want = await readAdvantages(cpu, c.rewards, opts);
  expectClose(got.adv, want.adv, { rtol: ADV_RTOL, what: `${what} advantages` });
  expectClose(got.mean, want.mean, { rtol: ADV_RTOL, what: `${what} mean` });
  expectClose(got.std, want.std, { rtol: ADV_RTOL, what: `${what} std` });
  expect(Array.from(got.deg), `${what} degenerate`).toEqual(Array.from(want.deg));
  return got;
}

/** Ragged groups with singletons, empty groups and zero-variance groups (none under 2 for passk). */
function mixedCase(seed: number, estimator: Estimator, rewards: 'continuous' | 'binary' = 'continuous') {
  const sizes = raggedGroupSizes(seed, 300, 12);
  if (estimator === 'grpo_passk') for (let i = 0; i < sizes.length; i++) sizes[i] = Math.max(2, sizes[i]);
  else sizes.splice(3, 0, 0, 1, 0); // an empty group, a singleton, an empty group
  return makeAdvantagesCase({ seed, groupSizes: sizes, rewards, zeroVarianceFraction: 0.25 });
}

const bitsOf = (o: AdvantagesOut) => ({
  adv: Array.from(new Uint32Array(o.adv.buffer, o.adv.byteOffset, o.adv.length)),
  mean: Array.from(new Uint32Array(o.mean.buffer, o.mean.byteOffset, o.mean.length)),
  std: Array.from(new Uint32Array(o.std.buffer, o.std.byteOffset, o.std.length)),
  deg: Array.from(o.deg),
});

describe.skipIf(noGpu)('webgpu advantages vs cpu', () => {
  const b = gpu?.backend;
  beforeEach(() => resetTuning(b!));

  it('every estimator × preset on ragged groups (singletons, empty, zero variance)', async () => {
    let seed = 1;
    for (const estimator of ESTIMATORS) {
      for (const preset of PRESETS) {
        const c = mixedCase(seed++, estimator);
        await compare(c, { estimator, ...(preset ? { preset } : {}) }, `${estimator}/${preset ?? 'default'}`);
      }
    }
  });

  it('every singleton policy, std kind and scale (grpo, grpo_passk, rloo, opo, gpg)', async () => {
    let seed = 100;
    const singletons = SINGLETON_POLICIES;
    const stds = STD_KINDS;
    const scales = SCALE_KINDS;
    for (const estimator of ['grpo', 'grpo_passk'] as const) {
      for (const std of stds) {
        for (const scale of scales) {
          for (const singleton of estimator === 'grpo' ? singletons : (['zero'] as const)) {
            const c = mixedCase(seed++, estimator);
            const o = { estimator, std, scale, singleton, eps: seed % 2 ? 1e-6 : 0 };
            await compare(c, o, JSON.stringify(o));
          }
        }
      }
    }
    for (const estimator of ['rloo', 'opo', 'gpg', 'dr_grpo', 'reinforce_pp_baseline'] as const) {
      for (const singleton of singletons) {
        for (const std of stds) {
          const c = mixedCase(seed++, estimator, 'binary');
          await compare(c, { estimator, singleton, std }, `${estimator} ${singleton} ${std} binary`);
        }
      }
    }
  });

  it('R = 100k with groups larger than a workgroup, offset rewards (1e6 + noise), subgroup and tree', async () => {
    const sizes = [70001, 1, 2, 3000, 0, ...raggedGroupSizes(7, 100_000 - 73_004, 64)];
    for (const rewards of ['offset', 'continuous'] as const) {
      const c = makeAdvantagesCase({ seed: 9, groupSizes: sizes, rewards, maxLength: 4 });
      for (const sub of [true, false]) {
        b!.kit.tuning.subgroups = sub;
        for (const estimator of ['grpo', 'grpo_passk', 'opo', 'reinforce_pp_baseline'] as const) {
          const o: AdvantagesOptions =
            estimator === 'grpo_passk' ? { estimator, groupOffsets: passkOffsets(c) } : { estimator };
          await compare(c, o, `${rewards} ${estimator} sg=${sub}`);
        }
        await compare(c, { estimator: 'grpo', scale: 'batch' }, `${rewards} grpo batch sg=${sub}`);
        await compare(c, { estimator: 'gpg', preset: 'verl' }, `${rewards} gpg verl sg=${sub}`);
      }
    }
  });

  it('NaN and ±Inf rewards propagate as in the reference', async () => {
    const c = makeAdvantagesCase({ seed: 31, groupSizes: [4, 3, 5, 1, 300, 2], zeroVarianceFraction: 0 });
    c.rewards[1] = Number.NaN;
    c.rewards[5] = Number.POSITIVE_INFINITY;
    c.rewards[7] = Number.NaN; // first member of group 2: the pivot falls back to 0
    c.rewards[12] = Number.NaN; // a singleton
    c.rewards[200] = Number.NEGATIVE_INFINITY;
    for (const estimator of ESTIMATORS) {
      for (const preset of PRESETS) {
        const o = { estimator, ...(preset ? { preset } : {}) };
        if (estimator === 'grpo_passk') continue; // the singleton group is rejected (LAYOUT)
        await compare(c, o, `special values ${JSON.stringify(o)}`);
      }
    }
    const p = makeAdvantagesCase({ seed: 32, groupSizes: [4, 3, 5, 600], zeroVarianceFraction: 0 });
    p.rewards[2] = Number.NaN;
    p.rewards[5] = Number.POSITIVE_INFINITY;
    p.rewards[400] = Number.NEGATIVE_INFINITY;
    await compare(p, { estimator: 'grpo_passk' }, 'grpo_passk special values');
    await compare(p, { estimator: 'grpo', scale: 'batch' }, 'grpo batch special values');
  });

  it('grpo_passk ties go to the first maximum; all-equal groups are zero variance', async () => {
    const rewards = Float32Array.from([1, 3, 3, 2, 5, 5, 5, 5, 0, 0, 1, 0]);
    const c = { ...makeAdvantagesCase({ seed: 1, groupSizes: [4, 4, 4] }), rewards };
    const got = await compare(c, { estimator: 'grpo_passk' }, 'ties');
    // Group 0: a tie at the top (3, 3) is a gap of 0 for every member; group 2: one best (index 10).
    expect(Array.from(got.adv.subarray(0, 4))).toEqual([0, 0, 0, 0]);
    expect(got.adv[10]).toBeGreaterThan(0);
    expect(Array.from(got.deg)).toEqual([0, 1, 0]);
  });

  it('is deterministic: two runs give the same bits', async () => {
    const c = makeAdvantagesCase({ seed: 5, groupSizes: [3000, ...raggedGroupSizes(5, 5000, 16)] });
    for (const o of [
      { estimator: 'grpo' as const, scale: 'batch' as const },
      { estimator: 'reinforce_pp_baseline' as const },
    ]) {
      const opts = optionsOf(c, o);
      const a1 = bitsOf(await readAdvantages(gpu!.ctx, c.rewards, opts));
      const a2 = bitsOf(await readAdvantages(gpu!.ctx, c.rewards, opts));
      expect(a2).toEqual(a1);
    }
  });
});

/**
 * The two group paths: adv_small (one invocation per group of ≤ advantagesTuning.smallMax members)
 * and adv_group (one workgroup per larger group, over a host-built list). Both must give what the
 * reference gives, alone or mixed in one batch, including the batch-level merges (scale 'batch',
 * gpg's α, reinforce_pp_baseline's whitening) over states written by both.
 */
describe.skipIf(noGpu)('webgpu advantages: small-group and large-group paths', () => {
  const b = gpu?.backend;
  beforeEach(() => {
    resetTuning(b!);
    advantagesTuning.smallMax = SMALL_GROUP;
  });
  afterEach(() => {
    advantagesTuning.smallMax = SMALL_GROUP;
  });
  const S = SMALL_GROUP;

  /** Every estimator (passk on groups of ≥ 2), with its batch variants, against the reference. */
  async function everyEstimator(c: AdvantagesCase, what: string) {
    for (const estimator of ESTIMATORS) {
      const base: AdvantagesOptions =
        estimator === 'grpo_passk' ? { estimator, groupOffsets: passkOffsets(c) } : { estimator };
      for (const preset of PRESETS) {
        await compare(
          c,
          { ...base, ...(preset ? { preset } : {}) },
          `${what} ${estimator}/${preset ?? 'default'}`,
        );
      }
      if (estimator === 'grpo' || estimator === 'grpo_passk') {
        for (const scale of ['batch', 'none'] as const) {
          await compare(c, { ...base, scale }, `${what} ${estimator} scale ${scale}`);
        }
      }
    }
  }

  /** Ragged groups of 1..16 with a few groups larger than SMALL_GROUP (and than WG) among them. */
  function mixedSizes(seed: number): number[] {
    const sizes = raggedGroupSizes(seed, 6000, 16);
    sizes.splice(0, 0, 3 * S); // a large group first: adv_small's invocation 0 returns at once
    sizes.splice(40, 0, S + 1, 0, 1, 700);
    sizes.splice(300, 0, 5000, 2, S);
    sizes.push(S + 5); // and last
    return sizes;
  }

  it('many small groups mixed with a few large ones in one batch, subgroup and tree', async () => {
    for (const rewards of ['continuous', 'binary', 'offset'] as const) {
      const c = makeAdvantagesCase({
        seed: 71,
        groupSizes: mixedSizes(71),
        rewards,
        zeroVarianceFraction: 0.2,
      });
      for (const sub of [true, false]) {
        b!.kit.tuning.subgroups = sub;
        if (sub || rewards === 'continuous') await everyEstimator(c, `mixed ${rewards} sg=${sub}`);
      }
    }
  });

  it('groups of exactly SMALL_GROUP and SMALL_GROUP + 1 members', async () => {
    const sizes: number[] = [];
    for (let i = 0; i < 40; i++) sizes.push([S, S + 1, S - 1, S + 1, S][i % 5]);
    for (const rewards of ['continuous', 'binary'] as const) {
      const c = makeAdvantagesCase({ seed: 72, groupSizes: sizes, rewards, zeroVarianceFraction: 0.2 });
      await everyEstimator(c, `S/S+1 ${rewards}`);
    }
  });

  it('all groups small (groups of 8, ragged 1..SMALL_GROUP with empty ones) and all groups large', async () => {
    const eights = makeAdvantagesCase({
      seed: 73,
      groupSizes: new Array(2000).fill(8),
      zeroVarianceFraction: 0.1,
    });
    await everyEstimator(eights, 'all small, n = 8');
    const ragged = raggedGroupSizes(74, 20_000, S);
    ragged.splice(5, 0, 0, 1, 0);
    const small = makeAdvantagesCase({ seed: 74, groupSizes: ragged, zeroVarianceFraction: 0.1 });
    await everyEstimator(small, 'all small, ragged');
    const big = raggedGroupSizes(75, 20_000, 400).map((n) => n + S);
    const large = makeAdvantagesCase({ seed: 75, groupSizes: big, zeroVarianceFraction: 0.1 });
    for (const sub of [true, false]) {
      b!.kit.tuning.subgroups = sub;
      await everyEstimator(large, `all large sg=${sub}`);
    }
  });

  it('the same batch through either path alone (smallMax 0 and 1000)', async () => {
    for (const smallMax of [0, 1000]) {
      advantagesTuning.smallMax = smallMax;
      let seed = 80;
      for (const estimator of ESTIMATORS) {
        for (const preset of PRESETS) {
          const c = mixedCase(seed++, estimator);
          await compare(c, { estimator, ...(preset ? { preset } : {}) }, `smallMax ${smallMax} ${estimator}`);
        }
      }
      const c = makeAdvantagesCase({ seed: 90, groupSizes: mixedSizes(90).map((n) => Math.min(n, 700)) });
      await everyEstimator(c, `smallMax ${smallMax} mixed`);
    }
  });

  it('NaN and ±Inf rewards in small and large groups', async () => {
    const c = makeAdvantagesCase({
      seed: 76,
      groupSizes: [4, 3, S + 1, 1, 5, S, 300, 2],
      zeroVarianceFraction: 0,
    });
    const at = (g: number, k: number) => c.groupOffsets[g] + k;
    c.rewards[at(0, 1)] = Number.NaN;
    c.rewards[at(1, 0)] = Number.POSITIVE_INFINITY; // a pivot that falls back to 0
    c.rewards[at(2, 0)] = Number.NaN; // the same in a large group
    c.rewards[at(2, 9)] = Number.NEGATIVE_INFINITY;
    c.rewards[at(3, 0)] = Number.NaN; // a singleton
    c.rewards[at(5, S - 1)] = Number.NaN;
    c.rewards[at(6, 17)] = Number.POSITIVE_INFINITY;
    for (const estimator of ESTIMATORS) {
      if (estimator === 'grpo_passk') continue; // the singleton group is rejected (LAYOUT)
      for (const preset of PRESETS) {
        await compare(
          c,
          { estimator, ...(preset ? { preset } : {}) },
          `special ${estimator}/${preset ?? 'default'}`,
        );
      }
    }
    await compare(c, { estimator: 'grpo_passk', groupOffsets: passkOffsets(c) }, 'special grpo_passk');
    await compare(c, { estimator: 'grpo', scale: 'batch' }, 'special grpo batch');
  });

  it('grpo_passk ties in small and large groups go to the first maximum', async () => {
    const sizes = [4, 4, 4, S + 3, S + 3];
    const c = makeAdvantagesCase({ seed: 77, groupSizes: sizes });
    c.rewards.set([1, 3, 3, 2, 5, 5, 5, 5, -2, -2, 0, -2], 0);
    const big = c.groupOffsets[3];
    c.rewards.fill(-1, big, c.groupOffsets[5]);
    c.rewards[big + 7] = 4; // one best
    c.rewards[big + 30] = 4; // and a tie with it: gap 0
    c.rewards[c.groupOffsets[4] + S + 2] = 9; // the last member is the best
    const got = await compare(c, { estimator: 'grpo_passk' }, 'passk ties small/large');
    expect(Array.from(got.adv.subarray(0, 4))).toEqual([0, 0, 0, 0]);
    expect(got.adv[10]).toBeGreaterThan(0);
    expect(Array.from(got.adv.subarray(big, c.groupOffsets[4])).every((x) => x === 0)).toBe(true);
    expect(got.adv[c.groupOffsets[4] + S + 2]).toBeGreaterThan(0);
    expect(Array.from(got.deg)).toEqual([0, 1, 0, 0, 0]);
  });

  it('is deterministic on a mixed batch: two runs give the same bits', async () => {
    const c = makeAdvantagesCase({ seed: 78, groupSizes: mixedSizes(78), zeroVarianceFraction: 0.1 });
    for (const o of [
      { estimator: 'grpo' as const },
      { estimator: 'grpo' as const, scale: 'batch' as const },
      { estimator: 'gpg' as const, preset: 'verl' as const },
      { estimator: 'opo' as const },
      { estimator: 'reinforce_pp_baseline' as const },
    ]) {
      const opts = optionsOf(c, o);
      const a1 = bitsOf(await readAdvantages(gpu!.ctx, c.rewards, opts));
      const a2 = bitsOf(await readAdvantages(gpu!.ctx, c.rewards, opts));
      expect(a2, JSON.stringify(o)).toEqual(a1);
    }
  });

  it('writes every output element on a mixed batch (poison)', async () => {
    setOutputPoison(POISON_F32);
    try {
      const c = makeAdvantagesCase({ seed: 79, groupSizes: mixedSizes(79) });
      for (const estimator of ['grpo', 'gpg', 'reinforce_pp_baseline', 'grpo_passk'] as const) {
        const o = optionsOf(
          c,
          estimator === 'grpo_passk' ? { estimator, groupOffsets: passkOffsets(c) } : { estimator },
        );
        const got = await readAdvantages(gpu!.ctx, c.rewards, o);
        expectNoPoison(got.adv, `${estimator} advantages`);
        expectNoPoison(got.mean, `${estimator} mean`);
        expectNoPoison(got.std, `${estimator} std`);
        expect(got.deg.indexOf(0xab), `${estimator} degenerate still poison at`).toBe(-1);
      }
    } finally {
      setOutputPoison(undefined);
    }
  });
});

/** groupOffsets of `c` with its empty and singleton groups merged into their neighbours (grpo_passk). */
function passkOffsets(c: AdvantagesCase): Int32Array {
  const out = [0];
  for (let g = 1; g <= c.numGroups; g++) {
    const end = c.groupOffsets[g];
    if (end - out[out.length - 1] >= 2 || g === c.numGroups) out.push(end);
  }
  if (out[out.length - 1] - out[out.length - 2] < 2) out.splice(out.length - 2, 1);
  return Int32Array.from(out);
}

describe.skipIf(noGpu)('webgpu expandToTokens and whiten vs cpu', () => {
  const b = gpu?.backend;
  beforeEach(() => resetTuning(b!));

  it('expandToTokens: exact copies, empty responses, 50k responses', async () => {
    for (const [seed, R] of [
      [1, 7],
      [2, 50_000],
    ]) {
      const c = makeAdvantagesCase({ seed, groupSizes: [R], minLength: 0, maxLength: 9 });
      const got = await (await gpu!.ctx.expandToTokens(c.rewards, c.responseOffsets)).read();
      const want = await (await cpu.expandToTokens(c.rewards, c.responseOffsets)).read();
      expect(got.length).toBe(c.numTokens);
      expect(Array.from(got)).toEqual(Array.from(want));
    }
    const none = await gpu!.ctx.expandToTokens(new Float32Array([1, 2]), new Int32Array([0, 0, 0]));
    expect(none.shape).toEqual([0]);
  });

  async function whitenBoth(values: Float32Array, shape: number[], mask: Uint8Array | undefined, o: object) {
    const run1 = async (ctx: Context) => {
      const v = ctx.tensor(values, shape);
      const m = mask ? ctx.tensor(mask, shape) : undefined;
      const out = await ctx.whiten(v, { ...o, ...(m ? { mask: m } : {}) });
      const r = await out.read();
      expect(out.shape).toEqual(shape);
      for (const t of [v, m, out]) t?.dispose();
      return r;
    };
    return { got: await run1(gpu!.ctx), want: await run1(cpu) };
  }

  it('whiten: every preset, keepMean, with and without a mask, 2-D shapes, subgroup and tree', async () => {
    const n = 3 * 4099;
    const values = Float32Array.from(randomNormal(3, n, 2, 0.5));
    const mask = Uint8Array.from(randomInts(4, n, 0, 3)).map((x) => (x === 0 ? 0 : 255));
    values[17] = Number.NaN; // masked out below: must not leak
    mask[17] = 0;
    for (const sub of [true, false]) {
      b!.kit.tuning.subgroups = sub;
      for (const preset of PRESETS) {
        for (const keepMean of [false, true]) {
          for (const m of [mask, undefined]) {
            const vals = m ? values : values.map((x) => (Number.isNaN(x) ? 0.25 : x));
            const o = { ...(preset ? { preset } : {}), keepMean };
            const { got, want } = await whitenBoth(vals, [3, 4099], m, o);
            expectClose(got, want, {
              rtol: WHITEN_RTOL,
              what: `whiten ${JSON.stringify(o)} mask=${!!m} sg=${sub}`,
            });
          }
        }
      }
    }
  });

  it('whiten: 1M offset values (1e6 + noise), one or no valid element, NaN inside the mask', async () => {
    const n = 1 << 20;
    const big = Float32Array.from(randomNormal(8, n, 0.25, 1e6));
    const r1 = await whitenBoth(big, [n], undefined, {});
    expectClose(r1.got, r1.want, { rtol: WHITEN_RTOL, what: 'whiten offset 1M' });
    const r2 = await whitenBoth(big, [n], undefined, { preset: 'verl', keepMean: true });
    expectClose(r2.got, r2.want, { rtol: WHITEN_RTOL, what: 'whiten offset keepMean verl' });
    const small = Float32Array.from([1, 2, 3, 4, 5]);
    for (const [m, preset] of [
      [[0, 0, 1, 0, 0], undefined],
      [[0, 0, 1, 0, 0], 'openrlhf'],
      [[0, 0, 0, 0, 0], undefined],
    ] as const) {
      const { got, want } = await whitenBoth(small, [5], Uint8Array.from(m), preset ? { preset } : {});
      expectClose(got, want, { rtol: WHITEN_RTOL, what: `whiten mask ${m} ${preset}` });
    }
    const withNaN = Float32Array.from([1, Number.NaN, 3, 4]);
    const { got, want } = await whitenBoth(withNaN, [4], Uint8Array.from([1, 1, 0, 1]), {});
    expectClose(got, want, { rtol: WHITEN_RTOL, what: 'whiten NaN inside mask' });
    expect(Number.isNaN(got[0])).toBe(true);
    expect(got[2]).toBe(0);
  });

  it('whiten is deterministic: two runs give the same bits', async () => {
    const n = 100_003;
    const values = Float32Array.from(randomNormal(9, n, 3));
    const a1 = (await whitenBoth(values, [n], undefined, {})).got;
    const a2 = (await whitenBoth(values, [n], undefined, {})).got;
    expect(Array.from(new Uint32Array(a2.buffer))).toEqual(Array.from(new Uint32Array(a1.buffer)));
  });
});

describe.skipIf(noGpu)('webgpu advantages family: empty inputs, no leaked buffers', () => {
  it('R = 0, empty groups only, T = 0; 100 calls with dispose leave live GPU bytes unchanged', async () => {
    const g = gpu!.ctx;
    const empty = await g.advantages(new Float32Array(0), { groupOffsets: new Int32Array([0, 0, 0]) });
    expect(Array.from(await empty.degenerate.read())).toEqual([1, 1]);
    expect(Array.from(await empty.mean.read())).toEqual([0, 0]);
    expect(empty.advantages.shape).toEqual([0]);
    const rpp = await g.advantages(new Float32Array([1, 2]), {
      groupOffsets: new Int32Array([0, 2]),
      responseOffsets: new Int32Array([0, 0, 0]),
      estimator: 'reinforce_pp_baseline',
    });
    expect(rpp.advantages.shape).toEqual([0]);
    expect((await g.whiten(new Float32Array(0))).shape).toEqual([0]);
    const b = gpu!.backend;
    const c = mixedCase(61, 'grpo');
    const live = b.runtime.liveBytes;
    for (let i = 0; i < 100; i++) {
      const o = await g.advantages(
        c.rewards,
        optionsOf(c, { estimator: i % 2 ? 'gpg' : 'reinforce_pp_baseline' }),
      );
      for (const t of Object.values(o)) t.dispose();
      (await g.whiten(c.rewards)).dispose();
      (await g.expandToTokens(c.rewards, c.responseOffsets)).dispose();
    }
    await g.synchronize();
    expect(b.runtime.liveBytes).toBe(live);
  });
});

describe.skipIf(noGpu)('webgpu advantages poison: every output element is written', () => {
  beforeEach(() => {
    resetTuning(gpu!.backend);
    setOutputPoison(POISON_F32);
  });
  afterEach(() => setOutputPoison(undefined));

  it('advantages (one-dispatch, batch and per-token paths), expandToTokens, whiten', async () => {
    for (const estimator of ['grpo', 'gpg', 'reinforce_pp_baseline', 'grpo_passk'] as const) {
      const c = mixedCase(41, estimator);
      const got = await readAdvantages(gpu!.ctx, c.rewards, optionsOf(c, { estimator, preset: 'verl' }));
      expectNoPoison(got.adv, `${estimator} advantages`);
      expectNoPoison(got.mean, `${estimator} mean`);
      expectNoPoison(got.std, `${estimator} std`);
      expect(got.deg.indexOf(0xab), `${estimator} degenerate still poison at`).toBe(-1);
    }
    const c = makeAdvantagesCase({ seed: 42, groupSizes: [50] });
    const e = await (await gpu!.ctx.expandToTokens(c.rewards, c.responseOffsets)).read();
    expectNoPoison(e, 'expandToTokens');
    const mask = Uint8Array.from(randomInts(43, 5000, 0, 2));
    const w = await (await gpu!.ctx.whiten(Float32Array.from(randomNormal(44, 5000)), { mask })).read();
    expectNoPoison(w, 'whiten');
  });
});
