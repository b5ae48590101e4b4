/// <reference types="@webgpu/types" />
/**
 * The logprobs family on WebGPU: host side of shaders/logprobs.wgsl (formulas, work split,
 * bytes and FLOPs are in that file's header).
 *
 * - logprobs: batch invariant (issue 10): a row's bits depend on that row alone, never on N, its
 *   position or the chunking. The reduction tree is fixed by V (shaders/logprobs.wgsl's header):
 *   the row is cut into segments of about SEGMENT_COLS columns (segmentsFor, from V alone); each
 *   of the WG lanes keeps an online state per segment and folds its segments in order; then one
 *   workgroup reduction over the lanes. `logprobs_rows` runs that tree in two schedules, chosen
 *   per chunk by its row count, for speed only: from SPLIT_BELOW_ROWS rows on, one workgroup per
 *   row (MODE_ROWS); below, one workgroup per (row, segment) stores its lanes' states
 *   (MODE_SEGMENTS), then one workgroup per row folds and reduces them (MODE_MERGE).
 *   Why this tree: the large-N path stays what it was, one pass over the logits, one workgroup
 *   per row, ONE workgroup reduction per row, no partial buffer, no second dispatch; the only
 *   extra work is a register fold per lane and segment (2 exp per 32 logits of a lane). The
 *   alternatives cost the large-N path more: "always split" adds a second dispatch and a partial
 *   buffer created (and lazily zeroed) per call; a workgroup reduction per segment in the row
 *   kernel (the old split path's tree, tried first) made it 3–4× (subgroups) and 8–10× (tree)
 *   slower on lavapipe at N = 256–3000. Measured on an H200 through Dawn, bf16 V = 151936,
 *   N = 2048 and 4096: within run-to-run noise of the old kernel. The few-row path pays instead:
 *   its partial states are WG per (row, segment), ≈ 0.6 bytes per logit written and read back,
 *   on fewer than SPLIT_BELOW_ROWS rows (and only while they fit one binding). All modes are one
 *   entry point, so one pipeline: the subgroup size, which reduce_subgroup's order depends on,
 *   is a per-pipeline choice of some drivers. The reduction variant (reduce_subgroup or
 *   reduce_tree, from the device's features and the tuning) and WG (from its limits) also set
 *   the bits: per device, never per call. `tuning.splits` (tests only) overrides the segment
 *   count: other bits, the same for every N.
 *   All chunks go in one command buffer. A row of all −Inf logits, or a target outside [0, V)
 *   that is not ignoreIndex, is flagged by the kernel (atomicMin of the row index: the lowest bad
 *   row, deterministic; MODE_FLAG then records that row's target). The flag words are copied to a
 *   staging buffer in the same submission and looked at by the next wait (read(), synchronize(),
 *   GpuRuntime.drainChecks): the op itself returns without waiting for the GPU.
 * - logprobsBackward: `logprobs_backward`, one invocation per output unit (an f32, or a u32 word
 *   of two f16/bf16), chunked over rows with X and Y windows of the same rows. inPlace: the same
 *   entry point compiled with common.wgsl's xy_<dtype> section binds the logits read_write at
 *   binding 1 (no binding 2) and writes the gradient over them: no [rows, V] buffer is made.
 * - gatherProbs: `gather_probs`, one invocation per packed output element, chunked over tokens.
 * logprobsBackward and gatherProbs are elementwise given the per-row inputs (lse, ...): batch
 * invariant by construction (test/webgpu/invariance.test.ts checks all three ops).
 */
import { bytesPerElement, type FloatDType } from '../../dtypes.js';
import { GrpoKernelsError } from '../../errors.js';
import type { Tensor } from '../../tensor.js';
import type { GatherProbsArgs, LogprobsArgs, LogprobsBackwardArgs, LogprobsResult } from '../backend.js';
import { planRowChunks } from './chunking.js';
import { flagBuffers, roomForCheck, submitWithFlags } from './flags.js';
import type { WebGpuKit } from './kit.js';
import { type Binding, Usage } from './runtime.js';
import { type EntrySpec, type ModuleKey, xSection, ySection } from './shaders.js';
import { gpuStorage, outputTensor } from './storage.js';
import { uniformLayout } from './uniforms.js';

/** The uniform struct of shaders/logprobs.wgsl (checked against the WGSL by infra.test.ts). */
export const LOGPROBS_PARAMS = uniformLayout('logprobs.wgsl', 'LogprobsParams', [
  ['rows', 'u32'],
  ['vocab', 'u32'],
  ['row_base', 'u32'],
  ['x_base', 'u32'],
  ['y_base', 'u32'],
  ['segments', 'u32'],
  ['seg_cols', 'u32'],
  ['mode', 'u32'],
  ['units', 'u32'],
  ['out_base', 'u32'],
  ['count', 'u32'],
  ['num_groups', 'u32'],
  ['inv_t', 'f32'],
  ['ignore_index', 'i32'],
]);
const ZERO_PARAMS = {
  rows: 0,
  vocab: 0,
  row_base: 0,
  x_base: 0,
  y_base: 0,
  segments: 1,
  seg_cols: 0,
  mode: 0,
  units: 0,
  out_base: 0,
  count: 0,
  num_groups: 0,
  inv_t: 1,
  ignore_index: 0,
};
const paramsOf = (p: Partial<typeof ZERO_PARAMS>) => ({ ...ZERO_PARAMS, ...p });

/** Every schedule of the forward (uniform `mode`); binding 8 (partial) is a dummy in MODE_ROWS. */
const ROWS: EntrySpec = {
  entry: 'logprobs_rows',
  bindings: [
    [0, 'uniform'],
    [1, 'read'],
    [3, 'read'],
    [4, 'rw'],
    [5, 'rw'],
    [6, 'rw'],
    [7, 'rw'],
    [8, 'rw'],
    [9, 'rw'],
  ],
};
const BACKWARD: EntrySpec = {
  entry: 'logprobs_backward',
  bindings: [
    [0, 'uniform'],
    [1, 'read'],
    [2, 'rw'],
    [3, 'read'],
    [9, 'rw'],
    [10, 'read'],
    [11, 'read'],
    [12, 'read'],
    [13, 'read'],
  ],
};
/** BACKWARD in place: the logits (binding 1) are read and overwritten; there is no Y. */
const BACKWARD_IN_PLACE: EntrySpec = {
  entry: 'logprobs_backward',
  bindings: [
    [0, 'uniform'],
    [1, 'rw'],
    [3, 'read'],
    [9, 'rw'],
    [10, 'read'],
    [11, 'read'],
    [12, 'read'],
    [13, 'read'],
  ],
};
const GATHER: EntrySpec = {
  entry: 'gather_probs',
  bindings: [
    [0, 'uniform'],
    [1, 'read'],
    [10, 'read'],
    [14, 'read'],
    [15, 'read'],
    [16, 'read'],
    [17, 'read'],
    [18, 'rw'],
  ],
};

const PARTIAL_STRIDE = 5; // floats per lane state in `partial`: m, s, sx, sq, nan
/** logprobs_rows' modes (shaders/logprobs.wgsl). */
const MODE_ROWS = 0;
const MODE_SEGMENTS = 1;
const MODE_MERGE = 2;
/** Both entry points: one invocation copies the lowest bad row's target next to its index. */
const MODE_FLAG = 3;
/**
 * Target columns per segment: 32 logits per lane at WG = 256, so the per-lane fold is rare, the
 * split schedule's partial states stay ≈ 0.6 bytes per logit, and a row of 151936 still spreads
 * over 19 workgroups. Changing it changes results' bits (not their accuracy).
 */
export const SEGMENT_COLS = 8192;
/** Chunks with fewer rows take the split schedule (a workgroup per segment) to fill the GPU. */
export const SPLIT_BELOW_ROWS = 128;
/**
 * 1/T as the kernels take it: at least 2^-126, so that a −Inf logit times it stays −Inf (0·−Inf
 * would be NaN) when 1/T underflows f32 (T above ~1e38: the uniform limit either way). T ≥ 2^-126
 * (the API's bound) keeps it finite.
 */
export function invTemperature(t: number): number {
  return Math.max(1 / t, 2 ** -126);
}

function moduleKey(k: WebGpuKit, dtype: FloatDType): ModuleKey {
  const f16 = dtype === 'f16' && k.useShaderF16;
  return {
    file: 'logprobs.wgsl',
    sections: [xSection(dtype, f16), ySection(dtype), k.reduceSection, 'online_state'],
    f16,
    subgroups: k.useSubgroups,
  };
}

/**
 * The in-place backward's module: xy_<dtype> (logits read_write, u32 words for f16 even with
 * shader-f16, so stores keep f32_to_f16's exact bits). The backward uses no reduction and no f16
 * type, so the variant is the same whatever the tuning (reduce_tree only because the family's
 * other entry points need wg_max / wg_sum4 to compile).
 */
function inPlaceModuleKey(dtype: FloatDType): ModuleKey {
  return { file: 'logprobs.wgsl', sections: [`xy_${dtype}`, 'reduce_tree', 'online_state'] };
}

/**
 * In place, the logits are bound writable; WebGPU forbids binding the same buffer again as a
 * read-only input of that dispatch, so an input wrapped (fromGPUBuffer) over the logits' buffer
 * is refused here, naming it, rather than failing validation as a bug of ours.
 */
function checkInPlaceInputs(a: LogprobsBackwardArgs, logits: GPUBuffer): void {
  const inputs: [string, Tensor | undefined][] = [
    ['targets', a.targets],
    ['lse', a.lse],
    ['gradLogprobs', a.gradLogprobs],
    ['gradEntropy', a.gradEntropy],
    ['entropy', a.gradEntropy === undefined ? undefined : a.entropy], // bound only with gradEntropy
  ];
  for (const [argument, t] of inputs) {
    if (t !== undefined && gpuStorage(t, argument).buffer === logits) {
      throw new GrpoKernelsError(
        'DTYPE',
        `${argument}: shares its GPUBuffer with logits, which inPlace overwrites; pass it in another buffer or drop inPlace`,
        { argument },
      );
    }
  }
}

/**
 * The row segmentation of the forward: `segments` segments of `segCols` columns (the last may be
 * shorter), from V alone, so every row of every call is reduced by the same tree. The test-only
 * override `tuning.splits` sets the segment count instead (other bits, the same for every N).
 */
export function segmentsFor(k: WebGpuKit, vocab: number): { segments: number; segCols: number } {
  const wanted =
    k.tuning.splits !== undefined
      ? Math.min(Math.max(1, Math.floor(k.tuning.splits)), Math.max(1, vocab))
      : Math.max(1, Math.ceil(vocab / SEGMENT_COLS));
  const segCols = Math.max(1, Math.ceil(vocab / wanted));
  return { segments: Math.max(1, Math.ceil(vocab / segCols)), segCols };
}

function logitsMatrix(logits: Tensor<FloatDType>, vocab: number) {
  const eb = bytesPerElement(logits.dtype);
  return { rowBytes: vocab * eb, elemBytes: eb, bufferBytes: gpuStorage(logits, 'logits').buffer.size };
}

export async function webgpuLogprobs(k: WebGpuKit, a: LogprobsArgs): Promise<LogprobsResult> {
  const { rt } = k;
  rt.check();
  const n = a.rows;
  const v = a.vocab;
  const x = gpuStorage(a.logits, 'logits');
  const tg = gpuStorage(a.targets, 'targets');
  k.checkVector('targets', n);
  const chunks = planRowChunks(n, [logitsMatrix(a.logits, v)], rt.limits, k.tuning.maxChunkRows);
  const { segments, segCols } = segmentsFor(k, v);
  // The schedule is per chunk and may follow the row count: both give the same bits.
  // The split schedule also needs its partial states to fit one binding (V in the millions).
  const partialFor = (rows: number) => rows * segments * PARTIAL_STRIDE * k.wg * 4;
  const plan = chunks.map((c) => ({
    ...c,
    split:
      segments > 1 &&
      c.rows < SPLIT_BELOW_ROWS &&
      partialFor(c.rows) <= rt.limits.maxStorageBufferBindingSize,
  }));
  const key = moduleKey(k, a.logits.dtype);
  const constants = { WG: k.wg, ENTROPY: a.entropy ? 1 : 0, SUMSQ: a.sumSquares ? 1 : 0 };
  const anySplit = plan.some((c) => c.split && c.rows > 0);
  const pipe = n > 0 ? await k.pipelines.get(key, ROWS, constants) : undefined;
  const partialBytes = Math.max(4, ...plan.filter((c) => c.split).map((c) => partialFor(c.rows)));

  await roomForCheck(rt);
  const made = await rt.run('logprobs', () => {
    const lp = outputTensor(rt, 'f32', [n]);
    const lse = outputTensor(rt, 'f32', [n]);
    const h = a.entropy ? outputTensor(rt, 'f32', [n]) : undefined;
    const sq = a.sumSquares ? outputTensor(rt, 'f32', [n]) : undefined;
    if (n === 0) return { lp, lse, h, sq };
    const flags = flagBuffers(rt);
    const partial = anySplit ? rt.storageBuffer(partialBytes, 'partial') : undefined;
    const enc = rt.device.createCommandEncoder({ label: 'logprobs' });
    const pass = enc.beginComputePass();
    const outs: Binding[] = [
      { binding: 4, buffer: gpuStorage(lp).buffer },
      { binding: 5, buffer: gpuStorage(lse).buffer },
      { binding: 6, buffer: h ? gpuStorage(h).buffer : k.dummies[0] },
      { binding: 7, buffer: sq ? gpuStorage(sq).buffer : k.dummies[1] },
      { binding: 9, buffer: flags.flag },
    ];
    const dispatch = (c: (typeof plan)[number], mode: number, workgroups: number) => {
      const w = c.windows[0];
      const uniform = rt.uniform(
        LOGPROBS_PARAMS,
        paramsOf({
          rows: c.rows,
          vocab: v,
          row_base: c.row0,
          x_base: w.base,
          segments,
          seg_cols: segCols,
          mode,
          inv_t: invTemperature(a.temperature),
          ignore_index: a.ignoreIndex,
        }),
      );
      rt.dispatch(
        pass,
        pipe!,
        [
          { binding: 0, buffer: uniform },
          { binding: 1, buffer: x.buffer, offset: w.offset, size: w.size },
          { binding: 3, buffer: tg.buffer },
          ...outs,
          { binding: 8, buffer: c.split ? partial! : k.dummies[2] },
        ],
        workgroups,
      );
    };
    for (const c of plan) {
      if (c.rows === 0) continue;
      if (c.split) {
        dispatch(c, MODE_SEGMENTS, c.rows * segments);
        dispatch(c, MODE_MERGE, c.rows);
      } else {
        dispatch(c, MODE_ROWS, c.rows);
      }
    }
    dispatch(plan[0], MODE_FLAG, 1);
    pass.end();
    submitWithFlags(rt, enc, flags, v, a.ignoreIndex);
    // Destroyed now, freed by the implementation once the submitted work is done.
    rt.destroyBuffer(flags.flag);
    if (partial) rt.destroyBuffer(partial);
    return { lp, lse, h, sq };
  });
  const out: LogprobsResult = { logprobs: made.lp, lse: made.lse };
  if (made.h) out.entropy = made.h;
  if (made.sq) out.sumSquares = made.sq;
  return out;
}

export async function webgpuLogprobsBackward(
  k: WebGpuKit,
  a: LogprobsBackwardArgs,
): Promise<Tensor<FloatDType>> {
  const { rt } = k;
  rt.check();
  const n = a.rows;
  const v = a.vocab;
  const dtype = a.logits.dtype;
  const inPlace = a.inPlace;
  const x = gpuStorage(a.logits, 'logits');
  k.checkVector('targets', n);
  const withEntropy = a.gradEntropy !== undefined;
  if (withEntropy && a.entropy === undefined) {
    throw new GrpoKernelsError('SHAPE', 'entropy: required with gradEntropy', { argument: 'entropy' });
  }
  if (inPlace) checkInPlaceInputs(a, x.buffer);
  const m = logitsMatrix(a.logits, v);
  const yBytes = Math.max(4, Math.ceil((n * v * m.elemBytes) / 4) * 4);
  // In place, the logits are the only matrix: one window per chunk, read and written.
  const matrices = inPlace ? [m] : [m, { ...m, bufferBytes: yBytes }];
  const chunks = planRowChunks(n, matrices, rt.limits, k.tuning.maxChunkRows);
  const pipe = await k.pipelines.get(
    inPlace ? inPlaceModuleKey(dtype) : moduleKey(k, dtype),
    inPlace ? BACKWARD_IN_PLACE : BACKWARD,
    { WG: k.wg, GRAD_ENTROPY: withEntropy ? 1 : 0 },
  );
  const pack = dtype === 'f32' ? 1 : 2;
  await roomForCheck(rt);
  return rt.run('logprobsBackward', () => {
    const grad = inPlace ? a.logits : outputTensor(rt, dtype, [n, v]);
    if (n === 0) return grad;
    const y = gpuStorage(grad).buffer;
    const flags = flagBuffers(rt);
    const enc = rt.device.createCommandEncoder({ label: 'logprobsBackward' });
    const pass = enc.beginComputePass();
    const dispatch = (c: (typeof chunks)[number], mode: number, units: number, workgroups: number) => {
      const wx = c.windows[0];
      const wy = inPlace ? wx : c.windows[1];
      const uniform = rt.uniform(
        LOGPROBS_PARAMS,
        paramsOf({
          rows: c.rows,
          vocab: v,
          row_base: c.row0,
          x_base: wx.base,
          y_base: wy.base,
          mode,
          units,
          inv_t: 1 / a.temperature, // unclamped: it scales the gradient too (the WGSL guards −Inf·0)
          ignore_index: a.ignoreIndex,
        }),
      );
      const matrixBindings: Binding[] = [{ binding: 1, buffer: x.buffer, offset: wx.offset, size: wx.size }];
      if (!inPlace) matrixBindings.push({ binding: 2, buffer: y, offset: wy.offset, size: wy.size });
      rt.dispatch(
        pass,
        pipe,
        [
          { binding: 0, buffer: uniform },
          ...matrixBindings,
          { binding: 3, buffer: gpuStorage(a.targets, 'targets').buffer },
          { binding: 9, buffer: flags.flag },
          { binding: 10, buffer: gpuStorage(a.lse, 'lse').buffer },
          { binding: 11, buffer: gpuStorage(a.gradLogprobs, 'gradLogprobs').buffer },
          { binding: 12, buffer: a.gradEntropy ? gpuStorage(a.gradEntropy).buffer : k.dummies[0] },
          { binding: 13, buffer: a.entropy && withEntropy ? gpuStorage(a.entropy).buffer : k.dummies[1] },
        ],
        workgroups,
      );
    };
    for (const c of chunks) {
      if (c.rows === 0) continue;
      const units = Math.ceil((c.rows * v) / pack);
      dispatch(c, MODE_ROWS, units, Math.ceil(units / k.wg));
    }
    dispatch(chunks[0], MODE_FLAG, 0, 1);
    pass.end();
    submitWithFlags(rt, enc, flags, v, a.ignoreIndex);
    rt.destroyBuffer(flags.flag);
    return grad;
  });
}

/** Index of the first output element of token t: probsOffsets[g] + (t − tokens_g start)·K_g. */
function elementStart(a: GatherProbsArgs, t: number): number {
  const gt = a.layout.groupTokenOffsets;
  const g0 = a.layout.numGroups;
  if (t >= a.layout.numTokens) return a.probsOffsets[g0];
  let lo = 0;
  let hi = g0 - 1; // the last group whose token range starts at or before t
  while (lo < hi) {
    const mid = (lo + hi + 1) >> 1;
    if (gt[mid] <= t) lo = mid;
    else hi = mid - 1;
  }
  const kg = a.vocab.hostOffsets[lo + 1] - a.vocab.hostOffsets[lo];
  return a.probsOffsets[lo] + (t - gt[lo]) * kg;
}

export async function webgpuGatherProbs(k: WebGpuKit, a: GatherProbsArgs): Promise<Tensor<'f32'>> {
  const { rt } = k;
  rt.check();
  const groups = a.layout.numGroups;
  const tokens = a.layout.numTokens;
  const total = groups === 0 ? 0 : a.probsOffsets[groups];
  if (total > 0xffffffff) {
    throw new GrpoKernelsError('SHAPE', `probs: ${total} elements exceed 2^32`, { argument: 'probs' });
  }
  k.checkVector('probs', total);
  k.checkVector('lse', tokens);
  const x = gpuStorage(a.logits, 'logits');
  const chunks = planRowChunks(
    tokens,
    [logitsMatrix(a.logits, a.vocabSize)],
    rt.limits,
    k.tuning.maxChunkRows,
  );
  const pipe =
    total > 0 ? await k.pipelines.get(moduleKey(k, a.logits.dtype), GATHER, { WG: k.wg }) : undefined;
  return rt.run('gatherProbs', () => {
    const probs = outputTensor(rt, 'f32', [total]);
    if (total === 0) return probs;
    const poffs = rt.transientData(Uint32Array.from(a.probsOffsets), Usage.STORAGE, 'probsOffsets');
    const gtok = rt.transientData(a.layout.groupTokenOffsets, Usage.STORAGE, 'groupTokenOffsets');
    // The host offsets, which the API validated and planned this launch with (as js and cpu use
    // them), not the vocab.offsets tensor: a device copy that disagrees with them moved the blocks.
    const voffs = rt.transientData(a.vocab.hostOffsets, Usage.STORAGE, 'vocabOffsets');
    const enc = rt.device.createCommandEncoder({ label: 'gatherProbs' });
    const pass = enc.beginComputePass();
    for (const c of chunks) {
      const outBase = elementStart(a, c.row0);
      const count = elementStart(a, c.row0 + c.rows) - outBase;
      if (count === 0) continue;
      const w = c.windows[0];
      const p = paramsOf({
        rows: c.rows,
        vocab: a.vocabSize,
        row_base: c.row0,
        x_base: w.base,
        out_base: outBase,
        count,
        num_groups: groups,
        inv_t: invTemperature(a.temperature),
      });
      rt.dispatch(
        pass,
        pipe!,
        [
          { binding: 0, buffer: rt.uniform(LOGPROBS_PARAMS, p) },
          { binding: 1, buffer: x.buffer, offset: w.offset, size: w.size },
          { binding: 10, buffer: gpuStorage(a.lse, 'lse').buffer },
          { binding: 14, buffer: poffs },
          { binding: 15, buffer: gtok },
          { binding: 16, buffer: voffs },
          { binding: 17, buffer: gpuStorage(a.vocab.columns, 'vocab.columns').buffer },
          { binding: 18, buffer: gpuStorage(probs).buffer },
        ],
        Math.ceil(count / k.wg),
      );
    }
    pass.end();
    rt.submit(enc);
    return probs;
  });
}
