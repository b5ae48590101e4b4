/// <reference types="@webgpu/types" />
/**
 * The logprobs family on WebGPU: host side of shaders/logprobs.wgsl (formulas, work split,
 * bytes and FLOPs are in that file's header).
 *
 * - logprobs: per chunk of rows, either `logprobs_rows` (one workgroup per row) or, when the
 *   chunk has few rows for a long vocab, `logprobs_partial` (`splits` workgroups per row) then
 *   `logprobs_merge` (one invocation per row, splits merged in order). All chunks go in one
 *   command buffer. A row of all −Inf logits is flagged by the kernel (atomicMin of the row
 *   index into one u32); we read that word back and throw RANGE naming logits. Cost: each
 *   logprobs() call waits for its own kernels to finish (one 4-byte map, no extra pass over
 *   the data); the other ops never wait.
 * - logprobsBackward: `logprobs_backward`, one invocation per output unit (an f32, or a u32 word
 *   of two f16/bf16), chunked over rows with X and Y windows of the same rows. inPlace: the same
 *   entry point compiled with common.wgsl's xy_<dtype> section binds the logits read_write at
 *   binding 1 (no binding 2) and writes the gradient over them: no [rows, V] buffer is made.
 * - gatherProbs: `gather_probs`, one invocation per packed output element, chunked over tokens.
 */
import { bytesPerElement, type FloatDType } from '../../dtypes.js';
import { GrpoKernelsError } from '../../errors.js';
import type { Tensor } from '../../tensor.js';
import type { GatherProbsArgs, LogprobsArgs, LogprobsBackwardArgs, LogprobsResult } from '../backend.js';
import { planRowChunks } from './chunking.js';
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
  ['splits', 'u32'],
  ['split_cols', 'u32'],
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
  splits: 1,
  split_cols: 0,
  units: 0,
  out_base: 0,
  count: 0,
  num_groups: 0,
  inv_t: 1,
  ignore_index: 0,
};
const paramsOf = (p: Partial<typeof ZERO_PARAMS>) => ({ ...ZERO_PARAMS, ...p });

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
    [9, 'rw'],
  ],
};
const PARTIAL: EntrySpec = {
  entry: 'logprobs_partial',
  bindings: [
    [0, 'uniform'],
    [1, 'read'],
    [3, 'read'],
    [8, 'rw'],
  ],
};
const MERGE: EntrySpec = {
  entry: 'logprobs_merge',
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

const PARTIAL_STRIDE = 5; // floats per (row, split) state: m, s, sx, sq, nan
/** Workgroups we like in flight before splitting rows (a few per SM on a big GPU). */
const TARGET_WORKGROUPS = 256;
/** A split should give each invocation at least this many logits. */
const MIN_PER_INVOCATION = 8;
const NO_ROW = 0xffffffff;

function moduleKey(k: WebGpuKit, dtype: FloatDType): ModuleKey {
  const f16 = dtype === 'f16' && k.useShaderF16;
  return {
    file: 'logprobs.wgsl',
    sections: [xSection(dtype, f16), ySection(dtype), k.reduceSection],
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
  return { file: 'logprobs.wgsl', sections: [`xy_${dtype}`, 'reduce_tree'] };
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

/** Workgroups per row for an op over `rows` rows of `vocab` logits. */
export function chooseSplits(k: WebGpuKit, rows: number, vocab: number): number {
  const most = Math.max(1, Math.ceil(vocab / k.wg));
  if (k.tuning.splits !== undefined) return Math.min(Math.max(1, Math.floor(k.tuning.splits)), most);
  if (rows >= TARGET_WORKGROUPS / 2) return 1;
  const byCols = Math.floor(vocab / (k.wg * MIN_PER_INVOCATION));
  return Math.max(1, Math.min(Math.ceil(TARGET_WORKGROUPS / rows), byCols));
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
  // Splits are chosen from the whole op's row count, not the chunk's, so that every row is
  // reduced in the same order however the rows are chunked (chunking never changes a bit).
  const splitCols = Math.ceil(v / chooseSplits(k, n, v));
  const splits = Math.ceil(v / splitCols);
  const plan = chunks.map((c) => ({ ...c, splits, splitCols }));
  const key = moduleKey(k, a.logits.dtype);
  const constants = { WG: k.wg, ENTROPY: a.entropy ? 1 : 0, SUMSQ: a.sumSquares ? 1 : 0 };
  const anySplit = plan.some((c) => c.splits > 1 && c.rows > 0);
  const anyRows = plan.some((c) => c.splits === 1 && c.rows > 0);
  const [rowsPipe, partialPipe, mergePipe] = await Promise.all([
    anyRows ? k.pipelines.get(key, ROWS, constants) : undefined,
    anySplit ? k.pipelines.get(key, PARTIAL, constants) : undefined,
    anySplit ? k.pipelines.get(key, MERGE, constants) : undefined,
  ]);
  const partialBytes = Math.max(
    4,
    ...plan.filter((c) => c.splits > 1).map((c) => c.rows * c.splits * PARTIAL_STRIDE * 4),
  );

  const made = await rt.run('logprobs', () => {
    const lp = outputTensor(rt, 'f32', [n]);
    const lse = outputTensor(rt, 'f32', [n]);
    const h = a.entropy ? outputTensor(rt, 'f32', [n]) : undefined;
    const sq = a.sumSquares ? outputTensor(rt, 'f32', [n]) : undefined;
    const flag = rt.storageBuffer(4, 'flag');
    rt.writeBuffer(flag, 0, new Uint32Array([NO_ROW]));
    const partial = anySplit ? rt.storageBuffer(partialBytes, 'partial') : undefined;
    const staging = rt.createBuffer(4, Usage.MAP_READ | Usage.COPY_DST, 'flag staging');
    const enc = rt.device.createCommandEncoder({ label: 'logprobs' });
    const pass = enc.beginComputePass();
    const outs: Binding[] = [
      { binding: 4, buffer: gpuStorage(lp).buffer },
      { binding: 5, buffer: gpuStorage(lse).buffer },
      { binding: 6, buffer: h ? gpuStorage(h).buffer : k.dummies[0] },
      { binding: 7, buffer: sq ? gpuStorage(sq).buffer : k.dummies[1] },
      { binding: 9, buffer: flag },
    ];
    for (const c of plan) {
      if (c.rows === 0) continue;
      const w = c.windows[0];
      const uniform = rt.uniform(
        LOGPROBS_PARAMS,
        paramsOf({
          rows: c.rows,
          vocab: v,
          row_base: c.row0,
          x_base: w.base,
          splits: c.splits,
          split_cols: c.splitCols,
          inv_t: 1 / a.temperature,
          ignore_index: a.ignoreIndex,
        }),
      );
      const common: Binding[] = [
        { binding: 0, buffer: uniform },
        { binding: 1, buffer: x.buffer, offset: w.offset, size: w.size },
        { binding: 3, buffer: tg.buffer },
      ];
      if (c.splits === 1) {
        rt.dispatch(pass, rowsPipe!, [...common, ...outs], c.rows);
      } else {
        const part = { binding: 8, buffer: partial! };
        rt.dispatch(pass, partialPipe!, [...common, part], c.rows * c.splits);
        rt.dispatch(pass, mergePipe!, [...common, ...outs, part], Math.ceil(c.rows / k.wg));
      }
    }
    pass.end();
    enc.copyBufferToBuffer(flag, 0, staging, 0, 4);
    rt.submit(enc);
    return { lp, lse, h, sq, flag, partial, staging };
  });

  const release = () => {
    rt.destroyBuffer(made.flag);
    rt.destroyBuffer(made.staging);
    if (made.partial) rt.destroyBuffer(made.partial);
  };
  let badRow: number;
  try {
    await rt.guard(made.staging.mapAsync(1));
    badRow = new Uint32Array(made.staging.getMappedRange(0, 4))[0];
    made.staging.unmap();
  } catch (e) {
    for (const t of [made.lp, made.lse, made.h, made.sq]) t?.dispose();
    throw e;
  } finally {
    release();
  }
  if (badRow !== NO_ROW) {
    for (const t of [made.lp, made.lse, made.h, made.sq]) t?.dispose();
    throw new GrpoKernelsError(
      'RANGE',
      `logits: row ${badRow} is all −Inf (its target is not ignoreIndex), so its softmax is undefined`,
      { argument: 'logits' },
    );
  }
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
  return rt.run('logprobsBackward', () => {
    const grad = inPlace ? a.logits : outputTensor(rt, dtype, [n, v]);
    const y = gpuStorage(grad).buffer;
    const enc = rt.device.createCommandEncoder({ label: 'logprobsBackward' });
    const pass = enc.beginComputePass();
    for (const c of chunks) {
      if (c.rows === 0) continue;
      const wx = c.windows[0];
      const wy = inPlace ? wx : c.windows[1];
      const units = Math.ceil((c.rows * v) / pack);
      const uniform = rt.uniform(
        LOGPROBS_PARAMS,
        paramsOf({
          rows: c.rows,
          vocab: v,
          row_base: c.row0,
          x_base: wx.base,
          y_base: wy.base,
          units,
          inv_t: 1 / a.temperature,
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
          { binding: 10, buffer: gpuStorage(a.lse, 'lse').buffer },
          { binding: 11, buffer: gpuStorage(a.gradLogprobs, 'gradLogprobs').buffer },
          { binding: 12, buffer: a.gradEntropy ? gpuStorage(a.gradEntropy).buffer : k.dummies[0] },
          { binding: 13, buffer: a.entropy && withEntropy ? gpuStorage(a.entropy).buffer : k.dummies[1] },
        ],
        Math.ceil(units / k.wg),
      );
    }
    pass.end();
    rt.submit(enc);
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
        inv_t: 1 / a.temperature,
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
          { binding: 16, buffer: gpuStorage(a.vocab.offsets, 'vocab.offsets').buffer },
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
