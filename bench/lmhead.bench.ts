/**
 * Benchmark cases of the LM-head family (src/backends/js/lmhead.ts, shaders/lmhead.wgsl,
 * native/cuda/lmhead.cu): linearLogprobs and linearLogprobsBackward.
 *
 * The LM head at N rows, hidden size d, vocabulary V, timed beside a logprobs row on materialised
 * [N, V] logits of the same dtype (bench/index.ts lists it next to these: what a trainer holds
 * without the fused op). Work: the useful FLOPs, 2·N·V·d forward and 4·N·V·d backward (gradHidden
 * and gradWeight); sizes add the logits the fused op avoids and the scratch it allocates (the
 * backend's own plan, lmheadScratchBytes), in MB.
 */
import { lmheadScratchBytes } from 'grpo-kernels';
import { type BenchCase, bytesPerElement, randomBf16, randomF32, randomInts } from './case.js';

export function linearCase(
  rows: number,
  dim: number,
  vocab: number,
  dtype: 'f32' | 'bf16',
  backward: boolean,
): BenchCase {
  const e = bytesPerElement(dtype);
  const inputs = (rows + vocab) * dim * e;
  const grads = backward ? (rows + vocab) * dim * 4 : 0;
  return {
    op: backward ? 'linearLogprobsBackward' : 'linearLogprobs',
    sizes: { N: rows, d: dim, V: vocab },
    dtype,
    hostBytes: 2 * inputs,
    deviceBytes: inputs + grads + 64 * rows * 4,
    largestTensorBytes: Math.max(vocab * dim * e, vocab * dim * (backward ? 4 : 0)),
    async setup(ctx) {
      const scale = 1 / Math.sqrt(dim);
      const tensor = (n: number, shape: number[], seed: number, sc: number) =>
        dtype === 'f32'
          ? ctx.tensor(randomF32(n, seed, sc), shape, 'f32')
          : ctx.tensor(randomBf16(n, seed, sc), shape, 'bf16');
      const hidden = tensor(rows * dim, [rows, dim], 21, 1);
      const weight = tensor(vocab * dim, [vocab, dim], 22, 3 * scale);
      const targets = ctx.tensor(randomInts(rows, 23, vocab), [rows], 'i32');
      const fwd = backward ? await ctx.linearLogprobs(hidden, weight, targets) : undefined;
      fwd?.logprobs.dispose();
      const grad = ctx.tensor(randomF32(rows, 24, 0.1), [rows], 'f32');
      const flops = (backward ? 4 : 2) * rows * vocab * dim;
      const scratch = await lmheadScratchBytes(ctx, { rows, vocab, dim, dtype });
      return {
        async run() {
          if (!backward) {
            const r = await ctx.linearLogprobs(hidden, weight, targets);
            return [r.logprobs, r.lse];
          }
          const g = await ctx.linearLogprobsBackward(hidden, weight, targets, fwd!.lse, grad);
          return [g.gradHidden, g.gradWeight];
        },
        dispose() {
          for (const t of [hidden, weight, targets, grad, fwd?.lse]) t?.dispose();
        },
        bytes: inputs + grads + rows * 12,
        work: { amount: flops / 1e9, unit: 'GFLOP/s' },
        sizes: {
          'logits MB': Math.round((rows * vocab * e) / 1e6),
          'scratch MB': Math.round((backward ? scratch.backward : scratch.forward) / 1e6),
        },
      };
    },
  };
}
