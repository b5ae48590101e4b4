// The native cpu backend's thread pool and kernel dispatch (runtime.h).
//
// Pool: threads − 1 workers that sleep on a condition variable between jobs; pool_run publishes a job
// (n items, a function, a context), wakes them, takes part itself as worker 0, and returns once every
// worker has left the job. Items are claimed one at a time from an atomic counter (dynamic scheduling:
// a busy core on a shared machine does not hold the others up). Only one thread calls pool_run at a
// time: the device's job thread (native/runtime/jobs.cc).
#include <atomic>
#include <condition_variable>
#include <mutex>
#include <thread>
#include <vector>

#if defined(__linux__)
#include <sched.h>
#endif

#include "runtime.h"

namespace gk {
namespace cpu {

struct Pool {
  int threads = 1;
  std::vector<std::thread> workers;
  std::mutex mu;
  std::condition_variable wake;
  std::condition_variable finished;
  uint64_t generation = 0;  // bumped per job
  bool stopping = false;
  int busy = 0;  // workers still inside the current job
  // The current job (written under mu before the generation bump).
  int64_t n = 0;
  void (*fn)(void*, int64_t, int) = nullptr;
  void* ctx = nullptr;
  std::atomic<int64_t> next{0};

  void Work(int worker) {
    for (int64_t i = next.fetch_add(1, std::memory_order_relaxed); i < n;
         i = next.fetch_add(1, std::memory_order_relaxed))
      fn(ctx, i, worker);
  }

  void Loop(int worker) {
    uint64_t seen = 0;
    for (;;) {
      {
        std::unique_lock<std::mutex> lock(mu);
        wake.wait(lock, [&] { return stopping || generation != seen; });
        if (stopping) return;
        seen = generation;
      }
      Work(worker);
      {
        std::lock_guard<std::mutex> lock(mu);
        if (--busy == 0) finished.notify_one();
      }
    }
  }
};

int core_count() {
#if defined(__linux__)
  cpu_set_t set;
  CPU_ZERO(&set);
  if (sched_getaffinity(0, sizeof set, &set) == 0) {
    const int n = CPU_COUNT(&set);
    if (n > 0) return n;
  }
#endif
  const unsigned n = std::thread::hardware_concurrency();
  return n > 0 ? int(n) : 1;
}

Pool* pool_create(int threads) {
  Pool* p = new Pool();
  p->threads = threads < 1 ? 1 : threads;
  p->workers.reserve(size_t(p->threads - 1));
  for (int w = 1; w < p->threads; ++w) p->workers.emplace_back([p, w] { p->Loop(w); });
  return p;
}

void pool_destroy(Pool* p) {
  if (!p) return;
  {
    std::lock_guard<std::mutex> lock(p->mu);
    p->stopping = true;
  }
  p->wake.notify_all();
  for (auto& t : p->workers) t.join();
  delete p;
}

int pool_threads(const Pool* p) { return p->threads; }

void pool_run(Pool* p, int64_t n, void (*fn)(void*, int64_t, int), void* ctx) {
  if (n <= 0) return;
  if (p->threads == 1 || n == 1) {
    for (int64_t i = 0; i < n; ++i) fn(ctx, i, 0);
    return;
  }
  {
    std::lock_guard<std::mutex> lock(p->mu);
    p->n = n;
    p->fn = fn;
    p->ctx = ctx;
    p->next.store(0, std::memory_order_relaxed);
    p->busy = p->threads - 1;
    ++p->generation;
  }
  p->wake.notify_all();
  p->Work(0);
  std::unique_lock<std::mutex> lock(p->mu);
  p->finished.wait(lock, [p] { return p->busy == 0; });
}

// ------------------------------------------------------------------------------------------ dispatch
bool avx2_compiled() { return GK_CPU_HAVE_AVX2 != 0; }

bool avx2_supported() {
#if GK_CPU_HAVE_AVX2 && (defined(__x86_64__) || defined(__i386__)) && (defined(__GNUC__) || defined(__clang__))
  __builtin_cpu_init();
  return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") && __builtin_cpu_supports("f16c");
#else
  return false;
#endif
}

const KernelTable& kernel_table(bool portable) {
  static const KernelTable kPortable{"portable",
                                     portable::logprobs,
                                     portable::logprobs_backward,
                                     portable::gather_probs,
                                     portable::token_hidden_reward,
                                     portable::thr_reweight,
                                     portable::fma_probe,
                                     portable::read_probe,
                                     portable::copy_probe};
#if GK_CPU_HAVE_AVX2
  static const KernelTable kAvx2{"avx2",
                                 avx2::logprobs,
                                 avx2::logprobs_backward,
                                 avx2::gather_probs,
                                 avx2::token_hidden_reward,
                                 avx2::thr_reweight,
                                 avx2::fma_probe,
                                 avx2::read_probe,
                                 avx2::copy_probe};
  if (!portable && avx2_supported()) return kAvx2;
#endif
  return kPortable;
}

}  // namespace cpu
}  // namespace gk
