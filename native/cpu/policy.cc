// policyLoss on the native cpu backend (POLICY.md): the surrogate (ppo, gspo, cispo, sapo, reinforce, gmpo,
// vespo), the KL penalty (optionally bias-corrected by the ratio), the entropy bonus, rollout correction
// (truncate, mask, sequence-mask), the off-policy sequence mask and the five aggregations, with the exact
// gradient dloss/dℓ_t (and dloss/dH_t), the per-token loss and the 13 statistics (POLICY_STATS order).
// The definitions, in the order they are evaluated, are the float64 reference's
// (src/backends/js/policy.ts); the twins are native/cuda/policy.cu and shaders/policy.wgsl. Compiled
// once per instruction set (gk::cpu::avx2, gk::cpu::portable; native/cpu/kernels.h).
//
// WORK. An item is a block of B = clamp(⌈R/64⌉, 8, 256) consecutive responses (the last block may be
//   short): about 64 items from 512 responses on (R/8 below), so that the pool has work to share, and
//   the blocks depend on R alone (never on the thread count).
//   Pass A, per response in order: only where something needs it (a mask: n_r; gspo: Σ(ℓ − ℓ°);
//     gmpo: ΣΔ̂ and Q_r = Σ w·k·A, w the token's rollout weight and k its keep factor (the bits pass B
//     computes) or ΣA; vespo: Σ clamp(Δ, ±20) + Σ clamp(ln w, ln 1e-8, 20), the second with
//     token-level weights; sequence or geometric rollout correction, and mode sequence-mask: Σλ,
//     λ = ℓ° − ℓᵛ; the off-policy mask: Σ(ℓᵛ − ℓ), ℓᵛ = ℓ° without rollout log-probs), the valid
//     tokens' sums, vector k of the response holding its tokens t0 + 8k .. t0 + 8k + 7 in lanes 0..7
//     (positions relative to the response's start), each lane's f32 terms summed in f64, the lanes
//     added in a fixed tree. Then
//     the response's scalars in f64 (gspo: log s_r and ρ_r = e^{min(log s_r, c_g)}; gmpo: s_r and c_gm,
//     PER TOKEN; vespo: φ_r for A ≥ 0 and for A < 0; its rollout weight, a_r and the coefficients
//     below; the off-policy mask's k_r⁻ and sequence-mask's filter f_r, PER TOKEN), each rounded once
//     to f32, into a table of the item's responses (one set for all when none of them differs between
//     responses: no seq-mean-token-mean, gspo, gmpo, vespo, per-response weight, sequence-mask or
//     off-policy mask). gmpo's Q_r with the off-policy mask or sequence-mask, whose terms need k_r⁻ or
//     f_r, is a second loop over the response (from L1) after the first, in the same lanes and order.
//     The counting pass (Scales) takes only n_r and Σλ (and sequence-mask's f_r, blended per lane
//     as pass B does).
//   Pass B, over the item's tokens in vectors of 8 from its first token (short responses share a
//     vector): each lane takes its own response's scalars (blended in at each response's first lane);
//     every per-token branch of the reference is a select (both sides computed, blended by a lane
//     mask). A token's outputs are elementwise in its own inputs and its response's scalars, so their
//     bits do not depend on the lane it lands in. The outputs are stored (a masked token gets 0 in
//     each), whole vectors but the item's last, whose lanes past the item are left alone (the next
//     item's tokens belong to another thread); loads past the arrays' end go lane by lane. The sums
//     are accumulated per lane in f32 (valid lanes only), flushed into f64 lanes every kFlush = 16
//     vectors and at the item's end, so no f32 chain holds more than 16 terms; then the f64 lanes are
//     added in a fixed tree into the item's record, the counts kept as popcounts of lane masks.
//   A response's token outputs are thus a function of its own tokens and the call's global scales,
//   whatever its position, its batch or the thread count (test/cases/policy.ts "batch invariance",
//   test/cpu-native/policy.test.ts). The records are folded in item order on the calling thread, in
//   f64, into the loss and the statistics: the same bits for any thread count.
//   Scales. The aggregation's G, G_tm and 1/W̄ need the batch's counts (valid tokens, nonempty
//   sequences) and, to normalise the rollout weights, their sum; the host gives the counts whenever it
//   holds the mask (src/api/policy.ts). When it does not, or the weights are normalised, a first
//   parallel pass (counts_item: pass A, and the token-level weights) gathers them per item, folded the
//   same way, before pass B.
//
// CHOICES. The loss, the KL estimator (or none) and the rollout level (none, token, or a per-response
//   weight) pick one of 7 × 5 × 3 instantiations of the item's loop before it runs (template
//   parameters). The cispo cap, the KL value clamp and straight-through, and the rollout mode
//   (truncate or mask) are uniform lane masks (both sides computed, blended); entropy, the mask, the
//   tokenLoss output, the per-response table, mode sequence-mask, the off-policy mask and the KL bias
//   correction are branches on the call's flags, the same for every vector.
//
// PER TOKEN (f32; G = the aggregation's scale, W̄ the rollout weights' mean or 1, per response
//   c_pg = G·a_r/W̄ (·w_r per response), c_kl = β·G_kl·a^kl_r, c_H = −c_H·G_H·a^H_r):
//   gradLogprobs = c_pg·w·k·∂L/∂ℓ + c_kl·∂KL/∂ℓ,  gradEntropy = c_H,
//   tokenLoss = (w·k/W̄)·L + β·KL − c_H·H, and the loss is Σ over valid tokens of c_pg·w·k·L + c_kl·KL +
//   c_H·H (= G·Σ a_r S_r/W̄ + β·G_kl·Σ … , POLICY.md's aggregation, the terms weighted per token
//   instead of per response); k = 1 without the off-policy mask, and the product w·k is formed first
//   (0·Inf and 0·NaN are NaN: a product, as the mask mode's 0 weight).
//   Off-policy mask (TRL's off_policy_mask_threshold, δ): κ_r = Σ(ℓᵛ − ℓ)/max(n_r, 1) in f64 (ℓᵛ − ℓ
//   rounded once in f32), k_r⁻ = 1 if κ_r ≤ δ, 0 if κ_r > δ, NaN if κ_r is NaN; per token k = 1 where
//   A ≥ 0, else k_r⁻ (a NaN A too). A stop-gradient on the policy term only: not the KL, the entropy,
//   the weights' statistics, W̄ or the counts. vespo: w = 1 in those places, so the factor is k alone;
//   gmpo: Q_r = Σ w·k·A (its gradient's factor stays 1), its loss and tokenLoss take w·k as above.
//   Mode sequence-mask (OpenRLHF's seq-mask-tis, token level): per response geo_r = e^{clamp(Σλ/max(n_r,
//   1), ±c)} (f64), f_r = 1 if lower ≤ geo_r ≤ upper, NaN if geo_r is, else 0; per token w = e^{clamp(λ,
//   ±c)} (neither truncated nor masked) where f_r = 1, else f_r (a select: an infinite weight of a
//   dropped response is 0). Its statistics are the token-level ones, a token counted outside where its
//   response is not inside (NaN is); vespo's Σ clamp(ln w, ln 1e-8, 20) is Σ clamp(λ_c, ln 1e-8, 20)
//   for an inside response, n_r·ln 1e-8 for a dropped one, NaN for a NaN f_r.
//   KL bias correction (TRL's use_bias_correction_kl; ppo, cispo, sapo, reinforce, vespo: the API
//   refuses gspo and gmpo, whose ratio is the response's): after the clamps and the straight-through
//   choice, ∂KL ← ∂KL·ρ + KL·dρ/dℓ, KL ← KL·ρ (∂KL from the uncorrected KL): what enters K_r, klMean
//   and tokenLoss. ρ = e^{clamp(Δ, ±c_Δ)} (vespo: ±20), dρ/dℓ = ρ inside the clamp (bounds included),
//   else 0 (the loss's own ρ: e^{fl(Δ)}, which Δ's rounding moves by |Δ|/2 ulp, the case table's bound
//   allowing it as for cuda's and the surrogates'). Where dρ/dℓ = ρ the derivative
//   is formed as ρ·(∂KL + KL), the sum first (abs straight-through's x + |x| is exactly 0); k3 within
//   its input and value clamps (not straight-through) takes ρ·x (∂KL + KL = −(e^y − 1) + e^y − y − 1 =
//   −y = x exactly), not the f32 sum of two terms of size e^y (|x| = 10 leaves ~3 digits).
//   gmpo (GMPO, verl's geo_mean; Δ = ℓ − ℓ° unclamped): Δ̂ = min(Δ, ε_high) if A > 0, max(Δ, −ε_low) if
//   A < 0, 0·Δ if A = 0, NaN if A is (NaN-keeping min and max); per response (f64, pass A's sums)
//   s_r = e^{ΣΔ̂/(n_r + 1e-8)} (no clamp), Q_r = Σ w·k·A (w before 1/W̄; w_r·Σ k·A for a per-response
//   weight), c_gm = G·a_r/W̄·(−Q_r·s_r/(n_r + 1e-8)), each rounded once to f32. Per token ρ = s_r,
//   L = −A·s_r (the loss and tokenLoss as above), and the policy part of gradLogprobs is c_gm where
//   d_t = (A > 0 and !(Δ > ε_high)) or (A < 0 and !(Δ < −ε_low)), else 0; a NaN c_gm passes the mask
//   (no second w: it is inside Q_r). clipFraction: A > 0 and !(−ε_low ≤ Δ ≤ ε_high); clipFractionLower:
//   A < 0 and the same; ppoKl sums −Δ (as gspo).
//   vespo (TRL's get_gamma_weights; the rollout level is token or none, never normalised: the API's
//   rule): per response (f64, pass A's sum of f32 terms) ln W_r = clamp(Σ clamp(Δ, ±20) + Σ clamp(ln w,
//   ln 1e-8, 20), ln 1e-8, 20), W_r = e^{ln W_r}, φ_± = e^{λ_± + k_±·ln W_r − λ_±·W_r}, 0 past f32's
//   largest value (TRL's f32 +Inf, then nan_to_num), NaN kept, each rounded once to f32. ln w is that of
//   pass B's weight, taken without a logarithm: the f32 λ_c = clamp(ℓ° − ℓᵛ, ±c) where e^{λ_c} (pass
//   B's bits) is kept, ln of the f32 bound where it is truncated to it, −Inf where the mask zeroes it
//   (NaN kept). Per token φ = φ_+ if A ≥ 0 else φ_− (a NaN A: φ_−), L = −φ·A·ℓ, ∂L/∂ℓ = −φ·A (φ a
//   stop-gradient), the rollout weight not a factor (w = 1: it is inside W_r; its statistics as for
//   every loss); ρ = e^{clamp(Δ, ±20)} for the ratio statistics and ppoKl (−clamp(Δ, ±20)); never
//   clipped.
//   Exponentials (the ratio, k3's e^y, the rollout weight, sapo's sigmoid; k3 near 0 is a series,
//   k3_of; both in exp.h, shared with rejection.cc): e^x = 2^n·e^r with n = round(x·log2 e),
//   r = x − n·ln2 in two parts (Cody and Waite: n·C1 exact), e^r by Cephes' expf polynomial
//   (1 + r + r²·P(r), P of degree 5) and 2^n from the exponent bits: within 2 ulp of e^x (measured
//   0.97 ulp over [−20, 20] on both builds, test/cpu-native/policy.test.ts); a result below 2^-126
//   may be flushed to +0 (as simd.h's exp2), past 88 the lane takes libm's expf.
// BYTES per token: 3 to 6 f32 inputs (ℓ, ℓ°, A; ℓʳ, ℓᵛ, H) and the u8 mask read once from memory (pass
//   A, where it runs, reads an item's inputs first: ~100 KB, pass B's second read comes from L2), 1
//   to 3 f32 outputs written; 4·(R+1) bytes of offsets. FLOPs: ~40 per token and ~20 more per
//   exponential (1 to 4 per token): compute-bound on one core. gmpo: pass A reads ℓ, ℓ°, A (and ℓᵛ
//   with token-level weights, whose exponential it then computes too: ~10 FLOPs per token, ~30 with
//   that weight); pass B has no per-token ratio exponential (ρ = s_r), ~25 FLOPs besides the KL and
//   the weight. vespo: pass A reads ℓ, ℓ° (and ℓᵛ with token-level weights, whose exponential it then
//   computes too, ~15 FLOPs per token with it, ~5 without); pass B as ppo's without the clip band.
//   The off-policy mask: pass A reads ℓ and ℓᵛ (or ℓ°), ~2 FLOPs per token; pass B ~2 more (the keep
//   factor and the product w·k). Sequence-mask: pass A reads ℓ°, ℓᵛ (Σλ, ~2 FLOPs per token), pass B
//   as token-level weights with a select for the filter. gmpo with either: pass A's second loop
//   re-reads ℓ°, A (and ℓᵛ) from L1 and recomputes the token weight (~25 FLOPs with it, ~4 without).
//   The KL bias correction: ~4 FLOPs per token (the sum, the products, the selects).
//   Measured (bench/RESULTS.md, "Native cpu policyLoss"; ppo + k3 KL + entropy + token rollout
//   weights, 64k responses of 1–31 tokens): 3.8 ns per token per core (bench/cpu/policy-harness.sh),
//   59-60% of a streaming read of the same bytes on the 2-core machine under load; the portable build
//   11.7 ns.
// NUMERICS. f32 per token as the cuda kernels, sums as described (f32 chains of ≤ 16 terms, f64 past
//   them), the response scalars and the final loss and statistics in f64. 0/0 (no valid token) is NaN
//   as in the reference; NaN inputs propagate through the clamps (ratio min and max become NaN with
//   any NaN ratio, as the reference's Math.min and Math.max) and through every derivative mask
//   (not_outside, ppo's cap, the mask mode's band, gmpo's d_t with its NaN c_gm), gmpo's Δ̂ through
//   the NaN-keeping clamp_hi and clamp_lo (a NaN at a valid token: its whole response NaN, through s_r
//   or Q_r; vespo's through ln W_r and φ; the off-policy mask's through κ_r to k_r⁻, so the policy
//   term of the response's tokens with A < 0; sequence-mask's through Σλ to f_r, so every weight of
//   the response; the bias-corrected KL's through ρ): the reference's "NaN in, NaN out" rules. The
//   decisions on κ_r and geo_r are taken in f64 on sums of f32 differences, as the reference's on
//   f64 ones: they may differ only for a κ_r within ~u·Σ|ℓᵛ − ℓ|/n_r of δ (geo_r: of a bound).
#include "kernels.h"
#include "simd.h"
#include "exp.h"

#include <stdlib.h>

namespace gk {
namespace cpu {
namespace GK_CPU_ISA {
namespace {

constexpr int64_t kBlock = 256;  // responses per work item at most (Job::block)
constexpr int kFlush = 16;       // vectors between flushes of the f32 lane sums into f64
constexpr int kNumStats = 13;
constexpr float kInfF = __builtin_inff();

constexpr int kNoKl = -1;                                 // template value: no KL term
constexpr int kRollNone = 0, kRollToken = 1, kRollSeq = 2;  // rollout: none, per token, per response
constexpr int kPpo = int(PolicyLossKind::Ppo), kGspo = int(PolicyLossKind::Gspo),
              kCispo = int(PolicyLossKind::Cispo), kSapo = int(PolicyLossKind::Sapo),
              kGmpo = int(PolicyLossKind::Gmpo), kVespo = int(PolicyLossKind::Vespo);
constexpr int kK1 = int(KlEstimator::K1), kAbs = int(KlEstimator::Abs), kK2 = int(KlEstimator::K2),
              kK3 = int(KlEstimator::K3);

alignas(32) constexpr float kIota[kLanes] = {0, 1, 2, 3, 4, 5, 6, 7};
// vespo's clamps (TRL's get_gamma_weights): Δ, ln w and ln W to at most 20, ln w and ln W to at least
// ln 1e-8; φ past f32's largest value is 0.
constexpr double kVespoClamp = 20.0;
constexpr double kVespoLogMin = -18.420680743952367;  // ln 1e-8
constexpr double kF32Max = 3.4028234663852886e38;

inline int64_t imin(int64_t a, int64_t b) { return a < b ? a : b; }
inline double dmax(double a, double b) { return a > b ? a : b; }
// clamp(x, lo, hi) with NaN kept (the reference's Math.min(Math.max(x, lo), hi)).
inline double dclamp(double x, double lo, double hi) { return x < lo ? lo : x > hi ? hi : x; }
inline VF vclamp(VF x, VF lo, VF hi) { return clamp_hi(clamp_lo(x, lo), hi); }
// Lanes not outside [lo, hi]: inside, or NaN. A derivative mask lets a NaN through (NaN in, NaN out).
inline VM not_outside(VF x, VF lo, VF hi) { return mandnot(mask_of(true), mor(lt(x, lo), gt(x, hi))); }

// ------------------------------------------------------------------------------------ lanes and memory
inline int popcount(VM m) { return __builtin_popcount(unsigned(mbits(m))); }
// Lanes [0, count) (count ≥ 8: all).
inline VM first_lanes(int64_t count) {
  return count >= kLanes ? mask_of(true) : lt(load(kIota), set1(float(count)));
}
// Stores the first `count` lanes of v (count ≥ 8: all).
inline void store_n(float* p, VF v, int64_t count) {
  if (count >= kLanes) return store(p, v);
  alignas(32) float t[kLanes];
  store(t, v);
  for (int64_t i = 0; i < count; ++i) p[i] = t[i];
}

// ------------------------------------------------------------------------------------ the call
// The call's constants as the token loop uses them (f32, rounded once from the f64 options).
struct Consts {
  VF one, neg1, zero, inf, ninf;
  VF lo, hi, cap, delta, dual, lclamp, nlclamp;  // 1 − ε_low, 1 + ε_high, cispo's cap, δ, c, ±c_Δ
  VF neps_lo;                                    // −ε_low (gmpo's band of Δ is [−ε_low, ε_high = cap])
  VF f4_pos, f4_neg, tau_pos, tau_neg;           // sapo: 4/τ and τ by the sign of A
  VM cispo_cap;
  VF kl_in, nkl_in, kl_val, nkl_val, beta;  // k3's input clamp, the value clamp, β
  VM kl_vclamp, kl_st;                      // clamp the value (k3, or every estimator); straight-through
  VF ent_coef;                              // c_H
  VF r_lo, r_hi, r_clamp, nr_clamp;         // rollout bounds and λ's clamp
  VF r_ln_lo, r_ln_hi;                      // vespo: ln of the f32 rollout bounds (a truncated weight's)
  VF v_clamp, nv_clamp, v_log_min;          // vespo: ±20 (Δ, ln w, ln W) and ln 1e-8
  VM r_mask;                                // rollout mode mask (else truncate)
};

Consts consts_of(const PolicyParams& p) {
  Consts k;
  k.one = set1(1.0f);
  k.neg1 = set1(-1.0f);
  k.zero = zero();
  k.inf = set1(kInfF);
  k.ninf = set1(-kInfF);
  k.lo = set1(float(1.0 - p.clip_low));
  k.hi = set1(float(1.0 + p.clip_high));
  k.cap = set1(float(p.clip_high));
  k.neps_lo = set1(-float(p.clip_low));
  k.delta = set1(float(p.delta));
  k.dual = set1(float(p.dual_clip));
  k.lclamp = set1(float(p.log_ratio_clamp));
  k.nlclamp = set1(-float(p.log_ratio_clamp));
  k.f4_pos = set1(float(4.0 / p.sapo_tau_pos));
  k.f4_neg = set1(float(4.0 / p.sapo_tau_neg));
  k.tau_pos = set1(float(p.sapo_tau_pos));
  k.tau_neg = set1(float(p.sapo_tau_neg));
  k.cispo_cap = mask_of(p.cispo_cap);
  k.kl_in = set1(float(p.kl_input_clamp));
  k.nkl_in = set1(-float(p.kl_input_clamp));
  k.kl_val = set1(float(p.kl_value_clamp));
  k.nkl_val = set1(-float(p.kl_value_clamp));
  k.beta = set1(float(p.kl_coef));
  k.kl_vclamp = mask_of(p.kl_estimator == KlEstimator::K3 || p.kl_value_clamp_all);
  k.kl_st = mask_of(p.kl_straight_through);
  k.ent_coef = set1(float(p.entropy_coef));
  k.r_lo = set1(float(p.rollout_lower));
  k.r_hi = set1(float(p.rollout_upper));
  k.r_clamp = set1(float(p.rollout_log_clamp));
  k.nr_clamp = set1(-float(p.rollout_log_clamp));
  k.r_mask = mask_of(p.rollout_mode == RolloutMode::Mask);
  k.r_ln_lo = set1(float(__builtin_log(double(float(p.rollout_lower)))));  // (0: −Inf)
  k.r_ln_hi = set1(float(__builtin_log(double(float(p.rollout_upper)))));
  k.v_clamp = set1(float(kVespoClamp));
  k.nv_clamp = set1(-float(kVespoClamp));
  k.v_log_min = set1(float(kVespoLogMin));
  return k;
}

// The aggregation's scales (f64): G, G_tm, G of the KL and of the entropy term, 1/W̄.
struct Scales {
  double g, g_tm, g_kl, g_h, inv_wbar;
};

// An item's record: sums in f64 (the loss; the statistics' Σ−Δ, Σρ, ΣKL, ΣH, Σw, Σw²), counts exact
// (valid tokens, nonempty sequences, clipped, lower-clipped, rollout weights, weights outside the
// bounds), the ratio's min and max.
enum SumField : int { kSLoss, kSPpoKl, kSRatio, kSKl, kSEnt, kSWeight, kSWeightSq, kNumSums };
enum CountField : int { kCTokens, kCSequences, kCClip, kCLower, kCWeights, kCWeightsOut, kNumCounts };
struct Part {
  double sum[kNumSums];
  int64_t count[kNumCounts];
  float ratio_min, ratio_max;
};

Part part_empty() {
  Part q{};
  q.ratio_min = kInfF;
  q.ratio_max = -kInfF;
  return q;
}

using ItemFn = void (*)(void* ctx, int64_t item, int worker);

struct Job {
  const PolicyParams* p;
  int64_t T, R;
  int64_t block;        // responses per item (the header's WORK)
  bool need_d, need_l;  // pass A's sums: gspo's Σ(ℓ − ℓ°), gmpo's ΣΔ̂ or vespo's ln W_r's; the rollout's Σλ
  bool need_q;          // gmpo's Q_r: Σ w·k·A (token-level weights), else Σ k·A (w_r·Σ k·A: response_scalars)
  bool opsm;            // the off-policy mask: pass A's κ_r, pass B's keep factor k_t
  bool seq_mask;        // rollout mode sequence-mask (token level): Σλ in pass A, the weights filtered per response
  bool kl_bc;           // the KL bias correction: KL·ρ
  bool pass_a;          // pass A runs: those, or the mask's count
  bool per_response;    // the scalars of pass B differ between responses (else all are `same`'s)
  Consts k;
  Scales s;
  Part* parts;  // [items]
};

// ------------------------------------------------------------------------------------ per response
// A token-level rollout weight: e^{clamp(ℓ° − ℓᵛ, ±c)}, truncated or masked; `outside`: not in
// [lower, upper] (NaN is).
inline VF token_raw(const Consts& k, VF old, VF roll) { return exp_e(vclamp(sub(old, roll), k.nr_clamp, k.r_clamp)); }
inline VF token_weight(const Consts& k, VF old, VF roll, VM& outside) {
  const VF raw = token_raw(k, old, roll);
  const VM ok = mand(ge(raw, k.r_lo), le(raw, k.r_hi));
  outside = mandnot(mask_of(true), ok);
  const VM kept = not_outside(raw, k.r_lo, k.r_hi);  // (a NaN weight stays NaN in mask mode)
  return blend(k.r_mask, keep(kept, raw), vclamp(raw, k.r_lo, k.r_hi));
}

// Mode sequence-mask: the raw weight e^{clamp(ℓ° − ℓᵛ, ±c)} (neither truncated nor masked by its own
// value) where the lane's response filter f is 1 (its geometric mean inside the band), else f itself (0,
// or NaN for a NaN geometric mean): a select, so an infinite raw weight of a dropped response gives 0.
// `outside`: the response is not inside the band (a NaN filter counts as outside).
inline VF seq_mask_weight(const Consts& k, VF old, VF roll, VF f, VM& outside) {
  const VM in = ge(f, k.one);  // (f is 1, 0 or NaN)
  outside = mandnot(mask_of(true), in);
  return blend(in, token_raw(k, old, roll), f);
}

// vespo: clamp(ln w, ln 1e-8, 20) of token_weight's w, without a logarithm: w = e^{λ_c} (λ_c = clamp(ℓ° −
// ℓᵛ, ±c)) where it is kept, so ln w = λ_c; the f32 bound where truncated to it, so ln w = ln bound; 0
// where masked, so −Inf; the decisions from the same bits of e^{λ_c} as token_weight's; NaN kept.
inline VF vespo_log_weight(const Consts& k, VF old, VF roll) {
  const VF lam = vclamp(sub(old, roll), k.nr_clamp, k.r_clamp);
  const VF raw = exp_e(lam);
  const VM below = lt(raw, k.r_lo), above = gt(raw, k.r_hi);
  const VF truncated = blend(below, k.r_ln_lo, blend(above, k.r_ln_hi, lam));
  const VF masked = blend(mor(below, above), k.ninf, lam);
  return vclamp(blend(k.r_mask, masked, truncated), k.v_log_min, k.v_clamp);
}

// Pass A's sums over a response's valid tokens: n; d = gspo's Σ(ℓ − ℓ°), gmpo's ΣΔ̂ or vespo's
// Σ clamp(Δ, ±20) (+ Σ clamp(ln w, ln 1e-8, 20) with token-level weights, sequence-mask's filtered ones
// too); l = Σλ; q = gmpo's Σ w·k·A (token-level rollout weights) or Σ k·A (k = 1 without the
// off-policy mask); kap = the off-policy mask's Σ(ℓᵛ − ℓ) (ℓᵛ: ℓ° without rollout log-probs).
struct Sums {
  int64_t n;
  double d, l, q, kap;
};

// The off-policy mask's keep factor of a token with A < 0 (or a NaN A) in the response of `s`:
// κ_r = kap/max(n, 1) (f64); 1 where κ_r ≤ δ, 0 where κ_r > δ, NaN for a NaN κ_r (never 0 for a NaN).
// A token with A ≥ 0 keeps 1.
inline float opsm_keep(const PolicyParams& p, const Sums& s) {
  const double kappa = s.kap / dmax(double(s.n), 1.0);
  return kappa <= p.opsm_threshold ? 1.0f : kappa > p.opsm_threshold ? 0.0f : __builtin_nanf("");
}

// Mode sequence-mask: the response's filter f from its geometric-mean weight geo = e^{clamp(Λ_r, ±c)},
// Λ_r = Σλ/max(n, 1) (f64): 1 where lower ≤ geo ≤ upper, NaN for a NaN geo, else 0.
inline float seq_filter(const PolicyParams& p, const Sums& s) {
  const double c = p.rollout_log_clamp;
  const double geo = __builtin_exp(dclamp(s.l / dmax(double(s.n), 1.0), -c, c));
  if (geo >= p.rollout_lower && geo <= p.rollout_upper) return 1.0f;
  return geo != geo ? __builtin_nanf("") : 0.0f;
}

// gmpo's Δ̂ = min(Δ, ε_high) where A > 0, max(Δ, −ε_low) where A < 0, 0·Δ where A = 0, NaN where A is
// (the (A·0)·Δ lane); clamp_hi and clamp_lo keep a NaN Δ.
inline VF gmpo_delta(const Consts& k, VF A, VF delta) {
  return blend(gt(A, k.zero), clamp_hi(delta, k.cap),
               blend(lt(A, k.zero), clamp_lo(delta, k.neps_lo), mul(mul(A, k.zero), delta)));
}

// `counts`: only what counts_item needs (n, and Σλ for a per-response weight or sequence-mask's filter).
// gmpo's Q_r with the off-policy mask or sequence-mask takes a second loop over the response's tokens
// (in L1), once κ_r and Λ_r are known: each term w·k·A as pass B forms w and k.
Sums response_sums(const Job& J, int64_t t0, int64_t t1, bool counts = false) {
  const PolicyParams& p = *J.p;
  Sums s{t1 - t0, 0.0, 0.0, 0.0, 0.0};
  const bool need_d = J.need_d && !counts, need_q = J.need_q && !counts, need_k = J.opsm && !counts;
  const bool token_w = need_q && p.has_rollout && p.rollout_level == RolloutLevel::Token;
  const bool q_late = need_q && (J.opsm || J.seq_mask);  // Q_r needs κ_r or Λ_r: the second loop
  const bool vespo = need_d && p.loss == PolicyLossKind::Vespo;
  const bool vespo_sm = vespo && J.seq_mask;  // its Σ clamp(ln w) kept apart, chosen by the filter
  const bool vespo_w = vespo && p.has_rollout && p.rollout_level == RolloutLevel::Token && !J.seq_mask;
  if (!need_d && !J.need_l && !need_q && !need_k) {
    if (p.mask) {
      int64_t n = 0;
      for (int64_t t = t0; t < t1; ++t) n += p.mask[t] != 0;
      s.n = n;
    }
    return s;
  }
  const float* vref = p.rollout_logprobs ? p.rollout_logprobs : p.old_logprobs;  // the mask's ℓᵛ
  if (!need_d && !J.need_l && !need_q) {
    // The off-policy mask alone (its common use): the loop below with only κ's sum, in a loop of its
    // own so that its accumulators stay in registers (the general loop's spill to the stack); the
    // same lanes and order, so the same bits.
    VD kap = dzero();
    int64_t n = 0;
    for (int64_t t = t0; t < t1; t += kLanes) {
      const int64_t room = J.T - t;
      VM v = first_lanes(t1 - t);
      if (p.mask) v = mand(v, mask_n(p.mask + t, room));
      n += popcount(v);
      dacc(kap, keep(v, sub(load_n(vref + t, room), load_n(p.logprobs + t, room))));
    }
    s.n = n;
    s.kap = dsum(kap);
    return s;
  }
  VD d = dzero(), l = dzero(), q = dzero(), kap = dzero(), lw = dzero();
  int64_t n = 0;
  for (int64_t t = t0; t < t1; t += kLanes) {
    const int64_t room = J.T - t;  // loads past the arrays' end go lane by lane
    VM v = first_lanes(t1 - t);
    if (p.mask) v = mand(v, mask_n(p.mask + t, room));
    n += popcount(v);
    const VF o = load_n(p.old_logprobs + t, room);
    if (need_d) {
      const VF delta = sub(load_n(p.logprobs + t, room), o);
      if (p.loss == PolicyLossKind::Gmpo) {
        dacc(d, keep(v, gmpo_delta(J.k, load_n(p.advantages + t, room), delta)));
      } else if (vespo) {
        dacc(d, keep(v, vclamp(delta, J.k.nv_clamp, J.k.v_clamp)));
        if (vespo_w) dacc(d, keep(v, vespo_log_weight(J.k, o, load_n(p.rollout_logprobs + t, room))));
        if (vespo_sm) {  // ln of the kept raw weight: λ_c
          const VF lam = vclamp(sub(o, load_n(p.rollout_logprobs + t, room)), J.k.nr_clamp, J.k.r_clamp);
          dacc(lw, keep(v, vclamp(lam, J.k.v_log_min, J.k.v_clamp)));
        }
      } else {
        dacc(d, keep(v, delta));
      }
    }
    if (J.need_l) dacc(l, keep(v, sub(o, load_n(p.rollout_logprobs + t, room))));
    if (need_k) dacc(kap, keep(v, sub(load_n(vref + t, room), load_n(p.logprobs + t, room))));
    if (need_q && !q_late) {
      const VF A = load_n(p.advantages + t, room);
      VM outside;  // (pass B's weight: the same bits)
      const VF wA = token_w ? mul(token_weight(J.k, o, load_n(p.rollout_logprobs + t, room), outside), A) : A;
      dacc(q, keep(v, wA));
    }
  }
  s.n = n;
  s.d = dsum(d);
  s.l = dsum(l);
  s.kap = dsum(kap);
  if (vespo_sm) {
    // A dropped response's weights are 0: clamp(ln 0, ln 1e-8, 20) = ln 1e-8 each; NaN for a NaN filter.
    const float f = seq_filter(p, s);
    s.d += f == 1.0f ? dsum(lw) : f != f ? double(f) : double(n) * kVespoLogMin;
  }
  if (q_late) {
    const VF kneg = set1(J.opsm ? opsm_keep(p, s) : 1.0f);
    const VF f = set1(J.seq_mask ? seq_filter(p, s) : 1.0f);
    for (int64_t t = t0; t < t1; t += kLanes) {
      const int64_t room = J.T - t;
      VM v = first_lanes(t1 - t);
      if (p.mask) v = mand(v, mask_n(p.mask + t, room));
      const VF A = load_n(p.advantages + t, room);
      VF w = J.k.one;
      if (token_w) {
        VM outside;
        const VF o = load_n(p.old_logprobs + t, room), roll = load_n(p.rollout_logprobs + t, room);
        w = J.seq_mask ? seq_mask_weight(J.k, o, roll, f, outside) : token_weight(J.k, o, roll, outside);
      }
      if (J.opsm) {
        const VF kt = blend(ge(A, J.k.zero), J.k.one, kneg);
        w = token_w ? mul(w, kt) : kt;
      }
      dacc(q, keep(v, mul(w, A)));
    }
  }
  s.q = dsum(q);
  return s;
}

// A raw rollout weight after truncate or mask; `outside`: it was outside [lower, upper] (NaN is).
double correct_weight(const PolicyParams& p, double raw, bool& outside) {
  const bool ok = raw >= p.rollout_lower && raw <= p.rollout_upper;
  outside = !ok;
  if (p.rollout_mode == RolloutMode::Mask) return raw < p.rollout_lower || raw > p.rollout_upper ? 0.0 : raw;  // NaN kept
  return dclamp(raw, p.rollout_lower, p.rollout_upper);
}

// A response's per-response rollout weight (sequence or geometric level), rounded to f32.
float sequence_weight(const PolicyParams& p, const Sums& s, bool& outside) {
  const double nf = dmax(double(s.n), 1.0);
  const double lam = p.rollout_level == RolloutLevel::Geometric ? s.l / nf : s.l;
  const double c = p.rollout_log_clamp;
  return float(correct_weight(p, __builtin_exp(dclamp(lam, -c, c)), outside));
}

// The response's scalars of pass B (f32, each rounded once from f64).
struct Resp {
  float rho, drho;  // gspo: ρ_r = e^{min(log s_r, c_g)} and dρ/dℓ; gmpo: ρ_r = s_r
  float gm;         // gmpo: G·a_r/W̄·P_r, P_r = −Q_r·s_r/(n_r + 1e-8) (no w_r: it is inside Q_r)
  float phi_pos, phi_neg;  // vespo: φ_r for A ≥ 0 and for A < 0
  float c_pg;       // G·a_r/W̄ (·w_r for a per-response weight)
  float u_w;        // 1/W̄ (·w_r)
  float c_kl;       // β·G_kl·a^kl_r
  float c_h;        // −c_H·G_H·a^H_r
  float kneg;       // the off-policy mask's keep factor of the tokens with A < 0 (1, 0 or NaN), else 1
  float filt;       // sequence-mask: the response's filter (1, 0 or NaN), else 1
};

// Also adds a per-response rollout weight's statistics to `part` (nonempty responses only).
Resp response_scalars(const Job& J, const Sums& s, Part& part) {
  const PolicyParams& p = *J.p;
  const Scales& S = J.s;
  Resp q{};
  const double nf = dmax(double(s.n), 1.0);
  q.kneg = J.opsm ? opsm_keep(p, s) : 1.0f;
  q.filt = J.seq_mask ? seq_filter(p, s) : 1.0f;
  if (p.loss == PolicyLossKind::Gspo) {
    const double log_s = s.d / nf;
    const double c = p.gspo_log_clamp;
    q.rho = float(__builtin_exp(log_s > c ? c : log_s));  // NaN kept
    q.drho = log_s > c ? 0.0f : q.rho;  // (NaN passes, as every derivative mask)
  }
  double w = 1.0;
  const bool seq_w = p.has_rollout && p.rollout_level != RolloutLevel::Token;
  if (seq_w) {
    bool outside = false;
    const float wf = sequence_weight(p, s, outside);
    w = wf;
    if (s.n > 0) {
      part.sum[kSWeight] += w;
      part.sum[kSWeightSq] += w * w;
      part.count[kCWeights] += 1;
      part.count[kCWeightsOut] += outside ? 1 : 0;
    }
  }
  double a = 1.0;
  if (p.aggregation == Aggregation::SeqMeanTokenMean)
    a = p.seq_clamp1 ? 1.0 / nf : 1.0 / (double(s.n) + 1e-8);  // TRL's max(n, 1), else verl's n + 1e-8
  if (p.loss == PolicyLossKind::Gmpo) {
    const double n_eps = double(s.n) + 1e-8;
    const double s_r = __builtin_exp(s.d / n_eps);  // no clamp; NaN kept
    const double Q = seq_w ? w * s.q : s.q;         // Σ w·k·A (w_r·Σ k·A for a per-response weight)
    q.rho = float(s_r);
    q.gm = float(S.g * a * S.inv_wbar * (-Q * s_r / n_eps));
  }
  if (p.loss == PolicyLossKind::Vespo) {
    const double log_w = dclamp(s.d, kVespoLogMin, kVespoClamp);  // NaN kept
    const double W = __builtin_exp(log_w);
    const auto phi = [&](double k, double lam) {
      const double f = __builtin_exp(lam + k * log_w - lam * W);
      return float(f > kF32Max ? 0.0 : f);  // (TRL's f32 +Inf, nan_to_num: 0; NaN kept)
    };
    q.phi_pos = phi(p.vespo_k_pos, p.vespo_lambda_pos);
    q.phi_neg = phi(p.vespo_k_neg, p.vespo_lambda_neg);
    w = 1.0;  // (the weights are inside W_r, never a factor of L; their statistics are counted above)
  }
  const double a_kl = p.kl_token_mean ? 1.0 : a;
  const double a_h = p.entropy_token_mean ? 1.0 : a;
  q.c_pg = float(S.g * a * S.inv_wbar * w);
  q.u_w = float(S.inv_wbar * w);
  q.c_kl = float(p.kl_coef * S.g_kl * a_kl);
  q.c_h = float(-p.entropy_coef * S.g_h * a_h);
  return q;
}

// ------------------------------------------------------------------------------------ pass B
// Pass B's per-response scalars as lane vectors (each lane its own response's).
struct Coef {
  VF c_pg, u_w, c_kl, c_h, rho, drho, gm, phi_pos, phi_neg, kneg, filt;
};
inline Coef coef_of(const Resp& q) {
  return {set1(q.c_pg), set1(q.u_w),     set1(q.c_kl),    set1(q.c_h),  set1(q.rho), set1(q.drho),
          set1(q.gm),   set1(q.phi_pos), set1(q.phi_neg), set1(q.kneg), set1(q.filt)};
}
// The lanes of m take q's scalars (gspo's ratio and dρ/dℓ, gmpo's ratio and gradient, vespo's φ too; the
// off-policy mask's and sequence-mask's factors, 1 when off).
template <int L>
inline void blend_coef(VM m, const Resp& q, Coef& c) {
  c.c_pg = blend(m, set1(q.c_pg), c.c_pg);
  c.u_w = blend(m, set1(q.u_w), c.u_w);
  c.c_kl = blend(m, set1(q.c_kl), c.c_kl);
  c.c_h = blend(m, set1(q.c_h), c.c_h);
  c.kneg = blend(m, set1(q.kneg), c.kneg);
  c.filt = blend(m, set1(q.filt), c.filt);
  if (L == kGspo || L == kGmpo) c.rho = blend(m, set1(q.rho), c.rho);
  if (L == kGspo) c.drho = blend(m, set1(q.drho), c.drho);
  if (L == kGmpo) c.gm = blend(m, set1(q.gm), c.gm);
  if (L == kVespo) {
    c.phi_pos = blend(m, set1(q.phi_pos), c.phi_pos);
    c.phi_neg = blend(m, set1(q.phi_neg), c.phi_neg);
  }
}


// The f32 lane sums of pass B and their f64 lanes.
struct Sum {
  VF f;
  VD d;
};
inline void flush(Sum& s) {
  dacc(s.d, s.f);
  s.f = zero();
}

template <int L, int K, int Rl>
void tokens_item(void* ctx, int64_t item, int) {
  Job& J = *static_cast<Job*>(ctx);
  const PolicyParams& p = *J.p;
  const Consts& k = J.k;
  const int32_t* ro = p.response_offsets;
  const int64_t r0 = item * J.block, r1 = imin(r0 + J.block, J.R);
  const int64_t T0 = ro[r0], T1 = ro[r1];  // the item's tokens
  const bool has_ent = p.entropy != nullptr;
  Part part = part_empty();
  // Per response: pass A and the scalars of pass B (kept only where they differ between responses).
  const Resp same = response_scalars(J, Sums{0, 0.0, 0.0, 0.0, 0.0}, part);
  Resp resp[kBlock];
  for (int64_t r = r0; r < r1; ++r) {
    const int64_t t0 = ro[r], t1 = ro[r + 1];
    const Sums sums = J.pass_a ? response_sums(J, t0, t1) : Sums{t1 - t0, 0.0, 0.0, 0.0, 0.0};
    part.count[kCTokens] += sums.n;
    part.count[kCSequences] += sums.n > 0 ? 1 : 0;
    if (J.per_response) resp[r - r0] = response_scalars(J, sums, part);
  }
  Sum acc[kNumSums];  // per lane, valid lanes only; the counts are popcounts of lane masks
  for (Sum& a : acc) a = Sum{zero(), dzero()};
  VF rmin = k.inf, rmax = k.ninf;
  int pending = 0;
  Coef c = coef_of(same);
  int64_t r = r0;  // the response of lane 0
  for (int64_t t = T0; t < T1; t += kLanes) {
    if (J.per_response) {
      // Each lane takes its response's scalars: lane 0's, then each response starting in the vector
      // from its first lane on (an empty one is overwritten by the next).
      while (ro[r + 1] <= t) ++r;
      c = coef_of(resp[r - r0]);
      for (int64_t n = r + 1; n < r1 && ro[n] < t + kLanes; ++n)
        blend_coef<L>(ge(load(kIota), set1(float(ro[n] - t))), resp[n - r0], c);
    }
    const int64_t room = J.T - t;
    VM v = first_lanes(T1 - t);
    if (p.mask) v = mand(v, mask_n(p.mask + t, room));
    const VF l = load_n(p.logprobs + t, room);
    const VF o = load_n(p.old_logprobs + t, room);
    const VF A = load_n(p.advantages + t, room);
    const VF nA = mul(k.neg1, A);
    // The ratio and dρ/dℓ; the KL bias correction's dρ_kl (dρ, but for vespo, whose dρ only it uses).
    VF rho, drho, kl_stat, drho_kl = k.zero;
    VM r_in = mask_of(false);  // the KL bias correction: Δ within its clamp, not NaN (dρ_kl = ρ there)
    if (L == kGspo || L == kGmpo) {
      rho = c.rho;
      drho = c.drho;        // (gmpo: unused)
      kl_stat = sub(o, l);  // −Δ, unclamped
      drho_kl = drho;       // (the KL bias correction: refused for gspo and gmpo by the API)
    } else if (L == kVespo) {
      const VF delta = sub(l, o);
      const VF dc = vclamp(delta, k.nv_clamp, k.v_clamp);  // a fixed ±20, not c_Δ
      rho = exp_e(dc);
      drho = k.zero;  // (unused: φ is a stop-gradient)
      kl_stat = mul(k.neg1, dc);
      if (K != kNoKl && J.kl_bc) {
        r_in = mand(ge(delta, k.nv_clamp), le(delta, k.v_clamp));
        drho_kl = keep(not_outside(delta, k.nv_clamp, k.v_clamp), rho);
      }
    } else {
      const VF delta = sub(l, o);
      const VF dc = vclamp(delta, k.nlclamp, k.lclamp);
      rho = exp_e(dc);
      drho = keep(not_outside(delta, k.nlclamp, k.lclamp), rho);  // bounds included (torch.clamp)
      kl_stat = mul(k.neg1, dc);
      if (K != kNoKl && J.kl_bc) {
        r_in = mand(ge(delta, k.nlclamp), le(delta, k.lclamp));
        drho_kl = drho;
      }
    }
    // The surrogate L and ∂L/∂ℓ.
    VF Lt, dL;
    VM clipped = mask_of(false), low = mask_of(false);
    if (L == kPpo || L == kGspo) {
      const VM capped = mandnot(mask_of(true), gt(rho, k.delta));  // NaN: u1 = NaN, never −A·δ
      const VF u1 = mul(nA, blend(capped, rho, k.delta));
      const VM in_band = mand(ge(rho, k.lo), le(rho, k.hi));
      const VF u2 = mul(nA, vclamp(rho, k.lo, k.hi));
      clipped = gt(u2, u1);
      Lt = blend(clipped, u2, u1);
      dL = keep(mor(mand(clipped, in_band), mandnot(capped, clipped)), mul(nA, drho));
      if (L == kPpo) {
        const VF bound = mul(nA, k.dual);
        low = mand(lt(A, k.zero), gt(Lt, bound));
        Lt = blend(low, bound, Lt);
        dL = blend(low, k.zero, dL);
      }
    } else if (L == kCispo) {
      const VF wc = blend(k.cispo_cap, clamp_hi(rho, k.cap), vclamp(rho, k.lo, k.hi));
      clipped = neq(wc, rho);
      dL = mul(mul(k.neg1, wc), A);
      Lt = mul(dL, l);
    } else if (L == kSapo) {
      const VM pos = gt(A, k.zero);
      const VF tau = blend(pos, k.tau_pos, k.tau_neg);
      const VF z = mul(tau, sub(rho, k.one));
      const VF e = exp_e(mul(k.neg1, z));
      const VF s = divide(k.one, add(k.one, e));
      Lt = mul(mul(mul(k.neg1, blend(pos, k.f4_pos, k.f4_neg)), s), A);
      // σ'(z)·dρ/dℓ: s(1 − s)·dρ for z < 0; for z ≥ 0 e^{−z}·s²·ρ (no cancellation in 1 − s as s → 1),
      // e^{−z}·ρ taken as one exponential e^{ln ρ − z} (ln ρ = clamp(Δ) = −kl_stat): e^{−z} alone falls
      // below f32's normal range (exp_e gives 0 there) while the product with ρ ≤ e^20 need not (the cpu
      // fuzz, 2026-11-29, seed 9928477: 0 for −1.43e-38). dρ = 0 outside the clamp stays 0, NaN passes.
      const VM rho_on = mor(neq(drho, k.zero), neq(drho, drho));
      const VF ez_rho = keep(rho_on, exp_e(sub(mul(k.neg1, kl_stat), z)));
      const VF ds = blend(lt(z, k.zero), mul(mul(s, sub(k.one, s)), drho), mul(ez_rho, mul(s, s)));
      dL = mul(mul(set1(-4.0f), ds), A);
    } else if (L == kGmpo) {
      // L = −A·s_r; the policy gradient is the response's G·a_r/W̄·P_r where this token's Δ̂ follows Δ
      // (A > 0 and not Δ > ε_high, or A < 0 and not Δ < −ε_low; a NaN Δ follows), else 0, and a NaN
      // P_r passes. Clipped: A > 0 and Δ outside [−ε_low, ε_high] (NaN is); lower clipped: A < 0 and
      // Δ outside.
      const VF delta = sub(l, o);
      const VM pos = gt(A, k.zero), neg = lt(A, k.zero);
      const VM outside = mandnot(mask_of(true), mand(ge(delta, k.neps_lo), le(delta, k.cap)));
      clipped = mand(pos, outside);
      low = mand(neg, outside);
      const VM follows = mor(mandnot(pos, gt(delta, k.cap)), mandnot(neg, lt(delta, k.neps_lo)));
      Lt = mul(nA, rho);
      dL = keep(mor(follows, neq(c.gm, c.gm)), c.gm);  // the whole policy term of gradLogprobs
    } else if (L == kVespo) {
      // L = −φ·A·ℓ, φ = φ_+ where A ≥ 0, else φ_− (a NaN A too); never clipped.
      const VF phi = blend(ge(A, k.zero), c.phi_pos, c.phi_neg);
      dL = mul(mul(k.neg1, phi), A);
      Lt = mul(dL, l);
    } else {  // reinforce
      Lt = mul(nA, l);
      dL = nA;
    }
    // Rollout weight and the off-policy mask's keep factor: the policy term's coefficients of the
    // gradient and of tokenLoss, from its weight w·k (vespo: k; gmpo's gradient: inside Q_r).
    VF g_pg = c.c_pg, t_pg = c.u_w, w = k.one;
    VM outside = mask_of(false);
    if (Rl == kRollToken) {
      const VF roll = load_n(p.rollout_logprobs + t, room);
      w = J.seq_mask ? seq_mask_weight(k, o, roll, c.filt, outside) : token_weight(k, o, roll, outside);
    }
    const bool weighted = Rl == kRollToken && L != kVespo;  // (vespo's weights are inside W_r: only their statistics here)
    if (J.opsm) {
      const VF kt = blend(ge(A, k.zero), k.one, c.kneg);  // (a NaN A: the response's factor)
      const VF wk = weighted ? mul(w, kt) : kt;
      g_pg = mul(c.c_pg, wk);
      t_pg = mul(wk, c.u_w);
    } else if (weighted) {
      g_pg = mul(c.c_pg, w);
      t_pg = mul(w, c.u_w);
    }
    VF g = L == kGmpo ? dL : mul(g_pg, dL);  // (gmpo's w is inside Q_r)
    VF contrib = mul(g_pg, Lt);
    VF tl = mul(t_pg, Lt);
    // KL: its value v and dv/dℓ.
    VF kv = k.zero;
    if (K != kNoKl) {
      const VF x = sub(l, load_n(p.ref_logprobs + t, room));
      VF dv;
      VM k3_plain = mask_of(false);  // k3 within both clamps: ∂KL = −(e^y − 1), KL = e^y − y − 1
      if (K == kK1) {
        kv = x;
        dv = k.one;
      } else if (K == kAbs) {
        kv = blend(lt(x, k.zero), mul(k.neg1, x), x);  // |x|, NaN kept
        dv = blend(gt(x, k.zero), k.one, blend(lt(x, k.zero), k.neg1, k.zero));
      } else if (K == kK2) {
        kv = mul(mul(set1(0.5f), x), x);
        dv = x;
      } else {  // k3
        const VF y = mul(k.neg1, x);
        const VF yc = vclamp(y, k.nkl_in, k.kl_in);
        VF em1;
        kv = k3_of(yc, em1);
        dv = keep(not_outside(y, k.nkl_in, k.kl_in), mul(k.neg1, em1));
      }
      if (K == kK3) {
        const VF y = mul(k.neg1, x);
        k3_plain = mand(mand(ge(y, k.nkl_in), le(y, k.kl_in)), mand(ge(kv, k.nkl_val), le(kv, k.kl_val)));
        dv = keep(not_outside(kv, k.nkl_val, k.kl_val), dv);
        kv = vclamp(kv, k.nkl_val, k.kl_val);
      } else {
        const VM out = mandnot(k.kl_vclamp, not_outside(kv, k.nkl_val, k.kl_val));
        dv = blend(out, k.zero, dv);
        kv = blend(k.kl_vclamp, vclamp(kv, k.nkl_val, k.kl_val), kv);
      }
      dv = blend(mor(k.kl_st, neq(x, x)), x, dv);  // (a NaN x: a NaN derivative, every estimator)
      if (J.kl_bc) {  // KL·ρ, differentiated through both factors (dv from the uncorrected value)
        // Δ within its clamp (dρ = ρ): ρ·(∂KL + KL), the sum first (abs's x + |x| = 0 is 0, not the
        // rounding of one of two products); k3 within its clamps: ρ·x, as ∂KL + KL = −(e^y − 1) +
        // e^y − y − 1 = −y = x exactly (their f32 sum cancels two terms of size e^y: |x| = 10 leaves 3
        // digits). Elsewhere (dρ = 0, or NaN) the product rule as written.
        VF dbc = blend(r_in, mul(rho, add(dv, kv)), fmadd(kv, drho_kl, mul(dv, rho)));
        if (K == kK3) dbc = blend(mand(mandnot(k3_plain, k.kl_st), r_in), mul(rho, x), dbc);
        dv = dbc;
        kv = mul(kv, rho);
      }
      g = fmadd(c.c_kl, dv, g);
      contrib = fmadd(c.c_kl, kv, contrib);
      tl = fmadd(k.beta, kv, tl);
    }
    VF h = k.zero;
    if (has_ent) {
      h = load_n(p.entropy + t, room);
      contrib = fmadd(c.c_h, h, contrib);
      tl = fnmadd(k.ent_coef, h, tl);
    }
    // The outputs: whole vectors but the item's last (the header's "Stores").
    const int64_t out_room = T1 - t;
    store_n(p.grad + t, keep(v, g), out_room);
    if (has_ent) store_n(p.grad_entropy + t, keep(v, c.c_h), out_room);
    if (p.token_loss) store_n(p.token_loss + t, keep(v, tl), out_room);
    // The sums, valid lanes only.
    acc[kSLoss].f = add(acc[kSLoss].f, keep(v, contrib));
    acc[kSPpoKl].f = add(acc[kSPpoKl].f, keep(v, kl_stat));
    acc[kSRatio].f = add(acc[kSRatio].f, keep(v, rho));
    rmin = clamp_hi(rmin, blend(v, rho, k.inf));  // NaN ratios: found through rsum at the end
    rmax = clamp_lo(rmax, blend(v, rho, k.ninf));
    if (L == kPpo || L == kGspo || L == kCispo || L == kGmpo)
      part.count[kCClip] += popcount(mand(v, clipped));
    if (L == kPpo || L == kGmpo) part.count[kCLower] += popcount(mand(v, low));
    if (K != kNoKl) acc[kSKl].f = add(acc[kSKl].f, keep(v, kv));
    if (has_ent) acc[kSEnt].f = add(acc[kSEnt].f, keep(v, h));
    if (Rl == kRollToken) {
      acc[kSWeight].f = add(acc[kSWeight].f, keep(v, w));
      acc[kSWeightSq].f = add(acc[kSWeightSq].f, keep(v, mul(w, w)));
      part.count[kCWeightsOut] += popcount(mand(v, outside));
    }
    if (++pending == kFlush) {
      pending = 0;
      for (Sum& a : acc) flush(a);
    }
  }
  for (int i = 0; i < kNumSums; ++i) {
    flush(acc[i]);
    part.sum[i] += dsum(acc[i].d);
  }
  if (Rl == kRollToken) part.count[kCWeights] = part.count[kCTokens];
  alignas(32) float mn[kLanes], mx[kLanes];
  store(mn, rmin);
  store(mx, rmax);
  for (int i = 0; i < kLanes; ++i) {
    if (mn[i] < part.ratio_min) part.ratio_min = mn[i];
    if (mx[i] > part.ratio_max) part.ratio_max = mx[i];
  }
  J.parts[item] = part;
}

// One of the 105 instantiations (the header's CHOICES).
template <int L, int K>
ItemFn pick_rollout(const PolicyParams& p) {
  if (!p.has_rollout) return tokens_item<L, K, kRollNone>;
  return p.rollout_level == RolloutLevel::Token ? tokens_item<L, K, kRollToken> : tokens_item<L, K, kRollSeq>;
}
template <int L>
ItemFn pick_kl(const PolicyParams& p) {
  if (!p.has_kl) return pick_rollout<L, kNoKl>(p);
  switch (p.kl_estimator) {
    case KlEstimator::K1:
      return pick_rollout<L, kK1>(p);
    case KlEstimator::Abs:
      return pick_rollout<L, kAbs>(p);
    case KlEstimator::K2:
      return pick_rollout<L, kK2>(p);
    default:
      return pick_rollout<L, kK3>(p);
  }
}
ItemFn pick(const PolicyParams& p) {
  switch (p.loss) {
    case PolicyLossKind::Ppo:
      return pick_kl<kPpo>(p);
    case PolicyLossKind::Gspo:
      return pick_kl<kGspo>(p);
    case PolicyLossKind::Cispo:
      return pick_kl<kCispo>(p);
    case PolicyLossKind::Sapo:
      return pick_kl<kSapo>(p);
    case PolicyLossKind::Gmpo:
      return pick_kl<kGmpo>(p);
    case PolicyLossKind::Vespo:
      return pick_kl<kVespo>(p);
    default:
      return pick_kl<int(PolicyLossKind::Reinforce)>(p);
  }
}

// ------------------------------------------------------------------------------------ counts and scales
// The counts the scales need (a first pass where the host does not know them): n_tok, n_seq, and the
// rollout weights' sum and count (to normalise them).
void counts_item(void* ctx, int64_t item, int) {
  Job& J = *static_cast<Job*>(ctx);
  const PolicyParams& p = *J.p;
  const int32_t* ro = p.response_offsets;
  const int64_t r0 = item * J.block, r1 = imin(r0 + J.block, J.R);
  Part part = part_empty();
  const bool weights = p.has_rollout && p.rollout_normalize;
  const bool token_w = weights && p.rollout_level == RolloutLevel::Token;
  float filt[kBlock];  // sequence-mask: each response's filter
  for (int64_t r = r0; r < r1; ++r) {
    const Sums s =
        J.pass_a ? response_sums(J, ro[r], ro[r + 1], true) : Sums{ro[r + 1] - ro[r], 0.0, 0.0, 0.0, 0.0};
    part.count[kCTokens] += s.n;
    part.count[kCSequences] += s.n > 0 ? 1 : 0;
    if (token_w && J.seq_mask) filt[r - r0] = seq_filter(p, s);
    if (weights && !token_w && s.n > 0) {
      bool outside;
      part.sum[kSWeight] += sequence_weight(p, s, outside);
      part.count[kCWeights] += 1;
    }
  }
  if (token_w) {
    // The token weights' sum as pass B forms it (the same lanes and flushes: the same bits).
    Sum wsum{zero(), dzero()};
    int pending = 0;
    int64_t r = r0;  // the response of lane 0
    for (int64_t t = ro[r0]; t < ro[r1]; t += kLanes) {
      const int64_t room = J.T - t;
      VM v = first_lanes(ro[r1] - t);
      if (p.mask) v = mand(v, mask_n(p.mask + t, room));
      VM outside;
      const VF o = load_n(p.old_logprobs + t, room), roll = load_n(p.rollout_logprobs + t, room);
      VF w;
      if (J.seq_mask) {
        // Each lane its response's filter, as pass B blends its scalars.
        while (ro[r + 1] <= t) ++r;
        VF f = set1(filt[r - r0]);
        for (int64_t n = r + 1; n < r1 && ro[n] < t + kLanes; ++n)
          f = blend(ge(load(kIota), set1(float(ro[n] - t))), set1(filt[n - r0]), f);
        w = seq_mask_weight(J.k, o, roll, f, outside);
      } else {
        w = token_weight(J.k, o, roll, outside);
      }
      wsum.f = add(wsum.f, keep(v, w));
      if (++pending == kFlush) {
        pending = 0;
        flush(wsum);
      }
    }
    flush(wsum);
    part.sum[kSWeight] = dsum(wsum.d);
    part.count[kCWeights] = part.count[kCTokens];
  }
  J.parts[item] = part;
}

Part fold(const Part* parts, int64_t n) {
  Part a = part_empty();
  for (int64_t i = 0; i < n; ++i) {
    const Part& b = parts[i];
    for (int k = 0; k < kNumSums; ++k) a.sum[k] += b.sum[k];
    for (int k = 0; k < kNumCounts; ++k) a.count[k] += b.count[k];
    if (b.ratio_min < a.ratio_min) a.ratio_min = b.ratio_min;
    if (b.ratio_max > a.ratio_max) a.ratio_max = b.ratio_max;
  }
  return a;
}

// The aggregation's scales from the counts (the host's where it gave them).
Scales scales_of(const PolicyParams& p, const Part& c) {
  const double n_tok = dmax(p.tokens >= 0 ? p.tokens : double(c.count[kCTokens]), 1.0);
  const double n_seq = dmax(p.sequences >= 0 ? p.sequences : double(c.count[kCSequences]), 1.0);
  Scales s;
  s.g_tm = p.ranks / n_tok;
  switch (p.aggregation) {
    case Aggregation::TokenMean:
      s.g = s.g_tm;
      break;
    case Aggregation::TokenSum:
      s.g = p.ranks;
      break;
    case Aggregation::SeqMeanTokenSumNorm:
      s.g = p.norm_by_sequences ? p.ranks / (n_seq * p.scale_factor) : 1.0 / p.scale_factor;
      break;
    default:
      s.g = p.ranks / n_seq;
  }
  s.g_kl = p.kl_token_mean ? s.g_tm : s.g;
  s.g_h = p.entropy_token_mean ? s.g_tm : s.g;
  s.inv_wbar = 1.0;
  if (p.has_rollout && p.rollout_normalize && c.count[kCWeights] > 0) {
    const double mean = c.sum[kSWeight] / double(c.count[kCWeights]);
    if (mean > 1e-8) s.inv_wbar = 1.0 / mean;
  }
  return s;
}

double mean_of(double x, int64_t n) { return x / double(n); }  // 0/0: NaN, as the reference

void write_result(const PolicyParams& p, const Part& red) {
  p.loss_out[0] = float(red.sum[kSLoss]);
  const double* S = red.sum;
  const int64_t* C = red.count;
  const int64_t n = C[kCTokens], nw = C[kCWeights];
  const double nan = __builtin_nan("");
  const bool any_nan_ratio = S[kSRatio] != S[kSRatio];
  double st[kNumStats];
  st[0] = mean_of(double(C[kCClip]), n);
  st[1] = mean_of(double(C[kCLower]), n);
  st[2] = mean_of(S[kSPpoKl], n);
  st[3] = p.has_kl ? mean_of(S[kSKl], n) : nan;
  st[4] = p.entropy ? mean_of(S[kSEnt], n) : nan;
  st[5] = n == 0 || any_nan_ratio ? nan : red.ratio_min;
  st[6] = mean_of(S[kSRatio], n);
  st[7] = n == 0 || any_nan_ratio ? nan : red.ratio_max;
  st[8] = p.has_rollout ? mean_of(S[kSWeight], nw) : nan;
  st[9] = p.has_rollout ? mean_of(double(C[kCWeightsOut]), nw) : nan;
  st[10] = p.has_rollout ? S[kSWeight] * S[kSWeight] / S[kSWeightSq] : nan;
  st[11] = double(n);
  st[12] = double(C[kCSequences]);
  for (int i = 0; i < kNumStats; ++i) p.stats[i] = float(st[i]);
}

}  // namespace

// ------------------------------------------------------------------------------------------ entry
Report policy_loss(const PolicyParams& p, Pool* pool) {
  const int64_t R = p.responses;
  const int64_t block = R <= 64 * 8 ? 8 : R >= 64 * kBlock ? kBlock : (R + 63) / 64;
  const int64_t items = (R + block - 1) / block;
  Part* parts = static_cast<Part*>(malloc(size_t(items > 0 ? items : 1) * sizeof(Part)));
  if (!parts) return Report{kNoMemory, 0, 0};
  Job J{};
  J.p = &p;
  J.T = p.response_offsets[R];
  J.R = R;
  J.block = block;
  J.need_d = p.loss == PolicyLossKind::Gspo || p.loss == PolicyLossKind::Gmpo ||
             p.loss == PolicyLossKind::Vespo;
  J.opsm = p.has_opsm;
  J.seq_mask = p.has_rollout && p.rollout_mode == RolloutMode::SequenceMask;  // (token level: the API's rule)
  J.kl_bc = p.has_kl && p.kl_bias_correction;
  J.need_l = p.has_rollout && (p.rollout_level != RolloutLevel::Token || J.seq_mask);
  J.need_q = p.loss == PolicyLossKind::Gmpo;
  J.pass_a = J.need_d || J.need_l || J.opsm || p.mask != nullptr;
  J.per_response = J.need_d || J.need_l || J.opsm || p.aggregation == Aggregation::SeqMeanTokenMean;
  J.k = consts_of(p);
  J.parts = parts;
  const bool needs_tokens = p.aggregation == Aggregation::TokenMean || (p.has_kl && p.kl_token_mean) ||
                            (p.entropy != nullptr && p.entropy_token_mean);
  const bool needs_sequences = p.aggregation == Aggregation::SeqMeanTokenSum ||
                               p.aggregation == Aggregation::SeqMeanTokenMean ||
                               (p.aggregation == Aggregation::SeqMeanTokenSumNorm && p.norm_by_sequences);
  Part counts = part_empty();
  if ((needs_tokens && p.tokens < 0) || (needs_sequences && p.sequences < 0) ||
      (p.has_rollout && p.rollout_normalize)) {
    pool_run(pool, items, counts_item, &J);
    counts = fold(parts, items);
  }
  J.s = scales_of(p, counts);
  pool_run(pool, items, pick(p), &J);
  write_result(p, fold(parts, items));
  free(parts);
  return Report{kOk, 0, 0};
}

}  // namespace GK_CPU_ISA
}  // namespace cpu
}  // namespace gk
