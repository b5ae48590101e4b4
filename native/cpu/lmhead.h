// The LM-head family's parameters on the native cpu backend (native/cpu/lmhead.cc; kernels.h puts its
// entries in the kernel table): plain aggregates, as kernels.h's, so the per-ISA kernel files may
// include them (kernels.h, "per-file flags carry a trap").
//
// linearLogprobs and linearLogprobStates share one forward (LinearForwardParams: either the logprobs
// outputs or the states); logprobStates runs the same online pass over materialised logits;
// mergeLogprobStates merges states in order; linearLogprobsBackward gives the gradients. Semantics:
// src/backends/js/lmhead.ts (the float64 reference) and docs/DESIGN.md, "Fused LM head".
#pragma once

#include <stddef.h>
#include <stdint.h>

namespace gk {
namespace cpu {

// The head: logits[n, v] = hidden[n] · weight[v] + bias[v].
struct LinearHead {
  const void* hidden;  // [rows, dim] of `dtype`
  const void* weight;  // [vocab, dim] of `dtype`
  const void* bias;    // [vocab] of `dtype`, or null
  int dtype;           // FloatType
  int64_t rows, dim, vocab;
};

// The public online state of each row over a shard (LogprobStates in src/backends/backend.ts), f32 [rows]
// each: raw max, Σe^d, Σe^d·d, Σe^{2d} (d = (x − max)/T, natural-log units), the target's raw logit.
struct StatesOut {
  float* max;
  float* sum_exp;
  float* sum_exp_delta;  // or null (no entropy)
  float* sum_exp_sq;     // or null (no Σp²)
  float* target_logit;
};
struct StatesIn {
  const float* max;
  const float* sum_exp;
  const float* sum_exp_delta;  // or null
  const float* sum_exp_sq;     // or null
  const float* target_logit;
  int64_t vocab_start, vocab_end;
};

// The logprobs outputs, f32 [rows] each.
struct LogprobsOut {
  float* logprobs;
  float* lse;
  float* entropy;      // or null
  float* sum_squares;  // or null
};

struct LinearForwardParams {
  LinearHead head;
  const int32_t* targets;  // [rows], ids of the full vocabulary (or ignore_index)
  double temperature;
  int64_t ignore_index;
  // The shard's first column (linearLogprobStates); 0 for the whole head.
  int64_t vocab_start;
  // Exactly one is used: `states.max` non-null gives the states (no target check, no all −Inf fault:
  // the merge checks), else the logprobs outputs (targets in [0, vocab) or a kTargetRange fault).
  LogprobsOut out;
  StatesOut states;
  // Sums asked for besides Σe^d (entropy: Σe^d·d; Σp²: Σe^{2d}).
  int entropy, sum_squares;
};

struct LogprobStatesParams {
  const void* logits;  // [rows, vocab] of `dtype`: columns [vocab_start, vocab_start + vocab)
  int dtype;
  const int32_t* targets;
  int64_t rows, vocab, vocab_start;
  double temperature;
  int64_t ignore_index;
  StatesOut states;
  int entropy, sum_squares;
};

struct MergeStatesParams {
  const StatesIn* states;  // [count], tiling [0, vocab) in order (the API checks)
  int64_t count;
  const int32_t* targets;
  int64_t rows, vocab;
  double temperature;
  int64_t ignore_index;
  LogprobsOut out;
};

struct LinearBackwardParams {
  LinearHead head;
  const int32_t* targets;
  const float* lse;            // [rows], the full head's
  const float* grad_logprobs;  // [rows]
  const float* grad_entropy;   // [rows] or null
  const float* entropy;        // [rows] with grad_entropy
  double temperature;
  int64_t ignore_index;
  int64_t vocab_start;   // the shard's first row of the full head (0: the whole head)
  int64_t target_limit;  // targets must lie in [0, target_limit) or be ignore_index
  // The gradients, of `grad_dtype`: kF32, or head.dtype (gradDtype 'input': f32 sums rounded once).
  void* grad_hidden;  // [rows, dim]
  void* grad_weight;  // [vocab, dim]
  void* grad_bias;    // [vocab] or null
  int grad_dtype;
  // Test hook: columns per block of the input-dtype gradWeight pass (0: the plan's; rounded up to the
  // backward's column block).
  int64_t acc_cols;
};

// Bytes a call allocates besides its outputs (the kernels allocate exactly this; lmhead.cc's header
// states the formula): the forward's (linearLogprobs, linearLogprobStates), the backward's with f32
// gradients, and the backward's with gradients in the input dtype (= backward_bytes for f32 inputs).
struct LmheadPlan {
  double forward_bytes, backward_bytes, backward_input_bytes;
};

}  // namespace cpu
}  // namespace gk
