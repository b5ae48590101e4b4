/**
 * The host arrays of THR's native arguments, the same for both addon backends (native/ops_cuda.cc and
 * native/ops_cpu.cc read the same keys): the layout, the API's plan (src/api/thr-plan.ts) and the
 * options. The cuda and cpu backends add their own device pointers or host views of the tensors.
 */
import type { ThrReweightArgs, TokenHiddenRewardArgs } from './backend.js';

/** tokenHiddenReward, thrAggregate and thrScore: everything but the tensors, beta and the outputs. */
export function thrHostArgs(a: Omit<TokenHiddenRewardArgs, 'beta'>) {
  return {
    hiddenDtype: a.hidden.dtype,
    dim: a.dim,
    probsOffsets: a.probsOffsets,
    vocabOffsets: a.vocab.hostOffsets,
    responseOffsets: a.layout.responseOffsets,
    groupOffsets: a.layout.groupOffsets,
    correct: a.hostCorrect,
    degenerate: a.plan.degenerate,
    correctStart: a.plan.correctStart,
    correctTokens: a.plan.correctTokens,
    correctWeights: new Float32Array(a.plan.correctWeights), // the f32 kernels' weights, rounded once
    precision: a.precision,
  };
}

/** thrReweight: everything but the tensors and the output. */
export function reweightHostArgs(a: ThrReweightArgs) {
  return {
    responseOffsets: a.layout.responseOffsets,
    groupOffsets: a.layout.groupOffsets,
    correct: a.hostCorrect,
    degenerate: a.plan.degenerate,
    mode: a.mode,
    p: a.mode === 'thr-only' ? 0 : a.p,
    mask: a.mask,
    eta: a.plan.eta,
  };
}
