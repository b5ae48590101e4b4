// THR family (THR.md): tokenHiddenReward and thrReweight. Mirrors src/backends/cpu/thr.ts.
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
// Both products run on tensor cores: WMMA m16n16k8 with TF32 inputs (10-bit mantissa, inputs rounded
// by __float_to_tf32) and f32 accumulation. Blocks are 128 threads = 4 warps in a 2×2 arrangement over
// a 64×64 output tile, 32-deep k-steps staged through shared memory (≈ 34 KB); out-of-range rows and
// columns are zero-filled, so K_g and d need not be multiples of the tile.
//   thr_m_kernel: block owns a 64(v)×64(j) tile of M_g and reduces over the group's correct tokens;
//     the A operand w_u·(1[v = col_u] − q_u[v]) is formed while staging, never stored.
//   thr_scores_kernel: block owns 64 tokens of one group and loops over V*_g in 64-column tiles; each
//     U tile (reduced over d) is multiplied by g_t and summed along v into per-row registers in a
//     fixed order, so s_t is deterministic and needs no atomics or partial buffers.
//   Ragged groups share one launch: a host-built list maps blockIdx.x to (group, tile) through a
//   binary search over per-group tile offsets. M_g lives in scratch; groups are processed in batches
//   whose M fits m_budget_bytes (256 MiB by default).
// FLOPs: 2·K_g·d·(|P_g| + T_g) per group on tensor cores (+ 2·T_g·K_g in the epilogue).
// Bytes: hidden read once per v-tile pass of its rows (L2-resident for typical T_g), q read twice,
//   M_g written once and read ceil(T_g/64) times (L2), 4·T_g written.
// Numerics: TF32 rounding of q, h and M gives a relative error of order 1e-3 against the f64
//   reference (scaled by max |s|); sums are f32 in a fixed order; the same inputs give the same bits.
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
template <class T>
__global__ void __launch_bounds__(kThreads) thr_m_kernel(GroupList list, GroupGeom geo, const T* __restrict__ hidden,
                                                           float* __restrict__ M) {
  __shared__ __align__(128) float As[kK][kTile + kPad];  // A[p][v] = w_p (1[v = col_p] − q_p[v])
  __shared__ __align__(128) float Bs[kK][kTile + kPad];  // h_p[j]
  __shared__ __align__(128) float Cs[kTile][kTile + kPad];
  // (t_p − t0)·K: the token's q row, or −1 past the end. 64-bit: T_g·K_g exceeds 2^31 for large
  // groups (e.g. 64 responses × 4096 tokens with |V*| ≈ 10^4), and an int product would wrap.
  __shared__ long long s_row[kK];
  __shared__ int s_tok[kK];
  __shared__ int s_col[kK];
  __shared__ float s_w[kK];

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
  const int warp = threadIdx.x >> 5, wm = warp >> 1, wn = warp & 1;

  FragC acc[2][2];
#pragma unroll
  for (int i = 0; i < 2; ++i)
#pragma unroll
    for (int j = 0; j < 2; ++j) wmma::fill_fragment(acc[i][j], 0.f);

  for (int p0 = p_beg; p0 < p_end; p0 += kK) {
    if (threadIdx.x < kK) {
      const int pp = p0 + threadIdx.x;
      if (pp < p_end) {
        const int t = geo.ptok[pp];
        s_tok[threadIdx.x] = t;
        s_row[threadIdx.x] = static_cast<long long>(t - t0) * K;
        s_col[threadIdx.x] = geo.tokcol[t];
        s_w[threadIdx.x] = geo.pw[pp];
      } else {
        s_tok[threadIdx.x] = -1;
        s_row[threadIdx.x] = -1;
        s_col[threadIdx.x] = -1;
        s_w[threadIdx.x] = 0.f;
      }
    }
    __syncthreads();
    for (int e = threadIdx.x; e < kK * kTile; e += kThreads) {
      const int pp = e / kTile, c = e % kTile;
      const int v = v0 + c, j = j0 + c;
      const long long row = s_row[pp];
      float a = 0.f, b = 0.f;
      if (row >= 0) {
        if (v < K) a = s_w[pp] * ((v == s_col[pp] ? 1.f : 0.f) - q[row + v]);
        if (j < d) b = load_f32(hidden + int64_t(s_tok[pp]) * d + j);
      }
      As[pp][c] = a;
      Bs[pp][c] = b;
    }
    __syncthreads();
#pragma unroll
    for (int k8 = 0; k8 < kK; k8 += 8) {
      FragA_col fa[2];
      FragB_row fb[2];
#pragma unroll
      for (int i = 0; i < 2; ++i) {
        wmma::load_matrix_sync(fa[i], &As[k8][wm * 32 + i * 16], kTile + kPad);
        to_tf32(fa[i]);
        wmma::load_matrix_sync(fb[i], &Bs[k8][wn * 32 + i * 16], kTile + kPad);
        to_tf32(fb[i]);
      }
#pragma unroll
      for (int i = 0; i < 2; ++i)
#pragma unroll
        for (int j = 0; j < 2; ++j) wmma::mma_sync(acc[i][j], fa[i], fb[j], acc[i][j]);
    }
    __syncthreads();
  }
#pragma unroll
  for (int i = 0; i < 2; ++i)
#pragma unroll
    for (int j = 0; j < 2; ++j)
      wmma::store_matrix_sync(&Cs[wm * 32 + i * 16][wn * 32 + j * 16], acc[i][j], kTile + kPad, wmma::mem_row_major);
  __syncthreads();
  float* Mg = M + list.m_off[li];
  for (int e = threadIdx.x; e < kTile * kTile; e += kThreads) {
    const int r = e / kTile, c = e % kTile;
    const int v = v0 + r, j = j0 + c;
    if (v < K && j < d) Mg[int64_t(v) * d + j] = Cs[r][c];
  }
}

// ------------------------------------------------------------------------------------- scores s_t
template <class T>
__global__ void __launch_bounds__(kThreads) thr_scores_kernel(GroupList list, GroupGeom geo, const T* __restrict__ hidden,
                                                                const float* __restrict__ M, float* __restrict__ s) {
  __shared__ __align__(128) float Hs[kTile][kK + kPad];  // h_t[j]           (A, row-major)
  __shared__ __align__(128) float Ms[kTile][kK + kPad];  // M[v][j] = B(j, v) (B, column-major)
  __shared__ __align__(128) float Us[kTile][kTile + kPad];
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
    FragC acc[2][2];
#pragma unroll
    for (int i = 0; i < 2; ++i)
#pragma unroll
      for (int j = 0; j < 2; ++j) wmma::fill_fragment(acc[i][j], 0.f);
    for (int64_t j0 = 0; j0 < d; j0 += kK) {
      for (int e = threadIdx.x; e < kTile * kK; e += kThreads) {
        const int r = e / kK, c = e % kK;
        const int64_t j = j0 + c;
        const bool jok = j < d;
        Hs[r][c] = (jok && r < rows) ? load_f32(hidden + int64_t(tr0 + r) * d + j) : 0.f;
        Ms[r][c] = (jok && v0 + r < K) ? Mg[int64_t(v0 + r) * d + j] : 0.f;
      }
      __syncthreads();
#pragma unroll
      for (int k8 = 0; k8 < kK; k8 += 8) {
        FragA_row fa[2];
        FragB_col fb[2];
#pragma unroll
        for (int i = 0; i < 2; ++i) {
          wmma::load_matrix_sync(fa[i], &Hs[wm * 32 + i * 16][k8], kK + kPad);
          to_tf32(fa[i]);
          wmma::load_matrix_sync(fb[i], &Ms[wn * 32 + i * 16][k8], kK + kPad);
          to_tf32(fb[i]);
        }
#pragma unroll
        for (int i = 0; i < 2; ++i)
#pragma unroll
          for (int j = 0; j < 2; ++j) wmma::mma_sync(acc[i][j], fa[i], fb[j], acc[i][j]);
      }
      __syncthreads();
    }
#pragma unroll
    for (int i = 0; i < 2; ++i)
#pragma unroll
      for (int j = 0; j < 2; ++j)
        wmma::store_matrix_sync(&Us[wm * 32 + i * 16][wn * 32 + j * 16], acc[i][j], kTile + kPad,
                                wmma::mem_row_major);
    __syncthreads();
    if (er < rows) {  // s_t += Σ_v g_t[v]·U[t, v] over this thread's 32 columns, v ascending
      const float* qrow = q + int64_t(tr0 - t0 + er) * K;
      const int col = s_col[er];
      for (int c = eh * 32; c < eh * 32 + 32; ++c) {
        const int v = v0 + c;
        if (v >= K) break;
        const float gv = (v == col ? 1.f : 0.f) - qrow[v];
        acc_row = fmaf(gv, Us[er][c], acc_row);
      }
    }
    __syncthreads();
  }
  // Combine the two halves of each row in a fixed order: half 0 + half 1.
  float* part = &Us[0][0];
  if (eh == 1) part[er] = acc_row;
  __syncthreads();
  if (eh == 0 && er < rows) s[tr0 + er] = acc_row + part[er];
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
    GK_TRY(dispatch_float(p.hidden_dtype, "hidden", [&](auto tag) -> Status {
      using H = decltype(tag);
      thr_m_kernel<H><<<unsigned(m_tiles.back()), kThreads, 0, env.stream>>>(
          GroupList{d_gid, d_mt, d_moff, n}, geo, static_cast<const H*>(p.hidden), M);
      GK_CHECK_LAUNCH("thr_m_kernel");
      thr_scores_kernel<H><<<unsigned(s_tiles.back()), kThreads, 0, env.stream>>>(
          GroupList{d_gid, d_st, d_moff, n}, geo, static_cast<const H*>(p.hidden), M, s);
      GK_CHECK_LAUNCH("thr_scores_kernel");
      return Status::Ok();
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
