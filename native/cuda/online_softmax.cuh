// The online softmax state over raw logits, shared by logprobs.cu and lmhead.cu (device code): the
// state (m, s, t, q) in base 2, its update by a batch of logits, the fixed-order merge of two states,
// and the outputs of a row from its merged state. Formulas and numerics: logprobs.cu's header.
#pragma once

#include <cfloat>
#include <climits>
#include <cmath>

#include "common.cuh"

namespace gk {

constexpr unsigned kFullMask = 0xffffffffu;

// m: running max of the raw logits x; s = Σ 2^{(x−m)·scale2}; t = Σ 2^{d}·d and q = Σ 2^{2d}, d = (x−m)·scale2.
struct OnlineState {
  float m, s, t, q;
};

__device__ __forceinline__ OnlineState empty_state() { return {-INFINITY, 0.f, 0.f, 0.f}; }

// r += x rescaled to r.m (r.m ≥ x.m). An x whose max is −Inf holds only zeros, or NaN when its span had
// NaN: add it unscaled so NaN propagates and 0·(−Inf) never appears.
__device__ __forceinline__ void add_scaled(OnlineState& r, const OnlineState& x, float scale2) {
  if (x.m == -INFINITY) {
    r.s += x.s;
    r.t += x.t;
    r.q += x.q;
    return;
  }
  const float dm = (x.m - r.m) * scale2;  // ≤ 0 (NaN only for +Inf − +Inf, which must give NaN)
  const float c = ex2_ftz(dm);
  r.s = fmaf(c, x.s, r.s);
  // (c·dm)·s, and 0 where c is 0: dm·s may overflow and dm may be −Inf (logits ±3e38 apart), while the
  // vanished part contributes 0 (NaN in x.s or x.t still propagates).
  const float cdm = c == 0.f ? 0.f : c * dm;
  r.t = fmaf(cdm, x.s, fmaf(c, x.t, r.t));
  r.q = fmaf(c * c, x.q, r.q);
}

// Merge in a fixed order (a, then b): the same inputs give the same bits.
__device__ __forceinline__ OnlineState state_merge(const OnlineState& a, const OnlineState& b, float scale2) {
  OnlineState r{fmaxf(a.m, b.m), 0.f, 0.f, 0.f};
  add_scaled(r, a, scale2);
  add_scaled(r, b, scale2);
  return r;
}

// Folds K raw logits into the state: at most one rescale per call. kStats: also t and q (entropy, Σp²);
// without them each element costs a subtraction, a multiplication, one MUFU.EX2 and an addition.
template <bool kStats, int K>
__device__ __forceinline__ void state_update(OnlineState& st, const float (&x)[K], float scale2) {
  float cm = x[0];
#pragma unroll
  for (int k = 1; k < K; ++k) cm = fmaxf(cm, x[k]);  // fmaxf drops NaN; NaN still reaches s below
  if (cm > st.m) {
    if (st.m != -INFINITY) {
      const float dm = (st.m - cm) * scale2;
      const float c = ex2_ftz(dm);
      if (kStats) {
        // (c·dm)·s: dm·s may overflow to −Inf where c is 0 (T near 2^-126), and dm itself may be −Inf
        // (logits ±3e38 apart): the vanished part contributes 0 (NaN stays NaN through s and t).
        const float cdm = c == 0.f ? 0.f : c * dm;
        st.t = fmaf(cdm, st.s, c * st.t);
        st.q *= c * c;
      }
      st.s *= c;
    }
    st.m = cm;
  }
  // While the max is −Inf every non-NaN x is −Inf: subtracting 0 gives e = 0 and keeps NaN as NaN.
  // x − m is 0 exactly for the max itself (a one-token row gets log p = 0, as the float64 reference).
  const float ms = st.m == -INFINITY ? 0.f : st.m;
#pragma unroll
  for (int k = 0; k < K; ++k) {
    const float d = (x[k] - ms) * scale2;
    const float e = ex2_ftz(d);
    st.s += e;
    if (kStats) {
      st.t = fmaf(e, fmaxf(d, -FLT_MAX), st.t);  // d = −Inf has e = 0: 0·(−FLT_MAX), never 0·(−Inf)
      st.q = fmaf(e, e, st.q);
    }
  }
}

__device__ __forceinline__ OnlineState shfl_down(const OnlineState& s, int off) {
  return {__shfl_down_sync(kFullMask, s.m, off), __shfl_down_sync(kFullMask, s.s, off),
          __shfl_down_sync(kFullMask, s.t, off), __shfl_down_sync(kFullMask, s.q, off)};
}

struct FwdOut {
  float* logprobs;
  float* lse;
  float* entropy;
  float* sum_squares;
};

__device__ __forceinline__ void write_row(const FwdOut& o, int64_t row, float lp, float lse, float ent,
                                          float ssq) {
  o.logprobs[row] = lp;
  o.lse[row] = lse;
  if (o.entropy) o.entropy[row] = ent;
  if (o.sum_squares) o.sum_squares[row] = ssq;
}

// Outputs of one row from its merged state (one thread). xt is the target's raw logit.
__device__ inline void finish_row(int64_t row, const OnlineState& st, int64_t vocab, int tgt, float xt, float inv_t,
                           const FwdOut& o, ErrorFlags* flags) {
  if (tgt < 0 || tgt >= vocab) {
    raise_flag(flags, kFlagTargetRange, static_cast<int>(row), tgt);
    write_row(o, row, NAN, NAN, NAN, NAN);
    return;
  }
  if (st.m == -INFINITY && st.s == 0.f) {  // every logit −Inf: no distribution
    raise_flag(flags, kFlagAllNegInf, static_cast<int>(row), 0);
    write_row(o, row, NAN, NAN, NAN, NAN);
    return;
  }
  const float ls = logf(st.s);
  write_row(o, row, (xt - st.m) * inv_t - ls, fmaf(st.m, inv_t, ls), ls - kLn2 * (st.t / st.s),
            st.q / (st.s * st.s));
}

}  // namespace gk
