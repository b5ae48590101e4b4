// Launchers of the THR family (kernels in thr.cu): tokenHiddenReward and thrReweight.
// restrictedVocab runs on the host (src/backends/cuda/thr.ts): a sort per group of integer ids.
#pragma once

#include "../enums.h"
#include "common.cuh"

namespace gk {

struct ThrLayoutHost {
  std::vector<int32_t> response_offsets;  // [R+1]
  std::vector<int32_t> group_offsets;     // [G+1]
  std::vector<uint8_t> correct;           // [R], 0/1
  std::vector<uint8_t> degenerate;        // [G], docs/THR.md item 6
};

// ThrPrecision ('f32': 3xTF32 / 2xTF32 split products; 'tf32': one pass; thr.cu, "Numerics"),
// ReweightMode and their name tables: native/enums.h.

// ThrStep (tokenHiddenReward whole, or one of its two halves): native/enums.h.

struct ThrParams {
  ThrLayoutHost layout;
  const void* hidden = nullptr;  // [Ttotal, dim], f32/f16/bf16
  DType hidden_dtype = DType::F32;
  int64_t dim = 0;
  const float* probs = nullptr;        // packed [T_g, K_g] blocks (gatherProbs)
  std::vector<int64_t> probs_offsets;  // host [G+1]
  std::vector<int32_t> vocab_offsets;  // host [G+1] (restrictedVocab offsets)
  const int* token_column = nullptr;   // device [Ttotal]
  // The API's plan (src/api/thr-plan.ts, ThrPlan), host: group g's correct tokens (indices on the packed
  // token axis, responses and tokens in order; none for a degenerate group) are
  // correct_tokens[correct_start[g]..correct_start[g+1]), with their weights w_u (1/|y_r| or 1) rounded
  // once to f32. The launcher checks their sizes and ranges and uploads them.
  std::vector<int32_t> correct_start;   // [G+1]
  std::vector<int32_t> correct_tokens;  // [P]
  std::vector<float> correct_weights;   // [P]
  float beta = 1.f;
  ThrPrecision precision = ThrPrecision::F32;  // 'f32': 3xTF32 / 2xTF32 split products; 'tf32': one pass
  size_t m_budget_bytes = size_t(256) << 20;  // scratch for the M_g of one batch of groups
  bool small_tiles = false;  // test hook: the small tile configuration whatever the device allows (thr.cu)
  // The scores' tiles. 0 auto (2 where it applies), 1 mma.sync (thr_scores_kernel), 2 wgmma
  // (thr_scores_wgmma_kernel), 3 wgmma on truncated operands (its kTrunc), 4 wgmma and M on wgmma too
  // (thr_m_wgmma_kernel, the large configuration only), 5 M on wgmma and the scores on truncated
  // operands, TMA-fed in 'tf32' (thr_scores_tma_kernel), 6 the same with 256-column scores blocks in
  // 'tf32', 7 and 8 paths 5 and 6's scores on tf32-rounded copies of their operands (thr_round_kernel)
  // with M on mma.sync, in 'tf32' (auto's bits; 'f32' runs as auto), 9 and 10 paths 7 and 8 with M as
  // a TMA-fed GEMM on transposed copies (thr_m_tma_kernel; 'tf32'), 11 path 10 with that GEMM in 128 ×
  // 256 tiles (10's bits), 2 to 11 wherever they apply:
  // f32 hidden states with 16-byte aligned rows, a 9.0 device and a build with sm_90a (the emulator's
  // device is one); mma.sync elsewhere.
  int path = 0;
  float* thr = nullptr;  // [Ttotal] (not with Aggregate)
  float* tau = nullptr;  // [G] (not with Aggregate)
  // Aggregate / Score: the stacked M_g of every group, [ΣK_g, dim] f32, group g's rows at
  // vocab_offsets[g] (unpadded rows). Aggregate writes it (degenerate groups' rows 0) and nothing else;
  // Score reads it instead of computing M.
  ThrStep step = ThrStep::Full;
  float* aggregate = nullptr;
};
Status launch_token_hidden_reward(const ThrParams& p, const LaunchEnv& env, Scratch& scratch);

struct ThrReweightParams {
  ThrLayoutHost layout;
  const float* token_advantages = nullptr;  // [Ttotal]
  const float* thr = nullptr;               // [Ttotal]
  const float* tau = nullptr;               // [G]
  ReweightMode mode = ReweightMode::Thr;
  double p = 0.0;
  bool mask = true;
  std::vector<double> eta;  // [G], NTHR's eta_g (the API's ReweightPlan: fixed, or 2·|0.5 − rho_g|)
  float* out = nullptr;  // [Ttotal]
};
Status launch_thr_reweight(const ThrReweightParams& p, const LaunchEnv& env, Scratch& scratch);

}  // namespace gk
