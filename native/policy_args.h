// policyLoss's option keys, read the same way for both addons: ops_cuda.cc fills gk::PolicyParams
// (native/cuda/policy.cuh), ops_cpu.cc gk::cpu::PolicyParams (native/cpu/kernels.h); the two structs
// share these fields' names (each keeps its own number type: f32 on cuda, f64 on cpu). The TypeScript
// side is one interface, NativePolicyLossArgsOf (src/backends/policy-native.ts). The KL keys come
// together with klEstimator (refLogprobs first), the rollout keys with rolloutLevel; without them those
// keys are unknown (Done() refuses them). rolloutLogprobs and offPolicyThreshold are read when present.
// tokens / sequences absent: counted by the kernels. `tensor(key)` reads refLogprobs and rolloutLogprobs as the caller's addon holds them
// (a device pointer, a host array); the other tensors and the outputs are the caller's to read.
#pragma once

#include "args.h"
#include "enums.h"

namespace gkn {

template <class P, class Tensor>
void PolicyOptionsOf(Args& a, P& p, Tensor tensor) {
  using Num = decltype(p.clip_low);
  auto num = [&](const char* key) { return static_cast<Num>(a.Num(key)); };
  p.loss = static_cast<decltype(p.loss)>(a.Enum("loss", gk::kPolicyLossNames));
  p.clip_low = num("clipLow");
  p.clip_high = num("clipHigh");
  p.dual_clip = num("dualClip");
  p.log_ratio_clamp = num("logRatioClamp");
  p.gspo_log_clamp = num("gspoLogClamp");
  p.delta = num("delta");
  p.cispo_cap = a.Bool("cispoCap");
  p.sapo_tau_pos = num("sapoTauPos");
  p.sapo_tau_neg = num("sapoTauNeg");
  p.vespo_k_pos = num("vespoKPos");
  p.vespo_lambda_pos = num("vespoLambdaPos");
  p.vespo_k_neg = num("vespoKNeg");
  p.vespo_lambda_neg = num("vespoLambdaNeg");
  p.has_kl = a.Has("klEstimator");
  if (p.has_kl) {
    p.kl_estimator = static_cast<decltype(p.kl_estimator)>(a.Enum("klEstimator", gk::kKlEstimatorNames));
    p.ref_logprobs = tensor("refLogprobs");
    p.kl_straight_through = a.Bool("klStraightThrough");
    p.kl_coef = num("klCoef");
    p.kl_input_clamp = num("klInputClamp");
    p.kl_value_clamp = num("klValueClamp");
    p.kl_value_clamp_all = a.Bool("klValueClampAll");
    p.kl_token_mean = a.Enum("klAggregation", gk::kTermAggregationNames) == 1;
    p.kl_bias_correction = a.Bool("klBiasCorrection");
  }
  p.entropy_coef = num("entropyCoef");
  p.entropy_token_mean = a.Enum("entropyAggregation", gk::kTermAggregationNames) == 1;
  // ℓᵛ: with rollout correction, or for the off-policy mask alone (which falls back to ℓ° without it).
  if (a.Has("rolloutLogprobs")) p.rollout_logprobs = tensor("rolloutLogprobs");
  p.has_opsm = a.Has("offPolicyThreshold");
  if (p.has_opsm) p.opsm_threshold = num("offPolicyThreshold");
  p.has_rollout = a.Has("rolloutLevel");
  if (p.has_rollout) {
    p.rollout_level = static_cast<decltype(p.rollout_level)>(a.Enum("rolloutLevel", gk::kRolloutLevelNames));
    p.rollout_mode = static_cast<decltype(p.rollout_mode)>(a.Enum("rolloutMode", gk::kRolloutModeNames));
    p.rollout_lower = num("rolloutLower");
    p.rollout_upper = num("rolloutUpper");
    p.rollout_normalize = a.Bool("rolloutNormalize");
    p.rollout_log_clamp = num("rolloutLogClamp");
  }
  p.aggregation = static_cast<decltype(p.aggregation)>(a.Enum("aggregation", gk::kAggregationNames));
  p.seq_clamp1 = a.Enum("seqTokenDivisor", gk::kSeqTokenDivisorNames) == 1;
  p.norm_by_sequences = a.Bool("normBySequences");
  p.scale_factor = num("scaleFactor");
  p.ranks = num("ranks");
  p.tokens = a.OptNum("tokens", -1);
  p.sequences = a.OptNum("sequences", -1);
}

}  // namespace gkn
