/// <reference types="@webgpu/types" />
/**
 * The LM-head family on WebGPU: host side of shaders/lmhead.wgsl (formulas, what a workgroup owns,
 * bytes and FLOPs are in that file's header).
 *
 * Plans (lmheadPlan, exported for the memory test): every size below is fixed by the device's limits,
 * V, d and the dtype; scratch is O(tiles in flight), never O(N·V):
 * - forward: rows in chunks whose hidden window fits one binding and whose partial states
 *   (20 bytes × slices per row) fit PARTIAL_BUDGET; the weight in windows of whole slices
 *   (SLICE_COLS columns each, the slice count from V alone) that fit one binding. Scratch: the partial
 *   states of one row chunk, the target logits [N] f32 and the 16-byte flag words.
 * - backward: chunks of ROWS rows (a multiple of 64) × VOCAB columns (a multiple of 64), G [rows, vocab]
 *   f32 of one chunk pair ≤ G_BUDGET, plus the row scalars lse | g | gE | H (16·N bytes, one copy each).
 *   gradHidden is carried over vocabulary chunks and gradWeight / gradBias over row chunks in their
 *   output buffers (f32, exact continuation: the same bits as one long sum, chunked or not). Gradients
 *   in the input dtype (f16/bf16): in f32 accumulators of one chunk instead (narrowAccumulators: + rows ×
 *   d, vocab × d and vocab f32; gradWeight's and gradBias's second pass, when rows take more than one
 *   chunk, shares the first buffer), packed into the outputs by lm_pack when a chunk's sums are done.
 * - states from logits: rows chunked as logprobs does, SEGMENT_COLS columns per slice.
 * - merge: one 20-byte accumulator and the target logit per row.
 * All dispatches of an op go in one command buffer; the op returns without waiting. Bad targets
 * (a device tensor) and all −Inf rows raise flags reported at the next wait, as logprobs'.
 */
import { bytesPerElement, type FloatDType } from '../../dtypes.js';
import { GrpoKernelsError } from '../../errors.js';
import type { Tensor } from '../../tensor.js';
import type {
  LinearLogprobStatesArgs,
  LinearLogprobsArgs,
  LinearLogprobsBackwardArgs,
  LinearLogprobsGrads,
  LogprobStates,
  LogprobStatesArgs,
  LogprobsResult,
  MergeLogprobStatesArgs,
} from '../backend.js';
import { planRowChunks, windowOf } from './chunking.js';
import { FLAG_INIT, type Flags, flagBuffers, roomForCheck, submitWithFlags } from './flags.js';
import { runWithScratch, type WebGpuKit } from './kit.js';
import { invTemperature } from './logprobs.js';
import { type Binding, type GpuLimits, type GpuRuntime, roundUp } from './runtime.js';
import type { EntrySpec, ModuleKey } from './shaders.js';
import { gpuStorage, outputTensor } from './storage.js';
import { uniformLayout } from './uniforms.js';

/** The uniform struct of shaders/lmhead.wgsl (checked against the WGSL by infra.test.ts). */
export const LMHEAD_PARAMS = uniformLayout('lmhead.wgsl', 'LmParams', [
  ['rows', 'u32'],
  ['dim', 'u32'],
  ['vocab', 'u32'],
  ['row0', 'u32'],
  ['h_base', 'u32'],
  ['v0', 'u32'],
  ['vcount', 'u32'],
  ['w_base', 'u32'],
  ['o_base', 'u32'],
  ['slices', 'u32'],
  ['slice_cols', 'u32'],
  ['gcols', 'u32'],
  ['accumulate', 'u32'],
  ['has_bias', 'u32'],
  ['vocab_start', 'u32'],
  ['first', 'u32'],
  ['n_total', 'u32'],
  ['inv_t', 'f32'],
  ['ignore_index', 'i32'],
  ['count', 'u32'],
]);
type Params = Record<(typeof LMHEAD_PARAMS.fields)[number][0], number>;
const ZERO: Params = {
  rows: 0,
  dim: 0,
  vocab: 0,
  row0: 0,
  h_base: 0,
  v0: 0,
  vcount: 0,
  w_base: 0,
  o_base: 0,
  slices: 1,
  slice_cols: 64,
  gcols: 0,
  accumulate: 0,
  has_bias: 0,
  vocab_start: 0,
  first: 0,
  n_total: 0,
  inv_t: 1,
  ignore_index: 0,
  count: 0,
};

/** Columns per forward slice (32 tiles of 64): fixes a row's reduction tree from V alone. */
export const SLICE_COLS = 2048;
/** Columns per slice of materialised logits (logprobStates): as logprobs' segments. */
export const LOGIT_SLICE_COLS = 8192;
/** Bytes of G per backward chunk pair, and of partial states per forward row chunk. */
export const G_BUDGET = 32 << 20;
export const PARTIAL_BUDGET = 32 << 20;
const MAX_VOCAB_CHUNK = 8192;
const TILE = 64;
const STATE_BYTES = 20;

const spec = (entry: string, b: readonly number[], rw: readonly number[]): EntrySpec => ({
  entry,
  bindings: [[0, 'uniform'], ...b.map((n) => [n, rw.includes(n) ? 'rw' : 'read'] as const)],
});
const FWD = spec('lm_fwd', [1, 2, 3, 4, 5, 6], [5, 6]);
const FINISH = spec('lm_finish', [4, 5, 6, 7, 8, 9, 10, 11], [5, 6, 7, 8, 9, 10, 11]);
const STATE_OUT = spec('lm_state_out', [4, 5, 6, 7, 8, 9, 10, 15], [5, 6, 7, 8, 9, 10, 15]);
const LOGIT_STATES = spec('lm_logit_states', [1, 4, 5, 6], [5, 6]);
const MERGE_STATE = spec('lm_merge_state', [4, 5, 6, 16, 17, 18, 19, 20], [5, 6]);
const GRAD_LOGITS = spec('lm_grad_logits', [1, 2, 3, 4, 11, 12, 13], [11, 13]);
const GRAD_HIDDEN = spec('lm_grad_hidden', [2, 13, 14], [13, 14]);
const GRAD_WEIGHT = spec('lm_grad_weight', [1, 13, 14], [13, 14]);
const GRAD_BIAS = spec('lm_grad_bias', [13, 14], [13, 14]);
const FLAG = spec('lm_flag', [4, 11], [11]);
const PACK = spec('lm_pack', [14, 21], [14, 21]);

/**
 * Test hook: the backward's chunk (rows, vocabulary columns; multiples of 64), 0 for the plan's. No
 * gradient's bits depend on it (each sum runs on across chunks in f32).
 */
export const lmheadTuning = { chunkRows: 0, chunkVocab: 0 };

function moduleKey(dtype: FloatDType): ModuleKey {
  return { file: 'lmhead.wgsl', sections: [`x_${dtype}`, `w_${dtype}`, 'online_state', 'tile_gemm'] };
}

// ---------------------------------------------------------------- plans

export interface LmheadPlan {
  /** Forward: rows per chunk, weight rows per window (whole slices), slices per row. */
  forwardRows: number;
  forwardVocab: number;
  slices: number;
  /** Backward: rows and vocabulary columns of one G chunk. */
  backwardRows: number;
  backwardVocab: number;
  /** Scratch bytes each direction allocates (the memory bound's subject). */
  forwardScratchBytes: number;
  backwardScratchBytes: number;
  /** The backward with gradients in the input dtype (gradDtype 'input'; = backwardScratchBytes for f32). */
  backwardInputScratchBytes: number;
}

/**
 * The f32 accumulators of a backward with f16/bf16 gradients (bytes each; the GEMMs write f32, lm_pack
 * rounds a finished chunk into the output): gradHidden's [rows × d] of a row chunk, gradWeight's
 * [vcount × d] and gradBias's [vcount] of a vocabulary chunk. One row chunk: all at once. More (the
 * second pass): gradHidden's and gradWeight's never at the same time, so they share one buffer.
 */
export function narrowAccumulators(
  rows: number,
  dim: number,
  chunkRows: number,
  chunkVocab: number,
): { hidden: number; weight: number; bias: number; shared: boolean } {
  const hidden = Math.max(4, Math.min(chunkRows, roundUp(Math.max(rows, 1), TILE)) * dim * 4);
  const weight = Math.max(4, chunkVocab * dim * 4);
  const shared = rows > chunkRows;
  return shared
    ? { hidden: Math.max(hidden, weight), weight: 0, bias: chunkVocab * 4, shared }
    : { hidden, weight, bias: chunkVocab * 4, shared };
}

const floorTo = (x: number, m: number) => Math.floor(x / m) * m;

/**
 * The chunking of a linearLogprobs forward and backward on a device with these limits: sizes from
 * the limits, V, d and the dtype (and N only as an upper bound), so a row's reduction order is fixed.
 */
export function lmheadPlan(
  limits: Pick<GpuLimits, 'maxStorageBufferBindingSize' | 'minStorageBufferOffsetAlignment'>,
  rows: number,
  vocab: number,
  dim: number,
  dtype: FloatDType,
): LmheadPlan {
  const eb = bytesPerElement(dtype);
  const maxB =
    Math.floor(limits.maxStorageBufferBindingSize / 4) * 4 - limits.minStorageBufferOffsetAlignment;
  const rowBytes = Math.max(1, dim * eb);
  const tooBig = (what: string) =>
    new GrpoKernelsError(
      'SHAPE',
      `${what}: a row of d = ${dim} ${dtype} (${dim * eb} bytes) leaves no chunk that fits this device's storage binding limit (${limits.maxStorageBufferBindingSize} bytes)`,
      { argument: what },
    );
  const slices = Math.max(1, Math.ceil(vocab / SLICE_COLS));
  const forwardRows = Math.max(
    1,
    Math.min(rows, Math.floor(maxB / rowBytes), Math.floor(PARTIAL_BUDGET / (slices * STATE_BYTES))),
  );
  if (Math.floor(maxB / rowBytes) < 1) throw tooBig('hidden');
  const forwardVocab = Math.min(roundUp(vocab, SLICE_COLS), floorTo(Math.floor(maxB / rowBytes), SLICE_COLS));
  if (forwardVocab < SLICE_COLS && vocab > forwardVocab) throw tooBig('weight');
  const backwardVocab = Math.min(
    roundUp(vocab, TILE),
    MAX_VOCAB_CHUNK,
    floorTo(Math.floor(maxB / rowBytes), TILE),
    floorTo(Math.floor(maxB / (dim * 4 || 1)), TILE),
  );
  if (backwardVocab < TILE) throw tooBig('weight');
  const backwardRows = Math.min(
    roundUp(Math.max(1, rows), TILE),
    floorTo(Math.floor(G_BUDGET / (backwardVocab * 4)), TILE),
    floorTo(Math.floor(maxB / rowBytes), TILE),
    floorTo(Math.floor(maxB / (dim * 4 || 1)), TILE),
  );
  if (backwardRows < TILE) throw tooBig('hidden');
  const flagBytes = 2 * FLAG_INIT.byteLength;
  const backwardScratchBytes = backwardRows * backwardVocab * 4 + 16 * rows + flagBytes;
  const acc = narrowAccumulators(rows, dim, backwardRows, backwardVocab);
  return {
    forwardRows,
    forwardVocab: Math.max(forwardVocab, SLICE_COLS),
    slices,
    backwardRows,
    backwardVocab,
    forwardScratchBytes: forwardRows * slices * STATE_BYTES + roundUp(4 * rows, 4) + flagBytes,
    backwardScratchBytes,
    backwardInputScratchBytes:
      backwardScratchBytes + (dtype === 'f32' || rows === 0 ? 0 : acc.hidden + acc.weight + acc.bias),
  };
}

// ---------------------------------------------------------------- shared plumbing

/** The override constants of an lmhead.wgsl variant. */
function constantsOf(
  k: WebGpuKit,
  o: { entropy?: boolean; sumSquares?: boolean; gradEntropy?: boolean },
): Record<string, number> {
  return {
    WG: k.wg,
    ENTROPY: o.entropy ? 1 : 0,
    SUMSQ: o.sumSquares ? 1 : 0,
    GRAD_ENTROPY: o.gradEntropy ? 1 : 0,
  };
}

type Pipelines<S extends readonly EntrySpec[]> = { -readonly [I in keyof S]: GPUComputePipeline };

/** The pipelines of an op's entry points, in order (compiled once per variant); none without rows. */
async function pipelinesOf<const S extends readonly EntrySpec[]>(
  k: WebGpuKit,
  live: boolean,
  dtype: FloatDType,
  constants: Record<string, number>,
  specs: S,
): Promise<Pipelines<S> | undefined> {
  if (!live) return undefined;
  const key = moduleKey(dtype);
  return (await Promise.all(specs.map((s) => k.pipelines.get(key, s, constants)))) as Pipelines<S>;
}

/** Ends an op that may raise flags: lm_flag (one invocation: the lowest bad row's target next to its
 * index), then the flag words' copy, the submission and the check at the next wait (flags.ts). */
function finishWithFlags(
  rt: GpuRuntime,
  enc: GPUCommandEncoder,
  pass: GPUComputePassEncoder,
  flagPipe: GPUComputePipeline,
  targets: GPUBuffer,
  flags: Flags,
  vocab: number,
  ignoreIndex: number,
): void {
  rt.dispatch(
    pass,
    flagPipe,
    [
      { binding: 0, buffer: uniform(rt, {}) },
      { binding: 4, buffer: targets },
      { binding: 11, buffer: flags.flag },
    ],
    1,
  );
  pass.end();
  submitWithFlags(rt, enc, flags, vocab, ignoreIndex);
}

function uniform(rt: GpuRuntime, p: Partial<Params>): GPUBuffer {
  return rt.uniform(LMHEAD_PARAMS, { ...ZERO, ...p });
}

/** The buffers of the LM head's inputs (the bias a dummy when absent). */
function headBuffers(
  k: WebGpuKit,
  a: Pick<LinearLogprobsArgs, 'hidden' | 'weight' | 'bias' | 'targets'>,
): { H: GPUBuffer; W: GPUBuffer; bias: GPUBuffer; targets: GPUBuffer } {
  return {
    H: gpuStorage(a.hidden, 'hidden').buffer,
    W: gpuStorage(a.weight, 'weight').buffer,
    bias: a.bias ? gpuStorage(a.bias, 'bias').buffer : k.dummies[3],
    targets: gpuStorage(a.targets, 'targets').buffer,
  };
}

interface ForwardOut {
  /** lm_finish: logprobs, lse, entropy, sumSquares; lm_state_out: max, sumExp, sumExpDelta, sumExpSq. */
  a: Tensor<'f32'>;
  b: Tensor<'f32'>;
  c?: Tensor<'f32'>;
  d?: Tensor<'f32'>;
  /** lm_state_out: targetLogit. */
  xt?: Tensor<'f32'>;
}

/** The [n] f32 outputs of lm_finish (states: false) or lm_state_out (states: true). */
function forwardOutputs(
  rt: GpuRuntime,
  n: number,
  o: { entropy?: boolean; sumSquares?: boolean },
  states: boolean,
): ForwardOut {
  const vec = () => outputTensor(rt, 'f32', [n]);
  return {
    a: vec(),
    b: vec(),
    c: o.entropy ? vec() : undefined,
    d: o.sumSquares ? vec() : undefined,
    xt: states ? vec() : undefined,
  };
}

/** lm_finish's / lm_state_out's inputs (targets, partial states, target logits) and outputs. */
function finishBindings(
  k: WebGpuKit,
  targets: GPUBuffer,
  partial: GPUBuffer,
  xt: GPUBuffer,
  out: ForwardOut,
): Binding[] {
  const b: Binding[] = [
    { binding: 4, buffer: targets },
    { binding: 5, buffer: partial },
    { binding: 6, buffer: xt },
    { binding: 7, buffer: gpuStorage(out.a).buffer },
    { binding: 8, buffer: gpuStorage(out.b).buffer },
    { binding: 9, buffer: out.c ? gpuStorage(out.c).buffer : k.dummies[0] },
    { binding: 10, buffer: out.d ? gpuStorage(out.d).buffer : k.dummies[1] },
  ];
  if (out.xt) b.push({ binding: 15, buffer: gpuStorage(out.xt).buffer });
  return b;
}

/**
 * The forward of linearLogprobs (finish: true) or linearLogprobStates (finish: false, a shard
 * starting at vocabStart): lm_fwd per (row chunk, weight window), then lm_finish / lm_state_out per
 * row chunk, in one command buffer.
 */
async function linearForward(
  k: WebGpuKit,
  a: LinearLogprobsArgs,
  vocabStart: number,
  finish: boolean,
): Promise<ForwardOut> {
  const { rt } = k;
  rt.check();
  const { rows: n, dim: d, vocab: V } = a;
  const dtype = a.hidden.dtype;
  const eb = bytesPerElement(dtype);
  k.checkVector('targets', n);
  const plan = lmheadPlan(rt.limits, n, V, d, dtype);
  const specs = finish ? ([FWD, FINISH, FLAG] as const) : ([FWD, STATE_OUT] as const);
  const pipes = await pipelinesOf(k, n > 0, dtype, constantsOf(k, a), specs);
  if (finish) await roomForCheck(rt);
  const { H, W, bias, targets } = headBuffers(k, a);
  const align = rt.limits.minStorageBufferOffsetAlignment;
  return runWithScratch(k, finish ? 'linearLogprobs' : 'linearLogprobStates', (s) => {
    const out = forwardOutputs(rt, n, a, !finish);
    if (pipes === undefined) return out;
    const [fwd, fin, flagPipe] = pipes;
    const xt = s.buffer(4 * n, 'target logits');
    const partial = s.buffer(plan.forwardRows * plan.slices * STATE_BYTES, 'partial states');
    const flags = finish ? flagBuffers(rt, (bytes, label) => s.buffer(bytes, label)) : undefined;
    const enc = rt.device.createCommandEncoder({ label: 'linearLogprobs' });
    const pass = enc.beginComputePass();
    const common = {
      dim: d,
      vocab: V,
      slices: plan.slices,
      slice_cols: SLICE_COLS,
      has_bias: a.bias ? 1 : 0,
      vocab_start: vocabStart,
      inv_t: invTemperature(a.temperature),
      ignore_index: a.ignoreIndex,
    };
    for (let row0 = 0; row0 < n; row0 += plan.forwardRows) {
      const rows = Math.min(plan.forwardRows, n - row0);
      const hw = windowOf(row0 * d, (row0 + rows) * d, eb, H.size, align);
      for (let v0 = 0; v0 < V; v0 += plan.forwardVocab) {
        const vcount = Math.min(plan.forwardVocab, V - v0);
        const ww = windowOf(v0 * d, (v0 + vcount) * d, eb, W.size, align);
        rt.dispatch(
          pass,
          fwd,
          [
            {
              binding: 0,
              buffer: uniform(rt, { ...common, rows, row0, h_base: hw.base, v0, vcount, w_base: ww.base }),
            },
            { binding: 1, buffer: H, offset: hw.offset, size: hw.size },
            { binding: 2, buffer: W, offset: ww.offset, size: ww.size },
            { binding: 3, buffer: bias },
            { binding: 4, buffer: targets },
            { binding: 5, buffer: partial },
            { binding: 6, buffer: xt },
          ],
          Math.ceil(rows / TILE) * Math.ceil(vcount / SLICE_COLS),
        );
      }
      const bindings = finishBindings(k, targets, partial, xt, out);
      if (flags) bindings.push({ binding: 11, buffer: flags.flag });
      rt.dispatch(
        pass,
        fin,
        [{ binding: 0, buffer: uniform(rt, { ...common, rows, row0 }) }, ...bindings],
        Math.ceil(rows / k.wg),
      );
    }
    if (flags && flagPipe) finishWithFlags(rt, enc, pass, flagPipe, targets, flags, V, a.ignoreIndex);
    else {
      pass.end();
      rt.submit(enc);
    }
    return out;
  });
}

function resultOf(o: ForwardOut): LogprobsResult {
  const r: LogprobsResult = { logprobs: o.a, lse: o.b };
  if (o.c) r.entropy = o.c;
  if (o.d) r.sumSquares = o.d;
  return r;
}

function statesOf(
  o: ForwardOut,
  a: { vocab: number; temperature: number; ignoreIndex: number },
  vocabStart: number,
): LogprobStates {
  const s: LogprobStates = {
    max: o.a,
    sumExp: o.b,
    targetLogit: o.xt!,
    vocabStart,
    vocabEnd: vocabStart + a.vocab,
    temperature: a.temperature,
    ignoreIndex: a.ignoreIndex,
  };
  if (o.c) s.sumExpDelta = o.c;
  if (o.d) s.sumExpSq = o.d;
  return s;
}

export async function webgpuLinearLogprobs(k: WebGpuKit, a: LinearLogprobsArgs): Promise<LogprobsResult> {
  return resultOf(await linearForward(k, a, 0, true));
}

export async function webgpuLinearLogprobStates(
  k: WebGpuKit,
  a: LinearLogprobStatesArgs,
): Promise<LogprobStates> {
  return statesOf(await linearForward(k, a, a.vocabStart, false), a, a.vocabStart);
}

// ---------------------------------------------------------------- states of materialised logits
export async function webgpuLogprobStates(k: WebGpuKit, a: LogprobStatesArgs): Promise<LogprobStates> {
  const { rt } = k;
  rt.check();
  const { rows: n, vocab: V } = a;
  const dtype = a.logits.dtype;
  const eb = bytesPerElement(dtype);
  k.checkVector('targets', n);
  const X = gpuStorage(a.logits, 'logits').buffer;
  const slices = Math.max(1, Math.ceil(V / LOGIT_SLICE_COLS));
  const chunks = planRowChunks(
    n,
    [{ rowBytes: V * eb, elemBytes: eb, bufferBytes: X.size }],
    rt.limits,
    Math.max(1, Math.floor(PARTIAL_BUDGET / (slices * STATE_BYTES))),
  );
  const pipes = await pipelinesOf(k, n > 0, dtype, constantsOf(k, a), [LOGIT_STATES, STATE_OUT] as const);
  const targets = gpuStorage(a.targets, 'targets').buffer;
  const maxRows = Math.max(1, ...chunks.map((c) => c.rows));
  const out = await runWithScratch(k, 'logprobStates', (s) => {
    const o = forwardOutputs(rt, n, a, true);
    if (pipes === undefined) return o;
    const [ls, so] = pipes;
    const xt = s.buffer(4 * n, 'target logits');
    const partial = s.buffer(maxRows * slices * STATE_BYTES, 'partial states');
    const enc = rt.device.createCommandEncoder({ label: 'logprobStates' });
    const pass = enc.beginComputePass();
    for (const c of chunks) {
      if (c.rows === 0) continue;
      const w = c.windows[0];
      const params = uniform(rt, {
        rows: c.rows,
        row0: c.row0,
        h_base: w.base,
        vocab: V,
        slices,
        slice_cols: LOGIT_SLICE_COLS,
        vocab_start: a.vocabStart,
        inv_t: invTemperature(a.temperature),
        ignore_index: a.ignoreIndex,
      });
      rt.dispatch(
        pass,
        ls,
        [
          { binding: 0, buffer: params },
          { binding: 1, buffer: X, offset: w.offset, size: w.size },
          { binding: 4, buffer: targets },
          { binding: 5, buffer: partial },
          { binding: 6, buffer: xt },
        ],
        c.rows * slices,
      );
      rt.dispatch(
        pass,
        so,
        [{ binding: 0, buffer: params }, ...finishBindings(k, targets, partial, xt, o)],
        Math.ceil(c.rows / k.wg),
      );
    }
    pass.end();
    rt.submit(enc);
    return o;
  });
  return statesOf(out, a, a.vocabStart);
}

// ---------------------------------------------------------------- merge
export async function webgpuMergeLogprobStates(
  k: WebGpuKit,
  a: MergeLogprobStatesArgs,
): Promise<LogprobsResult> {
  const { rt } = k;
  rt.check();
  const n = a.rows;
  k.checkVector('targets', n);
  k.checkVector('states', n * 5);
  const pipes = await pipelinesOf(k, n > 0, 'f32', constantsOf(k, a), [MERGE_STATE, FINISH, FLAG] as const);
  await roomForCheck(rt);
  const targets = gpuStorage(a.targets, 'targets').buffer;
  return runWithScratch(k, 'mergeLogprobStates', (s) => {
    const out = forwardOutputs(rt, n, a, false);
    if (pipes === undefined) return resultOf(out);
    const [merge, fin, flagPipe] = pipes;
    const acc = s.buffer(n * STATE_BYTES, 'merged states');
    const xt = s.buffer(4 * n, 'target logits');
    const flags = flagBuffers(rt, (bytes, label) => s.buffer(bytes, label));
    const enc = rt.device.createCommandEncoder({ label: 'mergeLogprobStates' });
    const pass = enc.beginComputePass();
    const inv_t = invTemperature(a.temperature);
    const buf = (t: Tensor<'f32'> | undefined, dummy: number) =>
      t ? gpuStorage(t).buffer : k.dummies[dummy];
    a.states.forEach((st, i) => {
      rt.dispatch(
        pass,
        merge,
        [
          {
            binding: 0,
            buffer: uniform(rt, {
              rows: n,
              vocab: st.vocabEnd - st.vocabStart,
              vocab_start: st.vocabStart,
              first: i === 0 ? 1 : 0,
              slices: 1,
              inv_t,
            }),
          },
          { binding: 4, buffer: targets },
          { binding: 5, buffer: acc },
          { binding: 6, buffer: xt },
          { binding: 16, buffer: buf(st.max, 0) },
          { binding: 17, buffer: buf(st.sumExp, 0) },
          { binding: 18, buffer: buf(a.entropy ? st.sumExpDelta : undefined, 1) },
          { binding: 19, buffer: buf(a.sumSquares ? st.sumExpSq : undefined, 2) },
          { binding: 20, buffer: buf(st.targetLogit, 0) },
        ],
        Math.ceil(n / k.wg),
      );
    });
    rt.dispatch(
      pass,
      fin,
      [
        {
          binding: 0,
          buffer: uniform(rt, { rows: n, vocab: a.vocab, slices: 1, inv_t, ignore_index: a.ignoreIndex }),
        },
        ...finishBindings(k, targets, acc, xt, out),
        { binding: 11, buffer: flags.flag },
      ],
      Math.ceil(n / k.wg),
    );
    finishWithFlags(rt, enc, pass, flagPipe, targets, flags, a.vocab, a.ignoreIndex);
    return resultOf(out);
  });
}

// ---------------------------------------------------------------- backward
export async function webgpuLinearLogprobsBackward(
  k: WebGpuKit,
  a: LinearLogprobsBackwardArgs,
): Promise<LinearLogprobsGrads<FloatDType>> {
  const { rt } = k;
  rt.check();
  const { rows: n, dim: d, vocab: V, gradDtype: gd } = a;
  const dtype = a.hidden.dtype;
  const eb = bytesPerElement(dtype);
  k.checkVector('targets', n);
  k.checkVector('lse', 4 * n);
  const plan = lmheadPlan(rt.limits, n, V, d, dtype);
  const chunkRows = lmheadTuning.chunkRows > 0 ? lmheadTuning.chunkRows : plan.backwardRows;
  const chunkVocab = lmheadTuning.chunkVocab > 0 ? lmheadTuning.chunkVocab : plan.backwardVocab;
  if (chunkRows % TILE !== 0 || chunkVocab % TILE !== 0)
    throw new GrpoKernelsError('RANGE', 'lmheadTuning: chunks must be multiples of 64');
  // f16/bf16 gradients: the GEMMs run on f32 accumulators, lm_pack rounds each finished chunk into the
  // output; with more than one row chunk gradWeight and gradBias take a second pass (shaders/lmhead.wgsl).
  const narrow = gd !== 'f32';
  const twoPass = narrow && n > chunkRows;
  const withEntropy = a.gradEntropy !== undefined;
  const constants = constantsOf(k, { gradEntropy: withEntropy });
  const pipes = await pipelinesOf(k, n > 0, dtype, constants, [
    GRAD_LOGITS,
    GRAD_HIDDEN,
    GRAD_WEIGHT,
    GRAD_BIAS,
    FLAG,
  ] as const);
  const packPipe =
    pipes && narrow
      ? (await pipelinesOf(k, true, dtype, { ...constants, GRAD_F16: gd === 'f16' ? 1 : 0 }, [
          PACK,
        ] as const))![0]
      : undefined;
  await roomForCheck(rt);
  const { H, W, bias, targets } = headBuffers(k, a);
  const align = rt.limits.minStorageBufferOffsetAlignment;
  return runWithScratch(k, 'linearLogprobsBackward', (s) => {
    const gradHidden = outputTensor(rt, gd, [n, d]);
    const gradWeight = outputTensor(rt, gd, [V, d]);
    const gradBias = a.bias ? outputTensor(rt, gd, [V]) : undefined;
    const out: LinearLogprobsGrads<FloatDType> = { gradHidden, gradWeight };
    if (gradBias) out.gradBias = gradBias;
    const GH = gpuStorage(gradHidden).buffer;
    const GW = gpuStorage(gradWeight).buffer;
    const GB = gradBias ? gpuStorage(gradBias).buffer : undefined;
    const ob = bytesPerElement(gd);
    const enc = rt.device.createCommandEncoder({ label: 'linearLogprobsBackward' });
    if (pipes === undefined) {
      // No rows: gradWeight and gradBias are empty sums (+0 in every dtype).
      if (V * d > 0) enc.clearBuffer(GW, 0, roundUp(V * d * ob, 4));
      if (GB) enc.clearBuffer(GB, 0, roundUp(V * ob, 4));
      rt.submit(enc);
      return out;
    }
    const [pgl, pgh, pgw, pgb, pflag] = pipes;
    // Row scalars: lse | g | gE | H, four copies into one binding (a kernel may bind at most 8).
    const rowinfo = s.buffer(16 * n, 'row scalars');
    const gbuf = s.buffer(chunkRows * chunkVocab * 4, 'G chunk');
    const flags = flagBuffers(rt, (bytes, label) => s.buffer(bytes, label));
    // The f32 accumulators of f16/bf16 gradients (narrowAccumulators: the plan's sizes).
    const accBytes = narrowAccumulators(n, d, chunkRows, chunkVocab);
    const accH = narrow ? s.buffer(accBytes.hidden, 'gradHidden accumulator') : undefined;
    const accW = narrow
      ? accBytes.shared
        ? accH
        : s.buffer(accBytes.weight, 'gradWeight accumulator')
      : undefined;
    const accB = narrow ? s.buffer(accBytes.bias, 'gradBias accumulator') : undefined;
    const copy = (t: Tensor<'f32'> | undefined, slot: number) => {
      if (t) enc.copyBufferToBuffer(gpuStorage(t).buffer, 0, rowinfo, slot * 4 * n, 4 * n);
    };
    copy(a.lse, 0);
    copy(a.gradLogprobs, 1);
    if (withEntropy) {
      copy(a.gradEntropy, 2);
      copy(a.entropy, 3);
    }
    const pass = enc.beginComputePass();
    const inv_t = 1 / a.temperature; // unclamped: it scales the gradient too (as logprobs' backward)
    // The uniform fields of a chunk pair; vocab: the targets' range (the head's V, or 2^31 − 1 for a
    // shard), for the flag.
    const baseOf = (row0: number, rows: number, v0: number, vcount: number) => ({
      dim: d,
      vocab: a.targetLimit,
      rows,
      row0,
      v0,
      vcount,
      gcols: chunkVocab,
      inv_t,
    });
    // Elements [e0, e1) of an f32 accumulator (from its start), rounded into a narrow output.
    const pack = (acc: GPUBuffer, output: GPUBuffer, e0: number, e1: number) => {
      const count = e1 - e0;
      if (count === 0) return;
      const ow = windowOf(e0, e1, ob, output.size, align);
      rt.dispatch(
        pass,
        packPipe!,
        [
          { binding: 0, buffer: uniform(rt, { count, o_base: ow.base }) },
          { binding: 14, buffer: acc, offset: 0, size: roundUp(count * 4, 4) },
          { binding: 21, buffer: output, offset: ow.offset, size: ow.size },
        ],
        Math.ceil(Math.ceil(count / 2) / k.wg),
      );
    };
    const gradLogits = (row0: number, rows: number, v0: number, vcount: number) => {
      const hw = windowOf(row0 * d, (row0 + rows) * d, eb, H.size, align);
      const ww = windowOf(v0 * d, (v0 + vcount) * d, eb, W.size, align);
      rt.dispatch(
        pass,
        pgl,
        [
          {
            binding: 0,
            buffer: uniform(rt, {
              ...baseOf(row0, rows, v0, vcount),
              h_base: hw.base,
              w_base: ww.base,
              has_bias: a.bias ? 1 : 0,
              vocab_start: a.vocabStart,
              ignore_index: a.ignoreIndex,
              n_total: n,
            }),
          },
          { binding: 1, buffer: H, offset: hw.offset, size: hw.size },
          { binding: 2, buffer: W, offset: ww.offset, size: ww.size },
          { binding: 3, buffer: bias },
          { binding: 4, buffer: targets },
          { binding: 11, buffer: flags.flag },
          { binding: 12, buffer: rowinfo },
          { binding: 13, buffer: gbuf },
        ],
        Math.ceil(rows / TILE) * Math.ceil(vcount / TILE),
      );
    };
    // Where a GEMM's chunk [e0, e1) of an f32 sum goes (binding 14): the output's window, or (f16/bf16
    // gradients) the accumulator from its start.
    const sumWindow = (acc: GPUBuffer | undefined, output: GPUBuffer, e0: number, e1: number) =>
      acc
        ? { buffer: acc, offset: 0, size: Math.max(4, (e1 - e0) * 4), base: 0 }
        : { buffer: output, ...windowOf(e0, e1, 4, output.size, align) };
    // gradHidden[chunk rows] (+)= G · W[chunk vocabulary]: into the output (f32) or accH; the sum over v
    // runs on across vocabulary chunks.
    const gradHiddenStep = (row0: number, rows: number, v0: number, vcount: number) => {
      const ww = windowOf(v0 * d, (v0 + vcount) * d, eb, W.size, align);
      const gw = sumWindow(accH, GH, row0 * d, (row0 + rows) * d);
      rt.dispatch(
        pass,
        pgh,
        [
          {
            binding: 0,
            buffer: uniform(rt, {
              ...baseOf(row0, rows, v0, vcount),
              w_base: ww.base,
              o_base: gw.base,
              accumulate: v0 > 0 ? 1 : 0,
            }),
          },
          { binding: 2, buffer: W, offset: ww.offset, size: ww.size },
          { binding: 13, buffer: gbuf },
          { binding: 14, buffer: gw.buffer, offset: gw.offset, size: gw.size },
        ],
        Math.ceil(rows / TILE) * Math.ceil(d / TILE),
      );
    };
    // gradWeight[chunk vocabulary] (+)= Gᵀ · H[chunk rows] and gradBias (+)= Σ_n G: into the outputs
    // (f32) or accW / accB; the sums over n run on across row chunks; the last one packs (narrow).
    const gradWeightStep = (row0: number, rows: number, v0: number, vcount: number) => {
      const hw = windowOf(row0 * d, (row0 + rows) * d, eb, H.size, align);
      const gw = sumWindow(accW, GW, v0 * d, (v0 + vcount) * d);
      const accumulate = row0 > 0 ? 1 : 0;
      rt.dispatch(
        pass,
        pgw,
        [
          {
            binding: 0,
            buffer: uniform(rt, {
              ...baseOf(row0, rows, v0, vcount),
              h_base: hw.base,
              o_base: gw.base,
              accumulate,
            }),
          },
          { binding: 1, buffer: H, offset: hw.offset, size: hw.size },
          { binding: 13, buffer: gbuf },
          { binding: 14, buffer: gw.buffer, offset: gw.offset, size: gw.size },
        ],
        Math.ceil(vcount / TILE) * Math.ceil(d / TILE),
      );
      if (GB) {
        const gbw = sumWindow(accB, GB, v0, v0 + vcount);
        rt.dispatch(
          pass,
          pgb,
          [
            {
              binding: 0,
              buffer: uniform(rt, { ...baseOf(row0, rows, v0, vcount), o_base: gbw.base, accumulate }),
            },
            { binding: 13, buffer: gbuf },
            { binding: 14, buffer: gbw.buffer, offset: gbw.offset, size: gbw.size },
          ],
          Math.ceil(vcount / k.wg),
        );
      }
      if (narrow && row0 + rows >= n) {
        pack(accW!, GW, v0 * d, (v0 + vcount) * d);
        if (GB) pack(accB!, GB, v0, v0 + vcount);
      }
    };
    type Step = (row0: number, rows: number, v0: number, vcount: number) => void;
    // Every chunk pair in order, rows outer (else vocabulary outer): G, then `gradients` of it.
    const sweep = (rowsOuter: boolean, gradients: Step) => {
      const [outer, inner] = rowsOuter ? [n, V] : [V, n];
      const [co, ci] = rowsOuter ? [chunkRows, chunkVocab] : [chunkVocab, chunkRows];
      for (let o = 0; o < outer; o += co) {
        for (let i = 0; i < inner; i += ci) {
          const [no, ni] = [Math.min(co, outer - o), Math.min(ci, inner - i)];
          const c: Parameters<Step> = rowsOuter ? [o, no, i, ni] : [i, ni, o, no];
          gradLogits(...c);
          gradients(...c);
        }
      }
    };
    // Rows outer, vocabulary inner: every gradient from one G per chunk pair (gradHidden alone when the
    // second pass takes gradWeight and gradBias); a row chunk's gradHidden packed after its last one ...
    sweep(true, (row0, rows, v0, vcount) => {
      gradHiddenStep(row0, rows, v0, vcount);
      if (accH && v0 + vcount >= V) pack(accH, GH, row0 * d, (row0 + rows) * d);
      if (!twoPass) gradWeightStep(row0, rows, v0, vcount);
    });
    // ... and then (twoPass) gradWeight and gradBias, vocabulary outer, rows inner, G recomputed (the
    // same bits).
    if (twoPass) sweep(false, gradWeightStep);
    finishWithFlags(rt, enc, pass, pflag, targets, flags, a.targetLimit, a.ignoreIndex);
    return out;
  });
}
