import { GrpoKernelsError } from '../../errors.js';
import type { Tensor } from '../../tensor.js';
import type { AdvantagesArgs, AdvantagesResult, ExpandToTokensArgs, WhitenArgs } from '../backend.js';

const todo = (op: string) => new GrpoKernelsError('BACKEND_UNAVAILABLE', `cpu ${op}: not implemented yet`);
export function cpuAdvantages(_a: AdvantagesArgs): AdvantagesResult {
  throw todo('advantages');
}
export function cpuExpandToTokens(_a: ExpandToTokensArgs): Tensor<'f32'> {
  throw todo('expandToTokens');
}
export function cpuWhiten(_a: WhitenArgs): Tensor<'f32'> {
  throw todo('whiten');
}
