/**
 * The js backend: the TypeScript float64 reference every other backend (cuda, webgpu, the native cpu)
 * is tested against, and the CPU path in browsers (and where the native addon is missing: `cpu` falls
 * back to it). Exact before fast: float64 accumulation, one documented summation order per op,
 * deterministic. Kernels live in one file per family (logprobs.ts, advantages.ts, thr.ts, policy.ts,
 * lmhead.ts) and work on host arrays, synchronously: an op that finds a bad value throws at the op.
 */
import type { DType, HostArrayMap } from '../../dtypes.js';
import { GrpoKernelsError } from '../../errors.js';
import type { Backend, DeviceInfo } from '../backend.js';
import { jsAdvantages, jsExpandToTokens, jsWhiten } from './advantages.js';
import {
  jsLinearLogprobStates,
  jsLinearLogprobs,
  jsLinearLogprobsBackward,
  jsLogprobStates,
  jsMergeLogprobStates,
} from './lmhead.js';
import { jsGatherProbs, jsLogprobs, jsLogprobsBackward } from './logprobs.js';
import { jsPolicyLoss } from './policy.js';
import { jsRolloutRejection } from './rejection.js';
import { jsTensor } from './storage.js';

/** Median seconds of a memcpy of `bytes` bytes (TypedArray.set), after one warm-up. */
function jsCopyProbe(bytes: number): number {
  let src: Uint8Array;
  let dst: Uint8Array;
  try {
    src = new Uint8Array(bytes).fill(1);
    dst = new Uint8Array(bytes);
  } catch (e) {
    throw new GrpoKernelsError('OUT_OF_MEMORY', `js copyProbe: two host buffers of ${bytes} bytes: ${e}`, {
      cause: e,
    });
  }
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

import { jsThrAggregate, jsThrReweight, jsThrScore, jsTokenHiddenReward } from './thr.js';

export function createJsBackend(): Backend {
  const device: DeviceInfo = {
    name: 'JavaScript (TypeScript float64 reference)',
    details: { threads: 1 },
  };
  return {
    name: 'js',
    device,
    upload<D extends DType>(data: HostArrayMap[D], shape: readonly number[], dtype: D) {
      return jsTensor(data.slice() as HostArrayMap[D], shape, dtype);
    },
    logprobs: async (a) => jsLogprobs(a),
    logprobsBackward: async (a) => jsLogprobsBackward(a),
    gatherProbs: async (a) => jsGatherProbs(a),
    linearLogprobs: async (a) => jsLinearLogprobs(a),
    linearLogprobsBackward: async (a) => jsLinearLogprobsBackward(a),
    logprobStates: async (a) => jsLogprobStates(a),
    linearLogprobStates: async (a) => jsLinearLogprobStates(a),
    mergeLogprobStates: async (a) => jsMergeLogprobStates(a),
    advantages: async (a) => jsAdvantages(a),
    expandToTokens: async (a) => jsExpandToTokens(a),
    whiten: async (a) => jsWhiten(a),
    tokenHiddenReward: async (a) => jsTokenHiddenReward(a),
    thrReweight: async (a) => jsThrReweight(a),
    thrAggregate: async (a) => jsThrAggregate(a),
    thrScore: async (a) => jsThrScore(a),
    policyLoss: async (a) => jsPolicyLoss(a),
    rolloutRejection: async (a) => jsRolloutRejection(a),
    synchronize: async () => {},
    copyProbe: async (bytes) => jsCopyProbe(bytes),
    dispose() {},
  };
}
