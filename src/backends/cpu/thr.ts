/**
 * The THR family on the native cpu backend: argument plumbing to native/cpu/thr.cc. (restrictedVocab is
 * a host op of the API, src/api/vocab.ts.)
 */
import type { Tensor } from '../../tensor.js';
import type { ThrResult, ThrReweightArgs, TokenHiddenRewardArgs } from '../backend.js';
import { arrayOf, type CpuQueue, cpuEmpty } from './storage.js';

export async function cpuTokenHiddenReward(q: CpuQueue, a: TokenHiddenRewardArgs): Promise<ThrResult> {
  const { layout } = a;
  const thr = cpuEmpty(q, 'f32', [layout.numTokens]);
  const tau = cpuEmpty(q, 'f32', [layout.numGroups]);
  await q.run(() =>
    q.device.tokenHiddenReward({
      hidden: arrayOf(a.hidden),
      hiddenDtype: a.hidden.dtype,
      dim: a.dim,
      probs: arrayOf(a.probs),
      probsOffsets: a.probsOffsets,
      vocabOffsets: a.vocab.hostOffsets,
      tokenColumn: arrayOf(a.vocab.tokenColumn),
      responseOffsets: layout.responseOffsets,
      groupOffsets: layout.groupOffsets,
      correct: a.hostCorrect,
      degenerate: a.plan.degenerate,
      correctStart: a.plan.correctStart,
      correctTokens: a.plan.correctTokens,
      correctWeights: new Float32Array(a.plan.correctWeights), // the f32 kernels' weights, rounded once
      beta: a.beta,
      precision: a.precision,
      outThr: arrayOf(thr),
      outTau: arrayOf(tau),
    }),
  );
  return { thr, tau };
}

export async function cpuThrReweight(q: CpuQueue, a: ThrReweightArgs): Promise<Tensor<'f32'>> {
  const { layout } = a;
  const out = cpuEmpty(q, 'f32', [layout.numTokens]);
  await q.run(() =>
    q.device.thrReweight({
      tokenAdvantages: arrayOf(a.tokenAdvantages),
      thr: arrayOf(a.thr),
      tau: arrayOf(a.tau),
      responseOffsets: layout.responseOffsets,
      groupOffsets: layout.groupOffsets,
      correct: a.hostCorrect,
      degenerate: a.plan.degenerate,
      mode: a.mode,
      p: a.mode === 'thr-only' ? 0 : a.p,
      mask: a.mask,
      eta: a.plan.eta,
      out: arrayOf(out),
    }),
  );
  return out;
}
