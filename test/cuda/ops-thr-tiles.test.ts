/**
 * CUDA tokenHiddenReward's tiles (native/cuda/thr.cu: 128 × 128 output tiles of mma.sync m16n8k8
 * TF32, k-steps of 32 through a 3-stage cp.async pipeline, 128-column V* tiles whose partial s are
 * folded in order) against float64 brute force (bruteThr, the pairwise double sum of docs/THR.md item 3),
 * on shapes that leave partial tiles everywhere, and their batch invariance. Every case runs in both
 * tile configurations (THR_TILE_CONFIGS: the device's, and the small one of 99 KiB GPUs, 64 × 128 M
 * tiles and 2-stage pipelines, forced by thrTuning.smallTiles), whose partial tiles differ (|V*| 129:
 * one 128-row M tile and a 1-row one, or two 64-row tiles and a 1-row one).
 *
 * Shapes: token counts and |V*| that are not multiples of 128 or 32 (one past and one short of a
 * tile, and a last tile of a few rows or columns), d not a multiple of 32 (a short last k-step) nor of
 * 4 (hidden rows not 16-byte aligned: the 4-byte copies for f32, plain loads for f16/bf16), groups
 * smaller than a tile (several per launch, a degenerate one among them), one group larger than several
 * tiles in both directions, |V*| a multiple of 4 (q rows copied 16 bytes at a time) or not (4 bytes).
 *
 * Bounds (per token t of group g, |THR_t − THR*_t| / max_{u∈g} |THR*_u|, tau_g likewise; see
 * thrGroupErrors): each precision mode's documented bound ('f32' 3e-4, 'tf32' 3e-3), and 'f32' also
 * 1e-5 at these sizes (≤ 350 tokens per group, d ≤ 256), as in ops-thr-precision.test.ts: a TF32-grade
 * kernel measures 1e-4 and above, so a tile that silently drops the split's low parts fails.
 *
 * Batch invariance: a probe group (140 tokens, |V*| 132: two token tiles and two V* tiles, both partial)
 * gives the same bits of THR and tau alone, among other groups at any position (its q block then starts
 * at offsets that are and are not 16-byte aligned, switching the copy width), and with every group in
 * its own M batch; for f32 and bf16 hidden states, in both precision modes, in each configuration.
 *
 * Across configurations: every output element of M_g and s takes the same operations in the same
 * order in both (the tile shape decides which block computes it, the pipeline depth how early its
 * operands arrive), so on the emulator, whose arithmetic is the C++ as written, the two give the same
 * bits (asserted). On a GPU the contract is bits per device configuration (each device runs one), so
 * there the two are held to the bounds only.
 *
 * Further configurations run the scores on wgmma (THR_TILE_CONFIGS' 'wgmma scores': thr.cu's
 * thr_scores_wgmma_kernel, for f32 hidden states; its truncated-operand form; M on wgmma; the TMA-fed
 * scores): the same bounds and batch invariance, other bits ('tma' those of 'wgmma-truncate').
 */
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import type { ThrPrecision } from '../../src/backends/backend.js';
import type { NativeDevice } from '../../src/backends/cuda/native.js';
import { thrTuning } from '../../src/backends/cuda/thr.js';
import { setOutputPoison } from '../../src/debug.js';
import type { Context, ThrAggregateOptions } from '../../src/index.js';
import {
  bruteThr,
  buildTileCase,
  DEGENERATE_GROUPS,
  f32Bits,
  makeThrCase,
  type ResponseSpec,
  randomGroups,
  runThr,
  spliceCase,
  type ThrCase,
  type ThrTileCase,
  thrGroupErrors,
  uniformGroup,
} from '../fixtures/thr.js';
import { expectNoPoison, POISON_F32 } from '../util/compare.js';
import { EMU_MEMCHECK, EMULATED, probeGpu, THR_TILE_CONFIGS } from './helpers.js';

const gpu = await probeGpu();
const noGpu = gpu.ctx === undefined;
const cuda = gpu.ctx as Context;

const BOUND: Record<ThrPrecision, number> = { f32: 3e-4, tf32: 3e-3 };
const F32_GRADE_HERE = 1e-5;

const CASES: ThrTileCase[] = [
  {
    name: 'one group of 300 tokens (3 token tiles, the last 44 rows) × |V*| 260 (3 V* tiles, the last 4 columns), d 45 (f32 rows not 16-byte aligned)',
    dim: 45,
    dtype: 'f32',
    weighting: 'length',
    groups: [uniformGroup(10, 30, 4)],
    vocabSize: 400,
    exactVocab: 260,
    minTokens: 300,
    minVocab: 260,
  },
  {
    name: 'one group of 300 tokens × |V*| 300 (256-column blocks: a full one and one of 44 columns), d 64 (16-byte rows: TMA where it runs)',
    dim: 64,
    dtype: 'f32',
    weighting: 'length',
    groups: [uniformGroup(10, 30, 4)],
    vocabSize: 400,
    exactVocab: 300,
    minTokens: 300,
    minVocab: 300,
  },
  {
    name: 'seven groups smaller than a tile and a degenerate one, d 70 (bf16 rows of 140 bytes: plain loads)',
    dim: 70,
    dtype: 'bf16',
    weighting: 'none',
    groups: [...randomGroups(701, 4, 5, 12), DEGENERATE_GROUPS[2], ...randomGroups(702, 3, 4, 9)],
    vocabSize: 90,
  },
  {
    name: 'T_g 128 and 129, |V*| 128 (q rows 16-byte aligned), d 64 (16-byte copies, two full k-steps)',
    dim: 64,
    dtype: 'f32',
    weighting: 'length',
    groups: [uniformGroup(8, 16, 3), uniformGroup(3, 43, 1)],
    vocabSize: 300,
    exactVocab: 128,
    minTokens: 129,
    minVocab: 128,
  },
  {
    name: 'T_g 132 and 130, |V*| 129 (one column past a tile), d 96 f16 (16-byte copies)',
    dim: 96,
    dtype: 'f16',
    weighting: 'length',
    groups: [uniformGroup(4, 33, 2), uniformGroup(2, 65, 1)],
    vocabSize: 300,
    exactVocab: 129,
    minTokens: 130,
    minVocab: 129,
  },
  {
    name: 'd 13 (one short k-step), random groups and one of 350 tokens with |V*| above 128',
    dim: 13,
    dtype: 'f32',
    weighting: 'none',
    groups: [...randomGroups(703, 2, 6, 30), uniformGroup(7, 50, 3)],
    vocabSize: 600,
    minTokens: 350,
    minVocab: 129,
  },
  {
    name: 'one group of 8 × 40 tokens, d 256, peaked probabilities and a shared hidden component',
    dim: 256,
    dtype: 'f32',
    weighting: 'length',
    groups: [uniformGroup(8, 40, 3)],
    vocabSize: 500,
    llmLike: true,
    minTokens: 320,
    minVocab: 129,
  },
];

function groupSizes(c: ThrCase) {
  const { responseOffsets: ro, groupOffsets: go } = c.layout;
  const tokens = Array.from({ length: c.numGroups }, (_, g) => ro[go[g + 1]] - ro[go[g]]);
  const vocab = Array.from({ length: c.numGroups }, (_, g) => c.vocabOffsets[g + 1] - c.vocabOffsets[g]);
  return { tokens, vocab };
}

describe.skipIf(noGpu)('cuda THR tiles vs float64 brute force (partial tiles everywhere)', () => {
  beforeEach(() => {
    thrTuning.mBudgetBytes = 0;
    thrTuning.smallTiles = false;
    setOutputPoison(POISON_F32);
  });
  afterEach(() => {
    Object.assign(thrTuning, { smallTiles: false, path: 'auto' });
    setOutputPoison(undefined);
  });

  // Under emu-memcheck (ASan, twice) not the configurations on rounded copies: their bits are 'wgmma''s
  // (asserted here by npm test) and their kernels run in the batch-invariance cases below.
  const ROUNDED_COPIES = ['tma-rounded', 'tma-wide-rounded'];
  const configs = THR_TILE_CONFIGS.filter((cfg) => !(EMU_MEMCHECK && ROUNDED_COPIES.includes(cfg.path)));
  CASES.forEach((tc, i) => {
    it(`${tc.name}: 'f32' within 3e-4 (1e-5 here), 'tf32' within 3e-3, in every tile configuration`, async () => {
      const c = buildTileCase(tc, 700 + i);
      const { tokens, vocab } = groupSizes(c);
      if (tc.minTokens) expect(Math.max(...tokens), 'largest T_g').toBeGreaterThanOrEqual(tc.minTokens);
      if (tc.minVocab) expect(Math.max(...vocab), 'largest |V*_g|').toBeGreaterThanOrEqual(tc.minVocab);
      const ref = bruteThr(c, tc.weighting);
      for (const precision of ['f32', 'tf32'] as const) {
        const bits: number[][] = [];
        for (const cfg of configs) {
          Object.assign(thrTuning, { smallTiles: cfg.smallTiles, path: cfg.path });
          const r = await runThr(cuda, c, { weighting: tc.weighting, precision });
          expectNoPoison(r.thr, 'thr');
          expectNoPoison(r.tau, 'tau');
          const { worst, bad } = thrGroupErrors(c, r.thr, r.tau, ref, BOUND[precision]);
          const label = `${cfg.name}, ${precision}: max error ${worst.toExponential(2)} of max|THR_g|`;
          expect(bad, label).toEqual([]);
          if (precision === 'f32') expect(worst, label).toBeLessThanOrEqual(F32_GRADE_HERE);
          bits.push([...f32Bits(r.thr), ...f32Bits(r.tau)]);
        }
        const at = (path: string) => configs.findIndex((cfg) => cfg.path === path);
        if (EMULATED) {
          expect(bits[1], `${precision}: the same bits in both mma.sync configurations`).toEqual(bits[0]);
          // The TMA-fed scores issue the truncated wgmma scores' MMAs on the same operands in the same
          // order, and both M kernels give the same bits here: 'tma' has 'wgmma-truncate''s bits.
          expect(bits[at('tma')], `${precision}: 'tma' has the bits of 'wgmma-truncate'`).toEqual(
            bits[at('wgmma-truncate')],
          );
        }
        // 256-column blocks issue each element's MMAs as 128-column ones do and fold each half where one
        // would: 'tma''s bits on any device.
        expect(bits[at('tma-wide')], `${precision}: 'tma-wide' has the bits of 'tma'`).toEqual(
          bits[at('tma')],
        );
        // The TMA scores on operands rounded beforehand multiply what the wgmma scores' rounding pass
        // gives them, in the same order ('f32' runs as 'wgmma'): the bits of 'wgmma', which 'auto' takes.
        for (const path of EMU_MEMCHECK ? [] : ROUNDED_COPIES)
          expect(bits[at(path)], `${precision}: '${path}' has the bits of 'wgmma'`).toEqual(
            bits[at('wgmma')],
          );
        // 'tma-wide-m' (not in the table): 'tma-m' in 256-column scores blocks, so 'tma-m''s bits on any
        // device, as 'tma-wide' has 'tma''s ('f32' runs as 'auto' in both); 'tma-wide-m-wide' that with
        // M's GEMM in 128 × 256 tiles, each element of M_g taking the same MMAs: the same bits again.
        for (const path of EMU_MEMCHECK ? [] : (['tma-wide-m', 'tma-wide-m-wide'] as const)) {
          thrTuning.path = path;
          const r = await runThr(cuda, c, { weighting: tc.weighting, precision });
          expect(
            [...f32Bits(r.thr), ...f32Bits(r.tau)],
            `${precision}: '${path}' has the bits of 'tma-m'`,
          ).toEqual(bits[at('tma-m')]);
        }
      }
    });
  });

  // M in 128 × 256 tiles ('tma-wide-m-wide') where the cases above do not reach: a tile whose second
  // 128 dims are partial (d 200) and a second tile along d of fewer than 128 (d 300), two groups; THR
  // and thrAggregate's M.
  for (const dim of [200, 300]) {
    it(`'tma-wide-m-wide', d ${dim}: 'tma-m''s bits (THR, tau, the aggregate) and the 'tf32' bound`, async () => {
      const tc: ThrTileCase = {
        name: `d ${dim}`,
        dim,
        dtype: 'f32',
        weighting: 'length',
        groups: [uniformGroup(4, 30, 2), uniformGroup(3, 20, 1)],
        vocabSize: 300,
      };
      const c = buildTileCase(tc, 760 + dim);
      const ref = bruteThr(c, tc.weighting);
      const bits: number[][] = [];
      for (const path of ['tma-m', 'tma-wide-m-wide'] as const) {
        thrTuning.path = path;
        const r = await runThr(cuda, c, { weighting: tc.weighting, precision: 'tf32' });
        expectNoPoison(r.thr, 'thr');
        const { worst, bad } = thrGroupErrors(c, r.thr, r.tau, ref, BOUND.tf32);
        expect(bad, `${path}: max error ${worst.toExponential(2)} of max|THR_g|`).toEqual([]);
        bits.push([...f32Bits(r.thr), ...f32Bits(r.tau)]);
      }
      expect(bits[1], `d ${dim}: 'tma-wide-m-wide' has the bits of 'tma-m'`).toEqual(bits[0]);
      await withThrInputs(c, async (_, base) => {
        const agg: number[][] = [];
        for (const path of ['tma-m', 'tma-wide-m-wide'] as const) {
          thrTuning.path = path;
          const m = await cuda.thrAggregate({ ...base, precision: 'tf32' });
          agg.push(f32Bits((await m.read()) as Float32Array));
          m.dispose();
        }
        expect(agg[1], `d ${dim}: the aggregate M of 'tma-wide-m-wide' has 'tma-m''s bits`).toEqual(agg[0]);
      });
    });
  }
});

describe.skipIf(noGpu)('cuda THR tiles are batch invariant', () => {
  beforeEach(() => {
    thrTuning.mBudgetBytes = 0;
    thrTuning.smallTiles = false;
  });
  afterEach(() => {
    Object.assign(thrTuning, { mBudgetBytes: 0, smallTiles: false, path: 'auto' });
  });

  for (const [dtype, cfg] of (['f32', 'bf16'] as const).flatMap((d) =>
    THR_TILE_CONFIGS.map((c) => [d, c] as const),
  )) {
    it(`${dtype} hidden, ${cfg.name}: a group gives the same bits alone, among other groups at any position, and in its own M batch`, async () => {
      Object.assign(thrTuning, { smallTiles: cfg.smallTiles, path: cfg.path });
      const probe = uniformGroup(10, 14, 4);
      const others = [...randomGroups(801, 3, 6, 30), DEGENERATE_GROUPS[0], uniformGroup(5, 13, 2)];
      const layouts: ResponseSpec[][][] = [
        [others[0], probe, others[1]],
        [...others, probe],
        [probe, ...others.slice().reverse()],
      ];
      const d = 72;
      const probeCase = makeThrCase({
        seed: 800,
        groups: [probe],
        dim: d,
        dtype,
        vocabSize: 300,
        exactVocab: 132,
      });
      for (const precision of ['f32', 'tf32'] as const) {
        const alone = await runThr(cuda, probeCase, { precision });
        expect(alone.thr.every(Number.isFinite), 'finite THR alone').toBe(true);
        for (const [li, groups] of layouts.entries()) {
          const at = groups.indexOf(probe);
          const c = spliceCase(
            probeCase,
            makeThrCase({ seed: 810 + li, groups, dim: d, dtype, vocabSize: 300 }),
            at,
          );
          const t0 = c.layout.responseOffsets[c.layout.groupOffsets[at]];
          for (const budget of [0, 4]) {
            thrTuning.mBudgetBytes = budget; // 4 bytes: every group in its own batch
            const got = await runThr(cuda, c, { precision });
            const what = `${precision}, layout ${li}, probe at group ${at} (token ${t0}), ${budget ? 'one batch per group' : 'one batch'}`;
            expect(f32Bits(got.thr.subarray(t0, t0 + probeCase.numTokens)), `${what}: thr`).toEqual(
              f32Bits(alone.thr),
            );
            expect(f32Bits(got.tau.subarray(at, at + 1)), `${what}: tau`).toEqual(f32Bits(alone.tau));
          }
        }
      }
    });
  }
});

/** Two random groups of 8 responses (up to 40 tokens), d 64, f32 hidden states. */
const smallF32Case = (seed: number) =>
  makeThrCase({ seed, groups: randomGroups(seed + 1, 2, 8, 40), dim: 64, dtype: 'f32', vocabSize: 300 });

/**
 * smallF32Case(seed) on the cuda context as thrAggregate and thrScore take it (its vocabulary and hidden
 * tensor disposed after `body`).
 */
async function withThrInputs(
  seedOrCase: number | ThrCase,
  body: (c: ThrCase, base: ThrAggregateOptions) => Promise<void>,
): Promise<void> {
  const c = typeof seedOrCase === 'number' ? smallF32Case(seedOrCase) : seedOrCase;
  const vocab = await cuda.restrictedVocab(c.tokens, c.layout);
  const hidden = cuda.tensor(c.hidden as Float32Array, [c.numTokens, c.dim], 'f32');
  try {
    await body(c, { hidden, probs: c.probs, vocab, layout: c.layout, correct: c.correct });
  } finally {
    for (const t of [hidden, vocab.offsets, vocab.columns, vocab.tokenColumn]) t.dispose();
  }
}

describe.skipIf(noGpu || !EMULATED)(
  'cuda THR: M on wgmma and the TMA-fed scores are what run (emulator)',
  () => {
    afterEach(() => {
      delete process.env.GK_EMU_FAULT;
      thrTuning.path = 'auto';
    });

    it("'wgmma-m', 'tma', 'tma-wide': the first kernel set up is thr_m_wgmma_kernel (a failed cudaFuncSetAttribute names it)", async () => {
      const c = smallF32Case(860);
      for (const [path, precision] of [
        ['wgmma-m', 'f32'],
        ['tma', 'tf32'],
        ['tma-wide', 'tf32'],
      ] as const) {
        thrTuning.path = path;
        process.env.GK_EMU_FAULT = `cudaFuncSetAttribute:cudaErrorInvalidValue#${path}`;
        await expect(runThr(cuda, c, { precision }), path).rejects.toThrow(/thr_m_wgmma_kernel/);
        delete process.env.GK_EMU_FAULT;
      }
      thrTuning.path = 'wgmma';
      process.env.GK_EMU_FAULT = 'cudaFuncSetAttribute:cudaErrorInvalidValue#2';
      await expect(runThr(cuda, c, { precision: 'f32' })).rejects.toThrow(/thr_m_kernel</);
    });

    it("'tma-m', 'tma-wide-m', 'tma-wide-m-wide': M is thr_m_tma_kernel's in 'tf32' (in tokenHiddenReward and thrAggregate; in 128 × 256 tiles on the last), thr_m_kernel's in 'f32' (a failed cudaFuncSetAttribute names the first kernel set up)", async () => {
      await withThrInputs(862, async (c, base) => {
        for (const [path, wide] of [
          ['tma-m', false],
          ['tma-wide-m', false],
          ['tma-wide-m-wide', true],
        ] as const) {
          thrTuning.path = path;
          for (const [precision, kernel] of [
            ['tf32', new RegExp(`thr_m_tma_kernel<${wide}>`)],
            ['f32', /thr_m_kernel/],
          ] as const) {
            const what = `${path}, ${precision}`;
            process.env.GK_EMU_FAULT = `cudaFuncSetAttribute:cudaErrorInvalidValue#m-${what}`;
            await expect(runThr(cuda, c, { precision }), what).rejects.toThrow(kernel);
            process.env.GK_EMU_FAULT = `cudaFuncSetAttribute:cudaErrorInvalidValue#agg-${what}`;
            await expect(cuda.thrAggregate({ ...base, precision }), what).rejects.toThrow(kernel);
            delete process.env.GK_EMU_FAULT;
          }
        }
      });
    });

    it("'tma': thrScore over the stacked aggregate runs the TMA-fed scores in 'tf32' ('tma-wide': in 256-column blocks; the wgmma scores in 'f32'; 'tma-rounded' and 'tma-wide-rounded' on rounded copies, the aggregate left as it was), with tokenHiddenReward's bits", async () => {
      await withThrInputs(861, async (c, base) => {
        for (const [path, precision, kernel] of [
          ['tma', 'tf32', /thr_scores_tma_kernel<false>/],
          ['tma-wide', 'tf32', /thr_scores_tma_kernel<true>/],
          ['tma', 'f32', /thr_scores_wgmma/],
          // On rounded copies (the stacked aggregate's a copy of its own: the caller's stays as it is).
          ['tma-rounded', 'tf32', /thr_scores_tma_kernel<false>/],
          ['tma-wide-rounded', 'tf32', /thr_scores_tma_kernel<true>/],
          ['tma-m', 'tf32', /thr_scores_tma_kernel<false>/],
          ['tma-wide-m', 'tf32', /thr_scores_tma_kernel<true>/],
          ['tma-wide-m-wide', 'tf32', /thr_scores_tma_kernel<true>/],
        ] as const) {
          thrTuning.path = path;
          const whole = await runThr(cuda, c, { precision });
          const agg = await cuda.thrAggregate({ ...base, precision });
          // The scores alone: the first kernel set up is theirs.
          process.env.GK_EMU_FAULT = `cudaFuncSetAttribute:cudaErrorInvalidValue#${path}-${precision}`;
          await expect(cuda.thrScore({ ...base, aggregate: agg, precision }), precision).rejects.toThrow(
            kernel,
          );
          delete process.env.GK_EMU_FAULT;
          const before = f32Bits((await agg.read()) as Float32Array);
          const halves = await cuda.thrScore({ ...base, aggregate: agg, precision });
          const thr = (await halves.thr.read()) as Float32Array;
          expect(
            f32Bits((await agg.read()) as Float32Array),
            `${path}: the aggregate is not written`,
          ).toEqual(before);
          expect(f32Bits(thr), `${path}, ${precision}: thrAggregate then thrScore`).toEqual(
            f32Bits(whole.thr),
          );
          for (const t of [agg, halves.thr, halves.tau]) t.dispose();
        }
      });
    });
  },
);

describe.skipIf(noGpu)('cuda THR scores on wgmma', () => {
  afterEach(() => {
    thrTuning.path = 'auto';
  });

  it('the wgmma scores ran: f32 hidden (d 64) gives THR bits that differ from the mma.sync tiles in some tokens, in both precision modes, and auto takes them; truncated operands give other bits again', async () => {
    const c = smallF32Case(850);
    for (const precision of ['f32', 'tf32'] as const) {
      thrTuning.path = 'mma';
      const mma = f32Bits((await runThr(cuda, c, { precision })).thr);
      thrTuning.path = 'wgmma';
      const wg = f32Bits((await runThr(cuda, c, { precision })).thr);
      expect(wg, precision).not.toEqual(mma);
      thrTuning.path = 'auto';
      expect(f32Bits((await runThr(cuda, c, { precision })).thr), `${precision}: 'auto' takes them`).toEqual(
        wg,
      );
      thrTuning.path = 'wgmma-truncate';
      const trunc = f32Bits((await runThr(cuda, c, { precision })).thr);
      expect(trunc, `${precision}: truncated operands`).not.toEqual(wg);
      if (EMULATED) {
        // The emulator's mma.sync and wgmma stand-ins add a k8 slice's products alike, and the two M
        // kernels issue each element's slices and splits in the same order: the same bits.
        thrTuning.path = 'wgmma-m';
        expect(f32Bits((await runThr(cuda, c, { precision })).thr), `${precision}: M on wgmma`).toEqual(wg);
      }
    }
  });
});

describe.skipIf(noGpu)("cuda THR's scratch between M batches", () => {
  afterEach(() => {
    Object.assign(thrTuning, { mBudgetBytes: 0, path: 'auto' });
  });

  // One M batch per group: each batch's M_g, score partials and (paths 9 to 11) transposed operands
  // outgrow the last batch's when the groups come in growing order. A buffer that grows replaces the one
  // before it (stream-ordered), so the op holds the largest group's, not the sum of every size it had:
  // the same bytes at once as when the largest group comes first and nothing grows. (Before, every
  // outgrown buffer stayed until the op's end.)
  for (const path of ['auto', 'tma-m'] as const) {
    it(`${path}: groups in growing order hold the bytes of the largest first, with the same bits`, async () => {
      const large = uniformGroup(8, 30, 4);
      const probe = makeThrCase({ seed: 870, groups: [large], dim: 64, vocabSize: 400 });
      const host = (seed: number, groups: ResponseSpec[][]) =>
        makeThrCase({ seed, groups, dim: 64, vocabSize: 400 });
      const small = [uniformGroup(4, 6, 2), uniformGroup(6, 14, 3)];
      const growing = spliceCase(probe, host(871, [...small, large]), 2);
      const largeFirst = spliceCase(probe, host(872, [large, ...small]), 0);
      const { tokens, vocab } = groupSizes(growing);
      for (let g = 1; g < 3; g++) {
        expect(tokens[g], 'tokens grow').toBeGreaterThan(tokens[g - 1]);
        expect(vocab[g], '|V*| grows').toBeGreaterThan(vocab[g - 1]);
      }
      expect(Math.max(...groupSizes(largeFirst).vocab), 'the largest |V*|').toBe(vocab[2]);
      const device = nativeDevice(cuda);
      Object.assign(thrTuning, { path, mBudgetBytes: 4 }); // 4 bytes: every group in its own batch
      const peak: number[] = [];
      const bits: number[][] = [];
      for (const [c, at] of [
        [growing, 2],
        [largeFirst, 0],
      ] as const) {
        const r = await runThr(cuda, c, { precision: 'tf32' });
        await cuda.synchronize();
        peak.push(device.stats().lastScratchBytes);
        const t0 = c.layout.responseOffsets[c.layout.groupOffsets[at]];
        bits.push(f32Bits(r.thr.subarray(t0, t0 + probe.numTokens)));
      }
      expect(bits[0], "the large group's bits").toEqual(bits[1]);
      expect(peak[0], 'bytes held at once, growing order against the largest first').toBe(peak[1]);
    });
  }
});

/** The NativeDevice behind a cuda context (through a tensor's storage). */
function nativeDevice(c: Context): NativeDevice {
  const t = c.tensor(new Float32Array(1));
  const dev = (t.storage as unknown as { device: NativeDevice }).device;
  t.dispose();
  return dev;
}
