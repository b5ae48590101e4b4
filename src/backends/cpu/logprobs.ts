/** The logprobs family on the native cpu backend: argument plumbing to native/cpu/logprobs.cc. */
import type { FloatDType } from '../../dtypes.js';
import type { Tensor } from '../../tensor.js';
import type { GatherProbsArgs, LogprobsArgs, LogprobsBackwardArgs, LogprobsResult } from '../backend.js';
import { arrayOf, type CpuQueue, cpuEmpty, optArrayOf } from './storage.js';

export async function cpuLogprobs(q: CpuQueue, a: LogprobsArgs): Promise<LogprobsResult> {
  const logprobs = cpuEmpty(q, 'f32', [a.rows]);
  const lse = cpuEmpty(q, 'f32', [a.rows]);
  const entropy = a.entropy ? cpuEmpty(q, 'f32', [a.rows]) : undefined;
  const sumSquares = a.sumSquares ? cpuEmpty(q, 'f32', [a.rows]) : undefined;
  await q.run(() =>
    q.device.logprobs({
      logits: arrayOf(a.logits),
      dtype: a.logits.dtype,
      targets: arrayOf(a.targets),
      rows: a.rows,
      vocab: a.vocab,
      temperature: a.temperature,
      ignoreIndex: a.ignoreIndex,
      outLogprobs: arrayOf(logprobs),
      outLse: arrayOf(lse),
      outEntropy: optArrayOf(entropy),
      outSumSquares: optArrayOf(sumSquares),
    }),
  );
  const r: LogprobsResult = { logprobs, lse };
  if (entropy) r.entropy = entropy;
  if (sumSquares) r.sumSquares = sumSquares;
  return r;
}

/** gradLogits in the logits' dtype, or written over the logits (`inPlace`). */
export async function cpuLogprobsBackward(q: CpuQueue, a: LogprobsBackwardArgs): Promise<Tensor<FloatDType>> {
  const out = a.inPlace ? a.logits : cpuEmpty(q, a.logits.dtype, [a.rows, a.vocab]);
  await q.run(() =>
    q.device.logprobsBackward({
      logits: arrayOf(a.logits),
      dtype: a.logits.dtype,
      targets: arrayOf(a.targets),
      lse: arrayOf(a.lse),
      gradLogprobs: arrayOf(a.gradLogprobs),
      gradEntropy: optArrayOf(a.gradEntropy),
      entropy: a.gradEntropy ? optArrayOf(a.entropy) : undefined,
      rows: a.rows,
      vocab: a.vocab,
      temperature: a.temperature,
      ignoreIndex: a.ignoreIndex,
      outGradLogits: arrayOf(out),
    }),
  );
  return out;
}

export async function cpuGatherProbs(q: CpuQueue, a: GatherProbsArgs): Promise<Tensor<'f32'>> {
  const total = a.probsOffsets[a.layout.numGroups];
  const probs = cpuEmpty(q, 'f32', [total]);
  await q.run(() =>
    q.device.gatherProbs({
      logits: arrayOf(a.logits),
      dtype: a.logits.dtype,
      lse: arrayOf(a.lse),
      numTokens: a.layout.numTokens,
      vocab: a.vocabSize,
      temperature: a.temperature,
      columns: arrayOf(a.vocab.columns),
      groupTokenOffsets: a.layout.groupTokenOffsets,
      vocabOffsets: a.vocab.hostOffsets,
      probsOffsets: a.probsOffsets,
      outProbs: arrayOf(probs),
    }),
  );
  return probs;
}
