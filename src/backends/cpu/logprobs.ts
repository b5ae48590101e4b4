import type { FloatDType } from '../../dtypes.js';
import { GrpoKernelsError } from '../../errors.js';
import type { Tensor } from '../../tensor.js';
import type { GatherProbsArgs, LogprobsArgs, LogprobsBackwardArgs, LogprobsResult } from '../backend.js';

const todo = (op: string) => new GrpoKernelsError('BACKEND_UNAVAILABLE', `cpu ${op}: not implemented yet`);
export function cpuLogprobs(_a: LogprobsArgs): LogprobsResult {
  throw todo('logprobs');
}
export function cpuLogprobsBackward(_a: LogprobsBackwardArgs): Tensor<FloatDType> {
  throw todo('logprobsBackward');
}
export function cpuGatherProbs(_a: GatherProbsArgs): Tensor<'f32'> {
  throw todo('gatherProbs');
}
