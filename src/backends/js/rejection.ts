/**
 * CPU reference of rolloutRejection: verl's rollout rejection sampling (rollout_corr_helper.py,
 * compute_rollout_rejection_mask and compute_rs_metrics; conventions in docs/PRESETS.md, "Rollout
 * rejection"). Float64 throughout, one rounding to f32 per stat. The other backends compute the same
 * definitions in f32; this file states them once, in the order they are evaluated.
 *
 * Per valid token (m_t ≠ 0; a masked token is never read): λ_t = clamp(ℓ_t − ℓᵛ_t, ±20) (a NaN stays
 * NaN); k1 = −λ, k2 = λ²/2, k3 = e^λ − 1 − λ.
 * Per response r with n_r valid tokens and per criterion c (statistic k, level, [lo, hi]):
 *   s_t = k_t (token); S_r = Σ_valid k_t (seq-sum), Σ_valid k_t / n_r (seq-mean), max_valid k_t
 *   (seq-max; a NaN k_t makes it NaN, as torch's max), each s rounded to f32 (as every backend holds
 *   it; verl's tensors are f32); pass = lo ≤ s ≤ hi (false for NaN).
 *   A token is rejected by c where it fails c (token level) or its response fails c (the others).
 * Outputs: mask_t = 1 where m_t ≠ 0 and no criterion rejects t, else 0. Stats (REJECTION_STATS, then
 * REJECTION_CRITERION_STATS per criterion; N_tok valid tokens, N_seq nonempty responses, R responses):
 *   maskedFraction = #rejected valid tokens / N_tok; seqMaskedFraction = #responses with one / R;
 *   per c: mean = Σ_valid s / N_tok (a response's S_r once per valid token); max, min, fractionHigh
 *   (#s > hi), fractionLow (#s < lo) over valid tokens (token) or nonempty responses (the others), the
 *   fractions over N_tok or N_seq; maskedFraction = #valid tokens c rejects / N_tok; seqMaskedFraction
 *   = #nonempty responses c rejects a token of / N_seq. NaN propagates into mean, max and min; an empty
 *   set gives NaN (0/0) and −Infinity / +Infinity for max / min.
 * Owns: everything, one response after another. Bytes: 2 f32 + 1 u8 read, 1 u8 written per token.
 */
import type { Tensor } from '../../tensor.js';
import {
  REJECTION_CRITERION_STATS,
  REJECTION_STATS,
  type RejectionStatistic,
  type RolloutRejectionArgs,
  type RolloutRejectionResult,
} from '../backend.js';
import { hostData, jsOutput, jsTensor } from './storage.js';

/** verl's SAFETY_BOUND: λ is clamped to ±20 before every statistic. */
export const REJECTION_LOG_CLAMP = 20;

function statistic(k: RejectionStatistic, l: number): number {
  if (k === 'k1') return -l;
  if (k === 'k2') return 0.5 * l * l;
  return Math.expm1(l) - l;
}

/** A statistic as the f32 backends hold it when they compare it (verl's tensors are f32). */
function f32(x: number): number {
  return Math.fround(x);
}

/** max / min that keep a NaN (torch's max and min propagate it). */
const nanMax = (a: number, b: number) => (Number.isNaN(a) || a > b ? a : b);
const nanMin = (a: number, b: number) => (Number.isNaN(a) || a < b ? a : b);

export function jsRolloutRejection(a: RolloutRejectionArgs): RolloutRejectionResult {
  const T = a.numTokens;
  const R = a.numResponses;
  const lp = hostData(a.logprobs);
  const lv = hostData(a.rolloutLogprobs);
  const m = a.mask ? hostData(a.mask) : undefined;
  const off = a.responseOffsets;
  const C = a.criteria.length;
  const out = jsOutput('u8', T);
  const kept = new Uint8Array(T);
  const lam = new Float64Array(T);

  let nTok = 0;
  let nSeq = 0;
  const sum = new Float64Array(C);
  const max = new Float64Array(C).fill(Number.NEGATIVE_INFINITY);
  const min = new Float64Array(C).fill(Number.POSITIVE_INFINITY);
  const high = new Float64Array(C);
  const low = new Float64Array(C);
  const rejTok = new Float64Array(C);
  const rejSeq = new Float64Array(C);
  let anyTok = 0;
  let anySeq = 0;

  for (let r = 0; r < R; r++) {
    const s0 = off[r];
    const s1 = off[r + 1];
    let n = 0;
    for (let t = s0; t < s1; t++) {
      const valid = m === undefined || m[t] !== 0;
      kept[t] = valid ? 1 : 0;
      if (!valid) continue;
      n++;
      const d = lp[t] - lv[t];
      lam[t] = Number.isNaN(d) ? d : Math.min(Math.max(d, -REJECTION_LOG_CLAMP), REJECTION_LOG_CLAMP);
    }
    nTok += n;
    if (n > 0) nSeq++;
    for (let c = 0; c < C; c++) {
      const { statistic: k, level, lower, upper } = a.criteria[c];
      let rejected = 0;
      if (level === 'token') {
        for (let t = s0; t < s1; t++) {
          if (m !== undefined && m[t] === 0) continue;
          const s = f32(statistic(k, lam[t]));
          sum[c] += s;
          max[c] = nanMax(max[c], s);
          min[c] = nanMin(min[c], s);
          if (s > upper) high[c]++;
          if (s < lower) low[c]++;
          if (!(s >= lower && s <= upper)) {
            rejected++;
            kept[t] = 0;
          }
        }
      } else if (n > 0) {
        let S = level === 'seq-max' ? Number.NEGATIVE_INFINITY : 0;
        for (let t = s0; t < s1; t++) {
          if (m !== undefined && m[t] === 0) continue;
          const s = statistic(k, lam[t]);
          S = level === 'seq-max' ? nanMax(S, s) : S + s;
        }
        if (level === 'seq-mean') S /= n;
        S = f32(S);
        sum[c] += n * S;
        max[c] = nanMax(max[c], S);
        min[c] = nanMin(min[c], S);
        if (S > upper) high[c]++;
        if (S < lower) low[c]++;
        if (!(S >= lower && S <= upper)) {
          rejected = n;
          for (let t = s0; t < s1; t++) kept[t] = 0;
        }
      }
      rejTok[c] += rejected;
      if (rejected > 0) rejSeq[c]++;
    }
    let any = 0;
    for (let t = s0; t < s1; t++) {
      out[t] = kept[t];
      if ((m === undefined || m[t] !== 0) && kept[t] === 0) any++;
    }
    anyTok += any;
    if (any > 0) anySeq++;
  }

  const stats = new Float32Array(REJECTION_STATS.length + C * REJECTION_CRITERION_STATS.length);
  stats[0] = anyTok / nTok;
  stats[1] = anySeq / R;
  for (let c = 0; c < C; c++) {
    const byTokens = a.criteria[c].level === 'token';
    const denom = byTokens ? nTok : nSeq;
    const base = REJECTION_STATS.length + c * REJECTION_CRITERION_STATS.length;
    stats[base] = sum[c] / nTok;
    stats[base + 1] = max[c];
    stats[base + 2] = min[c];
    stats[base + 3] = high[c] / denom;
    stats[base + 4] = low[c] / denom;
    stats[base + 5] = rejTok[c] / nTok;
    stats[base + 6] = rejSeq[c] / nSeq;
  }
  return {
    mask: jsTensor(out, [T], 'u8'),
    stats: jsTensor(stats, [stats.length], 'f32') as Tensor<'f32'>,
  };
}
