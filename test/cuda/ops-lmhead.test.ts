/**
 * The LM-head family on cuda (a GPU, or the CUDA emulator in the vitest project cuda-emu): the case
 * table of test/cases/lmhead.ts, the backend-independent checks of test/lmhead/checks.ts, and what only
 * the cuda backend can show: gradWeight's bits do not depend on how rows are chunked (the backward's G
 * chunk, a test hook), and the memory bound, structurally: the launchers' Scratch bytes (the addon's
 * lmheadPlan) at N = 16384, V = 151936, d = 4096 against the materialised logits (f32 gradients and
 * gradients in the input dtype), and a run's actual Scratch allocation (stats().lastScratchBytes) equal
 * to the plan's at the run's size. Every one on the mma.sync tiles (lmheadTuning.path 'mma'): what a GPU
 * other than a 9.0 one runs, and f32 or unaligned operands everywhere; Hopper's tiles, of which 'auto' takes
 * the chained ones where they apply, have their own files (ops-lmhead-wgmma.test.ts, ops-lmhead-tma.test.ts,
 * ops-lmhead-chain.test.ts).
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { lmheadTuning } from '../../src/backends/cuda/lmhead.js';
import { loadNativeAddon, type NativeDevice } from '../../src/backends/cuda/native.js';
import { lmheadCases } from '../cases/lmhead.js';
import { openBackends, runCaseTable } from '../cases/runner.js';
import { BIG, expectChunkInvariantGradients, LOGITS_BF16_BYTES, lmheadChecks } from '../lmhead/checks.js';
import { gradVector, makeHead } from '../lmhead/reference.js';
import { EMU_MEMCHECK, EMULATED, LARGEST_LMHEAD_SHAPES, SANITIZER } from './helpers.js';

const backends = await openBackends(['cuda']);
beforeAll(() => {
  lmheadTuning.path = 'mma';
});
afterAll(() => {
  lmheadTuning.path = 'auto';
});
// Under compute-sanitizer the emulator's smaller shapes too: d = 896 × V = 32003 takes 40 s under racecheck.
if (SANITIZER)
  console.warn('test/cuda: the LM-head case table at its emulator sizes under compute-sanitizer');
if (EMU_MEMCHECK)
  console.warn(
    'test/cuda: the LM-head case table without its two largest shapes under emu-memcheck (npm test runs them)',
  );
runCaseTable(
  'lmhead',
  lmheadCases({ emulated: EMULATED || SANITIZER }).filter(
    (c) => !(EMU_MEMCHECK && LARGEST_LMHEAD_SHAPES.test(c.name)),
  ),
  backends,
);
describe('lmhead checks', () => lmheadChecks(backends));

const ctx = backends[0].ctx;

describe.skipIf(ctx === undefined)('lmhead on cuda: chunking and memory', () => {
  it('gradWeight and gradHidden have the same bits whatever the backward chunks rows and vocabulary', async () => {
    await expectChunkInvariantGradients(ctx!, 91, (chunkRows, chunkVocab) =>
      Object.assign(lmheadTuning, { chunkRows, chunkVocab }),
    );
  });

  it('memory: scratch at N = 16384, V = 151936, d = 4096 (computed, not run) ≤ 5% of the bf16 logits; a run allocates what the plan says', async () => {
    const addon = loadNativeAddon();
    const plan = addon.lmheadPlan!;
    for (const dtype of ['bf16', 'f16', 'f32'] as const) {
      const p = plan({ rows: BIG.N, vocab: BIG.V, dim: BIG.d, dtype });
      expect(p.forwardBytes + p.backwardBytes, dtype).toBeLessThanOrEqual(0.05 * LOGITS_BF16_BYTES);
      // Gradients in the input dtype: + one chunk's f32 accumulators (never [V, d]).
      expect(p.forwardBytes + p.backwardInputBytes, `${dtype}, gradDtype input`).toBeLessThanOrEqual(
        0.05 * LOGITS_BF16_BYTES,
      );
    }
    // A run's Scratch: the plan's bytes (the structure the bound is computed from is the one that runs).
    const c = ctx!;
    const device = nativeDevice(c);
    const x = makeHead({ N: 200, d: 48, V: 700, dtype: 'bf16', seed: 93 });
    const hidden = c.tensor(x.hidden as Uint16Array, [x.N, x.d], 'bf16');
    const weight = c.tensor(x.weight as Uint16Array, [x.V, x.d], 'bf16');
    try {
      const p = plan({ rows: x.N, vocab: x.V, dim: x.d, dtype: 'bf16' });
      const f = await c.linearLogprobs(hidden, weight, x.targets);
      await c.synchronize();
      expect(device.stats().lastScratchBytes).toBe(p.forwardBytes);
      const b = await c.linearLogprobsBackward(hidden, weight, x.targets, f.lse, gradVector(94, x.N));
      await c.synchronize();
      expect(device.stats().lastScratchBytes).toBe(p.backwardBytes);
      for (const t of [f.logprobs, f.lse, b.gradHidden, b.gradWeight]) t.dispose();
    } finally {
      hidden.dispose();
      weight.dispose();
    }
    // bf16 gradients over two vocabulary chunks: + gradHidden's f32 accumulator, as the plan says.
    const y = makeHead({ N: 200, d: 48, V: 5000, dtype: 'bf16', seed: 95 });
    const h2 = c.tensor(y.hidden as Uint16Array, [y.N, y.d], 'bf16');
    const w2 = c.tensor(y.weight as Uint16Array, [y.V, y.d], 'bf16');
    try {
      const p = plan({ rows: y.N, vocab: y.V, dim: y.d, dtype: 'bf16' });
      expect(p.backwardInputBytes).toBeGreaterThan(p.backwardBytes);
      const f = await c.linearLogprobs(h2, w2, y.targets);
      const b = await c.linearLogprobsBackward(h2, w2, y.targets, f.lse, gradVector(96, y.N), {
        gradDtype: 'input',
      });
      await c.synchronize();
      expect(device.stats().lastScratchBytes).toBe(p.backwardInputBytes);
      for (const t of [f.logprobs, f.lse, b.gradHidden, b.gradWeight]) t.dispose();
    } finally {
      h2.dispose();
      w2.dispose();
    }
  });
});

/** The NativeDevice behind a cuda context (through a tensor's storage). */
function nativeDevice(c: NonNullable<typeof ctx>): NativeDevice {
  const t = c.tensor(new Float32Array(1));
  const dev = (t.storage as unknown as { device: NativeDevice }).device;
  t.dispose();
  return dev;
}
