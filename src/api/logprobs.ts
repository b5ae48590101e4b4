/**
 * Validation and dispatch of the logprobs family: logprobs, logprobsBackward, gatherProbs.
 * Everything here runs on the host before any kernel and never reads device memory back: argument
 * types, shapes, dtypes, option ranges, host targets, and the restricted vocabulary's host arrays.
 * Targets already on the device are checked by the kernels (a flag, reported at the next wait).
 * Plain typed arrays are uploaded and the temporaries disposed whatever happens.
 */
import type { Backend, LogprobsResult } from '../backends/backend.js';
import { FLOAT_DTYPES, type FloatDType } from '../dtypes.js';
import { badTarget, fail } from '../errors.js';
import { type Layout, resolveLayout } from '../layout.js';
import type { Tensor } from '../tensor.js';
import {
  asTensor,
  booleanOption,
  checkOptions,
  numberOption,
  type TensorLike,
  withInputs,
} from './validate.js';
import { probsOffsets, resolveVocab, type VocabLike } from './vocab.js';

export interface LogprobsOptions {
  /** Divides the logits before the softmax; finite and > 0. Default 1. */
  temperature?: number;
  /** Rows whose target equals this are not read and give 0 in every output. Default -100. */
  ignoreIndex?: number;
  /** Also return the entropy −Σ p log p of each row. */
  entropy?: boolean;
  /** Also return Σ p² of each row. */
  sumSquares?: boolean;
}

export interface LogprobsBackwardOptions {
  /** Gradient on the forward's entropy output, f32 [N]. Needs `entropy`. */
  gradEntropy?: TensorLike<'f32'>;
  /** The forward's entropy output, f32 [N]; required with gradEntropy. */
  entropy?: TensorLike<'f32'>;
  temperature?: number;
  ignoreIndex?: number;
  /**
   * Overwrite the logits with their gradient and return the logits tensor itself (as Liger's fused
   * losses do, saving a second [N, V] buffer). The logits are then no longer available.
   */
  inPlace?: boolean;
}

export interface GatherProbsOptions {
  layout: Layout;
  /** From restrictedVocab() (or its three host arrays). */
  vocab: VocabLike;
  temperature?: number;
}

const DEFAULT_TEMPERATURE = 1;
const DEFAULT_IGNORE_INDEX = -100;

// ---------------------------------------------------------------- option and argument checks

/**
 * The smallest temperature: 2^-126, the smallest normal f32. The GPU kernels scale logits by 1/T in
 * f32, which is finite exactly when T ≥ 2^-126 (then every backend returns the f32 rounding of the
 * exact result; for T → 0 that is the argmax limit, lse = m/T rounding to ±Inf when it exceeds f32).
 * Any finite T above is accepted: a huge T gives the uniform limit (z = x/T ≈ 0) on every backend.
 */
export const MIN_TEMPERATURE = 2 ** -126;

export function temperatureOption(value: unknown, argument = 'temperature'): number {
  const t = numberOption(argument, value, DEFAULT_TEMPERATURE, { min: 0, exclusiveMin: true });
  if (t < MIN_TEMPERATURE) {
    fail(
      'RANGE',
      argument,
      `expected ≥ 2^-126 (${MIN_TEMPERATURE}, the smallest normal f32: the kernels scale by 1/T in f32), got ${t}`,
    );
  }
  return t;
}

export function ignoreIndexOption(value: unknown, argument = 'ignoreIndex'): number {
  return numberOption(argument, value, DEFAULT_IGNORE_INDEX, {
    integer: true,
    min: -(2 ** 31),
    max: 2 ** 31 - 1,
  });
}

export function flagOption(argument: string, value: unknown): boolean {
  return booleanOption(argument, value, false);
}

/** logits: a rank-2 Tensor of a float dtype with at least one column. */
export function logitsArg(
  backend: Backend,
  value: unknown,
): { logits: Tensor<FloatDType>; rows: number; vocab: number } {
  const { tensor } = asTensor(backend, 'logits', value, FLOAT_DTYPES, [null, null]);
  const [rows, vocab] = tensor.shape;
  if (vocab < 1) fail('SHAPE', 'logits', `expected at least one column (vocab ≥ 1), got shape [${rows}, 0]`);
  if (vocab > 2 ** 31 - 1)
    fail(
      'SHAPE',
      'logits',
      `expected at most 2^31 − 1 columns (i32 targets address them), got shape [${rows}, ${vocab}]`,
    );
  return { logits: tensor, rows, vocab };
}

/**
 * Every target is ignoreIndex or a column index in [0, vocab). Host targets (an Int32Array) are
 * checked here, before any kernel; targets already on the device are checked by the kernel, which
 * raises a flag reported as the same RANGE error at the next wait (docs/DESIGN.md, "Errors from
 * the device"): reading them back here would stall the host on the device.
 */
export function checkTargets(value: unknown, vocab: number, ignoreIndex: number): void {
  if (!(value instanceof Int32Array)) return;
  for (let i = 0; i < value.length; i++) {
    const t = value[i];
    if (t !== ignoreIndex && (t < 0 || t >= vocab)) badTarget(i, t, vocab, ignoreIndex);
  }
}

// ---------------------------------------------------------------- ops

export async function logprobs(
  backend: Backend,
  logits: unknown,
  targets: unknown,
  options: unknown,
): Promise<LogprobsResult> {
  const o = checkOptions<LogprobsOptions>('options', options, [
    'temperature',
    'ignoreIndex',
    'entropy',
    'sumSquares',
  ]);
  const temperature = temperatureOption(o.temperature);
  const ignoreIndex = ignoreIndexOption(o.ignoreIndex);
  const entropy = flagOption('entropy', o.entropy);
  const sumSquares = flagOption('sumSquares', o.sumSquares);
  const { logits: lg, rows, vocab } = logitsArg(backend, logits);
  return withInputs(backend, async (take) => {
    const tg = take('targets', targets, ['i32'], [rows]);
    checkTargets(targets, vocab, ignoreIndex);
    return backend.logprobs({
      logits: lg,
      targets: tg,
      rows,
      vocab,
      temperature,
      ignoreIndex,
      entropy,
      sumSquares,
    });
  });
}

export async function logprobsBackward(
  backend: Backend,
  logits: unknown,
  targets: unknown,
  lse: unknown,
  gradLogprobs: unknown,
  options: unknown,
): Promise<Tensor<FloatDType>> {
  const o = checkOptions<LogprobsBackwardOptions>('options', options, [
    'gradEntropy',
    'entropy',
    'temperature',
    'ignoreIndex',
    'inPlace',
  ]);
  const temperature = temperatureOption(o.temperature);
  const ignoreIndex = ignoreIndexOption(o.ignoreIndex);
  const inPlace = flagOption('inPlace', o.inPlace);
  const { logits: lg, rows, vocab } = logitsArg(backend, logits);
  if (o.gradEntropy !== undefined && o.entropy === undefined) {
    fail('DTYPE', 'entropy', "required with gradEntropy: pass the forward's entropy output, f32 [N]");
  }
  return withInputs(backend, async (take) => {
    const tg = take('targets', targets, ['i32'], [rows]);
    const ls = take('lse', lse, ['f32'], [rows]);
    const gl = take('gradLogprobs', gradLogprobs, ['f32'], [rows]);
    let gradEntropy: Tensor<'f32'> | undefined;
    let entropy: Tensor<'f32'> | undefined;
    if (o.gradEntropy !== undefined) {
      gradEntropy = take('gradEntropy', o.gradEntropy, ['f32'], [rows]);
      entropy = take('entropy', o.entropy, ['f32'], [rows]);
    } else if (o.entropy !== undefined) {
      // Accepted for symmetry with the forward's outputs; unused without gradEntropy.
      take('entropy', o.entropy, ['f32'], [rows]);
    }
    checkTargets(targets, vocab, ignoreIndex);
    return backend.logprobsBackward({
      logits: lg,
      targets: tg,
      lse: ls,
      gradLogprobs: gl,
      gradEntropy,
      entropy,
      rows,
      vocab,
      temperature,
      ignoreIndex,
      inPlace,
    });
  });
}

export async function gatherProbs(
  backend: Backend,
  logits: unknown,
  lse: unknown,
  options: unknown,
): Promise<Tensor<'f32'>> {
  const o = checkOptions<GatherProbsOptions>('options', options, ['layout', 'vocab', 'temperature']);
  const temperature = temperatureOption(o.temperature);
  const { logits: lg, rows, vocab: vocabSize } = logitsArg(backend, logits);
  const layout = resolveLayout(o.layout, rows);
  return withInputs(backend, async (take) => {
    const ls = take('lse', lse, ['f32'], [rows]);
    const vocab = resolveVocab(take, o.vocab, layout, vocabSize);
    return backend.gatherProbs({
      logits: lg,
      lse: ls,
      layout,
      vocab,
      vocabSize,
      temperature,
      probsOffsets: probsOffsets(layout, vocab.hostOffsets),
    });
  });
}
