/**
 * The LM head on TMA-fed wgmma tiles (native/cuda/lmhead.cu: lm_fwd_tma_kernel, lm_grad_logits_tma_kernel,
 * lm_gemm_tma_kernel; a producer warp brings the operands by TMA into mbarrier-guarded stages, two
 * warpgroups multiply), forced by lmheadTuning.path = 'tma' ('auto' takes their chained form,
 * ops-lmhead-chain.test.ts): every
 * bf16/f16 case of test/cases/lmhead.ts that runs the head against the float64 reference, gradients'
 * bits under any chunking, and for every output of the forward and the backward the bits of the
 * cp.async-fed wgmma tiles (the same MMAs, flushes and folds in the same order) and of 'tma-overlap'
 * (the same kernels with a warpgroup's next k-step of MMAs in flight while it adds up the last) and of
 * 'tma-wide' (the forward and the backward in 128 × 256 tiles: each half's MMAs, flushes and folds as a
 * 128-column tile's) and of 'tma-cluster' (those in clusters of 2 blocks sharing the weight's boxes by TMA
 * multicast; 130 rows make 2 row blocks, a cluster; 19 rows 1, so 'tma-wide''s kernels alone). They
 * run where the tiles apply: a 9.0 device from a build with sm_90a, or the CUDA emulator (it models
 * TMA, mbarriers, wgmma and its wait groups).
 */
import { describe, expect, it } from 'vitest';
import { type LmheadPath, lmheadTuning } from '../../src/backends/cuda/lmhead.js';
import { expectSameBits, firstBitDiff } from '../cases/check.js';
import { openBackends, runCaseTable } from '../cases/runner.js';
import { expectChunkInvariantGradients, HEAD_OUTPUT_NAMES, headOutputs } from '../lmhead/checks.js';
import { gradVector, makeHead } from '../lmhead/reference.js';
import { EMU_MEMCHECK, EMULATED, lmheadTileCases } from './helpers.js';

const backends = await openBackends(['cuda']);
runCaseTable('lmhead (TMA-fed wgmma tiles)', lmheadTileCases('tma'), backends);

const ctx = backends[0].ctx;
describe.skipIf(ctx === undefined)('lmhead (TMA-fed wgmma tiles) on cuda', () => {
  for (const [N, d, V, dtype] of [
    [19, 896, 257, 'bf16'],
    [130, 64, 4500, 'f16'],
  ] as const) {
    it(`N=${N} d=${d} V=${V} ${dtype}: every output of the forward and the backward has the bits of the cp.async-fed wgmma tiles, of the k-step-overlapping TMA tiles and of the 256-column ones alone and in clusters, and differs from mma.sync's somewhere`, async () => {
      const h = headOutputs(ctx!, makeHead({ N, d, V, dtype, seed: 79, bias: true }), 80);
      const run = (path: LmheadPath) => {
        lmheadTuning.path = path;
        return h.words();
      };
      try {
        const tma = await run('tma');
        // Under emu-memcheck (ASan) only the TMA paths' kernels: ops-lmhead.test.ts and
        // ops-lmhead-wgmma.test.ts run the mma.sync and cp.async-fed ones there.
        if (EMU_MEMCHECK)
          console.warn("test/cuda: under emu-memcheck the TMA paths' bits only (not against 'wgmma', 'mma')");
        else {
          const wg = await run('wgmma');
          const mma = await run('mma');
          for (const [i, name] of HEAD_OUTPUT_NAMES.entries()) expectSameBits(tma[i], wg[i], name);
          expect(firstBitDiff(tma[1], mma[1]), 'lse: not the mma.sync tiles').not.toBe(-1);
        }
        const overlap = await run('tma-overlap');
        const wide = await run('tma-wide');
        const cluster = await run('tma-cluster');
        for (const [path, words] of [
          ['tma-overlap', overlap],
          ['tma-wide', wide],
          ['tma-cluster', cluster],
        ] as const)
          for (const [i, name] of HEAD_OUTPUT_NAMES.entries())
            expectSameBits(words[i], tma[i], `${path}: ${name}`);
      } finally {
        lmheadTuning.path = 'tma';
        h.dispose();
      }
    });
  }

  it.skipIf(!EMULATED)(
    "the forward's and the backward's kernels are what the path names (an injected launch failure names them; emulator)",
    async () => {
      const c = ctx!;
      const x = makeHead({ N: 9, d: 64, V: 300, dtype: 'bf16', seed: 82 });
      const hidden = c.tensor(x.hidden as Uint16Array, [x.N, x.d], 'bf16');
      const weight = c.tensor(x.weight as Uint16Array, [x.V, x.d], 'bf16');
      try {
        // A failure injected into the next launch of a kernel whose name contains `lm_`: the forward's.
        for (const [path, kernel] of [
          ['tma', /lm_fwd_tma_kernel/],
          ['tma-overlap', /lm_fwd_tma_kernel/],
          ['tma-wide', /lm_fwd_tma_wide_kernel/],
        ] as const) {
          lmheadTuning.path = path;
          process.env.GK_EMU_FAULT = `launch@lm_:cudaErrorInvalidValue#${path}`;
          await expect(c.linearLogprobs(hidden, weight, x.targets), path).rejects.toThrow(kernel);
          delete process.env.GK_EMU_FAULT;
        }
        // The backward's G tiles and its GEMMs.
        const lse = (await c.linearLogprobs(hidden, weight, x.targets)).lse;
        for (const [path, text, kernel] of [
          ['tma', 'lm_grad_logits', /lm_grad_logits_tma_kernel/],
          ['tma-wide', 'lm_grad_logits', /lm_grad_logits_tma_wide_kernel/],
          ['tma', 'lm_gemm', /lm_gemm_tma_kernel/],
          ['tma-wide', 'lm_gemm', /lm_gemm_tma_wide_kernel/],
        ] as const) {
          lmheadTuning.path = path;
          process.env.GK_EMU_FAULT = `launch@${text}:cudaErrorInvalidValue#${path}`;
          await expect(
            c.linearLogprobsBackward(hidden, weight, x.targets, lse, gradVector(83, x.N)),
            `${path} ${text}`,
          ).rejects.toThrow(kernel);
          delete process.env.GK_EMU_FAULT;
        }
        lse.dispose();
      } finally {
        delete process.env.GK_EMU_FAULT;
        lmheadTuning.path = 'tma';
        for (const t of [hidden, weight]) t.dispose();
      }
    },
  );

  it.skipIf(!EMULATED)(
    "'tma-cluster' launches the wide kernels in clusters of 2 where the row blocks are even in number, alone where not (an injected launch failure names them; emulator)",
    async () => {
      const c = ctx!;
      // 200 rows: 2 row blocks (the forward, G and gradHidden's GEMM in clusters); 300 weight rows: 3
      // blocks of gradWeight's GEMM (alone). 9 rows: 1 row block, every launch alone.
      const open = (N: number, seed: number) => {
        const x = makeHead({ N, d: 64, V: 300, dtype: 'bf16', seed });
        return {
          x,
          hidden: c.tensor(x.hidden as Uint16Array, [x.N, x.d], 'bf16'),
          weight: c.tensor(x.weight as Uint16Array, [x.V, x.d], 'bf16'),
        };
      };
      const two = open(200, 84);
      const one = open(9, 85);
      const fault = async (text: string, tag: string, call: () => Promise<unknown>, want: RegExp | null) => {
        process.env.GK_EMU_FAULT = `launch@${text}:cudaErrorInvalidValue#${tag}`;
        try {
          if (want) await expect(call(), tag).rejects.toThrow(want);
          else await call();
        } finally {
          delete process.env.GK_EMU_FAULT;
        }
      };
      lmheadTuning.path = 'tma-cluster';
      try {
        const fwd = (h: typeof two) => () => c.linearLogprobs(h.hidden, h.weight, h.x.targets);
        await fault('clusters of 2', 'fwd2', fwd(two), /lm_fwd_tma_wide_kernel in clusters of 2/);
        await fault('lm_fwd', 'fwd1', fwd(one), /lm_fwd_tma_wide_kernel failed/);
        await fault('clusters of 2', 'fwd1-none', fwd(one), null);
        const lse = (await c.linearLogprobs(two.hidden, two.weight, two.x.targets)).lse;
        const bwd = () =>
          c.linearLogprobsBackward(two.hidden, two.weight, two.x.targets, lse, gradVector(86, 200));
        await fault('lm_grad_logits', 'g2', bwd, /lm_grad_logits_tma_wide_kernel in clusters of 2/);
        await fault('lm_gemm', 'gh2', bwd, /lm_gemm_tma_wide_kernel in clusters of 2/);
        lse.dispose();
      } finally {
        lmheadTuning.path = 'tma';
        for (const h of [two, one]) for (const t of [h.hidden, h.weight]) t.dispose();
      }
    },
  );

  // The 128 × 256 sets start their blocks in groups of row blocks (raster_block): past 16 row blocks on
  // a GPU; here lmheadTuning.rasterRows = 2 makes 4 row blocks take a grouped order (the forward's 2
  // slices, forward only; G's and both GEMMs' column blocks, d 264), clusters still pairing.
  for (const [N, d, V, backward] of [
    [400, 16, 4200, false],
    [400, 264, 300, true],
  ] as const) {
    it(`N=${N} d=${d} V=${V} bf16: in a grouped block order every output of the ${backward ? 'forward and the backward' : 'forward'} of 'tma-wide' and 'tma-cluster' keeps the bits of 'tma', and 'tma-chain-cluster' those of 'tma-chain'`, async () => {
      const h = headOutputs(ctx!, makeHead({ N, d, V, dtype: 'bf16', seed: 93, bias: true }), 94);
      const run = (path: LmheadPath, rasterRows: number) => {
        Object.assign(lmheadTuning, { path, rasterRows });
        return h.words(backward);
      };
      try {
        const tma = await run('tma', 0);
        const chain = await run('tma-chain', 0); // (4 row blocks: one group of 16, launch order)
        for (const [path, base] of [
          ['tma-wide', tma],
          ['tma-cluster', tma],
          ['tma-chain-cluster', chain],
        ] as const) {
          const words = await run(path, 2);
          expect(words.length, `${path}: outputs`).toBe(base.length);
          for (const [i, w] of words.entries())
            expectSameBits(w, base[i], `${path}: ${HEAD_OUTPUT_NAMES[i]}`);
        }
      } finally {
        Object.assign(lmheadTuning, { path: 'tma', rasterRows: 0 });
        h.dispose();
      }
    });
  }

  it('gradWeight, gradHidden and gradBias have the same bits whatever the backward chunks rows and vocabulary', async () => {
    await expectChunkInvariantGradients(ctx!, 95, (chunkRows, chunkVocab) =>
      Object.assign(lmheadTuning, { chunkRows, chunkVocab }),
    );
  });
});
