// logprobs family on the native cpu backend: forward, backward, gatherProbs. Compiled once per
// instruction set (gk::cpu::avx2 with -mavx2 -mfma -mf16c, gk::cpu::portable; native/cpu/kernels.h).
//
// Compiled a third time as gk::cpu::avx512 (-mavx512f -mavx512bw) for the forward alone: its pass-1
// and pass-2 loops take two of the AVX2 build's 8-lane vectors as one 16-lane vector (simd.h, VW: the
// pair (k, k + 1) for f32 and f16, a bf16 group's v0 | v2 and v1 | v3), so every lane chain sees the
// same terms in the same order: the AVX2 build's bits at about half the instructions
// (test/cpu-native/avx512.test.ts).
//
// FORWARD  z = x / T per row of [N, V]; lse = log Σ e^z; logprob = z_y − lse; entropy = −Σ p log p;
//          Σp² = Σ e^{2(z−lse)}. Same outputs, rules and edge cases as the float64 reference
//          (src/backends/js/logprobs.ts): ignored rows are not read and give 0; NaN or +Inf in a row
//          gives NaN in all its outputs; −Inf elements contribute 0; a row of all −Inf is a RANGE fault
//          (the lowest such row); a target outside [0, V) is a RANGE fault found before any work.
//   Blocks. A row is cut into segments of kSeg = 4096 elements (V alone fixes them; the last may be
//   short). A segment is read twice: pass 1 takes its max m_s of the raw logits (f32, f16: four running
//   maxima, f16 decoded into an f32 buffer on the way; bf16: the max of its bits as int16, which order
//   as the values where the sign bit is clear and in reverse where it is set, so the int16 max where
//   that is ≥ 0, else the int16 min: exact, no decode, no store), pass 2, from L1, sums over its
//   elements, with d = (x − m_s)/T taken in base 2 as t = (x − m_s)·s2, s2 = log2(e)/T rounded once to
//   f32 (e^d = 2^t, the CUDA kernels' form):
//     s0 = Σ 2^t,  s1 = ln2·Σ 2^t·t = Σ e^d·d,  s2 = Σ 2^{2t}   (s1, s2 only for entropy or Σp²).
//   Each term (pass2's term): d = x − m_s (exact for the max itself: its term is exactly 1), clamped at
//   dlo = −127/s2; n = round(d·s2) and f = d·s2 − n by two FMAs (f: one rounding, |f| ≤ 1/2, no rounded
//   t in between), 2^t = (1 + f·Q(f))·2^n (simd.h's exp2_neg5 polynomial; 2^n from the bias trick's
//   bits, +0 for t below −126.5, −Inf elements among them). Above T ~ 1.9e36 −127/s2 would overflow:
//   there t = (x − m_s)·s2 is rounded first and clamped at −127 (the premultiplied form).
//   Pass 2 runs in sub-blocks of kSub = 128 elements (16 vectors of 8 lanes): two f32 accumulators per
//   sum, so each of the 16 lane chains adds 8 terms (f32, f16: the even and the odd vectors; bf16, in
//   groups of 32 elements: a group's two unpacks of its first 16 values to the first, of the next 16 to
//   the second, a padded last group's −Inf adding +0); at the end of the sub-block the two are added
//   and the 8 lanes are added, converted, to 8 f64 lane sums; at the end of the segment the f64 lanes
//   are added in a fixed tree. Segments are combined per row in f64
//   in segment order, each rescaled from its own max: with M = max_s m_s and δ = (m_s − M)/T, r = e^δ,
//     S0 = Σ r·s0,  S1 = Σ r·(s1 + δ·s0),  S2 = Σ r²·s2,
//   lse = M/T + log S0, logprob = (x_y − M)/T − log S0, entropy = log S0 − S1/S0, Σp² = S2/S0², in f64,
//   rounded once to f32. The online state is on raw logits (d = (x − m)/T, never x/T, which may
//   overflow where d does not: docs/DESIGN.md, "Temperature").
//   Work: an item is (row, 16 consecutive segments); items write their segments' partial sums to a
//   per-row slot and the item that completes a row (an atomic count) combines it. Every sum is thus a
//   function of the row's elements and V alone: the same bits for any thread count, any N, any
//   position of the row in the batch (tests: test/cpu-native/invariance.test.ts).
//   Accuracy, guaranteed. The polynomial is within 3.7u = 2.2e-7 relative of 2^f for every f32 f in
//   [−1/2, 1/2] (u = 2^-24; 3.8u in the portable build without FMA, which moves the bounds below by
//   under 1e-8; exp2_neg5 in simd.h: a degree-5 minimax polynomial, one FMA fewer than the backward's
//   exp2 at 1.3u); f's one rounding (≤ 2^-26) adds ln2·2^-26 = 1.0e-8: every term within ε = 2.3e-7 of
//   2^{d·s2}. d·s2 carries the roundings of x − m_s and of s2, ≤ 2u·|t|, a relative error of the term
//   ≤ 2u·ln2·|t| which, weighted by e^d, adds at most 2u·max_d(e^d·|d|) = 2u/e ≈ 4.4e-8 of S0 (the
//   premultiplied form: 3u/e = 6.6e-8, its f exact, ε = 2.2e-7). An f32 chain of 8 terms ≥ 0, added to
//   the other chain's 8, errs by at most 8u = 4.8e-7 of its sum; past that everything is f64. So S0 and
//   S1 carry a relative error ≤ 2.3e-7 + 0.44e-7 + 4.8e-7 = 7.6e-7 (premultiplied: 7.6e-7 too) of their
//   (same-sign) terms, S2 (terms e², 2ε) ≤ 1.1e-6: log S0 within 7.6e-7 absolute, so
//   lse and logprob within 7.6e-7 + 1 ulp (plus the f32 rounding of x/T, u·|z|, in the target's
//   logit); entropy, a sum of two nonnegative terms, within 1.6e-6 relative; Σp² = S2/S0² within
//   2.6e-6 relative. The worst case is coherent: every term of a row at the polynomial's worst point
//   (f = 0.2129: −3.7u; f = −0.4375: +2.2u), a test of its own. Measured against the float64
//   reference: test/cpu-native/ops.test.ts states each bound (2e-6; Σp² 4e-6).
//   Per element: pass 1 a load and a max (f16: + a decode and a store; bf16: one int16 max per 32
//   values at 512 bits, from the bits, no decode, run during the previous segment's pass 2 where the
//   item has one), pass 2 a load (bf16: with its unpack), then 12
//   instructions: sub, max, FMA, sub, FMS, 5 FMA, shift and the FMA that adds 2^f·2^n (+ a
//   multiplication, an addition and 2 FMAs with the statistics). Bytes: N·V·sizeof(x) read once from
//   memory (+ N·(4 + 4·outputs)). Pass 2 computes from L1 while memory would idle, so it prefetches the
//   next 16 KiB of its item meanwhile (one line per 16 elements, no branch; no change to any bit), the
//   item's last segment the first 16 KiB of the item its thread likely takes next (item + threads: items
//   go out in order), so that no item starts cold. Measured (bench/RESULTS.md, "fifth session", 2
//   cores): bf16 compute-bound, 6.9-7.1 G elements/s per core from L2 at 512 bits (5.6-5.8 before the
//   bit-level pass 1, the two-FMA exponent and the one-vector f64 sums; the AVX2 build 5.0-5.3, 4.7
//   before): ~8.7 cycles per 16 elements against 7 for its 14 vector instructions on the two 512-bit ports.
//
// BACKWARD gradLogits = [g·(1[v=y] − p_v) − gE·p_v·(log p_v + H)] / T with log2 p_v = x_v·s2 − lse·log2 e
//   (one FMA: one rounding; lse·log2 e rounded once, the exponent error |lse|·2^-24 the f32 lse itself
//   carries), p_v = 2^{log2 p_v}, in f32, rounded once to the logits' dtype (round to nearest even:
//   F16C's vcvtps2ph, integer rounding for bf16). The target's element is recomputed in
//   f64 as the reference does (its one-hot term cancels against p_y). An element with z = −Inf (masked)
//   has p = 0 and gives −(g + gE)/T·0 (so a NaN or ±Inf upstream gradient stays NaN, as in the
//   reference). Elementwise: an element's bits depend on its own logit and its row's scalars alone.
//   Items: (row, 16384 columns). In place (gradLogits == logits) is safe: an item reads each vector
//   before it writes it, and no two items share an element; the target's logit is read first. The
//   gradient goes out by non-temporal stores (from the output's first 32-byte boundary), in place too.
//   Ignored rows are not read and get 0. Bytes: N·V·sizeof(x) read + N·V·sizeof(x) written.
//
// GATHER PROBS  probs[g][i, k] = e^{x[t, V*_g[k]]/T − lse[t]} in f64, rounded once (a gather: random
//   columns of a row, each a cache miss, the loads in a loop of their own; Σ T_g·K_g elements).
//   The exponential is our own f64 one, as vectors (exp_to_f32: within a few f64 ulp, so the one
//   rounding gives the f32 within one ulp of the exact value). Items: 16 tokens.
#include "kernels.h"
#include "simd.h"

#include <stdlib.h>

namespace gk {
namespace cpu {
namespace GK_CPU_ISA {
namespace {

constexpr int64_t kSeg = 4096;         // elements per segment (one max; pass 2 reads it from L1)
constexpr int kSub = 128;              // elements per f32 sub-block (16 vectors)
constexpr int64_t kSegsPerItem = 16;   // segments per work item
constexpr int64_t kBwdChunk = 16384;   // columns per backward work item
constexpr int64_t kGatherTokens = 16;  // tokens per gatherProbs work item
constexpr double kInf = __builtin_inf();
constexpr float kInfF = __builtin_inff();

inline bool is_nan(double x) { return x != x; }
inline int64_t imin64(int64_t a, int64_t b) { return a < b ? a : b; }

// The f32 factor log2(e)/T the kernels multiply raw logit differences by (their exponential is 2^t):
// at least FLT_MIN, so −Inf times it stays −Inf when it underflows (T above ~1e38, the uniform limit
// either way). For T ≥ 2^-126 (the API's floor) it is finite.
inline float scale2_of(double T) {
  const float f = float(1.4426950408889634 / T);
  return f < 1.17549435e-38f ? 1.17549435e-38f : f;
}
constexpr double kLn2 = 0.6931471805599453;

struct Partial {
  double m;  // the segment's max raw logit (−Inf: no element above −Inf)
  double s0, s1, s2;
};

// Pass 2's exponential (header, "Pass 2"): e = 2^{dc·s2}, dc = max(x − m_s, dlo) (NaN kept), with dlo =
// −127/s2 rounded (finite where s2 ≥ 2^-120: dc·s2 ≥ −127 − 2^-17); bb = dc·s2 + kRoundBias by one FMA (n
// = round(dc·s2), plus 127, in its low bits), n = bb − kRoundBias, f = dc·s2 − n by one FMA (one
// rounding, |f| ≤ 1/2), 2^f = 1 + f·Q(f) (simd.h, exp2_neg5's polynomial), times 2^n from bb's bits (+0
// at n = −127: every dc·s2 below −126.5, −Inf elements among them). Where s2 < 2^-120 (T above ~1.9e36)
// −127/s2 would overflow and a −Inf element could not be told from −FLT_MAX: there (kPremul) d =
// (x − m_s)·s2 is formed first and the same steps run with s2 = 1 and dlo = −127.
struct Pass2Args {
  float m, s, dlo, s2;  // s, dlo: s2 and −127/s2, or 1 and −127 (kPremul)
};

// One vector of pass 2's terms, accumulated: a += 2^f·2^n in one FMA; with kStats, e = 2^f·2^n, b += e·t
// (t = n + f), c += e². `c` holds Pass2Args' four values as vectors. V: VF (8 lanes) or, in the
// AVX-512 build, VW (16; the same operations lane by lane, simd.h).
template <bool kStats, bool kPremul, class V>
inline void term(V x, const V* c, V& a, V& b, V& s) {
  V d = sub(x, c[0]);
  if (kPremul) d = mul(d, c[3]);
  const V dc = clamp_lo(d, c[2]);
  const V bias = splat_as(x, kRoundBias);
  const V bb = fmadd(dc, c[1], bias);
  const V n = sub(bb, bias);
  const V f = fmsub(dc, c[1], n);
  V p = splat_as(x, kExp2C5[0]);
  for (int i = 1; i < 5; ++i) p = fmadd(p, f, splat_as(x, kExp2C5[i]));
  p = fmadd(p, f, splat_as(x, 1.0f));
  const V pw = pow2_biased(bb);
  a = fmadd(p, pw, a);
  if (kStats) {
    const V e = mul(p, pw);
    b = fmadd(e, add(n, f), b);
    s = fmadd(e, e, s);
  }
}

// Pass 2 of a segment (see segment): its sums as f64 lanes d[0..2] (s0, Σe·t, Σe²). bf16: the int16
// max of the next segment's bits [nx, nx + nlen) (pass 1 of that segment, nlen ≤ len) is taken on the
// way, into *next_hi, where nlen > 0.
template <int D, bool kStats, bool kPremul>
void pass2(const void* row, int64_t j0, int64_t len, const float* x, const float* tail, const Pass2Args& pa,
           const char* next, int64_t next_lines, VD* d, const int16_t* nx, int64_t nlen, int16_t* next_hi) {
  const VF c[4] = {set1(pa.m), set1(pa.s), set1(pa.dlo), set1(pa.s2)};
#if GK_SIMD_WIDE
  const VW w[4] = {wset1(pa.m), wset1(pa.s), wset1(pa.dlo), wset1(pa.s2)};
#endif
  // Pass 2 computes from L1 while memory would idle: fetch what comes next meanwhile, one 64-byte line
  // per 16 elements (16 KiB: the next f32 segment, the next two f16/bf16 ones), without a branch: past
  // next_lines the pointer stops moving (a line already requested). Into L2, not L1: a line every few
  // ns would hold more L1 fill buffers than there are (f32 10% faster, measured). Bits do not change.
  const char* pf = next;
  const int64_t pf_step = next_lines > 0 ? 64 : 0;
  const char* pf_end = next + (next_lines > 0 ? (next_lines - 1) * 64 : 0);
  auto prefetch = [&] {
    __builtin_prefetch(pf, 0, 2);
    pf = pf < pf_end ? pf + pf_step : pf;
  };
  if (D == kBF16) {
    // In groups of 32 elements, four to a sub-block: a group's 8-lane vectors in load_bf16x16's order
    // (v0, v1 of its first 16 elements, v2, v3 of the next 16), v0 then v1 to the 0 accumulators, v2
    // then v3 to the 1 accumulators (so each of the 16 lane chains adds 8 terms per sub-block; the
    // AVX-512 build's two unpacks give v0 | v2 and v1 | v3). The last group is padded with −Inf
    // (terms +0, which add nothing).
    const uint16_t* hb = static_cast<const uint16_t*>(row) + j0;
    const int64_t ngroups = (len + 31) / 32, gfull = len / 32;
    alignas(64) uint16_t gtail[32];
    if (gfull < ngroups) {
      for (int i = 0; i < 32; ++i) gtail[i] = 0xff80u;
      memcpy(gtail, hb + gfull * 32, size_t(len - gfull * 32) * 2);
    }
    // The next segment's pass 1, a group of its bits per group here (from L2, where this segment's
    // predecessor prefetched it): its loads wait on nothing of this pass. Past its groups, 32 times
    // −32768 (a max without a branch).
    alignas(64) static const int16_t kBitsMin[32] = {-32768, -32768, -32768, -32768, -32768, -32768, -32768, -32768,
                                                     -32768, -32768, -32768, -32768, -32768, -32768, -32768, -32768,
                                                     -32768, -32768, -32768, -32768, -32768, -32768, -32768, -32768,
                                                     -32768, -32768, -32768, -32768, -32768, -32768, -32768, -32768};
    HM hm = hm_init();
    const int64_t nfull = nlen / 32;
    for (int64_t g0 = 0; g0 < ngroups; g0 += kSub / 32) {
      const int64_t g1 = g0 + kSub / 32 < ngroups ? g0 + kSub / 32 : ngroups;
      VF a0 = zero(), a1 = zero(), b0 = zero(), b1 = zero(), c0 = zero(), c1 = zero();
#if GK_SIMD_WIDE
      VW A = wzero(), B = wzero(), C = wzero();
      for (int64_t g = g0; g < g1; ++g) {
        prefetch();
        prefetch();
        hm = hm_acc32(hm, g < nfull ? nx + g * 32 : kBitsMin);
        VW lo, hi;
        wload_bf16x32(g < gfull ? hb + g * 32 : gtail, lo, hi);
        term<kStats, kPremul>(lo, w, A, B, C);
        term<kStats, kPremul>(hi, w, A, B, C);
      }
      a0 = wlo(A), a1 = whi(A), b0 = wlo(B), b1 = whi(B), c0 = wlo(C), c1 = whi(C);
#else
      for (int64_t g = g0; g < g1; ++g) {
        prefetch();
        prefetch();
        hm = hm_acc32(hm, g < nfull ? nx + g * 32 : kBitsMin);
        const uint16_t* h = g < gfull ? hb + g * 32 : gtail;
        VF v0, v1, v2, v3;
        load_bf16x16(h, v0, v1);
        load_bf16x16(h + 16, v2, v3);
        term<kStats, kPremul>(v0, c, a0, b0, c0);
        term<kStats, kPremul>(v1, c, a0, b0, c0);
        term<kStats, kPremul>(v2, c, a1, b1, c1);
        term<kStats, kPremul>(v3, c, a1, b1, c1);
      }
#endif
      dacc(d[0], add(a0, a1));
      if (kStats) {
        dacc(d[1], add(b0, b1));
        dacc(d[2], add(c0, c1));
      }
    }
    if (nlen > 0) {
      int16_t mx = hm_max(hm);
      for (int64_t j = nfull * 32; j < nlen; ++j) mx = nx[j] > mx ? nx[j] : mx;
      *next_hi = mx;
    }
    return;
  }
  const int64_t nvec = (len + kLanes - 1) / kLanes;
  const int64_t full = len / kLanes;
  constexpr int64_t kSubVec = kSub / kLanes;
  // Vector k of the segment (f32: its padded tail past `full`).
  auto vec = [&](int64_t k) { return (D != kF32 || k < full) ? load(x + k * kLanes) : load(tail); };
  for (int64_t k0 = 0; k0 < nvec; k0 += kSubVec) {
    const int64_t k1 = k0 + kSubVec < nvec ? k0 + kSubVec : nvec;
    VF a0 = zero(), a1 = zero(), b0 = zero(), b1 = zero(), c0 = zero(), c1 = zero();
    // Even vectors to the 0 accumulators, odd ones to the 1 accumulators (sub-blocks start even).
    int64_t k = k0;
#if GK_SIMD_WIDE
    {  // a0 | a1, b0 | b1, c0 | c1 as 16-lane accumulators over the vector pairs (k, k + 1)
      VW A = wzero(), B = wzero(), C = wzero();
      for (; k + 2 <= k1; k += 2) {
        prefetch();
        // f32: the pair's second vector may be the padded tail (k + 1 == full).
        const VW v = (D != kF32 || k + 1 < full) ? wload(x + k * kLanes) : wjoin(load(x + k * kLanes), load(tail));
        term<kStats, kPremul>(v, w, A, B, C);
      }
      a0 = wlo(A), a1 = whi(A), b0 = wlo(B), b1 = whi(B), c0 = wlo(C), c1 = whi(C);
    }
#endif
    for (; k + 2 <= k1; k += 2) {
      prefetch();
      term<kStats, kPremul>(vec(k), c, a0, b0, c0);
      term<kStats, kPremul>(vec(k + 1), c, a1, b1, c1);
    }
    if (k < k1) term<kStats, kPremul>(vec(k), c, a0, b0, c0);
    dacc(d[0], add(a0, a1));
    if (kStats) {
      dacc(d[1], add(b0, b1));
      dacc(d[2], add(c0, c1));
    }
  }
}

// The int16 max of n bf16 values' bits (pass 1 of a segment whose predecessor did not take it).
inline int16_t bits_max(const int16_t* h, int64_t n) {
  int16_t m = -32768;
  for (int64_t j = 0; j < n; ++j) m = h[j] > m ? h[j] : m;
  return m;
}

// One segment's partial sums: elements [j0, j0 + len) of `row`. `buf` holds kSeg + 8 floats (the
// decoded segment for f16; f32 reads the row itself, its tail from a padded copy; bf16 its own bits).
// bf16: `hi` is the int16 max of the segment's bits, and the next segment's ([nx, nx + nlen), nlen = 0
// where none follows in the item) goes to *next_hi.
template <int D, bool kStats>
Partial segment(const void* row, int64_t j0, int64_t len, float scale2, float* buf, const char* next,
                int64_t next_lines, int16_t hi, const int16_t* nx, int64_t nlen, int16_t* next_hi) {
  const int64_t nvec = (len + kLanes - 1) / kLanes;
  const int64_t full = len / kLanes;
  const float* x = nullptr;
  alignas(32) float tail[kLanes];
  float m;
  if (D == kBF16) {
    // Pass 1 on the bits (segments): as int16, the values with the sign bit clear order as their floats
    // (a positive NaN above +Inf), those with it set in reverse (−0 the least, then down to −Inf, then
    // the negative NaNs). So the max is the int16 max where that is ≥ 0, else the int16 min (exact
    // either way: no order to fix).
    uint16_t mb = uint16_t(hi);
    if (hi < 0) {
      const int16_t* h = static_cast<const int16_t*>(row) + j0;
      int16_t lo = 32767;
      for (int64_t j = 0; j < len; ++j) lo = h[j] < lo ? h[j] : lo;
      // Only −Inf and negative NaNs: −Inf (the NaN search below finds a NaN).
      mb = uint16_t(lo) >= 0xff80u ? uint16_t(0xff80u) : uint16_t(lo);
    }
    m = bf16_to_f32_scalar(mb);
    // No pass 2 to take the next segment's max on the way: take it here.
    if ((m != m || m == kInfF || m == -kInfF) && nlen > 0) *next_hi = bits_max(nx, nlen);
    if (m != m) return Partial{double(m), double(m), 0.0, 0.0};  // a positive NaN: the row's outputs NaN
  } else {
    // Pass 1: the max (NaN ignored), four running maxima (a max is exact: their order cannot matter);
    // f16 decoded into buf on the way.
    VF m0 = set1(-kInfF), m1 = m0, m2 = m0, m3 = m0;
    int64_t k = 0;
    if (D == kF32) {
      x = static_cast<const float*>(row) + j0;
#if GK_SIMD_WIDE
      {  // m0 | m1 and m2 | m3 as two 16-lane maxima (simd.h, VW): the same four maxima
        VW w01 = wset1(-kInfF), w23 = w01;
        for (; k + 4 <= full; k += 4) {
          w01 = wmax_skip_nan(w01, wload(x + k * kLanes));
          w23 = wmax_skip_nan(w23, wload(x + (k + 2) * kLanes));
        }
        m0 = wlo(w01), m1 = whi(w01), m2 = wlo(w23), m3 = whi(w23);
      }
#endif
      for (; k + 4 <= full; k += 4) {
        m0 = max_skip_nan(m0, load(x + k * kLanes));
        m1 = max_skip_nan(m1, load(x + (k + 1) * kLanes));
        m2 = max_skip_nan(m2, load(x + (k + 2) * kLanes));
        m3 = max_skip_nan(m3, load(x + (k + 3) * kLanes));
      }
      for (; k < full; ++k) m0 = max_skip_nan(m0, load(x + k * kLanes));
      if (full < nvec) {
        store(tail, load_row<D>(row, j0 + full * kLanes, int(len - full * kLanes)));
        m1 = max_skip_nan(m1, load(tail));
      }
    } else {
#if GK_SIMD_WIDE
      {  // v0 | v1 and v2 | v3 of the loop below, decoded, stored and maxed 16 lanes at a time
        VW w01 = wset1(-kInfF), w23 = w01;
        for (; k + 4 <= full; k += 4) {
          const uint16_t* h = static_cast<const uint16_t*>(row) + j0 + k * kLanes;
          const VW a = wload_f16x16(h);
          const VW b = wload_f16x16(h + 2 * kLanes);
          wstore(buf + k * kLanes, a);
          wstore(buf + (k + 2) * kLanes, b);
          w01 = wmax_skip_nan(w01, a);
          w23 = wmax_skip_nan(w23, b);
        }
        m0 = wlo(w01), m1 = whi(w01), m2 = wlo(w23), m3 = whi(w23);
      }
#endif
      for (; k + 4 <= full; k += 4) {
        const VF v0 = load_row<D>(row, j0 + k * kLanes, kLanes);
        const VF v1 = load_row<D>(row, j0 + (k + 1) * kLanes, kLanes);
        const VF v2 = load_row<D>(row, j0 + (k + 2) * kLanes, kLanes);
        const VF v3 = load_row<D>(row, j0 + (k + 3) * kLanes, kLanes);
        store(buf + k * kLanes, v0);
        store(buf + (k + 1) * kLanes, v1);
        store(buf + (k + 2) * kLanes, v2);
        store(buf + (k + 3) * kLanes, v3);
        m0 = max_skip_nan(m0, v0);
        m1 = max_skip_nan(m1, v1);
        m2 = max_skip_nan(m2, v2);
        m3 = max_skip_nan(m3, v3);
      }
      for (; k < nvec; ++k) {
        const int c = k < full ? kLanes : int(len - full * kLanes);
        const VF v = load_row<D>(row, j0 + k * kLanes, c);
        store(buf + k * kLanes, v);
        m0 = max_skip_nan(m0, v);
      }
      x = buf;
    }
    m = hmax(max_skip_nan(max_skip_nan(m0, m1), max_skip_nan(m2, m3)));
  }
  Partial p{double(m), 0.0, 0.0, 0.0};
  if (m == -kInfF) {
    // No element above −Inf: the segment adds nothing, unless it holds a NaN (which max skipped).
    for (int64_t j = 0; j < len; ++j) {
      const float v = element(row, D, j0 + j);
      if (v != v) {
        p.s0 = v;
        break;
      }
    }
    return p;
  }
  if (m == kInfF) {
    p.s0 = __builtin_nan("");  // softmax is ∞/∞: the row's outputs are NaN
    return p;
  }
  // Pass 2, in sub-blocks of kSub elements.
  VD d[3] = {dzero(), dzero(), dzero()};
  if (scale2 >= 0x1p-120f) {
    const Pass2Args pa{m, scale2, float(-127.0 / double(scale2)), scale2};
    pass2<D, kStats, false>(row, j0, len, x, tail, pa, next, next_lines, d, nx, nlen, next_hi);
  } else {
    const Pass2Args pa{m, 1.0f, kExp2Lo, scale2};
    pass2<D, kStats, true>(row, j0, len, x, tail, pa, next, next_lines, d, nx, nlen, next_hi);
  }
  p.s0 = dsum(d[0]);
  if (kStats) {
    p.s1 = kLn2 * dsum(d[1]);  // Σ e^d·d in natural units (the sums took t = d·log2 e)
    p.s2 = dsum(d[2]);
  }
  return p;
}

template <int D, bool kStats>
void segments(const void* row, int64_t vocab, int64_t s0, int64_t s1, float scale2, float* buf, Partial* out,
              const char* after, int64_t after_bytes) {
  const int16_t* h = static_cast<const int16_t*>(row);
  // bf16: the first segment's pass 1 (each later one's runs in its predecessor's pass 2).
  int16_t hi = D == kBF16 ? bits_max(h + s0 * kSeg, (vocab - s0 * kSeg < kSeg ? vocab - s0 * kSeg : kSeg)) : 0;
  for (int64_t s = s0; s < s1; ++s) {
    const int64_t j0 = s * kSeg;
    const int64_t len = vocab - j0 < kSeg ? vocab - j0 : kSeg;
    // The next 16 KiB of this item (one f32 segment, two f16/bf16 ones), prefetched during this
    // segment's pass 2 (one 64-byte line per 16 elements).
    const int64_t item_end = s1 * kSeg < vocab ? s1 * kSeg : vocab;
    const int64_t ahead = item_end - (j0 + len);
    const int64_t bytes = ahead * int64_t(elem_size(D)) < 16384 ? ahead * int64_t(elem_size(D)) : 16384;
    const char* next = static_cast<const char*>(row) + size_t(j0 + len) * elem_size(D);
    const bool last = s + 1 == s1;
    // bf16: the next segment of the item, whose pass 1 this one's pass 2 takes.
    const int64_t nlen = D == kBF16 && s + 1 < s1 ? (vocab - (j0 + len) < kSeg ? vocab - (j0 + len) : kSeg) : 0;
    int16_t next_hi = -32768;
    out[s] = segment<D, kStats>(row, j0, len, scale2, buf, last ? after : next,
                                ((last ? after_bytes : bytes) + 63) / 64, hi, h + j0 + len, nlen, &next_hi);
    hi = next_hi;
  }
}

using SegmentsFn = void (*)(const void*, int64_t, int64_t, int64_t, float, float*, Partial*, const char*, int64_t);

template <int D>
SegmentsFn pick_segments(bool stats) {
  return stats ? segments<D, true> : segments<D, false>;
}

// Lowers *slot to v (atomically): the smallest bad row wins whatever the timing.
inline void atomic_min(int64_t* slot, int64_t v) {
  int64_t cur = __atomic_load_n(slot, __ATOMIC_RELAXED);
  while (v < cur && !__atomic_compare_exchange_n(slot, &cur, v, true, __ATOMIC_RELAXED, __ATOMIC_RELAXED)) {
  }
}

struct ForwardJob {
  const LogprobsParams* p;
  SegmentsFn fn;
  int64_t row0;  // first row of this chunk
  int64_t rows;  // in this chunk
  int64_t nseg, items_per_row;
  int threads;
  float scale2;
  Partial* partials;  // [chunk rows][nseg]
  int32_t* done;      // [chunk rows]: items finished
  float* bufs;        // [threads][kSeg + 8]
  int64_t neg_inf_row;
};

void forward_finish(ForwardJob& J, int64_t r) {
  const LogprobsParams& p = *J.p;
  const int64_t i = J.row0 + r;
  const Partial* ps = J.partials + r * J.nseg;
  double M = -kInf;
  bool nan = false;
  for (int64_t s = 0; s < J.nseg; ++s) {
    if (ps[s].m > M) M = ps[s].m;
    if (is_nan(ps[s].s0)) nan = true;
  }
  const double T = p.temperature;
  const float qnan = __builtin_nanf("");
  if (nan || M == kInf) {
    p.logprobs[i] = qnan;
    p.lse[i] = qnan;
    if (p.entropy) p.entropy[i] = qnan;
    if (p.sum_squares) p.sum_squares[i] = qnan;
    return;
  }
  if (M == -kInf) {
    atomic_min(&J.neg_inf_row, i);
    p.logprobs[i] = qnan;
    p.lse[i] = qnan;
    if (p.entropy) p.entropy[i] = qnan;
    if (p.sum_squares) p.sum_squares[i] = qnan;
    return;
  }
  double S0 = 0, S1 = 0, S2 = 0;
  for (int64_t s = 0; s < J.nseg; ++s) {
    if (ps[s].m == -kInf) continue;
    const double delta = (ps[s].m - M) / T;
    const double r = __builtin_exp(delta);
    if (r == 0) continue;  // its terms vanish (δ·s0 might be −Inf·…)
    S0 += r * ps[s].s0;
    S1 += r * (ps[s].s1 + delta * ps[s].s0);
    S2 += r * r * ps[s].s2;
  }
  const double log_s0 = __builtin_log(S0);
  const char* row = static_cast<const char*>(p.logits) + size_t(i) * size_t(p.vocab) * elem_size(p.dtype);
  const double xt = element(row, p.dtype, p.targets[i]);
  p.logprobs[i] = float((xt - M) / T - log_s0);
  p.lse[i] = float(M / T + log_s0);
  if (p.entropy) p.entropy[i] = float(log_s0 - S1 / S0);
  if (p.sum_squares) p.sum_squares[i] = float(S2 / (S0 * S0));
}

void forward_item(void* ctx, int64_t item, int worker) {
  ForwardJob& J = *static_cast<ForwardJob*>(ctx);
  const LogprobsParams& p = *J.p;
  const int64_t r = item / J.items_per_row;
  const int64_t k = item % J.items_per_row;
  const int64_t i = J.row0 + r;
  if (p.targets[i] != p.ignore_index) {
    const int64_t s0 = k * kSegsPerItem;
    const int64_t s1 = s0 + kSegsPerItem < J.nseg ? s0 + kSegsPerItem : J.nseg;
    const char* row = static_cast<const char*>(p.logits) + size_t(i) * size_t(p.vocab) * elem_size(p.dtype);
    // The item this thread likely takes next (items go out in order to `threads` threads): its first
    // 16 KiB, prefetched during this item's last segment (a guess: no bit depends on it).
    const int64_t nxt = item + J.threads;
    const char* after = nullptr;
    int64_t after_bytes = 0;
    if (nxt < J.rows * J.items_per_row && p.targets[J.row0 + nxt / J.items_per_row] != p.ignore_index) {
      const int64_t j = (nxt % J.items_per_row) * kSegsPerItem * kSeg;
      const int64_t ahead = (p.vocab - j) * int64_t(elem_size(p.dtype));
      after = static_cast<const char*>(p.logits) +
              (size_t(J.row0 + nxt / J.items_per_row) * size_t(p.vocab) + size_t(j)) * elem_size(p.dtype);
      after_bytes = ahead < 16384 ? ahead : 16384;
    }
    J.fn(row, p.vocab, s0, s1, J.scale2, J.bufs + size_t(worker) * (kSeg + 16), J.partials + r * J.nseg, after,
         after_bytes);
  }
  if (__atomic_add_fetch(&J.done[r], 1, __ATOMIC_ACQ_REL) != J.items_per_row) return;
  if (p.targets[i] == p.ignore_index) {
    p.logprobs[i] = 0;
    p.lse[i] = 0;
    if (p.entropy) p.entropy[i] = 0;
    if (p.sum_squares) p.sum_squares[i] = 0;
    return;
  }
  forward_finish(J, r);
}

// ------------------------------------------------------------------------------------------ backward
struct BackwardJob {
  const LogprobsBackwardParams* p;
  int64_t chunks_per_row;
  float scale2;
};

// The target element in f64, as the reference computes it.
double target_gradient(double x, double T, double l, double a1, double b1, double h, bool with_entropy) {
  const double z = x / T;
  double v;
  if (z == -kInf) {
    v = -(with_entropy ? a1 + b1 : a1) * (l != l ? l : 0.0);  // a NaN row (NaN lse): NaN, as every element
  } else {
    const double logp = z - l;
    const double pr = __builtin_exp(logp);
    v = with_entropy ? -pr * (a1 + b1 * (logp + h)) : -a1 * pr;
  }
  return v + a1;
}

template <int D, bool kEntropy>
void backward_chunk(const LogprobsBackwardParams& p, int64_t i, int64_t c0, int64_t c1, float scale2) {
  const size_t es = elem_size(D);
  const char* in = static_cast<const char*>(p.logits) + size_t(i) * size_t(p.vocab) * es;
  char* out = static_cast<char*>(p.grad_logits) + size_t(i) * size_t(p.vocab) * es;
  const int64_t t = p.targets[i];
  if (t == p.ignore_index) {
    for (int64_t j = c0; j < c1; j += kLanes) {
      const int c = c1 - j < kLanes ? int(c1 - j) : kLanes;
      store_row<D>(out, j, zero(), c);
    }
    return;
  }
  const double T = p.temperature;
  const double a1d = double(p.grad_logprobs[i]) / T;
  const double b1d = kEntropy ? double(p.grad_entropy[i]) / T : 0.0;
  const double hd = kEntropy ? double(p.entropy[i]) : 0.0;
  const bool has_t = t >= c0 && t < c1;
  const double xt = has_t ? element(in, D, t) : 0.0;  // read before any store (in place)
  const float l = p.lse[i];
  const VF va1 = set1(float(a1d));
  const VF vb1 = set1(float(b1d));
  const VF vh = set1(float(hd));
  // log2 p = x·log2(e)/T − lse·log2(e): one FMA (lse·log2 e rounded once to f32, an exponent error of
  // |lse|·2^-24 as the f32 lse itself carries), p = 2^that.
  const VF vs2 = set1(scale2);
  const VF vnl2 = set1(float(-double(l) * 1.4426950408889634));
  const VF vln2 = set1(float(kLn2));
  const VF vneg_max = set1(-3.40282347e38f);
  // (0, or NaN in a row whose lse is NaN: a NaN or +Inf logit makes every element of the row NaN)
  const VF vzg = set1(-(float(a1d) + float(b1d)) * (l != l ? l : 0.0f));
  const VF vneg_a1 = set1(-float(a1d));
  auto grad = [&](VF x) {
    const VF t2 = fmadd(x, vs2, vnl2);
    const VF pr = exp2_full(t2);
    if (!kEntropy) return mul(vneg_a1, pr);
    // log p in natural units, finite (p = 0 wherever t2 is −Inf).
    const VF logp = mul(clamp_lo(t2, vneg_max), vln2);
    const VF g = mul(set1(-1.0f), mul(pr, fmadd(vb1, add(logp, vh), va1)));
    // x = −Inf (a masked logit): −(a1 + b1)·0 as the reference, never 0·(−Inf).
    return select_lt(g, vzg, x, vneg_max);
  };
  // A head up to the output's stream alignment, then non-temporal stores (the gradient is not read back
  // soon; out of place this skips the read-for-ownership of the output's lines, in place the write-back
  // of dirty lines: 25% faster in place, measured), then the tail. In place, each vector is loaded
  // before it is stored.
  int64_t j = c0;
  const int64_t head = imin64(c1 - c0, stream_head<D>(out, c0));
  if (head > 0) store_row<D>(out, j, grad(load_row<D>(in, j, int(head))), int(head));
  j += head;
  for (; j + kLanes <= c1; j += kLanes) stream_row<D>(out, j, grad(load_row<D>(in, j, kLanes)));
  if (j < c1) store_row<D>(out, j, grad(load_row<D>(in, j, int(c1 - j))), int(c1 - j));
  stream_fence();
  if (has_t) {
    const float v = float(target_gradient(xt, T, double(l), a1d, b1d, hd, kEntropy));
    if (D == kF32) reinterpret_cast<float*>(out)[t] = v;
    else if (D == kF16) reinterpret_cast<uint16_t*>(out)[t] = f32_to_f16_scalar(v);
    else reinterpret_cast<uint16_t*>(out)[t] = f32_to_bf16_scalar(v);
  }
}

void backward_item(void* ctx, int64_t item, int) {
  BackwardJob& J = *static_cast<BackwardJob*>(ctx);
  const LogprobsBackwardParams& p = *J.p;
  const int64_t i = item / J.chunks_per_row;
  const int64_t c0 = (item % J.chunks_per_row) * kBwdChunk;
  const int64_t c1 = c0 + kBwdChunk < p.vocab ? c0 + kBwdChunk : p.vocab;
  const bool ent = p.grad_entropy != nullptr;
  switch (p.dtype) {
    case kF32:
      return ent ? backward_chunk<kF32, true>(p, i, c0, c1, J.scale2)
                 : backward_chunk<kF32, false>(p, i, c0, c1, J.scale2);
    case kF16:
      return ent ? backward_chunk<kF16, true>(p, i, c0, c1, J.scale2)
                 : backward_chunk<kF16, false>(p, i, c0, c1, J.scale2);
    default:
      return ent ? backward_chunk<kBF16, true>(p, i, c0, c1, J.scale2)
                 : backward_chunk<kBF16, false>(p, i, c0, c1, J.scale2);
  }
}

// ------------------------------------------------------------------------------------------ gather
struct GatherJob {
  const GatherProbsParams* p;
};

// e^y in f64 for |y| up to ~700, to within a few f64 ulp: n = round(y·log2 e), r = y − n·ln2 (Cody and
// Waite: ln2 in two parts, n·ln2_hi exact), e^r by its Taylor polynomial of degree 11 (|r| ≤ ln2/2:
// remainder below 7e-15 relative), times 2^n from the exponent bits. y is first clamped to [−110, 100]:
// the results are only ever rounded to f32, where e^y is 0 below −104 and +Inf above 89 either way.
// NaN stays NaN. The one rounding to f32 that follows is then the correctly rounded value of e^y
// except within ~1e-15 of a rounding boundary: within one f32 ulp.
constexpr double kExpShifter = 6755399441055744.0;  // 1.5·2^52: adding it rounds to an integer
constexpr double kLog2eD = 1.4426950408889634, kLn2Hi = 6.93147180369123816490e-01,
                 kLn2Lo = 1.90821492927058770002e-10;
constexpr double kExpC[12] = {1.0,
                              1.0,
                              1.0 / 2,
                              1.0 / 6,
                              1.0 / 24,
                              1.0 / 120,
                              1.0 / 720,
                              1.0 / 5040,
                              1.0 / 40320,
                              1.0 / 362880,
                              1.0 / 3628800,
                              1.0 / 39916800};

// out[i] = f32(e^{y[i]}) for i < n (n a multiple of 4; y padded by the caller).
void exp_to_f32(const double* y, float* out, int64_t n) {
#if GK_SIMD_AVX2
  for (int64_t i = 0; i < n; i += 4) {
    __m256d v = _mm256_loadu_pd(y + i);
    v = _mm256_max_pd(_mm256_set1_pd(-110.0), v);  // NaN kept (the second operand)
    v = _mm256_min_pd(_mm256_set1_pd(100.0), v);
    const __m256d b = _mm256_fmadd_pd(v, _mm256_set1_pd(kLog2eD), _mm256_set1_pd(kExpShifter));
    const __m256d nn = _mm256_sub_pd(b, _mm256_set1_pd(kExpShifter));
    __m256d r = _mm256_fnmadd_pd(nn, _mm256_set1_pd(kLn2Hi), v);
    r = _mm256_fnmadd_pd(nn, _mm256_set1_pd(kLn2Lo), r);
    __m256d q = _mm256_set1_pd(kExpC[11]);
    for (int k = 10; k >= 0; --k) q = _mm256_fmadd_pd(q, r, _mm256_set1_pd(kExpC[k]));
    const __m256i e = _mm256_slli_epi64(_mm256_add_epi64(_mm256_castpd_si256(b), _mm256_set1_epi64x(1023)), 52);
    _mm_storeu_ps(out + i, _mm256_cvtpd_ps(_mm256_mul_pd(q, _mm256_castsi256_pd(e))));
  }
#elif defined(__GNUC__) || defined(__clang__)
  typedef double v2d __attribute__((vector_size(16)));
  typedef int64_t v2l __attribute__((vector_size(16)));
  for (int64_t i = 0; i < n; i += 2) {
    v2d v;
    memcpy(&v, y + i, 16);
    const v2d lo = {-110.0, -110.0}, hi = {100.0, 100.0};
    v2l m = v < lo;  // NaN: false, kept
    v = (v2d)(((v2l)lo & m) | ((v2l)v & ~m));
    m = v > hi;
    v = (v2d)(((v2l)hi & m) | ((v2l)v & ~m));
    const v2d b = v * kLog2eD + kExpShifter;
    const v2d nn = b - kExpShifter;
    v2d r = v - nn * kLn2Hi;
    r = r - nn * kLn2Lo;
    v2d q = {kExpC[11], kExpC[11]};
    for (int k = 10; k >= 0; --k) q = q * r + kExpC[k];
    const v2l e = ((v2l)b + 1023) << 52;
    const v2d x = q * (v2d)e;
    out[i] = float(x[0]);
    out[i + 1] = float(x[1]);
  }
#else
  for (int64_t i = 0; i < n; ++i) out[i] = float(__builtin_exp(y[i]));
#endif
}

// Work: the (token, column) pairs of an item in order. The loads come first, up to kChunk columns of a
// row at a time into a buffer of exponents y = x/T − lse (f64): each column is a cache miss in a long
// row (sorted, but strided beyond the hardware prefetcher, and on 4 KiB pages mostly a TLB miss too:
// 600 KB rows; uploaded logits sit on 2 MiB pages, native/cpu/memory.cc, 1.2-1.5x faster), and with
// nothing else in the loop the core keeps dozens of them in flight by itself (a software prefetch 16-64
// pairs ahead made it 2-2.5x slower on 4 KiB pages; one of the next token's columns, into L1, L2 or L3,
// gained nothing on 2 MiB pages: measured). Then the exponentials, as vectors.
void gather_item(void* ctx, int64_t item, int) {
  const GatherProbsParams& p = *static_cast<GatherJob*>(ctx)->p;
  const int64_t t0 = item * kGatherTokens;
  const int64_t t1 = t0 + kGatherTokens < p.num_tokens ? t0 + kGatherTokens : p.num_tokens;
  // The group of t0: the last g with group_token_offsets[g] ≤ t0 among non-empty groups.
  int64_t lo = 0, hi = p.groups;  // invariant: offsets[lo] ≤ t0 < offsets[hi]
  while (hi - lo > 1) {
    const int64_t mid = (lo + hi) / 2;
    if (p.group_token_offsets[mid] <= t0) lo = mid;
    else hi = mid;
  }
  const size_t es = elem_size(p.dtype);
  const char* logits = static_cast<const char*>(p.logits);
  constexpr int64_t kChunk = 512;
  alignas(32) double y[kChunk];
  alignas(32) float tail[4];
  int64_t g = lo;
  for (int64_t t = t0; t < t1; ++t) {
    while (t >= p.group_token_offsets[g + 1]) ++g;
    const int64_t c0 = p.vocab_offsets[g];
    const int64_t K = p.vocab_offsets[g + 1] - c0;
    float* out = p.probs + int64_t(p.probs_offsets[g]) + (t - p.group_token_offsets[g]) * K;
    const char* row = logits + size_t(t) * size_t(p.vocab) * es;
    const double l = p.lse[t];
    for (int64_t k0 = 0; k0 < K; k0 += kChunk) {
      const int64_t n = K - k0 < kChunk ? K - k0 : kChunk;
      for (int64_t k = 0; k < n; ++k) {
        // A column outside [0, V) (device columns that disagree with the validated host copy) reads
        // nothing and gives NaN, as the cuda and webgpu kernels do.
        const int32_t c = p.columns[c0 + k0 + k];
        y[k] = c >= 0 && c < p.vocab ? double(element(row, p.dtype, c)) / p.temperature - l : __builtin_nan("");
      }
      const int64_t n4 = n & ~int64_t(3);
      exp_to_f32(y, out + k0, n4);
      if (n4 < n) {
        // The last 1-3 columns through the same vector code (padded), so every column's bits are the
        // same whichever lane it lands in.
        for (int64_t k = n; k < n4 + 4; ++k) y[k - n4] = 0.0;
        for (int64_t k = n4; k < n; ++k) y[k - n4] = y[k];
        exp_to_f32(y, tail, 4);
        for (int64_t k = n4; k < n; ++k) out[k0 + k] = tail[k - n4];
      }
    }
  }
}

}  // namespace

// ------------------------------------------------------------------------------------------ entries
Report logprobs(const LogprobsParams& p, Pool* pool) {
  Report rep{kOk, 0, 0};
  if (p.rows == 0) return rep;
  const int64_t bad = bad_target(p.targets, p.rows, p.vocab, p.ignore_index);
  if (bad >= 0) return Report{kTargetRange, bad, p.targets[bad]};
  const bool stats = p.entropy != nullptr || p.sum_squares != nullptr;
  SegmentsFn fn = p.dtype == kF32   ? pick_segments<kF32>(stats)
                  : p.dtype == kF16 ? pick_segments<kF16>(stats)
                                    : pick_segments<kBF16>(stats);
  const int64_t nseg = (p.vocab + kSeg - 1) / kSeg;
  const int64_t items_per_row = (nseg + kSegsPerItem - 1) / kSegsPerItem;
  // Rows in chunks whose partials take at most ~4 MiB.
  int64_t chunk = (int64_t(4) << 20) / (nseg * int64_t(sizeof(Partial)));
  if (chunk < 1) chunk = 1;
  if (chunk > p.rows) chunk = p.rows;
  const int threads = pool_threads(pool);
  Partial* partials = static_cast<Partial*>(malloc(size_t(chunk * nseg) * sizeof(Partial)));
  int32_t* done = static_cast<int32_t*>(malloc(size_t(chunk) * sizeof(int32_t)));
  float* bufs = static_cast<float*>(aligned_alloc(64, size_t(threads) * (kSeg + 16) * sizeof(float)));
  if (!partials || !done || !bufs) {
    free(partials);
    free(done);
    free(bufs);
    return Report{kNoMemory, 0, 0};
  }
  ForwardJob J{&p,    fn,      0,    0,   nseg, items_per_row, threads, scale2_of(p.temperature),
               partials, done, bufs, INT64_MAX};
  for (int64_t row0 = 0; row0 < p.rows; row0 += chunk) {
    const int64_t n = p.rows - row0 < chunk ? p.rows - row0 : chunk;
    J.row0 = row0;
    J.rows = n;
    memset(done, 0, size_t(n) * sizeof(int32_t));
    pool_run(pool, n * items_per_row, forward_item, &J);
  }
  free(partials);
  free(done);
  free(bufs);
  if (J.neg_inf_row != INT64_MAX) return Report{kAllNegInf, J.neg_inf_row, 0};
  return rep;
}

Report logprobs_backward(const LogprobsBackwardParams& p, Pool* pool) {
  if (p.rows == 0) return Report{kOk, 0, 0};
  const int64_t bad = bad_target(p.targets, p.rows, p.vocab, p.ignore_index);
  if (bad >= 0) return Report{kTargetRange, bad, p.targets[bad]};
  BackwardJob J{&p, (p.vocab + kBwdChunk - 1) / kBwdChunk, scale2_of(p.temperature)};
  pool_run(pool, p.rows * J.chunks_per_row, backward_item, &J);
  return Report{kOk, 0, 0};
}

Report gather_probs(const GatherProbsParams& p, Pool* pool) {
  if (p.num_tokens == 0 || p.groups == 0) return Report{kOk, 0, 0};
  GatherJob J{&p};
  pool_run(pool, (p.num_tokens + kGatherTokens - 1) / kGatherTokens, gather_item, &J);
  return Report{kOk, 0, 0};
}

}  // namespace GK_CPU_ISA
}  // namespace cpu
}  // namespace gk
