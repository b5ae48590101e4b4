// LM-head family: linearLogprobs (log-probs straight from hidden states and the head's weight), its
// backward, the vocabulary-sharded online states and their merge. Mirrors src/backends/cpu/lmhead.ts.
//
// FORWARD  x[n, v] = h_n · W_v + b_v (raw logits, never stored), z = x/T; per row the online state of
//   logprobs.cu (online_softmax.cuh: raw max m, s = Σ 2^d, t = Σ 2^d·d, q = Σ 2^{2d}, d = (x − m)·log2e/T)
//   and the outputs logprobs.cu's finish_row computes from it: lse, logprob, entropy, Σp².
//   lm_fwd_kernel — block: 128 rows × one slice of the vocabulary (kSliceCols = 4096 columns, 32 tiles
//   of 128; the slice count from V alone). Per tile, the 128 × 128 logits as a GEMM over d on tensor
//   cores: 8 warps, 2 (rows) × 4 (columns), each a 64 × 32 sub-tile (4 × 4 MMA tiles, 64 f32
//   accumulators per thread); k-steps of 32 through a 3-stage cp.async pipeline that runs on across the
//   slice's tiles (the next tile's first k-steps load while this tile's last ones multiply). Operands
//   k-major in shared memory (hidden rows and weight rows, padded by 16 bytes a row: conflict-free
//   fragment reads). bf16 / f16: mma.sync m16n8k16, products exact, f32 sums; f32: 3xTF32 m16n8k8
//   (thr.cu's split: each product exact to 3·2^-22). Tensor cores truncate each MMA's sum, so each
//   k-step sums into fresh registers that are added to the running logits in round-to-nearest f32
//   (thr.cu's "flush"). Epilogue per tile, in registers: + bias, then each thread folds its 8 logits
//   of each of its 8 rows into that row's state (state_update: one rescale per batch); the thread
//   owning the target's column stores the target's raw logit (the same bits). At the slice's end the 4
//   lanes of a row merge by a fixed xor tree and the 4 column warps in order: partial[row][slice].
//   lm_finish_kernel / lm_state_kernel — one thread per row merges its slices in order and writes the
//   outputs (or the public state: natural-log sums, raw max, the target's logit when in the shard).
//   lm_fwd_wgmma_kernel — the same blocks on Hopper's wgmma (sm_90a, bf16/f16; its own header below).
//   Batch invariance: a row's logits come from the same MMAs whatever rows share its tile, and every
//   fold's order depends on V, d and the dtype alone: a row's bits never depend on N or its position.
//   Bytes: hidden read once per slice (ceil(V/4096) times), the weight once per 128 rows, 16 bytes of
//   state per row and slice. FLOPs: 2·N·V·d on tensor cores (×3 for f32 operands) + ~6·N·V (+3 with
//   entropy or Σp²) in the epilogue. Shared memory: 3 stages × (128 × 40 × 2) × 2 = 60 KiB (bf16/f16),
//   3 × (128 × 36 × 4) × 2 = 108 KiB (f32).
// BACKWARD  G[n, v] = (g_n/T)(1[v = y_n] − p) − (gE_n/T)·p·(ln p + H_n), p = 2^{x·log2e/T − lse·log2e}
//   (logprobs.cu's grad_of on the recomputed logit), then gradHidden = G·W, gradWeight = Gᵀ·H,
//   gradBias = Σ_n G. Chunks of chunk_rows rows × chunk_vocab columns (lmhead_plan: multiples of 128,
//   G of one chunk pair within 128 MiB with f32 gradients, 64 MiB with gradients in the input dtype,
//   whose accumulators take as much again), rows outer, vocabulary inner:
//   lm_grad_logits_kernel — block: a 128 × 128 tile of G: the logits tile as in the forward (one
//     tile, no slices), G in registers, rounded to the input dtype (bf16/f16: as a materialised bf16
//     path rounds its gradient; f32 stays f32), staged in shared memory and stored twice, coalesced:
//     Gc [rows][chunk_vocab] and its transpose Gt [chunk_vocab][rows] (both k-major for the GEMMs).
//   lm_gemm_kernel — block: a 128 × 128 tile of C (+)= A·B, A k-major (Gc or Gt), B MN-major (the
//     weight's or the hidden rows, d contiguous), the same warps, pipeline and MMAs; with `accumulate`
//     each element starts from C and runs on in the same f32 accumulator (flushed per k-step), so a
//     sum split over chunks has the bits of one long sum: gradHidden's over the vocabulary and
//     gradWeight's over the rows (fixed order, no atomics, independent of how rows are tiled).
//   lm_grad_bias_kernel — one thread per column: gradBias (+)= Σ_n Gc[n][v], n ascending.
//   lm_grad_logits_wgmma_kernel, lm_gemm_wgmma_kernel — the G tile and the GEMMs on wgmma (below).
//   Bytes per chunk pair: G written twice and read twice (2·Rc·C·sizeof each way); gradHidden and
//   gradWeight read and written once per chunk pair (f32). FLOPs: 3 × 2·N·V·d on tensor cores.
//   Gradients in the input dtype (grad_dtype = dtype, f16/bf16; the API's gradDtype 'input'): the same
//   kernels and sums; the chunk that ends a sum stores it rounded once to the dtype (from_f32, nearest
//   even), so the result is the f32 gradients rounded, bit for bit. A sum that runs across chunks keeps
//   its running value in an f32 accumulator instead of the (narrow) output: gradHidden's over the
//   vocabulary in [chunk_rows × d] when V > chunk_vocab. gradWeight's and gradBias's over rows would need
//   [V, d]: with more than one row chunk they get a second pass instead, vocabulary chunks outer and
//   rows inner (G recomputed: 4 × 2·N·V·d FLOPs instead of 3), in [chunk_vocab × (d + 1)]; one buffer
//   serves both passes (lmhead_narrow_acc_floats; LmheadPlan.backward_input_bytes). N = 16384,
//   V = 151936, d = 4096 bf16: G 128 MiB with f32 gradients (2.7% of the bf16 logits); with bf16 ones
//   G 64 MiB + accumulators 64 MiB (2.7%). The 128 MiB chunk pair (8192 × 4096 in bf16) halves the
//   launches of 64 MiB's at N 8192 and took the H200's backward from 59.7 to 56.3 ms (bench/RESULTS.md).
// STATES OF LOGITS (launch_logprob_states): lm_logit_states_kernel, block = (row, 8192-column slice):
//   thread l folds columns l, l + 256, … of the slice in order, then a fixed shuffle tree and warp order;
//   lm_state_kernel merges the slices. MERGE (launch_merge_states): one thread per row merges the given
//   states in order (public sums converted to base 2) and finishes as logprobs.
// Numerics: f32 state and sums (f32 accumulation of f32-exact products); bf16/f16 gradients' G rounded
//   once to the input dtype (unit roundoff 2^-9 / 2^-12 of each term of gradHidden and gradWeight); with
//   gradDtype 'input' the gradients themselves once more, where they are stored. f16's normal range
//   starts at 2^-14, so f16 G is scaled by a power of two first (lm_grad_scale_kernel: per row for Gc,
//   per call for Gt; C_in times the scale where a GEMM loads it, the sum divided where it stores it,
//   gradBias's terms divided; all exact): a small gradient keeps its relative accuracy, and only entries
//   more than f16's range below their row's (Gt: the call's) largest meet its subnormals (2^-25 over the
//   scale per term). Scratch: rows + 1 floats more (lmhead_plan).
//   A target outside [0, V) (and not ignoreIndex) raises kFlagTargetRange; a row of all −Inf logits
//   (e.g. a −Inf bias everywhere) kFlagAllNegInf. NaN and +Inf give NaN outputs, as logprobs.
#include <algorithm>
#include <cfloat>
#include <climits>
#include <cmath>
#include <cstdint>
#include <type_traits>

#include "lmhead.cuh"
#include "online_softmax.cuh"
#include "tensor_core.cuh"
#include "wgmma_tiles.cuh"

namespace gk {
namespace {

// ------------------------------------------------------------------------------- tile geometry
constexpr int kBM = 128;       // block tile rows
constexpr int kBN = 128;       // block tile columns
constexpr int kBK = 32;        // k-step
constexpr int kStages = 3;     // cp.async pipeline depth
constexpr int kThreads = 256;  // 8 warps: 2 (rows) × 4 (columns)
constexpr int kWarpM = 64, kWarpN = 32;
constexpr int kMT = kWarpM / 16;  // m16 MMA tiles per warp
constexpr int kNT = kWarpN / 8;   // n8 MMA tiles per warp
constexpr int64_t kSliceCols = 4096;       // forward: vocabulary columns per slice (32 tiles)
constexpr int64_t kLogitSliceCols = 8192;  // states of materialised logits
constexpr int64_t kChunkVocab = 4096;      // backward: vocabulary columns per G chunk
constexpr size_t kGBudget = size_t(128) << 20;  // backward: bytes of Gc + Gt per chunk pair (f32 gradients;
                                                // half with gradients in the input dtype)
constexpr int kRowThreads = 128;            // one-thread-per-row kernels

using Frag = float[kMT][kNT][4];

template <class T>
struct Smem {
  static constexpr int kLdK = kBK + 16 / int(sizeof(T));  // k-major rows: 36 floats / 40 halves
  static constexpr int kLdN = kBN + 8;                     // MN-major rows: 136 elements
  static constexpr size_t kKMajor = size_t(kBM) * kLdK * sizeof(T);
  static constexpr size_t kMNMajor = size_t(kBK) * kLdN * sizeof(T);
  static constexpr size_t kFwdStage = 2 * kKMajor;           // hidden rows + weight rows
  static constexpr size_t kGemmStage = kKMajor + kMNMajor;   // G rows + MN-major rows
  static constexpr size_t kFwdBytes = kStages * kFwdStage;
  static constexpr size_t kGemmBytes = kStages * kGemmStage;
  static constexpr size_t kTileBytes = size_t(kBM) * kLdN * sizeof(T);  // a staged G tile
};
static_assert(size_t(4) * kBM * sizeof(float4) <= Smem<__half>::kFwdBytes, "the warp states reuse the stages");

// A factor 1/T or log2e/T as the kernels take it (logprobs.cu's scale_of): at least FLT_MIN.
inline float scale_of(double f) { return std::max(static_cast<float>(f), FLT_MIN); }

__device__ __forceinline__ void zero(Frag& a) {
#pragma unroll
  for (int i = 0; i < kMT; ++i)
#pragma unroll
    for (int j = 0; j < kNT; ++j)
#pragma unroll
      for (int e = 0; e < 4; ++e) a[i][j][e] = 0.f;
}

// Each k-step's MMAs go into `part`, added here to the running sums in round-to-nearest f32.
__device__ __forceinline__ void flush(Frag& acc, Frag& part) {
#pragma unroll
  for (int i = 0; i < kMT; ++i)
#pragma unroll
    for (int j = 0; j < kNT; ++j)
#pragma unroll
      for (int e = 0; e < 4; ++e) {
        acc[i][j][e] += part[i][j][e];
        part[i][j][e] = 0.f;
      }
}

__device__ __forceinline__ int active_tiles(int valid, int first, int tile, int most) {
  return max(0, min(most, (valid - first + tile - 1) / tile));
}

__device__ __forceinline__ int64_t min64(int64_t a, int64_t b) { return a < b ? a : b; }

__device__ __forceinline__ uint32_t ld32(const void* p) { return *reinterpret_cast<const uint32_t*>(p); }

// Copies elements [x, x + 16) of a row of n elements to dst (16-byte aligned), zeros past n (all of
// them when n ≤ x; rows outside a tile pass n = 0 and any valid address). vec16: the row is 16-byte
// aligned (else 4-byte cp.async for f32, plain loads for 16-bit types).
template <class T>
__device__ __forceinline__ void copy16(T* dst, const T* row, int64_t x, int64_t n, bool vec16) {
  constexpr int E = 16 / int(sizeof(T));
  if (vec16) {
#pragma unroll
    for (int c = 0; c < 16 / E; ++c) {
      const int64_t left = (n - (x + c * E)) * int64_t(sizeof(T));
      const int bytes = left <= 0 ? 0 : left >= 16 ? 16 : int(left);
      cp_async16(dst + c * E, bytes > 0 ? row + x + c * E : row, bytes);
    }
  } else if constexpr (sizeof(T) == 4) {
#pragma unroll
    for (int e = 0; e < 16; ++e) cp_async4(dst + e, x + e < n ? row + x + e : row, x + e < n ? 4 : 0);
  } else {
    const uint16_t* r = reinterpret_cast<const uint16_t*>(row);
    uint16_t* o = reinterpret_cast<uint16_t*>(dst);
#pragma unroll
    for (int e = 0; e < 16; ++e) o[e] = x + e < n ? __ldg(r + x + e) : uint16_t(0);
  }
}

// ------------------------------------------------------------------------------- warp MMAs
enum class BLayout { KMajor, MNMajor };

// One k-step (kBK) of a warp's 64 × 32 sub-tile into d. A: k-major [kBM][kLdK] (rows m, k contiguous);
// B: k-major [kBN][kLdK] (rows n) or MN-major [kBK][kLdN] (rows k). Unless kFull, m_tiles / n_tiles
// (warp-uniform) skip MMA tiles wholly outside a partial block tile (their operands are zeros).
template <class T, BLayout kB, bool kFull>
__device__ __forceinline__ void warp_kstep(Frag& d, const T* As, const T* Bs, int wm, int wn, int g8, int t4,
                                           int m_tiles, int n_tiles) {
  using S = Smem<T>;
  if constexpr (std::is_same<T, float>::value) {
    // 3xTF32: every operand split once, a·b ≈ a_lo·b_hi + a_hi·b_lo + a_hi·b_hi (small terms first).
#pragma unroll 2
    for (int k8 = 0; k8 < kBK; k8 += 8) {
      float bh[kNT][2], bl[kNT][2];
#pragma unroll
      for (int ni = 0; ni < kNT; ++ni) {
        const int n = wn * kWarpN + ni * 8 + g8;
        float b0, b1;  // b[i] = B[k8 + t + 4i][n]
        if constexpr (kB == BLayout::KMajor) {
          const float* p = Bs + n * S::kLdK + k8 + t4;
          b0 = p[0];
          b1 = p[4];
        } else {
          const float* p = Bs + (k8 + t4) * S::kLdN + n;
          b0 = p[0];
          b1 = p[4 * S::kLdN];
        }
        split_tf32(b0, bh[ni][0], bl[ni][0]);
        split_tf32(b1, bh[ni][1], bl[ni][1]);
      }
#pragma unroll
      for (int mi = 0; mi < kMT; ++mi) {
        if (!kFull && mi >= m_tiles) break;
        const float* p = As + (wm * kWarpM + mi * 16 + g8) * S::kLdK + k8 + t4;
        const float a[4] = {p[0], p[8 * S::kLdK], p[4], p[8 * S::kLdK + 4]};  // A[g + 8(i&1)][t + 4(i>>1)]
        float ah[4], al[4];
#pragma unroll
        for (int i = 0; i < 4; ++i) split_tf32(a[i], ah[i], al[i]);
#pragma unroll
        for (int ni = 0; ni < kNT; ++ni) {
          if (!kFull && ni >= n_tiles) break;
          mma_tf32(d[mi][ni], al, bh[ni]);
          mma_tf32(d[mi][ni], ah, bl[ni]);
          mma_tf32(d[mi][ni], ah, bh[ni]);
        }
      }
    }
  } else {
#pragma unroll
    for (int k16 = 0; k16 < kBK; k16 += 16) {
      uint32_t b[kNT][2];
#pragma unroll
      for (int ni = 0; ni < kNT; ++ni) {
        const int n = wn * kWarpN + ni * 8 + g8;
        if constexpr (kB == BLayout::KMajor) {  // B[2t, 2t+1][n] = Bs[n][2t, 2t+1]: one word
          const T* p = Bs + n * S::kLdK + k16 + 2 * t4;
          b[ni][0] = ld32(p);
          b[ni][1] = ld32(p + 8);
        } else {  // rows 2t and 2t+1 of column n: two halves packed, the lower k in the low half
          const uint16_t* p = reinterpret_cast<const uint16_t*>(Bs) + (k16 + 2 * t4) * S::kLdN + n;
          b[ni][0] = uint32_t(p[0]) | (uint32_t(p[S::kLdN]) << 16);
          b[ni][1] = uint32_t(p[8 * S::kLdN]) | (uint32_t(p[9 * S::kLdN]) << 16);
        }
      }
#pragma unroll
      for (int mi = 0; mi < kMT; ++mi) {
        if (!kFull && mi >= m_tiles) break;
        const T* p = As + (wm * kWarpM + mi * 16 + g8) * S::kLdK + k16 + 2 * t4;
        const uint32_t a[4] = {ld32(p), ld32(p + 8 * S::kLdK), ld32(p + 8), ld32(p + 8 * S::kLdK + 8)};
#pragma unroll
        for (int ni = 0; ni < kNT; ++ni) {
          if (!kFull && ni >= n_tiles) break;
          mma_16816<T>(d[mi][ni], a, b[ni]);
        }
      }
    }
  }
}

template <class T, BLayout kB>
__device__ __forceinline__ void block_kstep(Frag& d, const T* As, const T* Bs, int wm, int wn, int g8, int t4,
                                            int m_tiles, int n_tiles) {
  if (m_tiles == kMT && n_tiles == kNT)
    warp_kstep<T, kB, true>(d, As, Bs, wm, wn, g8, t4, m_tiles, n_tiles);
  else if (m_tiles > 0 && n_tiles > 0)
    warp_kstep<T, kB, false>(d, As, Bs, wm, wn, g8, t4, m_tiles, n_tiles);
}

// The 3-stage pipeline over `steps` k-steps: load(slot, step) issues a stage's copies, compute(slot,
// step) consumes it. One barrier per step; returns with every copy landed and the stages free.
template <class Load, class Compute>
__device__ __forceinline__ void pipeline(int steps, const Load& load, const Compute& compute) {
#pragma unroll
  for (int s = 0; s < kStages - 1; ++s) {
    if (s < steps) load(s, s);
    cp_async_commit();
  }
  for (int it = 0; it < steps; ++it) {
    cp_async_wait<kStages - 2>();  // this thread's copies of step `it` have landed ...
    __syncthreads();               // ... and everyone's; every warp is done with step it − 1's slot
    const int nx = it + kStages - 1;
    if (nx < steps) load(nx % kStages, nx);
    cp_async_commit();  // (an empty group past the end keeps the wait count uniform)
    compute(it % kStages, it);
  }
  cp_async_wait<0>();
  __syncthreads();
}

// Where a thread's accumulators sit in its block tile: rows tile_row(mi, h), columns tile_col(ni, e).
struct Lane {
  int tid, warp, lane, g8, t4, wm, wn;
  __device__ Lane() : tid(threadIdx.x), warp(tid >> 5), lane(tid & 31), g8(lane >> 2), t4(lane & 3), wm(warp >> 2), wn(warp & 3) {}
  __device__ int row(int mi, int h) const { return wm * kWarpM + mi * 16 + g8 + 8 * h; }
  __device__ int col(int ni, int e) const { return wn * kWarpN + ni * 8 + 2 * t4 + e; }
};

// Stage loader of the logits GEMMs: hidden rows [r0, r0 + rows) and weight rows [v0, v0 + cols) of d,
// k-step kt into a stage of two k-major tiles. Thread → tile row tid/2, k offset 16·(tid mod 2).
template <class T>
__device__ __forceinline__ void load_logits_stage(unsigned char* stage, const T* H, int64_t r0, int rows, const T* W,
                                                  int64_t v0, int cols, int64_t d, int kt, bool h_vec16, bool w_vec16) {
  using S = Smem<T>;
  const int lr = threadIdx.x >> 1, lh = threadIdx.x & 1;
  const int64_t k = int64_t(kt) * kBK + lh * 16;
  T* As = reinterpret_cast<T*>(stage);
  T* Bs = reinterpret_cast<T*>(stage + S::kKMajor);
  copy16<T>(As + lr * S::kLdK + lh * 16, H + (lr < rows ? (r0 + lr) * d : 0), k, lr < rows ? d : 0, h_vec16);
  copy16<T>(Bs + lr * S::kLdK + lh * 16, W + (lr < cols ? (v0 + lr) * d : 0), k, lr < cols ? d : 0, w_vec16);
}

template <class T>
__device__ __forceinline__ float bias_at(const T* bias, int64_t v) {
  return bias ? load_f32(bias + v) : 0.f;
}

// ----------------------------------------------------------------------------------- forward
struct FwdArgs {
  const void* hidden;
  const void* weight;
  const void* bias;
  const int* targets;
  int64_t rows, dim, vocab, vocab_start;
  int ignore;
  float scale2;
  int slices;
  bool h_vec16, w_vec16;
  float4* partial;  // [rows][slices]
  float* xt;        // [rows]: the target's raw logit (rows whose target lies in this call's columns)
  unsigned raster = 0;  // the wide kernels' row blocks per group (raster_block; 0: kRasterRows)
};

__device__ __forceinline__ OnlineState shfl_xor_state(const OnlineState& s, int m) {
  return {__shfl_xor_sync(kFullMask, s.m, m), __shfl_xor_sync(kFullMask, s.s, m),
          __shfl_xor_sync(kFullMask, s.t, m), __shfl_xor_sync(kFullMask, s.q, m)};
}

// A forward block's rows and vocabulary slice (grid: x the 128-row block, y the slice of kSliceCols
// columns; bx, by: which of them this block is, blockIdx's or, for the wide kernels, raster_block's) and
// its k-steps of `step` over d (d = 0: one step of zeros).
struct FwdBlock {
  int64_t r0, c0, c1;  // first row; the slice's columns [c0, c1)
  int slice, rows, ntiles, nk;
  __device__ FwdBlock(const FwdArgs& a, int step, unsigned bx = blockIdx.x, unsigned by = blockIdx.y)
      : r0(int64_t(bx) * kBM),
        c0(int64_t(by) * kSliceCols),
        c1(min64(a.vocab, c0 + kSliceCols)),
        slice(static_cast<int>(by)),
        rows(static_cast<int>(min64(kBM, a.rows - r0))),
        ntiles(static_cast<int>((c1 - c0 + kBN - 1) / kBN)),
        nk(max(1, static_cast<int>((a.dim + step - 1) / step))) {}
};

// Each of the block's rows' target as a column of this call's weight (−1: ignored, or outside it), into
// s_tcol by threads 0 … kBM − 1 (read after the next barrier).
__device__ __forceinline__ void target_columns(int* s_tcol, const FwdArgs& a, int64_t r0, int rows) {
  const int tid = threadIdx.x;
  if (tid >= kBM) return;
  int c = -1;
  if (tid < rows) {
    const int t = a.targets[r0 + tid];
    const int64_t tc = int64_t(t) - a.vocab_start;
    if (t != a.ignore && tc >= 0 && tc < a.vocab) c = static_cast<int>(tc);
  }
  s_tcol[tid] = c;
}

template <class T, bool kStats>
__global__ void __launch_bounds__(kThreads, 1) lm_fwd_kernel(FwdArgs a) {
  using S = Smem<T>;
  GK_DYNAMIC_SMEM(unsigned char, smem);
  __shared__ int s_tcol[kBM];  // each row's target as a column of this call's weight (−1: none)
  const T* H = static_cast<const T*>(a.hidden);
  const T* W = static_cast<const T*>(a.weight);
  const T* B = static_cast<const T*>(a.bias);
  const Lane L;
  const FwdBlock fb(a, kBK);
  target_columns(s_tcol, a, fb.r0, fb.rows);
  const int m_tiles = active_tiles(fb.rows, L.wm * kWarpM, 16, kMT);

  Frag acc, part;
  zero(acc);
  zero(part);
  OnlineState st[kMT][2];
#pragma unroll
  for (int mi = 0; mi < kMT; ++mi) st[mi][0] = st[mi][1] = empty_state();

  auto load = [&](int slot, int it) {
    const int tile = it / fb.nk, kt = it - tile * fb.nk;
    const int64_t v0 = fb.c0 + int64_t(tile) * kBN;
    load_logits_stage<T>(smem + size_t(slot) * S::kFwdStage, H, fb.r0, fb.rows, W, v0,
                         static_cast<int>(min64(kBN, fb.c1 - v0)), a.dim, kt, a.h_vec16, a.w_vec16);
  };
  auto compute = [&](int slot, int it) {
    const int tile = it / fb.nk, kt = it - tile * fb.nk;
    const int64_t v0 = fb.c0 + int64_t(tile) * kBN;
    const int cols = static_cast<int>(min64(kBN, fb.c1 - v0));
    const int n_tiles = active_tiles(cols, L.wn * kWarpN, 8, kNT);
    const unsigned char* stage = smem + size_t(slot) * S::kFwdStage;
    block_kstep<T, BLayout::KMajor>(part, reinterpret_cast<const T*>(stage),
                                    reinterpret_cast<const T*>(stage + S::kKMajor), L.wm, L.wn, L.g8, L.t4, m_tiles,
                                    n_tiles);
    flush(acc, part);
    if (kt != fb.nk - 1) return;
    // Epilogue of the tile: + bias, the target's logit, then each row's 8 logits into its state.
    float bv[kNT][2];
#pragma unroll
    for (int ni = 0; ni < kNT; ++ni)
#pragma unroll
      for (int e = 0; e < 2; ++e) {
        const int c = L.col(ni, e);
        bv[ni][e] = c < cols ? bias_at(B, v0 + c) : 0.f;
      }
#pragma unroll
    for (int mi = 0; mi < kMT; ++mi)
#pragma unroll
      for (int h = 0; h < 2; ++h) {
        const int r = L.row(mi, h);
        float x[2 * kNT];
#pragma unroll
        for (int ni = 0; ni < kNT; ++ni)
#pragma unroll
          for (int e = 0; e < 2; ++e) {
            // A column past the tile is −Inf: it adds exactly 0 to the state.
            x[2 * ni + e] = L.col(ni, e) < cols ? acc[mi][ni][2 * h + e] + bv[ni][e] : -INFINITY;
          }
        const int64_t dc = int64_t(s_tcol[r]) - (v0 + L.wn * kWarpN + 2 * L.t4);  // the target among my columns?
        if (dc >= 0 && dc < kWarpN && (dc & 7) < 2) a.xt[fb.r0 + r] = x[2 * (dc >> 3) + (dc & 1)];
        state_update<kStats>(st[mi][h], x, a.scale2);
      }
    zero(acc);
  };
  pipeline(fb.ntiles * fb.nk, load, compute);

  // The slice's state of each row: its 4 lanes by a fixed xor tree, then the 4 column warps in order.
  float4* red = reinterpret_cast<float4*>(smem);  // [4][kBM], the stages are free
#pragma unroll
  for (int mi = 0; mi < kMT; ++mi)
#pragma unroll
    for (int h = 0; h < 2; ++h) {
      OnlineState s = st[mi][h];
      s = state_merge(s, shfl_xor_state(s, 1), a.scale2);
      s = state_merge(s, shfl_xor_state(s, 2), a.scale2);
      if (L.t4 == 0) red[L.wn * kBM + L.row(mi, h)] = make_float4(s.m, s.s, s.t, s.q);
    }
  __syncthreads();
  if (L.tid < fb.rows) {
    OnlineState s = empty_state();
#pragma unroll
    for (int w = 0; w < 4; ++w) {
      const float4 v = red[w * kBM + L.tid];
      s = state_merge(s, OnlineState{v.x, v.y, v.z, v.w}, a.scale2);
    }
    a.partial[(fb.r0 + L.tid) * a.slices + fb.slice] = make_float4(s.m, s.s, s.t, s.q);
  }
}

// ------------------------------------------------------------------------ forward on wgmma (sm_90a)
// lm_fwd_wgmma_kernel: lm_fwd_kernel's forward on Hopper's warpgroup MMAs, for bf16 / f16 operands
// whose rows are 16-byte aligned (launch_linear_logprobs picks it; lmheadTuning.path). The same block
// (128 rows × one 4096-column slice, 128-column tiles), 2 warpgroups: warpgroup w owns rows
// 64w … 64w + 63 of every tile, per k-step of 64 four wgmma m64n128k16, A (hidden rows) and B (weight
// rows) both K-major in shared memory in the 128-byte swizzle: row r's 16-byte chunk c (elements
// 8c … 8c + 7 of the k-step) at r·128 + 16·(c ⊕ (r mod 8)), 8-row atoms 1024 bytes apart (the
// descriptor's stride), the atoms 1024-byte aligned; k16 step kk starts 32·kk bytes into the rows.
// 5 stages of cp.async: after the barrier that opens k-step it, the warpgroups issue its MMAs, then
// the copies of k-step it + 4 into the stage k-step it − 1 used (every warpgroup waited for those
// MMAs before the barrier), then wait for their own MMAs. A k-step's MMAs go into fresh registers
// (part) that are then added to the running logits in round-to-nearest f32 (the flush: 4 truncations
// per 64 products instead of one per 16 over all of d); while one warpgroup flushes, the other's MMAs
// run. A thread holds 2 rows × 32 columns of a tile (wgmma's D fragment); the epilogue is
// lm_fwd_kernel's (bias, the target's logit, state_update over the row's 32 logits), and at the
// slice's end a row's 4 lanes merge by the same xor tree; a row lies in one warp, so there is no
// cross-warp step. Bits: a row's logits come from the same MMAs whatever rows share its tile, and every
// order depends on V, d and the dtype alone (batch invariant); they differ from lm_fwd_kernel's (other
// k-steps). Bytes as lm_fwd_kernel; shared memory 5 × 32 KiB + 1 KiB (alignment).
constexpr int kWgBK = 64;                             // k-step: one 128-byte swizzled row of 16-bit values
constexpr int kWgStages = 5;                          // cp.async stages
constexpr int kWgAhead = kWgStages - 1;               // k-steps loading ahead of the MMAs
constexpr size_t kWgStageBytes = 2 * kWgTileBytes;    // hidden rows + weight rows
constexpr size_t kWgSmemBytes = kWgStages * kWgStageBytes + 1024;

// One k-step of a warpgroup's wgmma tiles into fresh sums: its 4 MMAs (k16 slices of A's 64 rows at sa,
// B's 128 columns at sb, K-major or, kTransB, MN-major), committed as one group; with `add` (the
// chained tiles) onto the sums instead.
template <class T, int kTransB>
__device__ __forceinline__ void wg_kstep(float (&part)[64], uint32_t sa, uint32_t sb, bool add = false) {
  wgmma_fence();
#pragma unroll
  for (int kk = 0; kk < kWgBK / 16; ++kk) {
    const uint64_t db = kTransB ? wgmma_desc(sb + 2048 * kk, 8192, 1024, kSwizzle128)
                                : wgmma_desc(sb + 32 * kk, 16, 1024, kSwizzle128);
    wgmma_async<T, 128, kTransB>(part, wgmma_desc(sa + 32 * kk, 16, 1024, kSwizzle128), db, add || kk > 0);
  }
  wgmma_commit();
}

// The k-steps [0, steps) of a block's wgmma tiles through the stages: load(stage, step) issues a
// k-step's copies (A's tile at stage, B's at stage + kWgTileBytes); after the barrier that opens
// k-step it, each warpgroup issues its 4 MMAs (rows 64·wg … of A, all 128 columns of B; B K-major, or
// MN-major with kTransB) into part, then the copies of k-step it + 4 (into the stage k-step it − 1
// used: every warpgroup waited for its MMAs before this barrier), then waits for its MMAs and calls
// retire(part, it). Returns with every copy landed, every MMA done and the stages free.
template <class T, int kTransB, class Load, class Retire>
__device__ __forceinline__ void wg_mainloop(unsigned char* smem, uint32_t sbase, int steps, const Load& load,
                                            const Retire& retire) {
  const uint32_t wg = threadIdx.x >> 7;
  auto issue_load = [&](int step) {
    if (step < steps) load(smem + size_t(step % kWgStages) * kWgStageBytes, step);
    cp_async_commit();  // (an empty group past the end keeps the wait count uniform)
  };
#pragma unroll
  for (int s = 0; s < kWgAhead; ++s) issue_load(s);
  float part[64];
  for (int it = 0; it < steps; ++it) {
    cp_async_wait<kWgAhead - 1>();  // my copies of k-step it landed ...
    fence_proxy_async();            // ... are visible to wgmma ...
    __syncthreads();                // ... and everyone's; every warpgroup is done with k-step it − 1
    const uint32_t stage = sbase + uint32_t(it % kWgStages) * uint32_t(kWgStageBytes);
    wg_kstep<T, kTransB>(part, stage + wg * 64u * 128u, stage + uint32_t(kWgTileBytes));
    issue_load(it + kWgAhead);
    wgmma_wait<0>();
    wgmma_fence_regs(part);
    retire(part, it);
  }
  cp_async_wait<0>();
  __syncthreads();
}

// The wgmma forwards' epilogue of a 128-column tile at v0 (cols of them inside the slice): + bias, the
// target's logit (stored by the thread holding it), then each of my 2 rows' 32 logits into its state.
template <class T, bool kStats>
__device__ __forceinline__ void wg_fold_tile(const float (&acc)[64], const WgLane& L, const int* s_tcol, const T* B,
                                             const FwdArgs& a, int64_t r0, int64_t v0, int cols, OnlineState (&st)[2]) {
#pragma unroll
  for (int h = 0; h < 2; ++h) {
    const int r = L.row(h);
    const int64_t dc = int64_t(s_tcol[r]) - v0;  // the target's column in this tile (if it is one)
    float x[32];
#pragma unroll
    for (int j = 0; j < 16; ++j)
#pragma unroll
      for (int e = 0; e < 2; ++e) {  // a column past the slice is −Inf: it adds exactly 0 to the state
        const int c = L.col(j, e);
        x[2 * j + e] = c < cols ? acc[4 * j + 2 * h + e] + bias_at(B, v0 + c) : -INFINITY;
        if (c == dc) a.xt[r0 + r] = x[2 * j + e];
      }
    state_update<kStats>(st[h], x, a.scale2);
  }
}

// The slice's state of each of my rows: its 4 lanes by a fixed xor tree (a row lies in one warp).
__device__ __forceinline__ void wg_store_states(const OnlineState (&st)[2], const WgLane& L, const FwdArgs& a,
                                                int64_t r0, int rows, int slice) {
#pragma unroll
  for (int h = 0; h < 2; ++h) {
    OnlineState s = st[h];
    s = state_merge(s, shfl_xor_state(s, 1), a.scale2);
    s = state_merge(s, shfl_xor_state(s, 2), a.scale2);
    const int r = L.row(h);
    if (L.t4 == 0 && r < rows) a.partial[(r0 + r) * a.slices + slice] = make_float4(s.m, s.s, s.t, s.q);
  }
}

template <class T, bool kStats>
__global__ void __launch_bounds__(kThreads, 1) lm_fwd_wgmma_kernel(FwdArgs a) {
  GK_DYNAMIC_SMEM(unsigned char, smem_raw);
  __shared__ int s_tcol[kBM];
  unsigned char* smem = wg_stages(smem_raw);
  const T* H = static_cast<const T*>(a.hidden);
  const T* W = static_cast<const T*>(a.weight);
  const T* B = static_cast<const T*>(a.bias);
  const WgLane L;
  const FwdBlock fb(a, kWgBK);
  target_columns(s_tcol, a, fb.r0, fb.rows);

  float acc[64];
  OnlineState st[2] = {empty_state(), empty_state()};
  auto load = [&](unsigned char* stage, int step) {
    const int tile = step / fb.nk, kt = step - tile * fb.nk;
    const int64_t v0 = fb.c0 + int64_t(tile) * kBN;
    load_swizzled<T>(stage, H, a.dim, fb.r0, fb.rows, a.dim, kt);
    load_swizzled<T>(stage + kWgTileBytes, W, a.dim, v0, static_cast<int>(min64(kBN, fb.c1 - v0)), a.dim, kt);
  };
  auto retire = [&](const float (&part)[64], int it) {
    const int tile = it / fb.nk, kt = it - tile * fb.nk;
#pragma unroll
    for (int i = 0; i < 64; ++i) acc[i] = kt == 0 ? part[i] : acc[i] + part[i];
    if (kt != fb.nk - 1) return;
    const int64_t v0 = fb.c0 + int64_t(tile) * kBN;
    wg_fold_tile<T, kStats>(acc, L, s_tcol, B, a, fb.r0, v0, static_cast<int>(min64(kBN, fb.c1 - v0)), st);
  };
  wg_mainloop<T, 0>(smem, smem_address(smem), fb.ntiles * fb.nk, load, retire);

  wg_store_states(st, L, a, fb.r0, fb.rows, fb.slice);
}

// ------------------------------------------------------------------- wgmma fed by TMA (sm_90a)
// The TMA-fed tiles (lmheadTuning.path 'tma'): the wgmma tiles' blocks and arithmetic (the same bits as
// lm_fwd_wgmma_kernel, lm_grad_logits_wgmma_kernel, lm_gemm_wgmma_kernel) with the operands brought by
// TMA and the warps specialised (tma_mainloop): warps 0-7 (2 warpgroups) only wait and multiply, warp 8
// only loads. Its lane 0 walks the block's k-steps: waits until the stage's `empty` barrier says both
// warpgroups are done with its previous k-step, announces 32 KiB on its `full` barrier and issues the
// k-step's TMA copies (128-byte swizzled boxes: the K-major tile of 128 rows × 64 values, or the
// MN-major tile as two 64-row × 64-column boxes 8192 bytes apart; rows and columns outside a tensor
// arrive as zeros). Each consumer warpgroup waits on `full`, issues its 4 MMAs, waits for them, lets
// each of its warps arrive on `empty` (8 arrivals), then flushes (and, in the forward, folds a finished
// tile) while the other warpgroup's MMAs run: no block-wide barrier inside the loop. 6 stages of 32 KiB.
// 2 consumer warpgroups + a producer warp; with kOverlap a producer warpgroup, which gives its registers
// to the consumers (setmaxnreg: 24 each for its 128 threads, the least there is, and 240 for the 256
// consumers' two sets of k-step sums, the running sums and the fold: 64512 of the SM's 65536; ptxas:
// no spills in the overlapping kernels, 56–64 bytes in lm_fwd_tma_wide_kernel, against 16–32 and 68–84
// at 40 / 232).
template <bool kOverlap>
constexpr int kTmaThreadsOf = kThreads + (kOverlap ? 128 : 32);
constexpr int kProducerRegs = 24, kConsumerRegs = 240;
// A barrier of the consumer warpgroups after tma_mainloop (with kOverlap the producers have exited).
template <bool kOverlap>
__device__ __forceinline__ void tma_consumers_sync() {
  if constexpr (kOverlap)
    named_barrier_sync<1, kThreads>();
  else
    __syncthreads();
}

// The k-steps [0, steps): issue(stage, step, bar) (the producer's lane) issues a k-step's copies into a
// stage (A's tile at stage, B's at stage + kWgTileBytes) completing on bar; retire(part, step) (every
// consumer thread) takes the k-step's MMA sums, in step order. Every thread of the block calls it; it
// returns when both roles are done (the block's stages then hold no copy in flight).
// kOverlap (lmheadTuning.path 'tma-overlap'): a warpgroup keeps one k-step's MMAs in flight, into the
// other of two `part` sets, while it waits for, releases and retires the one before (wgmma_wait<1>), so
// its tensor cores need not idle through the flush and the tile's fold; else it waits for every k-step's
// MMAs before the next (wgmma_wait<0>). The same MMAs and retire calls in the same order: the same bits.
template <class T, int kTransB, bool kOverlap, class Issue, class Retire>
__device__ __forceinline__ void tma_mainloop(unsigned char* smem, int steps, const Issue& issue, const Retire& retire) {
  const TmaPipe pipe(smem);
  const int tid = threadIdx.x;
  pipe.init(kThreads / 32);
  if (tid >= kThreads) {  // the producer warp (warpgroup)
    if constexpr (kOverlap) warpgroup_registers_down<kProducerRegs>();
    if (tid == kThreads) pipe.produce(steps, issue);
    if constexpr (kOverlap) thread_exit();  // the consumers' code after the loop is theirs alone
    return;
  }
  if constexpr (kOverlap) warpgroup_registers_up<kConsumerRegs>();
  const uint32_t wg = uint32_t(tid >> 7);
  // k-step `step`'s MMAs into `part` once its stage is full (committed, not waited for).
  auto start = [&](float (&part)[64], int step) {
    const uint32_t stage = pipe.acquire(step);
    wg_kstep<T, kTransB>(part, stage + wg * 64u * 128u, stage + uint32_t(kWgTileBytes));
  };
  // k-step `step`'s MMAs (in `part`) done: its stage back to the producer, its sums to retire.
  auto finish = [&](float (&part)[64], int step) {
    wgmma_fence_regs(part);
    pipe.release(step);
    retire(part, step);
  };
  if constexpr (!kOverlap) {
    float part[64];
    for (int step = 0; step < steps; ++step) {
      start(part, step);
      wgmma_wait<0>();
      finish(part, step);
    }
  } else {
    // Even k-steps in pa, odd ones in pb (registers: no dynamic index); no branch inside the loop, so
    // that nothing but wgmma touches the sums in flight.
    float pa[64], pb[64];
    if (steps <= 0) return;
    start(pa, 0);
    int step = 1;
    for (; step + 1 < steps; step += 2) {
      start(pb, step);
      wgmma_wait<1>();
      finish(pa, step - 1);
      start(pa, step + 1);
      wgmma_wait<1>();
      finish(pb, step);
    }
    if (step < steps) {
      start(pb, step);
      wgmma_wait<1>();
      finish(pa, step - 1);
      wgmma_wait<0>();
      finish(pb, step);
    } else {
      wgmma_wait<0>();
      finish(pa, step - 1);
    }
  }
}

template <class T, bool kStats, bool kOverlap>
__global__ void __launch_bounds__(kTmaThreadsOf<kOverlap>, 1)
    lm_fwd_tma_kernel(FwdArgs a, const __grid_constant__ CUtensorMap tmap_h, const __grid_constant__ CUtensorMap tmap_w) {
  GK_DYNAMIC_SMEM(unsigned char, smem_raw);
  __shared__ int s_tcol[kBM];
  unsigned char* smem = wg_stages(smem_raw);
  const T* B = static_cast<const T*>(a.bias);
  const FwdBlock fb(a, kWgBK);
  target_columns(s_tcol, a, fb.r0, fb.rows);  // read after tma_mainloop's first barrier
  const WgLane L;
  float acc[64];
  OnlineState st[2] = {empty_state(), empty_state()};
  tma_mainloop<T, 0, kOverlap>(
      smem, fb.ntiles * fb.nk,
      [&](unsigned char* stage, int step, uint64_t* bar) {
        const int tile = step / fb.nk, kt = step - tile * fb.nk;
        tma_load_2d(stage, &tmap_h, kt * kWgBK, static_cast<int32_t>(fb.r0), bar);
        tma_load_2d(stage + kWgTileBytes, &tmap_w, kt * kWgBK, static_cast<int32_t>(fb.c0 + int64_t(tile) * kBN), bar);
      },
      [&](const float (&part)[64], int step) {
        const int tile = step / fb.nk, kt = step - tile * fb.nk;
#pragma unroll
        for (int i = 0; i < 64; ++i) acc[i] = kt == 0 ? part[i] : acc[i] + part[i];
        if (kt != fb.nk - 1) return;
        const int64_t v0 = fb.c0 + int64_t(tile) * kBN;
        wg_fold_tile<T, kStats>(acc, L, s_tcol, B, a, fb.r0, v0, static_cast<int>(min64(kBN, fb.c1 - v0)), st);
      });
  if (threadIdx.x < kThreads) wg_store_states(st, L, a, fb.r0, fb.rows, fb.slice);
}

// lm_fwd_tma_wide_kernel (lmheadTuning.path 'tma-wide', path 5; verified on an H200, 2026-11-28): lm_fwd_tma_kernel's
// forward in 128 × 256 tiles, so each landed hidden tile serves twice the MMAs: L2 bytes per k-step 48 KiB
// for 4.2 MFLOP instead of 32 KiB for 2.1 (the H200's 349 TFLOP/s drew 5.4 TB/s from L2). A k-step's
// stage holds the hidden rows' tile and the weight's 256 rows as two 128-row boxes (48 KiB; 4 stages,
// wgmma_tiles.cuh's TmaPipeOf). A warpgroup multiplies the k-step into its sums (part) against each
// 128-row half of B in turn (lm_fwd_tma_kernel's 4 MMAs), waits, and adds them to that half's running
// logits (acc, acc_hi: the flush, per half), then hands the stage back; at the tile's last k-step it
// folds the first half and then the second (wg_fold_tile), as lm_fwd_tma_kernel folds its tiles 2t and
// 2t + 1. Every logit takes the same MMAs and flushes, and every state the same folds in the same
// order: lm_fwd_tma_kernel's bits. The sums need 192 registers, so the producer is a warpgroup that
// gives its registers to the consumers (setmaxnreg 24 / 240, as 'tma-overlap') and exits; its lane 0
// issues the 3 boxes of each k-step (a box past the slice reads the next slice's rows or zeros past the
// tensor: folded as −Inf, never read). The backward's kernels in 256-column tiles are below.
// kCtas = 2 (lmheadTuning.path 'tma-cluster', path 6; verified on an H200): the same kernels launched in
// clusters of 2 blocks along x (launch_clustered), i.e. two row blocks of the same weight rows (the
// forward's and G's) or two row blocks of C over the same B columns (the GEMMs): block rank h loads
// only B's half h and multicasts it into both blocks' stages (tma_load_2d_multicast), so each block
// draws 32 KiB of a k-step's 48 from L2 (128 FLOPs per L2 byte; 'tma-wide' 85, 'tma' 64, whose 349
// TFLOP/s on the H200 drew 5.4 TB/s of operands from L2); WidePipeOf<2> makes a stage wait for both
// blocks' consumers. The MMAs, flushes and folds are untouched: 'tma-wide''s bits, so 'tma''s.
// Only where grid.x is even (the launchers fall back to kCtas = 1 otherwise, with the same bits);
// every shared value of these kernels lives in dynamic shared memory (the emulator's __shared__ is one
// static for a whole cluster).
template <int kCtas>
using WidePipeOf = TmaPipeOf<3 * kWgTileBytes, 4, kCtas>;
using WidePipe = WidePipeOf<1>;  // (lm_grad_logits_tma_wide_kernel, lm_gemm_tma_wide_kernel too)
static_assert(WidePipeOf<2>::kSmemBytes == WidePipe::kSmemBytes, "one shared-memory size for both");

// A TMA box into this block's stage (cta_mask 0) or multicast to the cluster's blocks in cta_mask.
__device__ __forceinline__ void tma_box(void* dst, const CUtensorMap* map, int32_t c0, int32_t c1, uint64_t* bar,
                                        uint16_t cta_mask) {
  if (cta_mask != 0)
    tma_load_2d_multicast(dst, map, c0, c1, bar, cta_mask);
  else
    tma_load_2d(dst, map, c0, c1, bar);
}
// The B boxes of a wide k-step: load(half, dst, cta_mask) for both 128-column halves (kCtas 1), or, in a
// cluster of 2, for the half of this block's rank only, multicast into both blocks' stages.
template <int kCtas, class LoadHalf>
__device__ __forceinline__ void wide_b_halves(unsigned char* stage, const LoadHalf& load) {
  static_assert(kCtas == 1 || kCtas == 2, "clusters of 1 or 2 blocks");
  if constexpr (kCtas == 1) {
    load(0, stage + kWgTileBytes, uint16_t(0));
    load(1, stage + 2 * kWgTileBytes, uint16_t(0));
  } else {
    const int h = static_cast<int>(cluster_cta_rank());
    load(h, stage + (1 + h) * kWgTileBytes, uint16_t(3));
  }
}

// The wide kernels' block order (grouped rasterisation). The GPU starts a grid's blocks in linear order,
// blockIdx.x fastest, x being the row blocks (of hidden, G or C) and y the column blocks (slices, weight
// rows, C's columns): the ~132 resident blocks then cover every row block and two column blocks, and at
// N 8192, d 4096 their row panels alone (1 MiB each) overflow the 50 MiB L2, so each block's A comes
// from DRAM again for every tile. Here block b of the linear order is row block x, column block y of
// groups of kRasterRows row blocks, walked x-fastest for each y before the next group: the resident
// blocks share 16 row panels and about 8 column panels (~33 MiB). Pairs (2k, 2k + 1) of blockIdx.x stay
// pairs of x with one y (kRasterRows even, and a cluster needs gridDim.x even), so a cluster still shares
// its B. Which block does what changes, never what it does: the same bits. `group`: the args' raster
// (a test hook, so that small grids take the same arithmetic as large ones; 0: kRasterRows), made even.
constexpr unsigned kRasterRows = 16;
struct RasterBlock {
  unsigned x, y;
};
__device__ __forceinline__ RasterBlock raster_block(unsigned group) {
  static_assert(kRasterRows % 2 == 0, "clusters of 2 along x keep their pairs");
  const unsigned g = group == 0 ? kRasterRows : max(2u, group & ~1u);
  const unsigned lin = blockIdx.x + gridDim.x * blockIdx.y, per_group = g * gridDim.y;
  const unsigned first = lin / per_group * g, within = lin % per_group;
  const unsigned rows = min(g, gridDim.x - first);  // the last group's may be fewer
  return {first + within % rows, within / rows};
}

// The 128 × 256 loops' start: the stages' barriers set up, then the producer warpgroup gives its
// registers to the consumers, its lane issues the k-steps [0, steps) (issue as tma_wide_mainloop's) and
// it exits; the consumers take their registers and the pipe.
template <int kCtas, class Issue>
__device__ __forceinline__ WidePipeOf<kCtas> wide_pipe_start(unsigned char* smem, int steps, const Issue& issue) {
  const WidePipeOf<kCtas> pipe(smem);
  pipe.init(kThreads / 32);
  const int tid = threadIdx.x;
  if (tid >= kThreads) {  // the producer warpgroup
    warpgroup_registers_down<kProducerRegs>();
    if (tid == kThreads) pipe.produce(steps, issue);
    thread_exit();
  }
  warpgroup_registers_up<kConsumerRegs>();
  return pipe;
}

// The k-steps [0, steps) of a 128 × 256 tile: issue(stage, step, bar) (the producer's lane) issues a
// k-step's copies (A's tile at stage, B's 128-column halves at stage + kWgTileBytes and + 2·kWgTileBytes)
// completing on bar; retire(half, part, step) (every consumer thread) takes each half's MMA sums in turn,
// half 0 before half 1's MMAs are issued. The producer warpgroup gives its registers to the consumers and
// exits; every consumer thread returns with every MMA done (the stages may still be read by no one).
template <class T, int kTransB, int kCtas, class Issue, class Retire>
__device__ __forceinline__ void tma_wide_mainloop(unsigned char* smem, int steps, const Issue& issue,
                                                  const Retire& retire) {
  const WidePipeOf<kCtas> pipe = wide_pipe_start<kCtas>(smem, steps, issue);
  const uint32_t wg = threadIdx.x >> 7;
  float part[64];
  for (int step = 0; step < steps; ++step) {
    const uint32_t stage = pipe.acquire(step), sa = stage + wg * 64u * 128u;
#pragma unroll
    for (int half = 0; half < 2; ++half) {
      wg_kstep<T, kTransB>(part, sa, stage + uint32_t((1 + half) * kWgTileBytes));
      wgmma_wait<0>();
      wgmma_fence_regs(part);
      if (half == 1) pipe.release(step);
      retire(half, part, step);
    }
  }
}

// d = c, each value written by an ALU instruction (x + −0 is x, −0 included): registers that chained
// wgmma take over must not be defined by a load (ptxas then serialises the wgmma: C7515).
__device__ __forceinline__ void settle_regs(float (&d)[64], const float (&c)[64]) {
#pragma unroll
  for (int i = 0; i < 64; ++i) {
#if defined(GK_CUDA_EMU)
    d[i] = c[i];
#else
    asm volatile("add.rn.f32 %0, %1, 0f80000000;\n" : "=f"(d[i]) : "f"(c[i]));
#endif
  }
}

// kChain (lmheadTuning.path 'tma-chain', path 7; 'tma-chain-cluster', path 8, in clusters of 2 as
// 'tma-cluster'; verified on an H200; 7 is `auto`): the wide kernels without the flush. Each half's sums (acc, acc_hi)
// run on the tensor cores over all of a tile's k-steps (wgmma chained onto the same accumulators, as
// CUTLASS's and cuBLAS's GEMMs do), so a warpgroup issues k-step kt's MMAs while kt − 1's still run and
// never waits for a flush: it waits for kt − 1's MMAs only to hand that stage back (wgmma_wait<2>, two
// groups a k-step), and for all of them at a tile's end, where its epilogue runs. No `part`: 128
// accumulator registers. Numerics: the tensor cores truncate each MMA's sum toward zero, here the
// running sum's, once per 16 products over all of d (the flush: 4 truncations of a fresh k-step sum per
// 64), so a logit's relative error grows to about (d/16)·2^-23 (about 4e-6 at d 896, 2e-5 at 4096), as in
// PyTorch's materialised bf16 logits. Bits: its own, deterministic and batch invariant as every path's
// (a row's logits come from the same chained MMAs whatever rows share its tile); the GEMMs start from C
// (f32, exact) and chain on, so a sum split over chunks has the bits of one long chain.
// tma_chain_mainloop: the tiles [0, tiles) of nk k-steps each; issue as tma_wide_mainloop's; begin(tile)
// (every consumer thread) readies acc and acc_hi and says whether the tile's first MMAs add to them (the
// GEMMs' C) or overwrite them; end(tile) takes the tile's sums once all its MMAs are done.
template <class T, int kTransB, int kCtas, class Issue, class Begin, class End>
__device__ __forceinline__ void tma_chain_mainloop(unsigned char* smem, int tiles, int nk, float (&acc)[64],
                                                   float (&acc_hi)[64], const Issue& issue, const Begin& begin,
                                                   const End& end) {
  const WidePipeOf<kCtas> pipe = wide_pipe_start<kCtas>(smem, tiles * nk, issue);
  const uint32_t wg = threadIdx.x >> 7;
  for (int tile = 0; tile < tiles; ++tile) {
    const bool add = begin(tile);
    for (int kt = 0; kt < nk; ++kt) {
      const int step = tile * nk + kt;
      const uint32_t stage = pipe.acquire(step), sa = stage + wg * 64u * 128u;
      wg_kstep<T, kTransB>(acc, sa, stage + uint32_t(kWgTileBytes), add || kt > 0);
      wg_kstep<T, kTransB>(acc_hi, sa, stage + uint32_t(2 * kWgTileBytes), add || kt > 0);
      if (kt > 0) {
        wgmma_wait<2>();         // k-step kt − 1's MMAs done (kt's run on) ...
        pipe.release(step - 1);  // ... so its stage goes back
      }
    }
    wgmma_wait<0>();
    wgmma_fence_regs(acc);
    wgmma_fence_regs(acc_hi);
    pipe.release(tile * nk + nk - 1);
    end(tile);
  }
}

// The wide forward's dynamic shared memory: the stages, then each row's target column (s_tcol).
constexpr size_t kWideFwdSmemBytes = WidePipe::kSmemBytes + kBM * sizeof(int);

// A wide forward k-step's boxes (the producer's lane): the block's hidden rows, then the weight's 256
// rows of 256-column tile step / nk (wide_b_halves).
template <int kCtas>
__device__ __forceinline__ void fwd_wide_boxes(const FwdBlock& fb, const CUtensorMap* th, const CUtensorMap* tw,
                                               unsigned char* stage, int step, uint64_t* bar) {
  const int tile = step / fb.nk, kt = step - tile * fb.nk;
  const int32_t v0 = static_cast<int32_t>(fb.c0 + int64_t(tile) * 2 * kBN);
  tma_load_2d(stage, th, kt * kWgBK, static_cast<int32_t>(fb.r0), bar);
  wide_b_halves<kCtas>(stage, [&](int half, unsigned char* dst, uint16_t mask) {
    tma_box(dst, tw, kt * kWgBK, v0 + half * kBN, bar, mask);
  });
}

template <class T, bool kStats, int kCtas, bool kChain>
__global__ void __launch_bounds__(kTmaThreadsOf<true>, 1)
    lm_fwd_tma_wide_kernel(FwdArgs a, const __grid_constant__ CUtensorMap tmap_h,
                           const __grid_constant__ CUtensorMap tmap_w) {
  GK_DYNAMIC_SMEM(unsigned char, smem_raw);
  unsigned char* stages = wg_stages(smem_raw);
  int* s_tcol = reinterpret_cast<int*>(WidePipe(stages).end());
  const T* B = static_cast<const T*>(a.bias);
  const RasterBlock rb = raster_block(a.raster);
  const FwdBlock fb(a, kWgBK, rb.x, rb.y);
  target_columns(s_tcol, a, fb.r0, fb.rows);  // read after tma_wide_mainloop's first barrier
  const WgLane L;
  float acc[64], acc_hi[64];
  OnlineState st[2] = {empty_state(), empty_state()};
  const int tiles = (fb.ntiles + 1) / 2;  // 256-column tiles of the slice
  auto issue = [&](unsigned char* stage, int step, uint64_t* bar) {
    fwd_wide_boxes<kCtas>(fb, &tmap_h, &tmap_w, stage, step, bar);
  };
  // Half `half` of 256-column tile `tile`: its logits into my rows' states.
  auto fold = [&](int half, const float (&sums)[64], int tile) {
    const int64_t v0 = fb.c0 + int64_t(tile) * 2 * kBN + half * kBN;
    if (v0 < fb.c1)
      wg_fold_tile<T, kStats>(sums, L, s_tcol, B, a, fb.r0, v0, static_cast<int>(min64(kBN, fb.c1 - v0)), st);
  };
  if constexpr (kChain) {
    tma_chain_mainloop<T, 0, kCtas>(
        stages, tiles, fb.nk, acc, acc_hi, issue, [](int) { return false; },
        [&](int tile) {
          fold(0, acc, tile);
          fold(1, acc_hi, tile);
        });
  } else {
    tma_wide_mainloop<T, 0, kCtas>(stages, tiles * fb.nk, issue, [&](int half, const float (&part)[64], int step) {
      const int tile = step / fb.nk, kt = step - tile * fb.nk;
      float(&sums)[64] = half == 0 ? acc : acc_hi;
#pragma unroll
      for (int i = 0; i < 64; ++i) sums[i] = kt == 0 ? part[i] : sums[i] + part[i];
      // A half's logits are done at the tile's last k-step: folded (the first before the second's MMAs).
      if (kt == fb.nk - 1) fold(half, sums, tile);
    });
  }
  wg_store_states(st, L, a, fb.r0, fb.rows, fb.slice);
}

__device__ __forceinline__ OnlineState row_slices(const float4* partial, int64_t row, int slices, float scale2) {
  OnlineState st = empty_state();
  for (int k = 0; k < slices; ++k) {
    const float4 v = partial[row * slices + k];
    st = state_merge(st, OnlineState{v.x, v.y, v.z, v.w}, scale2);
  }
  return st;
}

// One thread per row: the outputs of linearLogprobs from the row's slices (logprobs.cu's finish_row).
__global__ void lm_finish_kernel(const float4* __restrict__ partial, int slices, int64_t rows,
                                 const int* __restrict__ targets, const float* __restrict__ xt, int64_t vocab,
                                 int ignore, float scale2, float inv_t, FwdOut o, ErrorFlags* flags) {
  const int64_t row = blockIdx.x * int64_t(blockDim.x) + threadIdx.x;
  if (row >= rows) return;
  const int tgt = targets[row];
  if (tgt == ignore) {
    write_row(o, row, 0.f, 0.f, 0.f, 0.f);
    return;
  }
  const OnlineState st = row_slices(partial, row, slices, scale2);
  finish_row(row, st, vocab, tgt, (tgt >= 0 && tgt < vocab) ? xt[row] : 0.f, inv_t, o, flags);
}

// One thread per row: the public state (natural-log sums; LogprobStates) from the row's slices.
__global__ void lm_state_kernel(const float4* __restrict__ partial, int slices, int64_t rows,
                                const int* __restrict__ targets, const float* __restrict__ xt, int64_t vocab_start,
                                int64_t vocab, int ignore, float scale2, StateArrays out) {
  const int64_t row = blockIdx.x * int64_t(blockDim.x) + threadIdx.x;
  if (row >= rows) return;
  const int tgt = targets[row];
  OnlineState st{0.f, 0.f, 0.f, 0.f};
  float x = 0.f;
  if (tgt != ignore) {
    st = row_slices(partial, row, slices, scale2);
    const int64_t c = int64_t(tgt) - vocab_start;
    if (c >= 0 && c < vocab) x = xt[row];
  }
  out.max[row] = st.m;
  out.sum_exp[row] = st.s;
  if (out.sum_exp_delta) out.sum_exp_delta[row] = kLn2 * st.t;  // Σ 2^d·d in base 2 → Σ e^d·d
  if (out.sum_exp_sq) out.sum_exp_sq[row] = st.q;
  out.target_logit[row] = x;
}

// ---------------------------------------------------------------------------------- backward
struct BwdRowScalars {
  int tgt;      // the target (as given)
  bool live;    // not ignored and in range
  float g;      // gradLogprobs / T
  float ge;     // gradEntropy / T (kEnt)
  float h;      // entropy (kEnt)
  float lse2;   // lse · log2e
  float scale2; // log2e / T (FLT_MIN when lse = +Inf: every p is 0)
};

// logprobs.cu's grad_of: the gradient of one logit x (bias included).
template <bool kEnt>
__device__ __forceinline__ float grad_of(const BwdRowScalars& r, float x, bool is_target) {
  const float lp2 = fmaf(x, r.scale2, -r.lse2);
  const float p = ex2_ftz(lp2);
  float out = r.g * ((is_target ? 1.f : 0.f) - p);
  if (kEnt) {
    const float term = p > 0.f ? p * fmaf(lp2, kLn2, r.h) : 0.f;
    out = fmaf(-r.ge, term, out);
  }
  return out;
}

struct GradArgs {
  const void* hidden;
  const void* weight;
  const void* bias;
  const int* targets;
  const float* lse;
  const float* glp;
  const float* gent;
  const float* ent;
  int64_t rows, dim, vocab;  // this chunk's rows; the targets' range (flags)
  int64_t row0, v0, vcount;  // the chunk: global first row, first weight row, its width
  int64_t vocab_start;       // the shard's first row in the head
  int ignore;
  float scale2, inv_t;
  bool h_vec16, w_vec16;
  void* gc;  // [rows][gcols]
  void* gt;  // [gcols][grows]
  int64_t gcols, grows;
  ErrorFlags* flags;
  unsigned raster = 0;  // the wide kernels' row blocks per group (raster_block; 0: kRasterRows)
  // f16 inputs (lm_grad_scale_kernel; null otherwise): Gc holds G·rscale[row], Gt G·gscale[0].
  const float* rscale = nullptr;  // [rows of the call], powers of two
  const float* gscale = nullptr;  // [1], a power of two ≤ every rscale of a live row
};

// The scalars of row r0 + r of the chunk (live: r is inside the tile); a target out of range raises
// kFlagTargetRange once per row (raise: the one thread that does).
template <bool kEnt>
__device__ __forceinline__ BwdRowScalars row_scalars(const GradArgs& a, int64_t r, bool live, bool raise) {
  BwdRowScalars s{};
  s.live = false;
  if (!live) return s;
  const int64_t row = a.row0 + r;
  s.tgt = a.targets[row];
  const bool ignored = s.tgt == a.ignore;
  const bool bad = !ignored && (s.tgt < 0 || s.tgt >= a.vocab);
  if (bad && raise) raise_flag(a.flags, kFlagTargetRange, static_cast<int>(row), s.tgt);
  s.live = !ignored && !bad;
  if (s.live) {
    s.g = a.glp[row] * a.inv_t;
    s.lse2 = a.lse[row] * kLog2e;
    s.ge = kEnt ? a.gent[row] * a.inv_t : 0.f;
    s.h = kEnt ? a.ent[row] : 0.f;
    s.scale2 = s.lse2 == INFINITY ? FLT_MIN : a.scale2;
  }
  return s;
}

// Row r of the chunk's G scale for Gc (f16 inputs: lm_grad_scale_kernel's; else, or a dead row, 1; the
// other instantiations compile none of it).
template <class T>
__device__ __forceinline__ float row_scale(const GradArgs& a, int64_t r, bool live) {
  if constexpr (std::is_same_v<T, __half>) return a.rscale && live ? a.rscale[a.row0 + r] : 1.f;
  else return 1.f;
}

// A G tile staged in shared memory (gs [kBM][Smem<T>::kLdN], rows × cols valid) to Gc rows (coalesced
// along v) and Gt rows (coalesced along n), 16 bytes per copy where whole. With f16 scales (rscale), Gt
// holds Gc's value times gscale/rscale[row] (a power of two ≤ 1: exact but where it becomes subnormal).
template <class T>
__device__ __forceinline__ void store_g_tile(const T* gs, const GradArgs& a, int64_t r0, int64_t vt, int rows,
                                             int cols) {
  using S = Smem<T>;
  constexpr int E = 16 / int(sizeof(T));
  T* gc = static_cast<T*>(a.gc);
  T* gt = static_cast<T*>(a.gt);
  for (int i = threadIdx.x; i < kBM * (kBN / E); i += kThreads) {
    const int r = i / (kBN / E), c = (i % (kBN / E)) * E;
    if (r >= rows || c >= cols) continue;
    T* dst = gc + (r0 + r) * a.gcols + vt + c;
    if (c + E <= cols) {
      *reinterpret_cast<uint4*>(dst) = *reinterpret_cast<const uint4*>(gs + r * S::kLdN + c);
    } else {
      for (int e = 0; c + e < cols; ++e) dst[e] = gs[r * S::kLdN + c + e];
    }
  }
  for (int i = threadIdx.x; i < kBN * (kBM / E); i += kThreads) {
    const int c = i / (kBM / E), r = (i % (kBM / E)) * E;
    if (c >= cols || r >= rows) continue;
    T* dst = gt + (vt + c) * a.grows + r0 + r;
    alignas(16) T v[E];
#pragma unroll
    for (int e = 0; e < E; ++e) v[e] = gs[(r + e) * S::kLdN + c];
    if (std::is_same_v<T, __half> && a.rscale) {
#pragma unroll
      for (int e = 0; e < E; ++e)
        if (r + e < rows) v[e] = from_f32<T>(load_f32(v + e) * (a.gscale[0] / a.rscale[a.row0 + r0 + r + e]));
    }
    if (r + E <= rows) {
      *reinterpret_cast<uint4*>(dst) = *reinterpret_cast<const uint4*>(v);
    } else {
      for (int e = 0; r + e < rows; ++e) dst[e] = v[e];
    }
  }
}

template <class T, bool kEnt>
__global__ void __launch_bounds__(kThreads, 1) lm_grad_logits_kernel(GradArgs a) {
  using S = Smem<T>;
  GK_DYNAMIC_SMEM(unsigned char, smem);
  const T* H = static_cast<const T*>(a.hidden);
  const T* W = static_cast<const T*>(a.weight);
  const T* B = static_cast<const T*>(a.bias);
  const Lane L;
  const int64_t r0 = int64_t(blockIdx.x) * kBM;  // within the chunk
  const int64_t vt = int64_t(blockIdx.y) * kBN;  // within the chunk
  const int rows = static_cast<int>(min64(kBM, a.rows - r0));
  const int cols = static_cast<int>(min64(kBN, a.vcount - vt));
  const int nk = max(1, static_cast<int>((a.dim + kBK - 1) / kBK));
  const int m_tiles = active_tiles(rows, L.wm * kWarpM, 16, kMT);
  const int n_tiles = active_tiles(cols, L.wn * kWarpN, 8, kNT);

  Frag acc, part;
  zero(acc);
  zero(part);
  pipeline(
      nk,
      [&](int slot, int kt) {
        load_logits_stage<T>(smem + size_t(slot) * S::kFwdStage, H, a.row0 + r0, rows, W, a.v0 + vt, cols, a.dim, kt,
                             a.h_vec16, a.w_vec16);
      },
      [&](int slot, int) {
        const unsigned char* stage = smem + size_t(slot) * S::kFwdStage;
        block_kstep<T, BLayout::KMajor>(part, reinterpret_cast<const T*>(stage),
                                        reinterpret_cast<const T*>(stage + S::kKMajor), L.wm, L.wn, L.g8, L.t4,
                                        m_tiles, n_tiles);
        flush(acc, part);
      });

  // G of the tile, rounded to T, into shared memory [kBM][kLdN] (the stages are free).
  static_assert(S::kTileBytes <= S::kFwdBytes, "the G tile reuses the stages");
  T* gs = reinterpret_cast<T*>(smem);
  float bv[kNT][2];
#pragma unroll
  for (int ni = 0; ni < kNT; ++ni)
#pragma unroll
    for (int e = 0; e < 2; ++e) {
      const int c = L.col(ni, e);
      bv[ni][e] = c < cols ? bias_at(B, a.v0 + vt + c) : 0.f;
    }
#pragma unroll
  for (int mi = 0; mi < kMT; ++mi)
#pragma unroll
    for (int h = 0; h < 2; ++h) {
      const int r = L.row(mi, h);
      const BwdRowScalars s = row_scalars<kEnt>(a, r0 + r, r < rows, blockIdx.y == 0 && L.col(0, 0) == 0);
      const float rs = row_scale<T>(a, r0 + r, s.live);
#pragma unroll
      for (int ni = 0; ni < kNT; ++ni)
#pragma unroll
        for (int e = 0; e < 2; ++e) {
          const int c = L.col(ni, e);
          float g = 0.f;
          if (s.live && c < cols) {
            const int64_t v = a.v0 + vt + c;
            g = grad_of<kEnt>(s, acc[mi][ni][2 * h + e] + bv[ni][e], v + a.vocab_start == s.tgt) * rs;
          }
          gs[r * S::kLdN + c] = from_f32<T>(g);
        }
    }
  __syncthreads();
  store_g_tile<T>(gs, a, r0, vt, rows, cols);
}

struct GemmArgs {
  const void* a;  // [m][lda], k-major (k contiguous)
  int64_t lda;
  const void* b;  // [k][ldb], MN-major (n contiguous)
  int64_t ldb;
  const float* c_in;  // [m][ldc] f32: each element runs on from its value (null: from 0)
  void* c;            // [m][ldc] the result: f32, or T (narrow: the sum's last chunk, rounded once)
  int64_t ldc;
  int64_t m, n, k;
  bool narrow, b_vec16;
  unsigned raster = 0;  // the wide kernels' row blocks per group (raster_block; 0: kRasterRows)
  // A's scale (f16 G; null: 1): row r of C (gradHidden: stride 1) or all of C (gradWeight: stride 0)
  // runs scaled by cscale[r·stride], a power of two: C_in is multiplied by it, the result divided.
  const float* cscale = nullptr;
  int64_t cscale_stride = 0;
};

// C row r's scale (see GemmArgs::cscale; f16 operands only: the other instantiations compile none of it).
template <class T>
__device__ __forceinline__ float c_scale(const GemmArgs& g, int64_t r) {
  if constexpr (std::is_same_v<T, __half>) return g.cscale ? g.cscale[r * g.cscale_stride] : 1.f;
  else return 1.f;
}

// C = C_in + A·B over one 128 × 128 tile of C (C_in: a running f32 sum, or 0), stored as f32 or, on a
// sum's last chunk of f16/bf16 gradients, rounded once to T.
template <class T>
__global__ void __launch_bounds__(kThreads, 1) lm_gemm_kernel(GemmArgs g) {
  using S = Smem<T>;
  GK_DYNAMIC_SMEM(unsigned char, smem);
  const T* A = static_cast<const T*>(g.a);
  const T* Bm = static_cast<const T*>(g.b);
  const Lane L;
  const int64_t m0 = int64_t(blockIdx.x) * kBM, n0 = int64_t(blockIdx.y) * kBN;
  const int rows = static_cast<int>(min64(kBM, g.m - m0));
  const int cols = static_cast<int>(min64(kBN, g.n - n0));
  const int m_tiles = active_tiles(rows, L.wm * kWarpM, 16, kMT);
  const int n_tiles = active_tiles(cols, L.wn * kWarpN, 8, kNT);
  const int nk = static_cast<int>((g.k + kBK - 1) / kBK);
  const bool pair = (g.ldc & 1) == 0;  // float2 stores: even rows of C stay 8-byte aligned

  Frag acc, part;
  zero(part);
#pragma unroll
  for (int mi = 0; mi < kMT; ++mi)
#pragma unroll
    for (int ni = 0; ni < kNT; ++ni)
#pragma unroll
      for (int e = 0; e < 4; ++e) {
        const int r = L.row(mi, e >> 1), c = L.col(ni, e & 1);
        acc[mi][ni][e] =
            g.c_in && r < rows && c < cols ? g.c_in[(m0 + r) * g.ldc + n0 + c] * c_scale<T>(g, m0 + r) : 0.f;
      }
  pipeline(
      nk,
      [&](int slot, int kt) {
        unsigned char* stage = smem + size_t(slot) * S::kGemmStage;
        T* As = reinterpret_cast<T*>(stage);
        T* Bs = reinterpret_cast<T*>(stage + S::kKMajor);
        const int64_t k0 = int64_t(kt) * kBK;
        const int ar = L.tid >> 1, ah = L.tid & 1;  // A: tile row tid/2, k offset 16·(tid mod 2)
        copy16<T>(As + ar * S::kLdK + ah * 16, A + (ar < rows ? (m0 + ar) * g.lda : 0), k0 + ah * 16,
                  ar < rows ? g.k : 0, true);
        const int br = L.tid >> 3, bp = L.tid & 7;  // B: k-row tid/8, columns 16·(tid mod 8)
        const bool bok = k0 + br < g.k;
        copy16<T>(Bs + br * S::kLdN + bp * 16, Bm + (bok ? (k0 + br) * g.ldb : 0), n0 + bp * 16, bok ? g.n : 0,
                  g.b_vec16);
      },
      [&](int slot, int) {
        const unsigned char* stage = smem + size_t(slot) * S::kGemmStage;
        block_kstep<T, BLayout::MNMajor>(part, reinterpret_cast<const T*>(stage),
                                         reinterpret_cast<const T*>(stage + S::kKMajor), L.wm, L.wn, L.g8, L.t4,
                                         m_tiles, n_tiles);
        flush(acc, part);
      });
#pragma unroll
  for (int mi = 0; mi < kMT; ++mi)
#pragma unroll
    for (int ni = 0; ni < kNT; ++ni)
#pragma unroll
      for (int h = 0; h < 2; ++h) {
        const int r = L.row(mi, h), c = L.col(ni, 0);
        if (r >= rows || c >= cols) continue;
        const float un = 1.f / c_scale<T>(g, m0 + r);  // (exact: a power of two)
        const float x0 = acc[mi][ni][2 * h] * un, x1 = acc[mi][ni][2 * h + 1] * un;
        if (g.narrow) {
          T* out = static_cast<T*>(g.c) + (m0 + r) * g.ldc + n0 + c;
          out[0] = from_f32<T>(x0);
          if (c + 1 < cols) out[1] = from_f32<T>(x1);
          continue;
        }
        float* out = static_cast<float*>(g.c) + (m0 + r) * g.ldc + n0 + c;
        if (pair && c + 1 < cols) {
          *reinterpret_cast<float2*>(out) = make_float2(x0, x1);
        } else {
          out[0] = x0;
          if (c + 1 < cols) out[1] = x1;
        }
      }
}

// f16 inputs only: the powers of two G is scaled by before it is rounded to f16 for the tensor cores,
// so that small gradients stay in f16's normal range (2⁻¹⁴ and up) instead of losing their relative
// accuracy to its subnormals. Every |G_nv| ≤ B_n = |g_n|/T + |gE_n|/T·(1/e + H_n) (|1[v = y] − p| ≤ 1,
// p·|ln p + H| ≤ 1/e + H), so G·2^(15 − e) < 2^15 < f16's largest finite value when B_n < 2^e.
// rscale[n] = 2^(15 − e_n) from the row's own B_n (Gc: gradHidden, gradBias; a row's own scalars, so
// batch invariant); gscale[0] = 2^(15 − e) from the largest B_n of the call's live rows (Gt: gradWeight,
// whose sums run over every row), a power of two ≤ every live row's rscale. 1 where B_n is 0 or not
// finite (G is 0, NaN or ±Inf there) or the row is dead; exponents clamped to ±100. One block, a fixed
// max tree (a max is exact whatever the order). Bytes: 4 reads and 4 written per row.
constexpr int kScaleThreads = 1024;
__device__ __forceinline__ float pow2_scale_for(float b) {
  if (!(b > 0.f) || !isfinite(b)) return 1.f;
  int e;
  frexpf(b, &e);  // b < 2^e
  return ldexpf(1.f, max(-100, min(100, 15 - e)));
}
// Rows' inputs as the G kernels read them (row_scalars): live = not ignored and in [0, vocab).
__global__ void __launch_bounds__(kScaleThreads)
    lm_grad_scale_kernel(const int* __restrict__ targets, int ignore, int64_t vocab, const float* __restrict__ glp,
                         const float* gent, const float* ent, float inv_t, int64_t rows, float* rscale,
                         float* gscale) {
  __shared__ float best[kScaleThreads];
  float m = 0.f;
  for (int64_t n = threadIdx.x; n < rows; n += kScaleThreads) {
    const int tgt = targets[n];
    const bool live = tgt != ignore && tgt >= 0 && tgt < vocab;
    float b = 0.f;
    if (live) {
      b = fabsf(glp[n] * inv_t);
      if (gent) b += fabsf(gent[n] * inv_t) * (0.36787945f + fabsf(ent[n]));
    }
    rscale[n] = pow2_scale_for(b);
    if (isfinite(b)) m = fmaxf(m, b);
  }
  best[threadIdx.x] = m;
  for (int k = kScaleThreads / 2; k > 0; k >>= 1) {
    __syncthreads();
    if (int(threadIdx.x) < k) best[threadIdx.x] = fmaxf(best[threadIdx.x], best[threadIdx.x + k]);
  }
  if (threadIdx.x == 0) gscale[0] = pow2_scale_for(best[0]);
}

// One thread per column v of the chunk: gradBias[v] = in[v] (a running f32 sum, or 0) + Σ_n Gc[n][v], n
// ascending (f16: each term divided by its row's scale, rscale[n]); stored as f32, or rounded once to T
// (narrow: the sum's last chunk of f16/bf16 gradients).
template <class T>
__global__ void lm_grad_bias_kernel(const T* __restrict__ gc, int64_t gcols, int64_t rows, int64_t vcount,
                                    const float* in, void* out, bool narrow, const float* rscale) {
  const int64_t v = blockIdx.x * int64_t(blockDim.x) + threadIdx.x;
  if (v >= vcount) return;
  float s = in ? in[v] : 0.f;
  for (int64_t n = 0; n < rows; ++n)  // (Gc's row scales, f16: powers of two, undone exactly)
    s += std::is_same_v<T, __half> && rscale ? load_f32(gc + n * gcols + v) * (1.f / rscale[n])
                                             : load_f32(gc + n * gcols + v);
  if (narrow) static_cast<T*>(out)[v] = from_f32<T>(s);
  else static_cast<float*>(out)[v] = s;
}

// --------------------------------------------------------------------- backward on wgmma (sm_90a)
// lm_grad_logits_wgmma_kernel: lm_grad_logits_kernel's tile on wgmma_mainloop (K-major A and B, as the
// forward's), G formed from the thread's 2 rows × 32 columns, rounded to T, staged and stored as Gc
// and Gt by the same code. lm_gemm_wgmma_kernel: lm_gemm_kernel's C (+)= A·B with B MN-major through
// wgmma's transposed B (load_swizzled_mn); each element starts from C_in and every k-step's MMAs are
// flushed into it in round-to-nearest f32, so a sum split over chunks still has the bits of one long
// sum (of the wgmma path). Both for bf16 / f16 with 16-byte aligned rows; picked with the forward's.
// The wgmma tiles' G of a 128 × 128 tile from its logits (my 2 rows × 32 columns), rounded to T, into
// gs [kBM][Smem<T>::kLdN].
template <class T, bool kEnt>
__device__ __forceinline__ void wg_g_tile(const float (&acc)[64], const WgLane& L, const GradArgs& a, int64_t r0,
                                          int64_t vt, int rows, int cols, T* gs) {
  const T* B = static_cast<const T*>(a.bias);
#pragma unroll
  for (int h = 0; h < 2; ++h) {
    const int r = L.row(h);
    const BwdRowScalars s = row_scalars<kEnt>(a, r0 + r, r < rows, vt == 0 && L.t4 == 0);
    const float rs = row_scale<T>(a, r0 + r, s.live);
#pragma unroll
    for (int j = 0; j < 16; ++j)
#pragma unroll
      for (int e = 0; e < 2; ++e) {
        const int c = L.col(j, e);
        float g = 0.f;
        if (s.live && c < cols) {
          const int64_t v = a.v0 + vt + c;
          g = grad_of<kEnt>(s, acc[4 * j + 2 * h + e] + bias_at(B, v), v + a.vocab_start == s.tgt) * rs;
        }
        gs[r * Smem<T>::kLdN + c] = from_f32<T>(g);
      }
  }
}

// The wgmma GEMMs' C tile at (m0, n0) (rows × cols inside C): my accumulators from C_in (or 0) ...
template <class T>
__device__ __forceinline__ void wg_load_c(float (&acc)[64], const WgLane& L, const GemmArgs& g, int64_t m0, int64_t n0,
                                          int rows, int cols) {
#pragma unroll
  for (int h = 0; h < 2; ++h) {
    const int r = L.row(h);
    const float sc = r < rows ? c_scale<T>(g, m0 + r) : 1.f;
#pragma unroll
    for (int j = 0; j < 16; ++j)
#pragma unroll
      for (int e = 0; e < 2; ++e) {
        const int c = L.col(j, e);
        acc[4 * j + 2 * h + e] = g.c_in && r < rows && c < cols ? g.c_in[(m0 + r) * g.ldc + n0 + c] * sc : 0.f;
      }
  }
}

// ... and stored: f32 (pairs as float2 where C's rows keep 8-byte alignment) or, narrow, rounded to T.
template <class T>
__device__ __forceinline__ void wg_store_c(const float (&acc)[64], const WgLane& L, const GemmArgs& g, int64_t m0,
                                           int64_t n0, int rows, int cols) {
  const bool pair = (g.ldc & 1) == 0;
#pragma unroll
  for (int h = 0; h < 2; ++h) {
    const int r = L.row(h);
    if (r >= rows) continue;
    const float un = 1.f / c_scale<T>(g, m0 + r);  // (exact: a power of two)
#pragma unroll
    for (int j = 0; j < 16; ++j) {
      const int c = L.col(j, 0);
      if (c >= cols) continue;
      const float x0 = acc[4 * j + 2 * h] * un, x1 = acc[4 * j + 2 * h + 1] * un;
      if (g.narrow) {
        T* out = static_cast<T*>(g.c) + (m0 + r) * g.ldc + n0 + c;
        out[0] = from_f32<T>(x0);
        if (c + 1 < cols) out[1] = from_f32<T>(x1);
        continue;
      }
      float* out = static_cast<float*>(g.c) + (m0 + r) * g.ldc + n0 + c;
      if (pair && c + 1 < cols) {
        *reinterpret_cast<float2*>(out) = make_float2(x0, x1);
      } else {
        out[0] = x0;
        if (c + 1 < cols) out[1] = x1;
      }
    }
  }
}

template <class T, bool kEnt>
__global__ void __launch_bounds__(kThreads, 1) lm_grad_logits_wgmma_kernel(GradArgs a) {
  using S = Smem<T>;
  GK_DYNAMIC_SMEM(unsigned char, smem_raw);
  unsigned char* smem = wg_stages(smem_raw);
  const T* H = static_cast<const T*>(a.hidden);
  const T* W = static_cast<const T*>(a.weight);
  const WgLane L;
  const int64_t r0 = int64_t(blockIdx.x) * kBM;  // within the chunk
  const int64_t vt = int64_t(blockIdx.y) * kBN;  // within the chunk
  const int rows = static_cast<int>(min64(kBM, a.rows - r0));
  const int cols = static_cast<int>(min64(kBN, a.vcount - vt));
  const int nk = max(1, static_cast<int>((a.dim + kWgBK - 1) / kWgBK));

  float acc[64];
  wg_mainloop<T, 0>(
      smem, smem_address(smem), nk,
      [&](unsigned char* stage, int kt) {
        load_swizzled<T>(stage, H, a.dim, a.row0 + r0, rows, a.dim, kt);
        load_swizzled<T>(stage + kWgTileBytes, W, a.dim, a.v0 + vt, cols, a.dim, kt);
      },
      [&](const float (&part)[64], int kt) {
#pragma unroll
        for (int i = 0; i < 64; ++i) acc[i] = kt == 0 ? part[i] : acc[i] + part[i];
      });

  // G of the tile, rounded to T, into shared memory [kBM][kLdN] (the stages are free).
  static_assert(S::kTileBytes <= kWgSmemBytes - 1024, "the G tile reuses the stages");
  T* gs = reinterpret_cast<T*>(smem);
  wg_g_tile<T, kEnt>(acc, L, a, r0, vt, rows, cols, gs);
  __syncthreads();
  store_g_tile<T>(gs, a, r0, vt, rows, cols);
}

template <class T>
__global__ void __launch_bounds__(kThreads, 1) lm_gemm_wgmma_kernel(GemmArgs g) {
  GK_DYNAMIC_SMEM(unsigned char, smem_raw);
  unsigned char* smem = wg_stages(smem_raw);
  const T* A = static_cast<const T*>(g.a);
  const T* Bm = static_cast<const T*>(g.b);
  const WgLane L;
  const int64_t m0 = int64_t(blockIdx.x) * kBM, n0 = int64_t(blockIdx.y) * kBN;
  const int rows = static_cast<int>(min64(kBM, g.m - m0));
  const int cols = static_cast<int>(min64(kBN, g.n - n0));
  const int nk = static_cast<int>((g.k + kWgBK - 1) / kWgBK);
  float acc[64];
  wg_load_c<T>(acc, L, g, m0, n0, rows, cols);
  wg_mainloop<T, 1>(
      smem, smem_address(smem), nk,
      [&](unsigned char* stage, int kt) {
        load_swizzled<T>(stage, A, g.lda, m0, rows, g.k, kt);
        load_swizzled_mn<T>(stage + kWgTileBytes, Bm, g.ldb, int64_t(kt) * kWgBK, g.k, n0, g.n);
      },
      [&](const float (&part)[64], int) {
#pragma unroll
        for (int i = 0; i < 64; ++i) acc[i] += part[i];
      });
  wg_store_c<T>(acc, L, g, m0, n0, rows, cols);
}

// lm_grad_logits_tma_kernel, lm_gemm_tma_kernel: the two above with their operands brought by TMA
// (tma_mainloop; lmheadTuning.path 'tma'). The G tile reads a chunk's hidden and weight rows as boxes of
// the whole tensors (rows past the chunk arrive, and their G is 0 as above); the GEMM's A (Gc or Gt) is
// read as [m][k] with row stride lda (columns past k arrive as zeros), its B as 64-row × 64-column boxes
// of [k][n].
template <class T, bool kEnt, bool kOverlap>
__global__ void __launch_bounds__(kTmaThreadsOf<kOverlap>, 1)
    lm_grad_logits_tma_kernel(GradArgs a, const __grid_constant__ CUtensorMap tmap_h,
                              const __grid_constant__ CUtensorMap tmap_w) {
  GK_DYNAMIC_SMEM(unsigned char, smem_raw);
  unsigned char* smem = wg_stages(smem_raw);
  const WgLane L;
  const int64_t r0 = int64_t(blockIdx.x) * kBM;  // within the chunk
  const int64_t vt = int64_t(blockIdx.y) * kBN;  // within the chunk
  const int rows = static_cast<int>(min64(kBM, a.rows - r0));
  const int cols = static_cast<int>(min64(kBN, a.vcount - vt));
  float acc[64];
  tma_mainloop<T, 0, kOverlap>(
      smem, max(1, static_cast<int>((a.dim + kWgBK - 1) / kWgBK)),
      [&](unsigned char* stage, int kt, uint64_t* bar) {
        tma_load_2d(stage, &tmap_h, kt * kWgBK, static_cast<int32_t>(a.row0 + r0), bar);
        tma_load_2d(stage + kWgTileBytes, &tmap_w, kt * kWgBK, static_cast<int32_t>(a.v0 + vt), bar);
      },
      [&](const float (&part)[64], int kt) {
#pragma unroll
        for (int i = 0; i < 64; ++i) acc[i] = kt == 0 ? part[i] : acc[i] + part[i];
      });
  tma_consumers_sync<kOverlap>();  // every MMA done: the stages hold the G tile now
  T* gs = reinterpret_cast<T*>(smem);
  if (threadIdx.x < kThreads) wg_g_tile<T, kEnt>(acc, L, a, r0, vt, rows, cols, gs);
  tma_consumers_sync<kOverlap>();
  if (threadIdx.x < kThreads) store_g_tile<T>(gs, a, r0, vt, rows, cols);
}

template <class T, bool kOverlap>
__global__ void __launch_bounds__(kTmaThreadsOf<kOverlap>, 1)
    lm_gemm_tma_kernel(GemmArgs g, const __grid_constant__ CUtensorMap tmap_a, const __grid_constant__ CUtensorMap tmap_b) {
  GK_DYNAMIC_SMEM(unsigned char, smem_raw);
  unsigned char* smem = wg_stages(smem_raw);
  const WgLane L;
  const int64_t m0 = int64_t(blockIdx.x) * kBM, n0 = int64_t(blockIdx.y) * kBN;
  const int rows = static_cast<int>(min64(kBM, g.m - m0));
  const int cols = static_cast<int>(min64(kBN, g.n - n0));
  float acc[64];  // C, loaded by the consumers once their first k-step's MMAs are under way
  tma_mainloop<T, 1, kOverlap>(
      smem, static_cast<int>((g.k + kWgBK - 1) / kWgBK),
      [&](unsigned char* stage, int kt, uint64_t* bar) {
        tma_load_2d(stage, &tmap_a, kt * kWgBK, static_cast<int32_t>(m0), bar);
        tma_load_2d(stage + kWgTileBytes, &tmap_b, static_cast<int32_t>(n0), kt * kWgBK, bar);
        tma_load_2d(stage + kWgTileBytes + 8192, &tmap_b, static_cast<int32_t>(n0 + 64), kt * kWgBK, bar);
      },
      [&](const float (&part)[64], int kt) {
        if (kt == 0) wg_load_c<T>(acc, L, g, m0, n0, rows, cols);
#pragma unroll
        for (int i = 0; i < 64; ++i) acc[i] += part[i];
      });
  if (threadIdx.x < kThreads) wg_store_c<T>(acc, L, g, m0, n0, rows, cols);
}

// The backward in 256-column tiles (lmheadTuning.path 'tma-wide'; verified on an H200), as
// lm_fwd_tma_wide_kernel is the forward: lm_grad_logits_tma_kernel's G over 128 rows × 256 vocabulary
// columns and lm_gemm_tma_kernel's C over 128 × 256, each half of B (two 128-row boxes; for the GEMMs'
// MN-major B, four 64-column ones) multiplied, waited for and flushed into its own sums in turn, so every
// element takes its 128-column tile's MMAs and flushes: 'tma''s bits. Epilogues per half, as the
// 128-column kernels' (the G tile staged through the stages once all MMAs are done, a half at a time;
// C loaded from C_in when a half's first k-step is under way, as there). Producer warpgroup and
// setmaxnreg as lm_fwd_tma_wide_kernel; 4 stages of 48 KiB.
template <class T, bool kEnt, int kCtas, bool kChain>
__global__ void __launch_bounds__(kTmaThreadsOf<true>, 1)
    lm_grad_logits_tma_wide_kernel(GradArgs a, const __grid_constant__ CUtensorMap tmap_h,
                                   const __grid_constant__ CUtensorMap tmap_w) {
  GK_DYNAMIC_SMEM(unsigned char, smem_raw);
  unsigned char* smem = wg_stages(smem_raw);
  const WgLane L;
  const RasterBlock rb = raster_block(a.raster);
  const int64_t r0 = int64_t(rb.x) * kBM;      // within the chunk
  const int64_t vt = int64_t(rb.y) * 2 * kBN;  // within the chunk
  const int rows = static_cast<int>(min64(kBM, a.rows - r0));
  const int cols = static_cast<int>(min64(2 * kBN, a.vcount - vt));
  float acc[64], acc_hi[64];
  const int nk = max(1, static_cast<int>((a.dim + kWgBK - 1) / kWgBK));
  auto issue = [&](unsigned char* stage, int kt, uint64_t* bar) {
    const int32_t w0 = static_cast<int32_t>(a.v0 + vt);
    tma_load_2d(stage, &tmap_h, kt * kWgBK, static_cast<int32_t>(a.row0 + r0), bar);
    wide_b_halves<kCtas>(stage, [&](int half, unsigned char* dst, uint16_t mask) {
      tma_box(dst, &tmap_w, kt * kWgBK, w0 + half * kBN, bar, mask);
    });
  };
  if constexpr (kChain) {
    tma_chain_mainloop<T, 0, kCtas>(smem, 1, nk, acc, acc_hi, issue, [](int) { return false; }, [](int) {});
  } else {
    tma_wide_mainloop<T, 0, kCtas>(smem, nk, issue, [&](int half, const float (&part)[64], int kt) {
      float(&sums)[64] = half == 0 ? acc : acc_hi;
#pragma unroll
      for (int i = 0; i < 64; ++i) sums[i] = kt == 0 ? part[i] : sums[i] + part[i];
    });
  }
  // Every MMA done: the stages hold the G tile now, a half at a time.
  T* gs = reinterpret_cast<T*>(smem);
#pragma unroll
  for (int half = 0; half < 2; ++half) {
    const int hc = min(cols - half * kBN, kBN);
    if (hc <= 0) break;
    named_barrier_sync<1, kThreads>();  // (the MMAs, or the previous half's stores, are done with gs)
    wg_g_tile<T, kEnt>(half == 0 ? acc : acc_hi, L, a, r0, vt + half * kBN, rows, hc, gs);
    named_barrier_sync<1, kThreads>();
    store_g_tile<T>(gs, a, r0, vt + half * kBN, rows, hc);
  }
}

template <class T, int kCtas, bool kChain>
__global__ void __launch_bounds__(kTmaThreadsOf<true>, 1)
    lm_gemm_tma_wide_kernel(GemmArgs g, const __grid_constant__ CUtensorMap tmap_a,
                            const __grid_constant__ CUtensorMap tmap_b) {
  GK_DYNAMIC_SMEM(unsigned char, smem_raw);
  const WgLane L;
  const RasterBlock rb = raster_block(g.raster);
  const int64_t m0 = int64_t(rb.x) * kBM, n0 = int64_t(rb.y) * 2 * kBN;
  const int rows = static_cast<int>(min64(kBM, g.m - m0));
  const int cols = static_cast<int>(min64(2 * kBN, g.n - n0));
  const int hcols[2] = {min(cols, kBN), max(cols - kBN, 0)};
  float acc[64], acc_hi[64];  // C (kChain: loaded before the first MMAs; else by each half's first retire)
  const int nk = static_cast<int>((g.k + kWgBK - 1) / kWgBK);
  auto issue = [&](unsigned char* stage, int kt, uint64_t* bar) {
    tma_load_2d(stage, &tmap_a, kt * kWgBK, static_cast<int32_t>(m0), bar);
    wide_b_halves<kCtas>(stage, [&](int half, unsigned char* dst, uint16_t mask) {
      for (int b = 0; b < 2; ++b)  // a half's 128 columns: two 64-column boxes, 8 KiB apart
        tma_box(dst + 8192 * b, &tmap_b, static_cast<int32_t>(n0 + half * kBN + 64 * b), kt * kWgBK, bar, mask);
    });
  };
  if constexpr (kChain) {
    tma_chain_mainloop<T, 1, kCtas>(
        wg_stages(smem_raw), 1, nk, acc, acc_hi, issue,
        [&](int) {
          float c[64];
          wg_load_c<T>(c, L, g, m0, n0, rows, hcols[0]);
          settle_regs(acc, c);
          wg_load_c<T>(c, L, g, m0, n0 + kBN, rows, hcols[1]);
          settle_regs(acc_hi, c);
          return true;
        },
        [](int) {});
  } else {
    tma_wide_mainloop<T, 1, kCtas>(wg_stages(smem_raw), nk, issue, [&](int half, const float (&part)[64], int kt) {
      float(&sums)[64] = half == 0 ? acc : acc_hi;
      if (kt == 0) wg_load_c<T>(sums, L, g, m0, n0 + half * kBN, rows, hcols[half]);
#pragma unroll
      for (int i = 0; i < 64; ++i) sums[i] += part[i];
    });
  }
  wg_store_c<T>(acc, L, g, m0, n0, rows, hcols[0]);
  if (hcols[1] > 0) wg_store_c<T>(acc_hi, L, g, m0, n0 + kBN, rows, hcols[1]);
}

// ------------------------------------------------------------------- states of materialised logits
// Block: (row, slice of kLogitSliceCols columns). Thread l folds columns l, l + 256, … of the slice in
// order (one element per update), then a fixed shuffle tree and warp order: partial[row][slice].
template <class T>
__global__ void __launch_bounds__(kThreads) lm_logit_states_kernel(const T* __restrict__ logits, int64_t vocab,
                                                                   const int* __restrict__ targets, int ignore,
                                                                   float scale2, int slices, float4* partial) {
  __shared__ float4 sh[kThreads / 32];
  const int64_t row = blockIdx.x;
  const int slice = blockIdx.y;
  if (targets[row] == ignore) return;  // uniform over the block; lm_state_kernel writes the zeros
  const int64_t c0 = int64_t(slice) * kLogitSliceCols, c1 = min64(vocab, c0 + kLogitSliceCols);
  const T* r = logits + row * vocab;
  OnlineState st = empty_state();
  for (int64_t c = c0 + threadIdx.x; c < c1; c += kThreads) {
    const float x[1] = {load_f32(r + c)};
    state_update<true>(st, x, scale2);
  }
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
#pragma unroll
  for (int off = 16; off > 0; off >>= 1) st = state_merge(st, shfl_down(st, off), scale2);
  if (lane == 0) sh[warp] = make_float4(st.m, st.s, st.t, st.q);
  __syncthreads();
  if (threadIdx.x == 0) {
    OnlineState s = empty_state();
    for (int w = 0; w < kThreads / 32; ++w) s = state_merge(s, OnlineState{sh[w].x, sh[w].y, sh[w].z, sh[w].w}, scale2);
    partial[row * slices + slice] = make_float4(s.m, s.s, s.t, s.q);
  }
}

// The target's logit of rows whose target lies in the shard (one thread per row).
template <class T>
__global__ void lm_logit_target_kernel(const T* __restrict__ logits, int64_t rows, int64_t vocab, int64_t vocab_start,
                                       const int* __restrict__ targets, int ignore, float* __restrict__ xt) {
  const int64_t row = blockIdx.x * int64_t(blockDim.x) + threadIdx.x;
  if (row >= rows) return;
  const int t = targets[row];
  const int64_t c = int64_t(t) - vocab_start;
  if (t != ignore && c >= 0 && c < vocab) xt[row] = load_f32(logits + row * vocab + c);
}

// ------------------------------------------------------------------------------------ merge
struct StateDev {
  const float* max;
  const float* sum_exp;
  const float* sum_exp_delta;
  const float* sum_exp_sq;
  const float* target_logit;
  long long vocab_start, vocab_end;
};

// One thread per row: the given public states merged in order (their natural-log Σe^d·d back to base
// 2), the target's logit from the state whose shard holds it, then logprobs' finish_row.
__global__ void lm_merge_states_kernel(const StateDev* __restrict__ states, int count, int64_t rows,
                                       const int* __restrict__ targets, int64_t vocab, int ignore, float scale2,
                                       float inv_t, FwdOut o, ErrorFlags* flags) {
  const int64_t row = blockIdx.x * int64_t(blockDim.x) + threadIdx.x;
  if (row >= rows) return;
  const int tgt = targets[row];
  if (tgt == ignore) {
    write_row(o, row, 0.f, 0.f, 0.f, 0.f);
    return;
  }
  OnlineState st = empty_state();
  float xt = 0.f;
  for (int k = 0; k < count; ++k) {
    const StateDev s = states[k];
    const OnlineState x{s.max[row], s.sum_exp[row], s.sum_exp_delta ? s.sum_exp_delta[row] * kLog2e : 0.f,
                        s.sum_exp_sq ? s.sum_exp_sq[row] : 0.f};
    st = state_merge(st, x, scale2);
    if (tgt >= s.vocab_start && tgt < s.vocab_end) xt = s.target_logit[row];
  }
  finish_row(row, st, vocab, tgt, xt, inv_t, o, flags);
}

bool aligned16(const void* p) { return (reinterpret_cast<uintptr_t>(p) & 15u) == 0; }

// Opt-in to more than 48 KiB of dynamic shared memory (per kernel and device), with the device's limit
// checked so a smaller GPU is told by name.
Status smem_optin(const void* kernel, size_t bytes, const char* op) {
  int device = 0, optin = 0;
  GK_CHECK(cudaGetDevice(&device));
  GK_CHECK(cudaDeviceGetAttribute(&optin, cudaDevAttrMaxSharedMemoryPerBlockOptin, device));
  if (optin < int(bytes)) {
    Status st;
    st.code = Code::Cuda;
    st.err = cudaErrorNotSupported;
    st.message = std::string(op) + ": the CUDA tile kernels need " + std::to_string((bytes + 1023) / 1024) +
                 " KiB of shared memory per block; this GPU allows " + std::to_string(optin / 1024) +
                 " KiB (cudaDevAttrMaxSharedMemoryPerBlockOptin)";
    return st;
  }
  GK_CHECK(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, int(bytes)));
  return Status::Ok();
}

}  // namespace

LmheadPlan lmhead_plan(int64_t rows, int64_t vocab, int64_t dim, DType dtype) {
  (void)dim;
  LmheadPlan p;
  const int64_t eb = int64_t(dtype_size(dtype));
  p.slices = std::max<int64_t>(1, ceil_div(vocab, kSliceCols));
  p.forward_bytes = rows * p.slices * int64_t(sizeof(float4)) + rows * int64_t(sizeof(float));
  p.chunk_vocab = std::min<int64_t>(ceil_div(std::max<int64_t>(vocab, 1), kBN) * kBN, kChunkVocab);
  const int64_t all_rows = ceil_div(std::max<int64_t>(rows, 1), kBM) * kBM;
  auto rows_within = [&](size_t budget) {
    return std::max<int64_t>(kBM, std::min<int64_t>(all_rows, int64_t(budget) / (2 * p.chunk_vocab * eb) / kBM * kBM));
  };
  p.chunk_rows = rows_within(kGBudget);
  p.backward_bytes = 2 * p.chunk_rows * p.chunk_vocab * eb;
  if (dtype == DType::F32) {  // the input dtype is f32: the same backward
    p.input_chunk_rows = p.chunk_rows;
    p.backward_input_bytes = p.backward_bytes;
  } else {
    p.input_chunk_rows = rows_within(kGBudget / 2);
    p.backward_input_bytes = 2 * p.input_chunk_rows * p.chunk_vocab * eb +
                             4 * lmhead_narrow_acc_floats(rows, vocab, dim, p.input_chunk_rows, p.chunk_vocab);
  }
  if (dtype == DType::F16 && rows > 0) {  // G's scales (lm_grad_scale_kernel): rows + 1 floats
    p.backward_bytes += 4 * (rows + 1);
    p.backward_input_bytes += 4 * (rows + 1);
  }
  return p;
}

int64_t lmhead_narrow_acc_floats(int64_t rows, int64_t vocab, int64_t dim, int64_t chunk_rows, int64_t chunk_vocab) {
  const bool row_chunks = rows > chunk_rows, vocab_chunks = vocab > chunk_vocab;
  return std::max(vocab_chunks ? chunk_rows * dim : 0, row_chunks ? chunk_vocab * (dim + 1) : 0);
}

namespace {
// The tiles a launch runs (LinearLogprobsParams/BackwardParams::path: 0 auto, 1 mma.sync, 2 wgmma fed by
// cp.async, 3 wgmma fed by TMA, 4 the same with one k-step's MMAs kept in flight: tma_mainloop's
// kOverlap; 5 the TMA-fed kernels in 128 × 256 tiles (lm_fwd_tma_wide_kernel,
// lm_grad_logits_tma_wide_kernel, lm_gemm_tma_wide_kernel); 6 the same in clusters of 2 blocks sharing
// B's boxes (kCtas 2); 7 and 8: 5 and 6 chained (kChain: no flush)). The wgmma tiles need a 9.0 device, a
// build with sm_90a code (or the emulator) and 16-bit operands whose rows are 16-byte aligned; elsewhere
// every path is mma.sync. `auto` takes 7, the chained wide tiles (a zero-width head, which no tensor map
// can describe, the cp.async-fed ones): every set verified on an H200 on 2026-11-28, where at N 8192,
// d 4096, V 151936 bf16 the forward ran at 644 TFLOP/s (3: 323, 5: 415, 6: 308, 8: 427; PyTorch's
// materialised logits 459) and the backward at 335 (3: 241, 5: 281). Its numerics are cuBLAS's (a sum
// chained on the tensor cores over all of d), inside every tolerance of the case table; the flushing
// sets stay as options (docs/cuda.md, "The LM head's tiles").
enum class Tiles { Mma, Wgmma, Tma, TmaOverlap, TmaWide, TmaCluster, TmaChain, TmaChainCluster };
// The wide tile sets: whether they run in clusters, whether chained.
bool wide_tiles(Tiles t) {
  return t == Tiles::TmaWide || t == Tiles::TmaCluster || t == Tiles::TmaChain || t == Tiles::TmaChainCluster;
}
bool clustered(Tiles t) { return t == Tiles::TmaCluster || t == Tiles::TmaChainCluster; }
bool chained(Tiles t) { return t == Tiles::TmaChain || t == Tiles::TmaChainCluster; }
Tiles lm_tiles(int path, const LaunchEnv& env, bool aligned, int64_t dim) {
  if (path == 1 || !aligned || !wgmma_available(env)) return Tiles::Mma;
  if (path == 2 || dim == 0) return Tiles::Wgmma;
  switch (path) {
    case 3: return Tiles::Tma;
    case 4: return Tiles::TmaOverlap;
    case 5: return Tiles::TmaWide;
    case 6: return Tiles::TmaCluster;
    case 8: return Tiles::TmaChainCluster;
    default: return Tiles::TmaChain;  // 0 (auto) and 7
  }
}

// One of the wide kernels (k1, k2: its kCtas 1 and 2) over grid, opted into smem bytes: with `cluster`
// ('tma-cluster') and an even grid.x in clusters of 2 blocks along x, else alone (the same bits).
template <class... P, class... A>
Status launch_wide(const char* name, void (*k1)(P...), void (*k2)(P...), bool cluster, dim3 grid, size_t smem,
                   const LaunchEnv& env, const char* op, A&&... args) {
  const bool two = cluster && grid.x % 2 == 0;
  void (*k)(P...) = two ? k2 : k1;
  GK_TRY(smem_optin(reinterpret_cast<const void*>(k), smem, op));
  const std::string what = std::string(name) + (two ? " in clusters of 2" : "");
  return launch_clustered(what.c_str(), k, grid, dim3(kTmaThreadsOf<true>), smem, env.stream, two ? 2u : 1u,
                          std::forward<A>(args)...);
}

Status check_head(int64_t rows, int64_t dim, int64_t vocab, double temperature, const char* op) {
  GK_REQUIRE(vocab > 0, std::string(op) + ": vocab must be ≥ 1");
  GK_REQUIRE(rows <= INT_MAX && vocab <= INT_MAX && dim <= INT_MAX, std::string(op) + ": sizes must fit in int32");
  GK_REQUIRE(dim >= 0, std::string(op) + ": dim must be ≥ 0");
  GK_REQUIRE(temperature >= 0x1p-126 && std::isfinite(temperature),
             std::string(op) + ": temperature must be finite and ≥ 2^-126");
  return Status::Ok();
}
}  // namespace

Status launch_linear_logprobs(const LinearLogprobsParams& p, const LaunchEnv& env, Scratch& scratch, ErrorFlags* flags) {
  const bool states = p.states.max != nullptr;
  const char* op = states ? "linearLogprobStates" : "linearLogprobs";
  if (p.rows == 0) return Status::Ok();
  GK_TRY(check_head(p.rows, p.dim, p.vocab, p.temperature, op));
  GK_REQUIRE((p.dim == 0 || (p.hidden && p.weight)) && p.targets, std::string(op) + ": null pointer");
  GK_REQUIRE(states ? (p.states.sum_exp && p.states.target_logit) : (p.logprobs && p.lse),
             std::string(op) + ": null output");
  const LmheadPlan plan = lmhead_plan(p.rows, p.vocab, p.dim, p.dtype);
  GK_REQUIRE(plan.slices <= 65535, std::string(op) + ": vocab too large (more than 65535 slices)");
  const float scale2 = scale_of(1.4426950408889634 / p.temperature);
  const float inv_t = scale_of(1.0 / p.temperature);
  float4* partial = nullptr;
  float* xt = nullptr;
  GK_TRY(scratch.alloc(&partial, size_t(p.rows * plan.slices)));
  GK_TRY(scratch.alloc(&xt, size_t(p.rows)));
  const bool stats = states ? (p.states.sum_exp_delta || p.states.sum_exp_sq) : (p.entropy || p.sum_squares);
  GK_TRY(dispatch_float(p.dtype, "hidden", [&](auto tag) -> Status {
    using T = decltype(tag);
    const size_t bytes = Smem<T>::kFwdBytes;
    FwdArgs a{p.hidden, p.weight, p.bias, p.targets, p.rows, p.dim, p.vocab, states ? p.states.vocab_start : 0,
              p.ignore_index, scale2, int(plan.slices),
              aligned16(p.hidden) && (p.dim * int64_t(sizeof(T))) % 16 == 0,
              aligned16(p.weight) && (p.dim * int64_t(sizeof(T))) % 16 == 0, partial, xt, p.raster_rows};
    const dim3 grid(unsigned(ceil_div(p.rows, kBM)), unsigned(plan.slices));
    if constexpr (sizeof(T) == 2) {
      const Tiles tiles = lm_tiles(p.path, env, a.h_vec16 && a.w_vec16, p.dim);
      alignas(64) CUtensorMap th, tw;  // the TMA-fed tiles' maps of the hidden rows and the weight rows
      const bool wide = wide_tiles(tiles);
      if (tiles == Tiles::Tma || tiles == Tiles::TmaOverlap || wide) {
        GK_TRY(encode_tensor_map_2d(&th, p.hidden, p.rows, p.dim, p.dim, kBM, kWgBK));
        GK_TRY(encode_tensor_map_2d(&tw, p.weight, p.vocab, p.dim, p.dim, kBN, kWgBK));
      }
      if (wide)
        return with_flags(
            [&](auto st, auto ch) {
              constexpr bool kStats = decltype(st)::value, kChain = decltype(ch)::value;
              return launch_wide(kChain ? "lm_fwd_tma_wide_kernel (chained)" : "lm_fwd_tma_wide_kernel",
                                 &lm_fwd_tma_wide_kernel<T, kStats, 1, kChain>,
                                 &lm_fwd_tma_wide_kernel<T, kStats, 2, kChain>, clustered(tiles), grid,
                                 kWideFwdSmemBytes, env, op, a, th, tw);
            },
            stats, chained(tiles));
      if (tiles == Tiles::Tma || tiles == Tiles::TmaOverlap)
        return with_flags(
            [&](auto st, auto ov) -> Status {
              constexpr bool kStats = decltype(st)::value, kOverlap = decltype(ov)::value;
              GK_TRY(smem_optin(reinterpret_cast<const void*>(&lm_fwd_tma_kernel<T, kStats, kOverlap>),
                                kTmaSmemBytes, op));
              lm_fwd_tma_kernel<T, kStats, kOverlap><<<grid, kTmaThreadsOf<kOverlap>, kTmaSmemBytes, env.stream>>>(a, th, tw);
              GK_CHECK_LAUNCH("lm_fwd_tma_kernel");
              return Status::Ok();
            },
            stats, tiles == Tiles::TmaOverlap);
      if (tiles == Tiles::Wgmma)
        return with_flags(
            [&](auto st) -> Status {
              constexpr bool kStats = decltype(st)::value;
              GK_TRY(smem_optin(reinterpret_cast<const void*>(&lm_fwd_wgmma_kernel<T, kStats>), kWgSmemBytes, op));
              lm_fwd_wgmma_kernel<T, kStats><<<grid, kThreads, kWgSmemBytes, env.stream>>>(a);
              GK_CHECK_LAUNCH("lm_fwd_wgmma_kernel");
              return Status::Ok();
            },
            stats);
    }
    return with_flags(
        [&](auto st) -> Status {
          constexpr bool kStats = decltype(st)::value;
          GK_TRY(smem_optin(reinterpret_cast<const void*>(&lm_fwd_kernel<T, kStats>), bytes, op));
          lm_fwd_kernel<T, kStats><<<grid, kThreads, bytes, env.stream>>>(a);
          GK_CHECK_LAUNCH("lm_fwd_kernel");
          return Status::Ok();
        },
        stats);
  }));
  const unsigned blocks = unsigned(ceil_div(p.rows, kRowThreads));
  if (states) {
    lm_state_kernel<<<blocks, kRowThreads, 0, env.stream>>>(partial, int(plan.slices), p.rows, p.targets, xt,
                                                            p.states.vocab_start, p.vocab, p.ignore_index, scale2,
                                                            p.states);
    GK_CHECK_LAUNCH("lm_state_kernel");
  } else {
    const FwdOut o{p.logprobs, p.lse, p.entropy, p.sum_squares};
    lm_finish_kernel<<<blocks, kRowThreads, 0, env.stream>>>(partial, int(plan.slices), p.rows, p.targets, xt,
                                                             p.vocab, p.ignore_index, scale2, inv_t, o, flags);
    GK_CHECK_LAUNCH("lm_finish_kernel");
  }
  return Status::Ok();
}

Status launch_linear_logprobs_backward(const LinearLogprobsBackwardParams& p, const LaunchEnv& env, Scratch& scratch,
                                       ErrorFlags* flags) {
  const char* op = "linearLogprobsBackward";
  GK_TRY(check_head(p.rows, p.dim, p.vocab, p.temperature, op));
  GK_REQUIRE(p.dim == 0 || (p.weight && p.grad_weight), std::string(op) + ": null pointer");
  GK_REQUIRE(p.grad_entropy == nullptr || p.entropy != nullptr, std::string(op) + ": gradEntropy needs entropy");
  GK_REQUIRE(p.grad_dtype == DType::F32 || p.grad_dtype == p.dtype,
             std::string(op) + ": gradDtype must be f32 or the head's dtype");
  const bool narrow = p.grad_dtype != DType::F32;
  const size_t ges = dtype_size(p.grad_dtype);
  if (p.rows == 0) {  // empty sums (+0 in every dtype); the per-row inputs are empty (null pointers)
    if (p.dim > 0) GK_CHECK(cudaMemsetAsync(p.grad_weight, 0, size_t(p.vocab * p.dim) * ges, env.stream));
    if (p.grad_bias) GK_CHECK(cudaMemsetAsync(p.grad_bias, 0, size_t(p.vocab) * ges, env.stream));
    return Status::Ok();
  }
  GK_REQUIRE(p.targets && p.lse && p.grad_logprobs, std::string(op) + ": null pointer");
  GK_REQUIRE(p.dim == 0 || (p.hidden && p.grad_hidden), std::string(op) + ": null pointer");
  LmheadPlan plan = lmhead_plan(p.rows, p.vocab, p.dim, p.dtype);
  if (narrow) plan.chunk_rows = plan.input_chunk_rows;
  if (p.chunk_rows > 0) plan.chunk_rows = p.chunk_rows;
  if (p.chunk_vocab > 0) plan.chunk_vocab = p.chunk_vocab;
  GK_REQUIRE(plan.chunk_rows % kBM == 0 && plan.chunk_vocab % kBN == 0,
             std::string(op) + ": chunks must be multiples of 128");
  const float scale2 = scale_of(1.4426950408889634 / p.temperature);
  const float inv_t = static_cast<float>(1.0 / p.temperature);  // unclamped: it scales the gradient
  return dispatch_float(p.dtype, "hidden", [&](auto tag) -> Status {
    using T = decltype(tag);
    T* gc = nullptr;
    T* gt = nullptr;
    GK_TRY(scratch.alloc(&gc, size_t(plan.chunk_rows * plan.chunk_vocab)));
    GK_TRY(scratch.alloc(&gt, size_t(plan.chunk_rows * plan.chunk_vocab)));
    // f16/bf16 gradients: a sum that runs across chunks runs in f32 here (a narrow output cannot hold
    // it) and its last chunk stores it rounded. With more than one row chunk, gradWeight's and gradBias's
    // sums over rows get a second pass, vocabulary chunks outer, so that their accumulator is one
    // vocabulary chunk's, never [V, d].
    const bool two_pass = narrow && p.rows > plan.chunk_rows;
    float* acc = nullptr;
    const int64_t acc_floats =
        narrow ? lmhead_narrow_acc_floats(p.rows, p.vocab, p.dim, plan.chunk_rows, plan.chunk_vocab) : 0;
    if (acc_floats > 0) GK_TRY(scratch.alloc(&acc, size_t(acc_floats)));
    const bool ent = p.grad_entropy != nullptr;
    // f16: G's scales (lm_grad_scale_kernel), rows + 1 floats: rscale[rows], then gscale.
    float* rscale = nullptr;
    if constexpr (std::is_same_v<T, __half>) {
      GK_TRY(scratch.alloc(&rscale, size_t(p.rows + 1)));
      lm_grad_scale_kernel<<<1, kScaleThreads, 0, env.stream>>>(
          p.targets, p.ignore_index, p.target_limit > 0 ? p.target_limit : p.vocab, p.grad_logprobs, p.grad_entropy,
          p.entropy, inv_t, p.rows, rscale, rscale + p.rows);
      GK_CHECK_LAUNCH("lm_grad_scale_kernel");
    }
    const T* H = static_cast<const T*>(p.hidden);
    const T* W = static_cast<const T*>(p.weight);
    const bool row_vec16 = (p.dim * int64_t(sizeof(T))) % 16 == 0;
    // The wgmma tiles (16-bit operands whose rows are 16-byte aligned; the forward's rule), else mma.sync.
    const Tiles tiles = sizeof(T) == 2 ? lm_tiles(p.path, env, aligned16(p.hidden) && aligned16(p.weight) && row_vec16,
                                                  p.dim)
                                       : Tiles::Mma;
    const bool wg = tiles != Tiles::Mma, overlap = tiles == Tiles::TmaOverlap, wide = wide_tiles(tiles),
               cluster = clustered(tiles), chain = chained(tiles), tma = tiles == Tiles::Tma || overlap || wide;
    // Every kernel this call may launch, opted into its shared memory once (the wide ones at each
    // launch: launch_wide).
    GK_TRY(with_flags(
        [&](auto e) {
          return smem_optin(reinterpret_cast<const void*>(&lm_grad_logits_kernel<T, decltype(e)::value>),
                            Smem<T>::kFwdBytes, op);
        },
        ent));
    GK_TRY(smem_optin(reinterpret_cast<const void*>(&lm_gemm_kernel<T>), Smem<T>::kGemmBytes, op));
    alignas(64) CUtensorMap th, tw;  // the hidden rows and the weight rows, for the G tiles
    if constexpr (sizeof(T) == 2) {
      if (wg) {
        GK_TRY(with_flags(
            [&](auto e) {
              return smem_optin(reinterpret_cast<const void*>(&lm_grad_logits_wgmma_kernel<T, decltype(e)::value>),
                                kWgSmemBytes, op);
            },
            ent));
        GK_TRY(smem_optin(reinterpret_cast<const void*>(&lm_gemm_wgmma_kernel<T>), kWgSmemBytes, op));
      }
      if (tma && !wide)
        GK_TRY(with_flags(
            [&](auto e, auto ov) -> Status {
              constexpr bool kEnt = decltype(e)::value, kOverlap = decltype(ov)::value;
              GK_TRY(smem_optin(reinterpret_cast<const void*>(&lm_grad_logits_tma_kernel<T, kEnt, kOverlap>),
                                kTmaSmemBytes, op));
              return smem_optin(reinterpret_cast<const void*>(&lm_gemm_tma_kernel<T, kOverlap>), kTmaSmemBytes, op);
            },
            ent, overlap));
      if (tma) {
        GK_TRY(encode_tensor_map_2d(&th, p.hidden, p.rows, p.dim, p.dim, kBM, kWgBK));
        GK_TRY(encode_tensor_map_2d(&tw, p.weight, p.vocab, p.dim, p.dim, kBN, kWgBK));
      }
    }
    // The G chunk of rows [row0, +rows) × weight rows [v0, +vcount): Gc and its transpose Gt.
    auto grad_logits = [&](int64_t row0, int64_t rows, int64_t v0, int64_t vcount) -> Status {
      GradArgs g{p.hidden, p.weight, p.bias, p.targets, p.lse, p.grad_logprobs, p.grad_entropy, p.entropy,
                 rows, p.dim, p.target_limit > 0 ? p.target_limit : p.vocab, row0, v0, vcount, p.vocab_start,
                 p.ignore_index, scale2, inv_t,
                 aligned16(p.hidden) && row_vec16, aligned16(p.weight) && row_vec16, gc, gt,
                 plan.chunk_vocab, plan.chunk_rows, flags, p.raster_rows};
      if (rscale) {
        g.rscale = rscale;
        g.gscale = rscale + p.rows;
      }
      const dim3 grid(unsigned(ceil_div(rows, kBM)), unsigned(ceil_div(vcount, kBN)));
      return with_flags(
          [&](auto e) -> Status {
            constexpr bool kEnt = decltype(e)::value;
            if constexpr (sizeof(T) == 2) {
              if (wide) {  // 256-column tiles
                const dim3 wgrid(grid.x, unsigned(ceil_div(vcount, 2 * kBN)));
                return with_flags(
                    [&](auto ch) {
                      constexpr bool kChain = decltype(ch)::value;
                      return launch_wide(
                          kChain ? "lm_grad_logits_tma_wide_kernel (chained)" : "lm_grad_logits_tma_wide_kernel",
                          &lm_grad_logits_tma_wide_kernel<T, kEnt, 1, kChain>,
                          &lm_grad_logits_tma_wide_kernel<T, kEnt, 2, kChain>, cluster, wgrid, WidePipe::kSmemBytes,
                          env, op, g, th, tw);
                    },
                    chain);
              }
              if (tma)
                return with_flags(
                    [&](auto ov) -> Status {
                      constexpr bool kOverlap = decltype(ov)::value;
                      lm_grad_logits_tma_kernel<T, kEnt, kOverlap><<<grid, kTmaThreadsOf<kOverlap>, kTmaSmemBytes, env.stream>>>(g, th, tw);
                      GK_CHECK_LAUNCH("lm_grad_logits_tma_kernel");
                      return Status::Ok();
                    },
                    overlap);
              if (wg) {
                lm_grad_logits_wgmma_kernel<T, kEnt><<<grid, kThreads, kWgSmemBytes, env.stream>>>(g);
                GK_CHECK_LAUNCH("lm_grad_logits_wgmma_kernel");
                return Status::Ok();
              }
            }
            lm_grad_logits_kernel<T, kEnt><<<grid, kThreads, Smem<T>::kFwdBytes, env.stream>>>(g);
            GK_CHECK_LAUNCH("lm_grad_logits_kernel");
            return Status::Ok();
          },
          ent);
    };
    // A sum's chunk: where it starts from (null: its first chunk) and where it goes (f32, or its last
    // chunk rounded to T). f32 gradients run on in the output itself; f16/bf16 ones in `running`.
    struct Step {
      const float* in;
      void* out;
      bool narrow;
    };
    auto step = [&](void* output, float* running, bool first, bool last) -> Step {
      if (!narrow) return {first ? nullptr : static_cast<float*>(output), output, false};
      return {first ? nullptr : running, last ? output : running, last};
    };
    auto gemm = [&](const GemmArgs& args, const dim3& grid) -> Status {
      if constexpr (sizeof(T) == 2) {
        if (tma && args.k > 0) {
          alignas(64) CUtensorMap ta, tb;
          GK_TRY(encode_tensor_map_2d(&ta, args.a, args.m, args.k, args.lda, kBM, kWgBK));
          GK_TRY(encode_tensor_map_2d(&tb, args.b, args.k, args.n, args.ldb, kWgBK, 64));
          if (wide) {  // 256-column tiles of C
            const dim3 wgrid(grid.x, unsigned(ceil_div(args.n, 2 * kBN)));
            return with_flags(
                [&](auto ch) {
                  constexpr bool kChain = decltype(ch)::value;
                  return launch_wide(kChain ? "lm_gemm_tma_wide_kernel (chained)" : "lm_gemm_tma_wide_kernel",
                                     &lm_gemm_tma_wide_kernel<T, 1, kChain>, &lm_gemm_tma_wide_kernel<T, 2, kChain>,
                                     cluster, wgrid, WidePipe::kSmemBytes, env, op, args, ta, tb);
                },
                chain);
          }
          return with_flags(
              [&](auto ov) -> Status {
                constexpr bool kOverlap = decltype(ov)::value;
                lm_gemm_tma_kernel<T, kOverlap><<<grid, kTmaThreadsOf<kOverlap>, kTmaSmemBytes, env.stream>>>(args, ta, tb);
                GK_CHECK_LAUNCH("lm_gemm_tma_kernel");
                return Status::Ok();
              },
              overlap);
        }
        if (wg) {
          lm_gemm_wgmma_kernel<T><<<grid, kThreads, kWgSmemBytes, env.stream>>>(args);
          GK_CHECK_LAUNCH("lm_gemm_wgmma_kernel");
          return Status::Ok();
        }
      }
      lm_gemm_kernel<T><<<grid, kThreads, Smem<T>::kGemmBytes, env.stream>>>(args);
      GK_CHECK_LAUNCH("lm_gemm_kernel");
      return Status::Ok();
    };
    // gradHidden[rows of the chunk] (+)= Gc · W[vocabulary of the chunk]: the sum over v runs on across
    // vocabulary chunks.
    auto grad_hidden = [&](int64_t row0, int64_t rows, int64_t v0, int64_t vcount) -> Status {
      if (p.dim == 0) return Status::Ok();
      const Step s = step(static_cast<char*>(p.grad_hidden) + size_t(row0 * p.dim) * ges, acc, v0 == 0,
                          v0 + vcount >= p.vocab);
      GemmArgs gh{gc, plan.chunk_vocab, W + v0 * p.dim, p.dim, s.in, s.out, p.dim, rows, p.dim, vcount, s.narrow,
                  aligned16(W + v0 * p.dim) && row_vec16, p.raster_rows};
      if (rscale) {  // Gc's rows, each at its own scale
        gh.cscale = rscale + row0;
        gh.cscale_stride = 1;
      }
      return gemm(gh, dim3(unsigned(ceil_div(rows, kBM)), unsigned(ceil_div(p.dim, kBN))));
    };
    // gradWeight[vocabulary of the chunk] (+)= Gt · H[rows of the chunk] and gradBias (+)= Σ_n Gc: the
    // sums over n run on across row chunks.
    auto grad_weight = [&](int64_t row0, int64_t rows, int64_t v0, int64_t vcount) -> Status {
      const bool first = row0 == 0, last = row0 + rows >= p.rows;
      if (p.dim > 0) {
        const Step s =
            step(static_cast<char*>(p.grad_weight) + size_t(v0 * p.dim) * ges, acc, first, last);
        GemmArgs gw{gt, plan.chunk_rows, H + row0 * p.dim, p.dim, s.in, s.out, p.dim, vcount, p.dim, rows,
                    s.narrow, aligned16(H + row0 * p.dim) && row_vec16, p.raster_rows};
        if (rscale) gw.cscale = rscale + p.rows;  // Gt: one scale for the call (stride 0)
        GK_TRY(gemm(gw, dim3(unsigned(ceil_div(vcount, kBM)), unsigned(ceil_div(p.dim, kBN)))));
      }
      if (p.grad_bias) {
        const Step s = step(static_cast<char*>(p.grad_bias) + size_t(v0) * ges,
                            two_pass ? acc + plan.chunk_vocab * p.dim : nullptr, first, last);
        lm_grad_bias_kernel<T><<<unsigned(ceil_div(vcount, kRowThreads)), kRowThreads, 0, env.stream>>>(
            gc, plan.chunk_vocab, rows, vcount, s.in, s.out, s.narrow, rscale ? rscale + row0 : nullptr);
        GK_CHECK_LAUNCH("lm_grad_bias_kernel");
      }
      return Status::Ok();
    };
    // Every chunk pair in order, rows outer (else vocabulary outer): G, then `gradients` of it.
    auto sweep = [&](bool rows_outer, auto&& gradients) -> Status {
      const int64_t outer = rows_outer ? p.rows : p.vocab, inner = rows_outer ? p.vocab : p.rows;
      const int64_t co = rows_outer ? plan.chunk_rows : plan.chunk_vocab;
      const int64_t ci = rows_outer ? plan.chunk_vocab : plan.chunk_rows;
      for (int64_t o = 0; o < outer; o += co) {
        for (int64_t i = 0; i < inner; i += ci) {
          const int64_t no = std::min(co, outer - o), ni = std::min(ci, inner - i);
          const int64_t row0 = rows_outer ? o : i, rows = rows_outer ? no : ni;
          const int64_t v0 = rows_outer ? i : o, vcount = rows_outer ? ni : no;
          GK_TRY(grad_logits(row0, rows, v0, vcount));
          GK_TRY(gradients(row0, rows, v0, vcount));
        }
      }
      return Status::Ok();
    };
    // Rows outer, vocabulary inner: every gradient from one G per chunk pair (for f16/bf16 gradients
    // with more than one row chunk, gradHidden only) ...
    GK_TRY(sweep(true, [&](int64_t row0, int64_t rows, int64_t v0, int64_t vcount) -> Status {
      GK_TRY(grad_hidden(row0, rows, v0, vcount));
      return two_pass ? Status::Ok() : grad_weight(row0, rows, v0, vcount);
    }));
    // ... and then (two_pass) gradWeight and gradBias, vocabulary outer, rows inner, G recomputed (the
    // same bits).
    if (two_pass) GK_TRY(sweep(false, grad_weight));
    return Status::Ok();
  });
}

Status launch_logprob_states(const LogprobStatesParams& p, const LaunchEnv& env, Scratch& scratch) {
  const char* op = "logprobStates";
  if (p.rows == 0) return Status::Ok();
  GK_TRY(check_head(p.rows, 0, p.vocab, p.temperature, op));
  GK_REQUIRE(p.logits && p.targets && p.states.max && p.states.sum_exp && p.states.target_logit,
             std::string(op) + ": null pointer");
  const int64_t slices = ceil_div(p.vocab, kLogitSliceCols);
  GK_REQUIRE(slices <= 65535, std::string(op) + ": vocab too large");
  const float scale2 = scale_of(1.4426950408889634 / p.temperature);
  float4* partial = nullptr;
  float* xt = nullptr;
  GK_TRY(scratch.alloc(&partial, size_t(p.rows * slices)));
  GK_TRY(scratch.alloc(&xt, size_t(p.rows)));
  GK_TRY(dispatch_float(p.dtype, "logits", [&](auto tag) -> Status {
    using T = decltype(tag);
    const T* lg = static_cast<const T*>(p.logits);
    lm_logit_states_kernel<T><<<dim3(unsigned(p.rows), unsigned(slices)), kThreads, 0, env.stream>>>(
        lg, p.vocab, p.targets, p.ignore_index, scale2, int(slices), partial);
    GK_CHECK_LAUNCH("lm_logit_states_kernel");
    lm_logit_target_kernel<T><<<unsigned(ceil_div(p.rows, kRowThreads)), kRowThreads, 0, env.stream>>>(
        lg, p.rows, p.vocab, p.states.vocab_start, p.targets, p.ignore_index, xt);
    GK_CHECK_LAUNCH("lm_logit_target_kernel");
    return Status::Ok();
  }));
  lm_state_kernel<<<unsigned(ceil_div(p.rows, kRowThreads)), kRowThreads, 0, env.stream>>>(
      partial, int(slices), p.rows, p.targets, xt, p.states.vocab_start, p.vocab, p.ignore_index, scale2, p.states);
  GK_CHECK_LAUNCH("lm_state_kernel");
  return Status::Ok();
}

Status launch_merge_states(const MergeStatesParams& p, const LaunchEnv& env, Scratch& scratch, ErrorFlags* flags) {
  const char* op = "mergeLogprobStates";
  if (p.rows == 0) return Status::Ok();
  GK_TRY(check_head(p.rows, 0, p.vocab, p.temperature, op));
  GK_REQUIRE(!p.states.empty() && p.targets && p.logprobs && p.lse, std::string(op) + ": null pointer");
  std::vector<StateDev> host;
  for (const StateArrays& s : p.states) {
    GK_REQUIRE(s.max && s.sum_exp && s.target_logit, std::string(op) + ": null state");
    host.push_back(StateDev{s.max, s.sum_exp, p.entropy ? s.sum_exp_delta : nullptr,
                            p.sum_squares ? s.sum_exp_sq : nullptr, s.target_logit, s.vocab_start, s.vocab_end});
  }
  StateDev* dev = nullptr;
  GK_TRY(scratch.upload(&dev, host));
  const float scale2 = scale_of(1.4426950408889634 / p.temperature);
  const float inv_t = scale_of(1.0 / p.temperature);
  const FwdOut o{p.logprobs, p.lse, p.entropy, p.sum_squares};
  lm_merge_states_kernel<<<unsigned(ceil_div(p.rows, kRowThreads)), kRowThreads, 0, env.stream>>>(
      dev, int(host.size()), p.rows, p.targets, p.vocab, p.ignore_index, scale2, inv_t, o, flags);
  GK_CHECK_LAUNCH("lm_merge_states_kernel");
  return Status::Ok();
}

}  // namespace gk
