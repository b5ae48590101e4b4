// The cuda backend's device runtime (cuda_device.h).
#include "runtime/cuda_device.h"

#include <algorithm>
#include <cstdint>

#include "cuda/probe.cuh"

namespace gk {
namespace rt {

const char* CodeOf(const Status& s) {
  switch (s.code) {
    case Code::Ok:
      return nullptr;
    case Code::Range:
      return "RANGE";
    case Code::Invalid:
      return "SHAPE";
    case Code::Cuda:
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

Outcome OutcomeOf(const Status& s) { return s.ok() ? Outcome::Ok() : Outcome::Fail(CodeOf(s), s.message); }

namespace {
std::string CallError(const char* call, cudaError_t e) {
  return std::string(call) + " failed: " + cudaGetErrorString(e) + " (" + cudaGetErrorName(e) + ")";
}
// Work whose body returns a Status (the GK_CHECK / GK_TRY style of the launchers).
template <class F>
Work StatusWork(F body) {
  return [body = std::move(body)] { return OutcomeOf(body()); };
}
}  // namespace

CudaRuntime::~CudaRuntime() { Close(); }

Outcome CudaRuntime::Open(int index) {
  int count = 0;
  cudaError_t e = cudaGetDeviceCount(&count);
  if (e != cudaSuccess) return Outcome::Fail("BACKEND_UNAVAILABLE", CallError("cudaGetDeviceCount", e));
  if (count == 0) return Outcome::Fail("BACKEND_UNAVAILABLE", "cudaGetDeviceCount found no CUDA device");
  if (index < 0 || index >= count)
    return Outcome::Fail("BACKEND_UNAVAILABLE", "deviceIndex " + std::to_string(index) +
                                                    " requested, but cudaGetDeviceCount found " +
                                                    std::to_string(count) + " device(s)");
  device_ = index;
  Outcome failed;
  auto check = [&](cudaError_t err, const char* call) {
    if (err != cudaSuccess && failed.ok())
      failed = Outcome::Fail(err == cudaErrorMemoryAllocation ? "OUT_OF_MEMORY" : "BACKEND_UNAVAILABLE",
                             CallError(call, err));
    return failed.ok();
  };
  if (!check(cudaSetDevice(device_), "cudaSetDevice") ||
      !check(cudaGetDeviceProperties(&prop_, device_), "cudaGetDeviceProperties"))
    return failed;
  int pools = 0;
  if (!check(cudaDeviceGetAttribute(&pools, cudaDevAttrMemoryPoolsSupported, device_), "cudaDeviceGetAttribute"))
    return failed;
  if (!pools)
    return Outcome::Fail("BACKEND_UNAVAILABLE",
                         "cudaDevAttrMemoryPoolsSupported: 0 (stream-ordered allocation unavailable)");
  cudaMemPool_t pool;
  uint64_t threshold = UINT64_MAX;  // keep freed memory cached, as PyTorch's allocator does
  if (!check(cudaDeviceGetDefaultMemPool(&pool, device_), "cudaDeviceGetDefaultMemPool") ||
      !check(cudaMemPoolSetAttribute(pool, cudaMemPoolAttrReleaseThreshold, &threshold), "cudaMemPoolSetAttribute") ||
      !check(cudaStreamCreateWithFlags(&stream_, cudaStreamNonBlocking), "cudaStreamCreateWithFlags") ||
      !check(cudaMalloc(&d_flags_, sizeof(ErrorFlags) * kFlagSlots), "cudaMalloc") ||
      !check(cudaMallocHost(&h_flags_, sizeof(ErrorFlags) * kFlagSlots), "cudaMallocHost"))
    return failed;  // Close() frees what was made
  launch_ = LaunchEnv{stream_, prop_.multiProcessorCount, 10 * prop_.major + prop_.minor};
  cudaRuntimeGetVersion(&runtime_version_);
  cudaDriverGetVersion(&driver_version_);
  return Outcome::Ok();
}

void CudaRuntime::OnThreadStart() { cudaSetDevice(device_); }

void CudaRuntime::Release() {
  cudaSetDevice(device_);
  if (stream_ != nullptr) {
    for (void* p : live_) cudaFreeAsync(p, stream_);
    cudaStreamSynchronize(stream_);
  }
  live_.clear();
  staging_.reset();  // its copies are done: the stream is idle
  if (stream_ != nullptr) cudaStreamDestroy(stream_);
  stream_ = nullptr;
  if (d_flags_ != nullptr) cudaFree(d_flags_);
  if (h_flags_ != nullptr) cudaFreeHost(h_flags_);
  d_flags_ = nullptr;
  h_flags_ = nullptr;
  cudaMemPool_t pool;
  if (cudaDeviceGetDefaultMemPool(&pool, device_) == cudaSuccess) cudaMemPoolTrimTo(pool, 0);
}

Outcome CudaRuntime::Alloc(uint64_t bytes, void** out) {
  *out = nullptr;
  cudaSetDevice(device_);
  const uint64_t padded = (bytes + 15) & ~uint64_t(15);
  cudaError_t e = cudaMallocAsync(out, padded, stream_);
  if (e != cudaSuccess) {
    *out = nullptr;
    return Outcome::Fail(CodeOf(Status::FromCuda(e, "cudaMallocAsync", __FILE__, __LINE__)),
                         "alloc of " + std::to_string(bytes) + " bytes: " + CallError("cudaMallocAsync", e));
  }
  live_.insert(*out);
  return Outcome::Ok();
}

bool CudaRuntime::Forget(void* p) { return p != nullptr && live_.erase(p) > 0; }

Work CudaRuntime::FreeWork(void* p) {
  return StatusWork([this, p]() -> Status {
    GK_CHECK(cudaFreeAsync(p, stream_));
    return Status::Ok();
  });
}

Work CudaRuntime::UploadWork(void* dst, std::shared_ptr<std::vector<uint8_t>> data) {
  return StatusWork([this, dst, data]() -> Status {
    // Pageable source: staged before cudaMemcpyAsync returns, so `data` may die afterwards.
    GK_CHECK(cudaMemcpyAsync(dst, data->data(), data->size(), cudaMemcpyHostToDevice, stream_));
    return Status::Ok();
  });
}

Work CudaRuntime::ReadWork(const void* src, void* dst, size_t bytes) {
  return StatusWork([this, src, dst, bytes]() -> Status {
    if (bytes > 0) GK_CHECK(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToHost, stream_));
    return Drain();  // waits for the copy; a raised check of an earlier op rejects the read
  });
}

Work CudaRuntime::SynchronizeWork() {
  return StatusWork([this] { return Drain(); });
}

Work CudaRuntime::CopyProbeWork(uint64_t bytes) {
  return [this, bytes] {
    Scratch scratch(stream_);
    double seconds = 0;
    const Status s = launch_copy_probe(std::max<uint64_t>(bytes, 16), launch_, scratch, &seconds);
    return s.ok() ? Outcome::Value(seconds) : OutcomeOf(s);
  };
}

Work CudaRuntime::OpWork(const std::string& op, CudaOp cuda_op) {
  return StatusWork([this, op, cuda_op = std::move(cuda_op)]() -> Status {
    // The op's check takes the next free slot, and is registered only once the copy of its flags to
    // the slot's host mirror is enqueued: an op that fails before that (a launch, an allocation) leaves
    // no check behind, whose mirror would still hold an earlier op's flags (or, never written, garbage)
    // and fail a later, unrelated wait with them. Its own error is what its caller sees.
    ErrorFlags* slot = nullptr;
    if (cuda_op.flags_message) {
      if (pending_.size() == size_t(kFlagSlots)) GK_TRY(Drain());
      slot = d_flags_ + pending_.size();
      GK_TRY(launch_reset_flags(slot, launch_));
    }
    Scratch scratch(stream_, staging_.get());
    if (cuda_op.poison.on)
      for (const PoisonTarget& t : cuda_op.outputs)
        GK_TRY(launch_poison(t.ptr, t.n, t.dtype, cuda_op.poison.value, launch_));
    GK_TRY(cuda_op.enqueue(launch_, scratch, slot));
    last_scratch_.store(scratch.bytes(), std::memory_order_relaxed);
    if (slot) {
      const int i = static_cast<int>(slot - d_flags_);
      GK_CHECK(cudaMemcpyAsync(h_flags_ + i, slot, sizeof(ErrorFlags), cudaMemcpyDeviceToHost, stream_));
      pending_.push_back(PendingCheck{i, op, cuda_op.flags_message});
    }
    return Status::Ok();
  });
}

Status CudaRuntime::Drain() {
  syncs_.fetch_add(1, std::memory_order_relaxed);
  GK_CHECK(cudaStreamSynchronize(stream_));
  Status first = Status::Ok();
  for (const PendingCheck& c : pending_) {
    const ErrorFlags& f = h_flags_[c.slot];
    if (f.bits != 0 && first.ok()) {
      std::string m = c.message ? c.message(f) : "";
      first = Status::Range(m.empty() ? c.op + ": a kernel raised error flags " + std::to_string(f.bits) : m);
    }
  }
  pending_.clear();
  return first;
}

}  // namespace rt
}  // namespace gk
