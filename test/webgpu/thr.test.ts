/**
 * The THR family on the webgpu backend: what only webgpu has. The numerical cases (restrictedVocab,
 * tokenHiddenReward on every shape, dtype, weighting and degenerate group, thrReweight on every mode)
 * run on every backend from the case tables (test/cases/thr.ts, test/thr.cases.test.ts); here are the
 * tuning knobs (f16 hidden states through unpacked words without shader-f16; groups chunked by
 * thrTuning.maxChunkBytes), determinism and buffer lifetimes. Tile shapes: test/webgpu/thr-tiles.test.ts.
 *
 * Every numerical check here uses the tables' float64 reference and tolerance (test/cases/tolerances.ts)
 * through expectThrWithin.
 */
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import type { Weighting } from '../../src/backends/backend.js';
import { thrTuning } from '../../src/backends/webgpu/thr.js';
import { setOutputPoison } from '../../src/debug.js';
import type { FloatDType } from '../../src/dtypes.js';
import { GrpoKernelsError } from '../../src/errors.js';
import { expectThrWithin } from '../cases/thr.js';
import {
  DEGENERATE_GROUPS,
  f32Bits,
  largestGroupBytes,
  makeThrCase,
  randomGroups,
  runThr,
  type ThrCase,
} from '../fixtures/thr.js';
import { POISON_F32 } from '../util/compare.js';
import { randomNormal } from '../util/rng.js';
import { gpu, noGpu, requireAdapter, resetTuning } from './setup.js';

requireAdapter();

/** Groups that exercise every degenerate rule (docs/THR.md item 6). */

interface ThrOut {
  thr: Float32Array;
  tau: Float32Array;
}

/** tokenHiddenReward on webgpu against the float64 reference, with the tables' tolerance. */
async function compareThr(
  c: ThrCase,
  opts: { weighting?: Weighting; beta?: number },
  what: string,
): Promise<ThrOut> {
  const got = await runThr(gpu!.ctx, c, opts);
  expectThrWithin(got, c, opts, what);
  return got;
}

const bits = f32Bits;

describe.skipIf(noGpu)('webgpu tokenHiddenReward: unpacked f16, chunks of groups, determinism', () => {
  const b = gpu?.backend;
  beforeEach(() => {
    resetTuning(b!);
    thrTuning.maxChunkBytes = undefined;
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

  it('chunks of groups (forced small) give the same bits as one chunk; an M_g too large for a binding is SHAPE', async () => {
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
    // (1000 bytes: below every group's M; a group's rows alone would run in parts, below)
    expect((err as GrpoKernelsError).message).toMatch(/^vocab:/);
  });

  it('a group whose probs, hidden rows or M exceed one binding runs in parts, with the bits of one pass (THR, tau, thrAggregate, thrScore), f32 and bf16', async () => {
    // Correct and incorrect responses interleaved, so that thr_m's runs of correct tokens are cut both
    // at multiples of 16 and, where 16 do not fit one part's span, short of them.
    const big = [37, -5, 3, -22, 9, 40, -1, 17, -30, 6, -12, 25].map((n) => ({
      length: Math.abs(n),
      correct: n > 0,
    }));
    for (const dtype of ['f32', 'bf16'] as FloatDType[]) {
      const c = makeThrCase({
        seed: 45,
        groups: [...randomGroups(45, 2, 5, 12), big, ...randomGroups(46, 2, 5, 12)],
        dim: 20,
        vocabSize: 400,
        dtype,
      });
      const K = c.vocabOffsets[3] - c.vocabOffsets[2];
      expect(K, 'the big group has more than one 128-row block of V*').toBeGreaterThan(128);
      const ctx = gpu!.ctx;
      const run = async () => {
        const vocab = await ctx.restrictedVocab(c.tokens, c.layout);
        const hidden = ctx.tensor(c.hidden as Float32Array, [c.numTokens, c.dim], dtype as 'f32');
        const base = { hidden, probs: c.probs, vocab, layout: c.layout, correct: c.correct };
        const whole = await ctx.tokenHiddenReward(base);
        const agg = await ctx.thrAggregate(base);
        const halves = await ctx.thrScore({ ...base, aggregate: agg });
        const out = {
          thr: bits((await whole.thr.read()) as Float32Array),
          tau: bits((await whole.tau.read()) as Float32Array),
          agg: bits((await agg.read()) as Float32Array),
          score: bits((await halves.thr.read()) as Float32Array),
        };
        for (const t of [
          hidden,
          whole.thr,
          whole.tau,
          agg,
          halves.thr,
          halves.tau,
          vocab.offsets,
          vocab.columns,
        ])
          t.dispose();
        vocab.tokenColumn.dispose();
        return out;
      };
      thrTuning.maxChunkBytes = undefined;
      await compareThr(c, {}, `${dtype}, one pass`);
      const one = await run();
      expect(thrTuning.lastSplit, 'no split').toBe(0);
      // The big group's M (K × 20 f32) as the cap: its rows in parts of 20 tokens. 128 rows of M: its
      // M in two blocks of V* rows too, and its rows in parts of cap / 4K tokens (under 16).
      for (const [cap, what] of [
        [K * c.dim * 4, 'rows'],
        [128 * c.dim * 4, 'rows and V*'],
      ] as const) {
        thrTuning.maxChunkBytes = cap;
        const split = await compareThr(c, {}, `${dtype}, split by ${what}`);
        expect(thrTuning.lastSplit, 'the big group split').toBeGreaterThanOrEqual(1);
        const parts = await run();
        const label = `${dtype}, split by ${what}`;
        expect(bits(split.thr), `${label}: THR`).toEqual(one.thr);
        expect(parts.thr, `${label}: THR`).toEqual(one.thr);
        expect(parts.tau, `${label}: tau`).toEqual(one.tau);
        expect(parts.agg, `${label}: thrAggregate`).toEqual(one.agg);
        expect(parts.score, `${label}: thrScore`).toEqual(one.score);
      }
    }
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
});

describe.skipIf(noGpu)('webgpu THR: buffer lifetimes', () => {
  beforeEach(() => {
    resetTuning(gpu!.backend);
    setOutputPoison(POISON_F32);
  });
  afterEach(() => setOutputPoison(undefined));

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
