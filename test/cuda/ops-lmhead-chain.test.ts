/**
 * The LM head's chained TMA tiles (native/cuda/lmhead.cu: the 128 × 256 TMA kernels with kChain, each
 * logit's sum running on the tensor cores over all of d, no per-k-step flush; cuBLAS's numerics), what
 * 'auto' takes where they apply, forced by lmheadTuning.path = 'tma-chain': every bf16/f16 case of
 * test/cases/lmhead.ts that runs the head against the float64 reference (their bits are their own: the
 * table's batch-invariance and determinism cases hold them to it), gradients' bits under any chunking,
 * 'tma-chain-cluster' (the same in clusters of 2 blocks sharing the weight's boxes) and 'auto' with the
 * bits of 'tma-chain', and injected launch failures naming the chained kernels. They run where the
 * tiles apply: a 9.0 device from a build with sm_90a, or the CUDA emulator.
 */
import { describe, expect, it } from 'vitest';
import { type LmheadPath, lmheadTuning } from '../../src/backends/cuda/lmhead.js';
import { expectSameBits, firstBitDiff } from '../cases/check.js';
import { openBackends, runCaseTable } from '../cases/runner.js';
import { expectChunkInvariantGradients, HEAD_OUTPUT_NAMES, headOutputs } from '../lmhead/checks.js';
import { gradVector, makeHead } from '../lmhead/reference.js';
import { EMU_MEMCHECK, EMULATED, lmheadTileCases } from './helpers.js';

const backends = await openBackends(['cuda']);
runCaseTable('lmhead (chained TMA tiles)', lmheadTileCases('tma-chain'), backends);

const ctx = backends[0].ctx;
describe.skipIf(ctx === undefined)('lmhead (chained TMA tiles) on cuda', () => {
  for (const [N, d, V, dtype] of [
    [19, 896, 257, 'bf16'],
    [130, 64, 4500, 'f16'],
  ] as const) {
    it(`N=${N} d=${d} V=${V} ${dtype}: every output of the forward and the backward in clusters ('tma-chain-cluster') and of 'auto' has the bits of 'tma-chain'${d > 64 ? ", which differ from 'tma''s" : ''}`, async () => {
      const h = headOutputs(ctx!, makeHead({ N, d, V, dtype, seed: 87, bias: true }), 88);
      const run = (path: LmheadPath) => {
        lmheadTuning.path = path;
        return h.words();
      };
      try {
        const chain = await run('tma-chain');
        const cluster = await run('tma-chain-cluster');
        // (Under emu-memcheck not 'auto': a third run of both passes there is minutes.)
        const auto = EMU_MEMCHECK ? undefined : await run('auto');
        for (const [i, name] of HEAD_OUTPUT_NAMES.entries()) {
          expectSameBits(cluster[i], chain[i], `tma-chain-cluster: ${name}`);
          if (auto) expectSameBits(auto[i], chain[i], `'auto' takes 'tma-chain' on a 9.0 device: ${name}`);
        }
        // One k-step (d 64) has nothing to flush: the same sums as 'tma''s there. (Under emu-memcheck
        // not: ops-lmhead-tma.test.ts runs 'tma' there.)
        if (d > 64 && !EMU_MEMCHECK)
          expect(firstBitDiff(chain[1], (await run('tma'))[1]), "lse: not 'tma''s (the flush)").not.toBe(-1);
      } finally {
        lmheadTuning.path = 'tma-chain';
        h.dispose();
      }
    });
  }

  it.skipIf(!EMULATED)(
    "the chained kernels are what 'tma-chain' and 'tma-chain-cluster' run (an injected launch failure names them; emulator)",
    async () => {
      const c = ctx!;
      const x = makeHead({ N: 200, d: 64, V: 300, dtype: 'bf16', seed: 90 });
      const hidden = c.tensor(x.hidden as Uint16Array, [x.N, x.d], 'bf16');
      const weight = c.tensor(x.weight as Uint16Array, [x.V, x.d], 'bf16');
      const fault = async (text: string, tag: string, call: () => Promise<unknown>, want: RegExp) => {
        process.env.GK_EMU_FAULT = `launch@${text}:cudaErrorInvalidValue#${tag}`;
        try {
          await expect(call(), tag).rejects.toThrow(want);
        } finally {
          delete process.env.GK_EMU_FAULT;
        }
      };
      try {
        for (const path of ['tma-chain', 'tma-chain-cluster'] as const) {
          lmheadTuning.path = path;
          // 200 rows: 2 row blocks, so 'tma-chain-cluster' clusters the forward, G and gradHidden's GEMM.
          const where = path === 'tma-chain' ? 'failed' : 'in clusters of 2';
          const fwd = () => c.linearLogprobs(hidden, weight, x.targets);
          await fault(
            'lm_fwd',
            `${path} fwd`,
            fwd,
            new RegExp(`lm_fwd_tma_wide_kernel \\(chained\\) ${where}`),
          );
          const lse = (await c.linearLogprobs(hidden, weight, x.targets)).lse;
          const bwd = () => c.linearLogprobsBackward(hidden, weight, x.targets, lse, gradVector(91, x.N));
          await fault(
            'lm_grad',
            `${path} g`,
            bwd,
            new RegExp(`lm_grad_logits_tma_wide_kernel \\(chained\\) ${where}`),
          );
          await fault(
            'lm_gemm',
            `${path} gemm`,
            bwd,
            new RegExp(`lm_gemm_tma_wide_kernel \\(chained\\) ${where}`),
          );
          lse.dispose();
        }
      } finally {
        lmheadTuning.path = 'tma-chain';
        for (const t of [hidden, weight]) t.dispose();
      }
    },
  );

  it('gradWeight, gradHidden and gradBias have the same bits whatever the backward chunks rows and vocabulary', async () => {
    await expectChunkInvariantGradients(ctx!, 92, (chunkRows, chunkVocab) =>
      Object.assign(lmheadTuning, { chunkRows, chunkVocab }),
    );
  });
});
