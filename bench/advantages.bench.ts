/**
 * Benchmark cases of the advantages family (src/backends/js/advantages.ts, shaders/advantages.wgsl,
 * native/cuda/advantages.cu): advantages, expandToTokens, whiten.
 *
 * advantages' bytes are the compulsory traffic: rewards read once (4R) and advantages written once
 * (4R, or 4·Ttotal per token for reinforce_pp_baseline), mean/std/degenerate (9G), and the offsets
 * when the op reads them (groupOffsets 4(G+1), responseOffsets 4(R+1) for the estimators that use
 * lengths or tokens). A kernel may read the rewards two or three times (two-pass variance), so GB/s
 * is a lower bound on what it moves; the op's own unit is responses per second.
 */
import type { Estimator } from 'grpo-kernels';
import { type BenchCase, lcg, randomF32, uniformLayout } from './case.js';

/** Groups of `groupSize`, or ragged groups of 1–16 responses with lengths uniform in [0, 32]. */
export type Grouping = number | 'ragged';

/** Group offsets and response offsets of R responses (ragged: sizes 1–16, lengths 0–32, seeded). */
function raggedLayout(R: number, seed: number) {
  const rand = lcg(seed);
  const groups: number[] = [0];
  while (groups[groups.length - 1] < R)
    groups.push(Math.min(R, groups[groups.length - 1] + 1 + ((rand() * 16) | 0)));
  const responseOffsets = new Int32Array(R + 1);
  for (let r = 0; r < R; r++) responseOffsets[r + 1] = responseOffsets[r] + ((rand() * 33) | 0);
  return { groupOffsets: Int32Array.from(groups), responseOffsets };
}

export function advantagesCase(
  responses: number,
  grouping: Grouping,
  estimator: Estimator = 'grpo',
): BenchCase {
  const ragged = grouping === 'ragged';
  const perToken = estimator === 'reinforce_pp_baseline';
  const usesLengths = perToken || estimator === 'opo';
  return {
    op: 'advantages',
    variant: ragged || estimator !== 'grpo' ? `${estimator}${ragged ? ', groups of 1-16' : ''}` : undefined,
    sizes: ragged ? { R: responses } : { R: responses, n: grouping },
    dtype: 'f32',
    hostBytes: responses * (perToken ? 80 : 16),
    deviceBytes: responses * (perToken ? 80 : 16),
    largestTensorBytes: responses * (perToken ? 64 : 4),
    async setup(ctx) {
      const r = new Float32Array(responses);
      const rand = lcg(8);
      for (let i = 0; i < responses; i++) r[i] = rand() < 0.4 ? 1 : 0;
      const rewards = ctx.tensor(r, [responses], 'f32');
      const layout = ragged ? raggedLayout(responses, responses) : undefined;
      const G = layout ? layout.groupOffsets.length - 1 : Math.ceil(responses / (grouping as number));
      const T = layout ? layout.responseOffsets[responses] : 0;
      const options = layout
        ? {
            groupOffsets: layout.groupOffsets,
            responseOffsets: usesLengths ? layout.responseOffsets : undefined,
            estimator,
          }
        : { groupSize: grouping as number, estimator };
      const bytes =
        4 * responses +
        4 * (perToken ? T : responses) +
        9 * G +
        (layout ? 4 * (G + 1) + (usesLengths ? 4 * (responses + 1) : 0) : 0);
      return {
        async run() {
          const a = await ctx.advantages(rewards, options);
          return [a.advantages, a.mean, a.std, a.degenerate];
        },
        dispose() {
          rewards.dispose();
        },
        bytes,
        work: { amount: responses / 1e6, unit: 'Mresp/s' },
        sizes: layout ? { G, T } : undefined,
      };
    },
  };
}

export function expandCase(responses: number, tokens: number): BenchCase {
  const T = responses * tokens;
  return {
    op: 'expandToTokens',
    sizes: { R: responses, L: tokens },
    dtype: 'f32',
    hostBytes: T * 4,
    deviceBytes: T * 4 + responses * 8,
    largestTensorBytes: T * 4,
    async setup(ctx) {
      const values = ctx.tensor(randomF32(responses, 9), [responses], 'f32');
      const { responseOffsets } = uniformLayout(1, responses, tokens);
      return {
        async run() {
          return [await ctx.expandToTokens(values, responseOffsets)];
        },
        dispose() {
          values.dispose();
        },
        bytes: T * 4 + responses * 8,
        work: { amount: (T * 4 + responses * 8) / 1e9, unit: 'GB/s' },
      };
    },
  };
}

export function whitenCase(n: number): BenchCase {
  return {
    op: 'whiten',
    sizes: { n },
    dtype: 'f32',
    hostBytes: n * 8,
    deviceBytes: n * 8,
    largestTensorBytes: n * 4,
    async setup(ctx) {
      const values = ctx.tensor(randomF32(n, 10), [n], 'f32');
      return {
        async run() {
          return [await ctx.whiten(values)];
        },
        dispose() {
          values.dispose();
        },
        bytes: n * 8,
        work: { amount: (n * 8) / 1e9, unit: 'GB/s' },
      };
    },
  };
}
