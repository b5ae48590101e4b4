/**
 * The THR family on the native cpu backend: argument plumbing to native/cpu/thr.cc. (restrictedVocab is
 * a host op of the API, src/api/vocab.ts.)
 */
import type { Tensor } from '../../tensor.js';
import type { ThrResult, ThrReweightArgs, TokenHiddenRewardArgs } from '../backend.js';
import { reweightHostArgs, thrHostArgs } from '../thr-native.js';
import { arrayOf, type CpuQueue, cpuEmpty } from './storage.js';

export async function cpuTokenHiddenReward(q: CpuQueue, a: TokenHiddenRewardArgs): Promise<ThrResult> {
  const { layout } = a;
  const thr = cpuEmpty(q, 'f32', [layout.numTokens]);
  const tau = cpuEmpty(q, 'f32', [layout.numGroups]);
  await q.run(() =>
    q.device.tokenHiddenReward({
      ...thrHostArgs(a),
      hidden: arrayOf(a.hidden),
      probs: arrayOf(a.probs),
      tokenColumn: arrayOf(a.vocab.tokenColumn),
      beta: a.beta,
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
      ...reweightHostArgs(a),
      tokenAdvantages: arrayOf(a.tokenAdvantages),
      thr: arrayOf(a.thr),
      tau: arrayOf(a.tau),
      out: arrayOf(out),
    }),
  );
  return out;
}
