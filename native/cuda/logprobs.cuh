// Launchers of the logprobs family (kernels in logprobs.cu): logprobs forward, its backward, and
// gatherProbs (softmax probabilities at each group's restricted-vocabulary columns, for THR).
#pragma once

#include "common.cuh"

namespace gk {

struct LogprobsParams {
  const void* logits = nullptr;  // [rows, vocab] row-major, dtype f32/f16/bf16
  DType dtype = DType::F32;
  const int* targets = nullptr;  // [rows]
  int64_t rows = 0;
  int64_t vocab = 0;
  double temperature = 1.0;  // ≥ 2^-126 (the API's bound): 1/T is finite in f32
  int ignore_index = -100;
  float* logprobs = nullptr;  // [rows]
  float* lse = nullptr;       // [rows]
  float* entropy = nullptr;   // [rows] or null
  float* sum_squares = nullptr;  // [rows] or null
  int split_override = 0;     // tests: this many vocabulary segments instead of the V-fixed count (0)
};
// Enqueues the forward; bad rows raise `flags` (all −Inf: kFlagAllNegInf; target not in [0, vocab)
// and not ignore_index: kFlagTargetRange). Read the flags after the stream syncs.
Status launch_logprobs_forward(const LogprobsParams& p, const LaunchEnv& env, Scratch& scratch,
                               ErrorFlags* flags);
// Message for flags raised by the logprobs kernels (empty when none).
// The RANGE message of raised logprobs flags, worded as the API's host checks word it (src/api/logprobs.ts),
// so a bad target reads the same whether the host or the kernel found it.
std::string logprobs_flags_message(const ErrorFlags& f, int64_t vocab, int ignore_index);

struct LogprobsBackwardParams {
  const void* logits = nullptr;  // [rows, vocab]
  DType dtype = DType::F32;
  const int* targets = nullptr;
  const float* lse = nullptr;            // [rows]
  const float* grad_logprobs = nullptr;  // [rows]
  const float* grad_entropy = nullptr;   // [rows] or null
  const float* entropy = nullptr;        // [rows], required with grad_entropy
  int64_t rows = 0;
  int64_t vocab = 0;
  double temperature = 1.0;  // ≥ 2^-126 (the API's bound): 1/T is finite in f32
  int ignore_index = -100;
  // [rows, vocab] in the logits' dtype. May equal `logits` (in place: each element is read once and
  // then overwritten by the thread that read it).
  void* grad_logits = nullptr;
};
Status launch_logprobs_backward(const LogprobsBackwardParams& p, const LaunchEnv& env, ErrorFlags* flags);

struct GatherProbsParams {
  const void* logits = nullptr;  // [num_tokens, vocab]
  DType dtype = DType::F32;
  const float* lse = nullptr;  // [num_tokens]
  int64_t num_tokens = 0;
  int64_t vocab = 0;
  double temperature = 1.0;  // ≥ 2^-126 (the API's bound): 1/T is finite in f32
  const int* columns = nullptr;          // device, [ΣK_g]
  std::vector<int32_t> group_token_offsets;  // host [G+1]
  std::vector<int32_t> vocab_offsets;        // host [G+1]
  std::vector<int64_t> probs_offsets;        // host [G+1]
  float* probs = nullptr;  // packed [T_g, K_g] blocks
};
Status launch_gather_probs(const GatherProbsParams& p, const LaunchEnv& env, Scratch& scratch);

}  // namespace gk
