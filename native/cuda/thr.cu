// THR family (docs/THR.md): tokenHiddenReward and thrReweight. Mirrors src/backends/cpu/thr.ts.
//
// Per non-degenerate group g (T_g tokens, K_g = |V*_g| columns, P = its correct tokens, hidden dim d):
//   g_t = e(col(y_t)) − q_t (on V*_g), w_t = 1/|y_r| ("length") or 1 ("none")
//   M_g = Σ_{u∈P} w_u g_u h_uᵀ              (K_g × d)            — thr_m_kernel
//   s_t = g_tᵀ M_g h_t = Σ_v g_t[v]·U[t,v], U = H M_gᵀ (T_g × K_g) — thr_scores_kernel (U never stored)
//   THR_t = +s_t (correct response) / −s_t; tau_g = beta · min over correct responses with tokens of
//   their mean THR (NaN-propagating)                              — thr_finish_kernel
// Degenerate groups (host flags): THR 0, tau NaN, nothing read. Empty shapes: Ttotal = 0 (thr has no
// elements, its pointer may be null) writes only tau; d = 0 gives s_t = 0 without launching the tile
// kernels (their grids would have 0 blocks, an invalid configuration).
//
// Both products run on tensor cores: WMMA m16n16k8 on TF32 operands (10-bit mantissa, rounded to
// nearest by __float_to_tf32 once, while a tile is staged, never per MMA) with f32 accumulation.
// Blocks are 128 threads = 4 warps in a 2×2 arrangement over a 64×64 output tile, 32-deep k-steps
// staged through shared memory; out-of-range rows and columns are zero-filled, so K_g and d need not
// be multiples of the tile. The precision mode (ThrPrecision, a template flag) picks the products:
//   'f32' (default): every operand not exact in TF32 is split while staged into x = hi + lo with
//     hi = tf32(x), lo = tf32(x − hi), and a·b ≈ a_lo·b_hi + a_hi·b_lo + a_hi·b_hi (3xTF32, small terms
//     first). f16 and bf16 hidden states are exact in TF32 (hi = h, lo = 0), so with them each product
//     is 2xTF32 (the dense part of M_g, and M_g itself, split; h not); f32 hidden states give 3xTF32 in
//     both kernels. Each k-step's MMAs go into fresh fragments that are then added to the running sums
//     in f32 round-to-nearest (see flush(): tensor cores truncate their sums, and one accumulator
//     carried over the whole reduction drifts by ~1e-5 at d = 896).
//   'tf32': one MMA per product on the rounded operands, straight into the running sums (opt-in).
//   thr_m_kernel: block owns a 64(v)×64(j) tile of M_g and reduces over the group's correct tokens.
//     M_g = Σ_u w_u e(col_u) h_uᵀ − Σ_u w_u q_u h_uᵀ: the one-hot part is an f32 scatter-add in
//     registers (h as given, never TF32-rounded; one FMA per term, tokens in packed order; warp w owns
//     rows 16w..16w+15, a lane two columns) of the k-step's tokens whose column lies in the tile, in
//     both modes; only the dense part −w_u q_u[v] (formed while staging, never stored) goes through the
//     MMAs. The output tile reuses the staging bytes. Shared memory: 35 KB ('f32', f32 hidden), 26 KB
//     ('f32' with f16/bf16; 'tf32' with f32 hidden, whose exact low part is staged for the scatter),
//     18 KB ('tf32', f16/bf16).
//   thr_scores_kernel: block owns 64 tokens of one group and loops over V*_g in 64-column tiles; each
//     U tile (reduced over d) is multiplied by g_t and summed along v into per-row registers in a
//     fixed order, so s_t is deterministic and needs no atomics or partial buffers. Shared memory
//     (U tile aliasing the staging bytes): 37 KB ('f32', f32 hidden), 28 KB ('f32', f16/bf16), 19 KB
//     ('tf32').
//   Registers (sm_90, no spills): 168 ('f32') / 128 ('tf32') in thr_m_kernel, 128 / 96 in scores.
//   Ragged groups share one launch: a host-built list maps blockIdx.x to (group, tile) through a
//   binary search over per-group tile offsets. M_g lives in scratch; groups are processed in batches
//   whose M fits m_budget_bytes (256 MiB by default).
// FLOPs: 2·K_g·d·(|P_g| + T_g) per group (+ 2·T_g·K_g in the epilogue); tensor-core work is that times
//   1 ('tf32'), 2 ('f32' with f16/bf16 hidden) or 3 ('f32' with f32 hidden). The scatter adds |P_g|·d.
//   H200, one group of 8 × 2048 tokens, |V*| 4096, d 3584: 'f32' 70.7 ms (f32 hidden) / 54.1 ms (bf16),
//   'tf32' 43.0 / 41.5 ms; the single-pass kernel before it 43.9 / 43.0 ms (same machine).
// Bytes: hidden read once per v-tile pass of its rows (L2-resident for typical T_g), q read twice,
//   M_g written once and read ceil(T_g/64) times (L2), 4·T_g written.
// Numerics, per token t of group g against the f64 definition, scaled by max_{u∈g} |THR_u| (tau_g
// likewise):
//   'f32': bound 3e-4 (issue 10's f32 bound). Each product is exact to 3·2^-22 (the dropped a_lo·b_lo
//     and the rounding of the lo parts; 2^-22 when h is exact), the truncating MMA sums stay within a
//     k-step, the rest is f32 round-to-nearest: an f32-grade result. Measured (H200): 2.6e-7..5.9e-7 in
//     test/cuda/ops-thr-precision.test.ts (d ≤ 896, ≤ 360 tokens per group), 1.4e-6 at 8 × 256 tokens,
//     |V*| 1024, d 896 (one accumulator per tile instead of the flush: 1.3e-5).
//   'tf32': bound 3e-3. w·q, M_g and f32 hidden states are rounded to TF32 (unit roundoff 2^-11 ≈
//     4.9e-4); the one-hot part is not rounded. Measured (H200): 1.0e-4..2.6e-4 in the same test, 5.8e-5
//     at the 8 × 256 size (the single-pass kernel before it, which rounded the one-hot part as well:
//     2.2e-4..3.6e-4 on the emulator, 1.8e-4 at 8 × 256, 5e-4..7e-4 at LLM sizes).
//   Sums are in a fixed order, so the same inputs give the same bits. NaN propagates; ±Inf in q, h or
//   M_g gives NaN (a split's low part is Inf − Inf; with f32 hidden states in both modes, through the
//   scatter's h = hi + lo), where the math may say ±Inf: never a finite number.
//
// thrReweight: one thread per token (binary searches in responseOffsets and groupOffsets):
//   'thr'/'thr-only': |THR| > tau ? (1 + p·sign(THR))·A : (mask ? 0·A : A); 'nthr': incorrect tokens
//   with −THR > tau get eta_g·A; degenerate groups keep A; NaN THR or tau → NaN where the rule applies.
//   The coefficient and its product with A are taken in f64 and rounded once (as the reference).
//   Bytes: 12·Ttotal + small; FLOPs ≤ 3 per token.
#include <mma.h>

#include <algorithm>
#include <climits>
#include <cmath>
#include <type_traits>

#include "thr.cuh"

namespace gk {
namespace {

using namespace nvcuda;

constexpr int kTile = 64;    // output tile edge (both kernels)
constexpr int kK = 32;       // reduction step
constexpr int kPad = 4;      // smem row padding (floats): keeps WMMA's 32-byte alignment, skews banks
constexpr int kThreads = 128;

using FragA_col = wmma::fragment<wmma::matrix_a, 16, 16, 8, wmma::precision::tf32, wmma::col_major>;
using FragA_row = wmma::fragment<wmma::matrix_a, 16, 16, 8, wmma::precision::tf32, wmma::row_major>;
using FragB_row = wmma::fragment<wmma::matrix_b, 16, 16, 8, wmma::precision::tf32, wmma::row_major>;
using FragB_col = wmma::fragment<wmma::matrix_b, 16, 16, 8, wmma::precision::tf32, wmma::col_major>;
using FragC = wmma::fragment<wmma::accumulator, 16, 16, 8, float>;

template <class F>
__device__ __forceinline__ void to_tf32(F& f) {
#pragma unroll
  for (int i = 0; i < f.num_elements; ++i) f.x[i] = wmma::__float_to_tf32(f.x[i]);
}

// 'f32' mode: tensor cores round each MMA's f32 sum toward zero, so one accumulator carried through a
// long reduction drifts toward zero by up to an ulp per MMA (with 3 MMAs per k8 step: 1.3e-5 of
// max|THR| at d = 896, 2048 tokens on an H200, ten times the rest of the error). Each 32-deep k-step
// therefore accumulates into fresh fragments (at most 12 MMAs), which are then added into the running
// sums with ordinary round-to-nearest f32 additions (1.4e-6 on the same case). Fragments of one type
// share their element layout, so element-wise addition is well defined.
__device__ __forceinline__ void flush(FragC (&acc)[2][2], FragC (&part)[2][2]) {
#pragma unroll
  for (int i = 0; i < 2; ++i)
#pragma unroll
    for (int j = 0; j < 2; ++j) {
#pragma unroll
      for (int e = 0; e < FragC::num_elements; ++e) acc[i][j].x[e] += part[i][j].x[e];
      wmma::fill_fragment(part[i][j], 0.f);
    }
}

// x = hi + lo (+ a residual below 2^-22·|x|): hi = tf32(x), lo = tf32(x − hi). x − hi is exact in f32
// (Sterbenz: hi is within a factor 2 of x). Done once per element while staging a tile, so the MMAs
// read operands that are already TF32 and no fragment needs a conversion. A ±Inf x gives lo = NaN.
__device__ __forceinline__ void split_tf32(float x, float& hi, float& lo) {
  hi = wmma::__float_to_tf32(x);
  lo = wmma::__float_to_tf32(x - hi);
}

// TF32 holds f16 and bf16 values exactly (10 and 7 mantissa bits ≤ its 10, exponents in range, f16
// subnormals normal in f32), so those hidden states never need a low part.
template <class T>
constexpr bool kHiddenExactInTf32 = !std::is_same<T, float>::value;

// Per-launch description of one batch of groups (device arrays; n = listed groups).
struct GroupList {
  const int* gid;          // [n] group ids
  const int* tile_start;   // [n+1] first block of each listed group
  const long long* m_off;  // [n] float offset of M_g in the M scratch
  int n;
};

struct GroupGeom {
  const int* gto;          // [G+1] group token offsets
  const int* voff;         // [G+1] vocab offsets
  const long long* poff;   // [G+1] probs offsets
  const int* pstart;       // [G+1] offsets into ptok / pw
  const int* ptok;         // correct tokens, packed order
  const float* pw;         // their weights
  const int* tokcol;       // [Ttotal] column of y_t in V*_g
  const float* probs;
  int64_t d;
};

// ----------------------------------------------------------------------------------------- M_g
// kSplit ('f32' precision): the dense operand −w·q is split into hi + lo; an f32 hidden state too (3
// MMAs per product: a_lo·b_hi + a_hi·b_lo + a_hi·b_hi, small terms first), an f16/bf16 one is exact
// (2 MMAs). Otherwise ('tf32') one MMA on TF32-rounded operands.
// Shared memory: the staged k-step (A and B, hi and lo parts) and, after the k loop, the output tile
// (Cs) in the same bytes.
template <bool kSplitA, bool kLoB>
struct MSmem {
  // Every array starts on a 32-byte boundary (WMMA's pointer alignment); rows of kTile + kPad = 68
  // floats keep fragment rows 8 apart 32-byte aligned too. Unused parts are 1-row placeholders.
  struct Stage {
    alignas(32) float a_hi[kK][kTile + kPad];                // A[p][v] = tf32(−w_p q_p[v])
    alignas(32) float b_hi[kK][kTile + kPad];                // tf32(h_p[j]) (= h_p[j] for f16/bf16)
    alignas(32) float a_lo[kSplitA ? kK : 1][kTile + kPad];  // tf32(a − a_hi)
    // h_p[j] − tf32(h_p[j]), f32 hidden states only, kept exact (not rounded): the one-hot scatter
    // needs b_hi + b_lo = h exactly; the MMAs round their copy in the fragment.
    alignas(32) float b_lo[kLoB ? kK : 1][kTile + kPad];
  };
  union {
    Stage st;
    float c[kTile][kTile + kPad];
  };
};

template <class T, bool kSplit>
__global__ void __launch_bounds__(kThreads) thr_m_kernel(GroupList list, GroupGeom geo, const T* __restrict__ hidden,
                                                           float* __restrict__ M) {
  constexpr bool kSplitA = kSplit;                               // −w·q: always an f32 value
  constexpr bool kLoB = !kHiddenExactInTf32<T>;                  // h's low part is staged (scatter)
  constexpr bool kSplitB = kSplit && !kHiddenExactInTf32<T>;     // ... and used by the MMAs
  static_assert(kK == 32, "warp 0 stages one correct token per lane");
  __shared__ __align__(128) MSmem<kSplitA, kLoB> sm;
  // (t_p − t0)·K: the token's q row, or −1 past the end. 64-bit: T_g·K_g exceeds 2^31 for large
  // groups (e.g. 64 responses × 4096 tokens with |V*| ≈ 10^4), and an int product would wrap.
  __shared__ long long s_row[kK];
  __shared__ int s_tok[kK];
  __shared__ int s_hit[kK];  // the token's one-hot row in this v-tile (col_p − v0), or −1
  __shared__ float s_w[kK];
  __shared__ unsigned s_hits;  // bit p: s_hit[p] ≥ 0

  const int li = find_range(list.tile_start, list.n, blockIdx.x);
  const int g = list.gid[li];
  const int64_t d = geo.d;
  const int tiles_j = static_cast<int>(ceil_div(d, kTile));
  const int local = blockIdx.x - list.tile_start[li];
  const int v0 = (local / tiles_j) * kTile;
  const int j0 = (local % tiles_j) * kTile;
  const int K = geo.voff[g + 1] - geo.voff[g];
  const int t0 = geo.gto[g];
  const int p_beg = geo.pstart[g], p_end = geo.pstart[g + 1];
  const float* q = geo.probs + geo.poff[g];
  const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31, wm = warp >> 1, wn = warp & 1;

  // 'f32': running sums (round to nearest) and this k-step's MMAs (see flush); 'tf32': the MMAs go
  // straight into acc (their operand rounding, ~2^-11, dwarfs the drift; 40 fewer registers).
  FragC acc[2][2], part[2][2];
  FragC(&sink)[2][2] = kSplit ? part : acc;
#pragma unroll
  for (int i = 0; i < 2; ++i)
#pragma unroll
    for (int j = 0; j < 2; ++j) {
      wmma::fill_fragment(acc[i][j], 0.f);
      wmma::fill_fragment(part[i][j], 0.f);
    }
  // The one-hot part Σ_p w_p e(col_p) h_pᵀ in f32, h not rounded (a scatter-add, not an MMA): warp w
  // owns rows 16w..16w+15 of the tile, lane the columns lane and lane + 32; tokens in packed order.
  float oh[16][2];
#pragma unroll
  for (int i = 0; i < 16; ++i) oh[i][0] = oh[i][1] = 0.f;

  for (int p0 = p_beg; p0 < p_end; p0 += kK) {
    if (warp == 0) {
      const int pp = p0 + lane;
      int hit = -1;
      if (pp < p_end) {
        const int t = geo.ptok[pp];
        const int col = geo.tokcol[t];
        s_tok[lane] = t;
        s_row[lane] = static_cast<long long>(t - t0) * K;
        s_w[lane] = geo.pw[pp];
        if (col >= v0 && col < v0 + kTile) hit = col - v0;
      } else {
        s_tok[lane] = -1;
        s_row[lane] = -1;
        s_w[lane] = 0.f;
      }
      s_hit[lane] = hit;
      unsigned bits = hit >= 0 ? 1u << lane : 0u;
#pragma unroll
      for (int off = 16; off > 0; off >>= 1) bits |= __shfl_xor_sync(0xffffffffu, bits, off);
      if (lane == 0) s_hits = bits;
    }
    __syncthreads();
    for (int e = threadIdx.x; e < kK * kTile; e += kThreads) {
      const int pp = e / kTile, c = e % kTile;
      const int v = v0 + c, j = j0 + c;
      const long long row = s_row[pp];
      float a = 0.f, b = 0.f;
      if (row >= 0) {
        if (v < K) a = -s_w[pp] * q[row + v];
        if (j < d) b = load_f32(hidden + int64_t(s_tok[pp]) * d + j);
      }
      if constexpr (kSplitA) {
        split_tf32(a, sm.st.a_hi[pp][c], sm.st.a_lo[pp][c]);
      } else {
        sm.st.a_hi[pp][c] = wmma::__float_to_tf32(a);
      }
      const float bh = wmma::__float_to_tf32(b);  // = b for f16/bf16
      sm.st.b_hi[pp][c] = bh;
      if constexpr (kLoB) sm.st.b_lo[pp][c] = b - bh;
    }
    __syncthreads();
#pragma unroll
    for (int k8 = 0; k8 < kK; k8 += 8) {
      FragA_col fa[2], fa_lo[2];
      FragB_row fb[2], fb_lo[2];
#pragma unroll
      for (int i = 0; i < 2; ++i) {
        wmma::load_matrix_sync(fa[i], &sm.st.a_hi[k8][wm * 32 + i * 16], kTile + kPad);
        wmma::load_matrix_sync(fb[i], &sm.st.b_hi[k8][wn * 32 + i * 16], kTile + kPad);
        if constexpr (kSplitA) wmma::load_matrix_sync(fa_lo[i], &sm.st.a_lo[k8][wm * 32 + i * 16], kTile + kPad);
        if constexpr (kSplitB) {
          // b_lo is stored exact for the scatter; the MMA takes it rounded (its own error ≤ 2^-22·|b|).
          wmma::load_matrix_sync(fb_lo[i], &sm.st.b_lo[k8][wn * 32 + i * 16], kTile + kPad);
          to_tf32(fb_lo[i]);
        }
      }
#pragma unroll
      for (int i = 0; i < 2; ++i)
#pragma unroll
        for (int j = 0; j < 2; ++j) {
          if constexpr (kSplitA) wmma::mma_sync(sink[i][j], fa_lo[i], fb[j], sink[i][j]);
          if constexpr (kSplitB) wmma::mma_sync(sink[i][j], fa[i], fb_lo[j], sink[i][j]);
          wmma::mma_sync(sink[i][j], fa[i], fb[j], sink[i][j]);
        }
    }
    if constexpr (kSplit) flush(acc, part);
    // One-hot scatter of this k-step's tokens whose column falls in the tile (usually few: a token
    // hits one row of one v-tile). Warp-uniform branches. The row is chosen by a select per register:
    // written as `if (i == row) oh[i] += ...`, nvcc folds the unrolled loop back into a dynamic index
    // and moves oh to local memory (a 128-byte stack frame).
    for (unsigned bits = s_hits; bits != 0u; bits &= bits - 1u) {
      int pp = 0;
      while (!((bits >> pp) & 1u)) ++pp;
      const int rr = s_hit[pp];
      if ((rr >> 4) != warp) continue;
      const float w = s_w[pp];
      float h0 = sm.st.b_hi[pp][lane], h1 = sm.st.b_hi[pp][lane + 32];
      if constexpr (kLoB) {
        h0 += sm.st.b_lo[pp][lane];  // exact: hi + (h − hi) = h
        h1 += sm.st.b_lo[pp][lane + 32];
      }
#pragma unroll
      for (int i = 0; i < 16; ++i) {
        const bool mine = i == (rr & 15);
        oh[i][0] = mine ? fmaf(w, h0, oh[i][0]) : oh[i][0];
        oh[i][1] = mine ? fmaf(w, h1, oh[i][1]) : oh[i][1];
      }
    }
    __syncthreads();
  }
  // Cs reuses the staging bytes: every warp has passed the k loop's last barrier.
#pragma unroll
  for (int i = 0; i < 2; ++i)
#pragma unroll
    for (int j = 0; j < 2; ++j)
      wmma::store_matrix_sync(&sm.c[wm * 32 + i * 16][wn * 32 + j * 16], acc[i][j], kTile + kPad, wmma::mem_row_major);
  __syncthreads();
  // M = one-hot part + dense part, written by the scatter's owners (rows of 64 contiguous floats).
  float* Mg = M + list.m_off[li];
#pragma unroll
  for (int i = 0; i < 16; ++i) {
    const int r = warp * 16 + i, v = v0 + r;
#pragma unroll
    for (int k = 0; k < 2; ++k) {
      const int c = lane + 32 * k;
      const int64_t j = j0 + c;
      if (v < K && j < d) Mg[int64_t(v) * d + j] = oh[i][k] + sm.c[r][c];
    }
  }
}

// ------------------------------------------------------------------------------------- scores s_t
// kSplit ('f32' precision): M is split into hi + lo, an f32 hidden state too (3 MMAs per product),
// an f16/bf16 one is exact (2 MMAs). Otherwise ('tf32') one MMA on TF32-rounded operands.
template <bool kSplitA, bool kSplitB>
struct ScoreSmem {
  // As in MSmem: 32-byte aligned arrays, rows of kK + kPad = 36 floats, 1-row placeholders.
  struct Stage {
    alignas(32) float h_hi[kTile][kK + kPad];                // A: tf32(h_t[j]) (= h_t[j] for f16/bf16)
    alignas(32) float m_hi[kTile][kK + kPad];                // B: tf32(M[v][j])
    alignas(32) float h_lo[kSplitA ? kTile : 1][kK + kPad];  // tf32(h − h_hi)
    alignas(32) float m_lo[kSplitB ? kTile : 1][kK + kPad];  // tf32(M − m_hi)
  };
  union {
    Stage st;
    float u[kTile][kTile + kPad];  // one U tile, after the k loop
  };
};

template <class T, bool kSplit>
__global__ void __launch_bounds__(kThreads) thr_scores_kernel(GroupList list, GroupGeom geo, const T* __restrict__ hidden,
                                                                const float* __restrict__ M, float* __restrict__ s) {
  constexpr bool kSplitA = kSplit && !kHiddenExactInTf32<T>;
  constexpr bool kSplitB = kSplit;
  __shared__ __align__(128) ScoreSmem<kSplitA, kSplitB> sm;
  __shared__ int s_col[kTile];

  const int li = find_range(list.tile_start, list.n, blockIdx.x);
  const int g = list.gid[li];
  const int64_t d = geo.d;
  const int t0 = geo.gto[g], t1 = geo.gto[g + 1];
  const int tr0 = t0 + (blockIdx.x - list.tile_start[li]) * kTile;  // first token of this block
  const int rows = min(kTile, t1 - tr0);
  const int K = geo.voff[g + 1] - geo.voff[g];
  const float* q = geo.probs + geo.poff[g];
  const float* Mg = M + list.m_off[li];
  const int warp = threadIdx.x >> 5, wm = warp >> 1, wn = warp & 1;
  if (threadIdx.x < kTile) s_col[threadIdx.x] = int(threadIdx.x) < rows ? geo.tokcol[tr0 + threadIdx.x] : -1;

  // Epilogue ownership: thread → (row r, half h of the 64 columns of each U tile).
  const int er = threadIdx.x >> 1, eh = threadIdx.x & 1;
  float acc_row = 0.f;

  for (int v0 = 0; v0 < K; v0 += kTile) {
    FragC acc[2][2], part[2][2];  // as in thr_m_kernel: 'f32' flushes part into acc, 'tf32' uses acc
    FragC(&sink)[2][2] = kSplit ? part : acc;
#pragma unroll
    for (int i = 0; i < 2; ++i)
#pragma unroll
      for (int j = 0; j < 2; ++j) {
        wmma::fill_fragment(acc[i][j], 0.f);
        wmma::fill_fragment(part[i][j], 0.f);
      }
    for (int64_t j0 = 0; j0 < d; j0 += kK) {
      for (int e = threadIdx.x; e < kTile * kK; e += kThreads) {
        const int r = e / kK, c = e % kK;
        const int64_t j = j0 + c;
        const bool jok = j < d;
        const float h = (jok && r < rows) ? load_f32(hidden + int64_t(tr0 + r) * d + j) : 0.f;
        const float m = (jok && v0 + r < K) ? Mg[int64_t(v0 + r) * d + j] : 0.f;
        if constexpr (kSplitA) {
          split_tf32(h, sm.st.h_hi[r][c], sm.st.h_lo[r][c]);
        } else {
          sm.st.h_hi[r][c] = wmma::__float_to_tf32(h);  // = h for f16/bf16
        }
        if constexpr (kSplitB) {
          split_tf32(m, sm.st.m_hi[r][c], sm.st.m_lo[r][c]);
        } else {
          sm.st.m_hi[r][c] = wmma::__float_to_tf32(m);
        }
      }
      __syncthreads();
#pragma unroll
      for (int k8 = 0; k8 < kK; k8 += 8) {
        FragA_row fa[2], fa_lo[2];
        FragB_col fb[2], fb_lo[2];
#pragma unroll
        for (int i = 0; i < 2; ++i) {
          wmma::load_matrix_sync(fa[i], &sm.st.h_hi[wm * 32 + i * 16][k8], kK + kPad);
          wmma::load_matrix_sync(fb[i], &sm.st.m_hi[wn * 32 + i * 16][k8], kK + kPad);
          if constexpr (kSplitA) wmma::load_matrix_sync(fa_lo[i], &sm.st.h_lo[wm * 32 + i * 16][k8], kK + kPad);
          if constexpr (kSplitB) wmma::load_matrix_sync(fb_lo[i], &sm.st.m_lo[wn * 32 + i * 16][k8], kK + kPad);
        }
#pragma unroll
        for (int i = 0; i < 2; ++i)
#pragma unroll
          for (int j = 0; j < 2; ++j) {
            if constexpr (kSplitA) wmma::mma_sync(sink[i][j], fa_lo[i], fb[j], sink[i][j]);
            if constexpr (kSplitB) wmma::mma_sync(sink[i][j], fa[i], fb_lo[j], sink[i][j]);
            wmma::mma_sync(sink[i][j], fa[i], fb[j], sink[i][j]);
          }
      }
      if constexpr (kSplit) flush(acc, part);
      __syncthreads();
    }
    // U reuses the staging bytes: every warp has passed the k loop's last barrier.
#pragma unroll
    for (int i = 0; i < 2; ++i)
#pragma unroll
      for (int j = 0; j < 2; ++j)
        wmma::store_matrix_sync(&sm.u[wm * 32 + i * 16][wn * 32 + j * 16], acc[i][j], kTile + kPad,
                                wmma::mem_row_major);
    __syncthreads();
    if (er < rows) {  // s_t += Σ_v g_t[v]·U[t, v] over this thread's 32 columns, v ascending
      const float* qrow = q + int64_t(tr0 - t0 + er) * K;
      const int col = s_col[er];
      for (int c = eh * 32; c < eh * 32 + 32; ++c) {
        const int v = v0 + c;
        if (v >= K) break;
        const float gv = (v == col ? 1.f : 0.f) - qrow[v];
        acc_row = fmaf(gv, sm.u[er][c], acc_row);
      }
    }
    __syncthreads();
  }
  // Combine the two halves of each row in a fixed order: half 0 + half 1.
  float* half1 = &sm.u[0][0];
  if (eh == 1) half1[er] = acc_row;
  __syncthreads();
  if (eh == 0 && er < rows) s[tr0 + er] = acc_row + half1[er];
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
    for (int t = ro[r0] + lane; t < ro[r1]; t += 32) thr[t] = 0.f;
    if (lane == 0) tau[g] = NAN;
    return;
  }
  float min_mean = INFINITY;
  for (int r = r0; r < r1; ++r) {
    const int a = ro[r], b = ro[r + 1];
    if (correct[r]) {
      float sum = 0.f;
      for (int t = a + lane; t < b; t += 32) {
        const float x = s[t];
        thr[t] = x;
        sum += x;
      }
#pragma unroll
      for (int off = 16; off > 0; off >>= 1) sum += __shfl_xor_sync(0xffffffffu, sum, off);
      if (b > a) {
        const float m = sum / static_cast<float>(b - a);
        min_mean = (isnan(min_mean) || isnan(m)) ? NAN : fminf(min_mean, m);
      }
    } else {
      for (int t = a + lane; t < b; t += 32) thr[t] = -s[t];
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

Status check_layout(const ThrLayoutHost& l, const char* op) {
  GK_REQUIRE(l.response_offsets.size() >= 1 && l.group_offsets.size() >= 1, std::string(op) + ": empty offsets");
  const size_t R = l.response_offsets.size() - 1, G = l.group_offsets.size() - 1;
  GK_REQUIRE(l.correct.size() == R, std::string(op) + ": correct must have R entries");
  GK_REQUIRE(l.degenerate.size() == G, std::string(op) + ": degenerate flags must have G entries");
  GK_REQUIRE(size_t(l.group_offsets.back()) == R, std::string(op) + ": groupOffsets must end at R");
  return Status::Ok();
}

}  // namespace

Status launch_token_hidden_reward(const ThrParams& p, const LaunchEnv& env, Scratch& scratch) {
  GK_TRY(check_layout(p.layout, "tokenHiddenReward"));
  const auto& ro = p.layout.response_offsets;
  const auto& go = p.layout.group_offsets;
  const int G = static_cast<int>(go.size() - 1);
  const int R = static_cast<int>(ro.size() - 1);
  const int64_t T = ro.back();
  GK_REQUIRE(p.vocab_offsets.size() == go.size() && p.probs_offsets.size() == go.size(),
             "tokenHiddenReward: vocab and probs offsets need G+1 entries");
  GK_REQUIRE(T <= INT_MAX, "tokenHiddenReward: tokens must fit in int32");
  GK_REQUIRE(p.dim >= 0, "tokenHiddenReward: dim must be ≥ 0");
  if (G == 0) return Status::Ok();
  // thr is [Ttotal]: with no tokens (every response empty) its allocation is empty and its pointer
  // null, which is legal (the groups are then all degenerate: tau NaN, nothing else to write).
  GK_REQUIRE(p.tau && (T == 0 || p.thr), "tokenHiddenReward: null output");
  // hidden is [Ttotal, d]: null when d = 0 (then every s_t is an empty sum, 0).
  GK_REQUIRE(T == 0 || (p.probs && p.token_column && (p.hidden || p.dim == 0)), "tokenHiddenReward: null input");

  // Host plan: group token offsets, the correct tokens of each live group and their weights.
  std::vector<int32_t> gto(G + 1), pstart(G + 1, 0), ptok;
  std::vector<float> pw;
  for (int g = 0; g <= G; ++g) gto[g] = ro[go[g]];
  for (int g = 0; g < G; ++g) {
    pstart[g] = static_cast<int32_t>(ptok.size());
    if (p.layout.degenerate[g]) continue;
    for (int r = go[g]; r < go[g + 1]; ++r) {
      if (!p.layout.correct[r]) continue;
      const int len = ro[r + 1] - ro[r];
      const float w = p.length_weighting ? static_cast<float>(1.0 / len) : 1.f;
      for (int t = ro[r]; t < ro[r + 1]; ++t) {
        ptok.push_back(t);
        pw.push_back(w);
      }
    }
  }
  pstart[G] = static_cast<int32_t>(ptok.size());

  int *d_gto = nullptr, *d_voff = nullptr, *d_pstart = nullptr, *d_ptok = nullptr, *d_ro = nullptr, *d_go = nullptr;
  long long* d_poff = nullptr;
  float* d_pw = nullptr;
  uint8_t *d_correct = nullptr, *d_deg = nullptr;
  float* s = nullptr;
  GK_TRY(scratch.upload(&d_gto, gto));
  GK_TRY(scratch.upload(&d_voff, p.vocab_offsets));
  std::vector<long long> poff(p.probs_offsets.begin(), p.probs_offsets.end());
  GK_TRY(scratch.upload(&d_poff, poff));
  GK_TRY(scratch.upload(&d_pstart, pstart));
  GK_TRY(scratch.upload(&d_ptok, ptok));
  GK_TRY(scratch.upload(&d_pw, pw));
  GK_TRY(scratch.upload(&d_ro, ro));
  GK_TRY(scratch.upload(&d_go, go));
  GK_TRY(scratch.upload(&d_correct, p.layout.correct));
  GK_TRY(scratch.upload(&d_deg, p.layout.degenerate));
  GK_TRY(scratch.alloc(&s, size_t(T)));

  const GroupGeom geo{d_gto, d_voff, d_poff, d_pstart, d_ptok, d_pw, p.token_column, p.probs, p.dim};
  const int64_t tiles_j = ceil_div(p.dim, kTile);

  // Batches of live groups whose M_g fit the budget (a group larger than the budget goes alone).
  std::vector<int> live;
  for (int g = 0; g < G; ++g)
    if (!p.layout.degenerate[g] && gto[g + 1] > gto[g] && p.vocab_offsets[g + 1] > p.vocab_offsets[g]) live.push_back(g);
  const size_t budget_floats = std::max<size_t>(p.m_budget_bytes / sizeof(float), 1);
  size_t i = 0;
  float* M = nullptr;
  size_t m_cap = 0;
  if (p.dim == 0 && !live.empty()) {
    // d = 0: M_g is K×0 and every s_t = g_tᵀ M h_t is an empty sum. The kernels would launch 0 blocks
    // (ceil(K/64)·ceil(0/64)), which CUDA rejects as an invalid configuration, so write the zeros here.
    GK_CHECK(cudaMemsetAsync(s, 0, size_t(T) * sizeof(float), env.stream));
    i = live.size();
  }
  while (i < live.size()) {
    std::vector<int> gid, m_tiles{0}, s_tiles{0};
    std::vector<long long> m_off;
    size_t used = 0;
    while (i < live.size()) {
      const int g = live[i];
      const int64_t K = p.vocab_offsets[g + 1] - p.vocab_offsets[g];
      const size_t need = size_t(K) * size_t(p.dim);
      if (!gid.empty() && used + need > budget_floats) break;
      gid.push_back(g);
      m_off.push_back(static_cast<long long>(used));
      used += need;
      m_tiles.push_back(m_tiles.back() + static_cast<int>(ceil_div(K, kTile) * tiles_j));
      s_tiles.push_back(s_tiles.back() + static_cast<int>(ceil_div(gto[g + 1] - gto[g], kTile)));
      ++i;
    }
    if (used > m_cap) {  // grow the M scratch (stream-ordered: the old one is freed after its users)
      GK_TRY(scratch.alloc(&M, used));
      m_cap = used;
    }
    int *d_gid = nullptr, *d_mt = nullptr, *d_st = nullptr;
    long long* d_moff = nullptr;
    GK_TRY(scratch.upload(&d_gid, gid));
    GK_TRY(scratch.upload(&d_mt, m_tiles));
    GK_TRY(scratch.upload(&d_st, s_tiles));
    GK_TRY(scratch.upload(&d_moff, m_off));
    const int n = static_cast<int>(gid.size());
    // The precision mode is a template flag (kSplit = 'f32'), so the 'tf32' kernels carry no split code.
    auto run = [&](auto tag, auto split) -> Status {
      using H = decltype(tag);
      constexpr bool kS = decltype(split)::value;
      thr_m_kernel<H, kS><<<unsigned(m_tiles.back()), kThreads, 0, env.stream>>>(
          GroupList{d_gid, d_mt, d_moff, n}, geo, static_cast<const H*>(p.hidden), M);
      GK_CHECK_LAUNCH("thr_m_kernel");
      thr_scores_kernel<H, kS><<<unsigned(s_tiles.back()), kThreads, 0, env.stream>>>(
          GroupList{d_gid, d_st, d_moff, n}, geo, static_cast<const H*>(p.hidden), M, s);
      GK_CHECK_LAUNCH("thr_scores_kernel");
      return Status::Ok();
    };
    GK_TRY(dispatch_float(p.hidden_dtype, "hidden", [&](auto tag) -> Status {
      if (p.precision == ThrPrecision::Tf32) return run(tag, std::false_type{});
      return run(tag, std::true_type{});
    }));
  }
  (void)R;
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
  // eta per group: fixed, or 2·|0.5 − rho_g| (f64, as the reference).
  std::vector<double> eta(G, p.eta);
  if (p.mode == ReweightMode::Nthr && p.eta_auto) {
    for (int g = 0; g < G; ++g) {
      int c = 0;
      for (int r = go[g]; r < go[g + 1]; ++r) c += p.layout.correct[r];
      const int n = go[g + 1] - go[g];
      eta[g] = 2.0 * std::fabs(0.5 - static_cast<double>(c) / n);
    }
  }
  int *d_ro = nullptr, *d_go = nullptr;
  uint8_t *d_correct = nullptr, *d_deg = nullptr;
  double* d_eta = nullptr;
  GK_TRY(scratch.upload(&d_ro, ro));
  GK_TRY(scratch.upload(&d_go, go));
  GK_TRY(scratch.upload(&d_correct, p.layout.correct));
  GK_TRY(scratch.upload(&d_deg, p.layout.degenerate));
  GK_TRY(scratch.upload(&d_eta, eta));
  const int threads = 256;
  thr_reweight_kernel<<<unsigned(ceil_div(T, threads)), threads, 0, env.stream>>>(
      p.token_advantages, p.thr, p.tau, d_ro, R, d_go, G, d_correct, d_deg, d_eta, int(p.mode), p.p,
      p.mask ? 1 : 0, T, p.out);
  GK_CHECK_LAUNCH("thr_reweight_kernel");
  return Status::Ok();
}

}  // namespace gk
