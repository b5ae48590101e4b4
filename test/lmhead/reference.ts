/**
 * Float64 brute force for the LM-head family, written here, never the code under test: it
 * MATERIALISES the logits X = hidden · weightᵀ + bias ([N, V], f64, each dot product summed in f64),
 * takes log_softmax(X / T) row by row (max, Σ exp, gather), and the gradients as the chain rule of
 * that materialised form (G = dL/dX, then G · W, Gᵀ · H, Σ_n G). Inputs are the same bits the
 * backends get (f16/bf16 decode exactly to f64).
 *
 * Each output also gets a `scale`: the magnitude its f32 error is proportional to (the case tables'
 * crtol term, test/cases/tolerances.ts, "LM-head family"):
 * - forward outputs: zmax_n + Â_n, with zmax_n = max_v |x_nv|/T and Â_n = max_v (Σ_k |h_nk w_vk| +
 *   |b_v|)/T: a logit computed in f32 errs in proportion to the sum of the magnitudes of its terms
 *   (Â, the standard forward bound of a dot product), and lse, log-probs and entropy are differences
 *   of numbers of size zmax;
 * - gradients: ρ·S1 + u·(1 + zmax_n + |lse_n| + Â_n)·S2, with S1 = Σ |G|·|other operand| (the GEMM's own
 *   terms; ρ the unit roundoff of the dtype G is rounded to before the GEMM: 2⁻⁸ bf16, 2⁻¹¹ f16, 0 f32)
 *   and S2 = Σ Ĝ·|other operand|, Ĝ_nv = |G_nv| + (|g_n| + |gE_n|·(1 + |log p_v + H_n|))·p_v/T bounding
 *   how far G moves when its exponent z − lse moves by one unit: that exponent's f32 error is the
 *   logit's own, u·(|z| + Â), plus the roundings of the scaled logit and of lse in the kernel's units
 *   (x·(log2e/T) − lse·log2e: u·|z| and u·|lse|), u·(zmax + |lse| + Â) in all. The differential fuzz
 *   found both halves missing: V = 1 at T = 0.05 past a bound that counted zmax once (1.13×), and a
 *   flat row (zmax 0.16, lse = 4.8 ≈ log V at V = 119) past one that took 2·zmax for zmax + |lse|
 *   (1.17×, cpu, 2026-11-28): lse exceeds zmax by up to log V. With f16 inputs
 *   each term of S1 also carries f16's subnormal floor, 2⁻²⁵ over the power of two cuda scales G by
 *   (G_SUBNORMAL): entries far below the row's (or, for gradWeight, the call's) largest |G| keep an
 *   absolute accuracy there, not a relative one.
 */
import { decodeFloats, encodeFloats, type FloatDType } from '../../src/dtypes.js';
import { randomInts, randomNormal } from '../util/rng.js';

export const U = 2 ** -24;
/** Unit roundoff of the dtype a backend may round G to before its gradient GEMMs. */
export const G_ROUNDING: Record<FloatDType, number> = { f32: 0, f16: 2 ** -11, bf16: 2 ** -8 };
/**
 * f16's absolute rounding below its normal range (half its subnormal step, 2⁻²⁵), which G meets after
 * cuda scales it by a power of two (native/cuda/lmhead.cu, lm_grad_scale_kernel): per term, 2⁻²⁵ over
 * the row's scale (gradHidden, gradBias) or the call's (gradWeight). bf16 shares f32's exponent range.
 */
export const G_SUBNORMAL: Record<FloatDType, number> = { f32: 0, f16: 2 ** -25, bf16: 0 };

/**
 * lm_grad_scale_kernel's powers of two, one binade lower (B's f32 rounding may move the kernel's by
 * one): 2^(14 − e) with B < 2^e, B = |g|/T + |gE|/T·(1/e + |H|) bounding the row's |G|; 1 for B = 0.
 */
function gradScale(b: number): number {
  if (!(b > 0) || !Number.isFinite(b)) return 1;
  const e = Math.floor(Math.log2(b)) + 1;
  return 2 ** Math.max(-100, Math.min(100, 14 - e));
}

export interface HeadInputs {
  N: number;
  d: number;
  V: number;
  dtype: FloatDType;
  /** Host arrays in the dtype (what the backends get). */
  hidden: Float32Array | Uint16Array;
  weight: Float32Array | Uint16Array;
  bias?: Float32Array | Uint16Array;
  targets: Int32Array;
  /** Their exact values. */
  h: Float64Array;
  w: Float64Array;
  b?: Float64Array;
}

export interface HeadSpec {
  N: number;
  d: number;
  V: number;
  dtype: FloatDType;
  seed: number;
  bias?: boolean;
  /** Rows whose target is ignoreIndex. */
  ignored?: readonly number[];
  ignoreIndex?: number;
  /** Standard deviation of the logits (default 2). */
  logitScale?: number;
}

/** Seeded inputs: hidden ~ N(0, 1), weight ~ N(0, (s/√d)²) so logits are ~ N(0, s²), bias ~ N(0, 0.25). */
export function makeHead(spec: HeadSpec): HeadInputs {
  const { N, d, V, dtype, seed } = spec;
  const s = spec.logitScale ?? 2;
  const hidden = encodeFloats(dtype, randomNormal(seed, N * d, 1));
  const weight = encodeFloats(dtype, randomNormal(seed + 1, V * d, s / Math.sqrt(Math.max(1, d))));
  const bias = spec.bias ? encodeFloats(dtype, randomNormal(seed + 2, V, 0.5)) : undefined;
  const targets = randomInts(seed + 3, N, 0, V);
  for (const r of spec.ignored ?? []) targets[r] = spec.ignoreIndex ?? -100;
  return {
    N,
    d,
    V,
    dtype,
    hidden,
    weight,
    bias,
    targets,
    h: decodeFloats(dtype, hidden),
    w: decodeFloats(dtype, weight),
    b: bias ? decodeFloats(dtype, bias) : undefined,
  };
}

/** The materialised logits [N, V] (f64) and each logit's term magnitude Σ|h w| + |b| (max per row). */
export function logits(x: HeadInputs, rows?: readonly number[]): { X: Float64Array; Amax: Float64Array } {
  const { N, d, V, h, w, b } = x;
  const X = new Float64Array(N * V);
  const Amax = new Float64Array(N);
  for (let n = 0; n < N; n++) {
    if (rows && !rows.includes(n)) continue;
    let am = 0;
    for (let v = 0; v < V; v++) {
      let s = 0;
      let a = 0;
      for (let k = 0; k < d; k++) {
        const t = h[n * d + k] * w[v * d + k];
        s += t;
        a += Math.abs(t);
      }
      const bv = b ? b[v] : 0;
      X[n * V + v] = s + bv;
      am = Math.max(am, a + Math.abs(bv));
    }
    Amax[n] = am;
  }
  return { X, Amax };
}

export interface ForwardRef {
  logprobs: Float64Array;
  lse: Float64Array;
  entropy: Float64Array;
  sumSquares: Float64Array;
  /** zmax_n + Â_n (see the header). */
  scale: Float64Array;
  /** Σp²·(zmax + Â): sumSquares' scale. */
  sqScale: Float64Array;
  zmax: Float64Array;
  ahat: Float64Array;
}

/** log_softmax of materialised logits X [N, V] / T, row by row (ignored rows: 0). */
export function forwardRef(
  X: Float64Array,
  Amax: Float64Array,
  targets: Int32Array,
  N: number,
  V: number,
  T: number,
  ignoreIndex = -100,
): ForwardRef {
  const r: ForwardRef = {
    logprobs: new Float64Array(N),
    lse: new Float64Array(N),
    entropy: new Float64Array(N),
    sumSquares: new Float64Array(N),
    scale: new Float64Array(N),
    sqScale: new Float64Array(N),
    zmax: new Float64Array(N),
    ahat: new Float64Array(N),
  };
  for (let n = 0; n < N; n++) {
    if (targets[n] === ignoreIndex) continue;
    let m = Number.NEGATIVE_INFINITY;
    let zmax = 0;
    for (let v = 0; v < V; v++) {
      const z = X[n * V + v] / T;
      m = Math.max(m, z);
      zmax = Math.max(zmax, Math.abs(z));
    }
    let s = 0;
    for (let v = 0; v < V; v++) s += Math.exp(X[n * V + v] / T - m);
    const lse = m + Math.log(s);
    let ent = 0;
    let sq = 0;
    for (let v = 0; v < V; v++) {
      const lp = X[n * V + v] / T - lse;
      const p = Math.exp(lp);
      if (p > 0) ent -= p * lp;
      sq += p * p;
    }
    r.logprobs[n] = X[n * V + targets[n]] / T - lse;
    r.lse[n] = lse;
    r.entropy[n] = ent;
    r.sumSquares[n] = sq;
    r.zmax[n] = zmax;
    r.ahat[n] = Amax[n] / T;
    r.scale[n] = zmax + Amax[n] / T;
    r.sqScale[n] = sq * r.scale[n];
  }
  return r;
}

export interface BackwardRef {
  gradHidden: Float64Array;
  gradWeight: Float64Array;
  gradBias: Float64Array;
  hiddenScale: Float64Array;
  weightScale: Float64Array;
  biasScale: Float64Array;
}

/**
 * The gradients of L = Σ_n g_n·logprob_n + gE_n·entropy_n w.r.t. hidden, weight and bias, given the
 * forward's lse and entropy as the backends get them (rounded to f32: the backward's contract), via
 * G = dL/dX materialised.
 */
export function backwardRef(
  x: HeadInputs,
  X: Float64Array,
  fwd: ForwardRef,
  gradLogprobs: Float32Array,
  gradEntropy: Float32Array | undefined,
  T: number,
  ignoreIndex = -100,
): BackwardRef {
  const { N, d, V, h, w, dtype, targets } = x;
  const G = new Float64Array(N * V);
  const Ghat = new Float64Array(N * V);
  const eps = new Float64Array(N);
  // f16's subnormal floor per term: at the row's scale (Gc) and at the call's (Gt, the largest B).
  const floorRow = new Float64Array(N);
  let bMax = 0;
  const live = (n: number) => targets[n] !== ignoreIndex;
  const bOf = (n: number) =>
    Math.abs(gradLogprobs[n] / T) +
    (gradEntropy ? Math.abs(gradEntropy[n] / T) * (Math.exp(-1) + Math.abs(Math.fround(fwd.entropy[n]))) : 0);
  for (let n = 0; n < N; n++) if (live(n) && Number.isFinite(bOf(n))) bMax = Math.max(bMax, bOf(n));
  const floorCall = G_SUBNORMAL[dtype] / gradScale(bMax);
  for (let n = 0; n < N; n++) {
    const y = targets[n];
    if (y === ignoreIndex) continue;
    floorRow[n] = G_SUBNORMAL[dtype] / gradScale(bOf(n));
    const lse = Math.fround(fwd.lse[n]);
    const H = Math.fround(fwd.entropy[n]);
    const g = gradLogprobs[n] / T;
    const gE = gradEntropy ? gradEntropy[n] / T : 0;
    eps[n] = U * (1 + fwd.zmax[n] + Math.abs(lse) + fwd.ahat[n]);
    for (let v = 0; v < V; v++) {
      const lp = X[n * V + v] / T - lse;
      const p = Math.exp(lp);
      let gv = -g * p - (p > 0 ? gE * p * (lp + H) : 0);
      if (v === y) gv += g;
      G[n * V + v] = gv;
      Ghat[n * V + v] = Math.abs(gv) + (Math.abs(g) + Math.abs(gE) * (1 + Math.abs(lp + H))) * p;
    }
  }
  const rho = G_ROUNDING[dtype];
  const r: BackwardRef = {
    gradHidden: new Float64Array(N * d),
    gradWeight: new Float64Array(V * d),
    gradBias: new Float64Array(V),
    hiddenScale: new Float64Array(N * d),
    weightScale: new Float64Array(V * d),
    biasScale: new Float64Array(V),
  };
  for (let n = 0; n < N; n++) {
    const fr = live(n) ? floorRow[n] : 0;
    const fc = live(n) ? floorCall : 0;
    for (let v = 0; v < V; v++) {
      const gv = G[n * V + v];
      const s1 = Math.abs(gv) * rho;
      const s2 = Ghat[n * V + v] * eps[n];
      if (gv === 0 && s2 === 0) continue;
      for (let k = 0; k < d; k++) {
        const wv = w[v * d + k];
        const hv = h[n * d + k];
        r.gradHidden[n * d + k] += gv * wv;
        r.hiddenScale[n * d + k] += (s1 + s2 + fr) * Math.abs(wv);
        r.gradWeight[v * d + k] += gv * hv;
        r.weightScale[v * d + k] += (s1 + s2 + fc) * Math.abs(hv);
      }
      r.gradBias[v] += gv;
      r.biasScale[v] += s1 + s2 + fr;
    }
  }
  return r;
}

/** Seeded f32 vectors for gradLogprobs / gradEntropy. */
export function gradVector(seed: number, n: number, scale = 1): Float32Array {
  return Float32Array.from(randomNormal(seed, n, scale));
}
