import { GrpoKernelsError } from '../../errors.js';
import type { Tensor } from '../../tensor.js';
import type {
  RestrictedVocab,
  RestrictedVocabArgs,
  ThrResult,
  ThrReweightArgs,
  TokenHiddenRewardArgs,
} from '../backend.js';

const todo = (op: string) => new GrpoKernelsError('BACKEND_UNAVAILABLE', `cpu ${op}: not implemented yet`);
export function cpuRestrictedVocab(_a: RestrictedVocabArgs): RestrictedVocab {
  throw todo('restrictedVocab');
}
export function cpuTokenHiddenReward(_a: TokenHiddenRewardArgs): ThrResult {
  throw todo('tokenHiddenReward');
}
export function cpuThrReweight(_a: ThrReweightArgs): Tensor<'f32'> {
  throw todo('thrReweight');
}
