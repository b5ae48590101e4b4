/**
 * The LM head's forward on the wgmma tiles (native/cuda/lmhead.cu, lm_fwd_wgmma_kernel: Hopper's
 * warpgroup MMAs from 128-byte-swizzled shared memory), forced by lmheadTuning.path = 'wgmma': the
 * 16-bit forward, state, sharding, invariance and determinism cases of test/cases/lmhead.ts, against
 * the same float64 reference and tolerances as the mma.sync tiles. They run where the tiles apply: a
 * 9.0 device from a build with sm_90a, or the CUDA emulator (its device is one; it executes wgmma per
 * thread and fails a launch whose operands change between issue and wait). Until a GPU has verified
 * them, 'auto' keeps the mma.sync tiles (kWgmmaVerified).
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
  lmheadTuning.path = 'wgmma';
});
afterAll(() => {
  lmheadTuning.path = 'auto';
});

// The cases whose forward can take the tiles: 16-bit operands (f32 stays on mma.sync).
const forwardKinds = /^(forward|sharded \d|logit shards|batch invariance|determinism)/;
const cases = lmheadCases({ emulated: EMULATED || SANITIZER }).filter(
  (c) => forwardKinds.test(c.name) && /\b(bf16|f16)\b/.test(c.name),
);
runCaseTable('lmhead forward (wgmma tiles)', cases, backends);

const ctx = backends[0].ctx;
describe.skipIf(ctx === undefined)('lmhead forward (wgmma tiles) on cuda', () => {
  it('the tiles ran: their logsumexps differ in some bits from the mma.sync tiles (other flush steps), within the tolerance of each other', async () => {
    const c = ctx!;
    const x = makeHead({ N: 19, d: 896, V: 257, dtype: 'bf16', seed: 77, bias: true });
    const hidden = c.tensor(x.hidden as Uint16Array, [x.N, x.d], 'bf16');
    const weight = c.tensor(x.weight as Uint16Array, [x.V, x.d], 'bf16');
    const bias = c.tensor(x.bias as Uint16Array, [x.V], 'bf16');
    const run = async (path: 'mma' | 'wgmma') => {
      lmheadTuning.path = path;
      const r = await c.linearLogprobs(hidden, weight, x.targets, { bias });
      const lse = (await r.lse.read()) as Float32Array;
      r.lse.dispose();
      r.logprobs.dispose();
      return lse;
    };
    try {
      const mma = await run('mma');
      const wg = await run('wgmma');
      expect(Array.from(wordsOf(wg))).not.toEqual(Array.from(wordsOf(mma)));
      for (let i = 0; i < x.N; i++)
        expect(Math.abs(wg[i] - mma[i]), `row ${i}`).toBeLessThan(1e-4 * (1 + Math.abs(mma[i])));
    } finally {
      lmheadTuning.path = 'wgmma';
      for (const t of [hidden, weight, bias]) t.dispose();
    }
  });
});
