// The native cpu backend's device runtime (cpu_device.h).
#include "runtime/cpu_device.h"

#include <algorithm>
#include <chrono>
#include <vector>

namespace gk {
namespace rt {
namespace {

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

}  // namespace

CpuRuntime::CpuRuntime(int threads, bool portable, bool avx512)
    : kernels_(&cpu::kernel_table(portable, avx512)), pool_(cpu::pool_create(threads)) {}

CpuRuntime::~CpuRuntime() { Close(); }

void CpuRuntime::Release() {
  cpu::pool_destroy(pool_);
  pool_ = nullptr;
}

int CpuRuntime::threads() const { return pool_ ? cpu::pool_threads(pool_) : 0; }

Work CpuRuntime::SynchronizeWork() {
  return [] { return Outcome::Ok(); };
}

Work CpuRuntime::OpWork(const std::string& op, CpuOp cpu_op) {
  return [this, op, cpu_op = std::move(cpu_op)] {
    const cpu::Report r = cpu_op.run(*kernels_, pool_);
    if (r.fault == cpu::kOk) return Outcome::Ok();
    if (r.fault == cpu::kNoMemory) return Outcome::Fail("OUT_OF_MEMORY", "out of host memory");
    return Outcome::Fail("RANGE", cpu_op.range_message ? cpu_op.range_message(r) : op + ": a kernel fault");
  };
}

Work CpuRuntime::CopyProbeWork(size_t bytes) {
  return [this, bytes] {
    const size_t n = std::max<size_t>(bytes, 64);
    std::vector<uint8_t> a(n, 1), b(n);
    return Outcome::Value(MedianSeconds(2, 7, [&] { kernels_->copy_probe(pool_, a.data(), b.data(), n); }));
  };
}

Work CpuRuntime::ReadProbeWork(const void* data, size_t bytes) {
  return [this, data, bytes] {
    return Outcome::Value(MedianSeconds(2, 7, [&] { kernels_->read_probe(pool_, data, bytes); }));
  };
}

Work CpuRuntime::FmaProbeWork() { return PeakProbeWork(kernels_->fma_probe); }
Work CpuRuntime::LmheadFmaProbeWork() { return PeakProbeWork(kernels_->lmhead_fma_probe); }

Work CpuRuntime::PeakProbeWork(double (*probe)(cpu::Pool*, int64_t)) {
  return [this, probe] {
    // Sized to ~20 ms per run on this machine.
    int64_t iters = 1 << 16;
    for (;;) {
      const auto t0 = std::chrono::steady_clock::now();
      probe(pool_, iters);
      const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
      if (s > 0.02 || iters > (int64_t(1) << 34)) break;
      iters *= 4;
    }
    double flops = 0;
    const double s = MedianSeconds(1, 5, [&] { flops = probe(pool_, iters); });
    return Outcome::Value(flops / s);
  };
}

}  // namespace rt
}  // namespace gk
