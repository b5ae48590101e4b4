// Node-API glue of the native cpu backend: argument conversion, errors, and the job thread that runs the
// kernels (native/cpu/) off the event loop. No math here.
//
// A CpuDevice owns a thread pool (native/cpu/pool.cc: `threads` compute threads in all, this device's job
// thread being one of them) and a FIFO of jobs. Every op converts its argument object on the main thread
// (native/args.h: strict, key by key; host memory arrives as typed arrays, one TypeScript interface per
// op in src/backends/cpu/native.ts), keeps a reference to that object (so every array it names outlives
// the job, whatever JS does meanwhile), queues the job and returns a promise. The job thread runs jobs
// in call order, each spread over the pool, and settles the promise on the main thread through a
// thread-safe function: the event loop never waits for the kernels. A fault the kernels report (a
// target out of range, a row of all −Inf) rejects that op's promise with a RANGE error worded as the
// API's host checks word it; nothing aborts the process.
#include "addon_cpu.h"

#include <algorithm>
#include <chrono>
#include <condition_variable>
#include <cstring>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "args.h"
#include "cpu/runtime.h"
#include "enums.h"

namespace gk {
namespace cpu {
namespace {

Napi::Error Error(Napi::Env env, const char* code, const std::string& message) {
  Napi::Error e = Napi::Error::New(env, message);
  e.Set("code", Napi::String::New(env, code));
  return e;
}

struct Settle {
  int pending = 0;  // promise jobs not yet settled (main thread only)
  bool released = false;
  Napi::ThreadSafeFunction tsfn;
};

struct Job {
  std::string op;
  std::function<Report(double& number)> run;  // job thread; a probe sets number
  std::function<std::string(const Report&)> range_message;  // a fault's RANGE message
  std::shared_ptr<Settle> settle;
  std::unique_ptr<Napi::Promise::Deferred> deferred;
  Napi::ObjectReference keep;  // the argument object: every array the job reads or writes
  Report report{kOk, 0, 0};
  bool failed_alloc = false;
  double number = -1;  // a probe's result
};

std::string TargetMessage(const Report& r, int64_t vocab, int64_t ignore) {
  return "targets: expected values in [0, " + std::to_string(vocab) + ") or ignoreIndex (" + std::to_string(ignore) +
         "), got targets[" + std::to_string(r.row) + "] = " + std::to_string(r.value);
}
std::string LogprobsMessage(const Report& r, int64_t vocab, int64_t ignore) {
  if (r.fault == kTargetRange) return TargetMessage(r, vocab, ignore);
  return "logits: row " + std::to_string(r.row) +
         " has every element −Inf: its softmax is undefined; mask the row with ignoreIndex instead";
}

// Median seconds of `reps` runs of fn after `warm` untimed ones.
template <class F>
double MedianSeconds(int warm, int reps, F fn) {
  for (int i = 0; i < warm; ++i) fn();
  std::vector<double> t;
  for (int i = 0; i < reps; ++i) {
    const auto t0 = std::chrono::steady_clock::now();
    fn();
    t.push_back(std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
  }
  std::sort(t.begin(), t.end());
  return t[t.size() / 2];
}

class CpuDevice : public Napi::ObjectWrap<CpuDevice> {
 public:
  static Napi::Function Define(Napi::Env env) {
    return DefineClass(env, "CpuDevice",
                       {
                           InstanceMethod<&CpuDevice::Info>("info"),
                           InstanceMethod<&CpuDevice::Synchronize>("synchronize"),
                           InstanceMethod<&CpuDevice::CopyProbe>("copyProbe"),
                           InstanceMethod<&CpuDevice::ReadProbe>("readProbe"),
                           InstanceMethod<&CpuDevice::FmaProbe>("fmaProbe"),
                           InstanceMethod<&CpuDevice::Logprobs>("logprobs"),
                           InstanceMethod<&CpuDevice::LogprobsBackward>("logprobsBackward"),
                           InstanceMethod<&CpuDevice::GatherProbs>("gatherProbs"),
                           InstanceMethod<&CpuDevice::Advantages>("advantages"),
                           InstanceMethod<&CpuDevice::ExpandToTokens>("expandToTokens"),
                           InstanceMethod<&CpuDevice::Whiten>("whiten"),
                           InstanceMethod<&CpuDevice::TokenHiddenReward>("tokenHiddenReward"),
                           InstanceMethod<&CpuDevice::ThrReweight>("thrReweight"),
                           InstanceMethod<&CpuDevice::Close>("close"),
                       });
  }

  // new CpuDevice({ threads, portable }): `threads` compute threads (1 ≤ threads ≤ 1024; the
  // TypeScript side caps it at the cores), `portable` forces the portable kernels.
  explicit CpuDevice(const Napi::CallbackInfo& info) : Napi::ObjectWrap<CpuDevice>(info) {
    Napi::Env env = info.Env();
    gkn::Args a(info[0], "CpuDevice");
    const int64_t threads = a.Int("threads");
    const bool portable = a.Bool("portable");
    a.Done();
    if (threads < 1 || threads > 1024) throw gkn::ArgError(env, "CpuDevice: threads: expected an integer in [1, 1024]");
    kernels_ = &kernel_table(portable);
    pool_ = pool_create(int(threads));
    tsfn_ = Napi::ThreadSafeFunction::New(env, Napi::Function::New(env, [](const Napi::CallbackInfo&) {}),
                                          "grpo-kernels-cpu", 0, 1);
    tsfn_.Unref(env);
    settle_ = std::make_shared<Settle>();
    settle_->tsfn = tsfn_;
    worker_ = std::thread([this] { Loop(); });
    open_ = true;
    cleanup_ = env.AddCleanupHook(&CpuDevice::OnEnvCleanup, this);
    has_cleanup_ = true;
  }

  ~CpuDevice() override {
    if (has_cleanup_) {
      cleanup_.Remove(Env());
      has_cleanup_ = false;
    }
    Shutdown();
  }

 private:
  // ---------------------------------------------------------------------------------- job thread
  void Loop() {
    for (;;) {
      Job* job = nullptr;
      {
        std::unique_lock<std::mutex> lock(mu_);
        cv_.wait(lock, [this] { return stopping_ || !queue_.empty(); });
        if (queue_.empty()) return;  // stopping and drained
        job = queue_.front();
        queue_.pop_front();
      }
      try {
        job->report = job->run(job->number);
      } catch (const std::bad_alloc&) {
        job->report = Report{kNoMemory, 0, 0};
      }
      if (tsfn_.BlockingCall(job, &CpuDevice::SettleJob) != napi_ok) {
        // Environment shutting down: the promise can no longer settle; leak the job rather than touch
        // JS references off the main thread.
      }
    }
  }

  static void SettleJob(Napi::Env env, Napi::Function, Job* job) {
    if (env == nullptr) return;  // teardown
    Napi::HandleScope scope(env);
    Settle& st = *job->settle;
    if (--st.pending == 0 && !st.released) st.tsfn.Unref(env);
    const Report& r = job->report;
    if (r.fault == kOk) {
      job->deferred->Resolve(job->number >= 0 ? Napi::Number::New(env, job->number) : env.Undefined());
    } else if (r.fault == kNoMemory) {
      job->deferred->Reject(Error(env, "OUT_OF_MEMORY", job->op + ": out of host memory").Value());
    } else {
      const std::string m = job->range_message ? job->range_message(r) : job->op + ": a kernel fault";
      job->deferred->Reject(Error(env, "RANGE", m).Value());
    }
    job->keep.Reset();
    delete job;
  }

  // Queues a job that keeps `keep` (the argument object, or an array) alive; returns its promise.
  Napi::Value Submit(Napi::Env env, Napi::Value keep, const char* op, std::function<Report(double&)> run,
                     std::function<std::string(const Report&)> range_message = nullptr) {
    if (!open_) throw Error(env, "BACKEND_UNAVAILABLE", std::string(op) + ": the cpu context was disposed");
    Job* job = new Job();
    job->op = op;
    job->run = std::move(run);
    job->range_message = std::move(range_message);
    job->deferred = std::make_unique<Napi::Promise::Deferred>(env);
    if (keep.IsObject()) job->keep = Napi::Persistent(keep.As<Napi::Object>());
    job->settle = settle_;
    Napi::Value ret = job->deferred->Promise();
    if (settle_->pending++ == 0) tsfn_.Ref(env);  // pending promises keep the event loop alive
    {
      std::lock_guard<std::mutex> lock(mu_);
      queue_.push_back(job);
    }
    cv_.notify_one();
    return ret;
  }
  // An op's job: runs `kernel` and reports its faults.
  Napi::Value SubmitOp(const Napi::CallbackInfo& info, const char* op, std::function<Report()> kernel,
                       std::function<std::string(const Report&)> range_message = nullptr) {
    return Submit(
        info.Env(), info[0], op, [kernel = std::move(kernel)](double&) { return kernel(); },
        std::move(range_message));
  }

  static void OnEnvCleanup(CpuDevice* self) {
    self->has_cleanup_ = false;
    self->Shutdown();
  }

  void Shutdown() {
    if (!open_) return;
    open_ = false;
    {
      std::lock_guard<std::mutex> lock(mu_);
      stopping_ = true;
    }
    cv_.notify_one();
    if (worker_.joinable()) worker_.join();
    pool_destroy(pool_);
    pool_ = nullptr;
    settle_->released = true;
    tsfn_.Release();
  }

  void RequireOpen(Napi::Env env, const char* op) {
    if (!open_) throw Error(env, "BACKEND_UNAVAILABLE", std::string(op) + ": the cpu context was disposed");
  }

  // -------------------------------------------------------------------------------------- methods
  Napi::Value Info(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    Napi::Object o = Napi::Object::New(env);
    o.Set("isa", kernels_->isa);
    o.Set("avx2Supported", avx2_supported());
    o.Set("avx2Compiled", avx2_compiled());
    o.Set("threads", pool_ ? pool_threads(pool_) : 0);
    o.Set("cores", core_count());
    return o;
  }

  // Resolves after every op queued before it (a fence: read() waits on it).
  Napi::Value Synchronize(const Napi::CallbackInfo& info) {
    return Submit(info.Env(), info.Env().Undefined(), "synchronize", [](double&) { return Report{kOk, 0, 0}; });
  }

  // copyProbe(bytes) → seconds per copy of `bytes` bytes over the pool (median of 7 after 2 warm-ups).
  Napi::Value CopyProbe(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    RequireOpen(env, "copyProbe");
    if (!info[0].IsNumber()) throw gkn::ArgError(env, "copyProbe: bytes: expected a number");
    const size_t bytes = std::max<size_t>(size_t(info[0].As<Napi::Number>().DoubleValue()), 64);
    Pool* pool = pool_;
    const KernelTable* k = kernels_;
    return Submit(env, env.Undefined(), "copyProbe", [bytes, pool, k](double& seconds) {
      std::vector<uint8_t> a(bytes, 1), b(bytes);
      seconds = MedianSeconds(2, 7, [&] { k->copy_probe(pool, a.data(), b.data(), bytes); });
      return Report{kOk, 0, 0};
    });
  }

  // readProbe(array) → seconds per streaming read of the array's bytes over the pool (median of 7 after
  // 2 warm-ups): the bandwidth yardstick of the benchmarks (the same bytes an op reads, on its threads).
  Napi::Value ReadProbe(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    RequireOpen(env, "readProbe");
    if (!info[0].IsTypedArray()) throw gkn::ArgError(env, "readProbe: expected a typed array");
    Napi::TypedArray ta = info[0].As<Napi::TypedArray>();
    const uint8_t* data = static_cast<const uint8_t*>(ta.ArrayBuffer().Data()) + ta.ByteOffset();
    Pool* pool = pool_;
    const KernelTable* k = kernels_;
    const size_t bytes = ta.ByteLength();
    return Submit(env, info[0], "readProbe", [data, bytes, pool, k](double& seconds) {
      seconds = MedianSeconds(2, 7, [&] { k->read_probe(pool, data, bytes); });
      return Report{kOk, 0, 0};
    });
  }

  // fmaProbe() → the pool's f32 multiply-add peak in FLOP/s (median of 5 runs of ~20 ms after a warm-up):
  // the yardstick of THR's products in the benchmarks.
  Napi::Value FmaProbe(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    RequireOpen(env, "fmaProbe");
    Pool* pool = pool_;
    const KernelTable* k = kernels_;
    return Submit(env, env.Undefined(), "fmaProbe", [pool, k](double& rate) {
      int64_t iters = 1 << 16;
      // Sized to ~20 ms per run on this machine.
      for (;;) {
        const auto t0 = std::chrono::steady_clock::now();
        k->fma_probe(pool, iters);
        const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
        if (s > 0.02 || iters > (int64_t(1) << 34)) break;
        iters *= 4;
      }
      double flops = 0;
      const double s = MedianSeconds(1, 5, [&] { flops = k->fma_probe(pool, iters); });
      rate = flops / s;
      return Report{kOk, 0, 0};
    });
  }

  // Each op: its params struct filled from one argument object (every key required unless its absence
  // means something, unknown keys refused; array lengths checked against the shape), then Submit. The
  // TypeScript side of each is one interface in src/backends/cpu/native.ts.
  static int FloatTypeOf(gkn::Args& a, const char* key) { return a.Enum(key, {"f32", "f16", "bf16"}); }

  // Checks a length; throws a DTYPE error naming the op and key.
  static void Need(Napi::Env env, const char* op, const char* key, size_t have, size_t want) {
    if (have != want)
      throw gkn::ArgError(env, std::string(op) + ": " + key + ": expected " + std::to_string(want) +
                                   " elements, got " + std::to_string(have));
  }
  static size_t ElemSize(int dtype) { return dtype == kF32 ? 4 : 2; }

  Napi::Value Logprobs(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    RequireOpen(env, "logprobs");
    gkn::Args a(info[0], "logprobs");
    LogprobsParams p{};
    size_t n_logits = 0, n_t = 0, n_lp = 0, n_lse = 0, n_ent = 0, n_sq = 0;
    p.dtype = FloatTypeOf(a, "dtype");
    p.logits = a.FloatBuf("logits", p.dtype, &n_logits);
    p.targets = a.Buf<int32_t>("targets", &n_t);
    p.rows = a.Int("rows");
    p.vocab = a.Int("vocab");
    p.temperature = a.Num("temperature");
    p.ignore_index = a.Int("ignoreIndex");
    p.logprobs = a.Buf<float>("outLogprobs", &n_lp);
    p.lse = a.Buf<float>("outLse", &n_lse);
    p.entropy = a.OptBuf<float>("outEntropy", &n_ent);
    p.sum_squares = a.OptBuf<float>("outSumSquares", &n_sq);
    a.Done();
    const size_t rows = size_t(p.rows);
    Need(env, "logprobs", "logits", n_logits, rows * size_t(p.vocab) * ElemSize(p.dtype));
    Need(env, "logprobs", "targets", n_t, rows);
    Need(env, "logprobs", "outLogprobs", n_lp, rows);
    Need(env, "logprobs", "outLse", n_lse, rows);
    if (p.entropy) Need(env, "logprobs", "outEntropy", n_ent, rows);
    if (p.sum_squares) Need(env, "logprobs", "outSumSquares", n_sq, rows);
    const KernelTable* k = kernels_;
    Pool* pool = pool_;
    return SubmitOp(
        info, "logprobs", [p, k, pool] { return k->logprobs(p, pool); },
        [v = p.vocab, ig = p.ignore_index](const Report& r) { return LogprobsMessage(r, v, ig); });
  }

  Napi::Value LogprobsBackward(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    RequireOpen(env, "logprobsBackward");
    gkn::Args a(info[0], "logprobsBackward");
    LogprobsBackwardParams p{};
    size_t n_logits = 0, n_out = 0, n_t = 0, n_lse = 0, n_g = 0, n_ge = 0, n_e = 0;
    p.dtype = FloatTypeOf(a, "dtype");
    p.logits = a.FloatBuf("logits", p.dtype, &n_logits);
    p.targets = a.Buf<int32_t>("targets", &n_t);
    p.lse = a.Buf<float>("lse", &n_lse);
    p.grad_logprobs = a.Buf<float>("gradLogprobs", &n_g);
    p.grad_entropy = a.OptBuf<float>("gradEntropy", &n_ge);
    p.entropy = a.OptBuf<float>("entropy", &n_e);
    p.rows = a.Int("rows");
    p.vocab = a.Int("vocab");
    p.temperature = a.Num("temperature");
    p.ignore_index = a.Int("ignoreIndex");
    p.grad_logits = a.FloatBuf("outGradLogits", p.dtype, &n_out);
    a.Done();
    const size_t rows = size_t(p.rows);
    const size_t bytes = rows * size_t(p.vocab) * ElemSize(p.dtype);
    Need(env, "logprobsBackward", "logits", n_logits, bytes);
    Need(env, "logprobsBackward", "outGradLogits", n_out, bytes);
    Need(env, "logprobsBackward", "targets", n_t, rows);
    Need(env, "logprobsBackward", "lse", n_lse, rows);
    Need(env, "logprobsBackward", "gradLogprobs", n_g, rows);
    if (p.grad_entropy) {
      if (!p.entropy) throw gkn::ArgError(env, "logprobsBackward: gradEntropy needs entropy");
      Need(env, "logprobsBackward", "gradEntropy", n_ge, rows);
      Need(env, "logprobsBackward", "entropy", n_e, rows);
    }
    const KernelTable* k = kernels_;
    Pool* pool = pool_;
    return SubmitOp(
        info, "logprobsBackward", [p, k, pool] { return k->logprobs_backward(p, pool); },
        [v = p.vocab, ig = p.ignore_index](const Report& r) { return TargetMessage(r, v, ig); });
  }

  Napi::Value GatherProbs(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    RequireOpen(env, "gatherProbs");
    gkn::Args a(info[0], "gatherProbs");
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
    a.Done();
    const size_t T = size_t(p.num_tokens);
    Need(env, "gatherProbs", "logits", n_logits, T * size_t(p.vocab) * ElemSize(p.dtype));
    Need(env, "gatherProbs", "lse", n_lse, T);
    if (n_go == 0) throw gkn::ArgError(env, "gatherProbs: groupTokenOffsets: expected G + 1 ≥ 1 elements");
    p.groups = int64_t(n_go) - 1;
    Need(env, "gatherProbs", "vocabOffsets", n_vo, n_go);
    Need(env, "gatherProbs", "probsOffsets", n_po, n_go);
    Need(env, "gatherProbs", "outProbs", n_out, size_t(p.probs_offsets[p.groups]));
    if (size_t(p.group_token_offsets[p.groups]) != T || size_t(p.vocab_offsets[p.groups]) != n_cols)
      throw gkn::ArgError(env, "gatherProbs: offsets disagree with numTokens or columns");
    const KernelTable* k = kernels_;
    Pool* pool = pool_;
    return SubmitOp(info, "gatherProbs", [p, k, pool] { return k->gather_probs(p, pool); });
  }

  Napi::Value Advantages(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    RequireOpen(env, "advantages");
    gkn::Args a(info[0], "advantages");
    AdvantagesParams p{};
    size_t n_r = 0, n_go = 0, n_ro = 0, n_adv = 0, n_mean = 0, n_std = 0, n_deg = 0;
    p.rewards = a.Buf<float>("rewards", &n_r);
    p.group_offsets = a.Buf<int32_t>("groupOffsets", &n_go);
    p.response_offsets = a.OptBuf<int32_t>("responseOffsets", &n_ro);
    p.estimator = a.Enum("estimator", kEstimatorNames);
    p.std_kind = a.Enum("std", kStdKindNames);
    p.eps = a.Num("eps");
    p.scale = a.Enum("scale", kScaleKindNames);
    p.singleton = a.Enum("singleton", kSingletonNames);
    p.whiten_mask_eps = a.Num("whitenMaskEps");
    p.whiten_sample = a.Enum("whitenVariance", kStdKindNames) == int(StdKind::Sample);
    p.whiten_clamp = a.Enum("whitenVarianceEps", {"add", "clamp"}) == 1;
    p.advantages = a.Buf<float>("outAdvantages", &n_adv);
    p.mean = a.Buf<float>("outMean", &n_mean);
    p.std = a.Buf<float>("outStd", &n_std);
    p.degenerate = a.Buf<uint8_t>("outDegenerate", &n_deg);
    a.Done();
    if (n_go == 0) throw gkn::ArgError(env, "advantages: groupOffsets: expected G + 1 ≥ 1 elements");
    p.groups = int64_t(n_go) - 1;
    p.responses = int64_t(n_r);
    if (size_t(p.group_offsets[p.groups]) != n_r) throw gkn::ArgError(env, "advantages: groupOffsets must end at R");
    const auto est = static_cast<Estimator>(p.estimator);
    const bool needs_ro = est == Estimator::Opo || est == Estimator::ReinforcePpBaseline;
    if (needs_ro && !p.response_offsets)
      throw gkn::ArgError(env, "advantages: responseOffsets: required by opo and reinforce_pp_baseline");
    if (p.response_offsets) {
      Need(env, "advantages", "responseOffsets", n_ro, n_r + 1);
      p.tokens = p.response_offsets[n_r];
    }
    Need(env, "advantages", "outAdvantages", n_adv,
         est == Estimator::ReinforcePpBaseline ? size_t(p.tokens) : n_r);
    Need(env, "advantages", "outMean", n_mean, size_t(p.groups));
    Need(env, "advantages", "outStd", n_std, size_t(p.groups));
    Need(env, "advantages", "outDegenerate", n_deg, size_t(p.groups));
    Pool* pool = pool_;
    return SubmitOp(info, "advantages", [p, pool] { return advantages(p, pool); });
  }

  Napi::Value ExpandToTokens(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    RequireOpen(env, "expandToTokens");
    gkn::Args a(info[0], "expandToTokens");
    ExpandParams p{};
    size_t n_v = 0, n_ro = 0, n_out = 0;
    p.values = a.Buf<float>("values", &n_v);
    p.response_offsets = a.Buf<int32_t>("responseOffsets", &n_ro);
    p.out = a.Buf<float>("out", &n_out);
    a.Done();
    Need(env, "expandToTokens", "responseOffsets", n_ro, n_v + 1);
    Need(env, "expandToTokens", "out", n_out, size_t(p.response_offsets[n_v]));
    p.responses = int64_t(n_v);
    Pool* pool = pool_;
    return SubmitOp(info, "expandToTokens", [p, pool] { return expand_to_tokens(p, pool); });
  }

  Napi::Value Whiten(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    RequireOpen(env, "whiten");
    gkn::Args a(info[0], "whiten");
    WhitenParams p{};
    size_t n_v = 0, n_m = 0, n_out = 0;
    p.values = a.Buf<float>("values", &n_v);
    p.mask = a.OptBuf<uint8_t>("mask", &n_m);
    p.mask_eps = a.Num("maskEps");
    p.sample = a.Enum("variance", {"population", "sample"}) == 1;
    p.clamp = a.Enum("varianceEps", {"add", "clamp"}) == 1;
    p.keep_mean = a.Bool("keepMean");
    p.out = a.Buf<float>("out", &n_out);
    a.Done();
    p.n = int64_t(n_v);
    if (p.mask) Need(env, "whiten", "mask", n_m, n_v);
    Need(env, "whiten", "out", n_out, n_v);
    Pool* pool = pool_;
    return SubmitOp(info, "whiten", [p, pool] { return whiten(p, pool); });
  }

  Napi::Value TokenHiddenReward(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    RequireOpen(env, "tokenHiddenReward");
    gkn::Args a(info[0], "tokenHiddenReward");
    ThrParams p{};
    size_t n_ro = 0, n_go = 0, n_c = 0, n_d = 0, n_h = 0, n_p = 0, n_po = 0, n_vo = 0, n_tc = 0, n_thr = 0, n_tau = 0;
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
    p.length_weighting = a.Enum("weighting", {"none", "length"}) == 1;
    p.beta = a.Num("beta");
    a.Enum("precision", kThrPrecisionNames);  // cuda's choice; f32 products with f64 chunks here
    p.thr = a.Buf<float>("outThr", &n_thr);
    p.tau = a.Buf<float>("outTau", &n_tau);
    a.Done();
    if (n_go == 0 || n_ro == 0) throw gkn::ArgError(env, "tokenHiddenReward: offsets: expected at least one element");
    p.groups = int64_t(n_go) - 1;
    const size_t R = n_ro - 1, T = size_t(p.response_offsets[R]);
    Need(env, "tokenHiddenReward", "correct", n_c, R);
    Need(env, "tokenHiddenReward", "degenerate", n_d, size_t(p.groups));
    Need(env, "tokenHiddenReward", "hidden", n_h, T * size_t(p.dim) * ElemSize(p.hidden_dtype));
    Need(env, "tokenHiddenReward", "probsOffsets", n_po, n_go);
    Need(env, "tokenHiddenReward", "vocabOffsets", n_vo, n_go);
    Need(env, "tokenHiddenReward", "probs", n_p, size_t(p.probs_offsets[p.groups]));
    Need(env, "tokenHiddenReward", "tokenColumn", n_tc, T);
    Need(env, "tokenHiddenReward", "outThr", n_thr, T);
    Need(env, "tokenHiddenReward", "outTau", n_tau, size_t(p.groups));
    const KernelTable* k = kernels_;
    Pool* pool = pool_;
    return SubmitOp(info, "tokenHiddenReward", [p, k, pool] { return k->token_hidden_reward(p, pool); });
  }

  Napi::Value ThrReweight(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    RequireOpen(env, "thrReweight");
    gkn::Args a(info[0], "thrReweight");
    ThrReweightParams p{};
    size_t n_ro = 0, n_go = 0, n_c = 0, n_d = 0, n_adv = 0, n_thr = 0, n_tau = 0, n_out = 0;
    p.response_offsets = a.Buf<int32_t>("responseOffsets", &n_ro);
    p.group_offsets = a.Buf<int32_t>("groupOffsets", &n_go);
    p.correct = a.Buf<uint8_t>("correct", &n_c);
    p.degenerate = a.Buf<uint8_t>("degenerate", &n_d);
    p.token_advantages = a.Buf<float>("tokenAdvantages", &n_adv);
    p.thr = a.Buf<float>("thr", &n_thr);
    p.tau = a.Buf<float>("tau", &n_tau);
    p.mode = a.Enum("mode", kReweightModeNames);
    p.p = a.Num("p");
    p.mask = a.Bool("mask");
    p.eta_auto = !a.Has("eta");  // absent: 'auto'
    p.eta = p.eta_auto ? 0.0 : a.Num("eta");
    p.out = a.Buf<float>("out", &n_out);
    a.Done();
    if (n_go == 0 || n_ro == 0) throw gkn::ArgError(env, "thrReweight: offsets: expected at least one element");
    p.groups = int64_t(n_go) - 1;
    const size_t R = n_ro - 1, T = size_t(p.response_offsets[R]);
    Need(env, "thrReweight", "correct", n_c, R);
    Need(env, "thrReweight", "degenerate", n_d, size_t(p.groups));
    Need(env, "thrReweight", "tokenAdvantages", n_adv, T);
    Need(env, "thrReweight", "thr", n_thr, T);
    Need(env, "thrReweight", "tau", n_tau, size_t(p.groups));
    Need(env, "thrReweight", "out", n_out, T);
    const KernelTable* k = kernels_;
    Pool* pool = pool_;
    return SubmitOp(info, "thrReweight", [p, k, pool] { return k->thr_reweight(p, pool); });
  }

  Napi::Value Close(const Napi::CallbackInfo& info) {
    Shutdown();
    return info.Env().Undefined();
  }

  const KernelTable* kernels_ = nullptr;
  Pool* pool_ = nullptr;
  bool open_ = false;
  std::thread worker_;
  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<Job*> queue_;
  bool stopping_ = false;
  Napi::ThreadSafeFunction tsfn_;
  std::shared_ptr<Settle> settle_;
  Napi::Env::CleanupHook<void (*)(CpuDevice*), CpuDevice> cleanup_;
  bool has_cleanup_ = false;
};

}  // namespace

void AddCpuExports(Napi::Env env, Napi::Object exports) {
  exports.Set("cpuInfo", Napi::Function::New(
                             env,
                             [](const Napi::CallbackInfo& info) -> Napi::Value {
                               Napi::Object o = Napi::Object::New(info.Env());
                               o.Set("avx2Compiled", avx2_compiled());
                               o.Set("avx2Supported", avx2_supported());
                               o.Set("cores", core_count());
                               return o;
                             },
                             "cpuInfo"));
  exports.Set("CpuDevice", CpuDevice::Define(env));
}

}  // namespace cpu
}  // namespace gk
