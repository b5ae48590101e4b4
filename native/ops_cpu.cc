// The native cpu backend's argument conversion (ops.h): one converter per op, each filling the op's
// params struct (native/cpu/kernels.h) from its argument object, the TypeScript interface of the same
// name in src/backends/cpu/native.ts. Host memory arrives as typed arrays (their data is used in place:
// CpuDevice keeps the argument object alive until the op settles), each of one element type and a
// length checked against the shape. Every key is required unless its absence means something. A
// converter also words the RANGE error of a fault only the kernels see, as the API's host checks word it.
#include <cstdint>
#include <string>
#include <vector>

#include "args.h"
#include "cpu/kernels.h"
#include "enums.h"
#include "ops.h"
#include "policy_args.h"
#include "cpu/runtime.h"
#include "runtime/cpu_device.h"

namespace gkn {
namespace {

using gk::rt::CpuOp;
using namespace gk::cpu;
using gk::Estimator;
using gk::StdKind;

std::string TargetMessage(const Report& r, int64_t vocab, int64_t ignore) {
  return "targets: expected values in [0, " + std::to_string(vocab) + ") or ignoreIndex (" + std::to_string(ignore) +
         "), got targets[" + std::to_string(r.row) + "] = " + std::to_string(r.value);
}
std::string LogprobsMessage(const Report& r, int64_t vocab, int64_t ignore) {
  if (r.fault == kTargetRange) return TargetMessage(r, vocab, ignore);
  return "logits: row " + std::to_string(r.row) +
         " has every element −Inf: its softmax is undefined; mask the row with ignoreIndex instead";
}

// A float dtype ('f32' | 'f16' | 'bf16', the names of src/dtypes.ts): gk::cpu::FloatType.
int FloatTypeOf(Args& a, const char* key) { return a.Enum(key, {"f32", "f16", "bf16"}); }

// Checks a length; throws a DTYPE error naming the op and key.
void Need(Napi::Env env, const char* op, const char* key, size_t have, size_t want) {
  if (have != want)
    throw ArgError(env, std::string(op) + ": " + key + ": expected " + std::to_string(want) + " elements, got " +
                            std::to_string(have));
}
size_t ElemSize(int dtype) { return dtype == kF32 ? 4 : 2; }

// The keys of logprobs and its backward: logits [rows, vocab] of `dtype`, targets [rows], rows, vocab,
// temperature, ignoreIndex (the lengths of logits and targets checked).
template <class P>
void LogitsOf(Args& a, const char* op, P& p) {
  size_t n_logits = 0, n_t = 0;
  p.dtype = FloatTypeOf(a, "dtype");
  p.logits = a.FloatBuf("logits", p.dtype, &n_logits);
  p.targets = a.Buf<int32_t>("targets", &n_t);
  p.rows = a.Int("rows");
  p.vocab = a.Int("vocab");
  p.temperature = a.Num("temperature");
  p.ignore_index = a.Int("ignoreIndex");
  Need(a.Env(), op, "logits", n_logits, size_t(p.rows) * size_t(p.vocab) * ElemSize(p.dtype));
  Need(a.Env(), op, "targets", n_t, size_t(p.rows));
}

CpuOp Logprobs(Args& a) {
  Napi::Env env = a.Env();
  LogprobsParams p{};
  LogitsOf(a, "logprobs", p);
  size_t n_lp = 0, n_lse = 0, n_ent = 0, n_sq = 0;
  p.logprobs = a.Buf<float>("outLogprobs", &n_lp);
  p.lse = a.Buf<float>("outLse", &n_lse);
  p.entropy = a.OptBuf<float>("outEntropy", &n_ent);
  p.sum_squares = a.OptBuf<float>("outSumSquares", &n_sq);
  const size_t rows = size_t(p.rows);
  Need(env, "logprobs", "outLogprobs", n_lp, rows);
  Need(env, "logprobs", "outLse", n_lse, rows);
  if (p.entropy) Need(env, "logprobs", "outEntropy", n_ent, rows);
  if (p.sum_squares) Need(env, "logprobs", "outSumSquares", n_sq, rows);
  return {[p](const KernelTable& k, Pool* pool) { return k.logprobs(p, pool); },
          [v = p.vocab, ig = p.ignore_index](const Report& r) { return LogprobsMessage(r, v, ig); }};
}

CpuOp LogprobsBackward(Args& a) {
  Napi::Env env = a.Env();
  LogprobsBackwardParams p{};
  LogitsOf(a, "logprobsBackward", p);
  size_t n_out = 0, n_lse = 0, n_g = 0, n_ge = 0, n_e = 0;
  p.lse = a.Buf<float>("lse", &n_lse);
  p.grad_logprobs = a.Buf<float>("gradLogprobs", &n_g);
  p.grad_entropy = a.OptBuf<float>("gradEntropy", &n_ge);
  p.entropy = a.OptBuf<float>("entropy", &n_e);
  p.grad_logits = a.FloatBuf("outGradLogits", p.dtype, &n_out);
  const size_t rows = size_t(p.rows);
  Need(env, "logprobsBackward", "outGradLogits", n_out, rows * size_t(p.vocab) * ElemSize(p.dtype));
  Need(env, "logprobsBackward", "lse", n_lse, rows);
  Need(env, "logprobsBackward", "gradLogprobs", n_g, rows);
  if (p.grad_entropy) {
    if (!p.entropy) throw ArgError(env, "logprobsBackward: gradEntropy needs entropy");
    Need(env, "logprobsBackward", "gradEntropy", n_ge, rows);
    Need(env, "logprobsBackward", "entropy", n_e, rows);
  }
  return {[p](const KernelTable& k, Pool* pool) { return k.logprobs_backward(p, pool); },
          [v = p.vocab, ig = p.ignore_index](const Report& r) { return TargetMessage(r, v, ig); }};
}

CpuOp GatherProbs(Args& a) {
  Napi::Env env = a.Env();
  GatherProbsParams p{};
  size_t n_logits = 0, n_lse = 0, n_go = 0, n_vo = 0, n_po = 0, n_cols = 0, n_out = 0;
  p.dtype = FloatTypeOf(a, "dtype");
  p.logits = a.FloatBuf("logits", p.dtype, &n_logits);
  p.lse = a.Buf<float>("lse", &n_lse);
  p.num_tokens = a.Int("numTokens");
  p.vocab = a.Int("vocab");
  p.temperature = a.Num("temperature");
  p.columns = a.Buf<int32_t>("columns", &n_cols);
  p.group_token_offsets = a.Buf<int32_t>("groupTokenOffsets", &n_go);
  p.vocab_offsets = a.Buf<int32_t>("vocabOffsets", &n_vo);
  p.probs_offsets = a.Buf<double>("probsOffsets", &n_po);
  p.probs = a.Buf<float>("outProbs", &n_out);
  const size_t T = size_t(p.num_tokens);
  Need(env, "gatherProbs", "logits", n_logits, T * size_t(p.vocab) * ElemSize(p.dtype));
  Need(env, "gatherProbs", "lse", n_lse, T);
  if (n_go == 0) throw ArgError(env, "gatherProbs: groupTokenOffsets: expected G + 1 ≥ 1 elements");
  p.groups = int64_t(n_go) - 1;
  Need(env, "gatherProbs", "vocabOffsets", n_vo, n_go);
  Need(env, "gatherProbs", "probsOffsets", n_po, n_go);
  Need(env, "gatherProbs", "outProbs", n_out, size_t(p.probs_offsets[p.groups]));
  if (size_t(p.group_token_offsets[p.groups]) != T || size_t(p.vocab_offsets[p.groups]) != n_cols)
    throw ArgError(env, "gatherProbs: offsets disagree with numTokens or columns");
  return {[p](const KernelTable& k, Pool* pool) { return k.gather_probs(p, pool); }};
}

CpuOp Advantages(Args& a) {
  Napi::Env env = a.Env();
  AdvantagesParams p{};
  size_t n_r = 0, n_go = 0, n_ro = 0, n_adv = 0, n_mean = 0, n_std = 0, n_deg = 0;
  p.rewards = a.Buf<float>("rewards", &n_r);
  p.group_offsets = a.Buf<int32_t>("groupOffsets", &n_go);
  p.response_offsets = a.OptBuf<int32_t>("responseOffsets", &n_ro);
  p.estimator = a.Enum("estimator", gk::kEstimatorNames);
  p.std_kind = a.Enum("std", gk::kStdKindNames);
  p.eps = a.Num("eps");
  p.scale = a.Enum("scale", gk::kScaleKindNames);
  p.singleton = a.Enum("singleton", gk::kSingletonNames);
  p.nan_rewards = a.Enum("nanRewards", gk::kNanRewardNames);
  p.whiten_mask_eps = a.Num("whitenMaskEps");
  p.whiten_sample = a.Enum("whitenVariance", gk::kStdKindNames) == int(StdKind::Sample);
  p.whiten_clamp = a.Enum("whitenVarianceEps", {"add", "clamp"}) == 1;
  p.advantages = a.Buf<float>("outAdvantages", &n_adv);
  p.mean = a.Buf<float>("outMean", &n_mean);
  p.std = a.Buf<float>("outStd", &n_std);
  p.degenerate = a.Buf<uint8_t>("outDegenerate", &n_deg);
  if (n_go == 0) throw ArgError(env, "advantages: groupOffsets: expected G + 1 ≥ 1 elements");
  p.groups = int64_t(n_go) - 1;
  p.responses = int64_t(n_r);
  if (size_t(p.group_offsets[p.groups]) != n_r) throw ArgError(env, "advantages: groupOffsets must end at R");
  const auto est = static_cast<Estimator>(p.estimator);
  const bool needs_ro = est == Estimator::Opo || est == Estimator::ReinforcePpBaseline;
  if (needs_ro && !p.response_offsets)
    throw ArgError(env, "advantages: responseOffsets: required by opo and reinforce_pp_baseline");
  if (p.response_offsets) {
    Need(env, "advantages", "responseOffsets", n_ro, n_r + 1);
    p.tokens = p.response_offsets[n_r];
  }
  Need(env, "advantages", "outAdvantages", n_adv,
       est == Estimator::ReinforcePpBaseline ? size_t(p.tokens) : n_r);
  Need(env, "advantages", "outMean", n_mean, size_t(p.groups));
  Need(env, "advantages", "outStd", n_std, size_t(p.groups));
  Need(env, "advantages", "outDegenerate", n_deg, size_t(p.groups));
  return {[p](const KernelTable& k, Pool* pool) { return k.advantages(p, pool); }};
}

CpuOp ExpandToTokens(Args& a) {
  Napi::Env env = a.Env();
  ExpandParams p{};
  size_t n_v = 0, n_ro = 0, n_out = 0;
  p.values = a.Buf<float>("values", &n_v);
  p.response_offsets = a.Buf<int32_t>("responseOffsets", &n_ro);
  p.out = a.Buf<float>("out", &n_out);
  Need(env, "expandToTokens", "responseOffsets", n_ro, n_v + 1);
  Need(env, "expandToTokens", "out", n_out, size_t(p.response_offsets[n_v]));
  p.responses = int64_t(n_v);
  return {[p](const KernelTable& k, Pool* pool) { return k.expand_to_tokens(p, pool); }};
}

CpuOp Whiten(Args& a) {
  Napi::Env env = a.Env();
  WhitenParams p{};
  size_t n_v = 0, n_m = 0, n_out = 0;
  p.values = a.Buf<float>("values", &n_v);
  p.mask = a.OptBuf<uint8_t>("mask", &n_m);
  p.mask_eps = a.Num("maskEps");
  p.sample = a.Enum("variance", {"population", "sample"}) == 1;
  p.clamp = a.Enum("varianceEps", {"add", "clamp"}) == 1;
  p.keep_mean = a.Bool("keepMean");
  p.out = a.Buf<float>("out", &n_out);
  p.n = int64_t(n_v);
  if (p.mask) Need(env, "whiten", "mask", n_m, n_v);
  Need(env, "whiten", "out", n_out, n_v);
  return {[p](const KernelTable& k, Pool* pool) { return k.whiten(p, pool); }};
}

// THR's plan (ThrParams::correct_*, src/api/thr-plan.ts) against the layout: its sizes, and every correct
// token inside its own group's tokens (the kernels index hidden and probs with them). Degenerate groups
// list none.
void CheckThrPlan(Napi::Env env, const char* op, const ThrParams& p, size_t n_cs, size_t n_ct, size_t n_cw) {
  Need(env, op, "correctStart", n_cs, size_t(p.groups) + 1);
  Need(env, op, "correctWeights", n_cw, n_ct);
  const int32_t* cs = p.correct_start;
  if (cs[0] != 0 || size_t(cs[p.groups]) != n_ct)
    throw ArgError(env, std::string(op) + ": correctStart must run from 0 to the number of correct tokens");
  for (int64_t g = 0; g < p.groups; ++g) {
    if (cs[g] > cs[g + 1]) throw ArgError(env, std::string(op) + ": correctStart must be non-decreasing");
    if (p.degenerate[g] && cs[g] != cs[g + 1])
      throw ArgError(env, std::string(op) + ": correctStart: degenerate group " + std::to_string(g) +
                              " lists correct tokens");
  }
  for (int64_t g = 0; g < p.groups; ++g) {
    const int32_t t0 = p.response_offsets[p.group_offsets[g]], t1 = p.response_offsets[p.group_offsets[g + 1]];
    for (int32_t u = cs[g]; u < cs[g + 1]; ++u)
      if (p.correct_tokens[u] < t0 || p.correct_tokens[u] >= t1)
        throw ArgError(env, std::string(op) + ": correctTokens[" + std::to_string(u) + "] = " +
                                std::to_string(p.correct_tokens[u]) + " is not a token of group " + std::to_string(g));
  }
}

// tokenHiddenReward whole, or one of its halves: the same keys, plus `aggregate` (the stacked M,
// [ΣK_g, dim] f32) for the halves; thrAggregate has no outThr / outTau / beta.
template <gk::ThrStep step>
CpuOp ThrOp(Args& a) {
  Napi::Env env = a.Env();
  const char* op = step == gk::ThrStep::Full ? "tokenHiddenReward"
                   : step == gk::ThrStep::Aggregate ? "thrAggregate"
                                                    : "thrScore";
  ThrParams p{};
  p.step = step;
  size_t n_ro = 0, n_go = 0, n_c = 0, n_d = 0, n_h = 0, n_p = 0, n_po = 0, n_vo = 0, n_tc = 0, n_thr = 0, n_tau = 0;
  size_t n_cs = 0, n_ct = 0, n_cw = 0, n_agg = 0;
  p.response_offsets = a.Buf<int32_t>("responseOffsets", &n_ro);
  p.group_offsets = a.Buf<int32_t>("groupOffsets", &n_go);
  p.correct = a.Buf<uint8_t>("correct", &n_c);
  p.degenerate = a.Buf<uint8_t>("degenerate", &n_d);
  p.hidden_dtype = FloatTypeOf(a, "hiddenDtype");
  p.hidden = a.FloatBuf("hidden", p.hidden_dtype, &n_h);
  p.dim = a.Int("dim");
  p.probs = a.Buf<float>("probs", &n_p);
  p.probs_offsets = a.Buf<double>("probsOffsets", &n_po);
  p.vocab_offsets = a.Buf<int32_t>("vocabOffsets", &n_vo);
  p.token_column = a.Buf<int32_t>("tokenColumn", &n_tc);
  // The API's plan: the correct tokens of each live group and their weights (so they carry the weighting).
  p.correct_start = a.Buf<int32_t>("correctStart", &n_cs);
  p.correct_tokens = a.Buf<int32_t>("correctTokens", &n_ct);
  p.correct_weights = a.Buf<float>("correctWeights", &n_cw);
  a.Enum("precision", gk::kThrPrecisionNames);  // cuda's choice; f32 products with f64 chunks here
  if (step != gk::ThrStep::Full) p.aggregate = a.Buf<float>("aggregate", &n_agg);
  if (step != gk::ThrStep::Aggregate) {
    p.beta = a.Num("beta");
    p.thr = a.Buf<float>("outThr", &n_thr);
    p.tau = a.Buf<float>("outTau", &n_tau);
  }
  if (n_go == 0 || n_ro == 0) throw ArgError(env, std::string(op) + ": offsets: expected at least one element");
  p.groups = int64_t(n_go) - 1;
  const size_t R = n_ro - 1, T = size_t(p.response_offsets[R]);
  Need(env, op, "correct", n_c, R);
  Need(env, op, "degenerate", n_d, size_t(p.groups));
  Need(env, op, "hidden", n_h, T * size_t(p.dim) * ElemSize(p.hidden_dtype));
  Need(env, op, "probsOffsets", n_po, n_go);
  Need(env, op, "vocabOffsets", n_vo, n_go);
  Need(env, op, "probs", n_p, size_t(p.probs_offsets[p.groups]));
  Need(env, op, "tokenColumn", n_tc, T);
  if (step != gk::ThrStep::Full) Need(env, op, "aggregate", n_agg, size_t(p.vocab_offsets[p.groups]) * size_t(p.dim));
  if (step != gk::ThrStep::Aggregate) {
    Need(env, op, "outThr", n_thr, T);
    Need(env, op, "outTau", n_tau, size_t(p.groups));
  }
  CheckThrPlan(env, op, p, n_cs, n_ct, n_cw);
  return {[p](const KernelTable& k, Pool* pool) { return k.token_hidden_reward(p, pool); }};
}

CpuOp ThrReweight(Args& a) {
  Napi::Env env = a.Env();
  ThrReweightParams p{};
  size_t n_ro = 0, n_go = 0, n_c = 0, n_d = 0, n_adv = 0, n_thr = 0, n_tau = 0, n_out = 0, n_eta = 0;
  p.response_offsets = a.Buf<int32_t>("responseOffsets", &n_ro);
  p.group_offsets = a.Buf<int32_t>("groupOffsets", &n_go);
  p.correct = a.Buf<uint8_t>("correct", &n_c);
  p.degenerate = a.Buf<uint8_t>("degenerate", &n_d);
  p.token_advantages = a.Buf<float>("tokenAdvantages", &n_adv);
  p.thr = a.Buf<float>("thr", &n_thr);
  p.tau = a.Buf<float>("tau", &n_tau);
  p.mode = a.Enum("mode", gk::kReweightModeNames);
  p.p = a.Num("p");
  p.mask = a.Bool("mask");
  p.eta = a.Buf<double>("eta", &n_eta);  // [G], the API's ReweightPlan
  p.out = a.Buf<float>("out", &n_out);
  if (n_go == 0 || n_ro == 0) throw ArgError(env, "thrReweight: offsets: expected at least one element");
  p.groups = int64_t(n_go) - 1;
  const size_t R = n_ro - 1, T = size_t(p.response_offsets[R]);
  Need(env, "thrReweight", "correct", n_c, R);
  Need(env, "thrReweight", "degenerate", n_d, size_t(p.groups));
  Need(env, "thrReweight", "tokenAdvantages", n_adv, T);
  Need(env, "thrReweight", "thr", n_thr, T);
  Need(env, "thrReweight", "tau", n_tau, size_t(p.groups));
  Need(env, "thrReweight", "eta", n_eta, size_t(p.groups));
  Need(env, "thrReweight", "out", n_out, T);
  return {[p](const KernelTable& k, Pool* pool) { return k.thr_reweight(p, pool); }};
}

// ------------------------------------------------------------------------ LM-head family (lmhead.cc)
// The head's keys (hidden, weight, bias?, dtype, rows, dim, vocab), lengths checked.
LinearHead HeadOf(Args& a, const char* op) {
  Napi::Env env = a.Env();
  LinearHead h{};
  size_t n_h = 0, n_w = 0, n_b = 0;
  h.dtype = FloatTypeOf(a, "dtype");
  h.hidden = a.FloatBuf("hidden", h.dtype, &n_h);
  h.weight = a.FloatBuf("weight", h.dtype, &n_w);
  h.bias = a.Has("bias") ? a.FloatBuf("bias", h.dtype, &n_b) : nullptr;
  h.rows = a.Int("rows");
  h.dim = a.Int("dim");
  h.vocab = a.Int("vocab");
  const size_t es = ElemSize(h.dtype);
  Need(env, op, "hidden", n_h, size_t(h.rows * h.dim) * es);
  Need(env, op, "weight", n_w, size_t(h.vocab * h.dim) * es);
  if (h.bias) Need(env, op, "bias", n_b, size_t(h.vocab) * es);
  return h;
}

// The states' output keys (outMax, outSumExp, outSumExpDelta?, outSumExpSq?, outTargetLogit), [rows] each.
StatesOut StatesOutOf(Args& a, const char* op, int64_t rows) {
  StatesOut o{};
  size_t n[5] = {};
  o.max = a.Buf<float>("outMax", &n[0]);
  o.sum_exp = a.Buf<float>("outSumExp", &n[1]);
  o.sum_exp_delta = a.OptBuf<float>("outSumExpDelta", &n[2]);
  o.sum_exp_sq = a.OptBuf<float>("outSumExpSq", &n[3]);
  o.target_logit = a.Buf<float>("outTargetLogit", &n[4]);
  const char* keys[5] = {"outMax", "outSumExp", "outSumExpDelta", "outSumExpSq", "outTargetLogit"};
  for (int k = 0; k < 5; ++k)
    if (k < 2 || k == 4 || n[k] > 0) Need(a.Env(), op, keys[k], n[k], size_t(rows));
  return o;
}

// The logprobs output keys (outLogprobs, outLse, outEntropy?, outSumSquares?), [rows] each.
LogprobsOut LogprobsOutOf(Args& a, const char* op, int64_t rows) {
  LogprobsOut o{};
  size_t n_lp = 0, n_lse = 0, n_ent = 0, n_sq = 0;
  o.logprobs = a.Buf<float>("outLogprobs", &n_lp);
  o.lse = a.Buf<float>("outLse", &n_lse);
  o.entropy = a.OptBuf<float>("outEntropy", &n_ent);
  o.sum_squares = a.OptBuf<float>("outSumSquares", &n_sq);
  Need(a.Env(), op, "outLogprobs", n_lp, size_t(rows));
  Need(a.Env(), op, "outLse", n_lse, size_t(rows));
  if (o.entropy) Need(a.Env(), op, "outEntropy", n_ent, size_t(rows));
  if (o.sum_squares) Need(a.Env(), op, "outSumSquares", n_sq, size_t(rows));
  return o;
}

// linearLogprobs and linearLogprobStates: one forward, the logprobs outputs or the states.
CpuOp LinearForward(Args& a, bool states) {
  const char* op = states ? "linearLogprobStates" : "linearLogprobs";
  LinearForwardParams p{};
  size_t n_t = 0;
  p.head = HeadOf(a, op);
  p.targets = a.Buf<int32_t>("targets", &n_t);
  p.temperature = a.Num("temperature");
  p.ignore_index = a.Int("ignoreIndex");
  if (states) {
    p.vocab_start = a.Int("vocabStart");
    p.states = StatesOutOf(a, op, p.head.rows);
    p.entropy = p.states.sum_exp_delta != nullptr;
    p.sum_squares = p.states.sum_exp_sq != nullptr;
  } else {
    p.out = LogprobsOutOf(a, op, p.head.rows);
    p.entropy = p.out.entropy != nullptr;
    p.sum_squares = p.out.sum_squares != nullptr;
  }
  Need(a.Env(), op, "targets", n_t, size_t(p.head.rows));
  return {[p](const KernelTable& k, Pool* pool) { return k.linear_forward(p, pool); },
          [v = p.head.vocab, ig = p.ignore_index](const Report& r) { return LogprobsMessage(r, v, ig); }};
}
CpuOp LinearLogprobs(Args& a) { return LinearForward(a, false); }
CpuOp LinearLogprobStates(Args& a) { return LinearForward(a, true); }

CpuOp LogprobStates(Args& a) {
  const char* op = "logprobStates";
  LogprobStatesParams p{};
  LogitsOf(a, op, p);
  p.vocab_start = a.Int("vocabStart");
  p.states = StatesOutOf(a, op, p.rows);
  p.entropy = p.states.sum_exp_delta != nullptr;
  p.sum_squares = p.states.sum_exp_sq != nullptr;
  return {[p](const KernelTable& k, Pool* pool) { return k.logprob_states(p, pool); }};
}

CpuOp MergeLogprobStates(Args& a) {
  const char* op = "mergeLogprobStates";
  Napi::Env env = a.Env();
  MergeStatesParams p{};
  size_t n_t = 0;
  p.targets = a.Buf<int32_t>("targets", &n_t);
  p.rows = a.Int("rows");
  p.vocab = a.Int("vocab");
  p.temperature = a.Num("temperature");
  p.ignore_index = a.Int("ignoreIndex");
  p.out = LogprobsOutOf(a, op, p.rows);
  Need(env, op, "targets", n_t, size_t(p.rows));
  const Napi::Array arr = a.Objects("states");
  std::vector<StatesIn> states;
  for (uint32_t i = 0; i < arr.Length(); ++i) {
    const std::string name = std::string(op) + ": states[" + std::to_string(i) + "]";
    Args s(arr.Get(i), name.c_str());
    StatesIn st{};
    size_t n[5] = {};
    st.max = s.Buf<float>("max", &n[0]);
    st.sum_exp = s.Buf<float>("sumExp", &n[1]);
    st.sum_exp_delta = s.OptBuf<float>("sumExpDelta", &n[2]);
    st.sum_exp_sq = s.OptBuf<float>("sumExpSq", &n[3]);
    st.target_logit = s.Buf<float>("targetLogit", &n[4]);
    st.vocab_start = s.Int("vocabStart");
    st.vocab_end = s.Int("vocabEnd");
    s.Done();
    const char* keys[5] = {"max", "sumExp", "sumExpDelta", "sumExpSq", "targetLogit"};
    for (int k = 0; k < 5; ++k)
      if (k < 2 || k == 4 || n[k] > 0) Need(env, name.c_str(), keys[k], n[k], size_t(p.rows));
    if ((p.out.entropy && !st.sum_exp_delta) || (p.out.sum_squares && !st.sum_exp_sq))
      throw ArgError(env, name + ": the sums the outputs need are missing");
    states.push_back(st);
  }
  if (states.empty()) throw ArgError(env, std::string(op) + ": states: expected at least one");
  return {[p, states](const KernelTable& k, Pool* pool) mutable {
            p.states = states.data();
            p.count = int64_t(states.size());
            return k.merge_states(p, pool);
          },
          [v = p.vocab, ig = p.ignore_index](const Report& r) { return LogprobsMessage(r, v, ig); }};
}

CpuOp LinearLogprobsBackward(Args& a) {
  const char* op = "linearLogprobsBackward";
  Napi::Env env = a.Env();
  LinearBackwardParams p{};
  size_t n_t = 0, n_lse = 0, n_g = 0, n_ge = 0, n_e = 0, n_gh = 0, n_gw = 0, n_gb = 0;
  p.head = HeadOf(a, op);
  p.targets = a.Buf<int32_t>("targets", &n_t);
  p.lse = a.Buf<float>("lse", &n_lse);
  p.grad_logprobs = a.Buf<float>("gradLogprobs", &n_g);
  p.grad_entropy = a.OptBuf<float>("gradEntropy", &n_ge);
  p.entropy = a.OptBuf<float>("entropy", &n_e);
  p.temperature = a.Num("temperature");
  p.ignore_index = a.Int("ignoreIndex");
  p.vocab_start = a.Int("vocabStart");
  p.target_limit = a.Int("targetLimit");
  // The gradients' dtype: f32, or the head's (gradDtype 'input'); their arrays are of that dtype.
  p.grad_dtype = FloatTypeOf(a, "gradDtype");
  if (p.grad_dtype != kF32 && p.grad_dtype != p.head.dtype)
    throw ArgError(env, std::string(op) + ": gradDtype: expected 'f32' or the head's dtype");
  p.acc_cols = a.OptInt("accCols", 0);  // test hook
  p.grad_hidden = a.FloatBuf("outGradHidden", p.grad_dtype, &n_gh);
  p.grad_weight = a.FloatBuf("outGradWeight", p.grad_dtype, &n_gw);
  p.grad_bias = a.Has("outGradBias") ? a.FloatBuf("outGradBias", p.grad_dtype, &n_gb) : nullptr;
  const size_t ges = ElemSize(p.grad_dtype);
  const size_t rows = size_t(p.head.rows);
  Need(env, op, "targets", n_t, rows);
  Need(env, op, "lse", n_lse, rows);
  Need(env, op, "gradLogprobs", n_g, rows);
  if (p.grad_entropy) {
    if (!p.entropy) throw ArgError(env, std::string(op) + ": gradEntropy needs entropy");
    Need(env, op, "gradEntropy", n_ge, rows);
    Need(env, op, "entropy", n_e, rows);
  }
  Need(env, op, "outGradHidden", n_gh, rows * size_t(p.head.dim) * ges);
  Need(env, op, "outGradWeight", n_gw, size_t(p.head.vocab * p.head.dim) * ges);
  if (p.grad_bias) Need(env, op, "outGradBias", n_gb, size_t(p.head.vocab) * ges);
  if (!p.head.bias != !p.grad_bias) throw ArgError(env, std::string(op) + ": outGradBias goes with bias");
  return {[p](const KernelTable& k, Pool* pool) { return k.linear_backward(p, pool); },
          [v = p.target_limit, ig = p.ignore_index](const Report& r) { return TargetMessage(r, v, ig); }};
}

// policyLoss: the options as policy_args.h reads them for both addons; the inputs and outputs as host
// arrays of T = responseOffsets[R] elements (the offsets from 0 and non-decreasing: the kernel indexes
// with them).
CpuOp PolicyLoss(Args& a) {
  Napi::Env env = a.Env();
  const char* op = "policyLoss";
  PolicyParams p{};
  size_t n_ro = 0;
  p.response_offsets = a.Buf<int32_t>("responseOffsets", &n_ro);
  if (n_ro == 0) throw ArgError(env, "policyLoss: responseOffsets: expected R + 1 ≥ 1 elements");
  p.responses = int64_t(n_ro) - 1;
  const int32_t* ro = p.response_offsets;
  bool ok = ro[0] == 0;
  for (int64_t r = 0; ok && r < p.responses; ++r) ok = ro[r] <= ro[r + 1];
  if (!ok) throw ArgError(env, "policyLoss: responseOffsets: expected non-decreasing values from 0");
  const size_t T = size_t(ro[p.responses]);
  // A [T] f32 array (optional: null when absent), its length checked.
  auto f32 = [&](const char* key, bool optional, size_t want) -> float* {
    size_t n = 0;
    float* d = optional ? a.OptBuf<float>(key, &n) : a.Buf<float>(key, &n);
    if (d || !optional) Need(env, op, key, n, want);
    return d;
  };
  PolicyOptionsOf(a, p, [&](const char* key) { return f32(key, false, T); });
  p.logprobs = f32("logprobs", false, T);
  p.old_logprobs = f32("oldLogprobs", false, T);
  p.advantages = f32("advantages", false, T);
  p.entropy = f32("entropy", true, T);
  size_t n_mask = 0;
  p.mask = a.OptBuf<uint8_t>("mask", &n_mask);
  if (p.mask) Need(env, op, "mask", n_mask, T);
  p.loss_out = f32("outLoss", false, 1);
  p.grad = f32("outGradLogprobs", false, T);
  p.grad_entropy = f32("outGradEntropy", true, T);
  p.token_loss = f32("outTokenLoss", true, T);
  p.stats = f32("outStats", false, 13);
  if ((p.entropy == nullptr) != (p.grad_entropy == nullptr))
    throw ArgError(env, "policyLoss: entropy and outGradEntropy come together");
  return {[p](const KernelTable& k, Pool* pool) { return k.policy_loss(p, pool); }};
}

// rolloutRejection: ℓ, ℓᵛ and the mask as host arrays of T = responseOffsets[R] elements (the offsets from
// 0 and non-decreasing: the kernel indexes with them), the criteria as objects { statistic, level, lower,
// upper } (f32 bounds: the API rounds them), the u8 mask [T] and the stats [2 + 7·criteria] out.
CpuOp RolloutRejection(Args& a) {
  Napi::Env env = a.Env();
  const char* op = "rolloutRejection";
  RolloutRejectionParams p{};
  size_t n_ro = 0, n_lp = 0, n_lv = 0, n_mask = 0, n_out = 0, n_stats = 0;
  p.response_offsets = a.Buf<int32_t>("responseOffsets", &n_ro);
  if (n_ro == 0) throw ArgError(env, "rolloutRejection: responseOffsets: expected R + 1 ≥ 1 elements");
  p.responses = int64_t(n_ro) - 1;
  const int32_t* ro = p.response_offsets;
  bool ok = ro[0] == 0;
  for (int64_t r = 0; ok && r < p.responses; ++r) ok = ro[r] <= ro[r + 1];
  if (!ok) throw ArgError(env, "rolloutRejection: responseOffsets: expected non-decreasing values from 0");
  const size_t T = size_t(ro[p.responses]);
  p.logprobs = a.Buf<float>("logprobs", &n_lp);
  p.rollout_logprobs = a.Buf<float>("rolloutLogprobs", &n_lv);
  p.mask = a.OptBuf<uint8_t>("mask", &n_mask);
  p.out_mask = a.Buf<uint8_t>("outMask", &n_out);
  p.stats = a.Buf<float>("outStats", &n_stats);
  Need(env, op, "logprobs", n_lp, T);
  Need(env, op, "rolloutLogprobs", n_lv, T);
  if (p.mask) Need(env, op, "mask", n_mask, T);
  Need(env, op, "outMask", n_out, T);
  const Napi::Array arr = a.Objects("criteria");
  if (arr.Length() < 1 || arr.Length() > uint32_t(kRejectionMaxCriteria))
    throw ArgError(env, "rolloutRejection: criteria: expected 1 to " + std::to_string(kRejectionMaxCriteria) +
                            " criteria, got " + std::to_string(arr.Length()));
  p.criteria_count = int(arr.Length());
  for (uint32_t i = 0; i < arr.Length(); ++i) {
    const std::string name = std::string(op) + ": criteria[" + std::to_string(i) + "]";
    Args c(arr.Get(i), name.c_str());
    RejectionCriterion& q = p.criteria[i];
    q.statistic = static_cast<gk::RejectionStatistic>(c.Enum("statistic", gk::kRejectionStatisticNames));
    q.level = static_cast<gk::RejectionLevel>(c.Enum("level", gk::kRejectionLevelNames));
    q.lower = float(c.Num("lower"));
    q.upper = float(c.Num("upper"));
    c.Done();
  }
  Need(env, op, "outStats", n_stats, size_t(2 + 7 * p.criteria_count));
  return {[p](const KernelTable& k, Pool* pool) { return k.rollout_rejection(p, pool); }};
}

}  // namespace

Napi::Value CpuLmheadPlan(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Args a(info[0], "cpuLmheadPlan");
  const int64_t rows = a.Int("rows"), vocab = a.Int("vocab"), dim = a.Int("dim");
  const int dtype = FloatTypeOf(a, "dtype");
  const int64_t threads = a.Int("threads");
  const std::string isa = a.Str("isa");
  a.Done();
  const KernelTable& k = kernel_table(isa == "portable", isa == "avx512");
  if (isa != k.lmhead_isa)
    throw ArgError(env, "cpuLmheadPlan: isa: this machine runs the '" + std::string(k.lmhead_isa) +
                            "' LM head, not '" + isa + "'");
  if (rows < 0 || vocab < 1 || dim < 0 || threads < 1)
    throw ArgError(env, "cpuLmheadPlan: expected rows ≥ 0, vocab ≥ 1, dim ≥ 0, threads ≥ 1");
  const gk::cpu::LmheadPlan plan = k.lmhead_plan(rows, vocab, dim, dtype, int(threads));
  Napi::Object o = Napi::Object::New(env);
  o.Set("forwardBytes", plan.forward_bytes);
  o.Set("backwardBytes", plan.backward_bytes);
  o.Set("backwardInputBytes", plan.backward_input_bytes);  // gradients in the input dtype
  return o;
}

const std::vector<OpSpec<CpuOp>>& CpuOps() {
  static const std::vector<OpSpec<CpuOp>> kOps = {
      {"logprobs", Logprobs},
      {"logprobsBackward", LogprobsBackward},
      {"gatherProbs", GatherProbs},
      {"advantages", Advantages},
      {"expandToTokens", ExpandToTokens},
      {"whiten", Whiten},
      {"tokenHiddenReward", ThrOp<gk::ThrStep::Full>},
      {"thrAggregate", ThrOp<gk::ThrStep::Aggregate>},
      {"thrScore", ThrOp<gk::ThrStep::Score>},
      {"thrReweight", ThrReweight},
      {"linearLogprobs", LinearLogprobs},
      {"linearLogprobStates", LinearLogprobStates},
      {"logprobStates", LogprobStates},
      {"mergeLogprobStates", MergeLogprobStates},
      {"linearLogprobsBackward", LinearLogprobsBackward},
      {"policyLoss", PolicyLoss},
      {"rolloutRejection", RolloutRejection},
  };
  return kOps;
}

}  // namespace gkn
