// The native cpu backend's kernels as their callers (native/ops_cpu.cc, native/runtime/cpu_device.cc) see
// them: plain parameter structs, the thread pool's one entry point, and a table of kernel functions per
// instruction set.
//
// The SIMD kernels (logprobs.cc, thr.cc, lmhead.cc, advantages.cc, policy.cc, rejection.cc) are compiled
// twice, once per instruction set, each time inside its own namespace: gk::cpu::avx2 (-mavx2 -mfma
// -mf16c, x86-64 only) and gk::cpu::portable (the compiler's baseline: SSE2 on x86-64, NEON on arm64);
// lmhead.cc a third time as gk::cpu::avx512 (-mavx512f besides: its GEMM tile at 16 lanes), and
// logprobs.cc a third time for its forward (-mavx512bw too: 16-lane sums, the same bits). pool.cc picks
// one table at run time (__builtin_cpu_supports, or the portable one when asked; the AVX-512 LM head
// unless asked not to). Per-file flags carry a trap: an inline function or template instantiated in both
// translation units (a std:: template, an implicit constructor) is emitted twice and the linker keeps
// one copy, which may be the AVX2 one even for the portable path. So the kernel files include nothing
// with inline code of its own but this header (plain aggregates, declarations) and their own
// ISA-namespaced simd.h and exp.h, call C functions only (exp, log, malloc), and reach the pool through
// pool_run (a function pointer and a context, no std::function); they are compiled with -fno-exceptions
// (CMakeLists.txt), so no personality routine's weak reference either.
// The enums' values come from ../enum_values.h (plain enums, no code), which this header includes.
#pragma once

#include <cstddef>
#include <cstdint>

#include "../enum_values.h"
#include "lmhead.h"

namespace gk {
namespace cpu {

// ------------------------------------------------------------------------------------------ pool
struct Pool;  // pool.cc: a fixed set of worker threads
// Runs fn(ctx, i, worker) for every i in [0, n), spread over the pool's threads and the calling one
// (worker ∈ [0, pool_threads)); returns when every call has returned. Items are taken in increasing
// order from a shared counter, so which thread runs an item varies; kernels make every item's result
// independent of that (fixed blocks), which is what makes them bitwise identical for any thread count.
void pool_run(Pool* pool, int64_t n, void (*fn)(void* ctx, int64_t i, int worker), void* ctx);
int pool_threads(const Pool* pool);

// Same codes as src/dtypes.ts's float dtypes.
enum FloatType : int { kF32 = 0, kF16 = 1, kBF16 = 2 };

// What a kernel reports. Faults are data only the kernel sees; `row` is the lowest offending row (the
// same whatever the thread count), `value` its bad value. The glue words them as the API's host checks.
enum Fault : int { kOk = 0, kTargetRange = 1, kAllNegInf = 2, kNoMemory = 3 };
struct Report {
  int fault;
  int64_t row;
  int64_t value;
};

// ------------------------------------------------------------------------------------ logprobs family
struct LogprobsParams {
  const void* logits;  // [rows, vocab] of `dtype`
  int dtype;           // FloatType
  const int32_t* targets;
  int64_t rows, vocab;
  double temperature;  // finite, ≥ 2^-126 (the API checks)
  int64_t ignore_index;
  float* logprobs;  // [rows]
  float* lse;       // [rows]
  float* entropy;      // [rows] or null
  float* sum_squares;  // [rows] or null
};
struct LogprobsBackwardParams {
  const void* logits;
  int dtype;
  const int32_t* targets;
  const float* lse;
  const float* grad_logprobs;
  const float* grad_entropy;  // or null
  const float* entropy;       // with grad_entropy
  int64_t rows, vocab;
  double temperature;
  int64_t ignore_index;
  void* grad_logits;  // [rows, vocab] of `dtype`; may equal logits (in place)
};
struct GatherProbsParams {
  const void* logits;
  int dtype;
  const float* lse;  // [num_tokens]
  int64_t num_tokens, vocab;
  double temperature;
  const int32_t* columns;              // [ΣK_g]
  const int32_t* group_token_offsets;  // [groups + 1]
  const int32_t* vocab_offsets;        // [groups + 1]
  const double* probs_offsets;         // [groups + 1]
  int64_t groups;
  float* probs;
};

// ------------------------------------------------------------------------------------------ THR family
struct ThrParams {
  const void* hidden;  // [Ttotal, dim] of `hidden_dtype`
  int hidden_dtype;
  int64_t dim;
  const float* probs;                  // packed [T_g, K_g] blocks (gatherProbs)
  const double* probs_offsets;         // [G+1]
  const int32_t* vocab_offsets;        // [G+1]
  const int32_t* token_column;         // [Ttotal]
  const int32_t* response_offsets;     // [R+1]
  const int32_t* group_offsets;        // [G+1]
  const uint8_t* correct;              // [R]
  const uint8_t* degenerate;           // [G]
  int64_t groups;
  // The API's plan (src/api/thr-plan.ts, ThrPlan): group g's correct tokens (indices on the packed token
  // axis, in order; none for a degenerate group) are correct_tokens[correct_start[g]..correct_start[g+1]),
  // with their weights w_u (1/|y_r| or 1) rounded once to f32. Checked against the layout by ops_cpu.cc.
  const int32_t* correct_start;    // [G+1]
  const int32_t* correct_tokens;   // [P]
  const float* correct_weights;    // [P]
  double beta;
  // Full (thr, tau), Aggregate (M of every live group into `aggregate`; thr, tau unused) or Score (M
  // read from `aggregate`, then thr, tau).
  ThrStep step;
  float* aggregate;  // [ΣK_g, dim] f32, group g's rows from vocab_offsets[g]: the halves' M, else null
  float* thr;  // [Ttotal]
  float* tau;  // [G]
};
struct ThrReweightParams {
  const float* token_advantages;
  const float* thr;
  const float* tau;
  const int32_t* response_offsets;
  const int32_t* group_offsets;
  const uint8_t* correct;
  const uint8_t* degenerate;
  int64_t groups;
  int mode;  // gk::ReweightMode
  double p;
  int mask;
  const double* eta;  // [G], NTHR's eta_g (the API's ReweightPlan: fixed, or 2·|0.5 − rho_g|)
  float* out;
};

// ---------------------------------------------------------------------------------- advantages family
// f64 kernels (advantages.cc), one build per instruction set like the others.
struct AdvantagesParams {
  const float* rewards;            // [responses]
  const int32_t* group_offsets;    // [groups + 1]
  int64_t groups, responses;
  const int32_t* response_offsets;  // [responses + 1]: opo and reinforce_pp_baseline, else null
  int64_t tokens;                   // response_offsets[responses], or 0
  int estimator;                    // gk::Estimator
  int std_kind;                     // gk::StdKind
  int scale;                        // gk::ScaleKind
  int singleton;                    // gk::Singleton
  int nan_rewards;                  // gk::NanRewards
  double eps;
  double whiten_mask_eps;
  int whiten_sample;
  int whiten_clamp;
  float* advantages;  // [responses] or [tokens]
  float* mean;        // [groups]
  float* std;         // [groups]
  uint8_t* degenerate;  // [groups]
};
struct ExpandParams {
  const float* values;
  const int32_t* response_offsets;  // [responses + 1]
  int64_t responses;
  float* out;
};
struct WhitenParams {
  const float* values;
  const uint8_t* mask;  // or null: every element valid
  int64_t n;
  double mask_eps;
  int sample;
  int clamp;
  int keep_mean;
  float* out;
};

// ------------------------------------------------------------------------------------------ policyLoss
// policyLoss's arguments (policy.cc, POLICY.md): the options under the names of the cuda backend's
// gk::PolicyParams (native/cuda/policy.cuh; native/policy_args.h fills both), in f64. "Off" clamps,
// caps and bounds are +Inf.
struct PolicyParams {
  const float* logprobs;            // [T]
  const float* old_logprobs;        // [T]
  const float* advantages;          // [T]
  const float* ref_logprobs;        // [T], with has_kl
  const float* rollout_logprobs;    // [T], with has_rollout (and for the off-policy mask when given), or null
  const float* entropy;             // [T] or null
  const uint8_t* mask;              // [T] or null (every token valid)
  const int32_t* response_offsets;  // [R+1]: 0, non-decreasing, T (ops_cpu.cc checks)
  int64_t responses;                // R
  PolicyLossKind loss;
  double clip_low, clip_high, dual_clip, log_ratio_clamp, gspo_log_clamp, delta;
  bool cispo_cap;
  double sapo_tau_pos, sapo_tau_neg;
  double vespo_k_pos, vespo_lambda_pos, vespo_k_neg, vespo_lambda_neg;  // vespo's φ
  bool has_kl;
  KlEstimator kl_estimator;
  bool kl_straight_through, kl_value_clamp_all, kl_token_mean;
  bool kl_bias_correction;  // TRL's use_bias_correction_kl: KL·ρ_t (token-level ratios)
  double kl_coef, kl_input_clamp, kl_value_clamp;
  double entropy_coef;
  bool entropy_token_mean;
  bool has_rollout;
  RolloutLevel rollout_level;
  RolloutMode rollout_mode;
  double rollout_lower, rollout_upper, rollout_log_clamp;
  bool rollout_normalize;
  bool has_opsm;          // TRL's off-policy sequence mask, threshold δ (κ_r from rollout_logprobs or old)
  double opsm_threshold;
  Aggregation aggregation;
  bool seq_clamp1;         // seq-mean-token-mean divides by max(n, 1) (else n + 1e-8)
  bool norm_by_sequences;  // seq-mean-token-sum-norm: D/(N_seq·K) (else verl's 1/K)
  double scale_factor, ranks;
  double tokens, sequences;  // the host's counts; < 0: counted by the kernel
  float* loss_out;           // [1]
  float* grad;               // [T]
  float* grad_entropy;       // [T], with entropy
  float* token_loss;         // [T] or null
  float* stats;              // [13], POLICY_STATS order
};

// ------------------------------------------------------------------------------------ rolloutRejection
// rolloutRejection's arguments (rejection.cc; verl's rollout_rs, src/backends/js/rejection.ts). One
// criterion: the statistic k1, k2 or k3 of λ = clamp(ℓ − ℓᵛ, ±20), per token or the response's sum, mean
// or max, passing where lower ≤ s ≤ upper (f32 bounds: the API rounds them; k2, k3: lower is −Inf).
constexpr int kRejectionMaxCriteria = 11;  // REJECTION_MAX_CRITERIA
struct RejectionCriterion {
  RejectionStatistic statistic;
  RejectionLevel level;
  float lower, upper;
};
struct RolloutRejectionParams {
  const float* logprobs;            // [T] ℓ
  const float* rollout_logprobs;    // [T] ℓᵛ
  const uint8_t* mask;              // [T] or null (every token valid)
  const int32_t* response_offsets;  // [R+1]: 0, non-decreasing, T (ops_cpu.cc checks)
  int64_t responses;                // R
  int criteria_count;               // 1 to kRejectionMaxCriteria
  RejectionCriterion criteria[kRejectionMaxCriteria];
  uint8_t* out_mask;  // [T]: 1 where valid and passing every criterion, else 0
  float* stats;       // [2 + 7·criteria_count]: REJECTION_STATS, then REJECTION_CRITERION_STATS per criterion
};

// ------------------------------------------------------------------------------------------ kernels
// One instruction set's kernels.
struct KernelTable {
  const char* isa;  // "avx2" | "portable"
  // The logprobs forward, from the build named by logprobs_isa ("avx512": 16-lane sums with the same
  // bits as the AVX2 build's, where the CPU has AVX-512F/BW and the caller allows it).
  const char* logprobs_isa;
  Report (*logprobs)(const LogprobsParams&, Pool*);
  Report (*logprobs_backward)(const LogprobsBackwardParams&, Pool*);
  Report (*gather_probs)(const GatherProbsParams&, Pool*);
  Report (*token_hidden_reward)(const ThrParams&, Pool*);
  Report (*thr_reweight)(const ThrReweightParams&, Pool*);
  Report (*policy_loss)(const PolicyParams&, Pool*);
  Report (*rollout_rejection)(const RolloutRejectionParams&, Pool*);
  Report (*advantages)(const AdvantagesParams&, Pool*);
  Report (*expand_to_tokens)(const ExpandParams&, Pool*);
  Report (*whiten)(const WhitenParams&, Pool*);
  // Benchmarks only (probe.cc): FLOPs of one run of `iters` FMA steps on every pool thread; one
  // streaming read of an array (returns a checksum); one copy of `bytes` bytes from src to dst.
  double (*fma_probe)(Pool*, int64_t iters);
  double (*read_probe)(Pool*, const void* data, size_t bytes);
  void (*copy_probe)(Pool*, const void* src, void* dst, size_t bytes);
  // The LM-head family (lmhead.cc, lmhead.h), from the build named by lmhead_isa ("avx512" where the
  // CPU has AVX-512F and the caller allows it, else this table's own isa).
  const char* lmhead_isa;
  Report (*linear_forward)(const LinearForwardParams&, Pool*);
  Report (*linear_backward)(const LinearBackwardParams&, Pool*);
  Report (*logprob_states)(const LogprobStatesParams&, Pool*);
  Report (*merge_states)(const MergeStatesParams&, Pool*);
  // Scratch bytes of a linearLogprobs (or linearLogprobStates) and a linearLogprobsBackward call.
  LmheadPlan (*lmhead_plan)(int64_t rows, int64_t vocab, int64_t dim, int dtype, int threads);
  // Benchmarks only: fma_probe at the LM head's vector width (its GEMM's yardstick).
  double (*lmhead_fma_probe)(Pool*, int64_t iters);
};

#define GK_CPU_DECLARE_LMHEAD(ns)                                              \
  namespace ns {                                                              \
  Report linear_forward(const LinearForwardParams&, Pool*);                   \
  Report linear_backward(const LinearBackwardParams&, Pool*);                 \
  Report logprob_states(const LogprobStatesParams&, Pool*);                   \
  Report merge_states(const MergeStatesParams&, Pool*);                       \
  LmheadPlan lmhead_plan(int64_t, int64_t, int64_t, int, int);                \
  double lmhead_fma_probe(Pool*, int64_t);                                    \
  }
#define GK_CPU_DECLARE_KERNELS(ns)                                             \
  namespace ns {                                                              \
  Report logprobs(const LogprobsParams&, Pool*);                              \
  Report logprobs_backward(const LogprobsBackwardParams&, Pool*);             \
  Report gather_probs(const GatherProbsParams&, Pool*);                       \
  Report token_hidden_reward(const ThrParams&, Pool*);                        \
  Report thr_reweight(const ThrReweightParams&, Pool*);                       \
  Report policy_loss(const PolicyParams&, Pool*);                             \
  Report rollout_rejection(const RolloutRejectionParams&, Pool*);             \
  Report advantages(const AdvantagesParams&, Pool*);                          \
  Report expand_to_tokens(const ExpandParams&, Pool*);                        \
  Report whiten(const WhitenParams&, Pool*);                                  \
  double fma_probe(Pool*, int64_t);                                           \
  double read_probe(Pool*, const void*, size_t);                              \
  void copy_probe(Pool*, const void*, void*, size_t);                         \
  }                                                                           \
  GK_CPU_DECLARE_LMHEAD(ns)
GK_CPU_DECLARE_KERNELS(portable)
#if GK_CPU_HAVE_AVX2
GK_CPU_DECLARE_KERNELS(avx2)
GK_CPU_DECLARE_LMHEAD(avx512)
namespace avx512 {  // logprobs.cc's AVX-512 build: its forward is the one the table takes
Report logprobs(const LogprobsParams&, Pool*);
Report logprobs_backward(const LogprobsBackwardParams&, Pool*);
Report gather_probs(const GatherProbsParams&, Pool*);
}  // namespace avx512
#endif
#undef GK_CPU_DECLARE_KERNELS
#undef GK_CPU_DECLARE_LMHEAD

}  // namespace cpu
}  // namespace gk
