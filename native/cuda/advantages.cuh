// Launchers of the advantages family (kernels in advantages.cu): group-relative advantages for every
// estimator of docs/ESTIMATORS.md, expandToTokens, and whiten.
#pragma once

#include "common.cuh"

namespace gk {

// Same names and order as src/backends/cuda/advantages.ts.
// Same order as ESTIMATORS, SCALE_KINDS and SINGLETON_POLICIES in src/backends/backend.ts.
enum class Estimator : int { Grpo = 0, DrGrpo, Rloo, Opo, GrpoPassk, Gpg, ReinforcePpBaseline };
enum class StdKind : int { Sample = 0, Population = 1 };
enum class ScaleKind : int { Group = 0, Batch = 1, None = 2 };
enum class Singleton : int { Zero = 0, Mean0 = 1, Nan = 2 };
enum class NanRewards : int { Propagate = 0, Unscorable = 1 };
// The names of each enum's values, in order: the TypeScript lists of src/backends/backend.ts
// (ESTIMATORS, STD_KINDS, SCALE_KINDS, SINGLETON_POLICIES, NAN_REWARD_POLICIES). native/addon.cc converts strings with them;
// test/cuda/enums.test.ts checks them against TypeScript's and the WGSL's.
inline const std::vector<std::string> kEstimatorNames = {"grpo", "dr_grpo", "rloo", "opo",
                                                         "grpo_passk", "gpg", "reinforce_pp_baseline"};
inline const std::vector<std::string> kStdKindNames = {"sample", "population"};
inline const std::vector<std::string> kScaleKindNames = {"group", "batch", "none"};
inline const std::vector<std::string> kSingletonNames = {"zero", "mean0", "nan"};
inline const std::vector<std::string> kNanRewardNames = {"propagate", "unscorable"};

struct AdvantagesParams {
  const float* rewards = nullptr;  // [R]
  // Groups: either group_size > 0 (num_groups groups of group_size members: nothing to upload, the
  // kernel computes the offsets) or group_offsets (host [G+1], uploaded; uniform offsets are detected
  // and take the group_size path).
  int group_size = 0;
  int64_t num_groups = 0;
  std::vector<int32_t> group_offsets;     // host [G+1] when group_size is 0
  std::vector<int32_t> response_offsets;  // host [R+1]; required by opo and reinforce_pp_baseline
  Estimator estimator = Estimator::Grpo;
  StdKind std_kind = StdKind::Sample;
  float eps = 1e-6f;
  ScaleKind scale = ScaleKind::Group;
  Singleton singleton = Singleton::Zero;
  NanRewards nan_rewards = NanRewards::Propagate;  // 'unscorable': TRL's nan-aware statistics (advantages.cu)
  // reinforce_pp_baseline's whitening (src/backends/backend.ts WhitenVarianceEps).
  float whiten_mask_eps = 0.f;
  bool whiten_sample = true;   // Bessel over the valid count
  bool whiten_clamp = false;   // rsqrt(max(var, 1e-8)) instead of rsqrt(var + 1e-8)
  float* advantages = nullptr;  // [R], or [Ttotal] for reinforce_pp_baseline
  float* mean = nullptr;        // [G]
  float* std = nullptr;         // [G]
  uint8_t* degenerate = nullptr;  // [G]
};
Status launch_advantages(const AdvantagesParams& p, const LaunchEnv& env, Scratch& scratch);

struct ExpandParams {
  const float* values = nullptr;          // [R]
  std::vector<int32_t> response_offsets;  // host [R+1]
  float* out = nullptr;                   // [Ttotal]
};
Status launch_expand_to_tokens(const ExpandParams& p, const LaunchEnv& env, Scratch& scratch);

struct WhitenParams {
  const float* values = nullptr;  // [n]
  const uint8_t* mask = nullptr;  // [n] or null (every element valid)
  int64_t n = 0;
  float mask_eps = 0.f;
  bool sample = true;  // 'sample' (n/(n−1)) or 'population' variance
  bool clamp = false;  // varianceEps 'clamp' instead of 'add'
  bool keep_mean = false;
  float* out = nullptr;  // [n]
};
Status launch_whiten(const WhitenParams& p, const LaunchEnv& env, Scratch& scratch);

}  // namespace gk
