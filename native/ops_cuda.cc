// The cuda backend's argument conversion (ops.h): one converter per op, each filling the op's params
// struct (native/cuda/<family>.cuh) from its argument object, the TypeScript interface of the same name
// in src/backends/cuda/native.ts. Device memory arrives as bigint pointers; small host arrays (offsets,
// the THR layout) as typed arrays, copied. Every key is required unless its absence means something
// (an output not asked for, a test hook); the key `poison` (src/debug.ts) every op takes is read by
// CudaDevice (addon.cc). A converter also lists the op's outputs (filled with the poison when it is on)
// and, when its kernels check values only the device sees, the RANGE message of their flags.
#include <string>
#include <utility>
#include <vector>

#include "args.h"
#include "cuda/advantages.cuh"
#include "cuda/lmhead.cuh"
#include "cuda/logprobs.cuh"
#include "cuda/policy.cuh"
#include "cuda/rejection.cuh"
#include "cuda/thr.cuh"
#include "enums.h"
#include "ops.h"
#include "policy_args.h"
#include "runtime/cuda_device.h"

namespace gkn {
namespace {

using gk::DType;
using gk::ErrorFlags;
using gk::LaunchEnv;
using gk::Scratch;
using gk::rt::CudaOp;
using gk::rt::PoisonTarget;

// A float dtype ('f32' | 'f16' | 'bf16', the names of src/dtypes.ts).
DType FloatDType(Args& a, const char* key) {
  return static_cast<DType>(a.Enum(key, {"f32", "f16", "bf16"}));  // gk::DType F32 = 0, F16, BF16
}

// The outputs of a logprobs-family forward (logprobs, lse, and entropy / Σp² when asked), [rows] f32
// each: logprobs, linearLogprobs and mergeLogprobStates fill the same four.
template <class P>
std::vector<PoisonTarget> ForwardOutputs(const P& p) {
  std::vector<PoisonTarget> outs{{p.logprobs, p.rows, DType::F32}, {p.lse, p.rows, DType::F32}};
  if (p.entropy) outs.push_back({p.entropy, p.rows, DType::F32});
  if (p.sum_squares) outs.push_back({p.sum_squares, p.rows, DType::F32});
  return outs;
}

// The RANGE message of the logprobs kernels' flags (targets against [0, vocab) and ignoreIndex).
std::function<std::string(const ErrorFlags&)> LogprobsFlags(int64_t vocab, int ignore_index) {
  return [vocab, ignore_index](const ErrorFlags& f) { return gk::logprobs_flags_message(f, vocab, ignore_index); };
}

// The keys of the ops over materialised logits rows (logprobs, its backward, logprobStates): logits,
// dtype, targets, rows, vocab, temperature, ignoreIndex.
template <class P>
void LogitsOf(Args& a, P& p) {
  p.logits = a.Ptr("logits");
  p.dtype = FloatDType(a, "dtype");
  p.targets = a.Ptr<const int>("targets");
  p.rows = a.Int("rows");
  p.vocab = a.Int("vocab");
  p.temperature = a.Num("temperature");
  p.ignore_index = static_cast<int>(a.Int("ignoreIndex"));
}

CudaOp Logprobs(Args& a) {
  gk::LogprobsParams p;
  LogitsOf(a, p);
  p.logprobs = a.Ptr<float>("outLogprobs");
  p.lse = a.Ptr<float>("outLse");
  p.entropy = a.OptPtr<float>("outEntropy");
  p.sum_squares = a.OptPtr<float>("outSumSquares");
  p.split_override = static_cast<int>(a.OptInt("splits", 0));  // test hook: 0 = the count V fixes
  const std::vector<PoisonTarget> outs = ForwardOutputs(p);
  return {outs,
          [p](const LaunchEnv& l, Scratch& s, ErrorFlags* f) { return gk::launch_logprobs_forward(p, l, s, f); },
          LogprobsFlags(p.vocab, p.ignore_index)};
}

CudaOp LogprobsBackward(Args& a) {
  gk::LogprobsBackwardParams p;
  LogitsOf(a, p);
  p.lse = a.Ptr<const float>("lse");
  p.grad_logprobs = a.Ptr<const float>("gradLogprobs");
  p.grad_entropy = a.OptPtr<const float>("gradEntropy");
  p.entropy = a.OptPtr<const float>("entropy");
  p.grad_logits = a.Ptr("outGradLogits");
  const bool in_place = p.grad_logits == p.logits;
  std::vector<PoisonTarget> outs;
  if (!in_place) outs.push_back({p.grad_logits, p.rows * p.vocab, p.dtype});
  return {outs,
          [p](const LaunchEnv& l, Scratch&, ErrorFlags* f) { return gk::launch_logprobs_backward(p, l, f); },
          LogprobsFlags(p.vocab, p.ignore_index)};
}

CudaOp GatherProbs(Args& a) {
  gk::GatherProbsParams p;
  p.logits = a.Ptr("logits");
  p.dtype = FloatDType(a, "dtype");
  p.lse = a.Ptr<const float>("lse");
  p.num_tokens = a.Int("numTokens");
  p.vocab = a.Int("vocab");
  p.temperature = a.Num("temperature");
  p.columns = a.Ptr<const int>("columns");
  p.group_token_offsets = a.Vec<int32_t>("groupTokenOffsets");
  p.vocab_offsets = a.Vec<int32_t>("vocabOffsets");
  p.probs_offsets = a.Vec<int64_t>("probsOffsets");
  p.probs = a.Ptr<float>("outProbs");
  const int64_t n = p.probs_offsets.empty() ? 0 : p.probs_offsets.back();
  return {{{p.probs, n, DType::F32}},
          [p](const LaunchEnv& l, Scratch& s, ErrorFlags*) { return gk::launch_gather_probs(p, l, s); }};
}

CudaOp Advantages(Args& a) {
  gk::AdvantagesParams p;
  p.rewards = a.Ptr<const float>("rewards");
  // Uniform groups come as groupSize + numGroups (no array, no upload), ragged ones as groupOffsets.
  p.group_size = static_cast<int>(a.OptInt("groupSize", 0));
  p.num_groups = a.OptInt("numGroups", 0);
  p.group_offsets = a.OptVec<int32_t>("groupOffsets");
  p.response_offsets = a.OptVec<int32_t>("responseOffsets");  // opo and reinforce_pp_baseline
  p.estimator = static_cast<gk::Estimator>(a.Enum("estimator", gk::kEstimatorNames));
  p.std_kind = static_cast<gk::StdKind>(a.Enum("std", gk::kStdKindNames));
  p.eps = static_cast<float>(a.Num("eps"));
  p.scale = static_cast<gk::ScaleKind>(a.Enum("scale", gk::kScaleKindNames));
  p.singleton = static_cast<gk::Singleton>(a.Enum("singleton", gk::kSingletonNames));
  p.nan_rewards = static_cast<gk::NanRewards>(a.Enum("nanRewards", gk::kNanRewardNames));
  p.whiten_mask_eps = static_cast<float>(a.Num("whitenMaskEps"));
  p.whiten_sample = a.Enum("whitenVariance", gk::kStdKindNames) == int(gk::StdKind::Sample);
  p.whiten_clamp = a.Enum("whitenVarianceEps", {"add", "clamp"}) == 1;
  p.advantages = a.Ptr<float>("outAdvantages");
  p.mean = a.Ptr<float>("outMean");
  p.std = a.Ptr<float>("outStd");
  p.degenerate = a.Ptr<uint8_t>("outDegenerate");
  const int64_t advantages_size = a.Int("advantagesSize");
  if ((p.group_size > 0) == !p.group_offsets.empty())
    throw ArgError(a.Env(), "advantages: expected groupSize (with numGroups) or groupOffsets, not both");
  const int64_t G =
      p.group_size > 0 ? p.num_groups : p.group_offsets.empty() ? 0 : int64_t(p.group_offsets.size()) - 1;
  std::vector<PoisonTarget> outs{{p.advantages, advantages_size, DType::F32},
                                 {p.mean, G, DType::F32},
                                 {p.std, G, DType::F32},
                                 {p.degenerate, G, DType::U8}};
  // Moved into the launch, not copied (here and below): host offsets can be megabytes (R + 1 of them).
  return {outs,
          [p = std::move(p)](const LaunchEnv& l, Scratch& s, ErrorFlags*) { return gk::launch_advantages(p, l, s); }};
}

CudaOp ExpandToTokens(Args& a) {
  gk::ExpandParams p;
  p.values = a.Ptr<const float>("values");
  p.response_offsets = a.Vec<int32_t>("responseOffsets");
  p.out = a.Ptr<float>("out");
  const int64_t T = p.response_offsets.empty() ? 0 : p.response_offsets.back();
  return {{{p.out, T, DType::F32}},
          [p = std::move(p)](const LaunchEnv& l, Scratch& s, ErrorFlags*) { return gk::launch_expand_to_tokens(p, l, s); }};
}

CudaOp Whiten(Args& a) {
  gk::WhitenParams p;
  p.values = a.Ptr<const float>("values");
  p.mask = a.OptPtr<const uint8_t>("mask");
  p.n = a.Int("n");
  p.mask_eps = static_cast<float>(a.Num("maskEps"));
  p.sample = a.Enum("variance", {"population", "sample"}) == 1;
  p.clamp = a.Enum("varianceEps", {"add", "clamp"}) == 1;
  p.keep_mean = a.Bool("keepMean");
  p.out = a.Ptr<float>("out");
  return {{{p.out, p.n, DType::F32}},
          [p = std::move(p)](const LaunchEnv& l, Scratch& s, ErrorFlags*) { return gk::launch_whiten(p, l, s); }};
}

gk::ThrLayoutHost LayoutOf(Args& a) {
  gk::ThrLayoutHost l;
  l.response_offsets = a.Vec<int32_t>("responseOffsets");
  l.group_offsets = a.Vec<int32_t>("groupOffsets");
  l.correct = a.Vec<uint8_t>("correct");
  l.degenerate = a.Vec<uint8_t>("degenerate");
  return l;
}

// A host typed array of exactly element type T (args.h Buf: Int32Array, Float32Array, Float64Array),
// copied: THR's plan, whose f32 weights Vec would not take.
template <class T>
std::vector<T> CopyOf(Args& a, const char* key) {
  size_t n = 0;
  const T* data = a.Buf<T>(key, &n);
  return std::vector<T>(data, data + n);
}

// tokenHiddenReward whole, or one of its halves: the same keys, plus `aggregate` (the stacked M) for
// the halves; thrAggregate has no outThr / outTau / beta.
template <gk::ThrStep step>
CudaOp ThrOp(Args& a) {
  gk::ThrParams p;
  p.step = step;
  p.layout = LayoutOf(a);
  p.hidden = a.Ptr("hidden");
  p.hidden_dtype = FloatDType(a, "hiddenDtype");
  p.dim = a.Int("dim");
  p.probs = a.Ptr<const float>("probs");
  p.probs_offsets = a.Vec<int64_t>("probsOffsets");
  p.vocab_offsets = a.Vec<int32_t>("vocabOffsets");
  p.token_column = a.Ptr<const int>("tokenColumn");
  // The API's plan (src/api/thr-plan.ts): the correct tokens of each live group and their weights
  // (1/|y_r| or 1, so they carry the weighting), checked against the layout by the launcher.
  p.correct_start = CopyOf<int32_t>(a, "correctStart");
  p.correct_tokens = CopyOf<int32_t>(a, "correctTokens");
  p.correct_weights = CopyOf<float>(a, "correctWeights");
  p.precision = static_cast<gk::ThrPrecision>(a.Enum("precision", gk::kThrPrecisionNames));
  if (a.Has("mBudgetBytes")) p.m_budget_bytes = static_cast<size_t>(a.Int("mBudgetBytes"));  // test hook
  p.small_tiles = a.Has("smallTiles") && a.Bool("smallTiles");  // test hook (src/backends/cuda/thr.ts thrTuning)
  p.path = static_cast<int>(a.OptInt("path", 0));                 // test hook: the scores' tiles
  if (step != gk::ThrStep::Full) p.aggregate = a.Ptr<float>("aggregate");
  if (step != gk::ThrStep::Aggregate) {
    p.beta = static_cast<float>(a.Num("beta"));
    p.thr = a.Ptr<float>("outThr");
    p.tau = a.Ptr<float>("outTau");
  }
  const int64_t T = p.layout.response_offsets.empty() ? 0 : p.layout.response_offsets.back();
  const int64_t G = p.layout.group_offsets.empty() ? 0 : int64_t(p.layout.group_offsets.size()) - 1;
  std::vector<PoisonTarget> outs;
  if (step == gk::ThrStep::Aggregate) {
    const int64_t rows = p.vocab_offsets.empty() ? 0 : p.vocab_offsets.back();
    outs.push_back({p.aggregate, rows * p.dim, DType::F32});
  } else {
    outs = {{p.thr, T, DType::F32}, {p.tau, G, DType::F32}};
  }
  return {outs,
          [p = std::move(p)](const LaunchEnv& l, Scratch& s, ErrorFlags*) { return gk::launch_token_hidden_reward(p, l, s); }};
}

// ------------------------------------------------------------------------------ LM-head family
// The head's shared keys: hidden, weight, bias?, dtype, targets, rows, dim, vocab, temperature,
// ignoreIndex.
template <class P>
void HeadOf(Args& a, P& p) {
  p.hidden = a.Ptr("hidden");
  p.weight = a.Ptr("weight");
  p.bias = a.OptPtr("bias");
  p.dtype = FloatDType(a, "dtype");
  p.targets = a.Ptr<const int>("targets");
  p.rows = a.Int("rows");
  p.dim = a.Int("dim");
  p.vocab = a.Int("vocab");
  p.temperature = a.Num("temperature");
  p.ignore_index = static_cast<int>(a.Int("ignoreIndex"));
  p.raster_rows = static_cast<unsigned>(a.OptInt("rasterRows", 0));  // test hook: the wide tiles' block order
}
gk::StateArrays StateOutOf(Args& a) {
  gk::StateArrays s;
  s.max = a.Ptr<float>("outMax");
  s.sum_exp = a.Ptr<float>("outSumExp");
  s.sum_exp_delta = a.OptPtr<float>("outSumExpDelta");
  s.sum_exp_sq = a.OptPtr<float>("outSumExpSq");
  s.target_logit = a.Ptr<float>("outTargetLogit");
  s.vocab_start = a.Int("vocabStart");
  return s;
}
std::vector<PoisonTarget> StateTargets(const gk::StateArrays& s, int64_t rows) {
  std::vector<PoisonTarget> outs{
      {s.max, rows, DType::F32}, {s.sum_exp, rows, DType::F32}, {s.target_logit, rows, DType::F32}};
  if (s.sum_exp_delta) outs.push_back({s.sum_exp_delta, rows, DType::F32});
  if (s.sum_exp_sq) outs.push_back({s.sum_exp_sq, rows, DType::F32});
  return outs;
}

CudaOp LinearLogprobs(Args& a) {
  gk::LinearLogprobsParams p;
  HeadOf(a, p);
  p.path = static_cast<int>(a.OptInt("path", 0));  // test hook: the forward's tiles
  p.logprobs = a.Ptr<float>("outLogprobs");
  p.lse = a.Ptr<float>("outLse");
  p.entropy = a.OptPtr<float>("outEntropy");
  p.sum_squares = a.OptPtr<float>("outSumSquares");
  const std::vector<PoisonTarget> outs = ForwardOutputs(p);
  return {outs,
          [p](const LaunchEnv& l, Scratch& s, ErrorFlags* f) { return gk::launch_linear_logprobs(p, l, s, f); },
          LogprobsFlags(p.vocab, p.ignore_index)};
}

CudaOp LinearLogprobStates(Args& a) {
  gk::LinearLogprobsParams p;
  HeadOf(a, p);
  p.path = static_cast<int>(a.OptInt("path", 0));
  p.states = StateOutOf(a);
  p.states.vocab_end = p.states.vocab_start + p.vocab;
  return {StateTargets(p.states, p.rows),
          [p](const LaunchEnv& l, Scratch& s, ErrorFlags* f) { return gk::launch_linear_logprobs(p, l, s, f); }};
}

CudaOp LinearLogprobsBackward(Args& a) {
  gk::LinearLogprobsBackwardParams p;
  HeadOf(a, p);
  p.lse = a.Ptr<const float>("lse");
  p.grad_logprobs = a.Ptr<const float>("gradLogprobs");
  p.grad_entropy = a.OptPtr<const float>("gradEntropy");
  p.entropy = a.OptPtr<const float>("entropy");
  p.grad_dtype = FloatDType(a, "gradDtype");          // f32, or the head's dtype (the launcher checks)
  p.grad_hidden = a.OptPtr<void>("outGradHidden");  // null when rows·dim = 0
  p.grad_weight = a.Ptr<void>("outGradWeight");
  p.grad_bias = a.OptPtr<void>("outGradBias");
  p.vocab_start = a.Int("vocabStart");
  p.target_limit = a.Int("targetLimit");
  p.path = static_cast<int>(a.OptInt("path", 0));  // test hook: the tiles
  p.chunk_rows = a.OptInt("chunkRows", 0);    // test hooks: the G chunk
  p.chunk_vocab = a.OptInt("chunkVocab", 0);
  std::vector<PoisonTarget> outs{{p.grad_weight, p.vocab * p.dim, p.grad_dtype}};
  if (p.grad_hidden) outs.push_back({p.grad_hidden, p.rows * p.dim, p.grad_dtype});
  if (p.grad_bias) outs.push_back({p.grad_bias, p.vocab, p.grad_dtype});
  return {outs,
          [p](const LaunchEnv& l, Scratch& s, ErrorFlags* f) {
            return gk::launch_linear_logprobs_backward(p, l, s, f);
          },
          LogprobsFlags(p.target_limit, p.ignore_index)};
}

CudaOp LogprobStates(Args& a) {
  gk::LogprobStatesParams p;
  LogitsOf(a, p);
  p.states = StateOutOf(a);
  p.states.vocab_end = p.states.vocab_start + p.vocab;
  return {StateTargets(p.states, p.rows),
          [p](const LaunchEnv& l, Scratch& s, ErrorFlags*) { return gk::launch_logprob_states(p, l, s); }};
}

CudaOp MergeLogprobStates(Args& a) {
  gk::MergeStatesParams p;
  const std::vector<uint64_t> mx = a.PtrVec("statesMax"), se = a.PtrVec("statesSumExp"),
                              sd = a.PtrVec("statesSumExpDelta"), sq = a.PtrVec("statesSumExpSq"),
                              xt = a.PtrVec("statesTargetLogit");
  const std::vector<int64_t> v0 = a.Vec<int64_t>("statesVocabStart"), v1 = a.Vec<int64_t>("statesVocabEnd");
  p.targets = a.Ptr<const int>("targets");
  p.rows = a.Int("rows");
  p.vocab = a.Int("vocab");
  p.temperature = a.Num("temperature");
  p.ignore_index = static_cast<int>(a.Int("ignoreIndex"));
  p.logprobs = a.Ptr<float>("outLogprobs");
  p.lse = a.Ptr<float>("outLse");
  p.entropy = a.OptPtr<float>("outEntropy");
  p.sum_squares = a.OptPtr<float>("outSumSquares");
  const size_t k = mx.size();
  if (se.size() != k || sd.size() != k || sq.size() != k || xt.size() != k || v0.size() != k || v1.size() != k)
    throw ArgError(a.Env(), "mergeLogprobStates: the states' arrays must have one entry per state");
  auto ptr = [](uint64_t x) { return reinterpret_cast<float*>(static_cast<uintptr_t>(x)); };
  for (size_t i = 0; i < k; ++i) {
    gk::StateArrays s;
    s.max = ptr(mx[i]);
    s.sum_exp = ptr(se[i]);
    s.sum_exp_delta = ptr(sd[i]);
    s.sum_exp_sq = ptr(sq[i]);
    s.target_logit = ptr(xt[i]);
    s.vocab_start = v0[i];
    s.vocab_end = v1[i];
    p.states.push_back(s);
  }
  const std::vector<PoisonTarget> outs = ForwardOutputs(p);
  return {outs,
          [p](const LaunchEnv& l, Scratch& s, ErrorFlags* f) { return gk::launch_merge_states(p, l, s, f); },
          LogprobsFlags(p.vocab, p.ignore_index)};
}

CudaOp ThrReweight(Args& a) {
  gk::ThrReweightParams p;
  p.layout = LayoutOf(a);
  p.token_advantages = a.Ptr<const float>("tokenAdvantages");
  p.thr = a.Ptr<const float>("thr");
  p.tau = a.Ptr<const float>("tau");
  p.mode = static_cast<gk::ReweightMode>(a.Enum("mode", gk::kReweightModeNames));
  p.p = a.Num("p");
  p.mask = a.Bool("mask");
  p.eta = CopyOf<double>(a, "eta");  // [G], the API's ReweightPlan
  p.out = a.Ptr<float>("out");
  const int64_t T = p.layout.response_offsets.empty() ? 0 : p.layout.response_offsets.back();
  return {{{p.out, T, DType::F32}},
          [p = std::move(p)](const LaunchEnv& l, Scratch& s, ErrorFlags*) { return gk::launch_thr_reweight(p, l, s); }};
}

// policyLoss: the options as policy_args.h reads them for both addons, the device pointers, the test hook.
CudaOp PolicyLoss(Args& a) {
  gk::PolicyParams p;
  PolicyOptionsOf(a, p, [&](const char* key) { return a.Ptr<const float>(key); });
  p.logprobs = a.Ptr<const float>("logprobs");
  p.old_logprobs = a.Ptr<const float>("oldLogprobs");
  p.advantages = a.Ptr<const float>("advantages");
  p.entropy = a.OptPtr<const float>("entropy");
  p.mask = a.OptPtr<const uint8_t>("mask");
  p.response_offsets = a.Vec<int32_t>("responseOffsets");
  p.chunk_responses = static_cast<int>(a.OptInt("chunkResponses", 0));  // test hook
  p.path = static_cast<int>(a.OptInt("path", 0));                // test hook: 1 warp per response, 2 flat
  p.chunk_tokens = static_cast<int>(a.OptInt("chunkTokens", 0));  // test hook: the flat path's block
  p.loss_out = a.Ptr<float>("outLoss");
  p.grad = a.Ptr<float>("outGradLogprobs");
  p.grad_entropy = a.OptPtr<float>("outGradEntropy");
  p.token_loss = a.OptPtr<float>("outTokenLoss");
  p.stats = a.Ptr<float>("outStats");
  if ((p.entropy == nullptr) != (p.grad_entropy == nullptr))
    throw ArgError(a.Env(), "policyLoss: entropy and outGradEntropy come together");
  const int64_t T = p.response_offsets.empty() ? 0 : p.response_offsets.back();
  std::vector<PoisonTarget> outs{{p.loss_out, 1, DType::F32}, {p.grad, T, DType::F32}, {p.stats, 13, DType::F32}};
  if (p.grad_entropy) outs.push_back({p.grad_entropy, T, DType::F32});
  if (p.token_loss) outs.push_back({p.token_loss, T, DType::F32});
  return {outs,
          [p = std::move(p)](const LaunchEnv& l, Scratch& s, ErrorFlags*) { return gk::launch_policy_loss(p, l, s); }};
}

// rolloutRejection: the device pointers, the criteria (objects, each converted by an Args of its own:
// statistic and level by name, the resolved f32 bounds), the test hook.
CudaOp RolloutRejection(Args& a) {
  gk::RejectionParams p;
  p.logprobs = a.Ptr<const float>("logprobs");
  p.rollout_logprobs = a.Ptr<const float>("rolloutLogprobs");
  p.mask = a.OptPtr<const uint8_t>("mask");
  p.response_offsets = a.Vec<int32_t>("responseOffsets");
  const Napi::Array criteria = a.Objects("criteria");
  for (uint32_t i = 0; i < criteria.Length(); ++i) {
    const std::string name = "rolloutRejection: criteria[" + std::to_string(i) + "]";
    Args c(criteria.Get(i), name.c_str());
    gk::RejectionCriterion q;
    q.statistic = static_cast<gk::RejectionStatistic>(c.Enum("statistic", gk::kRejectionStatisticNames));
    q.level = static_cast<gk::RejectionLevel>(c.Enum("level", gk::kRejectionLevelNames));
    q.lower = static_cast<float>(c.Num("lower"));
    q.upper = static_cast<float>(c.Num("upper"));
    c.Done();
    p.criteria.push_back(q);
  }
  p.chunk_responses = static_cast<int>(a.OptInt("chunkResponses", 0));  // test hook
  p.mask_out = a.Ptr<uint8_t>("outMask");
  p.stats = a.Ptr<float>("outStats");
  const int64_t T = p.response_offsets.empty() ? 0 : p.response_offsets.back();
  const int64_t n_stats = gk::kRejectionStats + gk::kRejectionCriterionStats * int64_t(p.criteria.size());
  return {{{p.mask_out, T, DType::U8}, {p.stats, n_stats, DType::F32}},
          [p = std::move(p)](const LaunchEnv& l, Scratch& s, ErrorFlags*) { return gk::launch_rollout_rejection(p, l, s); }};
}

}  // namespace

const std::vector<OpSpec<CudaOp>>& CudaOps() {
  static const std::vector<OpSpec<CudaOp>> kOps = {
      {"logprobs", Logprobs},
      {"logprobsBackward", LogprobsBackward},
      {"gatherProbs", GatherProbs},
      {"advantages", Advantages},
      {"expandToTokens", ExpandToTokens},
      {"whiten", Whiten},
      {"tokenHiddenReward", ThrOp<gk::ThrStep::Full>},
      {"thrReweight", ThrReweight},
      {"thrAggregate", ThrOp<gk::ThrStep::Aggregate>},
      {"thrScore", ThrOp<gk::ThrStep::Score>},
      {"linearLogprobs", LinearLogprobs},
      {"linearLogprobStates", LinearLogprobStates},
      {"linearLogprobsBackward", LinearLogprobsBackward},
      {"logprobStates", LogprobStates},
      {"mergeLogprobStates", MergeLogprobStates},
      {"policyLoss", PolicyLoss},
      {"rolloutRejection", RolloutRejection},
  };
  return kOps;
}

Napi::Value LmheadPlan(const Napi::CallbackInfo& info) {
  Args a(info[0], "lmheadPlan");
  const int64_t rows = a.Int("rows"), vocab = a.Int("vocab"), dim = a.Int("dim");
  const DType dtype = FloatDType(a, "dtype");
  a.Done();
  const gk::LmheadPlan p = gk::lmhead_plan(rows, vocab, dim, dtype);
  Napi::Object o = Napi::Object::New(info.Env());
  o.Set("slices", static_cast<double>(p.slices));
  o.Set("forwardBytes", static_cast<double>(p.forward_bytes));
  o.Set("chunkRows", static_cast<double>(p.chunk_rows));
  o.Set("chunkVocab", static_cast<double>(p.chunk_vocab));
  o.Set("backwardBytes", static_cast<double>(p.backward_bytes));
  o.Set("backwardInputBytes", static_cast<double>(p.backward_input_bytes));  // gradients in the input dtype
  return o;
}

}  // namespace gkn
