// Launchers of the advantages family (kernels in advantages.cu): group-relative advantages for every
// estimator of docs/ESTIMATORS.md, expandToTokens, and whiten.
#pragma once

#include "../enums.h"
#include "common.cuh"

namespace gk {

// Estimator, StdKind, ScaleKind, Singleton, NanRewards and their name tables: native/enums.h.

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
