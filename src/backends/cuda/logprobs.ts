/** The logprobs family on CUDA: argument plumbing to native/cuda/logprobs.cu. */
import type { FloatDType } from '../../dtypes.js';
import type { Tensor } from '../../tensor.js';
import type { GatherProbsArgs, LogprobsArgs, LogprobsBackwardArgs, LogprobsResult } from '../backend.js';
import { native } from './native.js';
import { type CudaMemory, logprobsOutputs, optPtr, ptrOf, withOutputs, withPoison } from './storage.js';

/** Test hook: this many vocabulary segments in the forward instead of the count V fixes (0); changes the bits. */
export const logprobsTuning = { splits: 0 };

export function cudaLogprobs(mem: CudaMemory, a: LogprobsArgs): Promise<LogprobsResult> {
  return withOutputs(mem, async (out) => {
    const o = logprobsOutputs(out, a.rows, a);
    await native(() =>
      mem.device.logprobs(
        withPoison({
          logits: ptrOf(a.logits),
          dtype: a.logits.dtype,
          targets: ptrOf(a.targets),
          rows: a.rows,
          vocab: a.vocab,
          temperature: a.temperature,
          ignoreIndex: a.ignoreIndex,
          ...o.args,
          splits: logprobsTuning.splits,
        }),
      ),
    );
    return o.result;
  });
}

/**
 * gradLogits in the logits' dtype, or written in place over the logits (`inPlace`: it halves the
 * memory of a training step; each element is read, then written, by one thread).
 */
export function cudaLogprobsBackward(
  mem: CudaMemory,
  a: LogprobsBackwardArgs,
  options: { inPlace?: boolean } = {},
): Promise<Tensor<FloatDType>> {
  return withOutputs(mem, async (outputs) => {
    const out = options.inPlace ? a.logits : outputs.empty(a.logits.dtype, [a.rows, a.vocab]);
    await native(() =>
      mem.device.logprobsBackward(
        withPoison({
          logits: ptrOf(a.logits),
          dtype: a.logits.dtype,
          targets: ptrOf(a.targets),
          lse: ptrOf(a.lse),
          gradLogprobs: ptrOf(a.gradLogprobs),
          gradEntropy: optPtr(a.gradEntropy),
          entropy: optPtr(a.entropy),
          rows: a.rows,
          vocab: a.vocab,
          temperature: a.temperature,
          ignoreIndex: a.ignoreIndex,
          outGradLogits: ptrOf(out),
        }),
      ),
    );
    return out;
  });
}

export function cudaGatherProbs(mem: CudaMemory, a: GatherProbsArgs): Promise<Tensor<'f32'>> {
  const G = a.layout.numGroups;
  const total = a.probsOffsets[G];
  return withOutputs(mem, async (out) => {
    const probs = out.empty('f32', [total]);
    await native(() =>
      mem.device.gatherProbs(
        withPoison({
          logits: ptrOf(a.logits),
          dtype: a.logits.dtype,
          lse: ptrOf(a.lse),
          numTokens: a.layout.numTokens,
          vocab: a.vocabSize,
          temperature: a.temperature,
          columns: ptrOf(a.vocab.columns),
          groupTokenOffsets: a.layout.groupTokenOffsets,
          vocabOffsets: a.vocab.hostOffsets,
          probsOffsets: a.probsOffsets,
          outProbs: ptrOf(probs),
        }),
      ),
    );
    return probs;
  });
}
