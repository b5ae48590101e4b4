/** policyLoss on CUDA: argument plumbing to native/cuda/policy.cu (two kernels, no wait). */
import { POLICY_STATS, type PolicyLossArgs, type PolicyLossResult } from '../backend.js';
import { policyNativeArgs } from '../policy-native.js';
import type { NativePolicyLossArgs } from './native.js';
import { native } from './native.js';
import { type CudaMemory, optPtr, ptrOf, withOutputs, withPoison } from './storage.js';

/** The kernel layouts of native/cuda/policy.cu: the launcher's choice, a warp per response, or flat. */
export type PolicyPath = 'auto' | 'warp' | 'flat';
const PATH_CODES: Record<PolicyPath, number> = { auto: 0, warp: 1, flat: 2 };

/**
 * Test hooks (native/cuda/policy.cu): the layout ('flat' is refused where a token's outputs depend on a
 * per-response quantity: gspo's s_r, gmpo's s_r and Q_r, vespo's W_r, the off-policy mask's κ_r, a
 * sequence or geometric rollout weight, sequence-mask's Λ_r, seq-mean-token-mean's 1/n_r; the KL bias
 * correction is per token, either layout); responses per block of the warp path, a multiple of 8, and
 * tokens per block of the flat path, a multiple of 1024 (0: the launcher's choice).
 */
export const policyTuning: { path: PolicyPath; chunkResponses: number; chunkTokens: number } = {
  path: 'auto',
  chunkResponses: 0,
  chunkTokens: 0,
};

export function cudaPolicyLoss(mem: CudaMemory, a: PolicyLossArgs): Promise<PolicyLossResult> {
  const T = a.numTokens;
  return withOutputs(mem, async (out) => {
    const loss = out.empty('f32', [1]);
    const gradLogprobs = out.empty('f32', [T]);
    const gradEntropy = a.entropy ? out.empty('f32', [T]) : undefined;
    const tokenLoss = a.tokenLoss ? out.empty('f32', [T]) : undefined;
    const stats = out.empty('f32', [POLICY_STATS.length]);
    const args: NativePolicyLossArgs = {
      ...policyNativeArgs(a, ptrOf, ptrOf, {
        loss: ptrOf(loss),
        gradLogprobs: ptrOf(gradLogprobs),
        gradEntropy: optPtr(gradEntropy),
        tokenLoss: optPtr(tokenLoss),
        stats: ptrOf(stats),
      }),
      chunkResponses: policyTuning.chunkResponses > 0 ? policyTuning.chunkResponses : undefined,
      path: policyTuning.path === 'auto' ? undefined : PATH_CODES[policyTuning.path],
      chunkTokens: policyTuning.chunkTokens > 0 ? policyTuning.chunkTokens : undefined,
    };
    await native(() => mem.device.policyLoss(withPoison(args)));
    const r: PolicyLossResult = { loss, gradLogprobs, stats };
    if (gradEntropy) r.gradEntropy = gradEntropy;
    if (tokenLoss) r.tokenLoss = tokenLoss;
    return r;
  });
}
