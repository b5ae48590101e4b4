// THR family (docs/THR.md): tokenHiddenReward and thrReweight. Mirrors src/backends/cpu/thr.ts.
//
// Per non-degenerate group g (T_g tokens, K_g = |V*_g| columns, P = its correct tokens, hidden dim d):
//   g_t = e(col(y_t)) − q_t (on V*_g), w_t = 1/|y_r| ("length") or 1 ("none")
//   M_g = Σ_{u∈P} w_u g_u h_uᵀ              (K_g × d)            — thr_m_kernel
//   s_t = g_tᵀ M_g h_t = Σ_v g_t[v]·U[t,v], U = H M_gᵀ (T_g × K_g) — thr_scores_kernel + thr_fold_kernel
//   THR_t = +s_t (correct response) / −s_t; tau_g = beta · min over correct responses with tokens of
//   their mean THR (NaN-propagating)                              — thr_finish_kernel
// Degenerate groups (host flags): THR 0, tau NaN, nothing read. Empty shapes: Ttotal = 0 (thr has no
// elements, its pointer may be null) writes only tau; d = 0 gives s_t = 0 without launching the tile
// kernels (their grids would have 0 blocks, an invalid configuration).
//
// The two products are tiled GEMMs on tensor cores (tensor_core.cuh): mma.sync m16n8k8 on TF32
// operands with f32 accumulation, no cuBLAS (sm_80 and sm_90 run the same code); the scores also on
// Hopper's wgmma for f32 hidden states (thr_scores_wgmma_kernel, sm_90a; its own header below),
// taken by default on such a device (ThrParams::path: use_scores_wgmma below), or TMA-fed to
// warp-specialised tiles in 'tf32' (thr_scores_tma_kernel, paths 5 to 11), M on wgmma
// (thr_m_wgmma_kernel, paths 4 to 6), and M as a TMA-fed GEMM in 'tf32' (thr_m_tma_kernel, paths 9 to 11).
//   Block: 256 threads = 8 warps, 2 (rows) × 4 (columns), each warp a 64 × 32 sub-tile (4 × 4 MMA
//   tiles, 64 accumulators per thread) of a 128 × 128 output tile (the large configuration; the small
//   one, for GPUs with 99 KiB of shared memory per block, is below). k-steps of 32 flow through a
//   3-stage cp.async pipeline (cp.async.cg, 16-byte copies whose bytes past a row's end are
//   zero-filled, so K_g, d and T_g need not be multiples of anything): one barrier per k-step, the
//   copies of step k+2 in flight while step k is multiplied. Rows whose start is not 16-byte aligned
//   (q rows when K_g mod 4 ≠ 0; f32 hidden rows when d mod 4 ≠ 0) take 4-byte cp.async; f16/bf16
//   hidden rows that are not 16-byte aligned are staged with plain loads (odd d only). Warps whose
//   MMA tiles lie wholly outside a partial tile skip them (warp-uniform), so small groups cost less;
//   full block tiles (all of them at the goal size) take an instantiation with no branch between MMAs.
//   thr_scores_kernel: block owns 128 tokens × 128 columns of V*_g of one group; operands k-major
//     (hidden rows and M_g rows, reduction over d), stored with 4-float (8-half) row padding: the
//     fragment reads (lane 4g+t reads row g, column t) hit 32 distinct banks. After the k loop each
//     U tile is folded into its tokens' partial s over its 128 columns — per thread columns in order,
//     then the 4 lanes sharing a row by a fixed xor tree, then the 4 column-warps in order — and the
//     partial goes to spart[v-tile][token]; thr_fold_kernel adds a token's partials in v-tile order.
//     U is never stored. Shared memory: 3 × 36 KiB (f32 hidden) / 3 × 28 KiB (f16/bf16) = 108 / 84 KiB.
//   thr_m_kernel: block owns 128 rows of V*_g × 128 hidden dims of M_g and reduces over the group's
//     correct tokens, 32 per k-step: operands MN-major (q rows and hidden rows of those tokens), stored
//     unpadded with an xor swizzle of 16-byte chunks (chunk' = chunk xor 2·(k mod 4) for 4-byte
//     elements, xor (k mod 4) for 2-byte), again conflict-free for the fragment reads. A's element
//     w_u·(1[v = col_u] − q_u[v]) is formed when a fragment is read (w_u and col_u from shared memory,
//     one compare per element): 1 − q_u at the token's own column is exact in f32 for q ≥ 1/2, so a
//     confident token's tiny g entry is not the difference of two products of size w·|h| (the
//     one-hot part once added apart, exactly, cancelled against the dense part's rounding: 1.85e-2
//     of max|THR_g| in 'f32' at q_y = 1 − 1e-5, test/cuda/ops-thr-precision.test.ts). Epilogue: M
//     written from the accumulators. Shared memory: 3 × 32 KiB (f32 hidden) / 3 × 24 KiB (f16/bf16)
//     = 96 / 72 KiB.
//   The per-step tokens of thr_m_kernel (ptok, weights, V* columns) are fetched one k-step ahead of
//   the copies that need them, so no copy waits on a dependent load.
// Configurations. Both kernels are one template over their tile rows and pipeline depth; the launcher
//   picks, per kernel and hidden dtype, the largest instantiation that fits the device's
//   cudaDevAttrMaxSharedMemoryPerBlockOptin (choose_tiles):
//   large: thr_m_kernel 128 × 128 tiles, 3 stages, 96 / 72 KiB (f32 / f16, bf16 hidden; + 768 B
//     static); thr_scores_kernel 3 stages, 108 / 84 KiB (+ 512 B). A100 (163 KiB per block), H100,
//     H200 (227 KiB); the large M also on the 99 KiB GPUs below.
//   small: thr_m_kernel 64 (V*) × 128 (d) tiles — the same 2 × 4 warps, each 32 × 32 (2 × 4 MMA
//     tiles, 32 accumulators per thread), q rows staged 8 floats per loader thread (swizzled 64-float
//     rows, still conflict-free) — and 2 stages: 2 × 24 / 2 × 16 = 48 / 32 KiB (+ 512 B);
//     thr_scores_kernel unchanged but for 2 stages (copies of step k+1 in flight while step k is
//     multiplied): 72 / 56 KiB. sm_86 (A10, A40, RTX 30xx) and sm_89 (L4, L40S, RTX 40xx) allow 99 KiB
//     per block: there the large M fits (96.75 / 72.75 KiB), f32 hidden states take the 2-stage scores
//     kernel and f16/bf16 ones keep the 3-stage one (84.5 KiB). One block (8 warps) per SM there (100
//     KiB per SM). Forced (ThrParams::small_tiles), both kernels take the small configuration.
//   Less than the small configuration needs (72.5 / 56.5 KiB, its scores kernel; no GPU of sm_80 or
//   newer) is BACKEND_UNAVAILABLE, naming what it needs and what the device allows.
//   ThrParams::small_tiles (the test hook thrTuning.smallTiles) forces the small configuration on any
//   device.
//   Bits: the configuration is per device, never per call, so a device always gives the same bits for
//   the same inputs. Across configurations every element of M_g and of the partial s takes the same
//   operations in the same order (the tile shape decides which block computes it, the pipeline depth
//   how early its operands land), and the emulator gives the same bits in both (tested); two devices
//   may still differ in the last bits (another configuration, other SASS), within the bounds below.
// Precision (ThrPrecision, a template flag). 'f32' (default): each operand not exact in TF32 is split
//   when its fragment is read, x = hi + lo, hi = tf32(x), lo = tf32(x − hi), and a·b ≈ a_lo·b_hi +
//   a_hi·b_lo + a_hi·b_hi (3xTF32, small terms first). f16/bf16 hidden states are exact in TF32 (hi =
//   h), so with them each product is 2xTF32. Tensor cores truncate each MMA's f32 sum, and one
//   accumulator carried through the whole reduction drifts (~1e-5 of max|THR| at d = 896): each k-step's
//   MMAs (≤ 12 per output) go into fresh registers that are then added to the running sums in f32
//   round-to-nearest (flush). 'tf32': one MMA per product on rounded operands, straight into the sums.
// Registers (ptxas, nvcc 13.0, no spills; 'f32' / 'tf32', over the three hidden dtypes):
//   large, sm_90: scores 206–214 ('f32': 128 accumulators + split fragments) / 125–128 ('tf32',
//     __launch_bounds__ min 2 blocks, so two 108 KiB blocks share an H100 SM); M 239–243 ('f32', one
//     block per SM) / 128 ('tf32': min 2 blocks too, since M lost its 64 KiB one-hot tile on
//     2026-11-28, so two 96 KiB blocks share an H100/H200 SM; 4–8 bytes of spill at that cap, 175–180
//     registers before it — waiting for a GPU to show that 16 warps per SM beat 8). sm_80: scores
//     203–209 / 127–128, M 237–238 / 128 (12 bytes of spill; an A100 fits two blocks with f16/bf16
//     hidden states only).
//   small, sm_90: scores (2 stages) 204–212 / 128, M 148–153 / 114–127; sm_80: scores 202–207 /
//     127–128, M 144–146 / 109–128 (the sm_80 SASS is what sm_86 and sm_89 run). (M's figures from
//     2026-11-28, A's one-hot compare included; thr_m_wgmma_kernel 144–207 on sm_90a.)
//   The 8-deep MMA slices are unrolled by 2, not 4: fully unrolled, ptxas hoists the next slices'
//   fragment reads and spills in 'f32' (255 registers).
// Grid: ceil(K_g/R)·ceil(d/128) M blocks (R = 128, or 64 small) and ceil(T_g/128)·ceil(K_g/128) score
//   blocks per group, all
//   groups of a batch in one launch (a host-built list maps blockIdx.x to its group by binary search).
//   M_g lives in scratch with rows padded to ld = round_up(d, 4) floats (16-byte aligned rows for the
//   scores kernel's copies); groups are processed in batches whose M fits m_budget_bytes (256 MiB).
// Determinism and batch invariance: every tile origin, split and summation order is fixed by the
//   group's own token, V* and d offsets, K_g and d (and the device's configuration); never by the
//   batch, the other groups or the SM count (no atomics, no split count from it). A group's THR has the
//   same bits alone, among other groups or in its own batch, in each configuration (tested).
// FLOPs: 2·K_g·d·(|P_g| + T_g) per group (+ 2·T_g·K_g in the epilogue); tensor-core work is that times
//   1 ('tf32'), 2 ('f32' with f16/bf16 hidden) or 3 ('f32' with f32 hidden). The scatter adds |P_g|·d.
// Bytes (DRAM, compulsory): 4·T_g·d hidden (2· for f16/bf16) + 4·T_g·K_g q + 4·T_g written; M_g
//   written once (4·K_g·d) and read by each of the ceil(T_g/128) token tiles, hidden read by each of the
//   ceil(K_g/128) V* tiles, through L2: at 128 × 128 tiles each block streams 2 × 128 × 4 bytes per
//   reduction index, 32 FLOPs per L2 byte (f32 operands); the small M tile (64 × 128) 21.
// Predicted at the goal size (one group of 8 × 2048 tokens, T⁺ = 8192, d 3584, |V*| 4096; 721 GFLOP:
//   481 in the scores, 240 in M), from mma.sync at ~1200 TF32 FLOP/clk/SM (about 60% of Hopper's
//   wgmma rate) × 80% × 132 SMs × 1.75 GHz ≈ 220 TFLOPS: 'f32' ≈ 9.8 ms (f32 hidden, 3 × 721 GFLOP) and
//   ≈ 6.6 ms (bf16), 'tf32' ≈ 3.3 ms — where L2 becomes the limit too: 'tf32' streams ~15 GB (scores:
//   4096 blocks × 3.7 MB) + ~7.5 GB (M: 896 × 8.4 MB) from L2, ≈ 3.5–4 ms at 5.5–6.5 TB/s. Goals (H100,
//   issue 10): 'f32' under PyTorch's f32 matrix form (14.5 ms on the H200), 'tf32' within 1.5x of its
//   TF32 matmul (2.64 ms → ≤ 3.96 ms): predicted met and at the edge. Before this design (64 × 64 tiles,
//   4 warps, load–barrier–compute, WMMA), the H200 measured 70.7 / 54.1 ms ('f32', f32 / bf16 hidden)
//   and 43.0 / 41.5 ms ('tf32'). Measured with this design (large configuration, f32 hidden; the small
//   one has not run on a GPU): H100 17.8 / 9.66 ms ('f32' / 'tf32'; ncu at base clocks: scores 14.7 ms,
//   M 7.9 ms in 'f32'), H200 18.5 / 9.8 ms: about half the predicted rate, latency- rather than
//   L2-bound. With the wgmma scores (below; `auto` on a 9.0 device) the H200 runs THR in 13.4 / 8.1 ms.
// Numerics, per token t of group g against the f64 definition: bound · max_{u∈g} |THR_u| + 4u·S̃_t
// (S̃_t = Σ_v w_v ⟨|g_v|,|g_t|⟩⟨|h_v|,|h_t|⟩, the sum with every term made positive; u the mode's unit
// roundoff; the second term matters only where M_g's terms cancel), tau_g likewise:
//   'f32': bound 3e-4 (issue 10's f32 bound). Each product is exact to 3·2^-22 (the dropped a_lo·b_lo
//     and the rounding of the lo parts; 2^-22 when h is exact), the truncating MMA sums stay within a
//     k-step, the rest is f32 round-to-nearest: an f32-grade result. Measured with the previous (WMMA,
//     same arithmetic) kernels on an H200: 2.6e-7..5.9e-7 in test/cuda/ops-thr-precision.test.ts,
//     1.4e-6 at 8 × 256 tokens, |V*| 1024, d 896.
//   'tf32': bound 3e-3. w·q, M_g and f32 hidden states are rounded to TF32 (unit roundoff 2^-11 ≈
//     4.9e-4), the one-hot entry 1 − q_y with the rest of A. Measured (H200, previous kernels, one-hot
//     part exact): 1.0e-4..2.6e-4.
//   Sums are in a fixed order, so the same inputs give the same bits. NaN propagates; ±Inf in q, h or
//   M_g gives NaN (a split's low part is Inf − Inf), where the math may say ±Inf: never a finite number.
//
// thrReweight: one thread per token (binary searches in responseOffsets and groupOffsets):
//   'thr'/'thr-only': |THR| > tau ? (1 + p·sign(THR))·A : (mask ? 0·A : A); 'nthr': incorrect tokens
//   with −THR > tau get eta_g·A; degenerate groups keep A; NaN THR or tau → NaN where the rule applies.
//   The coefficient and its product with A are taken in f64 and rounded once (as the reference).
//   Bytes: 12·Ttotal + small; FLOPs ≤ 3 per token.
#include <algorithm>
#include <climits>
#include <cmath>
#include <cstdint>
#include <type_traits>

#include "tensor_core.cuh"
#include "thr.cuh"
#include "wgmma_tiles.cuh"

namespace gk {
namespace {

// ------------------------------------------------------------------------------- tile geometry
// Both kernels are templates over their tile rows (kRows) and pipeline depth (kStages); the two
// configurations (header, "Configurations") instantiate them. The block's 2 × 4 warp grid, the tile
// columns and the k-step are the same in both: a warp owns kRows/2 × 32 of the output tile.
constexpr int kBN = 128;           // output tile columns (scores: V* columns; M: hidden dims)
constexpr int kBK = 32;            // k-step: reduction indices staged per pipeline stage
constexpr int kThreads = 256;      // 8 warps: 2 (rows) × 4 (columns)
constexpr int kWarpN = 32;         // a warp's columns
constexpr int kNT = kWarpN / 8;    // n8 MMA tiles per warp
constexpr int kSRows = 128;        // scores tile rows (tokens), both configurations
constexpr int kMRowsLarge = 128;   // M tile rows (V*): large configuration
constexpr int kMRowsSmall = 64;    //                   small configuration
constexpr int kStagesLarge = 3;    // cp.async pipeline depth: large configuration
constexpr int kStagesSmall = 2;    //                          small configuration
constexpr int kFoldThreads = 128;

// A warp sub-tile's accumulators (MT m16 tiles × kNT n8 tiles), in mma.sync's D layout.
template <int MT>
using Frag = float[MT][kNT][4];

// TF32 holds f16 and bf16 values exactly (10 and 7 mantissa bits ≤ its 10, exponents in range, f16
// subnormals normal in f32), so those hidden states never need rounding or a low part.
template <class T>
constexpr bool kHiddenExactInTf32 = !std::is_same<T, float>::value;

// What an operand goes through before its MMA: used as is (exact in TF32), rounded once, or split.
enum class Op { Exact, Round, Split };
template <Op op>
__device__ __forceinline__ void prep(float x, float& hi, float& lo) {
  if constexpr (op == Op::Split) {
    split_tf32(x, hi, lo);
  } else {
    hi = op == Op::Round ? tf32_round(x) : x;
    lo = 0.f;
  }
}

__device__ __forceinline__ float smem_f32(float x) { return x; }
__device__ __forceinline__ float smem_f32(__half x) { return __half2float(x); }
__device__ __forceinline__ float smem_f32(__nv_bfloat16 x) { return __bfloat162float(x); }

template <int MT>
__device__ __forceinline__ void zero(Frag<MT>& a) {
#pragma unroll
  for (int i = 0; i < MT; ++i)
#pragma unroll
    for (int j = 0; j < kNT; ++j)
#pragma unroll
      for (int e = 0; e < 4; ++e) a[i][j][e] = 0.f;
}

// 'f32' mode: tensor cores round each MMA's f32 sum toward zero, so one accumulator carried through a
// long reduction drifts toward zero by up to an ulp per MMA (1.3e-5 of max|THR| at d = 896, 2048
// tokens on an H200, ten times the rest of the error). Each k-step therefore accumulates into fresh
// registers (≤ 12 MMAs per output), added to the running sums in round-to-nearest f32 (1.4e-6).
template <int MT>
__device__ __forceinline__ void flush(Frag<MT>& acc, Frag<MT>& part) {
#pragma unroll
  for (int i = 0; i < MT; ++i)
#pragma unroll
    for (int j = 0; j < kNT; ++j)
#pragma unroll
      for (int e = 0; e < 4; ++e) {
        acc[i][j][e] += part[i][j][e];
        part[i][j][e] = 0.f;
      }
}

// One 8-deep slice of a warp's (16·MT) × 32 sub-tile: B fragments of its 4 n8 tiles, then per m16 tile the
// A fragment and 1–3 MMAs per (m, n) tile. load_a(mi, a[4]) / load_b(ni, b[2]) read the fragments in
// mma.sync's layout (tensor_core.cuh). Unless kFull, m_tiles / n_tiles (warp-uniform) skip tiles
// wholly outside a partial block tile, whose operands are zero; full tiles (every tile at the goal
// size) take the kFull instantiation, with no branch between the MMAs.
template <Op kA, Op kB, bool kFull, int MT, class LoadA, class LoadB>
__device__ __forceinline__ void warp_k8(Frag<MT>& d, int m_tiles, int n_tiles, const LoadA& load_a,
                                        const LoadB& load_b) {
  float bh[kNT][2], bl[kNT][2];
#pragma unroll
  for (int ni = 0; ni < kNT; ++ni) {
    float b[2];
    load_b(ni, b);
#pragma unroll
    for (int i = 0; i < 2; ++i) prep<kB>(b[i], bh[ni][i], bl[ni][i]);
  }
#pragma unroll
  for (int mi = 0; mi < MT; ++mi) {
    if (!kFull && mi >= m_tiles) break;
    float a[4], ah[4], al[4];
    load_a(mi, a);
#pragma unroll
    for (int i = 0; i < 4; ++i) prep<kA>(a[i], ah[i], al[i]);
#pragma unroll
    for (int ni = 0; ni < kNT; ++ni) {
      if (!kFull && ni >= n_tiles) break;
      if constexpr (kA == Op::Split) mma_tf32(d[mi][ni], al, bh[ni]);
      if constexpr (kB == Op::Split) mma_tf32(d[mi][ni], ah, bl[ni]);
      mma_tf32(d[mi][ni], ah, bh[ni]);
    }
  }
}

// Active m16 (n8) tiles of a warp whose sub-tile starts at `first` of a block tile with `valid` rows.
__device__ __forceinline__ int active_tiles(int valid, int first, int tile, int most) {
  return max(0, min(most, (valid - first + tile - 1) / tile));
}

// One 16-byte copy of elements [x, x + 16/sizeof(T)) of a row of n elements (16-byte aligned), the
// bytes past n zero-filled (all of them when n ≤ x: rows outside the tile pass n = 0).
template <class T>
__device__ __forceinline__ void stage_chunk(T* dst, const T* row, int64_t x, int64_t n) {
  const int64_t left = (n - x) * int64_t(sizeof(T));
  const int bytes = left <= 0 ? 0 : left >= 16 ? 16 : int(left);
  cp_async16(dst, bytes > 0 ? row + x : row, bytes);
}

// Copies elements [x, x + 16) of a row of n elements to dst (16 consecutive elements, 16-byte aligned),
// zeros past n. vec16: the row is 16-byte aligned (else 4-byte copies, or plain loads for 2-byte types).
template <class T>
__device__ __forceinline__ void stage16(T* dst, const T* row, int64_t x, int64_t n, bool vec16) {
  constexpr int E = 16 / int(sizeof(T));  // elements per 16-byte copy
  if (vec16) {
#pragma unroll
    for (int c = 0; c < 16 / E; ++c) stage_chunk(dst + c * E, row, x + c * E, n);
  } else if constexpr (sizeof(T) == 4) {
#pragma unroll
    for (int e = 0; e < 16; ++e) cp_async4(dst + e, x + e < n ? row + x + e : row, x + e < n ? 4 : 0);
  } else {  // 2-byte rows with odd d: plain loads (cp.async copies ≥ 4 aligned bytes)
    const uint16_t* r = reinterpret_cast<const uint16_t*>(row);
    uint16_t* o = reinterpret_cast<uint16_t*>(dst);
#pragma unroll
    for (int e = 0; e < 16; ++e) o[e] = x + e < n ? __ldg(r + x + e) : uint16_t(0);
  }
}

// thr_m_kernel's MN-major stage tiles: [kBK][W] elements (W = 128, or 64 for the small tile's q rows),
// 16-byte chunks swizzled by row so that the fragment reads (lanes t = 0..3 read rows k..k+3, g = 0..7
// read 8 consecutive columns) use 32 distinct banks without padding: element (k, x) at
// k·W + (x/E xor s(k))·E + x mod E, E elements per chunk, s(k) = (k mod 4)·(8/E). Every row starts at
// bank 0 (W·size is a multiple of 128 bytes) and s(k) < 8 stays within the 128-byte window the reads hit.
template <class T, int W>
__device__ __forceinline__ int swz(int k, int x) {
  constexpr int E = 16 / int(sizeof(T));
  static_assert(W * sizeof(T) % 128 == 0, "swizzled rows must start at bank 0");
  return k * W + (((x / E) ^ ((k & 3) * (8 / E))) * E) + (x % E);
}
// stage16's copies into a swizzled row: elements [x, x + N) of the row to tile columns [c, c + N) of
// row k (N a multiple of 16 bytes, c of N).
template <class T, int W, int N>
__device__ __forceinline__ void stage_swz(T* tile, int k, int c, const T* row, int64_t x, int64_t n, bool vec16) {
  constexpr int E = 16 / int(sizeof(T));
  static_assert(N % E == 0, "whole 16-byte chunks");
  if (vec16) {
#pragma unroll
    for (int j = 0; j < N / E; ++j) stage_chunk(tile + swz<T, W>(k, c + j * E), row, x + j * E, n);
  } else if constexpr (sizeof(T) == 4) {
#pragma unroll
    for (int e = 0; e < N; ++e)
      cp_async4(tile + swz<T, W>(k, c + e), x + e < n ? row + x + e : row, x + e < n ? 4 : 0);
  } else {
    const uint16_t* r = reinterpret_cast<const uint16_t*>(row);
#pragma unroll
    for (int e = 0; e < N; ++e)
      reinterpret_cast<uint16_t*>(tile)[swz<T, W>(k, c + e)] = x + e < n ? __ldg(r + x + e) : uint16_t(0);
  }
}

// Per-launch description of one batch of groups (device arrays; n = listed groups).
struct GroupList {
  const int* gid;             // [n] group ids
  const int* tile_start;      // [n+1] first block of each listed group
  const long long* m_off;     // [n] float offset of M_g in the M scratch
  const long long* part_off;  // [n] float offset of the group's score partials in spart
  int n;
};

struct GroupGeom {
  const int* gto;          // [G+1] group token offsets
  const int* voff;         // [G+1] vocab offsets
  const long long* poff;   // [G+1] probs offsets
  const int* pstart;       // [G+1] offsets into ptok / pw / pcol
  const int* ptok;         // correct tokens, packed order
  const float* pw;         // their weights
  const int* pcol;         // their columns in V*_g (tokcol[ptok[p]])
  const int* tokcol;       // [Ttotal] column of y_t in V*_g
  const float* probs;
  int64_t d;
  int64_t ld_m;            // row stride of M_g: round_up(d, 4) floats (d for a stacked aggregate)
  bool hidden_vec16;       // hidden rows start 16-byte aligned (base aligned, d·sizeof(T) mod 16 = 0)
  bool m_vec16;            // M rows start 16-byte aligned (ld_m mod 4 = 0 and M aligned)
};

// ----------------------------------------------------------------------------------------- M_g
// M_g's operand A[v][p] = w_p·g_p[v], g_p[v] = 1[v = col_p] − q_p[v] (thr_m_kernel, thr_m_wgmma_kernel,
// thr_mt_kernel): 1 − q formed first at the token's own column (exact in f32 for q ≥ 1/2).
__device__ __forceinline__ float weighted_g(float w, bool own_col, float q) { return w * ((own_col ? 1.f : 0.f) - q); }

// An M block's place (thr_m_kernel and thr_m_wgmma_kernel): its group g (list entry li), its tile of
// M_g — rows [v0, v0 + rows) of V*_g (kRows at most), hidden dims [j0, j0 + cols) — and the group's
// tokens (from t0), correct tokens [p_beg, p_end) and probabilities q.
struct MBlock {
  int li, g, v0, K, rows, cols, t0, p_beg, p_end;
  int64_t j0;
  const float* q;
  // kCols: the tile's hidden dims (256 in thr_m_tma_kernel<true>, 128 elsewhere).
  __device__ MBlock(const GroupList& list, const GroupGeom& geo, int kRows, int kCols = kBN) {
    li = find_range(list.tile_start, list.n, blockIdx.x);
    g = list.gid[li];
    const int tiles_j = static_cast<int>(ceil_div(geo.d, kCols));
    const int local = blockIdx.x - list.tile_start[li];
    v0 = (local / tiles_j) * kRows;
    j0 = int64_t(local % tiles_j) * kCols;
    K = geo.voff[g + 1] - geo.voff[g];
    rows = min(kRows, K - v0);
    cols = geo.d - j0 < kCols ? static_cast<int>(geo.d - j0) : kCols;
    t0 = geo.gto[g];
    p_beg = geo.pstart[g];
    p_end = geo.pstart[g + 1];
    q = geo.probs + geo.poff[g];
  }
};

// A warpgroup's rows of an M_g tile from wgmma's D fragment (thr_m_wgmma_kernel, thr_m_tma_kernel):
// M_g[v0 + r][j0 + c] = acc for r < rows, c < cols, 8-byte stores where rows are 8-byte aligned (a
// stacked odd d is not).
__device__ __forceinline__ void wg_store_m(const float (&acc)[64], const WgLane& Ln, float* Mg, int64_t ld_m, int v0,
                                           int64_t j0, int rows, int cols) {
#pragma unroll
  for (int h = 0; h < 2; ++h) {
    const int r = Ln.row(h);
    if (r >= rows) continue;
    float* out_row = Mg + int64_t(v0 + r) * ld_m + j0;
#pragma unroll
    for (int j = 0; j < 16; ++j) {
      const int c = Ln.col(j, 0);
      if (c >= cols) continue;
      const float x0 = acc[4 * j + 2 * h], x1 = acc[4 * j + 2 * h + 1];
      if (c + 1 < cols && (ld_m & 1) == 0) {
        *reinterpret_cast<float2*>(out_row + c) = make_float2(x0, x1);
      } else {
        out_row[c] = x0;
        if (c + 1 < cols) out_row[c + 1] = x1;
      }
    }
  }
}

// Shared memory of thr_m_kernel<T, ·, kRows, kStages>: dynamic (the stages) and static (the staged
// tokens' weights and columns). Large (128, 3): 3 × (16 + 16 / 8) KiB = 96 / 72 KiB; small (64, 2):
// 2 × (8 + 16 / 8) KiB = 48 / 32 KiB (f32 / f16, bf16 hidden); + 768 / 512 B.
template <class T, int kRows, int kStages>
struct MLayout {
  static constexpr size_t kABytes = size_t(kBK) * kRows * sizeof(float);  // q rows
  static constexpr size_t kBBytes = size_t(kBK) * kBN * sizeof(T);        // hidden rows
  static constexpr size_t kStageBytes = kABytes + kBBytes;
  static constexpr size_t kSmemBytes = kStages * kStageBytes;
  static constexpr size_t kStaticBytes = size_t(kStages) * kBK * (sizeof(float) + sizeof(int));
};

// Block: a kRows (v) × 128 (j) tile of M_g, reduced over the group's correct tokens p (k-steps of 32).
//   A[v][p] = w_p·(1[v = col_p] − q_p[v]) (MN-major: a token's q row is contiguous in v; 1 − q formed
//   exactly in f32 at the token's own column), B[p][j] = h_p[j].
template <class T, bool kSplit, int kRows, int kStages>
__global__ void __launch_bounds__(kThreads, kSplit ? 1 : 2)
    thr_m_kernel(GroupList list, GroupGeom geo, const T* __restrict__ hidden, float* __restrict__ M) {
  using L = MLayout<T, kRows, kStages>;
  constexpr int kWarpM = kRows / 2, kMT = kWarpM / 16;  // a warp's rows and m16 tiles
  constexpr int kAPer = kRows / 8;                      // q elements a loader thread stages per k-step
  static_assert(kThreads / 8 == kBK, "one k-step row per 8 loader threads");
  constexpr Op kA = kSplit ? Op::Split : Op::Round;  // w·(1[v = col] − q): any f32 value
  constexpr Op kB = kHiddenExactInTf32<T> ? Op::Exact : (kSplit ? Op::Split : Op::Round);
  GK_DYNAMIC_SMEM(unsigned char, stages);
  __shared__ float s_w[kStages][kBK];  // the staged tokens' weights (0 past the group's end)
  __shared__ int s_pcol[kStages][kBK];  // their V* columns (−1 past the end) (L::kStaticBytes in all)

  const MBlock mb(list, geo, kRows);
  const int li = mb.li, v0 = mb.v0, K = mb.K, rows = mb.rows, cols = mb.cols, t0 = mb.t0;
  const int64_t d = geo.d, j0 = mb.j0;
  const int p_beg = mb.p_beg, p_end = mb.p_end;
  const float* q = mb.q;
  const bool q_vec16 = (reinterpret_cast<uintptr_t>(q) & 15u) == 0 && (K & 3) == 0;
  const int tid = threadIdx.x, warp = tid >> 5, lane = tid & 31, g8 = lane >> 2, t4 = lane & 3;
  const int wm = warp >> 2, wn = warp & 3;
  const int m_tiles = active_tiles(rows, wm * kWarpM, 16, kMT);
  const int n_tiles = active_tiles(cols, wn * kWarpN, 8, kNT);

  // Loader: thread → token row lr of the k-step, columns [kAPer·lp, +kAPer) of the q tile and
  // [16·lp, +16) of the hidden tile (a warp copies 4 rows × 4·kRows contiguous bytes of q, and 4 × 512
  // of f32 hidden). A row's token, weight and column are fetched one k-step before its copies are issued.
  const int lr = tid >> 3, lp = tid & 7;
  auto fetch = [&](int kt, int& tok, float& w, int& col) {
    const int p = p_beg + kt * kBK + lr;
    const bool ok = p < p_end;
    tok = ok ? geo.ptok[p] : -1;
    w = ok ? geo.pw[p] : 0.f;
    col = ok ? geo.pcol[p] : -1;
  };
  auto load_stage = [&](int slot, int tok, float w, int col) {
    unsigned char* st = stages + size_t(slot) * L::kStageBytes;
    if (lp == 0) {
      s_w[slot][lr] = w;
      s_pcol[slot][lr] = col;
    }
    const bool ok = tok >= 0;
    stage_swz<float, kRows, kAPer>(reinterpret_cast<float*>(st), lr, lp * kAPer, q + (ok ? int64_t(tok - t0) * K : 0),
                                   v0 + lp * kAPer, ok ? K : 0, q_vec16);
    stage_swz<T, kBN, 16>(reinterpret_cast<T*>(st + L::kABytes), lr, lp * 16, hidden + (ok ? int64_t(tok) * d : 0),
                          j0 + lp * 16, ok ? d : 0, geo.hidden_vec16);
  };

  // Every fragment row this lane reads is k ≡ t (mod 4) (k = k8 + t, k8 + t + 4), so its swizzle is
  // the same in every k-step: the columns' offsets within a row are fixed per thread.
  int col_a[kMT][2], col_b[kNT];
#pragma unroll
  for (int mi = 0; mi < kMT; ++mi)
#pragma unroll
    for (int h = 0; h < 2; ++h) col_a[mi][h] = swz<float, kRows>(t4, wm * kWarpM + mi * 16 + g8 + 8 * h) - t4 * kRows;
#pragma unroll
  for (int ni = 0; ni < kNT; ++ni) col_b[ni] = swz<T, kBN>(t4, wn * kWarpN + ni * 8 + g8) - t4 * kBN;

  Frag<kMT> acc, part;
  zero(acc);
  zero(part);
  Frag<kMT>& sink = kSplit ? part : acc;  // 'tf32': the MMAs go straight into the running sums
  const int nk = (p_end - p_beg + kBK - 1) / kBK;
  int n_tok, n_col;
  float n_w;
#pragma unroll
  for (int s = 0; s < kStages - 1; ++s) {
    if (s < nk) {
      fetch(s, n_tok, n_w, n_col);
      load_stage(s, n_tok, n_w, n_col);
    }
    cp_async_commit();
  }
  fetch(kStages - 1, n_tok, n_w, n_col);
  for (int kt = 0; kt < nk; ++kt) {
    cp_async_wait<kStages - 2>();  // this thread's copies of step kt have landed ...
    __syncthreads();               // ... and everyone's; every warp is done with step kt − 1's slot
    const int nx = kt + kStages - 1;
    if (nx < nk) load_stage(nx % kStages, n_tok, n_w, n_col);
    cp_async_commit();  // (an empty group past the end keeps the wait count uniform)
    fetch(nx + 1, n_tok, n_w, n_col);

    const int slot = kt % kStages;
    const unsigned char* st = stages + size_t(slot) * L::kStageBytes;
    const float* As = reinterpret_cast<const float*>(st);
    const T* Bs = reinterpret_cast<const T*>(st + L::kABytes);
    auto mma_step = [&](auto full) {
#pragma unroll 2
      for (int k8 = 0; k8 < kBK; k8 += 8) {
        const float* Aa = As + (k8 + t4) * kRows;  // fragment rows k = k8 + t4 (a0, a1, b0) and k + 4
        const T* Ba = Bs + (k8 + t4) * kBN;
        const float wa = s_w[slot][k8 + t4], wb = s_w[slot][k8 + t4 + 4];
        // The two tokens' columns relative to my first fragment row (−1 past the group's end: no row).
        const int row0 = v0 + wm * kWarpM + g8;
        const int ca = s_pcol[slot][k8 + t4] - row0, cb = s_pcol[slot][k8 + t4 + 4] - row0;
        warp_k8<kA, kB, decltype(full)::value>(
            sink, m_tiles, n_tiles,
            [&](int mi, float(&a)[4]) {  // a[i] = A[m + 8(i & 1)][k + 4(i >> 1)] = w_k (1[m = col_k] − q_k[m])
              const int m = mi * 16;
              a[0] = weighted_g(wa, ca == m, Aa[col_a[mi][0]]);
              a[1] = weighted_g(wa, ca == m + 8, Aa[col_a[mi][1]]);
              a[2] = weighted_g(wb, cb == m, Aa[4 * kRows + col_a[mi][0]]);
              a[3] = weighted_g(wb, cb == m + 8, Aa[4 * kRows + col_a[mi][1]]);
            },
            [&](int ni, float(&b)[2]) {  // b[i] = B[k + 4i][n] = h_k[n]
              b[0] = smem_f32(Ba[col_b[ni]]);
              b[1] = smem_f32(Ba[4 * kBN + col_b[ni]]);
            });
      }
    };
    if (m_tiles == kMT && n_tiles == kNT)
      mma_step(std::true_type{});
    else if (m_tiles > 0 && n_tiles > 0)
      mma_step(std::false_type{});
    if constexpr (kSplit) flush(acc, part);
  }
  cp_async_wait<0>();  // (only the empty groups committed past the end remain)

  // M from the accumulators (mma.sync's D layout: rows g, g + 8, columns 2t, 2t + 1 of each tile):
  // 8-byte stores, a warp writing 8 rows × 32 bytes per instruction.
  float* Mg = M + list.m_off[li];
#pragma unroll
  for (int mi = 0; mi < kMT; ++mi)
#pragma unroll
    for (int ni = 0; ni < kNT; ++ni)
#pragma unroll
      for (int h = 0; h < 2; ++h) {
        const int r = wm * kWarpM + mi * 16 + g8 + 8 * h, c = wn * kWarpN + ni * 8 + 2 * t4;
        if (r >= rows || c >= cols) continue;
        const float x0 = acc[mi][ni][2 * h], x1 = acc[mi][ni][2 * h + 1];
        float* out = Mg + int64_t(v0 + r) * geo.ld_m + j0 + c;
        if (c + 1 < cols && (geo.ld_m & 1) == 0) {  // float2: rows 8-byte aligned (a stacked odd d is not)
          *reinterpret_cast<float2*>(out) = make_float2(x0, x1);
        } else {
          out[0] = x0;
          if (c + 1 < cols) out[1] = x1;
        }
      }
}

// ------------------------------------------------------------------------------- M_g on wgmma (sm_90a)
// One k-step (32) of a warpgroup's TF32 wgmma tiles, K-major at sa (its 64 A rows) and sb (B's 128 rows),
// the low parts two tiles further: per k8 slice, kSplit: a_lo·b_hi (+ a_hi·b_lo when kSplitB) + a_hi·b_hi
// into fresh sums `part` (small terms first), else a·b into `acc`; committed as one group.
template <bool kSplit, bool kSplitB, int P>
__device__ __forceinline__ void tf32_kstep(float (&acc)[64], float (&part)[P], uint32_t sa, uint32_t sb) {
  wgmma_fence();
#pragma unroll
  for (int kk = 0; kk < 4; ++kk) {
    const uint64_t ah = wgmma_desc(sa + 32 * kk, 16, 1024, kSwizzle128);
    const uint64_t bh = wgmma_desc(sb + 32 * kk, 16, 1024, kSwizzle128);
    if constexpr (kSplit) {
      const uint64_t al = wgmma_desc(sa + 2 * kWgTileBytes + 32 * kk, 16, 1024, kSwizzle128);
      wgmma_async<float, 128, 0>(part, al, bh, kk > 0);
      if constexpr (kSplitB)
        wgmma_async<float, 128, 0>(part, ah, wgmma_desc(sb + 2 * kWgTileBytes + 32 * kk, 16, 1024, kSwizzle128), 1);
      wgmma_async<float, 128, 0>(part, ah, bh, 1);
    } else {
      wgmma_async<float, 128, 0>(acc, ah, bh, 1);
    }
  }
  wgmma_commit();
}

// Waits for a warpgroup's k-step: kSplit adds its fresh sums to the running ones in round-to-nearest f32
// (the flush), else the sums were accumulated in place.
template <bool kSplit, int P>
__device__ __forceinline__ void tf32_retire(float (&acc)[64], float (&part)[P]) {
  wgmma_wait<0>();
  if constexpr (kSplit) {
    wgmma_fence_regs(part);
#pragma unroll
    for (int i = 0; i < 64; ++i) acc[i] += part[i];
  } else {
    wgmma_fence_regs(acc);
  }
}

// thr_m_wgmma_kernel<T, kSplit> (ThrParams::path 4, thrTuning.path 'wgmma-m'; verified on an H200, 2026-11-28, slower than mma.sync's M):
// thr_m_kernel's large block (128 rows of V*_g × 128 hidden dims of M_g, reduced over the group's correct
// tokens in k-steps of 32) on Hopper's warpgroup MMAs. TF32 wgmma takes K-major operands only, and both
// of M's are MN-major in memory (a token's q row runs along v, its hidden row along j), so the block
// stages them through registers, transposed: threads 0..127 own hidden column j0 + tid (B's row: the
// k-step's 32 tokens), threads 128..255 own V* row v0 + tid − 128 (A's row: −w_p q_p[v] over them).
// Each loads its 32 values (a warp reads 32 consecutive floats of one token's row per load, so no row
// needs any alignment), prepares them in registers as thr_m_kernel prepares fragments (rounded, or split
// into hi and lo tiles) and stores them as 16-byte chunks in the 128-byte swizzle (wgmma_tiles.cuh; the
// 8 threads of a quarter-warp hit 8 distinct chunks). Two stages and a k-step in registers: while k-step
// kt's MMAs run, every thread stores k-step kt + 1 (loaded during kt − 1) and loads kt + 2; the tokens,
// weights and columns wait in shared memory (3 slots), fetched by warp 0 a k-step before their loads.
// Warpgroup w owns V* rows 64w … 64w + 63 and all 128 columns: per k-step four k8 slices of 1 ('tf32')
// or 3 ('f32': a_lo·b_hi, a_hi·b_lo, a_hi·b_hi; 2 with f16/bf16 hidden states, exact in TF32) wgmma
// m64n128k8; 'f32' into fresh sums flushed into the running ones per k-step, as thr_m_kernel. A's
// values are thr_m_kernel's, w_p·(1[v = col_p] − q_p[v]). Epilogue: M from wgmma's D fragment (WgLane).
// Shared memory: 2 × 32 / 64 KiB stages ('tf32' / 'f32') + 1 KiB (alignment) = 65 / 129 KiB, + 1152 B
// static. Bits: the group's data and d alone decide them (batch invariant); each
// element takes thr_m_kernel's k8 slices and splits in the same order (the emulator, whose mma.sync and
// wgmma add a slice alike, gives thr_m_kernel's bits; a GPU may differ in the last bits).
template <bool kSplit>
struct MWgLayout {
  static constexpr size_t kStageBytes = (kSplit ? 4 : 2) * kWgTileBytes;  // A hi, B hi (, A lo, B lo)
  static constexpr size_t kSmemBytes = 2 * kStageBytes + 1024;
};

template <class T, bool kSplit>
__global__ void __launch_bounds__(kThreads, 1)
    thr_m_wgmma_kernel(GroupList list, GroupGeom geo, const T* __restrict__ hidden, float* __restrict__ M) {
  using L = MWgLayout<kSplit>;
  constexpr int kRows = kMRowsLarge;
  constexpr Op kA = kSplit ? Op::Split : Op::Round;  // w·(1[v = col] − q): any f32 value
  constexpr Op kB = kHiddenExactInTf32<T> ? Op::Exact : (kSplit ? Op::Split : Op::Round);
  static_assert(kThreads == 2 * kBN && kBN == kRows && kBK == 32, "a thread per tile row of A or B");
  GK_DYNAMIC_SMEM(unsigned char, smem_raw);
  __shared__ int s_tok[3][kBK];    // a k-step's tokens (−1 past the group's end), slot kt mod 3
  __shared__ float s_w[3][kBK];    // their weights (0 past the end)
  __shared__ int s_pcol[3][kBK];   // their V* columns (−1 past the end)
  unsigned char* smem = wg_stages(smem_raw);
  const uint32_t sbase = smem_address(smem);

  const MBlock mb(list, geo, kRows);
  const int li = mb.li, v0 = mb.v0, K = mb.K, rows = mb.rows, cols = mb.cols, t0 = mb.t0;
  const int64_t d = geo.d, j0 = mb.j0;
  const int p_beg = mb.p_beg, p_end = mb.p_end;
  const float* q = mb.q;
  const int tid = threadIdx.x;
  const bool loads_b = tid < kBN;              // warps 0-3: B (hidden columns); warps 4-7: A (V* rows)
  const int own = loads_b ? tid : tid - kBN;   // my row of my operand's tile
  const bool own_ok = own < (loads_b ? cols : rows);
  const T* hcol = hidden + j0 + own;
  const float* qcol = q + v0 + own;

  auto fetch = [&](int kt) {  // warp 0: k-step kt's tokens into slot kt mod 3
    if (tid < kBK) {
      const int p = p_beg + kt * kBK + tid;
      const bool ok = p < p_end;
      s_tok[kt % 3][tid] = ok ? geo.ptok[p] : -1;
      s_w[kt % 3][tid] = ok ? geo.pw[p] : 0.f;
      s_pcol[kt % 3][tid] = ok ? geo.pcol[p] : -1;
    }
  };
  float x[kBK];  // my 32 values of the k-step in registers (as loaded: h, or q)
  auto load = [&](int kt) {
    const int slot = kt % 3;
#pragma unroll
    for (int i = 0; i < kBK; ++i) {
      const int tok = s_tok[slot][i];
      float v = 0.f;
      if (tok >= 0 && own_ok) v = loads_b ? smem_f32(hcol[int64_t(tok) * d]) : qcol[int64_t(tok - t0) * K];
      x[i] = v;
    }
  };
  // k-step kt's values into stage kt mod 2: prepared, transposed into my tile row (A: 1 − q at a token's
  // own column, my row v0 + own).
  auto store = [&](int kt) {
    const int slot = kt % 3;
    unsigned char* hi_tile = smem + size_t(kt & 1) * L::kStageBytes + (loads_b ? kWgTileBytes : 0);
#pragma unroll
    for (int c = 0; c < kBK / 4; ++c) {
      float hi[4], lo[4];
#pragma unroll
      for (int e = 0; e < 4; ++e) {
        if (loads_b)
          prep<kB>(x[4 * c + e], hi[e], lo[e]);
        else
          prep<kA>(weighted_g(s_w[slot][4 * c + e], s_pcol[slot][4 * c + e] == v0 + own, x[4 * c + e]), hi[e], lo[e]);
      }
      const int off = own * 128 + 16 * (c ^ (own & 7));
      *reinterpret_cast<float4*>(hi_tile + off) = make_float4(hi[0], hi[1], hi[2], hi[3]);
      if constexpr (kSplit)
        *reinterpret_cast<float4*>(hi_tile + 2 * kWgTileBytes + off) = make_float4(lo[0], lo[1], lo[2], lo[3]);
    }
  };

  const int nk = (p_end - p_beg + kBK - 1) / kBK;
  fetch(0);
  fetch(1);
  __syncthreads();  // the tokens of k-steps 0 and 1
  if (nk > 0) {
    load(0);
    store(0);
  }
  if (nk > 1) load(1);
  fetch(2);
  fence_proxy_async();
  __syncthreads();  // k-step 0 staged everywhere; the tokens of k-step 2

  const uint32_t wg = uint32_t(tid >> 7);
  float acc[64];
  [[maybe_unused]] float part[kSplit ? 64 : 1];
#pragma unroll
  for (int i = 0; i < 64; ++i) acc[i] = 0.f;
  for (int kt = 0; kt < nk; ++kt) {
    const uint32_t st = sbase + uint32_t(kt & 1) * uint32_t(L::kStageBytes);
    const uint32_t sa = st + wg * 64u * 128u, sb = st + uint32_t(kWgTileBytes);
    tf32_kstep<kSplit, kB == Op::Split>(acc, part, sa, sb);
    // While they run: k-step kt + 1 into the other stage (its MMAs, k-step kt − 1's, were waited for
    // before the last barrier), the loads of kt + 2 (tokens fetched before that barrier), the tokens of
    // kt + 3 into the slot of kt (read by the store and loads of earlier iterations only).
    if (kt + 1 < nk) store(kt + 1);
    if (kt + 2 < nk) load(kt + 2);
    fetch(kt + 3);
    tf32_retire<kSplit>(acc, part);
    fence_proxy_async();  // my stores of k-step kt + 1, visible to wgmma ...
    __syncthreads();      // ... and everyone's; both warpgroups done with stage kt mod 2
  }

  wg_store_m(acc, WgLane(), M + list.m_off[li], geo.ld_m, v0, j0, rows, cols);
}

// ------------------------------------------------------------------------------------- scores s_t
// Shared memory of thr_scores_kernel<T, ·, kStages>: kStages × (18 + 18) KiB (f32 hidden) / (10 + 18)
// KiB (f16, bf16): 108 / 84 KiB with 3 stages, 72 / 56 KiB with 2; + 512 B static (s_col).
template <class T, int kStages>
struct ScoreLayout {
  static constexpr int kLdA = kBK + 16 / int(sizeof(T));  // hidden rows: 36 floats / 40 halves
  static constexpr int kLdB = kBK + 4;                     // M rows: 36 floats
  static constexpr size_t kABytes = size_t(kSRows) * kLdA * sizeof(T);
  static constexpr size_t kBBytes = size_t(kBN) * kLdB * sizeof(float);
  static constexpr size_t kStageBytes = kABytes + kBBytes;
  static constexpr size_t kSmemBytes = kStages * kStageBytes;
  static constexpr size_t kStaticBytes = size_t(kSRows) * sizeof(int);
};

// A scores block's place (thr_scores_kernel and thr_scores_wgmma_kernel): its group g (list entry li),
// the group's tokens [t0, t0 + Tg) and |V*_g| = K, the block's 128-token × 128-column tile (vt-th column
// tile; r0, v0 relative to the group; rows × cols inside it), the group's q rows and its M_g.
struct ScoreBlock {
  int li, g;
  int64_t d;
  int t0, Tg, K, vt, r0, v0, rows, cols;
  const float* q;
  const float* Mg;
  // bn: the block's V* columns (kBN; 2·kBN for thr_scores_tma_kernel<true>, whose vt counts those).
  __device__ ScoreBlock(const GroupList& list, const GroupGeom& geo, const float* M, int bn = kBN)
      : li(find_range(list.tile_start, list.n, blockIdx.x)), g(list.gid[li]), d(geo.d), t0(geo.gto[g]),
        Tg(geo.gto[g + 1] - t0), K(geo.voff[g + 1] - geo.voff[g]) {
    const int tiles_v = (K + bn - 1) / bn;
    const int local = blockIdx.x - list.tile_start[li];
    vt = local % tiles_v;
    r0 = (local / tiles_v) * kSRows;
    v0 = vt * bn;
    rows = min(kSRows, Tg - r0);
    cols = min(bn, K - v0);
    q = geo.probs + geo.poff[g];
    Mg = M + list.m_off[li];
  }
};

// Block: 128 tokens (t) × 128 columns of V*_g (v) of one group, U[t][v] = Σ_j h_t[j]·M_g[v][j]
// (k-steps of 32 over d), folded into the tokens' partial s over these columns. kStages changes only
// how far the copies run ahead, never the arithmetic.
template <class T, bool kSplit, int kStages>
__global__ void __launch_bounds__(kThreads, kSplit ? 1 : 2)
    thr_scores_kernel(GroupList list, GroupGeom geo, const T* __restrict__ hidden, const float* __restrict__ M,
                      float* __restrict__ spart) {
  using L = ScoreLayout<T, kStages>;
  constexpr int kBM = kSRows, kWarpM = kBM / 2, kMT = kWarpM / 16;  // tile rows; a warp's rows, m16 tiles
  constexpr Op kA = kHiddenExactInTf32<T> ? Op::Exact : (kSplit ? Op::Split : Op::Round);
  constexpr Op kB = kSplit ? Op::Split : Op::Round;
  GK_DYNAMIC_SMEM(unsigned char, smem);
  __shared__ int s_col[kBM];  // the tile's tokens' own columns in V*_g

  const ScoreBlock b(list, geo, M);
  const int tid = threadIdx.x, warp = tid >> 5, lane = tid & 31, g8 = lane >> 2, t4 = lane & 3;
  const int wm = warp >> 2, wn = warp & 3;
  const int m_tiles = active_tiles(b.rows, wm * kWarpM, 16, kMT);
  const int n_tiles = active_tiles(b.cols, wn * kWarpN, 8, kNT);
  if (tid < kBM) s_col[tid] = tid < b.rows ? geo.tokcol[b.t0 + b.r0 + tid] : -1;

  // Loader: thread → row tid/2 of both tiles, k-columns [16·(tid mod 2), +16) of the step.
  const int lr = tid >> 1, lh = tid & 1;
  const T* a_row = hidden + int64_t(b.t0 + b.r0 + (lr < b.rows ? lr : 0)) * b.d;
  const float* b_row = b.Mg + int64_t(b.v0 + (lr < b.cols ? lr : 0)) * geo.ld_m;
  auto load_stage = [&](int slot, int kt) {
    unsigned char* st = smem + size_t(slot) * L::kStageBytes;
    const int64_t k = int64_t(kt) * kBK + lh * 16;
    stage16<T>(reinterpret_cast<T*>(st) + lr * L::kLdA + lh * 16, a_row, k, lr < b.rows ? b.d : 0, geo.hidden_vec16);
    stage16<float>(reinterpret_cast<float*>(st + L::kABytes) + lr * L::kLdB + lh * 16, b_row, k, lr < b.cols ? b.d : 0,
                   geo.m_vec16);
  };

  Frag<kMT> acc, part;
  zero(acc);
  zero(part);
  Frag<kMT>& sink = kSplit ? part : acc;
  const int nk = static_cast<int>(ceil_div(b.d, kBK));
#pragma unroll
  for (int s = 0; s < kStages - 1; ++s) {
    if (s < nk) load_stage(s, s);
    cp_async_commit();
  }
  for (int kt = 0; kt < nk; ++kt) {
    cp_async_wait<kStages - 2>();
    __syncthreads();
    const int nx = kt + kStages - 1;
    if (nx < nk) load_stage(nx % kStages, nx);
    cp_async_commit();

    const unsigned char* st = smem + size_t(kt % kStages) * L::kStageBytes;
    const T* As = reinterpret_cast<const T*>(st);
    const float* Bs = reinterpret_cast<const float*>(st + L::kABytes);
    auto mma_step = [&](auto full) {
#pragma unroll 2
      for (int k8 = 0; k8 < kBK; k8 += 8) {
        warp_k8<kA, kB, decltype(full)::value>(
            sink, m_tiles, n_tiles,
            [&](int mi, float(&a)[4]) {  // a[i] = A[m + 8(i & 1)][k + 4(i >> 1)] = h_m[k]
              const T* p = As + (wm * kWarpM + mi * 16 + g8) * L::kLdA + k8 + t4;
              a[0] = smem_f32(p[0]);
              a[1] = smem_f32(p[8 * L::kLdA]);
              a[2] = smem_f32(p[4]);
              a[3] = smem_f32(p[8 * L::kLdA + 4]);
            },
            [&](int ni, float(&b)[2]) {  // b[i] = B[k + 4i][n] = M_g[n][k]
              const float* p = Bs + (wn * kWarpN + ni * 8 + g8) * L::kLdB + k8 + t4;
              b[0] = p[0];
              b[1] = p[4];
            });
      }
    };
    if (m_tiles == kMT && n_tiles == kNT)
      mma_step(std::true_type{});
    else if (m_tiles > 0 && n_tiles > 0)
      mma_step(std::false_type{});
    if constexpr (kSplit) flush(acc, part);
  }
  cp_async_wait<0>();
  __syncthreads();  // the stages are free: red reuses them

  // s_t over this tile's columns: Σ_v g_t[v]·U[t, v], g_t[v] = 1[v = col_t] − q_t[v]. A thread's row r
  // (4 m16 tiles × rows g, g + 8) sums its 8 columns (n8 tiles ascending, then 2t, 2t + 1); the four
  // lanes t = 0..3 of the row combine by a fixed xor tree; the four column-warps in order via red.
  float* red = reinterpret_cast<float*>(smem);  // [4][kBM]
#pragma unroll
  for (int mi = 0; mi < kMT; ++mi)
#pragma unroll
    for (int h = 0; h < 2; ++h) {
      const int r = wm * kWarpM + mi * 16 + g8 + 8 * h;
      float x = 0.f;
      if (r < b.rows) {
        const float* qrow = b.q + int64_t(b.r0 + r) * b.K + b.v0;
        const int own = s_col[r] - b.v0;
#pragma unroll
        for (int ni = 0; ni < kNT; ++ni)
#pragma unroll
          for (int e = 0; e < 2; ++e) {
            const int c = wn * kWarpN + ni * 8 + 2 * t4 + e;
            if (c < b.cols) x = fmaf((c == own ? 1.f : 0.f) - qrow[c], acc[mi][ni][2 * h + e], x);
          }
      }
      x += __shfl_xor_sync(0xffffffffu, x, 1);
      x += __shfl_xor_sync(0xffffffffu, x, 2);
      if (t4 == 0) red[wn * kBM + r] = x;
    }
  __syncthreads();
  if (tid < b.rows)
    spart[list.part_off[b.li] + int64_t(b.vt) * b.Tg + b.r0 + tid] =
        ((red[tid] + red[kBM + tid]) + red[2 * kBM + tid]) + red[3 * kBM + tid];
}

// The wgmma scores' epilogue (thr_scores_wgmma_kernel, thr_scores_tma_kernel): s_t over the tile's
// columns, Σ_v g_t[v]·U[t, v] with g_t[v] = 1[v = col_t] − q_t[v], from a thread's 2 tokens × 32 columns
// of U (wgmma's D fragment), its columns in order (j, then e ascending), then the row's 4 lanes by a fixed
// xor tree (a row lies in one warp); lane 0 writes spart. Rows and columns outside the tile are not read.
__device__ __forceinline__ void wg_scores_fold(const float (&acc)[64], const WgLane& Ln, const ScoreBlock& b,
                                               const int* s_col, const GroupList& list, float* spart) {
#pragma unroll
  for (int h = 0; h < 2; ++h) {
    const int r = Ln.row(h);
    float x = 0.f;
    if (r < b.rows) {
      const float* qrow = b.q + int64_t(b.r0 + r) * b.K + b.v0;
      const int own = s_col[r] - b.v0;
#pragma unroll
      for (int j = 0; j < 16; ++j)
#pragma unroll
        for (int e = 0; e < 2; ++e) {
          const int c = Ln.col(j, e);
          if (c < b.cols) x = fmaf((c == own ? 1.f : 0.f) - qrow[c], acc[4 * j + 2 * h + e], x);
        }
    }
    x += __shfl_xor_sync(0xffffffffu, x, 1);
    x += __shfl_xor_sync(0xffffffffu, x, 2);
    if (Ln.t4 == 0 && r < b.rows) spart[list.part_off[b.li] + int64_t(b.vt) * b.Tg + b.r0 + r] = x;
  }
}

// ------------------------------------------------------------------------- scores s_t on wgmma (sm_90a)
// thr_scores_wgmma_kernel<kSplit, kTrunc>: thr_scores_kernel's block (128 tokens × 128 columns of V*_g of one
// group, U = H·M_gᵀ over d, folded into the tokens' partial s) on Hopper's warpgroup MMAs, for f32
// hidden states whose rows (and M's) are 16-byte aligned; launch_thr picks it with ThrParams::path
// (thrTuning.path). Warpgroup w owns tokens 64w … 64w + 63, per k-step of 32 four wgmma m64n128k8 on
// TF32 operands, A (hidden rows) and B (M_g rows) K-major in the 128-byte swizzle (wgmma_tiles.cuh).
// wgmma reads its operands from shared memory and ignores their low 13 bits, so each k-step's landed
// tiles are prepared in place first, as thr_scores_kernel prepares fragments: 'tf32' rounds them
// (tf32_round: the same rounding), 'f32' splits them, x = hi + lo, hi in place, lo into a second pair of
// tiles, and runs a_lo·b_hi + a_hi·b_lo + a_hi·b_hi as three wgmma (small terms first). Per k-step:
// barrier (landed everywhere), prepare my 8 chunks, fence.proxy.async, barrier, MMAs, the copies of the
// k-step kStages − 1 ahead (into the stage the last k-step used), wait. 'f32' takes each k-step's MMAs
// into fresh registers flushed into the sums in round-to-nearest f32 (thr_scores_kernel's flush);
// 'tf32' accumulates in place, as thr_scores_kernel does. Epilogue: a thread's 2 tokens × 32 columns
// give Σ_v g_t[v]·U[t, v] over its columns (j, then e ascending), its row's 4 lanes add by a fixed xor
// tree (a row lies in one warp), lane 0 writes spart. Bits: as thr_scores_kernel's, a function of the
// group's data and d alone; they differ from its (other orders). Shared memory: stages × 64 KiB ('f32':
// hi and lo of both operands) or × 32 KiB ('tf32') + 1 KiB; 3 / 5 stages: 193 / 161 KiB.
// kTrunc (ThrParams::path 3, thrTuning.path 'wgmma-truncate'; verified on an H200, 2026-11-28: 1.21x in 'tf32', a biased rounding): the operands
// as the tensor cores take f32, their low 13 bits dropped, instead of rounded to nearest:
// 'tf32' skips the preparing pass and its barrier (each k-step's landed tiles go straight to the MMAs)
// and keeps one k-step's MMAs in flight (wgmma_wait<1>; its loads then run one stage less ahead),
// 'f32' keeps x in place as its own hi (x with its low 13 bits cleared, exactly what the tensor cores
// read) and writes only lo = x − hi (exact in f32; its dropped bits are 2^-10 of it, 2^-20 of x). The
// prepare pass reads and writes back every landed element, between two barriers: what 'tf32' spends
// its time on, by the H200's figures ('f32' issues three times its MMAs in 1.65x its time).
template <bool kSplit, bool kTrunc = false>
struct ScoreWgLayout {
  static constexpr int kStages = kSplit ? 3 : 5;
  static constexpr size_t kStageBytes = (kSplit ? 4 : 2) * kWgTileBytes;  // A hi, B hi (, A lo, B lo)
  static constexpr size_t kSmemBytes = kStages * kStageBytes + 1024;
};

template <bool kSplit, bool kTrunc>
__global__ void __launch_bounds__(kThreads, 1)
    thr_scores_wgmma_kernel(GroupList list, GroupGeom geo, const float* __restrict__ hidden,
                            const float* __restrict__ M, float* __restrict__ spart) {
  using L = ScoreWgLayout<kSplit>;
  // 'tf32' on truncated operands keeps a k-step's MMAs in flight (they accumulate in place, so the
  // next k-step's chain onto them): its loads run 2 stages behind, into the stage of k-step kt − 2.
  constexpr bool kInFlight = kTrunc && !kSplit;
  constexpr int kStages = L::kStages, kAhead = kStages - (kInFlight ? 2 : 1);
  GK_DYNAMIC_SMEM(unsigned char, smem_raw);
  __shared__ int s_col[kSRows];  // the tile's tokens' own columns in V*_g
  unsigned char* smem = wg_stages(smem_raw);
  const uint32_t sbase = smem_address(smem);

  const ScoreBlock b(list, geo, M);
  const WgLane Ln;
  if (Ln.tid < kSRows) s_col[Ln.tid] = Ln.tid < b.rows ? geo.tokcol[b.t0 + b.r0 + Ln.tid] : -1;

  const int nk = static_cast<int>(ceil_div(b.d, kBK));
  auto issue_load = [&](int kt) {
    if (kt < nk) {
      unsigned char* st = smem + size_t(kt % kStages) * L::kStageBytes;
      load_swizzled<float>(st, hidden, b.d, b.t0 + b.r0, b.rows, b.d, kt);
      load_swizzled<float>(st + kWgTileBytes, b.Mg, geo.ld_m, b.v0, b.cols, b.d, kt);
    }
    cp_async_commit();  // (an empty group past the end keeps the wait count uniform)
  };
  float acc[64];
  [[maybe_unused]] float part[kSplit ? 64 : 1];
#pragma unroll
  for (int i = 0; i < 64; ++i) acc[i] = 0.f;
#pragma unroll
  for (int s = 0; s < kAhead; ++s) issue_load(s);
  const uint32_t wg = uint32_t(Ln.tid >> 7);
  for (int kt = 0; kt < nk; ++kt) {
    cp_async_wait<kAhead - 1>();
    if constexpr (kInFlight) {
      fence_proxy_async();  // my landed copies, visible to wgmma ...
      wgmma_wait<1>();      // ... my k-step kt − 2 done (kt − 1 may run on) ...
      __syncthreads();      // ... and everyone's
    } else {
      __syncthreads();  // k-step kt landed everywhere; every warpgroup is done with k-step kt − 1
      unsigned char* st = smem + size_t(kt % kStages) * L::kStageBytes;
      // Prepare the two landed tiles: chunks tid + 256·i of A's and B's 1024 each.
#pragma unroll
      for (int i = 0; i < 8; ++i) {
        const size_t off = size_t(Ln.tid + kThreads * i) * 16;  // A's tile, then B's
        float4* p = reinterpret_cast<float4*>(st + off);
        const float4 v = *p;
        if constexpr (kTrunc) {  // 'f32': x is its own hi; lo = x − (x, low 13 bits cleared)
          *reinterpret_cast<float4*>(st + 2 * kWgTileBytes + off) =
              make_float4(v.x - tf32_truncate(v.x), v.y - tf32_truncate(v.y), v.z - tf32_truncate(v.z),
                          v.w - tf32_truncate(v.w));
        } else {
          float4 hi;
          hi.x = tf32_round(v.x), hi.y = tf32_round(v.y), hi.z = tf32_round(v.z), hi.w = tf32_round(v.w);
          *p = hi;
          if constexpr (kSplit)
            *reinterpret_cast<float4*>(st + 2 * kWgTileBytes + off) = make_float4(
                tf32_round(v.x - hi.x), tf32_round(v.y - hi.y), tf32_round(v.z - hi.z), tf32_round(v.w - hi.w));
        }
      }
      fence_proxy_async();
      __syncthreads();
    }
    const uint32_t sa = sbase + uint32_t(kt % kStages) * uint32_t(L::kStageBytes) + wg * 64u * 128u;
    const uint32_t sb = sbase + uint32_t(kt % kStages) * uint32_t(L::kStageBytes) + uint32_t(kWgTileBytes);
    tf32_kstep<kSplit, true>(acc, part, sa, sb);
    issue_load(kt + kAhead);  // into k-step kt − 1's stage (kInFlight: kt − 2's)
    if constexpr (kInFlight) continue;
    tf32_retire<kSplit>(acc, part);
  }
  if constexpr (kInFlight) {
    wgmma_wait<0>();
    wgmma_fence_regs(acc);
  }
  cp_async_wait<0>();

  wg_scores_fold(acc, Ln, b, s_col, list, spart);
}

// thr_scores_tma_kernel<kWide> (ThrParams::path 5, thrTuning.path 'tma'; kWide: path 6, 'tma-wide';
// 'tf32' with f32 hidden states; verified on an H200, 2026-11-28, slower than `auto`; on rounded copies
// in paths 7 and 9, kWide 8 and 10, waiting for a GPU): thr_scores_wgmma_kernel<false, true>'s block, MMAs
// and epilogue (so its bits) with the operands brought by TMA and the warps specialised (wgmma_tiles.cuh's
// TmaPipeOf, as lmhead.cu's tma_mainloop): warps 0-7 only wait and multiply, warp 8's lane 0 walks the
// k-steps and issues each one's boxes, 128 token rows of hidden × 32 floats and 128 rows of M_g × 32
// floats (kWide: two, 256 rows), 128-byte swizzled (the layout load_swizzled writes). A box reaches past
// its group's rows into the next group's (or into zeros past the tensor): row r of U depends on row r of
// A alone, and rows ≥ b.rows and columns ≥ b.cols are never folded; k past d arrives as zeros, as the
// cp.async copies fill it. Each warpgroup issues k-step kt's MMAs into acc (chaining onto kt − 1's,
// which may still run), then waits for kt − 1's (wgmma_wait) and hands its stage back: no block barrier,
// no operand pass, the tensor cores never wait for a flush.
// kWide: a block owns 128 tokens × 256 columns of V*_g, so each landed hidden tile serves twice the MMAs
// (FLOPs per L2 byte 43 instead of 32, as docs/cuda.md's THR plan says): per k8 slice a warpgroup issues
// the same m64n128k8 on each 128-column half of B into its own sums (acc, acc_hi: 128 registers), so
// every element of U takes the MMAs it takes at 128 columns; the epilogue folds each half as a 128-column
// block would and writes its partial where that block would (v-tile 2·vt + h): the same spart, the same
// bits as 'tma'. 4 stages × 48 KiB.
// Shared memory: 6 × 32 KiB / 4 × 48 KiB (+ 1 KiB alignment, the barriers); 288 threads; 108 registers
// (kWide: more; ptxas figures in docs/cuda.md). Bytes per block as thr_scores_wgmma_kernel's (kWide:
// hidden read once per 256 V* columns), through TMA instead of the SMs' load path.
template <bool kWide>
using ScoreTmaPipe = TmaPipeOf<(kWide ? 3 : 2) * kWgTileBytes, kWide ? 4 : 6>;

// The consumers' loop of the TMA-fed TF32 kernels (thr_scores_tma_kernel, thr_m_tma_kernel): per k-step,
// warpgroup wg's m64n128k8 MMAs on its 64 rows of A and B's first 128 rows (kWide: and B's second 128
// into acc_hi) chained onto the sums, then k-step kt − 1's waited for and its stage handed back; every
// MMA done at the end.
template <bool kWide>
__device__ __forceinline__ void tf32_tma_consume(const ScoreTmaPipe<kWide>& pipe, int nk, uint32_t wg,
                                                 float (&acc)[64], float (&acc_hi)[kWide ? 64 : 1]) {
  float part[1];  // (tf32_kstep's fresh sums: 'f32' only)
#pragma unroll
  for (int i = 0; i < 64; ++i) acc[i] = 0.f;
  if constexpr (kWide) {
#pragma unroll
    for (int i = 0; i < 64; ++i) acc_hi[i] = 0.f;
  }
  for (int kt = 0; kt < nk; ++kt) {
    const uint32_t stage = pipe.acquire(kt);
    tf32_kstep<false, true>(acc, part, stage + wg * 64u * 128u, stage + uint32_t(kWgTileBytes));
    if constexpr (kWide) {
      tf32_kstep<false, true>(acc_hi, part, stage + wg * 64u * 128u, stage + uint32_t(2 * kWgTileBytes));
      wgmma_wait<2>();  // k-step kt − 1's two groups done (kt's may run on) ...
    } else {
      wgmma_wait<1>();  // k-step kt − 1 done (kt may run on) ...
    }
    if (kt > 0) pipe.release(kt - 1);  // ... so its stage goes back
  }
  wgmma_wait<0>();
  wgmma_fence_regs(acc);
  if constexpr (kWide) wgmma_fence_regs(acc_hi);
}

template <bool kWide>
__global__ void __launch_bounds__(kThreads + 32, 1)
    thr_scores_tma_kernel(GroupList list, GroupGeom geo, const float* __restrict__ M, float* __restrict__ spart,
                          const __grid_constant__ CUtensorMap tmap_h, const __grid_constant__ CUtensorMap tmap_m) {
  GK_DYNAMIC_SMEM(unsigned char, smem_raw);
  __shared__ int s_col[kSRows];  // the tile's tokens' own columns in V*_g
  const ScoreTmaPipe<kWide> pipe(wg_stages(smem_raw));
  const ScoreBlock b(list, geo, M, kWide ? 2 * kBN : kBN);
  const WgLane Ln;
  if (Ln.tid < kSRows) s_col[Ln.tid] = Ln.tid < b.rows ? geo.tokcol[b.t0 + b.r0 + Ln.tid] : -1;
  pipe.init(kThreads / 32);  // (its barrier publishes s_col too)
  const int nk = static_cast<int>(ceil_div(b.d, kBK));
  if (Ln.tid >= kThreads) {  // the producer warp
    // M_g's first row in the M tensor: its offset is a whole number of ld_m-float rows.
    const int32_t m_row = static_cast<int32_t>(list.m_off[b.li] / geo.ld_m) + b.v0;
    const int32_t h_row = b.t0 + b.r0;
    if (Ln.tid == kThreads)
      pipe.produce(nk, [&](unsigned char* stage, int kt, uint64_t* bar) {
        tma_load_2d(stage, &tmap_h, kt * kBK, h_row, bar);
        tma_load_2d(stage + kWgTileBytes, &tmap_m, kt * kBK, m_row, bar);
        if constexpr (kWide) tma_load_2d(stage + 2 * kWgTileBytes, &tmap_m, kt * kBK, m_row + kBN, bar);
      });
    return;
  }
  float acc[64];
  float acc_hi[kWide ? 64 : 1];  // kWide: the second 128 columns
  tf32_tma_consume<kWide>(pipe, nk, uint32_t(Ln.tid >> 7), acc, acc_hi);
  if constexpr (!kWide) {
    wg_scores_fold(acc, Ln, b, s_col, list, spart);
  } else {
    // Each half as the 128-column block at v-tile 2·vt + h folds it.
    ScoreBlock half = b;
    half.vt = 2 * b.vt, half.cols = min(kBN, b.cols);
    wg_scores_fold(acc, Ln, half, s_col, list, spart);
    if (b.cols > kBN) {
      half.vt = 2 * b.vt + 1, half.v0 = b.v0 + kBN, half.cols = b.cols - kBN;
      wg_scores_fold(acc_hi, Ln, half, s_col, list, spart);
    }
  }
}

// --------------------------------------------- M_g as a TMA-fed GEMM (ThrParams::path 9 to 11, 'tf32')
// thrTuning.path 'tma-m', 'tma-wide-m' (with 256-column scores blocks), 'tma-wide-m-wide' (and M in 128 ×
// 256 tiles; all three waiting for a GPU): M_g[v][k] = Σ_p A[v][p]·B[k][p] over the group's correct
// tokens p, both operands K-major in scratch so that TF32 wgmma (K-major only) takes them straight from
// TMA boxes, as the scores do:
//   thr_mt_kernel — one launch per batch (z = 2·listed group + operand, in launches of at most 32767
//     groups); block: 32 tokens (p) × 32 rows of one group's operand; operand 0: At[a_row + v][p] =
//     tf32(w_p·(1[v = col_p] − q_p[v])) for v < K_g, 1: Bt[b_row + k][p] = tf32(h_p[k]) for k < d; p in
//     [P_g, 32·ceil(P_g / 32)) zeros (what the GEMM's last k-step reads; it never reads further, and a
//     block wholly past P_g leaves at once). Read along v / k (a q row, a hidden row: coalesced),
//     transposed through shared memory, written along p. Bytes 8 per element (At: K_g·P_g, Bt: d·P_g
//     floats per group).
//   thr_m_tma_kernel — block: 128 rows of V*_g × 128 hidden dims of M_g (MBlock's tile), thr_scores_tma_
//     kernel's warp-specialised loop (a producer lane issues each k-step's 128 × 32-float boxes of At and
//     Bt into 6 stages; two warpgroups chain m64n128k8 wgmma on them, a k-step in flight) over
//     ceil(P_g / 32) k-steps, then the sums stored (8-byte pairs). FLOPs 2·K_g·d·P_g on tensor cores.
//     kWide (path 11): 128 rows of V*_g × 256 hidden dims, as thr_scores_tma_kernel<true> (each landed
//     A tile serves twice the MMAs: FLOPs per L2 byte 43 instead of 32; 4 stages × 48 KiB; 128 sums a
//     thread): every element of M_g takes the MMAs it takes in a 128-wide tile, so path 10's bits.
// Numerics: the one-hot part w_p·1[v = col_p] joins the dense one in A and is rounded with it (as in
// thr_m_kernel): every term of M_g is a product of two TF32-rounded values, each within 2^-11,
// summed by the tensor cores (truncating, once per 8 products chained over P_g, as the scores' sums):
// the 'tf32' bound holds (tested). Bits of its own, a function of the group's data alone: pw (the batch's
// widest P, rounded up to 4) changes where A and B lie, never what is added, and k-steps past P_g read
// zeros. A box's rows past K_g or d reach into the next group's rows (or past the tensor: zeros); a row of
// the product depends on its own row of A (of B for a column) alone, and those rows are never stored.
__global__ void thr_mt_kernel(GroupList list, int li0, GroupGeom geo, const float* __restrict__ hidden, int64_t pw,
                              float* __restrict__ at, float* __restrict__ bt) {
  __shared__ float tile[32][33];
  const int li = li0 + int(blockIdx.z >> 1), g = list.gid[li];
  const int K = geo.voff[g + 1] - geo.voff[g];
  const bool is_a = (blockIdx.z & 1u) == 0;
  const int64_t rows = is_a ? K : geo.d;
  const int64_t r0 = int64_t(blockIdx.y) * 32, p0 = int64_t(blockIdx.x) * 32;
  const int p_beg = geo.pstart[g], P = geo.pstart[g + 1] - p_beg, t0 = geo.gto[g];
  if (r0 >= rows || p0 >= P) return;  // (the grid covers the batch's widest operand and P)
  // The group's operands: At's rows are its M rows (m_off a whole number of ld_m-float rows), Bt's d
  // per listed group.
  float* out = is_a ? at + (list.m_off[li] / geo.ld_m) * pw : bt + int64_t(li) * geo.d * pw;
  const float* q = geo.probs + geo.poff[g];
  const int tx = threadIdx.x, ty = threadIdx.y;  // 32 × 8
  for (int i = ty; i < 32; i += 8) {
    const int64_t p = p0 + i, r = r0 + tx;
    float x = 0.f;
    if (p < P && r < rows) {
      const int pi = p_beg + int(p), tok = geo.ptok[pi];
      x = is_a ? weighted_g(geo.pw[pi], geo.pcol[pi] == r, q[int64_t(tok - t0) * K + r])
               : hidden[int64_t(tok) * geo.d + r];
    }
    tile[i][tx] = tf32_round(x);
  }
  __syncthreads();
  for (int i = ty; i < 32; i += 8) {
    const int64_t r = r0 + i, p = p0 + tx;
    if (r < rows && p < pw) out[r * pw + p] = tile[tx][i];
  }
}

template <bool kWide>
__global__ void __launch_bounds__(kThreads + 32, 1)
    thr_m_tma_kernel(GroupList list, GroupGeom geo, float* __restrict__ M, const __grid_constant__ CUtensorMap tmap_a,
                     const __grid_constant__ CUtensorMap tmap_b) {
  GK_DYNAMIC_SMEM(unsigned char, smem_raw);
  const ScoreTmaPipe<kWide> pipe(wg_stages(smem_raw));
  const MBlock mb(list, geo, kMRowsLarge, kWide ? 2 * kBN : kBN);
  const WgLane Ln;
  pipe.init(kThreads / 32);
  const int nk = (mb.p_end - mb.p_beg + kBK - 1) / kBK;
  if (Ln.tid >= kThreads) {  // the producer warp
    // The group's rows: At's are M's (the batch's M_g stacked, m_off a whole number of ld_m rows), Bt's
    // d per listed group.
    const int32_t a_row = static_cast<int32_t>(list.m_off[mb.li] / geo.ld_m) + mb.v0;
    const int32_t b_row = static_cast<int32_t>(int64_t(mb.li) * geo.d + mb.j0);
    if (Ln.tid == kThreads)
      pipe.produce(nk, [&](unsigned char* stage, int kt, uint64_t* bar) {
        tma_load_2d(stage, &tmap_a, kt * kBK, a_row, bar);
        tma_load_2d(stage + kWgTileBytes, &tmap_b, kt * kBK, b_row, bar);
        if constexpr (kWide) tma_load_2d(stage + 2 * kWgTileBytes, &tmap_b, kt * kBK, b_row + kBN, bar);
      });
    return;
  }
  float acc[64];
  float acc_hi[kWide ? 64 : 1];  // kWide: hidden dims j0 + 128 …
  tf32_tma_consume<kWide>(pipe, nk, uint32_t(Ln.tid >> 7), acc, acc_hi);
  float* Mg = M + list.m_off[mb.li];
  wg_store_m(acc, Ln, Mg, geo.ld_m, mb.v0, mb.j0, mb.rows, min(mb.cols, kBN));
  if constexpr (kWide) {
    if (mb.cols > kBN) wg_store_m(acc_hi, Ln, Mg, geo.ld_m, mb.v0, mb.j0 + kBN, mb.rows, mb.cols - kBN);
  }
}

// thr_round_kernel (ThrParams::path 7, 'tma-rounded'; 8, 'tma-wide-rounded'; 9 to 11; 'tf32'): out[r][c] =
// tf32_round(in[r][c]) for r < rows, c < cols (row strides ld_in, ld_out; in place when out == in), one
// thread per element, a grid-stride loop in 64 bits. The TMA-fed scores read f32 as the tensor cores do,
// their low 13 bits dropped; on operands rounded here that drop is exact, so they multiply what the
// wgmma scores' rounding pass gives them (cvt.rna, in shared memory, every k-step) in the same order:
// `auto`'s bits in 'tf32', with the pass taken out of the MMA loop. Bytes: 8 per element (hidden rows
// once per call, M_g once per batch); no FLOPs but the rounding.
__global__ void thr_round_kernel(const float* in, int64_t ld_in, float* out, int64_t ld_out,
                                 int64_t rows, int64_t cols) {
  const int64_t n = rows * cols;
  for (int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x) {
    const int64_t r = i / cols, c = i - r * cols;
    out[r * ld_out + c] = tf32_round(in[r * ld_in + c]);
  }
}
Status launch_round(const float* in, int64_t ld_in, float* out, int64_t ld_out, int64_t rows, int64_t cols,
                    cudaStream_t stream) {
  if (rows == 0 || cols == 0) return Status::Ok();
  const int64_t blocks = std::min<int64_t>(ceil_div(rows * cols, 256), 65536);
  thr_round_kernel<<<unsigned(blocks), 256, 0, stream>>>(in, ld_in, out, ld_out, rows, cols);
  GK_CHECK_LAUNCH("thr_round_kernel");
  return Status::Ok();
}

__global__ void thr_fold_kernel(GroupList list, GroupGeom geo, const float* __restrict__ spart, float* __restrict__ s) {
  const int li = find_range(list.tile_start, list.n, blockIdx.x);
  const int g = list.gid[li];
  const int t0 = geo.gto[g], Tg = geo.gto[g + 1] - t0;
  const int r = (blockIdx.x - list.tile_start[li]) * kFoldThreads + threadIdx.x;
  if (r >= Tg) return;
  const int tiles_v = (geo.voff[g + 1] - geo.voff[g] + kBN - 1) / kBN;
  const float* p = spart + list.part_off[li] + r;
  float x = p[0];
  for (int vt = 1; vt < tiles_v; ++vt) x += p[int64_t(vt) * Tg];
  s[t0 + r] = x;
}

// pcol[p] = tokcol[ptok[p]]: the V* column of every correct token, so thr_m_kernel's prefetch of a
// k-step's tokens is one load deep.
__global__ void thr_pcol_kernel(const int* __restrict__ ptok, const int* __restrict__ tokcol, int n, int* __restrict__ pcol) {
  const int i = blockIdx.x * blockDim.x + threadIdx.x;
  if (i < n) pcol[i] = tokcol[ptok[i]];
}

// ---------------------------------------------------------------------------- THR signs and tau
// One warp per group: thr = ±s by correctness; tau = beta · min over correct responses with tokens of
// their mean (NaN-propagating, response order). Degenerate: thr 0, tau NaN.
__global__ void thr_finish_kernel(const int* __restrict__ go, const int* __restrict__ ro, const uint8_t* __restrict__ correct,
                                  const uint8_t* __restrict__ deg, int G, float beta, const float* __restrict__ s,
                                  float* __restrict__ thr, float* __restrict__ tau) {
  const int g = blockIdx.x * (blockDim.x >> 5) + (threadIdx.x >> 5);
  if (g >= G) return;
  const int lane = threadIdx.x & 31;
  const int r0 = go[g], r1 = go[g + 1];
  if (deg[g]) {
    for (int64_t t = ro[r0] + lane; t < ro[r1]; t += 32) thr[t] = 0.f;  // (64-bit: T may be near 2^31)
    if (lane == 0) tau[g] = NAN;
    return;
  }
  float min_mean = INFINITY;
  for (int r = r0; r < r1; ++r) {
    const int a = ro[r], b = ro[r + 1];
    if (correct[r]) {
      float sum = 0.f;
      for (int64_t t = a + lane; t < b; t += 32) {
        const float x = s[t];
        thr[t] = x;
        sum += x;
      }
#pragma unroll
      for (int off = 16; off > 0; off >>= 1) sum += __shfl_xor_sync(0xffffffffu, sum, off);
      if (b > a) {
        const float m = sum / static_cast<float>(b - a);
        min_mean = min_nan(min_mean, m);
      }
    } else {
      for (int64_t t = a + lane; t < b; t += 32) thr[t] = -s[t];
    }
  }
  if (lane == 0) tau[g] = beta * min_mean;
}

// ---------------------------------------------------------------------------------- reweighting
__global__ void thr_reweight_kernel(const float* __restrict__ adv, const float* __restrict__ thr,
                                    const float* __restrict__ tau, const int* __restrict__ ro, int R,
                                    const int* __restrict__ go, int G, const uint8_t* __restrict__ correct,
                                    const uint8_t* __restrict__ deg, const double* __restrict__ eta, int mode,
                                    double p, int mask, int64_t T, float* __restrict__ out) {
  const int64_t t = blockIdx.x * int64_t(blockDim.x) + threadIdx.x;
  if (t >= T) return;
  const int r = find_range(ro, R, static_cast<int>(t));
  const int g = find_range(go, G, r);
  const float A = adv[t];
  if (deg[g]) {
    out[t] = A;
    return;
  }
  const float tg = tau[g];
  const float x = thr[t];
  if (mode != int(ReweightMode::Nthr)) {
    if (isnan(tg) || isnan(x))
      out[t] = NAN;
    else if (fabsf(x) > tg)
      out[t] = static_cast<float>((1.0 + p * static_cast<double>((x > 0.f) - (x < 0.f))) * static_cast<double>(A));
    else
      out[t] = mask ? 0.f * A : A;
    return;
  }
  if (correct[r]) {
    out[t] = A;
    return;
  }
  const float st = -x;
  if (isnan(tg) || isnan(st))
    out[t] = NAN;
  else
    out[t] = st > tg ? static_cast<float>(eta[g] * static_cast<double>(A)) : A;
}

// ------------------------------------------------------------------------------ configurations
// Which instantiation of the tile kernels runs (header, "Configurations"): the largest that fits the
// device's opt-in shared memory per block, for each kernel and hidden dtype. Per device, never per call.
struct TileConfig {
  bool m_large = true;  // thr_m_kernel: 128 × 128 tiles, 3 stages (else 64 × 128, 2 stages)
  bool s_large = true;  // thr_scores_kernel: 3 stages (else 2)
  size_t optin = 0;     // the device's shared memory per block (the wgmma kernels take it where they fit)
};

template <class H>
Status choose_tiles(int smem_optin, bool force_small, TileConfig* c) {
  using ML = MLayout<H, kMRowsLarge, kStagesLarge>;
  using MS = MLayout<H, kMRowsSmall, kStagesSmall>;
  using SL = ScoreLayout<H, kStagesLarge>;
  using SS = ScoreLayout<H, kStagesSmall>;
  const size_t optin = size_t(std::max(smem_optin, 0));
  // The small configuration: 72.5 KiB (f32 hidden) / 56.5 KiB (its scores kernel), under the 99 KiB of
  // sm_86 and sm_89, the least of any GPU from sm_80 on; less is told so by name.
  const size_t need = std::max(MS::kSmemBytes + MS::kStaticBytes, SS::kSmemBytes + SS::kStaticBytes);
  if (optin < need) {
    Status st;
    st.code = Code::Cuda;
    st.err = cudaErrorNotSupported;
    st.message = "tokenHiddenReward: the CUDA tile kernels need " + std::to_string((need + 1023) / 1024) +
                 " KiB of shared memory per block with " + (sizeof(H) == 4 ? "f32" : "f16/bf16") +
                 " hidden states (sm_80 and newer GPUs allow 99 KiB or more); this GPU allows " +
                 std::to_string(optin / 1024) + " KiB (cudaDevAttrMaxSharedMemoryPerBlockOptin)";
    return st;
  }
  c->optin = optin;
  c->m_large = !force_small && ML::kSmemBytes + ML::kStaticBytes <= optin;
  c->s_large = !force_small && SL::kSmemBytes + SL::kStaticBytes <= optin;
  return Status::Ok();
}

// Over 48 KiB of dynamic shared memory needs the kernel's opt-in (set per launch: per device).
template <class H, bool kS, int kRows, int kStages>
Status launch_m(unsigned blocks, const GroupList& list, const GroupGeom& geo, const H* hidden, float* M,
                cudaStream_t stream) {
  constexpr size_t smem = MLayout<H, kRows, kStages>::kSmemBytes;
  GK_CHECK(cudaFuncSetAttribute(reinterpret_cast<const void*>(&thr_m_kernel<H, kS, kRows, kStages>),
                                cudaFuncAttributeMaxDynamicSharedMemorySize, int(smem)));
  thr_m_kernel<H, kS, kRows, kStages><<<blocks, kThreads, smem, stream>>>(list, geo, hidden, M);
  GK_CHECK_LAUNCH("thr_m_kernel");
  return Status::Ok();
}
// M on wgmma (thr_m_wgmma_kernel): ThrParams::path 4, 5 or 6 with the large configuration, a 9.0 device from a
// build with sm_90a (or the emulator); verified on an H200 on 2026-11-28, slower than mma.sync's M (not `auto`).
template <bool kS>
bool use_m_wgmma(int path, const LaunchEnv& env, const TileConfig& tiles) {
  return path >= 4 && path <= 6 && tiles.m_large && MWgLayout<kS>::kSmemBytes + 3 * kBK * 12 <= tiles.optin &&
         wgmma_available(env);
}
template <class H, bool kS>
Status launch_m_wgmma(unsigned blocks, const GroupList& list, const GroupGeom& geo, const H* hidden, float* M,
                      cudaStream_t stream) {
  constexpr size_t smem = MWgLayout<kS>::kSmemBytes;
  GK_CHECK(cudaFuncSetAttribute(reinterpret_cast<const void*>(&thr_m_wgmma_kernel<H, kS>),
                                cudaFuncAttributeMaxDynamicSharedMemorySize, int(smem)));
  thr_m_wgmma_kernel<H, kS><<<blocks, kThreads, smem, stream>>>(list, geo, hidden, M);
  GK_CHECK_LAUNCH("thr_m_wgmma_kernel");
  return Status::Ok();
}
// The wgmma scores (thr_scores_wgmma_kernel): ThrParams::path (0 auto, 1 mma.sync, 2 wgmma, 3 wgmma on
// truncated operands, 4 wgmma with M on wgmma too, 5 and 6 M on wgmma and the scores on truncated
// operands, TMA-fed in 'tf32' (thr_scores_tma_kernel, below)), f32 hidden states, aligned rows, a 9.0 device from a build with sm_90a (or the
// emulator). `auto` takes 2: verified and measured on an H200 on 2026-11-27 (bench/RESULTS.md: THR at the
// goal size 13.6 ms against 18.5 on mma.sync in 'f32', 8.2 against 9.8 in 'tf32'); 3 to 6, verified on an H200
// on 2026-11-28, are not: 3 is 1.21x faster in 'tf32' but truncates (a bias; PyTorch's TF32 rounds), 4-6 slower.
// Every 9.0 GPU allows 227 KiB per block; a device that allowed less than a kernel needs (the emulator
// told so by GK_EMU_SMEM_OPTIN) would run the mma.sync tiles.
template <bool kS>
bool use_scores_wgmma(int path, const LaunchEnv& env, bool aligned, const TileConfig& tiles) {
  return aligned && wgmma_available(env) && path != 1 && ScoreWgLayout<kS>::kSmemBytes + kSRows * 4 <= tiles.optin;
}
template <bool kS>
Status launch_scores_wgmma(unsigned blocks, const GroupList& list, const GroupGeom& geo, const float* hidden,
                           const float* M, float* spart, bool truncate, cudaStream_t stream) {
  constexpr size_t smem = ScoreWgLayout<kS>::kSmemBytes;
  // (named so that a failure names the kernel)
  const void* thr_scores_wgmma = truncate ? reinterpret_cast<const void*>(&thr_scores_wgmma_kernel<kS, true>)
                                          : reinterpret_cast<const void*>(&thr_scores_wgmma_kernel<kS, false>);
  GK_CHECK(cudaFuncSetAttribute(thr_scores_wgmma, cudaFuncAttributeMaxDynamicSharedMemorySize, int(smem)));
  if (truncate)
    thr_scores_wgmma_kernel<kS, true><<<blocks, kThreads, smem, stream>>>(list, geo, hidden, M, spart);
  else
    thr_scores_wgmma_kernel<kS, false><<<blocks, kThreads, smem, stream>>>(list, geo, hidden, M, spart);
  GK_CHECK_LAUNCH("thr_scores_wgmma_kernel");
  return Status::Ok();
}
// The TMA-fed scores (thr_scores_tma_kernel): path 5 (6: 256-column blocks; 7 and 8 the same on rounded
// copies, thr_round_kernel; 9 and 10 those of 7 and 8 with M TMA-fed too; 11 path 10 with M in 128 × 256
// tiles), 'tf32', f32 hidden states, aligned rows, where the wgmma scores run; decided once per call
// (the block count depends on it). Its maps over the whole hidden tensor (T rows) and this batch's M
// (m_rows rows of ld_m floats), boxes of 128 rows × 32 floats.
bool wide_scores(int path) { return path == 6 || path == 8 || path == 10 || path == 11; }
bool rounded_scores(int path) { return path >= 7 && path <= 11; }
bool use_scores_tma(const ThrParams& p, const LaunchEnv& env, bool aligned, const TileConfig& tiles) {
  const size_t smem = wide_scores(p.path) ? ScoreTmaPipe<true>::kSmemBytes : ScoreTmaPipe<false>::kSmemBytes;
  return p.path >= 5 && p.path <= 11 && p.precision == ThrPrecision::Tf32 && p.hidden_dtype == DType::F32 &&
         aligned && wgmma_available(env) && smem + kSRows * 4 <= tiles.optin;
}
// The TMA-fed kernels' opt-in to their dynamic shared memory (over 48 KiB; per device); a failure names
// the instantiation (`name`), as a GK_CHECK on a spelled-out kernel would.
Status tma_smem_optin(const void* kernel, size_t smem, const char* name) {
  const cudaError_t e = cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, int(smem));
  if (e == cudaSuccess) return Status::Ok();
  return Status::FromCuda(e, (std::string("cudaFuncSetAttribute of ") + name).c_str(), __FILE__, __LINE__);
}
template <bool kWide>
Status launch_scores_tma(unsigned blocks, const GroupList& list, const GroupGeom& geo, const float* hidden,
                         int64_t T, const float* M, int64_t m_rows, float* spart, cudaStream_t stream) {
  constexpr size_t smem = ScoreTmaPipe<kWide>::kSmemBytes;
  alignas(64) CUtensorMap th, tm;
  GK_TRY(encode_tensor_map_2d(&th, hidden, T, geo.d, geo.d, kSRows, kBK, 4));
  GK_TRY(encode_tensor_map_2d(&tm, M, m_rows, geo.d, geo.ld_m, kBN, kBK, 4));
  GK_TRY(tma_smem_optin(reinterpret_cast<const void*>(&thr_scores_tma_kernel<kWide>), smem,
                        kWide ? "thr_scores_tma_kernel<true>" : "thr_scores_tma_kernel<false>"));
  thr_scores_tma_kernel<kWide><<<blocks, kThreads + 32, smem, stream>>>(list, geo, M, spart, th, tm);
  GK_CHECK_LAUNCH("thr_scores_tma_kernel");
  return Status::Ok();
}
// M_g as a TMA-fed GEMM (thr_mt_kernel, thr_m_tma_kernel): path 9 (10: with 256-column scores blocks;
// 11: and M in 128 × 256 tiles, thr_m_tma_kernel<true>), 'tf32', f32 hidden states, the large
// configuration, a 9.0 device from a build with sm_90a (or the emulator).
bool wide_m(int path) { return path == 11; }
bool use_m_tma(const ThrParams& p, const LaunchEnv& env, const TileConfig& tiles) {
  const size_t smem = wide_m(p.path) ? ScoreTmaPipe<true>::kSmemBytes : ScoreTmaPipe<false>::kSmemBytes;
  return p.path >= 9 && p.path <= 11 && p.precision == ThrPrecision::Tf32 && p.hidden_dtype == DType::F32 &&
         tiles.m_large && smem <= tiles.optin && wgmma_available(env);
}
// Scratch for one batch's transposed operands (paths 9 to 11), in floats; a group larger than this goes alone.
constexpr size_t kMtBudgetFloats = (size_t(1) << 30) / sizeof(float);
// The batch's operands (gid: its groups, mlist's on the device; pw: the widest P_g rounded up to 4; rows:
// M's rows), transposed and rounded into scratch (buf, cap floats: grown when a batch needs more, so
// batches reuse it), then the GEMM over mb blocks (kWide: of 128 × 256).
template <bool kWide>
Status launch_m_tma(unsigned mb, const GroupList& mlist, const GroupGeom& geo, const std::vector<int>& gid,
                    const std::vector<int32_t>& voff, int64_t pw, int64_t rows, const float* hidden, float* M,
                    float*& buf, size_t& cap, Scratch& scratch, cudaStream_t stream) {
  const int64_t d = geo.d, n = int64_t(gid.size());
  const size_t need = (size_t(rows) + size_t(n) * size_t(d)) * size_t(pw);
  GK_TRY(scratch.grow(&buf, cap, need));  // (the old one freed, stream-ordered, after its users)
  float *at = buf, *bt = buf + size_t(rows) * size_t(pw);
  int64_t widest = d;  // the batch's widest operand, in rows
  for (const int g : gid) widest = std::max<int64_t>(widest, voff[size_t(g) + 1] - voff[size_t(g)]);
  constexpr int64_t kPerLaunch = 32767;  // groups per launch: gridDim.z ≤ 65535
  for (int64_t li0 = 0; li0 < n; li0 += kPerLaunch) {
    const dim3 grid(unsigned(ceil_div(pw, 32)), unsigned(ceil_div(widest, 32)),
                    unsigned(2 * std::min(kPerLaunch, n - li0)));
    thr_mt_kernel<<<grid, dim3(32, 8), 0, stream>>>(mlist, int(li0), geo, hidden, pw, at, bt);
    GK_CHECK_LAUNCH("thr_mt_kernel");
  }
  alignas(64) CUtensorMap ta, tb;
  GK_TRY(encode_tensor_map_2d(&ta, at, rows, pw, pw, kMRowsLarge, kBK, 4));
  GK_TRY(encode_tensor_map_2d(&tb, bt, n * d, pw, pw, kBN, kBK, 4));
  constexpr size_t smem = ScoreTmaPipe<kWide>::kSmemBytes;
  GK_TRY(tma_smem_optin(reinterpret_cast<const void*>(&thr_m_tma_kernel<kWide>), smem,
                        kWide ? "thr_m_tma_kernel<true>" : "thr_m_tma_kernel<false>"));
  thr_m_tma_kernel<kWide><<<mb, kThreads + 32, smem, stream>>>(mlist, geo, M, ta, tb);
  GK_CHECK_LAUNCH("thr_m_tma_kernel");
  return Status::Ok();
}
template <class H, bool kS, int kStages>
Status launch_scores(unsigned blocks, const GroupList& list, const GroupGeom& geo, const H* hidden, const float* M,
                     float* spart, cudaStream_t stream) {
  constexpr size_t smem = ScoreLayout<H, kStages>::kSmemBytes;
  GK_CHECK(cudaFuncSetAttribute(reinterpret_cast<const void*>(&thr_scores_kernel<H, kS, kStages>),
                                cudaFuncAttributeMaxDynamicSharedMemorySize, int(smem)));
  thr_scores_kernel<H, kS, kStages><<<blocks, kThreads, smem, stream>>>(list, geo, hidden, M, spart);
  GK_CHECK_LAUNCH("thr_scores_kernel");
  return Status::Ok();
}

Status check_layout(const ThrLayoutHost& l, const char* op) {
  GK_REQUIRE(l.response_offsets.size() >= 1 && l.group_offsets.size() >= 1, std::string(op) + ": empty offsets");
  const size_t R = l.response_offsets.size() - 1, G = l.group_offsets.size() - 1;
  GK_REQUIRE(l.correct.size() == R, std::string(op) + ": correct must have R entries");
  GK_REQUIRE(l.degenerate.size() == G, std::string(op) + ": degenerate flags must have G entries");
  GK_REQUIRE(size_t(l.group_offsets.back()) == R, std::string(op) + ": groupOffsets must end at R");
  return Status::Ok();
}

// The API's plan (ThrParams::correct_*, src/api/thr-plan.ts) against the layout: its sizes, and every
// correct token inside its own group's tokens [gto[g], gto[g+1]) (an index outside would read another
// group's hidden rows, or past the buffer). Degenerate groups list none.
Status check_plan(const ThrParams& p, const std::vector<int32_t>& gto) {
  const size_t G = gto.size() - 1;
  const auto& cs = p.correct_start;
  const size_t P = p.correct_tokens.size();
  GK_REQUIRE(cs.size() == G + 1, "tokenHiddenReward: correctStart must have G+1 entries");
  GK_REQUIRE(p.correct_weights.size() == P, "tokenHiddenReward: correctWeights must have one entry per correct token");
  GK_REQUIRE(cs[0] == 0 && size_t(cs[G]) == P,
             "tokenHiddenReward: correctStart must run from 0 to the number of correct tokens");
  for (size_t g = 0; g < G; ++g) {
    GK_REQUIRE(cs[g] <= cs[g + 1], "tokenHiddenReward: correctStart must be non-decreasing");
    GK_REQUIRE(!p.layout.degenerate[g] || cs[g] == cs[g + 1],
               "tokenHiddenReward: correctStart: degenerate group " + std::to_string(g) + " lists correct tokens");
  }
  for (size_t g = 0; g < G; ++g)
    for (int32_t u = cs[g]; u < cs[g + 1]; ++u)
      GK_REQUIRE(p.correct_tokens[size_t(u)] >= gto[g] && p.correct_tokens[size_t(u)] < gto[g + 1],
                 "tokenHiddenReward: correctTokens[" + std::to_string(u) + "] = " +
                     std::to_string(p.correct_tokens[size_t(u)]) + " is not a token of group " + std::to_string(g));
  return Status::Ok();
}

}  // namespace


Status launch_token_hidden_reward(const ThrParams& p, const LaunchEnv& env, Scratch& scratch) {
  GK_TRY(check_layout(p.layout, "tokenHiddenReward"));
  const auto& ro = p.layout.response_offsets;
  const auto& go = p.layout.group_offsets;
  const int G = static_cast<int>(go.size() - 1);
  const int64_t T = ro.back();
  GK_REQUIRE(p.vocab_offsets.size() == go.size() && p.probs_offsets.size() == go.size(),
             "tokenHiddenReward: vocab and probs offsets need G+1 entries");
  GK_REQUIRE(T <= INT_MAX, "tokenHiddenReward: tokens must fit in int32");
  GK_REQUIRE(p.dim >= 0, "tokenHiddenReward: dim must be ≥ 0");
  const bool stacked = p.step != ThrStep::Full;
  const bool scores = p.step != ThrStep::Aggregate;
  if (G == 0) return Status::Ok();
  // thr is [Ttotal]: with no tokens (every response empty) its allocation is empty and its pointer
  // null, which is legal (the groups are then all degenerate: tau NaN, nothing else to write).
  GK_REQUIRE(!scores || (p.tau && (T == 0 || p.thr)), "tokenHiddenReward: null output");
  GK_REQUIRE(!stacked || p.aggregate || p.vocab_offsets.back() == 0 || p.dim == 0, "tokenHiddenReward: null aggregate");
  if (p.step == ThrStep::Aggregate && p.vocab_offsets.back() > 0 && p.dim > 0) {
    // Degenerate groups' rows (and those of live groups without tokens) stay 0.
    GK_CHECK(cudaMemsetAsync(p.aggregate, 0, size_t(p.vocab_offsets.back()) * size_t(p.dim) * sizeof(float),
                             env.stream));
  }
  // hidden is [Ttotal, d]: null when d = 0 (then every s_t is an empty sum, 0).
  GK_REQUIRE(T == 0 || (p.probs && p.token_column && (p.hidden || p.dim == 0)), "tokenHiddenReward: null input");

  // Group token offsets (from the layout); the correct tokens of each live group and their weights come
  // planned by the API (ThrParams::correct_*), checked here.
  std::vector<int32_t> gto(G + 1);
  for (int g = 0; g <= G; ++g) gto[g] = ro[go[g]];
  GK_TRY(check_plan(p, gto));
  const std::vector<int32_t>& ptok = p.correct_tokens;

  int *d_gto = nullptr, *d_voff = nullptr, *d_pstart = nullptr, *d_ptok = nullptr, *d_pcol = nullptr, *d_ro = nullptr,
      *d_go = nullptr;
  long long* d_poff = nullptr;
  float* d_pw = nullptr;
  uint8_t *d_correct = nullptr, *d_deg = nullptr;
  float* s = nullptr;
  GK_TRY(scratch.upload(&d_gto, gto));
  GK_TRY(scratch.upload(&d_voff, p.vocab_offsets));
  std::vector<long long> poff(p.probs_offsets.begin(), p.probs_offsets.end());
  GK_TRY(scratch.upload(&d_poff, poff));
  GK_TRY(scratch.upload(&d_pstart, p.correct_start));
  GK_TRY(scratch.upload(&d_ptok, ptok));
  GK_TRY(scratch.upload(&d_pw, p.correct_weights));
  GK_TRY(scratch.alloc(&d_pcol, ptok.size()));
  GK_TRY(scratch.upload(&d_ro, ro));
  GK_TRY(scratch.upload(&d_go, go));
  GK_TRY(scratch.upload(&d_correct, p.layout.correct));
  GK_TRY(scratch.upload(&d_deg, p.layout.degenerate));
  GK_TRY(scratch.alloc(&s, size_t(T)));

  // M_g rows padded to 4 floats: every row 16-byte aligned for the scores kernel's copies. A stacked
  // aggregate (a tensor of the caller's) has unpadded rows: 4-byte copies when d mod 4 ≠ 0.
  const int64_t ld_m = stacked ? p.dim : (p.dim + 3) / 4 * 4;
  const bool hidden_vec16 =
      (reinterpret_cast<uintptr_t>(p.hidden) & 15u) == 0 && (p.dim * int64_t(dtype_size(p.hidden_dtype))) % 16 == 0;
  const bool m_vec16 = !stacked || ((reinterpret_cast<uintptr_t>(p.aggregate) & 15u) == 0 && ld_m % 4 == 0);
  const GroupGeom geo{d_gto, d_voff, d_poff, d_pstart, d_ptok, d_pw, d_pcol, p.token_column, p.probs, p.dim, ld_m,
                      hidden_vec16, m_vec16};

  // Batches of live groups whose M_g fit the budget (a group larger than the budget goes alone).
  std::vector<int> live;
  for (int g = 0; g < G; ++g)
    if (!p.layout.degenerate[g] && gto[g + 1] > gto[g] && p.vocab_offsets[g + 1] > p.vocab_offsets[g]) live.push_back(g);
  // A stacked aggregate is one batch (the caller's tensor holds every group's M).
  const size_t budget_floats = stacked ? SIZE_MAX : std::max<size_t>(p.m_budget_bytes / sizeof(float), 1);
  size_t i = 0;
  float *M = nullptr, *spart = nullptr, *mt_buf = nullptr;  // mt_buf: paths 9 to 11's transposed operands
  size_t m_cap = 0, part_cap = 0, mt_cap = 0;
  if (p.dim == 0 && !live.empty()) {
    // d = 0: M_g is K×0 and every s_t = g_tᵀ M h_t is an empty sum. The kernels would launch 0 blocks
    // (ceil(K/128)·ceil(0/128)), which CUDA rejects as an invalid configuration, so write the zeros here.
    GK_CHECK(cudaMemsetAsync(s, 0, size_t(T) * sizeof(float), env.stream));
    i = live.size();
  }
  TileConfig tiles;  // from the device's shared memory limit per block (or the test hook)
  if (i < live.size()) {
    int device = 0, smem_optin = 0;
    GK_CHECK(cudaGetDevice(&device));
    GK_CHECK(cudaDeviceGetAttribute(&smem_optin, cudaDevAttrMaxSharedMemoryPerBlockOptin, device));
    GK_TRY(dispatch_float(p.hidden_dtype, "hidden", [&](auto tag) -> Status {
      return choose_tiles<decltype(tag)>(smem_optin, p.small_tiles, &tiles);
    }));
  }
  const int m_rows = tiles.m_large ? kMRowsLarge : kMRowsSmall;
  // The TMA-fed scores (paths 5 to 11 in 'tf32'), and the V* columns of a scores block (256 on 6, 8, 10, 11).
  const bool scores_tma = i < live.size() && use_scores_tma(p, env, hidden_vec16 && m_vec16, tiles);
  // Paths 9 to 11: M_g as a TMA-fed GEMM on transposed copies (not in the scores-only step, which has M).
  const bool m_tma = i < live.size() && p.step != ThrStep::Score && use_m_tma(p, env, tiles);
  // M's tiles over the hidden dims (thr_m_tma_kernel<true>: 256 wide; every other M kernel: 128).
  const int64_t tiles_j = ceil_div(p.dim, m_tma && wide_m(p.path) ? 2 * kBN : kBN);
  const int s_cols = scores_tma && wide_scores(p.path) ? 2 * kBN : kBN;
  // Paths 7 to 11: the scores read tf32-rounded copies, the hidden rows' made here once, M_g's per batch
  // (not in the aggregate-only step, which has no scores).
  const bool rounded = scores && scores_tma && rounded_scores(p.path);
  const float* hidden_scores = static_cast<const float*>(p.hidden);
  float* m_rounded = nullptr;  // a stacked aggregate's rounded copy (the caller's tensor stays as it is)
  if (rounded) {
    float* hr = nullptr;
    GK_TRY(scratch.alloc(&hr, size_t(T) * size_t(p.dim)));
    GK_TRY(launch_round(hidden_scores, p.dim, hr, p.dim, T, p.dim, env.stream));
    hidden_scores = hr;
    if (stacked) {
      GK_TRY(scratch.alloc(&m_rounded, size_t(p.vocab_offsets.back()) * size_t(ld_m)));
      GK_TRY(launch_round(p.aggregate, ld_m, m_rounded, ld_m, p.vocab_offsets.back(), p.dim, env.stream));
    }
  }
  if (i < live.size() && !ptok.empty() && p.step != ThrStep::Score) {
    const int n = static_cast<int>(ptok.size());
    thr_pcol_kernel<<<unsigned(ceil_div(n, 256)), 256, 0, env.stream>>>(d_ptok, p.token_column, n, d_pcol);
    GK_CHECK_LAUNCH("thr_pcol_kernel");
  }
  while (i < live.size()) {
    std::vector<int> gid, m_tiles{0}, s_tiles{0}, f_tiles{0};
    std::vector<long long> m_off, part_off;
    size_t used = 0, parts = 0;
    int64_t pw = 4;  // paths 9 to 11: the transposed operands' row stride, the batch's widest P_g rounded up to 4
    while (i < live.size()) {
      const int g = live[i];
      const int64_t K = p.vocab_offsets[g + 1] - p.vocab_offsets[g];
      const int64_t Tg = gto[g + 1] - gto[g];
      const size_t need = size_t(K) * size_t(ld_m);
      if (!gid.empty() && used + need > budget_floats) break;
      const int64_t Pg = p.correct_start[g + 1] - p.correct_start[g];
      const int64_t pw_next = std::max(pw, (Pg + 3) / 4 * 4);
      // Paths 9 to 11 (not stacked: a stacked aggregate is one batch): its transposed operands fit their budget.
      if (m_tma && !stacked && !gid.empty() &&
          (used / size_t(ld_m) + size_t(K) + (gid.size() + 1) * size_t(p.dim)) * size_t(pw_next) > kMtBudgetFloats)
        break;
      pw = pw_next;
      gid.push_back(g);
      // Stacked: group g's M at its own rows of the aggregate.
      m_off.push_back(static_cast<long long>(stacked ? size_t(p.vocab_offsets[g]) * size_t(ld_m) : used));
      part_off.push_back(static_cast<long long>(parts));
      used += need;
      parts += size_t(Tg) * size_t(ceil_div(K, kBN));
      m_tiles.push_back(m_tiles.back() + static_cast<int>(ceil_div(K, m_rows) * tiles_j));
      s_tiles.push_back(s_tiles.back() + static_cast<int>(ceil_div(Tg, kSRows) * ceil_div(K, s_cols)));
      f_tiles.push_back(f_tiles.back() + static_cast<int>(ceil_div(Tg, kFoldThreads)));
      ++i;
    }
    // The M tensor's rows (the TMA scores' map): the caller's whole aggregate, or this batch's groups.
    const int64_t m_rows_of_batch = stacked ? p.vocab_offsets.back() : int64_t(used / size_t(ld_m));
    if (stacked) {
      M = p.aggregate;
    } else {  // grow the scratch (the old one freed, stream-ordered, after its users)
      GK_TRY(scratch.grow(&M, m_cap, used));
    }
    if (scores) GK_TRY(scratch.grow(&spart, part_cap, parts));
    int *d_gid = nullptr, *d_mt = nullptr, *d_st = nullptr, *d_ft = nullptr;
    long long *d_moff = nullptr, *d_part = nullptr;
    GK_TRY(scratch.upload(&d_gid, gid));
    GK_TRY(scratch.upload(&d_mt, m_tiles));
    GK_TRY(scratch.upload(&d_st, s_tiles));
    GK_TRY(scratch.upload(&d_ft, f_tiles));
    GK_TRY(scratch.upload(&d_moff, m_off));
    GK_TRY(scratch.upload(&d_part, part_off));
    const int n = static_cast<int>(gid.size());
    const GroupList mlist{d_gid, d_mt, d_moff, d_part, n}, slist{d_gid, d_st, d_moff, d_part, n},
        flist{d_gid, d_ft, d_moff, d_part, n};
    // The precision mode is a template flag (kSplit = 'f32'), so the 'tf32' kernels carry no split code.
    auto run = [&](auto tag, auto split) -> Status {
      using H = decltype(tag);
      constexpr bool kS = decltype(split)::value;
      const H* hidden = static_cast<const H*>(p.hidden);
      const unsigned mb = unsigned(m_tiles.back()), sb = unsigned(s_tiles.back());
      if (p.step != ThrStep::Score) {
        if (m_tma)
          GK_TRY((wide_m(p.path) ? launch_m_tma<true> : launch_m_tma<false>)(
              mb, mlist, geo, gid, p.vocab_offsets, pw, m_rows_of_batch, static_cast<const float*>(p.hidden), M,
              mt_buf, mt_cap, scratch, env.stream));
        else if (use_m_wgmma<kS>(p.path, env, tiles))
          GK_TRY((launch_m_wgmma<H, kS>(mb, mlist, geo, hidden, M, env.stream)));
        else if (tiles.m_large)
          GK_TRY((launch_m<H, kS, kMRowsLarge, kStagesLarge>(mb, mlist, geo, hidden, M, env.stream)));
        else
          GK_TRY((launch_m<H, kS, kMRowsSmall, kStagesSmall>(mb, mlist, geo, hidden, M, env.stream)));
      }
      if constexpr (std::is_same<H, float>::value) {
        if (scores && scores_tma) {
          // Rounded (7 to 11): the batch's M_g in place (scratch of ours), or the aggregate's copy.
          const float* ms = M;
          if (rounded && m_rounded) ms = m_rounded;
          else if (rounded) GK_TRY(launch_round(M, ld_m, M, ld_m, m_rows_of_batch, p.dim, env.stream));
          return wide_scores(p.path)
                     ? launch_scores_tma<true>(sb, slist, geo, hidden_scores, T, ms, m_rows_of_batch, spart, env.stream)
                     : launch_scores_tma<false>(sb, slist, geo, hidden_scores, T, ms, m_rows_of_batch, spart, env.stream);
        }
        if (scores && use_scores_wgmma<kS>(p.path, env, geo.hidden_vec16 && geo.m_vec16, tiles))
          return launch_scores_wgmma<kS>(sb, slist, geo, hidden, M, spart, p.path == 3 || p.path == 5 || p.path == 6,
                                         env.stream);
      }
      if (scores) {
        if (tiles.s_large)
          GK_TRY((launch_scores<H, kS, kStagesLarge>(sb, slist, geo, hidden, M, spart, env.stream)));
        else
          GK_TRY((launch_scores<H, kS, kStagesSmall>(sb, slist, geo, hidden, M, spart, env.stream)));
      }
      return Status::Ok();
    };
    GK_TRY(dispatch_float(p.hidden_dtype, "hidden", [&](auto tag) -> Status {
      if (p.precision == ThrPrecision::Tf32) return run(tag, std::false_type{});
      return run(tag, std::true_type{});
    }));
    if (scores) {
      thr_fold_kernel<<<unsigned(f_tiles.back()), kFoldThreads, 0, env.stream>>>(flist, geo, spart, s);
      GK_CHECK_LAUNCH("thr_fold_kernel");
    }
  }
  if (!scores) return Status::Ok();
  const int warps = 8;
  thr_finish_kernel<<<unsigned(ceil_div(G, warps)), warps * 32, 0, env.stream>>>(
      d_go, d_ro, d_correct, d_deg, G, p.beta, s, p.thr, p.tau);
  GK_CHECK_LAUNCH("thr_finish_kernel");
  return Status::Ok();
}

Status launch_thr_reweight(const ThrReweightParams& p, const LaunchEnv& env, Scratch& scratch) {
  GK_TRY(check_layout(p.layout, "thrReweight"));
  const auto& ro = p.layout.response_offsets;
  const auto& go = p.layout.group_offsets;
  const int G = static_cast<int>(go.size() - 1);
  const int R = static_cast<int>(ro.size() - 1);
  const int64_t T = ro.back();
  if (T == 0) return Status::Ok();
  GK_REQUIRE(p.token_advantages && p.thr && p.tau && p.out, "thrReweight: null pointer");
  // eta per group, planned by the API (ReweightPlan: fixed, or 2·|0.5 − rho_g| in f64).
  GK_REQUIRE(p.eta.size() == size_t(G), "thrReweight: eta must have G entries");
  int *d_ro = nullptr, *d_go = nullptr;
  uint8_t *d_correct = nullptr, *d_deg = nullptr;
  double* d_eta = nullptr;
  GK_TRY(scratch.upload(&d_ro, ro));
  GK_TRY(scratch.upload(&d_go, go));
  GK_TRY(scratch.upload(&d_correct, p.layout.correct));
  GK_TRY(scratch.upload(&d_deg, p.layout.degenerate));
  GK_TRY(scratch.upload(&d_eta, p.eta));
  const int threads = 256;
  thr_reweight_kernel<<<unsigned(ceil_div(T, threads)), threads, 0, env.stream>>>(
      p.token_advantages, p.thr, p.tau, d_ro, R, d_go, G, d_correct, d_deg, d_eta, int(p.mode), p.p,
      p.mask ? 1 : 0, T, p.out);
  GK_CHECK_LAUNCH("thr_reweight_kernel");
  return Status::Ok();
}

}  // namespace gk
