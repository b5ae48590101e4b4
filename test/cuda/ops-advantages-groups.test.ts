/**
 * The cuda advantages kernel's group placement (native/cuda/advantages.cu, "group kernel"): a group of
 * n members runs on w = group_lanes(n) lanes (1 for n ≤ 4, then 2, 4, 8, 16, 32 up to 128; larger
 * groups strided over a whole warp), several groups share a warp, uniform groups (one size) come with
 * no offsets array, and ragged ones are packed into rounds of 32 lanes. What must hold whatever the
 * placement:
 * - every estimator and preset agrees with the cpu reference for groups of 1, 2, 3, 8, 15, 16, 17 and
 *   33 members and the sizes at the kernel's boundaries (4/5: one lane → two, 64/65: 16 → 32 lanes,
 *   128/129: registers → re-reads, 200), uniform (groupSize, and uniform offsets) and ragged, with
 *   empty and zero-variance groups among them (tolerance as test/cuda/ops.test.ts: rtol 1e-5 over the
 *   tensor, non-finite classes equal);
 * - batch invariance: a group's advantages, mean, std and degenerate flag are the same bits alone,
 *   among 7 groups and among 3000, at the first, a middle and the last position, in uniform and ragged
 *   batches (for the estimators without batch statistics; gpg's α, scale 'batch' and
 *   reinforce_pp_baseline's whitening are functions of the whole batch by definition);
 * - the pivot's overflow fallback taken by one group of a shared warp leaves its neighbours' bits alone.
 */
import { describe, expect, it } from 'vitest';
import {
  type AdvantagesOptions,
  type Context,
  ESTIMATORS,
  type Estimator,
  PRESETS,
  setOutputPoison,
  type Tensor,
} from '../../src/index.js';
import { expectClose, expectNoPoison, POISON_F32 } from '../util/compare.js';
import { rng } from '../util/rng.js';
import { cpuContext, probeGpu } from './helpers.js';

const gpu = await probeGpu();
const noGpu = gpu.ctx === undefined;
const cuda = gpu.ctx as Context;
const cpu = await cpuContext();

async function read(t: Tensor | undefined): Promise<Float64Array> {
  if (t === undefined) throw new Error('missing output');
  return Float64Array.from((await t.read()) as ArrayLike<number>);
}

/** f32 (or u8) bit patterns, for bitwise comparisons (−0 and NaN payloads included). */
async function bits(t: Tensor): Promise<Uint32Array | Uint8Array> {
  const a = await t.read();
  return a instanceof Float32Array ? new Uint32Array(a.buffer, a.byteOffset, a.length) : (a as Uint8Array);
}

/** One group: rewards and response lengths (opo). */
interface Group {
  rewards: Float32Array;
  lengths: Int32Array;
}

/** A group of n members: rewards 1 / 0 / uniform (ties, repeated maxima), lengths 0..29 (some empty). */
function group(seed: number, n: number): Group {
  const r = rng(seed);
  const rewards = new Float32Array(n);
  const lengths = new Int32Array(n);
  for (let i = 0; i < n; i++) {
    rewards[i] = r() < 0.4 ? 1 : r() < 0.5 ? 0 : r();
    lengths[i] = r() < 0.1 ? 0 : 1 + Math.floor(r() * 29);
  }
  return { rewards, lengths };
}

interface Batch {
  rewards: Float32Array;
  go: Int32Array;
  ro: Int32Array;
}

function assemble(groups: readonly Group[]): Batch {
  const go = new Int32Array(groups.length + 1);
  groups.forEach((g, k) => {
    go[k + 1] = go[k] + g.rewards.length;
  });
  const R = go[groups.length];
  const rewards = new Float32Array(R);
  const ro = new Int32Array(R + 1);
  groups.forEach((g, k) => {
    rewards.set(g.rewards, go[k]);
    for (let i = 0; i < g.lengths.length; i++) ro[go[k] + i + 1] = ro[go[k] + i] + g.lengths[i];
  });
  return { rewards, go, ro };
}

/** The sizes of the brief, and those where the kernel changes how it places a group. */
const SIZES = [1, 2, 3, 4, 5, 8, 15, 16, 17, 33, 64, 65, 128, 129, 200];

function variants(estimator: Estimator): Omit<AdvantagesOptions, 'groupOffsets' | 'groupSize'>[] {
  const base = [undefined, ...PRESETS].map((preset) => ({ estimator, preset }));
  if (estimator === 'grpo') return [...base, { estimator, scale: 'batch' }, { estimator, scale: 'none' }];
  return base;
}

async function compare(
  b: Batch,
  layout: { groupSize: number } | { groupOffsets: Int32Array },
  what: string,
  estimators: readonly Estimator[] = ESTIMATORS,
) {
  for (const estimator of estimators) {
    for (const o of variants(estimator)) {
      const opts = { ...o, ...layout, responseOffsets: b.ro };
      const w = `${what} ${JSON.stringify(o)}`;
      setOutputPoison(POISON_F32);
      const a = await cuda.advantages(b.rewards, opts);
      setOutputPoison(undefined);
      const c = await cpu.advantages(b.rewards, opts);
      const got = await read(a.advantages);
      expectNoPoison(got, `${w} advantages`);
      expectClose(got, await read(c.advantages), { rtol: 1e-5, what: `${w} advantages` });
      expectClose(await read(a.mean), await read(c.mean), { rtol: 1e-5, what: `${w} mean` });
      expectClose(await read(a.std), await read(c.std), { rtol: 1e-5, what: `${w} std` });
      expect(Array.from(await a.degenerate.read()), `${w} degenerate`).toEqual(
        Array.from(await c.degenerate.read()),
      );
    }
  }
}

/** n-member groups, G of them, one of zero variance (for n ≥ 2). */
function uniformBatch(seed: number, n: number, G: number): Batch {
  const groups = Array.from({ length: G }, (_, k) => group(seed * 1000 + k, n));
  if (n >= 2 && G > 1) groups[1].rewards.fill(0.75);
  return assemble(groups);
}

/** Ragged: the sizes in a seeded order, repeated, with empty groups and a zero-variance group. */
function raggedBatch(seed: number, sizes: readonly number[], repeats: number): Batch {
  const r = rng(seed);
  const order: number[] = [];
  for (let k = 0; k < repeats; k++) {
    const s = [...sizes];
    for (let i = s.length - 1; i > 0; i--) {
      const j = Math.floor(r() * (i + 1));
      [s[i], s[j]] = [s[j], s[i]];
    }
    order.push(...s);
  }
  const groups = order.map((n, k) => group(seed * 1000 + k, n));
  const zv = groups.findIndex((g) => g.rewards.length >= 3);
  groups[zv].rewards.fill(0.5);
  return assemble(groups);
}

describe.skipIf(noGpu)('cuda advantages: groups sharing warps, every estimator and preset vs cpu', () => {
  for (const n of SIZES) {
    it(`uniform groups of ${n} (groupSize, and the same as offsets)`, async () => {
      const G = n <= 33 ? 37 : 7; // 37: several warps, the last one partly idle
      const b = uniformBatch(n, n, G);
      if (n === 1) {
        // grpo_passk needs n ≥ 2: every other estimator here, with every singleton policy.
        for (const preset of [undefined, ...PRESETS]) {
          for (const estimator of ESTIMATORS.filter((e) => e !== 'grpo_passk')) {
            const opts = { estimator, preset, groupSize: 1, responseOffsets: b.ro };
            const a = await cuda.advantages(b.rewards, opts);
            const c = await cpu.advantages(b.rewards, opts);
            const w = `singletons ${estimator} ${preset ?? 'default'}`;
            expectClose(await read(a.advantages), await read(c.advantages), { rtol: 1e-5, what: w });
            expectClose(await read(a.mean), await read(c.mean), { rtol: 1e-5, what: `${w} mean` });
            expectClose(await read(a.std), await read(c.std), { rtol: 1e-5, what: `${w} std` });
          }
        }
        return;
      }
      await compare(b, { groupSize: n }, `groupSize ${n}`);
      await compare(b, { groupOffsets: b.go }, `uniform offsets ${n}`);
    });
  }

  it('ragged: 0..200 members mixed (groups of up to 128 share rounds of 32 lanes)', async () => {
    const b = raggedBatch(1, [0, 1, ...SIZES.filter((n) => n > 1)], 3);
    const some = ESTIMATORS.filter((e) => e !== 'grpo_passk');
    await compare(b, { groupOffsets: b.go }, 'ragged', some);
    // grpo_passk needs n ≥ 2.
    const p = raggedBatch(
      2,
      SIZES.filter((n) => n > 1),
      3,
    );
    await compare(p, { groupOffsets: p.go }, 'ragged', ['grpo_passk']);
  });

  it('ragged: many small groups (1..17 members: up to 32 groups per round, several rounds per warp)', async () => {
    const small = [1, 2, 3, 4, 5, 6, 7, 8, 9, 12, 15, 16, 17];
    const b = raggedBatch(3, [0, ...small], 6);
    await compare(
      b,
      { groupOffsets: b.go },
      'small ragged',
      ESTIMATORS.filter((e) => e !== 'grpo_passk'),
    );
    const p = raggedBatch(4, small.slice(1), 6);
    await compare(p, { groupOffsets: p.go }, 'small ragged', ['grpo_passk']);
  });
});

// ------------------------------------------------------------------------------ batch invariance
/** The estimators whose per-group results depend on the group alone. */
const LOCAL: readonly Estimator[] = ['grpo', 'dr_grpo', 'rloo', 'opo', 'grpo_passk'];
const PROBE_SIZES = [1, 2, 3, 8, 15, 16, 17, 33, 64, 65, 129];

interface Outputs {
  adv: Uint32Array;
  mean: Uint32Array;
  std: Uint32Array;
  deg: Uint8Array;
  go: Int32Array;
}

async function run(b: Batch, o: AdvantagesOptions): Promise<Outputs> {
  const a = await cuda.advantages(b.rewards, { ...o, responseOffsets: b.ro });
  return {
    adv: (await bits(a.advantages)) as Uint32Array,
    mean: (await bits(a.mean)) as Uint32Array,
    std: (await bits(a.std)) as Uint32Array,
    deg: (await bits(a.degenerate)) as Uint8Array,
    go: b.go,
  };
}

/** Group k of `out`, as bit patterns. */
function slice(out: Outputs, k: number) {
  return {
    adv: Array.from(out.adv.subarray(out.go[k], out.go[k + 1])),
    mean: out.mean[k],
    std: out.std[k],
    deg: out.deg[k],
  };
}

describe.skipIf(noGpu)("cuda advantages: a group's bits do not depend on its batch", () => {
  for (const estimator of LOCAL) {
    it(`${estimator}: alone, among 7 and among 3000 groups, uniform and ragged, first/middle/last`, async () => {
      const sizes = PROBE_SIZES.filter((n) => estimator !== 'grpo_passk' || n >= 2);
      const minSize = estimator === 'grpo_passk' ? 2 : 0;
      const probes = sizes.map((n) => group(7000 + n, n));
      const fillerSize = (r: () => number) => minSize + Math.floor(r() * (41 - minSize));
      const o = { estimator } as const;
      const alone = await Promise.all(
        probes.map(async (p) =>
          slice(await run(assemble([p]), { ...o, groupOffsets: Int32Array.from([0, p.rewards.length]) }), 0),
        ),
      );
      const checks: { what: string; out: Outputs; k: number; probe: number }[] = [];
      // Among 7 ragged groups, the probe first, fourth and last.
      for (const [pi, p] of probes.entries()) {
        for (const pos of [0, 3, 6]) {
          const r = rng(100 * pi + pos);
          const gs = Array.from({ length: 7 }, (_, k) =>
            k === pos ? p : group(9000 + 7 * pi + k, fillerSize(r)),
          );
          const b = assemble(gs);
          checks.push({
            what: `among 7 ragged at ${pos}`,
            out: await run(b, { ...o, groupOffsets: b.go }),
            k: pos,
            probe: pi,
          });
        }
      }
      // Among 7 and 3000 uniform groups (groupSize): the probe at the first, a middle and the last place.
      for (const [pi, p] of probes.entries()) {
        const n = p.rewards.length;
        for (const G of n <= 33 ? [7, 3000] : [7, 300]) {
          const places = [0, Math.floor(G / 2) + (pi % 3), G - 1];
          const gs = Array.from({ length: G }, (_, k) => (places.includes(k) ? p : group(20000 + k, n)));
          const out = await run(assemble(gs), { ...o, groupSize: n });
          for (const k of places) checks.push({ what: `among ${G} uniform at ${k}`, out, k, probe: pi });
        }
      }
      // Among 3000 ragged groups: every probe at three places, the rest 0..40 members.
      {
        const r = rng(31);
        const gs: Group[] = Array.from({ length: 3000 }, (_, k) => group(40000 + k, fillerSize(r)));
        const placed: { k: number; probe: number }[] = [];
        probes.forEach((p, pi) => {
          for (const k of [pi, 1000 + 97 * pi + (pi % 3), 2999 - pi]) {
            gs[k] = p;
            placed.push({ k, probe: pi });
          }
        });
        const b = assemble(gs);
        const out = await run(b, { ...o, groupOffsets: b.go });
        for (const { k, probe } of placed) checks.push({ what: `among 3000 ragged at ${k}`, out, k, probe });
      }
      for (const c of checks) {
        const want = alone[c.probe];
        const n = probes[c.probe].rewards.length;
        expect(slice(c.out, c.k), `${estimator}, ${n} members, ${c.what}`).toEqual(want);
      }
    });
  }

  it('a group whose pivot shift overflows takes the raw sums; the groups sharing its warp keep their bits', async () => {
    // Group 1: finite members of both signs near FLT_MAX, so r − r_lo overflows (the fallback sums
    // from 0). Groups 0 and 2 share its warp (3, 3 and 5 members: one lane each, then two lanes).
    const huge = { rewards: Float32Array.from([3e38, -3e38, 1e38]), lengths: Int32Array.from([1, 2, 3]) };
    const g0 = group(1, 3);
    const g2 = group(2, 5);
    // Group 3: 150 members strided over a whole warp (more than 128): 3e38 first, −3e38 at 77, zeros
    // (the unshifted sums stay in range: the group's r − μ is ±3e38 or 0, exactly).
    const big = {
      rewards: Float32Array.from({ length: 150 }, (_, i) => (i === 0 ? 3e38 : i === 77 ? -3e38 : 0)),
      lengths: new Int32Array(150).fill(1),
    };
    const b = assemble([g0, huge, g2, big]);
    const o = { estimator: 'dr_grpo', groupOffsets: b.go, responseOffsets: b.ro } as const;
    const a = await cuda.advantages(b.rewards, o);
    const c = await cpu.advantages(b.rewards, o);
    // dr_grpo's r − μ and the mean are finite and right (the f32 std of such a group overflows, as
    // it did before the pivot: not compared).
    expectClose(await read(a.advantages), await read(c.advantages), { rtol: 1e-5, what: 'advantages' });
    expectClose(await read(a.mean), await read(c.mean), { rtol: 1e-5, what: 'mean' });
    const whole = await run(b, { estimator: 'dr_grpo', groupOffsets: b.go });
    for (const [k, g] of [
      [0, g0],
      [2, g2],
    ] as const) {
      const alone = await run(assemble([g]), { estimator: 'dr_grpo', groupSize: g.rewards.length });
      expect(slice(whole, k), `group ${k}`).toEqual(slice(alone, 0));
    }
  });
});
