/**
 * The toy task: "emit K digits whose sum equals the target". A prompt is (K, target) with
 * K ∈ [minDigits, maxDigits] and target ∈ [0, 9K]. The vocabulary is the digits 0-9 and EOS (10).
 * A response ends after K digits or at EOS (an early EOS is a short, wrong answer). The reward is
 * verifiable: 1 for K digits summing to the target; partial credit for K digits that miss by
 * less than `PARTIAL_RADIUS`; 0 otherwise. "Correct" (THR's P set, accuracy, pass@k) means reward 1.
 */

export const EOS = 10;
export const VOCAB = 11;
/** K-digit answers within this distance of the target get partial credit 0.5·(1 − |miss|/radius). */
export const PARTIAL_RADIUS = 4;

export interface TaskConfig {
  minDigits: number;
  maxDigits: number;
}

export const DEFAULT_TASK: TaskConfig = { minDigits: 2, maxDigits: 4 };

export interface Prompt {
  digits: number;
  target: number;
}

/** Every prompt of the task, in a fixed order. */
export function allPrompts(task: TaskConfig): Prompt[] {
  const out: Prompt[] = [];
  for (let k = task.minDigits; k <= task.maxDigits; k++) {
    for (let s = 0; s <= 9 * k; s++) out.push({ digits: k, target: s });
  }
  return out;
}

/** A fixed split: every fourth prompt is held out for evaluation, the rest are trained on. */
export function splitPrompts(prompts: readonly Prompt[]): { train: Prompt[]; heldOut: Prompt[] } {
  const train: Prompt[] = [];
  const heldOut: Prompt[] = [];
  prompts.forEach((p, i) => {
    (i % 4 === 2 ? heldOut : train).push(p);
  });
  return { train, heldOut };
}

/**
 * Feature vector (the policy's hidden state h_t, the input of its "LM head"): a bias, one-hot of
 * the digits still to emit (1..maxDigits), one-hot of the remaining sum target − Σ digits so far
 * (a bucket for "overshot", then 0..9·maxDigits).
 */
export function featureDim(task: TaskConfig): number {
  return 1 + task.maxDigits + (9 * task.maxDigits + 2);
}

export function features(task: TaskConfig, prompt: Prompt, position: number, sum: number, out: Float64Array) {
  out.fill(0);
  out[0] = 1;
  const left = prompt.digits - position; // 1..digits
  out[left] = 1;
  const remaining = prompt.target - sum;
  out[1 + task.maxDigits + (remaining < 0 ? 0 : 1 + remaining)] = 1;
}

export interface Score {
  reward: number;
  correct: boolean;
}

export function score(prompt: Prompt, tokens: ArrayLike<number>): Score {
  let sum = 0;
  let digits = 0;
  for (let i = 0; i < tokens.length; i++) {
    if (tokens[i] === EOS) break;
    sum += tokens[i];
    digits++;
  }
  if (digits !== prompt.digits) return { reward: 0, correct: false };
  const miss = Math.abs(sum - prompt.target);
  if (miss === 0) return { reward: 1, correct: true };
  return { reward: 0.5 * Math.max(0, 1 - miss / PARTIAL_RADIUS), correct: false };
}
