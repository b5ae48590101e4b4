// Node-API glue of the CUDA backend: argument conversion, errors, and the job thread that runs CUDA
// work off the event loop. No kernels here (native/cuda/*.cu), no math. The native cpu backend's glue
// is native/addon_cpu.cc (its kernels native/cpu/*.cc), built into every addon, with or without CUDA.
//
// Exports: buildInfo() → { cuda, reason, archs, cudaRuntimeVersion, cpu }, enums(), cpuInfo() and the
// class CpuDevice (addon_cpu.cc), and (CUDA builds) the class CudaDevice. A CudaDevice owns one non-blocking stream and one job thread. Every op call converts its
// arguments on the main thread, queues a job, and returns a promise; the job thread runs jobs in FIFO
// order (so stream order = JS call order), enqueues the kernels WITHOUT waiting for them, and hands the
// job back through a thread-safe function that settles the promise on the main thread: the host runs
// ahead of the device. Only read() and synchronize() wait for the stream. A value only the device sees
// (a target id, an all −Inf row) is checked by its kernel, which raises a flag in its own slot of a
// ring of ErrorFlags; each slot is copied back in stream order, and the next read() or synchronize()
// turns the first raised slot into a RANGE error (docs/DESIGN.md, "Errors from the device"). Memory is
// allocated on the main thread with cudaMallocAsync on the same stream (a caching pool; allocations
// are ordered before every later job) and freed by a queued job (so after every earlier user).
// Every CUDA call is checked; a failure becomes a JS Error with `code` (the GrpoKernelsError codes)
// and a message naming the call and cudaGetErrorString; nothing aborts the process.
#include <napi.h>

#include <string>
#include <vector>

#include "enums.h"

#ifndef GRPO_WITH_CUDA
#define GRPO_WITH_CUDA 0
#endif
// The cmake build always compiles the cpu kernels; the CUDA emulator's build (scripts/build-emu.mjs)
// compiles this file alone with the CUDA sources, without them.
#ifndef GRPO_WITH_CPU
#define GRPO_WITH_CPU 0
#endif
#if GRPO_WITH_CPU
#include "addon_cpu.h"
#endif

#if GRPO_WITH_CUDA
#include <algorithm>
#include <atomic>
#include <cstring>
#include <condition_variable>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <thread>
#include <unordered_set>
#include <vector>

#include "args.h"
#include "cuda/advantages.cuh"
#include "cuda/common.cuh"
#include "cuda/lmhead.cuh"
#include "cuda/logprobs.cuh"
#include "cuda/policy.cuh"
#include "cuda/probe.cuh"
#include "cuda/thr.cuh"
#endif

namespace {

Napi::Error MakeError(Napi::Env env, const char* code, const std::string& message) {
  Napi::Error e = Napi::Error::New(env, message);
  e.Set("code", Napi::String::New(env, code));
  return e;
}

// enums() → { estimator: [...], stdKind, scaleKind, singleton, nanRewards, thrPrecision, reweightMode,
// policyLoss, klEstimator, rolloutLevel, rolloutMode, aggregation, termAggregation, seqTokenDivisor }: the names the
// ops accept for each enum, in the C++ enums' order (native/enums.h; test/cuda/enums.test.ts compares them
// with the TypeScript lists and the WGSL constants).
Napi::Value Enums(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  auto list = [&](const std::vector<std::string>& names) {
    Napi::Array a = Napi::Array::New(env, names.size());
    for (size_t i = 0; i < names.size(); ++i) a.Set(uint32_t(i), names[i]);
    return a;
  };
  Napi::Object o = Napi::Object::New(env);
  o.Set("estimator", list(gk::kEstimatorNames));
  o.Set("stdKind", list(gk::kStdKindNames));
  o.Set("scaleKind", list(gk::kScaleKindNames));
  o.Set("singleton", list(gk::kSingletonNames));
  o.Set("nanRewards", list(gk::kNanRewardNames));
  o.Set("thrPrecision", list(gk::kThrPrecisionNames));
  o.Set("reweightMode", list(gk::kReweightModeNames));
  o.Set("policyLoss", list(gk::kPolicyLossNames));
  o.Set("klEstimator", list(gk::kKlEstimatorNames));
  o.Set("rolloutLevel", list(gk::kRolloutLevelNames));
  o.Set("rolloutMode", list(gk::kRolloutModeNames));
  o.Set("aggregation", list(gk::kAggregationNames));
  o.Set("termAggregation", list(gk::kTermAggregationNames));
  o.Set("seqTokenDivisor", list(gk::kSeqTokenDivisorNames));
  return o;
}

// The exports every build has: enums(), and the native cpu backend (cpuInfo, CpuDevice) when compiled in.
void AddCommonExports(Napi::Env env, Napi::Object exports) {
  exports.Set("enums", Napi::Function::New(env, Enums, "enums"));
#if GRPO_WITH_CPU
  gk::cpu::AddCpuExports(env, exports);
#endif
}

#if !GRPO_WITH_CUDA
// ------------------------------------------------------------------------------ CPU-only stub build
#ifndef GRPO_NO_CUDA_REASON
#define GRPO_NO_CUDA_REASON "built without CUDA"
#endif
Napi::Value BuildInfo(const Napi::CallbackInfo& info) {
  Napi::Object o = Napi::Object::New(info.Env());
  o.Set("cuda", false);
  o.Set("reason", GRPO_NO_CUDA_REASON);
  o.Set("cpu", bool(GRPO_WITH_CPU));
  return o;
}
Napi::Object Init(Napi::Env env, Napi::Object exports) {
  exports.Set("buildInfo", Napi::Function::New(env, BuildInfo, "buildInfo"));
  AddCommonExports(env, exports);
  return exports;
}
#else
// ------------------------------------------------------------------------------------- CUDA build
using gk::DType;
using gk::Status;

// The GrpoKernelsError code of a failed Status.
const char* CodeOf(const Status& s) {
  switch (s.code) {
    case gk::Code::Ok:
      return "OK";
    case gk::Code::Range:
      return "RANGE";
    case gk::Code::Invalid:
      return "SHAPE";
    case gk::Code::Cuda:
      break;
  }
  switch (s.err) {
    case cudaErrorMemoryAllocation:
      return "OUT_OF_MEMORY";
    case cudaErrorNoDevice:
    case cudaErrorInsufficientDriver:
    case cudaErrorInitializationError:
    case cudaErrorStubLibrary:
    case cudaErrorSystemDriverMismatch:
    case cudaErrorCompatNotSupportedOnDevice:
    case cudaErrorInvalidDevice:
    case cudaErrorDevicesUnavailable:
    case cudaErrorNoKernelImageForDevice:
    case cudaErrorUnsupportedPtxVersion:
    case cudaErrorNotSupported:
      return "BACKEND_UNAVAILABLE";
    default:
      // Illegal address, launch failure, ECC, timeouts and every other fault: the context is suspect.
      return "DEVICE_LOST";
  }
}

// RANGE messages come from kernel flags and start with the argument they name ("targets: ..."), worded
// as the API's host checks word them; other messages get the op's name in front.
Napi::Error StatusError(Napi::Env env, const std::string& op, const Status& s) {
  return MakeError(env, CodeOf(s), s.code == gk::Code::Range ? s.message : op + ": " + s.message);
}

std::string CudaCallError(const char* call, cudaError_t e) {
  return std::string(call) + " failed: " + cudaGetErrorString(e) + " (" + cudaGetErrorName(e) + ")";
}

// ---------------------------------------------------------------------------- argument conversion
// The ops' argument objects go through gkn::Args (native/args.h); the positional arguments of the
// memory methods (pointers, sizes) through U64.
uint64_t U64(Napi::Env env, Napi::Value v, const char* key) {
  if (v.IsBigInt()) {
    bool lossless = true;
    const uint64_t x = v.As<Napi::BigInt>().Uint64Value(&lossless);
    if (lossless) return x;
  } else if (v.IsNumber()) {
    const double d = v.As<Napi::Number>().DoubleValue();
    if (d >= 0 && d < 18446744073709551616.0 && d == static_cast<double>(static_cast<uint64_t>(d)))
      return static_cast<uint64_t>(d);
  }
  throw MakeError(env, "DTYPE", std::string(key) + ": expected a non-negative integer (bigint or number)");
}

// The test poison (src/debug.ts): when on, every output is filled with `value` before the kernels run.
struct Poison {
  bool on = false;
  float value = 0.f;
};
Poison PoisonOf(gkn::Args& a) {
  Poison p;
  p.on = a.Has("poison");
  if (p.on) p.value = static_cast<float>(a.Num("poison"));
  return p;
}
// A float dtype ('f32' | 'f16' | 'bf16', the names of src/dtypes.ts).
DType FloatDType(gkn::Args& a, const char* key) {
  return static_cast<DType>(a.Enum(key, {"f32", "f16", "bf16"}));  // gk::DType F32 = 0, F16, BF16
}

// Outputs to fill with the test poison before the kernels (src/debug.ts).
struct PoisonTarget {
  void* ptr;
  int64_t n;
  DType dtype;
};

// The outputs of a logprobs-family forward (logprobs, lse, and entropy / Σp² when asked), [rows] f32
// each: logprobs, linearLogprobs and mergeLogprobStates fill the same four.
template <class P>
std::vector<PoisonTarget> ForwardOutputs(const P& p) {
  std::vector<PoisonTarget> outs{{p.logprobs, p.rows, DType::F32}, {p.lse, p.rows, DType::F32}};
  if (p.entropy) outs.push_back({p.entropy, p.rows, DType::F32});
  if (p.sum_squares) outs.push_back({p.sum_squares, p.rows, DType::F32});
  return outs;
}

// ------------------------------------------------------------------------------------------- jobs
// One op's device-side checks, waiting for the next read() or synchronize() to be looked at.
struct PendingCheck {
  int slot;
  std::string op;
  std::function<std::string(const gk::ErrorFlags&)> message;
};
constexpr int kFlagSlots = 256;  // ops with checks in flight before one must wait for the device

struct JobEnv {
  cudaStream_t stream;
  gk::LaunchEnv launch;
  gk::ErrorFlags* d_flags;  // kFlagSlots slots
  gk::ErrorFlags* h_flags;  // pinned mirror, filled in stream order
  gk::HostStaging* staging;  // pinned buffer of the jobs' host-to-device uploads (common.cuh)
  std::vector<PendingCheck> pending;  // slots in use, in op order
  uint64_t syncs = 0;                 // stream synchronisations so far (stats(): tests)
  uint64_t last_scratch = 0;          // Scratch bytes of the latest op (stats(): the memory bounds' tests)

  // Waits for the stream, then reports the first raised check (and forgets them all).
  Status Drain() {
    ++syncs;
    GK_CHECK(cudaStreamSynchronize(stream));
    Status first = Status::Ok();
    for (const PendingCheck& c : pending) {
      const gk::ErrorFlags& f = h_flags[c.slot];
      if (f.bits != 0 && first.ok()) {
        std::string m = c.message ? c.message(f) : "";
        first = Status::Range(m.empty() ? c.op + ": a kernel raised error flags " + std::to_string(f.bits) : m);
      }
    }
    pending.clear();
    return first;
  }
};

// Shared by a device and its in-flight jobs (a job may settle after its device was collected).
struct SettleState {
  int pending = 0;  // promise jobs not yet settled (main thread only)
  bool released = false;
  Napi::ThreadSafeFunction tsfn;
};

struct Job {
  std::string op;
  std::shared_ptr<SettleState> settle;
  std::function<Status(JobEnv&)> run;                // job thread
  std::function<Napi::Value(Napi::Env)> result;      // main thread, on success (null: undefined)
  std::unique_ptr<Napi::Promise::Deferred> deferred;  // null: fire-and-forget (upload, free)
  Napi::ObjectReference keep;                         // a JS array the job reads or writes
  Status status;
  double seconds = 0;  // copyProbe
};

class CudaDevice : public Napi::ObjectWrap<CudaDevice> {
 public:
  static Napi::Function Define(Napi::Env env) {
    return DefineClass(env, "CudaDevice",
                       {
                           InstanceMethod<&CudaDevice::Info>("info"),
                           InstanceMethod<&CudaDevice::Stats>("stats"),
                           InstanceMethod<&CudaDevice::Alloc>("alloc"),
                           InstanceMethod<&CudaDevice::Free>("free"),
                           InstanceMethod<&CudaDevice::Upload>("upload"),
                           InstanceMethod<&CudaDevice::Read>("read"),
                           InstanceMethod<&CudaDevice::Synchronize>("synchronize"),
                           InstanceMethod<&CudaDevice::CopyProbe>("copyProbe"),
                           InstanceMethod<&CudaDevice::Logprobs>("logprobs"),
                           InstanceMethod<&CudaDevice::LogprobsBackward>("logprobsBackward"),
                           InstanceMethod<&CudaDevice::GatherProbs>("gatherProbs"),
                           InstanceMethod<&CudaDevice::Advantages>("advantages"),
                           InstanceMethod<&CudaDevice::ExpandToTokens>("expandToTokens"),
                           InstanceMethod<&CudaDevice::Whiten>("whiten"),
                           InstanceMethod<&CudaDevice::TokenHiddenReward>("tokenHiddenReward"),
                           InstanceMethod<&CudaDevice::ThrReweight>("thrReweight"),
                           InstanceMethod<&CudaDevice::ThrAggregate>("thrAggregate"),
                           InstanceMethod<&CudaDevice::ThrScore>("thrScore"),
                           InstanceMethod<&CudaDevice::LinearLogprobs>("linearLogprobs"),
                           InstanceMethod<&CudaDevice::LinearLogprobStates>("linearLogprobStates"),
                           InstanceMethod<&CudaDevice::LinearLogprobsBackward>("linearLogprobsBackward"),
                           InstanceMethod<&CudaDevice::LogprobStates>("logprobStates"),
                           InstanceMethod<&CudaDevice::MergeLogprobStates>("mergeLogprobStates"),
                           InstanceMethod<&CudaDevice::PolicyLoss>("policyLoss"),
                           InstanceMethod<&CudaDevice::Close>("close"),
                       });
  }

  // new CudaDevice(index): throws BACKEND_UNAVAILABLE naming the failing call.
  explicit CudaDevice(const Napi::CallbackInfo& info) : Napi::ObjectWrap<CudaDevice>(info) {
    Napi::Env env = info.Env();
    const int index = info.Length() > 0 && info[0].IsNumber() ? info[0].As<Napi::Number>().Int32Value() : 0;
    int count = 0;
    cudaError_t e = cudaGetDeviceCount(&count);
    if (e != cudaSuccess) throw MakeError(env, "BACKEND_UNAVAILABLE", CudaCallError("cudaGetDeviceCount", e));
    if (count == 0) throw MakeError(env, "BACKEND_UNAVAILABLE", "cudaGetDeviceCount found no CUDA device");
    if (index < 0 || index >= count)
      throw MakeError(env, "BACKEND_UNAVAILABLE",
                      "deviceIndex " + std::to_string(index) + " requested, but cudaGetDeviceCount found " +
                          std::to_string(count) + " device(s)");
    device_ = index;
    Init(env);
    tsfn_ = Napi::ThreadSafeFunction::New(env, Napi::Function::New(env, [](const Napi::CallbackInfo&) {}),
                                          "grpo-kernels-cuda", 0, 1);
    tsfn_.Unref(env);
    settle_ = std::make_shared<SettleState>();
    settle_->tsfn = tsfn_;
    worker_ = std::thread([this] { Loop(); });
    open_ = true;
    cleanup_ = env.AddCleanupHook(&CudaDevice::OnEnvCleanup, this);
    has_cleanup_ = true;
  }

  ~CudaDevice() override {
    if (has_cleanup_) {
      cleanup_.Remove(Env());
      has_cleanup_ = false;
    }
    Shutdown(false);
  }

 private:
  void Init(Napi::Env env) {
    auto check = [&](cudaError_t e, const char* call) {
      if (e != cudaSuccess) throw MakeError(env, e == cudaErrorMemoryAllocation ? "OUT_OF_MEMORY" : "BACKEND_UNAVAILABLE",
                                            CudaCallError(call, e));
    };
    check(cudaSetDevice(device_), "cudaSetDevice");
    check(cudaGetDeviceProperties(&prop_, device_), "cudaGetDeviceProperties");
    int pools = 0;
    check(cudaDeviceGetAttribute(&pools, cudaDevAttrMemoryPoolsSupported, device_), "cudaDeviceGetAttribute");
    if (!pools) throw MakeError(env, "BACKEND_UNAVAILABLE", "cudaDevAttrMemoryPoolsSupported: 0 (stream-ordered allocation unavailable)");
    cudaMemPool_t pool;
    check(cudaDeviceGetDefaultMemPool(&pool, device_), "cudaDeviceGetDefaultMemPool");
    uint64_t threshold = UINT64_MAX;  // keep freed memory cached, as PyTorch's allocator does
    check(cudaMemPoolSetAttribute(pool, cudaMemPoolAttrReleaseThreshold, &threshold), "cudaMemPoolSetAttribute");
    check(cudaStreamCreateWithFlags(&stream_, cudaStreamNonBlocking), "cudaStreamCreateWithFlags");
    check(cudaMalloc(&d_flags_, sizeof(gk::ErrorFlags) * kFlagSlots), "cudaMalloc");
    check(cudaMallocHost(&h_flags_, sizeof(gk::ErrorFlags) * kFlagSlots), "cudaMallocHost");
    int rt = 0, drv = 0;
    cudaRuntimeGetVersion(&rt);
    cudaDriverGetVersion(&drv);
    runtime_version_ = rt;
    driver_version_ = drv;
  }

  // ---------------------------------------------------------------------------- job thread
  void Loop() {
    cudaSetDevice(device_);
    JobEnv je{stream_, gk::LaunchEnv{stream_, prop_.multiProcessorCount}, d_flags_, h_flags_, staging_.get(), {}, 0};
    for (;;) {
      Job* job = nullptr;
      {
        std::unique_lock<std::mutex> lock(mu_);
        cv_.wait(lock, [this] { return stopping_ || !queue_.empty(); });
        if (queue_.empty()) return;  // stopping and drained
        job = queue_.front();
        queue_.pop_front();
      }
      if (job->deferred && !sticky_.ok()) {  // an earlier fire-and-forget job failed: report it here
        job->status = sticky_;
        sticky_ = Status::Ok();
      } else {
        job->status = job->run(je);
        if (!job->status.ok() && !job->deferred) sticky_ = job->status;
      }
      syncs_.store(je.syncs, std::memory_order_relaxed);
      last_scratch_.store(je.last_scratch, std::memory_order_relaxed);
      if (!job->deferred) {
        delete job;  // holds no JS values
        continue;
      }
      if (tsfn_.BlockingCall(job, &CudaDevice::Settle) != napi_ok) {
        // Environment shutting down: the promise can no longer settle. Leak the job rather than
        // touch JS references off the main thread.
      }
    }
  }

  static void Settle(Napi::Env env, Napi::Function, Job* job) {
    if (env == nullptr) return;  // teardown: leak (see Loop)
    Napi::HandleScope scope(env);
    SettleState& st = *job->settle;
    if (--st.pending == 0 && !st.released) st.tsfn.Unref(env);
    if (job->status.ok()) {
      Napi::Value v = job->result ? job->result(env) : env.Undefined();
      job->deferred->Resolve(v);
    } else {
      job->deferred->Reject(StatusError(env, job->op, job->status).Value());
    }
    delete job;
  }

  // Queues a job; returns its promise (or undefined for fire-and-forget).
  Napi::Value Submit(Napi::Env env, Job* job) {
    if (!open_) {
      std::string op = job->op;
      delete job;
      throw MakeError(env, "BACKEND_UNAVAILABLE", op + ": the cuda context was disposed");
    }
    Napi::Value ret = env.Undefined();
    if (job->deferred) {
      ret = job->deferred->Promise();
      job->settle = settle_;
      // While promises are pending the thread-safe function keeps the event loop alive.
      if (settle_->pending++ == 0) tsfn_.Ref(env);
    }
    {
      std::lock_guard<std::mutex> lock(mu_);
      queue_.push_back(job);
    }
    cv_.notify_one();
    return ret;
  }

  static void OnEnvCleanup(CudaDevice* self) {
    self->has_cleanup_ = false;
    self->Shutdown(false);
  }

  void Shutdown(bool /*from_js*/) {
    if (!open_) return;
    open_ = false;
    {
      std::lock_guard<std::mutex> lock(mu_);
      stopping_ = true;
    }
    cv_.notify_one();
    if (worker_.joinable()) worker_.join();
    cudaSetDevice(device_);
    for (void* p : live_) cudaFreeAsync(p, stream_);
    live_.clear();
    cudaStreamSynchronize(stream_);
    staging_.reset();  // its copies are done: the stream is idle
    cudaStreamDestroy(stream_);
    cudaFree(d_flags_);
    cudaFreeHost(h_flags_);
    cudaMemPool_t pool;
    if (cudaDeviceGetDefaultMemPool(&pool, device_) == cudaSuccess) cudaMemPoolTrimTo(pool, 0);
    settle_->released = true;
    tsfn_.Release();
  }

  void RequireOpen(Napi::Env env, const char* what) {
    if (!open_) throw MakeError(env, "BACKEND_UNAVAILABLE", std::string(what) + ": the cuda context was disposed");
  }

  // ------------------------------------------------------------------------------- methods
  Napi::Value Info(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    Napi::Object o = Napi::Object::New(env);
    o.Set("name", prop_.name);
    o.Set("index", device_);
    o.Set("computeCapability", std::to_string(prop_.major) + "." + std::to_string(prop_.minor));
    o.Set("multiProcessors", prop_.multiProcessorCount);
    o.Set("totalMemoryBytes", static_cast<double>(prop_.totalGlobalMem));
    o.Set("l2CacheBytes", prop_.l2CacheSize);
    o.Set("sharedMemPerBlockOptin", static_cast<double>(prop_.sharedMemPerBlockOptin));
    o.Set("cudaRuntimeVersion", runtime_version_);
    o.Set("cudaDriverVersion", driver_version_);
    o.Set("archs", GRPO_CUDA_ARCHS);
    return o;
  }

  // stats() → { streamSyncs, lastScratchBytes }: how often the job thread has waited for the device
  // (tests: ops do not), and the Scratch bytes the latest op allocated (tests: the memory bounds).
  Napi::Value Stats(const Napi::CallbackInfo& info) {
    Napi::Object o = Napi::Object::New(info.Env());
    o.Set("streamSyncs", static_cast<double>(syncs_.load(std::memory_order_relaxed)));
    o.Set("lastScratchBytes", static_cast<double>(last_scratch_.load(std::memory_order_relaxed)));
    return o;
  }

  // alloc(bytes) → bigint (0n for 0 bytes). OUT_OF_MEMORY when the pool cannot grow.
  Napi::Value Alloc(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    RequireOpen(env, "alloc");
    const uint64_t bytes = U64(env, info[0], "bytes");
    if (bytes == 0) return Napi::BigInt::New(env, static_cast<uint64_t>(0));
    cudaSetDevice(device_);
    void* p = nullptr;
    // Rounded up to 16 bytes so vectorised kernels may read the last 16-byte word of a buffer.
    const uint64_t padded = (bytes + 15) & ~uint64_t(15);
    cudaError_t e = cudaMallocAsync(&p, padded, stream_);
    if (e != cudaSuccess) {
      Status s = Status::FromCuda(e, "cudaMallocAsync", __FILE__, __LINE__);
      throw MakeError(env, CodeOf(s), "alloc of " + std::to_string(bytes) + " bytes: " + CudaCallError("cudaMallocAsync", e));
    }
    live_.insert(p);
    return Napi::BigInt::New(env, static_cast<uint64_t>(reinterpret_cast<uintptr_t>(p)));
  }

  // free(ptr): stream-ordered after every queued job. Unknown pointers (not from alloc) are ignored.
  Napi::Value Free(const Napi::CallbackInfo& info) {
    if (!open_) return info.Env().Undefined();
    void* p = reinterpret_cast<void*>(static_cast<uintptr_t>(U64(info.Env(), info[0], "ptr")));
    if (p == nullptr || live_.erase(p) == 0) return info.Env().Undefined();
    Job* job = new Job();
    job->op = "free";
    job->run = [p](JobEnv& je) -> Status {
      GK_CHECK(cudaFreeAsync(p, je.stream));
      return Status::Ok();
    };
    return Submit(info.Env(), job);
  }

  // upload(ptr, typedArray): snapshot of the array now, copied to the device in stream order.
  Napi::Value Upload(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    RequireOpen(env, "upload");
    void* p = reinterpret_cast<void*>(static_cast<uintptr_t>(U64(env, info[0], "ptr")));
    Napi::TypedArray ta = info[1].As<Napi::TypedArray>();
    const size_t bytes = ta.ByteLength();
    if (bytes == 0) return env.Undefined();
    auto data = std::make_shared<std::vector<uint8_t>>(bytes);
    std::memcpy(data->data(), static_cast<const uint8_t*>(ta.ArrayBuffer().Data()) + ta.ByteOffset(), bytes);
    Job* job = new Job();
    job->op = "upload";
    job->run = [p, data](JobEnv& je) -> Status {
      // Pageable source: staged before cudaMemcpyAsync returns, so `data` may die afterwards.
      GK_CHECK(cudaMemcpyAsync(p, data->data(), data->size(), cudaMemcpyHostToDevice, je.stream));
      return Status::Ok();
    };
    return Submit(env, job);
  }

  // read(ptr, typedArray) → promise: fills the array (its whole byte length) from the device.
  Napi::Value Read(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    RequireOpen(env, "read");
    const void* p = reinterpret_cast<const void*>(static_cast<uintptr_t>(U64(env, info[0], "ptr")));
    Napi::TypedArray ta = info[1].As<Napi::TypedArray>();
    const size_t bytes = ta.ByteLength();
    uint8_t* dst = static_cast<uint8_t*>(ta.ArrayBuffer().Data()) + ta.ByteOffset();
    Job* job = NewPromiseJob(env, "read");
    job->keep = Napi::Persistent(ta.As<Napi::Object>());
    job->run = [p, dst, bytes](JobEnv& je) -> Status {
      if (bytes > 0) GK_CHECK(cudaMemcpyAsync(dst, p, bytes, cudaMemcpyDeviceToHost, je.stream));
      return je.Drain();  // waits for the copy; a raised check of an earlier op rejects the read
    };
    return Submit(env, job);
  }

  Napi::Value Synchronize(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    RequireOpen(env, "synchronize");
    Job* job = NewPromiseJob(env, "synchronize");
    job->run = [](JobEnv& je) -> Status { return je.Drain(); };
    return Submit(env, job);
  }

  // copyProbe(bytes) → seconds per device-to-device copy (native/cuda/probe.cu).
  Napi::Value CopyProbe(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    RequireOpen(env, "copyProbe");
    const uint64_t bytes = std::max<uint64_t>(U64(env, info[0], "bytes"), 16);
    Job* job = NewPromiseJob(env, "copyProbe");
    job->run = [bytes, job](JobEnv& je) -> Status {
      gk::Scratch scratch(je.stream);
      return gk::launch_copy_probe(bytes, je.launch, scratch, &job->seconds);
    };
    job->result = [job](Napi::Env e) -> Napi::Value { return Napi::Number::New(e, job->seconds); };
    return Submit(env, job);
  }

  Job* NewPromiseJob(Napi::Env env, const char* op) {
    Job* job = new Job();
    job->op = op;
    job->deferred = std::make_unique<Napi::Promise::Deferred>(env);
    return job;
  }

  // The common shape of an op job: poison outputs, enqueue, return without waiting. An op whose kernels
  // check device values (flags_message given) gets the next flag slot: reset, passed to `enqueue`,
  // copied back in stream order, and looked at by the next Drain(). With every slot in flight the op
  // waits first (Drain), and a raised check of an earlier op is reported by this one.
  using Enqueue = std::function<Status(JobEnv&, gk::Scratch&, gk::ErrorFlags*)>;
  Napi::Value RunOp(Napi::Env env, const char* op, const Poison& poison, std::vector<PoisonTarget> outputs,
                    Enqueue enqueue, std::function<std::string(const gk::ErrorFlags&)> flags_message = nullptr) {
    RequireOpen(env, op);
    Job* job = NewPromiseJob(env, op);
    const std::string name = op;
    job->run = [=](JobEnv& je) -> Status {
      gk::ErrorFlags* slot = nullptr;
      if (flags_message) {
        if (je.pending.size() == size_t(kFlagSlots)) GK_TRY(je.Drain());
        const int i = static_cast<int>(je.pending.size());
        slot = je.d_flags + i;
        GK_TRY(gk::launch_reset_flags(slot, je.launch));
        je.pending.push_back(PendingCheck{i, name, flags_message});
      }
      gk::Scratch scratch(je.stream, je.staging);
      if (poison.on)
        for (const auto& t : outputs) GK_TRY(gk::launch_poison(t.ptr, t.n, t.dtype, poison.value, je.launch));
      GK_TRY(enqueue(je, scratch, slot));
      je.last_scratch = scratch.bytes();
      if (slot)
        GK_CHECK(cudaMemcpyAsync(je.h_flags + (slot - je.d_flags), slot, sizeof(gk::ErrorFlags),
                                 cudaMemcpyDeviceToHost, je.stream));
      return Status::Ok();
    };
    return Submit(env, job);
  }

  // Each op: its params struct filled from one argument object (gkn::Args: every key required unless
  // its absence means something, unknown keys refused), then RunOp. The TypeScript side of each is one
  // interface in src/backends/cuda/native.ts.
  Napi::Value Logprobs(const Napi::CallbackInfo& info) {
    gkn::Args a(info[0], "logprobs");
    gk::LogprobsParams p;
    p.logits = a.Ptr("logits");
    p.dtype = FloatDType(a, "dtype");
    p.targets = a.Ptr<const int>("targets");
    p.rows = a.Int("rows");
    p.vocab = a.Int("vocab");
    p.temperature = a.Num("temperature");
    p.ignore_index = static_cast<int>(a.Int("ignoreIndex"));
    p.logprobs = a.Ptr<float>("outLogprobs");
    p.lse = a.Ptr<float>("outLse");
    p.entropy = a.OptPtr<float>("outEntropy");
    p.sum_squares = a.OptPtr<float>("outSumSquares");
    p.split_override = static_cast<int>(a.OptInt("splits", 0));  // test hook: 0 = the count V fixes
    const Poison poison = PoisonOf(a);
    a.Done();
    const std::vector<PoisonTarget> outs = ForwardOutputs(p);
    const int64_t vocab = p.vocab;
    return RunOp(
        info.Env(), "logprobs", poison, outs,
        [p](JobEnv& je, gk::Scratch& s, gk::ErrorFlags* f) { return gk::launch_logprobs_forward(p, je.launch, s, f); },
        [vocab, ig = p.ignore_index](const gk::ErrorFlags& f) { return gk::logprobs_flags_message(f, vocab, ig); });
  }

  Napi::Value LogprobsBackward(const Napi::CallbackInfo& info) {
    gkn::Args a(info[0], "logprobsBackward");
    gk::LogprobsBackwardParams p;
    p.logits = a.Ptr("logits");
    p.dtype = FloatDType(a, "dtype");
    p.targets = a.Ptr<const int>("targets");
    p.lse = a.Ptr<const float>("lse");
    p.grad_logprobs = a.Ptr<const float>("gradLogprobs");
    p.grad_entropy = a.OptPtr<const float>("gradEntropy");
    p.entropy = a.OptPtr<const float>("entropy");
    p.rows = a.Int("rows");
    p.vocab = a.Int("vocab");
    p.temperature = a.Num("temperature");
    p.ignore_index = static_cast<int>(a.Int("ignoreIndex"));
    p.grad_logits = a.Ptr("outGradLogits");
    const Poison poison = PoisonOf(a);
    a.Done();
    const bool in_place = p.grad_logits == p.logits;
    std::vector<PoisonTarget> outs;
    if (!in_place) outs.push_back({p.grad_logits, p.rows * p.vocab, p.dtype});
    const int64_t vocab = p.vocab;
    return RunOp(
        info.Env(), "logprobsBackward", poison, outs,
        [p](JobEnv& je, gk::Scratch&, gk::ErrorFlags* f) { return gk::launch_logprobs_backward(p, je.launch, f); },
        [vocab, ig = p.ignore_index](const gk::ErrorFlags& f) { return gk::logprobs_flags_message(f, vocab, ig); });
  }

  Napi::Value GatherProbs(const Napi::CallbackInfo& info) {
    gkn::Args a(info[0], "gatherProbs");
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
    const Poison poison = PoisonOf(a);
    a.Done();
    const int64_t n = p.probs_offsets.empty() ? 0 : p.probs_offsets.back();
    return RunOp(info.Env(), "gatherProbs", poison, {{p.probs, n, DType::F32}},
                 [p](JobEnv& je, gk::Scratch& s, gk::ErrorFlags*) { return gk::launch_gather_probs(p, je.launch, s); });
  }

  Napi::Value Advantages(const Napi::CallbackInfo& info) {
    gkn::Args a(info[0], "advantages");
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
    const Poison poison = PoisonOf(a);
    a.Done();
    if ((p.group_size > 0) == !p.group_offsets.empty())
      throw gkn::ArgError(info.Env(), "advantages: expected groupSize (with numGroups) or groupOffsets, not both");
    const int64_t G =
        p.group_size > 0 ? p.num_groups : p.group_offsets.empty() ? 0 : int64_t(p.group_offsets.size()) - 1;
    std::vector<PoisonTarget> outs{{p.advantages, advantages_size, DType::F32},
                                   {p.mean, G, DType::F32},
                                   {p.std, G, DType::F32},
                                   {p.degenerate, G, DType::U8}};
    return RunOp(info.Env(), "advantages", poison, outs,
                 [p](JobEnv& je, gk::Scratch& s, gk::ErrorFlags*) { return gk::launch_advantages(p, je.launch, s); });
  }

  Napi::Value ExpandToTokens(const Napi::CallbackInfo& info) {
    gkn::Args a(info[0], "expandToTokens");
    gk::ExpandParams p;
    p.values = a.Ptr<const float>("values");
    p.response_offsets = a.Vec<int32_t>("responseOffsets");
    p.out = a.Ptr<float>("out");
    const Poison poison = PoisonOf(a);
    a.Done();
    const int64_t T = p.response_offsets.empty() ? 0 : p.response_offsets.back();
    return RunOp(info.Env(), "expandToTokens", poison, {{p.out, T, DType::F32}},
                 [p](JobEnv& je, gk::Scratch& s, gk::ErrorFlags*) { return gk::launch_expand_to_tokens(p, je.launch, s); });
  }

  Napi::Value Whiten(const Napi::CallbackInfo& info) {
    gkn::Args a(info[0], "whiten");
    gk::WhitenParams p;
    p.values = a.Ptr<const float>("values");
    p.mask = a.OptPtr<const uint8_t>("mask");
    p.n = a.Int("n");
    p.mask_eps = static_cast<float>(a.Num("maskEps"));
    p.sample = a.Enum("variance", {"population", "sample"}) == 1;
    p.clamp = a.Enum("varianceEps", {"add", "clamp"}) == 1;
    p.keep_mean = a.Bool("keepMean");
    p.out = a.Ptr<float>("out");
    const Poison poison = PoisonOf(a);
    a.Done();
    return RunOp(info.Env(), "whiten", poison, {{p.out, p.n, DType::F32}},
                 [p](JobEnv& je, gk::Scratch& s, gk::ErrorFlags*) { return gk::launch_whiten(p, je.launch, s); });
  }

  static gk::ThrLayoutHost LayoutOf(gkn::Args& a) {
    gk::ThrLayoutHost l;
    l.response_offsets = a.Vec<int32_t>("responseOffsets");
    l.group_offsets = a.Vec<int32_t>("groupOffsets");
    l.correct = a.Vec<uint8_t>("correct");
    l.degenerate = a.Vec<uint8_t>("degenerate");
    return l;
  }

  Napi::Value TokenHiddenReward(const Napi::CallbackInfo& info) { return ThrOp(info, "tokenHiddenReward", gk::ThrStep::Full); }
  Napi::Value ThrAggregate(const Napi::CallbackInfo& info) { return ThrOp(info, "thrAggregate", gk::ThrStep::Aggregate); }
  Napi::Value ThrScore(const Napi::CallbackInfo& info) { return ThrOp(info, "thrScore", gk::ThrStep::Score); }

  // tokenHiddenReward whole, or one of its halves: the same keys, plus `aggregate` (the stacked M) for
  // the halves; thrAggregate has no outThr / outTau / beta.
  Napi::Value ThrOp(const Napi::CallbackInfo& info, const char* op, gk::ThrStep step) {
    gkn::Args a(info[0], op);
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
    p.length_weighting = a.Enum("weighting", {"none", "length"}) == 1;
    p.precision = static_cast<gk::ThrPrecision>(a.Enum("precision", gk::kThrPrecisionNames));
    if (a.Has("mBudgetBytes")) p.m_budget_bytes = static_cast<size_t>(a.Int("mBudgetBytes"));  // test hook
    p.small_tiles = a.Has("smallTiles") && a.Bool("smallTiles");  // test hook (src/backends/cuda/thr.ts thrTuning)
    if (step != gk::ThrStep::Full) p.aggregate = a.Ptr<float>("aggregate");
    if (step != gk::ThrStep::Aggregate) {
      p.beta = static_cast<float>(a.Num("beta"));
      p.thr = a.Ptr<float>("outThr");
      p.tau = a.Ptr<float>("outTau");
    }
    const Poison poison = PoisonOf(a);
    a.Done();
    const int64_t T = p.layout.response_offsets.empty() ? 0 : p.layout.response_offsets.back();
    const int64_t G = p.layout.group_offsets.empty() ? 0 : int64_t(p.layout.group_offsets.size()) - 1;
    std::vector<PoisonTarget> outs;
    if (step == gk::ThrStep::Aggregate) {
      const int64_t rows = p.vocab_offsets.empty() ? 0 : p.vocab_offsets.back();
      outs.push_back({p.aggregate, rows * p.dim, DType::F32});
    } else {
      outs = {{p.thr, T, DType::F32}, {p.tau, G, DType::F32}};
    }
    return RunOp(info.Env(), op, poison, outs,
                 [p](JobEnv& je, gk::Scratch& s, gk::ErrorFlags*) { return gk::launch_token_hidden_reward(p, je.launch, s); });
  }

  // ------------------------------------------------------------------------------ LM-head family
  // The head's shared keys: hidden, weight, bias?, dtype, targets, rows, dim, vocab, temperature,
  // ignoreIndex.
  static void HeadOf(gkn::Args& a, gk::LinearLogprobsParams& p) {
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
  }
  static gk::StateArrays StateOutOf(gkn::Args& a) {
    gk::StateArrays s;
    s.max = a.Ptr<float>("outMax");
    s.sum_exp = a.Ptr<float>("outSumExp");
    s.sum_exp_delta = a.OptPtr<float>("outSumExpDelta");
    s.sum_exp_sq = a.OptPtr<float>("outSumExpSq");
    s.target_logit = a.Ptr<float>("outTargetLogit");
    s.vocab_start = a.Int("vocabStart");
    return s;
  }
  static std::vector<PoisonTarget> StateTargets(const gk::StateArrays& s, int64_t rows) {
    std::vector<PoisonTarget> outs{{s.max, rows, DType::F32}, {s.sum_exp, rows, DType::F32}, {s.target_logit, rows, DType::F32}};
    if (s.sum_exp_delta) outs.push_back({s.sum_exp_delta, rows, DType::F32});
    if (s.sum_exp_sq) outs.push_back({s.sum_exp_sq, rows, DType::F32});
    return outs;
  }

  Napi::Value LinearLogprobs(const Napi::CallbackInfo& info) {
    gkn::Args a(info[0], "linearLogprobs");
    gk::LinearLogprobsParams p;
    HeadOf(a, p);
    p.logprobs = a.Ptr<float>("outLogprobs");
    p.lse = a.Ptr<float>("outLse");
    p.entropy = a.OptPtr<float>("outEntropy");
    p.sum_squares = a.OptPtr<float>("outSumSquares");
    const Poison poison = PoisonOf(a);
    a.Done();
    const std::vector<PoisonTarget> outs = ForwardOutputs(p);
    const int64_t vocab = p.vocab;
    return RunOp(
        info.Env(), "linearLogprobs", poison, outs,
        [p](JobEnv& je, gk::Scratch& s, gk::ErrorFlags* f) { return gk::launch_linear_logprobs(p, je.launch, s, f); },
        [vocab, ig = p.ignore_index](const gk::ErrorFlags& f) { return gk::logprobs_flags_message(f, vocab, ig); });
  }

  Napi::Value LinearLogprobStates(const Napi::CallbackInfo& info) {
    gkn::Args a(info[0], "linearLogprobStates");
    gk::LinearLogprobsParams p;
    HeadOf(a, p);
    p.states = StateOutOf(a);
    p.states.vocab_end = p.states.vocab_start + p.vocab;
    const Poison poison = PoisonOf(a);
    a.Done();
    return RunOp(info.Env(), "linearLogprobStates", poison, StateTargets(p.states, p.rows),
                 [p](JobEnv& je, gk::Scratch& s, gk::ErrorFlags* f) { return gk::launch_linear_logprobs(p, je.launch, s, f); });
  }

  Napi::Value LinearLogprobsBackward(const Napi::CallbackInfo& info) {
    gkn::Args a(info[0], "linearLogprobsBackward");
    gk::LinearLogprobsParams head;
    HeadOf(a, head);
    gk::LinearLogprobsBackwardParams p;
    p.hidden = head.hidden;
    p.weight = head.weight;
    p.bias = head.bias;
    p.dtype = head.dtype;
    p.targets = head.targets;
    p.rows = head.rows;
    p.dim = head.dim;
    p.vocab = head.vocab;
    p.temperature = head.temperature;
    p.ignore_index = head.ignore_index;
    p.lse = a.Ptr<const float>("lse");
    p.grad_logprobs = a.Ptr<const float>("gradLogprobs");
    p.grad_entropy = a.OptPtr<const float>("gradEntropy");
    p.entropy = a.OptPtr<const float>("entropy");
    p.grad_hidden = a.OptPtr<float>("outGradHidden");  // null when rows·dim = 0
    p.grad_weight = a.Ptr<float>("outGradWeight");
    p.grad_bias = a.OptPtr<float>("outGradBias");
    p.vocab_start = a.Int("vocabStart");
    p.target_limit = a.Int("targetLimit");
    p.chunk_rows = a.OptInt("chunkRows", 0);    // test hooks: the G chunk
    p.chunk_vocab = a.OptInt("chunkVocab", 0);
    const Poison poison = PoisonOf(a);
    a.Done();
    std::vector<PoisonTarget> outs{{p.grad_weight, p.vocab * p.dim, DType::F32}};
    if (p.grad_hidden) outs.push_back({p.grad_hidden, p.rows * p.dim, DType::F32});
    if (p.grad_bias) outs.push_back({p.grad_bias, p.vocab, DType::F32});
    const int64_t vocab = p.target_limit;
    return RunOp(
        info.Env(), "linearLogprobsBackward", poison, outs,
        [p](JobEnv& je, gk::Scratch& s, gk::ErrorFlags* f) { return gk::launch_linear_logprobs_backward(p, je.launch, s, f); },
        [vocab, ig = p.ignore_index](const gk::ErrorFlags& f) { return gk::logprobs_flags_message(f, vocab, ig); });
  }

  Napi::Value LogprobStates(const Napi::CallbackInfo& info) {
    gkn::Args a(info[0], "logprobStates");
    gk::LogprobStatesParams p;
    p.logits = a.Ptr("logits");
    p.dtype = FloatDType(a, "dtype");
    p.targets = a.Ptr<const int>("targets");
    p.rows = a.Int("rows");
    p.vocab = a.Int("vocab");
    p.temperature = a.Num("temperature");
    p.ignore_index = static_cast<int>(a.Int("ignoreIndex"));
    p.states = StateOutOf(a);
    p.states.vocab_end = p.states.vocab_start + p.vocab;
    const Poison poison = PoisonOf(a);
    a.Done();
    return RunOp(info.Env(), "logprobStates", poison, StateTargets(p.states, p.rows),
                 [p](JobEnv& je, gk::Scratch& s, gk::ErrorFlags*) { return gk::launch_logprob_states(p, je.launch, s); });
  }

  Napi::Value MergeLogprobStates(const Napi::CallbackInfo& info) {
    gkn::Args a(info[0], "mergeLogprobStates");
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
    const Poison poison = PoisonOf(a);
    a.Done();
    const size_t k = mx.size();
    if (se.size() != k || sd.size() != k || sq.size() != k || xt.size() != k || v0.size() != k || v1.size() != k)
      throw gkn::ArgError(info.Env(), "mergeLogprobStates: the states' arrays must have one entry per state");
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
    const int64_t vocab = p.vocab;
    return RunOp(
        info.Env(), "mergeLogprobStates", poison, outs,
        [p](JobEnv& je, gk::Scratch& s, gk::ErrorFlags* f) { return gk::launch_merge_states(p, je.launch, s, f); },
        [vocab, ig = p.ignore_index](const gk::ErrorFlags& f) { return gk::logprobs_flags_message(f, vocab, ig); });
  }

  Napi::Value ThrReweight(const Napi::CallbackInfo& info) {
    gkn::Args a(info[0], "thrReweight");
    gk::ThrReweightParams p;
    p.layout = LayoutOf(a);
    p.token_advantages = a.Ptr<const float>("tokenAdvantages");
    p.thr = a.Ptr<const float>("thr");
    p.tau = a.Ptr<const float>("tau");
    p.mode = static_cast<gk::ReweightMode>(a.Enum("mode", gk::kReweightModeNames));
    p.p = a.Num("p");
    p.mask = a.Bool("mask");
    const bool eta_auto = a.Has("eta") ? false : true;  // absent: 'auto'
    p.eta_auto = eta_auto;
    p.eta = eta_auto ? 0 : a.Num("eta");
    p.out = a.Ptr<float>("out");
    const Poison poison = PoisonOf(a);
    a.Done();
    const int64_t T = p.layout.response_offsets.empty() ? 0 : p.layout.response_offsets.back();
    return RunOp(info.Env(), "thrReweight", poison, {{p.out, T, DType::F32}},
                 [p](JobEnv& je, gk::Scratch& s, gk::ErrorFlags*) { return gk::launch_thr_reweight(p, je.launch, s); });
  }

  // policyLoss: the KL keys come together with klEstimator, the rollout keys with rolloutLevel; without
  // them, those keys are unknown (Done() refuses them). tokens / sequences absent: counted on the device.
  Napi::Value PolicyLoss(const Napi::CallbackInfo& info) {
    gkn::Args a(info[0], "policyLoss");
    gk::PolicyParams p;
    p.logprobs = a.Ptr<const float>("logprobs");
    p.old_logprobs = a.Ptr<const float>("oldLogprobs");
    p.advantages = a.Ptr<const float>("advantages");
    p.entropy = a.OptPtr<const float>("entropy");
    p.mask = a.OptPtr<const uint8_t>("mask");
    p.response_offsets = a.Vec<int32_t>("responseOffsets");
    p.loss = static_cast<gk::PolicyLossKind>(a.Enum("loss", gk::kPolicyLossNames));
    p.clip_low = static_cast<float>(a.Num("clipLow"));
    p.clip_high = static_cast<float>(a.Num("clipHigh"));
    p.dual_clip = static_cast<float>(a.Num("dualClip"));
    p.log_ratio_clamp = static_cast<float>(a.Num("logRatioClamp"));
    p.gspo_log_clamp = static_cast<float>(a.Num("gspoLogClamp"));
    p.delta = static_cast<float>(a.Num("delta"));
    p.cispo_cap = a.Bool("cispoCap");
    p.sapo_tau_pos = static_cast<float>(a.Num("sapoTauPos"));
    p.sapo_tau_neg = static_cast<float>(a.Num("sapoTauNeg"));
    p.has_kl = a.Has("klEstimator");
    if (p.has_kl) {
      p.kl_estimator = static_cast<gk::KlEstimator>(a.Enum("klEstimator", gk::kKlEstimatorNames));
      p.ref_logprobs = a.Ptr<const float>("refLogprobs");
      p.kl_straight_through = a.Bool("klStraightThrough");
      p.kl_coef = static_cast<float>(a.Num("klCoef"));
      p.kl_input_clamp = static_cast<float>(a.Num("klInputClamp"));
      p.kl_value_clamp = static_cast<float>(a.Num("klValueClamp"));
      p.kl_value_clamp_all = a.Bool("klValueClampAll");
      p.kl_token_mean = a.Enum("klAggregation", gk::kTermAggregationNames) == 1;
    }
    p.entropy_coef = static_cast<float>(a.Num("entropyCoef"));
    p.entropy_token_mean = a.Enum("entropyAggregation", gk::kTermAggregationNames) == 1;
    p.has_rollout = a.Has("rolloutLevel");
    if (p.has_rollout) {
      p.rollout_level = static_cast<gk::RolloutLevel>(a.Enum("rolloutLevel", gk::kRolloutLevelNames));
      p.rollout_logprobs = a.Ptr<const float>("rolloutLogprobs");
      p.rollout_mode = static_cast<gk::RolloutMode>(a.Enum("rolloutMode", gk::kRolloutModeNames));
      p.rollout_lower = static_cast<float>(a.Num("rolloutLower"));
      p.rollout_upper = static_cast<float>(a.Num("rolloutUpper"));
      p.rollout_normalize = a.Bool("rolloutNormalize");
      p.rollout_log_clamp = static_cast<float>(a.Num("rolloutLogClamp"));
    }
    p.aggregation = static_cast<gk::Aggregation>(a.Enum("aggregation", gk::kAggregationNames));
    p.seq_clamp1 = a.Enum("seqTokenDivisor", gk::kSeqTokenDivisorNames) == 1;
    p.norm_by_sequences = a.Bool("normBySequences");
    p.scale_factor = static_cast<float>(a.Num("scaleFactor"));
    p.ranks = static_cast<float>(a.Num("ranks"));
    p.tokens = a.OptNum("tokens", -1);
    p.sequences = a.OptNum("sequences", -1);
    p.chunk_responses = static_cast<int>(a.OptInt("chunkResponses", 0));  // test hook
    p.loss_out = a.Ptr<float>("outLoss");
    p.grad = a.Ptr<float>("outGradLogprobs");
    p.grad_entropy = a.OptPtr<float>("outGradEntropy");
    p.token_loss = a.OptPtr<float>("outTokenLoss");
    p.stats = a.Ptr<float>("outStats");
    const Poison poison = PoisonOf(a);
    a.Done();
    if ((p.entropy == nullptr) != (p.grad_entropy == nullptr))
      throw gkn::ArgError(info.Env(), "policyLoss: entropy and outGradEntropy come together");
    const int64_t T = p.response_offsets.empty() ? 0 : p.response_offsets.back();
    std::vector<PoisonTarget> outs{{p.loss_out, 1, DType::F32}, {p.grad, T, DType::F32}, {p.stats, 13, DType::F32}};
    if (p.grad_entropy) outs.push_back({p.grad_entropy, T, DType::F32});
    if (p.token_loss) outs.push_back({p.token_loss, T, DType::F32});
    return RunOp(info.Env(), "policyLoss", poison, outs,
                 [p](JobEnv& je, gk::Scratch& s, gk::ErrorFlags*) { return gk::launch_policy_loss(p, je.launch, s); });
  }

  Napi::Value Close(const Napi::CallbackInfo& info) {
    Shutdown(true);
    return info.Env().Undefined();
  }

  int device_ = 0;
  cudaDeviceProp prop_{};
  int runtime_version_ = 0;
  int driver_version_ = 0;
  cudaStream_t stream_ = nullptr;
  std::unique_ptr<gk::HostStaging> staging_ = std::make_unique<gk::HostStaging>();  // job thread only
  gk::ErrorFlags* d_flags_ = nullptr;
  gk::ErrorFlags* h_flags_ = nullptr;
  bool open_ = false;
  std::unordered_set<void*> live_;  // main thread only

  std::thread worker_;
  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<Job*> queue_;
  bool stopping_ = false;
  Status sticky_;  // job thread only
  std::atomic<uint64_t> syncs_{0};  // JobEnv::syncs, published for stats()
  std::atomic<uint64_t> last_scratch_{0};  // JobEnv::last_scratch, published for stats()
  Napi::ThreadSafeFunction tsfn_;
  std::shared_ptr<SettleState> settle_;
  Napi::Env::CleanupHook<void (*)(CudaDevice*), CudaDevice> cleanup_;
  bool has_cleanup_ = false;
};

Napi::Value BuildInfo(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Napi::Object o = Napi::Object::New(env);
  o.Set("cuda", true);
  o.Set("reason", "");
  o.Set("archs", GRPO_CUDA_ARCHS);
  int rt = 0;
  cudaRuntimeGetVersion(&rt);  // the statically linked runtime: needs no driver
  o.Set("cudaRuntimeVersion", rt);
  o.Set("cpu", bool(GRPO_WITH_CPU));
  return o;
}

// lmheadPlan({ rows, vocab, dim, dtype }) → { slices, forwardBytes, chunkRows, chunkVocab, backwardBytes }:
// what the LM-head launchers allocate from Scratch (the memory bound's tests compute it at sizes no test
// runs; a run's stats().lastScratchBytes is checked against it).
Napi::Value LmheadPlanOf(const Napi::CallbackInfo& info) {
  gkn::Args a(info[0], "lmheadPlan");
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
  return o;
}

Napi::Object Init(Napi::Env env, Napi::Object exports) {
  exports.Set("buildInfo", Napi::Function::New(env, BuildInfo, "buildInfo"));
  AddCommonExports(env, exports);
  exports.Set("lmheadPlan", Napi::Function::New(env, LmheadPlanOf, "lmheadPlan"));
  exports.Set("CudaDevice", CudaDevice::Define(env));
  return exports;
}
#endif

}  // namespace

NODE_API_MODULE(grpo_kernels_native, Init)
