/**
 * THR family, js backend (the float64 reference; (docs/THR.md): restrictedVocab, tokenHiddenReward, thrReweight.
 * Float64 accumulation in one documented order per output; outputs rounded to f32 once, at the end.
 */
import { bf16ToF32, f16ToF32 } from '../../dtypes.js';
import type { Tensor } from '../../tensor.js';
import type {
  ThrAggregateArgs,
  ThrResult,
  ThrReweightArgs,
  ThrScoreArgs,
  TokenHiddenRewardArgs,
} from '../backend.js';
import { hostData, jsOutput, jsTensor } from './storage.js';

// ------------------------------------------------------------------------------------------------
// f16/bf16 → f64 decoding through a 65536-entry table (built on first use, exact).
const tables: { f16?: Float64Array; bf16?: Float64Array } = {};
function decodeTable(dtype: 'f16' | 'bf16'): Float64Array {
  let t = tables[dtype];
  if (t === undefined) {
    t = new Float64Array(65536);
    const dec = dtype === 'f16' ? f16ToF32 : bf16ToF32;
    for (let b = 0; b < 65536; b++) t[b] = dec(b);
    tables[dtype] = t;
  }
  return t;
}

/** Copies hidden row `row` ([d] elements) into `out` as f64, scaled by `scale` (exact when 1). */
type RowReader = (row: number, out: Float64Array, scale: number) => void;
function rowReader(hidden: Tensor<'f32' | 'f16' | 'bf16'>, d: number): RowReader {
  if (hidden.dtype === 'f32') {
    const src = hostData(hidden as Tensor<'f32'>);
    return (row, out, scale) => {
      const o = row * d;
      for (let k = 0; k < d; k++) out[k] = scale * src[o + k];
    };
  }
  const src = hostData(hidden as Tensor<'f16'>);
  const table = decodeTable(hidden.dtype);
  return (row, out, scale) => {
    const o = row * d;
    for (let k = 0; k < d; k++) out[k] = scale * table[src[o + k]];
  };
}

/**
 * tokenHiddenReward: THR_t = ±g_tᵀ M_g h_t with M_g = Σ_{u∈P} w_u g_u h_uᵀ (docs/THR.md), and
 * tau_g = beta · min over correct responses with ≥ 1 token of the mean THR of its tokens.
 *
 * Owns: every group, in order; within a group, register blocks of 4 tokens × 2 rows of M (each
 * pass over M serves 4 tokens; 8 independent chains per inner loop, none reordering a sum).
 * Shapes: hidden [Ttotal, d] f32|f16|bf16, probs packed f32 (group g: [T_g, K_g] row-major at
 * probsOffsets[g]), tokenColumn i32 [Ttotal], correct u8 [R]; out thr f32 [Ttotal], tau f32 [G].
 * Per group, in f64:
 *   1. M (K_g × d, zeroed): for each correct token u in packed order, M[v,k] += g_u[v] · (w_u·h_u[k])
 *      with g_u[v] = 1[v = col(y_u)] − q_u[v]: the one-hot scatter and −Q⁺ᵀ(w∘H⁺) in one pass.
 *      Each element accumulates its terms in packed token order (blocks keep that order).
 *   2. For each token t: U_v = Σ_k M[v,k] h_t[k] (k ascending), s_t = Σ_v g_t[v] · U_v (v ascending);
 *      U is never stored. THR_t = +s_t (correct response) or −s_t, rounded to f32.
 *   3. m_i = (Σ_t s_t in order) / |y_i| over each correct response with tokens; tau = beta·min_i m_i
 *      (min in response order, NaN-propagating), from the f64 s_t, rounded to f32.
 * Degenerate groups (plan.degenerate): THR 0, tau NaN, nothing read. The correct tokens of step 1 and
 * their weights are the API's plan (src/api/thr-plan.ts).
 * FLOPs: K_g·d·(T⁺_g + T_g) multiply-adds (2·K_g·d·(T⁺_g + T_g) FLOPs) per group, plus ≤ 3
 * padded tokens per group in step 2; the pairwise sum would take T_g·T⁺_g·(K_g + d). Bytes: hidden read twice for correct tokens, once otherwise; probs read twice (correct) or
 * once; M (8·K_g·d bytes) streamed once per block of 4 tokens. Numerics: f64 throughout; inputs
 * decoded exactly; NaN/±Inf propagate to THR and tau of their group. `a.precision` (the cuda
 * tensor-core mode) is accepted and ignored: f64 is finer than either mode.
 */
export function jsTokenHiddenReward(a: TokenHiddenRewardArgs): ThrResult {
  return jsThr(a, 'full') as ThrResult;
}

/**
 * thrAggregate: step 1 of jsTokenHiddenReward alone, M_g of every live group rounded to f32 into
 * rows [vocab offsets[g], vocab offsets[g+1]) of a [ΣK_g, d] tensor (degenerate groups' rows 0).
 */
export function jsThrAggregate(a: ThrAggregateArgs): Tensor<'f32'> {
  return jsThr({ ...a, beta: 0 }, 'aggregate') as Tensor<'f32'>;
}

/**
 * thrScore: steps 2 and 3 of jsTokenHiddenReward on the given aggregate (f32, read exactly into the
 * f64 M of each live group): the same sums as tokenHiddenReward on M rounded to f32.
 */
export function jsThrScore(a: ThrScoreArgs): ThrResult {
  return jsThr(a, 'score', hostData(a.aggregate)) as ThrResult;
}

function jsThr(
  a: TokenHiddenRewardArgs,
  mode: 'full' | 'aggregate' | 'score',
  aggregate?: Float32Array,
): ThrResult | Tensor<'f32'> {
  const { layout, dim: d, hostCorrect: correct, plan } = a;
  const { degenerate, correctStart, correctTokens: pTok, correctWeights: pW } = plan;
  const {
    numGroups: G,
    numTokens: T,
    groupTokenOffsets: gto,
    responseOffsets: ro,
    groupOffsets: go,
  } = layout;
  const probs = hostData(a.probs);
  const cols = hostData(a.vocab.tokenColumn);
  const vOff = a.vocab.hostOffsets;
  const read = rowReader(a.hidden, d);
  const thr = mode === 'aggregate' ? new Float32Array(0) : jsOutput('f32', T);
  const tau = mode === 'aggregate' ? new Float32Array(0) : jsOutput('f32', G);
  const mOut = mode === 'aggregate' ? jsOutput('f32', vOff[G] * d) : undefined;

  const h0 = new Float64Array(d);
  const h1 = new Float64Array(d);
  const h2 = new Float64Array(d);
  const h3 = new Float64Array(d);
  const hs = [h0, h1, h2, h3];
  let M = new Float64Array(0);
  let s = new Float64Array(0);

  for (let g = 0; g < G; g++) {
    const t0 = gto[g];
    const t1 = gto[g + 1];
    const Tg = t1 - t0;
    if (degenerate[g]) {
      if (mOut) mOut.fill(0, vOff[g] * d, vOff[g + 1] * d);
      else {
        thr.fill(0, t0, t1);
        tau[g] = Number.NaN;
      }
      continue;
    }
    const K = vOff[g + 1] - vOff[g];
    const pBase = a.probsOffsets[g];
    if (M.length < K * d) M = new Float64Array(K * d);
    else M.fill(0, 0, K * d);
    if (s.length < Tg) s = new Float64Array(Tg);
    // The group's correct tokens (indices into the packed axis) and their weights w_u, in packed
    // order: pTok[p0 + i], pW[p0 + i] for i < nP (the API's plan).
    const p0 = correctStart[g];
    const nP = correctStart[g + 1] - p0;

    // Step 1: M += g_u (w_u h_u)ᵀ, 4 correct tokens per sweep over M. Missing lanes of the last
    // block get wh = 0 and g = 0, so they add exact zeros.
    if (mode === 'score') {
      // M_g from the aggregate (f32, exact in f64).
      for (let e = 0; e < K * d; e++) M[e] = aggregate![vOff[g] * d + e];
    } else
      for (let b = 0; b < nP; b += 4) {
        const n = Math.min(4, nP - b);
        const q = [0, 0, 0, 0];
        const c = [-1, -1, -1, -1];
        for (let j = 0; j < 4; j++) {
          if (j < n) {
            const t = pTok[p0 + b + j];
            read(t, hs[j], pW[p0 + b + j]);
            q[j] = pBase + (t - t0) * K;
            c[j] = cols[t];
          } else hs[j].fill(0);
        }
        const [q0, q1, q2, q3] = q;
        const [c0, c1, c2, c3] = c;
        const gOf = (v: number, c: number, q: number, lane: number) =>
          lane < n ? (v === c ? 1 : 0) - probs[q + v] : 0;
        // Two rows of M at a time (independent chains); each element still adds lanes 0..3 in order.
        let v = 0;
        for (; v + 1 < K; v += 2) {
          const ga0 = gOf(v, c0, q0, 0);
          const ga1 = gOf(v, c1, q1, 1);
          const ga2 = gOf(v, c2, q2, 2);
          const ga3 = gOf(v, c3, q3, 3);
          const gb0 = gOf(v + 1, c0, q0, 0);
          const gb1 = gOf(v + 1, c1, q1, 1);
          const gb2 = gOf(v + 1, c2, q2, 2);
          const gb3 = gOf(v + 1, c3, q3, 3);
          const oa = v * d;
          const ob = oa + d;
          for (let k = 0; k < d; k++) {
            const x0 = h0[k];
            const x1 = h1[k];
            const x2 = h2[k];
            const x3 = h3[k];
            M[oa + k] = M[oa + k] + ga0 * x0 + ga1 * x1 + ga2 * x2 + ga3 * x3;
            M[ob + k] = M[ob + k] + gb0 * x0 + gb1 * x1 + gb2 * x2 + gb3 * x3;
          }
        }
        if (v < K) {
          const g0 = gOf(v, c0, q0, 0);
          const g1 = gOf(v, c1, q1, 1);
          const g2 = gOf(v, c2, q2, 2);
          const g3 = gOf(v, c3, q3, 3);
          const o = v * d;
          for (let k = 0; k < d; k++) {
            M[o + k] = M[o + k] + g0 * h0[k] + g1 * h1[k] + g2 * h2[k] + g3 * h3[k];
          }
        }
      }

    if (mOut) {
      for (let e = 0; e < K * d; e++) mOut[vOff[g] * d + e] = M[e];
      continue;
    }

    // Step 2: s_t = Σ_v g_t[v] (M h_t)[v], 4 tokens per sweep over M. Missing lanes of the last
    // block repeat its first token; their results are dropped.
    for (let b = 0; b < Tg; b += 4) {
      const n = Math.min(4, Tg - b);
      const q = [0, 0, 0, 0];
      const c = [0, 0, 0, 0];
      for (let j = 0; j < 4; j++) {
        const t = t0 + b + (j < n ? j : 0);
        if (j < n) read(t, hs[j], 1);
        else hs[j].set(h0);
        q[j] = pBase + (t - t0) * K;
        c[j] = cols[t];
      }
      const [q0, q1, q2, q3] = q;
      const [c0, c1, c2, c3] = c;
      let s0 = 0;
      let s1 = 0;
      let s2 = 0;
      let s3 = 0;
      // Two rows of M at a time: 8 independent accumulators, 6 loads per 8 multiply-adds.
      let v = 0;
      for (; v + 1 < K; v += 2) {
        const oa = v * d;
        const ob = oa + d;
        let a0 = 0;
        let a1 = 0;
        let a2 = 0;
        let a3 = 0;
        let b0 = 0;
        let b1 = 0;
        let b2 = 0;
        let b3 = 0;
        for (let k = 0; k < d; k++) {
          const ma = M[oa + k];
          const mb = M[ob + k];
          const x0 = h0[k];
          const x1 = h1[k];
          const x2 = h2[k];
          const x3 = h3[k];
          a0 += ma * x0;
          a1 += ma * x1;
          a2 += ma * x2;
          a3 += ma * x3;
          b0 += mb * x0;
          b1 += mb * x1;
          b2 += mb * x2;
          b3 += mb * x3;
        }
        s0 += ((v === c0 ? 1 : 0) - probs[q0 + v]) * a0;
        s1 += ((v === c1 ? 1 : 0) - probs[q1 + v]) * a1;
        s2 += ((v === c2 ? 1 : 0) - probs[q2 + v]) * a2;
        s3 += ((v === c3 ? 1 : 0) - probs[q3 + v]) * a3;
        s0 += ((v + 1 === c0 ? 1 : 0) - probs[q0 + v + 1]) * b0;
        s1 += ((v + 1 === c1 ? 1 : 0) - probs[q1 + v + 1]) * b1;
        s2 += ((v + 1 === c2 ? 1 : 0) - probs[q2 + v + 1]) * b2;
        s3 += ((v + 1 === c3 ? 1 : 0) - probs[q3 + v + 1]) * b3;
      }
      if (v < K) {
        const o = v * d;
        let u0 = 0;
        let u1 = 0;
        let u2 = 0;
        let u3 = 0;
        for (let k = 0; k < d; k++) {
          const m = M[o + k];
          u0 += m * h0[k];
          u1 += m * h1[k];
          u2 += m * h2[k];
          u3 += m * h3[k];
        }
        s0 += ((v === c0 ? 1 : 0) - probs[q0 + v]) * u0;
        s1 += ((v === c1 ? 1 : 0) - probs[q1 + v]) * u1;
        s2 += ((v === c2 ? 1 : 0) - probs[q2 + v]) * u2;
        s3 += ((v === c3 ? 1 : 0) - probs[q3 + v]) * u3;
      }
      s[b] = s0;
      if (n > 1) s[b + 1] = s1;
      if (n > 2) s[b + 2] = s2;
      if (n > 3) s[b + 3] = s3;
    }

    // Step 3: signs, then tau from the correct responses' mean THR.
    let minMean = Number.POSITIVE_INFINITY;
    for (let r = go[g]; r < go[g + 1]; r++) {
      const r0 = ro[r];
      const r1 = ro[r + 1];
      if (correct[r]) {
        let sum = 0;
        for (let t = r0; t < r1; t++) {
          thr[t] = s[t - t0];
          sum += s[t - t0];
        }
        if (r1 > r0) minMean = Math.min(minMean, sum / (r1 - r0));
      } else {
        for (let t = r0; t < r1; t++) thr[t] = -s[t - t0];
      }
    }
    tau[g] = a.beta * minMean;
  }
  if (mOut) return jsTensor(mOut, [vOff[G], d], 'f32');
  return { thr: jsTensor(thr, [T], 'f32'), tau: jsTensor(tau, [G], 'f32') };
}

// ------------------------------------------------------------------------------------------------
/**
 * thrReweight (docs/THR.md, "Reweighting"), per token t of group g, A = tokenAdvantages[t]:
 *   'thr' / 'thr-only': A' = 1[|THR_t| > tau_g]·(1 + p·sign(THR_t))·A  (p = 0 for 'thr-only');
 *                       with mask = false, tokens with |THR_t| ≤ tau_g keep A.
 *   'nthr': tokens of incorrect responses with s_t = −THR_t > tau_g get eta_g·A, every other token
 *           keeps A; eta_g = 2·|0.5 − rho_g| ('auto', rho_g = #correct / #responses) or fixed.
 * Degenerate groups (plan.degenerate, decided by layout and correct, not by tau) keep A; eta_g is the
 * plan's (src/api/thr-plan.ts). In a non-degenerate group, a NaN THR_t or tau_g gives NaN for every
 * token the rule could change.
 *
 * Owns: every token, group by group. Shapes: tokenAdvantages, thr f32 [Ttotal], tau f32 [G]; out f32
 * [Ttotal]. Bytes: 12·Ttotal + 4·G; ≤ 3 FLOPs per token. Numerics: the coefficient and its product
 * with A are computed in f64 and rounded to f32 once, so the result is the correctly rounded
 * value of the formula (masked tokens: the literal 0·A, so −0 for negative A).
 */
export function jsThrReweight(a: ThrReweightArgs): Tensor<'f32'> {
  const { layout, hostCorrect: correct, mode, p, mask } = a;
  const { degenerate, eta } = a.plan;
  const {
    numGroups: G,
    numTokens: T,
    groupTokenOffsets: gto,
    responseOffsets: ro,
    groupOffsets: go,
  } = layout;
  const adv = hostData(a.tokenAdvantages);
  const thr = hostData(a.thr);
  const tau = hostData(a.tau);
  const out = jsOutput('f32', T);
  for (let g = 0; g < G; g++) {
    if (degenerate[g]) {
      out.set(adv.subarray(gto[g], gto[g + 1]), gto[g]);
      continue;
    }
    const tg = tau[g];
    const tauNaN = Number.isNaN(tg);
    if (mode !== 'nthr') {
      for (let t = gto[g]; t < gto[g + 1]; t++) {
        const x = thr[t];
        const A = adv[t];
        if (tauNaN || Number.isNaN(x)) out[t] = Number.NaN;
        else if (Math.abs(x) > tg) out[t] = (1 + p * Math.sign(x)) * A;
        else out[t] = mask ? 0 * A : A;
      }
      continue;
    }
    const etaG = eta[g];
    for (let r = go[g]; r < go[g + 1]; r++) {
      const inc = !correct[r];
      for (let t = ro[r]; t < ro[r + 1]; t++) {
        const A = adv[t];
        if (!inc) out[t] = A;
        else {
          const st = -thr[t];
          if (tauNaN || Number.isNaN(st)) out[t] = Number.NaN;
          else out[t] = st > tg ? etaG * A : A;
        }
      }
    }
  }
  return jsTensor(out, [T], 'f32');
}
