/** policyLoss on CUDA: argument plumbing to native/cuda/policy.cu (two kernels, no wait). */
import { POLICY_STATS, type PolicyLossArgs, type PolicyLossResult } from '../backend.js';
import { policyNativeArgs } from '../policy-native.js';
import type { NativePolicyLossArgs } from './native.js';
import { type CudaMemory, optPtr, ptrOf, runWithOutputs, withPoison } from './storage.js';

/** Test hook: responses per block, a multiple of 8 (0: the launcher's choice). */
export const policyTuning = { chunkResponses: 0 };

export function cudaPolicyLoss(mem: CudaMemory, a: PolicyLossArgs): Promise<PolicyLossResult> {
  const T = a.numTokens;
  const loss = mem.empty('f32', [1]);
  const gradLogprobs = mem.empty('f32', [T]);
  const gradEntropy = a.entropy ? mem.empty('f32', [T]) : undefined;
  const tokenLoss = a.tokenLoss ? mem.empty('f32', [T]) : undefined;
  const stats = mem.empty('f32', [POLICY_STATS.length]);
  const args: NativePolicyLossArgs = {
    ...policyNativeArgs(a, ptrOf, ptrOf, {
      loss: ptrOf(loss),
      gradLogprobs: ptrOf(gradLogprobs),
      gradEntropy: optPtr(gradEntropy),
      tokenLoss: optPtr(tokenLoss),
      stats: ptrOf(stats),
    }),
    chunkResponses: policyTuning.chunkResponses > 0 ? policyTuning.chunkResponses : undefined,
  };
  return runWithOutputs(
    [loss, gradLogprobs, gradEntropy, tokenLoss, stats],
    () => mem.device.policyLoss(withPoison(args)),
    () => {
      const r: PolicyLossResult = { loss, gradLogprobs, stats };
      if (gradEntropy) r.gradEntropy = gradEntropy;
      if (tokenLoss) r.tokenLoss = tokenLoss;
      return r;
    },
  );
}
