/**
 * The toy GRPO trainer (examples/toy-grpo/trainer): a real client of every op. Its mean reward must rise over a
 * short seeded run on each available backend (cpu always; webgpu and cuda when they start here),
 * the same seed must give the same curves on cpu, and its hand-written backprop must match finite
 * differences of the loss.
 */
import { describe, expect, it } from 'vitest';
import {
  comparisonConfig,
  decode,
  EOS,
  LinearPolicy,
  METHODS,
  packGroups,
  runComparison,
  score,
  train,
} from '../examples/toy-grpo/trainer/index.js';
import { mulberry32 } from '../examples/toy-grpo/trainer/rng.js';
import { DEFAULT_TASK, featureDim, VOCAB } from '../examples/toy-grpo/trainer/task.js';
import { type BackendName, type Context, createContext } from '../src/index.js';

const available = new Map<BackendName, string | null>();
for (const name of ['js', 'cpu', 'webgpu', 'cuda'] as const) {
  try {
    (await createContext({ backend: name })).dispose();
    available.set(name, null);
  } catch (e) {
    available.set(name, e instanceof Error ? e.message : String(e));
  }
}

const SHORT = { ...comparisonConfig({ seed: 7 }), steps: 40, runs: 1 };

const mean = (xs: number[]) => xs.reduce((a, b) => a + b, 0) / xs.length;

for (const [backend, reason] of available) {
  const title = reason === null ? `on ${backend}` : `on ${backend} (skipped: ${reason})`;
  describe.skipIf(reason !== null)(title, () => {
    for (const method of METHODS) {
      it(`${method.name}: mean reward rises over a short seeded run`, async () => {
        const ctx = await createContext({ backend });
        try {
          const r = await train(ctx, method, SHORT);
          const rewards = r.steps.map((s) => s.meanReward);
          const first = mean(rewards.slice(0, 8));
          const last = mean(rewards.slice(-8));
          expect(last, `first 8 steps ${first.toFixed(3)}, last 8 ${last.toFixed(3)}`).toBeGreaterThan(
            first + 0.1,
          );
          for (const s of r.steps) expect(Number.isFinite(s.entropy) && s.entropy > 0).toBe(true);
          // policyLoss's stats: on-policy (one update per batch), so nothing is clipped; the KL to the
          // initial policy starts at 0 and grows as the policy moves.
          for (const s of r.steps) expect(s.clipFraction).toBe(0);
          expect(r.steps[0].kl).toBeLessThan(1e-6);
          expect(r.steps[r.steps.length - 1].kl).toBeGreaterThan(r.steps[0].kl);
          // THR's mask (|THR| ≤ tau → advantage 0) must have acted on some tokens; GRPO keeps them all
          // except in groups whose rewards are all equal.
          if (method.kind === 'thr') expect(Math.min(...r.steps.map((s) => s.activeTokens))).toBeLessThan(1);
        } finally {
          ctx.dispose();
        }
      });
    }
  });
}

describe('determinism and backprop (js)', () => {
  it('the same seed gives the same curves', async () => {
    const ctx = await createContext({ backend: 'js' });
    try {
      const opts = { quick: true, steps: 8, seed: 3 };
      const a = await runComparison(ctx, opts);
      const b = await runComparison(ctx, opts);
      for (let i = 0; i < a.methods.length; i++) {
        expect(b.methods[i].meanReward).toEqual(a.methods[i].meanReward);
        expect(b.methods[i].greedyAccuracy).toEqual(a.methods[i].greedyAccuracy);
        expect(b.methods[i].passAtK).toEqual(a.methods[i].passAtK);
        expect(b.methods[i].entropy).toEqual(a.methods[i].entropy);
      }
      const c = await runComparison(ctx, { ...opts, seed: 4 });
      expect(c.methods[0].meanReward).not.toEqual(a.methods[0].meanReward);
    } finally {
      ctx.dispose();
    }
  });

  it('dLoss/dW from logprobsBackward matches finite differences of −Σ a_t·logprob_t / T', async () => {
    const ctx: Context = await createContext({ backend: 'js' });
    try {
      const task = DEFAULT_TASK;
      const d = featureDim(task);
      const policy = new LinearPolicy(VOCAB, d, 11, 0.5);
      const rand = mulberry32(5);
      const groups = [0, 1].map((i) =>
        [0, 1, 2].map(() => decode(policy, task, { digits: 3, target: 10 + i }, rand)),
      );
      const b = packGroups(groups, d);
      const T = b.numTokens;
      const a = Float64Array.from({ length: T }, (_, t) => Math.sin(t + 1));
      const loss = (w: Float64Array) => {
        let s = 0;
        for (let t = 0; t < T; t++) {
          const z = new Float64Array(VOCAB);
          for (let v = 0; v < VOCAB; v++)
            for (let j = 0; j < d; j++) z[v] += w[v * d + j] * b.hidden[t * d + j];
          const m = Math.max(...z);
          const lse = m + Math.log(z.reduce((acc, x) => acc + Math.exp(x - m), 0));
          s += -a[t] * (z[b.tokens[t]] - lse);
        }
        return s / T;
      };
      // Logits from W in float64 (the batch's stored logits are the same values rounded to f32).
      const logits = ctx.tensor(b.logits, [T, VOCAB], 'f32');
      const tokens = ctx.tensor(b.tokens, [T], 'i32');
      const lp = await ctx.logprobs(logits, tokens);
      const grad = Float32Array.from(a, (x) => -x / T);
      const gl = await ctx.logprobsBackward(logits, tokens, lp.lse, grad);
      const g = policy.gradient((await gl.read()) as Float32Array, b.hidden, T);
      const w = Float64Array.from(policy.w);
      const h = 1e-5;
      let checked = 0;
      for (let i = 0; i < w.length; i++) {
        if (g[i] === 0) continue; // features that never fire
        const save = w[i];
        w[i] = save + h;
        const up = loss(w);
        w[i] = save - h;
        const down = loss(w);
        w[i] = save;
        expect(g[i]).toBeCloseTo((up - down) / (2 * h), 5);
        checked++;
      }
      expect(checked).toBeGreaterThan(20);
    } finally {
      ctx.dispose();
    }
  });
});

describe('task', () => {
  it('scores answers: exact, partial credit, short', () => {
    const p = { digits: 3, target: 12 };
    expect(score(p, [9, 3, 0])).toEqual({ reward: 1, correct: true });
    expect(score(p, [9, 3, 2]).reward).toBeCloseTo(0.25);
    expect(score(p, [9, 3, 2]).correct).toBe(false);
    expect(score(p, [9, EOS])).toEqual({ reward: 0, correct: false });
    expect(score(p, [0, 0, 0]).reward).toBe(0);
  });

  it('packs groups in the varlen layout', () => {
    const policy = new LinearPolicy(VOCAB, featureDim(DEFAULT_TASK), 1);
    const rand = mulberry32(2);
    const groups = [[2, 3], [4]].map((ks) =>
      ks.map((k) => decode(policy, DEFAULT_TASK, { digits: k, target: 5 }, rand)),
    );
    const b = packGroups(groups, featureDim(DEFAULT_TASK));
    expect(Array.from(b.groupOffsets)).toEqual([0, 2, 3]);
    const lengths = groups.flat().map((r) => r.tokens.length);
    expect(Array.from(b.responseOffsets)).toEqual([0, lengths[0], lengths[0] + lengths[1], b.numTokens]);
    expect(b.logits.length).toBe(b.numTokens * VOCAB);
  });
});
