// The CUDA emulator's runtime: the block scheduler behind tools/cuda-emu/cuda_emu.h, and the CUDA runtime
// calls the addon (native/runtime/cuda_device.cc) and the launchers make, implemented on host memory.
// Test-only (docs/cuda.md, "Emulated CUDA"): "device" memory is malloc'd host memory, streams and events
// are synchronous, and a launch has finished when its launch call returns.
//
// Launch checks follow the hardware's limits (block ≤ 1024 threads, grid.y/z ≤ 65535, no empty grid,
// cluster dims dividing the grid's and ≤ 8 blocks a cluster: cudaErrorInvalidConfiguration), so a
// launcher that sizes a grid wrongly fails here as on a GPU.
//
// Scheduling. Every thread of a block is a fiber, switched only when it waits at __syncthreads, a
// warp shuffle, cluster_sync or an mbarrier whose phase has not completed (a 6-register stack switch
// on x86-64, announced to AddressSanitizer in the --asan build; ucontext elsewhere). A block whose
// threads wait on each other forever fails the launch with a message naming the barrier, rather than
// hanging. GK_EMU_ORDER=reverse resumes the threads
// of a block in reverse order: a kernel whose result depends on that order has a race.
//
// Clusters. A launch with cluster dims runs its clusters one after another; the blocks of a cluster run
// together: each has its own BlockRun (dynamic shared memory, block barrier, warps, mbarriers), their
// fibers (block r's are emu.fibers from r · threads on, hence at most 1024 threads a cluster) are
// resumed in one scheduler loop, block by block in rank order (GK_EMU_ORDER=reverse: the whole cluster
// last to first), and emu.block is the running fiber's block. A deadlock is one of the whole cluster.
// barrier.cluster (cluster_sync) waits for every thread of the cluster: an exited thread never arrives.
// Stricter than the PTX ISA, whose `exit` releases a barrier.cluster that only exiting threads hold up:
// a kernel here keeps every thread of a cluster to its cluster_syncs.
// A block may exit before the others of its cluster; reaching its shared memory afterwards (a remote
// arrival, a multicast) fails the launch, as its shared memory is gone on the hardware.
#include <sys/mman.h>
#include <ucontext.h>

#include <chrono>
#include <cstdio>
#include <deque>
#include <cstdlib>
#include <cstring>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "cuda_emu.h"

#if defined(__SANITIZE_ADDRESS__)
#include <sanitizer/asan_interface.h>
#include <sanitizer/common_interface_defs.h>
#define GK_EMU_ASAN 1
#else
#define GK_EMU_ASAN 0
#endif

#if defined(__x86_64__)
#define GK_EMU_ASM_SWITCH 1
// gk_emu_switch(save, load): pushes the callee-saved registers, stores the stack pointer in *save,
// loads `load` and pops the registers saved there (System V x86-64: rbx, rbp, r12–r15).
extern "C" void gk_emu_switch(void** save, void* load);
asm(R"(
  .text
  .globl gk_emu_switch
  .hidden gk_emu_switch
  .type gk_emu_switch, @function
gk_emu_switch:
  pushq %rbp
  pushq %rbx
  pushq %r12
  pushq %r13
  pushq %r14
  pushq %r15
  movq %rsp, (%rdi)
  movq %rsi, %rsp
  popq %r15
  popq %r14
  popq %r13
  popq %r12
  popq %rbx
  popq %rbp
  ret
  .size gk_emu_switch, .-gk_emu_switch
)");
#else
#define GK_EMU_ASM_SWITCH 0
#endif

namespace gkemu {
namespace {

constexpr size_t kStackBytes = 256 * 1024;
constexpr int kMaxThreads = 1024;

enum class Wait { None, Block, Warp, Mbar, Cluster };

// One TMA load (cp.async.bulk.tensor.2d, tma_load_2d): the tensor map's fields as encoded, the box's
// coordinates and its shared-memory destination (window address). Performed when a thread waits on
// its mbarrier (mbar_wait), which then completes its bytes; queued on the mbarrier of the block it
// lands in (each destination's, for a multicast), whose shared memory it writes.
struct TmaCopy {
  const unsigned char* base;
  uint64_t dim0, dim1, stride;  // elements, rows, bytes between rows
  uint32_t box0, box1, esize, swizzle_bits;  // swizzle_bits: 0 none, 1 32B, 2 64B, 3 128B
  int32_t c0, c1;
  uint32_t dst;
  unsigned issuer, issuer_rank;  // the issuing thread, and its block's rank in the cluster
};
// One mbarrier (tensor_core.cuh, "mbarrier and TMA"), keyed by its window address. Its 8 bytes in
// shared memory hold an image of this state (mbar_image) and are checked at every operation.
struct Mbarrier {
  uint32_t expected = 0, pending = 0;
  int64_t tx = 0;                // tx-count: bytes expected (expect_tx) less bytes completed (TMA)
  uint64_t phase = 0;            // phases completed so far: the current phase's parity is phase & 1
  bool observed = true;          // a wait returned true for the last completed phase (or none completed)
  bool fenced = false;           // its initialising thread ran fence.mbarrier_init since
  unsigned initialiser = 0;
  uint64_t init_gen = 0;         // the block barrier's generation at init
  uint64_t init_cluster_gen = 0;   // the cluster barrier's generation at init
  uint64_t fence_cluster_gen = 0;  // ... and at the fence (a cluster_sync since publishes it to the cluster)
  std::vector<TmaCopy> inflight; // issued, not yet performed
};

// One cp.async (cuda_emu.h): performed when its thread waits for its group.
struct CpCopy {
  void* dst;
  const void* src;
  int cp_bytes, src_bytes;
};

// One wgmma (cuda_emu.h), executed when its thread waits for its group.
struct WgmmaOp {
  float* d;
  int n, scale_d, type, trans_a, trans_b;
  uint64_t desc_a, desc_b;
  std::vector<uint32_t> operands;  // the thread's A rows and B columns as they were at issue
  std::vector<float> d_issue;      // d at issue; empty when an earlier pending op writes the same d
  bool chained = false;            // an earlier pending op writes exactly this d (checked against it)
};

struct Fiber {
#if GK_EMU_ASM_SWITCH
  void* sp = nullptr;
#else
  ucontext_t uc;
#endif
  ThreadCtx tc;
  bool done = false;
  Wait wait = Wait::None;
  uint64_t seen_gen = 0;  // generation of the barrier (block, warp or cluster) it waits on, when it started
  uint32_t mbar_at = 0, mbar_parity = 0;  // Wait::Mbar: the mbarrier and the parity it waits for
  std::vector<CpCopy> cp_open;             // cp.async issued since the last commit
  std::deque<std::vector<CpCopy>> cp_groups;  // committed, not yet waited for (oldest first)
  std::vector<WgmmaOp> wg_open;                // wgmma issued since the last commit
  std::deque<std::vector<WgmmaOp>> wg_groups;  // committed, not yet executed (oldest first)
  uint64_t wg_issued = 0, wg_commits = 0, wg_fences = 0;  // this thread's wgmma, commits, fences so far
  // Per accumulator array (d, n): what the last executed wgmma on it left there, and wg_fences then.
  struct WgmmaRegs {
    float* d;
    int n;
    std::vector<float> value;
    uint64_t fences;
  };
  std::vector<WgmmaRegs> wg_regs;
};

// The wgmma of a warpgroup that some of its 128 threads have issued and others not yet: the same
// instruction (shape, type, descriptors, scale_d, group) from every thread, in the same order.
struct WgmmaSig {
  int n, type, trans_a, trans_b, scale_d;
  uint64_t desc_a, desc_b, group;
  bool operator==(const WgmmaSig& o) const {
    return n == o.n && type == o.type && trans_a == o.trans_a && trans_b == o.trans_b && scale_d == o.scale_d &&
           desc_a == o.desc_a && desc_b == o.desc_b && group == o.group;
  }
};
struct WgmmaLog {
  std::deque<std::pair<WgmmaSig, int>> pending;  // (the instruction, how many threads issued it)
  uint64_t first = 0;                            // the warpgroup's index of pending.front()
};

struct WarpState {
  uint64_t slot[2][32];
  unsigned char big[2][32 * 32];  // warp_exchange's deposits (up to 32 bytes per lane, packed at `bytes`)
  int bytes = 0;                  // the pending warp_exchange's bytes per lane
  unsigned mask = 0;     // lanes taking part in the pending exchange
  unsigned arrived = 0;  // lanes of it that arrived
  uint64_t gen = 0;
};

struct ClusterRun;

struct BlockRun {
  Body body = nullptr;
  void* arg = nullptr;
  int nthreads = 0;
  int live = 0;
  Fiber* fibers = nullptr;  // its threads': emu.fibers from rank · nthreads on
  ClusterRun* cluster = nullptr;
  unsigned rank = 0;        // in its cluster
  dim3 bid;
  std::string error;        // non-empty: the launch failed
#if GK_EMU_ASM_SWITCH
  void* sched_sp = nullptr;
#else
  ucontext_t sched;
#endif
  Fiber* running = nullptr;
  unsigned char* dyn_smem = nullptr;  // its dynamic shared memory, refilled for each block it runs
  size_t dyn_bytes = 0;
  int bar_arrived = 0;
  uint64_t bar_gen = 0;
  WarpState warps[kMaxThreads / 32];
  WgmmaLog wgmma_log[kMaxThreads / 128];
  std::map<uint32_t, Mbarrier> mbars;  // the block's initialised mbarriers, by window address
};

// The blocks of the running cluster (one for a launch without clusters) and barrier.cluster's state.
struct ClusterRun {
  BlockRun* ctas = nullptr;  // by rank
  int size = 1;
  int arrived = 0;   // threads waiting at cluster_sync
  uint64_t gen = 0;  // cluster_sync completions so far
};

// The stacks of the fibers (reserved once, touched lazily) and what runs now. Launches take turns
// (launch_mu), so kernels' __shared__ statics and g_ctx are never used by two launches at once.
struct Emu {
  char* stacks = nullptr;
  std::vector<Fiber> fibers = std::vector<Fiber>(kMaxThreads);
  BlockRun* block = nullptr;  // the running fiber's block
  const void* sched_bottom = nullptr;  // the scheduler's stack, for AddressSanitizer's fiber calls
  size_t sched_size = 0;
  ~Emu() {
    if (stacks) munmap(stacks, kStackBytes * kMaxThreads);
  }
};
Emu emu;
std::mutex launch_mu;

// Fiber → scheduler.
void to_scheduler(BlockRun& b, Fiber& f, bool finished = false) {
#if GK_EMU_ASM_SWITCH
#if GK_EMU_ASAN
  void* fake = nullptr;
  __sanitizer_start_switch_fiber(finished ? nullptr : &fake, emu.sched_bottom, emu.sched_size);
#endif
  gk_emu_switch(&f.sp, b.sched_sp);
#if GK_EMU_ASAN
  __sanitizer_finish_switch_fiber(fake, &emu.sched_bottom, &emu.sched_size);
#endif
  (void)finished;
#else
  (void)finished;
  swapcontext(&f.uc, &b.sched);
#endif
}

[[noreturn]] void fail(const std::string& msg) {
  BlockRun& b = *emu.block;
  if (b.error.empty()) b.error = msg;
  to_scheduler(b, *b.running);  // never resumed: the launch is abandoned
  std::abort();
}

void yield_waiting(Wait w, uint64_t gen) {
  BlockRun& b = *emu.block;
  Fiber& f = *b.running;
  f.wait = w;
  f.seen_gen = gen;
  to_scheduler(b, f);
  f.wait = Wait::None;
}

void release_block_barrier_if_complete(BlockRun& b) {
  if (b.bar_arrived > 0 && b.bar_arrived == b.live) {
    b.bar_arrived = 0;
    ++b.bar_gen;
  }
}

// The running thread is done (its body returned, or it called thread_exit): the checks below.
void finish_thread() {
  BlockRun& b = *emu.block;
  Fiber& f = *b.running;
  f.done = true;
  --b.live;
  // Exited threads no longer hold back a block barrier (as on the hardware), but a lane in the mask
  // of a pending shuffle that exits can never arrive.
  release_block_barrier_if_complete(b);
  const unsigned lane = f.tc.linear & 31u;
  WarpState& w = b.warps[f.tc.linear >> 5];
  if (w.arrived != 0 && (w.mask >> lane & 1u) && !(w.arrived >> lane & 1u) && b.error.empty())
    b.error = "lane " + std::to_string(lane) + " of warp " + std::to_string(f.tc.linear >> 5) +
              " exited while named in the mask of a pending shuffle";
  // The hardware requires wgmma.wait_group before the accumulators' registers go away.
  size_t wg_pending = f.wg_open.size();
  for (const auto& g : f.wg_groups) wg_pending += g.size();
  if (wg_pending > 0 && b.error.empty())
    b.error = "thread " + std::to_string(f.tc.linear) + " exited with " + std::to_string(wg_pending) +
              " wgmma not waited for (" + std::to_string(f.wg_open.size()) +
              " never committed): wgmma_commit and wgmma_wait<0> must retire them first";
}

void fiber_entry() {
  BlockRun& b = *emu.block;
  b.body(b.arg);
  finish_thread();
}

#if GK_EMU_ASM_SWITCH
[[noreturn]] void fiber_trampoline() {
#if GK_EMU_ASAN
  __sanitizer_finish_switch_fiber(nullptr, &emu.sched_bottom, &emu.sched_size);
#endif
  fiber_entry();
  BlockRun& b = *emu.block;
  to_scheduler(b, *b.running, true);  // done: never resumed
  std::abort();
}
#endif

ThreadCtx make_ctx(unsigned linear, dim3 block, dim3 bid, dim3 grid, unsigned char* dyn_smem, unsigned rank,
                   unsigned cluster_size) {
  ThreadCtx c;
  c.dyn_smem = dyn_smem;
  c.cluster_rank = rank;
  c.cluster_size = cluster_size;
  c.tid = uint3{linear % block.x, (linear / block.x) % block.y, linear / (block.x * block.y)};
  c.bid = uint3{bid.x, bid.y, bid.z};
  c.bdim = block;
  c.gdim = grid;
  c.linear = linear;
  return c;
}

// ------------------------------------------------------------------------------ mbarrier state
// What an mbarrier's 8 bytes hold here: pending arrivals (bits 0-19), tx-count (20-40, two's
// complement), expected arrivals (41-60), bit 62 set, the current phase's parity (63). Every operation
// compares them with the state, so a store or a TMA box over a live mbarrier fails the launch.
uint64_t mbar_image(const Mbarrier& m) {
  return uint64_t(m.pending & 0xFFFFFu) | (uint64_t(m.tx) & 0x1FFFFFu) << 20 | uint64_t(m.expected & 0xFFFFFu) << 41 |
         uint64_t(1) << 62 | uint64_t(m.phase & 1u) << 63;
}
void mbar_store(BlockRun& b, uint32_t at, const Mbarrier& m) {
  const uint64_t v = mbar_image(m);
  std::memcpy(b.dyn_smem + at, &v, 8);
}
bool mbar_intact(const BlockRun& b, uint32_t at, const Mbarrier& m) {
  uint64_t now;
  std::memcpy(&now, b.dyn_smem + at, 8);
  return now == mbar_image(m);
}
// PTX ISA, "Contents of the mbarrier object": the tx-count stays within ±(2^20 − 1).
constexpr int64_t kTxLimit = (int64_t(1) << 20) - 1;
// The current phase completes when no arrival and no transaction byte is pending: the next begins with
// the expected arrivals pending again (and nobody has yet seen the completion).
void mbar_settle(Mbarrier& m) {
  if (m.pending == 0 && m.tx == 0) {
    ++m.phase;
    m.pending = m.expected;
    m.observed = false;
  }
}
// A TMA box into shared memory: row r of the box at dst + r · (box0 · esize), elements outside the
// tensor (negative coordinates included) zero, then the swizzle: address bits [4, 4 + B) XOR bits
// [7, 7 + B) (B = 1, 2, 3 for 32, 64, 128 bytes: PTX ISA "Swizzling Modes"), dst being aligned to the
// pattern's repeat (256, 512, 1024 bytes), so window addresses give the hardware's pattern.
void tma_perform(BlockRun& b, const TmaCopy& c) {
  const uint32_t row_bytes = c.box0 * c.esize, mask = (1u << c.swizzle_bits) - 1u;
  for (uint32_t r = 0; r < c.box1; ++r) {
    const int64_t gr = int64_t(c.c1) + r;
    for (uint32_t e = 0; e < c.box0; ++e) {
      const int64_t gc = int64_t(c.c0) + e;
      uint32_t a = c.dst + r * row_bytes + e * c.esize;
      a ^= (a >> 7 & mask) << 4;
      unsigned char* d = b.dyn_smem + a;
      if (gr >= 0 && uint64_t(gr) < c.dim1 && gc >= 0 && uint64_t(gc) < c.dim0)
        std::memcpy(d, c.base + uint64_t(gr) * c.stride + uint64_t(gc) * c.esize, c.esize);
      else
        std::memset(d, 0, c.esize);
    }
  }
}
// Performs the TMA copies queued on the mbarrier at `at` and completes their bytes (complete_tx).
// Returns "" or why the launch fails. Runs on a thread's wait, or when the scheduler polls a waiter.
std::string mbar_land(BlockRun& b, uint32_t at, Mbarrier& m) {
  if (!mbar_intact(b, at, m))
    return "the 8 bytes of the mbarrier at window address " + std::to_string(at) +
           " were overwritten (a store or a TMA box over a live mbarrier)";
  if (m.inflight.empty()) return "";
  std::vector<TmaCopy> copies;
  copies.swap(m.inflight);
  for (const TmaCopy& c : copies) {
    tma_perform(b, c);
    m.tx -= int64_t(c.box0) * c.box1 * c.esize;
    if (m.tx < -kTxLimit)
      return "the tx-count of the mbarrier at window address " + std::to_string(at) + " fell below -(2^20 - 1)";
    mbar_settle(m);
  }
  mbar_store(b, at, m);
  return "";
}

bool ready(BlockRun& b, const Fiber& f) {
  switch (f.wait) {
    case Wait::None:
      return true;
    case Wait::Block:
      return b.bar_gen != f.seen_gen;
    case Wait::Warp:
      return b.warps[f.tc.linear >> 5].gen != f.seen_gen;
    case Wait::Cluster:
      return b.cluster->gen != f.seen_gen;
    case Wait::Mbar: {
      // Polling a waiter lands the copies on its mbarrier (they would have landed by now on a GPU).
      Mbarrier& m = b.mbars[f.mbar_at];
      const std::string e = mbar_land(b, f.mbar_at, m);
      if (!e.empty()) {
        if (b.error.empty()) b.error = e;
        return false;
      }
      return (m.phase & 1u) != f.mbar_parity;
    }
  }
  return true;
}

// After a block's threads exited: false (with b.error) when a TMA copy was still in flight. The
// hardware requires every bulk copy into shared memory complete before the block (its shared memory)
// goes away; a thread that issued copies may exit first (a producer warp), as long as others wait.
bool tma_complete(BlockRun& b) {
  for (const auto& [at, m] : b.mbars) {
    if (m.inflight.empty()) continue;
    const TmaCopy& c = m.inflight.front();
    b.error = "the block exited with " + std::to_string(m.inflight.size()) +
              " TMA copies in flight on the mbarrier at window address " + std::to_string(at) + " (issued by thread " +
              std::to_string(c.issuer) +
              (b.cluster->size > 1 ? " of the cluster's block of rank " + std::to_string(c.issuer_rank) : "") +
              "): no thread waited for the phase that completes them";
    return false;
  }
  return true;
}

// After a block's threads exited: false (with b.error) when some thread of a warpgroup issued a
// wgmma that others never did.
bool wgmma_complete(BlockRun& b) {
  for (int w = 0; w < kMaxThreads / 128; ++w) {
    const WgmmaLog& l = b.wgmma_log[w];
    if (l.pending.empty()) continue;
    b.error = "only " + std::to_string(l.pending.front().second) + " of the 128 threads of warpgroup " +
              std::to_string(w) + " issued its wgmma #" + std::to_string(l.first) +
              " (wgmma is warpgroup-collective: .sync.aligned)";
    return false;
  }
  return true;
}

// GK_EMU_ORDER=reverse, or set_reverse_order (the emulator's self-test).
int order_override = -1;
bool reverse_order() {
  static const bool from_env = [] {
    const char* e = std::getenv("GK_EMU_ORDER");
    return e && std::strcmp(e, "reverse") == 0;
  }();
  return order_override < 0 ? from_env : order_override == 1;
}

// Runs one cluster's blocks (one block without clusters) as fibers, interleaved; returns the block whose
// error fails the launch, or null.
BlockRun* run_cluster_fibers(ClusterRun& c, dim3 block, dim3 grid) {
  if (!emu.stacks) {
    void* m = mmap(nullptr, kStackBytes * kMaxThreads, PROT_READ | PROT_WRITE,
                   MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (m == MAP_FAILED) {
      c.ctas[0].error = "cannot reserve fiber stacks";
      return &c.ctas[0];
    }
    emu.stacks = static_cast<char*>(m);
    // A guard page under each stack: a fiber that overflows faults instead of writing into the next.
    for (int i = 0; i < kMaxThreads; ++i) mprotect(emu.stacks + size_t(i) * kStackBytes, 4096, PROT_NONE);
  }
  c.arrived = 0;
  for (int r = 0; r < c.size; ++r) {
    BlockRun& b = c.ctas[r];
    b.error.clear();
    b.live = b.nthreads;
    b.bar_arrived = 0;
    // A new block finds its dynamic shared memory holding garbage (here NaN bytes), not the last block's.
    if (b.dyn_smem) std::memset(b.dyn_smem, 0xFF, b.dyn_bytes);
    for (int i = 0; i < b.nthreads / 32 + 1 && i < kMaxThreads / 32; ++i) b.warps[i] = WarpState{};
    for (WgmmaLog& l : b.wgmma_log) l = WgmmaLog{};
    b.mbars.clear();
    for (int i = 0; i < b.nthreads; ++i) {
      Fiber& f = b.fibers[i];
      f.done = false;
      f.wait = Wait::None;
      f.cp_open.clear();  // copies a thread of the last block never waited for are dropped with it
      f.cp_groups.clear();
      f.wg_open.clear();
      f.wg_groups.clear();
      f.wg_regs.clear();
      f.wg_issued = f.wg_commits = f.wg_fences = 0;
      f.tc = make_ctx(unsigned(i), block, b.bid, grid, b.dyn_smem, b.rank, unsigned(c.size));
      char* stack = emu.stacks + size_t(&f - emu.fibers.data()) * kStackBytes;
#if GK_EMU_ASAN
      // A fiber abandoned by a failed launch left its frames' redzones poisoned: a new one starts clean.
      __asan_unpoison_memory_region(stack + 4096, kStackBytes - 4096);
#endif
#if GK_EMU_ASM_SWITCH
      // What gk_emu_switch pops: six registers, then the trampoline as return address; above it a
      // null return address for the trampoline, so it starts with the stack aligned as after a call.
      void** sp = reinterpret_cast<void**>(stack + kStackBytes);
      *--sp = nullptr;
      *--sp = reinterpret_cast<void*>(&fiber_trampoline);
      for (int reg = 0; reg < 6; ++reg) *--sp = nullptr;
      f.sp = sp;
#else
      getcontext(&f.uc);
      f.uc.uc_stack.ss_sp = stack;
      f.uc.uc_stack.ss_size = kStackBytes;
      f.uc.uc_link = &b.sched;
      makecontext(&f.uc, fiber_entry, 0);
#endif
    }
  }
  const bool rev = reverse_order();
  const int n = c.ctas[0].nthreads;
  for (;;) {
    bool progress = false;
    for (int kc = 0; kc < c.size; ++kc) {
      BlockRun& b = c.ctas[rev ? c.size - 1 - kc : kc];
      emu.block = &b;
      for (int k = 0; k < n; ++k) {
        Fiber& f = b.fibers[rev ? n - 1 - k : k];
        if (f.done) continue;
        const bool go = ready(b, f);
        if (!b.error.empty()) return &b;
        if (!go) continue;
        b.running = &f;
        g_ctx = &f.tc;
#if GK_EMU_ASM_SWITCH
#if GK_EMU_ASAN
        void* fake = nullptr;
        __sanitizer_start_switch_fiber(&fake, emu.stacks + size_t(&f - emu.fibers.data()) * kStackBytes, kStackBytes);
#endif
        gk_emu_switch(&b.sched_sp, f.sp);
#if GK_EMU_ASAN
        __sanitizer_finish_switch_fiber(fake, nullptr, nullptr);
#endif
#else
        swapcontext(&b.sched, &f.uc);
#endif
        progress = true;
        if (!b.error.empty()) return &b;
      }
    }
    int live = 0;
    for (int r = 0; r < c.size; ++r) live += c.ctas[r].live;
    if (live == 0) {
      for (int r = 0; r < c.size; ++r)
        if (!wgmma_complete(c.ctas[r]) || !tma_complete(c.ctas[r])) return &c.ctas[r];
      return nullptr;
    }
    if (!progress) {
      // Named: the first block of the cluster with threads left (all of them waiting).
      int r0 = 0, exited = 0;
      while (c.ctas[r0].live == 0) ++r0;
      for (int r = 0; r < c.size; ++r) exited += c.ctas[r].nthreads - c.ctas[r].live;
      BlockRun& b = c.ctas[r0];
      int at_block = 0, at_warp = 0, at_mbar = 0, at_cluster = 0;
      std::string mbar;  // the first mbarrier waited on
      for (int i = 0; i < b.nthreads; ++i) {
        const Fiber& f = b.fibers[i];
        if (f.done) continue;
        if (f.wait == Wait::Block) ++at_block;
        if (f.wait == Wait::Warp) ++at_warp;
        if (f.wait == Wait::Cluster) ++at_cluster;
        if (f.wait == Wait::Mbar && at_mbar++ == 0) {
          const Mbarrier& m = b.mbars[f.mbar_at];
          mbar = " (thread " + std::to_string(i) + " waits for the phase of parity " + std::to_string(f.mbar_parity) +
                 " of the mbarrier at window address " + std::to_string(f.mbar_at) + ", whose current phase #" +
                 std::to_string(m.phase) + " has " + std::to_string(m.pending) + " of " + std::to_string(m.expected) +
                 " arrivals and a tx-count of " + std::to_string(m.tx) + " bytes pending" +
                 (m.tx < 0 ? ": TMA completed more bytes than expect_tx announced" : "") + ")";
        }
      }
      const bool cluster = c.size > 1 || at_cluster > 0;
      b.error = "deadlock: " + std::to_string(at_block) + " thread(s) wait at __syncthreads, " +
                std::to_string(at_warp) + " in a warp shuffle" +
                (cluster ? ", " + std::to_string(at_cluster) + " at cluster_sync (barrier.cluster waits for all " +
                               std::to_string(c.size * b.nthreads) + " threads of the cluster's " +
                               std::to_string(c.size) + " block(s); " + std::to_string(exited) +
                               " of them exited, and an exited thread never arrives)"
                         : "") +
                " and " + std::to_string(at_mbar) + " on an mbarrier" + mbar + ", " +
                std::to_string(b.nthreads - b.live) + " exited (a barrier not reached by every thread of its " +
                (cluster ? "block, warp or cluster" : "block or warp") +
                ", or an mbarrier phase that cannot complete)";
      return &b;
    }
  }
}

std::string dim_str(dim3 d) {
  return "(" + std::to_string(d.x) + ", " + std::to_string(d.y) + ", " + std::to_string(d.z) + ")";
}

thread_local cudaError_t tl_last = cudaSuccess;
thread_local std::string tl_last_message;

}  // namespace


void thread_exit() {
  BlockRun& b = *emu.block;
  finish_thread();
  to_scheduler(b, *b.running, true);  // done: never resumed
  std::abort();
}

void syncthreads() {
  BlockRun& b = *emu.block;
  const uint64_t gen = b.bar_gen;
  ++b.bar_arrived;
  release_block_barrier_if_complete(b);
  if (b.bar_gen == gen) yield_waiting(Wait::Block, gen);
}

unsigned cluster_cta_rank() { return g_ctx->cluster_rank; }

void cluster_sync() {
  BlockRun& b = *emu.block;
  ClusterRun& c = *b.cluster;
  const uint64_t gen = c.gen;
  if (++c.arrived == c.size * b.nthreads) {
    c.arrived = 0;
    ++c.gen;
  } else {
    yield_waiting(Wait::Cluster, gen);
  }
}

// A warp collective's mask, checked by its first lane to arrive: a lane it names that does not exist
// (past the block's end) or has exited can never arrive. One that exits later, while the collective
// is pending, is reported by finish_thread; later lanes must name the same mask (checked by each).
namespace {
void check_mask_lanes(const BlockRun& b, unsigned warp, unsigned mask, const char* what) {
  for (unsigned l = 0; l < 32; ++l) {
    if (!(mask >> l & 1u)) continue;
    const unsigned t = warp * 32 + l;
    if (t >= unsigned(b.nthreads) || b.fibers[t].done)
      fail(std::string(what) + " mask names lane " + std::to_string(l) + " of warp " + std::to_string(warp) +
           (t >= unsigned(b.nthreads) ? ", which does not exist" : ", which has exited"));
  }
}
}  // namespace

uint64_t shuffle(unsigned mask, uint64_t bits, int arg, int mode, int width) {
  BlockRun& b = *emu.block;
  const ThreadCtx& c = *g_ctx;
  const unsigned lane = c.linear & 31u;
  const unsigned warp = c.linear >> 5;
  if (width <= 0 || width > 32 || (width & (width - 1)) != 0) fail("shuffle width " + std::to_string(width) + " is not a power of 2 in [1, 32]");
  if (!(mask >> lane & 1u)) fail("lane " + std::to_string(lane) + " calls a shuffle whose mask excludes it");
  WarpState& w = b.warps[warp];
  if (w.arrived == 0) {
    check_mask_lanes(b, warp, mask, "shuffle");
    w.mask = mask;
  } else if (w.mask != mask) {
    fail("lanes of warp " + std::to_string(warp) + " disagree on a shuffle mask");
  }
  const uint64_t gen = w.gen;
  w.slot[gen & 1][lane] = bits;
  w.arrived |= 1u << lane;
  if (w.arrived == w.mask) {
    w.arrived = 0;
    ++w.gen;
  } else {
    yield_waiting(Wait::Warp, gen);
  }
  // The source lane, within this lane's segment of `width` lanes.
  const unsigned seg = lane & ~unsigned(width - 1);
  const unsigned in_seg = lane - seg;
  unsigned src = lane;
  switch (mode) {
    case 0:
      src = seg + ((in_seg ^ unsigned(arg)) & unsigned(width - 1));
      if ((in_seg ^ unsigned(arg)) >= unsigned(width)) src = lane;
      break;
    case 1:
      src = in_seg + unsigned(arg) < unsigned(width) ? lane + unsigned(arg) : lane;
      break;
    case 2:
      src = in_seg >= unsigned(arg) ? lane - unsigned(arg) : lane;
      break;
    default:
      src = seg + (unsigned(arg) & unsigned(width - 1));
  }
  // Reading a lane outside the mask is undefined on the hardware.
  if (!(mask >> src & 1u)) fail("lane " + std::to_string(lane) + " reads lane " + std::to_string(src) + ", outside the shuffle mask");
  return w.slot[gen & 1][src];
}

void warp_exchange(unsigned mask, const void* mine, int bytes, void* all) {
  BlockRun& b = *emu.block;
  const ThreadCtx& c = *g_ctx;
  const unsigned lane = c.linear & 31u;
  const unsigned warp = c.linear >> 5;
  if (bytes <= 0 || bytes > 32) fail("warp exchange of " + std::to_string(bytes) + " bytes (1 to 32)");
  if (!(mask >> lane & 1u)) fail("lane " + std::to_string(lane) + " joins a warp collective whose mask excludes it");
  WarpState& w = b.warps[warp];
  if (w.arrived == 0) {
    check_mask_lanes(b, warp, mask, "warp collective");
    w.mask = mask;
    w.bytes = bytes;
  } else if (w.mask != mask) {
    fail("lanes of warp " + std::to_string(warp) + " disagree on a warp collective's mask");
  } else if (w.bytes != bytes) {
    fail("lanes of warp " + std::to_string(warp) + " disagree on a warp collective's size (" + std::to_string(w.bytes) +
         " and " + std::to_string(bytes) + " bytes)");
  }
  const uint64_t gen = w.gen;
  unsigned char* deposits = w.big[gen & 1];  // lane l's bytes at l · bytes, as `all` wants them
  std::memcpy(deposits + size_t(lane) * size_t(bytes), mine, size_t(bytes));
  w.arrived |= 1u << lane;
  if (w.arrived == w.mask) {
    w.arrived = 0;
    ++w.gen;
  } else {
    yield_waiting(Wait::Warp, gen);
  }
  // Read right after waking (no switch in between), before any lane can start the exchange after next.
  if (mask == 0xffffffffu) {
    std::memcpy(all, deposits, 32 * size_t(bytes));
  } else {
    for (unsigned l = 0; l < 32; ++l)
      if (mask >> l & 1u)
        std::memcpy(static_cast<unsigned char*>(all) + size_t(l) * size_t(bytes), deposits + size_t(l) * size_t(bytes),
                    size_t(bytes));
  }
}

unsigned char* dynamic_smem() {
  if (!g_ctx->dyn_smem) fail("the kernel uses dynamic shared memory but its launch asked for 0 bytes");
  return g_ctx->dyn_smem;
}

namespace {
bool cp_async_eager() {
  static const bool eager = [] {
    const char* e = std::getenv("GK_EMU_CP_ASYNC");
    return e && std::strcmp(e, "eager") == 0;
  }();
  return eager;
}
void perform(const CpCopy& c) {
  if (c.src_bytes > 0) std::memcpy(c.dst, c.src, size_t(c.src_bytes));
  if (c.src_bytes < c.cp_bytes) std::memset(static_cast<char*>(c.dst) + c.src_bytes, 0, size_t(c.cp_bytes - c.src_bytes));
}
}  // namespace

void cp_async(void* dst, const void* src, int cp_bytes, int src_bytes) {
  if (cp_bytes != 4 && cp_bytes != 8 && cp_bytes != 16) fail("cp.async of " + std::to_string(cp_bytes) + " bytes (4, 8 or 16)");
  if (src_bytes < 0 || src_bytes > cp_bytes)
    fail("cp.async src-size " + std::to_string(src_bytes) + " outside [0, " + std::to_string(cp_bytes) + "]");
  // The hardware faults on a misaligned address (cudaErrorMisalignedAddress); report it by name.
  if (reinterpret_cast<uintptr_t>(dst) % unsigned(cp_bytes) != 0 ||
      (src_bytes > 0 && reinterpret_cast<uintptr_t>(src) % unsigned(cp_bytes) != 0))
    fail("cp.async of " + std::to_string(cp_bytes) + " bytes from a misaligned address");
  const CpCopy c{dst, src, cp_bytes, src_bytes};
  if (cp_async_eager())
    perform(c);
  else
    emu.block->running->cp_open.push_back(c);
}
void cp_async_commit() {
  Fiber& f = *emu.block->running;
  f.cp_groups.push_back(std::move(f.cp_open));
  f.cp_open.clear();
}
void cp_async_wait(int newest_pending) {
  Fiber& f = *emu.block->running;
  while (f.cp_groups.size() > size_t(newest_pending < 0 ? 0 : newest_pending)) {
    for (const CpCopy& c : f.cp_groups.front()) perform(c);
    f.cp_groups.pop_front();
  }
}

// ------------------------------------------------------------------------------------------ wgmma
// Checked (2026-11-27) against the PTX ISA (9.0), section 9.7.15: 9.7.15.1 (a warpgroup is four
// contiguous warps, the first's rank a multiple of 4), 9.7.15.5.1.2 "Shared Memory Matrix Layout"
// (canonical layouts in CuTe notation, leading / stride dimension byte offsets, "Matrix Descriptor
// Format"), 9.7.15.5.2 wgmma.mma_async (.tf32 truncates each operand's low 13 bits; transposes only
// for .f16 / .bf16 from descriptors) and 9.7.15.7 (fence, commit_group, wait_group); CUTLASS
// cute/arch/mma_sm90_desc.hpp (the descriptor's bit fields; layout type 1 = 128B, 2 = 64B, 3 = 32B)
// and cute/atom/mma_traits_sm90_gmma.hpp (make_gmma_desc: the same canonical layouts and which stride
// goes to LBO or SBO; D's CLayout_64xN); DeepGEMM's sm90 GEMMs (K walked inside a 128B-swizzled row
// by adding k·32 bytes to the descriptor's start address, LBO 0, SBO 1024).
//
// Descriptor: start address bits 0-13, LBO 16-29, SBO 32-45 (each bytes >> 4), base offset 49-51,
// swizzle 62-63. Element (mn, k) of an operand (mn: a row of A or a column of B; E bytes an element,
// T = 16 / E elements in 16 bytes; W = 128, 64 or 32 bytes a swizzled row) lies this many bytes past
// the start address (PTX's canonical layouts, e.g. K-major none ((8,m),(T,2k)):((1T,SBO),(1,LBO)) in
// elements, K-major 128B ((8,m),(T,2k)):((8T,SBO),(1,T)), MN-major 128B ((T,8,m),(8,k)):((1,T,LBO),(8T,SBO))):
//   K-major,  none: (mn % 8)·16 + (mn / 8)·SBO + (k % T)·E + (k / T)·LBO  (8-row × 16-byte core matrices)
//   K-major,  W:    (mn % 8)·W + (mn / 8)·SBO + k·E                        (LBO unused)
//   MN-major, none: (mn % T)·E + (mn / T)·SBO + (k % 8)·16 + (k / 8)·LBO
//   MN-major, W:    (mn % (W/E))·E + (mn / (W/E))·LBO + (k % 8)·W + (k / 8)·SBO
// Then the swizzle (CuTe's Swizzle<B,4,3>, B = 3, 2, 1 for 128, 64, 32 bytes) XORs bits [4, 4+B) of
// the whole shared-window address, start included, with its bits [7, 7+B): with base offset 0 the
// pattern repeats from 2^(7+B)-byte boundaries of the window, which is what lets a start address
// advanced by 32 bytes inside a swizzled row read the next K slice. A non-zero base offset (atoms not so
// aligned) fails the launch. D: thread r = 32v + 4g + t of the warpgroup holds
// d[4j + i] = D[16v + g + 8(i >> 1)][8j + 2t + (i & 1)] (CLayout_64xN), so it reads A rows 16v + g and
// 16v + g + 8 and B columns 8j + 2t + {0, 1}: it gathers those at issue and again when it waits, and a
// difference fails the launch (shared memory written under a pending wgmma, or not yet written when it
// was issued), as does a write to d between issue and wait (undefined on the hardware). Not modelled:
// proxies. wgmma reads shared memory in the async proxy, so on the hardware fence.proxy.async must
// separate generic writes (st.shared, cp.async) from a wgmma reading them; here every write is seen.
uint32_t shared_address(const void* p) {
  const BlockRun& b = *emu.block;
  const uintptr_t a = reinterpret_cast<uintptr_t>(p), base = reinterpret_cast<uintptr_t>(b.dyn_smem);
  if (!b.dyn_smem || a < base || a > base + b.dyn_bytes)
    fail("shared_address of a pointer outside the block's dynamic shared memory: the emulator's shared window "
         "holds only dynamic shared memory (put wgmma operands there, not in a static __shared__ array)");
  return uint32_t(a - base);
}

namespace {
struct WgmmaDesc {
  uint32_t start, lbo, sbo, swizzle;
};
WgmmaDesc decode(uint64_t d) {
  return {uint32_t(d & 0x3FFF) << 4, uint32_t(d >> 16 & 0x3FFF) << 4, uint32_t(d >> 32 & 0x3FFF) << 4,
          uint32_t(d >> 62)};
}
// The window address of element (mn, k) (the table above), for elements of 1 << le bytes (e = 2 or 4):
// every division and remainder is by a power of 2, so shifts and masks.
inline uint32_t wgmma_address(const WgmmaDesc& d, bool mn_major, uint32_t le, uint32_t mn, uint32_t k) {
  const uint32_t lt = 4 - le;  // T = 16 / e = 1 << lt
  if (d.swizzle == 0)
    return mn_major ? d.start + ((mn & ((1u << lt) - 1)) << le) + (mn >> lt) * d.sbo + (k & 7u) * 16 + (k >> 3) * d.lbo
                    : d.start + (mn & 7u) * 16 + (mn >> 3) * d.sbo + ((k & ((1u << lt) - 1)) << le) + (k >> lt) * d.lbo;
  const uint32_t lw = 8 - d.swizzle, bits = 4 - d.swizzle;  // W = 256 >> swizzle = 1 << lw; W / e = 1 << (lw - le)
  const uint32_t a = mn_major ? d.start + ((mn & ((1u << (lw - le)) - 1)) << le) + (mn >> (lw - le)) * d.lbo +
                                    ((k & 7u) << lw) + (k >> 3) * d.sbo
                              : d.start + ((mn & 7u) << lw) + (mn >> 3) * d.sbo + (k << le);
  return a ^ (a >> 7 & ((1u << bits) - 1)) << 4;
}
int wgmma_k(const WgmmaOp& op) { return op.type == 2 ? 8 : 16; }
[[noreturn]] __attribute__((noinline, cold)) void wgmma_read_past(const char* which, uint32_t mn, uint32_t k, uint32_t a,
                                                                  size_t dyn_bytes) {
  fail(std::string("wgmma reads ") + which + " element (" + std::to_string(mn) + ", k " + std::to_string(k) +
       ") at shared address " + std::to_string(a) + ", past the block's " + std::to_string(dyn_bytes) +
       " bytes of dynamic shared memory");
}
// The raw bits of one E-byte element at p.
template <uint32_t E>
uint32_t element_bits(const unsigned char* p) {
  if constexpr (E == 2) {
    uint16_t h;
    std::memcpy(&h, p, 2);
    return h;
  } else {
    uint32_t w;
    std::memcpy(&w, p, 4);
    return w;
  }
}
// Elements (mn, 0 … kk) of an operand of 1 << LE-byte elements, as raw bits, into out. K-major, each
// 16 bytes of a row (T = 16 / e elements from a k that is a multiple of T) lie together in one 16-byte
// chunk in every layout of the table (a swizzle moves whole chunks), so they are read as one.
template <uint32_t LE>
void wgmma_read_row(const BlockRun& b, const WgmmaDesc& d, bool mn_major, uint32_t mn, uint32_t kk, const char* which,
                    uint32_t* out) {
  constexpr uint32_t e = 1u << LE, t = 16 / e;
  if (!mn_major && kk % t == 0) {
    bool inside = true;
    for (uint32_t k = 0; k < kk && inside; k += t) {
      const uint32_t a = wgmma_address(d, false, LE, mn, k);
      inside = size_t(a) + 16 <= b.dyn_bytes;  // (else the element loop below names the first element past it)
      for (uint32_t i = 0; i < t && inside; ++i) out[k + i] = element_bits<e>(b.dyn_smem + a + e * i);
    }
    if (inside) return;
  }
  for (uint32_t k = 0; k < kk; ++k) {
    const uint32_t a = wgmma_address(d, mn_major, LE, mn, k);
    if (size_t(a) + e > b.dyn_bytes) wgmma_read_past(which, mn, k, a, b.dyn_bytes);
    out[k] = element_bits<e>(b.dyn_smem + a);
  }
}
// MN-major, elements (mn, k) and (mn + 1, k) for an even mn lie side by side in every layout of the
// table (mn + 1 starts no new T- or W-wide run, and a swizzle moves whole 16-byte chunks): rows mn and
// mn + 1, 0 … kk, read a pair at a time into out0 and out1. False (nothing to trust in them) when a
// pair reaches past the window: the element loop then names the first element past it.
template <uint32_t LE>
bool wgmma_read_mn_pair(const BlockRun& b, const WgmmaDesc& d, uint32_t mn, uint32_t kk, uint32_t* out0,
                        uint32_t* out1) {
  constexpr uint32_t e = 1u << LE;
  for (uint32_t k = 0; k < kk; ++k) {
    const uint32_t a = wgmma_address(d, true, LE, mn, k);
    if (size_t(a) + 2 * e > b.dyn_bytes) return false;
    out0[k] = element_bits<e>(b.dyn_smem + a);
    out1[k] = element_bits<e>(b.dyn_smem + a + e);
  }
  return true;
}
// What the running thread reads of op's operands, as raw bits: its two A rows, then its n/4 B
// columns (8j + 2t, 8j + 2t + 1, ...), k fastest.
template <uint32_t LE>
void wgmma_gather_as(const WgmmaOp& op, std::vector<uint32_t>& out) {
  const BlockRun& b = *emu.block;
  const uint32_t r = g_ctx->linear & 127u, v = r >> 5, g = r >> 2 & 7u, t = r & 3u;
  const uint32_t kk = uint32_t(wgmma_k(op));
  const WgmmaDesc da = decode(op.desc_a), db = decode(op.desc_b);
  out.resize(size_t(2 + op.n / 4) * kk);
  uint32_t* o = out.data();
  for (uint32_t h = 0; h < 2; ++h, o += kk) wgmma_read_row<LE>(b, da, op.trans_a != 0, 16 * v + g + 8 * h, kk, "A row", o);
  for (uint32_t c = 0; c < uint32_t(op.n) / 4; c += 2, o += 2 * kk) {
    const uint32_t mn = 8 * (c >> 1) + 2 * t;  // (and mn + 1: column c + 1)
    if (op.trans_b != 0 && wgmma_read_mn_pair<LE>(b, db, mn, kk, o, o + kk)) continue;
    wgmma_read_row<LE>(b, db, op.trans_b != 0, mn, kk, "B column", o);
    wgmma_read_row<LE>(b, db, op.trans_b != 0, mn + 1, kk, "B column", o + kk);
  }
}
void wgmma_gather(const WgmmaOp& op, std::vector<uint32_t>& out) {
  if (op.type == 2)
    wgmma_gather_as<2>(op, out);  // tf32: 4 bytes
  else
    wgmma_gather_as<1>(op, out);  // bf16, f16: 2 bytes
}
// Executes op for the running thread (when it waits for op's group).
void wgmma_execute(Fiber& f, const WgmmaOp& op) {
  const uint32_t kk = uint32_t(wgmma_k(op));
  // Scratch kept across calls (launches take turns, so one set serves): no allocation per wgmma.
  static std::vector<uint32_t> now;
  static std::vector<double> xs;
  wgmma_gather(op, now);
  if (now != op.operands) {
    size_t i = 0;
    while (now[i] == op.operands[i]) ++i;
    const uint32_t r = f.tc.linear & 127u, q = uint32_t(i / kk) - 2;
    const std::string where = i < 2 * kk ? "A row " + std::to_string(16 * (r >> 5) + (r >> 2 & 7u) + 8 * uint32_t(i / kk))
                                         : "B column " + std::to_string(8 * (q >> 1) + 2 * (r & 3u) + (q & 1));
    fail("wgmma operands changed between issue and wait: shared memory was written before wgmma_wait, or was not "
         "ready when wgmma was issued (thread " + std::to_string(f.tc.linear) + ", " + where + ", k " +
         std::to_string(i % kk) + ")");
  }
  const size_t nd = size_t(op.n / 2);
  Fiber::WgmmaRegs* regs = nullptr;
  for (auto& w : f.wg_regs)
    if (w.d == op.d && w.n == op.n) regs = &w;
  const std::vector<float>* expect = op.d_issue.empty() ? nullptr : &op.d_issue;
  if (op.chained && regs) expect = &regs->value;
  if (expect && std::memcmp(op.d, expect->data(), nd * sizeof(float)) != 0)
    fail("the accumulators of a pending wgmma were written before wgmma_wait (thread " + std::to_string(f.tc.linear) +
         "): they belong to the wgmma until a wait retires its group");
  xs.resize(now.size());
  double* const x = xs.data();
  const uint32_t* const raw = now.data();
  const size_t nx = now.size();
  if (op.type == 2)
    for (size_t i = 0; i < nx; ++i) x[i] = static_cast<double>(tf32_operand(__uint_as_float(raw[i])));
  else
    for (size_t i = 0; i < nx; ++i) x[i] = static_cast<double>(half_bits_value(raw[i], op.type == 0));
  for (size_t j = 0; j < nd / 4; ++j)
    for (size_t i = 0; i < 4; ++i) {
      const double* a = &x[(i >> 1) * kk];
      const double* bcol = &x[(2 + 2 * j + (i & 1)) * kk];
      double s = op.scale_d ? static_cast<double>(op.d[4 * j + i]) : 0.0;
      for (uint32_t k = 0; k < kk; ++k) s += a[k] * bcol[k];
      op.d[4 * j + i] = nvcuda::wmma::round_toward_zero(s);
    }
  if (!regs) {
    f.wg_regs.push_back({op.d, op.n, {}, 0});
    regs = &f.wg_regs.back();
  }
  regs->value.assign(op.d, op.d + nd);
  regs->fences = f.wg_fences;
}
}  // namespace

void wgmma(float* d, int n, uint64_t desc_a, uint64_t desc_b, int scale_d, int type, int trans_a, int trans_b) {
  BlockRun& b = *emu.block;
  Fiber& f = *b.running;
  const unsigned w = f.tc.linear / 128;
  if (unsigned(b.nthreads) < 128 * (w + 1))
    fail("wgmma in warpgroup " + std::to_string(w) + " of a block of " + std::to_string(b.nthreads) +
         " threads: a warpgroup is 128 threads (four whole warps)");
  if (n < 8 || n > 256 || n % 8 != 0) fail("wgmma n = " + std::to_string(n) + " (a multiple of 8 in [8, 256])");
  if (type < 0 || type > 2 || (trans_a & ~1) || (trans_b & ~1)) fail("wgmma with an unknown type or transpose");
  if (type == 2 && (trans_a || trans_b)) fail("tf32 wgmma takes K-major A and B only (transposes are for bf16 / f16)");
  for (const uint64_t desc : {desc_a, desc_b})
    if (desc >> 49 & 7u)
      fail("wgmma descriptor with base offset " + std::to_string(desc >> 49 & 7u) +
           ": the emulator takes 0 only (swizzle atoms aligned to their repeat in the shared window)");
  if (!b.dyn_smem) fail("wgmma in a launch without dynamic shared memory (its operands live there)");
  // wgmma.fence: before the first wgmma, and between the thread's own access to registers and a
  // wgmma on them. What shows here: no fence yet, or d changed since a wgmma's result landed in it
  // with no fence since.
  if (f.wg_fences == 0) fail("wgmma before any wgmma_fence (wgmma.fence must precede the warpgroup's first wgmma)");
  for (const auto& w : f.wg_regs)
    if (w.d == d && w.n == n && w.fences == f.wg_fences && std::memcmp(d, w.value.data(), size_t(n / 2) * sizeof(float)) != 0)
      fail("accumulators written since the last wgmma on them completed, with no wgmma_fence before this wgmma on them "
           "(thread " + std::to_string(f.tc.linear) + ")");
  // The warpgroup issues one instruction: every thread the same one, in the same order.
  const WgmmaSig sig{n, type, trans_a, trans_b, scale_d != 0, desc_a, desc_b, f.wg_commits};
  WgmmaLog& log = b.wgmma_log[w];
  const uint64_t index = f.wg_issued++;
  const size_t at = size_t(index - log.first);
  if (at == log.pending.size()) {
    log.pending.push_back({sig, 1});
  } else if (!(log.pending[at].first == sig)) {
    fail("threads of warpgroup " + std::to_string(w) + " disagree on their wgmma #" + std::to_string(index) +
         " (shape, type, descriptors, scale_d or commit group): wgmma is warpgroup-collective (.sync.aligned)");
  } else {
    ++log.pending[at].second;
  }
  while (!log.pending.empty() && log.pending.front().second == 128) {
    log.pending.pop_front();
    ++log.first;
  }
  WgmmaOp op{d, n, scale_d != 0, type, trans_a, trans_b, desc_a, desc_b, {}, {}, false};
  wgmma_gather(op, op.operands);
  // d's registers: checked at the wait against d now, or against what the last pending op writing
  // exactly this d leaves (ops on overlapping but different ranges: not checked).
  const WgmmaOp* last = nullptr;
  auto overlaps = [&](const WgmmaOp& o) { return o.d < d + n / 2 && d < o.d + o.n / 2; };
  for (const auto& g : f.wg_groups)
    for (const auto& o : g)
      if (overlaps(o)) last = &o;
  for (const auto& o : f.wg_open)
    if (overlaps(o)) last = &o;
  if (!last)
    op.d_issue.assign(d, d + n / 2);
  else
    op.chained = last->d == d && last->n == n;
  f.wg_open.push_back(std::move(op));
}
void wgmma_commit() {
  Fiber& f = *emu.block->running;
  f.wg_groups.push_back(std::move(f.wg_open));
  f.wg_open.clear();
  ++f.wg_commits;
}
void wgmma_wait(int newest_pending) {
  Fiber& f = *emu.block->running;
  while (f.wg_groups.size() > size_t(newest_pending < 0 ? 0 : newest_pending)) {
    for (const WgmmaOp& op : f.wg_groups.front()) wgmma_execute(f, op);
    f.wg_groups.pop_front();
  }
}
void wgmma_fence() { ++emu.block->running->wg_fences; }

// ------------------------------------------------------------------------------ mbarrier and TMA
// Checked (2026-11-28) against the PTX ISA (9.0): "Parallel Synchronization and Communication
// Instructions: mbarrier" (contents of the object: expected and pending arrival counts, tx-count in
// ±(2^20 − 1), signed, so a complete_tx may precede its expect_tx; phase completion when pending
// arrivals and tx-count are both zero, the pending count then reset to the expected count;
// arrive.expect_tx = expect-tx then arrive-on; try_wait.parity(p) is true for the immediately
// preceding phase and false for the current incomplete one, i.e. true iff the current phase's parity
// differs from p; init of a valid mbarrier is undefined; "primary phase": at least one wait must
// return true for each phase before an arrive-on in the next), "Tensors" (bounding box, out-of-bound
// zero fill), "Swizzling Modes" (16-byte chunks permuted within 2^(7+B)-byte repeats from 256 / 512 /
// 1024-byte boundaries), and cuda.h's cuTensorMapEncodeTiled (its parameter rules).
//
// Model. The state lives in an emulator table by window address (its image in the 8 bytes, checked at
// every use). A wait lands the TMA copies queued on its mbarrier, then returns if the phase of its
// parity completed or yields to the block's other threads (polled by the scheduler, which lands new
// copies too); a wait that can never complete ends in the scheduler's deadlock report. A TMA copy is
// queued on its mbarrier at issue and performed (global memory read, box written to shared memory,
// bytes completed) when a thread waits on that mbarrier: a consumer reading a stage without waiting
// reads what was there (0xFF bytes in a new block). A block that exits with a copy in flight fails
// (its thread may exit first). Stricter than the ISA, and failing the launch: an mbarrier outside
// dynamic shared memory; one used by a thread other than its initialiser before a __syncthreads
// followed the init; a TMA completing on an mbarrier whose initialiser ran no mbar_fence_init since;
// TMA boxes narrower than their swizzle span (their layout is not verified here). fence.mbarrier_init
// is otherwise bookkeeping: the emulator has one proxy.
//
// Clusters (PTX ISA, "Cluster of Cooperative Thread Arrays", barrier.cluster, mapa, the .shared::cluster
// forms of mbarrier.arrive and cp.async.bulk.tensor with .multicast::cluster). mbar_arrive_cluster and
// tma_load_2d_multicast act on the mbarrier at the caller's window address in the blocks they name:
// one arrival, or the box written into each destination block's shared memory and queued on its
// mbarrier (landing when a thread of that block waits there). Failing the launch: a rank beyond the
// cluster; a target block that has exited (its shared memory is gone); a target mbarrier whose init was
// not fenced (mbar_fence_init), or, in another block than the caller's, not published by a cluster_sync
// completed since that fence. A cluster_sync after the init also makes it visible within its block, as a
// __syncthreads does. Not modelled: memory ordering between blocks (every write is seen at once here).
namespace {
uint32_t mbar_address(const void* bar, const char* op) {
  const BlockRun& b = *emu.block;
  const uintptr_t a = reinterpret_cast<uintptr_t>(bar), base = reinterpret_cast<uintptr_t>(b.dyn_smem);
  if (!b.dyn_smem || a < base || a + 8 > base + b.dyn_bytes)
    fail(std::string(op) + ": the mbarrier is not in the block's dynamic shared memory (the emulator's shared "
         "window holds only that: put mbarriers there)");
  if (a % 8 != 0) fail(std::string(op) + ": mbarrier at window address " + std::to_string(a - base) + " is not 8-byte aligned");
  return uint32_t(a - base);
}
// "the mbarrier at window address N", naming t's rank when t is another block of the cluster (messages).
std::string mbar_name(const BlockRun& t, uint32_t at) {
  return "the mbarrier at window address " + std::to_string(at) +
         (&t == emu.block ? "" : " of the cluster's block of rank " + std::to_string(t.rank));
}
// The initialised mbarrier at window address `at` of block t, its bytes intact.
Mbarrier& mbar_find(BlockRun& t, uint32_t at, const char* op) {
  auto it = t.mbars.find(at);
  if (it == t.mbars.end())
    fail(std::string(op) + ": " + mbar_name(t, at) + " was never initialised" +
         (&t == emu.block ? " in this block" : "") + " (mbar_init)");
  Mbarrier& m = it->second;
  if (!mbar_intact(t, at, m))
    fail(std::string(op) + ": the 8 bytes of " + mbar_name(t, at) +
         " were overwritten (a store or a TMA box over a live mbarrier)");
  return m;
}
// The initialised mbarrier at window address `at` of the calling thread's block, visible to it.
Mbarrier& mbar_local(uint32_t at, const char* op) {
  BlockRun& b = *emu.block;
  Mbarrier& m = mbar_find(b, at, op);
  if (g_ctx->linear != m.initialiser && b.bar_gen == m.init_gen && b.cluster->gen == m.init_cluster_gen)
    fail(std::string(op) + ": thread " + std::to_string(g_ctx->linear) + " uses the mbarrier at window address " +
         std::to_string(at) + ", initialised by thread " + std::to_string(m.initialiser) +
         ", before a __syncthreads (or cluster_sync) made the init visible");
  return m;
}
// The initialised mbarrier at bar, its bytes intact, visible to the calling thread.
Mbarrier& mbar_get(const void* bar, const char* op, uint32_t* at_out) {
  const uint32_t at = mbar_address(bar, op);
  *at_out = at;
  return mbar_local(at, op);
}
// Block `cta` of the calling thread's cluster, the target of a shared::cluster operation: it exists,
// and its shared memory too.
BlockRun& cluster_block(uint32_t cta, const char* op) {
  const ClusterRun& c = *emu.block->cluster;
  if (cta >= uint32_t(c.size))
    fail(std::string(op) + ": block rank " + std::to_string(cta) + " is beyond the cluster's " +
         std::to_string(c.size) + " block(s)");
  BlockRun& t = c.ctas[cta];
  if (t.live == 0)
    fail(std::string(op) + ": the cluster's block of rank " + std::to_string(cta) +
         " has exited (all its threads): its shared memory is gone (a block must not exit while the others of its "
         "cluster may still arrive on its mbarriers or multicast into it)");
  return t;
}
// The mbarrier at window address `at` of block t (the caller's or another of its cluster) as the target of
// the async proxy or of another block: fenced by its initialiser and, in another block, published by a
// cluster_sync since.
Mbarrier& mbar_cluster_get(BlockRun& t, uint32_t at, const char* op) {
  const BlockRun& b = *emu.block;
  Mbarrier& m = &t == &b ? mbar_local(at, op) : mbar_find(t, at, op);
  if (!m.fenced)
    fail(std::string(op) + ": " + mbar_name(t, at) + " was initialised by thread " + std::to_string(m.initialiser) +
         " with no mbar_fence_init since (fence.mbarrier_init makes the init visible to the TMA unit and the cluster)");
  if (&t != &b && b.cluster->gen == m.fence_cluster_gen)
    fail(std::string(op) + ": " + mbar_name(t, at) + ", initialised and fenced by its thread " +
         std::to_string(m.initialiser) + ", is used before a cluster_sync made the init visible to the cluster");
  return m;
}
// One arrival (with `bytes` of expect_tx) on t's mbarrier m at window address `at`.
void mbar_arrive_on(BlockRun& t, uint32_t at, Mbarrier& m, uint32_t bytes, const char* op) {
  if (!m.observed)
    fail(std::string(op) + ": arrive-on in phase #" + std::to_string(m.phase) + " of " + mbar_name(t, at) +
         " before any wait returned true for phase #" + std::to_string(m.phase - 1) +
         " (PTX ISA, mbarrier primary phase: each phase's completion is observed before the next is arrived on)");
  if (m.pending == 0)
    fail(std::string(op) + ": an arrival beyond the " + std::to_string(m.expected) + " expected by " +
         mbar_name(t, at) + " in its phase #" + std::to_string(m.phase) + " (which waits only for " +
         std::to_string(m.tx) + " bytes of transactions)");
  m.tx += bytes;
  if (m.tx > kTxLimit) fail(std::string(op) + ": the tx-count of " + mbar_name(t, at) + " exceeds 2^20 - 1 bytes");
  --m.pending;
  mbar_settle(m);
  mbar_store(t, at, m);
}
}  // namespace

void mbar_init(uint64_t* bar, uint32_t count) {
  BlockRun& b = *emu.block;
  const uint32_t at = mbar_address(bar, "mbar_init");
  if (count == 0 || count > 0xFFFFFu)
    fail("mbar_init: count " + std::to_string(count) + " outside [1, 2^20 - 1]");
  if (b.mbars.count(at))
    fail("mbar_init: the mbarrier at window address " + std::to_string(at) +
         " is initialised twice in this block (mbarrier.init of a valid mbarrier is undefined)");
  Mbarrier& m = b.mbars[at];
  m.expected = m.pending = count;
  m.initialiser = g_ctx->linear;
  m.init_gen = b.bar_gen;
  m.init_cluster_gen = b.cluster->gen;
  mbar_store(b, at, m);
}
void mbar_fence_init() {
  BlockRun& b = *emu.block;
  for (auto& [at, m] : b.mbars)
    if (m.initialiser == g_ctx->linear && !m.fenced) {
      m.fenced = true;
      m.fence_cluster_gen = b.cluster->gen;
    }
}
void mbar_arrive_expect_tx(uint64_t* bar, uint32_t bytes) {
  if (bytes > uint32_t(kTxLimit)) fail("mbar_arrive_expect_tx: " + std::to_string(bytes) + " bytes exceed 2^20 - 1");
  uint32_t at = 0;
  Mbarrier& m = mbar_get(bar, "mbar_arrive_expect_tx", &at);
  mbar_arrive_on(*emu.block, at, m, bytes, "mbar_arrive_expect_tx");
}
void mbar_arrive(uint64_t* bar) {
  uint32_t at = 0;
  Mbarrier& m = mbar_get(bar, "mbar_arrive", &at);
  mbar_arrive_on(*emu.block, at, m, 0, "mbar_arrive");
}
void mbar_arrive_cluster(uint64_t* bar, uint32_t cta) {
  const char* op = "mbar_arrive_cluster";
  const uint32_t at = mbar_address(bar, op);
  BlockRun& t = cluster_block(cta, op);
  mbar_arrive_on(t, at, mbar_cluster_get(t, at, op), 0, op);
}
void mbar_wait(uint64_t* bar, uint32_t parity) {
  BlockRun& b = *emu.block;
  Fiber& f = *b.running;
  uint32_t at = 0;
  mbar_get(bar, "mbar_wait", &at);
  for (;;) {
    Mbarrier& m = b.mbars[at];
    const std::string e = mbar_land(b, at, m);
    if (!e.empty()) fail("mbar_wait: " + e);
    if ((m.phase & 1u) != (parity & 1u)) {
      m.observed = true;
      return;
    }
    f.mbar_at = at;
    f.mbar_parity = parity & 1u;
    yield_waiting(Wait::Mbar, 0);
  }
}

namespace {
// The emulator's CUtensorMap (128 bytes): a marker, then the fields tma_load_2d needs.
constexpr uint64_t kTensorMapMagic = 0x70616d726f736e74ull;  // "tnsormap"
struct TensorMapFields {
  uint64_t magic;
  const unsigned char* base;
  uint64_t dim0, dim1, stride;
  uint32_t box0, box1, esize, swizzle_bits;
};
static_assert(sizeof(TensorMapFields) <= sizeof(CUtensorMap), "fits a CUtensorMap");

CUresult refuse(const char* why) {
  std::fprintf(stderr, "grpo-kernels CUDA emulator: cuTensorMapEncodeTiled: %s\n", why);
  return CUDA_ERROR_INVALID_VALUE;
}
// cuTensorMapEncodeTiled as cuda.h documents its parameters, for the rank-2 tiled maps tma_load_2d
// reads (every element size; interleave NONE; swizzle NONE, 32B, 64B, 128B; zero OOB fill).
CUresult CUDAAPI encode_tensor_map_tiled(CUtensorMap* map, CUtensorMapDataType type, cuuint32_t rank, void* base,
                                         const cuuint64_t* dims, const cuuint64_t* strides, const cuuint32_t* box,
                                         const cuuint32_t* element_strides, CUtensorMapInterleave interleave,
                                         CUtensorMapSwizzle swizzle, CUtensorMapL2promotion l2,
                                         CUtensorMapFloatOOBfill oob) {
  uint32_t esize = 0;
  switch (type) {
    case CU_TENSOR_MAP_DATA_TYPE_UINT8: esize = 1; break;
    case CU_TENSOR_MAP_DATA_TYPE_UINT16: case CU_TENSOR_MAP_DATA_TYPE_FLOAT16: case CU_TENSOR_MAP_DATA_TYPE_BFLOAT16:
      esize = 2; break;
    case CU_TENSOR_MAP_DATA_TYPE_UINT32: case CU_TENSOR_MAP_DATA_TYPE_INT32: case CU_TENSOR_MAP_DATA_TYPE_FLOAT32:
    case CU_TENSOR_MAP_DATA_TYPE_FLOAT32_FTZ: case CU_TENSOR_MAP_DATA_TYPE_TFLOAT32:
    case CU_TENSOR_MAP_DATA_TYPE_TFLOAT32_FTZ:
      esize = 4; break;
    case CU_TENSOR_MAP_DATA_TYPE_UINT64: case CU_TENSOR_MAP_DATA_TYPE_INT64: case CU_TENSOR_MAP_DATA_TYPE_FLOAT64:
      esize = 8; break;
    default:
      return refuse("packed sub-byte data types are not modelled");
  }
  if (!map || !dims || !strides || !box || !element_strides) return refuse("a null pointer");
  if (reinterpret_cast<uintptr_t>(map) % 64 != 0) return refuse("the CUtensorMap is not 64-byte aligned");
  if (rank != 2) return refuse("rank other than 2 is not modelled (tma_load_2d)");
  if (!base || reinterpret_cast<uintptr_t>(base) % 16 != 0) return refuse("globalAddress is not 16-byte aligned");
  for (int i = 0; i < 2; ++i)
    if (dims[i] == 0 || dims[i] > (uint64_t(1) << 32)) return refuse("globalDim outside [1, 2^32]");
  if (strides[0] % 16 != 0 || strides[0] >= (uint64_t(1) << 40))
    return refuse("globalStrides[0] is not a multiple of 16 below 2^40");
  for (int i = 0; i < 2; ++i)
    if (box[i] == 0 || box[i] > 256) return refuse("boxDim outside [1, 256]");
  if (box[0] * esize % 16 != 0) return refuse("boxDim[0] * element size is not a multiple of 16 bytes");
  for (int i = 0; i < 2; ++i)
    if (element_strides[i] == 0 || element_strides[i] > 8) return refuse("elementStrides outside [1, 8]");
  if (element_strides[1] != 1) return refuse("elementStrides other than 1 are not modelled");
  if (interleave != CU_TENSOR_MAP_INTERLEAVE_NONE) return refuse("interleave needs rank >= 3");
  uint32_t swizzle_bits = 0;
  switch (swizzle) {
    case CU_TENSOR_MAP_SWIZZLE_NONE: swizzle_bits = 0; break;
    case CU_TENSOR_MAP_SWIZZLE_32B: swizzle_bits = 1; break;
    case CU_TENSOR_MAP_SWIZZLE_64B: swizzle_bits = 2; break;
    case CU_TENSOR_MAP_SWIZZLE_128B: swizzle_bits = 3; break;
    default: return refuse("the 128B swizzles with 32B / 64B atomicity are not modelled");
  }
  if (swizzle_bits && box[0] * esize > (16u << swizzle_bits))
    return refuse("the box's inner dimension exceeds the swizzle span (32, 64 or 128 bytes)");
  if (unsigned(l2) > unsigned(CU_TENSOR_MAP_L2_PROMOTION_L2_256B)) return refuse("unknown L2 promotion");
  if (oob == CU_TENSOR_MAP_FLOAT_OOB_FILL_NAN_REQUEST_ZERO_FMA) return refuse("the OOB-NaN fill is not modelled");
  if (oob != CU_TENSOR_MAP_FLOAT_OOB_FILL_NONE) return refuse("unknown OOB fill");
  TensorMapFields t{kTensorMapMagic, static_cast<const unsigned char*>(base), dims[0], dims[1], strides[0],
                    box[0], box[1], esize, swizzle_bits};
  std::memset(map, 0, sizeof *map);
  std::memcpy(map, &t, sizeof t);
  return CUDA_SUCCESS;
}
}  // namespace

void* tensor_map_encoder() { return reinterpret_cast<void*>(&encode_tensor_map_tiled); }

namespace {
// A TMA box into dst (tma_load_2d's checks of the map and of dst, the same in every block of a cluster:
// their dynamic shared memory has one size), issued by the calling thread.
TmaCopy tma_box(void* dst, const CUtensorMap* map, int32_t c0, int32_t c1, const char* op) {
  const BlockRun& b = *emu.block;
  TensorMapFields t;
  std::memcpy(&t, map, sizeof t);
  if (t.magic != kTensorMapMagic)
    fail(std::string(op) + ": the CUtensorMap was not encoded by cuTensorMapEncodeTiled (encode_tensor_map_2d)");
  const uintptr_t d = reinterpret_cast<uintptr_t>(dst), base = reinterpret_cast<uintptr_t>(b.dyn_smem);
  if (d < base || d >= base + b.dyn_bytes)
    fail(std::string(op) + ": dst is not in the block's dynamic shared memory (the emulator's shared window)");
  const uint32_t off = uint32_t(d - base);
  if (t.swizzle_bits && t.box0 * t.esize != (16u << t.swizzle_bits))
    fail(std::string(op) + ": a box of " + std::to_string(t.box0 * t.esize) + "-byte rows with a " +
         std::to_string(16u << t.swizzle_bits) + "-byte swizzle: narrower rows than the swizzle span are not modelled");
  // 128 bytes (cp.async.bulk.tensor's shared-memory alignment); a swizzled box from a boundary of its
  // pattern's repeat (a non-zero swizzle base offset is not modelled, as for wgmma).
  const uint32_t align = 128u << t.swizzle_bits;
  if (off % align != 0)
    fail(std::string(op) + ": dst at window address " + std::to_string(off) + " is not " + std::to_string(align) +
         "-byte aligned" + (t.swizzle_bits ? " (the swizzle pattern's repeat)" : ""));
  const uint64_t bytes = uint64_t(t.box0) * t.box1 * t.esize;
  if (off + bytes > b.dyn_bytes)
    fail(std::string(op) + ": a box of " + std::to_string(bytes) + " bytes at window address " + std::to_string(off) +
         " runs past the block's " + std::to_string(b.dyn_bytes) + " bytes of dynamic shared memory");
  return TmaCopy{t.base, t.dim0, t.dim1, t.stride, t.box0, t.box1, t.esize, t.swizzle_bits, c0, c1, off,
                 g_ctx->linear, b.rank};
}
// Queues copy c on block t's mbarrier m, once the box is seen to cover none of t's mbarriers.
void tma_queue(BlockRun& t, Mbarrier& m, const TmaCopy& c, const char* op) {
  const uint64_t bytes = uint64_t(c.box0) * c.box1 * c.esize;
  for (const auto& [other, unused] : t.mbars)
    if (other + 8 > c.dst && other < c.dst + bytes)
      fail(std::string(op) + ": the box at window address " + std::to_string(c.dst) + " (" + std::to_string(bytes) +
           " bytes) covers " + mbar_name(t, other));
  m.inflight.push_back(c);
}
}  // namespace

void tma_load_2d(void* dst, const CUtensorMap* map, int32_t c0, int32_t c1, uint64_t* bar) {
  BlockRun& b = *emu.block;
  const uint32_t at = mbar_address(bar, "tma_load_2d");
  Mbarrier& m = mbar_cluster_get(b, at, "tma_load_2d");
  tma_queue(b, m, tma_box(dst, map, c0, c1, "tma_load_2d"), "tma_load_2d");
}

void tma_load_2d_multicast(void* dst, const CUtensorMap* map, int32_t c0, int32_t c1, uint64_t* bar,
                           uint16_t cta_mask) {
  const char* op = "tma_load_2d_multicast";
  const int size = emu.block->cluster->size;
  if (cta_mask == 0) fail(std::string(op) + ": cta_mask names no block");
  if (cta_mask >> size)
    fail(std::string(op) + ": cta_mask " + std::to_string(cta_mask) + " names block rank " +
         std::to_string(31 - __builtin_clz(unsigned(cta_mask))) + ", beyond the cluster's " + std::to_string(size) +
         " block(s)");
  const uint32_t at = mbar_address(bar, op);
  Mbarrier* dest[16] = {};
  for (int r = 0; r < size; ++r)
    if (cta_mask >> r & 1u) dest[r] = &mbar_cluster_get(cluster_block(uint32_t(r), op), at, op);
  const TmaCopy c = tma_box(dst, map, c0, c1, op);
  for (int r = 0; r < size; ++r)
    if (dest[r]) tma_queue(emu.block->cluster->ctas[r], *dest[r], c, op);
}

void set_reverse_order(bool reverse) { order_override = reverse ? 1 : 0; }

void syncwarp(unsigned mask) { (void)shuffle(mask, 0, 0, 0, 32); }

cudaError_t fault(const char* call, const char* detail = nullptr);  // fault injection, below

namespace {
// cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, n): a launch asking for
// more than 48 KiB of dynamic shared memory fails unless its kernel was raised this far (as there).
std::mutex attr_mu;
std::map<const void*, int> max_dynamic_smem;
}  // namespace

// The opt-in shared memory per block the emulated device reports: an H100's 227 KiB, or
// GK_EMU_SMEM_OPTIN bytes (tests of what a GPU with less, e.g. 99 KiB on sm_89, runs or is told).
int smem_optin() {
  const char* e = std::getenv("GK_EMU_SMEM_OPTIN");
  return e && *e ? std::atoi(e) : 227 * 1024;
}

namespace {
// GK_EMU_LAUNCH_LOG=<file>: each launch that passed its checks appends its name (as written at the
// launch site, template arguments included) and a newline to <file>. scripts/gpu/dry/ncu reads it to
// tell which launches a GPU run's `ncu -k regex:… -c N` would profile and which its count leaves out.
void log_launch(const char* name) {
  static const char* const path = std::getenv("GK_EMU_LAUNCH_LOG");
  if (!path || !*path) return;
  if (FILE* f = std::fopen(path, "a")) {
    std::fprintf(f, "%s\n", name);
    std::fclose(f);
  }
}
}  // namespace

void set_max_dynamic_smem(const void* fn, int bytes) {
  std::lock_guard<std::mutex> lock(attr_mu);
  max_dynamic_smem[fn] = bytes;
}

cudaError_t run_grid(dim3 grid, dim3 block, size_t smem, cudaStream_t, Body body, void* arg, const char* name,
                     const void* fn, dim3 cluster) {
  const uint64_t threads = uint64_t(block.x) * block.y * block.z;
  const uint64_t cluster_size = uint64_t(cluster.x) * cluster.y * cluster.z;
  std::string bad;
  if (grid.x == 0 || grid.y == 0 || grid.z == 0 || block.x == 0 || block.y == 0 || block.z == 0)
    bad = "empty grid " + dim_str(grid) + " or block " + dim_str(block);
  else if (threads > kMaxThreads || block.z > 64)
    bad = "block " + dim_str(block) + " exceeds 1024 threads (or z > 64)";
  else if (grid.x > 2147483647u || grid.y > 65535u || grid.z > 65535u)
    bad = "grid " + dim_str(grid) + " exceeds (2^31 - 1, 65535, 65535)";
  else if (cluster.x == 0 || cluster.y == 0 || cluster.z == 0)
    bad = "empty cluster " + dim_str(cluster);
  else if (grid.x % cluster.x != 0 || grid.y % cluster.y != 0 || grid.z % cluster.z != 0)
    bad = "grid " + dim_str(grid) + " is not a whole number of clusters " + dim_str(cluster);
  else if (cluster_size > 8)
    bad = "cluster " + dim_str(cluster) + " exceeds 8 blocks (the portable cluster size)";
  else if (cluster_size * threads > kMaxThreads)
    bad = "cluster " + dim_str(cluster) + " of blocks of " + std::to_string(threads) +
          " threads exceeds 1024 threads: the emulator runs a cluster's blocks together on its 1024 fibers";
  else if (smem > 227 * 1024)
    bad = "dynamic shared memory of " + std::to_string(smem) + " bytes exceeds 227 KiB";
  bool smem_denied = false;
  if (bad.empty() && smem > 48 * 1024) {
    std::lock_guard<std::mutex> lock(attr_mu);
    auto it = max_dynamic_smem.find(fn);
    if (it == max_dynamic_smem.end() || size_t(it->second) < smem) {
      smem_denied = true;
      bad = "dynamic shared memory of " + std::to_string(smem) +
            " bytes exceeds 48 KiB and cudaFuncSetAttribute(MaxDynamicSharedMemorySize) allows " +
            std::to_string(it == max_dynamic_smem.end() ? 48 * 1024 : it->second);
    }
  }
  if (const cudaError_t e = fault("launch", name); e != cudaSuccess) {
    tl_last = e;
    tl_last_message = std::string(name) + ": injected by GK_EMU_FAULT";
    return e;
  }
  if (!bad.empty()) {
    tl_last = smem_denied ? cudaErrorInvalidValue : cudaErrorInvalidConfiguration;
    tl_last_message = std::string(name) + ": " + bad;
    // cudaGetErrorString says only "invalid argument" for this one, as CUDA does: say why here.
    if (smem_denied) std::fprintf(stderr, "grpo-kernels CUDA emulator: %s\n", tl_last_message.c_str());
    return tl_last;
  }
  std::lock_guard<std::mutex> lock(launch_mu);
  log_launch(name);
  // The blocks of a cluster, reused by every cluster of the launch (one block without clusters).
  std::unique_ptr<BlockRun[]> ctas(new BlockRun[cluster_size]);
  ClusterRun c;
  c.ctas = ctas.get();
  c.size = int(cluster_size);
  auto free_smem = [&] {
    for (int r = 0; r < c.size; ++r) std::free(ctas[r].dyn_smem);
  };
  for (int r = 0; r < c.size; ++r) {
    BlockRun& b = ctas[r];
    b.body = body;
    b.arg = arg;
    b.nthreads = int(threads);
    b.fibers = emu.fibers.data() + size_t(r) * threads;
    b.cluster = &c;
    b.rank = unsigned(r);
    if (smem > 0) {
      // Exactly smem bytes (AddressSanitizer then reports one byte past the end), 1024-byte aligned
      // (as the shared window's 128-byte swizzle atoms are).
      void* m = nullptr;
      if (posix_memalign(&m, 1024, smem) != 0) {
        free_smem();
        tl_last = cudaErrorMemoryAllocation;
        tl_last_message = std::string(name) + ": cannot allocate dynamic shared memory";
        return tl_last;
      }
      b.dyn_smem = static_cast<unsigned char*>(m);
      b.dyn_bytes = smem;
    }
  }
  // Clusters in grid order; the block of rank r at the cluster's corner + (r % cx, r / cx % cy, r / (cx cy)).
  std::string error;
  for (unsigned z = 0; z < grid.z && error.empty(); z += cluster.z)
    for (unsigned y = 0; y < grid.y && error.empty(); y += cluster.y)
      for (unsigned x = 0; x < grid.x && error.empty(); x += cluster.x) {
        for (unsigned r = 0; r < unsigned(c.size); ++r)
          ctas[r].bid = dim3(x + r % cluster.x, y + r / cluster.x % cluster.y, z + r / (cluster.x * cluster.y));
        if (const BlockRun* failed = run_cluster_fibers(c, block, grid))
          error = "block " + dim_str(failed->bid) + ": " + failed->error;
      }
  emu.block = nullptr;
  g_ctx = nullptr;
  free_smem();
  if (!error.empty()) {
    tl_last = cudaErrorLaunchFailure;
    tl_last_message = std::string(name) + ": " + error;
    std::fprintf(stderr, "grpo-kernels CUDA emulator: %s\n", tl_last_message.c_str());
    return tl_last;
  }
  return cudaSuccess;
}

// ------------------------------------------------------------------------------ fault injection
// For test/cuda/faults.test.ts and faults-sweep.test.ts. GK_EMU_FAULT="<call>[@<text>][~<k>]:<error>"
// makes a call named <call> fail with <error> (a cudaError name). <call> is a runtime function that
// takes a GK_EMU_FAULT_POINT below (cudaMallocAsync, cudaMemcpyAsync, cudaEventRecord, ...) or "launch"
// for a kernel launch; "@<text>" counts only the launches whose kernel name contains <text> (the tests'
// proof of which kernel a path runs); "~<k>" fails the k-th such call (k ≥ 1) counted from the moment
// the emulator first sees the value, instead of the next one (a sweep of every call an op makes). Each
// value of the variable fires once; a new value (or the same one after the variable was unset, or after
// another value was seen) is armed afresh, and a suffix "#<anything>" makes a new value, to fire the
// same fault again. An error that corrupts a real CUDA context (cudaErrorIllegalAddress,
// cudaErrorLaunchFailure) is then returned by every later call, as there; GK_EMU_FAULT=reset clears
// that (the emulator's escape hatch; a real process cannot).
//
// GK_EMU_CALL_LOG=<file>: every call GK_EMU_FAULT can name appends a line to <file> as it begins:
// "<call> <bytes>" (<bytes>: the emulated device memory live at that moment, cudaMalloc and
// cudaMallocAsync less what was freed), "launch <bytes> <kernel name>" for a launch. A test counts an
// op's calls by name from it (the k it may pass to "~<k>"), and reads the live bytes of the call that
// follows its frees (a synchronize's cudaStreamSynchronize) to see that nothing leaked. Read at every
// call, so a test may set and unset it as it goes.
namespace {
std::mutex fault_mu;
std::string fault_armed;  // the value being counted against (empty: none)
int64_t fault_count = 0;  // matching calls since it was armed
bool fault_fired = false;
cudaError_t sticky = cudaSuccess;

cudaError_t error_named(const std::string& n) {
  static const std::pair<const char*, cudaError_t> table[] = {
      {"cudaErrorMemoryAllocation", cudaErrorMemoryAllocation},
      {"cudaErrorIllegalAddress", cudaErrorIllegalAddress},
      {"cudaErrorLaunchFailure", cudaErrorLaunchFailure},
      {"cudaErrorNoDevice", cudaErrorNoDevice},
      {"cudaErrorInsufficientDriver", cudaErrorInsufficientDriver},
      {"cudaErrorInvalidValue", cudaErrorInvalidValue},
      {"cudaErrorLaunchTimeout", cudaErrorLaunchTimeout},
  };
  for (const auto& [name, e] : table)
    if (n == name) return e;
  std::fprintf(stderr, "grpo-kernels CUDA emulator: GK_EMU_FAULT names an unknown error %s\n", n.c_str());
  return cudaErrorUnknown;
}

// A parsed GK_EMU_FAULT value (other than "reset").
struct FaultSpec {
  std::string call, text, error;
  int64_t k = 1;
  bool ok = false;
};
FaultSpec parse_fault(const std::string& v) {
  FaultSpec f;
  const size_t colon = v.find(':');
  if (colon == std::string::npos) return f;
  std::string head = v.substr(0, colon);
  f.error = v.substr(colon + 1);
  f.error = f.error.substr(0, f.error.find('#'));
  const size_t tilde = head.rfind('~');
  if (tilde != std::string::npos) {
    const std::string k = head.substr(tilde + 1);
    char* end = nullptr;
    f.k = std::strtoll(k.c_str(), &end, 10);
    if (k.empty() || *end != '\0' || f.k < 1) {
      std::fprintf(stderr, "grpo-kernels CUDA emulator: GK_EMU_FAULT=%s: ~<k> needs an integer k >= 1\n", v.c_str());
      return f;
    }
    head.resize(tilde);
  }
  const size_t at = head.find('@');
  if (at != std::string::npos) {
    f.text = head.substr(at + 1);
    head.resize(at);
  }
  f.call = head;
  f.ok = !f.call.empty();
  return f;
}

FaultSpec fault_spec;  // fault_armed, parsed

size_t live_device_bytes();  // runtime calls, below

void log_call(const char* call, const char* detail) {
  const char* path = std::getenv("GK_EMU_CALL_LOG");
  if (!path || !*path) return;
  if (FILE* f = std::fopen(path, "a")) {
    std::fprintf(f, "%s %zu%s%s\n", call, live_device_bytes(), detail ? " " : "", detail ? detail : "");
    std::fclose(f);
  }
}
}  // namespace

cudaError_t fault(const char* call, const char* detail) {
  std::lock_guard<std::mutex> lock(fault_mu);
  log_call(call, detail);
  const char* env = std::getenv("GK_EMU_FAULT");
  const std::string v = env ? env : "";
  if (v != fault_armed) {  // a new value (or unset): armed afresh
    fault_armed = v;
    fault_count = 0;
    fault_fired = false;
    fault_spec = v.empty() || v == "reset" ? FaultSpec{} : parse_fault(v);
  }
  if (v.empty() || fault_fired) return sticky;
  if (v == "reset") {
    sticky = cudaSuccess;
    fault_fired = true;
    return sticky;
  }
  const FaultSpec& f = fault_spec;
  if (!f.ok || f.call != call) return sticky;
  if (!f.text.empty() && !(detail && std::strstr(detail, f.text.c_str()))) return sticky;
  if (++fault_count < f.k) return sticky;
  fault_fired = true;
  const cudaError_t e = error_named(f.error);
  if (e == cudaErrorIllegalAddress || e == cudaErrorLaunchFailure) sticky = e;
  return e;
}

// ------------------------------------------------------------------------------- runtime calls
namespace {
std::mutex mem_mu;
std::map<void*, size_t> mem_live;
size_t mem_used = 0;
constexpr size_t kEmuMemory = size_t(16) << 30;  // what the emulated device reports and allows

cudaError_t emu_alloc(void** p, size_t n) {
  if (!p) return cudaErrorInvalidValue;
  *p = nullptr;
  const size_t rounded = (n + 255) & ~size_t(255);
  std::lock_guard<std::mutex> lock(mem_mu);
  if (rounded > kEmuMemory - mem_used) return cudaErrorMemoryAllocation;
  // 256-byte aligned like cudaMalloc, but exactly n bytes long: under AddressSanitizer (build-emu
  // --asan) a kernel reading or writing past what was asked for is reported, as compute-sanitizer's
  // memcheck would.
  void* m = nullptr;
  if (posix_memalign(&m, 256, n == 0 ? 1 : n) != 0) return cudaErrorMemoryAllocation;
  // Fresh device memory holds garbage on a GPU; here NaN bytes (up to 64 MiB: the multi-GB cases are
  // written in full by their kernels anyway), so a kernel that reads what nothing wrote shows it.
  if (n <= (size_t(64) << 20)) std::memset(m, 0xFF, n);
  mem_live[m] = rounded;
  mem_used += rounded;
  *p = m;
  return cudaSuccess;
}
cudaError_t emu_free(void* p) {
  if (!p) return cudaSuccess;
  std::lock_guard<std::mutex> lock(mem_mu);
  auto it = mem_live.find(p);
  if (it == mem_live.end()) return cudaErrorInvalidValue;
  mem_used -= it->second;
  mem_live.erase(it);
  std::free(p);
  return cudaSuccess;
}
size_t live_device_bytes() {
  std::lock_guard<std::mutex> lock(mem_mu);
  return mem_used;
}
double now_ms() {
  return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now().time_since_epoch()).count();
}
}  // namespace
}  // namespace gkemu

struct CUstream_st {
  int flags;
};
struct CUevent_st {
  double ms;
};
struct CUmemPoolHandle_st {
  int unused;
};

// A runtime call that GK_EMU_FAULT can fail (and that a sticky error fails).
#define GK_EMU_FAULT_POINT(name)                                         \
  do {                                                                   \
    if (const cudaError_t gk_e_ = gkemu::fault(name); gk_e_ != cudaSuccess) \
      return gk_e_;                                                      \
  } while (0)

extern "C" {

cudaError_t cudaGetLastError() {
  cudaError_t e = gkemu::tl_last;
  gkemu::tl_last = cudaSuccess;
  return e;
}
const char* cudaGetErrorName(cudaError_t e) {
  switch (e) {
    case cudaSuccess:
      return "cudaSuccess";
    case cudaErrorInvalidValue:
      return "cudaErrorInvalidValue";
    case cudaErrorMemoryAllocation:
      return "cudaErrorMemoryAllocation";
    case cudaErrorInvalidConfiguration:
      return "cudaErrorInvalidConfiguration";
    case cudaErrorLaunchFailure:
      return "cudaErrorLaunchFailure";
    case cudaErrorInvalidDevice:
      return "cudaErrorInvalidDevice";
    case cudaErrorNoDevice:
      return "cudaErrorNoDevice";
    case cudaErrorIllegalAddress:
      return "cudaErrorIllegalAddress";
    case cudaErrorInsufficientDriver:
      return "cudaErrorInsufficientDriver";
    case cudaErrorLaunchTimeout:
      return "cudaErrorLaunchTimeout";
    default:
      return "cudaErrorUnknown";
  }
}
const char* cudaGetErrorString(cudaError_t e) {
  // The emulator's own launch failures carry their message (the thread's last one).
  if ((e == cudaErrorLaunchFailure || e == cudaErrorInvalidConfiguration) && !gkemu::tl_last_message.empty())
    return gkemu::tl_last_message.c_str();
  switch (e) {
    case cudaSuccess:
      return "no error";
    case cudaErrorMemoryAllocation:
      return "out of memory";
    case cudaErrorInvalidValue:
      return "invalid argument";
    case cudaErrorIllegalAddress:
      return "an illegal memory access was encountered";
    case cudaErrorNoDevice:
      return "no CUDA-capable device is detected";
    default:
      return "emulated CUDA error";
  }
}
cudaError_t cudaGetDeviceCount(int* n) {
  GK_EMU_FAULT_POINT("cudaGetDeviceCount");
  *n = 1;
  return cudaSuccess;
}
cudaError_t cudaSetDevice(int d) { return d == 0 ? cudaSuccess : cudaErrorInvalidDevice; }
// The driver's entry points: cuTensorMapEncodeTiled (CUDA 12.0's signature: encode_tensor_map_2d),
// the emulator's own (emu_runtime.cc, "mbarrier and TMA"); no other.
cudaError_t cudaGetDriverEntryPointByVersion(const char* symbol, void** fn, unsigned int version, unsigned long long,
                                             cudaDriverEntryPointQueryResult* q) {
  if (!symbol || !fn) return cudaErrorInvalidValue;
  const bool found = std::strcmp(symbol, "cuTensorMapEncodeTiled") == 0;
  *fn = found && version >= 12000 ? gkemu::tensor_map_encoder() : nullptr;
  if (q)
    *q = *fn ? cudaDriverEntryPointSuccess
             : found ? cudaDriverEntryPointVersionNotSufficent : cudaDriverEntryPointSymbolNotFound;
  return cudaSuccess;
}

cudaError_t cudaGetDeviceProperties(cudaDeviceProp* p, int d) {
  if (d != 0) return cudaErrorInvalidDevice;
  std::memset(p, 0, sizeof *p);
  std::snprintf(p->name, sizeof p->name, "grpo-kernels CUDA emulator (CPU, tests only)");
  p->major = 9;
  p->minor = 0;
  p->multiProcessorCount = 132;  // an H100's, so the launchers size grids (and vocab splits) as there
  p->totalGlobalMem = gkemu::kEmuMemory;
  p->l2CacheSize = 50 << 20;
  p->sharedMemPerBlock = 48 << 10;
  p->sharedMemPerBlockOptin = size_t(gkemu::smem_optin());
  p->warpSize = 32;
  p->maxThreadsPerBlock = 1024;
  return cudaSuccess;
}
cudaError_t cudaGetDevice(int* d) {
  *d = 0;
  return cudaSuccess;
}
cudaError_t cudaDeviceGetAttribute(int* v, cudaDeviceAttr a, int d) {
  if (d != 0) return cudaErrorInvalidDevice;
  switch (a) {
    case cudaDevAttrMemoryPoolsSupported:
      *v = 1;
      break;
    case cudaDevAttrMaxSharedMemoryPerBlockOptin:
      *v = gkemu::smem_optin();
      break;
    default:
      *v = 0;
  }
  return cudaSuccess;
}
cudaError_t cudaDeviceGetDefaultMemPool(cudaMemPool_t* pool, int d) {
  static CUmemPoolHandle_st the_pool{};
  if (d != 0) return cudaErrorInvalidDevice;
  *pool = &the_pool;
  return cudaSuccess;
}
cudaError_t cudaMemPoolSetAttribute(cudaMemPool_t, cudaMemPoolAttr, void*) { return cudaSuccess; }
cudaError_t cudaMemPoolTrimTo(cudaMemPool_t, size_t) { return cudaSuccess; }
cudaError_t cudaRuntimeGetVersion(int* v) {
  *v = CUDART_VERSION;
  return cudaSuccess;
}
cudaError_t cudaDriverGetVersion(int* v) {
  *v = CUDART_VERSION;
  return cudaSuccess;
}
cudaError_t cudaStreamCreateWithFlags(cudaStream_t* s, unsigned flags) {
  GK_EMU_FAULT_POINT("cudaStreamCreateWithFlags");
  *s = new CUstream_st{int(flags)};
  return cudaSuccess;
}
cudaError_t cudaStreamDestroy(cudaStream_t s) {
  delete s;
  return cudaSuccess;
}
cudaError_t cudaFuncSetAttribute(const void* fn, cudaFuncAttribute attr, int value) {
  if (const cudaError_t e = gkemu::fault("cudaFuncSetAttribute"); e != cudaSuccess) return e;
  if (!fn) return cudaErrorInvalidDeviceFunction;
  if (attr == cudaFuncAttributeMaxDynamicSharedMemorySize) {
    if (value < 0 || value > gkemu::smem_optin()) return cudaErrorInvalidValue;
    gkemu::set_max_dynamic_smem(fn, value);
  }
  return cudaSuccess;
}
cudaError_t cudaStreamSynchronize(cudaStream_t) {
  GK_EMU_FAULT_POINT("cudaStreamSynchronize");
  return cudaSuccess;
}
cudaError_t cudaMalloc(void** p, size_t n) {
  GK_EMU_FAULT_POINT("cudaMalloc");
  return gkemu::emu_alloc(p, n);
}
cudaError_t cudaMallocAsync(void** p, size_t n, cudaStream_t) {
  GK_EMU_FAULT_POINT("cudaMallocAsync");
  return gkemu::emu_alloc(p, n);
}
cudaError_t cudaFree(void* p) { return gkemu::emu_free(p); }
cudaError_t cudaFreeAsync(void* p, cudaStream_t) { return gkemu::emu_free(p); }
}  // extern "C"

// cudaMallocHost and cudaHostAlloc, cudaEventCreate and cudaEventCreateWithFlags: one body each.
namespace gkemu {
namespace {
cudaError_t host_alloc(void** p, size_t n) {
  *p = std::malloc(n == 0 ? 1 : n);
  return *p ? cudaSuccess : cudaErrorMemoryAllocation;
}
cudaError_t event_create(cudaEvent_t* e) {
  *e = new CUevent_st{0};
  return cudaSuccess;
}
}  // namespace
}  // namespace gkemu
extern "C" {
cudaError_t cudaMallocHost(void** p, size_t n) {
  GK_EMU_FAULT_POINT("cudaMallocHost");
  return gkemu::host_alloc(p, n);
}
// cuda_runtime.h's typed C++ overload cudaMallocHost(T**, size, flags) calls this: the source says
// cudaMallocHost, and so do GK_EMU_FAULT and GK_EMU_CALL_LOG.
cudaError_t cudaHostAlloc(void** p, size_t n, unsigned) {
  GK_EMU_FAULT_POINT("cudaMallocHost");
  return gkemu::host_alloc(p, n);
}
cudaError_t cudaFreeHost(void* p) {
  std::free(p);
  return cudaSuccess;
}
cudaError_t cudaMemcpyAsync(void* dst, const void* src, size_t n, cudaMemcpyKind, cudaStream_t) {
  GK_EMU_FAULT_POINT("cudaMemcpyAsync");
  if (n) std::memmove(dst, src, n);
  return cudaSuccess;
}
cudaError_t cudaMemsetAsync(void* p, int v, size_t n, cudaStream_t) {
  GK_EMU_FAULT_POINT("cudaMemsetAsync");
  if (n) std::memset(p, v, n);
  return cudaSuccess;
}
cudaError_t cudaEventCreate(cudaEvent_t* e) {
  GK_EMU_FAULT_POINT("cudaEventCreate");
  return gkemu::event_create(e);
}
cudaError_t cudaEventCreateWithFlags(cudaEvent_t* e, unsigned) {
  GK_EMU_FAULT_POINT("cudaEventCreateWithFlags");
  return gkemu::event_create(e);
}
cudaError_t cudaEventDestroy(cudaEvent_t e) {
  delete e;
  return cudaSuccess;
}
cudaError_t cudaEventRecord(cudaEvent_t e, cudaStream_t) {
  GK_EMU_FAULT_POINT("cudaEventRecord");
  e->ms = gkemu::now_ms();
  return cudaSuccess;
}
cudaError_t cudaEventSynchronize(cudaEvent_t) {
  GK_EMU_FAULT_POINT("cudaEventSynchronize");
  return cudaSuccess;
}
cudaError_t cudaEventElapsedTime(float* ms, cudaEvent_t a, cudaEvent_t b) {
  *ms = float(b->ms - a->ms);
  return cudaSuccess;
}

}  // extern "C"
