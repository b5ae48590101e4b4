/**
 * The LM head on the wgmma tiles (native/cuda/lmhead.cu: lm_fwd_wgmma_kernel, lm_grad_logits_wgmma_kernel,
 * lm_gemm_wgmma_kernel; Hopper's warpgroup MMAs from 128-byte-swizzled shared memory), forced by
 * lmheadTuning.path = 'wgmma': every bf16/f16 case of test/cases/lmhead.ts that runs the head (forward,
 * backward, gradDtype 'input', sharding, invariance, determinism) against the same float64 reference
 * and tolerances as the mma.sync tiles, and gradWeight's bits under other backward chunks. They run
 * where the tiles apply: a 9.0 device from a build with sm_90a, or the CUDA emulator (its device is
 * one; it executes wgmma per thread and fails a launch whose operands change between issue and wait).
 * The TMA-fed ones (ops-lmhead-tma.test.ts) give these tiles' bits; 'auto' takes the chained ones
 * (ops-lmhead-chain.test.ts).
 */
import { describe, expect, it } from 'vitest';
import { lmheadTuning } from '../../src/backends/cuda/lmhead.js';
import { wordsOf } from '../cases/check.js';
import { openBackends, runCaseTable } from '../cases/runner.js';
import { expectChunkInvariantGradients } from '../lmhead/checks.js';
import { gradVector, makeHead } from '../lmhead/reference.js';
import { lmheadTileCases } from './helpers.js';

const backends = await openBackends(['cuda']);
runCaseTable('lmhead (wgmma tiles)', lmheadTileCases('wgmma'), backends);

const ctx = backends[0].ctx;
describe.skipIf(ctx === undefined)('lmhead (wgmma tiles) on cuda', () => {
  it('the tiles ran: the logsumexps and gradHidden differ in some bits from the mma.sync tiles (other flush steps), within the tolerance of each other', async () => {
    const c = ctx!;
    const x = makeHead({ N: 19, d: 896, V: 257, dtype: 'bf16', seed: 77, bias: true });
    const hidden = c.tensor(x.hidden as Uint16Array, [x.N, x.d], 'bf16');
    const weight = c.tensor(x.weight as Uint16Array, [x.V, x.d], 'bf16');
    const bias = c.tensor(x.bias as Uint16Array, [x.V], 'bf16');
    const g = gradVector(78, x.N);
    const run = async (path: 'mma' | 'wgmma') => {
      lmheadTuning.path = path;
      const r = await c.linearLogprobs(hidden, weight, x.targets, { bias });
      const grads = await c.linearLogprobsBackward(hidden, weight, x.targets, r.lse, g, { bias });
      const out = {
        lse: (await r.lse.read()) as Float32Array,
        gradHidden: (await grads.gradHidden.read()) as Float32Array,
      };
      for (const t of [r.lse, r.logprobs, grads.gradHidden, grads.gradWeight, grads.gradBias]) t?.dispose();
      return out;
    };
    try {
      const mma = await run('mma');
      const wg = await run('wgmma');
      for (const key of ['lse', 'gradHidden'] as const) {
        expect(Array.from(wordsOf(wg[key])), key).not.toEqual(Array.from(wordsOf(mma[key])));
        const scale = Math.max(...mma[key].map(Math.abs));
        for (let i = 0; i < mma[key].length; i++)
          expect(Math.abs(wg[key][i] - mma[key][i]), `${key}[${i}]`).toBeLessThan(1e-4 * (1 + scale));
      }
    } finally {
      lmheadTuning.path = 'wgmma';
      for (const t of [hidden, weight, bias]) t.dispose();
    }
  });

  it('gradWeight, gradHidden and gradBias have the same bits whatever the backward chunks rows and vocabulary', async () => {
    await expectChunkInvariantGradients(ctx!, 93, (chunkRows, chunkVocab) =>
      Object.assign(lmheadTuning, { chunkRows, chunkVocab }),
    );
  });
});
