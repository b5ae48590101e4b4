// policyLoss (POLICY.md): the surrogate (ppo, gspo, cispo, sapo, reinforce, gmpo, vespo), the KL penalty, the
// entropy bonus, rollout correction and the five aggregations, with the exact gradient dloss/dℓ_t (and
// dloss/dH_t). The definitions, in the order they are evaluated, are those of the cpu reference
// (src/backends/js/policy.ts); the webgpu twin is shaders/policy.wgsl. f32 throughout.
//   Per valid token: g_t = G·a_r·w_t·k_t·(1/W̄)·dL_t + β·G_kl·a^kl_r·dK_t, gH_t = −c_H·G_H·a^H_r,
//   token loss w_t·k_t·L_t/W̄ + β·K_t − c_H·H_t; loss = G·Σ a_r w k L / W̄ + β·G_kl·Σ a^kl K − c_H·G_H·Σ a^H H,
//   with G the aggregation's scale, a_r = 1/n_r under seq-mean-token-mean (else 1), W̄ the rollout
//   weights' mean when normalised (else 1), k_t the off-policy mask's keep factor (1 without it).
//   Off-policy mask (TRL's off_policy_mask_threshold δ, DeepSeek-V3.2): per response
//   κ_r = Σ_valid(ℓᵛ − ℓ)/max(n_r, 1), ℓᵛ = the rollout log-probs when given, else ℓ°; k_t = 1 where
//   A_t ≥ 0 or κ_r ≤ δ, 0 where κ_r > δ, NaN for a NaN κ_r: a product with the policy term's weight
//   (vespo: k_t alone; gmpo: inside Q_r), never in the KL or entropy terms, the rollout stats, W̄ or the
//   counts. KL bias correction (TRL's use_bias_correction_kl; not gspo, gmpo): after the KL's clamps and
//   straight-through choice, dK ← dK·ρ + K·dρ, then K ← K·ρ (ρ, dρ the token's: dρ = ρ inside the
//   clamp, else 0; vespo's ±20): per token, either path. Rollout mode sequence-mask (OpenRLHF's
//   seq-mask-tis, token level): per response Λ_r = Σ_valid λ_t/max(n_r, 1), λ = ℓ° − ℓᵛ, the filter
//   f_r = 1 where lower ≤ e^{clamp(Λ_r, ±c)} ≤ upper, NaN for a NaN Λ_r, else 0; w_t = e^{clamp(λ_t, ±c)}
//   where f_r = 1, else f_r (a select: an infinite raw weight of a dropped response gives 0); the rollout
//   stats count tokens (clipped: f_r ≠ 1), W̄ their mean, vespo folds them into W_r as any token weight.
//   gmpo (verl's geo_mean): per response r, n_r valid tokens,
//   log s_r = Σ Δ̂_t / (n_r + 1e-8) with Δ = ℓ − ℓ° and Δ̂ = min(Δ, ε_high) (A > 0), max(Δ, −ε_low)
//   (A < 0), 0·Δ (A = 0); Q_r = Σ w_t·k_t·A_t (the weights before 1/W̄); ρ_t = s_r = e^{log s_r} (the ratio
//   stats), L_t = −A_t·s_r, and w_t·dL_t is the response's P_t = −Q_r·s_r/(n_r + 1e-8) where t's Δ̂
//   follows Δ (A > 0 and Δ ≤ ε_high, or A < 0 and Δ ≥ −ε_low; a NaN P_t passes), else 0: its gradient
//   is G·a_r·(1/W̄)·P_t + β·G_kl·a^kl_r·dK_t (w not multiplied in again). Clipped (clipFraction): A > 0
//   and Δ outside [−ε_low, ε_high], NaN included; lower clipped: A < 0 and outside; ppoKl: mean of −Δ.
//   vespo (TRL's get_gamma_weights): per response ln W_r = clamp(Σ clamp(Δ, ±20) + Σ clamp(ln w_t, ln 1e-8,
//   20), ln 1e-8, 20), the second sum with token-level rollout weights only (w_t after truncate / mask
//   / sequence-mask, the bits pass B computes; a masked 0 gives ln 1e-8, a dropped response's n_r·ln 1e-8),
//   W_r = e^{ln W_r}, and for either sign of A
//   φ = e^{λ + k·ln W_r − λ·W_r} ((k, λ) = (k₊, λ₊) for A ≥ 0, (k₋, λ₋) else, a NaN A too), +Inf → 0
//   (TRL's f32 nan_to_num), NaN kept; L_t = −φ·A_t·ℓ_t, dL_t = −φ·A_t (φ a stop-gradient). The rollout
//   weight is not a factor of its outputs (w_t = 1 there: it is inside W_r; the rollout stats count it
//   as for every loss). ρ_t = e^{clamp(Δ, ±20)} (not logRatioClamp) for the ratio stats, ppoKl the mean
//   of −clamp(Δ, ±20); never clipped.
//   Masked tokens: outputs 0. Inputs [T] f32 (+ u8 mask), the R + 1 offsets; outputs [T] f32
//   (gradient, entropy gradient, token loss), the loss, 13 stats.
//   token_terms() is every token's arithmetic on both layouts below, so a token's outputs are the same
//   bits on either given the same scales (ops-policy-cases: "flat and warp paths"; counts are exact,
//   but normalised rollout weights divide by a float sum whose order differs between the layouts).
//
// WHICH PATH: the FLAT path when no token's outputs depend on a per-response quantity: the loss is not
//   gspo (s_r), gmpo (s_r, Q_r) or vespo (W_r), there is no off-policy mask (κ_r), the rollout correction
//   is absent or token level and not sequence-mask (no sequence weight, no Λ_r), and the aggregation is
//   not seq-mean-token-mean (so a_r = a^kl_r = a^H_r = 1). Otherwise the WARP path; a forced flat path
//   is refused for each of these (one message). The KL bias correction is per token: either path, the
//   same bits. The test hook `path` (src/backends/cuda/policy.ts policyTuning.path) forces either where
//   it applies.
// FLAT KERNEL (policy_flat_kernel<phase>): block b owns the tokens [b·TC, min((b+1)·TC, T)), TC the
//   fewest multiple of kFlatStep = 1024 that keeps ≤ kMaxChunks blocks (T alone sets it). Per step of
//   1024 tokens, thread i loads the inputs of tokens step + i + 256·j, j < 4, together (28 loads in
//   flight, coalesced), then computes and writes them in j order and adds them to its running sums;
//   then the thread counts n_seq over the block's share of responses ([b·RC, (b+1)·RC), RC = ⌈R/blocks⌉;
//   flat_sequences). A token's outputs depend on its own inputs and the global scales only: batch
//   invariant by construction. The block's partial: each thread's sums in token order, the warp's xor
//   butterfly, a fixed fold of the 8 warps; the loss's bits depend on T (the blocks), not on timing.
// WARP KERNEL (policy_tokens_kernel): block b owns the chunk of responses [b·C, min((b+1)·C, R));
//   warp w takes the chunk's responses w, w + 8, ... one after another. Per response, lane j handles
//   tokens t0 + j, t0 + j + 32, ... (positions relative to the response's start):
//   pass A: n_r, gspo's Σ(ℓ − ℓ°) or gmpo's Σ Δ̂ (the same sum), gmpo's Q_r (Σ w_t·A_t with token-level
//   weights, computed here as pass B computes them again, the same bits; at sequence and geometric
//   level Σ A_t, times w_r once Λ_r is known; with the off-policy mask two sums, A ≥ 0 and the rest,
//   Q_r = Σ₊ + k·Σ₋ once κ_r is known, the second only if the response has such a token (a ballot);
//   under sequence-mask Σ raw·A, and for a dropped response Σ 0·k·A: 0, or NaN for a non-finite A (a
//   ballot) or a NaN k·A), vespo's Σ clamp(Δ, ±20) (in gspo's sum) and, with token-level rollout,
//   Σ clamp(ln w_t, ln 1e-8, 20) (in Q_r's, w_t computed as pass B computes it, the same bits; under
//   sequence-mask the raw weights', n_r·ln 1e-8 for a dropped response, NaN for a NaN filter), the
//   rollout's Σλ (sequence, geometric, sequence-mask), the off-policy mask's Σ(ℓᵛ − ℓ) (each an xor
//   butterfly over the warp: lane order, then the butterfly, whatever the batch); then κ_r's keep factor,
//   sequence-mask's filter, vespo's ln W_r, W_r, and φ for either sign of A, once per response;
//   pass B: every valid token's surrogate, KL, entropy, rollout weight, keep factor, its outputs, and
//   its sums.
//   A response is never split: its warp owns it whole, however long (lane j strides by 32), so gspo's,
//   gmpo's and vespo's per-response sums, κ_r and Λ_r are complete after pass A's butterflies, and chunk_responses only
//   regroups whole responses into blocks (the gradient bits do not move; the loss's block sums do).
//   The lane assignment and the butterfly depend on the response's length only, so a response's
//   gradient bits depend on its own tokens and the global scales, never on its position or the batch
//   (ops-policy-cases: batch invariance). Each lane keeps running sums over its warp's responses; the
//   warp's butterfly and a fixed fold of the 8 warps give the block's partial record.
// PHASES (both paths):
//     0: scales from the host's counts (every count the aggregation needs is known to the host, no
//        normalisation): writes the outputs and the partials; the reduce kernel follows;
//     1: partials only (a count lives on the device, or the rollout weights are normalised);
//     2: every block folds phase 1's partials (the same fixed order in every block, so every block
//        gets the same bits), takes the scales from them and writes the outputs; block 0 also writes
//        the loss and the stats. No reduce kernel. Both paths keep ≤ kMaxChunks blocks, the most
//        partials a block folds.
// REDUCE KERNEL (policy_reduce_kernel, one block): thread i folds partials i, i + 256, ... in order,
//   then a fixed shared-memory tree; thread 0 writes the loss and the stats.
// Bytes: flat path, phase 0: the inputs (3–6 f32 + the u8 mask per token) read once, 1–3 f32 outputs
//   written, the offsets (and with a mask, mostly one mask byte per response) read once more for n_seq;
//   the goal case (6 inputs, no mask, 2 outputs) moves 32 bytes per token. Warp path: the inputs read
//   twice by their warp (pass B's second read mostly from L1/L2). With phases 1 + 2 instead of 0 every
//   read happens twice. FLOPs ~40 per token (3 exponentials: ρ, the rollout weight, k3); gmpo adds ~6 in
//   pass A (Δ, Δ̂, its sum, Q_r's product and sum) and, with token-level rollout, pass A's weight (a 4th
//   exponential), and one butterfly per response (Q_r); the same bytes as gspo's. vespo: ~3 FLOPs a token
//   in pass A (Δ, its clamp, the sum), with token-level rollout the weight again, its log and clamp (a 4th
//   exponential and a log) and one butterfly per response; 3 exponentials per response (W_r, φ₊, φ₋).
//   The off-policy mask: ℓᵛ read when the rollout log-probs are given without rollout correction (4
//   bytes a token, twice on the warp path), ~2 FLOPs a token in pass A (the difference, the sum), one
//   butterfly and a division per response, a select and a product per token in pass B; gmpo one more
//   butterfly (Σ₋) and a ballot. Sequence-mask: pass A's Σλ (2 FLOPs a token), one butterfly, a division
//   and an exponential per response; gmpo a ballot. The KL bias correction: 3 FLOPs a token.
// Registers (sm_90, nvcc 13.0): flat kernels 64 (the bound of 4 blocks per SM; 67–72 unbounded), no
//   spills; warp kernel 80, 80 bytes of spill stores (3 blocks per SM). With gmpo added (V13.0.88,
//   -lineinfo): warp kernel 80 registers, 60 bytes of spill stores (128 for the file before it), flat
//   kernels unchanged (no spills). With vespo (the same nvcc and flags, sm_80 and sm_90 alike): warp
//   kernel 78 registers, 68 bytes of spill stores and 28 of loads (60 and 24 before; pass A's logf of the
//   token weight is the difference), flat kernels unchanged (no spills). With the off-policy mask,
//   sequence-mask and the KL bias correction (V13.0.88, -lineinfo, sm_80 and sm_90
//   alike): warp kernel 80 registers, 60 bytes of spill stores and 24 of loads (78, 68 and 28 before);
//   flat kernels 64 (sm_80's phase-2 kernel 62 before), no spills; reduce 40 (sm_80) / 38 (sm_90).
// Latency (warp path): a warp loads each token's inputs together, and the next response's offsets and
//   first 32 tokens while the current one computes. Measured (H200, 2^20 responses of 1..31 tokens,
//   every input, before the flat path existed): 0.82 ms, 660 GB/s, 17% of copy; bound by the
//   per-response work of a warp (half its lanes idle on 16-token responses, six butterflies per
//   response), which is why the common case takes the flat path. Flat path, the same case (H200,
//   ncu): 214 µs + the reduce's 8 µs = 2.44 TB/s, 58% of copy (DRAM 51% of peak), 3.9x the warp
//   path; at 2^16 responses (T = 1.05M) 19 + 7 µs, 57% of a copy of the same 34 MB; its per-token
//   outputs matched the warp path's bits there (bench/RESULTS.md, 2026-11-27, call 3).
// Numerics: f32 sums in fixed orders, no float atomics: deterministic. 0/0 (no valid token) is NaN, as
//   the reference's f64 arithmetic gives. The two paths sum in different orders, so their loss and
//   stats may differ in the last bits (their per-token outputs only through normalised weights' 1/W̄).
#include <algorithm>

#include "policy.cuh"

namespace gk {
namespace {

constexpr unsigned kFull = 0xffffffffu;
constexpr int kThreads = 256;
constexpr int kWarps = kThreads / 32;
constexpr int kMaxChunks = 1024;
constexpr int kFlatK = 4;                      // the flat path's tokens in flight per thread
constexpr int kFlatStep = kThreads * kFlatK;  // and per block step
constexpr int kPhaseHost = 0, kPhaseStats = 1, kPhaseDevice = 2;
// vespo's clamps (TRL's get_gamma_weights): Δ and ln W_r to ≤ 20, ln W_r and the weights' logs to ≥ ln 1e-8.
constexpr float kVespoClamp = 20.f;
constexpr float kVespoLogMin = -18.420680743952367f;  // ln 1e-8

// A partial record: sums over a set of responses.
struct Part {
  float pg, kl, ent;  // Σ a_r S_r, Σ a^kl_r K_r, Σ a^H_r H_r
  float ppo_kl, kl_val, ent_val, ratio_sum, ratio_min, ratio_max, w_sum, w_sq;
  unsigned n_tok, n_seq, clip, lower, w_count, w_clipped;
};

GK_HOST_DEVICE inline Part part_empty() {
  Part p{};
  p.ratio_min = INFINITY;
  p.ratio_max = -INFINITY;
  return p;
}

// Field by field: commutative, so a butterfly leaves the same bits on every lane.
GK_HOST_DEVICE inline Part part_add(const Part& a, const Part& b) {
  Part p;
  p.pg = a.pg + b.pg;
  p.kl = a.kl + b.kl;
  p.ent = a.ent + b.ent;
  p.ppo_kl = a.ppo_kl + b.ppo_kl;
  p.kl_val = a.kl_val + b.kl_val;
  p.ent_val = a.ent_val + b.ent_val;
  p.ratio_sum = a.ratio_sum + b.ratio_sum;
  p.ratio_min = min_nan(a.ratio_min, b.ratio_min);
  p.ratio_max = max_nan(a.ratio_max, b.ratio_max);
  p.w_sum = a.w_sum + b.w_sum;
  p.w_sq = a.w_sq + b.w_sq;
  p.n_tok = a.n_tok + b.n_tok;
  p.n_seq = a.n_seq + b.n_seq;
  p.clip = a.clip + b.clip;
  p.lower = a.lower + b.lower;
  p.w_count = a.w_count + b.w_count;
  p.w_clipped = a.w_clipped + b.w_clipped;
  return p;
}

// The scalar parameters and pointers the kernels read (a POD copy of PolicyParams).
struct Dev {
  const float *lp, *old, *adv, *ref, *roll, *ent;
  const uint8_t* mask;
  const int* roff;
  int R, chunks, chunk, phase;
  int T, tok_chunk, resp_chunk;  // the flat path: tokens and responses per block
  int loss;
  float clip_low, clip_high, dual_clip, log_clamp, gspo_clamp, delta;
  int cispo_cap;
  float tau_pos, tau_neg;
  float vespo_k_pos, vespo_lam_pos, vespo_k_neg, vespo_lam_neg;
  int has_kl, kl_est, kl_st, kl_value_all, kl_token_mean, kl_bc;
  float kl_coef, kl_in_clamp, kl_value_clamp;
  int has_ent, ent_token_mean;
  float ent_coef;
  int has_rollout, level, mode, normalize;
  float r_lower, r_upper, r_log_clamp;
  int load_roll;                 // ℓᵛ is read (rollout correction, or the off-policy mask given it)
  int has_opsm, opsm_roll;       // the off-policy mask; κ_r from ℓᵛ (1) or ℓ° (0)
  float opsm_thr;
  int aggregation, seq_clamp1, norm_by_seq;
  float scale_factor, ranks;
  int has_tokens, has_sequences;
  float tokens, sequences;
  float *grad, *grad_ent, *token_loss;
  Part* parts;
  float *loss_out, *stats;
};

__device__ Part warp_part(Part p) {
  for (int o = 16; o > 0; o >>= 1) {
    Part q;
    q.pg = __shfl_xor_sync(kFull, p.pg, o);
    q.kl = __shfl_xor_sync(kFull, p.kl, o);
    q.ent = __shfl_xor_sync(kFull, p.ent, o);
    q.ppo_kl = __shfl_xor_sync(kFull, p.ppo_kl, o);
    q.kl_val = __shfl_xor_sync(kFull, p.kl_val, o);
    q.ent_val = __shfl_xor_sync(kFull, p.ent_val, o);
    q.ratio_sum = __shfl_xor_sync(kFull, p.ratio_sum, o);
    q.ratio_min = __shfl_xor_sync(kFull, p.ratio_min, o);
    q.ratio_max = __shfl_xor_sync(kFull, p.ratio_max, o);
    q.w_sum = __shfl_xor_sync(kFull, p.w_sum, o);
    q.w_sq = __shfl_xor_sync(kFull, p.w_sq, o);
    q.n_tok = __shfl_xor_sync(kFull, p.n_tok, o);
    q.n_seq = __shfl_xor_sync(kFull, p.n_seq, o);
    q.clip = __shfl_xor_sync(kFull, p.clip, o);
    q.lower = __shfl_xor_sync(kFull, p.lower, o);
    q.w_count = __shfl_xor_sync(kFull, p.w_count, o);
    q.w_clipped = __shfl_xor_sync(kFull, p.w_clipped, o);
    p = part_add(p, q);
  }
  return p;
}

__device__ __forceinline__ bool valid(const Dev& d, int t) { return d.mask == nullptr || d.mask[t] != 0; }
// Inclusive bounds, as torch.clamp passes the gradient at them; ±Inf bounds: no clamp. NaN in, NaN out
// (the reference's Math.min / Math.max, src/backends/js/policy.ts): a clamp keeps a NaN and a derivative
// mask lets it through (fminf / fmaxf alone would turn it into a bound).
__device__ __forceinline__ bool inside(float x, float c) { return !(x < -c || x > c); }
__device__ __forceinline__ float clamp_nan(float x, float lo, float hi) { return isnan(x) ? x : fminf(fmaxf(x, lo), hi); }
__device__ __forceinline__ float sym_clamp(float x, float c) { return clamp_nan(x, -c, c); }

struct Tok {
  float L, dL, rho, drho, kl_stat;
  unsigned clipped, lower;
};

// gmpo's Δ̂ of a token: Δ on A's side of the band [−ε_low, ε_high], the bound on the other (verl's
// sign(A)·min(sign(A)·Δ, sign(A)·clamp(Δ, −ε_low, ε_high))); 0·Δ at A = 0; NaN in (A or Δ), NaN out.
__device__ __forceinline__ float gmpo_delta(const Dev& d, float A, float delta) {
  return A > 0.f ? min_nan(delta, d.clip_high) : A < 0.f ? max_nan(delta, -d.clip_low) : A == 0.f ? 0.f * delta : A;
}

// vespo's φ = e^{λ + k·ln W − λ·W} of a response (TRL's get_gamma_weights; ln W and W = e^{ln W} given):
// past f32's largest value (+Inf) 0, as TRL's nan_to_num of its f32 e^x; a NaN stays NaN.
__device__ __forceinline__ float vespo_phi(float k, float lam, float lw, float W) {
  const float phi = expf(fmaf(-lam, W, fmaf(k, lw, lam)));
  return isinf(phi) ? 0.f : phi;
}

// A token's surrogate (POLICY.md, "Ratio and per-token surrogate") from its A_t, ℓ_t and ℓ°_t (loaded
// by the caller, all at once); log_s: gspo's and gmpo's log s_r; gm: gmpo's −Q_r·s_r/(n_r + 1e-8), the
// response's w·∂L/∂ℓ_t where t's Δ̂ follows Δ (response()). vespo passes its response's φ₊ as log_s
// and φ₋ as gm (response(): the two per-response values, whichever the loss).
__device__ Tok surrogate(const Dev& d, float A, float l, float old, float log_s, float gm) {
  const float delta = l - old;
  Tok r;
  float drho;
  if (d.loss == int(PolicyLossKind::Gspo)) {
    r.rho = expf(min_nan(log_s, d.gspo_clamp));
    drho = log_s > d.gspo_clamp ? 0.f : r.rho;
    r.kl_stat = -delta;
  } else if (d.loss == int(PolicyLossKind::Gmpo)) {
    r.rho = expf(log_s);  // s_r, no clamp (the same bits as response()'s)
    drho = 0.f;           // (unused: gmpo's gradient is the response's, gm)
    r.kl_stat = -delta;
  } else {
    // (vespo: log_clamp is its fixed ±20, set by the launcher; its ρ serves the ratio stats and ppoKl.)
    const float dc = sym_clamp(delta, d.log_clamp);
    r.rho = expf(dc);
    drho = inside(delta, d.log_clamp) ? r.rho : 0.f;
    r.kl_stat = -dc;
  }
  r.drho = drho;  // (the bias-corrected KL's: gmpo's 0 is never used, the launcher refuses it there)
  const float rho = r.rho;
  r.clipped = 0;
  r.lower = 0;
  const float lo = 1.f - d.clip_low, hi = 1.f + d.clip_high;
  switch (static_cast<PolicyLossKind>(d.loss)) {
    case PolicyLossKind::Ppo:
    case PolicyLossKind::Gspo: {
      const bool capped = !(rho > d.delta);  // NaN: u1 = NaN, never −A·δ
      const float u1 = -A * (capped ? rho : d.delta);
      const bool in_band = rho >= lo && rho <= hi;
      const float u2 = -A * clamp_nan(rho, lo, hi);
      if (u2 > u1) {
        r.clipped = 1;
        r.L = u2;
        r.dL = in_band ? -A * drho : 0.f;
      } else {
        r.L = u1;
        r.dL = capped ? -A * drho : 0.f;
      }
      if (d.loss == int(PolicyLossKind::Ppo) && A < 0.f && r.L > -A * d.dual_clip) {
        r.lower = 1;
        r.L = -A * d.dual_clip;
        r.dL = 0.f;
      }
      break;
    }
    case PolicyLossKind::Cispo: {
      const float wc = d.cispo_cap ? min_nan(rho, d.clip_high) : clamp_nan(rho, lo, hi);
      r.clipped = wc != rho ? 1 : 0;
      r.L = -wc * A * l;
      r.dL = -wc * A;
      break;
    }
    case PolicyLossKind::Gmpo: {
      // Clipped where Δ lies outside [−ε_low, ε_high] (NaN included): A > 0 clipFraction, A < 0 lower.
      const bool in_band = delta >= -d.clip_low && delta <= d.clip_high;
      r.clipped = !in_band && A > 0.f ? 1 : 0;
      r.lower = !in_band && A < 0.f ? 1 : 0;
      r.L = -A * rho;
      // d_t: t's Δ̂ follows Δ (torch's min and clamp pass the gradient at a tie); a NaN gm passes.
      const bool follows = A > 0.f ? !(delta > d.clip_high) : A < 0.f ? !(delta < -d.clip_low) : false;
      r.dL = follows || isnan(gm) ? gm : 0.f;
      break;
    }
    case PolicyLossKind::Vespo: {
      // φ of A's sign (A ≥ 0: φ₊ in log_s; else, a NaN A too: φ₋ in gm), a stop-gradient; never clipped.
      const float phi = A >= 0.f ? log_s : gm;
      r.L = -phi * A * l;
      r.dL = -phi * A;
      break;
    }
    case PolicyLossKind::Sapo: {
      const float tau = A > 0.f ? d.tau_pos : d.tau_neg;
      const float z = tau * (rho - 1.f);
      const float e = expf(-z);
      const float s = 1.f / (1.f + e);
      r.L = -(4.f / tau) * s * A;
      // σ'(z) = s(1 − s) as e^{−z}·s² for z ≥ 0: no cancellation in 1 − s as s → 1.
      r.dL = -4.f * (z >= 0.f ? e * s * s : s * (1.f - s)) * A * drho;
      break;
    }
    default:  // reinforce
      r.L = -A * l;
      r.dL = -A;
  }
  return r;
}

// k3_of (e^y − y − 1 without cancellation near 0): common.cuh, shared with rejection.cu.

// KL estimator of x = ℓ − ℓʳ: value and d value / dℓ (straight-through: x, k2's).
__device__ void kl_term(const Dev& d, float x, float& v, float& dv) {
  switch (static_cast<KlEstimator>(d.kl_est)) {
    case KlEstimator::K1:
      v = x;
      dv = 1.f;
      break;
    case KlEstimator::Abs:
      v = fabsf(x);
      dv = x > 0.f ? 1.f : x < 0.f ? -1.f : 0.f;
      break;
    case KlEstimator::K2:
      v = 0.5f * x * x;
      dv = x;
      break;
    default: {
      const float y = -x;
      const float yc = sym_clamp(y, d.kl_in_clamp);
      float em1;
      v = k3_of(yc, em1);
      dv = inside(y, d.kl_in_clamp) ? -em1 : 0.f;
    }
  }
  if (d.kl_est == int(KlEstimator::K3) || d.kl_value_all) {
    const float c = d.kl_value_clamp;
    if (!inside(v, c)) dv = 0.f;
    v = sym_clamp(v, c);
  }
  if (d.kl_st || isnan(x)) dv = x;  // (a NaN x: a NaN derivative, every estimator)
}

// A raw rollout weight after truncate / mask; `clipped`: it was outside [lower, upper] (NaN is).
// (Not for sequence-mask: its token weights are filtered by their response, token_weight().)
__device__ __forceinline__ float correct_weight(const Dev& d, float raw, unsigned& clipped) {
  const bool ok = raw >= d.r_lower && raw <= d.r_upper;
  clipped = ok ? 0 : 1;
  if (d.mode == int(RolloutMode::Mask)) return raw < d.r_lower || raw > d.r_upper ? 0.f : raw;  // NaN kept
  return clamp_nan(raw, d.r_lower, d.r_upper);
}
__device__ __forceinline__ float raw_weight(const Dev& d, float old, float roll) {
  return expf(sym_clamp(old - roll, d.r_log_clamp));
}
// A token-level rollout weight: truncate / mask (correct_weight), or sequence-mask's raw weight kept
// whole where its response's filter f is 1 (inside the band), else f itself (0, or NaN for a NaN Λ_r:
// a select, not f·raw, so an infinite raw weight of a dropped response gives 0); clipped: f ≠ 1.
__device__ __forceinline__ float token_weight(const Dev& d, float raw, float f, unsigned& clipped) {
  if (d.mode == int(RolloutMode::SequenceMask)) {
    clipped = f == 1.f ? 0 : 1;
    return f == 1.f ? raw : f;
  }
  return correct_weight(d, raw, clipped);
}
// The weight pass A folds into gmpo's Q_r and vespo's ln W_r, the bits token_terms() computes in pass B
// (sequence-mask: the raw weight, its response's filter applied once the filter is known).
__device__ __forceinline__ float pass_a_weight(const Dev& d, float old, float roll) {
  unsigned clipped;
  const float raw = raw_weight(d, old, roll);
  return d.mode == int(RolloutMode::SequenceMask) ? raw : correct_weight(d, raw, clipped);
}

struct Scales {
  float g, g_tm, inv_wbar;
};

// The aggregation's scales from the counts of this batch (the host's where it gave them).
__device__ Scales scales_of(const Dev& d, const Part& red) {
  const float n_tok = fmaxf(d.has_tokens ? d.tokens : static_cast<float>(red.n_tok), 1.f);
  const float n_seq = fmaxf(d.has_sequences ? d.sequences : static_cast<float>(red.n_seq), 1.f);
  Scales s;
  s.g_tm = d.ranks / n_tok;
  switch (static_cast<Aggregation>(d.aggregation)) {
    case Aggregation::TokenMean:
      s.g = s.g_tm;
      break;
    case Aggregation::TokenSum:
      s.g = d.ranks;
      break;
    case Aggregation::SeqMeanTokenSumNorm:
      s.g = d.norm_by_seq ? d.ranks / (n_seq * d.scale_factor) : 1.f / d.scale_factor;
      break;
    default:
      s.g = d.ranks / n_seq;
  }
  s.inv_wbar = 1.f;
  if (d.has_rollout && d.normalize && red.w_count > 0) {
    const float mean = red.w_sum / static_cast<float>(red.w_count);
    if (mean > 1e-8f) s.inv_wbar = 1.f / mean;
  }
  return s;
}

__device__ __forceinline__ float mean_of(float x, unsigned n) { return n == 0 ? NAN : x / static_cast<float>(n); }

__device__ void write_result(const Dev& d, const Part& red) {
  const Scales s = scales_of(d, red);
  const float g_kl = d.kl_token_mean ? s.g_tm : s.g;
  const float g_h = d.ent_token_mean ? s.g_tm : s.g;
  float loss = s.g * red.pg * s.inv_wbar;
  if (d.has_kl) loss += d.kl_coef * g_kl * red.kl;
  if (d.has_ent) loss -= d.ent_coef * g_h * red.ent;
  d.loss_out[0] = loss;
  const unsigned n = red.n_tok;
  float* st = d.stats;
  st[0] = mean_of(static_cast<float>(red.clip), n);
  st[1] = mean_of(static_cast<float>(red.lower), n);
  st[2] = mean_of(red.ppo_kl, n);
  st[3] = d.has_kl ? mean_of(red.kl_val, n) : NAN;
  st[4] = d.has_ent ? mean_of(red.ent_val, n) : NAN;
  st[5] = n == 0 ? NAN : red.ratio_min;
  st[6] = mean_of(red.ratio_sum, n);
  st[7] = n == 0 ? NAN : red.ratio_max;
  st[8] = d.has_rollout ? mean_of(red.w_sum, red.w_count) : NAN;
  st[9] = d.has_rollout ? mean_of(static_cast<float>(red.w_clipped), red.w_count) : NAN;
  st[10] = d.has_rollout ? (red.w_sq == 0.f ? NAN : red.w_sum * red.w_sum / red.w_sq) : NAN;
  st[11] = static_cast<float>(red.n_tok);
  st[12] = static_cast<float>(red.n_seq);
}

// One token's inputs, loaded together (independent loads in flight at once; an absent input reads 0).
struct In {
  float A, l, old, ref, roll, h;
  bool ok;
};
__device__ __forceinline__ In load_in(const Dev& d, int t) {
  In x;
  x.ok = valid(d, t);
  x.A = d.adv[t];
  x.l = d.lp[t];
  x.old = d.old[t];
  x.ref = d.has_kl ? d.ref[t] : 0.f;
  x.roll = d.load_roll ? d.roll[t] : 0.f;
  x.h = d.has_ent ? d.ent[t] : 0.f;
  return x;
}
// The lane's first token of the response [t0, t1), if it has one (the caller prefetches it).
__device__ __forceinline__ In load_first(const Dev& d, int t0, int t1) {
  const int t = t0 + int(threadIdx.x & 31);
  return t < t1 ? load_in(d, t) : In{};
}

// A valid token's terms (POLICY.md, per token), the same source for both layouts so that a token's
// outputs are the same bits on either: its weighted surrogate w·L_t, its KL value, its gradient
// g = G·a_r·w·(1/W̄)·dL_t + β·G_kl·a_kl·dK_t (ga = G·a_r and ckl = β·G_kl·a_kl, rounded in that order
// by the caller) and its token loss; its ratio, clip and rollout-weight stats go into acc. seq_w: the
// response's rollout weight at sequence and geometric level, its filter (1, 0 or NaN) under
// sequence-mask (token_weight()). keep: the off-policy mask's keep factor of the response's tokens with
// A < 0 (1, 0 or NaN; 1 without the mask), the policy term's w·k (k = 1 where A ≥ 0).
struct Terms {
  float wL, klv, g, tl;
};
__device__ __forceinline__ Terms token_terms(const Dev& d, const In& x, float log_s, float gm, bool seq_level,
                                             float seq_w, float keep, const Scales& s, float ga, float ckl,
                                             Part& acc) {
  const Tok k = surrogate(d, x.A, x.l, x.old, log_s, gm);
  acc.ratio_sum += k.rho;
  acc.ratio_min = min_nan(acc.ratio_min, k.rho);
  acc.ratio_max = max_nan(acc.ratio_max, k.rho);
  acc.ppo_kl += k.kl_stat;
  acc.clip += k.clipped;
  acc.lower += k.lower;
  float w = 1.f;
  if (d.has_rollout) {
    if (seq_level) {
      w = seq_w;
    } else {
      unsigned clipped;
      w = token_weight(d, raw_weight(d, x.old, x.roll), seq_w, clipped);
      acc.w_sum += w;
      acc.w_sq += w * w;
      acc.w_count += 1;
      acc.w_clipped += clipped;
    }
  }
  // vespo: the weight is inside W_r (φ), not a factor of its outputs (its stats above count as any loss's).
  if (d.loss == int(PolicyLossKind::Vespo)) w = 1.f;
  // The off-policy mask: the policy term's weight w·k_t, a product (0·L is NaN for a NaN L). Not in the
  // rollout stats above, the KL or the entropy term; gmpo's k is inside Q_r (gm) for its gradient.
  if (d.has_opsm) w *= x.A >= 0.f ? 1.f : keep;
  // The sums of the outputs are explicit fmaf: left to contraction, nvcc may fuse the other product of
  // a sum when one kernel knows a factor (phase 0's W̄ = 1 makes w·L/W̄ the w·L it also sums, and a
  // shared product loses its claim to the fma), and the two layouts would round differently.
  Terms r;
  r.wL = w * k.L;
  // gmpo: the rollout weights are inside Q_r already (gm), so w does not multiply its gradient again.
  r.g = ga * (d.loss == int(PolicyLossKind::Gmpo) ? 1.f : w) * s.inv_wbar * k.dL;
  r.klv = 0.f;
  if (d.has_kl) {
    float dv;
    const float xk = x.l - x.ref;
    kl_term(d, xk, r.klv, dv);
    if (d.kl_bc) {
      // TRL's KL·ρ, through both factors: d(KL·ρ) = ∂KL·ρ + KL·dρ (dv the uncorrected ∂KL). Where dρ = ρ
      // (Δ inside its clamp): ρ·(∂KL + KL), the sum first (abs straight-through's x + |x| = 0 stays 0,
      // not one product's rounding); k3 inside its clamps (not straight-through, so ∂KL ≠ 0): ρ·x, as
      // ∂KL + KL = −(e^y − 1) + e^y − y − 1 = −y = x exactly, where the f32 sum would cancel two terms
      // of size e^y (|x| = 10: 3 digits left; the cpu fuzz, 2026-11-29, seed 9400989). Else (dρ = 0,
      // or NaN) the product rule as written.
      const bool k3_plain = d.kl_est == int(KlEstimator::K3) && !d.kl_st && dv != 0.f;
      dv = k.drho == k.rho ? k.rho * (k3_plain ? xk : dv + r.klv) : fmaf(r.klv, k.drho, dv * k.rho);
      r.klv *= k.rho;
    }
    r.g = fmaf(ckl, dv, r.g);
  }
  r.tl = fmaf(-d.ent_coef, x.h, fmaf(w * s.inv_wbar, k.L, d.kl_coef * r.klv));
  return r;
}
// A valid token's outputs (ge: its entropy gradient −c_H·G_H·a_H) and a masked token's zeros.
__device__ __forceinline__ void write_token(const Dev& d, int t, const Terms& k, float ge) {
  d.grad[t] = k.g;
  if (d.grad_ent) d.grad_ent[t] = ge;
  if (d.token_loss) d.token_loss[t] = k.tl;
}
__device__ __forceinline__ void write_masked(const Dev& d, int t) {
  d.grad[t] = 0.f;
  if (d.grad_ent) d.grad_ent[t] = 0.f;
  if (d.token_loss) d.token_loss[t] = 0.f;
}

// The response of tokens [t0, t1) on one warp: pass A, then pass B. Adds its sums to the lane's
// running record `acc`. `first`: the lane's first token's inputs (load_first), loaded by the caller
// while the previous response ran; the lane's later tokens (responses over 32 tokens) load here.
__device__ void response(const Dev& d, int t0, int t1, const In& first, const Scales& s, bool write,
                         Part& acc) {
  const int lane = threadIdx.x & 31;
  const bool seq_level = d.has_rollout && d.level != int(RolloutLevel::Token);
  const bool gspo = d.loss == int(PolicyLossKind::Gspo), gmpo = d.loss == int(PolicyLossKind::Gmpo);
  const bool vespo = d.loss == int(PolicyLossKind::Vespo);
  const bool vespo_w = vespo && d.has_rollout && !seq_level;  // token weights folded into W_r
  // sequence-mask (token level): the response's filter from Λ_r = Σλ / max(n, 1).
  const bool seq_mask = d.has_rollout && d.mode == int(RolloutMode::SequenceMask);
  const bool opsm = d.has_opsm != 0;
  const bool gmpo_tw = gmpo && d.has_rollout && !seq_level;  // token weights in Q_r
  // Pass A.
  unsigned n = 0;
  // qsum: gmpo's Q_r (Σ A at sequence level: ×w_r below; with the off-policy mask the tokens with A ≥ 0,
  // qneg the others, ×k below); vespo's Σ clamp(ln w_t, ln 1e-8, 20). ksum: the off-policy mask's
  // Σ(ℓᵛ − ℓ). neg: gmpo's lane saw a token with A < 0 (or NaN) under the off-policy mask; bad: gmpo's
  // lane saw a non-finite A under sequence-mask (a dropped response's Q_r = Σ 0·k·A).
  float dsum = 0.f, lsum = 0.f, qsum = 0.f, qneg = 0.f, ksum = 0.f;
  bool neg = false, bad = false;
  auto pass_a = [&](const In& x) {
    if (!x.ok) return;
    ++n;
    if (gspo) dsum += x.l - x.old;
    if (gmpo) {
      dsum += gmpo_delta(d, x.A, x.l - x.old);
      // (the weight token_terms() computes again in pass B, the same bits; sequence-mask's raw weight)
      const float wa = gmpo_tw ? pass_a_weight(d, x.old, x.roll) * x.A : x.A;
      if (opsm && !(x.A >= 0.f)) {
        qneg += wa;
        neg = true;
      } else {
        qsum += wa;
      }
      if (seq_mask) bad |= !isfinite(x.A);
    }
    if (vespo) {
      dsum += sym_clamp(x.l - x.old, kVespoClamp);
      // (the weight token_terms() computes again in pass B, the same bits; sequence-mask's raw weight)
      if (vespo_w) qsum += clamp_nan(logf(pass_a_weight(d, x.old, x.roll)), kVespoLogMin, kVespoClamp);
    }
    if (seq_level || seq_mask) lsum += x.old - x.roll;
    if (opsm) ksum += (d.opsm_roll ? x.roll : x.old) - x.l;
  };
  if (t0 + lane < t1) pass_a(first);
  for (int64_t t = t0 + lane + 32; t < t1; t += 32) pass_a(load_in(d, int(t)));  // (64-bit: t1 may be near 2^31)
  n = warp_sum_u(n);
  dsum = warp_sum(dsum);
  if (gmpo || vespo_w) qsum = warp_sum(qsum);
  if (seq_level || seq_mask) lsum = warp_sum(lsum);
  const float nf = fmaxf(static_cast<float>(n), 1.f);
  const float log_s = gmpo ? dsum / (static_cast<float>(n) + 1e-8f) : dsum / nf;
  // The off-policy mask's keep factor of the response's tokens with A < 0: κ_r = Σ(ℓᵛ − ℓ)/max(n, 1)
  // against δ; NaN for a NaN κ_r (never a 0 from a failed comparison).
  float keep = 1.f;
  if (opsm) {
    const float kappa = warp_sum(ksum) / nf;
    keep = kappa <= d.opsm_thr ? 1.f : kappa > d.opsm_thr ? 0.f : kappa;
  }
  float seq_w = 1.f;
  if (seq_mask) {
    // The filter f: 1 where lower ≤ e^{clamp(Λ_r, ±c)} ≤ upper, NaN for a NaN Λ_r, else 0.
    const float geo = raw_weight(d, lsum / nf, 0.f);
    seq_w = geo >= d.r_lower && geo <= d.r_upper ? 1.f : isnan(geo) ? geo : 0.f;
    // vespo: a dropped response's weights are 0 (ln → ln 1e-8 each), a NaN filter's NaN.
    if (vespo_w && seq_w != 1.f) qsum = isnan(seq_w) ? seq_w : static_cast<float>(n) * kVespoLogMin;
  }
  if (seq_level) {
    const float lam = d.level == int(RolloutLevel::Geometric) ? lsum / nf : lsum;
    unsigned clipped;
    seq_w = correct_weight(d, expf(sym_clamp(lam, d.r_log_clamp)), clipped);
    if (n > 0 && lane == 0) {
      acc.w_sum += seq_w;
      acc.w_sq += seq_w * seq_w;
      acc.w_count += 1;
      acc.w_clipped += clipped;
    }
  }
  // gmpo: Q_r = Σ w·k·A (at sequence level w_r·Σ k·A, the same up to rounding: w_r is finite or NaN,
  // the API's bounds being finite; with the off-policy mask Σ_{A≥0} w·A + k·Σ_{A<0} w·A, the second
  // only where the response has such a token, as k·0 would be NaN for a NaN k; under sequence-mask a
  // dropped response's Σ 0·k·A: NaN for a non-finite A or a NaN k·A, else 0, a NaN filter's NaN), then
  // every valid token's w·∂L/∂ℓ_t before its mask d_t: −Q_r·s_r/(n_r + 1e-8).
  float gm = 0.f;
  if (gmpo) {
    if (opsm) {
      qneg = warp_sum(qneg);
      neg = __ballot_sync(kFull, neg) != 0;
      if (neg) qsum += keep * qneg;
    }
    if (seq_mask) {
      bad = __ballot_sync(kFull, bad) != 0;  // (every lane: seq_mask and seq_w are the warp's)
      if (seq_w != 1.f) qsum = isnan(seq_w) || bad ? NAN : opsm && neg ? 0.f * keep : 0.f;
    }
    if (seq_level) qsum *= seq_w;
    gm = -qsum * expf(log_s) / (static_cast<float>(n) + 1e-8f);
  }
  // vespo: ln W_r, W_r and φ for A ≥ 0 and A < 0 (passed to surrogate() as log_s and gm).
  float phi_pos = 0.f, phi_neg = 0.f;
  if (vespo) {
    const float lw = clamp_nan(dsum + qsum, kVespoLogMin, kVespoClamp);  // (qsum = 0 without token weights)
    const float W = expf(lw);
    phi_pos = vespo_phi(d.vespo_k_pos, d.vespo_lam_pos, lw, W);
    phi_neg = vespo_phi(d.vespo_k_neg, d.vespo_lam_neg, lw, W);
  }
  const float ra = vespo ? phi_pos : log_s, rb = vespo ? phi_neg : gm;
  if (lane == 0) {
    acc.n_tok += n;
    acc.n_seq += n > 0 ? 1 : 0;
  }
  float a_r = 1.f;
  if (d.aggregation == int(Aggregation::SeqMeanTokenMean))
    a_r = d.seq_clamp1 ? 1.f / nf : 1.f / (static_cast<float>(n) + 1e-8f);
  const float a_kl = d.kl_token_mean ? 1.f : a_r;
  const float a_h = d.ent_token_mean ? 1.f : a_r;
  const float g_kl = d.kl_token_mean ? s.g_tm : s.g;
  const float g_h = d.ent_token_mean ? s.g_tm : s.g;
  // Pass B.
  const float ga = s.g * a_r, ckl = d.kl_coef * g_kl * a_kl, ge = -d.ent_coef * g_h * a_h;
  float S = 0.f, K = 0.f, H = 0.f;
  auto pass_b = [&](int t, const In& x) {
    if (!x.ok) {
      if (write) write_masked(d, t);
      return;
    }
    const Terms k = token_terms(d, x, ra, rb, seq_level, seq_w, keep, s, ga, ckl, acc);
    S += k.wL;
    K += k.klv;
    H += x.h;
    if (write) write_token(d, t, k, ge);
  };
  if (t0 + lane < t1) pass_b(t0 + lane, first);
  for (int64_t t = t0 + lane + 32; t < t1; t += 32) pass_b(int(t), load_in(d, int(t)));
  acc.kl_val += K;
  acc.ent_val += H;
  // The response's sums, weighted by its a_r: every lane gets the same butterfly result, lane 0 keeps it.
  S = warp_sum(S);
  K = warp_sum(K);
  H = warp_sum(H);
  if (lane == 0) {
    acc.pg += a_r * S;
    acc.kl += a_kl * K;
    acc.ent += a_h * H;
  }
}

// Every partial, folded in a fixed order (thread i: i, i + 256, ...; then the tree). Block-wide.
__device__ Part reduce_parts(const Dev& d, Part* sh) {
  Part acc = part_empty();
  for (int b = threadIdx.x; b < d.chunks; b += kThreads) acc = part_add(acc, d.parts[b]);
  sh[threadIdx.x] = acc;
  __syncthreads();
  for (int half = kThreads / 2; half > 0; half >>= 1) {
    if (int(threadIdx.x) < half) sh[threadIdx.x] = part_add(sh[threadIdx.x], sh[threadIdx.x + half]);
    __syncthreads();
  }
  const Part red = sh[0];
  __syncthreads();
  return red;
}

// The block's partial record from every thread's: the warp's butterfly, then a fixed fold of the 8
// warps by thread 0 (sh: at least kWarps records).
__device__ void block_part(const Dev& d, Part acc, Part* sh) {
  acc = warp_part(acc);
  if ((threadIdx.x & 31) == 0) sh[threadIdx.x >> 5] = acc;
  __syncthreads();
  if (threadIdx.x == 0) {
    Part total = sh[0];
    for (int w = 1; w < kWarps; ++w) total = part_add(total, sh[w]);
    d.parts[blockIdx.x] = total;
  }
}

// A tokens kernel's start, either layout: the scales of its phase and, in phase 2, the folded partials
// of phase 1 (`red`, whose record block 0 writes out); phase 1 computes no outputs (scales unused).
// Block-wide (phase 2 folds with barriers; sh: kThreads records then).
__device__ __forceinline__ Scales phase_scales(const Dev& d, int phase, Part* sh, Part& red) {
  red = part_empty();
  if (phase == kPhaseDevice) {
    red = reduce_parts(d, sh);
    return scales_of(d, red);
  }
  if (phase == kPhaseHost) return scales_of(d, part_empty());
  return Scales{0.f, 0.f, 1.f};
}

// Three blocks per SM (80 registers, 80 bytes of spill stores): 821 µs at the goal size on an H200,
// against 977 µs for one (124 registers) and 815 µs for four (64 registers, 124 bytes spilled);
// bench/RESULTS.md, 2026-11-27.
__global__ void __launch_bounds__(kThreads, 3) policy_tokens_kernel(Dev d) {
  __shared__ Part sh[kThreads];
  const int b = blockIdx.x;
  Part red;
  const Scales s = phase_scales(d, d.phase, sh, red);
  const bool write = d.phase != kPhaseStats;
  const int warp = threadIdx.x >> 5;
  const int lo = b * d.chunk;
  const int hi = min(lo + d.chunk, d.R);
  Part acc = part_empty();
  // Software pipelined over the warp's responses: the offsets two responses ahead and the next
  // response's first tokens are in flight while this one computes (short responses are latency-bound).
  int r = lo + warp;
  int t0 = 0, t1 = 0, n0 = 0, n1 = 0;
  if (r < hi) t0 = d.roff[r], t1 = d.roff[r + 1];
  if (r + kWarps < hi) n0 = d.roff[r + kWarps], n1 = d.roff[r + kWarps + 1];
  In first = load_first(d, t0, t1);
  for (; r < hi; r += kWarps) {
    int m0 = 0, m1 = 0;
    if (r + 2 * kWarps < hi) m0 = d.roff[r + 2 * kWarps], m1 = d.roff[r + 2 * kWarps + 1];
    const In next = load_first(d, n0, n1);
    response(d, t0, t1, first, s, write, acc);
    first = next;
    t0 = n0, t1 = n1;
    n0 = m0, n1 = m1;
  }
  if (d.phase == kPhaseDevice) {
    if (b == 0 && threadIdx.x == 0) write_result(d, red);
    return;
  }
  block_part(d, acc, sh);
}

// n_seq of the block's responses [b·RC, min((b+1)·RC, R)): thread i takes responses i, i + 256, ...
// (every thread of a warp runs the same number of rounds). A response counts when it has a valid token:
// without a mask, when it is not empty; with one, the thread reads the first kHead mask bytes together,
// and a response still undecided (kHead masked tokens, and more) is scanned by its whole warp, 32·kScan
// bytes a step, so a long masked response costs ⌈n/256⌉ steps, not n. A count: any order gives its bits.
constexpr int kHead = 4, kScan = 8;
__device__ unsigned flat_sequences(const Dev& d) {
  const int lane = threadIdx.x & 31;
  const int lo = blockIdx.x * d.resp_chunk;
  const int hi = d.R - lo < d.resp_chunk ? d.R : lo + d.resp_chunk;
  unsigned n = 0;
  for (int r0 = lo; r0 < hi; r0 += kThreads) {
    const int r = r0 + int(threadIdx.x);
    int t0 = 0, t1 = 0;
    if (r < hi) t0 = d.roff[r], t1 = d.roff[r + 1];
    if (d.mask == nullptr) {
      n += t1 > t0 ? 1 : 0;
      continue;
    }
    bool any = false;
#pragma unroll
    for (int j = 0; j < kHead; ++j)
      if (t0 + j < t1) any |= d.mask[t0 + j] != 0;
    n += any ? 1 : 0;
    unsigned pending = __ballot_sync(kFull, !any && t1 - t0 > kHead);
    while (pending != 0) {
      const int src = __ffs(int(pending)) - 1;
      pending &= pending - 1;
      const int u0 = __shfl_sync(kFull, t0, src) + kHead, u1 = __shfl_sync(kFull, t1, src);
      bool found = false;
      for (int64_t u = u0; u < u1 && !found; u += 32 * kScan) {  // (64-bit: u1 may be near 2^31)
        bool f = false;
#pragma unroll
        for (int j = 0; j < kScan; ++j) {
          const int64_t t = u + j * 32 + lane;
          if (t < u1) f |= d.mask[t] != 0;
        }
        found = __ballot_sync(kFull, f) != 0;
      }
      if (found && lane == src) ++n;
    }
  }
  return n;
}

// The flat path (a_r = 1, no per-response quantity; see the header): block b owns the tokens
// [b·TC, min((b+1)·TC, T)), TC a multiple of kFlatStep; each step, thread i loads the inputs of its
// tokens step + i + 256·j (j < kFlatK) together, then computes and writes them in that order, adding
// to its own running sums. Phase 2 folds phase 1's partials first, as the warp path does. Four blocks
// per SM.
template <int Phase>
__global__ void __launch_bounds__(kThreads, 4) policy_flat_kernel(Dev d) {
  constexpr bool write = Phase != kPhaseStats, sums = Phase != kPhaseDevice;
  __shared__ Part sh[Phase == kPhaseDevice ? kThreads : kWarps];
  Part red;
  const Scales s = phase_scales(d, Phase, sh, red);
  // a_r = a_kl = a_H = 1 on this path; the same roundings as response()'s.
  const float a_r = 1.f;
  const float g_kl = d.kl_token_mean ? s.g_tm : s.g;
  const float g_h = d.ent_token_mean ? s.g_tm : s.g;
  const float ga = s.g * a_r, ckl = d.kl_coef * g_kl * a_r, ge = -d.ent_coef * g_h * a_r;
  const int lo = blockIdx.x * d.tok_chunk;
  const int hi = d.T - lo < d.tok_chunk ? d.T : lo + d.tok_chunk;
  Part acc = part_empty();
  const int n = hi - lo;
  for (int step = 0; step < n; step += kFlatStep) {  // step < n ≤ TC: no overflow
    const int left = n - step;
    In x[kFlatK] = {};
#pragma unroll
    for (int j = 0; j < kFlatK; ++j) {
      const int i = j * kThreads + int(threadIdx.x);
      if (i < left) x[j] = load_in(d, lo + step + i);
    }
#pragma unroll
    for (int j = 0; j < kFlatK; ++j) {
      const int i = j * kThreads + int(threadIdx.x);
      if (i >= left) break;
      const int t = lo + step + i;
      if (!x[j].ok) {
        if (write) write_masked(d, t);
        continue;
      }
      const Terms k = token_terms(d, x[j], 0.f, 0.f, false, 1.f, 1.f, s, ga, ckl, acc);
      if (write) write_token(d, t, k, ge);
      if (sums) {
        acc.pg += k.wL;
        acc.kl_val += k.klv;
        acc.ent_val += x[j].h;
        acc.n_tok += 1;
      }
    }
  }
  if (!sums) {
    if (blockIdx.x == 0 && threadIdx.x == 0) write_result(d, red);
    return;
  }
  acc.kl = acc.kl_val;  // a_kl = a_H = 1: the weighted sums are the plain ones
  acc.ent = acc.ent_val;
  acc.n_seq = flat_sequences(d);
  block_part(d, acc, sh);
}

__global__ void __launch_bounds__(kThreads) policy_reduce_kernel(Dev d) {
  __shared__ Part sh[kThreads];
  const Part red = reduce_parts(d, sh);
  if (threadIdx.x == 0) write_result(d, red);
}

}  // namespace

Status launch_policy_loss(const PolicyParams& p, const LaunchEnv& env, Scratch& scratch) {
  GK_REQUIRE(!p.response_offsets.empty(), "policyLoss: responseOffsets needs R+1 ≥ 1 entries");
  const int64_t R64 = int64_t(p.response_offsets.size()) - 1;
  const int64_t T = p.response_offsets.back();
  GK_REQUIRE(R64 < INT32_MAX && T < INT32_MAX, "policyLoss: R and T must be below 2^31");
  const int R = static_cast<int>(R64);
  GK_REQUIRE(p.loss_out && p.stats && (T == 0 || (p.grad && p.logprobs && p.old_logprobs && p.advantages)),
             "policyLoss: null pointer");
  GK_REQUIRE(!p.has_kl || T == 0 || p.ref_logprobs, "policyLoss: KL without refLogprobs");
  GK_REQUIRE(!p.has_rollout || T == 0 || p.rollout_logprobs, "policyLoss: rollout correction without rolloutLogprobs");
  GK_REQUIRE(p.chunk_responses % kWarps == 0 && p.chunk_responses >= 0,
             "policyLoss: chunk_responses must be a multiple of 8");
  GK_REQUIRE(p.path >= 0 && p.path <= 2, "policyLoss: path must be 0 (automatic), 1 (warp) or 2 (flat)");
  GK_REQUIRE(p.chunk_tokens % kFlatStep == 0 && p.chunk_tokens >= 0,
             "policyLoss: chunk_tokens must be a multiple of 1024");
  GK_REQUIRE(!p.has_rollout || p.rollout_mode != RolloutMode::SequenceMask || p.rollout_level == RolloutLevel::Token,
             "policyLoss: rollout mode sequence-mask needs level token");
  GK_REQUIRE(!p.has_kl || !p.kl_bias_correction || (p.loss != PolicyLossKind::Gspo && p.loss != PolicyLossKind::Gmpo),
             "policyLoss: the KL bias correction needs token-level ratios (a loss other than gspo and gmpo)");
  // The flat path when no token's outputs depend on a per-response quantity (gspo's s_r, gmpo's s_r and
  // Q_r, vespo's W_r, the off-policy mask's κ_r, a sequence or geometric rollout weight, sequence-mask's
  // Λ_r, seq-mean-token-mean's 1/n_r). The KL bias correction is per token: either path.
  const bool flat_ok = p.loss != PolicyLossKind::Gspo && p.loss != PolicyLossKind::Gmpo &&
                       p.loss != PolicyLossKind::Vespo && !p.has_opsm &&
                       (!p.has_rollout ||
                        (p.rollout_level == RolloutLevel::Token && p.rollout_mode != RolloutMode::SequenceMask)) &&
                       p.aggregation != Aggregation::SeqMeanTokenMean;
  GK_REQUIRE(p.path != 2 || flat_ok,
             "policyLoss: the flat path needs a loss other than gspo, gmpo and vespo, no off-policy mask, token-level "
             "rollout correction other than sequence-mask and an aggregation other than seq-mean-token-mean");
  const bool flat = p.path == 2 || (p.path == 0 && flat_ok);
  // Warp path: the fewest responses per block (a multiple of 8 warps) that keep ≤ kMaxChunks blocks, so
  // a phase-2 block folds at most kMaxChunks partials. Flat path: the fewest tokens per block (a multiple
  // of kFlatStep) that keep ≤ kMaxChunks blocks; T alone sets them, so the loss's bits depend on the
  // batch only.
  int chunk = p.chunk_responses, tok_chunk = 0, resp_chunk = 0, chunks = 0;
  if (flat) {
    tok_chunk = p.chunk_tokens;
    if (tok_chunk == 0)
      tok_chunk = static_cast<int>(kFlatStep * std::max<int64_t>(1, ceil_div(ceil_div(T, kMaxChunks), kFlatStep)));
    chunks = static_cast<int>(ceil_div(T, tok_chunk));
    resp_chunk = chunks == 0 ? 0 : static_cast<int>(ceil_div(R, chunks));
  } else {
    if (chunk == 0)
      chunk = kWarps * static_cast<int>(std::max<int64_t>(1, ceil_div(R, int64_t(kWarps) * kMaxChunks)));
    chunks = static_cast<int>(ceil_div(R, chunk));
  }

  const bool needs_tokens = p.aggregation == Aggregation::TokenMean || (p.has_kl && p.kl_token_mean) ||
                            (p.entropy != nullptr && p.entropy_token_mean);
  const bool needs_sequences = (p.aggregation == Aggregation::SeqMeanTokenSum ||
                                p.aggregation == Aggregation::SeqMeanTokenMean ||
                                (p.aggregation == Aggregation::SeqMeanTokenSumNorm && p.norm_by_sequences));
  const bool device_scales = (needs_tokens && p.tokens < 0) || (needs_sequences && p.sequences < 0) ||
                             (p.has_rollout && p.rollout_normalize);

  int* roff = nullptr;
  GK_TRY(scratch.upload(&roff, p.response_offsets));
  Part* parts = nullptr;
  GK_TRY(scratch.alloc(&parts, size_t(std::max(chunks, 1))));

  Dev d{};
  d.lp = p.logprobs;
  d.old = p.old_logprobs;
  d.adv = p.advantages;
  d.ref = p.ref_logprobs;
  d.roll = p.rollout_logprobs;
  d.ent = p.entropy;
  d.mask = p.mask;
  d.roff = roff;
  d.R = R;
  d.chunks = chunks;
  d.chunk = chunk;
  d.T = static_cast<int>(T);
  d.tok_chunk = tok_chunk;
  d.resp_chunk = resp_chunk;
  d.loss = int(p.loss);
  d.clip_low = p.clip_low;
  d.clip_high = p.clip_high;
  d.dual_clip = p.dual_clip;
  // vespo clamps Δ to a fixed ±20 (TRL's), never logRatioClamp: its ρ and ppoKl take this one.
  d.log_clamp = p.loss == PolicyLossKind::Vespo ? kVespoClamp : p.log_ratio_clamp;
  d.gspo_clamp = p.gspo_log_clamp;
  d.delta = p.delta;
  d.cispo_cap = p.cispo_cap ? 1 : 0;
  d.tau_pos = p.sapo_tau_pos;
  d.tau_neg = p.sapo_tau_neg;
  d.vespo_k_pos = p.vespo_k_pos;
  d.vespo_lam_pos = p.vespo_lambda_pos;
  d.vespo_k_neg = p.vespo_k_neg;
  d.vespo_lam_neg = p.vespo_lambda_neg;
  d.has_kl = p.has_kl ? 1 : 0;
  d.kl_est = int(p.kl_estimator);
  d.kl_st = p.kl_straight_through ? 1 : 0;
  d.kl_value_all = p.kl_value_clamp_all ? 1 : 0;
  d.kl_token_mean = p.kl_token_mean ? 1 : 0;
  d.kl_bc = p.has_kl && p.kl_bias_correction ? 1 : 0;
  d.kl_coef = p.kl_coef;
  d.kl_in_clamp = p.kl_input_clamp;
  d.kl_value_clamp = p.kl_value_clamp;
  d.has_ent = p.entropy != nullptr ? 1 : 0;
  d.ent_token_mean = p.entropy_token_mean ? 1 : 0;
  d.ent_coef = p.entropy_coef;
  d.has_rollout = p.has_rollout ? 1 : 0;
  d.level = int(p.rollout_level);
  d.mode = int(p.rollout_mode);
  d.normalize = p.rollout_normalize ? 1 : 0;
  d.r_lower = p.rollout_lower;
  d.r_upper = p.rollout_upper;
  d.r_log_clamp = p.rollout_log_clamp;
  d.has_opsm = p.has_opsm ? 1 : 0;
  d.opsm_thr = p.opsm_threshold;
  d.opsm_roll = p.has_opsm && p.rollout_logprobs != nullptr ? 1 : 0;  // ℓᵛ; ℓ° without rolloutLogprobs
  d.load_roll = p.has_rollout || d.opsm_roll ? 1 : 0;
  d.aggregation = int(p.aggregation);
  d.seq_clamp1 = p.seq_clamp1 ? 1 : 0;
  d.norm_by_seq = p.norm_by_sequences ? 1 : 0;
  d.scale_factor = p.scale_factor;
  d.ranks = p.ranks;
  d.has_tokens = p.tokens >= 0 ? 1 : 0;
  d.has_sequences = p.sequences >= 0 ? 1 : 0;
  d.tokens = static_cast<float>(std::max(p.tokens, 0.0));
  d.sequences = static_cast<float>(std::max(p.sequences, 0.0));
  d.grad = p.grad;
  d.grad_ent = p.entropy != nullptr ? p.grad_entropy : nullptr;
  d.token_loss = p.token_loss;
  d.parts = parts;
  d.loss_out = p.loss_out;
  d.stats = p.stats;

  if (chunks == 0) {
    policy_reduce_kernel<<<1, kThreads, 0, env.stream>>>(d);
    GK_CHECK_LAUNCH("policy_reduce_kernel");
    return Status::Ok();
  }
  if (flat) {
    if (!device_scales) {
      d.phase = kPhaseHost;
      policy_flat_kernel<kPhaseHost><<<unsigned(chunks), kThreads, 0, env.stream>>>(d);
      GK_CHECK_LAUNCH("policy_flat_kernel");
      policy_reduce_kernel<<<1, kThreads, 0, env.stream>>>(d);
      GK_CHECK_LAUNCH("policy_reduce_kernel");
      return Status::Ok();
    }
    d.phase = kPhaseStats;
    policy_flat_kernel<kPhaseStats><<<unsigned(chunks), kThreads, 0, env.stream>>>(d);
    GK_CHECK_LAUNCH("policy_flat_kernel (stats)");
    d.phase = kPhaseDevice;
    policy_flat_kernel<kPhaseDevice><<<unsigned(chunks), kThreads, 0, env.stream>>>(d);
    GK_CHECK_LAUNCH("policy_flat_kernel (final)");
    return Status::Ok();
  }
  if (!device_scales) {
    d.phase = kPhaseHost;
    policy_tokens_kernel<<<unsigned(chunks), kThreads, 0, env.stream>>>(d);
    GK_CHECK_LAUNCH("policy_tokens_kernel");
    policy_reduce_kernel<<<1, kThreads, 0, env.stream>>>(d);
    GK_CHECK_LAUNCH("policy_reduce_kernel");
    return Status::Ok();
  }
  d.phase = kPhaseStats;
  policy_tokens_kernel<<<unsigned(chunks), kThreads, 0, env.stream>>>(d);
  GK_CHECK_LAUNCH("policy_tokens_kernel (stats)");
  d.phase = kPhaseDevice;
  policy_tokens_kernel<<<unsigned(chunks), kThreads, 0, env.stream>>>(d);
  GK_CHECK_LAUNCH("policy_tokens_kernel (final)");
  return Status::Ok();
}

}  // namespace gk
