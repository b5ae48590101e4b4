/**
 * Quick start: the reward math of one GRPO step on made-up data, logprobs → advantages → THR →
 * policyLoss (and verl's rollout rejection) → logprobsBackward (the README's examples, runnable).
 *
 *   npx tsx examples/quickstart.ts [backend]      (default: auto)
 *
 * A rollout of G = 2 prompts × 4 responses, packed along one token axis; logits over a
 * 151936-word vocabulary in bf16, hidden states of width 64.
 */
import {
  type BackendChoice,
  createContext,
  encodeFloats,
  groupOffsetsFromSize,
  readPolicyStats,
  readRejectionStats,
} from 'grpo-kernels';

const V = 151_936;
const D = 64;
const lengths = [5, 3, 0, 7, 4, 6, 2, 5]; // tokens per response (an empty one is legal)
const G = 2;
const R = lengths.length;

// Deterministic made-up data.
let seed = 12345;
const rand = () => {
  seed = (Math.imul(seed, 1103515245) + 12345) >>> 0;
  return seed / 2 ** 32;
};
const responseOffsets = new Int32Array(R + 1);
for (let r = 0; r < R; r++) responseOffsets[r + 1] = responseOffsets[r] + lengths[r];
const T = responseOffsets[R];
const groupOffsets = groupOffsetsFromSize(R, R / G);
const layout = { responseOffsets, groupOffsets };
const tokens = Int32Array.from({ length: T }, () => Math.floor(rand() ** 3 * 2000)); // skewed, so groups share tokens
const logitsBits = encodeFloats(
  'bf16',
  Float32Array.from({ length: T * V }, () => 4 * (rand() - 0.5)),
) as Uint16Array;
const hiddenData = Float32Array.from({ length: T * D }, () => rand() - 0.5);
const correct = Uint8Array.from({ length: R }, (_, r) => (r % 2 === 0 ? 1 : 0));
const rewards = Float32Array.from(correct, (c) => c + 0.1 * rand());

const ctx = await createContext({ backend: (process.argv[2] ?? 'auto') as BackendChoice });
console.log(`backend: ${ctx.backend} (${ctx.device.name})`);
for (const s of ctx.skipped) console.log(`  skipped ${s.backend}: ${s.reason}`);
try {
  // 1. Log-probs of the sampled tokens, with entropy: one pass over each row of [T, V] logits.
  const logits = ctx.tensor(logitsBits, [T, V], 'bf16');
  const { logprobs, lse, entropy } = await ctx.logprobs(logits, tokens, { temperature: 0.7, entropy: true });
  console.log(
    'logprobs',
    (await logprobs.read()).slice(0, 4),
    'entropy',
    (await entropy!.read()).slice(0, 2),
  );

  // 2. Group-relative advantages with verl's conventions, broadcast to tokens.
  const { advantages, degenerate } = await ctx.advantages(rewards, {
    groupOffsets,
    estimator: 'grpo',
    preset: 'verl',
  });
  const perToken = await ctx.expandToTokens(advantages, responseOffsets);
  console.log('advantages', await advantages.read(), 'degenerate groups', await degenerate.read());

  // 3. Token hidden reward and the THR reweighting (p = +0.1: exploitation).
  const vocab = await ctx.restrictedVocab(tokens, layout);
  const probs = await ctx.gatherProbs(logits, lse, { layout, vocab, temperature: 0.7 });
  const hidden = ctx.tensor(hiddenData, [T, D]);
  const { thr, tau } = await ctx.tokenHiddenReward({ hidden, probs, vocab, layout, correct });
  const reweighted = await ctx.thrReweight({ tokenAdvantages: perToken, thr, tau, layout, correct, p: 0.1 });
  console.log('tau', await tau.read(), 'reweighted', (await reweighted.read()).slice(0, 4));

  // 4. The policy loss (PPO clip, k3 KL to a reference, entropy bonus, token-mean) and its gradient
  //    w.r.t. the log-probs and entropies; on-policy here, so the old log-probs are the current ones.
  //    The reference policy's log-probs stand in as those at temperature 1.
  const ref = await ctx.logprobs(logits, tokens, { temperature: 1 });
  const step = await ctx.policyLoss(
    {
      logprobs,
      oldLogprobs: logprobs,
      advantages: reweighted,
      refLogprobs: ref.logprobs,
      entropy,
      layout,
    },
    { loss: 'ppo', kl: { estimator: 'k3', coef: 0.01 }, entropyCoef: 0.001, preset: 'verl' },
  );
  const stats = await readPolicyStats(step.stats);
  console.log(
    'policyLoss',
    (await step.loss.read())[0],
    'clip fraction',
    stats.clipFraction,
    'KL',
    stats.klMean,
  );

  // 4b. Off-policy rollouts: verl's rejection sampling (decoupled_k3_rs) drops the responses whose mean
  //     k3 between the trainer's and the sampler's log-probs exceeds a bound (the temperature-1 log-probs
  //     stand in for the sampler's here); its mask, given to policyLoss, leaves their tokens out of the
  //     loss and of every count.
  const rejection = await ctx.rolloutRejection(
    { logprobs, rolloutLogprobs: ref.logprobs, layout },
    { criteria: 'seq_mean_k3', thresholds: 0.2 },
  );
  const kept = await ctx.policyLoss(
    { logprobs, oldLogprobs: logprobs, advantages: reweighted, layout, mask: rejection.mask },
    { loss: 'ppo', preset: 'verl' },
  );
  const { maskedFraction } = await readRejectionStats(rejection.stats);
  console.log(
    'rolloutRejection masked fraction',
    maskedFraction,
    'policyLoss over the kept tokens',
    (await kept.loss.read())[0],
  );

  // 5. Back to the logits (bf16, like the logits), entropy term included.
  const grad = await ctx.logprobsBackward(logits, tokens, lse, step.gradLogprobs, {
    gradEntropy: step.gradEntropy,
    entropy,
    temperature: 0.7,
  });
  console.log('gradLogits', grad.dtype, grad.shape);
  for (const t of [
    logits,
    logprobs,
    lse,
    entropy!,
    advantages,
    degenerate,
    perToken,
    probs,
    hidden,
    thr,
    tau,
    reweighted,
    ref.logprobs,
    ref.lse,
    step.loss,
    step.gradLogprobs,
    step.gradEntropy!,
    step.stats,
    grad,
  ])
    t.dispose();
  for (const t of [vocab.offsets, vocab.columns, vocab.tokenColumn]) t.dispose();
} finally {
  ctx.dispose();
}
