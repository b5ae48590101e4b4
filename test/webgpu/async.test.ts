/**
 * Ops enqueue and return without waiting for the GPU (issue 12, "Data flow"): 100 chained ops leave
 * the host's wait counter unchanged, the results equal the same chain with a wait after every op,
 * a bad target on the device surfaces as RANGE at the next wait, once, and an op the device rejects
 * leaves no device check behind.
 */
import { describe, expect, it } from 'vitest';
import { GrpoKernelsError } from '../../src/errors.js';
import { randomNormal } from '../util/rng.js';
import { gpu, noGpu, requireAdapter } from './setup.js';

requireAdapter();

describe.skipIf(noGpu)('webgpu: the host runs ahead of the device', () => {
  const n = 16;
  const v = 3001;

  /** logprobs → whiten of the logprobs → … 50 times: 100 ops, each reading the previous output. */
  async function chain(waitEachOp: boolean): Promise<{ out: Float32Array; waits: number }> {
    const { ctx, backend } = gpu!;
    const logits = ctx.tensor(Float32Array.from(randomNormal(41, n * v)), [n, v]);
    const targets = ctx.tensor(Int32Array.from({ length: n }, (_, i) => (i * 37) % v));
    await ctx.synchronize();
    const before = backend.kit.rt.waits;
    let x = await ctx.whiten(ctx.tensor(new Float32Array(n).fill(0.5)));
    for (let i = 0; i < 50; i++) {
      const r = await ctx.logprobs(logits, targets, { temperature: 0.9 + (i % 3) * 0.1 });
      r.lse.dispose();
      const w = await ctx.whiten(r.logprobs);
      r.logprobs.dispose();
      const next = await ctx.whiten(w); // keeps the chain dependent on every op
      w.dispose();
      x.dispose();
      x = next;
      if (waitEachOp) await ctx.synchronize();
    }
    const waits = backend.kit.rt.waits - before;
    const out = await x.read();
    for (const t of [x, logits, targets]) t.dispose();
    return { out, waits };
  }

  it('100+ chained ops queue without one wait; the bits equal a wait after every op', async () => {
    const queued = await chain(false);
    expect(queued.waits, 'host waits while queueing').toBe(0);
    const waited = await chain(true);
    expect(waited.waits, 'a synchronize (and its device check) per round').toBeGreaterThanOrEqual(50);
    let first = -1;
    for (let i = 0; i < n && first < 0; i++) if (!Object.is(queued.out[i], waited.out[i])) first = i;
    expect(first, 'first element that differs').toBe(-1);
  });

  it('a bad target on the device: the op returns, the next wait throws RANGE naming it, once', async () => {
    const { ctx } = gpu!;
    const logits = ctx.tensor(Float32Array.from(randomNormal(42, 4 * 50)), [4, 50]);
    const targets = ctx.tensor(new Int32Array([3, 77, -100, -5]));
    const r = await ctx.logprobs(logits, targets);
    const g = await ctx.logprobsBackward(logits, targets, r.lse, new Float32Array(4).fill(1));
    const e = await ctx.synchronize().catch((x: unknown) => x);
    expect(e).toBeInstanceOf(GrpoKernelsError);
    expect(e).toMatchObject({ code: 'RANGE', argument: 'targets' });
    expect((e as Error).message).toMatch(/got targets\[1\] = 77$/);
    await ctx.synchronize(); // reported once: later waits succeed
    expect((await r.logprobs.read())[0]).toBeLessThan(0);
    for (const t of [logits, targets, r.logprobs, r.lse, g]) t.dispose();
  });

  it('an op the device rejects drops its device check: later ops, reads and waits are unaffected', async () => {
    const { ctx, backend } = gpu!;
    const rt = backend.kit.rt;
    const data = Float32Array.from(randomNormal(43, 4 * 50));
    const targets = new Int32Array([3, 7, 11, 49]);
    // A caller's buffer that the caller destroys: the op's submit is rejected (a validation error),
    // after the op registered the check of its flag words.
    const buffer = rt.device.createBuffer({ size: data.byteLength, usage: 0x80 | 0x4 | 0x8 });
    rt.device.queue.writeBuffer(buffer, 0, data);
    const wrapped = ctx.fromGPUBuffer(buffer, [4, 50], 'f32');
    buffer.destroy();
    const e = await ctx.logprobs(wrapped, targets).catch((x: unknown) => x);
    expect(e).toBeInstanceOf(GrpoKernelsError);
    expect(e).toMatchObject({ code: 'BACKEND_UNAVAILABLE' });
    expect(rt.pendingChecks, "the failed op's check").toBe(0);
    const logits = ctx.tensor(data, [4, 50]);
    const ok = await ctx.logprobs(logits, targets);
    await ctx.synchronize();
    expect(Array.from(await ok.logprobs.read()).every((x) => x < 0)).toBe(true);
    for (const t of [logits, ok.logprobs, ok.lse, wrapped]) t.dispose();
  });
});
