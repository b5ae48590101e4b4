/**
 * Benchmark cases of the policy loss (src/backends/js/policy.ts, shaders/policy.wgsl,
 * native/cuda/policy.cu).
 *
 * policyLoss on T ≈ responses·meanLength tokens in `responses` ragged responses (lengths 1 to
 * 2·meanLength − 1): ppo (or `loss`) with a k3 KL, an entropy bonus and token-level rollout correction,
 * the loss's default aggregation (ppo, vespo: token-mean; gmpo: seq-mean-token-mean; gmpo and vespo on
 * the per-response path of the GPU kernels), no mask (a packed batch has no padding). Variant
 * 'ppo-opsm': ppo with TRL's off-policy sequence mask (κ_r from the rollout log-probs: a per-response
 * pass, the per-response path on the GPUs) and the bias-corrected KL. Bytes: six f32 inputs read and two f32
 * outputs written per token (the floor; the kernels read each input twice, the second time from
 * cache), the offsets.
 */
import type { PolicyLossKind } from 'grpo-kernels';
import { type BenchCase, lcg, randomF32 } from './case.js';

/** A loss, or 'ppo-opsm': ppo with the off-policy mask and the bias-corrected KL. */
export type PolicyBenchVariant = PolicyLossKind | 'ppo-opsm';

export function policyLossCase(
  responses: number,
  meanLength: number,
  variant: PolicyBenchVariant = 'ppo',
): BenchCase {
  const opsm = variant === 'ppo-opsm';
  const loss: PolicyLossKind = opsm ? 'ppo' : variant;
  const lengths = new Int32Array(responses);
  const r = lcg(21);
  for (let i = 0; i < responses; i++) lengths[i] = 1 + Math.floor(r() * (2 * meanLength - 1));
  const responseOffsets = new Int32Array(responses + 1);
  for (let i = 0; i < responses; i++) responseOffsets[i + 1] = responseOffsets[i] + lengths[i];
  const T = responseOffsets[responses];
  return {
    op: 'policyLoss',
    sizes: { R: responses, T },
    ...(variant === 'ppo' ? {} : { variant }),
    dtype: 'f32',
    hostBytes: T * 40,
    deviceBytes: T * 32,
    largestTensorBytes: T * 4,
    async setup(ctx) {
      const logprobs = randomF32(T, 22, 0.5).map((x) => -Math.abs(x) - 0.05);
      const shifted = (seed: number, scale: number) => {
        const d = randomF32(T, seed, scale);
        for (let t = 0; t < T; t++) d[t] += logprobs[t];
        return ctx.tensor(d, [T], 'f32');
      };
      const lp = ctx.tensor(logprobs, [T], 'f32');
      const old = shifted(23, 0.1);
      const ref = shifted(24, 0.3);
      const roll = shifted(25, 0.1);
      const adv = ctx.tensor(randomF32(T, 26), [T], 'f32');
      const entropy = ctx.tensor(randomF32(T, 27, 0.5).map(Math.abs), [T], 'f32');
      const layout = { responseOffsets };
      return {
        async run() {
          const out = await ctx.policyLoss(
            {
              logprobs: lp,
              oldLogprobs: old,
              advantages: adv,
              refLogprobs: ref,
              rolloutLogprobs: roll,
              entropy,
              layout,
            },
            {
              loss,
              kl: { coef: 0.01, ...(opsm ? { biasCorrection: true } : {}) },
              entropyCoef: 0.001,
              rolloutCorrection: { level: 'token' },
              ...(opsm ? { offPolicyMask: { threshold: 0.05 } } : {}),
            },
          );
          return [out.loss, out.gradLogprobs, out.gradEntropy!, out.stats];
        },
        dispose() {
          for (const t of [lp, old, ref, roll, adv, entropy]) t.dispose();
        },
        bytes: T * 32 + 4 * (responses + 1),
        work: { amount: T / 1e6, unit: 'Mtok/s' },
      };
    },
  };
}
