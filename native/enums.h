// The enums that cross the native boundary as strings, shared by the CUDA and the CPU kernels (no CUDA
// or Node header here). Each name table lists its enum's values in order: the TypeScript lists of
// src/backends/backend.ts (ESTIMATORS, STD_KINDS, SCALE_KINDS, SINGLETON_POLICIES, NAN_REWARD_POLICIES,
// THR_PRECISIONS, REWEIGHT_MODES and policyLoss's below). native/ops_cuda.cc and ops_cpu.cc convert
// strings with them, native/addon.cc exports them (enums()); test/cuda/enums.test.ts checks them against
// TypeScript's and the WGSL's.
#pragma once

#include <string>
#include <vector>

#include "enum_values.h"

namespace gk {

// The enums themselves: enum_values.h (plain enums, which the per-ISA cpu kernels may include).

inline const std::vector<std::string> kEstimatorNames = {"grpo", "dr_grpo", "rloo", "opo",
                                                         "grpo_passk", "gpg", "reinforce_pp_baseline"};
inline const std::vector<std::string> kStdKindNames = {"sample", "population"};
inline const std::vector<std::string> kScaleKindNames = {"group", "batch", "none"};
inline const std::vector<std::string> kSingletonNames = {"zero", "mean0", "nan"};
inline const std::vector<std::string> kNanRewardNames = {"propagate", "unscorable"};
inline const std::vector<std::string> kThrPrecisionNames = {"f32", "tf32"};
inline const std::vector<std::string> kReweightModeNames = {"thr", "thr-only", "nthr"};

// Same names and order as the TypeScript lists of src/backends/backend.ts (POLICY_LOSSES,
// KL_ESTIMATORS, ROLLOUT_LEVELS, ROLLOUT_MODES, AGGREGATIONS, TERM_AGGREGATIONS, SEQ_TOKEN_DIVISORS);
// native/policy_args.h converts the strings with these tables (for ops_cuda.cc and ops_cpu.cc),
// test/cuda/enums.test.ts checks them.
inline const std::vector<std::string> kPolicyLossNames = {"ppo", "gspo", "cispo", "sapo", "reinforce", "gmpo", "vespo"};
inline const std::vector<std::string> kKlEstimatorNames = {"k1", "abs", "k2", "k3"};
inline const std::vector<std::string> kRolloutLevelNames = {"token", "sequence", "geometric"};
inline const std::vector<std::string> kRolloutModeNames = {"truncate", "mask", "sequence-mask"};
inline const std::vector<std::string> kAggregationNames = {
    "token-mean", "token-sum", "seq-mean-token-sum", "seq-mean-token-mean", "seq-mean-token-sum-norm"};
inline const std::vector<std::string> kTermAggregationNames = {"loss", "token-mean"};
inline const std::vector<std::string> kSeqTokenDivisorNames = {"eps", "clamp1"};

// rolloutRejection: REJECTION_STATISTICS and REJECTION_LEVELS of src/backends/backend.ts.
inline const std::vector<std::string> kRejectionStatisticNames = {"k1", "k2", "k3"};
inline const std::vector<std::string> kRejectionLevelNames = {"token", "seq-sum", "seq-mean", "seq-max"};

}  // namespace gk
