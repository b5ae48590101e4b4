// Small kernels every family uses: the test poison fill (src/debug.ts) and the error-flag reset; and
// HostStaging, the pinned buffer of host-to-device uploads (common.cuh).
// Bytes: poison writes n·sizeof(dtype); reset writes 16. No FLOPs.
#include <algorithm>
#include <climits>
#include <cstring>

#include <cuda.h>
#include <cudaTypedefs.h>

#include "common.cuh"

namespace gk {
namespace {

template <class T>
__global__ void fill_kernel(T* p, int64_t n, T value) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x)
    p[i] = value;
}

__global__ void reset_flags_kernel(ErrorFlags* f) {
  f->bits = 0;
  f->pad = 0;
  f->first_value = ~0ull;
}

// src/debug.ts POISON_I32.
constexpr int kPoisonI32 = -1234567891;

}  // namespace

Status launch_poison(void* p, int64_t n, DType dtype, float value, const LaunchEnv& env) {
  if (n <= 0) return Status::Ok();
  GK_REQUIRE(p != nullptr, "poison: null pointer");
  const int threads = 256;
  const int64_t blocks64 = ceil_div(n, threads);
  const int blocks = static_cast<int>(blocks64 < 65535 * 8 ? blocks64 : 65535 * 8);
  switch (dtype) {
    case DType::F32:
      fill_kernel<float><<<blocks, threads, 0, env.stream>>>(static_cast<float*>(p), n, value);
      break;
    case DType::I32:
      // Not trunc(value): −7e33 is outside int's range (UB in C++) and a multiple of 2^32 in JS.
      fill_kernel<int><<<blocks, threads, 0, env.stream>>>(static_cast<int*>(p), n, kPoisonI32);
      break;
    case DType::F16:
    case DType::BF16:
      fill_kernel<uint16_t><<<blocks, threads, 0, env.stream>>>(static_cast<uint16_t*>(p), n, uint16_t(0x7E01));
      break;
    case DType::U8:
      GK_CHECK(cudaMemsetAsync(p, 0xAB, static_cast<size_t>(n), env.stream));
      return Status::Ok();
  }
  GK_CHECK_LAUNCH("fill_kernel (poison)");
  return Status::Ok();
}

Status encode_tensor_map_2d(void* map, const void* base, int64_t rows, int64_t cols, int64_t ld, int box_rows,
                            int box_cols, int elem_bytes) {
  GK_REQUIRE(elem_bytes == 2 || elem_bytes == 4, "TMA: elements of 2 or 4 bytes");
  static PFN_cuTensorMapEncodeTiled_v12000 encode = [] {
    void* fn = nullptr;
    cudaDriverEntryPointQueryResult q{};
    if (cudaGetDriverEntryPointByVersion("cuTensorMapEncodeTiled", &fn, 12000, cudaEnableDefault, &q) !=
            cudaSuccess ||
        q != cudaDriverEntryPointSuccess)
      fn = nullptr;
    return reinterpret_cast<PFN_cuTensorMapEncodeTiled_v12000>(fn);
  }();
  GK_REQUIRE(encode != nullptr, "TMA: the driver has no cuTensorMapEncodeTiled");
  const cuuint64_t dims[2] = {cuuint64_t(cols), cuuint64_t(rows)};
  const cuuint64_t strides[1] = {cuuint64_t(ld) * cuuint64_t(elem_bytes)};
  const cuuint32_t box[2] = {cuuint32_t(box_cols), cuuint32_t(box_rows)};
  const cuuint32_t step[2] = {1, 1};
  const CUresult r = encode(static_cast<CUtensorMap*>(map),
                            elem_bytes == 2 ? CU_TENSOR_MAP_DATA_TYPE_UINT16 : CU_TENSOR_MAP_DATA_TYPE_UINT32, 2, const_cast<void*>(base),
                            dims, strides, box, step, CU_TENSOR_MAP_INTERLEAVE_NONE, CU_TENSOR_MAP_SWIZZLE_128B,
                            CU_TENSOR_MAP_L2_PROMOTION_L2_256B, CU_TENSOR_MAP_FLOAT_OOB_FILL_NONE);
  GK_REQUIRE(r == CUDA_SUCCESS, "TMA: cuTensorMapEncodeTiled failed (" + std::to_string(int(r)) + ")");
  return Status::Ok();
}

HostStaging::~HostStaging() {
  if (pending_) cudaEventSynchronize(done_);  // no copy may read freed memory
  if (done_) cudaEventDestroy(done_);
  if (buf_) cudaFreeHost(buf_);
}

Status HostStaging::upload(void* dst, const void* src, size_t bytes, cudaStream_t stream) {
  if (bytes == 0) return Status::Ok();
  if (bytes > kMaxBytes) {  // not worth pinning that much for good: the pageable path
    GK_CHECK(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyHostToDevice, stream));
    return Status::Ok();
  }
  size_t at = (used_ + 15) & ~size_t(15);
  if (at + bytes > cap_) {
    // Wrap: every earlier copy from the buffer must have finished (usually long since).
    if (pending_) GK_CHECK(cudaEventSynchronize(done_));
    pending_ = false;
    at = 0;
    if (bytes > cap_) {
      if (buf_) GK_CHECK(cudaFreeHost(buf_));
      buf_ = nullptr;
      const size_t cap = std::min(kMaxBytes, std::max(bytes, std::max(cap_ * 2, size_t(1) << 20)));
      cap_ = 0;
      GK_CHECK(cudaMallocHost(reinterpret_cast<void**>(&buf_), cap));
      cap_ = cap;
    }
  }
  if (done_ == nullptr) GK_CHECK(cudaEventCreateWithFlags(&done_, cudaEventDisableTiming));
  std::memcpy(buf_ + at, src, bytes);
  used_ = at + bytes;
  GK_CHECK(cudaMemcpyAsync(dst, buf_ + at, bytes, cudaMemcpyHostToDevice, stream));
  GK_CHECK(cudaEventRecord(done_, stream));
  pending_ = true;
  return Status::Ok();
}

Status launch_reset_flags(ErrorFlags* flags, const LaunchEnv& env) {
  reset_flags_kernel<<<1, 1, 0, env.stream>>>(flags);
  GK_CHECK_LAUNCH("reset_flags_kernel");
  return Status::Ok();
}

}  // namespace gk
