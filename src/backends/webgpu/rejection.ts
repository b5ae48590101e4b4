/// <reference types="@webgpu/types" />
/**
 * rolloutRejection on WebGPU: host side of shaders/rejection.wgsl (formulas, work split, bytes and
 * numerics are in that file's header; the definitions in src/backends/js/rejection.ts).
 *
 * The host splits the responses by length from its offsets (rejectionPlan): short ones (≤ shortMax
 * tokens) go one per invocation in chunks of responses, long ones one per workgroup, listed by index
 * and grouped into long chunks; the choice depends on a response's length alone, so its mask bits do
 * not depend on the batch. One compute pass, never a wait: `rejection_main` over every chunk (each
 * writes a partial record), then `rejection_reduce` (one workgroup: the stats). The output mask is
 * cleared first (clearBuffer): words shared by two responses are OR-ed in atomically.
 * Eight storage buffers (WebGPU's default limit): the criteria and the list of long responses share
 * one host-written buffer (`plan`).
 */
import { GrpoKernelsError } from '../../errors.js';
import {
  REJECTION_CRITERION_STATS,
  REJECTION_LEVELS,
  REJECTION_STATISTICS,
  REJECTION_STATS,
  type RolloutRejectionArgs,
  type RolloutRejectionResult,
} from '../backend.js';
import { runWithScratch, type WebGpuKit } from './kit.js';
import { type Binding, Usage } from './runtime.js';
import type { EntrySpec, ModuleKey } from './shaders.js';
import { gpuStorage, outputTensor } from './storage.js';
import { uniformLayout } from './uniforms.js';

/** The uniform struct of shaders/rejection.wgsl (checked against the WGSL by infra.test.ts). */
export const REJECTION_PARAMS = uniformLayout('rejection.wgsl', 'RejectionParams', [
  ['num_responses', 'u32'],
  ['num_criteria', 'u32'],
  ['has_mask', 'u32'],
  ['small_max', 'u32'],
  ['short_chunk', 'u32'],
  ['num_short', 'u32'],
  ['long_chunk', 'u32'],
  ['num_long', 'u32'],
  ['num_parts', 'u32'],
]);

/** The codes of shaders/rejection.wgsl (STAT_*, LEVEL_*): each list's positions. */
export const REJECTION_STATISTIC_CODE = Object.fromEntries(
  REJECTION_STATISTICS.map((k, i) => [k, i]),
) as Record<(typeof REJECTION_STATISTICS)[number], number>;
export const REJECTION_LEVEL_CODE = Object.fromEntries(REJECTION_LEVELS.map((k, i) => [k, i])) as Record<
  (typeof REJECTION_LEVELS)[number],
  number
>;

/** Words of a partial record: the head, then CRIT_WORDS per criterion (HEAD_WORDS, CRIT_WORDS in the WGSL). */
const HEAD_WORDS = 4;
const CRIT_WORDS = 7;
/** At most this many short chunks, and as many long ones. */
const MAX_CHUNKS = 1024;
/**
 * The longest short response (one invocation walks it; longer ones take a workgroup). A GRPO batch's
 * responses are hundreds to thousands of tokens: a workgroup each. Batches of many tiny responses
 * would leave a workgroup's invocations idle and pay a tree per response; one invocation walking 64
 * tokens twice costs about what the workgroup's tree does.
 */
export const REJECTION_SHORT_MAX = 64;

/**
 * Test knobs. `shortMax`: the longest short response (changes which order sums a response, so its
 * bits; never per batch); `shortChunkMultiple`: responses per short chunk, in WGs (undefined: the
 * fewest that keep ≤ MAX_CHUNKS); `longChunk`: long responses per long chunk (undefined: likewise).
 * The chunk sizes change only the stats' order of summation, never the mask.
 */
export const rejectionTuning: {
  shortMax: number;
  shortChunkMultiple: number | undefined;
  longChunk: number | undefined;
} = { shortMax: REJECTION_SHORT_MAX, shortChunkMultiple: undefined, longChunk: undefined };

export interface RejectionPlan {
  /** The long responses' indices, in order. */
  long: Uint32Array;
  shortChunk: number;
  numShort: number;
  longChunk: number;
  numLongChunks: number;
}

/** The work split of R responses (offsets [R + 1]) at workgroup size `wg`. */
export function rejectionPlan(offsets: Int32Array, wg: number, tuning = rejectionTuning): RejectionPlan {
  const R = offsets.length - 1;
  const all = new Uint32Array(R);
  let L = 0;
  for (let r = 0; r < R; r++) if (offsets[r + 1] - offsets[r] > tuning.shortMax) all[L++] = r;
  const long = all.subarray(0, L);
  const shortChunk = wg * (tuning.shortChunkMultiple ?? Math.max(1, Math.ceil(R / (wg * MAX_CHUNKS))));
  const numShort = L === R ? 0 : Math.ceil(R / shortChunk);
  const longChunk = tuning.longChunk ?? Math.max(1, Math.ceil(L / MAX_CHUNKS));
  return { long, shortChunk, numShort, longChunk, numLongChunks: Math.ceil(L / longChunk) };
}

const BINDINGS: [number, 'uniform' | 'read' | 'rw'][] = [
  [0, 'uniform'],
  [1, 'read'],
  [2, 'read'],
  [3, 'read'],
  [4, 'read'],
  [5, 'read'],
  [6, 'rw'],
  [7, 'rw'],
  [8, 'rw'],
];
const MAIN: EntrySpec = { entry: 'rejection_main', bindings: BINDINGS };
const REDUCE: EntrySpec = { entry: 'rejection_reduce', bindings: BINDINGS };
const MODULE: ModuleKey = { file: 'rejection.wgsl', sections: ['k3'] };

export async function webgpuRolloutRejection(
  k: WebGpuKit,
  a: RolloutRejectionArgs,
): Promise<RolloutRejectionResult> {
  const { rt } = k;
  rt.check();
  const T = a.numTokens;
  const R = a.numResponses;
  const C = a.criteria.length;
  k.checkVector('logprobs', T);
  k.checkVector('layout.responseOffsets', R + 1);
  const t = rejectionTuning;
  if (!(Number.isInteger(t.shortMax) && t.shortMax >= 0))
    throw new GrpoKernelsError(
      'RANGE',
      `rejectionTuning.shortMax: expected an integer ≥ 0, got ${t.shortMax}`,
      {
        argument: 'rejectionTuning.shortMax',
      },
    );
  const plan = rejectionPlan(a.responseOffsets, k.wg);
  const numParts = plan.numShort + plan.numLongChunks;
  const recordWords = HEAD_WORDS + CRIT_WORDS * C;

  // The criteria (statistic, level, lower and upper as f32 bits), then the long responses.
  const planWords = new Uint32Array(4 * C + plan.long.length);
  const asF32 = new Float32Array(planWords.buffer);
  a.criteria.forEach((c, i) => {
    planWords[4 * i] = REJECTION_STATISTIC_CODE[c.statistic];
    planWords[4 * i + 1] = REJECTION_LEVEL_CODE[c.level];
    asF32[4 * i + 2] = c.lower;
    asF32[4 * i + 3] = c.upper;
  });
  planWords.set(plan.long, 4 * C);
  k.checkVector('layout.responseOffsets', planWords.length);
  if (numParts * recordWords * 4 > rt.limits.maxStorageBufferBindingSize)
    throw new GrpoKernelsError(
      'SHAPE',
      `layout: ${R} responses need more partial records than one binding holds`,
      {
        argument: 'layout',
      },
    );

  const constants = { WG: k.wg };
  const [mainPipe, reducePipe] = await Promise.all([
    numParts > 0 ? k.pipelines.get(MODULE, MAIN, constants) : undefined,
    k.pipelines.get(MODULE, REDUCE, constants),
  ]);

  const params = {
    num_responses: R,
    num_criteria: C,
    has_mask: a.mask ? 1 : 0,
    small_max: t.shortMax,
    short_chunk: plan.shortChunk,
    num_short: plan.numShort,
    long_chunk: plan.longChunk,
    num_long: plan.long.length,
    num_parts: numParts,
  };

  return runWithScratch(k, 'rolloutRejection', (s) => {
    const mask = outputTensor(rt, 'u8', [T]);
    const stats = outputTensor(rt, 'f32', [REJECTION_STATS.length + C * REJECTION_CRITERION_STATS.length]);
    const out = gpuStorage(mask).buffer;
    const parts = s.buffer(Math.max(numParts, 1) * recordWords * 4, 'rolloutRejection partials');
    // Inputs of T = 0 may be buffers of 0 bytes (fromGPUBuffer), which cannot be bound: a dummy instead.
    const input = (x: RolloutRejectionArgs['logprobs'] | RolloutRejectionArgs['mask']) =>
      x !== undefined && T > 0 ? gpuStorage(x).buffer : k.dummies[0];
    const bindings: Binding[] = [
      { binding: 0, buffer: rt.uniform(REJECTION_PARAMS, params) },
      { binding: 1, buffer: rt.transientData(a.responseOffsets, Usage.STORAGE, 'responseOffsets') },
      { binding: 2, buffer: input(a.logprobs) },
      { binding: 3, buffer: input(a.rolloutLogprobs) },
      { binding: 4, buffer: input(a.mask) },
      { binding: 5, buffer: rt.transientData(planWords, Usage.STORAGE, 'rolloutRejection plan') },
      { binding: 6, buffer: out },
      { binding: 7, buffer: parts },
      { binding: 8, buffer: gpuStorage(stats).buffer },
    ];
    const enc = rt.device.createCommandEncoder({ label: 'rolloutRejection' });
    enc.clearBuffer(out);
    const pass = enc.beginComputePass();
    if (numParts > 0) rt.dispatch(pass, mainPipe!, bindings, numParts);
    rt.dispatch(pass, reducePipe, bindings, 1);
    pass.end();
    rt.submit(enc);
    return { mask, stats };
  });
}
