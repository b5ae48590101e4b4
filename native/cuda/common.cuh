// Shared by every kernel family and by the device runtime (native/runtime/cuda_device.cc): the Status every launcher returns, the checked-call
// macros, dtype codes, the error-flag block kernels write, and Scratch (stream-ordered temporaries of
// one job). Host-visible declarations only, except the device helpers under __CUDACC__ at the end.
#pragma once

#include <cuda_runtime.h>

#include <algorithm>
#include <climits>
#include <cstddef>
#include <cstdint>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

namespace gk {

// ------------------------------------------------------------------------------------------ Status
enum class Code {
  Ok = 0,
  Cuda,     // a CUDA call failed; err holds its code (runtime/cuda_device.cc maps it to OUT_OF_MEMORY, ...)
  Range,    // the data broke an assumption the kernels check (all −Inf row, target out of range)
  Invalid,  // a launcher's precondition failed (shape, alignment, size limits): a caller bug
};

struct Status {
  Code code = Code::Ok;
  cudaError_t err = cudaSuccess;
  std::string message;

  bool ok() const { return code == Code::Ok; }
  static Status Ok() { return {}; }
  static Status FromCuda(cudaError_t e, const char* call, const char* file, int line) {
    Status s;
    s.code = Code::Cuda;
    s.err = e;
    const char* base = file;
    for (const char* p = file; *p; ++p)
      if (*p == '/' || *p == '\\') base = p + 1;
    s.message = std::string(call) + " failed: " + cudaGetErrorString(e) + " (" + cudaGetErrorName(e) +
                ") at " + base + ":" + std::to_string(line);
    return s;
  }
  static Status Range(std::string m) {
    Status s;
    s.code = Code::Range;
    s.message = std::move(m);
    return s;
  }
  static Status Invalid(std::string m) {
    Status s;
    s.code = Code::Invalid;
    s.message = std::move(m);
    return s;
  }
};

// Checks a CUDA call; on failure returns a Status naming the call text, its error string and line.
#define GK_CHECK(call)                                                              \
  do {                                                                              \
    cudaError_t gk_err_ = (call);                                                   \
    if (gk_err_ != cudaSuccess) return ::gk::Status::FromCuda(gk_err_, #call, __FILE__, __LINE__); \
  } while (0)
// After a <<<>>> launch: names the kernel in the message.
#define GK_CHECK_LAUNCH(kernel_name)                                                              \
  do {                                                                                            \
    cudaError_t gk_err_ = cudaGetLastError();                                                     \
    if (gk_err_ != cudaSuccess)                                                                   \
      return ::gk::Status::FromCuda(gk_err_, "launch of " kernel_name, __FILE__, __LINE__);      \
  } while (0)
// Propagates a non-ok Status.
#define GK_TRY(expr)                      \
  do {                                    \
    ::gk::Status gk_st_ = (expr);         \
    if (!gk_st_.ok()) return gk_st_;      \
  } while (0)
#define GK_REQUIRE(cond, msg)                                      \
  do {                                                             \
    if (!(cond)) return ::gk::Status::Invalid(std::string(msg));  \
  } while (0)

// ------------------------------------------------------------------------------------------ dtypes
// Same names as src/dtypes.ts.
enum class DType : int { F32 = 0, F16 = 1, BF16 = 2, I32 = 3, U8 = 4 };
inline size_t dtype_size(DType d) {
  switch (d) {
    case DType::F32:
    case DType::I32:
      return 4;
    case DType::F16:
    case DType::BF16:
      return 2;
    default:
      return 1;
  }
}
inline const char* dtype_name(DType d) {
  switch (d) {
    case DType::F32:
      return "f32";
    case DType::F16:
      return "f16";
    case DType::BF16:
      return "bf16";
    case DType::I32:
      return "i32";
    default:
      return "u8";
  }
}

// --------------------------------------------------------------------------------------- launching
// What every launcher needs to size its grid.
struct LaunchEnv {
  cudaStream_t stream = nullptr;
  int sm_count = 1;
  int cc = 0;  // the device's compute capability, 10·major + minor (90: H100, H200)
};

// Error flags a kernel raises for data it cannot compute (read back by the job after the stream
// syncs). `bits` is OR-ed (integer atomics: deterministic). The smallest offending row and its example
// value (e.g. the bad target id) travel packed in one 64-bit word, (row << 32) | uint32(value), lowered
// with one atomicMin: the smallest row wins together with its own value, whatever the timing. (A
// separate `value` written after an atomicMin on `first` races: two rows below the old minimum could
// store their values in either order, and the message could pair row i with row j's value.)
struct ErrorFlags {
  int bits;
  int pad;
  unsigned long long first_value;  // ~0 when nothing was raised
  int first() const { return first_value == ~0ull ? INT_MAX : static_cast<int>(first_value >> 32); }
  int value() const { return static_cast<int>(static_cast<uint32_t>(first_value & 0xffffffffull)); }
};
enum FlagBits : int { kFlagAllNegInf = 1, kFlagTargetRange = 2 };

// Pinned host memory through which small host arrays (offsets) reach the device: one buffer per
// stream, reused. A pageable cudaMemcpyAsync is synchronous for the host: the driver copies the data
// in chunks through its own pinned bounce buffer and returns when the last chunk is staged (so the
// GPU idles while the host copies, and the copy runs at pageable speed). From pinned memory the copy
// is a DMA at the link's full rate and the call returns at once. Regions are handed out in order;
// before one is reused (when the buffer wraps or grows), the host waits on an event recorded after
// the last copy that read it, so the caller may drop its array as soon as upload() returns, as with a
// pageable copy. The buffer grows to the largest upload (from 1 MiB, doubling) up to 64 MiB; larger
// uploads take the pageable path. Not thread safe: one owner (a device's job thread, the harness).
class HostStaging {
 public:
  static constexpr size_t kMaxBytes = size_t(64) << 20;
  HostStaging() = default;
  HostStaging(const HostStaging&) = delete;
  HostStaging& operator=(const HostStaging&) = delete;
  ~HostStaging();
  // Copies `bytes` from src into the buffer and enqueues its copy to dst on `stream`.
  Status upload(void* dst, const void* src, size_t bytes, cudaStream_t stream);

 private:
  uint8_t* buf_ = nullptr;
  size_t cap_ = 0;
  size_t used_ = 0;             // [0, used_) may still be read by enqueued copies
  cudaEvent_t done_ = nullptr;  // recorded after the latest copy
  bool pending_ = false;
};

// Stream-ordered temporaries of one job: cudaMallocAsync on the job's stream, cudaFreeAsync (still
// stream-ordered, so after the kernels that use them) when the Scratch goes out of scope. With a
// HostStaging, upload() copies from pinned memory; without one, from the caller's pageable array.
class Scratch {
 public:
  explicit Scratch(cudaStream_t s, HostStaging* staging = nullptr) : stream_(s), staging_(staging) {}
  Scratch(const Scratch&) = delete;
  Scratch& operator=(const Scratch&) = delete;
  ~Scratch() {
    for (const auto& [p, n] : ptrs_) cudaFreeAsync(p, stream_);
  }
  template <class T>
  Status alloc(T** p, size_t n) {
    *p = nullptr;
    if (n == 0) n = 1;  // keep pointers valid even for empty arrays
    void* raw = nullptr;
    GK_CHECK(cudaMallocAsync(&raw, n * sizeof(T), stream_));
    ptrs_.push_back({raw, n * sizeof(T)});
    live_ += n * sizeof(T);
    bytes_ = std::max(bytes_, live_);
    *p = static_cast<T*>(raw);
    return Status::Ok();
  }
  // A buffer that grows from batch to batch: if n elements exceed cap, the old buffer (null, or one of
  // this Scratch's) is freed, stream-ordered (after the kernels already enqueued that use it), and a
  // new one of n elements takes its place, so a job holds its largest size, never the sum of its sizes.
  template <class T>
  Status grow(T** p, size_t& cap, size_t n) {
    if (n <= cap) return Status::Ok();
    if (*p) {
      for (size_t i = 0; i < ptrs_.size(); ++i)
        if (ptrs_[i].first == *p) {
          GK_CHECK(cudaFreeAsync(ptrs_[i].first, stream_));
          live_ -= ptrs_[i].second;
          ptrs_.erase(ptrs_.begin() + std::ptrdiff_t(i));
          break;
        }
    }
    GK_TRY(alloc(p, n));
    cap = n;
    return Status::Ok();
  }
  // alloc + copy from host. The host array may die when this returns: it was copied into the pinned
  // staging buffer, or (no staging) staged by the pageable cudaMemcpyAsync before it returned. This
  // runs on the job thread, never on the Node event loop.
  template <class T>
  Status upload(T** p, const std::vector<T>& host) {
    GK_TRY(alloc(p, host.size()));
    if (host.empty()) return Status::Ok();
    const size_t bytes = host.size() * sizeof(T);
    if (staging_) return staging_->upload(*p, host.data(), bytes, stream_);
    GK_CHECK(cudaMemcpyAsync(*p, host.data(), bytes, cudaMemcpyHostToDevice, stream_));
    return Status::Ok();
  }
  cudaStream_t stream() const { return stream_; }
  // The most bytes held at once (the memory bounds are tested on it: addon stats().lastScratchBytes).
  size_t bytes() const { return bytes_; }

 private:
  cudaStream_t stream_;
  HostStaging* staging_;
  std::vector<std::pair<void*, size_t>> ptrs_;  // live allocations and their bytes
  size_t live_ = 0, bytes_ = 0;
};

// ------------------------------------------------------------------- launchers shared by families
// Fills n elements of `dtype` at p: f32 with `value`, i32 with POISON_I32 (−1234567891; a float poison
// such as −7e33 does not truncate to a usable int), f16/bf16 with the raw bits 0x7E01 (a NaN), u8 with
// 0xAB (src/debug.ts poison conventions).
Status launch_poison(void* p, int64_t n, DType dtype, float value, const LaunchEnv& env);
// Sets the flags block to {bits 0, first_value ~0}.
Status launch_reset_flags(ErrorFlags* flags, const LaunchEnv& env);

// A TMA descriptor (tensor_core.cuh's tma_load_2d) of a row-major [rows][cols] matrix of elem_bytes-byte
// values (2: f16/bf16, 4: f32; copied as bits; row stride ld elements, base and ld·elem_bytes multiples
// of 16 bytes), read in boxes of box_rows × box_cols (box_cols·elem_bytes ≤ 128 bytes) into
// 128-byte-swizzled shared memory, elements outside the matrix zero: cuTensorMapEncodeTiled through the
// runtime's driver entry point (no libcuda link). `map` is 64-byte aligned storage of
// sizeof(CUtensorMap) bytes (cuda.h).
Status encode_tensor_map_2d(void* map, const void* base, int64_t rows, int64_t cols, int64_t ld, int box_rows,
                            int box_cols, int elem_bytes = 2);

#if defined(__CUDACC__) || defined(GK_CUDA_EMU)  // GK_CUDA_EMU: tools/cuda-emu/cuda_emu.h
#define GK_HOST_DEVICE __host__ __device__
#else
#define GK_HOST_DEVICE
#endif
GK_HOST_DEVICE inline int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }
// min / max that keep a NaN operand (the js reference's Math.min / Math.max; fminf and fmaxf drop it).
GK_HOST_DEVICE inline float min_nan(float a, float b) { return a < b || a != a ? a : b; }
GK_HOST_DEVICE inline float max_nan(float a, float b) { return a > b || a != a ? a : b; }

}  // namespace gk

// ---------------------------------------------------------------------------- device-side helpers
#if defined(__CUDACC__) || defined(GK_CUDA_EMU)  // GK_CUDA_EMU: tools/cuda-emu/cuda_emu.h
#include <cuda_bf16.h>
#include <cuda_fp16.h>

namespace gk {
// Calls f with a value of the C++ type of a float dtype (float, __half, __nv_bfloat16), so one
// launcher instantiates its kernel per input dtype; any other dtype is an Invalid status naming
// `argument`.
template <class F>
Status dispatch_float(DType d, const char* argument, F&& f) {
  switch (d) {
    case DType::F32:
      return f(float{});
    case DType::F16:
      return f(__half{});
    case DType::BF16:
      return f(__nv_bfloat16{});
    default:
      return Status::Invalid(std::string(argument) + ": expected f32, f16 or bf16, got " + dtype_name(d));
  }
}

// Calls f with a std::bool_constant per runtime flag, in order (f(std::true_type{}, std::false_type{})
// for with_flags(f, true, false)): one branch per combination, so that a launcher picks a kernel's
// template flags from runtime values in one place (`decltype(flag)::value` inside f).
template <class F>
decltype(auto) with_flags(F&& f) {
  return f();
}
template <class F, class... B>
decltype(auto) with_flags(F&& f, bool first, B... rest) {
  if (first) return with_flags([&](auto... c) -> decltype(auto) { return f(std::true_type{}, c...); }, rest...);
  return with_flags([&](auto... c) -> decltype(auto) { return f(std::false_type{}, c...); }, rest...);
}

constexpr float kLog2e = 1.4426950408889634f;
constexpr float kLn2 = 0.6931471805599453f;

// 2^x with one MUFU.EX2 (ex2.approx.ftz: ≤ 2 ulp; a result below 2^−126 flushes to 0, where exp2f would
// spend extra instructions to return a subnormal). The emulator computes exp2f and flushes likewise.
__device__ __forceinline__ float ex2_ftz(float x) {
#ifdef GK_CUDA_EMU
  const float r = exp2f(x);
  return r < 1.17549435e-38f ? 0.f : r;
#else
  float r;
  asm("ex2.approx.ftz.f32 %0, %1;" : "=f"(r) : "f"(x));
  return r;
#endif
}

// k3's value e^y − y − 1 and e^y − 1 (em1) without cancellation near y = 0 (policy.cu's KL estimator,
// rejection.cu's k3): for −1 < y < 2 from the Taylor series y²·Σ_{k≤12} y^k/(k+2)! (Horner; truncation
// below u/8 there) and em1 = y + v; beyond, from e^y (e^y − 1 − y ≥ 0.36 there, so e^y's error is a few
// ulp of it). NaN takes the e^y side.
__device__ __forceinline__ float k3_of(float y, float& em1) {
  if (y > -1.f && y < 2.f) {
    float p = 1.14707456e-11f;  // 1/14!
    p = fmaf(p, y, 1.60590438e-10f);  // 1/13!
    p = fmaf(p, y, 2.08767570e-9f);  // 1/12!
    p = fmaf(p, y, 2.50521084e-8f);  // 1/11!
    p = fmaf(p, y, 2.75573192e-7f);  // 1/10!
    p = fmaf(p, y, 2.75573192e-6f);  // 1/9!
    p = fmaf(p, y, 2.48015873e-5f);  // 1/8!
    p = fmaf(p, y, 1.98412698e-4f);  // 1/7!
    p = fmaf(p, y, 1.38888889e-3f);  // 1/6!
    p = fmaf(p, y, 8.33333333e-3f);  // 1/5!
    p = fmaf(p, y, 4.16666667e-2f);  // 1/4!
    p = fmaf(p, y, 1.66666667e-1f);  // 1/3!
    p = fmaf(p, y, 0.5f);  // 1/2!
    const float v = y * y * p;
    em1 = y + v;
    return v;
  }
  const float e = expf(y);
  em1 = e - 1.f;
  return em1 - y;
}

// A full warp's sum by xor butterflies (policy.cu's and rejection.cu's per-response sums): every lane
// ends with the same bits (each step adds the same two values in either lane), in a tree fixed by the
// lane order alone.
__device__ __forceinline__ float warp_sum(float v) {
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  return v;
}
__device__ __forceinline__ unsigned warp_sum_u(unsigned v) {
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  return v;
}

template <class T>
__device__ __forceinline__ float load_f32(const T* p);
template <>
__device__ __forceinline__ float load_f32<float>(const float* p) {
  return __ldg(p);
}
template <>
__device__ __forceinline__ float load_f32<__half>(const __half* p) {
  return __half2float(__ldg(p));
}
template <>
__device__ __forceinline__ float load_f32<__nv_bfloat16>(const __nv_bfloat16* p) {
  return __bfloat162float(__ldg(p));
}

template <class T>
__device__ __forceinline__ T from_f32(float x);
template <>
__device__ __forceinline__ float from_f32<float>(float x) {
  return x;
}
template <>
__device__ __forceinline__ __half from_f32<__half>(float x) {
  return __float2half_rn(x);
}
template <>
__device__ __forceinline__ __nv_bfloat16 from_f32<__nv_bfloat16>(float x) {
  return __float2bfloat16_rn(x);
}

// 16 bytes = kVec<T> elements; unpack a uint4 into floats and pack floats into a uint4.
template <class T>
struct VecTraits {
  static constexpr int N = 16 / sizeof(T);
};
__device__ __forceinline__ void unpack16(const uint4& v, float (&x)[4]) {
  x[0] = __uint_as_float(v.x);
  x[1] = __uint_as_float(v.y);
  x[2] = __uint_as_float(v.z);
  x[3] = __uint_as_float(v.w);
}
__device__ __forceinline__ void unpack_word_bf16(unsigned w, float& lo, float& hi) {
  lo = __uint_as_float(w << 16);
  hi = __uint_as_float(w & 0xffff0000u);
}
__device__ __forceinline__ void unpack_word_f16(unsigned w, float& lo, float& hi) {
  __half2 h = *reinterpret_cast<__half2*>(&w);
  float2 f = __half22float2(h);
  lo = f.x;
  hi = f.y;
}
template <class T>
__device__ __forceinline__ void unpack_vec(const uint4& v, float (&x)[VecTraits<T>::N]);
template <>
__device__ __forceinline__ void unpack_vec<float>(const uint4& v, float (&x)[4]) {
  unpack16(v, x);
}
template <>
__device__ __forceinline__ void unpack_vec<__nv_bfloat16>(const uint4& v, float (&x)[8]) {
  unpack_word_bf16(v.x, x[0], x[1]);
  unpack_word_bf16(v.y, x[2], x[3]);
  unpack_word_bf16(v.z, x[4], x[5]);
  unpack_word_bf16(v.w, x[6], x[7]);
}
template <>
__device__ __forceinline__ void unpack_vec<__half>(const uint4& v, float (&x)[8]) {
  unpack_word_f16(v.x, x[0], x[1]);
  unpack_word_f16(v.y, x[2], x[3]);
  unpack_word_f16(v.z, x[4], x[5]);
  unpack_word_f16(v.w, x[6], x[7]);
}
template <class T>
__device__ __forceinline__ uint4 pack_vec(const float (&x)[VecTraits<T>::N]) {
  uint4 v;
  T* e = reinterpret_cast<T*>(&v);
#pragma unroll
  for (int i = 0; i < VecTraits<T>::N; ++i) e[i] = from_f32<T>(x[i]);
  return v;
}

// Elements before p reaches a 16-byte boundary (capped at n); n when p is not even T-aligned, so that
// the whole span then takes the scalar path.
template <class T>
__device__ __forceinline__ int64_t head_elems(const T* p, int64_t n) {
  uintptr_t a = reinterpret_cast<uintptr_t>(p);
  if (a % sizeof(T) != 0) return n;
  int64_t h = static_cast<int64_t>(((16 - (a & 15)) & 15) / sizeof(T));
  return h < n ? h : n;
}

// Smallest index i in [0, n) with offs[i] <= x < offs[i+1] for non-decreasing offs[0..n]; with empty
// ranges the last i whose offs[i] <= x (the one non-empty range that contains x).
__device__ __forceinline__ int find_range(const int* offs, int n, int x) {
  int lo = 0, hi = n;  // answer in [lo, hi)
  while (hi - lo > 1) {
    int mid = (lo + hi) >> 1;
    if (__ldg(offs + mid) <= x)
      lo = mid;
    else
      hi = mid;
  }
  return lo;
}

// row ≥ 0. Deterministic: see ErrorFlags.
__device__ __forceinline__ void raise_flag(ErrorFlags* f, int bit, int row, int value) {
  atomicOr(&f->bits, bit);
  const unsigned long long key =
      (static_cast<unsigned long long>(static_cast<uint32_t>(row)) << 32) | static_cast<uint32_t>(value);
  atomicMin(&f->first_value, key);
}

// kernel<<<grid, block, smem, stream>>>(args...) in clusters of cluster_x blocks along x (grid.x a
// multiple of it): cudaLaunchKernelEx with the cluster-dimension attribute; in the emulator a launch
// that runs each cluster's blocks together. `name` for the error (and the emulator's GK_EMU_FAULT).
template <class... P, class... A>
Status launch_clustered(const char* name, void (*kernel)(P...), dim3 grid, dim3 block, size_t smem,
                        cudaStream_t stream, unsigned cluster_x, A&&... args) {
#if defined(GK_CUDA_EMU)
  ::gkemu::launch(name, kernel, grid, block, smem, stream, dim3(cluster_x, 1, 1))(std::forward<A>(args)...);
  cudaError_t e = cudaGetLastError();
#else
  cudaLaunchAttribute attr[1];
  attr[0].id = cudaLaunchAttributeClusterDimension;
  attr[0].val.clusterDim.x = cluster_x;
  attr[0].val.clusterDim.y = 1;
  attr[0].val.clusterDim.z = 1;
  cudaLaunchConfig_t cfg = {};
  cfg.gridDim = grid;
  cfg.blockDim = block;
  cfg.dynamicSmemBytes = smem;
  cfg.stream = stream;
  cfg.attrs = attr;
  cfg.numAttrs = cluster_x > 1 ? 1 : 0;  // (1: a plain launch)
  cudaError_t e = cudaLaunchKernelEx(&cfg, kernel, std::forward<A>(args)...);
  if (e == cudaSuccess) e = cudaGetLastError();
#endif
  if (e != cudaSuccess) return Status::FromCuda(e, (std::string("launch of ") + name).c_str(), __FILE__, __LINE__);
  return Status::Ok();
}
}  // namespace gk
#endif
