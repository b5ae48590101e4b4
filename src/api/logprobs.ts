/** Validation and dispatch of the logprobs family: logprobs, logprobsBackward, gatherProbs. */
import type { Backend, LogprobsResult, RestrictedVocab } from '../backends/backend.js';
import type { FloatDType } from '../dtypes.js';
import { GrpoKernelsError } from '../errors.js';
import type { Layout } from '../layout.js';
import type { Tensor } from '../tensor.js';
import type { TensorLike } from './validate.js';

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
}

export interface GatherProbsOptions {
  layout: Layout;
  vocab: RestrictedVocab;
  temperature?: number;
}

export async function logprobs(
  _backend: Backend,
  _logits: unknown,
  _targets: unknown,
  _options: unknown,
): Promise<LogprobsResult> {
  throw new GrpoKernelsError('BACKEND_UNAVAILABLE', 'logprobs: not implemented yet');
}

export async function logprobsBackward(
  _backend: Backend,
  _logits: unknown,
  _targets: unknown,
  _lse: unknown,
  _gradLogprobs: unknown,
  _options: unknown,
): Promise<Tensor<FloatDType>> {
  throw new GrpoKernelsError('BACKEND_UNAVAILABLE', 'logprobsBackward: not implemented yet');
}

export async function gatherProbs(
  _backend: Backend,
  _logits: unknown,
  _lse: unknown,
  _options: unknown,
): Promise<Tensor<'f32'>> {
  throw new GrpoKernelsError('BACKEND_UNAVAILABLE', 'gatherProbs: not implemented yet');
}
