/**
 * Tolerances of the LM-head case tables, one entry per output, the same for every backend (cpu,
 * webgpu, cuda). The rule (test/lmhead/harness.ts): |got − want| ≤ atol + rtol·|want| + crtol·scale,
 * with `scale` from the float64 reference (test/lmhead/reference.ts's header says what it measures).
 * Units: u = 2⁻²⁴, the f32 unit roundoff.
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
 * (webgpu); cpu ≤ 0.12.
 *
 * Gradients (scale ρ·S1 + u·(1 + zmax + Â)·S2): the first term is G rounded to the input dtype before
 * the tensor-core GEMMs (cuda bf16/f16: ρ = 2⁻⁸ / 2⁻¹¹, every term at most ρ off: its bound is 1·ρ·S1),
 * the second the logit's f32 error moved into G and the GEMMs' f32 sums. crtol 3: measured worst 1.40
 * (cuda bf16 gradWeight, 0.47 of the bound; webgpu f32 gradHidden 0.47), gradBias 0.36; cpu ≤ 0.03.
 */
import type { Tolerance } from './harness.js';

const U = 2 ** -24;

export const FORWARD_TOL: Readonly<Record<'logprobs' | 'lse' | 'entropy' | 'sumSquares', Tolerance>> = {
  logprobs: { atol: 1e-6, rtol: 2 * U, crtol: 8 * U },
  lse: { atol: 1e-6, rtol: 2 * U, crtol: 8 * U },
  entropy: { atol: 1e-6, rtol: 2 * U, crtol: 8 * U },
  sumSquares: { atol: 1e-8, rtol: 2 ** -19, crtol: 8 * U },
};

export const BACKWARD_TOL: Readonly<Record<'gradHidden' | 'gradWeight' | 'gradBias', Tolerance>> = {
  gradHidden: { atol: 1e-30, rtol: 2 * U, crtol: 3 },
  gradWeight: { atol: 1e-30, rtol: 2 * U, crtol: 3 },
  gradBias: { atol: 1e-30, rtol: 2 * U, crtol: 3 },
};
