/**
 * The cuda advantages family on offset rewards, 1e6 + 0.25·N(0, 1) (issue 10), against the cpu
 * reference (float64, one rounding to f32). At 1e6 the f32 spacing is 0.0625, a quarter of the
 * rewards' spread: a mean taken as Σr/n in f32 and then r − μ loses the low digits that carry the
 * whole signal. The kernels shift each group's rewards (and each batch reduction's values) by a pivot
 * first, as the webgpu kernels do. Measured on the emulator (error / the element's unit, defined below):
 * before the pivot 1.7e-2 … 2.9e-1 for advantages, 2.3e-2 … 5.6e-2 for std, 9.6e-3 (3.5e-1 masked) for
 * whiten; after it ≤ 1.9e-7, ≤ 1.2e-7 and ≤ 4.8e-7, and the means bit-equal to the reference's.
 *
 * Cases: groups of 16 and of 64, and ragged groups (singletons, an empty group, groups of up to 100
 * members: more than one member per warp lane), for every estimator of ESTIMATORS under the default
 * conventions and every preset, plus grpo's scale 'batch' / 'none' and population std, grpo_passk's
 * scale 'batch' (the batch std is a whole-batch mean and variance), and whiten on offset values
 * (masked and not, every preset, keepMean). expandToTokens computes no mean (a copy): checked exact.
 *
 * Tolerances, per element: |got − want| ≤ atol + rtol·|want|, NaN and ±Inf equal in class.
 * - TOL = 1e-4 of the element's unit: for advantages, the largest |want| of the element's group (the
 *   group's advantage scale: ~1 for grpo, ~σ_g for dr_grpo, …; the whole tensor for the token-level
 *   reinforce_pp_baseline and for whiten, whose outputs have unit variance by construction); for the
 *   mean, the group's population std σ_g (f64, from the rewards); for std, the std itself. Why 1e-4:
 *   after the pivot every difference r − p is exact (Sterbenz), so the error is that of f32 sums of
 *   deviations |r − p| ≲ 4σ: at worst about (n − 1)·u·4 ≈ 100 · 6e-8 · 4 ≈ 2.4e-5 of σ for the
 *   100-member group (√n·u typical), then a sqrt and a division or two (≤ 1 ulp each). The batch
 *   reductions add each thread's ≤ 8 terms, a 256-leaf tree and ≤ 5 block partials: fewer roundings
 *   still. 1e-4 keeps 4× over that worst case and sits two to three orders of magnitude under the
 *   errors of the unshifted kernels (each test failed, its worst element at 1.7e2× to 3.5e3× its
 *   tolerance; the means and keepMean outputs alone would not show the bug: near 1e6 their own f32
 *   rounding is that coarse).
 * - RTOL = 2^-22 (4 units of f32 roundoff, ≥ 1 ulp): the f32 rounding of values near 1e6 (the mean,
 *   a mean0 singleton's r, whiten's keepMean output), where adjacent f32 values are 0.0625 apart and
 *   the kernel's p + d may round to the neighbour of the reference's rounded μ.
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
import { expectNoPoison, POISON_F32 } from '../util/compare.js';
import { randomInts, randomNormal } from '../util/rng.js';
import { cpuContext, probeGpu } from './helpers.js';

const gpu = await probeGpu();
const noGpu = gpu.ctx === undefined;
const cuda = gpu.ctx as Context;
const cpu = await cpuContext();

const TOL = 1e-4;
const RTOL = 2 ** -22;

async function read(t: Tensor | undefined): Promise<Float64Array> {
  if (t === undefined) throw new Error('missing output');
  return Float64Array.from((await t.read()) as ArrayLike<number>);
}

function cls(x: number): string {
  if (Number.isNaN(x)) return 'NaN';
  if (x === Number.POSITIVE_INFINITY) return '+Inf';
  if (x === Number.NEGATIVE_INFINITY) return '-Inf';
  return 'finite';
}

/**
 * Per element: |a − b| ≤ atol(i) + rtol·|b|, non-finite classes equal. Reports class mismatches by
 * index, and the worst element with its error in units of its tolerance.
 */
function expectWithin(
  actual: ArrayLike<number>,
  expected: ArrayLike<number>,
  atol: (i: number) => number,
  rtol: number,
  what: string,
): void {
  expect(actual.length, `${what}: length`).toBe(expected.length);
  const classes: string[] = [];
  let worst = -1;
  let worstRatio = 0;
  for (let i = 0; i < expected.length; i++) {
    const a = actual[i];
    const b = expected[i];
    if (cls(a) !== cls(b)) {
      if (classes.length < 5) classes.push(`[${i}] got ${a} (${cls(a)}), expected ${b} (${cls(b)})`);
      continue;
    }
    if (!Number.isFinite(b)) continue;
    const err = Math.abs(a - b);
    const tol = atol(i) + rtol * Math.abs(b);
    const ratio = err === 0 ? 0 : tol === 0 ? Number.POSITIVE_INFINITY : err / tol;
    if (ratio > worstRatio) {
      worstRatio = ratio;
      worst = i;
    }
  }
  expect(classes, `${what}: non-finite class mismatches`).toEqual([]);
  const at =
    worst < 0
      ? ''
      : ` at [${worst}]: got ${actual[worst]}, expected ${expected[worst]}, |err| ${Math.abs(actual[worst] - expected[worst]).toExponential(3)}, atol ${atol(worst).toExponential(3)}`;
  expect(
    worstRatio,
    `${what}: worst error ${worstRatio.toExponential(3)} × its tolerance${at}`,
  ).toBeLessThanOrEqual(1);
}

interface OffsetCase {
  what: string;
  rewards: Float32Array;
  go: Int32Array;
  ro: Int32Array;
  /** Group of each response. */
  groupOf: Int32Array;
  /** Population std of each group's rewards (f64; 0 for a singleton or an empty group). */
  sigma: Float64Array;
}

/** 1e6 + 0.25·N(0, 1) rewards in groups of the given sizes; response lengths 0..12 (some empty). */
function offsetCase(what: string, seed: number, sizes: readonly number[]): OffsetCase {
  const G = sizes.length;
  const go = new Int32Array(G + 1);
  for (let g = 0; g < G; g++) go[g + 1] = go[g] + sizes[g];
  const R = go[G];
  const rewards = Float32Array.from(randomNormal(seed, R, 0.25, 1e6));
  const lengths = randomInts(seed + 1, R, 0, 13);
  const ro = new Int32Array(R + 1);
  for (let i = 0; i < R; i++) ro[i + 1] = ro[i] + lengths[i];
  const groupOf = new Int32Array(R);
  const sigma = new Float64Array(G);
  for (let g = 0; g < G; g++) {
    const [lo, hi] = [go[g], go[g + 1]];
    groupOf.fill(g, lo, hi);
    let sum = 0;
    for (let i = lo; i < hi; i++) sum += rewards[i];
    const mu = sum / (hi - lo);
    let m2 = 0;
    for (let i = lo; i < hi; i++) m2 += (rewards[i] - mu) ** 2;
    sigma[g] = hi > lo ? Math.sqrt(m2 / (hi - lo)) : 0;
  }
  return { what, rewards, go, ro, groupOf, sigma };
}

/** Ragged sizes: a singleton and an empty group (dropped for grpo_passk, which needs n ≥ 2), 65..100. */
const RAGGED = [16, 1, 64, 3, 0, 100, 2, 33, 7, 64, 5, 40, 97, 12];
const CASES = [
  offsetCase('groups of 16', 10, Array(64).fill(16)),
  offsetCase('groups of 64', 11, Array(32).fill(64)),
  offsetCase('ragged', 12, RAGGED),
];
const RAGGED_PASSK = offsetCase(
  'ragged',
  12,
  RAGGED.filter((n) => n >= 2),
);

/** The option sets run for one estimator. */
function variants(estimator: Estimator): Omit<AdvantagesOptions, 'groupOffsets' | 'responseOffsets'>[] {
  const base = [undefined, ...PRESETS].map((preset) => ({ estimator, preset }));
  if (estimator === 'grpo')
    return [
      ...base,
      { estimator, scale: 'batch' },
      { estimator, scale: 'none' },
      { estimator, std: 'population' },
    ];
  if (estimator === 'grpo_passk') return [...base, { estimator, scale: 'batch' }];
  return base;
}

async function compareAdvantages(c: OffsetCase, o: Omit<AdvantagesOptions, 'groupOffsets'>, what: string) {
  const opts = { ...o, groupOffsets: c.go, responseOffsets: c.ro };
  setOutputPoison(POISON_F32);
  const got = await cuda.advantages(c.rewards, opts);
  setOutputPoison(undefined);
  const want = await cpu.advantages(c.rewards, opts);
  const [ga, wa] = [await read(got.advantages), await read(want.advantages)];
  expectNoPoison(ga, `${what} advantages`);
  // Unit of each element: the largest |want| of its group (of the whole tensor, token-level).
  const perToken = o.estimator === 'reinforce_pp_baseline';
  const G = c.go.length - 1;
  const unit = new Float64Array(perToken ? 1 : G);
  for (let i = 0; i < wa.length; i++) {
    const k = perToken ? 0 : c.groupOf[i];
    if (Number.isFinite(wa[i])) unit[k] = Math.max(unit[k], Math.abs(wa[i]));
  }
  expectWithin(ga, wa, (i) => TOL * unit[perToken ? 0 : c.groupOf[i]], RTOL, `${what} advantages`);
  expectWithin(await read(got.mean), await read(want.mean), (g) => TOL * c.sigma[g], RTOL, `${what} mean`);
  expectWithin(await read(got.std), await read(want.std), () => 0, TOL, `${what} std`);
  expect(Array.from(await got.degenerate.read()), `${what} degenerate`).toEqual(
    Array.from(await want.degenerate.read()),
  );
}

describe.skipIf(noGpu)('cuda advantages on offset rewards (1e6 + 0.25·N(0, 1)) vs cpu', () => {
  for (const estimator of ESTIMATORS) {
    for (const c0 of CASES) {
      const c = estimator === 'grpo_passk' && c0.what === 'ragged' ? RAGGED_PASSK : c0;
      it(`${estimator}, ${c.what}`, async () => {
        for (const o of variants(estimator)) await compareAdvantages(c, o, `${c.what} ${JSON.stringify(o)}`);
      });
    }
  }

  it("a group's result depends only on its members, and two runs give the same bits", async () => {
    const c = CASES[2];
    const whole = await read((await cuda.advantages(c.rewards, { groupOffsets: c.go })).advantages);
    const again = await read((await cuda.advantages(c.rewards, { groupOffsets: c.go })).advantages);
    expect(
      whole.every((v, i) => Object.is(v, again[i])),
      'deterministic',
    ).toBe(true);
    // Group 5 (100 members) alone.
    const [lo, hi] = [c.go[5], c.go[6]];
    const alone = await read(
      (await cuda.advantages(c.rewards.slice(lo, hi), { groupOffsets: Int32Array.from([0, hi - lo]) }))
        .advantages,
    );
    expect(
      alone.every((v, i) => Object.is(v, whole[lo + i])),
      'batch invariant',
    ).toBe(true);
  });
});

describe.skipIf(noGpu)('cuda whiten and expandToTokens on offset values (1e6 + 0.25·N(0, 1)) vs cpu', () => {
  const n = 10007; // 5 blocks of the batch reduction, the last one partial
  const x = Float32Array.from(randomNormal(20, n, 0.25, 1e6));
  const mask = Uint8Array.from(randomInts(21, n, 0, 2));
  mask[0] = 0; // the first valid element is not the first element

  it('whiten: every preset, masked and not, keepMean', async () => {
    for (const m of [undefined, mask]) {
      for (const preset of [undefined, ...PRESETS]) {
        for (const keepMean of [false, true]) {
          const o = { mask: m, preset, keepMean };
          const what = `whiten mask=${m !== undefined} ${preset ?? 'default'} keepMean=${keepMean}`;
          const got = await read(await cuda.whiten(x, o));
          const want = await read(await cpu.whiten(x, o));
          // Unit variance by construction: atol TOL; keepMean's ~1e6 outputs round at RTOL.
          expectWithin(got, want, () => TOL, RTOL, what);
        }
      }
    }
  });

  it('expandToTokens: a copy, exact', async () => {
    const c = CASES[2];
    const got = await read(await cuda.expandToTokens(c.rewards, c.ro));
    const want = await read(await cpu.expandToTokens(c.rewards, c.ro));
    expect(got.every((v, i) => Object.is(v, want[i]))).toBe(true);
  });
});
