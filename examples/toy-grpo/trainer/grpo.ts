/**
 * One GRPO training run of the toy policy. Every piece of reward math goes through the package:
 * linearLogprobs (+ entropy, straight from the policy's linear head: hidden states and W, no logits),
 * advantages (grpo), expandToTokens, and for THR runs restrictedVocab, gatherProbs, tokenHiddenReward
 * and thrReweight; policyLoss gives the loss (ppo, token-mean; one update per batch, so on-policy:
 * ratio 1, the gradient −A'_t / T) with the KL to the initial policy measured (k3, coefficient 0), and
 * linearLogprobsBackward gives dLoss/dW from policyLoss's dLoss/dlogprob directly.
 */
import { type Context, readPolicyStats, type Tensor } from 'grpo-kernels';
import { LinearPolicy } from './policy.js';
import { deriveSeed, mulberry32 } from './rng.js';
import { decode, packGroups, type Response } from './rollout.js';
import { allPrompts, featureDim, type Prompt, splitPrompts, type TaskConfig, VOCAB } from './task.js';

/** The subset of a Context the trainer uses (tests may pass anything with these methods). */
export type TrainerContext = Pick<
  Context,
  | 'tensor'
  | 'linearLogprobs'
  | 'linearLogprobsBackward'
  | 'advantages'
  | 'expandToTokens'
  | 'restrictedVocab'
  | 'gatherProbs'
  | 'tokenHiddenReward'
  | 'thrReweight'
  | 'policyLoss'
>;

export interface Method {
  /** Label in tables and plots. */
  name: string;
  /** Plain GRPO, or THR reweighting (docs/THR.md, mode 'thr') with exponent p. */
  kind: 'grpo' | 'thr';
  p: number;
}

export const METHODS: readonly Method[] = [
  { name: 'GRPO', kind: 'grpo', p: 0 },
  { name: 'THR p=+0.1', kind: 'thr', p: 0.1 },
  { name: 'THR p=-0.1', kind: 'thr', p: -0.1 },
];

export interface TrainConfig {
  task: TaskConfig;
  steps: number;
  /** Prompts per step (B). */
  promptsPerStep: number;
  /** Responses per prompt (G); also the k of pass@k. */
  groupSize: number;
  learningRate: number;
  /** Evaluate on the held-out prompts every this many steps (and at the first and last). */
  evalEvery: number;
  /** pass@k samples each held-out prompt this many times (k responses each) and averages. */
  passAtKRepeats: number;
  seed: number;
}

export interface StepStats {
  step: number;
  meanReward: number;
  /** Fraction of the batch's responses that are correct. */
  accuracy: number;
  /** Mean per-token entropy of the policy on the batch (nats), from ctx.linearLogprobs. */
  entropy: number;
  /** Fraction of tokens with a nonzero advantage after reweighting (THR masks some). */
  activeTokens: number;
  /** policyLoss's clip fraction (0 here: one update per batch is on-policy). */
  clipFraction: number;
  /** Mean per-token KL (k3) of the policy to the initial one, from policyLoss's stats. */
  kl: number;
  tokens: number;
}

export interface EvalPoint {
  step: number;
  greedyAccuracy: number;
  passAtK: number;
}

export interface TrainResult {
  method: Method;
  seed: number;
  steps: StepStats[];
  evals: EvalPoint[];
  seconds: number;
}

/** Evaluates greedy accuracy and pass@k on the held-out prompts with a stream fixed by (seed, step). */
export function evaluate(
  policy: LinearPolicy,
  config: TrainConfig,
  heldOut: readonly Prompt[],
  step: number,
): EvalPoint {
  let greedy = 0;
  for (const p of heldOut) if (decode(policy, config.task, p, null).correct) greedy++;
  // The same evaluation samples for every method at a given step (common random numbers).
  const rand = mulberry32(deriveSeed(config.seed, 'eval', step));
  let pass = 0;
  for (let rep = 0; rep < config.passAtKRepeats; rep++) {
    for (const p of heldOut) {
      let any = false;
      for (let i = 0; i < config.groupSize; i++) if (decode(policy, config.task, p, rand).correct) any = true;
      if (any) pass++;
    }
  }
  return {
    step,
    greedyAccuracy: greedy / heldOut.length,
    passAtK: pass / (heldOut.length * config.passAtKRepeats),
  };
}

/** Tensors made during one step, freed together at its end (GPU memory is not garbage-collected). */
class Scope {
  readonly #tensors: Tensor[] = [];
  add<T extends Tensor>(t: T): T {
    this.#tensors.push(t);
    return t;
  }
  dispose(): void {
    for (const t of this.#tensors) t.dispose();
    this.#tensors.length = 0;
  }
}

/**
 * One policy-gradient step on a batch of groups. Returns the statistics and leaves W updated.
 */
export async function grpoStep(
  ctx: TrainerContext,
  policy: LinearPolicy,
  groups: readonly Response[][],
  method: Method,
  config: TrainConfig,
  step: number,
  /** The initial policy, for the KL (absent: the KL is not measured, NaN). */
  reference?: LinearPolicy,
): Promise<StepStats> {
  const dim = featureDim(config.task);
  const b = packGroups(groups, dim);
  const T = b.numTokens;
  const layout = { responseOffsets: b.responseOffsets, groupOffsets: b.groupOffsets };
  const scope = new Scope();
  try {
    const tokens = scope.add(ctx.tensor(b.tokens, [T], 'i32'));
    const hidden = scope.add(ctx.tensor(b.hidden, [T, dim], 'f32'));
    // The policy's head, W [vocab, dim], in f32: the log-probs come from hidden and W (no logits).
    const weight = scope.add(ctx.tensor(Float32Array.from(policy.w), [VOCAB, dim], 'f32'));
    const correct = b.correct;

    const lp = await ctx.linearLogprobs(hidden, weight, tokens, { entropy: true });
    scope.add(lp.logprobs);
    scope.add(lp.lse);
    if (lp.entropy) scope.add(lp.entropy);

    const adv = await ctx.advantages(b.rewards, { groupOffsets: b.groupOffsets, estimator: 'grpo' });
    for (const t of [adv.advantages, adv.mean, adv.std, adv.degenerate]) scope.add(t);
    let tokenAdv = scope.add(await ctx.expandToTokens(adv.advantages, b.responseOffsets));

    if (method.kind === 'thr') {
      const vocab = await ctx.restrictedVocab(tokens, layout);
      for (const t of [vocab.offsets, vocab.columns, vocab.tokenColumn]) scope.add(t);
      // gatherProbs reads the logits at each group's V* columns: the rollout's (the toy's V is small).
      const logits = scope.add(ctx.tensor(b.logits, [T, VOCAB], 'f32'));
      const probs = scope.add(await ctx.gatherProbs(logits, lp.lse, { layout, vocab }));
      const thr = await ctx.tokenHiddenReward({ hidden, probs, vocab, layout, correct });
      scope.add(thr.thr);
      scope.add(thr.tau);
      tokenAdv = scope.add(
        await ctx.thrReweight({
          tokenAdvantages: tokenAdv,
          thr: thr.thr,
          tau: thr.tau,
          layout,
          correct,
          p: method.p,
          mode: 'thr',
        }),
      );
    }

    // The loss: ppo with token-mean aggregation; the old log-probs are the current ones (one update per
    // batch), so dLoss/dlogprob_t = −A'_t / T. The KL to the initial policy is measured, not penalised.
    let refLogprobs: Tensor<'f32'> | undefined;
    if (reference !== undefined) {
      // The initial policy's log-probs from its own head (hidden and W₀, no logits).
      const refWeight = scope.add(ctx.tensor(Float32Array.from(reference.w), [VOCAB, dim], 'f32'));
      const ref = await ctx.linearLogprobs(hidden, refWeight, tokens);
      scope.add(ref.lse);
      refLogprobs = scope.add(ref.logprobs);
    }
    const pl = await ctx.policyLoss(
      { logprobs: lp.logprobs, oldLogprobs: lp.logprobs, advantages: tokenAdv, refLogprobs, layout },
      { loss: 'ppo', aggregation: 'token-mean', kl: refLogprobs ? { estimator: 'k3', coef: 0 } : undefined },
    );
    for (const t of [pl.loss, pl.gradLogprobs, pl.stats]) scope.add(t);
    const stats = await readPolicyStats(pl.stats);
    const a = await tokenAdv.read();
    let active = 0;
    for (let t = 0; t < T; t++) if (a[t] !== 0) active++;
    const grads = await ctx.linearLogprobsBackward(hidden, weight, tokens, lp.lse, pl.gradLogprobs);
    scope.add(grads.gradHidden);
    const gradWeight = scope.add(grads.gradWeight);
    policy.adamStep(Float64Array.from(await gradWeight.read()), config.learningRate);

    const entropy = lp.entropy ? await lp.entropy.read() : new Float32Array(T);
    let entropySum = 0;
    for (let t = 0; t < T; t++) entropySum += entropy[t];
    let rewardSum = 0;
    let correctCount = 0;
    for (let r = 0; r < b.rewards.length; r++) {
      rewardSum += b.rewards[r];
      correctCount += b.correct[r];
    }
    return {
      step,
      meanReward: rewardSum / b.rewards.length,
      accuracy: correctCount / b.rewards.length,
      entropy: T > 0 ? entropySum / T : 0,
      activeTokens: T > 0 ? active / T : 0,
      clipFraction: T > 0 ? stats.clipFraction : 0,
      kl: T > 0 ? stats.klMean : 0,
      tokens: T,
    };
  } finally {
    scope.dispose();
  }
}

/** A full seeded run of one method. `onStep` is called after every step (for progress bars). */
export async function train(
  ctx: TrainerContext,
  method: Method,
  config: TrainConfig,
  onStep?: (step: number) => void,
): Promise<TrainResult> {
  const t0 = performance.now();
  const { train: trainPrompts, heldOut } = splitPrompts(allPrompts(config.task));
  // Same initial weights and the same prompt/sampling stream for every method of a seed.
  const policy = new LinearPolicy(VOCAB, featureDim(config.task), deriveSeed(config.seed, 'init'));
  // The same initial weights, never updated: the reference of the KL column.
  const reference = new LinearPolicy(VOCAB, featureDim(config.task), deriveSeed(config.seed, 'init'));
  const rand = mulberry32(deriveSeed(config.seed, 'train'));
  const steps: StepStats[] = [];
  const evals: EvalPoint[] = [evaluate(policy, config, heldOut, 0)];
  for (let step = 1; step <= config.steps; step++) {
    const groups: Response[][] = [];
    for (let i = 0; i < config.promptsPerStep; i++) {
      const prompt = trainPrompts[Math.floor(rand() * trainPrompts.length)];
      const group: Response[] = [];
      for (let j = 0; j < config.groupSize; j++) group.push(decode(policy, config.task, prompt, rand));
      groups.push(group);
    }
    steps.push(await grpoStep(ctx, policy, groups, method, config, step, reference));
    if (step % config.evalEvery === 0 || step === config.steps) {
      evals.push(evaluate(policy, config, heldOut, step));
    }
    onStep?.(step);
  }
  return { method, seed: config.seed, steps, evals, seconds: (performance.now() - t0) / 1e3 };
}
