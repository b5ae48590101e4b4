/**
 * Family 'order': ops called without awaiting each other (docs/DESIGN.md: ops, reads and synchronize
 * take effect in the order they were called, awaited or not). One chain on shared logits L:
 *   p1 = logprobs(L), p2 = advantages(rewards), p3 = whiten(rewards), then, once p1 settles,
 *   p4 = logprobsBackward(L, lse of p1, inPlace: L now holds the gradient), p5 = logprobs(L) (must read
 *   the gradient), every output read back in reverse order of the calls.
 *
 * Checks: p1, p2 and p3 against js with the tables' tolerances (as the logprobs and advantages
 * families); p4's and p5's outputs against the same chain on the same backend with every call awaited
 * and read before the next: bit for bit, since a backend gives the same bits for the same inputs
 * (docs/DESIGN.md, "Numerics"). They are not compared with js: p4 takes the backend's own lse, p5 the
 * backend's own gradient as its logits, so the tables' bounds (stated for inputs both sides share) do
 * not apply. Outputs `...FirstBitDiff`: the first index where the two orders differ, −1 if none.
 */
import type { Context, LogprobsResult } from '../../../src/index.js';
import { EXACT, firstBitDiff } from '../../../test/cases/check.js';
import { bruteForward, forwardWants } from '../../../test/cases/logprobs.js';
import { TOLERANCES } from '../../../test/cases/tolerances.js';
import { FLOAT_DTYPES, floatData } from '../gen.mjs';
import { type Family, type Keep, readValues, type Values } from '../harness.mjs';

/** A promise whose rejection is handled later (awaited after others): no unhandled-rejection report. */
function later<T>(p: Promise<T>): Promise<T> {
  p.catch(() => undefined);
  return p;
}

export const orderFamily: Family = {
  name: 'order',
  ops: 'logprobs, advantages, whiten, logprobsBackward (inPlace), logprobs, un-awaited',
  async run(r, s) {
    const dtype = r.pick(FLOAT_DTYPES);
    const N = r.int(1, 8);
    const V = r.int(1, 300);
    const T = r.pick([1, 0.7, 2]);
    const logits = floatData(dtype, r.normals(N * V, r.pick([1, 3])));
    const targets = Int32Array.from({ length: N }, () => r.int(0, V - 1));
    const g = Float32Array.from({ length: N }, (_, i) => i + 1);
    const groupSize = r.int(1, 4);
    const rewards = Float32Array.from(r.normals(groupSize * r.int(1, 4)));
    const desc = `${dtype} N=${N} V=${V} T=${T} groupSize=${groupSize} R=${rewards.length}`;

    const upload = (ctx: Context, keep: Keep) => keep(ctx.tensor(logits.bits, [N, V], dtype));
    const keepLp = (res: LogprobsResult, keep: Keep) => {
      for (const t of [res.logprobs, res.lse, res.entropy]) keep(t);
      return res;
    };
    /** The chain with every call awaited and read before the next: the bits p4 and p5 must give. */
    const awaited = async (ctx: Context, keep: Keep) => {
      const L = upload(ctx, keep);
      const r1 = keepLp(await ctx.logprobs(L, targets, { temperature: T, entropy: true }), keep);
      await r1.lse.read();
      const grad = await ctx.logprobsBackward(L, targets, r1.lse, g, { temperature: T, inPlace: true });
      const gradBits = await grad.read();
      const r5 = keepLp(await ctx.logprobs(L, targets, { temperature: T }), keep);
      return { gradBits, lseBits: await r5.lse.read(), lpBits: await r5.logprobs.read() };
    };
    /** The chain as the header says: calls queued behind each other, reads in reverse. */
    const queued = async (ctx: Context, keep: Keep) => {
      const L = upload(ctx, keep);
      const p1 = later(ctx.logprobs(L, targets, { temperature: T, entropy: true }));
      const p2 = later(ctx.advantages(rewards, { groupSize }));
      const p3 = later(ctx.whiten(rewards));
      const r1 = keepLp(await p1, keep);
      const p4 = later(ctx.logprobsBackward(L, targets, r1.lse, g, { temperature: T, inPlace: true }));
      const p5 = later(ctx.logprobs(L, targets, { temperature: T }));
      const r5 = keepLp(await p5, keep);
      const lseBits = await r5.lse.read();
      const lpBits = await r5.logprobs.read();
      const gradBits = await (await p4).read();
      const whiten = await readValues(keep(await p3));
      const a = await p2;
      for (const t of [a.advantages, a.mean, a.std, a.degenerate]) keep(t);
      return {
        lseBits,
        lpBits,
        gradBits,
        whiten,
        advantages: await readValues(a.advantages),
        entropy: await readValues(r1.entropy!),
        lse: await readValues(r1.lse),
        logprobs: await readValues(r1.logprobs),
      };
    };

    await s.compare({
      op: 'un-awaited chain',
      desc,
      async run(ctx, keep) {
        const free = await queued(ctx, keep);
        const seq = await awaited(ctx, keep);
        const out: Values = {
          logprobs: free.logprobs,
          lse: free.lse,
          entropy: free.entropy,
          advantages: free.advantages,
          whiten: free.whiten,
          inPlaceGradFirstBitDiff: Float64Array.of(firstBitDiff(free.gradBits, seq.gradBits)),
          lseAfterInPlaceFirstBitDiff: Float64Array.of(firstBitDiff(free.lseBits, seq.lseBits)),
          logprobsAfterInPlaceFirstBitDiff: Float64Array.of(firstBitDiff(free.lpBits, seq.lpBits)),
        };
        return out;
      },
      expect(js) {
        const w = forwardWants(bruteForward(logits.values, N, V, targets, T, -100));
        const lt = TOLERANCES.logprobs[dtype];
        const at = TOLERANCES.advantages.f32;
        const span = new Float64Array(js.advantages.length);
        for (let q = 0; q < span.length; q += groupSize) {
          let m = 0;
          for (let i = q; i < q + groupSize; i++) m = Math.max(m, Math.abs(js.advantages[i]));
          span.fill(m, q, q + groupSize);
        }
        const exact = { tol: EXACT };
        return {
          logprobs: { tol: lt.logprobs, scale: w.logprobs.scale },
          lse: { tol: lt.lse, scale: w.lse.scale },
          entropy: { tol: lt.entropy, scale: w.entropy.scale },
          advantages: { tol: at.advantages, scale: span },
          whiten: { tol: TOLERANCES.whiten.f32.values },
          inPlaceGradFirstBitDiff: exact,
          lseAfterInPlaceFirstBitDiff: exact,
          logprobsAfterInPlaceFirstBitDiff: exact,
        };
      },
    });
  },
};
