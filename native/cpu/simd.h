// Eight f32 lanes, three ways: AVX2 + FMA + F16C intrinsics when the translation unit is compiled with
// them (__AVX2__: the gk::cpu::avx2 build of a kernel file); else (gk::cpu::portable) GCC/Clang vector
// extensions, two 16-byte vectors that every baseline runs natively (SSE2, NEON); else plain arrays of
// 8 floats (other compilers). The kernels are written once against this
// interface. Everything here has internal linkage (an anonymous namespace inside the ISA namespace),
// so the two builds never share a symbol (native/cpu/kernels.h, "per-file flags carry a trap").
//
// Semantics both builds keep (the kernels rely on them):
// - max_skip_nan(acc, x): max with NaN in x ignored (acc returned). clamp_lo(x, lo): max with NaN in x
//   kept (NaN returned). So a running max never turns NaN, and a clamp never hides one.
// - exp2(t) = 2^t, the kernels' exponential (they scale their arguments by log2e once, folded into the
//   1/T factor, as the CUDA kernels do): n = round(t) by the 1.5·2^23 trick, f = t − n exact, 2^f by
//   Cephes' exp2f polynomial (degree 6 on [−0.5, 0.5], 1.7e-7 rms), 2^n from the exponent bits: within
//   2 ulp; t ≤ −127 (and −Inf) gives +0 (results below 2^-126 may be flushed); NaN gives NaN.
//   exp2_neg serves t ≤ 0; exp2_full any t (+Inf past 128, the exact scalar between 126 and 128): the
//   backward's. exp2_neg5, the forward's: the same steps with a degree-5 polynomial, one FMA fewer:
//   1 + f·Q(f), Q the relative-error minimax fit of (2^f − 1)/f on [−0.5, 0.5] (6.8e-8 in exact
//   arithmetic); evaluated in f32 by FMA its error is at most 3.7u = 2.2e-7 relative (u = 2^-24;
//   measured on 48M points, and 1.14u + the Horner roundings, ≤ 1.41u + 0.5u·Σ|f|^k… ≈ 2.6u, bound it),
//   against 1.3u for exp2_neg; without FMA (the portable build on SSE2) 3.8u (test/native/exp2_test.cc
//   checks both). native/cpu/logprobs.cc's header carries it into the forward's bound.
// - f16 → f32 and bf16 → f32 are exact; f32 → f16 and f32 → bf16 round to nearest even (NaN stays
//   NaN, quieted), as the float64 reference's rounding f64 → f32 → half does after its first step.
//   load_bf16x16 decodes 16 values into two vectors in an order of the build's choosing (sums that
//   use it fix their order by position, so the bits stay a function of the data alone).
#pragma once

#include "kernels.h"

#include <stddef.h>
#include <stdint.h>
#include <string.h>

#if defined(__AVX2__) && defined(__FMA__) && defined(__F16C__)
#define GK_SIMD_AVX2 1
#include <immintrin.h>
#else
#define GK_SIMD_AVX2 0
#endif

#ifndef GK_CPU_ISA
#error "GK_CPU_ISA (avx2 | portable) must be defined by the build"
#endif

namespace gk {
namespace cpu {
namespace GK_CPU_ISA {
namespace {

constexpr int kLanes = 8;

// ------------------------------------------------------------------------------ scalar helpers
inline float bits_to_f32(uint32_t b) {
  float f;
  memcpy(&f, &b, 4);
  return f;
}
inline uint32_t f32_to_bits(float f) {
  uint32_t b;
  memcpy(&b, &f, 4);
  return b;
}
inline float f16_to_f32_scalar(uint16_t h) {
  const uint32_t sign = uint32_t(h & 0x8000u) << 16;
  const uint32_t exp = (h >> 10) & 0x1fu;
  uint32_t mant = h & 0x3ffu;
  if (exp == 0x1f) return bits_to_f32(sign | 0x7f800000u | (mant << 13));  // Inf, NaN
  if (exp != 0) return bits_to_f32(sign | ((exp + 112u) << 23) | (mant << 13));
  if (mant == 0) return bits_to_f32(sign);
  // Subnormal: value = mant · 2^-24, exact in f32.
  const float v = float(mant) * 5.9604644775390625e-8f;
  return sign ? -v : v;
}
inline uint16_t f32_to_f16_scalar(float f) {
  const uint32_t x = f32_to_bits(f);
  const uint32_t sign = (x >> 16) & 0x8000u;
  const uint32_t ax = x & 0x7fffffffu;
  if (ax > 0x7f800000u) return uint16_t(sign | 0x7e00u | ((ax >> 13) & 0x3ffu));  // NaN, quieted
  if (ax >= 0x477ff000u) return uint16_t(sign | 0x7c00u);  // rounds to ≥ 65520: Inf
  if (ax < 0x38800000u) {
    // Below 2^-14: f16 subnormal (or 0), value rounded to a multiple of 2^-24.
    if (ax < 0x33000000u) return uint16_t(sign);  // < 2^-25: rounds to 0
    const uint32_t e = ax >> 23;
    const uint32_t m = (ax & 0x7fffffu) | 0x800000u;
    const uint32_t shift = 126u - e;  // 14..24 → mantissa bits to drop: m · 2^(e−150) / 2^-24
    uint32_t q = m >> shift;
    const uint32_t rem = m & ((1u << shift) - 1u);
    const uint32_t half = 1u << (shift - 1u);
    if (rem > half || (rem == half && (q & 1u))) ++q;
    return uint16_t(sign | q);
  }
  uint32_t r = ax + 0xfffu + ((ax >> 13) & 1u);  // round the 13 dropped bits to nearest even
  r = (r - 0x38000000u) >> 13;                    // rebias 127 → 15
  return uint16_t(sign | r);
}
inline float bf16_to_f32_scalar(uint16_t b) { return bits_to_f32(uint32_t(b) << 16); }
inline uint16_t f32_to_bf16_scalar(float f) {
  const uint32_t x = f32_to_bits(f);
  if ((x & 0x7fffffffu) > 0x7f800000u) return uint16_t((x >> 16) | 0x40u);  // NaN, quieted
  return uint16_t((x + 0x7fffu + ((x >> 16) & 1u)) >> 16);
}

// Cephes exp2f: 2^f = 1 + f·P(f) on [−0.5, 0.5], P's coefficients from the highest power down.
constexpr float kE0 = 1.535336188319500e-4f, kE1 = 1.339887440266574e-3f, kE2 = 9.618437357674640e-3f,
                kE3 = 5.550332471162809e-2f, kE4 = 2.402264791363012e-1f, kE5 = 6.931472028550421e-1f;
constexpr float kExp2C6[6] = {kE0, kE1, kE2, kE3, kE4, kE5};
// exp2_neg5: 2^f = 1 + f·Q(f), Q of degree 4: the relative-error minimax fit on [−0.5, 0.5] (a linear
// program on a 4001-point grid), coefficients rounded to f32.
constexpr float kExp2C5[5] = {1.3202981790527701e-3f, 9.674952365458012e-3f, 5.5510472506284714e-2f,
                              2.4022166430950165e-1f, 6.931465864181519e-1f};
constexpr float kExp2Lo = -127.0f;  // n = −127 from here down: 2^n is +0
// 1.5·2^23 + 127: adding it rounds t to an integer n and leaves n + 127 in the low mantissa bits.
constexpr float kRoundBias = 12583039.0f;
constexpr float kLog2e = 1.44269504088896341f;

inline float exp2_scalar(float t) {
  if (t != t) return t;
  if (t > 126.0f) return __builtin_exp2f(t);  // libm: +Inf past 128
  if (t < kExp2Lo) t = kExp2Lo;
  const float b = t + kRoundBias;
  const float n = b - kRoundBias;
  const float f = t - n;
  float p = kE0;
  p = p * f + kE1;
  p = p * f + kE2;
  p = p * f + kE3;
  p = p * f + kE4;
  p = p * f + kE5;
  p = p * f + 1.0f;
  return p * bits_to_f32(f32_to_bits(b) << 23);
}

// Lowest row whose target is neither ignore_index nor in [0, limit); −1 when none (the kernels' report
// of a target only the host array holds: logprobs, the LM head).
inline int64_t bad_target(const int32_t* targets, int64_t rows, int64_t limit, int64_t ignore) {
  for (int64_t i = 0; i < rows; ++i) {
    const int64_t t = targets[i];
    if (t != ignore && (t < 0 || t >= limit)) return i;
  }
  return -1;
}

#if GK_SIMD_AVX2
// ================================================================================= AVX2 + FMA + F16C
struct VF {
  __m256 v;
};
inline VF load(const float* p) { return {_mm256_loadu_ps(p)}; }
inline void store(float* p, VF a) { _mm256_storeu_ps(p, a.v); }
inline VF set1(float x) { return {_mm256_set1_ps(x)}; }
inline VF zero() { return {_mm256_setzero_ps()}; }
inline VF add(VF a, VF b) { return {_mm256_add_ps(a.v, b.v)}; }
inline VF sub(VF a, VF b) { return {_mm256_sub_ps(a.v, b.v)}; }
inline VF mul(VF a, VF b) { return {_mm256_mul_ps(a.v, b.v)}; }
inline VF fmadd(VF a, VF b, VF c) { return {_mm256_fmadd_ps(a.v, b.v, c.v)}; }   // a·b + c
inline VF fnmadd(VF a, VF b, VF c) { return {_mm256_fnmadd_ps(a.v, b.v, c.v)}; }  // c − a·b
inline VF fmsub(VF a, VF b, VF c) { return {_mm256_fmsub_ps(a.v, b.v, c.v)}; }    // a·b − c
inline VF max_skip_nan(VF acc, VF x) { return {_mm256_max_ps(x.v, acc.v)}; }  // NaN x → acc
inline VF clamp_lo(VF x, VF lo) { return {_mm256_max_ps(lo.v, x.v)}; }       // NaN x → x
// Lanes where x ≥ c or x is NaN keep a, the others become +0.
inline VF keep_ge_or_nan(VF a, VF x, VF c) { return {_mm256_and_ps(a.v, _mm256_cmp_ps(x.v, c.v, _CMP_NLT_UQ))}; }
// Lanes where x < c (ordered) take b, the others keep a.
inline VF select_lt(VF a, VF b, VF x, VF c) { return {_mm256_blendv_ps(a.v, b.v, _mm256_cmp_ps(x.v, c.v, _CMP_LT_OQ))}; }
inline float hmax(VF a) {
  __m128 m = _mm_max_ps(_mm256_castps256_ps128(a.v), _mm256_extractf128_ps(a.v, 1));
  m = _mm_max_ps(m, _mm_movehl_ps(m, m));
  m = _mm_max_ss(m, _mm_shuffle_ps(m, m, 1));
  return _mm_cvtss_f32(m);
}

// Eight f64 lanes (lane i of the f32 vectors), for sums carried past a block (one 512-bit vector in
// the AVX-512 build: the same lane sums, one conversion instead of two). dsum adds lanes 0..7 in a fixed
// tree: ((0+4)+(2+6)) + ((1+5)+(3+7)).
#if defined(__AVX512F__)
struct VD {
  __m512d v;
};
inline VD dzero() { return {_mm512_setzero_pd()}; }
inline void dacc(VD& d, VF a) { d.v = _mm512_add_pd(d.v, _mm512_cvtps_pd(a.v)); }
inline double dsum(VD d) {
  const __m256d s = _mm256_add_pd(_mm512_castpd512_pd256(d.v), _mm512_extractf64x4_pd(d.v, 1));
#else
struct VD {
  __m256d lo, hi;
};
inline VD dzero() { return {_mm256_setzero_pd(), _mm256_setzero_pd()}; }
inline void dacc(VD& d, VF a) {
  d.lo = _mm256_add_pd(d.lo, _mm256_cvtps_pd(_mm256_castps256_ps128(a.v)));
  d.hi = _mm256_add_pd(d.hi, _mm256_cvtps_pd(_mm256_extractf128_ps(a.v, 1)));
}
inline double dsum(VD d) {
  const __m256d s = _mm256_add_pd(d.lo, d.hi);
#endif
  const __m128d t = _mm_add_pd(_mm256_castpd256_pd128(s), _mm256_extractf128_pd(s, 1));
  return _mm_cvtsd_f64(_mm_add_sd(t, _mm_unpackhi_pd(t, t)));
}

// p[0..7] += a's lanes, in f64.
inline void dacc_mem(double* p, VF a) {
  _mm256_storeu_pd(p, _mm256_add_pd(_mm256_loadu_pd(p), _mm256_cvtps_pd(_mm256_castps256_ps128(a.v))));
  _mm256_storeu_pd(p + 4, _mm256_add_pd(_mm256_loadu_pd(p + 4), _mm256_cvtps_pd(_mm256_extractf128_ps(a.v, 1))));
}

inline VF load_f16(const uint16_t* p) {
  return {_mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)))};
}
inline VF load_bf16(const uint16_t* p) {
  const __m256i w = _mm256_cvtepu16_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)));
  return {_mm256_castsi256_ps(_mm256_slli_epi32(w, 16))};
}
inline void store_f16(uint16_t* p, VF a) {
  _mm_storeu_si128(reinterpret_cast<__m128i*>(p), _mm256_cvtps_ph(a.v, _MM_FROUND_TO_NEAREST_INT));
}
// Eight f32 → eight bf16 bit patterns (round to nearest even), packed into 128 bits.
inline __m128i to_bf16(VF a) {
  const __m256i x = _mm256_castps_si256(a.v);
  const __m256i lsb = _mm256_and_si256(_mm256_srli_epi32(x, 16), _mm256_set1_epi32(1));
  __m256i r = _mm256_add_epi32(_mm256_add_epi32(x, _mm256_set1_epi32(0x7fff)), lsb);
  // NaN (rare: a branch, not a blend per vector): the top half, quieted (rounding could carry a NaN's
  // payload into the exponent and give ±Inf or a finite value).
  const __m256 isnan = _mm256_cmp_ps(a.v, a.v, _CMP_UNORD_Q);
  if (_mm256_movemask_ps(isnan))
    r = _mm256_blendv_epi8(r, _mm256_or_si256(x, _mm256_set1_epi32(0x400000)), _mm256_castps_si256(isnan));
  // The high 16 bits of each 32-bit lane: bytes 2-3, 6-7, … of each 128-bit half, then the halves joined.
  const __m256i hi16 = _mm256_shuffle_epi8(
      r, _mm256_setr_epi8(2, 3, 6, 7, 10, 11, 14, 15, -1, -1, -1, -1, -1, -1, -1, -1, 2, 3, 6, 7, 10, 11, 14, 15,
                          -1, -1, -1, -1, -1, -1, -1, -1));
  return _mm256_castsi256_si128(_mm256_permute4x64_epi64(hi16, 0x08));
}
inline void store_bf16(uint16_t* p, VF a) { _mm_storeu_si128(reinterpret_cast<__m128i*>(p), to_bf16(a)); }
// 16 bf16 values as two f32 vectors by two unpacks (one 32-byte load; a vpmovzx and a shift per vector
// otherwise), in the order the unpacks give: a = elements 0-3, 8-11; b = 4-7, 12-15.
inline void load_bf16x16(const uint16_t* p, VF& a, VF& b) {
  const __m256i v = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p));
  const __m256i z = _mm256_setzero_si256();
  a.v = _mm256_castsi256_ps(_mm256_unpacklo_epi16(z, v));
  b.v = _mm256_castsi256_ps(_mm256_unpackhi_epi16(z, v));
}

// 2^t for t ≤ 0 (and NaN), either polynomial (see the header): t clamped at −127 (NaN kept), n =
// round(t) by the bias trick, f = t − n exact, 2^n from b's low bits shifted into the exponent.
template <int kDegree>
inline VF exp2_neg_deg(VF t) {
  const __m256 tc = _mm256_max_ps(_mm256_set1_ps(kExp2Lo), t.v);  // NaN kept
  const __m256 b = _mm256_add_ps(tc, _mm256_set1_ps(kRoundBias));
  const __m256 n = _mm256_sub_ps(b, _mm256_set1_ps(kRoundBias));
  const __m256 f = _mm256_sub_ps(tc, n);
  const float* c = kDegree == 6 ? kExp2C6 : kExp2C5;
  __m256 p = _mm256_set1_ps(c[0]);
  for (int k = 1; k < kDegree; ++k) p = _mm256_fmadd_ps(p, f, _mm256_set1_ps(c[k]));
  p = _mm256_fmadd_ps(p, f, _mm256_set1_ps(1.0f));
  const __m256 pow2n = _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_castps_si256(b), 23));
  return {_mm256_mul_ps(p, pow2n)};
}
inline VF exp2_neg(VF t) { return exp2_neg_deg<6>(t); }
inline VF exp2_neg5(VF t) { return exp2_neg_deg<5>(t); }
#if defined(__AVX512F__)
// --------------------------------------------------------------------- 16 lanes (gk::cpu::avx512)
// Two 8-lane vectors in one: VW {a, b} holds a in lanes 0-7 and b in lanes 8-15, so a loop that took
// vectors k and k + 1 into two 8-lane accumulators can take them as one VW into one accumulator, every
// lane doing the same operations on the same values in the same order: the same bits as the 8-lane
// code, at half the instructions (native/cpu/logprobs.cc's forward; gemm.h's tile uses VW too). Each
// operation below is its 8-lane namesake's instruction at 16 lanes (the same operand order, so the same
// NaN rule). GK_SIMD_WIDE (the forward's 16-lane loops) needs AVX-512BW besides, for the bf16 unpacks.
struct VW {
  __m512 v;
};
inline VW wload(const float* p) { return {_mm512_loadu_ps(p)}; }
inline void wstore(float* p, VW a) { _mm512_storeu_ps(p, a.v); }
inline VW wset1(float x) { return {_mm512_set1_ps(x)}; }
inline VW wzero() { return {_mm512_setzero_ps()}; }
inline VW wadd(VW a, VW b) { return {_mm512_add_ps(a.v, b.v)}; }
inline VW wsub(VW a, VW b) { return {_mm512_sub_ps(a.v, b.v)}; }
inline VW wmul(VW a, VW b) { return {_mm512_mul_ps(a.v, b.v)}; }
inline VW wfmadd(VW a, VW b, VW c) { return {_mm512_fmadd_ps(a.v, b.v, c.v)}; }
inline VW wfmsub(VW a, VW b, VW c) { return {_mm512_fmsub_ps(a.v, b.v, c.v)}; }
inline VW wmax_skip_nan(VW acc, VW x) { return {_mm512_max_ps(x.v, acc.v)}; }
inline VW wclamp_lo(VW x, VW lo) { return {_mm512_max_ps(lo.v, x.v)}; }
inline VW wpow2_biased(VW b) { return {_mm512_castsi512_ps(_mm512_slli_epi32(_mm512_castps_si512(b.v), 23))}; }
inline VF wlo(VW a) { return {_mm512_castps512_ps256(a.v)}; }
inline VF whi(VW a) { return {_mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(a.v), 1))}; }
inline VW wjoin(VF a, VF b) {
  return {_mm512_castpd_ps(_mm512_insertf64x4(_mm512_castpd256_pd512(_mm256_castps_pd(a.v)), _mm256_castps_pd(b.v), 1))};
}
// The 8-lane names at 16 lanes, so that code templated on the vector type reads as one (logprobs.cc's
// term); splat_as(v, x) is set1 / wset1 by v's type.
inline VW add(VW a, VW b) { return wadd(a, b); }
inline VW sub(VW a, VW b) { return wsub(a, b); }
inline VW mul(VW a, VW b) { return wmul(a, b); }
inline VW fmadd(VW a, VW b, VW c) { return wfmadd(a, b, c); }
inline VW fmsub(VW a, VW b, VW c) { return wfmsub(a, b, c); }
inline VW clamp_lo(VW x, VW lo) { return wclamp_lo(x, lo); }
inline VW pow2_biased(VW b) { return wpow2_biased(b); }
inline VW splat_as(VW, float x) { return wset1(x); }
#if defined(__AVX512BW__)
#define GK_SIMD_WIDE 1
// 32 bf16 values as two VW by two unpacks: lo = {load_bf16x16(p).a, load_bf16x16(p + 16).a}, hi = the
// two b halves (per 128-bit lane L, elements 8L..8L+3 in lo, 8L+4..8L+7 in hi).
inline void wload_bf16x32(const uint16_t* p, VW& lo, VW& hi) {
  const __m512i v = _mm512_loadu_si512(p);
  const __m512i z = _mm512_setzero_si512();
  lo.v = _mm512_castsi512_ps(_mm512_unpacklo_epi16(z, v));
  hi.v = _mm512_castsi512_ps(_mm512_unpackhi_epi16(z, v));
}
#endif
// 16 f16 values in order (load_f16 of p, then of p + 8).
inline VW wload_f16x16(const uint16_t* p) {
  return {_mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(p)))};
}
template <int kDegree>
inline VW wexp2_neg_deg(VW t) {
  const __m512 tc = _mm512_max_ps(_mm512_set1_ps(kExp2Lo), t.v);
  const __m512 b = _mm512_add_ps(tc, _mm512_set1_ps(kRoundBias));
  const __m512 n = _mm512_sub_ps(b, _mm512_set1_ps(kRoundBias));
  const __m512 f = _mm512_sub_ps(tc, n);
  const float* c = kDegree == 6 ? kExp2C6 : kExp2C5;
  __m512 p = _mm512_set1_ps(c[0]);
  for (int k = 1; k < kDegree; ++k) p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(c[k]));
  p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(1.0f));
  const __m512 pow2n = _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_castps_si512(b), 23));
  return {_mm512_mul_ps(p, pow2n)};
}
inline VW wexp2_neg5(VW t) { return wexp2_neg_deg<5>(t); }
#endif
// 2^t for any t.
inline VF exp2_full(VF t) {
  const __m256 hi = _mm256_set1_ps(126.0f);
  VF y = exp2_neg({_mm256_min_ps(hi, t.v)});  // NaN kept (second operand)
  // Above 126 the exponent bits would overflow: take the scalar 2^t there (+Inf past 128).
  const __m256 big = _mm256_cmp_ps(t.v, hi, _CMP_GT_OQ);
  if (_mm256_movemask_ps(big)) {
    alignas(32) float ts[8], ys[8];
    _mm256_store_ps(ts, t.v);
    _mm256_store_ps(ys, y.v);
    for (int i = 0; i < 8; ++i)
      if (ts[i] > 126.0f) ys[i] = exp2_scalar(ts[i]);
    return {_mm256_load_ps(ys)};
  }
  return y;
}

#elif defined(__GNUC__) || defined(__clang__)
// ============================================== portable: GCC/Clang vector extensions (SSE2, NEON, …)
// Two 16-byte generic vectors per 8 lanes (lanes 0-3, 4-7): every baseline has 128-bit registers, so
// each operation, comparisons included, maps to one native instruction (SSE2 cmpltps, NEON fcmgt, …).
// Comparisons give −1/0 lanes; selects are bitwise (no vector ?: needed).
typedef float v4f __attribute__((vector_size(16)));
typedef int32_t v4i __attribute__((vector_size(16)));
typedef uint32_t v4u __attribute__((vector_size(16)));
typedef uint16_t v4h __attribute__((vector_size(8)));
struct VF {
  v4f lo, hi;
};
inline v4f splat4(float x) { return (v4f){x, x, x, x}; }
inline v4f sel(v4i mask, v4f yes, v4f no) { return (v4f)(((v4i)yes & mask) | ((v4i)no & ~mask)); }
#define GK_BOTH(expr_lo, expr_hi) \
  VF r_;                          \
  r_.lo = (expr_lo);              \
  r_.hi = (expr_hi);              \
  return r_
inline VF load(const float* p) {
  VF r;
  memcpy(&r.lo, p, 16);
  memcpy(&r.hi, p + 4, 16);
  return r;
}
inline void store(float* p, VF a) {
  memcpy(p, &a.lo, 16);
  memcpy(p + 4, &a.hi, 16);
}
inline VF set1(float x) { GK_BOTH(splat4(x), splat4(x)); }
inline VF zero() { return set1(0.0f); }
inline VF add(VF a, VF b) { GK_BOTH(a.lo + b.lo, a.hi + b.hi); }
inline VF sub(VF a, VF b) { GK_BOTH(a.lo - b.lo, a.hi - b.hi); }
inline VF mul(VF a, VF b) { GK_BOTH(a.lo * b.lo, a.hi * b.hi); }
inline VF fmadd(VF a, VF b, VF c) { GK_BOTH(a.lo * b.lo + c.lo, a.hi * b.hi + c.hi); }
inline VF fnmadd(VF a, VF b, VF c) { GK_BOTH(c.lo - a.lo * b.lo, c.hi - a.hi * b.hi); }
inline VF fmsub(VF a, VF b, VF c) { GK_BOTH(a.lo * b.lo - c.lo, a.hi * b.hi - c.hi); }
// NaN x: the comparison is false → acc.
inline VF max_skip_nan(VF acc, VF x) { GK_BOTH(sel(x.lo > acc.lo, x.lo, acc.lo), sel(x.hi > acc.hi, x.hi, acc.hi)); }
// NaN x: false → x.
inline VF clamp_lo(VF x, VF lo) { GK_BOTH(sel(x.lo < lo.lo, lo.lo, x.lo), sel(x.hi < lo.hi, lo.hi, x.hi)); }
inline VF keep_ge_or_nan(VF a, VF x, VF c) {
  GK_BOTH(sel(x.lo < c.lo, splat4(0.0f), a.lo), sel(x.hi < c.hi, splat4(0.0f), a.hi));
}
inline VF select_lt(VF a, VF b, VF x, VF c) { GK_BOTH(sel(x.lo < c.lo, b.lo, a.lo), sel(x.hi < c.hi, b.hi, a.hi)); }
inline float lane(VF a, int i) { return i < 4 ? a.lo[i] : a.hi[i - 4]; }
inline float hmax(VF a) {
  // The AVX2 build's tree: (0,4) (1,5) (2,6) (3,7), then (0,2) (1,3), then (0,1).
  const v4f m = sel(a.hi > a.lo, a.hi, a.lo);
  const float m0 = m[2] > m[0] ? m[2] : m[0];
  const float m1 = m[3] > m[1] ? m[3] : m[1];
  return m1 > m0 ? m1 : m0;
}
struct VD {
  double v[kLanes];
};
inline VD dzero() {
  VD d;
  for (int i = 0; i < kLanes; ++i) d.v[i] = 0.0;
  return d;
}
inline void dacc(VD& d, VF a) {
  for (int i = 0; i < kLanes; ++i) d.v[i] += double(lane(a, i));
}
inline void dacc_mem(double* p, VF a) {
  for (int i = 0; i < kLanes; ++i) p[i] += double(lane(a, i));
}
inline double dsum(VD d) {
  const double s0 = d.v[0] + d.v[4], s1 = d.v[1] + d.v[5], s2 = d.v[2] + d.v[6], s3 = d.v[3] + d.v[7];
  return (s0 + s2) + (s1 + s3);
}
inline VF load_f16(const uint16_t* p) {
  alignas(16) float t[kLanes];
  for (int i = 0; i < kLanes; ++i) t[i] = f16_to_f32_scalar(p[i]);
  return load(t);
}
inline v4f bf16x4(const uint16_t* p) {
  v4h h;
  memcpy(&h, p, sizeof h);
  return (v4f)(__builtin_convertvector(h, v4u) << 16);
}
inline VF load_bf16(const uint16_t* p) { GK_BOTH(bf16x4(p), bf16x4(p + 4)); }
inline void store_f16(uint16_t* p, VF a) {
  for (int i = 0; i < kLanes; ++i) p[i] = f32_to_f16_scalar(lane(a, i));
}
inline void bf16x4_store(uint16_t* p, v4f a) {
  const v4u x = (v4u)a;
  v4u r = (x + 0x7fffu + ((x >> 16) & 1u)) >> 16;
  // NaN: the top half, quieted (rounding could carry the payload into the exponent).
  const v4i nan = a != a;
  r = (v4u)(((v4i)r & ~nan) | ((v4i)((x >> 16) | 0x40u) & nan));
  const v4h h = __builtin_convertvector(r, v4h);
  memcpy(p, &h, sizeof h);
}
inline void store_bf16(uint16_t* p, VF a) {
  bf16x4_store(p, a.lo);
  bf16x4_store(p + 4, a.hi);
}
// 16 bf16 values as two f32 vectors (in order here; the AVX2 build's order differs).
inline void load_bf16x16(const uint16_t* p, VF& a, VF& b) {
  a = load_bf16(p);
  b = load_bf16(p + 8);
}
template <int kDegree>
inline v4f exp2x4(v4f t) {
  const v4f tc = sel(t < splat4(kExp2Lo), splat4(kExp2Lo), t);  // NaN kept
  const v4f b = tc + kRoundBias;
  const v4f n = b - kRoundBias;
  const v4f f = tc - n;
  const float* c = kDegree == 6 ? kExp2C6 : kExp2C5;
  v4f p = splat4(c[0]);
  for (int k = 1; k < kDegree; ++k) p = p * f + c[k];
  p = p * f + 1.0f;
  return p * (v4f)((v4u)b << 23);
}
inline VF exp2_neg(VF t) { GK_BOTH(exp2x4<6>(t.lo), exp2x4<6>(t.hi)); }
inline VF exp2_neg5(VF t) { GK_BOTH(exp2x4<5>(t.lo), exp2x4<5>(t.hi)); }
inline VF exp2_full(VF t) {
  const v4f c = splat4(126.0f);
  VF r = exp2_neg({sel(t.lo > c, c, t.lo), sel(t.hi > c, c, t.hi)});
  const v4i big = (t.lo > c) | (t.hi > c);
  if (big[0] | big[1] | big[2] | big[3]) {
    alignas(16) float ts[kLanes], ys[kLanes];
    store(ts, t);
    store(ys, r);
    for (int i = 0; i < kLanes; ++i)
      if (ts[i] > 126.0f) ys[i] = exp2_scalar(ts[i]);
    return load(ys);
  }
  return r;
}
#undef GK_BOTH

#else
// ============================================== portable without vector extensions: arrays of 8 lanes
struct VF {
  float v[kLanes];
};
#define GK_LANES for (int i_ = 0; i_ < kLanes; ++i_)
inline VF load(const float* p) {
  VF r;
  memcpy(r.v, p, sizeof r.v);
  return r;
}
inline void store(float* p, VF a) { memcpy(p, a.v, sizeof a.v); }
inline VF set1(float x) {
  VF r;
  GK_LANES r.v[i_] = x;
  return r;
}
inline VF zero() { return set1(0.0f); }
inline VF add(VF a, VF b) {
  GK_LANES a.v[i_] += b.v[i_];
  return a;
}
inline VF sub(VF a, VF b) {
  GK_LANES a.v[i_] -= b.v[i_];
  return a;
}
inline VF mul(VF a, VF b) {
  GK_LANES a.v[i_] *= b.v[i_];
  return a;
}
inline VF fmadd(VF a, VF b, VF c) {
  GK_LANES c.v[i_] = a.v[i_] * b.v[i_] + c.v[i_];
  return c;
}
inline VF fnmadd(VF a, VF b, VF c) {
  GK_LANES c.v[i_] = c.v[i_] - a.v[i_] * b.v[i_];
  return c;
}
inline VF fmsub(VF a, VF b, VF c) {
  GK_LANES c.v[i_] = a.v[i_] * b.v[i_] - c.v[i_];
  return c;
}
inline VF max_skip_nan(VF acc, VF x) {
  GK_LANES acc.v[i_] = x.v[i_] > acc.v[i_] ? x.v[i_] : acc.v[i_];
  return acc;
}
inline VF clamp_lo(VF x, VF lo) {
  GK_LANES x.v[i_] = x.v[i_] < lo.v[i_] ? lo.v[i_] : x.v[i_];
  return x;
}
inline VF keep_ge_or_nan(VF a, VF x, VF c) {
  GK_LANES a.v[i_] = x.v[i_] < c.v[i_] ? 0.0f : a.v[i_];
  return a;
}
inline VF select_lt(VF a, VF b, VF x, VF c) {
  GK_LANES a.v[i_] = x.v[i_] < c.v[i_] ? b.v[i_] : a.v[i_];
  return a;
}
inline float hmax(VF a) {
  // The same tree as the AVX2 build: (0,4) (1,5) (2,6) (3,7), then (0,2) (1,3), then (0,1).
  float m[4];
  for (int i = 0; i < 4; ++i) m[i] = a.v[i + 4] > a.v[i] ? a.v[i + 4] : a.v[i];
  const float m0 = m[2] > m[0] ? m[2] : m[0];
  const float m1 = m[3] > m[1] ? m[3] : m[1];
  return m1 > m0 ? m1 : m0;
}
struct VD {
  double v[kLanes];
};
inline VD dzero() {
  VD d;
  GK_LANES d.v[i_] = 0.0;
  return d;
}
inline void dacc(VD& d, VF a) { GK_LANES d.v[i_] += double(a.v[i_]); }
inline double dsum(VD d) {
  // The AVX2 build's tree: s_i = lo_i + hi_i (i = 0..3), t = (s0 + s2, s1 + s3), t0 + t1.
  const double s0 = d.v[0] + d.v[4], s1 = d.v[1] + d.v[5], s2 = d.v[2] + d.v[6], s3 = d.v[3] + d.v[7];
  return (s0 + s2) + (s1 + s3);
}
inline void dacc_mem(double* p, VF a) { GK_LANES p[i_] += double(a.v[i_]); }
inline VF load_f16(const uint16_t* p) {
  VF r;
  GK_LANES r.v[i_] = f16_to_f32_scalar(p[i_]);
  return r;
}
inline VF load_bf16(const uint16_t* p) {
  VF r;
  GK_LANES r.v[i_] = bf16_to_f32_scalar(p[i_]);
  return r;
}
inline void store_f16(uint16_t* p, VF a) { GK_LANES p[i_] = f32_to_f16_scalar(a.v[i_]); }
inline void store_bf16(uint16_t* p, VF a) { GK_LANES p[i_] = f32_to_bf16_scalar(a.v[i_]); }
inline void load_bf16x16(const uint16_t* p, VF& a, VF& b) {
  a = load_bf16(p);
  b = load_bf16(p + 8);
}
// The AVX2 build's steps lane by lane, branch-free so that the compiler vectorises them (SSE2, NEON).
template <int kDegree>
inline VF exp2_neg_deg(VF t) {
  VF r;
  const float* c = kDegree == 6 ? kExp2C6 : kExp2C5;
  GK_LANES {
    const float tc = t.v[i_] < kExp2Lo ? kExp2Lo : t.v[i_];  // NaN kept (the comparison is false)
    const float b = tc + kRoundBias;
    const float n = b - kRoundBias;
    const float f = tc - n;
    float p = c[0];
    for (int k = 1; k < kDegree; ++k) p = p * f + c[k];
    p = p * f + 1.0f;
    uint32_t bits;
    memcpy(&bits, &b, 4);
    bits <<= 23;
    float scale;
    memcpy(&scale, &bits, 4);
    r.v[i_] = p * scale;
  }
  return r;
}
inline VF exp2_neg(VF t) { return exp2_neg_deg<6>(t); }
inline VF exp2_neg5(VF t) { return exp2_neg_deg<5>(t); }
inline VF exp2_full(VF t) {
  VF r = exp2_neg(t);
  GK_LANES if (t.v[i_] > 126.0f) r.v[i_] = exp2_scalar(t.v[i_]);
  return r;
}
#undef GK_LANES
#endif
#ifndef GK_SIMD_WIDE
#define GK_SIMD_WIDE 0  // 16 lanes only in the AVX-512 build
#endif
inline VF splat_as(VF, float x) { return set1(x); }  // (VW's is beside it, in the AVX-512 build)

// ------------------------------------------------------------------------------ lane masks and selects
// VM: one boolean per lane (all bits set: true), for kernels whose per-token branches become selects
// (native/cpu/policy.cc). Comparisons are ordered (a NaN lane is false) except neq (a NaN lane is
// true, as IEEE's !=). clamp_hi(x, hi) is min with NaN in x kept (clamp_lo's twin). pow2_biased(b):
// 2^n where b = n + kRoundBias holds n + 127 ∈ [0, 255] in its low mantissa bits (the exponentials'
// bias trick: 0 gives +0).
#if GK_SIMD_AVX2
struct VM {
  __m256 m;
};
inline VM lt(VF a, VF b) { return {_mm256_cmp_ps(a.v, b.v, _CMP_LT_OQ)}; }
inline VM le(VF a, VF b) { return {_mm256_cmp_ps(a.v, b.v, _CMP_LE_OQ)}; }
inline VM gt(VF a, VF b) { return {_mm256_cmp_ps(a.v, b.v, _CMP_GT_OQ)}; }
inline VM ge(VF a, VF b) { return {_mm256_cmp_ps(a.v, b.v, _CMP_GE_OQ)}; }
inline VM neq(VF a, VF b) { return {_mm256_cmp_ps(a.v, b.v, _CMP_NEQ_UQ)}; }
inline VM mand(VM a, VM b) { return {_mm256_and_ps(a.m, b.m)}; }
inline VM mor(VM a, VM b) { return {_mm256_or_ps(a.m, b.m)}; }
inline VM mandnot(VM a, VM b) { return {_mm256_andnot_ps(b.m, a.m)}; }  // a and not b
inline VM mask_of(bool b) { return {_mm256_castsi256_ps(_mm256_set1_epi32(b ? -1 : 0))}; }
inline int mbits(VM a) { return _mm256_movemask_ps(a.m); }  // bit i: lane i
inline VF blend(VM m, VF yes, VF no) { return {_mm256_blendv_ps(no.v, yes.v, m.m)}; }
inline VF keep(VM m, VF a) { return {_mm256_and_ps(m.m, a.v)}; }  // false lanes: +0
inline VF clamp_hi(VF x, VF hi) { return {_mm256_min_ps(hi.v, x.v)}; }
inline VF divide(VF a, VF b) { return {_mm256_div_ps(a.v, b.v)}; }
// Lane i: p[i] ≠ 0 (8 bytes read).
inline VM nonzero_u8(const uint8_t* p) {
  const __m256i w = _mm256_cvtepu8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(p)));
  return {_mm256_cmp_ps(_mm256_cvtepi32_ps(w), _mm256_setzero_ps(), _CMP_NEQ_OQ)};
}
inline VF pow2_biased(VF b) { return {_mm256_castsi256_ps(_mm256_slli_epi32(_mm256_castps_si256(b.v), 23))}; }

#elif defined(__GNUC__) || defined(__clang__)
#define GK_BOTH(expr_lo, expr_hi) \
  r_.lo = (expr_lo);              \
  r_.hi = (expr_hi);              \
  return r_
struct VM {
  v4i lo, hi;
};
inline VM lt(VF a, VF b) {
  VM r_;
  GK_BOTH(a.lo < b.lo, a.hi < b.hi);
}
inline VM le(VF a, VF b) {
  VM r_;
  GK_BOTH(a.lo <= b.lo, a.hi <= b.hi);
}
inline VM gt(VF a, VF b) {
  VM r_;
  GK_BOTH(a.lo > b.lo, a.hi > b.hi);
}
inline VM ge(VF a, VF b) {
  VM r_;
  GK_BOTH(a.lo >= b.lo, a.hi >= b.hi);
}
inline VM neq(VF a, VF b) {
  VM r_;
  GK_BOTH(a.lo != b.lo, a.hi != b.hi);
}
inline VM mand(VM a, VM b) {
  VM r_;
  GK_BOTH(a.lo & b.lo, a.hi & b.hi);
}
inline VM mor(VM a, VM b) {
  VM r_;
  GK_BOTH(a.lo | b.lo, a.hi | b.hi);
}
inline VM mandnot(VM a, VM b) {
  VM r_;
  GK_BOTH(a.lo & ~b.lo, a.hi & ~b.hi);
}
inline VM mask_of(bool b) {
  const int32_t x = b ? -1 : 0;
  VM r_;
  GK_BOTH(((v4i){x, x, x, x}), ((v4i){x, x, x, x}));
}
inline int mbits(VM a) {
  int r = 0;
  for (int i = 0; i < 4; ++i) r |= ((a.lo[i] & 1) << i) | ((a.hi[i] & 1) << (i + 4));
  return r;
}
inline VF blend(VM m, VF yes, VF no) {
  VF r_;
  GK_BOTH(sel(m.lo, yes.lo, no.lo), sel(m.hi, yes.hi, no.hi));
}
inline VF keep(VM m, VF a) {
  VF r_;
  GK_BOTH((v4f)((v4i)a.lo & m.lo), (v4f)((v4i)a.hi & m.hi));
}
inline VF clamp_hi(VF x, VF hi) {
  VF r_;
  GK_BOTH(sel(x.lo > hi.lo, hi.lo, x.lo), sel(x.hi > hi.hi, hi.hi, x.hi));
}
inline VF divide(VF a, VF b) {
  VF r_;
  GK_BOTH(a.lo / b.lo, a.hi / b.hi);
}
inline VM nonzero_u8(const uint8_t* p) {
  VM r_;
  GK_BOTH(((v4i){-(p[0] != 0), -(p[1] != 0), -(p[2] != 0), -(p[3] != 0)}),
          ((v4i){-(p[4] != 0), -(p[5] != 0), -(p[6] != 0), -(p[7] != 0)}));
}
inline VF pow2_biased(VF b) {
  VF r_;
  GK_BOTH((v4f)((v4u)b.lo << 23), (v4f)((v4u)b.hi << 23));
}
#undef GK_BOTH

#else
#define GK_LANES for (int i_ = 0; i_ < kLanes; ++i_)
struct VM {
  int32_t v[kLanes];
};
#define GK_CMP(name, op)                    \
  inline VM name(VF a, VF b) {              \
    VM r;                                   \
    GK_LANES r.v[i_] = -(a.v[i_] op b.v[i_]); \
    return r;                               \
  }
GK_CMP(lt, <)
GK_CMP(le, <=)
GK_CMP(gt, >)
GK_CMP(ge, >=)
GK_CMP(neq, !=)
#undef GK_CMP
inline VM mand(VM a, VM b) {
  GK_LANES a.v[i_] &= b.v[i_];
  return a;
}
inline VM mor(VM a, VM b) {
  GK_LANES a.v[i_] |= b.v[i_];
  return a;
}
inline VM mandnot(VM a, VM b) {
  GK_LANES a.v[i_] &= ~b.v[i_];
  return a;
}
inline VM mask_of(bool b) {
  VM r;
  GK_LANES r.v[i_] = b ? -1 : 0;
  return r;
}
inline int mbits(VM a) {
  int r = 0;
  GK_LANES r |= (a.v[i_] & 1) << i_;
  return r;
}
inline VF blend(VM m, VF yes, VF no) {
  GK_LANES no.v[i_] = m.v[i_] ? yes.v[i_] : no.v[i_];
  return no;
}
inline VF keep(VM m, VF a) {
  GK_LANES a.v[i_] = m.v[i_] ? a.v[i_] : 0.0f;
  return a;
}
inline VF clamp_hi(VF x, VF hi) {
  GK_LANES x.v[i_] = x.v[i_] > hi.v[i_] ? hi.v[i_] : x.v[i_];
  return x;
}
inline VF divide(VF a, VF b) {
  GK_LANES a.v[i_] /= b.v[i_];
  return a;
}
inline VM nonzero_u8(const uint8_t* p) {
  VM r;
  GK_LANES r.v[i_] = -(p[i_] != 0);
  return r;
}
inline VF pow2_biased(VF b) {
  GK_LANES {
    uint32_t bits;
    memcpy(&bits, &b.v[i_], 4);
    bits <<= 23;
    memcpy(&b.v[i_], &bits, 4);
  }
  return b;
}
#undef GK_LANES
#endif

// A run's tail (policy.cc, rejection.cc): load_n, eight floats from p or `count` < 8 of them (the rest
// 0); mask_n, lane i = p[i] ≠ 0 for i < count (the rest false).
inline VF load_n(const float* p, int64_t count) {
  if (count >= kLanes) return load(p);
  alignas(32) float t[kLanes] = {};
  for (int64_t i = 0; i < count; ++i) t[i] = p[i];
  return load(t);
}
inline VM mask_n(const uint8_t* p, int64_t count) {
  if (count >= kLanes) return nonzero_u8(p);
  uint8_t t[kLanes] = {};
  for (int64_t i = 0; i < count; ++i) t[i] = p[i];
  return nonzero_u8(t);
}

// ------------------------------------------------------------------------------ int16 maxima
// HM: a running max of int16 values taken 32 at a time, hm_max its value (the bf16 forward's pass 1 reads
// its logits' bits as int16: native/cpu/logprobs.cc). Exact: no order to fix.
#if GK_SIMD_WIDE
using HM = __m512i;  // a plain vector, not a struct: GCC 12 kept the struct in memory in the forward's loop
inline HM hm_init() { return _mm512_set1_epi16(-32768); }
inline HM hm_acc32(HM h, const int16_t* p) { return _mm512_max_epi16(h, _mm512_loadu_si512(p)); }
inline int16_t hm_max(HM h) {
  alignas(64) int16_t t[32];
  _mm512_store_si512(t, h);
  int16_t m = t[0];
  for (int i = 1; i < 32; ++i) m = t[i] > m ? t[i] : m;
  return m;
}
#elif GK_SIMD_AVX2
struct HM {
  __m256i a, b;
};
inline HM hm_init() { return {_mm256_set1_epi16(-32768), _mm256_set1_epi16(-32768)}; }
inline HM hm_acc32(HM h, const int16_t* p) {
  return {_mm256_max_epi16(h.a, _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p))),
          _mm256_max_epi16(h.b, _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p + 16)))};
}
inline int16_t hm_max(HM h) {
  alignas(32) int16_t t[16];
  _mm256_store_si256(reinterpret_cast<__m256i*>(t), _mm256_max_epi16(h.a, h.b));
  int16_t m = t[0];
  for (int i = 1; i < 16; ++i) m = t[i] > m ? t[i] : m;
  return m;
}
#else
struct HM {
  int16_t v[32];
};
inline HM hm_init() {
  HM h;
  for (int i = 0; i < 32; ++i) h.v[i] = -32768;
  return h;
}
inline HM hm_acc32(HM h, const int16_t* p) {
  for (int i = 0; i < 32; ++i) h.v[i] = p[i] > h.v[i] ? p[i] : h.v[i];
  return h;
}
inline int16_t hm_max(HM h) {
  int16_t m = h.v[0];
  for (int i = 1; i < 32; ++i) m = h.v[i] > m ? h.v[i] : m;
  return m;
}
#endif

// ------------------------------------------------------------------------------ streaming stores
// Elements before column j0 of `row` that are ahead of the next stream-aligned address (32 bytes for
// f32, 16 for f16/bf16: one vector of 8), 0 when the portable build has no streaming stores.
template <int D>
inline int64_t stream_head(const void* row, int64_t j0) {
#if GK_SIMD_AVX2
  const size_t es = D == kF32 ? 4 : 2, align = D == kF32 ? 32 : 16;
  const uintptr_t a = reinterpret_cast<uintptr_t>(row) + uintptr_t(j0) * es;
  if (a % es) return 0;
  return int64_t(((align - a % align) % align) / es);
#else
  (void)row;
  (void)j0;
  return 0;
#endif
}
// A full vector at column j of `row`, stream-aligned (stream_head), bypassing the caches.
template <int D>
inline void stream_row(void* row, int64_t j, VF v) {
#if GK_SIMD_AVX2
  if (D == kF32) {
    float* p = static_cast<float*>(row) + j;
    if ((reinterpret_cast<uintptr_t>(p) & 31) == 0) return _mm256_stream_ps(p, v.v);
    return _mm256_storeu_ps(p, v.v);
  }
  uint16_t* p = static_cast<uint16_t*>(row) + j;
  const __m128i w = D == kF16 ? _mm256_cvtps_ph(v.v, _MM_FROUND_TO_NEAREST_INT) : to_bf16(v);
  if ((reinterpret_cast<uintptr_t>(p) & 15) == 0) return _mm_stream_si128(reinterpret_cast<__m128i*>(p), w);
  _mm_storeu_si128(reinterpret_cast<__m128i*>(p), w);
#else
  if (D == kF32) store(static_cast<float*>(row) + j, v);
  else if (D == kF16) store_f16(static_cast<uint16_t*>(row) + j, v);
  else store_bf16(static_cast<uint16_t*>(row) + j, v);
#endif
}
// Orders the streaming stores before whatever follows (the job's completion).
inline void stream_fence() {
#if GK_SIMD_AVX2
  _mm_sfence();
#endif
}

// ------------------------------------------------------------------------------ rows of any dtype
inline size_t elem_size(int dtype) { return dtype == kF32 ? 4 : 2; }

// Scalar value j of a row (exact).
inline float element(const void* row, int dtype, int64_t j) {
  if (dtype == kF32) return static_cast<const float*>(row)[j];
  const uint16_t b = static_cast<const uint16_t*>(row)[j];
  return dtype == kF16 ? f16_to_f32_scalar(b) : bf16_to_f32_scalar(b);
}

// Loads 8 elements of a row as f32 (count < 8: the rest −Inf).
template <int D>
inline VF load_row(const void* row, int64_t j, int count) {
  if (count == kLanes) {
    if (D == kF32) return load(static_cast<const float*>(row) + j);
    if (D == kF16) return load_f16(static_cast<const uint16_t*>(row) + j);
    return load_bf16(static_cast<const uint16_t*>(row) + j);
  }
  alignas(32) float t[kLanes];
  for (int i = 0; i < kLanes; ++i) t[i] = i < count ? element(row, D, j + i) : -__builtin_inff();
  return load(t);
}

template <int D>
inline void store_row(void* row, int64_t j, VF v, int count) {
  if (count == kLanes) {
    if (D == kF32) store(static_cast<float*>(row) + j, v);
    else if (D == kF16) store_f16(static_cast<uint16_t*>(row) + j, v);
    else store_bf16(static_cast<uint16_t*>(row) + j, v);
    return;
  }
  alignas(32) float t[kLanes];
  store(t, v);
  for (int i = 0; i < count; ++i) {
    if (D == kF32) static_cast<float*>(row)[j + i] = t[i];
    else if (D == kF16) static_cast<uint16_t*>(row)[j + i] = f32_to_f16_scalar(t[i]);
    else static_cast<uint16_t*>(row)[j + i] = f32_to_bf16_scalar(t[i]);
  }
}

}  // namespace
}  // namespace GK_CPU_ISA
}  // namespace cpu
}  // namespace gk
