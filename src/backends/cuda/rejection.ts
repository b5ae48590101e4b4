/** rolloutRejection on CUDA: argument plumbing to native/cuda/rejection.cu (two kernels, no wait). */
import {
  REJECTION_CRITERION_STATS,
  REJECTION_STATS,
  type RolloutRejectionArgs,
  type RolloutRejectionResult,
} from '../backend.js';
import type { NativeRolloutRejectionArgs } from './native.js';
import { native } from './native.js';
import { type CudaMemory, optPtr, ptrOf, withOutputs, withPoison } from './storage.js';

/** Test hook (native/cuda/rejection.cu): responses per block, a multiple of 8 (0: the launcher's choice). */
export const rejectionTuning: { chunkResponses: number } = { chunkResponses: 0 };

export function cudaRolloutRejection(
  mem: CudaMemory,
  a: RolloutRejectionArgs,
): Promise<RolloutRejectionResult> {
  const T = a.numTokens;
  const C = a.criteria.length;
  return withOutputs(mem, async (out) => {
    const mask = out.empty('u8', [T]);
    const stats = out.empty('f32', [REJECTION_STATS.length + C * REJECTION_CRITERION_STATS.length]);
    const args: NativeRolloutRejectionArgs = {
      logprobs: ptrOf(a.logprobs),
      rolloutLogprobs: ptrOf(a.rolloutLogprobs),
      mask: optPtr(a.mask),
      responseOffsets: a.responseOffsets,
      criteria: a.criteria.map(({ statistic, level, lower, upper }) => ({ statistic, level, lower, upper })),
      chunkResponses: rejectionTuning.chunkResponses > 0 ? rejectionTuning.chunkResponses : undefined,
      outMask: ptrOf(mask),
      outStats: ptrOf(stats),
    };
    await native(() => mem.device.rolloutRejection(withPoison(args)));
    return { mask, stats };
  });
}
