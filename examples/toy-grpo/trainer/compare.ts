/**
 * The comparison the demo runs: plain GRPO, THR p = +0.1 and THR p = −0.1, each from the same
 * seeds (same initial weights, same prompt stream), averaged over `runs` seeds.
 */
import {
  METHODS,
  type Method,
  type TrainConfig,
  type TrainerContext,
  type TrainResult,
  train,
} from './grpo.js';
import { allPrompts, DEFAULT_TASK, splitPrompts } from './task.js';

export interface ComparisonOptions {
  steps?: number;
  seed?: number;
  /** Seeds per method (seed, seed+1, ...); curves are their mean. */
  runs?: number;
  /** Tiny run for tests and smoke checks: few steps, one seed. */
  quick?: boolean;
  promptsPerStep?: number;
  groupSize?: number;
  learningRate?: number;
  methods?: readonly Method[];
}

export interface MethodCurves {
  method: Method;
  /** Step numbers 1..steps and the seed-mean of the batch's mean reward at each. */
  steps: number[];
  meanReward: number[];
  accuracy: number[];
  entropy: number[];
  activeTokens: number[];
  clipFraction: number[];
  kl: number[];
  /** Evaluation steps (0, evalEvery, ...) and the seed-means of the held-out metrics. */
  evalSteps: number[];
  greedyAccuracy: number[];
  passAtK: number[];
  runs: TrainResult[];
  seconds: number;
}

export interface SummaryRow {
  method: string;
  /** Mean reward over the last tenth of training (at least 5 steps). */
  finalReward: number;
  finalGreedy: number;
  finalPassAtK: number;
  /** Mean of the held-out curves over all evaluations (area under the curve / steps). */
  meanGreedy: number;
  meanPassAtK: number;
  /** First step at which the 10-step moving average of the mean reward reaches 0.5, or null. */
  stepsToHalfReward: number | null;
  finalEntropy: number;
  /** policyLoss's clip fraction and KL to the initial policy, over the last tenth of training. */
  finalClipFraction: number;
  finalKl: number;
  seconds: number;
}

export interface ComparisonResult {
  config: TrainConfig & { runs: number };
  heldOutNote: string;
  methods: MethodCurves[];
  summary: SummaryRow[];
  seconds: number;
}

export function comparisonConfig(options: ComparisonOptions = {}): TrainConfig & { runs: number } {
  const quick = options.quick ?? false;
  return {
    task: DEFAULT_TASK,
    steps: options.steps ?? (quick ? 60 : 150),
    promptsPerStep: options.promptsPerStep ?? 16,
    groupSize: options.groupSize ?? 8,
    learningRate: options.learningRate ?? 0.05,
    evalEvery: 5,
    passAtKRepeats: quick ? 2 : 4,
    seed: options.seed ?? 1,
    runs: options.runs ?? (quick ? 1 : 8),
  };
}

function mean(xs: readonly number[]): number {
  return xs.length === 0 ? Number.NaN : xs.reduce((a, b) => a + b, 0) / xs.length;
}

/** Moving average over the last `w` points (shorter at the start). */
export function movingAverage(xs: readonly number[], w: number): number[] {
  const out: number[] = [];
  let s = 0;
  for (let i = 0; i < xs.length; i++) {
    s += xs[i];
    if (i >= w) s -= xs[i - w];
    out.push(s / Math.min(i + 1, w));
  }
  return out;
}

function aggregate(method: Method, runs: TrainResult[]): MethodCurves {
  const steps = runs[0].steps.map((s) => s.step);
  const avgStep = (f: (s: TrainResult['steps'][number]) => number) =>
    steps.map((_, i) => mean(runs.map((r) => f(r.steps[i]))));
  const evalSteps = runs[0].evals.map((e) => e.step);
  const avgEval = (f: (e: TrainResult['evals'][number]) => number) =>
    evalSteps.map((_, i) => mean(runs.map((r) => f(r.evals[i]))));
  return {
    method,
    steps,
    meanReward: avgStep((s) => s.meanReward),
    accuracy: avgStep((s) => s.accuracy),
    entropy: avgStep((s) => s.entropy),
    activeTokens: avgStep((s) => s.activeTokens),
    clipFraction: avgStep((s) => s.clipFraction),
    kl: avgStep((s) => s.kl),
    evalSteps,
    greedyAccuracy: avgEval((e) => e.greedyAccuracy),
    passAtK: avgEval((e) => e.passAtK),
    runs,
    seconds: runs.reduce((a, r) => a + r.seconds, 0),
  };
}

export function summarize(c: MethodCurves): SummaryRow {
  const tail = Math.max(5, Math.ceil(c.steps.length / 10));
  const ma = movingAverage(c.meanReward, 10);
  const half = ma.findIndex((x) => x >= 0.5);
  return {
    method: c.method.name,
    finalReward: mean(c.meanReward.slice(-tail)),
    finalGreedy: c.greedyAccuracy[c.greedyAccuracy.length - 1],
    finalPassAtK: c.passAtK[c.passAtK.length - 1],
    meanGreedy: mean(c.greedyAccuracy),
    meanPassAtK: mean(c.passAtK),
    stepsToHalfReward: half < 0 ? null : c.steps[half],
    finalEntropy: mean(c.entropy.slice(-tail)),
    finalClipFraction: mean(c.clipFraction.slice(-tail)),
    finalKl: mean(c.kl.slice(-tail)),
    seconds: c.seconds,
  };
}

/**
 * Runs every method for every seed. `onProgress(done, total, label)` is called after each step.
 */
export async function runComparison(
  ctx: TrainerContext,
  options: ComparisonOptions = {},
  onProgress?: (done: number, total: number, label: string) => void,
): Promise<ComparisonResult> {
  const t0 = performance.now();
  const config = comparisonConfig(options);
  const heldOut = splitPrompts(allPrompts(config.task)).heldOut.length;
  const methods = options.methods ?? METHODS;
  const total = methods.length * config.runs * config.steps;
  let done = 0;
  const curves: MethodCurves[] = [];
  for (const method of methods) {
    const runs: TrainResult[] = [];
    for (let r = 0; r < config.runs; r++) {
      const seed = config.seed + r;
      runs.push(
        await train(ctx, method, { ...config, seed }, () => {
          done++;
          onProgress?.(done, total, `${method.name} seed ${seed}`);
        }),
      );
    }
    curves.push(aggregate(method, runs));
  }
  return {
    config,
    heldOutNote: `${heldOut} held-out prompts (every fourth (K, target) pair, never trained on)`,
    methods: curves,
    summary: curves.map(summarize),
    seconds: (performance.now() - t0) / 1e3,
  };
}
