// Node-API glue of the native cpu backend: the class CpuDevice and cpuInfo(). No math and no threads
// here: the device runtime (native/runtime/cpu_device.h: the thread pool, the kernels of one instruction
// set, the job thread) runs the work, native/ops_cpu.cc converts each op's arguments, and device_wrap.h
// turns jobs into promises.
//
// Every op converts its argument object on the main thread (native/args.h: strict, key by key; host
// memory arrives as typed arrays, one TypeScript interface per op in src/backends/cpu/native.ts), keeps
// a reference to that object (so every array it names outlives the job, whatever JS does meanwhile),
// queues the job and returns a promise. The job thread runs jobs in call order, each spread over the
// pool: the event loop never waits for the kernels. A fault the kernels report (a target out of range, a
// row of all −Inf) rejects that op's promise with a RANGE error worded as the API's host checks word
// it; nothing aborts the process.
#include "addon_cpu.h"

#include <algorithm>
#include <memory>
#include <string>

#include "device_wrap.h"
#include "runtime/cpu_device.h"

namespace gk {
namespace cpu {
namespace {

using rt::CpuRuntime;

// new CpuDevice({ threads, portable, avx512 }): `threads` compute threads (1 ≤ threads ≤ 1024; the
// TypeScript side caps it at the cores), `portable` forces the portable kernels, `avx512: false` keeps the
// LM head on its AVX2 build on a CPU with AVX-512F. Methods: info, copyProbe, readProbe, fmaProbe,
// lmheadFmaProbe, synchronize, close, and the ops of native/ops_cpu.cc.
class CpuDevice : public gkn::DeviceWrap<CpuDevice, CpuRuntime> {
 public:
  static Napi::Function Define(Napi::Env env) {
    return DeviceWrap::Define(env, "CpuDevice",
                              {
                                  InstanceMethod<&CpuDevice::Info>("info"),
                                  InstanceMethod<&CpuDevice::CopyProbe>("copyProbe"),
                                  InstanceMethod<&CpuDevice::ReadProbe>("readProbe"),
                                  InstanceMethod<&CpuDevice::FmaProbe>("fmaProbe"),
                                  InstanceMethod<&CpuDevice::LmheadFmaProbe>("lmheadFmaProbe"),
                              },
                              gkn::CpuOps());
  }

  explicit CpuDevice(const Napi::CallbackInfo& info) : DeviceWrap(info, "cpu") {
    Napi::Env env = info.Env();
    gkn::Args a(info[0], "CpuDevice");
    const int64_t threads = a.Int("threads");
    const bool portable = a.Bool("portable");
    const bool avx512 = a.Bool("avx512");
    a.Done();
    if (threads < 1 || threads > 1024) throw gkn::ArgError(env, "CpuDevice: threads: expected an integer in [1, 1024]");
    Start(env, std::make_unique<CpuRuntime>(int(threads), portable, avx512));
  }

 private:
  Napi::Value Info(const Napi::CallbackInfo& info) {
    Napi::Object o = Napi::Object::New(info.Env());
    o.Set("isa", rt().kernels().isa);
    o.Set("lmheadIsa", rt().kernels().lmhead_isa);
    o.Set("logprobsIsa", rt().kernels().logprobs_isa);
    o.Set("avx2Supported", avx2_supported());
    o.Set("avx2Compiled", avx2_compiled());
    o.Set("threads", rt().threads());
    o.Set("cores", core_count());
    return o;
  }

  // copyProbe(bytes) → seconds per copy of `bytes` bytes over the pool (median of 7 after 2 warm-ups).
  Napi::Value CopyProbe(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    RequireOpen(env, "copyProbe");
    if (!info[0].IsNumber()) throw gkn::ArgError(env, "copyProbe: bytes: expected a number");
    const double bytes = std::max(info[0].As<Napi::Number>().DoubleValue(), 0.0);
    return Submit(env, "copyProbe", rt().CopyProbeWork(size_t(bytes)));
  }

  // readProbe(array) → seconds per streaming read of the array's bytes over the pool (median of 7 after
  // 2 warm-ups): the bandwidth yardstick of the benchmarks (the same bytes an op reads, on its threads).
  Napi::Value ReadProbe(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    RequireOpen(env, "readProbe");
    if (!info[0].IsTypedArray()) throw gkn::ArgError(env, "readProbe: expected a typed array");
    Napi::TypedArray ta = info[0].As<Napi::TypedArray>();
    const uint8_t* data = static_cast<const uint8_t*>(ta.ArrayBuffer().Data()) + ta.ByteOffset();
    return Submit(env, "readProbe", rt().ReadProbeWork(data, ta.ByteLength()), ta);
  }

  // fmaProbe() → the pool's f32 multiply-add peak in FLOP/s (median of 5 runs of ~20 ms after a warm-up):
  // the yardstick of THR's products in the benchmarks.
  Napi::Value FmaProbe(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    RequireOpen(env, "fmaProbe");
    return Submit(env, "fmaProbe", rt().FmaProbeWork());
  }

  // lmheadFmaProbe() → fmaProbe at the LM head's vector width (16 lanes with its AVX-512 build): the
  // yardstick of its GEMM.
  Napi::Value LmheadFmaProbe(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    RequireOpen(env, "lmheadFmaProbe");
    return Submit(env, "lmheadFmaProbe", rt().LmheadFmaProbeWork());
  }
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
  // cpuAdviseHugePages(typedArray) → the bytes of it given 2 MiB pages (native/cpu/memory.cc): for a
  // large array not yet written.
  exports.Set("cpuAdviseHugePages",
              Napi::Function::New(
                  env,
                  [](const Napi::CallbackInfo& info) -> Napi::Value {
                    if (!info[0].IsTypedArray())
                      throw gkn::ArgError(info.Env(), "cpuAdviseHugePages: expected a typed array");
                    Napi::TypedArray ta = info[0].As<Napi::TypedArray>();
                    uint8_t* data = static_cast<uint8_t*>(ta.ArrayBuffer().Data()) + ta.ByteOffset();
                    return Napi::Number::New(info.Env(), double(advise_huge_pages(data, ta.ByteLength())));
                  },
                  "cpuAdviseHugePages"));
  // The offsets functions' one argument: an Int32Array, else a typed error naming the function.
  auto int32_arg = [](const Napi::CallbackInfo& info, const char* fn) {
    if (!info[0].IsTypedArray() || info[0].As<Napi::TypedArray>().TypedArrayType() != napi_int32_array)
      throw gkn::ArgError(info.Env(), std::string(fn) + ": expected an Int32Array");
    return info[0].As<Napi::Int32Array>();
  };
  // cpuFirstDecrease(int32Array) → the lowest i ≥ 1 with a[i] < a[i − 1], or −1 (native/cpu/offsets.cc).
  exports.Set("cpuFirstDecrease",
              Napi::Function::New(
                  env,
                  [int32_arg](const Napi::CallbackInfo& info) -> Napi::Value {
                    Napi::Int32Array a = int32_arg(info, "cpuFirstDecrease");
                    return Napi::Number::New(info.Env(), double(first_decrease(a.Data(), int64_t(a.ElementLength()))));
                  },
                  "cpuFirstDecrease"));
  // cpuOffsetCounts(int32Array) → [nonempty ranges, longest range] of non-decreasing offsets (offsets.cc).
  exports.Set("cpuOffsetCounts",
              Napi::Function::New(
                  env,
                  [int32_arg](const Napi::CallbackInfo& info) -> Napi::Value {
                    Napi::Int32Array a = int32_arg(info, "cpuOffsetCounts");
                    int64_t nonempty = 0, longest = 0;
                    offset_counts(a.Data(), int64_t(a.ElementLength()), &nonempty, &longest);
                    Napi::Array out = Napi::Array::New(info.Env(), 2);
                    out.Set(0u, Napi::Number::New(info.Env(), double(nonempty)));
                    out.Set(1u, Napi::Number::New(info.Env(), double(longest)));
                    return out;
                  },
                  "cpuOffsetCounts"));
  exports.Set("CpuDevice", CpuDevice::Define(env));
  exports.Set("cpuLmheadPlan", Napi::Function::New(env, gkn::CpuLmheadPlan, "cpuLmheadPlan"));
}

}  // namespace cpu
}  // namespace gk
