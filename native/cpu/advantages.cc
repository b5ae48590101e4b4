// advantages family on the native cpu backend: advantages (every estimator of ESTIMATORS.md),
// expandToTokens, whiten. f64 throughout, one build for every CPU (the baseline: SSE2 on x86-64, whose
// 2-double vectors the sums below use), following the float64 reference (src/backends/js/advantages.ts)
// with differences that change no rule:
// - Each group is shifted by a pivot, its first member (0 if that is ±Inf/NaN): d_i = r_i − p is exact
//   in f64, μ = p + Σd/n, c_i = d_i − Σd/n, M2 = Σ c_i² (two passes, never E[r²] − E[r]²). In f64 the
//   pivot only guards rewards of huge offset; the result is within 1e-6 of the reference's (far
//   inside: both are f64 until the one rounding to f32).
// - Batch-wide sums (scale 'batch', gpg's α, reinforce_pp_baseline's whitening) are taken over fixed
//   blocks of kBlock elements, each summed in index order, the block sums then added in block order:
//   bitwise the same for any thread count (the blocks, not the threads, fix the order).
// - whiten: per block of kWhitenBlock elements, the valid count, Σx and M2_b about the block's own mean
//   (two passes over the block, the second from L1), in eight f64 lanes (element i to lane i mod 8,
//   the lanes added in a fixed tree); then M2 about the mean from the blocks in order, Σ_b M2_b +
//   n_b·(μ_b − μ)² (the two-pass variance's decomposition: every term ≥ 0, no cancellation). So x is
//   read twice from memory (statistics, output), not three times.
// Work items: 2048 groups (advantages), 4096 responses (expandToTokens: through an L1 staging buffer,
// then non-temporal stores on x86-64), kBlock elements (batch sums), kWhitenBlock elements (whiten).
// Bytes: advantages ~4R read (groups fit in cache: read once from memory) + 4R written + 9G; FLOPs ~6R.
// expandToTokens 4R read + 4·T written; whiten 8N read (+ 2N of mask) + 4N written.
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <vector>

#if defined(__SSE2__)
#include <emmintrin.h>
#endif

#include "../enums.h"
#include "kernels.h"

namespace gk {
namespace cpu {
namespace {

constexpr int64_t kBlock = 1 << 16;         // elements per block of a batch-wide sum
constexpr int64_t kGroupsPerItem = 2048;     // groups per advantages work item
constexpr int64_t kBatch = 128;              // groups per batch of an advantages item
constexpr int64_t kExpandResponses = 4096;   // responses per expandToTokens work item
constexpr double kWhitenVarEps = 1e-8;

// Runs f(i, worker) for i in [0, n) over the pool.
template <class F>
void parallel(Pool* pool, int64_t n, F& f) {
  pool_run(pool, n, [](void* c, int64_t i, int w) { (*static_cast<F*>(c))(i, w); }, &f);
}

// Σ_{i<n} term(i) over fixed blocks, each in index order, then the block sums in order.
template <class Term>
double blocked_sum(Pool* pool, int64_t n, Term term) {
  const int64_t nb = (n + kBlock - 1) / kBlock;
  std::vector<double> part(size_t(nb > 0 ? nb : 1), 0.0);
  auto body = [&](int64_t b, int) {
    const int64_t i1 = std::min(n, (b + 1) * kBlock);
    double s = 0.0;
    for (int64_t i = b * kBlock; i < i1; ++i) s += term(i);
    part[size_t(b)] = s;
  };
  parallel(pool, nb, body);
  double total = 0.0;
  for (int64_t b = 0; b < nb; ++b) total += part[size_t(b)];
  return total;
}

// rsqrt of the whitening variance (src/backends/js/advantages.ts, whitenAffine): m2 = Σ c² over the n
// valid elements, denom = n + maskEps; Bessel's n/(n − 1) for 'sample' (n = 1: NaN); 1e-8 added or
// clamped below.
double whiten_rstd(bool sample, bool clamp, double n, double m2, double denom) {
  double variance = m2 / denom;
  if (sample) variance = n == 1 ? NAN : variance * (n / (n - 1));
  const double v = clamp ? std::max(variance, kWhitenVarEps) : variance + kWhitenVarEps;
  return 1.0 / std::sqrt(v);
}

// ------------------------------------------------------------------------------------------ lanes
// Eight f64 lanes. A sum over an index range puts element i in lane (i − i0) mod 8 and adds the lanes in
// a fixed tree at the end: eight independent chains instead of one (dependent f64 additions run at one
// per 4 cycles), run as vectors: on x86-64 four SSE2 registers of 2 doubles (this file's build is the
// baseline), with masks as bit operations (a ?: on floating-point values stays a branch under the
// default -ftrapping-math, and a random mask then costs a mispredicted branch per element). Elsewhere
// the same lanes run as plain loops, with the same bits.
struct Lanes {
  double v[8];
};
inline double lanes_total(const Lanes& a) {
  return ((a.v[0] + a.v[4]) + (a.v[2] + a.v[6])) + ((a.v[1] + a.v[5]) + (a.v[3] + a.v[7]));
}
// v where k, else +0.
inline double keep(double v, bool k) {
  uint64_t b;
  memcpy(&b, &v, 8);
  b &= uint64_t(0) - uint64_t(k);
  memcpy(&v, &b, 8);
  return v;
}

#if defined(__SSE2__)
// Elements i..i+7 as f64, two per register.
struct D8 {
  __m128d q[4];
};
inline D8 load8(const float* p) {
  const __m128 lo = _mm_loadu_ps(p), hi = _mm_loadu_ps(p + 4);
  return {{_mm_cvtps_pd(lo), _mm_cvtps_pd(_mm_movehl_ps(lo, lo)), _mm_cvtps_pd(hi), _mm_cvtps_pd(_mm_movehl_ps(hi, hi))}};
}
// Masks of mask bytes i..i+7 that are zero, as 64-bit lanes (q) and as 32-bit lanes (w[0]: 0..3, w[1]: 4..7).
struct Zero8 {
  __m128d q[4];
  __m128 w[2];
};
inline Zero8 zero8(const uint8_t* m) {
  const __m128i z = _mm_cmpeq_epi8(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(m)), _mm_setzero_si128());
  const __m128i h = _mm_unpacklo_epi8(z, z);
  const __m128i lo = _mm_unpacklo_epi16(h, h), hi = _mm_unpackhi_epi16(h, h);
  return {{_mm_castsi128_pd(_mm_unpacklo_epi32(lo, lo)), _mm_castsi128_pd(_mm_unpackhi_epi32(lo, lo)),
           _mm_castsi128_pd(_mm_unpacklo_epi32(hi, hi)), _mm_castsi128_pd(_mm_unpackhi_epi32(hi, hi))},
          {_mm_castsi128_ps(lo), _mm_castsi128_ps(hi)}};
}
struct Acc8 {
  __m128d q[4] = {_mm_setzero_pd(), _mm_setzero_pd(), _mm_setzero_pd(), _mm_setzero_pd()};
  void add(const D8& d) {
    for (int k = 0; k < 4; ++k) q[k] = _mm_add_pd(q[k], d.q[k]);
  }
  void to(Lanes& a) const {
    for (int k = 0; k < 4; ++k) _mm_storeu_pd(a.v + 2 * k, q[k]);
  }
};
#endif

// ------------------------------------------------------------------------------------------ whiten
// Blocks of kWhitenBlock elements (32 KiB of f32: a block's second pass reads it from L1).
constexpr int64_t kWhitenBlock = 8192;
struct BlockStats {
  double n, sum, m2;  // valid count, Σx, Σ(x − μ_b)² with μ_b = Σx / n (0 when n = 0)
};

// Σ (x_i − c) (kSquare: Σ (x_i − c)²) over the valid elements of [i0, i1), in the 8 lanes (x − 0 = x).
template <bool kSquare>
double valid_sum(const float* x, const uint8_t* mask, int64_t i0, int64_t i1, double c) {
  Lanes a{};
  int64_t i = i0;
#if defined(__SSE2__)
  Acc8 acc;
  const __m128d vc = _mm_set1_pd(c);
  for (; i + 8 <= i1; i += 8) {
    D8 d = load8(x + i);
    for (int k = 0; k < 4; ++k) {
      const __m128d v = _mm_sub_pd(d.q[k], vc);
      d.q[k] = kSquare ? _mm_mul_pd(v, v) : v;
    }
    if (mask) {
      const Zero8 z = zero8(mask + i);
      for (int k = 0; k < 4; ++k) d.q[k] = _mm_andnot_pd(z.q[k], d.q[k]);
    }
    acc.add(d);
  }
  acc.to(a);
#endif
  for (int k = 0; i < i1; ++i, k = (k + 1) & 7) {
    const double v = double(x[i]) - c;
    a.v[k] += mask && mask[i] == 0 ? 0.0 : kSquare ? v * v : v;
  }
  return lanes_total(a);
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

// out[i] = (x_i − mean)·rstd + shift for valid i, else 0, over [i0, i1).
void whiten_block(const float* x, const uint8_t* mask, float* out, int64_t i0, int64_t i1, double mean,
                  double rstd, double shift) {
  int64_t i = i0;
#if defined(__SSE2__)
  const __m128d vm = _mm_set1_pd(mean), vr = _mm_set1_pd(rstd), vs = _mm_set1_pd(shift);
  for (; i + 8 <= i1; i += 8) {
    const D8 d = load8(x + i);
    __m128 y[2];
    for (int h = 0; h < 2; ++h) {
      const __m128d a = _mm_add_pd(_mm_mul_pd(_mm_sub_pd(d.q[2 * h], vm), vr), vs);
      const __m128d b = _mm_add_pd(_mm_mul_pd(_mm_sub_pd(d.q[2 * h + 1], vm), vr), vs);
      y[h] = _mm_movelh_ps(_mm_cvtpd_ps(a), _mm_cvtpd_ps(b));
    }
    if (mask) {
      const Zero8 z = zero8(mask + i);
      y[0] = _mm_andnot_ps(z.w[0], y[0]);
      y[1] = _mm_andnot_ps(z.w[1], y[1]);
    }
    _mm_storeu_ps(out + i, y[0]);
    _mm_storeu_ps(out + i + 4, y[1]);
  }
#endif
  for (; i < i1; ++i) out[i] = mask && mask[i] == 0 ? 0.f : float((double(x[i]) - mean) * rstd + shift);
}

// ------------------------------------------------------------------------------------------ groups
// A group's two sums, Σ(r − p) and Σ((r − p) − s)², in four f64 lanes (member j to lane j mod 4, the
// lanes added as (0 + 2) + (1 + 3)): four short chains instead of one long one (a group of 8 was two
// chains of 8 dependent additions, ~60 cycles of latency per group). On x86-64 two SSE2 registers.
struct GroupSums {
  double sum, sq;
};
inline double quad_total(const double* q) { return (q[0] + q[2]) + (q[1] + q[3]); }
#if defined(__SSE2__)
// t0 + t1: with t = (q0 + q2, q1 + q3), quad_total's order.
inline double hsum2(__m128d t) { return _mm_cvtsd_f64(_mm_add_sd(t, _mm_unpackhi_pd(t, t))); }
#endif

// Σ (r_i − p) over [lo, hi).
inline double shifted_sum(const float* r, int64_t lo, int64_t hi, double p) {
  double q[4] = {0, 0, 0, 0};
  int64_t i = lo;
#if defined(__SSE2__)
  {
    const __m128d vp = _mm_set1_pd(p);
    __m128d a0 = _mm_setzero_pd(), a1 = _mm_setzero_pd();
    for (; i + 4 <= hi; i += 4) {
      const __m128 x = _mm_loadu_ps(r + i);
      a0 = _mm_add_pd(a0, _mm_sub_pd(_mm_cvtps_pd(x), vp));
      a1 = _mm_add_pd(a1, _mm_sub_pd(_mm_cvtps_pd(_mm_movehl_ps(x, x)), vp));
    }
    // (q0 + q2) + (q1 + q3) in registers when there is no tail (a store and reloads cost more).
    if (i == hi) return hsum2(_mm_add_pd(a0, a1));
    _mm_storeu_pd(q, a0);
    _mm_storeu_pd(q + 2, a1);
  }
#endif
  for (int k = 0; i < hi; ++i, ++k) q[k] += double(r[i]) - p;
  return quad_total(q);
}

// Σ ((r_i − p) − s)² over [lo, hi).
inline double centred_squares(const float* r, int64_t lo, int64_t hi, double p, double s) {
  double q[4] = {0, 0, 0, 0};
  int64_t i = lo;
#if defined(__SSE2__)
  {
    const __m128d vp = _mm_set1_pd(p), vs = _mm_set1_pd(s);
    __m128d a0 = _mm_setzero_pd(), a1 = _mm_setzero_pd();
    for (; i + 4 <= hi; i += 4) {
      const __m128 x = _mm_loadu_ps(r + i);
      const __m128d c0 = _mm_sub_pd(_mm_sub_pd(_mm_cvtps_pd(x), vp), vs);
      const __m128d c1 = _mm_sub_pd(_mm_sub_pd(_mm_cvtps_pd(_mm_movehl_ps(x, x)), vp), vs);
      a0 = _mm_add_pd(a0, _mm_mul_pd(c0, c0));
      a1 = _mm_add_pd(a1, _mm_mul_pd(c1, c1));
    }
    if (i == hi) return hsum2(_mm_add_pd(a0, a1));
    _mm_storeu_pd(q, a0);
    _mm_storeu_pd(q + 2, a1);
  }
#endif
  for (int k = 0; i < hi; ++i, ++k) {
    const double c = (double(r[i]) - p) - s;
    q[k] += c * c;
  }
  return quad_total(q);
}

// out_i = f32(k·((r_i − p) − s)) over [lo, hi) (k = 1: the centred value itself, 1·c = c).
inline void write_scaled(const float* r, float* out, int64_t lo, int64_t hi, double p, double s, double k) {
  int64_t i = lo;
#if defined(__SSE2__)
  const __m128d vp = _mm_set1_pd(p), vs = _mm_set1_pd(s), vk = _mm_set1_pd(k);
  for (; i + 4 <= hi; i += 4) {
    const __m128 x = _mm_loadu_ps(r + i);
    const __m128d c0 = _mm_mul_pd(vk, _mm_sub_pd(_mm_sub_pd(_mm_cvtps_pd(x), vp), vs));
    const __m128d c1 = _mm_mul_pd(vk, _mm_sub_pd(_mm_sub_pd(_mm_cvtps_pd(_mm_movehl_ps(x, x)), vp), vs));
    _mm_storeu_ps(out + i, _mm_movelh_ps(_mm_cvtpd_ps(c0), _mm_cvtpd_ps(c1)));
  }
#endif
  for (; i < hi; ++i) out[i] = float(k * ((double(r[i]) - p) - s));
}

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

  double batch_std = NAN;
  if (divides && scale == ScaleKind::Batch) {
    const double m = blocked_sum(pool, R, [&](int64_t i) { return double(r[i]); }) / double(R);
    const double m2 = blocked_sum(pool, R, [&](int64_t i) {
      const double c = double(r[i]) - m;
      return c * c;
    });
    batch_std = std::sqrt(sample ? m2 / double(R - 1) : m2 / double(R));
  }
  double alpha = 1.0;
  if (est == Estimator::Gpg) {
    const double nonzero = blocked_sum(pool, R, [&](int64_t i) { return r[i] != 0.f ? 1.0 : 0.0; });
    alpha = double(R) / std::max(nonzero, 1.0);
  }
  std::vector<double> values(per_token ? size_t(R) : 0);

  // Group g's outputs from its statistics: pivot, md = μ − pivot, M2, s (its std) and grpo's factor k.
  auto group_outputs = [&](int64_t g, double piv, double md, double m2, double s, double k) {
    const int64_t lo = go[g], hi = go[g + 1], n = hi - lo;
    // The members' values k·((r_i − piv) − shift): rounded to f32 once, or kept in f64 (per token).
    auto write_all = [&](double shift, double kk) {
      if (per_token) {
        for (int64_t i = lo; i < hi; ++i) values[size_t(i)] = kk * ((double(r[i]) - piv) - shift);
      } else {
        write_scaled(r, a.advantages, lo, hi, piv, shift, kk);
      }
    };
    auto write = [&](int64_t i, double v) {
      if (per_token) values[size_t(i)] = v;
      else a.advantages[i] = float(v);
    };
    if (n == 0) {
      a.mean[g] = 0.f;
      a.std[g] = 0.f;
      a.degenerate[g] = 1;
      return;
    }
    double mu = piv + md;
    const bool single = n == 1;
    const bool zero_var = !single && m2 == 0.0;
    bool deg = single || zero_var;
    if (zero_var || (single && singleton == Singleton::Zero)) {
      a.mean[g] = float(mu);
      a.std[g] = float(divides && scale == ScaleKind::Batch ? batch_std : 0.0);
      a.degenerate[g] = 1;
      for (int64_t i = lo; i < hi; ++i) write(i, 0.0);
      return;
    }
    double shift = md;  // c_i = (r_i − piv) − shift
    if (single && singleton == Singleton::Mean0) {
      mu = 0.0;
      s = 1.0;
      shift = -piv;  // c = r
    }
    const double divisor = scale == ScaleKind::Batch ? batch_std : s;
    switch (est) {
      case Estimator::Grpo:
        // k = 1/(divisor + eps) from the batch step, unless a 'mean0' singleton's s := 1 changed it.
        write_all(shift, single && singleton == Singleton::Mean0 && scale != ScaleKind::None
                             ? 1.0 / (divisor + a.eps)
                             : k);
        break;
      case Estimator::DrGrpo:
      case Estimator::ReinforcePpBaseline:
        write_all(shift, 1.0);
        break;
      case Estimator::Rloo:
        if (single && singleton == Singleton::Mean0) write(lo, r[lo]);
        else write_all(shift, double(n) / double(n - 1));
        break;
      case Estimator::Gpg:
        write_all(shift, alpha);
        break;
      case Estimator::Opo: {
        if (!(single && singleton == Singleton::Mean0)) {
          double wsum = 0.0, lsum = 0.0;
          for (int64_t i = lo; i < hi; ++i) {
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
        int64_t best = lo;
        bool has_nan = false;
        for (int64_t i = lo; i < hi; ++i) {
          if (std::isnan(r[i])) has_nan = true;
          else if (r[i] > r[best]) best = i;
        }
        double second = -INFINITY;
        for (int64_t i = lo; i < hi; ++i)
          if (i != best && r[i] > second) second = r[i];
        const double gap = double(r[best]) - second;
        const double value = scale == ScaleKind::None ? gap : gap / (divisor + a.eps);
        for (int64_t i = lo; i < hi; ++i) write(i, has_nan ? NAN : i == best ? value : 0.0);
        break;
      }
    }
    a.mean[g] = float(mu);
    a.std[g] = float(divides && scale == ScaleKind::Batch ? batch_std : s);
    a.degenerate[g] = deg ? 1 : 0;
  };
  // Per item, batches of kBatch groups in three steps: the two sums of every group (independent groups
  // back to back, so their latencies overlap), then every group's std and grpo's factor (the divisions
  // and square roots as one vectorized loop: one after another inside a group they were a ~60-cycle
  // chain per group), then the outputs.
  const bool grpo_divides = est == Estimator::Grpo && scale != ScaleKind::None;
  auto body = [&](int64_t item, int) {
    const int64_t g1 = std::min(G, (item + 1) * kGroupsPerItem);
    alignas(64) double piv_b[kBatch], md_b[kBatch], m2_b[kBatch], s_b[kBatch], k_b[kBatch];
    for (int64_t b0 = item * kGroupsPerItem; b0 < g1; b0 += kBatch) {
      const int64_t nb = std::min(kBatch, g1 - b0);
      for (int64_t j = 0; j < nb; ++j) {
        const int64_t lo = go[b0 + j], hi = go[b0 + j + 1];
        if (hi == lo) {
          piv_b[j] = md_b[j] = m2_b[j] = 0.0;
          continue;
        }
        const double first = r[lo];
        const double piv = std::isfinite(first) ? first : 0.0;
        const double md = shifted_sum(r, lo, hi, piv) / double(hi - lo);  // μ − p
        piv_b[j] = piv;
        md_b[j] = md;
        m2_b[j] = centred_squares(r, lo, hi, piv, md);
      }
      for (int64_t j = 0; j < nb; ++j) {
        const double n = double(go[b0 + j + 1] - go[b0 + j]);
        s_b[j] = std::sqrt(m2_b[j] / (sample ? n - 1.0 : n));
        k_b[j] = 1.0 / ((scale == ScaleKind::Batch ? batch_std : s_b[j]) + a.eps);
      }
      for (int64_t j = 0; j < nb; ++j) {
        const int64_t g = b0 + j;
        group_outputs(g, piv_b[j], md_b[j], m2_b[j], s_b[j], grpo_divides ? k_b[j] : 1.0);
      }
    }
  };
  parallel(pool, (G + kGroupsPerItem - 1) / kGroupsPerItem, body);


  if (per_token && a.tokens > 0) {
    // Whiten expand(values) over all tokens without forming it: response i holds L_i copies of v_i.
    const double T = double(a.tokens);
    const double sum = blocked_sum(pool, R, [&](int64_t i) { return double(ro[i + 1] - ro[i]) * values[size_t(i)]; });
    const double denom = T + a.whiten_mask_eps;
    const double mean = sum / denom;
    const double m2 = blocked_sum(pool, R, [&](int64_t i) {
      const double c = values[size_t(i)] - mean;
      return double(ro[i + 1] - ro[i]) * c * c;
    });
    const double rstd = whiten_rstd(a.whiten_sample != 0, a.whiten_clamp != 0, T, m2, denom);
    auto fill = [&](int64_t item, int) {
      const int64_t i1 = std::min(R, (item + 1) * kExpandResponses);
      for (int64_t i = item * kExpandResponses; i < i1; ++i) {
        const float v = float((values[size_t(i)] - mean) * rstd);
        for (int64_t t = ro[i]; t < ro[i + 1]; ++t) a.advantages[t] = v;
      }
    };
    parallel(pool, (R + kExpandResponses - 1) / kExpandResponses, fill);
  }
  return Report{kOk, 0, 0};
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
    const int64_t i1 = std::min(p.responses, (item + 1) * kExpandResponses);
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
  std::vector<BlockStats> st(static_cast<size_t>(nb));
  auto first = [&](int64_t b, int) {
    const int64_t i0 = b * kWhitenBlock;
    st[size_t(b)] = block_stats(p.values, p.mask, i0, std::min(len, i0 + kWhitenBlock));
  };
  parallel(pool, nb, first);
  double n = 0.0, sum = 0.0;
  for (int64_t b = 0; b < nb; ++b) {
    n += st[size_t(b)].n;
    sum += st[size_t(b)].sum;
  }
  if (n == 0) {
    auto body_zero = [&](int64_t b, int) {
      const int64_t i1 = std::min(len, (b + 1) * kWhitenBlock);
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
    const BlockStats& s = st[size_t(b)];
    if (s.n == 0) continue;
    const double d = s.sum / s.n - mu;
    m2 += s.m2 + s.n * d * d;
  }
  m2 += n * (mu - mean) * (mu - mean);
  const double rstd = whiten_rstd(p.sample != 0, p.clamp != 0, n, m2, denom);
  const double shift = p.keep_mean ? mean : 0.0;
  // Pass 2: the output.
  auto body = [&](int64_t b, int) {
    const int64_t i0 = b * kWhitenBlock;
    whiten_block(p.values, p.mask, p.out, i0, std::min(len, i0 + kWhitenBlock), mean, rstd, shift);
  };
  parallel(pool, nb, body);
  return Report{kOk, 0, 0};
}

}  // namespace cpu
}  // namespace gk
