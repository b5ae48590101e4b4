// rolloutRejection on the native cpu backend: verl's rollout rejection sampling (`rollout_rs`,
// rollout_corr_helper.py compute_rollout_rejection_mask and compute_rs_metrics). The definitions, in the
// order they are evaluated, are the float64 reference's (src/backends/js/rejection.ts); the twins are
// native/cuda/rejection.cu and shaders/rejection.wgsl. Compiled once per instruction set (gk::cpu::avx2,
// gk::cpu::portable; native/cpu/kernels.h).
//
// FORMULA. Per valid token (m_t ≠ 0, or no mask), in f32: λ = clamp(ℓ − ℓᵛ, ±20) (a NaN stays NaN);
//   k1 = −λ, k2 = (0.5·λ)·λ, k3 = e^λ − 1 − λ (exp.h's k3_of: a series for −1 < λ < 2, no
//   cancellation near 0; e^λ within 2 ulp elsewhere). Per response r (n_r valid tokens) and criterion c
//   (statistic k, level, f32 bounds [lo, hi]): token level, a token passes iff lo ≤ k_t ≤ hi (NaN
//   fails); seq-sum S_r = Σ k_t, seq-mean S_r = Σ k_t / n_r, seq-max S_r = max k_t (NaN if any k_t is),
//   over the valid tokens (the sum and quotient in f64, then S_r rounded to f32), a response passing iff
//   lo ≤ S_r ≤ hi (an empty response is never judged), a failing one rejecting all its valid tokens.
//   out_mask_t = 1 where t is valid and no criterion rejects it, else 0 (every element written). Stats
//   (f32 [2 + 7·C], REJECTION_STATS then REJECTION_CRITERION_STATS per criterion) as the reference:
//   maskedFraction = rejected valid tokens / N_tok, seqMaskedFraction = responses with one / R; per c:
//   mean = Σ s over valid tokens / N_tok (a response's S_r counted n_r times), max, min (NaN-propagating;
//   −Inf / +Inf over an empty set), fractionHigh (s > hi), fractionLow (s < lo) over N_tok (token
//   level) or the N_seq nonempty responses (the others), maskedFraction = valid tokens c rejects / N_tok,
//   seqMaskedFraction = nonempty responses c rejects a token of / N_seq; 0/0 is NaN.
//
// WORK. Items are runs of consecutive responses cut by a weight w(r) = offsets[r] + 8·r (a response costs
//   about 8 tokens of overhead): n_items = clamp(w(R)/16384, 1, 64), item i starting at the first
//   response with w(r) ≥ ⌈i·w(R)/n_items⌉ (a binary search per item, on the calling thread; a response
//   is never split). The items depend on the offsets alone, never on the thread count. An item walks its
//   responses in order, each in one read pass of ℓ, ℓᵛ and the mask: vector k of the response holds its
//   tokens t0 + 8k .. t0 + 8k + 7 (positions relative to its own first token; loads past the arrays' end
//   go lane by lane; lanes past the response or masked are invalid, their λ replaced by NaN, which the
//   skip-NaN max and min pass over, every test fails and the sums' selects zero), computing only the
//   statistics some criterion uses. Per statistic a seq-sum or seq-mean criterion uses, the response's
//   Σ k (each lane's f32 terms summed in f64, the lanes added in simd.h's fixed tree); per statistic of
//   a seq-max, its max (NaN where a valid λ is NaN, recorded apart). Token criteria are tested per vector
//   and their pass bits ANDed into the lanes' mask bits, stored as 8 bytes (those past the response are
//   0 and rewritten by the item's next responses, after; byte by byte at the item's end, so items never
//   share a byte); their statistics' Σ, max and min are accumulated over the whole item in the same
//   lanes. Once the response is read, its sequence criteria are decided from its sums and maxima and a
//   failing response's bytes are cleared (from L1). So a response's mask bits are a function of its own
//   tokens, whatever its position, its batch or the thread count. The item's statistics are a record
//   (f64 sums, exact counts, NaN-propagating max and min), the records folded in item order on the
//   calling thread in f64, each stat then rounded once to f32: the same bits for any thread count.
//
// BYTES per token: ℓ and ℓᵛ (f32) and the mask (u8) read once, the u8 output written once (and again,
//   from L1, for a response a sequence criterion rejects): 10 bytes; 4·(R+1) bytes of offsets.
// FLOPs per 8-token vector: λ 3 (difference, clamp), the NaN record and select 3; k1 1, k2 2, k3 ~40
//   (13 series FMAs, ~15 for the exponential, the selects); per statistic of a token criterion 6 (the
//   f64 sum's 2 conversions and 2 additions, max, min), of seq-sum or seq-mean 4, of seq-max 1; per
//   token criterion ~10 (2 compares, the masks, 3 popcounts); the store ~8. Measured on one core of the
//   2-core development machine under load (AVX2, a harness calling the kernel alone, 2^20 tokens, every
//   7th masked): responses of 1–31 tokens 1.6–1.9 ns per token with token_k1 alone, 6.5–6.8 with all 11
//   options; of 1–2047 tokens 0.8 and 2.4–2.9 ns; the portable build ~3x the AVX2 one.
// NUMERICS. The per-token statistics are f32 (the cuda and WGSL kernels' arithmetic); the sums are f64
//   (each lane's f32 terms, then the lanes), rounded once to f32 as S_r, so S_r, the means and the
//   decisions of seq-sum and seq-mean differ from the f64 reference by the f32 rounding of each k_t and
//   of S_r (a decision may differ for an S_r within ~u·Σ|k_t| of a bound: the case table's ambiguous
//   units); token and seq-max decisions are on the f32 statistic itself. The stats' sums are f64 (a token
//   criterion's Σ k_t in the item's f64 lanes, a sequence criterion's Σ n_r·S_r), each stat rounded once
//   to f32.
#include "kernels.h"
#include "simd.h"
#include "exp.h"

#include <stdlib.h>
#include <string.h>

#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "rejection.cc stores 8 mask bytes through a little-endian uint64_t (spread_bits)"
#endif

namespace gk {
namespace cpu {
namespace GK_CPU_ISA {
namespace {

constexpr int kNumStatistics = 3;   // k1, k2, k3 (RejectionStatistic)
constexpr int64_t kMaxItems = 64;
constexpr int64_t kItemWeight = 16384;     // tokens (plus 8 per response) per item at least, when there are few
constexpr int64_t kResponseWeight = 8;     // a response's overhead, in tokens
constexpr float kLogClamp = 20.0f;         // verl's SAFETY_BOUND
constexpr double kInf = __builtin_inf();

alignas(32) constexpr float kIota[kLanes] = {0, 1, 2, 3, 4, 5, 6, 7};

inline int64_t imin(int64_t a, int64_t b) { return a < b ? a : b; }
inline int popcount(int bits) { return __builtin_popcount(unsigned(bits)); }
// max and min that keep a NaN (the reference's nanMax and nanMin; torch's max and min).
inline double nan_max(double a, double b) { return a != a || a > b ? a : b; }
inline double nan_min(double a, double b) { return a != a || a < b ? a : b; }

// Lanes [0, count) (count ≥ 8: all), without a branch (a response's last vector would mispredict it).
inline VM first_lanes(int64_t count) { return lt(load(kIota), set1(float(imin(count, kLanes)))); }
// Bit i of `bits` as byte i (0 or 1) of the result, little-endian.
inline uint64_t spread_bits(int bits) {
  uint64_t x = uint64_t(unsigned(bits) & 0xffu);
  x = (x | (x << 28)) & 0x0000000F0000000Full;
  x = (x | (x << 14)) & 0x0003000300030003ull;
  x = (x | (x << 7)) & 0x0101010101010101ull;
  return x;
}
// The lanes' max and min, none of them NaN (the skip-NaN accumulators').
inline float lanes_max(VF a) {
  alignas(32) float t[kLanes];
  store(t, a);
  float m = t[0];
  for (int i = 1; i < kLanes; ++i) m = t[i] > m ? t[i] : m;
  return m;
}
inline float lanes_min(VF a) {
  alignas(32) float t[kLanes];
  store(t, a);
  float m = t[0];
  for (int i = 1; i < kLanes; ++i) m = t[i] < m ? t[i] : m;
  return m;
}

// An item's record, per criterion: Σ s over valid tokens, max, min, and the counts (s > hi, s < lo,
// valid tokens rejected, responses with one rejected).
struct CritPart {
  double sum, max, min;
  int64_t high, low, rej_tok, rej_seq;
};
struct Part {
  int64_t n_tok, n_seq, any_tok, any_seq;  // valid tokens, nonempty responses, rejected by any criterion
  CritPart c[kRejectionMaxCriteria];
};
Part part_empty() {
  Part q{};
  for (CritPart& c : q.c) {
    c.max = -kInf;
    c.min = kInf;
  }
  return q;
}

struct Job {
  const RolloutRejectionParams* p;
  int64_t T;
  const int64_t* item_start;  // [items + 1]: the items' first responses
  Part* parts;                // [items]
  // The token-level criteria (indices into p->criteria) and the others.
  int n_tok, n_seq;
  int tok[kRejectionMaxCriteria], seq[kRejectionMaxCriteria];
  // Per statistic: used by a token criterion (the item's Σ, max, min), by seq-sum or seq-mean (the
  // response's Σ), by seq-max (the response's max).
  bool tok_stat[kNumStatistics], sum_stat[kNumStatistics], max_stat[kNumStatistics];
};

// Stores the low `count` bytes of `bytes` at out (count ≥ 8: all eight, one store).
inline void store_bytes(uint8_t* out, uint64_t bytes, int64_t count) {
  if (count >= kLanes) {
    memcpy(out, &bytes, 8);
    return;
  }
  for (int64_t i = 0; i < count; ++i) out[i] = uint8_t(bytes >> (8 * i));
}

// One item. Need: bit j set where statistic j (k1, k2, k3) is computed.
template <int Need>
void item_fn(void* ctx, int64_t item, int) {
  const Job& J = *static_cast<const Job*>(ctx);
  const RolloutRejectionParams& p = *J.p;
  const int32_t* ro = p.response_offsets;
  const int64_t r0 = J.item_start[item], r1 = J.item_start[item + 1];
  const int64_t T1 = ro[r1];  // the item's end: its mask bytes before it are its own
  Part part = part_empty();
  const VF lam_hi = set1(kLogClamp), lam_lo = set1(-kLogClamp), qnan = set1(__builtin_nanf("")),
           neg1 = set1(-1.0f), half = set1(0.5f), ninf = set1(-__builtin_inff()), pinf = set1(__builtin_inff());
  // The token criteria's statistics over the item: Σ (lanes by position in each response, in f64), max
  // and min (skip-NaN; a NaN λ at a valid lane is recorded in tok_nan instead).
  VD tsum[kNumStatistics];
  VF tmax[kNumStatistics], tmin[kNumStatistics];
  for (int j = 0; j < kNumStatistics; ++j) {
    tsum[j] = dzero();
    tmax[j] = ninf;
    tmin[j] = pinf;
  }
  VM tok_nan = mask_of(false);
  for (int64_t r = r0; r < r1; ++r) {
    const int64_t t0 = ro[r], t1 = ro[r + 1];
    // The response's Σ k (seq-sum, seq-mean) and max k (seq-max) per statistic.
    VD rsum[kNumStatistics];
    VF rmax[kNumStatistics];
    for (int j = 0; j < kNumStatistics; ++j) {
      rsum[j] = dzero();
      rmax[j] = ninf;
    }
    VM nan_seen = mask_of(false);
    int64_t n = 0, kept = 0;
    int64_t fails[kRejectionMaxCriteria];
    for (int i = 0; i < J.n_tok; ++i) fails[i] = 0;
    for (int64_t t = t0; t < t1; t += kLanes) {
      const int64_t room = J.T - t;  // loads past the arrays' end go lane by lane
      VM v = first_lanes(t1 - t);
      if (p.mask) v = mand(v, mask_n(p.mask + t, room));
      VF lam = sub(load_n(p.logprobs + t, room), load_n(p.rollout_logprobs + t, room));
      lam = clamp_hi(clamp_lo(lam, lam_lo), lam_hi);  // NaN kept
      nan_seen = mor(nan_seen, mand(v, neq(lam, lam)));
      lam = blend(v, lam, qnan);  // invalid lanes: NaN statistics, passed over by max and min, failing every test
      VF k[kNumStatistics] = {qnan, qnan, qnan};  // (only the used ones are computed and read)
      if (Need & 1) k[0] = mul(lam, neg1);          // (−0 for λ = +0, as the reference's −λ)
      if (Need & 2) k[1] = mul(mul(half, lam), lam);
      if (Need & 4) {
        VF em1;
        k[2] = k3_of(lam, em1);
      }
      for (int j = 0; j < kNumStatistics; ++j) {
        if (!(Need & (1 << j))) continue;
        if (J.tok_stat[j]) {
          dacc(tsum[j], keep(v, k[j]));
          tmax[j] = max_skip_nan(tmax[j], k[j]);
          tmin[j] = clamp_hi(tmin[j], k[j]);  // min with a NaN k skipped (tmin is never NaN)
        }
        if (J.sum_stat[j]) dacc(rsum[j], keep(v, k[j]));
        if (J.max_stat[j]) rmax[j] = max_skip_nan(rmax[j], k[j]);
      }
      VM pass = v;
      for (int i = 0; i < J.n_tok; ++i) {
        const RejectionCriterion& c = p.criteria[J.tok[i]];
        const VF s = k[int(c.statistic)], lo = set1(c.lower), hi = set1(c.upper);
        const VM in = mand(ge(s, lo), le(s, hi));  // (NaN, and so every invalid lane: out)
        pass = mand(pass, in);
        fails[i] += popcount(mbits(mandnot(v, in)));
        CritPart& q = part.c[J.tok[i]];
        q.high += popcount(mbits(gt(s, hi)));
        q.low += popcount(mbits(lt(s, lo)));
      }
      const int bits = mbits(pass);
      // 8 bytes at once but at the item's end: those past the response are 0 (invalid lanes), and the
      // next responses of the item, written after, overwrite them.
      store_bytes(p.out_mask + t, spread_bits(bits), T1 - t);
      n += popcount(mbits(v));
      kept += popcount(bits);
    }
    part.n_tok += n;
    part.n_seq += n > 0 ? 1 : 0;
    tok_nan = mor(tok_nan, nan_seen);
    for (int i = 0; i < J.n_tok; ++i) {
      CritPart& q = part.c[J.tok[i]];
      q.rej_tok += fails[i];
      q.rej_seq += fails[i] > 0 ? 1 : 0;
    }
    bool rejected = false;
    if (n > 0 && J.n_seq > 0) {
      // The response's statistics (NaN where a valid λ is NaN: the sums through the NaN terms, the
      // maxima through nan_seen).
      const bool has_nan = mbits(nan_seen) != 0;
      double S[kNumStatistics] = {}, M[kNumStatistics] = {};
      for (int j = 0; j < kNumStatistics; ++j) {
        if (!(Need & (1 << j))) continue;
        if (J.sum_stat[j]) S[j] = dsum(rsum[j]);
        if (J.max_stat[j]) M[j] = has_nan ? double(__builtin_nanf("")) : double(lanes_max(rmax[j]));
      }
      for (int i = 0; i < J.n_seq; ++i) {
        const int ci = J.seq[i];
        const RejectionCriterion& c = p.criteria[ci];
        const int j = int(c.statistic);
        double s = c.level == RejectionLevel::SeqMax ? M[j] : S[j];
        if (c.level == RejectionLevel::SeqMean) s /= double(n);
        s = double(float(s));  // S_r in f32, as every backend holds it (the reference rounds it too)
        const double lo = c.lower, hi = c.upper;
        CritPart& q = part.c[ci];
        q.sum += double(n) * s;
        q.max = nan_max(q.max, s);
        q.min = nan_min(q.min, s);
        q.high += s > hi ? 1 : 0;
        q.low += s < lo ? 1 : 0;
        if (!(s >= lo && s <= hi)) {
          q.rej_tok += n;
          q.rej_seq += 1;
          rejected = true;
        }
      }
    }
    if (rejected) memset(p.out_mask + t0, 0, size_t(t1 - t0));
    const int64_t any = rejected ? n : n - kept;
    part.any_tok += any;
    part.any_seq += any > 0 ? 1 : 0;
  }
  // The token criteria's sums and extremes over the item (NaN where a valid λ is NaN; −Inf / +Inf with
  // no valid token).
  const bool any_nan = mbits(tok_nan) != 0;
  for (int i = 0; i < J.n_tok; ++i) {
    const int j = int(p.criteria[J.tok[i]].statistic);
    CritPart& q = part.c[J.tok[i]];
    q.sum = dsum(tsum[j]);
    q.max = any_nan ? double(__builtin_nanf("")) : double(lanes_max(tmax[j]));
    q.min = any_nan ? double(__builtin_nanf("")) : double(lanes_min(tmin[j]));
  }
  J.parts[item] = part;
}

using ItemFn = void (*)(void*, int64_t, int);
ItemFn pick(int need) {
  switch (need) {
    case 1:
      return item_fn<1>;
    case 2:
      return item_fn<2>;
    case 3:
      return item_fn<3>;
    case 4:
      return item_fn<4>;
    case 5:
      return item_fn<5>;
    case 6:
      return item_fn<6>;
    default:
      return item_fn<7>;
  }
}

// The first response r in [0, R] with w(r) = offsets[r] + 8·r ≥ target (w is increasing).
int64_t first_at(const int32_t* ro, int64_t R, int64_t target) {
  int64_t lo = 0, hi = R;
  while (lo < hi) {
    const int64_t mid = lo + (hi - lo) / 2;
    if (int64_t(ro[mid]) + kResponseWeight * mid >= target) hi = mid;
    else lo = mid + 1;
  }
  return lo;
}

}  // namespace

// ------------------------------------------------------------------------------------------ entry
Report rollout_rejection(const RolloutRejectionParams& p, Pool* pool) {
  const int64_t R = p.responses;
  const int C = p.criteria_count;
  const int32_t* ro = p.response_offsets;
  const int64_t W = int64_t(ro[R]) + kResponseWeight * R;
  int64_t items = W / kItemWeight;
  items = items < 1 ? 1 : items > kMaxItems ? kMaxItems : items;
  int64_t item_start[kMaxItems + 1];
  for (int64_t i = 0; i < items; ++i) item_start[i] = first_at(ro, R, i * W / items + (i * W % items != 0));
  item_start[0] = 0;
  item_start[items] = R;
  Part* parts = static_cast<Part*>(malloc(size_t(items) * sizeof(Part)));
  if (!parts) return Report{kNoMemory, 0, 0};
  Job J{};
  J.p = &p;
  J.T = ro[R];
  J.item_start = item_start;
  J.parts = parts;
  int need = 0;
  for (int c = 0; c < C; ++c) {
    const int j = int(p.criteria[c].statistic);
    const RejectionLevel level = p.criteria[c].level;
    need |= 1 << j;
    if (level == RejectionLevel::Token) {
      J.tok[J.n_tok++] = c;
      J.tok_stat[j] = true;
    } else {
      J.seq[J.n_seq++] = c;
      (level == RejectionLevel::SeqMax ? J.max_stat : J.sum_stat)[j] = true;
    }
  }
  pool_run(pool, items, pick(need), &J);
  // The records in item order.
  Part a = part_empty();
  for (int64_t i = 0; i < items; ++i) {
    const Part& b = parts[i];
    a.n_tok += b.n_tok;
    a.n_seq += b.n_seq;
    a.any_tok += b.any_tok;
    a.any_seq += b.any_seq;
    for (int c = 0; c < C; ++c) {
      CritPart& x = a.c[c];
      const CritPart& y = b.c[c];
      x.sum += y.sum;
      x.max = nan_max(x.max, y.max);
      x.min = nan_min(x.min, y.min);
      x.high += y.high;
      x.low += y.low;
      x.rej_tok += y.rej_tok;
      x.rej_seq += y.rej_seq;
    }
  }
  free(parts);
  const double n_tok = double(a.n_tok), n_seq = double(a.n_seq);  // 0/0 below: NaN, as the reference
  p.stats[0] = float(double(a.any_tok) / n_tok);
  p.stats[1] = float(double(a.any_seq) / double(R));
  for (int c = 0; c < C; ++c) {
    const CritPart& x = a.c[c];
    const double denom = p.criteria[c].level == RejectionLevel::Token ? n_tok : n_seq;
    float* st = p.stats + 2 + 7 * c;
    st[0] = float(x.sum / n_tok);
    st[1] = float(x.max);
    st[2] = float(x.min);
    st[3] = float(double(x.high) / denom);
    st[4] = float(double(x.low) / denom);
    st[5] = float(double(x.rej_tok) / n_tok);
    st[6] = float(double(x.rej_seq) / n_seq);
  }
  return Report{kOk, 0, 0};
}

}  // namespace GK_CPU_ISA
}  // namespace cpu
}  // namespace gk
