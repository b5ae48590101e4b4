// The register-blocked f32 GEMM the SIMD kernels share (thr.cc's products, lmhead.cc's logits and
// gradients): one micro-kernel written once over a "wide" vector W (the AVX-512 build: 16 lanes; the
// AVX2 and portable builds: simd.h's 8-lane VF), fed by packed panels.
//
//   Tile   kMR × kNR outputs in 2·kMR accumulators of W (each row: two vectors of kNR/2 lanes):
//          AVX2 and portable 6 × 16 (12 accumulators), AVX-512 12 × 32 (24 of 32 zmm registers).
//   A      micro-panel [k][kMR] (the kMR rows interleaved, k-major): broadcast one element per row.
//   B      panel [k][kNR] (k-major): two vector loads per step of the reduction.
//   Step   2 loads of B, kMR broadcasts, 2·kMR FMAs; no other memory traffic in the loop.
//   Chains every output element is one FMA chain over k in increasing order, c = fma(a_k, b_k, c):
//          its bits do not depend on the tile shape, the reduction chunks (tile_load/tile_store keep
//          the f32 value between them), or which rows and columns share its tile. So the AVX2 and
//          AVX-512 builds give the same bits (the portable build's fmadd may be a multiply and an
//          add, two roundings), and a row's results never depend on the other rows of a batch.
//
// Callers chunk the reduction (kKC) so that a B chunk stays in L1 while the A micro-panels of a
// block stream past it from L2 (the classic GotoBLAS blocking). Everything here has internal linkage
// (kernels.h, "per-file flags carry a trap").
#pragma once

#include "simd.h"

#include <stdint.h>
#include <string.h>

namespace gk {
namespace cpu {
namespace GK_CPU_ISA {
namespace {

#if defined(__AVX512F__)
// ---------------------------------------------------------------------------- 16-lane wide vectors
constexpr int kWLanes = 16;  // simd.h's VW and its operations (wload, wstore, wset1, wzero, wfmadd)
constexpr int kMR = 12;
#else
// ------------------------------------------------------------------ the 8-lane VF of simd.h
constexpr int kWLanes = kLanes;
using VW = VF;
inline VW wload(const float* p) { return load(p); }
inline void wstore(float* p, VW a) { store(p, a); }
inline VW wset1(float x) { return set1(x); }
inline VW wzero() { return zero(); }
inline VW wfmadd(VW a, VW b, VW c) { return fmadd(a, b, c); }
constexpr int kMR = 6;
#endif
constexpr int kNR = 2 * kWLanes;

struct Tile {
  VW c[kMR][2];
};

inline void tile_zero(Tile& t) {
#pragma GCC unroll 16
  for (int i = 0; i < kMR; ++i) t.c[i][0] = t.c[i][1] = wzero();
}
// t = C[i][j] (i < kMR, j < kNR), rows `ldc` floats apart.
inline void tile_load(Tile& t, const float* C, int64_t ldc) {
#pragma GCC unroll 16
  for (int i = 0; i < kMR; ++i) {
    t.c[i][0] = wload(C + i * ldc);
    t.c[i][1] = wload(C + i * ldc + kWLanes);
  }
}
inline void tile_store(const Tile& t, float* C, int64_t ldc) {
#pragma GCC unroll 16
  for (int i = 0; i < kMR; ++i) {
    wstore(C + i * ldc, t.c[i][0]);
    wstore(C + i * ldc + kWLanes, t.c[i][1]);
  }
}

// t.c[i] += Σ_{k<kc} A[kMR·k + i] · B[kNR·k + (0 .. kNR)]: the hot loop (one FMA chain per element).
inline void tile_fma(const float* A, const float* B, int64_t kc, Tile& t) {
  Tile r = t;  // a local copy: the accumulators stay in registers
  for (int64_t k = 0; k < kc; ++k) {
    const VW b0 = wload(B + kNR * k);
    const VW b1 = wload(B + kNR * k + kWLanes);
    const float* a = A + kMR * k;
#pragma GCC unroll 16
    for (int i = 0; i < kMR; ++i) {
      const VW x = wset1(a[i]);
      r.c[i][0] = wfmadd(x, b0, r.c[i][0]);
      r.c[i][1] = wfmadd(x, b1, r.c[i][1]);
    }
  }
  t = r;
}

// acc[i·kNR + j] += t's element (i, j), in f64 (THR's f32 chunks carried in f64).
inline void tile_add_f64(const Tile& t, double* acc) {
#if defined(__AVX512F__)
  alignas(64) float s[kWLanes];
  for (int i = 0; i < kMR; ++i)
    for (int h = 0; h < 2; ++h) {
      wstore(s, t.c[i][h]);
      for (int q = 0; q < kWLanes; q += kLanes) dacc_mem(acc + i * kNR + h * kWLanes + q, load(s + q));
    }
#else
#pragma GCC unroll 16
  for (int i = 0; i < kMR; ++i) {
    dacc_mem(acc + i * kNR, t.c[i][0]);
    dacc_mem(acc + i * kNR + kWLanes, t.c[i][1]);
  }
#endif
}

// acc[m] (kMR × kNR f64 each) = Σ_k A_m[k] ⊗ B[k] for the nm micro-panels A_m = A + m·L·kMR, over k < L,
// in reduction chunks of kc: each chunk an f32 tile added into the f64 one (THR).
inline void gemm_block_f64(const float* A, int64_t nm, const float* B, int64_t L, int64_t kc_max, double* acc) {
  memset(acc, 0, size_t(nm) * kMR * kNR * sizeof(double));
  for (int64_t k0 = 0; k0 < L; k0 += kc_max) {
    const int64_t kc = L - k0 < kc_max ? L - k0 : kc_max;
    for (int64_t m = 0; m < nm; ++m) {
      Tile t;
      tile_zero(t);
      tile_fma(A + (m * L + k0) * kMR, B + k0 * kNR, kc, t);
      tile_add_f64(t, acc + m * kMR * kNR);
    }
  }
}

// Spreads software prefetches of the rows a caller will pack next over the tile calls of the current
// panel (the GEMM computes from L1/L2 while memory would idle): `lines` 64-byte lines of each of `n`
// rows, `per_step` lines per tile call, into L2.
struct Prefetch {
  const char* rows[kNR];
  int n = 0;
  int64_t lines = 0;     // per row
  int64_t per_step = 0;
  int row = 0;           // the next line to issue: line `line` of row `row` (lines in order, rows inner)
  int64_t line = 0;
  inline void step() {
    for (int64_t q = 0; q < per_step && line < lines; ++q) {
      __builtin_prefetch(rows[row] + line * 64, 0, 2);
      if (++row == n) {
        row = 0;
        ++line;
      }
    }
  }
};

// C (+)= A·B over the whole reduction L for nm micro-panels (A_m = A + m·L·kMR) against one B panel:
// C rows m·kMR + i, columns 0 .. kNR, `ldc` floats apart. `accumulate`: start from C (else from 0).
// The reduction runs in chunks of kc_max (the B chunk stays in L1 while the micro-panels pass). `pf`, if
// given, issues its prefetches between the tile calls.
inline void gemm_panel(const float* A, int64_t nm, const float* B, int64_t L, int64_t kc_max, float* C,
                       int64_t ldc, bool accumulate, Prefetch* pf = nullptr) {
  if (L == 0) {
    if (!accumulate)
      for (int64_t m = 0; m < nm; ++m)
        for (int i = 0; i < kMR; ++i) memset(C + (m * kMR + i) * ldc, 0, kNR * sizeof(float));
    return;
  }
  for (int64_t k0 = 0; k0 < L; k0 += kc_max) {
    const int64_t kc = L - k0 < kc_max ? L - k0 : kc_max;
    const bool from_c = accumulate || k0 > 0;
    for (int64_t m = 0; m < nm; ++m) {
      float* c = C + m * kMR * ldc;
      Tile t;
      if (from_c) tile_load(t, c, ldc);
      else tile_zero(t);
      tile_fma(A + (m * L + k0) * kMR, B + k0 * kNR, kc, t);
      tile_store(t, c, ldc);
      if (pf) pf->step();
    }
  }
}

// gemm_panel into a C whose valid region is `rows` × `cols` (cols ≤ kNR): full micro-panels go through
// gemm_panel, the last partial one (or every one when cols < kNR) through a zero-padded tile that is
// copied back, so nothing outside the region is read or written. Same chains, same bits.
inline void gemm_panel_masked(const float* A, int64_t nm, const float* B, int64_t L, int64_t kc_max, float* C,
                              int64_t ldc, int64_t rows, int64_t cols, bool accumulate) {
  const int64_t full = cols == kNR ? (rows / kMR < nm ? rows / kMR : nm) : 0;
  gemm_panel(A, full, B, L, kc_max, C, ldc, accumulate);
  for (int64_t m = full; m < nm; ++m) {
    const int64_t mr = rows - m * kMR < kMR ? rows - m * kMR : kMR;
    if (mr <= 0) break;
    alignas(64) float tmp[kMR * kNR];
    float* c = C + m * kMR * ldc;
    for (int i = 0; i < kMR; ++i)
      for (int j = 0; j < kNR; ++j) tmp[i * kNR + j] = accumulate && i < mr && j < cols ? c[i * ldc + j] : 0.f;
    Tile t;
    tile_load(t, tmp, kNR);
    tile_fma(A + m * L * kMR, B, L, t);
    tile_store(t, tmp, kNR);
    for (int64_t i = 0; i < mr; ++i)
      for (int64_t j = 0; j < cols; ++j) c[i * ldc + j] = tmp[i * kNR + j];
  }
}

// ------------------------------------------------------------------------------------------ packing
// Rows of a [rows, cols] matrix of dtype D, decoded to f32: row r's elements [c0, c0 + n) into
// dst[0 .. n) (n ≤ cols − c0), exact.
template <int D>
inline void decode_run(const void* base, int64_t cols, int64_t r, int64_t c0, int64_t n, float* dst) {
  const char* row = static_cast<const char*>(base) + (size_t(r) * size_t(cols) + size_t(c0)) * elem_size(D);
  int64_t k = 0;
  for (; k + kLanes <= n; k += kLanes) store(dst + k, load_row<D>(row, k, kLanes));
  for (; k < n; ++k) dst[k] = element(row, D, k);
}

// Interleaves P rows, k-major: dst[k·P + p] = row_p[k] for k < n, p < P (rows p ≥ np read as 0).
// `rows[p]` points at the f32 elements of row p (already decoded). The 8 × 8 blocks of an AVX2 build
// go through registers (a transpose), the rest element by element.
template <int P>
inline void interleave(const float* const* rows, int np, int64_t n, float* dst) {
  int64_t k = 0;
#if GK_SIMD_AVX2
  if (np == P && P % 8 == 0) {
    for (; k + 8 <= n; k += 8) {
      // The rows are P streams: fetch each one's line 256 bytes ahead into L1 (once per line).
      if ((k & 15) == 0)
        for (int p = 0; p < P; ++p) __builtin_prefetch(rows[p] + k + 64, 0, 3);
      for (int p0 = 0; p0 < P; p0 += 8) {
        __m256 r0 = _mm256_loadu_ps(rows[p0 + 0] + k), r1 = _mm256_loadu_ps(rows[p0 + 1] + k);
        __m256 r2 = _mm256_loadu_ps(rows[p0 + 2] + k), r3 = _mm256_loadu_ps(rows[p0 + 3] + k);
        __m256 r4 = _mm256_loadu_ps(rows[p0 + 4] + k), r5 = _mm256_loadu_ps(rows[p0 + 5] + k);
        __m256 r6 = _mm256_loadu_ps(rows[p0 + 6] + k), r7 = _mm256_loadu_ps(rows[p0 + 7] + k);
        const __m256 t0 = _mm256_unpacklo_ps(r0, r1), t1 = _mm256_unpackhi_ps(r0, r1);
        const __m256 t2 = _mm256_unpacklo_ps(r2, r3), t3 = _mm256_unpackhi_ps(r2, r3);
        const __m256 t4 = _mm256_unpacklo_ps(r4, r5), t5 = _mm256_unpackhi_ps(r4, r5);
        const __m256 t6 = _mm256_unpacklo_ps(r6, r7), t7 = _mm256_unpackhi_ps(r6, r7);
        const __m256 u0 = _mm256_shuffle_ps(t0, t2, 0x44), u1 = _mm256_shuffle_ps(t0, t2, 0xee);
        const __m256 u2 = _mm256_shuffle_ps(t1, t3, 0x44), u3 = _mm256_shuffle_ps(t1, t3, 0xee);
        const __m256 u4 = _mm256_shuffle_ps(t4, t6, 0x44), u5 = _mm256_shuffle_ps(t4, t6, 0xee);
        const __m256 u6 = _mm256_shuffle_ps(t5, t7, 0x44), u7 = _mm256_shuffle_ps(t5, t7, 0xee);
        // Column j of the 8 × 8 block: elements k + j of rows p0 .. p0 + 7.
        float* o = dst + k * P + p0;
        _mm256_storeu_ps(o + 0 * P, _mm256_permute2f128_ps(u0, u4, 0x20));
        _mm256_storeu_ps(o + 1 * P, _mm256_permute2f128_ps(u1, u5, 0x20));
        _mm256_storeu_ps(o + 2 * P, _mm256_permute2f128_ps(u2, u6, 0x20));
        _mm256_storeu_ps(o + 3 * P, _mm256_permute2f128_ps(u3, u7, 0x20));
        _mm256_storeu_ps(o + 4 * P, _mm256_permute2f128_ps(u0, u4, 0x31));
        _mm256_storeu_ps(o + 5 * P, _mm256_permute2f128_ps(u1, u5, 0x31));
        _mm256_storeu_ps(o + 6 * P, _mm256_permute2f128_ps(u2, u6, 0x31));
        _mm256_storeu_ps(o + 7 * P, _mm256_permute2f128_ps(u3, u7, 0x31));
      }
    }
  }
#endif
  for (; k < n; ++k)
    for (int p = 0; p < P; ++p) dst[k * P + p] = p < np ? rows[p][k] : 0.f;
}

// Strips of kNR consecutive columns of P-contiguous rows, row-major → a B panel: dst[k·kNR + j] =
// rows[k][c0 + j] for k < n, j < nc (nc ≤ kNR; columns j ≥ nc read as 0).
inline void strip(const float* const* rows, int64_t n, int64_t c0, int64_t nc, float* dst) {
  if (nc == kNR) {
    for (int64_t k = 0; k < n; ++k) {
      wstore(dst + k * kNR, wload(rows[k] + c0));
      wstore(dst + k * kNR + kWLanes, wload(rows[k] + c0 + kWLanes));
    }
    return;
  }
  for (int64_t k = 0; k < n; ++k)
    for (int64_t j = 0; j < kNR; ++j) dst[k * kNR + j] = j < nc ? rows[k][c0 + j] : 0.f;
}

}  // namespace
}  // namespace GK_CPU_ISA
}  // namespace cpu
}  // namespace gk
