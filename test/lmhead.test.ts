/**
 * The LM-head family (linearLogprobs, linearLogprobsBackward, logprobStates / linearLogprobStates /
 * mergeLogprobStates, thrAggregate / thrScore) on cpu and webgpu: the case table of test/cases/lmhead.ts
 * against its float64 reference, and the checks that are not per-element: finite differences of the
 * float64 objective (which validate the reference and the cpu backend's gradients), bad input, the
 * memory bound, THR's two halves against tokenHiddenReward. The cuda twin: test/cuda/ops-lmhead.test.ts.
 */
import { describe, expect, it } from 'vitest';
import type { WebGpuBackend } from '../src/backends/webgpu/index.js';
import { lmheadPlan } from '../src/backends/webgpu/lmhead.js';
import { lmheadCases } from './cases/lmhead.js';
import { openBackends, requireWebGpu, runCaseTable } from './cases/runner.js';
import { BIG, LOGITS_BF16_BYTES, lmheadChecks } from './lmhead/checks.js';
import { gradVector, makeHead } from './lmhead/reference.js';

const backends = await openBackends(['js', 'cpu', 'webgpu']);
requireWebGpu(backends);
runCaseTable('lmhead', lmheadCases(), backends);
describe('lmhead checks', () => lmheadChecks(backends));

const webgpu = backends.find((b) => b.name === 'webgpu');
describe.skipIf(webgpu?.ctx === undefined)('lmhead on webgpu: memory', () => {
  it('scratch at N = 16384, V = 151936, d = 4096 (computed, not run) ≤ 5% of the bf16 logits; a run allocates what the plan says', async () => {
    const ctx = webgpu!.ctx!;
    const rt = runtimeOf(ctx);
    // The WebGPU spec's default limits and this device's: the plan's scratch either way.
    for (const limits of [
      { maxStorageBufferBindingSize: 128 << 20, minStorageBufferOffsetAlignment: 256 },
      rt.limits,
    ]) {
      for (const dtype of ['bf16', 'f16', 'f32'] as const) {
        const p = lmheadPlan(limits, BIG.N, BIG.V, BIG.d, dtype);
        expect(p.forwardScratchBytes + p.backwardScratchBytes, dtype).toBeLessThanOrEqual(
          0.05 * LOGITS_BF16_BYTES,
        );
        // Gradients in the input dtype: + the f32 accumulators of one chunk (never [V, d]).
        expect(
          p.forwardScratchBytes + p.backwardInputScratchBytes,
          `${dtype}, gradDtype input`,
        ).toBeLessThanOrEqual(0.05 * LOGITS_BF16_BYTES);
      }
    }
    // A run: the bytes created beyond the outputs are the plan's scratch (+ uniforms and flag staging).
    const x = makeHead({ N: 200, d: 48, V: 700, dtype: 'bf16', seed: 95 });
    const hidden = ctx.tensor(x.hidden as Uint16Array, [x.N, x.d], 'bf16');
    const weight = ctx.tensor(x.weight as Uint16Array, [x.V, x.d], 'bf16');
    const plan = lmheadPlan(rt.limits, x.N, x.V, x.d, 'bf16');
    const small = 16 << 10; // uniform buffers and the flag's staging copy
    try {
      await ctx.synchronize();
      rt.peakBytes = rt.liveBytes;
      let base = rt.liveBytes;
      const f = await ctx.linearLogprobs(hidden, weight, x.targets);
      const outputs = 2 * 4 * x.N;
      expect(rt.peakBytes - base - outputs).toBeGreaterThanOrEqual(plan.forwardScratchBytes);
      expect(rt.peakBytes - base - outputs).toBeLessThanOrEqual(plan.forwardScratchBytes + small);
      await ctx.synchronize();
      base = rt.liveBytes;
      rt.peakBytes = base;
      const b = await ctx.linearLogprobsBackward(hidden, weight, x.targets, f.lse, gradVector(96, x.N));
      const grads = 4 * x.d * (x.N + x.V);
      expect(rt.peakBytes - base - grads).toBeGreaterThanOrEqual(plan.backwardScratchBytes);
      expect(rt.peakBytes - base - grads).toBeLessThanOrEqual(plan.backwardScratchBytes + small);
      for (const t of [b.gradHidden, b.gradWeight]) t.dispose();
      // bf16 gradients: their own outputs and the plan's accumulators.
      await ctx.synchronize();
      base = rt.liveBytes;
      rt.peakBytes = base;
      const n = await ctx.linearLogprobsBackward(hidden, weight, x.targets, f.lse, gradVector(96, x.N), {
        gradDtype: 'input',
      });
      const narrowGrads = 2 * x.d * (x.N + x.V);
      expect(plan.backwardInputScratchBytes).toBeGreaterThan(plan.backwardScratchBytes);
      expect(rt.peakBytes - base - narrowGrads).toBeGreaterThanOrEqual(plan.backwardInputScratchBytes);
      expect(rt.peakBytes - base - narrowGrads).toBeLessThanOrEqual(plan.backwardInputScratchBytes + small);
      for (const t of [f.logprobs, f.lse, n.gradHidden, n.gradWeight]) t.dispose();
    } finally {
      hidden.dispose();
      weight.dispose();
    }
  });
});

/** The webgpu runtime behind a context (through a tensor's storage). */
function runtimeOf(ctx: NonNullable<typeof webgpu>['ctx'] & object) {
  const t = ctx.tensor(new Float32Array(1));
  const rt = (t.storage as unknown as { rt: WebGpuBackend['runtime'] }).rt;
  t.dispose();
  return rt;
}
