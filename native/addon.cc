// The addon's registration, and the Node-API glue of the cuda backend. No kernels here (native/cuda/*.cu),
// no math, no threads: the device runtime (native/runtime/cuda_device.h: job thread, stream, memory pool,
// device-side checks) runs the work, native/ops_cuda.cc converts each op's arguments, and device_wrap.h
// turns jobs into promises. The native cpu backend's glue is addon_cpu.cc, built into every addon, with or
// without CUDA.
//
// Exports: buildInfo() → { cuda, reason, archs, cudaRuntimeVersion, cpu }, enums(), cpuInfo() and the
// class CpuDevice (addon_cpu.cc), and (CUDA builds) lmheadPlan() and the class CudaDevice: one device,
// one stream, one job thread. Its ops return promises that settle once their kernels are enqueued (the
// host runs ahead of the device); read() and synchronize() wait for the stream and report a value only
// the device saw (a target id, an all −Inf row) as a RANGE error. Every CUDA failure becomes a JS Error
// with `code` (the GrpoKernelsError codes) and a message naming the call; nothing aborts the process.
#include <napi.h>

#include <string>
#include <vector>

#include "enums.h"

#ifndef GRPO_WITH_CUDA
#define GRPO_WITH_CUDA 0
#endif
// The cmake build always compiles the cpu kernels; the CUDA emulator's build (scripts/build-emu.mjs)
// compiles the cuda glue alone with the CUDA sources, without them.
#ifndef GRPO_WITH_CPU
#define GRPO_WITH_CPU 0
#endif
#if GRPO_WITH_CPU
#include "addon_cpu.h"
#endif

#if GRPO_WITH_CUDA
#include <cstring>
#include <memory>

#include "device_wrap.h"
#include "runtime/cuda_device.h"
#endif

namespace {

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
  o.Set("rejectionStatistic", list(gk::kRejectionStatisticNames));
  o.Set("rejectionLevel", list(gk::kRejectionLevelNames));
  return o;
}

#if GRPO_WITH_CUDA
using gk::rt::CudaRuntime;

// The positional arguments of the memory methods (pointers, sizes): a bigint or an integral number.
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
  throw gkn::CodeError(env, "DTYPE", std::string(key) + ": expected a non-negative integer (bigint or number)");
}
void* Pointer(Napi::Env env, Napi::Value v, const char* key) {
  return reinterpret_cast<void*>(static_cast<uintptr_t>(U64(env, v, key)));
}

// new CudaDevice(index): throws BACKEND_UNAVAILABLE naming the failing call. Methods: info, stats, alloc,
// free, upload, read, copyProbe, synchronize, close, and the ops of native/ops_cuda.cc (src/backends/
// cuda/native.ts types them all).
class CudaDevice : public gkn::DeviceWrap<CudaDevice, CudaRuntime> {
 public:
  static Napi::Function Define(Napi::Env env) {
    return DeviceWrap::Define(env, "CudaDevice",
                              {
                                  InstanceMethod<&CudaDevice::Info>("info"),
                                  InstanceMethod<&CudaDevice::Stats>("stats"),
                                  InstanceMethod<&CudaDevice::Alloc>("alloc"),
                                  InstanceMethod<&CudaDevice::Free>("free"),
                                  InstanceMethod<&CudaDevice::Upload>("upload"),
                                  InstanceMethod<&CudaDevice::Read>("read"),
                                  InstanceMethod<&CudaDevice::CopyProbe>("copyProbe"),
                              },
                              gkn::CudaOps());
  }

  explicit CudaDevice(const Napi::CallbackInfo& info) : DeviceWrap(info, "cuda") {
    Napi::Env env = info.Env();
    const int index = info.Length() > 0 && info[0].IsNumber() ? info[0].As<Napi::Number>().Int32Value() : 0;
    auto runtime = std::make_unique<CudaRuntime>();
    const gk::rt::Outcome opened = runtime->Open(index);
    if (!opened.ok()) throw gkn::CodeError(env, opened.code, opened.message);
    Start(env, std::move(runtime));
  }

  // Every op's test poison (src/debug.ts): when given, the op's outputs are filled with it first.
  static void CommonKeys(gkn::Args& a, gk::rt::CudaOp& op) {
    op.poison.on = a.Has("poison");
    if (op.poison.on) op.poison.value = static_cast<float>(a.Num("poison"));
  }

 private:
  Napi::Value Info(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    const cudaDeviceProp& prop = rt().prop();
    Napi::Object o = Napi::Object::New(env);
    o.Set("name", prop.name);
    o.Set("index", rt().index());
    o.Set("computeCapability", std::to_string(prop.major) + "." + std::to_string(prop.minor));
    o.Set("multiProcessors", prop.multiProcessorCount);
    o.Set("totalMemoryBytes", static_cast<double>(prop.totalGlobalMem));
    o.Set("l2CacheBytes", prop.l2CacheSize);
    o.Set("sharedMemPerBlockOptin", static_cast<double>(prop.sharedMemPerBlockOptin));
    o.Set("cudaRuntimeVersion", rt().runtime_version());
    o.Set("cudaDriverVersion", rt().driver_version());
    o.Set("archs", GRPO_CUDA_ARCHS);
    return o;
  }

  // stats() → { streamSyncs, lastScratchBytes }.
  Napi::Value Stats(const Napi::CallbackInfo& info) {
    Napi::Object o = Napi::Object::New(info.Env());
    o.Set("streamSyncs", static_cast<double>(rt().syncs()));
    o.Set("lastScratchBytes", static_cast<double>(rt().last_scratch()));
    return o;
  }

  // alloc(bytes) → bigint (0n for 0 bytes). OUT_OF_MEMORY when the pool cannot grow.
  Napi::Value Alloc(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    RequireOpen(env, "alloc");
    const uint64_t bytes = U64(env, info[0], "bytes");
    if (bytes == 0) return Napi::BigInt::New(env, static_cast<uint64_t>(0));
    void* p = nullptr;
    const gk::rt::Outcome o = rt().Alloc(bytes, &p);
    if (!o.ok()) throw gkn::CodeError(env, o.code, o.message);
    return Napi::BigInt::New(env, static_cast<uint64_t>(reinterpret_cast<uintptr_t>(p)));
  }

  // free(ptr): stream-ordered after every queued job. Unknown pointers (not from alloc) are ignored.
  Napi::Value Free(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    if (!rt().open()) return env.Undefined();
    void* p = Pointer(env, info[0], "ptr");
    if (rt().Forget(p)) Detach(env, "free", rt().FreeWork(p));
    return env.Undefined();
  }

  // upload(ptr, typedArray): snapshot of the array now, copied to the device in stream order.
  Napi::Value Upload(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    RequireOpen(env, "upload");
    void* p = Pointer(env, info[0], "ptr");
    Napi::TypedArray ta = info[1].As<Napi::TypedArray>();
    const size_t bytes = ta.ByteLength();
    if (bytes == 0) return env.Undefined();
    auto data = std::make_shared<std::vector<uint8_t>>(bytes);
    std::memcpy(data->data(), static_cast<const uint8_t*>(ta.ArrayBuffer().Data()) + ta.ByteOffset(), bytes);
    Detach(env, "upload", rt().UploadWork(p, std::move(data)));
    return env.Undefined();
  }

  // read(ptr, typedArray) → promise: fills the array (its whole byte length) from the device.
  Napi::Value Read(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    RequireOpen(env, "read");
    const void* p = Pointer(env, info[0], "ptr");
    Napi::TypedArray ta = info[1].As<Napi::TypedArray>();
    uint8_t* dst = static_cast<uint8_t*>(ta.ArrayBuffer().Data()) + ta.ByteOffset();
    return Submit(env, "read", rt().ReadWork(p, dst, ta.ByteLength()), ta);
  }

  // copyProbe(bytes) → seconds per device-to-device copy (native/cuda/probe.cu).
  Napi::Value CopyProbe(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    RequireOpen(env, "copyProbe");
    return Submit(env, "copyProbe", rt().CopyProbeWork(U64(env, info[0], "bytes")));
  }
};
#endif

Napi::Value BuildInfo(const Napi::CallbackInfo& info) {
  Napi::Object o = Napi::Object::New(info.Env());
  o.Set("cuda", bool(GRPO_WITH_CUDA));
#if GRPO_WITH_CUDA
  o.Set("reason", "");
  o.Set("archs", GRPO_CUDA_ARCHS);
  int rt = 0;
  cudaRuntimeGetVersion(&rt);  // the statically linked runtime: needs no driver
  o.Set("cudaRuntimeVersion", rt);
#else
#ifndef GRPO_NO_CUDA_REASON
#define GRPO_NO_CUDA_REASON "built without CUDA"
#endif
  o.Set("reason", GRPO_NO_CUDA_REASON);
#endif
  o.Set("cpu", bool(GRPO_WITH_CPU));
  return o;
}

Napi::Object Init(Napi::Env env, Napi::Object exports) {
  exports.Set("buildInfo", Napi::Function::New(env, BuildInfo, "buildInfo"));
  exports.Set("enums", Napi::Function::New(env, Enums, "enums"));
#if GRPO_WITH_CPU
  gk::cpu::AddCpuExports(env, exports);
#endif
#if GRPO_WITH_CUDA
  exports.Set("lmheadPlan", Napi::Function::New(env, gkn::LmheadPlan, "lmheadPlan"));
  exports.Set("CudaDevice", CudaDevice::Define(env));
#endif
  return exports;
}

}  // namespace

NODE_API_MODULE(grpo_kernels_native, Init)
