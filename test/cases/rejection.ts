/**
 * The case table of rolloutRejection (verl's rollout rejection sampling), each case with its float64
 * reference written here from verl's own code (verl/trainer/ppo/rollout_corr_helper.py @ b178a3cd:
 * compute_rollout_rejection_mask l. 156, compute_rs_metrics l. 375, verl_F.masked_sum / masked_mean),
 * option by option as verl loops, not read from src/. Run on every backend by the thin test files
 * (test/rejection.cases.test.ts: js, cpu and webgpu; test/cuda/ops-rejection-cases.test.ts: cuda).
 *
 * Decisions near a threshold. The backends compute λ and the statistics in f32, the reference in
 * float64, so a statistic within its f32 rounding of a threshold may fall on either side. The
 * reference bounds that rounding per unit (a token, or a response at the sequence levels: `magnitude`)
 * and marks such a unit ambiguous: its mask elements and its share of every count may differ (terms,
 * stol 1); every other decision must match exactly. The thresholds are the medians of the float64
 * statistics, so every case rejects and keeps a good share, and no threshold is hard-coded.
 */
import type { RejectionCriterion, RolloutRejectionOptions } from '../../src/api/rejection.js';
import {
  REJECTION_CRITERION_STATS,
  REJECTION_STATS,
  type RejectionLevel,
  type RejectionStatistic,
} from '../../src/backends/backend.js';
import { rejectionTuning as cudaTuning } from '../../src/backends/cuda/rejection.js';
import { rejectionTuning as webgpuTuning } from '../../src/backends/webgpu/rejection.js';
import type { Context } from '../../src/context.js';
import { gaussian, rng } from '../util/rng.js';
import { firstBitDiff, type Tolerance } from './check.js';
import { type Case, lazy, type Outputs, type RefCase, type Want } from './runner.js';

const U = 2 ** -24;
/**
 * - mask: exact, but for the tokens of an ambiguous unit (terms 1, stol 1).
 * - stats: counts exact but for the ambiguous units' share (terms, stol 1); mean an f32 sum of the
 *   statistics relative to the mean of their magnitudes (scale, crtol 2⁻¹⁴: sums of up to 1e5 terms)
 *   plus the mean of their own rounding bounds (terms, stol 1: λ rounded once, k3's e^λ to a few
 *   ulps, a response's f32 sum where ±20 terms cancel); max and min a single statistic (rtol 2⁻¹⁸, and its
 *   rounding bound as terms, stol 1: a mean of k1 cancels, so its error is relative to Σ|λ|).
 */
export const REJECTION_TOLERANCES: Readonly<Record<string, Tolerance>> = {
  mask: { atol: 0, rtol: 0, stol: 1 },
  stats: { atol: 0, rtol: 2 ** -18, crtol: 2 ** -14, stol: 1 },
};

// ------------------------------------------------------------------ inputs
export interface Data {
  offsets: Int32Array;
  lp: Float32Array;
  roll: Float32Array;
  mask?: Uint8Array;
}

interface DataSpec {
  seed: number;
  lengths: readonly number[];
  /** std of λ = ℓ − ℓᵛ (default 0.3). */
  spread?: number;
  /** Added to every λ (beyond 20: the clamp). */
  shift?: number;
  /** Probability that a token is masked out (0: no mask input). */
  maskP?: number;
  /** Probability that a valid token gets a NaN or ±Inf log-prob (each masked token gets one too). */
  oddP?: number;
}

export function makeData(s: DataSpec): Data {
  const r = rng(s.seed);
  const R = s.lengths.length;
  const offsets = new Int32Array(R + 1);
  for (let i = 0; i < R; i++) offsets[i + 1] = offsets[i] + s.lengths[i];
  const T = offsets[R];
  const lp = new Float32Array(T);
  const roll = new Float32Array(T);
  const mask = s.maskP ? new Uint8Array(T) : undefined;
  const odd = [Number.NaN, Number.POSITIVE_INFINITY, Number.NEGATIVE_INFINITY];
  for (let t = 0; t < T; t++) {
    lp[t] = -Math.abs(gaussian(r)) * 2 - 0.01;
    roll[t] = lp[t] - ((s.spread ?? 0.3) * gaussian(r) + (s.shift ?? 0));
    if (mask) mask[t] = r() < s.maskP! ? 0 : 1;
    const masked = mask !== undefined && mask[t] === 0;
    if (masked || (s.oddP !== undefined && r() < s.oddP)) {
      // A masked token's log-probs are never read: give it the worst values.
      const v = odd[Math.floor(r() * 3)];
      if (r() < 0.5) lp[t] = v;
      else roll[t] = v;
    }
  }
  return { offsets, lp, roll, mask };
}

// ------------------------------------------------------------------ the reference (verl's code)
const LEVEL_VERL: Record<RejectionLevel, string> = {
  token: 'token',
  'seq-sum': 'seq_sum',
  'seq-mean': 'seq_mean',
  'seq-max': 'seq_max',
};

/** verl's token statistic of log_ratio_safe = clamp(λ, ±20) (torch.clamp keeps a NaN), and a bound of its f32 rounding. */
function tokenStat(k: RejectionStatistic, l: number): [number, number] {
  const x = Number.isNaN(l) ? l : Math.min(Math.max(l, -20), 20);
  const ax = Math.abs(x);
  // λ rounded once (u·|λ| moves s by |s'|·u·|λ|), then the statistic's own few roundings.
  if (k === 'k1') return [-x, 4 * U * ax];
  if (k === 'k2') return [0.5 * x * x, 8 * U * x * x];
  const e = Math.exp(x);
  return [Math.expm1(x) - x, 16 * U * (e + 1) * ax + 8 * U * Math.abs(Math.expm1(x) - x)];
}

/** The f32 thresholds verl compares with: log of the ratio bounds (k1), or the bound. */
function thresholds(c: RejectionCriterion): [number, number] {
  if (c.statistic !== 'k1') return [Number.NEGATIVE_INFINITY, Math.fround(c.upper)];
  return [Math.fround(Math.log(c.lower ?? 1 / c.upper)), Math.fround(Math.log(c.upper))];
}

interface Reference {
  mask: Want;
  stats: Want;
}

/**
 * compute_rollout_rejection_mask and compute_rs_metrics in float64, option by option, over the packed
 * responses (verl's padded rows: the padding is the masked tokens, which verl's masked_sum zeroes).
 */
export function reference(d: Data, criteria: readonly RejectionCriterion[]): Reference {
  const R = d.offsets.length - 1;
  const T = d.lp.length;
  const valid = (t: number) => d.mask === undefined || d.mask[t] !== 0;
  const combined = new Float64Array(T).fill(1);
  const ambiguousTok = new Uint8Array(T);
  const C = criteria.length;
  const head = REJECTION_STATS.length;
  const per = REJECTION_CRITERION_STATS.length;
  const stats = new Float64Array(head + C * per);
  const scale = new Float64Array(stats.length);
  const terms = new Float64Array(stats.length);
  let nTok = 0;
  let nSeq = 0;
  for (let r = 0; r < R; r++) {
    let n = 0;
    for (let t = d.offsets[r]; t < d.offsets[r + 1]; t++) if (valid(t)) n++;
    nTok += n;
    if (n > 0) nSeq++;
  }
  criteria.forEach((c, ci) => {
    const [lo, hi] = thresholds(c);
    const near = (s: number, m: number) =>
      Number.isFinite(s) && (Math.abs(s - lo) <= m || Math.abs(s - hi) <= m);
    const keep = (s: number) => s >= lo && s <= hi;
    const base = head + ci * per;
    // Per unit: the statistic, its rounding bound, the valid tokens it stands for.
    const units: { s: number; mag: number; n: number; r: number; tokens: number[] }[] = [];
    for (let r = 0; r < R; r++) {
      const toks: number[] = [];
      for (let t = d.offsets[r]; t < d.offsets[r + 1]; t++) if (valid(t)) toks.push(t);
      const st = toks.map((t) => tokenStat(c.statistic, d.lp[t] - d.roll[t]));
      if (c.level === 'token') {
        toks.forEach((t, i) => {
          units.push({ s: st[i][0], mag: st[i][1], n: 1, r, tokens: [t] });
        });
      } else if (toks.length > 0) {
        let s: number;
        let mag: number;
        if (c.level === 'seq-max') {
          // torch's max propagates a NaN.
          s = st.reduce((a, [v]) => (Number.isNaN(a) || a > v ? a : v), Number.NEGATIVE_INFINITY);
          mag = Math.max(...st.map(([, m]) => m));
        } else {
          // masked_sum in float64; the f32 sum errs by at most ~log2(n)·u·Σ|s| in a tree (2⁻¹⁶ is loose).
          s = st.reduce((a, [v]) => a + v, 0);
          mag = st.reduce((a, [v, m]) => a + m + 2 ** -16 * Math.abs(v), 0);
          if (c.level === 'seq-mean') {
            s /= toks.length;
            mag /= toks.length;
          }
        }
        units.push({ s, mag: mag + 2 * U * Math.abs(s), n: toks.length, r, tokens: toks });
      }
    }
    // compute_rs_metrics: mean over valid tokens of the (broadcast) statistic, max / min / fractions
    // over tokens or nonempty sequences.
    let sum = 0;
    let sumAbs = 0;
    let sumMag = 0;
    let max = Number.NEGATIVE_INFINITY;
    let min = Number.POSITIVE_INFINITY;
    let maxMag = 0;
    let high = 0;
    let low = 0;
    let amb = 0;
    let ambTok = 0;
    let rejTok = 0;
    const rejSeq = new Set<number>();
    const ambSeq = new Set<number>();
    for (const u of units) {
      sum += u.n * u.s;
      sumAbs += u.n * Math.abs(u.s);
      sumMag += u.n * u.mag;
      max = Number.isNaN(max) || max > u.s ? max : u.s;
      min = Number.isNaN(min) || min < u.s ? min : u.s;
      maxMag = Math.max(maxMag, u.mag);
      if (u.s > hi) high++;
      if (u.s < lo) low++;
      const ambiguous = near(u.s, u.mag);
      if (ambiguous) {
        amb++;
        ambTok += u.n;
        ambSeq.add(u.r);
        for (const t of u.tokens) ambiguousTok[t] = 1;
      }
      if (!keep(u.s)) {
        rejTok += u.n;
        rejSeq.add(u.r);
        for (const t of u.tokens) combined[t] = 0;
      }
    }
    const denom = c.level === 'token' ? nTok : nSeq;
    stats[base] = sum / nTok;
    // The mean: the f32 sum's rounding (scale: the mean of |s|) and each statistic's own (terms).
    scale[base] = sumAbs / nTok;
    terms[base] = sumMag / nTok;
    stats[base + 1] = max;
    stats[base + 2] = min;
    // max and min are one unit's statistic: within its rounding bound (mag, an absolute error).
    terms[base + 1] = terms[base + 2] = maxMag;
    stats[base + 3] = high / denom;
    stats[base + 4] = low / denom;
    terms[base + 3] = terms[base + 4] = amb / denom;
    stats[base + 5] = rejTok / nTok;
    terms[base + 5] = ambTok / nTok;
    stats[base + 6] = rejSeq.size / nSeq;
    terms[base + 6] = ambSeq.size / nSeq;
  });
  // The final mask and verl's rollout_rs_masked_fraction / rollout_rs_seq_masked_fraction (.mean() over
  // every row, empty ones included).
  const mask = new Float64Array(T);
  const maskTerms = new Float64Array(T);
  let rejected = 0;
  let ambiguous = 0;
  let seqRejected = 0;
  let seqAmbiguous = 0;
  for (let r = 0; r < R; r++) {
    let any = false;
    let anyAmb = false;
    for (let t = d.offsets[r]; t < d.offsets[r + 1]; t++) {
      mask[t] = valid(t) ? combined[t] : 0;
      maskTerms[t] = ambiguousTok[t];
      if (valid(t) && combined[t] === 0) {
        rejected++;
        any = true;
      }
      if (ambiguousTok[t]) {
        ambiguous++;
        anyAmb = true;
      }
    }
    if (any) seqRejected++;
    if (anyAmb) seqAmbiguous++;
  }
  stats[0] = rejected / nTok;
  terms[0] = ambiguous / nTok;
  stats[1] = seqRejected / R;
  terms[1] = seqAmbiguous / R;
  return { mask: { values: mask, terms: maskTerms }, stats: { values: stats, scale, terms } };
}

/** The medians of each criterion's float64 statistic over its units: thresholds that split the batch. */
export function medianCriteria(
  d: Data,
  kinds: readonly { statistic: RejectionStatistic; level: RejectionLevel }[],
): RejectionCriterion[] {
  return kinds.map(({ statistic, level }) => {
    const probe: RejectionCriterion = { statistic, level, upper: 1e30 };
    if (statistic === 'k1') probe.lower = 1e-30;
    const values: number[] = [];
    const valid = (t: number) => d.mask === undefined || d.mask[t] !== 0;
    for (let r = 0; r + 1 < d.offsets.length; r++) {
      const st: number[] = [];
      for (let t = d.offsets[r]; t < d.offsets[r + 1]; t++)
        if (valid(t)) st.push(tokenStat(statistic, d.lp[t] - d.roll[t])[0]);
      if (level === 'token') values.push(...st);
      else if (st.length > 0) {
        const s = level === 'seq-max' ? Math.max(...st) : st.reduce((a, b) => a + b, 0);
        values.push(level === 'seq-mean' ? s / st.length : s);
      }
    }
    const finite = values.filter(Number.isFinite).sort((a, b) => a - b);
    // A cut near the p-quantile, in the middle of the widest gap between neighbouring values within
    // an eighth of the units of it: no unit sits on the threshold.
    const cut = (p: number, fallback: number) => {
      const n = finite.length;
      if (n < 2) return fallback;
      const at = Math.round(p * (n - 1));
      const w = Math.max(1, n >> 3);
      let best = -1;
      let gap = 0;
      for (let i = Math.max(0, at - w); i < Math.min(n - 1, at + w); i++)
        if (finite[i + 1] - finite[i] > gap) {
          gap = finite[i + 1] - finite[i];
          best = i;
        }
      return best < 0 ? fallback : (finite[best] + finite[best + 1]) / 2;
    };
    if (statistic !== 'k1') return { statistic, level, upper: Math.max(cut(0.5, 1), 1e-6) };
    // k1 keeps log L ≤ −λ-statistic ≤ log U: the bounds around the middle half (L, U f32 normal).
    const ratio = (x: number) => Math.exp(Math.min(Math.max(x, -80), 80));
    return { statistic, level, lower: ratio(cut(0.25, -1)), upper: ratio(cut(0.75, 1)) };
  });
}

export const ALL_KINDS: readonly { statistic: RejectionStatistic; level: RejectionLevel }[] = (
  ['token', 'seq-sum', 'seq-mean', 'seq-max'] as const
).flatMap((level) =>
  (['k1', 'k2', 'k3'] as const)
    .filter((statistic) => !(level === 'seq-max' && statistic === 'k1'))
    .map((statistic) => ({ statistic, level })),
);

// ------------------------------------------------------------------ cases
export async function runOn(ctx: Context, d: Data, options: RolloutRejectionOptions): Promise<Outputs> {
  const r = await ctx.rolloutRejection(
    { logprobs: d.lp, rolloutLogprobs: d.roll, mask: d.mask, layout: { responseOffsets: d.offsets } },
    options,
  );
  const mask = await r.mask.read();
  const stats = await r.stats.read();
  r.mask.dispose();
  r.stats.dispose();
  return { mask: { dtype: 'u8', data: mask }, stats: { dtype: 'f32', data: stats } };
}

function refCase(
  name: string,
  spec: DataSpec,
  kinds: readonly { statistic: RejectionStatistic; level: RejectionLevel }[],
  options: (criteria: RejectionCriterion[]) => RolloutRejectionOptions = (criteria) => ({ criteria }),
  fixed?: RejectionCriterion[],
): RefCase {
  const data = lazy(() => makeData(spec));
  const criteria = lazy(() => fixed ?? medianCriteria(data(), kinds));
  return {
    kind: 'reference',
    name,
    tol: REJECTION_TOLERANCES,
    run: (ctx) => runOn(ctx, data(), options(criteria())),
    want: () => {
      const w = reference(data(), criteria());
      // The near-threshold allowance must stay a small share, or the case would prove little.
      const amb = (w.mask.terms as Float64Array).reduce((a, x) => a + x, 0);
      if (amb > Math.max(2, 0.01 * w.mask.values.length))
        throw new Error(
          `${name}: ${amb} of ${w.mask.values.length} tokens lie within rounding of a threshold`,
        );
      return { mask: w.mask, stats: w.stats };
    },
  };
}

/** verl's rollout_rs / rollout_rs_threshold strings for criteria objects. */
function verlStrings(criteria: readonly RejectionCriterion[]): RolloutRejectionOptions {
  return {
    criteria: criteria.map((c) => `${LEVEL_VERL[c.level]}_${c.statistic}`).join(','),
    thresholds: criteria
      .map((c) => (c.statistic === 'k1' ? `${c.lower}_${c.upper}` : String(c.upper)))
      .join(','),
  };
}

export function lengths(seed: number, R: number, max: number, emptyP = 0.05): number[] {
  const r = rng(seed);
  return Array.from({ length: R }, () => (r() < emptyP ? 0 : 1 + Math.floor(r() * max)));
}

const single: Case[] = ALL_KINDS.map(({ statistic, level }, i) =>
  refCase(
    `${LEVEL_VERL[level]}_${statistic} alone, 40 responses of 0–300 tokens, 20% masked (NaN and ±Inf under the mask)`,
    { seed: 1100 + i, lengths: lengths(1200 + i, 40, 300), maskP: 0.2 },
    [{ statistic, level }],
  ),
);

/**
 * A response computed alone, inside 7 and inside 3000 (or 70000: webgpu's dispatch chunks) others, at
 * several positions: its sums' bits must not move. Its seq-sum and seq-mean k1 statistics, read alone
 * from the stats' max (one response), become both bounds (L = U = e^S): it passes only with the same
 * bits, and any other composition that changes a bit rejects it.
 */
function invarianceCase(): Case {
  return {
    kind: 'self',
    name: 'batch invariance: a response alone, in 7 and in 3000 others (webgpu: and 70000), at several positions, keeps its sums bit for bit',
    async run(ctx) {
      const errors: string[] = [];
      const targets = [1, 33, 1000, 4097];
      const others = (seed: number, R: number, max: number) =>
        makeData({ seed, lengths: lengths(seed + 1, R, max, 0.02), maskP: 0.1 });
      // 70000 responses only where dispatches are chunked by count (webgpu's 65535 workgroups); the
      // cuda emulator takes ~10 s a call there, and cuda's blocks and cpu's items are set by R alone.
      const batches = [
        others(5001, 6, 500),
        others(5002, 2999, 64),
        ...(ctx.backend === 'webgpu' || ctx.backend === 'js' ? [others(5003, 69999, 3)] : []),
      ];
      for (const [ti, L] of targets.entries()) {
        const tgt = makeData({ seed: 4000 + ti, lengths: [L], maskP: 0.1, spread: 0.5 });
        // At least one valid token, so that its sums exist; a valid token's log-probs are finite.
        tgt.mask![0] = 1;
        tgt.lp[0] = -1;
        tgt.roll[0] = -1.25;
        const probe: RejectionCriterion[] = [
          { statistic: 'k1', level: 'seq-sum', lower: 1e-30, upper: 1e30 },
          { statistic: 'k1', level: 'seq-mean', lower: 1e-30, upper: 1e30 },
        ];
        const alone = await runOn(ctx, tgt, { criteria: probe });
        const st = alone.stats.data as Float32Array;
        const per = REJECTION_CRITERION_STATS.length;
        const head = REJECTION_STATS.length;
        const exact = (s: number): RejectionCriterion => {
          // e^S as the ratio bound whose log rounds back to S's f32 bits (the API takes fround(log L)).
          let b = Math.exp(s);
          for (let k = 0; k < 8 && Math.fround(Math.log(b)) !== s; k++)
            b *= Math.fround(Math.log(b)) < s ? 1 + 2 ** -52 : 1 - 2 ** -52;
          return { statistic: 'k1', level: 'seq-sum', lower: b, upper: b };
        };
        const sums = [st[head + 1], st[head + per + 1]];
        const criteria: RejectionCriterion[] = [exact(sums[0]), { ...exact(sums[1]), level: 'seq-mean' }];
        if (
          criteria.some(
            (c) => Math.fround(Math.log(c.lower!)) !== (c.level === 'seq-sum' ? sums[0] : sums[1]),
          )
        ) {
          errors.push(`target ${L}: no ratio bound rounds to its sum's bits (test setup)`);
          continue;
        }
        const want = (await runOn(ctx, tgt, { criteria })).mask.data as Uint8Array;
        const valid = tgt.mask!.reduce((a, m) => a + m, 0);
        if (want.reduce((a, m) => a + m, 0) !== valid)
          errors.push(`target ${L}: alone, it fails bounds set to its own sums`);
        for (const b of batches) {
          const R = b.offsets.length - 1;
          for (const pos of [0, (R * 5) >> 3, R]) {
            const d = insert(b, tgt, pos);
            const got = (await runOn(ctx, d, { criteria })).mask.data as Uint8Array;
            const at = d.offsets[pos];
            const diff = firstBitDiff(got.subarray(at, at + L), want);
            if (diff !== -1)
              errors.push(
                `target of ${L} tokens at position ${pos} of ${R + 1}: token ${diff}'s mask differs`,
              );
          }
        }
      }
      return errors;
    },
  };
}

/** `b` with the one response of `t` inserted before its response `pos`. */
function insert(b: Data, t: Data, pos: number): Data {
  const L = t.lp.length;
  const at = b.offsets[pos];
  const cat = <A extends Float32Array | Uint8Array>(x: A, y: A, make: (n: number) => A) => {
    const o = make(x.length + L);
    o.set(x.subarray(0, at));
    o.set(y, at);
    o.set(x.subarray(at), at + L);
    return o;
  };
  const offsets = new Int32Array(b.offsets.length + 1);
  for (let r = 0; r <= pos; r++) offsets[r] = b.offsets[r];
  for (let r = pos; r < b.offsets.length; r++) offsets[r + 1] = b.offsets[r] + L;
  return {
    offsets,
    lp: cat(b.lp, t.lp, (n) => new Float32Array(n)),
    roll: cat(b.roll, t.roll, (n) => new Float32Array(n)),
    mask: cat(b.mask!, t.mask!, (n) => new Uint8Array(n)),
  };
}

/** The same call twice gives the same bits (stats included: their sums have a fixed order). */
function determinismCase(): Case {
  return {
    kind: 'self',
    name: 'deterministic: 6000 responses twice, every criterion, the same mask and stats bits',
    async run(ctx) {
      const d = makeData({ seed: 6100, lengths: lengths(6101, 6000, 40), maskP: 0.1 });
      const options = { criteria: medianCriteria(d, ALL_KINDS) };
      const a = await runOn(ctx, d, options);
      const b = await runOn(ctx, d, options);
      const errors: string[] = [];
      for (const k of ['mask', 'stats'] as const) {
        const i = firstBitDiff(a[k].data, b[k].data);
        if (i !== -1) errors.push(`${k}[${i}] differs between two runs`);
      }
      return errors;
    },
  };
}

/**
 * The GPU kernels' chunking knobs (cuda: responses per block; webgpu: responses per short chunk, long
 * responses per long chunk) move responses between blocks: no mask bit may change (the stats' order
 * of summation may). Each setting differs from the default at these sizes (R = 3000: cuda's 8 responses
 * a block, webgpu's one workgroup's worth a short chunk and one long response a long chunk).
 */
function chunkingCase(): Case {
  return {
    kind: 'self',
    name: 'chunking knobs (cuda blocks, webgpu short and long chunks) change no mask bit',
    skip: {
      js: 'no chunks',
      cpu: 'its items are fixed by the offsets (test/cpu-native/rejection.test.ts: threads)',
    },
    async run(ctx) {
      const d = makeData({ seed: 6200, lengths: lengths(6201, 3000, 300), maskP: 0.1 });
      const options = { criteria: medianCriteria(d, ALL_KINDS) };
      const base = (await runOn(ctx, d, options)).mask.data;
      const settings: [string, () => void][] =
        ctx.backend === 'cuda'
          ? [16, 24, 64].map((n) => [
              `chunkResponses ${n}`,
              () => {
                cudaTuning.chunkResponses = n;
              },
            ])
          : [
              [
                'shortChunkMultiple 2',
                () => {
                  webgpuTuning.shortChunkMultiple = 2;
                },
              ],
              [
                'shortChunkMultiple 3',
                () => {
                  webgpuTuning.shortChunkMultiple = 3;
                },
              ],
              [
                'longChunk 2',
                () => {
                  webgpuTuning.longChunk = 2;
                },
              ],
              [
                'longChunk 5',
                () => {
                  webgpuTuning.longChunk = 5;
                },
              ],
            ];
      const errors: string[] = [];
      for (const [what, set] of settings) {
        set();
        try {
          const i = firstBitDiff((await runOn(ctx, d, options)).mask.data, base);
          if (i !== -1) errors.push(`${what}: mask[${i}] differs`);
        } finally {
          cudaTuning.chunkResponses = 0;
          webgpuTuning.shortChunkMultiple = undefined;
          webgpuTuning.longChunk = undefined;
        }
      }
      return errors;
    },
  };
}

export const REJECTION_CASES: readonly Case[] = [
  ...single,
  refCase(
    "all 11 of verl's options at once, as verl's strings (rollout_rs, rollout_rs_threshold)",
    { seed: 1300, lengths: lengths(1301, 64, 200), maskP: 0.1 },
    ALL_KINDS,
    verlStrings,
  ),
  refCase(
    'k1 with one threshold U (lower 1/U), token and seq-mean, as verl strings',
    { seed: 1310, lengths: lengths(1311, 30, 100), spread: 0.05 },
    [],
    () => ({ criteria: 'token_k1,seq_mean_k1', thresholds: '1.05' }),
    [
      { statistic: 'k1', level: 'token', lower: 1 / 1.05, upper: 1.05 },
      { statistic: 'k1', level: 'seq-mean', lower: 1 / 1.05, upper: 1.05 },
    ],
  ),
  refCase(
    'NaN and ±Inf log-probs at valid tokens (2%): NaN statistics fail, ±Inf clamp to ±20',
    { seed: 1320, lengths: lengths(1321, 50, 120), maskP: 0.1, oddP: 0.02 },
    [
      { statistic: 'k3', level: 'token' },
      { statistic: 'k2', level: 'seq-max' },
      { statistic: 'k1', level: 'seq-sum' },
      { statistic: 'k3', level: 'seq-mean' },
    ],
  ),
  refCase(
    'λ beyond the ±20 clamp (shift 22): k3 at e^20',
    { seed: 1330, lengths: lengths(1331, 20, 50), spread: 3, shift: 22 },
    [
      { statistic: 'k3', level: 'token' },
      { statistic: 'k3', level: 'seq-sum' },
      { statistic: 'k1', level: 'seq-mean' },
    ],
  ),
  refCase(
    'λ near 0 (spread 1e-3): k3 without cancellation',
    { seed: 1340, lengths: lengths(1341, 30, 200), spread: 1e-3 },
    [
      { statistic: 'k3', level: 'token' },
      { statistic: 'k3', level: 'seq-mean' },
      { statistic: 'k2', level: 'seq-sum' },
    ],
  ),
  refCase(
    'one response of 100000 tokens and two of 1: long sums',
    { seed: 1350, lengths: [1, 100000, 1], maskP: 0.05 },
    [],
    undefined,
    [
      { statistic: 'k1', level: 'seq-sum', lower: Math.exp(-80), upper: Math.exp(80) },
      { statistic: 'k3', level: 'seq-mean', upper: 0.045 },
      { statistic: 'k2', level: 'seq-max', upper: 2 },
      { statistic: 'k2', level: 'token', upper: 0.02 },
    ],
  ),
  refCase(
    '20000 responses of 1–40 tokens, every criterion',
    { seed: 1360, lengths: lengths(1361, 20000, 40), maskP: 0.1 },
    ALL_KINDS,
  ),
  refCase(
    'no valid token (every token masked): NaN means and fractions, ∓Inf max and min',
    { seed: 1370, lengths: [3, 0, 5], maskP: 1 },
    [],
    undefined,
    [
      { statistic: 'k3', level: 'token', upper: 0.1 },
      { statistic: 'k1', level: 'seq-sum', lower: 0.5, upper: 2 },
    ],
  ),
  refCase('no response (T = 0, R = 0)', { seed: 1380, lengths: [] }, [], undefined, [
    { statistic: 'k2', level: 'seq-mean', upper: 0.1 },
  ]),
  refCase('empty responses only (R = 4, T = 0)', { seed: 1390, lengths: [0, 0, 0, 0] }, [], undefined, [
    { statistic: 'k2', level: 'token', upper: 0.1 },
  ]),
  invarianceCase(),
  determinismCase(),
  chunkingCase(),
];
