// Shared-memory tiles of the wgmma kernels (tensor_core.cuh's wgmma; lmhead.cu, thr.cu): blocks of 256
// threads, 2 warpgroups, 128 × 128 output tiles, operands staged by cp.async in wgmma's 128-byte swizzle,
// or by TMA in the same layout (TmaPipe, below).
// Device code only.
//   K-major tile (load_swizzled): 128 rows of 128 bytes (64 16-bit or 32 f32 values of a k-step), row r's
//     16-byte chunk c at r·128 + 16·(c ⊕ (r mod 8)), 8-row atoms 1024 bytes apart (descriptor SBO 1024),
//     1024-byte aligned; the instruction's k-slice kk starts 32·kk bytes into the rows.
//   MN-major tile (load_swizzled_mn, 16-bit): 64 k-rows × 128 columns as two 64-column blocks 8192 bytes
//     apart (LBO), row k at k·128 in its block, chunk c at 16·(c ⊕ (k mod 8)) (SBO 1024 between 8-row
//     groups); the k16 slice kk starts 2048·kk bytes in.
//   Fragments (WgLane): thread r = 32v + 4g + t of warpgroup w holds d[4j + 2h + e] = D[64w + 16v + g +
//     8h][8j + 2t + e]: 2 rows × 32 columns of the tile, a row within one warp.
#pragma once

#include "common.cuh"
#include "tensor_core.cuh"

namespace gk {

constexpr int kWgThreads = 256;                    // 2 warpgroups
constexpr size_t kWgTileBytes = size_t(128) * 128;  // one operand's k-step: 128 rows × 128 bytes

// Whether this build and device run wgmma: a 9.0 device and sm_90a code in the build (GK_BUILT_SM90A,
// set for the units CMakeLists.txt builds for 90a), or the CUDA emulator.
inline bool wgmma_available(const LaunchEnv& env) {
#if defined(GK_CUDA_EMU) || defined(GK_BUILT_SM90A)
  return env.cc == 90;
#else
  (void)env;
  return false;
#endif
}

// The stages, 1024-byte aligned in the shared window (the swizzle works on its address bits): a kernel
// asks for 1024 bytes more than its stages.
__device__ __forceinline__ unsigned char* wg_stages(unsigned char* smem_raw) {
  return smem_raw + ((1024u - (smem_address(smem_raw) & 1023u)) & 1023u);
}

// cp.async of k-step kt (128 bytes of each row: 128 / sizeof(T) values) of rows [r0, r0 + n) of a
// row-major operand read K-major (row stride ld, its first kn values valid; 16-byte aligned rows) into a
// K-major tile; rows ≥ n and values past kn are zero-filled. Thread → chunks tid + 256·i: eight threads
// per 128-byte row segment.
template <class T>
__device__ __forceinline__ void load_swizzled(unsigned char* tile, const T* M, int64_t ld, int64_t r0, int n,
                                              int64_t kn, int kt) {
  constexpr int E = 16 / int(sizeof(T));  // values per chunk
#pragma unroll
  for (int i = 0; i < int(kWgTileBytes / 16) / kWgThreads; ++i) {
    const int id = int(threadIdx.x) + kWgThreads * i;
    const int r = id >> 3, c = id & 7;
    const int64_t k = int64_t(kt) * (8 * E) + E * c;
    const int64_t left = r < n ? (kn - k) * int64_t(sizeof(T)) : 0;
    const int bytes = left <= 0 ? 0 : left >= 16 ? 16 : int(left);
    cp_async16(tile + r * 128 + 16 * (c ^ (r & 7)), bytes > 0 ? M + (r0 + r) * ld + k : M, bytes);
  }
}

// cp.async of k-rows [k0, k0 + 64) (valid below kn) × columns [n0, n0 + 128) (valid below n, a multiple
// of 8) of a row-major [k][ld] 16-bit operand (16-byte aligned rows) into an MN-major tile; the rest
// zero-filled.
template <class T>
__device__ __forceinline__ void load_swizzled_mn(unsigned char* tile, const T* M, int64_t ld, int64_t k0, int64_t kn,
                                                 int64_t n0, int64_t n) {
  static_assert(sizeof(T) == 2, "MN-major tiles hold 16-bit values (wgmma transposes no tf32 operand)");
#pragma unroll
  for (int i = 0; i < int(kWgTileBytes / 16) / kWgThreads; ++i) {
    const int id = int(threadIdx.x) + kWgThreads * i;
    const int k = id >> 4, c = id & 15;  // 16 chunks (128 columns) per row
    const int64_t col = n0 + 8 * c;
    const bool in = k0 + k < kn && col < n;
    cp_async16(tile + (c >> 3) * 8192 + k * 128 + 16 * ((c & 7) ^ (k & 7)), in ? M + (k0 + k) * ld + col : M,
               in ? 16 : 0);
  }
}

// Where a thread's wgmma accumulators sit in its block's 128 × 128 tile: d[4j + 2h + e] is row
// row(h), column col(j, e).
struct WgLane {
  int tid, t4, row0;
  __device__ WgLane()
      : tid(threadIdx.x), t4(tid & 3), row0(64 * (tid >> 7) + 16 * ((tid & 127) >> 5) + ((tid & 31) >> 2)) {}
  __device__ int row(int h) const { return row0 + 8 * h; }
  __device__ int col(int j, int e) const { return 8 * j + 2 * t4 + e; }
};

// ------------------------------------------------------------- TMA-fed stages (warp-specialised)
// The stages of the TMA-fed wgmma kernels (lmhead.cu's tma_mainloop, thr.cu's thr_scores_tma_kernel):
// stages of one k-step each (A's 128 × 128-byte tile, then B's), 1024-byte aligned (wg_stages),
// then their mbarriers: full[s] (the producer's one arrival with the stage's bytes, completed by the
// TMA copies) and empty[s] (one arrival per consumer warp: its warpgroup is done reading the stage).
// One producer lane walks the k-steps: waits until a stage is empty (from its second use on), announces
// its bytes on full and issues its copies; each consumer waits on full, multiplies, and releases.
// TmaPipeOf<kStageBytes, kStages>: the stages and barriers; TmaPipe (32 KiB stages: a 128-row tile of each
// operand, 6 of them) is the LM head's and THR's 128 × 128 tiles', TmaPipeOf<48 KiB, 4> THR's 128 × 256.
// kCtas > 1 (the LM head's 'tma-cluster'): the blocks of a cluster of kCtas share their stages' B boxes
// (each block's producer multicasts its share into every block's stage), so a stage may be refilled only
// once the consumers of every block of the cluster are done with it: empty[s] counts the consumer warps
// of all kCtas blocks, each warp arrives on every block's empty[s], and a producer does not leave before
// every arrival on its block's barriers has come (tail), since the barriers die with its block.
template <size_t kStageBytes_, int kStages_, int kCtas = 1>
struct TmaPipeOf {
  static constexpr size_t kStageBytes = kStageBytes_;
  static constexpr int kStages = kStages_;
  // Dynamic shared memory to ask for: the stages, 1024 bytes of alignment slack, the barriers.
  static constexpr size_t kSmemBytes = kStages * kStageBytes + 1024 + 2 * kStages * sizeof(uint64_t);
  unsigned char* smem;  // the stages (wg_stages)
  uint64_t* full;
  uint64_t* empty;
  __device__ explicit TmaPipeOf(unsigned char* stages)
      : smem(stages), full(reinterpret_cast<uint64_t*>(stages + kStages * kStageBytes)), empty(full + kStages) {}
  // Thread 0 sets the barriers up (empty counts `consumer_warps` arrivals from each block of the
  // cluster); every thread of the block calls it (a block barrier, or with kCtas > 1 a cluster one,
  // after which the other blocks may arrive on them and multicast into them).
  __device__ void init(int consumer_warps) const {
    if (threadIdx.x == 0) {
      for (int s = 0; s < kStages; ++s) {
        mbar_init(&full[s], 1);
        mbar_init(&empty[s], uint32_t(consumer_warps * kCtas));
      }
      mbar_fence_init();
    }
    if constexpr (kCtas > 1)
      cluster_sync();
    else
      __syncthreads();
  }
  // The producer's lane: issue(stage, step, bar) issues k-step step's copies (kStageBytes in all land in
  // this block's stage, some of them multicast by the cluster's other blocks) into the stage, completing
  // on bar, for every step in [0, steps); with kCtas > 1 it then waits for the release of each stage's
  // last k-step (by every block's consumers).
  template <class Issue>
  __device__ void produce(int steps, const Issue& issue) const {
    for (int step = 0; step < steps; ++step) {
      const int s = step % kStages, n = step / kStages;
      if (n > 0) mbar_wait(&empty[s], uint32_t(n - 1) & 1u);
      mbar_arrive_expect_tx(&full[s], uint32_t(kStageBytes));
      issue(smem + size_t(s) * kStageBytes, step, &full[s]);
    }
    if constexpr (kCtas > 1)
      for (int step = steps; step < steps + kStages; ++step)
        if (step >= kStages) mbar_wait(&empty[step % kStages], uint32_t(step / kStages - 1) & 1u);
  }
  // Past the barriers: where a kernel's own shared values may follow (kSmemBytes more bytes to ask for).
  __device__ unsigned char* end() const { return reinterpret_cast<unsigned char*>(empty + kStages); }
  // A consumer: waits until k-step step's stage is full; returns its shared-window address.
  __device__ uint32_t acquire(int step) const {
    const int s = step % kStages;
    mbar_wait(&full[s], uint32_t(step / kStages) & 1u);
    return smem_address(smem) + uint32_t(s) * uint32_t(kStageBytes);
  }
  // A consumer warp (every lane calls it): its warpgroup is done reading k-step step's stage.
  __device__ void release(int step) const {
    if ((threadIdx.x & 31) != 0) return;
    if constexpr (kCtas > 1) {
#pragma unroll
      for (int c = 0; c < kCtas; ++c) mbar_arrive_cluster(&empty[step % kStages], uint32_t(c));
    } else {
      mbar_arrive(&empty[step % kStages]);
    }
  }
};
using TmaPipe = TmaPipeOf<2 * kWgTileBytes, 6>;
constexpr size_t kTmaSmemBytes = TmaPipe::kSmemBytes;

}  // namespace gk
