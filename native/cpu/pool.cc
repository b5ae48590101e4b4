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

bool avx512_supported() {
#if GK_CPU_HAVE_AVX2 && (defined(__x86_64__) || defined(__i386__)) && (defined(__GNUC__) || defined(__clang__))
  __builtin_cpu_init();
  return avx2_supported() && __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw");
#else
  return false;
#endif
}

// A table's entries but its name: the kernels of namespace `ns`, the LM head's and the logprobs
// forward's of `lm`.
#define GK_CPU_TABLE(ns, lm, lm_isa)                                                                   \
  lm_isa, lm::logprobs, ns::logprobs_backward, ns::gather_probs, ns::token_hidden_reward, ns::thr_reweight, \
      ns::policy_loss, ns::rollout_rejection, ns::advantages, ns::expand_to_tokens, ns::whiten,           \
      ns::fma_probe, ns::read_probe, ns::copy_probe, lm_isa, lm::linear_forward, lm::linear_backward,     \
      lm::logprob_states, lm::merge_states, lm::lmhead_plan, lm::lmhead_fma_probe

const KernelTable& kernel_table(bool portable, bool avx512) {
  static const KernelTable kPortable{"portable", GK_CPU_TABLE(portable, portable, "portable")};
#if GK_CPU_HAVE_AVX2
  static const KernelTable kAvx2{"avx2", GK_CPU_TABLE(avx2, avx2, "avx2")};
  // The AVX2 kernels with the AVX-512 builds of the LM head and the logprobs forward.
  static const KernelTable kAvx2Avx512{"avx2", GK_CPU_TABLE(avx2, avx512, "avx512")};
  if (!portable && avx2_supported()) return avx512 && avx512_supported() ? kAvx2Avx512 : kAvx2;
#else
  (void)avx512;
#endif
  return kPortable;
}
#undef GK_CPU_TABLE

}  // namespace cpu
}  // namespace gk
