/** The LM-head family on CUDA: argument plumbing to native/cuda/lmhead.cu. */
import type { FloatDType } from '../../dtypes.js';
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
import { native } from './native.js';
import {
  type CudaMemory,
  logprobsOutputs,
  type OutputScope,
  optPtr,
  ptrOf,
  withOutputs,
  withPoison,
} from './storage.js';

/**
 * The LM head's tiles (native/cuda/lmhead.cu): 'mma' mma.sync, 'wgmma' Hopper's warpgroup MMAs fed by
 * cp.async, 'tma' the same MMAs fed by TMA from a producer warp (warp-specialised; the same bits as 'wgmma'),
 * 'tma-overlap' those with a warpgroup's next k-step of MMAs in flight while it adds up the last (a
 * producer warpgroup that hands its registers to the consumers; the same bits as 'tma'), 'tma-wide' the
 * forward and the backward in 128 × 256 tiles (each landed hidden tile serves twice the MMAs; the same bits
 * as 'tma'), 'tma-cluster' those in clusters of 2 blocks that share the weight's (B's) boxes by TMA
 * multicast (half the B bytes from L2 per block; the same bits as 'tma'), 'tma-chain' and
 * 'tma-chain-cluster' those two with each logit's sum running on the tensor cores over all of d (no
 * per-k-step flush into round-to-nearest sums: cuBLAS's numerics, a relative error up to about
 * (d/16)·2^-23; bits of their own).
 */
export type LmheadPath =
  | 'auto'
  | 'mma'
  | 'wgmma'
  | 'tma'
  | 'tma-overlap'
  | 'tma-wide'
  | 'tma-cluster'
  | 'tma-chain'
  | 'tma-chain-cluster';
const PATH_CODES: Record<Exclude<LmheadPath, 'auto'>, number> = {
  mma: 1,
  wgmma: 2,
  tma: 3,
  'tma-overlap': 4,
  'tma-wide': 5,
  'tma-cluster': 6,
  'tma-chain': 7,
  'tma-chain-cluster': 8,
};

/**
 * Test and benchmark hooks. chunkRows, chunkVocab: the backward's G chunk (rows, vocabulary columns;
 * multiples of 128), 0 for the plan's; gradWeight's bits must not depend on it (the sum over rows runs
 * on across chunks). path: the tiles of the forward and the backward; every one but 'mma' takes its own
 * wherever they apply (bf16 / f16 with 16-byte aligned rows, a 9.0 device, a build with sm_90a; the
 * emulator's device is one; the '…-cluster' sets cluster a launch whose row blocks are even in number,
 * else run unclustered, with the same bits) and the mma.sync tiles elsewhere. 'auto' takes
 * 'tma-chain' where it applies (the fastest set on an H200: bench/RESULTS.md), else mma.sync.
 * rasterRows: the 128 × 256 tile sets' block order, row blocks per group (made even; 0 for the kernels'
 * 16), so that a small test grid takes a grouped order as a large one does; no bit may depend on it.
 */
export const lmheadTuning: { chunkRows: number; chunkVocab: number; path: LmheadPath; rasterRows: number } = {
  chunkRows: 0,
  chunkVocab: 0,
  path: 'auto',
  rasterRows: 0,
};
const pathArg = () => (lmheadTuning.path === 'auto' ? undefined : PATH_CODES[lmheadTuning.path]);

function head(a: LinearLogprobsArgs) {
  return {
    hidden: ptrOf(a.hidden),
    weight: ptrOf(a.weight),
    bias: optPtr(a.bias),
    dtype: a.hidden.dtype,
    targets: ptrOf(a.targets),
    rows: a.rows,
    dim: a.dim,
    vocab: a.vocab,
    temperature: a.temperature,
    ignoreIndex: a.ignoreIndex,
    rasterRows: lmheadTuning.rasterRows > 0 ? lmheadTuning.rasterRows : undefined,
  };
}

export function cudaLinearLogprobs(mem: CudaMemory, a: LinearLogprobsArgs): Promise<LogprobsResult> {
  return withOutputs(mem, async (out) => {
    const o = logprobsOutputs(out, a.rows, a);
    await native(() =>
      mem.device.linearLogprobs(
        withPoison({
          ...head(a),
          path: pathArg(),
          ...o.args,
        }),
      ),
    );
    return o.result;
  });
}

/** The state's output tensors, and their arguments. */
function stateOutputs(out: OutputScope, rows: number, entropy: boolean, sumSquares: boolean) {
  const max = out.empty('f32', [rows]);
  const sumExp = out.empty('f32', [rows]);
  const sumExpDelta = entropy ? out.empty('f32', [rows]) : undefined;
  const sumExpSq = sumSquares ? out.empty('f32', [rows]) : undefined;
  const targetLogit = out.empty('f32', [rows]);
  return {
    args: {
      outMax: ptrOf(max),
      outSumExp: ptrOf(sumExp),
      outSumExpDelta: optPtr(sumExpDelta),
      outSumExpSq: optPtr(sumExpSq),
      outTargetLogit: ptrOf(targetLogit),
    },
    state(a: { vocabStart: number; vocab: number; temperature: number; ignoreIndex: number }): LogprobStates {
      const s: LogprobStates = {
        max,
        sumExp,
        targetLogit,
        vocabStart: a.vocabStart,
        vocabEnd: a.vocabStart + a.vocab,
        temperature: a.temperature,
        ignoreIndex: a.ignoreIndex,
      };
      if (sumExpDelta) s.sumExpDelta = sumExpDelta;
      if (sumExpSq) s.sumExpSq = sumExpSq;
      return s;
    },
  };
}

export function cudaLinearLogprobStates(mem: CudaMemory, a: LinearLogprobStatesArgs): Promise<LogprobStates> {
  return withOutputs(mem, async (out) => {
    const o = stateOutputs(out, a.rows, a.entropy, a.sumSquares);
    await native(() =>
      mem.device.linearLogprobStates(
        withPoison({ ...head(a), path: pathArg(), vocabStart: a.vocabStart, ...o.args }),
      ),
    );
    return o.state(a);
  });
}

export function cudaLogprobStates(mem: CudaMemory, a: LogprobStatesArgs): Promise<LogprobStates> {
  return withOutputs(mem, async (out) => {
    const o = stateOutputs(out, a.rows, a.entropy, a.sumSquares);
    await native(() =>
      mem.device.logprobStates(
        withPoison({
          logits: ptrOf(a.logits),
          dtype: a.logits.dtype,
          targets: ptrOf(a.targets),
          rows: a.rows,
          vocab: a.vocab,
          temperature: a.temperature,
          ignoreIndex: a.ignoreIndex,
          vocabStart: a.vocabStart,
          ...o.args,
        }),
      ),
    );
    return o.state(a);
  });
}

export function cudaMergeLogprobStates(mem: CudaMemory, a: MergeLogprobStatesArgs): Promise<LogprobsResult> {
  const ptrs = (f: (s: LogprobStates) => Tensor<'f32'> | undefined) =>
    BigUint64Array.from(a.states.map((s) => optPtr(f(s)) ?? 0n));
  return withOutputs(mem, async (out) => {
    const o = logprobsOutputs(out, a.rows, a);
    await native(() =>
      mem.device.mergeLogprobStates(
        withPoison({
          statesMax: ptrs((s) => s.max),
          statesSumExp: ptrs((s) => s.sumExp),
          statesSumExpDelta: ptrs((s) => (a.entropy ? s.sumExpDelta : undefined)),
          statesSumExpSq: ptrs((s) => (a.sumSquares ? s.sumExpSq : undefined)),
          statesTargetLogit: ptrs((s) => s.targetLogit),
          statesVocabStart: Float64Array.from(a.states.map((s) => s.vocabStart)),
          statesVocabEnd: Float64Array.from(a.states.map((s) => s.vocabEnd)),
          targets: ptrOf(a.targets),
          rows: a.rows,
          vocab: a.vocab,
          temperature: a.temperature,
          ignoreIndex: a.ignoreIndex,
          ...o.args,
        }),
      ),
    );
    return o.result;
  });
}

export function cudaLinearLogprobsBackward(
  mem: CudaMemory,
  a: LinearLogprobsBackwardArgs,
): Promise<LinearLogprobsGrads<FloatDType>> {
  const gd = a.gradDtype;
  return withOutputs(mem, async (out) => {
    const gradHidden = out.empty(gd, [a.rows, a.dim]);
    const gradWeight = out.empty(gd, [a.vocab, a.dim]);
    const gradBias = a.bias ? out.empty(gd, [a.vocab]) : undefined;
    await native(() =>
      mem.device.linearLogprobsBackward(
        withPoison({
          ...head({ ...a, entropy: false, sumSquares: false }),
          vocabStart: a.vocabStart,
          targetLimit: a.targetLimit,
          lse: ptrOf(a.lse),
          gradLogprobs: ptrOf(a.gradLogprobs),
          gradEntropy: optPtr(a.gradEntropy),
          entropy: a.gradEntropy ? optPtr(a.entropy) : undefined,
          gradDtype: gd,
          outGradHidden: a.rows * a.dim > 0 ? ptrOf(gradHidden) : undefined,
          outGradWeight: ptrOf(gradWeight),
          outGradBias: optPtr(gradBias),
          path: pathArg(),
          chunkRows: lmheadTuning.chunkRows > 0 ? lmheadTuning.chunkRows : undefined,
          chunkVocab: lmheadTuning.chunkVocab > 0 ? lmheadTuning.chunkVocab : undefined,
        }),
      ),
    );
    const r: LinearLogprobsGrads<FloatDType> = { gradHidden, gradWeight };
    if (gradBias) r.gradBias = gradBias;
    return r;
  });
}
