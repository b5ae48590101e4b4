// advantages family on the native cpu backend: advantages (every estimator of ESTIMATORS.md, both NaN
// policies), expandToTokens, whiten. Compiled once per instruction set like logprobs.cc (gk::cpu::avx2
// with -mavx2 -mfma -mf16c, gk::cpu::portable; native/cpu/kernels.h), with -ffp-contract=off
// (CMakeLists.txt): no multiply-add is fused, so both builds, and every path below, give the same bits.
// f64 throughout, following the float64 reference (src/backends/js/advantages.ts) with differences that
// change no rule:
// - A GROUP'S SUMS, the one definition every path computes. Pivot p = the group's first counted member
//   (0 if that is ±Inf or NaN), d_j = r_j − p (exact in f64). Member j (j = i − lo) goes to
//   lane j mod 4 of four f64 lanes; a lane adds its terms in member order from +0, the lanes are added
//   as (0 + 2) + (1 + 3): S = Σd, md = S·(1/n) (μ − p), then c_j = d_j − md and M2 = Σc² the same way
//   (two passes, never E[r²] − E[r]²); s = sqrt(M2·(1/(n − 1)) | M2·(1/n)), grpo's factor
//   k = 1/(D + eps); out_j = f32(k·c_j). Divisions by n are multiplications by 1/n (an f64 rounding
//   more, 1e-16: the divider is the across path's bottleneck). In f64 the pivot only guards rewards of
//   huge offset; the result is within 1e-6 of the reference's (far inside: both are f64 until the one
//   rounding to f32). A group's bits depend on its members alone: not on the other groups, N, the
//   thread count, or which of the two paths below ran it (test/cpu-native/advantages.test.ts).
// - ACROSS GROUPS (the common case: a batch of kBatch groups all of one size n, 2 ≤ n ≤ kAcrossMax,
//   estimator grpo, dr_grpo, rloo or gpg, one value per response): four groups at a time, one per f64
//   lane. Their members are loaded four at a time per group and transposed (4 × 4 f32), so member c + k
//   of the four groups is one vector and every sum, division and square root above is one vector
//   operation for four groups (no horizontal sums, no scalar division per group); the outputs are
//   transposed back and stored four at a time. d_j stays in an L1 buffer between the passes, so the
//   rewards are read once. The blocks of four groups go through each pass in turn (across_batch), so
//   the square roots and divisions of different blocks overlap. ~45 vector operations per group of 8.
// - ELSEWHERE (ragged batches, singletons, opo, grpo_passk, reinforce_pp_baseline's per-token values):
//   group by group, the same sums over `double q[4]` lanes; per batch of kBatch groups the sums first
//   (independent groups back to back, their latencies overlap), then every group's std and factor (the
//   divisions and square roots as one vectorizable loop), then the outputs.
// - nanRewards 'unscorable' (TRL; the reference compacts the batch): a NaN member is left out of its
//   group's n, pivot, sums (the k-th counted member in lane k mod 4: the bits of the group without its
//   NaN members), opo baseline and grpo_passk, and of the batch statistics (scale 'batch', gpg's
//   α = #counted / #counted nonzero, reinforce_pp_baseline's whitening over the counted responses'
//   tokens); its advantage (its tokens') is 0, and every advantage then goes through torch.nan_to_num
//   (NaN → 0, ±Inf → ±FLT_MAX). A group with no NaN member takes the across path as under 'propagate'.
// - Batch-wide sums (scale 'batch', gpg's α, reinforce_pp_baseline's whitening) are taken over fixed
//   blocks of kBlock elements, each summed in index order, the block sums then added in block order:
//   bitwise the same for any thread count (the blocks, not the threads, fix the order).
// - whiten: per block of kWhitenBlock elements, the valid count, Σx and M2_b about the block's own mean
//   (two passes over the block, the second from L1), in eight f64 lanes (element i to lane i mod 8,
//   the lanes added in a fixed tree); then M2 about the mean from the blocks in order, Σ_b M2_b +
//   n_b·(μ_b − μ)² (the two-pass variance's decomposition: every term ≥ 0, no cancellation). So x is
//   read twice from memory (statistics, output), not three times.
// Outputs of kStreamBytes or more (advantages on the across path, whiten, expandToTokens always) go out by
// non-temporal stores on x86-64: no read-for-ownership of lines nobody reads here again.
// Work items: 2048 groups (advantages), 4096 responses (expandToTokens: through an L1 staging buffer,
// then non-temporal stores on x86-64), kBlock elements (batch sums), kWhitenBlock elements (whiten).
// Bytes: advantages ~4R read (groups fit in cache: read once from memory) + 4R written + 9G; FLOPs ~6R.
// expandToTokens 4R read + 4·T written; whiten 8N read (+ 2N of mask) + 4N written.
#include "kernels.h"
#include "simd.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#if defined(__SSE2__)
#include <emmintrin.h>
#endif

#if defined(__GNUC__) && !defined(__clang__)
// The across-groups vectors are 32 bytes wide; in the baseline build GCC notes that passing them to a
// function differs from the AVX ABI. Every such function here has internal linkage and is inlined.
#pragma GCC diagnostic ignored "-Wpsabi"
#endif

namespace gk {
namespace cpu {
namespace GK_CPU_ISA {
namespace {

constexpr int64_t kBlock = 1 << 16;        // elements per block of a batch-wide sum
constexpr int64_t kGroupsPerItem = 2048;   // groups per advantages work item
constexpr int64_t kBatch = 128;            // groups per batch of an advantages item
constexpr int64_t kAcrossMax = 64;         // the largest group size of the across-groups path
constexpr int64_t kExpandResponses = 4096;  // responses per expandToTokens work item
constexpr int64_t kStreamBytes = int64_t(4) << 20;  // outputs from this size go out by non-temporal stores
constexpr double kWhitenVarEps = 1e-8;
constexpr float kF32Max = 3.40282346638528859812e+38f;

inline int64_t min64(int64_t a, int64_t b) { return a < b ? a : b; }
inline bool finite(double x) { return x - x == 0.0; }  // false for ±Inf and NaN

// v where k, else +0 (by bits: a ?: on floating-point values stays a branch under the default
// -ftrapping-math, and a random condition then costs a mispredicted branch per element).
inline double keep(double v, bool k) {
  uint64_t b;
  memcpy(&b, &v, 8);
  b &= uint64_t(0) - uint64_t(k);
  memcpy(&v, &b, 8);
  return v;
}

// torch.nan_to_num on an f32 advantage: NaN → 0, ±Inf → ±FLT_MAX.
inline float nan_to_num(float x) {
  if (x != x) return 0.f;
  return x > kF32Max ? kF32Max : x < -kF32Max ? -kF32Max : x;
}

// Runs f(i, worker) for i in [0, n) over the pool.
template <class F>
void parallel(Pool* pool, int64_t n, F& f) {
  pool_run(pool, n, [](void* c, int64_t i, int w) { (*static_cast<F*>(c))(i, w); }, &f);
}

// Σ_{i<n} term(i) over fixed blocks, each in index order, then the block sums in order; NaN when the
// block sums' memory cannot be had (*ok = false).
template <class Term>
double blocked_sum(Pool* pool, int64_t n, Term term, bool* ok) {
  const int64_t nb = (n + kBlock - 1) / kBlock;
  double* part = static_cast<double*>(malloc(size_t(nb > 0 ? nb : 1) * sizeof(double)));
  if (!part) {
    *ok = false;
    return __builtin_nan("");
  }
  auto body = [&](int64_t b, int) {
    const int64_t i1 = min64(n, (b + 1) * kBlock);
    double s = 0.0;
    for (int64_t i = b * kBlock; i < i1; ++i) s += term(i);
    part[b] = s;
  };
  parallel(pool, nb, body);
  double total = 0.0;
  for (int64_t b = 0; b < nb; ++b) total += part[b];
  free(part);
  return total;
}

// rsqrt of the whitening variance (src/backends/js/advantages.ts, whitenAffine): m2 = Σ c² over the n
// valid elements, denom = n + maskEps; Bessel's n/(n − 1) for 'sample' (n = 1: NaN); 1e-8 added or
// clamped below.
double whiten_rstd(bool sample, bool clamp, double n, double m2, double denom) {
  double variance = m2 / denom;
  if (sample) variance = n == 1 ? __builtin_nan("") : variance * (n / (n - 1));
  const double v = clamp ? (variance < kWhitenVarEps ? kWhitenVarEps : variance) : variance + kWhitenVarEps;
  return 1.0 / sqrt(v);
}

// ------------------------------------------------------------------------------------------ vectors
// Four f64 lanes (GCC/Clang vector extensions: one ymm register in the AVX2 build, two xmm registers in
// the baseline one), four f32 lanes, and lane masks (−1 or 0). Other compilers run the scalar loops.
#if defined(__GNUC__) || defined(__clang__)
#define GK_ADV_VEC 1
typedef double D4 __attribute__((vector_size(32)));
typedef float F4 __attribute__((vector_size(16)));
typedef int64_t M4 __attribute__((vector_size(32)));

inline D4 splat(double x) { return D4{x, x, x, x}; }
inline D4 widen(F4 x) {
#if GK_SIMD_AVX2
  return D4(_mm256_cvtps_pd(__m128(x)));  // one instruction (the generic conversion takes three)
#else
  return __builtin_convertvector(x, D4);
#endif
}
inline F4 narrow(D4 x) {  // f32 of each lane, rounded to nearest
#if GK_SIMD_AVX2
  return F4(_mm256_cvtpd_ps(__m256d(x)));
#else
  return __builtin_convertvector(x, F4);
#endif
}
inline D4 vsqrt(D4 x) {
#if GK_SIMD_AVX2
  return D4(_mm256_sqrt_pd(__m256d(x)));
#else
  return D4{sqrt(x[0]), sqrt(x[1]), sqrt(x[2]), sqrt(x[3])};
#endif
}
inline D4 keep4(D4 x, M4 m) { return D4(M4(x) & m); }  // x where m, else +0
// nan_to_num in f64, before the rounding to f32: the same f32 as nan_to_num(f32(v)) (a value beyond
// FLT_MAX rounds to FLT_MAX or ±Inf, which nan_to_num makes FLT_MAX).
inline D4 nan_to_num4(D4 v) {
  v = keep4(v, M4(v == v));
  const D4 hi = splat(double(kF32Max)), lo = splat(-double(kF32Max));
  const M4 above = M4(v > hi), below = M4(v < lo);
  return D4((M4(v) & ~(above | below)) | (M4(hi) & above) | (M4(lo) & below));
}
inline F4 loadf4(const float* p) {
  F4 x;
  memcpy(&x, p, 16);
  return x;
}
inline void storef4(float* p, F4 x) { memcpy(p, &x, 16); }
typedef uint8_t U4 __attribute__((vector_size(4)));
// Lanes whose mask byte is nonzero.
inline M4 valid4(const uint8_t* m) {
  U4 b;
  memcpy(&b, m, 4);
  return M4(__builtin_convertvector(b, M4) != M4{0, 0, 0, 0});
}
#else
#define GK_ADV_VEC 0
#endif

// ------------------------------------------------------------------------------------------ whiten
// Blocks of kWhitenBlock elements (32 KiB of f32: a block's second pass reads it from L1).
constexpr int64_t kWhitenBlock = 8192;
struct BlockStats {
  double n, sum, m2;  // valid count, Σx, Σ(x − μ_b)² with μ_b = Σx / n (0 when n = 0)
};

// Σ (x_i − c) (kSquare: Σ (x_i − c)²) over the valid elements of [i0, i1) (x − 0 = x), in eight f64
// lanes: element i to lane (i − i0) mod 8, a lane's terms in order from +0, the lanes added as
// ((0 + 4) + (2 + 6)) + ((1 + 5) + (3 + 7)). Eight chains instead of one (dependent f64 additions run at
// one per 4 cycles), as two vectors (lanes 0-3, 4-7); invalid elements are masked to +0 by bits (a ?: on
// floating-point values stays a branch under the default -ftrapping-math, and a random mask then costs a
// mispredicted branch per element).
template <bool kSquare>
double valid_sum(const float* x, const uint8_t* mask, int64_t i0, int64_t i1, double c) {
  double lane[8] = {0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0};
  int64_t i = i0;
#if GK_ADV_VEC
  const D4 vc = splat(c);
  D4 a0 = splat(0.0), a1 = splat(0.0);
  for (; i + 8 <= i1; i += 8) {
    D4 v0 = widen(loadf4(x + i)) - vc, v1 = widen(loadf4(x + i + 4)) - vc;
    if (kSquare) {
      v0 = v0 * v0;
      v1 = v1 * v1;
    }
    if (mask) {
      v0 = keep4(v0, valid4(mask + i));
      v1 = keep4(v1, valid4(mask + i + 4));
    }
    a0 += v0;
    a1 += v1;
  }
  for (int k = 0; k < 4; ++k) lane[k] = a0[k], lane[k + 4] = a1[k];
#endif
  for (int k = 0; i < i1; ++i, k = (k + 1) & 7) {
    const double v = double(x[i]) - c;
    lane[k] += mask && mask[i] == 0 ? 0.0 : kSquare ? v * v : v;
  }
  return ((lane[0] + lane[4]) + (lane[2] + lane[6])) + ((lane[1] + lane[5]) + (lane[3] + lane[7]));
}

// One block's statistics: the valid count and Σx, then M2 about the block's own mean (a second pass,
// from L1). Invalid elements are never used (masked to +0: a NaN outside the mask does not leak in).
BlockStats block_stats(const float* x, const uint8_t* mask, int64_t i0, int64_t i1) {
  BlockStats s{0.0, 0.0, 0.0};
  if (mask == nullptr) {
    s.n = double(i1 - i0);
  } else {
    int64_t count = 0;
    for (int64_t i = i0; i < i1; ++i) count += mask[i] != 0;
    s.n = double(count);
    if (count == 0) return s;
  }
  s.sum = valid_sum<false>(x, mask, i0, i1, 0.0);
  s.m2 = valid_sum<true>(x, mask, i0, i1, s.sum / s.n);
  return s;
}

// out[i] = (x_i − mean)·rstd + shift for valid i, else +0, over [i0, i1). kStream: eight at a time by
// non-temporal stores (out + i0 16-byte aligned; the caller fences).
template <bool kStream>
void whiten_block(const float* x, const uint8_t* mask, float* out, int64_t i0, int64_t i1, double mean,
                  double rstd, double shift) {
  int64_t i = i0;
#if GK_ADV_VEC
  const D4 vm = splat(mean), vr = splat(rstd), vs = splat(shift);
  for (; i + 8 <= i1; i += 8) {
    D4 v0 = (widen(loadf4(x + i)) - vm) * vr + vs, v1 = (widen(loadf4(x + i + 4)) - vm) * vr + vs;
    if (mask) {
      v0 = keep4(v0, valid4(mask + i));
      v1 = keep4(v1, valid4(mask + i + 4));
    }
#if defined(__SSE2__)
    if (kStream) {
      _mm_stream_ps(out + i, __m128(narrow(v0)));
      _mm_stream_ps(out + i + 4, __m128(narrow(v1)));
      continue;
    }
#endif
    storef4(out + i, narrow(v0));
    storef4(out + i + 4, narrow(v1));
  }
#endif
  for (; i < i1; ++i) out[i] = mask && mask[i] == 0 ? 0.f : float((double(x[i]) - mean) * rstd + shift);
}

// ------------------------------------------------------------------------------ a group's sums
inline double quad_total(const double* q) { return (q[0] + q[2]) + (q[1] + q[3]); }

// A group's statistics (the header's definition): n counted members, the first of them, the pivot, μ − p
// and M2. kSkip ('unscorable'): NaN members are not counted, and the k-th counted member takes lane
// k mod 4, so the group's bits are those of the group without its NaN members (the reference's
// compaction, bit for bit).
struct GroupStats {
  int64_t n, first;
  double piv, md, m2;
};
template <bool kSkip>
GroupStats group_stats(const float* r, int64_t lo, int64_t hi) {
  GroupStats st{hi - lo, lo, 0.0, 0.0, 0.0};
  if (kSkip) {
    st.n = 0;
    st.first = hi;
    for (int64_t i = lo; i < hi; ++i) {
      const bool c = r[i] == r[i];
      if (c && st.first == hi) st.first = i;
      st.n += c;
    }
  }
  if (st.n == 0) return st;
  const double first = r[st.first];
  const double piv = finite(first) ? first : 0.0;
  st.piv = piv;
  double q[4] = {0.0, 0.0, 0.0, 0.0};
  if (kSkip) {
    int64_t k = 0;
    for (int64_t i = lo; i < hi; ++i)
      if (r[i] == r[i]) q[k++ & 3] += double(r[i]) - piv;
    st.md = quad_total(q) * (1.0 / double(st.n));
    q[0] = q[1] = q[2] = q[3] = 0.0;
    k = 0;
    for (int64_t i = lo; i < hi; ++i)
      if (r[i] == r[i]) {
        const double c = (double(r[i]) - piv) - st.md;
        q[k++ & 3] += c * c;
      }
    st.m2 = quad_total(q);
    return st;
  }
  int64_t i = lo;
  for (; i + 4 <= hi; i += 4)
    for (int k = 0; k < 4; ++k) q[k] += double(r[i + k]) - piv;
  for (int k = 0; i < hi; ++i, ++k) q[k] += double(r[i]) - piv;
  const double md = quad_total(q) * (1.0 / double(st.n));
  st.md = md;
  q[0] = q[1] = q[2] = q[3] = 0.0;
  for (i = lo; i + 4 <= hi; i += 4)
    for (int k = 0; k < 4; ++k) {
      const double c = (double(r[i + k]) - piv) - md;
      q[k] += c * c;
    }
  for (int k = 0; i < hi; ++i, ++k) {
    const double c = (double(r[i]) - piv) - md;
    q[k] += c * c;
  }
  st.m2 = quad_total(q);
  return st;
}

#if GK_ADV_VEC
// ------------------------------------------------------------------------------ across groups
// t[k] = {rows[0][c + k], …, rows[3][c + k]} for k < 4 (a 4 × 4 transpose), and back.
inline void gather_members(const float* const rows[4], int64_t c, F4 t[4]) {
#if defined(__SSE2__)
  __m128 a = _mm_loadu_ps(rows[0] + c), b = _mm_loadu_ps(rows[1] + c), d = _mm_loadu_ps(rows[2] + c),
         e = _mm_loadu_ps(rows[3] + c);
  _MM_TRANSPOSE4_PS(a, b, d, e);
  t[0] = F4(a), t[1] = F4(b), t[2] = F4(d), t[3] = F4(e);
#else
  for (int k = 0; k < 4; ++k) t[k] = F4{rows[0][c + k], rows[1][c + k], rows[2][c + k], rows[3][c + k]};
#endif
}
// kStream: by non-temporal stores (rows[i] + c 16-byte aligned), as expand_range's.
template <bool kStream>
inline void scatter_members(float* const rows[4], int64_t c, const F4 t[4], int count) {
#if defined(__SSE2__)
  __m128 a = __m128(t[0]), b = __m128(t[1]), d = __m128(t[2]), e = __m128(t[3]);
  _MM_TRANSPOSE4_PS(a, b, d, e);
  const __m128 v[4] = {a, b, d, e};
  for (int i = 0; i < count; ++i) {
    if (kStream) _mm_stream_ps(rows[i] + c, v[i]);
    else _mm_storeu_ps(rows[i] + c, v[i]);
  }
#else
  for (int i = 0; i < count; ++i)
    for (int k = 0; k < 4; ++k) rows[i][c + k] = t[k][i];
#endif
}

// What the across path needs besides the rewards.
struct Across {
  int64_t n;        // members per group
  double inv_n;     // 1/n
  double inv_var;   // 1/(n − 1) ('sample') or 1/n
  bool divides;     // k = 1/(D + eps) (grpo with scale 'group' or 'batch'), else k = fixed_k
  bool batch;       // D = batch_std (and the std output), else each group's s
  double eps, batch_std, fixed_k;
};

// Blocks of four groups per chunk: their d_j (n vectors each) stay in a 16 KiB buffer in L1.
constexpr int64_t kAcrossBuffer = 512;  // D4 vectors
constexpr int64_t kMaxBlocks = kBatch / 4;

// Groups g0 .. g0 + nb − 1 (nb ≤ kBatch, all of x.n members, the first starting at `first`) by the
// header's definition, four per block, one group per lane (a last block of fewer groups repeats its last
// group in the spare lanes and stores only its own). Per chunk of blocks, in stages whose iterations are
// independent (the divisions and square roots of several blocks then overlap; in one block they are a
// chain of ~60 cycles): the sums and μ − p, then M2, s and k, then the outputs. Returns the blocks
// (bit b: groups g0 + 4b …) it left to the caller: under x.skip, those with a NaN member.
template <bool kSkip, bool kStream, int kN>
uint32_t across_batch(const Across& x, const float* r, int64_t first, int64_t g0, int64_t nb,
                      const AdvantagesParams& a) {
  const int64_t n = kN > 0 ? kN : x.n;  // kN: the loops unrolled for the commonest size
  const int64_t blocks = (nb + 3) / 4;
  const int64_t per_chunk = kAcrossBuffer / n < kMaxBlocks ? kAcrossBuffer / n : kMaxBlocks;
  D4 d[kAcrossBuffer];  // d_j = r_j − p of member j, four groups per vector, block after block
  D4 p[kMaxBlocks], md[kMaxBlocks], k[kMaxBlocks], sd[kMaxBlocks];
  M4 live[kMaxBlocks];
  uint32_t left = 0;
  for (int64_t b0 = 0; b0 < blocks; b0 += per_chunk) {
    const int64_t b1 = b0 + per_chunk < blocks ? b0 + per_chunk : blocks;
    // Stage 1: d_j, Σd in the four lanes of j mod 4, md = Σd/n.
    for (int64_t b = b0; b < b1; ++b) {
      const int count = int(min64(4, nb - 4 * b));
      const float* rows[4];
      for (int i = 0; i < 4; ++i) rows[i] = r + first + (4 * b + (i < count ? i : count - 1)) * n;
      D4* db = d + (b - b0) * n;
      const D4 piv = D4{rows[0][0], rows[1][0], rows[2][0], rows[3][0]};
      const D4 pb = keep4(piv, M4((piv - piv) == splat(0.0)));  // 0 where r_lo is ±Inf or NaN
      D4 q[4] = {splat(0.0), splat(0.0), splat(0.0), splat(0.0)};
      M4 nan = M4{0, 0, 0, 0};
      int64_t c = 0;
      for (; c + 4 <= n; c += 4) {
        F4 t[4];
        gather_members(rows, c, t);
        for (int j = 0; j < 4; ++j) {
          const D4 w = widen(t[j]);
          if (kSkip) nan |= M4(w != w);
          db[c + j] = w - pb;
          q[j] += db[c + j];
        }
      }
      for (int j = 0; c + j < n; ++j) {
        const D4 w = widen(F4{rows[0][c + j], rows[1][c + j], rows[2][c + j], rows[3][c + j]});
        if (kSkip) nan |= M4(w != w);
        db[c + j] = w - pb;
        q[j] += db[c + j];
      }
      if (kSkip && (nan[0] | nan[1] | nan[2] | nan[3])) left |= uint32_t(1) << b;
      p[b] = pb;
      md[b] = ((q[0] + q[2]) + (q[1] + q[3])) * splat(x.inv_n);
    }
    // Stage 2: M2 in the four lanes, s = sqrt(M2/(n − 1) | M2/n), k; zero variance: every advantage +0.
    for (int64_t b = b0; b < b1; ++b) {
      const D4* db = d + (b - b0) * n;
      D4 q[4] = {splat(0.0), splat(0.0), splat(0.0), splat(0.0)};
      int64_t j = 0;
      for (; j + 4 <= n; j += 4)
        for (int i = 0; i < 4; ++i) {
          const D4 cj = db[j + i] - md[b];
          q[i] += cj * cj;
        }
      for (int i = 0; j < n; ++j, ++i) {
        const D4 cj = db[j] - md[b];
        q[i] += cj * cj;
      }
      const D4 m2 = (q[0] + q[2]) + (q[1] + q[3]);
      const D4 s = vsqrt(m2 * splat(x.inv_var));
      live[b] = M4(m2 != splat(0.0));
      k[b] = x.divides ? splat(1.0) / ((x.batch ? splat(x.batch_std) : s) + splat(x.eps)) : splat(x.fixed_k);
      // std: D (scale 'batch'), else s (0 for zero variance).
      sd[b] = x.batch && x.divides ? splat(x.batch_std) : keep4(s, live[b]);
    }
    // Stage 3: the outputs, out_j = f32(k·(d_j − md)); mean μ = p + md, std, degenerate.
    for (int64_t b = b0; b < b1; ++b) {
      if (left >> b & 1) continue;
      const int count = int(min64(4, nb - 4 * b));
      float* outs[4];
      for (int i = 0; i < 4; ++i) outs[i] = a.advantages + first + (4 * b + (i < count ? i : count - 1)) * n;
      const D4* db = d + (b - b0) * n;
      auto value = [&](int64_t j) {
        const D4 v = keep4(k[b] * (db[j] - md[b]), live[b]);
        return narrow(kSkip ? nan_to_num4(v) : v);
      };
      int64_t c = 0;
      for (; c + 4 <= n; c += 4) {
        F4 t[4];
        for (int j = 0; j < 4; ++j) t[j] = value(c + j);
        scatter_members<kStream>(outs, c, t, count);
      }
      for (; c < n; ++c) {
        const F4 t = value(c);
        for (int i = 0; i < count; ++i) outs[i][c] = t[i];
      }
      const F4 mean = narrow(p[b] + md[b]), sd32 = narrow(sd[b]);
      const int64_t g = g0 + 4 * b;
      if (count == 4) {
        storef4(a.mean + g, mean);
        storef4(a.std + g, sd32);
      } else {
        for (int i = 0; i < count; ++i) a.mean[g + i] = mean[i], a.std[g + i] = sd32[i];
      }
      for (int i = 0; i < count; ++i) a.degenerate[g + i] = live[b][i] ? 0 : 1;
    }
  }
  return left;
}
#endif

}  // namespace

Report advantages(const AdvantagesParams& a, Pool* pool) {
  const float* r = a.rewards;
  const int32_t* go = a.group_offsets;
  const int32_t* ro = a.response_offsets;
  const int64_t R = a.responses, G = a.groups;
  const auto est = static_cast<Estimator>(a.estimator);
  const bool per_token = est == Estimator::ReinforcePpBaseline;
  const bool divides = est == Estimator::Grpo || est == Estimator::GrpoPassk;
  const bool sample = a.std_kind == int(StdKind::Sample);
  const auto scale = static_cast<ScaleKind>(a.scale);
  const auto singleton = static_cast<Singleton>(a.singleton);
  const bool skip = a.nan_rewards == int(NanRewards::Unscorable);
  // Whether response i is counted (NaN rewards are not, under 'unscorable').
  auto counted = [&](int64_t i) { return !skip || r[i] == r[i]; };
  bool ok = true;

  double batch_std = __builtin_nan("");
  if (divides && scale == ScaleKind::Batch) {
    const double n = skip ? blocked_sum(pool, R, [&](int64_t i) { return counted(i) ? 1.0 : 0.0; }, &ok) : double(R);
    const double m = blocked_sum(pool, R, [&](int64_t i) { return keep(double(r[i]), counted(i)); }, &ok) / n;
    const double m2 = blocked_sum(
        pool, R,
        [&](int64_t i) {
          const double c = double(r[i]) - m;
          return keep(c * c, counted(i));
        },
        &ok);
    batch_std = sqrt(sample ? m2 / (n - 1) : m2 / n);
  }
  double alpha = 1.0;
  if (est == Estimator::Gpg) {
    const double n = skip ? blocked_sum(pool, R, [&](int64_t i) { return counted(i) ? 1.0 : 0.0; }, &ok) : double(R);
    const double nonzero =
        blocked_sum(pool, R, [&](int64_t i) { return r[i] != 0.f && counted(i) ? 1.0 : 0.0; }, &ok);
    alpha = n / (nonzero > 1.0 ? nonzero : 1.0);
  }
  // reinforce_pp_baseline's group-level values before the whitening (NaN: not counted).
  double* values = per_token ? static_cast<double*>(malloc(size_t(R > 0 ? R : 1) * sizeof(double))) : nullptr;
  if (!ok || (per_token && !values)) {
    free(values);
    return Report{kNoMemory, 0, 0};
  }
  // An output value, rounded to f32 once (and nan_to_num'd under 'unscorable'), or kept in f64 (per token).
  auto write = [&](int64_t i, double v) {
    if (per_token) values[i] = v;
    else a.advantages[i] = skip ? nan_to_num(float(v)) : float(v);
  };

  // Group g's outputs from its statistics and its std s and grpo's factor k. Its members that are not
  // counted get 0 (per token: NaN, left out of the whitening, their tokens 0).
  auto group_outputs = [&](int64_t g, const GroupStats& st, double s, double k) {
    const int64_t lo = go[g], hi = go[g + 1], n = st.n;
    const double piv = st.piv;
    const double uncounted = per_token ? __builtin_nan("") : 0.0;
    // Every counted member's value k·((r_i − piv) − shift), the others' `uncounted`.
    auto write_all = [&](double shift, double kk) {
      for (int64_t i = lo; i < hi; ++i) write(i, counted(i) ? kk * ((double(r[i]) - piv) - shift) : uncounted);
    };
    auto write_zero = [&]() {
      for (int64_t i = lo; i < hi; ++i) write(i, counted(i) ? 0.0 : uncounted);
    };
    if (n == 0) {
      a.mean[g] = 0.f;
      a.std[g] = 0.f;
      a.degenerate[g] = 1;
      write_zero();
      return;
    }
    double mu = piv + st.md;
    const bool single = n == 1;
    const bool zero_var = !single && st.m2 == 0.0;
    bool deg = single || zero_var;
    if (zero_var || (single && singleton == Singleton::Zero)) {
      a.mean[g] = float(mu);
      a.std[g] = float(divides && scale == ScaleKind::Batch ? batch_std : 0.0);
      a.degenerate[g] = 1;
      write_zero();
      return;
    }
    double shift = st.md;  // c_i = (r_i − piv) − shift
    const bool mean0 = single && singleton == Singleton::Mean0;
    if (mean0) {
      mu = 0.0;
      s = 1.0;
      shift = -piv;  // c = r
    }
    const double divisor = scale == ScaleKind::Batch ? batch_std : s;
    switch (est) {
      case Estimator::Grpo:
        // k = 1/(divisor + eps) from the batch step, unless a 'mean0' singleton's s := 1 changed it.
        write_all(shift, mean0 && scale != ScaleKind::None ? 1.0 / (divisor + a.eps) : k);
        break;
      case Estimator::DrGrpo:
      case Estimator::ReinforcePpBaseline:
        write_all(shift, 1.0);
        break;
      case Estimator::Rloo:
        if (mean0) write_zero(), write(st.first, r[st.first]);
        else write_all(shift, double(n) / double(n - 1));
        break;
      case Estimator::Gpg:
        write_all(shift, alpha);
        break;
      case Estimator::Opo: {
        if (!mean0) {
          double wsum = 0.0, lsum = 0.0;
          for (int64_t i = lo; i < hi; ++i) {
            if (!counted(i)) continue;
            const double L = double(ro[i + 1] - ro[i]);
            wsum += L * (double(r[i]) - piv);
            lsum += L;
          }
          const double bd = wsum / lsum;  // b − p
          mu = piv + bd;
          shift = bd;
          if (lsum == 0.0) deg = true;
        }
        write_all(shift, 1.0);
        break;
      }
      case Estimator::GrpoPassk: {
        // n ≥ 2 (the API rejects smaller groups; fewer counted members under 'unscorable' give 0).
        if (n < 2) {
          write_zero();
          break;
        }
        int64_t best = st.first;
        bool has_nan = false;
        for (int64_t i = lo; i < hi; ++i) {
          if (!counted(i)) continue;
          if (r[i] != r[i]) has_nan = true;
          else if (r[i] > r[best]) best = i;
        }
        double second = -__builtin_inf();
        for (int64_t i = lo; i < hi; ++i)
          if (i != best && counted(i) && r[i] > second) second = r[i];
        const double gap = double(r[best]) - second;
        const double value = scale == ScaleKind::None ? gap : gap / (divisor + a.eps);
        for (int64_t i = lo; i < hi; ++i)
          write(i, !counted(i) ? uncounted : has_nan ? __builtin_nan("") : i == best ? value : 0.0);
        break;
      }
    }
    a.mean[g] = float(mu);
    a.std[g] = float(divides && scale == ScaleKind::Batch ? batch_std : s);
    a.degenerate[g] = deg ? 1 : 0;
  };

  // Groups [b0, b0 + nb) one by one, in three steps: the sums of every group (independent groups back
  // to back, so their latencies overlap), then every group's std and grpo's factor (the divisions and
  // square roots as one vectorizable loop), then the outputs.
  const bool grpo_divides = est == Estimator::Grpo && scale != ScaleKind::None;
  auto one_by_one = [&](int64_t b0, int64_t nb) {
    GroupStats st[kBatch];
    double s_b[kBatch], k_b[kBatch];
    for (int64_t j = 0; j < nb; ++j)
      st[j] = skip ? group_stats<true>(r, go[b0 + j], go[b0 + j + 1]) : group_stats<false>(r, go[b0 + j], go[b0 + j + 1]);
    for (int64_t j = 0; j < nb; ++j) {
      const double n = double(st[j].n);
      s_b[j] = sqrt(st[j].m2 * (1.0 / (sample ? n - 1.0 : n)));
      k_b[j] = 1.0 / ((scale == ScaleKind::Batch ? batch_std : s_b[j]) + a.eps);
    }
    for (int64_t j = 0; j < nb; ++j) group_outputs(b0 + j, st[j], s_b[j], grpo_divides ? k_b[j] : 1.0);
  };

#if GK_ADV_VEC
  const bool across_estimator =
      est == Estimator::Grpo || est == Estimator::DrGrpo || est == Estimator::Rloo || est == Estimator::Gpg;
  Across x{0, 0.0, 0.0, grpo_divides, scale == ScaleKind::Batch, a.eps, batch_std, 1.0};
#endif
  // Large outputs go out by non-temporal stores (no read-for-ownership of their lines), small ones stay
  // in cache for whoever reads them next.
  const bool stream = R * int64_t(sizeof(float)) >= kStreamBytes;
  auto body = [&](int64_t item, int) {
    const int64_t g1 = min64(G, (item + 1) * kGroupsPerItem);
    for (int64_t b0 = item * kGroupsPerItem; b0 < g1; b0 += kBatch) {
      const int64_t nb = min64(kBatch, g1 - b0);
#if GK_ADV_VEC
      // Every group of the batch of one size n (2 ≤ n ≤ kAcrossMax): four at a time across the lanes.
      const int64_t n = go[b0 + 1] - go[b0];
      bool uniform = across_estimator && n >= 2 && n <= kAcrossMax;
      for (int64_t j = 1; uniform && j <= nb; ++j) uniform = go[b0 + j] - go[b0 + j - 1] == n;
      if (uniform) {
        Across xn = x;
        xn.n = n;
        xn.inv_n = 1.0 / double(n);
        xn.inv_var = 1.0 / double(sample ? n - 1 : n);
        xn.fixed_k = est == Estimator::Rloo ? double(n) / double(n - 1) : est == Estimator::Gpg ? alpha : 1.0;
        // Streaming needs every row 16-byte aligned: n a multiple of 4 from an aligned first row.
        const bool nt = stream && n % 4 == 0 && (reinterpret_cast<uintptr_t>(a.advantages + go[b0]) & 15) == 0;
        const uint32_t left = skip ? nt ? across_batch<true, true, 0>(xn, r, go[b0], b0, nb, a)
                                        : across_batch<true, false, 0>(xn, r, go[b0], b0, nb, a)
                              : nt ? (n == 8 ? across_batch<false, true, 8>(xn, r, go[b0], b0, nb, a) : across_batch<false, true, 0>(xn, r, go[b0], b0, nb, a))
                                   : (n == 8 ? across_batch<false, false, 8>(xn, r, go[b0], b0, nb, a) : across_batch<false, false, 0>(xn, r, go[b0], b0, nb, a));
        for (int64_t b = 0; 4 * b < nb; ++b)
          if (left >> b & 1) one_by_one(b0 + 4 * b, min64(4, nb - 4 * b));
        continue;
      }
#endif
      one_by_one(b0, nb);
    }
#if defined(__SSE2__)
    if (stream) _mm_sfence();  // the item's non-temporal stores, ordered before its completion
#endif
  };
  parallel(pool, (G + kGroupsPerItem - 1) / kGroupsPerItem, body);

  if (per_token && a.tokens > 0) {
    // Whiten expand(values) over the counted responses' tokens without forming it: response i holds L_i
    // copies of v_i. Uncounted responses (NaN values) have weight 0 and tokens 0. Deviations from a
    // pivot p, the value of the first counted response with tokens (0 if ±Inf; whitenAffine in
    // src/backends/js/advantages.ts): mean = p + shift, so equal values whiten to exactly 0.
    auto len = [&](int64_t i) { return double(ro[i + 1] - ro[i]); };
    const double T = skip ? blocked_sum(pool, R, [&](int64_t i) { return keep(len(i), counted(i)); }, &ok)
                          : double(a.tokens);
    int64_t first = 0;
    while (first < R && !(counted(first) && ro[first + 1] > ro[first])) ++first;
    const double p = first < R && finite(values[first]) ? values[first] : 0.0;
    const double sum =
        blocked_sum(pool, R, [&](int64_t i) { return keep(len(i) * (values[i] - p), counted(i)); }, &ok);
    const double denom = T + a.whiten_mask_eps;
    const double shift = (sum - p * a.whiten_mask_eps) / denom;
    const double m2 = blocked_sum(
        pool, R,
        [&](int64_t i) {
          const double c = (values[i] - p) - shift;
          return keep(len(i) * c * c, counted(i));
        },
        &ok);
    const double rstd = whiten_rstd(a.whiten_sample != 0, a.whiten_clamp != 0, T, m2, denom);
    auto fill = [&](int64_t item, int) {
      const int64_t i1 = min64(R, (item + 1) * kExpandResponses);
      for (int64_t i = item * kExpandResponses; i < i1; ++i) {
        const double w = ((values[i] - p) - shift) * rstd;
        const float v = !counted(i) || T == 0 ? 0.f : skip ? nan_to_num(float(w)) : float(w);
        for (int64_t t = ro[i]; t < ro[i + 1]; ++t) a.advantages[t] = v;
      }
    };
    parallel(pool, (R + kExpandResponses - 1) / kExpandResponses, fill);
  }
  free(values);
  return ok ? Report{kOk, 0, 0} : Report{kNoMemory, 0, 0};
}

// out[t] = value of t's response for the tokens of responses [i0, i1). The output is a write-only
// stream (64 MB for 1M responses × 16 tokens), so on x86-64 it goes out by non-temporal 16-byte stores
// (no read-for-ownership of its lines: 23 against 12-15 GB/s of plain stores per core, measured), which
// must be 16-byte aligned while responses start anywhere. So the tokens are first written into a 4 KiB
// staging buffer in L1, response by response (the value broadcast, stored 4 at a time, the last vector
// running past the response's end into what the next response overwrites), then streamed out aligned.
void expand_range(const ExpandParams& p, int64_t i0, int64_t i1) {
  const int32_t* ro = p.response_offsets;
  int64_t t = ro[i0];
  const int64_t end = ro[i1];
  int64_t i = i0;  // the response of token t (empty ones skipped)
#if defined(__SSE2__)
  for (; t < end && (reinterpret_cast<uintptr_t>(p.out + t) & 15) != 0; ++t) {
    while (ro[i + 1] <= t) ++i;
    p.out[t] = p.values[i];
  }
  constexpr int64_t kStage = 1024;
  alignas(64) float stage[kStage + 32];
  while (t < end) {
    const int64_t n = end - t < kStage ? end - t : kStage;
    for (int64_t c = t; c < t + n;) {
      while (ro[i + 1] <= c) ++i;
      const int64_t e = ro[i + 1] < t + n ? ro[i + 1] : t + n;
      const __m128 v = _mm_set1_ps(p.values[i]);
      float* s = stage + (c - t);
      if (e - c <= 32) {
        // Up to 32 tokens: 8 stores whatever the length (a loop's exit would be mispredicted for
        // lengths that vary from response to response); the ones past e are overwritten or unused.
        _mm_storeu_ps(s, v);
        _mm_storeu_ps(s + 4, v);
        _mm_storeu_ps(s + 8, v);
        _mm_storeu_ps(s + 12, v);
        _mm_storeu_ps(s + 16, v);
        _mm_storeu_ps(s + 20, v);
        _mm_storeu_ps(s + 24, v);
        _mm_storeu_ps(s + 28, v);
      } else {
        for (int64_t k = 0; k < e - c; k += 4) _mm_storeu_ps(s + k, v);
      }
      c = e;
    }
    int64_t k = 0;
    for (; k + 4 <= n; k += 4) _mm_stream_ps(p.out + t + k, _mm_load_ps(stage + k));
    for (; k < n; ++k) p.out[t + k] = stage[k];
    t += n;
  }
  _mm_sfence();
#endif
  for (; t < end; ++t) {
    while (ro[i + 1] <= t) ++i;
    p.out[t] = p.values[i];
  }
}

Report expand_to_tokens(const ExpandParams& p, Pool* pool) {
  auto fill = [&](int64_t item, int) {
    const int64_t i1 = min64(p.responses, (item + 1) * kExpandResponses);
    expand_range(p, item * kExpandResponses, i1);
  };
  parallel(pool, (p.responses + kExpandResponses - 1) / kExpandResponses, fill);
  return Report{kOk, 0, 0};
}

Report whiten(const WhitenParams& p, Pool* pool) {
  const int64_t len = p.n;
  if (len == 0) return Report{kOk, 0, 0};
  // Pass 1: each block's count, Σx and M2 about its own mean (block_stats: two passes over the block,
  // the second from L1), in parallel; then the blocks combined in order.
  const int64_t nb = (len + kWhitenBlock - 1) / kWhitenBlock;
  BlockStats* st = static_cast<BlockStats*>(malloc(size_t(nb) * sizeof(BlockStats)));
  if (!st) return Report{kNoMemory, 0, 0};
  auto first = [&](int64_t b, int) {
    const int64_t i0 = b * kWhitenBlock;
    st[b] = block_stats(p.values, p.mask, i0, min64(len, i0 + kWhitenBlock));
  };
  parallel(pool, nb, first);
  double n = 0.0, sum = 0.0;
  for (int64_t b = 0; b < nb; ++b) {
    n += st[b].n;
    sum += st[b].sum;
  }
  if (n == 0) {
    free(st);
    auto body_zero = [&](int64_t b, int) {
      const int64_t i1 = min64(len, (b + 1) * kWhitenBlock);
      for (int64_t i = b * kWhitenBlock; i < i1; ++i) p.out[i] = 0.f;
    };
    parallel(pool, nb, body_zero);
    return Report{kOk, 0, 0};
  }
  // Σ(x − c)² over the valid elements about c = mean, from the blocks' own: within-block M2_b plus
  // n_b·(μ_b − μ)² between blocks (μ = Σx / n), plus n·(μ − mean)² (mean = Σx / (n + maskEps) ≠ μ when
  // maskEps ≠ 0). Every term is ≥ 0: no cancellation, unlike Σx² − n·μ².
  const double denom = n + p.mask_eps;
  const double mean = sum / denom;
  const double mu = sum / n;
  double m2 = 0.0;
  for (int64_t b = 0; b < nb; ++b) {
    if (st[b].n == 0) continue;
    const double d = st[b].sum / st[b].n - mu;
    m2 += st[b].m2 + st[b].n * d * d;
  }
  free(st);
  m2 += n * (mu - mean) * (mu - mean);
  const double rstd = whiten_rstd(p.sample != 0, p.clamp != 0, n, m2, denom);
  const double shift = p.keep_mean ? mean : 0.0;
  // Pass 2: the output; a large one by non-temporal stores (no read-for-ownership of its lines: it is
  // not read again here, and is beyond the caches), a small one kept in cache for its reader.
#if defined(__SSE2__)
  const bool stream = len * int64_t(sizeof(float)) >= kStreamBytes && (reinterpret_cast<uintptr_t>(p.out) & 15) == 0;
#else
  const bool stream = false;
#endif
  auto body = [&](int64_t b, int) {
    const int64_t i0 = b * kWhitenBlock, i1 = min64(len, i0 + kWhitenBlock);
    if (stream) {
      whiten_block<true>(p.values, p.mask, p.out, i0, i1, mean, rstd, shift);
#if defined(__SSE2__)
      _mm_sfence();
#endif
    } else {
      whiten_block<false>(p.values, p.mask, p.out, i0, i1, mean, rstd, shift);
    }
  };
  parallel(pool, nb, body);
  return Report{kOk, 0, 0};
}

}  // namespace GK_CPU_ISA
}  // namespace cpu
}  // namespace gk
