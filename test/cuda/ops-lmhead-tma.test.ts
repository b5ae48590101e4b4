/**
 * The LM head on TMA-fed wgmma tiles (native/cuda/lmhead.cu: lm_fwd_tma_kernel, lm_grad_logits_tma_kernel,
 * lm_gemm_tma_kernel; a producer warp brings the operands by TMA into mbarrier-guarded stages, two
 * warpgroups multiply), what 'auto' takes where they apply, forced by lmheadTuning.path = 'tma': every
 * bf16/f16 case of test/cases/lmhead.ts that runs the head against the float64 reference, gradients'
 * bits under any chunking, and for every output of the forward and the backward the bits of the
 * cp.async-fed wgmma tiles (the same MMAs, flushes and folds in the same order) and of 'tma-overlap'
 * (the same kernels with a warpgroup's next k-step of MMAs in flight while it adds up the last). They
 * run where the tiles apply: a 9.0 device from a build with sm_90a, or the CUDA emulator (it models
 * TMA, mbarriers, wgmma and its wait groups).
 */
import { describe, expect, it } from 'vitest';
import { type LmheadPath, lmheadTuning } from '../../src/backends/cuda/lmhead.js';
import { wordsOf } from '../cases/check.js';
import { openBackends, runCaseTable } from '../cases/runner.js';
import { expectChunkInvariantGradients } from '../lmhead/checks.js';
import { gradVector, makeHead } from '../lmhead/reference.js';
import { lmheadTileCases } from './helpers.js';

const backends = await openBackends(['cuda']);
runCaseTable('lmhead (TMA-fed wgmma tiles)', lmheadTileCases('tma'), backends);

const ctx = backends[0].ctx;
describe.skipIf(ctx === undefined)('lmhead (TMA-fed wgmma tiles) on cuda', () => {
  for (const [N, d, V, dtype] of [
    [19, 896, 257, 'bf16'],
    [130, 64, 4500, 'f16'],
  ] as const) {
    it(`N=${N} d=${d} V=${V} ${dtype}: every output of the forward and the backward has the bits of the cp.async-fed wgmma tiles and of the k-step-overlapping TMA tiles, and differs from mma.sync's somewhere`, async () => {
      const c = ctx!;
      const x = makeHead({ N, d, V, dtype, seed: 79, bias: true });
      const hidden = c.tensor(x.hidden as Uint16Array, [x.N, x.d], dtype);
      const weight = c.tensor(x.weight as Uint16Array, [x.V, x.d], dtype);
      const bias = c.tensor(x.bias as Uint16Array, [x.V], dtype);
      const run = async (path: LmheadPath) => {
        lmheadTuning.path = path;
        const r = await c.linearLogprobs(hidden, weight, x.targets, {
          bias,
          entropy: true,
          sumSquares: true,
        });
        const grads = await c.linearLogprobsBackward(hidden, weight, x.targets, r.lse, gradVector(80, N), {
          bias,
          gradEntropy: gradVector(81, N),
          entropy: r.entropy,
        });
        const out = [
          r.logprobs,
          r.lse,
          r.entropy!,
          r.sumSquares!,
          grads.gradHidden,
          grads.gradWeight,
          grads.gradBias!,
        ];
        const words = await Promise.all(out.map(async (t) => Array.from(wordsOf(await t.read()))));
        for (const t of out) t.dispose();
        return words;
      };
      try {
        const tma = await run('tma');
        const wg = await run('wgmma');
        const mma = await run('mma');
        const auto = await run('auto');
        const overlap = await run('tma-overlap');
        const names = ['logprobs', 'lse', 'entropy', 'sumSquares', 'gradHidden', 'gradWeight', 'gradBias'];
        for (const [i, name] of names.entries()) expect(tma[i], name).toEqual(wg[i]);
        expect(tma[1], 'lse: not the mma.sync tiles').not.toEqual(mma[1]);
        expect(auto, "'auto' takes these tiles on a 9.0 device").toEqual(tma);
        for (const [i, name] of names.entries()) expect(overlap[i], `tma-overlap: ${name}`).toEqual(tma[i]);
      } finally {
        lmheadTuning.path = 'tma';
        for (const t of [hidden, weight, bias]) t.dispose();
      }
    });
  }

  it('gradWeight, gradHidden and gradBias have the same bits whatever the backward chunks rows and vocabulary', async () => {
    await expectChunkInvariantGradients(ctx!, 95, (chunkRows, chunkVocab) =>
      Object.assign(lmheadTuning, { chunkRows, chunkVocab }),
    );
  });
});
