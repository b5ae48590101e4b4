// advantages family on the native cpu backend: advantages (every estimator of ESTIMATORS.md),
// expandToTokens, whiten. Scalar f64 throughout (one build for every CPU: the work is a few flops per
// element and memory-bound), following the float64 reference (src/backends/js/advantages.ts) line by
// line, with two differences that change no rule:
// - Each group is shifted by a pivot, its first member (0 if that is ±Inf/NaN): d_i = r_i − p is exact
//   in f64, μ = p + Σd/n, c_i = d_i − Σd/n, M2 = Σ c_i² (two passes, never E[r²] − E[r]²). In f64 the
//   pivot only guards rewards of huge offset; the result is within 1e-6 of the reference's (far
//   inside: both are f64 until the one rounding to f32).
// - Batch-wide sums (scale 'batch', gpg's α, whitening) are taken over fixed blocks of kBlock elements,
//   each summed in index order, the block sums then added in block order: bitwise the same for any
//   thread count (the blocks, not the threads, fix the order).
// Work items: 2048 groups (advantages), 4096 responses (expandToTokens, written with non-temporal stores
// on x86-64), kBlock elements (sums, whiten: the valid count and Σx fused in one pass).
// Bytes: advantages ~4R read (groups fit in cache: read once from memory) + 4R written + 9G; FLOPs ~6R.
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

  auto body = [&](int64_t item, int) {
    const int64_t g1 = std::min(G, (item + 1) * kGroupsPerItem);
    for (int64_t g = item * kGroupsPerItem; g < g1; ++g) {
      const int64_t lo = go[g], hi = go[g + 1], n = hi - lo;
      auto write = [&](int64_t i, double v) {
        if (per_token) values[size_t(i)] = v;
        else a.advantages[i] = float(v);
      };
      if (n == 0) {
        a.mean[g] = 0.f;
        a.std[g] = 0.f;
        a.degenerate[g] = 1;
        continue;
      }
      const double first = r[lo];
      const double piv = std::isfinite(first) ? first : 0.0;
      double sd = 0.0;
      for (int64_t i = lo; i < hi; ++i) sd += double(r[i]) - piv;
      const double md = sd / double(n);  // μ − p
      double m2 = 0.0;
      for (int64_t i = lo; i < hi; ++i) {
        const double c = (double(r[i]) - piv) - md;
        m2 += c * c;
      }
      double mu = piv + md;
      double s = std::sqrt(sample ? m2 / double(n - 1) : m2 / double(n));
      const bool single = n == 1;
      const bool zero_var = !single && m2 == 0.0;
      bool deg = single || zero_var;
      if (zero_var || (single && singleton == Singleton::Zero)) {
        a.mean[g] = float(mu);
        a.std[g] = float(divides && scale == ScaleKind::Batch ? batch_std : 0.0);
        a.degenerate[g] = 1;
        for (int64_t i = lo; i < hi; ++i) write(i, 0.0);
        continue;
      }
      double shift = md;  // c_i = (r_i − piv) − shift
      if (single && singleton == Singleton::Mean0) {
        mu = 0.0;
        s = 1.0;
        shift = -piv;  // c = r
      }
      const double divisor = scale == ScaleKind::Batch ? batch_std : s;
      switch (est) {
        case Estimator::Grpo: {
          const double inv = 1.0 / (divisor + a.eps);
          for (int64_t i = lo; i < hi; ++i) {
            const double c = (double(r[i]) - piv) - shift;
            write(i, scale == ScaleKind::None ? c : c * inv);
          }
          break;
        }
        case Estimator::DrGrpo:
        case Estimator::ReinforcePpBaseline:
          for (int64_t i = lo; i < hi; ++i) write(i, (double(r[i]) - piv) - shift);
          break;
        case Estimator::Rloo:
          if (single && singleton == Singleton::Mean0) {
            write(lo, r[lo]);
          } else {
            const double k = double(n) / double(n - 1);
            for (int64_t i = lo; i < hi; ++i) write(i, k * ((double(r[i]) - piv) - shift));
          }
          break;
        case Estimator::Gpg:
          for (int64_t i = lo; i < hi; ++i) write(i, alpha * ((double(r[i]) - piv) - shift));
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
          for (int64_t i = lo; i < hi; ++i) write(i, (double(r[i]) - piv) - shift);
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

// out[t] = value of t's response for the tokens of responses [i0, i1): a write-only stream, so on x86-64
// non-temporal 16-byte stores (no read-for-ownership of the output's lines: half the traffic).
void expand_range(const ExpandParams& p, int64_t i0, int64_t i1) {
  const int32_t* ro = p.response_offsets;
  int64_t t = ro[i0];
  const int64_t end = ro[i1];
  int64_t i = i0;
  auto value_at = [&](int64_t tok) {
    while (ro[i + 1] <= tok) ++i;
    return p.values[i];
  };
#if defined(__SSE2__)
  for (; t < end && (reinterpret_cast<uintptr_t>(p.out + t) & 15) != 0; ++t) p.out[t] = value_at(t);
  for (; t + 4 <= end; t += 4) {
    const float a = value_at(t), b = value_at(t + 1), c = value_at(t + 2), d = value_at(t + 3);
    _mm_stream_ps(p.out + t, _mm_set_ps(d, c, b, a));
  }
  _mm_sfence();
#endif
  for (; t < end; ++t) p.out[t] = value_at(t);
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
  auto valid = [&](int64_t i) { return p.mask == nullptr || p.mask[i] != 0; };
  // The valid count and Σx in one pass over fixed blocks (each block in index order, then in order).
  const int64_t nb0 = (len + kBlock - 1) / kBlock;
  std::vector<double> cnt(static_cast<size_t>(nb0)), sums(static_cast<size_t>(nb0));
  auto first = [&](int64_t b, int) {
    const int64_t i1 = std::min(len, (b + 1) * kBlock);
    double c = 0.0, s = 0.0;
    if (p.mask == nullptr) {
      c = double(i1 - b * kBlock);
      for (int64_t i = b * kBlock; i < i1; ++i) s += double(p.values[i]);
    } else {
      for (int64_t i = b * kBlock; i < i1; ++i)
        if (p.mask[i] != 0) {
          c += 1.0;
          s += double(p.values[i]);
        }
    }
    cnt[size_t(b)] = c;
    sums[size_t(b)] = s;
  };
  parallel(pool, nb0, first);
  double n = 0.0, sum = 0.0;
  for (int64_t b = 0; b < nb0; ++b) {
    n += cnt[size_t(b)];
    sum += sums[size_t(b)];
  }
  auto body_zero = [&](int64_t b, int) {
    const int64_t i1 = std::min(len, (b + 1) * kBlock);
    for (int64_t i = b * kBlock; i < i1; ++i) p.out[i] = 0.f;
  };
  const int64_t nb = (len + kBlock - 1) / kBlock;
  if (n == 0) {
    parallel(pool, nb, body_zero);
    return Report{kOk, 0, 0};
  }
  const double denom = n + p.mask_eps;
  const double mean = sum / denom;
  const double m2 = blocked_sum(pool, len, [&](int64_t i) {
    if (!valid(i)) return 0.0;
    const double c = double(p.values[i]) - mean;
    return c * c;
  });
  const double rstd = whiten_rstd(p.sample != 0, p.clamp != 0, n, m2, denom);
  const double shift = p.keep_mean ? mean : 0.0;
  auto body = [&](int64_t b, int) {
    const int64_t i1 = std::min(len, (b + 1) * kBlock);
    for (int64_t i = b * kBlock; i < i1; ++i)
      p.out[i] = valid(i) ? float((double(p.values[i]) - mean) * rstd + shift) : 0.f;
  };
  parallel(pool, nb, body);
  return Report{kOk, 0, 0};
}

}  // namespace cpu
}  // namespace gk
