// The native cpu backend's device runtime, without Node-API: a pool of compute threads (native/cpu/
// pool.cc), the kernels of one instruction set (native/cpu/runtime.h picks them), and the job thread
// (jobs.h) that runs each op over the pool in call order. The Node side (native/addon_cpu.cc) converts
// arguments and settles promises; the host arrays an op reads and writes are kept alive there.
//
// The kernels report faults only they see (a target out of range, a row of all −Inf) as a Report; an op
// turns it into a RANGE outcome worded as the API's host checks word it (its range_message). The cpu
// backend has no stream, no device memory and no fire-and-forget jobs: every job is awaited.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <string>

#include "cpu/runtime.h"
#include "runtime/jobs.h"

namespace gk {
namespace rt {

// One op, as the argument conversion (native/ops_cpu.cc) hands it over.
struct CpuOp {
  std::function<cpu::Report(const cpu::KernelTable&, cpu::Pool*)> run;
  // The RANGE message of a fault; null: "<op>: a kernel fault".
  std::function<std::string(const cpu::Report&)> range_message = nullptr;
};

class CpuRuntime : public Runtime {
 public:
  using Op = CpuOp;
  // `threads` compute threads in all (1 ≤ threads ≤ 1024), the job thread being one of them;
  // `portable` forces the portable kernels; `avx512` lets the LM head take its AVX-512 build.
  CpuRuntime(int threads, bool portable, bool avx512);
  ~CpuRuntime() override;

  const cpu::KernelTable& kernels() const { return *kernels_; }
  // The pool's threads; 0 once closed.
  int threads() const;

  // The jobs' work (run on the job thread).
  Work SynchronizeWork();  // a fence: nothing to do but come after the earlier jobs
  Work OpWork(const std::string& op, CpuOp cpu_op);
  // The benchmarks' yardsticks (native/cpu/probe.cc), each the median of several timed runs: seconds
  // per copy of `bytes` bytes over the pool, seconds per streaming read of `bytes` at `data` (which the
  // caller keeps alive), and the pool's f32 multiply-add peak in FLOP/s.
  Work CopyProbeWork(size_t bytes);
  Work ReadProbeWork(const void* data, size_t bytes);
  Work FmaProbeWork();
  // The same at the LM head's vector width (16 lanes with its AVX-512 build).
  Work LmheadFmaProbeWork();

 protected:
  void Release() override;

 private:
  // A probe's FLOP/s over the pool: the median of 5 runs of ~20 ms after a warm-up.
  Work PeakProbeWork(double (*probe)(cpu::Pool*, int64_t));

  const cpu::KernelTable* kernels_;
  cpu::Pool* pool_;
};

}  // namespace rt
}  // namespace gk
