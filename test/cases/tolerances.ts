/**
 * Every tolerance of the case tables, in one place: one entry per op, input dtype and output, the same
 * for every backend (cpu, webgpu, cuda). The rule (test/cases/check.ts), for every element i:
 *
 *   |got_i − want_i| ≤ atol + rtol·|want_i| + crtol·scale_i
 *
 * with want the float64 reference written in the case table and scale_i, where an entry has crtol, the
 * magnitude the element is computed from (given by the case's reference; see each family below).
 * NaN, +Inf and −Inf must match the reference's class exactly, element by element.
 *
 * Why three terms. rtol is the output's own rounding. An f32 result formed from larger operands (a
 * log-prob is z_y − lse with |z_y|, |lse| up to 1e4 at T = 1e-3; a token's THR is a sum of terms of
 * either sign) carries an error proportional to those operands, not to itself: crtol·scale states it
 * (the standard forward bound of a sum, u·Σ|terms|). atol is what neither scales with: the rounding
 * of sums of many O(1) terms (log Σ e^{z−m} over V), and values a GPU flushes to zero (subnormals).
 *
 * How the numbers were chosen: from the error analysis stated per entry, then checked against the
 * worst element measured on cpu, webgpu (lavapipe) and the cuda emulator over every case
 * (GK_CASES_MEASURE=1 prints it), leaving about 2× between the measured worst and the bound, which is
 * flash-attention's rule (a kernel's error at most about twice that of the same computation in its own
 * precision). cpu (float64, one rounding) is far inside every bound. The "measured" figures below are
 * the worst over all three backends, as a fraction of the bound, on 2026-11-27.
 *
 * Units: u = 2⁻²⁴ (f32 unit roundoff); one f32 ulp of x is at most 2u·|x|.
 */
import type { FloatDType } from '../../src/dtypes.js';
import { EXACT, type Tolerance } from './check.js';

const U = 2 ** -24;

// ------------------------------------------------------------------ logprobs family
/**
 * logprobs forward (f32 outputs). The same for every logits dtype: f16 and bf16 logits decode exactly
 * to f32 and to f64, so input rounding is no part of the error (the reference decodes the same bits).
 * scale = max_j |x_j/T| of the row (ForwardRef.zmax); sumSquares's scale is Σp²·that.
 */
const FORWARD: Readonly<Record<'logprobs' | 'lse' | 'entropy' | 'sumSquares', Tolerance>> = {
  // z = x·(1/T) rounds twice (≤ 2u|z|), and z_y − m − log s subtracts numbers of size |z|: 4u of the
  // row's largest |z| (crtol). log s = log Σ e^{z−m} is an f32 sum of V terms ≤ 1 in a tree or
  // strided order, relative error ≲ log2(V)·u ≈ 1e-6 at V = 151936, absolute in log s (atol). Then
  // one rounding of the result (rtol, one ulp). Measured ≤ 0.39 (cuda, bf16, T = 1e-3).
  logprobs: { atol: 1e-6, rtol: 2 * U, crtol: 4 * U },
  // m + log s: the same terms. Measured ≤ 0.30 (webgpu, [300, 1000]).
  lse: { atol: 1e-6, rtol: 2 * U, crtol: 4 * U },
  // log s − Σ e^{z−m}(z−m)/s: two sums of V terms and their quotient, each term's z − m carrying
  // ≤ 4u·|z|: the same bound. Measured ≤ 0.33 (webgpu, [300, 1000]).
  entropy: { atol: 1e-6, rtol: 2 * U, crtol: 4 * U },
  // Σ e^{2(z−m)} / s²: each p_j² carries 2× p_j's error (≈ 4u·|z| relative: crtol on Σp²·max|z|), and
  // the two sums of V terms ≤ 1 add ≲ 3·log2(V)·u relative (rtol 2⁻¹⁹ ≈ 1.9e-6); atol for Σp² near 1/V.
  // Measured ≤ 0.20 (webgpu, [37, 151936] f16).
  sumSquares: { atol: 1e-8, rtol: 2 ** -19, crtol: 4 * U },
};

/**
 * logprobsBackward: gradLogits in the logits' dtype, given the reference's lse and entropy rounded to
 * f32 (so only the backward's own error counts). scale (bruteBackward) = (p·m·(|g| + |gE|·(|log p + H|
 * + 1)) + 1[v = y]·|g|)/T with m = 1 + |z| + |lse| + |H|: p = e^{z − lse} in f32 errs by a few ulps of
 * |z| + |lse| relative, and the terms (g/T)(1 − p) and (gE/T)p(log p + H) are each rounded once more.
 */
function backward(dtype: FloatDType): Readonly<Record<'gradLogits' | 'gradLogitsInPlace', Tolerance>> {
  const t: Tolerance = {
    // Values below f32's normal range: GPUs flush subnormal p to 0 (cuda's ex2.approx.ftz, WGSL may),
    // then multiply by g/T ≤ 1e4 here: 1e-30 absolute covers it, far below any meaningful gradient.
    // f16's own subnormals (below 6.1e-5) are spaced 2⁻²⁴: one such step.
    atol: dtype === 'f16' ? 2 ** -24 : 1e-30,
    // The output's rounding: the kernel rounds its f32 value, the reference its exact value, to the
    // nearest element of the dtype; a few f32 ulps apart they may land on neighbours: one ulp of the
    // output (f32 2⁻²³, f16 2⁻¹⁰, bf16 2⁻⁷ relative). Measured 0.50 for f16 and bf16 (half an ulp).
    rtol: dtype === 'f32' ? 2 * U : dtype === 'f16' ? 2 ** -10 : 2 ** -7,
    // 4u of the terms' scale (above). Measured ≤ 0.51 for f32 (webgpu, [5, 32003]).
    crtol: 4 * U,
  };
  return { gradLogits: t, gradLogitsInPlace: t };
}

/**
 * gatherProbs: e^{x/T − lse} at each group's V* columns, given the reference's lse rounded to f32.
 * scale = p·(1 + |z| + |lse|): the exponent is a difference of f32 numbers of that size.
 */
const GATHER: Readonly<Record<'probs', Tolerance>> = {
  // atol: values at the bottom of the f32 range (subnormals flushed to zero, 2⁻¹²⁶ ≈ 1.2e-38, and values
  // that pass through a subnormal intermediate); rtol: one ulp of the output; crtol: 4u
  // of the exponent's operands (as for the forward). Measured ≤ 0.46 (webgpu, V = 151936, bf16).
  probs: { atol: 1e-37, rtol: 2 * U, crtol: 4 * U },
};

// ------------------------------------------------------------------ advantages family
/**
 * advantages (f32 outputs, f32 rewards). The kernels shift each group's rewards by a pivot (so every
 * r − p is exact), then take f32 sums of the deviations: per thread a strided run, then a fixed tree
 * (webgpu, cuda), over groups of up to 70001 members here. Such a sum errs by up to about
 * (terms per thread + tree depth)·u of Σ|terms|: 2⁻¹⁸ = 64u covers it (the whole-batch statistics of
 * scale 'batch', gpg's α and reinforce_pp_baseline's whitening are the same kind of sum).
 * Scales: an advantage, the largest |advantage| of its group (of the tensor for the per-token
 * reinforce_pp_baseline): its unit (~1 for grpo, ~σ_g for dr_grpo); a mean, its group's spread σ_g.
 * The offset rewards 1e6 + 0.25·N(0, 1) put the unpivoted kernels of issue 10 at 1.7e-2 to 2.9e-1 of
 * these units, 4·10³× past the bound.
 */
const ADVANTAGES: Readonly<Record<'advantages' | 'mean' | 'std' | 'degenerate', Tolerance>> = {
  // One rounding of the result (rtol), and 64u of the group's advantage scale. Measured ≤ 0.24
  // (cuda, the 70001-member offset group).
  advantages: { atol: 0, rtol: 2 * U, crtol: 2 ** -18 },
  // rtol 2⁻²² (4 ulps): near 1e6 the mean's own f32 spacing is 0.0625, and p + d may round to the
  // neighbour of the reference's rounded μ; 64u of σ_g for the sum (crtol). Measured ≤ 0.16.
  mean: { atol: 0, rtol: 2 ** -22, crtol: 2 ** -18 },
  // Relative: sqrt of a sum of squared deviations (the same sums). Measured ≤ 0.25 (cuda, 70001).
  std: { atol: 0, rtol: 2 ** -18 },
  // Flags: exact.
  degenerate: EXACT,
};

/**
 * whiten (f32): (x − mean)·rsqrt(var + 1e-8) over up to 1M valid elements, unit variance by
 * construction: the sums' error (as for advantages) is absolute in those units, atol 2⁻¹⁹ ≈ 1.9e-6;
 * rtol 2⁻²² (4 ulps) for keepMean's outputs near 1e6. keepMean adds the mean back, whose own error
 * is an f32 sum of deviations: 64u of the values' spread σ, as advantages' `mean` (crtol 2⁻¹⁸, scale
 * σ, the population std of the valid finite values, for keepMean outputs only; 0 otherwise). Values
 * some near 0 and some near 1e6 (σ ≈ 4e5) passed the bound without it by up to 2.3× (the differential
 * fuzz, webgpu and cuda, 2026-11-28). Measured ≤ 0.33 (cuda, 3 × 4099 masked).
 */
const WHITEN: Readonly<Record<'values', Tolerance>> = {
  values: { atol: 2 ** -19, rtol: 2 ** -22, crtol: 2 ** -18 },
};

// ------------------------------------------------------------------ THR family
/**
 * tokenHiddenReward, the form the cuda backend documents for its precision modes
 * (TokenHiddenRewardOptions.precision, native/cuda/thr.cu): per token t of group g,
 * |THR_t − THR*_t| ≤ bound · max_{u∈g} |THR*_u|, and tau_g within the same bound (scale: the group's
 * largest |THR*|). Relative to the group because a token's THR sums terms of either sign over the
 * group's correct tokens: a token near 0 carries the absolute error of that sum. No rtol; a degenerate
 * group's THR 0 and tau NaN are checked exact apart (test/cases/thr.ts, the case's check).
 * The bound. cuda's default precision 'f32' (3xTF32 / 2xTF32 split products on tensor cores; TF32
 * holds f16/bf16 hidden states exactly, so the bound is the same for every dtype) promises 3e-4 at any
 * size; webgpu sums in f32, cpu in f32 chunks of 256 products added in f64. At the sizes of these tables (groups of ≤ 2400 tokens,
 * |V*| ≤ ~400, d ≤ 257) every backend is f32-grade: measured ≤ 1.1e-6 (cuda emulator, the 4 × 600
 * group), ≤ 7.3e-7 webgpu. The table holds 1e-5: an order of magnitude under what single-pass TF32
 * products give here (1e-4 to 4e-4, test/cuda/ops-thr-precision.test.ts, which also tests 'tf32' and
 * its 3e-3 bound), so a kernel that silently lost the f32 grade fails, and 9× over the worst measured.
 * stol: that bound assumes M_g does not cancel. Where its terms do (|V*| = 1 and anchors' hidden states
 * of either sign, found by the differential fuzz), any f32 sum errs by about u·Σ|terms|, however far
 * that is above max|THR*|: the standard forward bound, with terms = S̃_t, the token's sum with every term
 * made positive (test/fixtures/thr.ts thrMagnitudes; tau: |beta| · the largest mean S̃ of a correct
 * response). 4u: measured ≤ 0.46u (cpu), 0.54u (webgpu), 1.2u (cuda emulator) on the case built to
 * cancel ("M_g cancels"); S̃_t is at most 7× the group's largest |THR*| in the other cases, so there
 * the term adds ≤ 0.17 of the crtol one.
 * atol 2⁻¹²⁶: results below f32's normal range, where neither relative term can hold (peaked
 * probabilities, g ≈ 0: THR ~ 1e-42 in the differential fuzz, off by 1–3 steps of 2⁻¹⁴⁹ on cpu, 377×
 * the other terms there) and where a GPU may flush a result or an intermediate to zero.
 */
const THR: Readonly<Record<'thr' | 'tau', Tolerance>> = {
  thr: { atol: 2 ** -126, rtol: 0, crtol: 1e-5, stol: 4 * U },
  tau: { atol: 2 ** -126, rtol: 0, crtol: 1e-5, stol: 4 * U },
};

/**
 * thrReweight (f32): (1 + p·sign(THR))·A, eta·A, A or 0. The factor (or eta = 2·|0.5 − ρ|) is rounded
 * to f32 before the product: two roundings where the reference has one, ≤ 2 ulps (rtol 2⁻²² = 4u).
 * Measured ≤ 0.41 (webgpu); cpu and cuda round once (0.25).
 */
const REWEIGHT: Readonly<Record<'values', Tolerance>> = { values: { atol: 0, rtol: 2 ** -22 } };

/** Integers (V* by sort / unique, a host op) and copies: exact. */
const VOCAB: Readonly<Record<'offsets' | 'columns' | 'tokenColumn', Tolerance>> = {
  offsets: EXACT,
  columns: EXACT,
  tokenColumn: EXACT,
};

// ------------------------------------------------------------------ LM-head family
/**
 * The LM-head family (test/cases/lmhead.ts): linearLogprobs, the sharded states merged (logprobStates,
 * linearLogprobStates, mergeLogprobStates) and linearLogprobsBackward, the same for every input dtype;
 * `scale` from the float64 reference (test/lmhead/reference.ts's header says what it measures).
 *
 * Forward (logprobs, lse, entropy; scale = zmax + Â, the row's largest |z| plus the largest term
 * magnitude of a logit, in units of z): a GPU computes each logit as an f32 sum of d products (exact for
 * f16/bf16 operands on tensor cores, 3xTF32-exact to 3·2⁻²² for f32 ones on cuda, rounded once on
 * webgpu), in k-steps whose roundings add up as a random walk, a few u·Â; lse and the log-prob then
 * subtract numbers of size zmax (a few u·zmax, as logprobs' table). crtol 8u: twice the worst measured.
 * Σp² (scale Σp²·(zmax + Â)): p² doubles p's relative error; the same crtol on its own scale.
 * atol 1e-6 is log Σ e^{z−m} over V terms ≤ 1 (≈ log2(V)·u, absolute), as logprobs' table; rtol one ulp.
 * Measured worst, as a fraction of these bounds (GK_CASES_MEASURE=1, 2026-11-27, cuda on the emulator,
 * webgpu on lavapipe): logprobs 0.28 (cuda), lse 0.23 (cuda), entropy 0.30 (webgpu), Σp² 0.34
 * (webgpu); the native cpu backend (f32 FMA chains, the same bits on its AVX-512 and AVX2 builds)
 * ≤ 0.19 (entropy, 8 shards merged), js ≤ 0.12.
 *
 * Gradients (scale ρ·S1 + u·(1 + zmax + |lse| + Â)·S2): the first term is G rounded to the input dtype before
 * the tensor-core GEMMs (cuda bf16/f16: ρ = 2⁻⁸ / 2⁻¹¹, every term at most ρ off: its bound is 1·ρ·S1),
 * the second the exponent's f32 error moved into G and the GEMMs' f32 sums (|lse| ≤ zmax + log V: a flat
 * row's exponent errs by u·|lse|, not u·zmax). crtol 3: measured worst (2026-11-28) 0.48 of the bound
 * (cuda bf16 gradWeight), webgpu f32 0.35, the native cpu backend (G in f32, f32 chains) 0.32; f16
 * gradients ×2⁻¹⁴ in the input dtype 0.98 on every backend, js too (the output's own rounding in f16's
 * subnormal range, atol).
 */
const LMHEAD_FORWARD: Readonly<Record<'logprobs' | 'lse' | 'entropy' | 'sumSquares', Tolerance>> = {
  logprobs: { atol: 1e-6, rtol: 2 * U, crtol: 8 * U },
  lse: { atol: 1e-6, rtol: 2 * U, crtol: 8 * U },
  entropy: { atol: 1e-6, rtol: 2 * U, crtol: 8 * U },
  sumSquares: { atol: 1e-8, rtol: 2 ** -19, crtol: 8 * U },
};

const LMHEAD_BACKWARD: Readonly<Record<'gradHidden' | 'gradWeight' | 'gradBias', Tolerance>> = {
  gradHidden: { atol: 1e-30, rtol: 2 * U, crtol: 3 },
  gradWeight: { atol: 1e-30, rtol: 2 * U, crtol: 3 },
  gradBias: { atol: 1e-30, rtol: 2 * U, crtol: 3 },
};

/**
 * linearLogprobsBackward with gradDtype 'input': the f32 gradients (the bound above) rounded once to
 * the input dtype, which adds at most its unit roundoff ρ of the value (2⁻⁸ bf16, 2⁻¹¹ f16; f16
 * subnormals, below 2⁻¹⁴, at most 2⁻²⁵ absolute: atol); f32 inputs: a no-op, the f32 table. rtol ρ + 2u,
 * crtol 3 as above (ρ times the f32 error is inside its 2× slack). That each backend's narrow result is
 * exactly its f32 result rounded is checked bit for bit by a self-checked case of the table.
 */
function backwardInput(
  rho: number,
  atol: number,
): Readonly<Record<'gradHidden' | 'gradWeight' | 'gradBias', Tolerance>> {
  const t: Tolerance = { atol, rtol: rho + 2 * U, crtol: 3 };
  return { gradHidden: t, gradWeight: t, gradBias: t };
}

/** Every op's table, by the dtype of its floating-point input (f32 where it has only one). */
export const TOLERANCES = {
  logprobs: { f32: FORWARD, f16: FORWARD, bf16: FORWARD },
  logprobsBackward: { f32: backward('f32'), f16: backward('f16'), bf16: backward('bf16') },
  gatherProbs: { f32: GATHER, f16: GATHER, bf16: GATHER },
  advantages: { f32: ADVANTAGES },
  // A copy: exact.
  expandToTokens: { f32: { values: EXACT } },
  whiten: { f32: WHITEN },
  tokenHiddenReward: { f32: THR, f16: THR, bf16: THR },
  thrReweight: { f32: REWEIGHT },
  restrictedVocab: { i32: VOCAB },
  // The fused LM head; its forward entry also holds the sharded states merged (logits or head shards).
  linearLogprobs: { f32: LMHEAD_FORWARD, f16: LMHEAD_FORWARD, bf16: LMHEAD_FORWARD },
  linearLogprobsBackward: { f32: LMHEAD_BACKWARD, f16: LMHEAD_BACKWARD, bf16: LMHEAD_BACKWARD },
  // The same with gradDtype 'input' (gradients in the input dtype).
  linearLogprobsBackwardInput: {
    f32: LMHEAD_BACKWARD,
    f16: backwardInput(2 ** -11, 2 ** -25),
    bf16: backwardInput(2 ** -8, 1e-30),
  },
} as const satisfies Record<string, Record<string, Record<string, Tolerance>>>;
