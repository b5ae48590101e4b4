// Launcher of rolloutRejection (kernels in rejection.cu): verl's rollout rejection sampling
// (`rollout_rs`), the mask of the tokens every criterion keeps and verl's rollout_rs metrics.
#pragma once

#include <cmath>

#include "../enums.h"
#include "common.cuh"

namespace gk {

// RejectionStatistic, RejectionLevel and their name tables: native/enums.h.

// The most criteria one call takes (src/backends/backend.ts REJECTION_MAX_CRITERIA): verl's 11 options.
constexpr int kRejectionMaxCriteria = 11;
// The stats: 2 overall (REJECTION_STATS), then 7 per criterion (REJECTION_CRITERION_STATS).
constexpr int kRejectionStats = 2, kRejectionCriterionStats = 7;

// One resolved criterion (ResolvedRejectionCriterion): a token (level token) or a response (the
// others) passes where lower ≤ s ≤ upper (a NaN s fails).
struct RejectionCriterion {
  RejectionStatistic statistic = RejectionStatistic::K1;
  RejectionLevel level = RejectionLevel::Token;
  float lower = -INFINITY, upper = INFINITY;
};

// rolloutRejection's arguments (src/backends/backend.ts RolloutRejectionArgs; the TypeScript side is
// NativeRolloutRejectionArgs in src/backends/cuda/native.ts).
struct RejectionParams {
  const float* logprobs = nullptr;          // [T] ℓ
  const float* rollout_logprobs = nullptr;  // [T] ℓᵛ
  const uint8_t* mask = nullptr;            // [T] or null (every token valid)
  std::vector<int32_t> response_offsets;    // host [R+1], from 0, ends at T
  std::vector<RejectionCriterion> criteria;  // 1 to kRejectionMaxCriteria, each (statistic, level) once
  int chunk_responses = 0;                  // test hook: responses per block (a multiple of 8); 0: automatic
  uint8_t* mask_out = nullptr;              // [T]
  float* stats = nullptr;                   // [2 + 7·criteria]
};
Status launch_rollout_rejection(const RejectionParams& p, const LaunchEnv& env, Scratch& scratch);

}  // namespace gk
