// grpo-kernels: policyLoss on WebGPU (POLICY.md). Concatenated after common.wgsl's base section
// (src/backends/webgpu/shaders.ts); host side: src/backends/webgpu/policy.ts. Reference and the
// definitions, evaluation order included: src/backends/js/policy.ts (this file computes them in f32);
// the cuda twin, whose layouts these mirror, is native/cuda/policy.cu.
//   Per valid token: g_t = G·a_r·w_t·k_t·(1/W̄)·dL_t + β·G_kl·a^kl_r·dK_t, gH_t = −c_H·G_H·a^H_r,
//   token loss w_t·k_t·L_t/W̄ + β·K_t − c_H·H_t; loss = G·Σ a_r w k L / W̄ + β·G_kl·Σ a^kl K −
//   c_H·G_H·Σ a^H H, with G the aggregation's scale, a_r = 1/n_r under seq-mean-token-mean (else 1),
//   W̄ the rollout weights' mean when normalised (else 1), k_t the off-policy mask's keep factor (1
//   without it). Masked tokens: outputs 0.
//   ρ_t = e^{clamp(Δ, ±c_Δ)} (Δ = ℓ − ℓ°) by ratio_exp: Δ's own f32 rounding corrected (Fast2Sum) and
//   an exponential within 2 ulp (exp_acc), not the driver's exp (Vulkan allows 3 + 2|x| ulp).
//   KL bias correction (TRL's use_bias_correction_kl; ppo, cispo, sapo, reinforce, vespo): after the
//   estimator's value v and derivative dv (clamps, straight-through, NaN rule), dv ← dv·ρ + v·dρ/dℓ,
//   v ← v·ρ, with the token's ρ and dρ/dℓ (ρ inside the clamp, bounds included, else 0; vespo's clamp
//   ±20). Per token: either layout.
//   Off-policy mask (TRL's off_policy_mask_threshold, δ): κ_r = Σ_valid (ℓᵛ − ℓ) / max(n_r, 1) (ℓᵛ the
//   rollout log-probs when bound, `has_roll`, else ℓ°); k_t = 1 where A_t ≥ 0, else kneg_r = 1 if
//   κ_r ≤ δ, 0 if κ_r > δ, NaN for a NaN κ_r. It multiplies the policy weight only (vespo: k_t alone;
//   gmpo: inside Q_r), not the KL, entropy, rollout stats, W̄ or counts. Per response: response layout.
//   Rollout mode sequence-mask (OpenRLHF's seq-mask-tis; token level): Λ_r = Σ_valid λ / max(n_r, 1),
//   geo = e^{clamp(Λ_r, ±c_λ)}, filter f_r = 1 if lower ≤ geo ≤ upper, else 0 (NaN for a NaN geo);
//   w_t = e^{clamp(λ_t, ±c_λ)} (not truncated) where f_r = 1, else f_r itself (a select, not a
//   product); every token of a response outside counted clipped; stats in tokens. Per response:
//   response layout.
//   gmpo (verl's geo_mean): ρ_t = s_r = exp(Σ_valid Δ̂ / (n_r + 1e-8)), Δ̂ = min(Δ, ε_high) if A > 0,
//   max(Δ, −ε_low) if A < 0, 0·Δ if A = 0 (Δ = ℓ − ℓ° unclamped); L_t = −A_t·s_r; in g_t, w_t·dL_t is
//   the response's −Q_r·s_r/(n_r + 1e-8) where t's Δ̂ follows Δ (else 0; NaN passes), Q_r = Σ_valid w·A
//   with the weights before 1/W̄ (so w is not multiplied again).
//   vespo (TRL's get_gamma_weights): ln W_r = clamp(Σ_valid clamp(Δ, ±20) + Σ_valid clamp(ln w_t,
//   ln 1e-8, 20), ln 1e-8, 20) (the second sum with token-level rollout correction only: the API
//   refuses vespo at the other levels and with normalize), W_r = e^{ln W_r}; φ_r^± = e^{λ + k·ln W_r −
//   λ·W_r} (evaluated as e^{k·ln W_r − λ·(W_r − 1)}: vespo_phi) with (k, λ) = (k₊, λ₊) for A ≥ 0,
//   (k₋, λ₋) for A < 0 or NaN, 0 past f32's largest value (TRL's f32 +Inf and nan_to_num), NaN kept;
//   L_t = −φ·A_t·ℓ_t, dL_t = −φ·A_t (φ a stop-gradient), w_t = 1 in every output (the weights are inside
//   W_r; their stats as for every loss; mode sequence-mask: a dropped response's weights 0, so ln 1e-8
//   each); ρ_t = e^{clamp(Δ, ±20)}, never clipped.
//   token_terms() is every token's arithmetic on both layouts below, so a token's outputs are the same
//   bits on either given the same scales (test/cases/policy.ts, "flat and warp paths", on lavapipe;
//   counts are exact, but normalised rollout weights divide by a float sum whose order differs between
//   the layouts).
//
// WHICH LAYOUT (the host decides, src/backends/webgpu/policy.ts policyFlatApplies): the FLAT layout
//   when no token's outputs depend on a per-response quantity: the loss is not gspo, gmpo or vespo
//   (s_r; gmpo's Q_r; vespo's W_r), rollout correction is absent or token level in mode truncate or
//   mask (no sequence weight, no sequence-mask filter f_r), no off-policy mask (κ_r), and the
//   aggregation is not seq-mean-token-mean (so a_r = a^kl_r = a^H_r = 1). Otherwise the RESPONSE
//   layout. The KL bias correction is per token (either layout). The test hook policyTuning.path
//   forces either where it applies ('flat' elsewhere is refused: a RANGE error).
// POLICY_FLAT (policy_flat): workgroup b owns the tokens [b·TC, min((b+1)·TC, T)) (TC = `tok_chunk`,
//   the fewest multiple of the step WG·FLAT_K = 1024 at WG = 256 that keeps ≤ 1024 workgroups; T and
//   WG alone set it). Per step, invocation i loads the inputs of tokens step + i + WG·j, j < 4, together
//   (adjacent invocations read adjacent words), then computes and writes them in j order, adding them to
//   its running sums (so in token order). Then the same kernel counts n_seq over the workgroup's share
//   of responses [b·RC, min((b+1)·RC, R)) (RC = `resp_chunk` = ⌈R / workgroups⌉; invocation per
//   response: its two offsets and, with a mask, its mask bytes up to the first valid one, 16 bytes a
//   round; a long response whose valid tokens come late or never is scanned by its one invocation
//   alone: any_valid). A token's outputs depend on its own inputs and the global scales only: batch
//   invariant by construction.
// POLICY_TOKENS (policy_tokens), the response layout: workgroup b owns the chunk of responses
//   [b·C, min((b+1)·C, R)) (C = `chunk`, a multiple of WG); invocation i takes the chunk's responses
//   i, i + WG, ... one after another, each in two passes over its own tokens in index order: pass A
//   (n_r, gspo's Σ(ℓ − ℓ°), gmpo's Σ Δ̂ and Q_r, vespo's Σ clamp(Δ, ±20) and Σ clamp(ln w_t, ...), the
//   rollout Σλ (sequence, geometric, sequence-mask), the off-policy mask's Σ(ℓᵛ − ℓ)), then f_r and
//   kneg_r, pass B (token_terms of every valid token; writes the per-token outputs). gmpo's Q_r:
//   Σ A (no rollout correction), Σ w_t·A_t (token level, each w_t computed in pass A too), w_r·Σ A
//   (sequence, geometric: w_r needs all of pass A; 0 at w_r = 0 unless an A is ±Inf or NaN, as Σ 0·A);
//   with the off-policy mask or mode sequence-mask (k_t, f_r need all of pass A) instead in pass Q,
//   between A and B: Σ (w_t·k_t)·A_t, w_t token_terms' weight (token_weight) or w_r.
//   vespo's w_t in pass A: correct_weight's, the same expression (so the same bits) as pass B's (mode
//   sequence-mask: the unfiltered weights, whose logs are their clamped λ_t; a dropped response:
//   n_r·ln 1e-8, NaN for a NaN f_r); φ_r^± once per response after pass A. So a response's results depend on its own
//   tokens only, not on its position or the batch (batch invariance), given the global scales.
// Either layout's partial record (`parts[b]`, PART_WORDS words): each invocation's sums (in token or
//   response order), then fixed-order radix-16 workgroup trees (tree_f, tree_u). `phase`, on both:
//     0 (final, host scales): the scales G come from the host's counts (uniforms): writes the outputs
//       and the partials; POLICY_REDUCE follows;
//     1 (stats): writes the partials only (the counts or the rollout mean the scales need are on the
//       device);
//     2 (final, device scales): every workgroup first folds the partials of phase 1 (the same fixed
//       order everywhere, so every workgroup gets the same bits), derives the scales, writes the
//       outputs; workgroup 0 also writes the loss and the stats. No POLICY_REDUCE.
//   Both layouts keep ≤ 1024 workgroups, the most partials a phase-2 workgroup folds.
// POLICY_REDUCE (policy_reduce): one workgroup folds the P partials in a fixed order (invocation j:
//   j, j + WG, ..., then the trees) and writes `result` = [loss, stats...] (POLICY_STATS order).
// Shapes: roff i32 [R+1]; lp, old, adv f32 [T]; extra u32 words: ref f32 [T] at off_ref, rollout at
//   off_roll, entropy at off_ent, the u8 mask packed 4 per word at off_mask (each present one copied
//   in by the host: eight storage buffers is WebGPU's default limit); outs f32: grad [T], gradEntropy
//   [T] at off_gent, tokenLoss [T] at off_tloss; parts u32 [P·PART_WORDS]; result f32 [1 + 13].
// Bytes: flat layout, phase 0: the inputs (3–6 f32 + the mask byte per token) read once, 1–3 f32
//   outputs written, the offsets (and with a mask, mostly one mask word per response) read once more
//   for n_seq; every input and two outputs: 32 bytes per token. Response layout: each input read twice
//   by its invocation (the second from cache, where there is one), and adjacent invocations read
//   addresses a response apart (gmpo's pass A reads ℓ, ℓ°, A, and ℓᵛ with rollout correction: 3–4 f32
//   per token; vespo's ℓ, ℓ°, and ℓᵛ with rollout correction: 2–3; the off-policy mask adds ℓ and ℓᵛ
//   or ℓ°, mode sequence-mask ℓ° and ℓᵛ; gmpo's pass Q, with either, A, and ℓ°, ℓᵛ at token level: a
//   third read). Phases 1 + 2 instead of 0: every read twice. FLOPs ~60 per token (ratio_exp ~20 of
//   them; the KL bias correction 3, the keep factor 2).
// Numerics: f32; every sum has a fixed order, no atomics: the same bits on every run. The two layouts
//   sum in different orders, so their loss and stats may differ in the last bits. 0/0 (no valid token)
//   gives NaN explicitly where the reference's f64 arithmetic gives NaN. Contraction: SPIR-V from WGSL
//   carries no NoContraction, so a driver may fuse a product into the add that follows; token_terms
//   keeps each output's products private to it and both layouts use its terms alike (the bit test
//   above passes on lavapipe; a driver that fused differently per entry point would show there).

struct PolicyParams {
  num_responses: u32,
  num_chunks: u32,
  chunk: u32,
  phase: u32,
  num_tokens: u32, // T (the flat layout)
  tok_chunk: u32, // the flat layout's tokens per workgroup (TC, a multiple of WG·FLAT_K)
  resp_chunk: u32, // the flat layout's responses per workgroup for n_seq (RC)
  loss: u32, // LOSS_* below
  has_mask: u32,
  has_kl: u32,
  kl_est: u32, // KL_* below
  kl_st: u32,
  kl_value_all: u32,
  kl_token_mean: u32,
  has_ent: u32,
  ent_token_mean: u32,
  has_rollout: u32,
  rollout_level: u32, // LEVEL_*
  rollout_mode: u32, // MODE_*
  rollout_normalize: u32,
  aggregation: u32, // AGG_*
  seq_clamp1: u32,
  norm_by_seq: u32,
  has_tokens: u32,
  has_sequences: u32,
  want_token_loss: u32,
  off_ref: u32,
  off_roll: u32,
  off_ent: u32,
  off_mask: u32,
  off_gent: u32,
  off_tloss: u32,
  clip_low: f32,
  clip_high: f32,
  dual_clip: f32, // 0: off (every clamp, cap and bound below: 0 means off)
  log_clamp: f32,
  gspo_clamp: f32,
  delta: f32,
  cispo_cap: u32,
  tau_pos: f32,
  tau_neg: f32,
  kl_coef: f32,
  kl_in_clamp: f32,
  kl_value_clamp: f32,
  ent_coef: f32,
  rollout_lower: f32,
  rollout_upper: f32,
  rollout_log_clamp: f32,
  scale_factor: f32,
  ranks: f32,
  tokens: f32,
  sequences: f32,
  vespo_k_pos: f32,
  vespo_lambda_pos: f32,
  vespo_k_neg: f32,
  vespo_lambda_neg: f32,
  kl_bias: u32, // TRL's use_bias_correction_kl: KL·ρ_t
  has_roll: u32, // rolloutLogprobs bound (at off_roll), with rollout correction or for the off-policy mask
  has_opsm: u32, // TRL's off-policy sequence mask
  opsm_threshold: f32, // its δ
}

const LOSS_PPO: u32 = 0u;
const LOSS_GSPO: u32 = 1u;
const LOSS_CISPO: u32 = 2u;
const LOSS_SAPO: u32 = 3u;
const LOSS_REINFORCE: u32 = 4u;
const LOSS_GMPO: u32 = 5u;
const LOSS_VESPO: u32 = 6u;
const KL_K1: u32 = 0u;
const KL_ABS: u32 = 1u;
const KL_K2: u32 = 2u;
const KL_K3: u32 = 3u;
const LEVEL_TOKEN: u32 = 0u;
const LEVEL_SEQUENCE: u32 = 1u;
const LEVEL_GEOMETRIC: u32 = 2u;
const MODE_TRUNCATE: u32 = 0u;
const MODE_MASK: u32 = 1u;
const MODE_SEQUENCE_MASK: u32 = 2u;
const AGG_TOKEN_MEAN: u32 = 0u;
const AGG_TOKEN_SUM: u32 = 1u;
const AGG_SEQ_MEAN_TOKEN_SUM: u32 = 2u;
const AGG_SEQ_MEAN_TOKEN_MEAN: u32 = 3u;
const AGG_SEQ_MEAN_TOKEN_SUM_NORM: u32 = 4u;
const PHASE_HOST: u32 = 0u;
const PHASE_STATS: u32 = 1u;
const PHASE_DEVICE: u32 = 2u;
// A partial record: f32 sums (bits) then u32 counts.
const PART_WORDS: u32 = 17u;
const NUM_STATS: u32 = 13u;

@group(0) @binding(0) var<uniform> P: PolicyParams;
@group(0) @binding(1) var<storage, read> roff: array<i32>;
@group(0) @binding(2) var<storage, read> lp: array<f32>;
@group(0) @binding(3) var<storage, read> old: array<f32>;
@group(0) @binding(4) var<storage, read> adv: array<f32>;
@group(0) @binding(5) var<storage, read> extra: array<u32>;
@group(0) @binding(6) var<storage, read_write> outs: array<f32>;
@group(0) @binding(7) var<storage, read_write> parts: array<u32>;
@group(0) @binding(8) var<storage, read_write> result: array<f32>;

// The workgroup trees' slots: 3 words × 4 per invocation (12 KB at WG = 256), the f32 fields of a
// record as bits, then its u32 fields.
var<workgroup> wrec: array<array<vec4<u32>, 3>, WG>;

// ---------------------------------------------------------------- workgroup trees (fixed order)
// Radix-16 trees over the WG slots: in round k, slot i (a multiple of 16^k) folds the slots
// i + 16^(k−1)·j, j = 1..15, in j order, so WG = 256 takes two rounds (16 slots of 16, then 1 of 16).
// Two trees of two rounds: few barriers, each a suspension point of lavapipe's compute coroutines,
// whose compile time grows with their number. With six binary trees per record (60 barriers) the
// first dispatch of policy_tokens + policy_reduce compiled for 122 s on lavapipe (cold shader cache,
// 2 shared cores), policy_flat for 189 s and policy_reduce alone for 16 s; with these, 16, 18 and
// 1.7 s. Every invocation gets the result; called from workgroup-uniform control flow. The first
// barrier keeps a previous call's readers of slot 0 ahead of this call's writers.
struct RecF {
  s0: vec4<f32>, // pg, kl, ent, ppo_kl (sums)
  s1: vec4<f32>, // kl_val, ent_val, ratio_sum, w_sum (sums)
  s2: vec4<f32>, // w_sq (sum), ratio_min (min), ratio_max (max), 0
}
fn recf_add(a: RecF, b: RecF) -> RecF {
  return RecF(
    a.s0 + b.s0,
    a.s1 + b.s1,
    vec4<f32>(a.s2.x + b.s2.x, min_nan(a.s2.y, b.s2.y), max_nan(a.s2.z, b.s2.z), 0.0),
  );
}
fn recf_at(i: u32) -> RecF {
  return RecF(bitcast<vec4<f32>>(wrec[i][0]), bitcast<vec4<f32>>(wrec[i][1]), bitcast<vec4<f32>>(wrec[i][2]));
}
fn recf_put(i: u32, v: RecF) {
  wrec[i][0] = bitcast<vec4<u32>>(v.s0);
  wrec[i][1] = bitcast<vec4<u32>>(v.s1);
  wrec[i][2] = bitcast<vec4<u32>>(v.s2);
}
fn tree_f(v: RecF, lid: u32) -> RecF {
  workgroupBarrier();
  recf_put(lid, v);
  for (var stride = 1u; stride < WG; stride = stride * 16u) {
    workgroupBarrier();
    let span = stride * 16u;
    if (lid % span == 0u) {
      var acc = recf_at(lid);
      let end = min(lid + span, WG);
      for (var j = lid + stride; j < end; j = j + stride) {
        acc = recf_add(acc, recf_at(j));
      }
      recf_put(lid, acc);
    }
  }
  workgroupBarrier();
  return recf_at(0u);
}
// The u32 fields: (n_tok, n_seq, clip, lower), (w_count, w_clipped, 0, 0).
fn tree_u(a: vec4<u32>, b: vec4<u32>, lid: u32) -> array<vec4<u32>, 2> {
  workgroupBarrier();
  wrec[lid][0] = a;
  wrec[lid][1] = b;
  for (var stride = 1u; stride < WG; stride = stride * 16u) {
    workgroupBarrier();
    let span = stride * 16u;
    if (lid % span == 0u) {
      var x = wrec[lid][0];
      var y = wrec[lid][1];
      let end = min(lid + span, WG);
      for (var j = lid + stride; j < end; j = j + stride) {
        x = x + wrec[j][0];
        y = y + wrec[j][1];
      }
      wrec[lid][0] = x;
      wrec[lid][1] = y;
    }
  }
  workgroupBarrier();
  return array<vec4<u32>, 2>(wrec[0][0], wrec[0][1]);
}

// ---------------------------------------------------------------- inputs
fn valid(t: u32) -> bool {
  if (P.has_mask == 0u) {
    return true;
  }
  let w = extra[P.off_mask + (t >> 2u)];
  return ((w >> ((t & 3u) * 8u)) & 0xffu) != 0u;
}
fn ref_lp(t: u32) -> f32 {
  return bitcast<f32>(extra[P.off_ref + t]);
}
fn roll_lp(t: u32) -> f32 {
  return bitcast<f32>(extra[P.off_roll + t]);
}
fn entropy_at(t: u32) -> f32 {
  return bitcast<f32>(extra[P.off_ent + t]);
}

// ---------------------------------------------------------------- the per-token math
// NaN in, NaN out (the reference's Math.min / Math.max, src/backends/js/policy.ts): a clamp keeps a
// NaN and every derivative mask lets it through. WGSL's min, max and clamp leave NaN to the
// implementation (and a compiler may assume there is none), so NaN is tested by its bits (is_nan;
// min_nan and max_nan: common.wgsl).
fn clamp_nan(x: f32, lo: f32, hi: f32) -> f32 {
  return select(clamp(x, lo, hi), x, is_nan(x));
}
// clamp to ±c, c = 0: no clamp.
fn sym_clamp(x: f32, c: f32) -> f32 {
  if (c > 0.0) {
    return clamp_nan(x, -c, c);
  }
  return x;
}
// Inside the clamp band (bounds included, as torch.clamp's gradient), or NaN.
fn inside(x: f32, c: f32) -> bool {
  return c <= 0.0 || is_nan(x) || (x >= -c && x <= c);
}

// Whether x is ±Inf or NaN (by its bits, as is_nan).
fn not_finite(x: f32) -> bool {
  return (bitcast<u32>(x) & 0x7fffffffu) >= 0x7f800000u;
}
// gmpo's Δ̂: Δ on A's side of the band, the bound on the other; 0·Δ at A = 0 (0, or NaN where Δ is not
// finite, spelled out: a compiler may fold 0·x to 0); A's NaN at a NaN A. NaN in, NaN out.
fn gmpo_delta(A: f32, delta: f32) -> f32 {
  if (A > 0.0) {
    return min_nan(delta, P.clip_high);
  }
  if (A < 0.0) {
    return max_nan(delta, -P.clip_low);
  }
  if (is_nan(A)) {
    return A;
  }
  return select(0.0, nan_f32(), not_finite(delta));
}

// vespo's clamps (TRL's get_gamma_weights): Δ to ±20, ln W_r and the weights' logs to [ln 1e-8, 20].
// The literals are f32 values exactly (an abstract float may round either way to f32).
const VESPO_CLAMP: f32 = 20.0;
const VESPO_LOG_MIN: f32 = -18.42068099975586; // ln 1e-8, the nearest f32
const VESPO_W_MIN: f32 = 9.99999993922529e-9; // 1e-8 rounded down: ln w ≤ ln 1e-8 at and below it
// ln of f32's largest value (88.722839052) rounded up: e^x at or past it exceeds f32's largest value.
const LN_F32_MAX: f32 = 88.72283935546875;

// ln w for finite w > 0 within a few u of |ln w| also near w = 1, where WGSL's log promises only an
// absolute 2^-21 on [0.5, 2] (a sum of many such logs errs past u·Σ|ln w|, the bound the tests hold):
// on [0.5, 2], 2·atanh(s) = 2s·Σ_k s^{2k}/(2k + 1), s = (w − 1)/(w + 1) (w − 1 exact there, |s| ≤ 1/3:
// k ≤ 7 leaves (1/9)^8/17 < 2^-29 relative; Horner); beyond, log (3 ulp relative there).
fn log_rel(w: f32) -> f32 {
  if (w >= 0.5 && w <= 2.0) {
    let s = (w - 1.0) / (w + 1.0);
    let z = s * s;
    var p = 0.0666666667; // 1/15
    p = fma(p, z, 0.0769230769); // 1/13
    p = fma(p, z, 0.0909090909); // 1/11
    p = fma(p, z, 0.111111111); // 1/9
    p = fma(p, z, 0.142857143); // 1/7
    p = fma(p, z, 0.2); // 1/5
    p = fma(p, z, 0.333333333); // 1/3
    p = fma(p, z, 1.0);
    return 2.0 * s * p;
  }
  return log(w);
}

// vespo's clamp(ln w_t, ln 1e-8, 20) of a token's rollout weight, from c = correct_weight(e^{xc}) and
// xc, the clamped log-weight it came from (pass B's expression, so c holds pass B's bits). Inside the
// band (c.y = 0) w_t = e^{xc}, whose ln is xc itself: no log's error (the reference's ln of its f64 e^{xc}
// is xc to f64 rounding; an f32 e^{xc} and WGSL's log back erred on lavapipe by about 1.7e-7 per token
// near w = 1, all one way: 4.7e-5 in ln W_r over 300 tokens, 1.7× the tokenLoss tolerance). Truncated
// to a bound: log_rel of the bound. Masked to 0 (ln 0 = −Inf) or any w ≤ 1e-8: ln 1e-8, without a log
// (log(0) is the driver's); +Inf: 20; a NaN weight stays NaN.
fn vespo_log_weight(c: vec2<f32>, xc: f32) -> f32 {
  let w = c.x;
  if (is_nan(w)) {
    return w;
  }
  if (c.y == 0.0) {
    return clamp_nan(xc, VESPO_LOG_MIN, VESPO_CLAMP);
  }
  if (w <= VESPO_W_MIN) {
    return VESPO_LOG_MIN;
  }
  if (is_pos_inf(w)) {
    return VESPO_CLAMP;
  }
  return clamp(log_rel(w), VESPO_LOG_MIN, VESPO_CLAMP);
}

// vespo's φ = e^{λ + k·ln W − λ·W} at x = ln W (in [ln 1e-8, 20], or NaN), as (φ', s) with φ = φ'·s:
// - the exponent as k·x − λ·(e^x − 1), e^x − 1 from k3_of (its series near x = 0): the same number, but
//   without λ − λ·W's cancellation, whose f32 rounding (u·λ·(1 + W) absolute, e^x's error times λ·W)
//   would err φ by many u relative where W is near 1 and λ is large;
// - past f32's largest value: φ = 0 (TRL's f32 e^x gives +Inf there, which nan_to_num makes 0), decided
//   by the exponent and by the result's bits both, so it holds whatever the driver's exp returns near
//   or past overflow; a NaN exponent stays NaN;
// - below f32's normal range (exponent < −86): φ' = e^{exponent + 64·ln 2}, s = 2^-64, so that −φ'·A·ℓ·s
//   keeps its product (normal, or subnormal where the device keeps those) where a driver's exp that
//   returns 0 for a subnormal result (lavapipe's does: fuzz seeds 7106517, 7111735) would lose φ
//   itself; 0 below e^{−130} (whatever the driver's exp does far out of range). Else s = 1 (× 1).
fn vespo_phi(k: f32, lam: f32, x: f32) -> vec2<f32> {
  let e = k * x - lam * k3_of(x).y;
  if (is_nan(e)) {
    return vec2<f32>(e, 1.0);
  }
  if (e >= LN_F32_MAX) {
    return vec2<f32>(0.0, 1.0);
  }
  if (e >= -86.0) {
    let phi = exp(e);
    return vec2<f32>(select(phi, 0.0, is_pos_inf(phi)), 1.0);
  }
  if (e < -130.0) {
    return vec2<f32>(0.0, 1.0);
  }
  return vec2<f32>(exp(e + 44.3614196), 5.421010862427522e-20); // 64·ln 2; 2^-64
}

// e^x within 2 ulp for |x| ≤ 80 (1.7 measured on lavapipe over [−20, 20]; a token's ratio
// e^{clamp(Δ)}): WGSL's exp promises only
// 3 + 2|x| ulp (Vulkan's bound), and lavapipe's erred by about 12 ulp at x = −19 (with Δ's own rounding,
// 21u in a bias-corrected KL's token loss whose bound is 16u: test/cases/policy.ts, "kl bias-corrected
// beyond the ±20 log-ratio clamp"). Cody–Waite: k = ⌊x·log₂e + 1/2⌋, r = x − k·ln 2 in two steps
// (k·C1 exact: C1 has 9 bits, |k| ≤ 116), e^r on |r| ≤ ln 2/2 by Cephes' expf polynomial, times 2^k
// (normal for |k| ≤ 116, so exact). Beyond |x| > 80, ±Inf and NaN: the driver's exp (NaN passes).
fn exp_acc(x: f32) -> f32 {
  if (is_nan(x) || abs(x) > 80.0) {
    return exp(x);
  }
  let k = floor(fma(x, 1.44269504088896341, 0.5));
  let ki = i32(k);
  // k·C1 from the integer k·355 (C1 = 355/512), not fma(k, −C1, x): a compiler may merge two fmas of
  // one factor (ffma(a, b, ffma(a, c, d)) → ffma(a, b + c, d); Mesa's NIR does, inexact ops), which
  // undoes the split (lavapipe: 17.7 ulp at x = 18).
  let r1 = x - f32(ki * 355) * 0.001953125; // exact
  let r = fma(k, 2.12194440e-4, r1); // − k·(ln 2 − C1)
  var p = 1.9875691500e-4;
  p = fma(p, r, 1.3981999507e-3);
  p = fma(p, r, 8.3334519073e-3);
  p = fma(p, r, 4.1665795894e-2);
  p = fma(p, r, 1.6666665459e-1);
  p = fma(p, r, 5.0000001201e-1);
  let e = fma(r * r, p, r) + 1.0;
  return e * bitcast<f32>(u32(ki + 127) << 23u);
}

// A token's ratio e^{clamp(Δ, ±c)} (c = 0: no clamp) with Δ = fl(ℓ − ℓ°) (delta) corrected by its own
// rounding: the exact ℓ − ℓ° is Δ + err (Fast2Sum, the larger magnitude first), and e^{Δ + err} =
// e^Δ·(1 + err) to u². Without it, at |Δ| ∈ [16, 20) Δ's rounding alone errs up to 2^-20 = 16u
// relative in ρ, the whole token-loss bound of a bias-corrected KL (KL·ρ; 10u of a 19u error on
// lavapipe: "kl bias-corrected beyond the ±20 log-ratio clamp"). err only strictly inside the clamp
// (on or past a bound ρ is e^{±c}) and where it and e^Δ are finite (an infinite input: Inf − Inf; no
// clamp and e^Δ = +Inf: Inf·0 would be NaN). A compiler that
// folds (d − big) to small (an inexact rewrite) leaves err = 0: the uncorrected ratio, never worse.
fn ratio_exp(l: f32, l_old: f32, delta: f32, c: f32) -> f32 {
  let first = abs(l) >= abs(l_old);
  let big = select(-l_old, l, first);
  let small = select(l, -l_old, first);
  let err = small - (delta - big);
  let e = exp_acc(sym_clamp(delta, c));
  // e as it is on or past a bound, for a non-finite err, and for e = ±Inf or NaN (Inf·0 would be NaN).
  if (not_finite(err) || not_finite(e) || (c > 0.0 && !(abs(delta) < c))) {
    return e;
  }
  return fma(e, err, e);
}

struct Tok {
  L: f32,
  dL: f32,
  rho: f32,
  drho: f32, // dρ/dℓ (the KL bias correction's; gmpo's 0, unused)
  kl_stat: f32, // −Δ (clamped for every loss but gspo and gmpo; vespo's to ±20): ppo_kl's term
  clipped: u32,
  lower: u32,
}

// A token's surrogate (POLICY.md, "Ratio and per-token surrogate") from its A_t, ℓ_t and ℓ°_t (loaded
// by the caller, all at once); log_s: gspo's and gmpo's log s_r; gm: gmpo's −Q_r·s_r/(n_r + 1e-8); phi:
// vespo's φ_r as vespo_phi's (φ', s) for A ≥ 0 (x, z) and for A < 0 or NaN (y, w).
fn surrogate(A: f32, l: f32, l_old: f32, log_s: f32, gm: f32, phi: vec4<f32>) -> Tok {
  let delta = l - l_old;
  var r: Tok;
  var drho: f32;
  var log_rho = 0.0; // ln ρ where ρ = e^{clamp(Δ)} (sapo's e^{−z}·ρ as one exponential)
  if (P.loss == LOSS_VESPO) {
    let dc = clamp_nan(delta, -VESPO_CLAMP, VESPO_CLAMP); // a fixed ±20, not log_clamp
    r.rho = ratio_exp(l, l_old, delta, VESPO_CLAMP);
    // The KL bias correction's only (φ is a stop-gradient): ρ inside ±20 (bounds included), else 0.
    drho = select(0.0, r.rho, inside(delta, VESPO_CLAMP));
    r.kl_stat = -dc;
  } else if (P.loss == LOSS_GMPO) {
    r.rho = exp(log_s); // s_r, no clamp (the ratio stats take it)
    drho = 0.0; // (unused: gmpo's gradient is the response's, gm)
    r.kl_stat = -delta;
  } else if (P.loss == LOSS_GSPO) {
    var ls = log_s;
    if (P.gspo_clamp > 0.0) {
      ls = min_nan(ls, P.gspo_clamp);
    }
    r.rho = exp(ls);
    drho = select(0.0, r.rho, P.gspo_clamp <= 0.0 || is_nan(log_s) || log_s <= P.gspo_clamp);
    r.kl_stat = -delta;
  } else {
    let dc = sym_clamp(delta, P.log_clamp);
    r.rho = ratio_exp(l, l_old, delta, P.log_clamp);
    log_rho = dc;
    drho = select(0.0, r.rho, inside(delta, P.log_clamp));
    r.kl_stat = -dc;
  }
  let rho = r.rho;
  r.drho = drho;
  r.clipped = 0u;
  r.lower = 0u;
  let lo = 1.0 - P.clip_low;
  let hi = 1.0 + P.clip_high;
  switch P.loss {
    case LOSS_PPO, LOSS_GSPO: {
      let capped = P.delta <= 0.0 || is_nan(rho) || rho <= P.delta; // NaN: u1 = NaN, never −A·δ
      let u1 = -A * select(P.delta, rho, capped);
      let in_band = rho >= lo && rho <= hi;
      let u2 = -A * clamp_nan(rho, lo, hi);
      if (u2 > u1) {
        r.clipped = 1u;
        r.L = u2;
        r.dL = select(0.0, -A * drho, in_band);
      } else {
        r.L = u1;
        r.dL = select(0.0, -A * drho, capped);
      }
      if (P.loss == LOSS_PPO && P.dual_clip > 0.0 && A < 0.0 && r.L > -A * P.dual_clip) {
        r.lower = 1u;
        r.L = -A * P.dual_clip;
        r.dL = 0.0;
      }
    }
    case LOSS_CISPO: {
      var wc: f32;
      if (P.cispo_cap == 1u) {
        wc = min_nan(rho, P.clip_high);
      } else {
        wc = clamp_nan(rho, lo, hi);
      }
      r.clipped = select(0u, 1u, wc != rho || is_nan(rho)); // (NaN counts as clipped, as IEEE's !=)
      r.L = -wc * A * l;
      r.dL = -wc * A;
    }
    case LOSS_GMPO: {
      // Clipped where Δ lies outside [−ε_low, ε_high] (NaN included): A > 0 clipFraction, A < 0
      // clipFractionLower (verl's geo_mean pg_clipfrac and pg_clipfrac_lower).
      let in_band = delta >= -P.clip_low && delta <= P.clip_high;
      r.clipped = select(0u, 1u, !in_band && A > 0.0);
      r.lower = select(0u, 1u, !in_band && A < 0.0);
      r.L = -A * rho;
      // w·∂(Σ w·L)/∂ℓ_t: the response's gm where t's own Δ̂ follows Δ (the bound included, as torch's
      // min and clamp at a tie), else 0; a NaN gm passes.
      var follows = false;
      if (A > 0.0) {
        follows = !(delta > P.clip_high);
      } else if (A < 0.0) {
        follows = !(delta < -P.clip_low);
      }
      r.dL = select(0.0, gm, follows || is_nan(gm));
    }
    case LOSS_VESPO: {
      // The response's φ by A's sign (a NaN A takes A < 0's; its products are NaN either way); never
      // clipped.
      let pos = A >= 0.0 && !is_nan(A);
      let f = select(phi.y, phi.x, pos);
      let sc = select(phi.w, phi.z, pos);
      r.L = -f * A * l * sc;
      r.dL = -f * A * sc;
    }
    case LOSS_SAPO: {
      let tau = select(P.tau_neg, P.tau_pos, A > 0.0);
      let z = tau * (rho - 1.0);
      let e = exp(-z);
      let s = 1.0 / (1.0 + e);
      r.L = -(4.0 / tau) * s * A;
      // σ'(z) = s(1 − s) as e^{−z}·s² for z ≥ 0: no cancellation in 1 − s as s → 1; there e^{−z}·dρ/dℓ
      // as e^{ln ρ − z} (0 outside the clamp; a NaN passes): e^{−z} alone may lie below f32's normal range,
      // which a driver may flush to 0, where the product does not (lavapipe: 2e-37 read as 0, the webgpu
      // fuzz, 2026-11-29, seed 7134642).
      let e_rho = select(0.0, exp(log_rho - z), drho != 0.0);
      r.dL = -4.0 * select(s * (1.0 - s) * drho, e_rho * s * s, z >= 0.0) * A;
    }
    default: {
      r.L = -A * l;
      r.dL = -A;
    }
  }
  return r;
}

// k3_of (e^y − y − 1 and e^y − 1 without cancellation near 0): common.wgsl's section k3.

// KL estimator of x = ℓ − ℓʳ: (value, d value / dℓ).
fn kl_term(x: f32) -> vec2<f32> {
  var v: f32;
  var dv: f32;
  switch P.kl_est {
    case KL_K1: {
      v = x;
      dv = 1.0;
    }
    case KL_ABS: {
      v = abs(x);
      dv = select(sign(x), 0.0, is_nan(x)); // (the reference's 0 at NaN; WGSL's sign leaves it open)
    }
    case KL_K2: {
      v = 0.5 * x * x;
      dv = x;
    }
    default: {
      let y = -x;
      let yc = sym_clamp(y, P.kl_in_clamp);
      let k3 = k3_of(yc);
      v = k3.x;
      dv = select(0.0, -k3.y, inside(y, P.kl_in_clamp));
    }
  }
  if ((P.kl_est == KL_K3 || P.kl_value_all == 1u) && P.kl_value_clamp > 0.0) {
    let c = P.kl_value_clamp;
    if (!is_nan(v) && (v < -c || v > c)) {
      dv = 0.0;
    }
    v = clamp_nan(v, -c, c);
  }
  if (P.kl_st == 1u || is_nan(x)) { // (a NaN x: a NaN derivative, every estimator)
    dv = x;
  }
  return vec2<f32>(v, dv);
}

// A raw rollout weight after truncate / mask: (w, 1 if it was outside [lower, upper]). Mode
// sequence-mask: the raw weight, unclipped (its response's filter decides: token_weight).
fn correct_weight(raw: f32) -> vec2<f32> {
  if (P.rollout_mode == MODE_SEQUENCE_MASK) {
    return vec2<f32>(raw, 0.0);
  }
  let ok = raw >= P.rollout_lower && raw <= P.rollout_upper;
  var w: f32;
  if (P.rollout_mode == MODE_MASK) {
    w = select(0.0, raw, ok || is_nan(raw)); // a NaN weight stays NaN
  } else {
    w = clamp_nan(raw, P.rollout_lower, P.rollout_upper);
  }
  return vec2<f32>(w, select(1.0, 0.0, ok));
}

// A token's rollout weight at token level from its ℓ° and ℓᵛ: (w, 1 if counted clipped). filt: its
// response's sequence-mask filter (1 inside the band, 0 outside, NaN for a NaN Λ_r; 1 in the other
// modes): the raw weight kept whole at 1, else the filter itself (a select, not filt·raw: an infinite
// weight of a dropped response gives 0), every token of a response outside counted clipped.
fn token_weight(l_old: f32, l_roll: f32, filt: f32) -> vec2<f32> {
  let c = correct_weight(exp(sym_clamp(l_old - l_roll, P.rollout_log_clamp)));
  if (P.rollout_mode == MODE_SEQUENCE_MASK) {
    let keep = filt == 1.0;
    return vec2<f32>(select(filt, c.x, keep), select(1.0, 0.0, keep));
  }
  return c;
}

// The off-policy mask's keep factor k_t of a token with advantage A: 1 where A ≥ 0, else kneg, its
// response's factor (1 where κ_r ≤ δ or without the mask, 0 where κ_r > δ, NaN for a NaN κ_r).
fn keep_of(A: f32, kneg: f32) -> f32 {
  return select(kneg, 1.0, A >= 0.0 && !is_nan(A));
}

// ---------------------------------------------------------------- partial records
struct Part {
  pg: f32, // Σ a_r S_r
  kl: f32, // Σ a^kl_r K_r
  ent: f32, // Σ a^H_r H_r
  ppo_kl: f32,
  kl_val: f32,
  ent_val: f32,
  ratio_sum: f32,
  ratio_min: f32,
  ratio_max: f32,
  w_sum: f32,
  w_sq: f32,
  n_tok: u32,
  n_seq: u32,
  clip: u32,
  lower: u32,
  w_count: u32,
  w_clipped: u32,
}

fn pos_inf() -> f32 {
  var bits = 0x7f800000u; // through a var: a constant expression may not be ±Inf
  return bitcast<f32>(bits);
}

fn part_empty() -> Part {
  var p: Part;
  p.ratio_min = pos_inf();
  p.ratio_max = neg_inf();
  return p;
}

fn part_add(a: Part, b: Part) -> Part {
  var p = a;
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

// The workgroup's total of its invocations' records (fixed-order trees).
fn part_tree(p: Part, lid: u32) -> Part {
  var r: Part;
  let f = tree_f(
    RecF(
      vec4<f32>(p.pg, p.kl, p.ent, p.ppo_kl),
      vec4<f32>(p.kl_val, p.ent_val, p.ratio_sum, p.w_sum),
      vec4<f32>(p.w_sq, p.ratio_min, p.ratio_max, 0.0),
    ),
    lid,
  );
  let c = tree_u(vec4<u32>(p.n_tok, p.n_seq, p.clip, p.lower), vec4<u32>(p.w_count, p.w_clipped, 0u, 0u), lid);
  r.pg = f.s0.x;
  r.kl = f.s0.y;
  r.ent = f.s0.z;
  r.ppo_kl = f.s0.w;
  r.kl_val = f.s1.x;
  r.ent_val = f.s1.y;
  r.ratio_sum = f.s1.z;
  r.w_sum = f.s1.w;
  r.w_sq = f.s2.x;
  r.ratio_min = f.s2.y;
  r.ratio_max = f.s2.z;
  r.n_tok = c[0].x;
  r.n_seq = c[0].y;
  r.clip = c[0].z;
  r.lower = c[0].w;
  r.w_count = c[1].x;
  r.w_clipped = c[1].y;
  return r;
}

fn part_store(b: u32, p: Part) {
  let o = b * PART_WORDS;
  parts[o + 0u] = bitcast<u32>(p.pg);
  parts[o + 1u] = bitcast<u32>(p.kl);
  parts[o + 2u] = bitcast<u32>(p.ent);
  parts[o + 3u] = bitcast<u32>(p.ppo_kl);
  parts[o + 4u] = bitcast<u32>(p.kl_val);
  parts[o + 5u] = bitcast<u32>(p.ent_val);
  parts[o + 6u] = bitcast<u32>(p.ratio_sum);
  parts[o + 7u] = bitcast<u32>(p.ratio_min);
  parts[o + 8u] = bitcast<u32>(p.ratio_max);
  parts[o + 9u] = bitcast<u32>(p.w_sum);
  parts[o + 10u] = bitcast<u32>(p.w_sq);
  parts[o + 11u] = p.n_tok;
  parts[o + 12u] = p.n_seq;
  parts[o + 13u] = p.clip;
  parts[o + 14u] = p.lower;
  parts[o + 15u] = p.w_count;
  parts[o + 16u] = p.w_clipped;
}

fn part_load(b: u32) -> Part {
  let o = b * PART_WORDS;
  var p: Part;
  p.pg = bitcast<f32>(parts[o + 0u]);
  p.kl = bitcast<f32>(parts[o + 1u]);
  p.ent = bitcast<f32>(parts[o + 2u]);
  p.ppo_kl = bitcast<f32>(parts[o + 3u]);
  p.kl_val = bitcast<f32>(parts[o + 4u]);
  p.ent_val = bitcast<f32>(parts[o + 5u]);
  p.ratio_sum = bitcast<f32>(parts[o + 6u]);
  p.ratio_min = bitcast<f32>(parts[o + 7u]);
  p.ratio_max = bitcast<f32>(parts[o + 8u]);
  p.w_sum = bitcast<f32>(parts[o + 9u]);
  p.w_sq = bitcast<f32>(parts[o + 10u]);
  p.n_tok = parts[o + 11u];
  p.n_seq = parts[o + 12u];
  p.clip = parts[o + 13u];
  p.lower = parts[o + 14u];
  p.w_count = parts[o + 15u];
  p.w_clipped = parts[o + 16u];
  return p;
}

// Every partial, folded in a fixed order: invocation j takes j, j + WG, ... in order, then the trees.
fn reduce_parts(lid: u32) -> Part {
  var acc = part_empty();
  for (var b = lid; b < P.num_chunks; b = b + WG) {
    acc = part_add(acc, part_load(b));
  }
  return part_tree(acc, lid);
}

// ---------------------------------------------------------------- scales
struct Scales {
  g: f32, // the aggregation's G
  g_tm: f32, // D / max(N_tok, 1)
  inv_wbar: f32, // 1 / W̄ (normalize), else 1
}

// From the counts of this batch (ignored where the host gave them) and the rollout weight sums.
fn scales_of(red: Part) -> Scales {
  var n_tok = f32(red.n_tok);
  if (P.has_tokens == 1u) {
    n_tok = P.tokens;
  }
  var n_seq = f32(red.n_seq);
  if (P.has_sequences == 1u) {
    n_seq = P.sequences;
  }
  n_tok = max(n_tok, 1.0);
  n_seq = max(n_seq, 1.0);
  var s: Scales;
  s.g_tm = P.ranks / n_tok;
  switch P.aggregation {
    case AGG_TOKEN_MEAN: {
      s.g = s.g_tm;
    }
    case AGG_TOKEN_SUM: {
      s.g = P.ranks;
    }
    case AGG_SEQ_MEAN_TOKEN_SUM_NORM: {
      if (P.norm_by_seq == 1u) {
        s.g = P.ranks / (n_seq * P.scale_factor);
      } else {
        s.g = 1.0 / P.scale_factor;
      }
    }
    default: {
      s.g = P.ranks / n_seq;
    }
  }
  s.inv_wbar = 1.0;
  if (P.has_rollout == 1u && P.rollout_normalize == 1u && red.w_count > 0u) {
    let mean = red.w_sum / f32(red.w_count);
    if (mean > 1e-8) {
      s.inv_wbar = 1.0 / mean;
    }
  }
  return s;
}

// A tokens entry point's start, either layout: the scales of its phase and, in phase 2, the folded
// partials of phase 1 (red, whose record workgroup 0 writes out); phase 1 computes no outputs (scales
// unused). Workgroup-wide: phase 2 folds with barriers (P.phase is uniform).
struct PhaseStart {
  s: Scales,
  red: Part,
}
fn phase_start(lid: u32) -> PhaseStart {
  var r = PhaseStart(Scales(0.0, 0.0, 1.0), part_empty());
  if (P.phase == PHASE_DEVICE) {
    r.red = reduce_parts(lid);
    r.s = scales_of(r.red);
  } else if (P.phase == PHASE_HOST) {
    r.s = scales_of(part_empty());
  }
  return r;
}

// x / n, NaN for n = 0 (WGSL leaves 0/0 to the implementation).
fn mean_of(x: f32, n: u32) -> f32 {
  return select(x / f32(n), nan_f32(), n == 0u);
}

fn write_result(red: Part) {
  let s = scales_of(red);
  let g_kl = select(s.g, s.g_tm, P.kl_token_mean == 1u);
  let g_h = select(s.g, s.g_tm, P.ent_token_mean == 1u);
  var loss = s.g * red.pg * s.inv_wbar;
  if (P.has_kl == 1u) {
    loss = loss + P.kl_coef * g_kl * red.kl;
  }
  if (P.has_ent == 1u) {
    loss = loss - P.ent_coef * g_h * red.ent;
  }
  result[0] = loss;
  let n = red.n_tok;
  result[1] = mean_of(f32(red.clip), n);
  result[2] = mean_of(f32(red.lower), n);
  result[3] = mean_of(red.ppo_kl, n);
  result[4] = select(nan_f32(), mean_of(red.kl_val, n), P.has_kl == 1u);
  result[5] = select(nan_f32(), mean_of(red.ent_val, n), P.has_ent == 1u);
  result[6] = select(red.ratio_min, nan_f32(), n == 0u);
  result[7] = mean_of(red.ratio_sum, n);
  result[8] = select(red.ratio_max, nan_f32(), n == 0u);
  let ro = P.has_rollout == 1u;
  result[9] = select(nan_f32(), mean_of(red.w_sum, red.w_count), ro);
  result[10] = select(nan_f32(), mean_of(f32(red.w_clipped), red.w_count), ro);
  let ess = select(red.w_sum * red.w_sum / red.w_sq, nan_f32(), red.w_sq == 0.0);
  result[11] = select(nan_f32(), ess, ro);
  result[12] = f32(red.n_tok);
  result[13] = f32(red.n_seq);
}

// ---------------------------------------------------------------- one token (both layouts)
// One token's inputs, loaded together (an absent input reads 0).
struct In {
  A: f32,
  l: f32,
  l_old: f32,
  l_ref: f32,
  l_roll: f32,
  h: f32,
  ok: bool,
}

fn load_in(t: u32) -> In {
  var x: In;
  x.ok = valid(t);
  x.A = adv[t];
  x.l = lp[t];
  x.l_old = old[t];
  x.l_ref = 0.0;
  x.l_roll = 0.0;
  x.h = 0.0;
  if (P.has_kl == 1u) {
    x.l_ref = ref_lp(t);
  }
  if (P.has_rollout == 1u) {
    x.l_roll = roll_lp(t);
  }
  if (P.has_ent == 1u) {
    x.h = entropy_at(t);
  }
  return x;
}

// A valid token's terms (POLICY.md, per token), the one source of both layouts, so that a token's
// outputs are the same bits on either given the same scales: its weighted surrogate w·k·L_t, its KL
// value (bias-corrected: K·ρ), its gradient g = G·a_r·w·k·(1/W̄)·dL_t + β·G_kl·a^kl_r·dK_t (ga = G·a_r
// and ckl = β·G_kl·a^kl_r, rounded in that order by the caller) and its token loss w·k·L_t/W̄ + β·K_t −
// c_H·H_t; its ratio, clip and rollout-weight stats go into *acc. seq_w: the response's rollout weight
// at sequence and geometric level; filt: its sequence-mask filter f_r; kneg: its off-policy keep factor
// for A < 0 (both 1 where off, and on the flat layout). Plain multiplies and adds: a compiler may contract a product into the add that follows it
// (SPIR-V from WGSL carries no NoContraction), so every product that ends in an output is used by that
// output only, and the callers use the terms alike (checked on lavapipe: test/cases/policy.ts, "flat
// and response layouts").
struct Terms {
  wL: f32,
  klv: f32,
  g: f32,
  tl: f32,
}

fn token_terms(
  x: In,
  log_s: f32,
  gm: f32,
  phi: vec4<f32>,
  seq_level: bool,
  seq_w: f32,
  filt: f32,
  kneg: f32,
  s: Scales,
  ga: f32,
  ckl: f32,
  acc: ptr<function, Part>,
) -> Terms {
  let k = surrogate(x.A, x.l, x.l_old, log_s, gm, phi);
  (*acc).ratio_sum = (*acc).ratio_sum + k.rho;
  (*acc).ratio_min = min_nan((*acc).ratio_min, k.rho);
  (*acc).ratio_max = max_nan((*acc).ratio_max, k.rho);
  (*acc).ppo_kl = (*acc).ppo_kl + k.kl_stat;
  (*acc).clip = (*acc).clip + k.clipped;
  (*acc).lower = (*acc).lower + k.lower;
  var w = 1.0;
  if (P.has_rollout == 1u) {
    if (seq_level) {
      w = seq_w;
    } else {
      let c = token_weight(x.l_old, x.l_roll, filt);
      w = c.x;
      (*acc).w_sum = (*acc).w_sum + w;
      (*acc).w_sq = (*acc).w_sq + w * w;
      (*acc).w_count = (*acc).w_count + 1u;
      (*acc).w_clipped = (*acc).w_clipped + u32(c.y);
    }
  }
  // vespo: the weights are inside W_r (its φ), so w is not a factor of any output (a 1: the same
  // roundings); their stats above are every loss's. The off-policy mask's k_t multiplies the policy
  // term's weight (an exact 1, 0 or NaN; 1 without the mask).
  w = select(w, 1.0, P.loss == LOSS_VESPO) * keep_of(x.A, kneg);
  var r: Terms;
  r.wL = w * k.L;
  // gmpo: w is inside gm already (Q_r), so not multiplied again (a 1: the same roundings).
  r.g = ga * select(w, 1.0, P.loss == LOSS_GMPO) * s.inv_wbar * k.dL;
  r.klv = 0.0;
  if (P.has_kl == 1u) {
    let xk = x.l - x.l_ref;
    var kv = kl_term(xk);
    if (P.kl_bias == 1u) {
      // TRL's KL·ρ, differentiated through both factors: d(KL·ρ) = ∂KL·ρ + KL·dρ (kv.y the uncorrected
      // ∂KL). Where dρ = ρ (Δ inside its clamp): ρ·(∂KL + KL), the sum first (abs straight-through's
      // x + |x| = 0 stays 0); k3 inside its clamps (not straight-through, so ∂KL ≠ 0): ρ·x, as
      // ∂KL + KL = −(e^y − 1) + e^y − y − 1 = −y = x exactly, where the f32 sum would cancel two terms
      // of size e^y (|x| = 10: 3 digits left; the cpu fuzz, 2026-11-29, seed 9400989). Else (dρ = 0, or
      // NaN) the product rule as written.
      let k3_plain = P.kl_est == KL_K3 && P.kl_st == 0u && kv.y != 0.0;
      let inner = select(kv.y + kv.x, xk, k3_plain);
      let dv = select(kv.y * k.rho + kv.x * k.drho, k.rho * inner, k.drho == k.rho);
      kv = vec2<f32>(kv.x * k.rho, dv);
    }
    r.klv = kv.x;
    r.g = r.g + ckl * kv.y;
  }
  r.tl = w * s.inv_wbar * k.L + P.kl_coef * r.klv - P.ent_coef * x.h;
  return r;
}

// A valid token's outputs (ge: its entropy gradient −c_H·G_H·a^H_r) and a masked token's zeros.
fn write_token(t: u32, k: Terms, ge: f32) {
  outs[t] = k.g;
  if (P.has_ent == 1u) {
    outs[P.off_gent + t] = ge;
  }
  if (P.want_token_loss == 1u) {
    outs[P.off_tloss + t] = k.tl;
  }
}
fn write_masked(t: u32) {
  outs[t] = 0.0;
  if (P.has_ent == 1u) {
    outs[P.off_gent + t] = 0.0;
  }
  if (P.want_token_loss == 1u) {
    outs[P.off_tloss + t] = 0.0;
  }
}

// ---------------------------------------------------------------- response layout: one response
// Pass A then pass B over response r's tokens; returns its contribution to the invocation's record.
fn response(r: u32, s: Scales, write: bool) -> Part {
  let t0 = u32(roff[r]);
  let t1 = u32(roff[r + 1u]);
  var p = part_empty();
  // Pass A. gmpo also: Σ Δ̂ (dsum) and Q_r = Σ w·A (q; at sequence and geometric level Σ A, times
  // w_r below, with whether some A is not finite: 0·ΣA must be Σ 0·A; with the off-policy mask or mode
  // sequence-mask, whose factors need all of pass A, q in pass Q instead). vespo: Σ clamp(Δ, ±20)
  // (dsum) and, with token-level rollout correction, Σ clamp(ln w_t, ln 1e-8, 20) (lwsum; mode
  // sequence-mask: of the unfiltered weights, the filter applied below). Mode sequence-mask also Σλ;
  // the off-policy mask Σ(ℓᵛ − ℓ) (ksum).
  var n = 0u;
  var dsum = 0.0;
  var lsum = 0.0;
  var ksum = 0.0;
  var q = 0.0;
  var a_bad = false;
  var lwsum = 0.0; // vespo: Σ clamp(ln w_t, ln 1e-8, 20)
  let gmpo = P.loss == LOSS_GMPO;
  let vespo = P.loss == LOSS_VESPO;
  let seq_level = P.has_rollout == 1u && P.rollout_level != LEVEL_TOKEN;
  let seq_mask = P.has_rollout == 1u && P.rollout_mode == MODE_SEQUENCE_MASK;
  let opsm = P.has_opsm == 1u;
  let q_late = gmpo && (opsm || seq_mask); // gmpo's Q_r in pass Q
  for (var t = t0; t < t1; t = t + 1u) {
    if (!valid(t)) {
      continue;
    }
    n = n + 1u;
    if (P.loss == LOSS_GSPO) {
      dsum = dsum + (lp[t] - old[t]);
    }
    if (gmpo) {
      let A = adv[t];
      let l_old = old[t];
      dsum = dsum + gmpo_delta(A, lp[t] - l_old);
      if (q_late) {
        // (pass Q)
      } else if (P.has_rollout == 1u && !seq_level) {
        let w = correct_weight(exp(sym_clamp(l_old - roll_lp(t), P.rollout_log_clamp))).x;
        q = q + w * A;
      } else {
        q = q + A;
        a_bad = a_bad || not_finite(A);
      }
    }
    if (vespo) {
      let l_old = old[t];
      dsum = dsum + clamp_nan(lp[t] - l_old, -VESPO_CLAMP, VESPO_CLAMP);
      if (P.has_rollout == 1u && !seq_level) {
        // token_terms' weight, the same expression: the same bits as pass B's.
        let xc = sym_clamp(l_old - roll_lp(t), P.rollout_log_clamp);
        lwsum = lwsum + vespo_log_weight(correct_weight(exp(xc)), xc);
      }
    }
    if (seq_level || seq_mask) {
      lsum = lsum + (old[t] - roll_lp(t));
    }
    if (opsm) {
      // ℓᵛ: the rollout log-probs when given, else ℓ°.
      let lv = select(old[t], roll_lp(t), P.has_roll == 1u);
      ksum = ksum + (lv - lp[t]);
    }
  }
  let nf = max(f32(n), 1.0);
  // Mode sequence-mask's filter: 1 where e^{clamp(Λ_r, ±c_λ)} (Λ_r = Σλ / max(n_r, 1)) lies in
  // [lower, upper], else 0, NaN for a NaN Λ_r; every token of a response outside counted clipped.
  var filt = 1.0;
  if (seq_mask) {
    let geo = exp(sym_clamp(lsum / nf, P.rollout_log_clamp));
    let ok = geo >= P.rollout_lower && geo <= P.rollout_upper && !is_nan(geo);
    filt = select(select(0.0, nan_f32(), is_nan(geo)), 1.0, ok);
    if (vespo && !ok) {
      // The weights are 0 (each ln clamped to ln 1e-8) or NaN.
      lwsum = select(f32(n) * VESPO_LOG_MIN, filt, is_nan(filt));
    }
  }
  // The off-policy mask: κ_r = Σ(ℓᵛ − ℓ) / max(n_r, 1); the keep factor of the tokens with A < 0.
  var kneg = 1.0;
  if (opsm) {
    let kappa = ksum / nf;
    let d = P.opsm_threshold;
    kneg = select(select(nan_f32(), 0.0, kappa > d), 1.0, kappa <= d);
    kneg = select(kneg, nan_f32(), is_nan(kappa));
  }
  let nd = f32(n) + 1e-8; // gmpo's n_r + 1e-8 (n_r in f32 from 1 on)
  var log_s = dsum / nf;
  if (gmpo) {
    log_s = dsum / nd;
  }
  var seq_w = vec2<f32>(1.0, 0.0);
  if (seq_level) {
    var lam = lsum;
    if (P.rollout_level == LEVEL_GEOMETRIC) {
      lam = lsum / nf;
    }
    seq_w = correct_weight(exp(sym_clamp(lam, P.rollout_log_clamp)));
    if (n > 0u) {
      p.w_sum = seq_w.x;
      p.w_sq = seq_w.x * seq_w.x;
      p.w_count = 1u;
      p.w_clipped = u32(seq_w.y);
    }
  }
  var gm = 0.0;
  if (q_late) {
    // Pass Q: Q_r = Σ_valid w·k·A (w: token_terms' weight, the sequence weight at sequence level).
    for (var t = t0; t < t1; t = t + 1u) {
      if (!valid(t)) {
        continue;
      }
      let A = adv[t];
      var w = 1.0;
      if (P.has_rollout == 1u) {
        if (seq_level) {
          w = seq_w.x;
        } else {
          w = token_weight(old[t], roll_lp(t), filt).x;
        }
      }
      q = q + w * keep_of(A, kneg) * A;
    }
    gm = (-q * exp(log_s)) / nd;
  } else if (gmpo) {
    if (seq_level) {
      // Σ w_r·A = w_r·Σ A; at w_r = 0 (mask mode; w ≥ 0 and finite or NaN) 0, or NaN where an A is not
      // finite, whatever Σ A rounded to.
      if (seq_w.x == 0.0) {
        q = select(0.0, nan_f32(), a_bad);
      } else {
        q = seq_w.x * q;
      }
    }
    gm = (-q * exp(log_s)) / nd;
  }
  // vespo: ln W_r and φ_r for either sign of A.
  var phi = vec4<f32>(0.0, 0.0, 1.0, 1.0);
  if (vespo) {
    let log_w = clamp_nan(dsum + lwsum, VESPO_LOG_MIN, VESPO_CLAMP);
    let pos = vespo_phi(P.vespo_k_pos, P.vespo_lambda_pos, log_w);
    let neg = vespo_phi(P.vespo_k_neg, P.vespo_lambda_neg, log_w);
    phi = vec4<f32>(pos.x, neg.x, pos.y, neg.y);
  }
  p.n_tok = n;
  p.n_seq = select(0u, 1u, n > 0u);
  var a_r = 1.0;
  if (P.aggregation == AGG_SEQ_MEAN_TOKEN_MEAN) {
    if (P.seq_clamp1 == 1u) {
      a_r = 1.0 / nf;
    } else {
      a_r = 1.0 / (f32(n) + 1e-8);
    }
  }
  let a_kl = select(a_r, 1.0, P.kl_token_mean == 1u);
  let a_h = select(a_r, 1.0, P.ent_token_mean == 1u);
  let g_kl = select(s.g, s.g_tm, P.kl_token_mean == 1u);
  let g_h = select(s.g, s.g_tm, P.ent_token_mean == 1u);
  let ga = s.g * a_r;
  let ckl = P.kl_coef * g_kl * a_kl;
  let ge = -P.ent_coef * g_h * a_h;
  // Pass B.
  var S = 0.0;
  var K = 0.0;
  var H = 0.0;
  for (var t = t0; t < t1; t = t + 1u) {
    let x = load_in(t);
    if (!x.ok) {
      if (write) {
        write_masked(t);
      }
      continue;
    }
    let k = token_terms(x, log_s, gm, phi, seq_level, seq_w.x, filt, kneg, s, ga, ckl, &p);
    S = S + k.wL;
    K = K + k.klv;
    H = H + x.h;
    if (write) {
      write_token(t, k, ge);
    }
  }
  p.kl_val = K;
  p.ent_val = H;
  p.pg = a_r * S;
  p.kl = a_kl * K;
  p.ent = a_h * H;
  return p;
}

@compute @workgroup_size(WG)
fn policy_tokens(grid: Grid, @builtin(local_invocation_index) lid: u32) {
  let b = flat_wg(grid);
  if (b >= P.num_chunks) {
    return;
  }
  let start = phase_start(lid);
  let s = start.s;
  let red = start.red;
  let write = P.phase != PHASE_STATS;
  var acc = part_empty();
  let lo = b * P.chunk;
  let hi = min(lo + P.chunk, P.num_responses);
  for (var r = lo + lid; r < hi; r = r + WG) {
    acc = part_add(acc, response(r, s, write));
  }
  if (P.phase == PHASE_DEVICE) {
    if (b == 0u && lid == 0u) {
      write_result(red);
    }
    return;
  }
  let total = part_tree(acc, lid);
  if (lid == 0u) {
    part_store(b, total);
  }
}

// ---------------------------------------------------------------- flat layout
// Tokens in flight per invocation (the flat layout's step is WG·FLAT_K tokens; src/backends/webgpu/
// policy.ts FLAT_K is the same number).
const FLAT_K: u32 = 4u;

// Whether a token of [t0, t1) is valid (a mask is bound): the bytes before the first whole word one by
// one, then 4 words (16 bytes) a round, loaded together, then the tail. One invocation scans its
// response alone, so a long response with no valid token early costs ⌈n/16⌉ rounds of that invocation.
fn any_valid(t0: u32, t1: u32) -> bool {
  var t = t0;
  while (t < t1 && (t & 3u) != 0u) {
    if (valid(t)) {
      return true;
    }
    t = t + 1u;
  }
  while (t + 16u <= t1) {
    let o = P.off_mask + (t >> 2u);
    if ((extra[o] | extra[o + 1u] | extra[o + 2u] | extra[o + 3u]) != 0u) {
      return true;
    }
    t = t + 16u;
  }
  while (t + 4u <= t1) {
    if (extra[P.off_mask + (t >> 2u)] != 0u) {
      return true;
    }
    t = t + 4u;
  }
  while (t < t1) {
    if (valid(t)) {
      return true;
    }
    t = t + 1u;
  }
  return false;
}

// n_seq of workgroup b's responses [b·RC, min((b+1)·RC, R)): invocation i takes responses i, i + WG, ...
// A response counts when it has a valid token: without a mask, when it is not empty; with one, the
// first valid mask byte ends its scan (any_valid). A count: any order gives its bits.
fn flat_sequences(b: u32, lid: u32) -> u32 {
  let lo = b * P.resp_chunk;
  let hi = min(lo + P.resp_chunk, P.num_responses);
  var n = 0u;
  for (var r = lo + lid; r < hi; r = r + WG) {
    let t0 = u32(roff[r]);
    let t1 = u32(roff[r + 1u]);
    if (P.has_mask == 0u) {
      n = n + select(0u, 1u, t1 > t0);
    } else if (any_valid(t0, t1)) {
      n = n + 1u;
    }
  }
  return n;
}

// One token of the flat layout: its outputs, and its sums into *acc (sums: not phase 2).
fn flat_token(
  t: u32,
  x: In,
  s: Scales,
  ga: f32,
  ckl: f32,
  ge: f32,
  write: bool,
  sums: bool,
  acc: ptr<function, Part>,
) {
  if (!x.ok) {
    if (write) {
      write_masked(t);
    }
    return;
  }
  let k = token_terms(x, 0.0, 0.0, vec4<f32>(0.0, 0.0, 1.0, 1.0), false, 1.0, 1.0, 1.0, s, ga, ckl, acc);
  if (write) {
    write_token(t, k, ge);
  }
  if (sums) {
    (*acc).pg = (*acc).pg + k.wL;
    (*acc).kl_val = (*acc).kl_val + k.klv;
    (*acc).ent_val = (*acc).ent_val + x.h;
    (*acc).n_tok = (*acc).n_tok + 1u;
  }
}

// The flat layout (a_r = 1, no per-response quantity; see the header): workgroup b owns the tokens
// [b·TC, min((b+1)·TC, T)); each step of WG·FLAT_K tokens, invocation i loads the inputs of its tokens
// step + i + WG·j (j < FLAT_K) together, then computes and writes them in j order, adding to its own
// running sums (token order). Phase 2 folds phase 1's partials first, as policy_tokens does.
@compute @workgroup_size(WG)
fn policy_flat(grid: Grid, @builtin(local_invocation_index) lid: u32) {
  let b = flat_wg(grid);
  if (b >= P.num_chunks) {
    return;
  }
  let start = phase_start(lid);
  let s = start.s;
  let red = start.red;
  let write = P.phase != PHASE_STATS;
  let sums = P.phase != PHASE_DEVICE;
  // a_r = a^kl_r = a^H_r = 1 on this layout; the same roundings as response()'s.
  let a_r = 1.0;
  let g_kl = select(s.g, s.g_tm, P.kl_token_mean == 1u);
  let g_h = select(s.g, s.g_tm, P.ent_token_mean == 1u);
  let ga = s.g * a_r;
  let ckl = P.kl_coef * g_kl * a_r;
  let ge = -P.ent_coef * g_h * a_r;
  let lo = b * P.tok_chunk;
  let hi = min(lo + P.tok_chunk, P.num_tokens);
  let n = hi - lo;
  var acc = part_empty();
  for (var step = 0u; step < n; step = step + WG * FLAT_K) {
    let left = n - step;
    let t = lo + step + lid;
    // FLAT_K = 4 tokens, spelled out (no dynamically indexed local array).
    var x0: In;
    var x1: In;
    var x2: In;
    var x3: In;
    if (lid < left) {
      x0 = load_in(t);
    }
    if (lid + WG < left) {
      x1 = load_in(t + WG);
    }
    if (lid + 2u * WG < left) {
      x2 = load_in(t + 2u * WG);
    }
    if (lid + 3u * WG < left) {
      x3 = load_in(t + 3u * WG);
    }
    if (lid < left) {
      flat_token(t, x0, s, ga, ckl, ge, write, sums, &acc);
    }
    if (lid + WG < left) {
      flat_token(t + WG, x1, s, ga, ckl, ge, write, sums, &acc);
    }
    if (lid + 2u * WG < left) {
      flat_token(t + 2u * WG, x2, s, ga, ckl, ge, write, sums, &acc);
    }
    if (lid + 3u * WG < left) {
      flat_token(t + 3u * WG, x3, s, ga, ckl, ge, write, sums, &acc);
    }
  }
  if (!sums) {
    if (b == 0u && lid == 0u) {
      write_result(red);
    }
    return;
  }
  acc.kl = acc.kl_val; // a^kl_r = a^H_r = 1: the weighted sums are the plain ones
  acc.ent = acc.ent_val;
  acc.n_seq = flat_sequences(b, lid);
  let total = part_tree(acc, lid);
  if (lid == 0u) {
    part_store(b, total);
  }
}

// ---------------------------------------------------------------- the reduce
@compute @workgroup_size(WG)
fn policy_reduce(@builtin(local_invocation_index) lid: u32) {
  let red = reduce_parts(lid);
  if (lid == 0u) {
    write_result(red);
  }
}
