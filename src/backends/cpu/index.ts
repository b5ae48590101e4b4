/**
 * The cpu backend: the reference every GPU backend is tested against. Exact before fast: float64
 * accumulation, one documented summation order per op, deterministic. Kernels live in one file
 * per family (logprobs.ts, advantages.ts, thr.ts, policy.ts) and work on host arrays.
 */
import type { DType, HostArrayMap } from '../../dtypes.js';
import type { Backend, DeviceInfo } from '../backend.js';
import { cpuAdvantages, cpuExpandToTokens, cpuWhiten } from './advantages.js';
import {
  cpuLinearLogprobStates,
  cpuLinearLogprobs,
  cpuLinearLogprobsBackward,
  cpuLogprobStates,
  cpuMergeLogprobStates,
} from './lmhead.js';
import { cpuGatherProbs, cpuLogprobs, cpuLogprobsBackward } from './logprobs.js';
import { cpuPolicyLoss } from './policy.js';
import { cpuTensor } from './storage.js';

/** Median seconds of a memcpy of `bytes` bytes (TypedArray.set), after one warm-up. */
function cpuCopyProbe(bytes: number): number {
  const src = new Uint8Array(bytes).fill(1);
  const dst = new Uint8Array(bytes);
  const times: number[] = [];
  for (let i = 0; i < 6; i++) {
    const t0 = performance.now();
    dst.set(src);
    times.push((performance.now() - t0) / 1e3);
  }
  times.shift();
  times.sort((a, b) => a - b);
  return times[times.length >> 1];
}

import { cpuThrAggregate, cpuThrReweight, cpuThrScore, cpuTokenHiddenReward } from './thr.js';

export function createCpuBackend(): Backend {
  const device: DeviceInfo = {
    name: 'CPU (TypeScript reference, float64 accumulation)',
    details: { threads: 1 },
  };
  return {
    name: 'cpu',
    device,
    upload<D extends DType>(data: HostArrayMap[D], shape: readonly number[], dtype: D) {
      return cpuTensor(data.slice() as HostArrayMap[D], shape, dtype);
    },
    logprobs: async (a) => cpuLogprobs(a),
    logprobsBackward: async (a) => cpuLogprobsBackward(a),
    gatherProbs: async (a) => cpuGatherProbs(a),
    linearLogprobs: async (a) => cpuLinearLogprobs(a),
    linearLogprobsBackward: async (a) => cpuLinearLogprobsBackward(a),
    logprobStates: async (a) => cpuLogprobStates(a),
    linearLogprobStates: async (a) => cpuLinearLogprobStates(a),
    mergeLogprobStates: async (a) => cpuMergeLogprobStates(a),
    advantages: async (a) => cpuAdvantages(a),
    expandToTokens: async (a) => cpuExpandToTokens(a),
    whiten: async (a) => cpuWhiten(a),
    tokenHiddenReward: async (a) => cpuTokenHiddenReward(a),
    thrReweight: async (a) => cpuThrReweight(a),
    thrAggregate: async (a) => cpuThrAggregate(a),
    thrScore: async (a) => cpuThrScore(a),
    policyLoss: async (a) => cpuPolicyLoss(a),
    synchronize: async () => {},
    copyProbe: async (bytes) => cpuCopyProbe(bytes),
    dispose() {},
  };
}
