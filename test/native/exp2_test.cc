// The cpu kernels' exponentials (native/cpu/simd.h) against exp2 in f64, compiled once per build
// (GK_CPU_ISA avx2 with -mavx2 -mfma -mf16c, or portable) by test/native/exp2.test.ts: every 64th f32 t
// in [−126, 0], the largest relative error in units of
// u = 2^-24 against the bound simd.h states, and the special values. Prints "ok" or what failed.
#include "cpu/simd.h"

#include <cmath>
#include <cstdio>

using namespace gk::cpu::GK_CPU_ISA;

namespace {
constexpr double kU = 5.9604644775390625e-08;

struct Worst {
  double pos = 0, neg = 0;
  float t_pos = 0, t_neg = 0;
  void add(float t, float got) {
    const double want = std::exp2(double(t));
    if (want < 1.1754943508222875e-38) return;  // below 2^-126 the bounds do not hold (simd.h)
    const double r = (double(got) - want) / want / kU;
    if (r > pos) pos = r, t_pos = t;
    if (r < neg) neg = r, t_neg = t;
  }
};

template <class F>
void scan(F exp2v, Worst& w, float lo_t, float hi_t, uint32_t step) {
  alignas(32) float ts[8], es[8];
  int n = 0;
  auto flush = [&] {
    store(es, exp2v(load(ts)));
    for (int i = 0; i < n; ++i) w.add(ts[i], es[i]);
    n = 0;
  };
  // Negative t: bit patterns from −0 up to lo_t's; then nonnegative t up to hi_t.
  uint32_t b_lo;
  memcpy(&b_lo, &lo_t, 4);
  for (uint64_t b = 0x80000000u; b <= b_lo; b += step) {
    const uint32_t bb = uint32_t(b);
    memcpy(&ts[n], &bb, 4);
    if (++n == 8) flush();
  }
  uint32_t b_hi;
  memcpy(&b_hi, &hi_t, 4);
  for (uint64_t b = 0; b <= b_hi; b += step) {
    const uint32_t bb = uint32_t(b);
    memcpy(&ts[n], &bb, 4);
    if (++n == 8) flush();
  }
  if (n) {
    for (int i = n; i < 8; ++i) ts[i] = 0;
    const int keep = n;
    n = 8;
    store(es, exp2v(load(ts)));
    for (int i = 0; i < keep; ++i) w.add(ts[i], es[i]);
  }
}

bool check(const char* name, const Worst& w, double bound) {
  if (w.pos <= bound && -w.neg <= bound) return true;
  std::printf("%s: +%.3fu at t = %.9g, %.3fu at t = %.9g, bound %.2fu\n", name, w.pos, double(w.t_pos), w.neg,
              double(w.t_neg), bound);
  return false;
}
}  // namespace

int main() {
#if GK_SIMD_AVX2
  if (!__builtin_cpu_supports("avx2") || !__builtin_cpu_supports("fma") || !__builtin_cpu_supports("f16c")) {
    std::printf("skip: this CPU lacks AVX2, FMA or F16C\n");
    return 0;
  }
#endif
  bool ok = true;
  Worst deg5, neg;
  scan([](VF t) { return exp2_neg5(t); }, deg5, -126.0f, 0.0f, 64);
  scan([](VF t) { return exp2_neg(t); }, neg, -126.0f, 0.0f, 64);
  // Without FMA (the portable build on SSE2) each Horner step rounds twice: 3.8u measured.
  ok &= check("exp2_neg5", deg5, GK_SIMD_AVX2 ? 3.7 : 4.0);
  ok &= check("exp2_neg", neg, 2.0);
  // Special values: −Inf and t ≤ −127 give +0, NaN stays NaN, 0 gives 1.
  alignas(32) float sp[8] = {-INFINITY, NAN, -127.0f, -200.0f, 0.0f, -0.0f, -1.0f, -0.5f};
  alignas(32) float want[8] = {0.0f, NAN, 0.0f, 0.0f, 1.0f, 1.0f, 0.5f, 0.70710677f};
  for (int k = 0; k < 2; ++k) {
    alignas(32) float got[8];
    store(got, k == 0 ? exp2_neg5(load(sp)) : exp2_neg(load(sp)));
    for (int i = 0; i < 8; ++i) {
      const bool same = std::isnan(want[i]) ? std::isnan(got[i])
                                            : std::fabs(double(got[i]) - want[i]) <= 3 * kU * want[i];
      if (!same || (want[i] == 0 && std::signbit(got[i]))) {
        std::printf("%s(%g) = %g, expected %g\n", k == 0 ? "exp2_neg5" : "exp2_neg", double(sp[i]), double(got[i]),
                    double(want[i]));
        ok = false;
      }
    }
  }
  std::printf(ok ? "ok\n" : "FAILED\n");
  return ok ? 0 : 1;
}
