/**
 * The advantages family on the webgpu backend: what only webgpu has. The numerical cases (every
 * estimator, preset and convention, ragged, singleton, empty and zero-variance groups, offset rewards,
 * NaN and ±Inf, R = 100k, expandToTokens, whiten) run on every backend from the case tables
 * (test/cases/advantages.ts, test/advantages.cases.test.ts); here are the tuning knobs (subgroup or
 * workgroup-memory reductions; advantagesTuning.smallMax, which sends groups to adv_small, one
 * invocation per group, or adv_group, one workgroup per group), determinism and buffer lifetimes.
 *
 * Every numerical check here uses the tables' float64 references and tolerances
 * (test/cases/tolerances.ts) through expectAdvantagesWithin / expectWhitenWithin.
 */
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import type { AdvantagesOptions } from '../../src/api/advantages.js';
import { ESTIMATORS, type Estimator, type Preset } from '../../src/backends/backend.js';
import { advantagesTuning, SMALL_GROUP } from '../../src/backends/webgpu/advantages.js';
import { setOutputPoison } from '../../src/debug.js';
import { expectAdvantagesWithin, expectWhitenWithin } from '../cases/advantages.js';
import {
  type AdvantagesCase,
  type AdvantagesOut,
  makeAdvantagesCase,
  raggedGroupSizes,
  readAdvantages,
} from '../fixtures/advantages.js';
import { expectNoPoison, POISON_F32 } from '../util/compare.js';
import { randomInts, randomNormal } from '../util/rng.js';
import { gpu, noGpu, requireAdapter, resetTuning } from './setup.js';

requireAdapter();

const PRESETS: readonly (Preset | undefined)[] = [undefined, 'verl', 'trl', 'openrlhf'];

function optionsOf(c: AdvantagesCase, o: AdvantagesOptions): AdvantagesOptions {
  return { groupOffsets: c.groupOffsets, responseOffsets: c.responseOffsets, ...o };
}

/** ctx.advantages on webgpu against the float64 reference, with the tables' tolerances. */
async function compare(c: AdvantagesCase, o: AdvantagesOptions, what: string): Promise<AdvantagesOut> {
  const opts = optionsOf(c, o);
  const got = await readAdvantages(gpu!.ctx, c.rewards, opts);
  expectAdvantagesWithin(got, c.rewards, opts, what);
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

describe.skipIf(noGpu)('webgpu advantages: subgroup and tree reductions, determinism', () => {
  const b = gpu?.backend;
  beforeEach(() => resetTuning(b!));

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
        // trl treats NaN rewards as unscorable (test/cases/advantages-nan.ts); here, its other
        // conventions with NaN propagated.
        await compare(
          c,
          {
            estimator,
            ...(preset ? { preset } : {}),
            ...(preset === 'trl' ? { nanRewards: 'propagate' } : {}),
          },
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

describe.skipIf(noGpu)('webgpu whiten: subgroup and tree reductions, determinism', () => {
  const b = gpu?.backend;
  beforeEach(() => resetTuning(b!));

  async function whitenGpu(values: Float32Array, shape: number[], mask: Uint8Array | undefined, o: object) {
    const ctx = gpu!.ctx;
    const v = ctx.tensor(values, shape);
    const m = mask ? ctx.tensor(mask, shape) : undefined;
    const out = await ctx.whiten(v, { ...o, ...(m ? { mask: m } : {}) });
    const r = (await out.read()) as Float32Array;
    expect(out.shape).toEqual(shape);
    for (const t of [v, m, out]) t?.dispose();
    return r;
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
            const got = await whitenGpu(vals, [3, 4099], m, o);
            expectWhitenWithin(got, vals, m, o, `whiten ${JSON.stringify(o)} mask=${!!m} sg=${sub}`);
          }
        }
      }
    }
  });

  it('whiten is deterministic: two runs give the same bits', async () => {
    const n = 100_003;
    const values = Float32Array.from(randomNormal(9, n, 3));
    const a1 = await whitenGpu(values, [n], undefined, {});
    const a2 = await whitenGpu(values, [n], undefined, {});
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
