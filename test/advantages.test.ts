/**
 * The advantages family of the cpu reference (advantages, expandToTokens, whiten) against float64
 * formulas written out here, never the code under test: docs/ESTIMATORS.md's formulas for the package
 * conventions, and each trainer's own arithmetic for the presets (docs/PRESETS.md cites the lines).
 */
import { afterEach, beforeAll, describe, expect, it } from 'vitest';
import {
  type AdvantagesOptions,
  type Context,
  createContext,
  ESTIMATORS,
  type Estimator,
  GrpoKernelsError,
  type ScaleKind,
  type SingletonPolicy,
  type StdKind,
  setOutputPoison,
} from '../src/index.js';
import {
  type AdvantagesCase,
  type AdvantagesOut,
  makeAdvantagesCase,
  raggedGroupSizes,
  readAdvantages,
} from './fixtures/advantages.js';
import { expectClose, expectNoPoison, POISON_F32 } from './util/compare.js';

let ctx: Context;
beforeAll(async () => {
  ctx = await createContext({ backend: 'cpu' });
});
afterEach(() => setOutputPoison(undefined));

/** f64 results rounded once to f32: a relative error of half an f32 ulp of the largest value, with margin. */
const F32_RTOL = 2e-7;

/** ctx.advantages on the cpu context, read back. */
const run = (rewards: Float32Array, options: AdvantagesOptions): Promise<AdvantagesOut> =>
  readAdvantages(ctx, rewards, options);

// ------------------------------------------------------------------ float64 references
interface RefConv {
  estimator: Estimator;
  std: StdKind;
  eps: number;
  scale: ScaleKind;
  singleton: SingletonPolicy;
  /** reinforce_pp_baseline's whitening. */
  maskEps: number;
  whitenVariance: StdKind;
  clamp: boolean;
}
const DEFAULTS: RefConv = {
  estimator: 'grpo',
  std: 'sample',
  eps: 1e-6,
  scale: 'group',
  singleton: 'zero',
  maskEps: 0,
  whitenVariance: 'sample',
  clamp: false,
};

interface Ref {
  adv: Float64Array;
  mean: Float64Array;
  std: Float64Array;
  deg: Uint8Array;
}

function sum(xs: readonly number[]): number {
  let s = 0;
  for (const x of xs) s += x;
  return s;
}
function meanOf(xs: readonly number[]): number {
  return sum(xs) / xs.length;
}
/** Two-pass standard deviation with divisor n − ddof. */
function stdOf(xs: readonly number[], ddof: number): number {
  const m = meanOf(xs);
  return Math.sqrt(sum(xs.map((x) => (x - m) ** 2)) / (xs.length - ddof));
}

/** Whitening as docs/PRESETS.md states it (used for the package default; presets get their own). */
function refWhiten(
  x: readonly number[],
  valid: readonly boolean[],
  maskEps: number,
  variance: StdKind,
  clamp: boolean,
  keepMean = false,
): Float64Array {
  const xs = x.filter((_, i) => valid[i]);
  const n = xs.length;
  const out = new Float64Array(x.length);
  if (n === 0) return out;
  const mean = sum(xs) / (n + maskEps);
  let v = sum(xs.map((e) => (e - mean) ** 2)) / (n + maskEps);
  if (variance === 'sample') v = n === 1 ? Number.NaN : (v * n) / (n - 1);
  const rstd = 1 / Math.sqrt(clamp ? Math.max(v, 1e-8) : v + 1e-8);
  x.forEach((e, i) => {
    out[i] = valid[i] ? (e - mean) * rstd + (keepMean ? mean : 0) : 0;
  });
  return out;
}

/** docs/ESTIMATORS.md with the conventions of docs/PRESETS.md, member by member. */
function refAdvantages(c: AdvantagesCase, k: RefConv): Ref {
  const r = Array.from(c.rewards);
  const R = c.numResponses;
  const G = c.numGroups;
  const ddof = k.std === 'sample' ? 1 : 0;
  const len = (i: number) => c.responseOffsets[i + 1] - c.responseOffsets[i];
  const batchStd = stdOf(r, ddof);
  const alpha = R / Math.max(r.filter((x) => x !== 0).length, 1);
  const divides = k.estimator === 'grpo' || k.estimator === 'grpo_passk';
  const values = new Float64Array(R);
  const mean = new Float64Array(G);
  const std = new Float64Array(G);
  const deg = new Uint8Array(G);
  for (let g = 0; g < G; g++) {
    const lo = c.groupOffsets[g];
    const hi = c.groupOffsets[g + 1];
    const xs = r.slice(lo, hi);
    const n = xs.length;
    if (n === 0) {
      deg[g] = 1;
      continue;
    }
    const allEqual = xs.every((x) => x === xs[0]);
    let mu = meanOf(xs);
    let s = n === 1 ? (k.std === 'sample' ? Number.NaN : 0) : stdOf(xs, ddof);
    deg[g] = allEqual ? 1 : 0;
    if ((n === 1 && k.singleton === 'zero') || (n > 1 && allEqual)) {
      mean[g] = xs[0];
      std[g] = divides && k.scale === 'batch' ? batchStd : 0;
      continue; // values stay 0
    }
    const mean0 = n === 1 && k.singleton === 'mean0';
    if (mean0) {
      mu = 0;
      s = 1;
    }
    const D = k.scale === 'batch' ? batchStd : s;
    for (let j = 0; j < n; j++) {
      const x = xs[j];
      let a: number;
      switch (k.estimator) {
        case 'grpo':
          a = k.scale === 'none' ? x - mu : (x - mu) / (D + k.eps);
          break;
        case 'dr_grpo':
        case 'reinforce_pp_baseline':
          a = x - mu;
          break;
        case 'rloo': // leave-one-out mean of the others
          a = mean0 ? x : x - (sum(xs) - x) / (n - 1);
          break;
        case 'gpg':
          a = alpha * (x - mu);
          break;
        case 'opo': {
          let wl = 0;
          let l = 0;
          for (let q = 0; q < n; q++) {
            wl += len(lo + q) * xs[q];
            l += len(lo + q);
          }
          if (!mean0) mu = wl / l;
          if (l === 0 && !mean0) deg[g] = 1;
          a = x - mu;
          break;
        }
        case 'grpo_passk': {
          const order = xs.map((v, q) => [v, q] as const).sort((p, q) => q[0] - p[0] || p[1] - q[1]);
          const gap = order[0][0] - order[1][0];
          a = j === order[0][1] ? (k.scale === 'none' ? gap : gap / (D + k.eps)) : 0;
          break;
        }
      }
      values[lo + j] = a;
    }
    mean[g] = mu;
    std[g] = divides && k.scale === 'batch' ? batchStd : s;
  }
  if (k.estimator !== 'reinforce_pp_baseline') return { adv: values, mean, std, deg };
  const tokens: number[] = [];
  for (let i = 0; i < R; i++) for (let t = 0; t < len(i); t++) tokens.push(values[i]);
  const adv = refWhiten(tokens, new Array(tokens.length).fill(true), k.maskEps, k.whitenVariance, k.clamp);
  return { adv, mean, std, deg };
}

function checkAgainst(out: AdvantagesOut, ref: Ref, what: string, rtol = F32_RTOL): void {
  expectClose(out.adv, ref.adv, { rtol, what: `${what} advantages` });
  expectClose(out.mean, ref.mean, { rtol, what: `${what} mean` });
  expectClose(out.std, ref.std, { rtol, what: `${what} std` });
  expect(Array.from(out.deg), `${what} degenerate`).toEqual(Array.from(ref.deg));
}

// ------------------------------------------------------------------ shapes
interface Shape {
  name: string;
  sizes: number[];
  zeroVar?: number;
  fixed?: number;
}
const SHAPES: Shape[] = [
  { name: 'ragged 1..16', sizes: raggedGroupSizes(11, 300) },
  { name: 'ragged with zero-variance groups', sizes: raggedGroupSizes(12, 200, 8), zeroVar: 0.3 },
  { name: 'fixed groupSize 8', sizes: new Array(37).fill(8), fixed: 8 },
  { name: 'singletons only', sizes: new Array(9).fill(1) },
  { name: 'singletons and pairs, empty groups', sizes: [1, 2, 0, 1, 3, 2, 0, 1, 5] },
  { name: 'one group of 7', sizes: [7] },
  { name: 'one response', sizes: [1] },
  { name: 'prime group 131', sizes: [131, 1, 2] },
];

function layoutOptions(c: AdvantagesCase, fixed?: number): AdvantagesOptions {
  return fixed === undefined
    ? { groupOffsets: c.groupOffsets, responseOffsets: c.responseOffsets }
    : { groupSize: fixed, responseOffsets: c.responseOffsets };
}

describe('advantages: every estimator against its formula', () => {
  let seed = 100;
  for (const kind of ['continuous', 'binary'] as const) {
    for (const shape of SHAPES) {
      for (const estimator of ESTIMATORS) {
        const passkBad = estimator === 'grpo_passk' && shape.sizes.some((n) => n < 2);
        if (passkBad) continue; // grpo_passk rejects groups under 2 (tested with the errors)
        const s = seed++;
        it(`${estimator}, ${kind}, ${shape.name}`, async () => {
          const c = makeAdvantagesCase({
            seed: s,
            groupSizes: shape.sizes,
            rewards: kind,
            zeroVarianceFraction: shape.zeroVar,
          });
          for (const singleton of ['zero', 'mean0', 'nan'] as const) {
            const k = { ...DEFAULTS, estimator, singleton };
            const out = await run(c.rewards, { ...layoutOptions(c, shape.fixed), estimator, singleton });
            checkAgainst(out, refAdvantages(c, k), `${estimator}/${singleton}`);
          }
        });
      }
    }
  }

  it('std population, scale batch and none, eps 0, on ragged groups with singletons', async () => {
    const c = makeAdvantagesCase({
      seed: 7,
      groupSizes: [...raggedGroupSizes(7, 120, 6), 1, 1],
      zeroVarianceFraction: 0.2,
    });
    for (const estimator of ['grpo', 'grpo_passk'] as const) {
      const cc =
        estimator === 'grpo_passk'
          ? makeAdvantagesCase({ seed: 8, groupSizes: raggedGroupSizes(8, 120, 6).map((n) => n + 1) })
          : c;
      for (const std of ['sample', 'population'] as const)
        for (const scale of ['group', 'batch', 'none'] as const)
          for (const eps of [0, 1e-6, 0.5]) {
            const k = { ...DEFAULTS, estimator, std, scale, eps };
            const out = await run(cc.rewards, { ...layoutOptions(cc), estimator, std, scale, eps });
            checkAgainst(out, refAdvantages(cc, k), `${estimator}/${std}/${scale}/${eps}`);
          }
    }
  });

  it('large R = 100k in ragged groups (grpo, rloo, reinforce_pp_baseline)', async () => {
    const c = makeAdvantagesCase({ seed: 9, groupSizes: raggedGroupSizes(9, 100_000, 16), maxLength: 6 });
    for (const estimator of ['grpo', 'rloo', 'reinforce_pp_baseline'] as const) {
      const out = await run(c.rewards, { ...layoutOptions(c), estimator });
      checkAgainst(out, refAdvantages(c, { ...DEFAULTS, estimator }), estimator);
    }
  });

  it('R = 0: empty outputs', async () => {
    const out = await run(new Float32Array(0), { groupOffsets: new Int32Array([0]) });
    expect([out.adv.length, out.mean.length, out.std.length, out.deg.length]).toEqual([0, 0, 0, 0]);
    const bySize = await run(new Float32Array(0), { groupSize: 4 });
    expect(bySize.mean.length).toBe(0);
  });

  it('grpo_passk: ties give the first best 0, the others 0; the gap goes to the first maximum', async () => {
    const rewards = new Float32Array([1, 3, 3, 2, /* */ 0, 5, 1, 4]);
    const out = await run(rewards, { groupSize: 4, estimator: 'grpo_passk', scale: 'none' });
    expect(Array.from(out.adv)).toEqual([0, 0, 0, 0, 0, 1, 0, 0]);
  });

  it('opo: a group whose responses are all empty is NaN (0/0 baseline) and flagged, unless constant', async () => {
    const rewards = new Float32Array([1, 2, 3, 3, 0.5, 1.5]);
    const responseOffsets = new Int32Array([0, 0, 0, 0, 0, 4, 6]);
    const out = await run(rewards, {
      groupOffsets: new Int32Array([0, 2, 4, 6]),
      responseOffsets,
      estimator: 'opo',
    });
    expect(Array.from(out.adv.slice(0, 4))).toEqual([Number.NaN, Number.NaN, 0, 0]);
    expect(Array.from(out.deg)).toEqual([1, 1, 0]);
    // (4·0.5 + 2·1.5)/6 = 5/6
    expectClose(out.adv.slice(4), [0.5 - 5 / 6, 1.5 - 5 / 6], { rtol: F32_RTOL });
  });
});

describe('advantages: numerics', () => {
  it('two-pass variance survives 1e6 + small noise, where E[r²] − E[r]² does not', async () => {
    const c = makeAdvantagesCase({ seed: 21, groupSizes: new Array(64).fill(16), rewards: 'offset' });
    const out = await run(c.rewards, { groupSize: 16 });
    const ref = refAdvantages(c, DEFAULTS);
    checkAgainst(out, ref, 'offset rewards');
    // The one-pass formula, even in f64, is visibly wrong on the same data: a control showing the
    // test has teeth.
    let worst = 0;
    for (let g = 0; g < 64; g++) {
      const xs = Array.from(c.rewards.subarray(16 * g, 16 * g + 16));
      const m = meanOf(xs);
      const naiveVar = ((sum(xs.map((x) => x * x)) / 16 - m * m) * 16) / 15;
      const trueStd = stdOf(xs, 1);
      worst = Math.max(worst, Math.abs(Math.sqrt(Math.max(naiveVar, 0)) - trueStd) / trueStd);
    }
    expect(worst).toBeGreaterThan(1e-4);
    // In f32 arithmetic (as a GPU would run it) the one-pass formula is hopeless: r² ≈ 1e12 has an
    // f32 spacing of 65536, while var ≈ 0.06.
    const f = Math.fround;
    const xs = Array.from(c.rewards.subarray(0, 16));
    let s1 = 0;
    let s2 = 0;
    for (const x of xs) {
      s1 = f(s1 + x);
      s2 = f(s2 + f(x * x));
    }
    const m32 = f(s1 / 16);
    const naive32 = f(f(s2 / 16) - f(m32 * m32));
    const trueVar = stdOf(xs, 0) ** 2;
    expect(Math.abs(naive32 - trueVar) / trueVar).toBeGreaterThan(10);
  });

  it('NaN rewards propagate to their group (and through batch statistics to the batch)', async () => {
    const rewards = new Float32Array([1, Number.NaN, 0, 1, 0, 2]);
    const grpo = await run(rewards, { groupSize: 3 });
    expect(grpo.adv.slice(0, 3).every(Number.isNaN)).toBe(true);
    expect(grpo.adv.slice(3).every(Number.isFinite)).toBe(true);
    expect(Number.isNaN(grpo.mean[0]) && Number.isNaN(grpo.std[0])).toBe(true);
    expect(Array.from(grpo.deg)).toEqual([0, 0]);
    const batch = await run(rewards, { groupSize: 3, scale: 'batch' });
    expect(batch.adv.every(Number.isNaN)).toBe(true);
    const passk = await run(rewards, { groupSize: 3, estimator: 'grpo_passk' });
    expect(Array.from(passk.adv.slice(0, 3)).every(Number.isNaN)).toBe(true);
    expect(Array.from(passk.adv.slice(3)).some((x) => x > 0)).toBe(true);
    // gpg: NaN counts as nonzero in α (as torch.count_nonzero).
    const gpg = await run(rewards, { groupSize: 3, estimator: 'gpg' });
    const alpha = 6 / 4;
    expectClose(gpg.adv.slice(3), [alpha * (1 - 1), alpha * (0 - 1), alpha * (2 - 1)], { rtol: F32_RTOL });
  });

  it('is deterministic: the same inputs give the same bits', async () => {
    const c = makeAdvantagesCase({ seed: 31, groupSizes: raggedGroupSizes(31, 5000) });
    for (const estimator of ESTIMATORS.filter((e) => e !== 'grpo_passk')) {
      const a = await run(c.rewards, { ...layoutOptions(c), estimator });
      const b = await run(c.rewards, { ...layoutOptions(c), estimator });
      expect(Buffer.from(a.adv.buffer).equals(Buffer.from(b.adv.buffer))).toBe(true);
    }
  });
});

// ------------------------------------------------------------------ preset parity
/** Groups of a case as lists of indices (the trainers' `index` → id2score). */
function groupsOf(c: AdvantagesCase): number[][] {
  const out: number[][] = [];
  for (let g = 0; g < c.numGroups; g++) {
    const m: number[] = [];
    for (let i = c.groupOffsets[g]; i < c.groupOffsets[g + 1]; i++) m.push(i);
    out.push(m);
  }
  return out;
}
/** torch.std (unbiased) of a group as a list. */
const torchStd = (xs: number[]) => stdOf(xs, 1);

/** verl.utils.torch_functional.masked_whiten on a padded [R, T] array, then · mask. */
function verlMaskedWhiten(values: Float64Array, mask: Uint8Array): Float64Array {
  const maskSum = mask.reduce((a, b) => a + b, 0);
  let s = 0;
  for (let i = 0; i < values.length; i++) if (mask[i]) s += values[i] * mask[i];
  const mean = s / (maskSum + 1e-8); // masked_mean
  let s2 = 0;
  for (let i = 0; i < values.length; i++) if (mask[i]) s2 += (values[i] - mean) ** 2 * mask[i];
  let variance = s2 / (maskSum + 1e-8); // masked_mean(centered²)
  variance = variance * (maskSum / (maskSum - 1)); // bessel_correction
  const rstd = 1 / Math.sqrt(variance + 1e-8);
  return values.map((v, i) => (v - mean) * rstd * mask[i]);
}

/** Padded [R, Tmax] token array of per-response values and its mask. */
function padded(c: AdvantagesCase, perResponse: ArrayLike<number>) {
  let tmax = 0;
  for (let i = 0; i < c.numResponses; i++)
    tmax = Math.max(tmax, c.responseOffsets[i + 1] - c.responseOffsets[i]);
  const values = new Float64Array(c.numResponses * tmax);
  const mask = new Uint8Array(c.numResponses * tmax);
  for (let i = 0; i < c.numResponses; i++)
    for (let t = 0; t < c.responseOffsets[i + 1] - c.responseOffsets[i]; t++) {
      values[i * tmax + t] = perResponse[i];
      mask[i * tmax + t] = 1;
    }
  return { values, mask };
}
/** Padded back to packed tokens. */
function packedOf(c: AdvantagesCase, p: Float64Array): Float64Array {
  const tmax = c.numResponses === 0 ? 0 : p.length / c.numResponses;
  const out = new Float64Array(c.numTokens);
  for (let i = 0; i < c.numResponses; i++)
    for (let t = c.responseOffsets[i]; t < c.responseOffsets[i + 1]; t++)
      out[t] = p[i * tmax + t - c.responseOffsets[i]];
  return out;
}

/** verl core_algos.py, as written: id2mean / id2std with singletons (0, 1). */
const verl = {
  grpo(c: AdvantagesCase, norm = true, epsilon = 1e-6): Float64Array {
    const s = Float64Array.from(c.rewards);
    for (const idx of groupsOf(c)) {
      const xs = idx.map((i) => s[i]);
      const [m, sd] = xs.length === 1 ? [0, 1] : [meanOf(xs), torchStd(xs)];
      for (const i of idx) s[i] = norm ? (s[i] - m) / (sd + epsilon) : s[i] - m;
    }
    return s;
  },
  rloo(c: AdvantagesCase): Float64Array {
    const s = Float64Array.from(c.rewards);
    for (const idx of groupsOf(c)) {
      const xs = idx.map((i) => s[i]);
      const m = xs.length === 1 ? 0 : meanOf(xs);
      const n = xs.length;
      if (n > 1) for (const i of idx) s[i] = (s[i] * n) / (n - 1) - (m * n) / (n - 1);
    }
    return s;
  },
  opo(c: AdvantagesCase): Float64Array {
    const s = Float64Array.from(c.rewards);
    const L = (i: number) => c.responseOffsets[i + 1] - c.responseOffsets[i];
    for (const idx of groupsOf(c)) {
      const bsl = idx.length === 1 ? 0 : sum(idx.map((i) => L(i) * c.rewards[i])) / sum(idx.map((i) => L(i)));
      for (const i of idx) s[i] = s[i] - bsl;
    }
    return s;
  },
  passk(c: AdvantagesCase, epsilon = 1e-6): Float64Array {
    const adv = new Float64Array(c.numResponses);
    for (const idx of groupsOf(c)) {
      const xs = idx.map((i) => c.rewards[i]);
      const sorted = [...xs].sort((a, b) => b - a); // torch.topk(rewards, 2)
      const iMax = idx[xs.indexOf(sorted[0])];
      adv[iMax] = (sorted[0] - sorted[1]) / (torchStd(xs) + epsilon);
    }
    return adv;
  },
  gpg(c: AdvantagesCase): Float64Array {
    const s = Float64Array.from(c.rewards);
    const bsz = s.length;
    const m = s.filter((x) => x !== 0).length; // torch.count_nonzero
    const alpha = bsz / Math.max(m, 1);
    for (const idx of groupsOf(c)) {
      const xs = idx.map((i) => s[i]);
      const mean = xs.length === 1 ? 0 : meanOf(xs);
      for (const i of idx) s[i] = (alpha * (s[i] - mean)) / 1; // f_norm = 1
    }
    return s;
  },
  rppBaseline(c: AdvantagesCase): Float64Array {
    const s = Float64Array.from(c.rewards);
    for (const idx of groupsOf(c)) {
      const xs = idx.map((i) => s[i]);
      const m = xs.length === 1 ? 0 : meanOf(xs);
      for (const i of idx) s[i] = s[i] - m;
    }
    const p = padded(c, s); // scores.unsqueeze(-1).tile([1, T]) * response_mask
    for (let i = 0; i < p.values.length; i++) p.values[i] *= p.mask[i];
    return packedOf(c, verlMaskedWhiten(p.values, p.mask));
  },
};

/** TRL grpo_trainer.py _generate_and_score_completions (sum_then_normalize), fixed group size. */
function trlGrpo(rewards: Float32Array, numGenerations: number, scale: ScaleKind): Float64Array {
  const r = Float64Array.from(rewards);
  const n = numGenerations;
  const nanstd = (xs: number[]) => {
    const m = meanOf(xs);
    const variance = meanOf(xs.map((x) => (x - m) ** 2));
    return Math.sqrt(variance * (xs.length / (xs.length - 1)));
  };
  const out = new Float64Array(r.length);
  const batchStd = r.length > 1 ? nanstd(Array.from(r)) : 0;
  for (let g = 0; g < r.length / n; g++) {
    const xs = Array.from(r.subarray(g * n, g * n + n));
    const meanG = meanOf(xs);
    const stdG = scale === 'batch' ? batchStd : n > 1 ? nanstd(xs) : 0;
    for (let j = 0; j < n; j++) {
      let a = xs[j] - meanG;
      if (scale !== 'none') a = a / (stdG + 1e-4);
      out[g * n + j] = Number.isNaN(a) ? 0 : a; // torch.nan_to_num(advantages, nan=0.0)
    }
  }
  return out;
}

/** TRL rloo_trainer.py: baseline (sum − r)/(n − 1); num_generations == 1 → 0. */
function trlRloo(rewards: Float32Array, n: number): Float64Array {
  const out = new Float64Array(rewards.length);
  for (let g = 0; g < rewards.length / n; g++) {
    const xs = Array.from(rewards.subarray(g * n, g * n + n));
    const s = sum(xs);
    for (let j = 0; j < n; j++) out[g * n + j] = n > 1 ? xs[j] - (s - xs[j]) / (n - 1) : 0;
  }
  return out;
}

/** OpenRLHF experience_maker.py compute_advantages_and_returns, rewards.reshape(-1, n_samples). */
const openrlhf = {
  shaped(rewards: Float32Array, n: number, estimator: string): Float64Array {
    const out = new Float64Array(rewards.length);
    for (let g = 0; g < rewards.length / n; g++) {
      const xs = Array.from(rewards.subarray(g * n, g * n + n));
      const m = meanOf(xs);
      const sd = torchStd(xs); // rewards.std(-1): NaN for n = 1
      for (let j = 0; j < n; j++) {
        const x = xs[j];
        out[g * n + j] =
          estimator === 'rloo'
            ? x - (sum(xs) - x) / (n - 1)
            : estimator === 'group_norm'
              ? (x - m) / (sd + 1e-9)
              : x - m; // reinforce_baseline, dr_grpo
      }
    }
    return out;
  },
  /** reinforce_baseline: the shaped reward at every action token, normalised over all of them. */
  reinforceBaseline(c: AdvantagesCase, n: number): Float64Array {
    const shaped = openrlhf.shaped(c.rewards, n, 'reinforce_baseline');
    const p = padded(c, shaped);
    const numActions = p.mask.reduce((a, b) => a + b, 0);
    let s = 0;
    for (let i = 0; i < p.values.length; i++) s += p.values[i] * p.mask[i];
    const mean = s / numActions;
    let v = 0;
    for (let i = 0; i < p.values.length; i++) v += (p.values[i] - mean) ** 2 * p.mask[i];
    const rstd = 1 / Math.sqrt(Math.max(v / numActions, 1e-8)); // var.clamp(min=1e-8).rsqrt()
    return packedOf(
      c,
      p.values.map((x, i) => (x - mean) * rstd * p.mask[i]),
    );
  },
};

describe('presets: parity with each trainer, to f32 rounding', () => {
  const ragged = (seed: number, kind: 'continuous' | 'binary' = 'continuous') =>
    makeAdvantagesCase({
      seed,
      groupSizes: [...raggedGroupSizes(seed, 400, 12), 1, 1],
      rewards: kind,
      zeroVarianceFraction: 0.15,
      minLength: 1,
    });

  for (const kind of ['continuous', 'binary'] as const) {
    it(`verl (${kind}): grpo, dr_grpo, rloo, opo, gpg, reinforce_pp_baseline with singletons; grpo_passk`, async () => {
      const c = ragged(41, kind);
      const opts = { ...layoutOptions(c), preset: 'verl' as const };
      const cases: [Estimator, Float64Array][] = [
        ['grpo', verl.grpo(c)],
        ['dr_grpo', verl.grpo(c, false)],
        ['rloo', verl.rloo(c)],
        ['opo', verl.opo(c)],
        ['gpg', verl.gpg(c)],
        ['reinforce_pp_baseline', verl.rppBaseline(c)],
      ];
      for (const [estimator, expected] of cases) {
        const out = await run(c.rewards, { ...opts, estimator });
        expectClose(out.adv, expected, { rtol: F32_RTOL, what: `verl ${estimator}` });
      }
      // The verl singleton: r / (1 + 1e-6).
      const last = c.numResponses - 1;
      const grpo = await run(c.rewards, { ...opts, estimator: 'grpo' });
      expect(grpo.adv[last]).toBe(Math.fround(c.rewards[last] / (1 + 1e-6)));
      expect([grpo.mean[c.numGroups - 1], grpo.std[c.numGroups - 1], grpo.deg[c.numGroups - 1]]).toEqual([
        0, 1, 1,
      ]);
      const pk = makeAdvantagesCase({
        seed: 42,
        groupSizes: raggedGroupSizes(42, 300, 10).map((n) => n + 1),
      });
      const outPk = await run(pk.rewards, {
        groupOffsets: pk.groupOffsets,
        preset: 'verl',
        estimator: 'grpo_passk',
      });
      expectClose(outPk.adv, verl.passk(pk), { rtol: F32_RTOL, what: 'verl grpo_passk' });
    });

    it(`trl (${kind}): scale group / batch / none, rloo, and num_generations = 1`, async () => {
      const c = makeAdvantagesCase({
        seed: 51,
        groupSizes: new Array(50).fill(8),
        rewards: kind,
        zeroVarianceFraction: 0.2,
      });
      for (const scale of ['group', 'batch', 'none'] as const) {
        const out = await run(c.rewards, { groupSize: 8, preset: 'trl', scale });
        expectClose(out.adv, trlGrpo(c.rewards, 8, scale), { rtol: F32_RTOL, what: `trl grpo ${scale}` });
      }
      const rloo = await run(c.rewards, { groupSize: 8, preset: 'trl', estimator: 'rloo' });
      expectClose(rloo.adv, trlRloo(c.rewards, 8), { rtol: F32_RTOL, what: 'trl rloo' });
      for (const scale of ['group', 'batch', 'none'] as const) {
        const one = await run(c.rewards, { groupSize: 1, preset: 'trl', scale });
        expectClose(one.adv, trlGrpo(c.rewards, 1, scale), { rtol: F32_RTOL, what: `trl n=1 ${scale}` });
      }
      const rloo1 = await run(c.rewards, { groupSize: 1, preset: 'trl', estimator: 'rloo' });
      expectClose(rloo1.adv, trlRloo(c.rewards, 1), { rtol: F32_RTOL, what: 'trl rloo n=1' });
    });

    it(`openrlhf (${kind}): group_norm, rloo, dr_grpo, reinforce_baseline; n_samples_per_prompt = 1 → NaN`, async () => {
      for (const n of [8, 1]) {
        const c = makeAdvantagesCase({
          seed: 61 + n,
          groupSizes: new Array(n === 1 ? 40 : 60).fill(n),
          rewards: kind,
          zeroVarianceFraction: 0.2,
          minLength: 1,
        });
        const opts = { groupSize: n, responseOffsets: c.responseOffsets, preset: 'openrlhf' as const };
        const pairs: [Estimator, string][] = [
          ['grpo', 'group_norm'],
          ['rloo', 'rloo'],
          ['dr_grpo', 'dr_grpo'],
        ];
        for (const [estimator, theirs] of pairs) {
          const out = await run(c.rewards, { ...opts, estimator });
          expectClose(out.adv, openrlhf.shaped(c.rewards, n, theirs), {
            rtol: F32_RTOL,
            what: `openrlhf ${theirs} n=${n}`,
          });
        }
        const rb = await run(c.rewards, { ...opts, estimator: 'reinforce_pp_baseline' });
        expectClose(rb.adv, openrlhf.reinforceBaseline(c, n), {
          rtol: F32_RTOL,
          what: `openrlhf reinforce_baseline n=${n}`,
        });
      }
    });
  }

  it('explicit options override the preset', async () => {
    const c = ragged(71);
    const lo = layoutOptions(c);
    const trlEps6 = await run(c.rewards, { ...lo, preset: 'trl', eps: 1e-6 });
    checkAgainst(trlEps6, refAdvantages(c, { ...DEFAULTS, eps: 1e-6 }), 'trl + eps');
    const verlZero = await run(c.rewards, { ...lo, preset: 'verl', singleton: 'zero', std: 'population' });
    checkAgainst(verlZero, refAdvantages(c, { ...DEFAULTS, std: 'population' }), 'verl + singleton zero');
    const orlBatch = await run(c.rewards, { ...lo, preset: 'openrlhf', scale: 'batch' });
    checkAgainst(
      orlBatch,
      refAdvantages(c, { ...DEFAULTS, eps: 1e-9, singleton: 'nan', scale: 'batch' }),
      'orl',
    );
  });
});

// ------------------------------------------------------------------ expandToTokens and whiten
describe('expandToTokens and whiten', () => {
  it('expandToTokens broadcasts each value over its tokens (empty responses included)', async () => {
    const c = makeAdvantagesCase({ seed: 81, groupSizes: raggedGroupSizes(81, 500) });
    const t = await ctx.expandToTokens(c.rewards, c.responseOffsets);
    const got = await t.read();
    const expected: number[] = [];
    for (let i = 0; i < c.numResponses; i++)
      for (let k = c.responseOffsets[i]; k < c.responseOffsets[i + 1]; k++) expected.push(c.rewards[i]);
    expect(t.shape).toEqual([c.numTokens]);
    expect(Array.from(got)).toEqual(expected);
    const empty = await ctx.expandToTokens(new Float32Array(0), new Int32Array([0]));
    expect(empty.shape).toEqual([0]);
  });

  it('whiten: default (TRL masked_whiten), with and without mask, keepMean, any shape', async () => {
    const c = makeAdvantagesCase({ seed: 82, groupSizes: [997] });
    const x = Array.from(c.rewards);
    const maskArr = Uint8Array.from(x, (_, i) => (i % 3 === 0 ? 0 : 1 + (i % 2)));
    const all = await (await ctx.whiten(c.rewards)).read();
    expectClose(
      all,
      refWhiten(
        x,
        x.map(() => true),
        0,
        'sample',
        false,
      ),
      { rtol: F32_RTOL },
    );
    const masked = await (await ctx.whiten(c.rewards, { mask: maskArr })).read();
    const valid = Array.from(maskArr, (m) => m !== 0);
    expectClose(masked, refWhiten(x, valid, 0, 'sample', false), { rtol: F32_RTOL });
    expect(masked.filter((_, i) => !valid[i]).every((v) => v === 0)).toBe(true);
    const kept = await (await ctx.whiten(c.rewards, { mask: maskArr, keepMean: true })).read();
    expectClose(kept, refWhiten(x, valid, 0, 'sample', false, true), { rtol: F32_RTOL });
    // A 2-D tensor and mask keep their shape.
    const v2 = ctx.tensor(c.rewards.slice(0, 996), [12, 83], 'f32');
    const m2 = ctx.tensor(maskArr.slice(0, 996), [12, 83], 'u8');
    const w2 = await ctx.whiten(v2, { mask: m2 });
    expect(w2.shape).toEqual([12, 83]);
    expectClose(await w2.read(), refWhiten(x.slice(0, 996), valid.slice(0, 996), 0, 'sample', false), {
      rtol: F32_RTOL,
    });
  });

  it('whiten preset verl = masked_whiten (mask sum + 1e-8, Bessel), openrlhf = population, clamp', async () => {
    const c = makeAdvantagesCase({ seed: 83, groupSizes: [1500] });
    const mask = Uint8Array.from(c.rewards, (_, i) => (i % 5 === 2 ? 0 : 1));
    const vOut = await (await ctx.whiten(c.rewards, { mask, preset: 'verl' })).read();
    expectClose(vOut, verlMaskedWhiten(Float64Array.from(c.rewards), mask), { rtol: F32_RTOL, what: 'verl' });
    const oOut = await (await ctx.whiten(c.rewards, { mask, preset: 'openrlhf' })).read();
    const valid = Array.from(mask, (m) => m !== 0);
    expectClose(oOut, refWhiten(Array.from(c.rewards), valid, 0, 'population', true), { rtol: F32_RTOL });
    const tOut = await (await ctx.whiten(c.rewards, { mask, preset: 'trl' })).read();
    expectClose(tOut, refWhiten(Array.from(c.rewards), valid, 0, 'sample', false), { rtol: F32_RTOL });
  });

  it('whiten over fewer than 2 valid elements: none → zeros, one → NaN (sample) or 0 (openrlhf)', async () => {
    const x = new Float32Array([3, Number.NaN, 5]);
    const none = await (await ctx.whiten(x, { mask: new Uint8Array([0, 0, 0]) })).read();
    expect(Array.from(none)).toEqual([0, 0, 0]);
    const one = await (await ctx.whiten(x, { mask: new Uint8Array([0, 0, 1]) })).read();
    expect(Array.from(one)).toEqual([0, 0, Number.NaN]);
    const oneVerl = await (await ctx.whiten(x, { mask: new Uint8Array([0, 0, 1]), preset: 'verl' })).read();
    expect(Array.from(oneVerl)).toEqual([0, 0, Number.NaN]);
    const oneOrl = await (
      await ctx.whiten(x, { mask: new Uint8Array([1, 0, 0]), preset: 'openrlhf' })
    ).read();
    expect(Array.from(oneOrl)).toEqual([0, 0, 0]);
    // A NaN outside the mask does not leak in.
    const two = await (await ctx.whiten(x, { mask: new Uint8Array([1, 0, 1]) })).read();
    expect(Number.isFinite(two[0]) && two[1] === 0 && Number.isFinite(two[2])).toBe(true);
    const empty = await ctx.whiten(new Float32Array(0));
    expect(empty.shape).toEqual([0]);
  });
});

// ------------------------------------------------------------------ poison, inputs, errors
describe('advantages family: outputs fully written, inputs untouched', () => {
  it('no output keeps the poison, for every estimator, expandToTokens and whiten', async () => {
    setOutputPoison(POISON_F32);
    const c = makeAdvantagesCase({
      seed: 91,
      groupSizes: [3, 1, 0, 4, 2, 5, 1],
      zeroVarianceFraction: 0.3,
    });
    for (const estimator of ESTIMATORS) {
      for (const singleton of ['zero', 'mean0', 'nan'] as const) {
        const cc = estimator === 'grpo_passk' ? makeAdvantagesCase({ seed: 92, groupSizes: [3, 2, 4] }) : c;
        const out = await run(cc.rewards, { ...layoutOptions(cc), estimator, singleton });
        expectNoPoison(out.adv, `${estimator} advantages`);
        expectNoPoison(out.mean, `${estimator} mean`);
        expectNoPoison(out.std, `${estimator} std`);
        expect(
          out.deg.every((d) => d === 0 || d === 1),
          `${estimator} degenerate`,
        ).toBe(true);
      }
    }
    expectNoPoison(await (await ctx.expandToTokens(c.rewards, c.responseOffsets)).read(), 'expandToTokens');
    const mask = Uint8Array.from(c.rewards, (_, i) => i % 2);
    expectNoPoison(await (await ctx.whiten(c.rewards, { mask })).read(), 'whiten');
  });

  it('never modifies its inputs (host arrays and tensors)', async () => {
    const c = makeAdvantagesCase({ seed: 93, groupSizes: [4, 1, 3, 3] });
    const copies = [c.rewards.slice(), c.groupOffsets.slice(), c.responseOffsets.slice()];
    const t = ctx.tensor(c.rewards.slice(), [c.numResponses], 'f32');
    for (const estimator of ESTIMATORS.filter((e) => e !== 'grpo_passk')) {
      await run(c.rewards, { ...layoutOptions(c), estimator, preset: 'verl' });
      const o = await ctx.advantages(t, { ...layoutOptions(c), estimator });
      o.advantages.dispose();
    }
    await ctx.expandToTokens(t, c.responseOffsets);
    const mask = new Uint8Array(c.numResponses).fill(1);
    await ctx.whiten(t, { mask, preset: 'verl' });
    expect([c.rewards, c.groupOffsets, c.responseOffsets]).toEqual(copies);
    expect(await t.read()).toEqual(copies[0]);
    expect(Array.from(mask).every((m) => m === 1)).toBe(true);
  });
});

describe('advantages family: typed errors', () => {
  const expectError = async (p: () => Promise<unknown>, code: string, argument: string) => {
    let err: unknown;
    try {
      await p();
    } catch (e) {
      err = e;
    }
    expect(err, `expected ${code} on ${argument}`).toBeInstanceOf(GrpoKernelsError);
    const ge = err as GrpoKernelsError;
    expect([ge.code, ge.argument]).toEqual([code, argument]);
    expect(ge.message.startsWith(argument)).toBe(true);
  };
  const r4 = new Float32Array([1, 0, 1, 0]);
  const go = new Int32Array([0, 2, 4]);
  const ro = new Int32Array([0, 1, 2, 3, 4]);

  it('rewards: dtype, shape, disposed', async () => {
    await expectError(() => ctx.advantages(new Int32Array(4) as never, { groupSize: 2 }), 'DTYPE', 'rewards');
    await expectError(() => ctx.advantages(3 as never, { groupSize: 2 }), 'DTYPE', 'rewards');
    await expectError(
      () => ctx.advantages(ctx.tensor(new Float32Array(4), [2, 2], 'f32'), { groupSize: 2 }),
      'SHAPE',
      'rewards',
    );
    const d = ctx.tensor(r4.slice(), [4], 'f32');
    d.dispose();
    await expectError(() => ctx.advantages(d, { groupSize: 2 }), 'SHAPE', 'rewards');
    await expectError(() => ctx.advantages(r4, null as never), 'DTYPE', 'options');
  });

  it('layout: groupOffsets / groupSize / responseOffsets', async () => {
    await expectError(() => ctx.advantages(r4, {}), 'LAYOUT', 'groupOffsets');
    await expectError(() => ctx.advantages(r4, { groupOffsets: go, groupSize: 2 }), 'LAYOUT', 'groupOffsets');
    await expectError(
      () => ctx.advantages(r4, { groupOffsets: new Int32Array([1, 4]) }),
      'LAYOUT',
      'groupOffsets',
    );
    await expectError(
      () => ctx.advantages(r4, { groupOffsets: new Int32Array([0, 3, 2, 4]) }),
      'LAYOUT',
      'groupOffsets',
    );
    // A group with more responses than exist.
    await expectError(
      () => ctx.advantages(r4, { groupOffsets: new Int32Array([0, 2, 5]) }),
      'LAYOUT',
      'groupOffsets',
    );
    await expectError(
      () => ctx.advantages(r4, { groupOffsets: new Int32Array([0, 2]) }),
      'LAYOUT',
      'groupOffsets',
    );
    await expectError(
      () => ctx.advantages(r4, { groupOffsets: new Float32Array([0, 4]) as never }),
      'DTYPE',
      'groupOffsets',
    );
    await expectError(() => ctx.advantages(r4, { groupSize: 0 }), 'RANGE', 'groupSize');
    await expectError(() => ctx.advantages(r4, { groupSize: 1.5 }), 'RANGE', 'groupSize');
    await expectError(() => ctx.advantages(r4, { groupSize: 3 }), 'LAYOUT', 'groupSize');
    await expectError(() => ctx.advantages(r4, { groupSize: 8 }), 'LAYOUT', 'groupSize');
    for (const estimator of ['opo', 'reinforce_pp_baseline'] as const)
      await expectError(
        () => ctx.advantages(r4, { groupOffsets: go, estimator }),
        'LAYOUT',
        'responseOffsets',
      );
    await expectError(
      () =>
        ctx.advantages(r4, {
          groupOffsets: go,
          estimator: 'opo',
          responseOffsets: new Int32Array([0, 1, 2, 3]),
        }),
      'LAYOUT',
      'responseOffsets',
    );
    await expectError(
      () => ctx.advantages(r4, { groupOffsets: go, responseOffsets: new Int32Array([0, 2, 1, 3, 4]) }),
      'LAYOUT',
      'responseOffsets',
    );
    await expectError(
      () => ctx.advantages(r4, { groupOffsets: new Int32Array([0, 1, 4]), estimator: 'grpo_passk' }),
      'LAYOUT',
      'groupOffsets',
    );
    await expectError(
      () => ctx.advantages(r4, { groupSize: 1, estimator: 'grpo_passk' }),
      'LAYOUT',
      'groupSize',
    );
  });

  it('ranges and enums', async () => {
    for (const eps of [-1e-6, Number.NaN, Number.POSITIVE_INFINITY])
      await expectError(() => ctx.advantages(r4, { groupOffsets: go, eps: eps as never }), 'RANGE', 'eps');
    // One rule for every option: a wrong type is DTYPE (naming the type), not RANGE.
    for (const eps of ['1e-6', null])
      await expectError(() => ctx.advantages(r4, { groupOffsets: go, eps: eps as never }), 'DTYPE', 'eps');
    const enums: [keyof AdvantagesOptions, string][] = [
      ['estimator', 'ppo'],
      ['preset', 'openrlhf2'],
      ['std', 'biased'],
      ['scale', 'token'],
      ['singleton', 'drop'],
    ];
    for (const [key, bad] of enums)
      await expectError(() => ctx.advantages(r4, { groupOffsets: go, [key]: bad }), 'RANGE', key);
    // The ok path of the same inputs, so the errors above are the options' fault.
    await expect(ctx.advantages(r4, { groupOffsets: go, responseOffsets: ro })).resolves.toBeDefined();
  });

  it('expandToTokens and whiten arguments', async () => {
    await expectError(() => ctx.expandToTokens(new Int32Array(4) as never, ro), 'DTYPE', 'values');
    await expectError(() => ctx.expandToTokens(r4, new Int32Array([0, 1, 2])), 'LAYOUT', 'responseOffsets');
    await expectError(() => ctx.expandToTokens(r4, [0, 1, 2, 3, 4] as never), 'DTYPE', 'responseOffsets');
    await expectError(
      () => ctx.expandToTokens(r4, new Int32Array([0, 1, 2, 1, 4])),
      'LAYOUT',
      'responseOffsets',
    );
    await expectError(() => ctx.whiten(r4, { mask: new Uint8Array(3) }), 'SHAPE', 'mask');
    await expectError(() => ctx.whiten(r4, { mask: new Float32Array(4) as never }), 'DTYPE', 'mask');
    await expectError(() => ctx.whiten(r4, { preset: 'deepspeed' as never }), 'RANGE', 'preset');
    await expectError(() => ctx.whiten(r4, { keepMean: 1 as never }), 'DTYPE', 'keepMean');
    await expectError(() => ctx.whiten(new Uint8Array(4) as never), 'DTYPE', 'values');
    await expectError(() => ctx.whiten(r4, 'verl' as never), 'DTYPE', 'options');
    const v2 = ctx.tensor(new Float32Array(6), [2, 3], 'f32');
    await expectError(() => ctx.whiten(v2, { mask: new Uint8Array(6) }), 'SHAPE', 'mask');
  });
});
