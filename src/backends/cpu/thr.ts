/**
 * The THR family on the native cpu backend: argument plumbing to native/cpu/thr.cc. (restrictedVocab is
 * a host op of the API, src/api/vocab.ts.)
 */
import type { Tensor } from '../../tensor.js';
import type {
  ThrAggregateArgs,
  ThrResult,
  ThrReweightArgs,
  ThrScoreArgs,
  TokenHiddenRewardArgs,
} from '../backend.js';
import { reweightHostArgs, thrHostArgs } from '../thr-native.js';
import { arrayOf, type CpuQueue, cpuEmpty } from './storage.js';

/** The arguments tokenHiddenReward, thrAggregate and thrScore share. */
function thrArgs(a: Omit<TokenHiddenRewardArgs, 'beta'>) {
  return {
    ...thrHostArgs(a),
    hidden: arrayOf(a.hidden),
    probs: arrayOf(a.probs),
    tokenColumn: arrayOf(a.vocab.tokenColumn),
  };
}

export async function cpuTokenHiddenReward(q: CpuQueue, a: TokenHiddenRewardArgs): Promise<ThrResult> {
  const { layout } = a;
  const thr = cpuEmpty(q, 'f32', [layout.numTokens]);
  const tau = cpuEmpty(q, 'f32', [layout.numGroups]);
  await q.run(() =>
    q.device.tokenHiddenReward({ ...thrArgs(a), beta: a.beta, outThr: arrayOf(thr), outTau: arrayOf(tau) }),
  );
  return { thr, tau };
}

/** THR's aggregate M_g, stacked [ΣK_g, d] f32 (thr.cc, ThrStep::Aggregate). */
export async function cpuThrAggregate(q: CpuQueue, a: ThrAggregateArgs): Promise<Tensor<'f32'>> {
  const aggregate = cpuEmpty(q, 'f32', [a.vocab.hostOffsets[a.layout.numGroups], a.dim]);
  await q.run(() => q.device.thrAggregate({ ...thrArgs(a), aggregate: arrayOf(aggregate) }));
  return aggregate;
}

/** THR and tau from an aggregate (thr.cc, ThrStep::Score). */
export async function cpuThrScore(q: CpuQueue, a: ThrScoreArgs): Promise<ThrResult> {
  const { layout } = a;
  const thr = cpuEmpty(q, 'f32', [layout.numTokens]);
  const tau = cpuEmpty(q, 'f32', [layout.numGroups]);
  await q.run(() =>
    q.device.thrScore({
      ...thrArgs(a),
      beta: a.beta,
      aggregate: arrayOf(a.aggregate),
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
