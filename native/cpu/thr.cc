// THR family on the native cpu backend: tokenHiddenReward and thrReweight (THR.md). Compiled once per
// instruction set (gk::cpu::avx2, gk::cpu::portable; native/cpu/kernels.h).
//
// TOKEN HIDDEN REWARD  per non-degenerate group g (T_g tokens, T⁺ of them in correct responses, K = |V*_g|,
//   d = dim), with g_t[v] = [v = col(y_t)] − q_t[v] and w_u = 1/|y_r| ('length') or 1:
//     GEMM 1   M = Gᵀ(w∘H⁺):  M[v, k] = Σ_{u∈P} g_u[v]·w_u·h_u[k]       (K × d, reduction over T⁺)
//     GEMM 2   U = H·Mᵀ:      U[t, v] = Σ_k h_t[k]·M[v, k]              (T_g × K, reduction over d)
//     epilogue s_t = Σ_v g_t[v]·U[t, v] (f64, U never stored); THR_t = ±s_t; tau_g = beta·min over
//              correct responses with tokens of their mean THR (f64, as the reference).
//   The GEMMs are our own (no BLAS): gemm.h's 6 × 16 register tile (12 accumulators of 8 lanes; per step
//   of the reduction two 8-lane loads of B, six broadcasts of A, twelve FMAs), fed by packed panels: A as
//   [k][6] micro-panels, B as [k][16] panels. GEMM 1's A panels hold g_u[v] (one-hot and −q folded
//   in while packing, so M needs no scatter); its B panels hold w_u·h_u in f32, packed once per group.
//   GEMM 1 writes M straight into GEMM 2's B layout ([v/16][k][v%16]). The reduction runs in chunks of
//   kKC = 256: a chunk's B panel (16 KiB) stays in L1 while the 8 micro-panels of an item (kMC = 48
//   rows) take it in turn; each chunk's f32 tile is added into an f64 tile. Work items: GEMM 1, 48 rows
//   of M (v); GEMM 2, 48 tokens, every V* panel in order (so each s_t sums its panels in one order).
//   A group below kSmallMacs multiply-adds runs whole on one thread (many small groups in parallel);
//   a larger one runs its items over the pool. Either way every element is computed by the same code
//   on the same inputs: the bits depend on the group alone, not on the thread count, the other groups
//   or the group's position.
//   Accuracy. Each output element of either product is an f32 sum of ≤ 256 products per chunk (error
//   ≤ 256u of Σ|terms| in the worst case, about √256·u = 1e-6 typically), chunks and everything after
//   added in f64; the inputs are rounded to f32 once (w·h, M). The package's bound for THR is 1e-5 of
//   the group's largest |THR| (test/cpu-native/ops.test.ts).
//   FLOPs 2·K·d·(T⁺ + T_g) per group; bytes: hidden read twice (correct tokens) or once, probs twice
//   or once, M (4·K·d) written once and read once per 48 tokens (from L2/L3).
// THR'S HALVES  thrAggregate runs GEMM 1 alone, writing M row-major into the stacked aggregate (f32, the
//   values GEMM 2's panels would hold; a degenerate group's rows 0); thrScore packs a given aggregate
//   into GEMM 2's panels and runs GEMM 2 and the epilogue. Unsharded, the halves give tokenHiddenReward's
//   bits (test/cpu-native/invariance.test.ts); data-parallel shards sum their aggregates in between.
// THR REWEIGHT  elementwise per token, the reference's rule in f64 (src/backends/js/thr.ts), rounded once:
//   out = c·A with the coefficient c picked per token by selects, not branches (reweight_run), so the
//   compiler vectorizes it (4 tokens per AVX2 vector); items of 32k tokens; each group's eta comes
//   planned by the API (ThrReweightParams::eta). Bytes: 12 per token (A, THR read, out written).
//   Measured (bench/RESULTS.md, 2 cores, 1M tokens): 0.97 ms, 87-100% of a streaming read of the same
//   12 MB; the per-token branches it replaced took 4.0 ms.
#include "gemm.h"
#include "kernels.h"
#include "simd.h"

#include <stdlib.h>

namespace gk {
namespace cpu {
namespace GK_CPU_ISA {
namespace {

constexpr int64_t kKC = 256;                    // reduction chunk: f32 in registers, then f64
constexpr int64_t kMC = 48;                     // rows (GEMM 1) or tokens (GEMM 2) per work item
constexpr int64_t kMicroPerItem = kMC / kMR;    // 8
constexpr double kSmallMacs = double(1 << 22);  // below this a group runs on one thread
constexpr int64_t kPackTokens = 64;             // correct tokens per B1-packing item
static_assert(kMR == 6 && kNR == 16, "THR's tile is gemm.h's 6 x 16 (AVX2, portable builds)");

inline int64_t imin(int64_t a, int64_t b) { return a < b ? a : b; }
inline int64_t round_up(int64_t x, int64_t m) { return (x + m - 1) / m * m; }

// acc[m] (6 × 16 f64 each) = Σ_k A_m[k] ⊗ B[k] for the nm micro-panels A_m = A + m·L·6, over k < L:
// gemm.h's tile, each chunk of kKC an f32 tile added into f64.
void gemm_block(const float* A, int64_t nm, const float* B, int64_t L, double* acc) {
  gemm_block_f64(A, nm, B, L, kKC, acc);
}

// One group's plan and buffers. Worker buffers (A panels, f64 tiles, a decoded row) are per thread.
struct Group {
  const ThrParams* p;
  int64_t t0, Tg, K, nP, d, d16, K16;
  const float* q;         // probs of the group's first token; token i's row at q + i·K
  const int32_t* col;     // token_column of the group's first token
  const int32_t* ptok;    // [nP] correct tokens (packed token axis), the API's plan (ThrParams::correct_*)
  const float* pw;        // [nP] their weights
  float* B1;              // [d16/16][nP][16]: w_u·h_u
  float* B2;              // [K16/16][d][16]: M
  float* Mrows;           // the halves' M, row-major [K, d] (ThrParams::aggregate), else null
  double* s;              // [Tg]
  float* A;               // per worker, a_stride floats
  double* acc;            // per worker, kMicroPerItem·96
  float* row;             // per worker, d16 floats
  int64_t a_stride;
};

// Token i (within the group) of hidden, decoded to f32 into `out` (d elements).
void hidden_row(const Group& G, int64_t i, float* out) {
  const ThrParams& p = *G.p;
  const char* h = static_cast<const char*>(p.hidden) + size_t(G.t0 + i) * size_t(G.d) * elem_size(p.hidden_dtype);
  const int64_t full = G.d / kLanes * kLanes;
  int64_t k = 0;
  switch (p.hidden_dtype) {
    case kF32:
      for (; k < full; k += kLanes) store(out + k, load_row<kF32>(h, k, kLanes));
      break;
    case kF16:
      for (; k < full; k += kLanes) store(out + k, load_row<kF16>(h, k, kLanes));
      break;
    default:
      for (; k < full; k += kLanes) store(out + k, load_row<kBF16>(h, k, kLanes));
      break;
  }
  for (; k < G.d; ++k) out[k] = element(h, p.hidden_dtype, k);
}

// B1 panels for correct tokens [u0, u0 + kPackTokens).
void pack_b1_item(Group& G, int64_t item, int worker) {
  float* row = G.row + worker * G.d16;
  const int64_t u1 = imin(G.nP, (item + 1) * kPackTokens);
  for (int64_t u = item * kPackTokens; u < u1; ++u) {
    hidden_row(G, G.ptok[u] - G.t0, row);
    for (int64_t k = G.d; k < G.d16; ++k) row[k] = 0.f;
    const VF w = set1(G.pw[u]);
    for (int64_t n = 0; n < G.d16 / kNR; ++n) {
      float* dst = G.B1 + (n * G.nP + u) * kNR;
      store(dst, mul(w, load(row + n * kNR)));
      store(dst + 8, mul(w, load(row + n * kNR + 8)));
    }
  }
}

// GEMM 1, rows v ∈ [48·item, 48·item + 48) of M, written into B2 (or, for thrAggregate, row-major
// into Mrows).
void gemm1_item(Group& G, int64_t item, int worker) {
  const int64_t v0 = item * kMC;
  const int64_t nv = imin(kMC, G.K - v0);
  const int64_t nm = (nv + kMR - 1) / kMR;
  float* A = G.A + worker * G.a_stride;
  double* acc = G.acc + worker * kMicroPerItem * kMR * kNR;
  for (int64_t u = 0; u < G.nP; ++u) {
    const int64_t i = G.ptok[u] - G.t0;
    const float* qrow = G.q + i * G.K;
    const int64_t c = G.col[i];
    for (int64_t m = 0; m < nm; ++m) {
      float* a = A + (m * G.nP + u) * kMR;
      for (int r = 0; r < kMR; ++r) {
        const int64_t v = v0 + m * kMR + r;
        a[r] = v < G.K ? float(v == c) - qrow[v] : 0.f;
      }
    }
  }
  for (int64_t n = 0; n < G.d16 / kNR; ++n) {
    gemm_block(A, nm, G.B1 + n * G.nP * kNR, G.nP, acc);
    for (int64_t m = 0; m < nm; ++m) {
      for (int r = 0; r < kMR; ++r) {
        const int64_t v = v0 + m * kMR + r;
        if (v >= G.K) break;
        const double* t = acc + (m * kMR + r) * kNR;
        const int64_t kn = imin(kNR, G.d - n * kNR);
        if (G.Mrows) {
          float* dst = G.Mrows + v * G.d + n * kNR;
          for (int64_t j = 0; j < kn; ++j) dst[j] = float(t[j]);
          continue;
        }
        float* dst = G.B2 + (v / kNR) * G.d * kNR + (v % kNR);
        for (int64_t j = 0; j < kn; ++j) dst[(n * kNR + j) * kNR] = float(t[j]);
      }
    }
  }
}

// thrScore: rows v ∈ [48·item, 48·item + 48) of the given M (row-major) into B2's panels, the values
// GEMM 1 would have written there (so the halves give tokenHiddenReward's bits).
void pack_b2_item(Group& G, int64_t item, int) {
  const int64_t v1 = imin(G.K, (item + 1) * kMC);
  for (int64_t v = item * kMC; v < v1; ++v) {
    const float* src = G.Mrows + v * G.d;
    float* dst = G.B2 + (v / kNR) * G.d * kNR + (v % kNR);
    for (int64_t k = 0; k < G.d; ++k) dst[k * kNR] = src[k];
  }
}

// GEMM 2 and the epilogue, tokens i ∈ [48·item, 48·item + 48) of the group.
void gemm2_item(Group& G, int64_t item, int worker) {
  const int64_t i0 = item * kMC;
  const int64_t nt = imin(kMC, G.Tg - i0);
  const int64_t nm = (nt + kMR - 1) / kMR;
  float* A = G.A + worker * G.a_stride;
  double* acc = G.acc + worker * kMicroPerItem * kMR * kNR;
  float* row = G.row + worker * G.d16;
  for (int64_t m = 0; m < nm; ++m) {
    for (int r = 0; r < kMR; ++r) {
      const int64_t i = i0 + m * kMR + r;
      float* a = A + m * G.d * kMR + r;
      if (i < G.Tg) {
        hidden_row(G, i, row);
        for (int64_t k = 0; k < G.d; ++k) a[k * kMR] = row[k];
      } else {
        for (int64_t k = 0; k < G.d; ++k) a[k * kMR] = 0.f;
      }
    }
  }
  for (int64_t i = i0; i < i0 + nt; ++i) G.s[i] = 0.0;
  for (int64_t vp = 0; vp < G.K16 / kNR; ++vp) {
    gemm_block(A, nm, G.B2 + vp * G.d * kNR, G.d, acc);
    const int64_t kn = imin(kNR, G.K - vp * kNR);
    for (int64_t m = 0; m < nm; ++m) {
      for (int r = 0; r < kMR; ++r) {
        const int64_t i = i0 + m * kMR + r;
        if (i >= G.Tg) break;
        const float* qrow = G.q + i * G.K + vp * kNR;
        const int64_t c = G.col[i] - vp * kNR;
        const double* u = acc + (m * kMR + r) * kNR;
        double sum = 0.0;
        for (int64_t j = 0; j < kn; ++j) sum += (double(j == c) - double(qrow[j])) * u[j];
        G.s[i] += sum;
      }
    }
  }
}

// THR signs and tau (the reference's order), from the f64 s_t.
void finish_group(const Group& G, int64_t g) {
  const ThrParams& p = *G.p;
  double min_mean = __builtin_inf();
  for (int64_t r = p.group_offsets[g]; r < p.group_offsets[g + 1]; ++r) {
    const int64_t r0 = p.response_offsets[r], r1 = p.response_offsets[r + 1];
    if (p.correct[r]) {
      double sum = 0.0;
      for (int64_t t = r0; t < r1; ++t) {
        p.thr[t] = float(G.s[t - G.t0]);
        sum += G.s[t - G.t0];
      }
      if (r1 > r0) {
        const double mean = sum / double(r1 - r0);
        min_mean = (mean != mean || min_mean != min_mean) ? __builtin_nan("") : mean < min_mean ? mean : min_mean;
      }
    } else {
      for (int64_t t = r0; t < r1; ++t) p.thr[t] = float(-G.s[t - G.t0]);
    }
  }
  p.tau[g] = float(p.beta * min_mean);
}

// Sets up group g's plan and allocates its buffers for `workers` threads; false when out of memory.
bool plan_group(const ThrParams& p, int64_t g, int workers, Group& G, void** block) {
  G.p = &p;
  const int64_t r0 = p.group_offsets[g], r1 = p.group_offsets[g + 1];
  G.t0 = p.response_offsets[r0];
  G.Tg = p.response_offsets[r1] - G.t0;
  G.K = p.vocab_offsets[g + 1] - p.vocab_offsets[g];
  G.d = p.dim;
  G.d16 = round_up(G.d, kNR);
  G.K16 = round_up(G.K, kNR);
  G.q = p.probs + int64_t(p.probs_offsets[g]);
  G.Mrows = p.step == ThrStep::Full ? nullptr : p.aggregate + int64_t(p.vocab_offsets[g]) * G.d;
  G.col = p.token_column + G.t0;
  // thrScore reads M as given: no correct tokens to pack.
  const int64_t nP = p.step == ThrStep::Score ? 0 : p.correct_start[g + 1] - p.correct_start[g];
  G.nP = nP;
  G.ptok = p.correct_tokens + p.correct_start[g];
  G.pw = p.correct_weights + p.correct_start[g];
  G.a_stride = round_up(kMC * (nP > G.d ? nP : G.d), 16);
  // One allocation: B1, B2, s, then the workers' A, acc and row.
  // thrAggregate writes M straight out (no B2, no s_t).
  const bool aggregate = p.step == ThrStep::Aggregate;
  const size_t n_b1 = size_t(G.d16 * nP), n_b2 = aggregate ? 0 : size_t(G.K16 * G.d);
  const size_t n_s = aggregate ? 0 : size_t(round_up(G.Tg, 8)), n_acc = size_t(kMicroPerItem * kMR * kNR);
  const size_t bytes = n_b1 * 4 + n_b2 * 4 + n_s * 8 +
                       size_t(workers) * (size_t(G.a_stride) * 4 + n_acc * 8 + size_t(G.d16) * 4) + 64;
  char* base = static_cast<char*>(aligned_alloc(64, round_up(int64_t(bytes), 64)));
  *block = base;
  if (!base) return false;
  char* c = base;
  G.B1 = reinterpret_cast<float*>(c);
  c += n_b1 * 4;
  G.B2 = reinterpret_cast<float*>(c);
  c += n_b2 * 4;
  G.s = reinterpret_cast<double*>(c);
  c += n_s * 8;
  G.acc = reinterpret_cast<double*>(c);
  c += size_t(workers) * n_acc * 8;
  G.A = reinterpret_cast<float*>(c);
  c += size_t(workers) * size_t(G.a_stride) * 4;
  G.row = reinterpret_cast<float*>(c);
  // M's padding rows (v ≥ K) must read as 0 in GEMM 2's panels.
  if (!aggregate && G.K16 > G.K) {
    float* last = G.B2 + (G.K16 / kNR - 1) * G.d * kNR;
    memset(last, 0, size_t(G.d * kNR) * 4);
  }
  return true;
}

// The stages of a group, each a list of items run by `run` (the pool, or a loop): M by GEMM 1 (Full,
// Aggregate) or from the given aggregate (Score), then GEMM 2 and the epilogue (Full, Score).
template <class Run>
void group_stages(Group& G, Run run) {
  const ThrStep step = G.p->step;
  if (step == ThrStep::Score) {
    run((G.K + kMC - 1) / kMC, pack_b2_item);
  } else {
    run((G.nP + kPackTokens - 1) / kPackTokens, pack_b1_item);
    run((G.K + kMC - 1) / kMC, gemm1_item);
  }
  if (step != ThrStep::Aggregate) run((G.Tg + kMC - 1) / kMC, gemm2_item);
}

struct StageCtx {
  Group* G;
  void (*fn)(Group&, int64_t, int);
};
void stage_item(void* ctx, int64_t i, int worker) {
  StageCtx& s = *static_cast<StageCtx*>(ctx);
  s.fn(*s.G, i, worker);
}

struct SmallJob {
  const ThrParams* p;
  const int64_t* groups;
  int failed;
};
void small_group_item(void* ctx, int64_t i, int) {
  SmallJob& J = *static_cast<SmallJob*>(ctx);
  const int64_t g = J.groups[i];
  Group G;
  void* block = nullptr;
  if (!plan_group(*J.p, g, 1, G, &block)) {
    __atomic_store_n(&J.failed, 1, __ATOMIC_RELAXED);
    return;
  }
  group_stages(G, [&](int64_t n, void (*fn)(Group&, int64_t, int)) {
    for (int64_t k = 0; k < n; ++k) fn(G, k, 0);
  });
  if (J.p->step != ThrStep::Aggregate) finish_group(G, g);
  free(block);
}

// ------------------------------------------------------------------------------------------ reweight
// Work items: blocks of kReweightTokens tokens (so one large group still spreads over the pool); each
// finds its first response and group by binary search and walks the responses it overlaps.
struct ReweightJob {
  const ThrReweightParams* p;
  int64_t tokens;
};
constexpr int64_t kReweightTokens = 1 << 15;

// The last index i in [0, n) with offsets[i] ≤ t (offsets non-decreasing, offsets[0] ≤ t).
int64_t last_at_or_below(const int32_t* offsets, int64_t n, int64_t t) {
  int64_t lo = 0, hi = n;  // offsets[lo] ≤ t; answer in [lo, hi)
  while (hi - lo > 1) {
    const int64_t mid = (lo + hi) / 2;
    if (offsets[mid] <= t) lo = mid;
    else hi = mid;
  }
  return lo;
}

// The reference's rule (src/backends/js/thr.ts) for the tokens [a, e) of one response, as out = c·A in
// f64 rounded once, with a per-token coefficient c chosen without branches (random |THR| against tau
// is a coin flip per token: a branch per token mispredicted half the time and cost 8-10 ns per token):
//   'thr'/'thr-only': c = 1 + p·sign(x) where |x| > tau (1 for x = ±0), else 0 (mask) or 1;
//   'nthr', incorrect responses: c = eta where −x > tau, else 1; correct responses: c = 1;
//   NaN x (or a NaN tau) where the rule reads it: c = NaN.
// c·A is the reference's product bit for bit: c is the same f64 (1 + p·1, 1 + p·(−1) = 1 − p, eta, 1,
// 0), 1·A = A, 0·A = ±0 (NaN for ±Inf, as the reference's 0·A). Written so that the compiler vectorizes
// it (f32 compares, f64 products: 4 tokens per AVX2 vector, 2 per SSE2 one).
inline void reweight_run(const float* __restrict A, const float* __restrict x, float* __restrict out, int64_t n,
                         float tau, int mode, bool incorrect, double c_pos, double c_neg, double c_else,
                         double eta) {
  const double qnan = __builtin_nan("");
  if (tau != tau) {
    if (mode == 2 && !incorrect) {
      for (int64_t i = 0; i < n; ++i) out[i] = A[i];
    } else {
      for (int64_t i = 0; i < n; ++i) out[i] = float(qnan * double(A[i]));
    }
    return;
  }
  if (mode != 2) {
    for (int64_t i = 0; i < n; ++i) {
      const float v = x[i];
      const float av = v < 0 ? -v : v;
      const double c_big = v > 0 ? c_pos : v < 0 ? c_neg : 1.0;
      double c = av > tau ? c_big : c_else;
      c = v != v ? qnan : c;
      out[i] = float(c * double(A[i]));
    }
    return;
  }
  if (!incorrect) {
    for (int64_t i = 0; i < n; ++i) out[i] = A[i];
    return;
  }
  for (int64_t i = 0; i < n; ++i) {
    const float v = x[i];
    double c = -v > tau ? eta : 1.0;
    c = v != v ? qnan : c;
    out[i] = float(c * double(A[i]));
  }
}

void reweight_item(void* ctx, int64_t item, int) {
  const ReweightJob& J = *static_cast<ReweightJob*>(ctx);
  const ThrReweightParams& p = *J.p;
  const int64_t R = p.group_offsets[p.groups];
  const int64_t t0 = item * kReweightTokens;
  const int64_t t1 = imin(J.tokens, t0 + kReweightTokens);
  const double c_pos = 1.0 + p.p * 1.0, c_neg = 1.0 + p.p * -1.0, c_else = p.mask ? 0.0 : 1.0;
  // The response holding t0 (the last with response_offsets[r] ≤ t0, skipping empty ones by the walk).
  int64_t r = last_at_or_below(p.response_offsets, R, t0);
  int64_t g = last_at_or_below(p.group_offsets, p.groups, r);
  while (g + 1 < p.groups && p.group_offsets[g + 1] <= r) ++g;
  for (; r < R && p.response_offsets[r] < t1; ++r) {
    while (p.group_offsets[g + 1] <= r) ++g;
    const int64_t a = p.response_offsets[r] > t0 ? p.response_offsets[r] : t0;
    const int64_t e = imin(p.response_offsets[r + 1], t1);
    if (a >= e) continue;
    if (p.degenerate[g]) {
      for (int64_t t = a; t < e; ++t) p.out[t] = p.token_advantages[t];
      continue;
    }
    reweight_run(p.token_advantages + a, p.thr + a, p.out + a, e - a, p.tau[g], p.mode, !p.correct[r], c_pos,
                 c_neg, c_else, p.eta[g]);
  }
}

}  // namespace

// ------------------------------------------------------------------------------------------ entries
Report token_hidden_reward(const ThrParams& p, Pool* pool) {
  const int threads = pool_threads(pool);
  int64_t* small = static_cast<int64_t*>(malloc(size_t(p.groups > 0 ? p.groups : 1) * sizeof(int64_t)));
  if (!small) return Report{kNoMemory, 0, 0};
  int64_t n_small = 0;
  for (int64_t g = 0; g < p.groups; ++g) {
    const int64_t r0 = p.group_offsets[g], r1 = p.group_offsets[g + 1];
    const int64_t t0 = p.response_offsets[r0], t1 = p.response_offsets[r1];
    if (p.degenerate[g]) {
      if (p.step == ThrStep::Aggregate) {
        // Its rows of the stacked M are 0 (a shard's sum then carries the other shards' alone).
        float* m = p.aggregate + int64_t(p.vocab_offsets[g]) * p.dim;
        for (int64_t k = 0; k < int64_t(p.vocab_offsets[g + 1] - p.vocab_offsets[g]) * p.dim; ++k) m[k] = 0.f;
        continue;
      }
      for (int64_t t = t0; t < t1; ++t) p.thr[t] = 0.f;
      p.tau[g] = __builtin_nanf("");
      continue;
    }
    const int64_t nP = p.correct_start[g + 1] - p.correct_start[g];
    const double macs = double(p.vocab_offsets[g + 1] - p.vocab_offsets[g]) * double(p.dim) * double(nP + (t1 - t0));
    if (macs < kSmallMacs || threads == 1) {
      small[n_small++] = g;
      continue;
    }
    Group G;
    void* block = nullptr;
    if (!plan_group(p, g, threads, G, &block)) {
      free(block);
      free(small);
      return Report{kNoMemory, 0, 0};
    }
    group_stages(G, [&](int64_t n, void (*fn)(Group&, int64_t, int)) {
      StageCtx s{&G, fn};
      pool_run(pool, n, stage_item, &s);
    });
    if (p.step != ThrStep::Aggregate) finish_group(G, g);
    free(block);
  }
  SmallJob J{&p, small, 0};
  pool_run(pool, n_small, small_group_item, &J);
  free(small);
  if (J.failed) return Report{kNoMemory, 0, 0};
  return Report{kOk, 0, 0};
}

Report thr_reweight(const ThrReweightParams& p, Pool* pool) {
  if (p.groups == 0) return Report{kOk, 0, 0};
  const int64_t T = p.response_offsets[p.group_offsets[p.groups]];
  ReweightJob J{&p, T};
  pool_run(pool, (T + kReweightTokens - 1) / kReweightTokens, reweight_item, &J);
  return Report{kOk, 0, 0};
}

}  // namespace GK_CPU_ISA
}  // namespace cpu
}  // namespace gk
