/**
 * The THR family on the webgpu backend (restrictedVocab, tokenHiddenReward, thrReweight) against
 * the cpu reference (float64 accumulation, one rounding to f32), on the seeded cases of
 * test/fixtures/thr.ts.
 *
 * Tolerances: max relative error over a tensor (test/util/compare.ts: max|a − b| / max|b|).
 * - restrictedVocab: integers, exact (it runs the reference's sort on the host).
 * - THR_RTOL = 5e-6 (thr relative to max|THR| of the tensor; tau relative to max|tau|). The
 *   kernel forms M_g = Σ_{u∈P} g_u (w_u h_u)ᵀ in f32 (T⁺_g terms per element, in token order),
 *   then s_t = Σ_v g_t[v] Σ_k M[v,k] h_t[k] (d·K products: U = H·Mᵀ summed over d in order,
 *   then each token's K columns in 4-wide, 16-lane and slice order), where the
 *   reference does all of it in f64. An f32 sum of n terms errs by ~√n·2^-24 (typical; n·2^-24
 *   worst case) of the sum of the terms' magnitudes, and s_t cancels: its terms are ~|g||M||h|
 *   while |s_t| may be far smaller, so the error is bounded relative to the largest |THR| of the
 *   tensor, not per element. Here T⁺ ≲ 60 and d·K ≲ 10⁴ give ~(√60 + √10⁴)·6e-8 ≈ 7e-6 as the
 *   typical bound; measured on lavapipe ≤ 3.4e-7 (thr) and ≤ 2.6e-7 (tau, a mean and a min of
 *   THR: no added cancellation). f16/bf16 hidden states are decoded exactly on both sides, so the
 *   bound does not depend on the dtype.
 * - LONG_RTOL = 1e-5 for the 4 × 600-token group (T⁺ = 1200 terms per M element, |V*| ≈ 400):
 *   the bound grows with √T⁺ and √(d·K); measured 1.2e-6 (thr), 6.6e-7 (tau).
 * - thrReweight: (1 + p·sign)·A and eta·A are each formed in f32 with two roundings where the
 *   reference rounds once: ≤ 1 ulp per element → REWEIGHT_RTOL = 2.4e-7 (2^-22).
 */
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import type { Weighting } from '../../src/backends/backend.js';
import { thrTuning } from '../../src/backends/webgpu/thr.js';
import type { Context } from '../../src/context.js';
import { setOutputPoison } from '../../src/debug.js';
import type { FloatDType } from '../../src/dtypes.js';
import { GrpoKernelsError } from '../../src/errors.js';
import {
  DEGENERATE_GROUPS,
  f32Bits,
  largestGroupBytes,
  makeReweightCase,
  makeThrCase,
  REWEIGHT_VARIANTS,
  randomGroups,
  runThr,
  type ThrCase,
  uniformGroup,
} from '../fixtures/thr.js';
import { expectClose, expectNoPoison, POISON_F32 } from '../util/compare.js';
import { randomNormal } from '../util/rng.js';
import { cpu, gpu, noGpu, requireAdapter, resetTuning } from './setup.js';

const THR_RTOL = 5e-6;
const LONG_RTOL = 1e-5;
const REWEIGHT_RTOL = 2 ** -22;

requireAdapter();

/** Groups that exercise every degenerate rule (docs/THR.md item 6). */

interface ThrOut {
  thr: Float32Array;
  tau: Float32Array;
}

async function compareThr(
  c: ThrCase,
  opts: { weighting?: Weighting; beta?: number },
  what: string,
  rtol = THR_RTOL,
): Promise<ThrOut> {
  const got = await runThr(gpu!.ctx, c, opts);
  const want = await runThr(cpu, c, opts);
  expectClose(got.thr, want.thr, { rtol, what: `${what} thr` });
  expectClose(got.tau, want.tau, { rtol, what: `${what} tau` });
  return got;
}

const bits = f32Bits;

describe.skipIf(noGpu)('webgpu restrictedVocab vs cpu', () => {
  it('same offsets, columns and tokenColumn (ragged groups, empty responses and groups)', async () => {
    const c = makeThrCase({
      seed: 1,
      groups: [...randomGroups(1, 6, 8, 30), ...DEGENERATE_GROUPS],
      dim: 1,
      vocabSize: 1000,
    });
    const got = await gpu!.ctx.restrictedVocab(c.tokens, c.layout);
    const want = await cpu.restrictedVocab(c.tokens, c.layout);
    for (const k of ['offsets', 'columns', 'tokenColumn'] as const) {
      expect(got[k].backend).toBe('webgpu');
      expect(Array.from(await got[k].read()), k).toEqual(Array.from(await want[k].read()));
    }
    expect(Array.from(await got.columns.read())).toEqual(Array.from(c.columns));
  });
});

describe.skipIf(noGpu)('webgpu tokenHiddenReward vs cpu', () => {
  const b = gpu?.backend;
  beforeEach(() => {
    resetTuning(b!);
    thrTuning.maxChunkBytes = undefined;
  });

  it('random groups of several sizes with degenerate ones, d = 13 and 70, both weightings, beta', async () => {
    let seed = 10;
    for (const dim of [13, 70, 1]) {
      for (const weighting of ['length', 'none'] as const) {
        const groups = [
          ...randomGroups(seed, 7, 9, 24),
          ...DEGENERATE_GROUPS,
          ...randomGroups(seed + 1, 2, 3, 5),
        ];
        groups.splice(2, 0, uniformGroup(2, 1, 1)); // two one-token responses
        const c = makeThrCase({ seed: seed++, groups, dim, vocabSize: 300 });
        const beta = weighting === 'none' ? 0.7 : 1;
        const got = await compareThr(c, { weighting, beta }, `d=${dim} ${weighting}`);
        // Degenerate groups: THR 0 and tau NaN.
        const ro = c.layout.responseOffsets;
        const go = c.layout.groupOffsets;
        const d0 = groups.indexOf(DEGENERATE_GROUPS[0]);
        for (let g = d0; g < d0 + DEGENERATE_GROUPS.length; g++) {
          expect(Number.isNaN(got.tau[g]), `tau[${g}] of a degenerate group`).toBe(true);
          for (let t = ro[go[g]]; t < ro[go[g + 1]]; t++) expect(got.thr[t]).toBe(0);
        }
      }
    }
  });

  it('f16 and bf16 hidden states (f16 natively and unpacked), d = 70', async () => {
    for (const dtype of ['f16', 'bf16'] as FloatDType[]) {
      const c = makeThrCase({ seed: 20, groups: randomGroups(20, 5, 8, 20), dim: 70, vocabSize: 200, dtype });
      await compareThr(c, {}, dtype);
      if (dtype === 'f16') {
        b!.kit.tuning.shaderF16 = false;
        await compareThr(c, {}, 'f16 unpacked');
      }
    }
  });

  it('a long group (4 × 600 tokens, |V*| ≈ 400) and a wide one (d = 257), exact |V*| = 16·k ± 1', async () => {
    const long = makeThrCase({ seed: 30, groups: [uniformGroup(4, 600, 2)], dim: 40, vocabSize: 600 });
    await compareThr(long, {}, 'long', LONG_RTOL);
    for (const K of [15, 17, 32]) {
      const c = makeThrCase({
        seed: 31 + K,
        groups: [uniformGroup(3, 12, 1), uniformGroup(5, 7, 3)],
        dim: 257,
        vocabSize: 100,
        exactVocab: K,
      });
      await compareThr(c, { weighting: 'none' }, `d=257 K=${K}`);
    }
  });

  it('chunks of groups (forced small) give the same bits as one chunk; too large a group is SHAPE', async () => {
    const c = makeThrCase({
      seed: 40,
      groups: [...randomGroups(40, 6, 6, 16), DEGENERATE_GROUPS[2], ...randomGroups(41, 3, 6, 16)],
      dim: 33,
      vocabSize: 150,
    });
    const one = await compareThr(c, {}, 'one chunk');
    // A cap of the largest single group's need: several chunks.
    thrTuning.maxChunkBytes = largestGroupBytes(c);
    const chunked = await compareThr(c, {}, 'chunked');
    expect(thrTuning.lastChunks).toBeGreaterThan(3);
    expect(bits(chunked.thr)).toEqual(bits(one.thr));
    expect(bits(chunked.tau)).toEqual(bits(one.tau));
    thrTuning.maxChunkBytes = 1000;
    const err = await runThr(gpu!.ctx, c).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(GrpoKernelsError);
    expect((err as GrpoKernelsError).code).toBe('SHAPE');
    expect((err as GrpoKernelsError).message).toMatch(/^(vocab|probs|hidden):/);
  });

  it('is deterministic: two runs give the same bits; only degenerate groups: THR 0, tau NaN', async () => {
    const c = makeThrCase({ seed: 50, groups: randomGroups(50, 6, 8, 30), dim: 70, vocabSize: 300 });
    const a1 = await runThr(gpu!.ctx, c);
    const a2 = await runThr(gpu!.ctx, c);
    expect(bits(a2.thr)).toEqual(bits(a1.thr));
    expect(bits(a2.tau)).toEqual(bits(a1.tau));
    const d = makeThrCase({ seed: 51, groups: DEGENERATE_GROUPS, dim: 5, vocabSize: 20 });
    await compareThr(d, {}, 'all degenerate');
  });

  it('NaN in a hidden state propagates to its group, as in the reference', async () => {
    const c = makeThrCase({ seed: 60, groups: randomGroups(60, 3, 5, 10), dim: 13, vocabSize: 50 });
    (c.hidden as Float32Array)[3 * 13 + 4] = Number.NaN;
    await compareThr(c, {}, 'NaN hidden');
  });
});

// ---------------------------------------------------------------------------------- thrReweight
describe.skipIf(noGpu)('webgpu thrReweight vs cpu', () => {
  // Synthetic THR and tau (the op takes any): ties with tau, zeros, NaN THR, NaN advantage,
  // degenerate groups with a finite tau, rho = 1/4 and 1/2, and 40 more random groups.
  const { c, A, thr, tau } = makeReweightCase({ extraGroups: randomGroups(42, 40, 8, 40), nanInputs: true });

  beforeEach(() => setOutputPoison(POISON_F32));
  afterEach(() => setOutputPoison(undefined));

  it('every mode, p, mask and eta (all outputs written)', async () => {
    for (const v of REWEIGHT_VARIANTS) {
      const run1 = async (ctx: Context) =>
        (
          await ctx.thrReweight({ tokenAdvantages: A, thr, tau, layout: c.layout, correct: c.correct, ...v })
        ).read();
      const got = await run1(gpu!.ctx);
      const want = await run1(cpu);
      expectNoPoison(got, `reweight ${JSON.stringify(v)}`);
      expectClose(got, want, { rtol: REWEIGHT_RTOL, what: `reweight ${JSON.stringify(v)}` });
    }
  });
});

describe.skipIf(noGpu)('webgpu THR poison: every output element is written', () => {
  beforeEach(() => {
    resetTuning(gpu!.backend);
    setOutputPoison(POISON_F32);
  });
  afterEach(() => setOutputPoison(undefined));

  it('tokenHiddenReward thr and tau (degenerate groups included), restrictedVocab', async () => {
    const c = makeThrCase({
      seed: 70,
      groups: [...randomGroups(70, 4, 6, 12), ...DEGENERATE_GROUPS],
      dim: 13,
      vocabSize: 80,
    });
    const got = await runThr(gpu!.ctx, c);
    expectNoPoison(got.thr, 'thr');
    expectNoPoison(got.tau, 'tau');
  });

  it('50 tokenHiddenReward + thrReweight calls with dispose leave live GPU bytes unchanged', async () => {
    const c = makeThrCase({ seed: 71, groups: randomGroups(71, 4, 6, 12), dim: 13, vocabSize: 80 });
    const b = gpu!.backend;
    const hidden = gpu!.ctx.tensor(c.hidden as Float32Array, [c.numTokens, c.dim]);
    const live = b.runtime.liveBytes;
    const A = Float32Array.from(randomNormal(72, c.numTokens));
    for (let i = 0; i < 50; i++) {
      thrTuning.maxChunkBytes = i % 2 ? largestGroupBytes(c) : undefined;
      const vocab = await gpu!.ctx.restrictedVocab(c.tokens, c.layout);
      const res = await gpu!.ctx.tokenHiddenReward({
        hidden,
        probs: c.probs,
        vocab,
        layout: c.layout,
        correct: c.correct,
      });
      const out = await gpu!.ctx.thrReweight({
        tokenAdvantages: A,
        thr: res.thr,
        tau: res.tau,
        layout: c.layout,
        correct: c.correct,
        p: 0.1,
      });
      for (const t of [out, res.thr, res.tau, vocab.offsets, vocab.columns, vocab.tokenColumn]) t.dispose();
    }
    thrTuning.maxChunkBytes = undefined;
    await gpu!.ctx.synchronize();
    expect(b.runtime.liveBytes).toBe(live);
    hidden.dispose();
  });
});
