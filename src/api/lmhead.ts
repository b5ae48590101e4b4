/**
 * Validation and dispatch of the LM-head family: linearLogprobs and its backward (log-probs straight
 * from hidden states and the head's weight, never the [N, V] logits), and the vocabulary-sharded
 * online states (logprobStates, linearLogprobStates, mergeLogprobStates). Host-side checks only, as
 * in src/api/logprobs.ts: targets on the device are checked by the kernels (a flag, reported at the
 * next wait).
 */
import type { Backend, LinearLogprobsGrads, LogprobStates, LogprobsResult } from '../backends/backend.js';
import { FLOAT_DTYPES, type FloatDType } from '../dtypes.js';
import { fail } from '../errors.js';
import { Tensor } from '../tensor.js';
import {
  checkTargets,
  flagOption,
  ignoreIndexOption,
  type LogprobsOptions,
  logitsArg,
  temperatureOption,
} from './logprobs.js';
import {
  asTensor,
  checkNumber,
  checkOptions,
  describe,
  enumOption,
  type Take,
  type TensorLike,
  withInputs,
} from './validate.js';

export interface LinearLogprobsOptions extends LogprobsOptions {
  /** [V], the weight's dtype: logits = hidden · weightᵀ + bias. */
  bias?: TensorLike<FloatDType>;
}

/**
 * The dtype of linearLogprobsBackward's gradients: 'f32' (the default), or 'input': hidden's dtype (=
 * weight's and bias's), what a PyTorch autograd Function returns (a parameter's .grad has the
 * parameter's dtype; Liger's fused linear cross entropy and verl's linear_cross_entropy return bf16
 * gradients for bf16 inputs). A no-op for f32 inputs.
 */
export type LinearLogprobsGradDtype = 'f32' | 'input';
export const LINEAR_LOGPROBS_GRAD_DTYPES: readonly LinearLogprobsGradDtype[] = ['f32', 'input'];

export interface LinearLogprobsBackwardOptions<G extends LinearLogprobsGradDtype = LinearLogprobsGradDtype> {
  /** Gradient on the forward's entropy output, f32 [N]. Needs `entropy`. */
  gradEntropy?: TensorLike<'f32'>;
  /** The forward's entropy output, f32 [N]; required with gradEntropy. */
  entropy?: TensorLike<'f32'>;
  temperature?: number;
  ignoreIndex?: number;
  /** The forward's bias, [V]; with it the result has gradBias. */
  bias?: TensorLike<FloatDType>;
  /**
   * A vocabulary shard of a tensor-parallel head: weight (and bias) hold rows [vocabStart, +V); targets
   * are ids of the full vocabulary; lse and entropy the full head's (from mergeLogprobStates). The
   * result's gradHidden is this shard's term of the sum (all-reduce it over the shards); gradWeight
   * and gradBias are the shard's rows. Default: the whole head (0, targets checked against V).
   */
  vocabStart?: number;
  /**
   * The gradients' dtype (LinearLogprobsGradDtype): 'f32' (default) or 'input' (f16/bf16 when hidden
   * and weight are). Either way every sum accumulates in f32 (f64 on js) and the result is rounded once
   * at the final store: the 'input' gradients are the 'f32' ones rounded to nearest even, bit for bit.
   *
   * f16 inputs on cuda: the kernels round dL/dlogits to f16 for the tensor cores after scaling it by a
   * power of two (per row for gradHidden and gradBias, per call for gradWeight), so a small incoming
   * gradient (an unscaled mean over many tokens) keeps f16's relative accuracy without loss scaling;
   * entries more than 2⁻²⁹ (f16's normal range) below their row's (or the call's) largest keep an
   * absolute one (docs/DESIGN.md, "Numerics").
   */
  gradDtype?: G;
}

export interface LogprobStatesOptions extends LogprobsOptions {
  /** The shard's first column in the full vocabulary (its logits are columns [vocabStart, +V)). */
  vocabStart?: number;
}

export interface LinearLogprobStatesOptions extends LinearLogprobsOptions {
  /** The shard's first row in the full head (weight holds rows [vocabStart, +V)). */
  vocabStart?: number;
}

export interface MergeLogprobStatesOptions {
  /** Also return the entropy (every state needs sumExpDelta). */
  entropy?: boolean;
  /** Also return Σ p² (every state needs sumExpSq). */
  sumSquares?: boolean;
}

const LOGPROBS_KEYS = ['temperature', 'ignoreIndex', 'entropy', 'sumSquares'] as const;

interface Head {
  hidden: Tensor<FloatDType>;
  weight: Tensor<FloatDType>;
  rows: number;
  dim: number;
  vocab: number;
}

/** hidden [N, d] and weight [V, d] of the same float dtype, V ≥ 1. */
function headArgs(backend: Backend, hidden: unknown, weight: unknown): Head {
  const h = asTensor(backend, 'hidden', hidden, FLOAT_DTYPES, [null, null]).tensor;
  const w = asTensor(backend, 'weight', weight, FLOAT_DTYPES, [null, null]).tensor;
  const [rows, dim] = h.shape;
  const [vocab, wd] = w.shape;
  if (w.dtype !== h.dtype) {
    fail('DTYPE', 'weight', `expected dtype ${h.dtype} (hidden's dtype), got ${w.dtype}`);
  }
  if (vocab < 1) fail('SHAPE', 'weight', `expected at least one row (vocab ≥ 1), got shape [0, ${wd}]`);
  if (vocab > 2 ** 31 - 1)
    fail(
      'SHAPE',
      'weight',
      `expected at most 2^31 − 1 rows (i32 targets address them), got shape [${vocab}, ${wd}]`,
    );
  if (rows > 2 ** 31 - 1 || dim > 2 ** 31 - 1)
    fail('SHAPE', 'hidden', `expected at most 2^31 − 1 rows and columns, got shape [${rows}, ${dim}]`);
  if (wd !== dim) {
    fail('SHAPE', 'weight', `expected shape [?, ${dim}] (hidden's width d = ${dim}), got [${vocab}, ${wd}]`);
  }
  return { hidden: h, weight: w, rows, dim, vocab };
}

/** bias [V] in the weight's dtype, or undefined. */
function biasArg(take: Take, value: unknown, head: Head): Tensor<FloatDType> | undefined {
  if (value === undefined) return undefined;
  if (value instanceof Tensor && value.dtype !== head.weight.dtype) {
    fail('DTYPE', 'bias', `expected dtype ${head.weight.dtype} (the weight's dtype), got ${value.dtype}`);
  }
  return take('bias', value, [head.weight.dtype], [head.vocab]);
}

function vocabStartOption(value: unknown, width: number): number {
  if (value === undefined) return 0;
  const v = checkNumber('vocabStart', value, { integer: true, min: 0, max: 2 ** 31 - 1 - width });
  return v;
}

// ---------------------------------------------------------------- ops

export async function linearLogprobs(
  backend: Backend,
  hidden: unknown,
  weight: unknown,
  targets: unknown,
  options: unknown,
): Promise<LogprobsResult> {
  const o = checkOptions<LinearLogprobsOptions>('options', options, [...LOGPROBS_KEYS, 'bias']);
  const temperature = temperatureOption(o.temperature);
  const ignoreIndex = ignoreIndexOption(o.ignoreIndex);
  const entropy = flagOption('entropy', o.entropy);
  const sumSquares = flagOption('sumSquares', o.sumSquares);
  const head = headArgs(backend, hidden, weight);
  return withInputs(backend, async (take) => {
    const bias = biasArg(take, o.bias, head);
    const tg = take('targets', targets, ['i32'], [head.rows]);
    checkTargets(targets, head.vocab, ignoreIndex);
    return backend.linearLogprobs({
      ...head,
      bias,
      targets: tg,
      temperature,
      ignoreIndex,
      entropy,
      sumSquares,
    });
  });
}

export async function linearLogprobsBackward(
  backend: Backend,
  hidden: unknown,
  weight: unknown,
  targets: unknown,
  lse: unknown,
  gradLogprobs: unknown,
  options: unknown,
): Promise<LinearLogprobsGrads<FloatDType>> {
  const o = checkOptions<LinearLogprobsBackwardOptions>('options', options, [
    'gradEntropy',
    'entropy',
    'temperature',
    'ignoreIndex',
    'bias',
    'vocabStart',
    'gradDtype',
  ]);
  const temperature = temperatureOption(o.temperature);
  const ignoreIndex = ignoreIndexOption(o.ignoreIndex);
  const gradDtype = enumOption('gradDtype', o.gradDtype, LINEAR_LOGPROBS_GRAD_DTYPES, 'f32');
  const head = headArgs(backend, hidden, weight);
  const sharded = o.vocabStart !== undefined;
  const vocabStart = vocabStartOption(o.vocabStart, head.vocab);
  if (o.gradEntropy !== undefined && o.entropy === undefined) {
    fail('DTYPE', 'entropy', "required with gradEntropy: pass the forward's entropy output, f32 [N]");
  }
  return withInputs(backend, async (take) => {
    const n = head.rows;
    const bias = biasArg(take, o.bias, head);
    const tg = take('targets', targets, ['i32'], [n]);
    const ls = take('lse', lse, ['f32'], [n]);
    const gl = take('gradLogprobs', gradLogprobs, ['f32'], [n]);
    let gradEntropy: Tensor<'f32'> | undefined;
    let entropy: Tensor<'f32'> | undefined;
    if (o.gradEntropy !== undefined) {
      gradEntropy = take('gradEntropy', o.gradEntropy, ['f32'], [n]);
      entropy = take('entropy', o.entropy, ['f32'], [n]);
    } else if (o.entropy !== undefined) {
      take('entropy', o.entropy, ['f32'], [n]);
    }
    if (sharded) checkShardTargets(targets, ignoreIndex);
    else checkTargets(targets, head.vocab, ignoreIndex);
    return backend.linearLogprobsBackward({
      ...head,
      vocabStart,
      targetLimit: sharded ? 2 ** 31 - 1 : head.vocab,
      bias,
      targets: tg,
      lse: ls,
      gradLogprobs: gl,
      gradEntropy,
      entropy,
      temperature,
      ignoreIndex,
      gradDtype: gradDtype === 'input' ? head.hidden.dtype : 'f32',
    });
  });
}

/**
 * Host targets of a shard: ignoreIndex or ≥ 0 (a target outside the shard is legal: another shard
 * holds it; the merge checks the full range).
 */
function checkShardTargets(value: unknown, ignoreIndex: number): void {
  if (!(value instanceof Int32Array)) return;
  for (let i = 0; i < value.length; i++) {
    const t = value[i];
    if (t !== ignoreIndex && t < 0) {
      fail(
        'RANGE',
        'targets',
        `expected values ≥ 0 or ignoreIndex (${ignoreIndex}), got targets[${i}] = ${t}`,
      );
    }
  }
}

export async function logprobStates(
  backend: Backend,
  logits: unknown,
  targets: unknown,
  options: unknown,
): Promise<LogprobStates> {
  const o = checkOptions<LogprobStatesOptions>('options', options, [...LOGPROBS_KEYS, 'vocabStart']);
  const temperature = temperatureOption(o.temperature);
  const ignoreIndex = ignoreIndexOption(o.ignoreIndex);
  const entropy = flagOption('entropy', o.entropy);
  const sumSquares = flagOption('sumSquares', o.sumSquares);
  const { logits: lg, rows, vocab } = logitsArg(backend, logits);
  const vocabStart = vocabStartOption(o.vocabStart, vocab);
  return withInputs(backend, async (take) => {
    const tg = take('targets', targets, ['i32'], [rows]);
    checkShardTargets(targets, ignoreIndex);
    return backend.logprobStates({
      logits: lg,
      targets: tg,
      rows,
      vocab,
      vocabStart,
      temperature,
      ignoreIndex,
      entropy,
      sumSquares,
    });
  });
}

export async function linearLogprobStates(
  backend: Backend,
  hidden: unknown,
  weight: unknown,
  targets: unknown,
  options: unknown,
): Promise<LogprobStates> {
  const o = checkOptions<LinearLogprobStatesOptions>('options', options, [
    ...LOGPROBS_KEYS,
    'bias',
    'vocabStart',
  ]);
  const temperature = temperatureOption(o.temperature);
  const ignoreIndex = ignoreIndexOption(o.ignoreIndex);
  const entropy = flagOption('entropy', o.entropy);
  const sumSquares = flagOption('sumSquares', o.sumSquares);
  const head = headArgs(backend, hidden, weight);
  const vocabStart = vocabStartOption(o.vocabStart, head.vocab);
  return withInputs(backend, async (take) => {
    const bias = biasArg(take, o.bias, head);
    const tg = take('targets', targets, ['i32'], [head.rows]);
    checkShardTargets(targets, ignoreIndex);
    return backend.linearLogprobStates({
      ...head,
      bias,
      targets: tg,
      vocabStart,
      temperature,
      ignoreIndex,
      entropy,
      sumSquares,
    });
  });
}

/**
 * The states must tile the vocabulary: states[0].vocabStart = 0 and each next one starts where the
 * previous ended (LAYOUT otherwise, naming the state); they share temperature and ignoreIndex, and
 * their tensors are f32 [N] of this context.
 */
export async function mergeLogprobStates(
  backend: Backend,
  states: unknown,
  targets: unknown,
  options: unknown,
): Promise<LogprobsResult> {
  const o = checkOptions<MergeLogprobStatesOptions>('options', options, ['entropy', 'sumSquares']);
  const entropy = flagOption('entropy', o.entropy);
  const sumSquares = flagOption('sumSquares', o.sumSquares);
  if (!Array.isArray(states) || states.length === 0) {
    fail('DTYPE', 'states', `expected a non-empty array of logprobStates results, got ${describe(states)}`);
  }
  const checked: LogprobStates[] = [];
  let rows = -1;
  let end = 0;
  let temperature = 0;
  let ignoreIndex = 0;
  // An index loop, not forEach: a hole in a sparse array is a missing state, not one to skip.
  for (let i = 0; i < states.length; i++) {
    const s: unknown = states[i];
    const name = `states[${i}]`;
    if (typeof s !== 'object' || s === null)
      fail('DTYPE', name, `expected a state object, got ${describe(s)}`);
    const st = s as Partial<LogprobStates>;
    const vec = (field: keyof LogprobStates, required: boolean): Tensor<'f32'> | undefined => {
      const v = st[field];
      if (v === undefined) {
        if (required) fail('DTYPE', `${name}.${field}`, 'required');
        return undefined;
      }
      if (!(v instanceof Tensor)) fail('DTYPE', `${name}.${field}`, `expected a Tensor, got ${describe(v)}`);
      const t = asTensor(backend, `${name}.${field}`, v, ['f32'], [rows < 0 ? null : rows]).tensor;
      if (t.shape.length !== 1)
        fail('SHAPE', `${name}.${field}`, `expected shape [N], got [${t.shape.join(', ')}]`);
      if (rows < 0) rows = t.shape[0];
      return t;
    };
    const max = vec('max', true)!;
    const sumExp = vec('sumExp', true)!;
    const targetLogit = vec('targetLogit', true)!;
    const sumExpDelta = vec('sumExpDelta', entropy);
    const sumExpSq = vec('sumExpSq', sumSquares);
    const v0 = checkNumber(`${name}.vocabStart`, st.vocabStart, { integer: true, min: 0, max: 2 ** 31 - 2 });
    const v1 = checkNumber(`${name}.vocabEnd`, st.vocabEnd, { integer: true, min: v0 + 1, max: 2 ** 31 - 1 });
    if (v0 !== end) {
      fail(
        'LAYOUT',
        `${name}.vocabStart`,
        i === 0
          ? `expected 0: the states must tile the vocabulary in order, got ${v0}`
          : `expected ${end} (where states[${i - 1}] ends): the states must tile the vocabulary in order, got ${v0}`,
      );
    }
    end = v1;
    // Both are part of a state (the type requires them): a missing one is not defaulted.
    for (const field of ['temperature', 'ignoreIndex'] as const)
      if (st[field] === undefined) fail('DTYPE', `${name}.${field}`, 'expected a number, got undefined');
    const t = temperatureOption(st.temperature, `${name}.temperature`);
    const ig = ignoreIndexOption(st.ignoreIndex, `${name}.ignoreIndex`);
    if (i === 0) {
      temperature = t;
      ignoreIndex = ig;
    } else if (t !== temperature || ig !== ignoreIndex) {
      fail(
        'RANGE',
        name,
        `expected temperature ${temperature} and ignoreIndex ${ignoreIndex} (as states[0]), got ${t} and ${ig}`,
      );
    }
    checked.push({
      max,
      sumExp,
      sumExpDelta,
      sumExpSq,
      targetLogit,
      vocabStart: v0,
      vocabEnd: v1,
      temperature: t,
      ignoreIndex: ig,
    });
  }
  return withInputs(backend, async (take) => {
    const tg = take('targets', targets, ['i32'], [rows]);
    checkTargets(targets, end, ignoreIndex);
    return backend.mergeLogprobStates({
      states: checked,
      targets: tg,
      rows,
      vocab: end,
      temperature,
      ignoreIndex,
      entropy,
      sumSquares,
    });
  });
}
