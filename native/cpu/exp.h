// The f32 natural exponential of the kernels that need e^x itself (native/cpu/policy.cc: ratios, k3, rollout
// weights, sapo's sigmoid; native/cpu/rejection.cc: k3), and k3 = e^y − 1 − y without cancellation near 0.
// Within 2 ulp of e^x (measured 0.97 ulp over [−20, 20] on both builds, test/cpu-native/policy.test.ts);
// the derivation is policy.cc's header (EXPONENTIALS). Like simd.h, everything here has internal
// linkage inside the ISA namespace (native/cpu/kernels.h, "per-file flags carry a trap"): include it
// after simd.h, in a per-ISA kernel file only.
#pragma once

#include "simd.h"

namespace gk {
namespace cpu {
namespace GK_CPU_ISA {
namespace {

// e^x: n = round(x·log2 e) by the bias trick (b holds n + 127),
// r = (x − n·C1) − n·C2, e^r = 1 + r + r²·P(r) (Cephes' expf polynomial), times 2^n from b's bits.
// Below −87 (a result past f32's normal range) as e^{x + 64 ln 2}·2⁻⁶⁴, the last product rounding once
// into the subnormals (not 0: sapo's e^{ln ρ − z} is one, whose product with the later factors may be
// normal again; the cpu fuzz, 2026-11-29, seed 9928477); x clamped below at −104 (+0). NaN kept; past
// 88 a lane takes libm's expf.
constexpr float kExpC1 = 0.693359375f, kExpC2 = -2.12194440e-4f;  // ln 2 = C1 + C2, C1 of 9 bits
constexpr float kExpP[6] = {1.9875691500e-4f, 1.3981999507e-3f, 8.3334519073e-3f,
                            4.1665795894e-2f, 1.6666665459e-1f, 5.0000001201e-1f};
// e^x for x in [−88, 88] (the Cody–Waite reduction and the polynomial above).
inline VF exp_core(VF x) {
  const VF b = fmadd(x, set1(kLog2e), set1(kRoundBias));
  const VF n = sub(b, set1(kRoundBias));
  const VF r = fnmadd(n, set1(kExpC2), fnmadd(n, set1(kExpC1), x));
  VF q = set1(kExpP[0]);
  for (int i = 1; i < 6; ++i) q = fmadd(q, r, set1(kExpP[i]));
  return mul(add(fmadd(q, mul(r, r), r), set1(1.0f)), pow2_biased(b));
}
inline VF exp_e(VF x) {
  VF y = exp_core(clamp_lo(x, set1(-88.0f)));
  // The rare lanes below −87 or past 88 after a test of the whole vector (the common one pays a compare).
  const VM tiny = lt(x, set1(-87.0f));
  if (mbits(tiny)) {
    const VF shifted = exp_core(add(clamp_lo(x, set1(-104.0f)), set1(44.3614196f)));  // + 64 ln 2
    y = blend(tiny, mul(shifted, set1(5.421010862427522e-20f)), y);                    // 2⁻⁶⁴
  }
  const int big = mbits(gt(x, set1(88.0f)));
  if (big) {
    alignas(32) float xs[kLanes], ys[kLanes];
    store(xs, x);
    store(ys, y);
    for (int i = 0; i < kLanes; ++i)
      if (big & (1 << i)) ys[i] = __builtin_expf(xs[i]);
    y = load(ys);
  }
  return y;
}

// k3's value e^y − y − 1 and e^y − 1 (em1) without cancellation near y = 0: lanes with −1 < y < 2 from
// the Taylor series y²·Σ_{k≤12} y^k/(k+2)! (Horner; truncation below u/8 there) and em1 = y + v, the
// others from e^y (e^y − 1 − y ≥ 0.36 there, so e^y's error is a few ulp of it); both computed,
// blended. A NaN lane is on the e^y side. The same series as native/cuda/policy.cu and the WGSL.
constexpr int kK3Terms = 13;
constexpr float kK3Series[kK3Terms] = {
    1.14707456e-11f,  // 1/14!
    1.60590438e-10f,  // 1/13!
    2.08767570e-9f,  // 1/12!
    2.50521084e-8f,  // 1/11!
    2.75573192e-7f,  // 1/10!
    2.75573192e-6f,  // 1/9!
    2.48015873e-5f,  // 1/8!
    1.98412698e-4f,  // 1/7!
    1.38888889e-3f,  // 1/6!
    8.33333333e-3f,  // 1/5!
    4.16666667e-2f,  // 1/4!
    1.66666667e-1f,  // 1/3!
    0.5f,  // 1/2!
};
inline VF k3_of(VF y, VF& em1) {
  VF p = set1(kK3Series[0]);
  for (int i = 1; i < kK3Terms; ++i) p = fmadd(p, y, set1(kK3Series[i]));
  const VF vs = mul(mul(y, y), p);
  const VF el = sub(exp_e(y), set1(1.0f));
  const VM small = mand(lt(y, set1(2.0f)), gt(y, set1(-1.0f)));
  em1 = blend(small, add(y, vs), el);
  return blend(small, vs, sub(el, y));
}

}  // namespace
}  // namespace GK_CPU_ISA
}  // namespace cpu
}  // namespace gk
