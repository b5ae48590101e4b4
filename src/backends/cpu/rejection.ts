/** rolloutRejection on the native cpu backend: argument plumbing to native/cpu/rejection.cc. */
import {
  REJECTION_CRITERION_STATS,
  REJECTION_STATS,
  type RolloutRejectionArgs,
  type RolloutRejectionResult,
} from '../backend.js';
import { arrayOf, type CpuQueue, cpuEmpty, optArrayOf } from './storage.js';

export async function cpuRolloutRejection(
  q: CpuQueue,
  a: RolloutRejectionArgs,
): Promise<RolloutRejectionResult> {
  const mask = cpuEmpty(q, 'u8', [a.numTokens]);
  const stats = cpuEmpty(q, 'f32', [
    REJECTION_STATS.length + a.criteria.length * REJECTION_CRITERION_STATS.length,
  ]);
  await q.run(() =>
    q.device.rolloutRejection({
      logprobs: arrayOf(a.logprobs),
      rolloutLogprobs: arrayOf(a.rolloutLogprobs),
      mask: optArrayOf(a.mask),
      responseOffsets: a.responseOffsets,
      // Exactly the four keys the addon reads (it refuses any other).
      criteria: a.criteria.map(({ statistic, level, lower, upper }) => ({ statistic, level, lower, upper })),
      outMask: arrayOf(mask),
      outStats: arrayOf(stats),
    }),
  );
  return { mask, stats };
}
