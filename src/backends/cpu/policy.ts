/** policyLoss on the native cpu backend: argument plumbing to native/cpu/policy.cc. */
import { POLICY_STATS, type PolicyLossArgs, type PolicyLossResult } from '../backend.js';
import { policyNativeArgs } from '../policy-native.js';
import { arrayOf, type CpuQueue, cpuEmpty, optArrayOf } from './storage.js';

export async function cpuPolicyLoss(q: CpuQueue, a: PolicyLossArgs): Promise<PolicyLossResult> {
  const T = a.numTokens;
  const loss = cpuEmpty(q, 'f32', [1]);
  const gradLogprobs = cpuEmpty(q, 'f32', [T]);
  const gradEntropy = a.entropy ? cpuEmpty(q, 'f32', [T]) : undefined;
  const tokenLoss = a.tokenLoss ? cpuEmpty(q, 'f32', [T]) : undefined;
  const stats = cpuEmpty(q, 'f32', [POLICY_STATS.length]);
  await q.run(() =>
    q.device.policyLoss(
      policyNativeArgs<Float32Array, Uint8Array>(a, arrayOf, arrayOf, {
        loss: arrayOf(loss),
        gradLogprobs: arrayOf(gradLogprobs),
        gradEntropy: optArrayOf(gradEntropy),
        tokenLoss: optArrayOf(tokenLoss),
        stats: arrayOf(stats),
      }),
    ),
  );
  const r: PolicyLossResult = { loss, gradLogprobs, stats };
  if (gradEntropy) r.gradEntropy = gradEntropy;
  if (tokenLoss) r.tokenLoss = tokenLoss;
  return r;
}
