/**
 * Advantages on the cpu reference: time of ctx.advantages for 1k..1M responses in ragged groups
 * (sizes uniform in 1..16, mean 8.5), per estimator, inputs already on the backend (no upload).
 *
 * Bytes counted per call are the compulsory traffic: rewards read once (4R) and advantages written
 * once (4R, or 4·Ttotal per token), groupOffsets (4(G+1)), responseOffsets when used (4(R+1)), and
 * mean/std/degenerate (9G). The kernel itself reads the rewards two or three times (two-pass
 * variance), so GB/s here is a lower bound on what it moves. FLOPs are ~6 per response (+ ~6 per
 * token for reinforce_pp_baseline). Single-threaded float64.
 */
import { createContext } from '../src/context.js';
import type { Estimator } from '../src/index.js';
import { makeAdvantagesCase, raggedGroupSizes } from '../test/fixtures/advantages.js';

export interface AdvantagesBenchRow {
  estimator: Estimator;
  responses: number;
  groups: number;
  tokens: number;
  runs: number;
  medianMs: number;
  p90Ms: number;
  minMs: number;
  /** Compulsory bytes per call (see the header). */
  bytes: number;
  /** bytes / median time. */
  gbPerS: number;
  nsPerResponse: number;
  device: string;
  node: string;
  date: string;
}

export interface AdvantagesBenchOptions {
  /** Responses per batch; default [1e3, 1e4, 1e5, 1e6]. */
  sizes?: number[];
  /** Default grpo, rloo, opo, reinforce_pp_baseline. */
  estimators?: Estimator[];
  /** Time budget per (estimator, size) in ms (default 400); at least 3 timed runs after 1 warm-up. */
  budgetMs?: number;
  /** Response lengths uniform in [0, maxLength] (default 32, mean 16 tokens). */
  maxLength?: number;
  print?: boolean;
}

function quantile(sorted: number[], q: number): number {
  const i = (sorted.length - 1) * q;
  const lo = Math.floor(i);
  const hi = Math.ceil(i);
  return sorted[lo] + (sorted[hi] - sorted[lo]) * (i - lo);
}

/** Runs the suite, prints a table (unless print: false) and returns machine-readable rows. */
export async function benchAdvantages(options: AdvantagesBenchOptions = {}): Promise<AdvantagesBenchRow[]> {
  const sizes = options.sizes ?? [1_000, 10_000, 100_000, 1_000_000];
  const estimators = options.estimators ?? ['grpo', 'rloo', 'opo', 'reinforce_pp_baseline'];
  const budget = options.budgetMs ?? 400;
  const ctx = await createContext({ backend: 'js' });
  const common = {
    device: ctx.device.name,
    node: process.version,
    date: new Date().toISOString().slice(0, 10),
  };
  const rows: AdvantagesBenchRow[] = [];
  for (const R of sizes) {
    const c = makeAdvantagesCase({
      seed: R,
      groupSizes: raggedGroupSizes(R, R, 16),
      maxLength: options.maxLength ?? 32,
    });
    const rewards = ctx.tensor(c.rewards, [R], 'f32');
    for (const estimator of estimators) {
      const opts = { groupOffsets: c.groupOffsets, responseOffsets: c.responseOffsets, estimator };
      const once = async () => {
        const t0 = performance.now();
        const o = await ctx.advantages(rewards, opts);
        const ms = performance.now() - t0;
        for (const t of [o.advantages, o.mean, o.std, o.degenerate]) t.dispose();
        return ms;
      };
      await once(); // warm-up (JIT)
      const times: number[] = [];
      const start = performance.now();
      while (times.length < 3 || (performance.now() - start < budget && times.length < 200))
        times.push(await once());
      times.sort((a, b) => a - b);
      const perToken = estimator === 'reinforce_pp_baseline';
      const usesTokens = perToken || estimator === 'opo';
      const bytes =
        4 * R +
        4 * (perToken ? c.numTokens : R) +
        4 * (c.numGroups + 1) +
        (usesTokens ? 4 * (R + 1) : 0) +
        9 * c.numGroups;
      const med = quantile(times, 0.5);
      rows.push({
        estimator,
        responses: R,
        groups: c.numGroups,
        tokens: c.numTokens,
        runs: times.length,
        medianMs: med,
        p90Ms: quantile(times, 0.9),
        minMs: times[0],
        bytes,
        gbPerS: bytes / (med * 1e6),
        nsPerResponse: (med * 1e6) / R,
        ...common,
      });
    }
    rewards.dispose();
  }
  ctx.dispose();
  if (options.print !== false) {
    console.log(`advantages, ${common.device}, node ${common.node}, ${common.date}`);
    console.table(
      rows.map((r) => ({
        estimator: r.estimator,
        responses: r.responses,
        groups: r.groups,
        tokens: r.tokens,
        runs: r.runs,
        'median ms': +r.medianMs.toFixed(3),
        'p90 ms': +r.p90Ms.toFixed(3),
        'ns/response': +r.nsPerResponse.toFixed(1),
        'GB/s (compulsory)': +r.gbPerS.toFixed(2),
      })),
    );
  }
  return rows;
}
