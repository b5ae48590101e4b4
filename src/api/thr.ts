/** Validation and dispatch of the THR family: restrictedVocab, tokenHiddenReward, thrReweight. */
import type { Backend, RestrictedVocab, ReweightMode, ThrResult, Weighting } from '../backends/backend.js';
import type { FloatDType } from '../dtypes.js';
import { GrpoKernelsError } from '../errors.js';
import type { Layout } from '../layout.js';
import type { Tensor } from '../tensor.js';
import type { TensorLike } from './validate.js';

export interface TokenHiddenRewardOptions {
  hidden: Tensor<FloatDType>;
  probs: TensorLike<'f32'>;
  vocab: RestrictedVocab;
  layout: Layout;
  correct: TensorLike<'u8'>;
  weighting?: Weighting;
  beta?: number;
}

export interface ThrReweightOptions {
  tokenAdvantages: TensorLike<'f32'>;
  thr: TensorLike<'f32'>;
  tau: TensorLike<'f32'>;
  layout: Layout;
  correct: TensorLike<'u8'>;
  p?: number;
  mode?: ReweightMode;
  mask?: boolean;
  eta?: number | 'auto';
}

export async function restrictedVocab(
  _backend: Backend,
  _tokens: unknown,
  _layout: unknown,
): Promise<RestrictedVocab> {
  throw new GrpoKernelsError('BACKEND_UNAVAILABLE', 'restrictedVocab: not implemented yet');
}

export async function tokenHiddenReward(_backend: Backend, _options: unknown): Promise<ThrResult> {
  throw new GrpoKernelsError('BACKEND_UNAVAILABLE', 'tokenHiddenReward: not implemented yet');
}

export async function thrReweight(_backend: Backend, _options: unknown): Promise<Tensor<'f32'>> {
  throw new GrpoKernelsError('BACKEND_UNAVAILABLE', 'thrReweight: not implemented yet');
}
