/**
 * The LM head's forward on TMA-fed wgmma tiles (native/cuda/lmhead.cu, lm_fwd_tma_kernel: a producer warp
 * brings the operands by TMA into mbarrier-guarded stages, two warpgroups multiply), forced by
 * lmheadTuning.path = 'tma': the bf16/f16 forward, state, sharding, invariance and determinism cases of
 * test/cases/lmhead.ts against the float64 reference, and the same bits as the cp.async-fed wgmma tiles
 * (lm_fwd_wgmma_kernel: the same MMAs, flushes and folds in the same order). They run where the tiles
 * apply: a 9.0 device from a build with sm_90a, or the CUDA emulator (it models TMA, mbarriers and wgmma).
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { lmheadTuning } from '../../src/backends/cuda/lmhead.js';
import { wordsOf } from '../cases/check.js';
import { lmheadCases } from '../cases/lmhead.js';
import { openBackends, runCaseTable } from '../cases/runner.js';
import { makeHead } from '../lmhead/reference.js';
import { EMULATED, SANITIZER } from './helpers.js';

const backends = await openBackends(['cuda']);
beforeAll(() => {
  lmheadTuning.path = 'tma';
});
afterAll(() => {
  lmheadTuning.path = 'auto';
});

// The forward cases of the head with 16-bit operands (f32 stays on mma.sync; backward cases would run
// the cp.async-fed tiles, which ops-lmhead-wgmma.test.ts covers).
const forwardKinds = /^(forward|sharded \d|batch invariance|determinism)/;
const cases = lmheadCases({ emulated: EMULATED || SANITIZER }).filter(
  (c) => forwardKinds.test(c.name) && /\b(bf16|f16)\b/.test(c.name),
);
runCaseTable('lmhead forward (TMA-fed wgmma tiles)', cases, backends);

const ctx = backends[0].ctx;
describe.skipIf(ctx === undefined)('lmhead forward (TMA-fed wgmma tiles) on cuda', () => {
  for (const [N, d, V, dtype] of [
    [19, 896, 257, 'bf16'],
    [130, 64, 4500, 'f16'],
  ] as const) {
    it(`N=${N} d=${d} V=${V} ${dtype}: every output has the bits of the cp.async-fed wgmma tiles, and differs from mma.sync's somewhere`, async () => {
      const c = ctx!;
      const x = makeHead({ N, d, V, dtype, seed: 79, bias: true });
      const hidden = c.tensor(x.hidden as Uint16Array, [x.N, x.d], dtype);
      const weight = c.tensor(x.weight as Uint16Array, [x.V, x.d], dtype);
      const bias = c.tensor(x.bias as Uint16Array, [x.V], dtype);
      const run = async (path: 'mma' | 'wgmma' | 'tma') => {
        lmheadTuning.path = path;
        const r = await c.linearLogprobs(hidden, weight, x.targets, {
          bias,
          entropy: true,
          sumSquares: true,
        });
        const out = [r.logprobs, r.lse, r.entropy!, r.sumSquares!];
        const words = await Promise.all(out.map(async (t) => Array.from(wordsOf(await t.read()))));
        for (const t of out) t.dispose();
        return words;
      };
      try {
        const tma = await run('tma');
        const wg = await run('wgmma');
        const mma = await run('mma');
        for (const [i, name] of ['logprobs', 'lse', 'entropy', 'sumSquares'].entries())
          expect(tma[i], name).toEqual(wg[i]);
        expect(tma[1], 'lse: not the mma.sync tiles').not.toEqual(mma[1]);
      } finally {
        lmheadTuning.path = 'tma';
        for (const t of [hidden, weight, bias]) t.dispose();
      }
    });
  }
});
