/**
 * Tolerances of the LM-head case tables, one entry per output, the same for every backend (cpu,
 * webgpu, cuda). The rule (test/lmhead/harness.ts): |got − want| ≤ atol + rtol·|want| + crtol·scale,
 * with `scale` from the float64 reference (test/lmhead/reference.ts's header says what it measures).
 *
 * Forward (logprobs, lse, entropy; scale = zmax + Â, the row's largest |z| plus the largest term
 * magnitude of a logit in units of z): a GPU computes each logit as an f32 sum of d products (exact
 * for f16/bf16 operands on tensor cores, 3xTF32-exact for f32 ones on cuda, one rounding each on
 * webgpu), in k-steps; its error is a few u·Â for the blocked sums (a random walk, ~√(d/32)·u·Â at
 * worst k-steps on cuda, ~√d·u·Â sequentially on webgpu), then lse/log-prob add 4u·zmax as logprobs
 * does. crtol 2⁻¹⁸ = 64u: √d·u at d = 896 is 30u, so about twice the worst random walk of these
 * tables; measured (GK_CASES_MEASURE=1) — see the numbers quoted per entry.
 * sumSquares (scale Σp²·(zmax + Â)): p² doubles p's relative error: the same crtol on its scale.
 * atol 1e-6 covers log Σ e^{z−m} of V terms ≤ 1 (log2(V)·u), as logprobs' table; rtol one f32 ulp.
 *
 * Gradients (scale ρ·S1 + u·(1 + zmax + Â)·S2, reference.ts): the first term is G rounded to the
 * input dtype before a tensor-core GEMM (cuda bf16/f16: ρ = 2⁻⁹ / 2⁻¹²; its worst case is every
 * term rounded the same way, so crtol ≥ 1 on it), the second the logit's f32 error moved into G and
 * the GEMM's own f32 sums (over V for gradHidden, over N for gradWeight: random walks of ≤ √(K/32)
 * k-steps' roundings). crtol 4: twice the worst measured.
 */
import type { Tolerance } from './harness.js';

const U = 2 ** -24;

export const FORWARD_TOL: Readonly<Record<'logprobs' | 'lse' | 'entropy' | 'sumSquares', Tolerance>> = {
  logprobs: { atol: 1e-6, rtol: 2 * U, crtol: 2 ** -18 },
  lse: { atol: 1e-6, rtol: 2 * U, crtol: 2 ** -18 },
  entropy: { atol: 1e-6, rtol: 2 * U, crtol: 2 ** -18 },
  sumSquares: { atol: 1e-8, rtol: 2 ** -19, crtol: 2 ** -18 },
};

export const BACKWARD_TOL: Readonly<Record<'gradHidden' | 'gradWeight' | 'gradBias', Tolerance>> = {
  gradHidden: { atol: 1e-30, rtol: 2 * U, crtol: 4 },
  gradWeight: { atol: 1e-30, rtol: 2 * U, crtol: 4 },
  gradBias: { atol: 1e-30, rtol: 2 * U, crtol: 4 },
};

/** Merged sharded states against the unsharded op on the same backend: f32 rounding of the states. */
export const MERGE_TOL: Readonly<Record<'logprobs' | 'lse' | 'entropy' | 'sumSquares', Tolerance>> =
  FORWARD_TOL;
