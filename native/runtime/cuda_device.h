// The cuda backend's device runtime, without Node-API: one device, one non-blocking stream, the memory
// pool, and the ring of ErrorFlags through which kernels report values only the device sees. The Node
// side (native/addon.cc) converts arguments and settles promises; everything here runs on plain C++.
//
// Ordering. Every call becomes a job (jobs.h) run in call order on the job thread, so stream order is
// call order. A job enqueues its work WITHOUT waiting for the device: the host runs ahead. Only read()
// and synchronize() wait for the stream (Drain).
//
// Memory. Alloc() runs on the caller's (main) thread with cudaMallocAsync on the same stream: a caching
// pool whose allocations are ordered before every later job. Free() is a fire-and-forget job, so the
// memory returns to the pool after every earlier user. Close() frees what is still live.
//
// Device-side checks. An op whose kernels check device values (a target id, a row of all −Inf) gets the
// next slot of a ring of kFlagSlots ErrorFlags: reset, raised by its kernels, copied back to pinned host
// memory in stream order. The next Drain() turns the first raised slot into a RANGE outcome (docs/
// DESIGN.md, "Errors"). With every slot in flight, the op drains first (and reports an earlier op's raised
// check). An op that fails before its flags' copy is enqueued registers no check (OpWork).
//
// Errors. Every CUDA call is checked; a failure becomes an outcome with the GrpoKernelsError code of its
// cudaError_t (OutcomeOf) and a message naming the call. Nothing aborts the process.
#pragma once

#include <atomic>
#include <functional>
#include <memory>
#include <string>
#include <unordered_set>
#include <vector>

#include "cuda/common.cuh"
#include "runtime/jobs.h"

namespace gk {
namespace rt {

// The GrpoKernelsError code of a failed Status ('RANGE', 'SHAPE', 'OUT_OF_MEMORY', 'BACKEND_UNAVAILABLE',
// 'DEVICE_LOST'), and the outcome of a launcher's Status.
const char* CodeOf(const Status& s);
Outcome OutcomeOf(const Status& s);

// The test poison (src/debug.ts): when on, every output of an op is filled with `value` before its
// kernels run, so an element they fail to write shows.
struct Poison {
  bool on = false;
  float value = 0.f;
};
struct PoisonTarget {
  void* ptr;
  int64_t n;
  DType dtype;
};

// One op, as the argument conversion (native/ops_cuda.cc) hands it over.
struct CudaOp {
  std::vector<PoisonTarget> outputs;  // filled with the poison when it is on
  // Enqueues the kernels; `flags` is the op's ErrorFlags slot (null without flags_message).
  std::function<Status(const LaunchEnv&, Scratch&, ErrorFlags* flags)> enqueue;
  // The RANGE message of raised flags; null: the op's kernels check nothing on the device.
  std::function<std::string(const ErrorFlags&)> flags_message = nullptr;
  Poison poison{};  // the key `poison`, read by CudaDevice (addon.cc) for every op
};

class CudaRuntime : public Runtime {
 public:
  using Op = CudaOp;
  static constexpr int kFlagSlots = 256;  // ops with checks in flight before one must wait for the device

  CudaRuntime() = default;
  ~CudaRuntime() override;

  // Sets device `index` up (stream, pool, flag ring); a failure is BACKEND_UNAVAILABLE (or
  // OUT_OF_MEMORY) naming the failing call. Then Start() the job thread.
  Outcome Open(int index);

  const cudaDeviceProp& prop() const { return prop_; }
  int index() const { return device_; }
  int runtime_version() const { return runtime_version_; }
  int driver_version() const { return driver_version_; }
  // Stream synchronisations so far (tests: ops never wait) and the Scratch bytes of the latest op
  // (tests: the memory bounds).
  uint64_t syncs() const { return syncs_.load(std::memory_order_relaxed); }
  uint64_t last_scratch() const { return last_scratch_.load(std::memory_order_relaxed); }

  // Main thread. `bytes` > 0, rounded up to 16 so vectorised kernels may read a buffer's last 16-byte
  // word. OUT_OF_MEMORY when the pool cannot grow.
  Outcome Alloc(uint64_t bytes, void** out);
  // Main thread: whether p came from Alloc and is live; if so, it is no longer, and FreeWork(p) must
  // follow.
  bool Forget(void* p);

  // The jobs' work (run on the job thread). Free and Upload are fire-and-forget.
  Work FreeWork(void* p);
  // A snapshot of the host bytes, copied to the device in stream order.
  Work UploadWork(void* dst, std::shared_ptr<std::vector<uint8_t>> data);
  // Copies `bytes` to host memory the caller keeps alive, then drains (an earlier op's raised check
  // rejects the read).
  Work ReadWork(const void* src, void* dst, size_t bytes);
  Work SynchronizeWork();
  // Seconds per device-to-device copy of `bytes` (native/cuda/probe.cu).
  Work CopyProbeWork(uint64_t bytes);
  // Poisons the outputs when asked, takes a flag slot when the op checks, enqueues, returns.
  Work OpWork(const std::string& op, CudaOp cuda_op);

 protected:
  void OnThreadStart() override;
  void Release() override;

 private:
  struct PendingCheck {
    int slot;
    std::string op;
    std::function<std::string(const ErrorFlags&)> message;
  };
  // Job thread: waits for the stream, then reports the first raised check (and forgets them all).
  Status Drain();

  int device_ = 0;
  cudaDeviceProp prop_{};
  int runtime_version_ = 0;
  int driver_version_ = 0;
  cudaStream_t stream_ = nullptr;
  LaunchEnv launch_;
  ErrorFlags* d_flags_ = nullptr;  // kFlagSlots slots
  ErrorFlags* h_flags_ = nullptr;  // pinned mirror, filled in stream order
  std::unique_ptr<HostStaging> staging_ = std::make_unique<HostStaging>();  // job thread only
  std::vector<PendingCheck> pending_;                                      // job thread only, in op order
  std::unordered_set<void*> live_;                                         // main thread only
  std::atomic<uint64_t> syncs_{0};
  std::atomic<uint64_t> last_scratch_{0};
};

}  // namespace rt
}  // namespace gk
