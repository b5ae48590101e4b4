// Launcher of policyLoss (kernels in policy.cu): the policy surrogate, KL penalty, entropy bonus,
// rollout correction and aggregation of POLICY.md, with the exact gradient, in two kernels.
#pragma once

#include <cmath>

#include "../enums.h"
#include "common.cuh"

namespace gk {

// PolicyLossKind, KlEstimator, RolloutLevel, RolloutMode, Aggregation and their name tables (with
// kTermAggregationNames, kSeqTokenDivisorNames): native/enums.h.

// policyLoss's arguments (src/backends/backend.ts PolicyLossArgs; the TypeScript side is
// NativePolicyLossArgs in src/backends/cuda/native.ts, its keys shared with the cpu backend's
// gk::cpu::PolicyParams: native/policy_args.h reads the options of both). "Off" clamps, caps and bounds
// are +Inf.
struct PolicyParams {
  const float* logprobs = nullptr;      // [T]
  const float* old_logprobs = nullptr;  // [T]
  const float* advantages = nullptr;    // [T]
  const float* ref_logprobs = nullptr;  // [T], with has_kl
  const float* rollout_logprobs = nullptr;  // [T], with has_rollout (and for the off-policy mask when given)
  const float* entropy = nullptr;       // [T] or null
  const uint8_t* mask = nullptr;        // [T] or null (every token valid)
  std::vector<int32_t> response_offsets;  // host [R+1], ends at T
  PolicyLossKind loss = PolicyLossKind::Ppo;
  float clip_low = 0.2f, clip_high = 0.2f;  // ε_low, ε_high (gmpo: the band [−ε_low, ε_high] of Δ = ℓ − ℓ°)
  float dual_clip = INFINITY, log_ratio_clamp = 20.f, gspo_log_clamp = 10.f, delta = INFINITY;
  bool cispo_cap = false;
  float sapo_tau_pos = 1.f, sapo_tau_neg = 1.05f;
  float vespo_k_pos = 2.f, vespo_lambda_pos = 3.f, vespo_k_neg = 3.f, vespo_lambda_neg = 2.f;  // vespo's φ
  bool has_kl = false;
  KlEstimator kl_estimator = KlEstimator::K3;
  bool kl_straight_through = false, kl_value_clamp_all = false, kl_token_mean = false;
  bool kl_bias_correction = false;  // TRL's use_bias_correction_kl: KL·ρ_t (token-level ratios)
  float kl_coef = 0.f, kl_input_clamp = 20.f, kl_value_clamp = 10.f;
  float entropy_coef = 0.f;
  bool entropy_token_mean = false;
  bool has_rollout = false;
  RolloutLevel rollout_level = RolloutLevel::Token;
  RolloutMode rollout_mode = RolloutMode::Truncate;
  float rollout_lower = 0.f, rollout_upper = 2.f, rollout_log_clamp = 20.f;
  bool rollout_normalize = false;
  bool has_opsm = false;  // TRL's off-policy sequence mask, threshold δ (κ_r from rollout_logprobs or old)
  float opsm_threshold = 0.f;
  Aggregation aggregation = Aggregation::TokenMean;
  bool seq_clamp1 = false;        // seq-mean-token-mean divides by max(n, 1) (else n + 1e-8)
  bool norm_by_sequences = true;  // seq-mean-token-sum-norm: D/(N_seq·K) (else verl's 1/K)
  float scale_factor = 1.f, ranks = 1.f;
  double tokens = -1, sequences = -1;  // host counts; < 0: counted on the device
  int chunk_responses = 0;             // test hook: responses per block (a multiple of 8); 0: automatic
  int path = 0;                        // test hook: 0 automatic, 1 warp per response, 2 flat (policy.cu;
                                       // refused for gspo, gmpo, vespo and per-response scales)
  int chunk_tokens = 0;                // test hook: the flat path's tokens per block (a multiple of 1024)
  float* loss_out = nullptr;          // [1]
  float* grad = nullptr;              // [T]
  float* grad_entropy = nullptr;      // [T], with entropy
  float* token_loss = nullptr;        // [T] or null
  float* stats = nullptr;             // [13], POLICY_STATS order
};
Status launch_policy_loss(const PolicyParams& p, const LaunchEnv& env, Scratch& scratch);

}  // namespace gk
