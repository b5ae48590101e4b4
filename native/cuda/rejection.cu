// rolloutRejection: verl's rollout rejection sampling (`rollout_rs`, rollout_corr_helper.py
// compute_rollout_rejection_mask and compute_rs_metrics). The definitions, in the order they are
// evaluated, are those of the cpu reference (src/backends/js/rejection.ts); f32 throughout.
//   Per valid token (m_t ≠ 0; a masked token's log-probs are never read): λ_t = clamp(ℓ_t − ℓᵛ_t, ±20)
//   (a NaN stays NaN), k1 = −λ, k2 = λ²/2, k3 = e^λ − 1 − λ (common.cuh's k3_of: no cancellation near 0).
//   Per response r (n_r valid tokens) and criterion c (statistic k, level, [lo, hi]): token level, a
//   token passes iff lo ≤ k_t ≤ hi (NaN fails); seq-sum S_r = Σ k_t, seq-mean S_r = Σ k_t / n_r, seq-max
//   S_r = max k_t (NaN-propagating), over the valid tokens, and the response passes iff lo ≤ S_r ≤ hi
//   (an empty response is never judged). mask_t = 1 where m_t ≠ 0 and no criterion rejects t, else 0;
//   every element of [T] is written.
//   Stats [2 + 7·C] (REJECTION_STATS, then REJECTION_CRITERION_STATS per criterion): maskedFraction =
//   #rejected valid tokens / N_tok, seqMaskedFraction = #responses with one / R; per c: mean = Σ s / N_tok
//   (a response's S_r counted n_r times: n_r·S_r, one fma), max, min, fractionHigh (#s > hi),
//   fractionLow (#s < lo) over the valid tokens (token level, fractions / N_tok) or the nonempty
//   responses (the others, / N_seq), maskedFraction = #valid tokens c rejects / N_tok, seqMaskedFraction
//   = #nonempty responses c rejects a token of / N_seq. An empty set: NaN (mean, fractions), −Inf / +Inf
//   (max / min); a NaN s makes mean, max and min NaN. Every ratio is divided in f64 and rounded once to
//   f32, as the reference does: the ratios of counts are the reference's bits.
//
// TOKENS KERNEL (rejection_tokens_kernel): block b owns the responses [b·CH, min((b+1)·CH, R)), CH the
//   fewest multiple of 8 that keeps ≤ kMaxChunks blocks (R alone sets it); warp w takes the chunk's
//   responses w, w + 8, ... one after another, each whole, however long. Per response, lane j handles
//   the tokens t0 + j, t0 + j + 32, ...:
//   pass A (only with a sequence-level criterion): n_r and, per statistic a sequence-level criterion
//   uses, the lane's Σ k and max k in token order, then the warp's xor butterflies (every lane gets the
//   same sums); each lane judges every sequence-level criterion (seq_fail: any rejects), and lane c keeps
//   criterion c's stats (n_r·S_r, max, min, high, low, rejections) for the warp's responses;
//   pass B: per valid token, the token-level criteria (at most one per statistic), its mask byte, and
//   the lane's token-level stats; then ballots: the response is nonempty, has a rejected token, has one
//   rejected by token criterion k.
//   A response's mask bits depend on its own tokens only: the lane assignment and the butterflies depend
//   on its length, never on R, its position or the block's other responses (batch invariance). The lane's
//   first token (ok, λ) is loaded while the previous response runs and serves both passes; the offsets
//   two responses ahead likewise.
//   The block's partial (one Part: per criterion sum, max, min, high, low, rejected tokens and responses;
//   N_tok, N_seq and the overall rejections): the token-level records by a warp butterfly, the sequence-
//   level ones from their lane, then thread c folds the 8 warps of criterion c in warp order.
// REDUCE KERNEL (rejection_reduce_kernel, one block): warp w takes criteria w, w + 8; lane j folds the
//   partials j, j + 32, ... in order, then a butterfly; lane 0 writes the criterion's 7 stats, warp 0's the
//   2 overall ones. No float atomics anywhere: the stats' bits depend on the inputs and R only.
// Bytes: per token 2 f32 + the u8 mask read (the log-probs only where valid), 1 u8 written: 10 bytes
//   (9 without a mask). With a sequence-level criterion, pass B reads a response's tokens past its first
//   32 again (from L1/L2; up to 32 tokens stay in registers). Per response 8 bytes of offsets; the
//   partials 324 bytes per block. FLOPs per valid token and pass: λ 3, k1 1, k2 2, k3 ~30 (the series'
//   15 fma, or e^λ and 2), 4 per criterion (2 compares, the sums, max, min); per response ≤ 7 butterflies
//   of 5 shuffles (pass A: n_r, Σ k and max k of up to 3 statistics) and ≤ 5 ballots (pass B).
// Registers (nvcc 13.0, -lineinfo, sm_80 and sm_90 alike): tokens kernel 69, reduce 40, no spills.
// Latency (not yet measured on a GPU): one warp per response leaves lanes idle on responses shorter than
//   32 tokens (the per-response butterflies and ballots then dominate, as on policy.cu's warp path), and
//   a batch of a few very long responses runs on few warps: the price of a response's reduction tree
//   depending on its length only.
#include <algorithm>

#include "rejection.cuh"

namespace gk {
namespace {

constexpr unsigned kFull = 0xffffffffu;
constexpr int kThreads = 256;
constexpr int kWarps = kThreads / 32;
constexpr int kMaxChunks = 1024;
constexpr int kStatistics = 3;     // k1, k2, k3
constexpr float kLogClamp = 20.f;  // verl's SAFETY_BOUND on λ
constexpr int kMaxC = kRejectionMaxCriteria;

// One criterion's sums over a set of responses.
struct CritPart {
  float sum, max, min;  // Σ s (a response's S_r once per valid token), max s, min s
  unsigned high, low, rej_tok, rej_seq;
};
// A block's partial record.
struct Part {
  CritPart crit[kMaxC];
  unsigned n_tok, n_seq, any_tok, any_seq;  // valid tokens, nonempty responses, rejected tokens, responses with one
};

GK_HOST_DEVICE inline CritPart crit_empty() {
  CritPart c{};
  c.max = -INFINITY;
  c.min = INFINITY;
  return c;
}
GK_HOST_DEVICE inline CritPart crit_add(const CritPart& a, const CritPart& b) {
  CritPart c;
  c.sum = a.sum + b.sum;
  c.max = max_nan(a.max, b.max);
  c.min = min_nan(a.min, b.min);
  c.high = a.high + b.high;
  c.low = a.low + b.low;
  c.rej_tok = a.rej_tok + b.rej_tok;
  c.rej_seq = a.rej_seq + b.rej_seq;
  return c;
}

// The scalar parameters and pointers the kernels read (a POD copy of RejectionParams).
struct Dev {
  const float *lp, *lv;
  const uint8_t* mask;
  const int* roff;
  int R, chunk, chunks, C;
  int stat[kMaxC], level[kMaxC];  // criterion c's statistic and level (the enums' values)
  float lower[kMaxC], upper[kMaxC];
  // By statistic k: its token-level criterion (−1: none) and that one's bounds.
  int tok_crit[kStatistics];
  float tok_lower[kStatistics], tok_upper[kStatistics];
  unsigned need_tok;  // bit k: a token-level criterion of statistic k
  unsigned need_sum;  // bit k: a seq-sum or seq-mean criterion of statistic k (Σ k)
  unsigned need_max;  // bit k: a seq-max criterion of statistic k (max k)
  uint8_t* out;
  Part* parts;
  float* stats;
};

// (max_nan and min_nan keep a NaN; with ±0 or two NaNs the lanes may differ in sign or payload, so only
// a value's comparisons, or lane 0's bits, are used.)
__device__ __forceinline__ float warp_max(float v) {
  for (int o = 16; o > 0; o >>= 1) v = max_nan(v, __shfl_xor_sync(kFull, v, o));
  return v;
}
__device__ __forceinline__ float warp_min(float v) {
  for (int o = 16; o > 0; o >>= 1) v = min_nan(v, __shfl_xor_sync(kFull, v, o));
  return v;
}
__device__ CritPart warp_crit(CritPart p) {
  p.sum = warp_sum(p.sum);
  p.max = warp_max(p.max);
  p.min = warp_min(p.min);
  p.high = warp_sum_u(p.high);
  p.low = warp_sum_u(p.low);
  p.rej_tok = warp_sum_u(p.rej_tok);
  p.rej_seq = warp_sum_u(p.rej_seq);
  return p;
}

// One token: valid, and its λ (0 for a masked token, whose log-probs are never read).
struct Tok {
  bool ok;
  float lam;
};
__device__ __forceinline__ Tok load_tok(const Dev& d, int64_t t) {
  Tok x;
  x.ok = d.mask == nullptr || d.mask[t] != 0;
  x.lam = 0.f;
  if (x.ok) {
    const float l = __ldg(d.lp + t) - __ldg(d.lv + t);
    x.lam = isnan(l) ? l : fminf(fmaxf(l, -kLogClamp), kLogClamp);  // (fminf / fmaxf alone drop a NaN)
  }
  return x;
}
// The lane's first token of the response [t0, t1), if it has one (the caller prefetches it).
__device__ __forceinline__ Tok load_first(const Dev& d, int t0, int t1) {
  const int64_t t = int64_t(t0) + int(threadIdx.x & 31);  // (64-bit: t1 may be near 2^31)
  return t < t1 ? load_tok(d, t) : Tok{false, 0.f};
}

// Statistic k of λ (k a constant after unrolling: one branch).
__device__ __forceinline__ float statistic(int k, float lam) {
  if (k == 0) return -lam;
  if (k == 1) return 0.5f * lam * lam;
  float em1;
  return k3_of(lam, em1);
}
// a + b never fused with the product that made b (k2's, k3's series): the sums' bits do not hang on
// what the compiler contracts where statistic() is inlined (g++, the emulator, never contracts in ISO
// C++ mode).
__device__ __forceinline__ float add_rn(float a, float b) {
#ifdef GK_CUDA_EMU
  return a + b;
#else
  return __fadd_rn(a, b);
#endif
}
// a[k] for a runtime k, the array kept in registers.
__device__ __forceinline__ float pick(const float (&a)[kStatistics], int k) { return k == 0 ? a[0] : k == 1 ? a[1] : a[2]; }

// A lane's running sums over its warp's responses.
struct Lane {
  // By statistic k, its token-level criterion's: Σ k, max, min over the lane's valid tokens; #k > hi,
  // #k < lo, #rejected; and (lane 0) the responses it rejects a token of.
  float tsum[kStatistics], tmax[kStatistics], tmin[kStatistics];
  unsigned thigh[kStatistics], tlow[kStatistics], trej[kStatistics], trej_seq[kStatistics];
  CritPart own;  // lane c < C: criterion c's record when it is sequence-level
  unsigned n_tok, any_tok;  // the lane's valid and rejected tokens
  unsigned n_seq, any_seq;  // (lane 0) nonempty responses, and those with a rejected token
};

// The response [t0, t1) on one warp: pass A (sequence level), then pass B (token level, the mask).
__device__ void response(const Dev& d, int t0, int t1, const Tok& first, bool has_seq, Lane& acc) {
  const int lane = threadIdx.x & 31;
  bool seq_fail = false;  // a sequence-level criterion rejects the response (the same on every lane)
  if (has_seq) {
    unsigned n = 0;
    float sum[kStatistics] = {0.f, 0.f, 0.f};
    float mx[kStatistics] = {-INFINITY, -INFINITY, -INFINITY};
    auto pass_a = [&](const Tok& x) {
      if (!x.ok) return;
      ++n;
#pragma unroll
      for (int k = 0; k < kStatistics; ++k) {
        if (!((d.need_sum | d.need_max) >> k & 1u)) continue;
        const float s = statistic(k, x.lam);
        if (d.need_sum >> k & 1u) sum[k] = add_rn(sum[k], s);
        if (d.need_max >> k & 1u) mx[k] = max_nan(mx[k], s);
      }
    };
    if (int64_t(t0) + lane < t1) pass_a(first);
    for (int64_t t = int64_t(t0) + lane + 32; t < t1; t += 32) pass_a(load_tok(d, t));  // (64-bit: t1 may be near 2^31)
    n = warp_sum_u(n);
#pragma unroll
    for (int k = 0; k < kStatistics; ++k) {
      if (d.need_sum >> k & 1u) sum[k] = warp_sum(sum[k]);
      if (d.need_max >> k & 1u) mx[k] = warp_max(mx[k]);
    }
    if (n > 0) {  // (an empty response is never judged)
      const float nf = static_cast<float>(n);
      for (int c = 0; c < d.C; ++c) {
        const int level = d.level[c];
        if (level == int(RejectionLevel::Token)) continue;
        const int k = d.stat[c];
        float S = level == int(RejectionLevel::SeqMax) ? pick(mx, k) : pick(sum, k);
        if (level == int(RejectionLevel::SeqMean)) S = S / nf;
        const float lo = d.lower[c], hi = d.upper[c];
        const bool fail = !(S >= lo && S <= hi);
        seq_fail |= fail;
        if (lane == c) {
          acc.own.sum = fmaf(nf, S, acc.own.sum);
          acc.own.max = max_nan(acc.own.max, S);
          acc.own.min = min_nan(acc.own.min, S);
          acc.own.high += S > hi ? 1u : 0u;
          acc.own.low += S < lo ? 1u : 0u;
          if (fail) {
            acc.own.rej_tok += n;
            acc.own.rej_seq += 1;
          }
        }
      }
    }
  }
  // Pass B.
  bool lane_valid = false, lane_any = false;
  bool lane_rej[kStatistics] = {false, false, false};
  auto pass_b = [&](int64_t t, const Tok& x) {
    if (!x.ok) {
      d.out[t] = 0;
      return;
    }
    lane_valid = true;
    acc.n_tok += 1;
    bool rej = seq_fail;
#pragma unroll
    for (int k = 0; k < kStatistics; ++k) {
      if (!(d.need_tok >> k & 1u)) continue;
      const float s = statistic(k, x.lam);
      const float lo = d.tok_lower[k], hi = d.tok_upper[k];
      acc.tsum[k] = add_rn(acc.tsum[k], s);
      acc.tmax[k] = max_nan(acc.tmax[k], s);
      acc.tmin[k] = min_nan(acc.tmin[k], s);
      acc.thigh[k] += s > hi ? 1u : 0u;
      acc.tlow[k] += s < lo ? 1u : 0u;
      const bool fail = !(s >= lo && s <= hi);
      acc.trej[k] += fail ? 1u : 0u;
      lane_rej[k] |= fail;
      rej |= fail;
    }
    d.out[t] = rej ? 0 : 1;
    acc.any_tok += rej ? 1u : 0u;
    lane_any |= rej;
  };
  if (int64_t(t0) + lane < t1) pass_b(int64_t(t0) + lane, first);
  for (int64_t t = int64_t(t0) + lane + 32; t < t1; t += 32) pass_b(t, load_tok(d, t));
  const bool nonempty = __ballot_sync(kFull, lane_valid) != 0;
  const bool any = __ballot_sync(kFull, lane_any) != 0;
#pragma unroll
  for (int k = 0; k < kStatistics; ++k) {
    if (!(d.need_tok >> k & 1u)) continue;
    const bool rejected = __ballot_sync(kFull, lane_rej[k]) != 0;
    if (lane == 0 && rejected) acc.trej_seq[k] += 1;
  }
  if (lane == 0) {
    acc.n_seq += nonempty ? 1u : 0u;
    acc.any_seq += any ? 1u : 0u;
  }
}

// Mask bytes and the block's partial record. One warp per response at a time (see the header).
__global__ void __launch_bounds__(kThreads) rejection_tokens_kernel(Dev d) {
  __shared__ CritPart sh[kWarps][kMaxC];
  __shared__ unsigned shc[kWarps][4];
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  const int lo = blockIdx.x * d.chunk;
  const int hi = min(lo + d.chunk, d.R);
  const bool has_seq = (d.need_sum | d.need_max) != 0;
  Lane acc;
#pragma unroll
  for (int k = 0; k < kStatistics; ++k) {
    acc.tsum[k] = 0.f;
    acc.tmax[k] = -INFINITY;
    acc.tmin[k] = INFINITY;
    acc.thigh[k] = acc.tlow[k] = acc.trej[k] = acc.trej_seq[k] = 0;
  }
  acc.own = crit_empty();
  acc.n_tok = acc.any_tok = acc.n_seq = acc.any_seq = 0;
  // Software pipelined over the warp's responses: the offsets two responses ahead and the next
  // response's first tokens are in flight while this one computes (short responses are latency-bound).
  int r = lo + warp;
  int t0 = 0, t1 = 0, n0 = 0, n1 = 0;
  if (r < hi) t0 = d.roff[r], t1 = d.roff[r + 1];
  if (r + kWarps < hi) n0 = d.roff[r + kWarps], n1 = d.roff[r + kWarps + 1];
  Tok first = load_first(d, t0, t1);
  for (; r < hi; r += kWarps) {
    int m0 = 0, m1 = 0;
    if (r + 2 * kWarps < hi) m0 = d.roff[r + 2 * kWarps], m1 = d.roff[r + 2 * kWarps + 1];
    const Tok next = load_first(d, n0, n1);
    response(d, t0, t1, first, has_seq, acc);
    first = next;
    t0 = n0, t1 = n1;
    n0 = m0, n1 = m1;
  }
  // The warp's records: token level by butterfly (lane 0 keeps them), sequence level from lane c.
#pragma unroll
  for (int k = 0; k < kStatistics; ++k) {
    if (!(d.need_tok >> k & 1u)) continue;
    CritPart t;
    t.sum = acc.tsum[k];
    t.max = acc.tmax[k];
    t.min = acc.tmin[k];
    t.high = acc.thigh[k];
    t.low = acc.tlow[k];
    t.rej_tok = acc.trej[k];
    t.rej_seq = acc.trej_seq[k];
    t = warp_crit(t);
    if (lane == 0) sh[warp][d.tok_crit[k]] = t;
  }
  if (lane < d.C && d.level[lane] != int(RejectionLevel::Token)) sh[warp][lane] = acc.own;
  const unsigned n_tok = warp_sum_u(acc.n_tok), any_tok = warp_sum_u(acc.any_tok);
  if (lane == 0) {
    shc[warp][0] = n_tok;
    shc[warp][1] = acc.n_seq;
    shc[warp][2] = any_tok;
    shc[warp][3] = acc.any_seq;
  }
  __syncthreads();
  // Thread c folds criterion c's 8 warp records in warp order; thread 32 the counts.
  Part* out = d.parts + blockIdx.x;
  const int c = threadIdx.x;
  if (c < d.C) {
    CritPart total = sh[0][c];
    for (int w = 1; w < kWarps; ++w) total = crit_add(total, sh[w][c]);
    out->crit[c] = total;
  }
  if (threadIdx.x == 32) {
    unsigned n[4] = {0, 0, 0, 0};
    for (int w = 0; w < kWarps; ++w)
      for (int i = 0; i < 4; ++i) n[i] += shc[w][i];
    out->n_tok = n[0];
    out->n_seq = n[1];
    out->any_tok = n[2];
    out->any_seq = n[3];
  }
}

// a / b, divided in f64 and rounded once (the reference's); 0/0 is NaN.
__device__ __forceinline__ float ratio(double a, unsigned b) {
  return b == 0 ? NAN : static_cast<float>(a / static_cast<double>(b));
}

__global__ void __launch_bounds__(kThreads) rejection_reduce_kernel(Dev d) {
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  // The counts, in every warp (integers: any order gives their bits).
  unsigned n_tok = 0, n_seq = 0, any_tok = 0, any_seq = 0;
  for (int b = lane; b < d.chunks; b += 32) {
    const Part& p = d.parts[b];
    n_tok += p.n_tok;
    n_seq += p.n_seq;
    any_tok += p.any_tok;
    any_seq += p.any_seq;
  }
  n_tok = warp_sum_u(n_tok);
  n_seq = warp_sum_u(n_seq);
  any_tok = warp_sum_u(any_tok);
  any_seq = warp_sum_u(any_seq);
  if (warp == 0 && lane == 0) {
    d.stats[0] = ratio(any_tok, n_tok);
    d.stats[1] = ratio(any_seq, static_cast<unsigned>(d.R));
  }
  for (int c = warp; c < d.C; c += kWarps) {
    CritPart r = crit_empty();
    for (int b = lane; b < d.chunks; b += 32) r = crit_add(r, d.parts[b].crit[c]);
    r = warp_crit(r);
    if (lane == 0) {
      const unsigned denom = d.level[c] == int(RejectionLevel::Token) ? n_tok : n_seq;
      float* st = d.stats + kRejectionStats + c * kRejectionCriterionStats;
      st[0] = ratio(r.sum, n_tok);
      st[1] = r.max;
      st[2] = r.min;
      st[3] = ratio(r.high, denom);
      st[4] = ratio(r.low, denom);
      st[5] = ratio(r.rej_tok, n_tok);
      st[6] = ratio(r.rej_seq, n_seq);
    }
  }
}

}  // namespace

Status launch_rollout_rejection(const RejectionParams& p, const LaunchEnv& env, Scratch& scratch) {
  GK_REQUIRE(!p.response_offsets.empty() && p.response_offsets.front() == 0,
             "rolloutRejection: responseOffsets needs R+1 ≥ 1 entries from 0");
  const int64_t R64 = int64_t(p.response_offsets.size()) - 1;
  const int64_t T = p.response_offsets.back();
  GK_REQUIRE(R64 < INT32_MAX && T >= 0 && T < INT32_MAX, "rolloutRejection: R and T must be below 2^31");
  const int R = static_cast<int>(R64);
  GK_REQUIRE(p.stats && (T == 0 || (p.logprobs && p.rollout_logprobs && p.mask_out)),
             "rolloutRejection: null pointer");
  const int C = static_cast<int>(p.criteria.size());
  GK_REQUIRE(C >= 1 && C <= kMaxC, "rolloutRejection: expected 1 to 11 criteria");
  GK_REQUIRE(p.chunk_responses % kWarps == 0 && p.chunk_responses >= 0,
             "rolloutRejection: chunk_responses must be a multiple of 8");

  Dev d{};
  d.lp = p.logprobs;
  d.lv = p.rollout_logprobs;
  d.mask = p.mask;
  d.R = R;
  d.C = C;
  for (int k = 0; k < kStatistics; ++k) {
    d.tok_crit[k] = -1;
    d.tok_lower[k] = -INFINITY;
    d.tok_upper[k] = INFINITY;
  }
  for (int c = 0; c < C; ++c) {
    const RejectionCriterion& q = p.criteria[size_t(c)];
    const int k = static_cast<int>(q.statistic), level = static_cast<int>(q.level);
    GK_REQUIRE(k >= 0 && k < kStatistics && level >= 0 && level <= int(RejectionLevel::SeqMax),
               "rolloutRejection: unknown statistic or level");
    for (int e = 0; e < c; ++e)
      GK_REQUIRE(d.stat[e] != k || d.level[e] != level, "rolloutRejection: a (statistic, level) given twice");
    d.stat[c] = k;
    d.level[c] = level;
    d.lower[c] = q.lower;
    d.upper[c] = q.upper;
    const unsigned bit = 1u << k;
    if (q.level == RejectionLevel::Token) {
      d.tok_crit[k] = c;
      d.tok_lower[k] = q.lower;
      d.tok_upper[k] = q.upper;
      d.need_tok |= bit;
    } else if (q.level == RejectionLevel::SeqMax) {
      d.need_max |= bit;
    } else {
      d.need_sum |= bit;
    }
  }
  // The fewest responses per block (a multiple of 8 warps) that keep ≤ kMaxChunks blocks: R alone sets
  // them, so the stats' bits depend on the batch only (never a response's mask bits: see the header).
  int chunk = p.chunk_responses;
  if (chunk == 0) chunk = kWarps * static_cast<int>(std::max<int64_t>(1, ceil_div(R, int64_t(kWarps) * kMaxChunks)));
  const int chunks = static_cast<int>(ceil_div(R, chunk));

  int* roff = nullptr;
  GK_TRY(scratch.upload(&roff, p.response_offsets));
  Part* parts = nullptr;
  GK_TRY(scratch.alloc(&parts, size_t(std::max(chunks, 1))));
  d.roff = roff;
  d.chunk = chunk;
  d.chunks = chunks;
  d.out = p.mask_out;
  d.parts = parts;
  d.stats = p.stats;

  if (chunks > 0) {
    rejection_tokens_kernel<<<unsigned(chunks), kThreads, 0, env.stream>>>(d);
    GK_CHECK_LAUNCH("rejection_tokens_kernel");
  }
  rejection_reduce_kernel<<<1, kThreads, 0, env.stream>>>(d);
  GK_CHECK_LAUNCH("rejection_reduce_kernel");
  return Status::Ok();
}

}  // namespace gk
