// Launchers of the LM-head family (kernels in lmhead.cu): linearLogprobs (forward), its backward, the
// vocabulary-sharded online states (of an LM head's shard or of materialised logits) and their merge.
#pragma once

#include "common.cuh"

namespace gk {

// The online softmax state of a row over a vocabulary shard, in the public format (natural log units,
// raw max; src/backends/backend.ts LogprobStates): device arrays of [rows] f32.
struct StateArrays {
  float* max = nullptr;
  float* sum_exp = nullptr;
  float* sum_exp_delta = nullptr;  // null: not computed / not needed
  float* sum_exp_sq = nullptr;
  float* target_logit = nullptr;
  int64_t vocab_start = 0;  // the shard [vocab_start, vocab_end)
  int64_t vocab_end = 0;
};

struct LinearLogprobsParams {
  const void* hidden = nullptr;  // [rows, dim]
  const void* weight = nullptr;  // [vocab, dim] (a shard's rows for states)
  const void* bias = nullptr;    // [vocab] or null, the weight's dtype
  DType dtype = DType::F32;      // hidden, weight and bias
  const int* targets = nullptr;  // [rows], global vocabulary ids
  int64_t rows = 0;
  int64_t dim = 0;
  int64_t vocab = 0;
  int64_t vocab_start = 0;  // states: the shard's first column
  double temperature = 1.0;  // ≥ 2^-126 (the API's bound)
  int ignore_index = -100;
  // Outputs: linearLogprobs (logprobs and lse required) ...
  float* logprobs = nullptr;
  float* lse = nullptr;
  float* entropy = nullptr;
  float* sum_squares = nullptr;
  // ... or a state (linearLogprobStates: states.max non-null). entropy / sum_squares above say which
  // sums the state needs only through states.sum_exp_delta / sum_exp_sq.
  StateArrays states;
  // The forward's tiles. 0 auto (7 where it applies, else 1), 1 the mma.sync tiles (lm_fwd_kernel), 2 the wgmma tiles
  // (lm_fwd_wgmma_kernel), 3 the TMA-fed wgmma tiles (lm_fwd_tma_kernel: the same bits as 2), 4 those with a
  // k-step of MMAs in flight, 5 in 128 × 256 tiles (lm_fwd_tma_wide_kernel), 6 those in clusters of 2 blocks
  // sharing the weight's boxes (the same bits as 3), 7 and 8 those chained (their own bits), 2 to 8 wherever
  // they apply:
  // bf16 / f16 with 16-byte aligned rows, a 9.0 device and a build with sm_90a (the emulator's device
  // is one); the mma.sync tiles elsewhere.
  int path = 0;
  unsigned raster_rows = 0;  // tests: the wide tiles' (5-8) row blocks per group of their block order (0: 16)
};
Status launch_linear_logprobs(const LinearLogprobsParams& p, const LaunchEnv& env, Scratch& scratch, ErrorFlags* flags);

struct LinearLogprobsBackwardParams {
  const void* hidden = nullptr;
  const void* weight = nullptr;
  const void* bias = nullptr;
  DType dtype = DType::F32;
  const int* targets = nullptr;
  const float* lse = nullptr;            // [rows]
  const float* grad_logprobs = nullptr;  // [rows]
  const float* grad_entropy = nullptr;   // [rows] or null
  const float* entropy = nullptr;        // [rows], required with grad_entropy
  int64_t rows = 0;
  int64_t dim = 0;
  int64_t vocab = 0;            // weight rows
  int64_t vocab_start = 0;      // the shard's first row in the head (targets are global ids)
  int64_t target_limit = 0;     // targets must lie in [0, target_limit) (vocab, or 2^31 − 1 for a shard)
  double temperature = 1.0;
  int ignore_index = -100;
  // The gradients, of grad_dtype: F32, or `dtype` (gradDtype 'input': the f32 sums rounded once).
  void* grad_hidden = nullptr;  // [rows, dim]
  void* grad_weight = nullptr;  // [vocab, dim]
  void* grad_bias = nullptr;    // [vocab], with bias
  DType grad_dtype = DType::F32;
  // Tests: row and vocabulary chunk of the backward's G (0: the plan's); multiples of 128.
  int64_t chunk_rows = 0;
  int64_t chunk_vocab = 0;
  int path = 0;  // tests: the tiles, as LinearLogprobsParams::path (3: lm_grad_logits_tma_kernel, lm_gemm_tma_kernel)
  unsigned raster_rows = 0;  // tests: as LinearLogprobsParams::raster_rows
};
Status launch_linear_logprobs_backward(const LinearLogprobsBackwardParams& p, const LaunchEnv& env, Scratch& scratch,
                                       ErrorFlags* flags);

// What the launchers above allocate from Scratch (bytes), and their chunking: the structural memory
// bound (O(tiles in flight), never O(rows·vocab)), exported to the tests through the addon.
struct LmheadPlan {
  int64_t slices = 0;           // forward: vocabulary slices per row (from V)
  int64_t forward_bytes = 0;    // partial states + target logits
  int64_t chunk_rows = 0;       // backward: rows of one G chunk (f32 gradients)
  int64_t input_chunk_rows = 0;  // the same with gradients in the input dtype (half the G budget)
  int64_t chunk_vocab = 0;      // backward: vocabulary columns of one G chunk
  int64_t backward_bytes = 0;   // G (twice: row-major and transposed)
  // The backward with gradients in the input dtype (f16/bf16; = backward_bytes for f32): G, and the
  // f32 accumulators of the sums that run across chunks (lmhead_narrow_acc_floats).
  int64_t backward_input_bytes = 0;
};
LmheadPlan lmhead_plan(int64_t rows, int64_t vocab, int64_t dim, DType dtype);
// Floats of f32 accumulator the backward with f16/bf16 gradients allocates for these chunks: gradHidden's
// rows of a row chunk (chunk_rows × dim) when the vocabulary takes more than one chunk; gradWeight's and
// gradBias's rows of a vocabulary chunk (chunk_vocab × (dim + 1)) when the rows take more than one
// (then the second pass); the larger of the two (the passes run one after the other).
int64_t lmhead_narrow_acc_floats(int64_t rows, int64_t vocab, int64_t dim, int64_t chunk_rows, int64_t chunk_vocab);

// logprobStates over a shard of materialised logits [rows, vocab] (columns [vocab_start, +vocab)).
struct LogprobStatesParams {
  const void* logits = nullptr;
  DType dtype = DType::F32;
  const int* targets = nullptr;
  int64_t rows = 0;
  int64_t vocab = 0;
  double temperature = 1.0;
  int ignore_index = -100;
  StateArrays states;  // vocab_start set; sum_exp_delta / sum_exp_sq non-null when asked for
};
Status launch_logprob_states(const LogprobStatesParams& p, const LaunchEnv& env, Scratch& scratch);

// mergeLogprobStates: states in order (ascending, contiguous shards of [0, vocab)).
struct MergeStatesParams {
  std::vector<StateArrays> states;
  const int* targets = nullptr;
  int64_t rows = 0;
  int64_t vocab = 0;
  double temperature = 1.0;
  int ignore_index = -100;
  float* logprobs = nullptr;
  float* lse = nullptr;
  float* entropy = nullptr;
  float* sum_squares = nullptr;
};
Status launch_merge_states(const MergeStatesParams& p, const LaunchEnv& env, Scratch& scratch, ErrorFlags* flags);

}  // namespace gk
