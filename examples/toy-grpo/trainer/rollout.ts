/** Sampling responses from the policy and packing a batch in the package's varlen layout. */
import { type LinearPolicy, sampleToken } from './policy.js';
import { EOS, featureDim, features, type Prompt, score, type TaskConfig, VOCAB } from './task.js';

export interface Response {
  prompt: Prompt;
  tokens: number[];
  /** [tokens, dim]: the feature vector that predicted each token. */
  hidden: Float64Array;
  /** [tokens, vocab]: the logits each token was sampled from. */
  logits: Float64Array;
  reward: number;
  correct: boolean;
}

/** Decodes one response: sampled at temperature 1, or greedy when `rand` is null. */
export function decode(
  policy: LinearPolicy,
  task: TaskConfig,
  prompt: Prompt,
  rand: (() => number) | null,
): Response {
  const d = featureDim(task);
  const h = new Float64Array(d);
  const z = new Float64Array(VOCAB);
  const tokens: number[] = [];
  const hidden = new Float64Array(prompt.digits * d);
  const logits = new Float64Array(prompt.digits * VOCAB);
  let sum = 0;
  for (let pos = 0; pos < prompt.digits; pos++) {
    features(task, prompt, pos, sum, h);
    policy.logits(h, z);
    hidden.set(h, pos * d);
    logits.set(z, pos * VOCAB);
    const tok = sampleToken(z, rand);
    tokens.push(tok);
    if (tok === EOS) break;
    sum += tok;
  }
  const n = tokens.length;
  const { reward, correct } = score(prompt, tokens);
  return {
    prompt,
    tokens,
    hidden: hidden.subarray(0, n * d),
    logits: logits.subarray(0, n * VOCAB),
    reward,
    correct,
  };
}

/** A batch of groups packed along one token axis (DESIGN.md, "Packed layout"). */
export interface PackedBatch {
  numTokens: number;
  responseOffsets: Int32Array; // [R+1]
  groupOffsets: Int32Array; // [G+1]
  tokens: Int32Array; // [T]
  logits: Float32Array; // [T, V]
  hidden: Float32Array; // [T, d]
  rewards: Float32Array; // [R]
  correct: Uint8Array; // [R]
}

export function packGroups(groups: readonly Response[][], dim: number): PackedBatch {
  const responses = groups.flat();
  const responseOffsets = new Int32Array(responses.length + 1);
  responses.forEach((r, i) => {
    responseOffsets[i + 1] = responseOffsets[i] + r.tokens.length;
  });
  const groupOffsets = new Int32Array(groups.length + 1);
  groups.forEach((g, i) => {
    groupOffsets[i + 1] = groupOffsets[i] + g.length;
  });
  const numTokens = responseOffsets[responses.length];
  const tokens = new Int32Array(numTokens);
  const logits = new Float32Array(numTokens * VOCAB);
  const hidden = new Float32Array(numTokens * dim);
  const rewards = new Float32Array(responses.length);
  const correct = new Uint8Array(responses.length);
  responses.forEach((r, i) => {
    const o = responseOffsets[i];
    tokens.set(r.tokens, o);
    logits.set(r.logits, o * VOCAB);
    hidden.set(r.hidden, o * dim);
    rewards[i] = r.reward;
    correct[i] = r.correct ? 1 : 0;
  });
  return { numTokens, responseOffsets, groupOffsets, tokens, logits, hidden, rewards, correct };
}
