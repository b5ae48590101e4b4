/**
 * Benchmark cases of rolloutRejection (src/backends/js/rejection.ts, native/cpu/rejection.cc,
 * native/cuda/rejection.cu, shaders/rejection.wgsl).
 *
 * verl's rollout rejection sampling on T ≈ responses·meanLength tokens in `responses` ragged responses
 * (lengths 1 to 2·meanLength − 1), no mask (a packed batch has no padding), λ = ℓ − ℓᵛ of spread 0.1.
 * Variant 'k3' (default): verl's decoupled_k3_rs preset, seq_mean_k3 ≤ 0.01, one criterion. Variant
 * 'all': verl's 11 options at once (thresholds that keep most tokens). Bytes: two f32 inputs read and
 * one u8 written per token (the floor: 9 bytes a token), the offsets.
 */
import type { RolloutRejectionOptions } from 'grpo-kernels';
import { type BenchCase, lcg, randomF32 } from './case.js';

export type RejectionBenchVariant = 'k3' | 'all';

const OPTIONS: Record<RejectionBenchVariant, RolloutRejectionOptions> = {
  k3: { criteria: 'seq_mean_k3', thresholds: 0.01 },
  all: {
    criteria:
      'token_k1,token_k2,token_k3,seq_sum_k1,seq_sum_k2,seq_sum_k3,seq_mean_k1,seq_mean_k2,seq_mean_k3,seq_max_k2,seq_max_k3',
    thresholds: '0.5_2,0.5,0.5,0.01_100,4,4,0.9_1.1,0.02,0.02,0.5,0.5',
  },
};

export function rejectionCase(
  responses: number,
  meanLength: number,
  variant: RejectionBenchVariant = 'k3',
): BenchCase {
  const lengths = new Int32Array(responses);
  const r = lcg(31);
  for (let i = 0; i < responses; i++) lengths[i] = 1 + Math.floor(r() * (2 * meanLength - 1));
  const responseOffsets = new Int32Array(responses + 1);
  for (let i = 0; i < responses; i++) responseOffsets[i + 1] = responseOffsets[i] + lengths[i];
  const T = responseOffsets[responses];
  return {
    op: 'rolloutRejection',
    sizes: { R: responses, T },
    ...(variant === 'k3' ? {} : { variant }),
    dtype: 'f32',
    hostBytes: T * 10,
    deviceBytes: T * 9,
    largestTensorBytes: T * 4,
    async setup(ctx) {
      const logprobs = randomF32(T, 32, 0.5).map((x) => -Math.abs(x) - 0.05);
      const rollout = randomF32(T, 33, 0.1);
      for (let t = 0; t < T; t++) rollout[t] += logprobs[t];
      const lp = ctx.tensor(logprobs, [T], 'f32');
      const roll = ctx.tensor(rollout, [T], 'f32');
      const layout = { responseOffsets };
      return {
        async run() {
          const out = await ctx.rolloutRejection(
            { logprobs: lp, rolloutLogprobs: roll, layout },
            OPTIONS[variant],
          );
          return [out.mask, out.stats];
        },
        dispose() {
          lp.dispose();
          roll.dispose();
        },
        bytes: T * 9 + 4 * (responses + 1),
        work: { amount: T / 1e6, unit: 'Mtok/s' },
      };
    },
  };
}
