/** Validation, preset resolution and dispatch of the advantages family. */
import type {
  AdvantagesResult,
  Backend,
  Estimator,
  Preset,
  ScaleKind,
  SingletonPolicy,
  StdKind,
} from '../backends/backend.js';
import { GrpoKernelsError } from '../errors.js';
import type { Tensor } from '../tensor.js';
import type { TensorLike } from './validate.js';

export interface AdvantagesOptions {
  /** Ragged groups: responses of group g are [groupOffsets[g], groupOffsets[g+1]). */
  groupOffsets?: Int32Array;
  /** Or fixed-size groups. */
  groupSize?: number;
  /** Needed by 'opo' (lengths) and 'reinforce_pp_baseline' (per-token output). */
  responseOffsets?: Int32Array;
  estimator?: Estimator;
  std?: StdKind;
  eps?: number;
  scale?: ScaleKind;
  singleton?: SingletonPolicy;
  preset?: Preset;
}

export interface WhitenOptions {
  mask?: TensorLike<'u8'>;
  preset?: Preset;
  keepMean?: boolean;
}

export async function advantages(
  _backend: Backend,
  _rewards: unknown,
  _options: unknown,
): Promise<AdvantagesResult> {
  throw new GrpoKernelsError('BACKEND_UNAVAILABLE', 'advantages: not implemented yet');
}

export async function expandToTokens(
  _backend: Backend,
  _values: unknown,
  _responseOffsets: unknown,
): Promise<Tensor<'f32'>> {
  throw new GrpoKernelsError('BACKEND_UNAVAILABLE', 'expandToTokens: not implemented yet');
}

export async function whiten(_backend: Backend, _values: unknown, _options: unknown): Promise<Tensor<'f32'>> {
  throw new GrpoKernelsError('BACKEND_UNAVAILABLE', 'whiten: not implemented yet');
}
