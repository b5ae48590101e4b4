/**
 * The LM-head family on the native cpu backend: argument plumbing to native/cpu/lmhead.cc
 * (linearLogprobs, linearLogprobStates, logprobStates, mergeLogprobStates, linearLogprobsBackward), and
 * the scratch plan lmheadScratchBytes reports for a cpu context.
 */
import type { FloatDType } from '../../dtypes.js';
import { GrpoKernelsError } from '../../errors.js';
import { loadNativeAddon } from '../addon.js';
import type {
  DeviceInfo,
  LinearLogprobStatesArgs,
  LinearLogprobsArgs,
  LinearLogprobsBackwardArgs,
  LinearLogprobsGrads,
  LogprobStates,
  LogprobStatesArgs,
  LogprobsResult,
  MergeLogprobStatesArgs,
} from '../backend.js';
import type { NativeCpuInfo } from './native.js';
import { arrayOf, type CpuQueue, cpuEmpty, optArrayOf } from './storage.js';

/**
 * Test hook: columns per block of the backward's input-dtype gradWeight pass (native/cpu/lmhead.cc,
 * "gradients in the input dtype"; rounded up to its column block), 0 for the plan's. The gradients'
 * bits must not depend on it.
 */
export const lmheadTuning = { accCols: 0 };

function head(a: Pick<LinearLogprobsArgs, 'hidden' | 'weight' | 'bias' | 'rows' | 'dim' | 'vocab'>) {
  return {
    hidden: arrayOf(a.hidden),
    weight: arrayOf(a.weight),
    bias: optArrayOf(a.bias),
    dtype: a.hidden.dtype,
    rows: a.rows,
    dim: a.dim,
    vocab: a.vocab,
  };
}

function forwardOutputs(q: CpuQueue, rows: number, entropy: boolean, sumSquares: boolean) {
  const r: LogprobsResult = { logprobs: cpuEmpty(q, 'f32', [rows]), lse: cpuEmpty(q, 'f32', [rows]) };
  if (entropy) r.entropy = cpuEmpty(q, 'f32', [rows]);
  if (sumSquares) r.sumSquares = cpuEmpty(q, 'f32', [rows]);
  const arrays = {
    outLogprobs: arrayOf(r.logprobs),
    outLse: arrayOf(r.lse),
    outEntropy: optArrayOf(r.entropy),
    outSumSquares: optArrayOf(r.sumSquares),
  };
  return { r, arrays };
}

function stateOutputs(
  q: CpuQueue,
  a: { rows: number; vocab: number; vocabStart: number; temperature: number; ignoreIndex: number },
  entropy: boolean,
  sumSquares: boolean,
) {
  const t = () => cpuEmpty(q, 'f32', [a.rows]);
  const s: LogprobStates = {
    max: t(),
    sumExp: t(),
    targetLogit: t(),
    vocabStart: a.vocabStart,
    vocabEnd: a.vocabStart + a.vocab,
    temperature: a.temperature,
    ignoreIndex: a.ignoreIndex,
  };
  if (entropy) s.sumExpDelta = t();
  if (sumSquares) s.sumExpSq = t();
  const arrays = {
    outMax: arrayOf(s.max),
    outSumExp: arrayOf(s.sumExp),
    outSumExpDelta: optArrayOf(s.sumExpDelta),
    outSumExpSq: optArrayOf(s.sumExpSq),
    outTargetLogit: arrayOf(s.targetLogit),
  };
  return { s, arrays };
}

export async function cpuLinearLogprobs(q: CpuQueue, a: LinearLogprobsArgs): Promise<LogprobsResult> {
  const { r, arrays } = forwardOutputs(q, a.rows, a.entropy, a.sumSquares);
  await q.run(() =>
    q.device.linearLogprobs({
      ...head(a),
      targets: arrayOf(a.targets),
      temperature: a.temperature,
      ignoreIndex: a.ignoreIndex,
      ...arrays,
    }),
  );
  return r;
}

export async function cpuLinearLogprobStates(
  q: CpuQueue,
  a: LinearLogprobStatesArgs,
): Promise<LogprobStates> {
  const { s, arrays } = stateOutputs(q, a, a.entropy, a.sumSquares);
  await q.run(() =>
    q.device.linearLogprobStates({
      ...head(a),
      targets: arrayOf(a.targets),
      vocabStart: a.vocabStart,
      temperature: a.temperature,
      ignoreIndex: a.ignoreIndex,
      ...arrays,
    }),
  );
  return s;
}

export async function cpuLogprobStates(q: CpuQueue, a: LogprobStatesArgs): Promise<LogprobStates> {
  const { s, arrays } = stateOutputs(q, a, a.entropy, a.sumSquares);
  await q.run(() =>
    q.device.logprobStates({
      logits: arrayOf(a.logits),
      dtype: a.logits.dtype,
      targets: arrayOf(a.targets),
      rows: a.rows,
      vocab: a.vocab,
      vocabStart: a.vocabStart,
      temperature: a.temperature,
      ignoreIndex: a.ignoreIndex,
      ...arrays,
    }),
  );
  return s;
}

export async function cpuMergeLogprobStates(q: CpuQueue, a: MergeLogprobStatesArgs): Promise<LogprobsResult> {
  const { r, arrays } = forwardOutputs(q, a.rows, a.entropy, a.sumSquares);
  await q.run(() =>
    q.device.mergeLogprobStates({
      // Only the sums the outputs need travel (a state may carry more).
      states: a.states.map((s) => ({
        max: arrayOf(s.max),
        sumExp: arrayOf(s.sumExp),
        sumExpDelta: a.entropy ? optArrayOf(s.sumExpDelta) : undefined,
        sumExpSq: a.sumSquares ? optArrayOf(s.sumExpSq) : undefined,
        targetLogit: arrayOf(s.targetLogit),
        vocabStart: s.vocabStart,
        vocabEnd: s.vocabEnd,
      })),
      targets: arrayOf(a.targets),
      rows: a.rows,
      vocab: a.vocab,
      temperature: a.temperature,
      ignoreIndex: a.ignoreIndex,
      ...arrays,
    }),
  );
  return r;
}

export async function cpuLinearLogprobsBackward(
  q: CpuQueue,
  a: LinearLogprobsBackwardArgs,
): Promise<LinearLogprobsGrads<FloatDType>> {
  const gd = a.gradDtype;
  const g: LinearLogprobsGrads<FloatDType> = {
    gradHidden: cpuEmpty(q, gd, [a.rows, a.dim]),
    gradWeight: cpuEmpty(q, gd, [a.vocab, a.dim]),
  };
  if (a.bias) g.gradBias = cpuEmpty(q, gd, [a.vocab]);
  await q.run(() =>
    q.device.linearLogprobsBackward({
      ...head(a),
      targets: arrayOf(a.targets),
      lse: arrayOf(a.lse),
      gradLogprobs: arrayOf(a.gradLogprobs),
      gradEntropy: optArrayOf(a.gradEntropy),
      entropy: a.gradEntropy ? optArrayOf(a.entropy) : undefined,
      temperature: a.temperature,
      ignoreIndex: a.ignoreIndex,
      vocabStart: a.vocabStart,
      targetLimit: a.targetLimit,
      gradDtype: gd,
      outGradHidden: arrayOf(g.gradHidden),
      outGradWeight: arrayOf(g.gradWeight),
      outGradBias: optArrayOf(g.gradBias),
      accCols: lmheadTuning.accCols > 0 ? lmheadTuning.accCols : undefined,
    }),
  );
  return g;
}

/**
 * The scratch bytes a linearLogprobs and a linearLogprobsBackward call allocate on a native cpu context
 * (its threads and LM-head build, from its device details): native/cpu/lmhead.cc's plan, the one its
 * kernels allocate by.
 */
export function cpuLmheadScratchBytes(
  device: DeviceInfo,
  shape: { rows: number; vocab: number; dim: number; dtype: FloatDType; gradDtype?: 'f32' | 'input' },
): { forward: number; backward: number } {
  const addon = loadNativeAddon('cpu');
  if (addon.cpuLmheadPlan === undefined)
    throw new GrpoKernelsError('BACKEND_UNAVAILABLE', 'cpu backend: the native addon lacks the LM-head plan');
  const p = addon.cpuLmheadPlan({
    rows: shape.rows,
    vocab: shape.vocab,
    dim: shape.dim,
    dtype: shape.dtype,
    threads: Number(device.details.threads),
    isa: device.details.lmheadIsa as NativeCpuInfo['lmheadIsa'],
  });
  return {
    forward: p.forwardBytes,
    backward: shape.gradDtype === 'input' ? p.backwardInputBytes : p.backwardBytes,
  };
}
