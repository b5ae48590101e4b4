// LM-head family on the native cpu backend: linearLogprobs and linearLogprobStates (log-probs, or the
// sharded online state, straight from hidden states and the head's weight, never the [N, V] logits),
// logprobStates (the same state of materialised logits), mergeLogprobStates, and
// linearLogprobsBackward. Compiled once per instruction set (kernels.h): gk::cpu::portable,
// gk::cpu::avx2 and, on x86-64, gk::cpu::avx512 (this file alone, -mavx512f: the LM head is a GEMM,
// and 16-lane FMAs double its peak where the CPU has them). Semantics: src/backends/js/lmhead.ts.
//
// FORWARD  x[n, v] = h_n · W_v + b_v (raw logits), z = x/T; per row the online softmax state of
//   logprobs.cc (raw max m, S0 = Σ e^d, S1 = Σ e^d·d, S2 = Σ e^{2d}, d = (x − m)/T), then lse,
//   logprob, entropy, Σp² from it (logprobs.cc's formulas), or the public state (LogprobStates).
//   Work item: (row block, vocabulary slice): up to kRowBlock (396) live rows (ignored rows are left out
//   and never read) × kSlice (4096) columns; the slices are fixed by V alone. An item packs its rows
//   once ([rows/kMR][d][kMR] micro-panels, f16/bf16 decoded), then per block of kBlock (128) columns:
//     GEMM    the block's logits C [rows × 128] = H · W_blockᵀ with gemm.h's tile (AVX-512 12 × 32,
//             AVX2 / portable 6 × 16): per panel of kNR columns the weight rows are decoded and
//             transposed once ([d][kNR], in L2), the reduction runs in chunks of kKC (the B chunk stays
//             in L1 while the item's micro-panels stream past it). While a panel's tiles compute, the
//             next panel's weight rows are prefetched into L2 (spread over the tile calls), so the
//             packing reads L2, not memory. Each logit is one f32 FMA chain over k ascending: the same
//             bits whatever the tile, the ISA (AVX2 = AVX-512) or the other rows.
//     update  per row, x = C + b (one f32 addition) into the row's state, logprobs.cc's sub-block of
//             128: pass 1 the block's max (a new running max rescales S by e^{(m_old − m)/T} in f64),
//             pass 2 t = (x − m)·log2(e)/T, 2^t by simd.h's exp2, two f32 accumulators of 8 terms per
//             lane, their lane sums added in f64. The target's x is kept (the same bits the state saw).
//   The item writes its rows' slice states (f64); once the row chunk is done, each row merges its
//   slices in slice order in f64 (logprobs.cc's segment merge) and writes its outputs. Every sum's
//   order depends on V and d alone: a row's bits never depend on N, its position, the thread count.
//   Bytes: the weight is read once per row block (ceil(N_live / 396) times; ~N/396·V·d·sizeof), the
//   hidden rows once per item. FLOPs: 2·N_live·V·d in the tile + ~20 per logit in the update (1–2%).
//   Extra memory (lmhead_plan, exact; O(tiles in flight), never O(N·V)): per thread the packed rows
//   (≤ 1.5 MiB: 396·d·4, fewer rows for d > 992), one weight panel (kNR·d·4, and as much decoded for
//   f16/bf16), the logits block (396·128·4) and 396 row states; the slice states of a chunk of rows
//   (≤ 4 MiB) and 8 bytes per row (live list, target logits). N = 1024, d = 896, V = 151936 f32 on 2
//   threads: 4.8 MB. N = 16384, V = 151936, d = 4096 bf16: 9.9 MB on 2 threads, 50 MB on 16.
//   Measured (bench/RESULTS.md, 2026-11-27, 2 cores, N = 1024, d = 896, V = 151936 f32): 302-308 GFLOP/s,
//   ~70% of the AVX-512 FMA peak, 1.2x ONNX Runtime's MatMul + LogSoftmax; the AVX2 build 88% of its peak.
//   Accuracy: a logit is an f32 chain of d products (error ≲ √d·u of Σ|h·w| in practice, ≤ d·u in the
//   worst case, as a GPU's k-steps), the softmax sums as logprobs.cc's (≤ 1e-6 relative), the slice
//   merge and everything after in f64. Tolerances: test/cases/tolerances.ts, "LM-head family".
// STATES OF LOGITS (logprobStates): the same items and update with the logits block decoded from the
//   materialised logits instead of a GEMM (items: 8 rows × one slice).
// MERGE  per row, in f64, the states in the given order (src/backends/js/lmhead.ts's jsMergeLogprobStates,
//   line for line): scalar, rows spread over the pool.
// BACKWARD  G[n, v] = (g_n/T)(1[v = y_n] − p) − (gE_n/T)·p·(ln p + H_n), p = 2^{x·log2e/T − lse·log2e}
//   (logprobs.cc's backward on the recomputed logit, f32; the target's element in f64), then
//   gradHidden = G·W, gradWeight = Gᵀ·H, gradBias = Σ_n G. Live rows in chunks of up to 396 rows, in
//   order; per chunk, kParts (16) items, each one part of the vocabulary (V/16 columns rounded up to
//   96, fixed by V), in blocks of NB columns (192, or 96 for d > 1024):
//     logits  C [rows × NB] as in the forward (the chunk's rows packed once per chunk, shared);
//     G       in place, f32; gradBias[v] += Σ_n G[n, v] (an f32 chain over the live rows in order);
//     gradW   gradWeight[block rows] (+)= Gᵀ·H: the chunk's rows are the reduction, C is the output
//             itself, so each element is one f32 FMA chain over every live row in order, across chunks
//             (cuda's "one accumulator across chunks"): its bits depend on the rows, not on the chunks
//             or the threads; the part owns its rows of gradWeight, no two items write one element;
//     gradH   the part's partial gradHidden [rows × d] (+)= G·W_block: an f32 chain over the part's
//             columns in order; when the chunk's parts are done, gradHidden = Σ of the 16 partials in
//             part order, in f64, rounded once. A row's gradHidden depends on its own row and V alone.
//   FLOPs: 3 × 2·N_live·V·d (logits, gradHidden, gradWeight). Bytes: the weight read once per chunk
//   (twice from L2: transposed for the logits, in strips for gradHidden), gradWeight read and written
//   once per chunk, hidden once per chunk.
//   Extra memory (lmhead_plan, exact): the chunk's rows packed twice and decoded (3·rows·d·4), the
//   partials (16·rows·d·4 ≤ 16 MiB: fewer rows per chunk for d > 992), per thread the weight block in
//   two layouts and decoded (3·NB·d·4) and three [rows × NB] f32 tiles (C/G and G packed twice).
//   N = 16384, V = 151936, d = 4096 bf16: 28 MB on 2 threads, 95 MB on 16 (forward and backward
//   together 0.8% and 2.9% of the 4.98 GB of bf16 logits; each further thread adds ~7 MB).
//   Accuracy: gradient elements are f32 chains of their products (V/16 terms for gradHidden's
//   partials, then f64; N for gradWeight), G in f32 (not rounded to the input dtype).
//   GRADIENTS IN THE INPUT DTYPE (grad_dtype f16/bf16, the API's gradDtype 'input'): the same sums,
//   rounded once to the dtype (simd.h's conversions, nearest even) where they are stored, so the result
//   is the f32 gradients rounded, bit for bit. gradHidden: pass 1 as above without gradWeight and
//   gradBias, the f64 sum of the partials rounded to f32 and then to the dtype. gradWeight's sum over
//   rows runs across chunks and a narrow output cannot hold it, so pass 2 sweeps the vocabulary in
//   blocks of acc_cols columns (kAccBudget = 16 MiB of f32 at this d, at least one 192/96-column block
//   per thread, whole blocks) and, per block, every chunk in order: the chunk's rows packed again,
//   items of one column block each: the logits, G, gradBias and gradWeight (+)= Gᵀ·H into the block's
//   f32 accumulators [acc_cols][d] and [acc_cols], the chains of pass 1 above; the block done, each
//   item rounds its rows into gradWeight and gradBias. Cost: the logits twice (8·N_live·V·d FLOPs
//   instead of 6), the chunk's rows packed once per block (spread over the pool). Extra memory: the
//   accumulators (acc_bytes, in the plan's backward_input_bytes): ≤ 16 MiB + V·4 on ≤ 2 threads, one
//   block per thread beyond (d = 4096: 1536 columns, 25 MB on 16 threads); no [V, d] f32 buffer.
#include "gemm.h"
#include "kernels.h"
#include "simd.h"

#include <stdlib.h>

namespace gk {
namespace cpu {
namespace GK_CPU_ISA {
namespace {

constexpr int64_t kSlice = 4096;     // forward: columns per work item (slices fixed by V alone)
constexpr int64_t kBlock = 128;      // forward: columns per state update (the bits depend on it)
constexpr int64_t kRowBlock = 396;   // rows per forward item and per backward chunk, at most (6·66, 12·33)
constexpr int64_t kParts = 16;       // backward: vocabulary parts (gradHidden's partials; fixed)
constexpr int64_t kPartAlign = 96;   // part boundaries are multiples of this (lcm of both tiles' sizes)
constexpr int64_t kLogitRows = 8;    // logprobStates: rows per item
constexpr int64_t kFinishRows = 256; // rows per finishing item
constexpr size_t kSliceStateBudget = size_t(4) << 20;  // forward: slice states of a row chunk
constexpr size_t kPackedRowsBudget = size_t(3) << 19;  // forward: an item's packed rows (1.5 MiB, in L2)
constexpr size_t kPartialBudget = size_t(16) << 20;    // backward: gradHidden's partials
constexpr size_t kAccBudget = size_t(16) << 20;        // backward, f16/bf16 gradients: gradWeight's f32 block
#if defined(__AVX512F__)
constexpr int64_t kKC = 128;  // reduction chunk: a 16 KiB B chunk (32 columns)
#else
constexpr int64_t kKC = 256;  // a 16 KiB B chunk (16 columns)
#endif
static_assert(kBlock % kNR == 0 && kRowBlock % kMR == 0 && kPartAlign % kNR == 0 && kPartAlign % kMR == 0,
              "blocks are whole tiles");
static_assert(kSlice % kBlock == 0, "slices are whole blocks");

constexpr double kInf = __builtin_inf();
constexpr float kInfF = __builtin_inff();
constexpr double kLn2 = 0.6931471805599453;

inline int64_t imin(int64_t a, int64_t b) { return a < b ? a : b; }
inline int64_t imax(int64_t a, int64_t b) { return a > b ? a : b; }
inline int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }
inline int64_t round_up(int64_t x, int64_t m) { return ceil_div(x, m) * m; }
inline size_t align64(size_t b) { return (b + 63) / 64 * 64; }

// log2(e)/T in f32, at least FLT_MIN (logprobs.cc's scale2_of: −Inf times it stays −Inf).
inline float scale2_of(double T) {
  const float f = float(1.4426950408889634 / T);
  return f < 1.17549435e-38f ? 1.17549435e-38f : f;
}

// Lowers *slot to v (atomically): the smallest bad row wins whatever the timing.
inline void atomic_min(int64_t* slot, int64_t v) {
  int64_t cur = __atomic_load_n(slot, __ATOMIC_RELAXED);
  while (v < cur && !__atomic_compare_exchange_n(slot, &cur, v, true, __ATOMIC_RELAXED, __ATOMIC_RELAXED)) {
  }
}

// A bump allocator over one aligned block (every buffer 64-byte aligned): the plan and the run take
// their sizes from the same code, so the run allocates exactly what the plan says.
struct Arena {
  char* base = nullptr;
  size_t used = 0;
  template <class T>
  T* take(size_t count) {
    T* p = reinterpret_cast<T*>(base ? base + used : nullptr);
    used += align64(count * sizeof(T));
    return p;
  }
};

// Rows whose target is not ignore_index, in order.
int64_t live_rows(const int32_t* targets, int64_t rows, int64_t ignore, int32_t* live) {
  int64_t n = 0;
  for (int64_t i = 0; i < rows; ++i)
    if (targets[i] != ignore) live[n++] = int32_t(i);
  return n;
}

// ===================================================================================== online state
struct RowState {
  double s0, s1, s2;  // Σ e^d, Σ e^d·d (natural units), Σ e^{2d}, d = (x − m)/T
  float m;            // running max of the raw logits (−Inf: none above −Inf yet)
};
struct SliceState {
  double m, s0, s1, s2;
};

inline void state_reset(RowState& st) {
  st.s0 = st.s1 = st.s2 = 0.0;
  st.m = -kInfF;
}

// Folds kBlock raw logits (columns past the data are −Inf) into a row's state: logprobs.cc's pass 1
// and pass 2 on one 128-element sub-block, against the running max (rescaled in f64 when it grows).
template <bool kStats>
void state_update(RowState& st, const float* x, float scale2, double T) {
  constexpr int kVec = int(kBlock / kLanes);  // 16
  // Pass 1: the block's max, NaN skipped (four running maxima from −Inf: a max is exact, any order).
  VF m0 = set1(-kInfF), m1 = m0, m2 = m0, m3 = m0;
  for (int k = 0; k < kVec; k += 4) {
    m0 = max_skip_nan(m0, load(x + k * kLanes));
    m1 = max_skip_nan(m1, load(x + (k + 1) * kLanes));
    m2 = max_skip_nan(m2, load(x + (k + 2) * kLanes));
    m3 = max_skip_nan(m3, load(x + (k + 3) * kLanes));
  }
  const float mb = hmax(max_skip_nan(max_skip_nan(m0, m1), max_skip_nan(m2, m3)));
  if (mb > st.m) {
    if (st.m != -kInfF) {
      // New running max: the sums so far were against the old one. δ ≤ 0; r = e^δ in f64.
      const double delta = (double(st.m) - double(mb)) / T;
      const double r = __builtin_exp(delta);
      st.s1 = r == 0 ? 0.0 : r * (st.s1 + delta * st.s0);
      st.s0 *= r;
      st.s2 *= r * r;
    }
    st.m = mb;
  }
  if (st.m == -kInfF) {
    // No element above −Inf yet: this block adds nothing, unless it holds a NaN (which max skipped).
    for (int64_t j = 0; j < kBlock; ++j)
      if (x[j] != x[j]) st.s0 = x[j];
    return;
  }
  // Pass 2: t = (x − m)·log2(e)/T ≤ 0 (NaN for NaN and for +Inf against an +Inf max: NaN sums).
  const VF vm = set1(st.m);
  const VF vs2 = set1(scale2);
  const VF dlo = set1(-3.40282347e38f);
  VF a0 = zero(), a1 = zero(), b0 = zero(), b1 = zero(), c0 = zero(), c1 = zero();
  for (int k = 0; k < kVec; k += 2) {
    const VF t0 = mul(sub(load(x + k * kLanes), vm), vs2);
    const VF t1 = mul(sub(load(x + (k + 1) * kLanes), vm), vs2);
    const VF e0 = exp2_neg(t0), e1 = exp2_neg(t1);
    a0 = add(a0, e0);
    a1 = add(a1, e1);
    if (kStats) {
      b0 = fmadd(e0, clamp_lo(t0, dlo), b0);  // −Inf t has e = 0: 0·(−FLT_MAX), never 0·(−Inf)
      b1 = fmadd(e1, clamp_lo(t1, dlo), b1);
      c0 = fmadd(e0, e0, c0);
      c1 = fmadd(e1, e1, c1);
    }
  }
  VD d = dzero();
  dacc(d, add(a0, a1));
  st.s0 += dsum(d);
  if (kStats) {
    VD d1 = dzero(), d2 = dzero();
    dacc(d1, add(b0, b1));
    dacc(d2, add(c0, c1));
    st.s1 += kLn2 * dsum(d1);  // the sums took t = d·log2 e
    st.s2 += dsum(d2);
  }
}

// A row's slice states merged in slice order (logprobs.cc's segment merge), in f64.
SliceState merge_slices(const SliceState* ps, int64_t n, double T) {
  SliceState r{-kInf, 0.0, 0.0, 0.0};
  bool nan = false;
  for (int64_t s = 0; s < n; ++s) {
    if (ps[s].m > r.m) r.m = ps[s].m;
    if (ps[s].s0 != ps[s].s0) nan = true;
  }
  if (nan || r.m == kInf) {
    r.s0 = r.s1 = r.s2 = __builtin_nan("");
    return r;
  }
  if (r.m == -kInf) return r;  // every logit −Inf: S = 0
  for (int64_t s = 0; s < n; ++s) {
    if (ps[s].m == -kInf) continue;
    const double delta = (ps[s].m - r.m) / T;
    const double e = __builtin_exp(delta);
    if (e == 0) continue;  // its terms vanish (δ·s0 might be −Inf·…)
    r.s0 += e * ps[s].s0;
    r.s1 += e * (ps[s].s1 + delta * ps[s].s0);
    r.s2 += e * e * ps[s].s2;
  }
  return r;
}

// ========================================================================================= forward
// One forward call: the source of the logits (a head, or materialised logits), what to write.
struct Fwd {
  // Source.
  const LinearHead* head;  // or null: materialised logits
  const void* logits;
  int dtype;
  int64_t vocab, dim;
  const int32_t* targets;
  int64_t vocab_start;
  double T;
  float scale2;
  bool stats;
  // Plan.
  int64_t row_block;  // rows per item
  int64_t nslices;
  int64_t chunk_rows;  // live rows per pool_run
  // Buffers.
  const int32_t* live;
  SliceState* states;  // [chunk_rows][nslices]
  float* xt;           // [chunk_rows]: the target's raw logit
  char* workers;       // per-worker areas of `worker_bytes`
  size_t worker_bytes;
  // The current chunk.
  int64_t row0, nrows;
};

// A worker's buffers (the forward's), carved from its area in this order by the plan and the run.
struct FwdWorker {
  float* A;      // [row_block/kMR][d][kMR] packed rows
  float* Atmp;   // [kMR][d] decoded rows (f16/bf16)
  float* B;      // [d][kNR] one transposed weight panel
  float* Btmp;   // [kNR][d] decoded weight rows (f16/bf16)
  float* C;      // [row_block][kBlock] the logits block
  float* bias;   // [kBlock] the block's bias (−Inf past the data)
  float* xrow;   // [kBlock] one row's logits + bias
  RowState* st;  // [row_block]
  int64_t packed;  // the chunk-relative row block whose rows A holds (−1: none)
};
size_t fwd_worker_layout(bool head, int dtype, int64_t dim, int64_t row_block, char* base, FwdWorker* w) {
  Arena a{base};
  const bool wide = dtype != kF32;
  const size_t d = size_t(dim > 0 ? dim : 1);
  FwdWorker t{};
  if (head) {
    t.A = a.take<float>(size_t(row_block) * d);
    t.Atmp = a.take<float>(wide ? size_t(kMR) * d : 0);
    t.B = a.take<float>(size_t(kNR) * d);
    t.Btmp = a.take<float>(wide ? size_t(kNR) * d : 0);
  }
  t.C = a.take<float>(size_t(row_block * kBlock));
  t.bias = a.take<float>(size_t(kBlock));
  t.xrow = a.take<float>(size_t(kBlock));
  t.st = a.take<RowState>(size_t(row_block));
  t.packed = -1;
  if (w) *w = t;
  return a.used;
}

// Row `r` of a [*, n] matrix of `dtype`, as f32: the row itself (f32) or decoded into `tmp`.
inline const float* row_f32(const void* base, int dtype, int64_t n, int64_t r, float* tmp) {
  if (dtype == kF32) return static_cast<const float*>(base) + r * n;
  if (dtype == kF16) decode_run<kF16>(base, n, r, 0, n, tmp);
  else decode_run<kBF16>(base, n, r, 0, n, tmp);
  return tmp;
}

// Packs the item's rows (chunk-relative live rows [r0, r0 + nr)) into A: [nr/kMR][d][kMR].
void pack_rows(const Fwd& J, FwdWorker& w, int64_t r0, int64_t nr) {
  const int64_t d = J.dim;
  for (int64_t m = 0; m * kMR < nr; ++m) {
    const float* rows[kMR];
    const int np = int(imin(kMR, nr - m * kMR));
    for (int i = 0; i < np; ++i)
      rows[i] = row_f32(J.head->hidden, J.dtype, d, J.live[J.row0 + r0 + m * kMR + i], w.Atmp + i * d);
    interleave<kMR>(rows, np, d, w.A + m * d * kMR);
  }
}

// Transposes weight rows [v, v + np) into the panel B: [d][kNR].
void pack_weight_panel(const LinearHead& h, int64_t d, int64_t v, int np, float* Btmp, float* B) {
  const float* rows[kNR];
  for (int i = 0; i < np; ++i) rows[i] = row_f32(h.weight, h.dtype, d, v + i, Btmp + i * d);
  interleave<kNR>(rows, np, d, B);
}

template <bool kStats>
void fwd_item_t(Fwd& J, int64_t item, int worker) {
  FwdWorker w;
  char* area = J.workers + size_t(worker) * J.worker_bytes;
  fwd_worker_layout(J.head != nullptr, J.dtype, J.dim, J.row_block, area, &w);
  int64_t* packed = reinterpret_cast<int64_t*>(area + J.worker_bytes - 64);
  const int64_t rb = item / J.nslices, s = item % J.nslices;
  const int64_t r0 = rb * J.row_block, nr = imin(J.row_block, J.nrows - r0);
  const int64_t nm = ceil_div(nr, kMR);
  const int64_t d = J.dim, V = J.vocab;
  if (J.head && *packed != r0) {
    pack_rows(J, w, r0, nr);
    *packed = r0;
  }
  for (int64_t i = 0; i < nr; ++i) state_reset(w.st[i]);
  const int64_t c_end = imin(V, (s + 1) * kSlice);
  for (int64_t b0 = s * kSlice; b0 < c_end; b0 += kBlock) {
    const int64_t nb = imin(kBlock, V - b0);
    // The block's logits C[i][0 .. nb), and its bias (−Inf past V).
    if (J.head) {
      for (int64_t j0 = 0; j0 < nb; j0 += kNR) {
        pack_weight_panel(*J.head, d, b0 + j0, int(imin(kNR, nb - j0)), w.Btmp, w.B);
        // While this panel's tiles compute, the next panel's weight rows (in this slice) come into L2:
        // the packing then reads from L2, not memory.
        Prefetch pf;
        const int64_t v1 = b0 + j0 + kNR, vend = imin(c_end, v1 + kNR);
        pf.n = int(vend > v1 ? vend - v1 : 0);
        const size_t row_bytes = size_t(d) * elem_size(J.dtype);
        for (int i = 0; i < pf.n; ++i)
          pf.rows[i] = static_cast<const char*>(J.head->weight) + size_t(v1 + i) * row_bytes;
        pf.lines = int64_t((row_bytes + 63) / 64);
        const int64_t steps = nm * ceil_div(d, kKC);
        pf.per_step = steps > 0 ? ceil_div(pf.lines * pf.n, steps) : 0;
        gemm_panel(w.A, nm, w.B, d, kKC, w.C + j0, kBlock, false, &pf);
      }
      for (int64_t j = 0; j < nb; ++j) w.bias[j] = J.head->bias ? element(J.head->bias, J.dtype, b0 + j) : 0.f;
    } else {
      for (int64_t i = 0; i < nr; ++i) {
        const int64_t row = J.live[J.row0 + r0 + i];
        if (J.dtype == kF32) decode_run<kF32>(J.logits, V, row, b0, nb, w.C + i * kBlock);
        else if (J.dtype == kF16) decode_run<kF16>(J.logits, V, row, b0, nb, w.C + i * kBlock);
        else decode_run<kBF16>(J.logits, V, row, b0, nb, w.C + i * kBlock);
      }
      for (int64_t j = 0; j < nb; ++j) w.bias[j] = 0.f;
    }
    // Each row: x = C + b (one f32 addition; columns past the data −Inf, whatever C holds there), then
    // the update.
    const int64_t nb_vec = nb / kLanes * kLanes;
    for (int64_t i = 0; i < nr; ++i) {
      const float* c = w.C + i * kBlock;
      for (int64_t j = 0; j < nb_vec; j += kLanes) store(w.xrow + j, add(load(c + j), load(w.bias + j)));
      for (int64_t j = nb_vec; j < kBlock; ++j) w.xrow[j] = j < nb ? c[j] + w.bias[j] : -kInfF;
      const int64_t row_rel = r0 + i;
      const int64_t tc = int64_t(J.targets[J.live[J.row0 + row_rel]]) - J.vocab_start - b0;
      if (tc >= 0 && tc < nb) J.xt[row_rel] = w.xrow[tc];
      state_update<kStats>(w.st[i], w.xrow, J.scale2, J.T);
    }
  }
  for (int64_t i = 0; i < nr; ++i) {
    const RowState& st = w.st[i];
    J.states[(r0 + i) * J.nslices + s] = SliceState{double(st.m), st.s0, st.s1, st.s2};
  }
}

void fwd_item(void* ctx, int64_t item, int worker) {
  Fwd& J = *static_cast<Fwd*>(ctx);
  if (J.stats) fwd_item_t<true>(J, item, worker);
  else fwd_item_t<false>(J, item, worker);
}

// The plan of a forward over `rows` rows (every row counted: the plan does not read the targets).
struct FwdPlan {
  int64_t row_block, nslices, chunk_rows;
  size_t worker_bytes, total;
};
FwdPlan fwd_plan(bool head, int64_t rows, int64_t vocab, int64_t dim, int dtype, int threads) {
  FwdPlan p{};
  const int64_t d = dim > 0 ? dim : 1;
  if (head) {
    const int64_t fit = int64_t(kPackedRowsBudget / (size_t(d) * 4)) / kMR * kMR;
    p.row_block = imin(kRowBlock, imax(kMR * 2, fit));
  } else {
    p.row_block = kLogitRows;
  }
  p.row_block = imin(p.row_block, round_up(imax(rows, 1), head ? kMR : 1));
  p.nslices = ceil_div(vocab, kSlice);
  const int64_t per_chunk = int64_t(kSliceStateBudget / (size_t(p.nslices) * sizeof(SliceState)));
  p.chunk_rows = imin(imax(rows, 1), imax(p.row_block, per_chunk / p.row_block * p.row_block));
  p.worker_bytes = align64(fwd_worker_layout(head, dtype, dim, p.row_block, nullptr, nullptr) + 64);  // + a tag
  p.total = align64(size_t(rows) * 4)                                    // live rows
            + align64(size_t(p.chunk_rows * p.nslices) * sizeof(SliceState))  // slice states
            + align64(size_t(p.chunk_rows) * 4)                            // target logits
            + size_t(threads) * p.worker_bytes;
  return p;
}

// Runs the forward over every live row: slice states, then `finish(row, merged state, target logit)`.
template <class Finish>
Report forward_run(Fwd& J, int64_t rows, const int32_t* targets, int64_t ignore, Pool* pool, Finish finish,
                   int64_t* n_live) {
  const int threads = pool_threads(pool);
  const FwdPlan plan = fwd_plan(J.head != nullptr, rows, J.vocab, J.dim, J.dtype, threads);
  char* block = static_cast<char*>(aligned_alloc(64, plan.total > 0 ? plan.total : 64));
  if (!block) return Report{kNoMemory, 0, 0};
  Arena a{block};
  int32_t* live = a.take<int32_t>(size_t(rows));
  J.states = a.take<SliceState>(size_t(plan.chunk_rows * plan.nslices));
  J.xt = a.take<float>(size_t(plan.chunk_rows));
  J.workers = block + a.used;
  J.worker_bytes = plan.worker_bytes;
  for (int t = 0; t < threads; ++t)
    *reinterpret_cast<int64_t*>(J.workers + size_t(t + 1) * plan.worker_bytes - 64) = -1;
  J.row_block = plan.row_block;
  J.nslices = plan.nslices;
  J.chunk_rows = plan.chunk_rows;
  J.live = live;
  const int64_t nl = live_rows(targets, rows, ignore, live);
  *n_live = nl;
  struct FinishCtx {
    Fwd* J;
    Finish* finish;
  } fc{&J, &finish};
  for (J.row0 = 0; J.row0 < nl; J.row0 += plan.chunk_rows) {
    J.nrows = imin(plan.chunk_rows, nl - J.row0);
    for (int64_t i = 0; i < J.nrows; ++i) J.xt[i] = 0.f;
    for (int t = 0; t < threads; ++t)
      *reinterpret_cast<int64_t*>(J.workers + size_t(t + 1) * plan.worker_bytes - 64) = -1;
    pool_run(pool, ceil_div(J.nrows, plan.row_block) * plan.nslices, fwd_item, &J);
    pool_run(
        pool, ceil_div(J.nrows, kFinishRows),
        [](void* ctx, int64_t item, int) {
          FinishCtx& f = *static_cast<FinishCtx*>(ctx);
          Fwd& J = *f.J;
          const int64_t i1 = imin(J.nrows, (item + 1) * kFinishRows);
          for (int64_t i = item * kFinishRows; i < i1; ++i)
            (*f.finish)(J.live[J.row0 + i], merge_slices(J.states + i * J.nslices, J.nslices, J.T), J.xt[i]);
        },
        &fc);
  }
  free(block);
  return Report{kOk, 0, 0};
}

void write_logprobs(const LogprobsOut& o, int64_t i, float lp, float lse, float h, float sq) {
  o.logprobs[i] = lp;
  o.lse[i] = lse;
  if (o.entropy) o.entropy[i] = h;
  if (o.sum_squares) o.sum_squares[i] = sq;
}
void write_states(const StatesOut& o, int64_t i, float m, float s0, float s1, float s2, float xt) {
  o.max[i] = m;
  o.sum_exp[i] = s0;
  if (o.sum_exp_delta) o.sum_exp_delta[i] = s1;
  if (o.sum_exp_sq) o.sum_exp_sq[i] = s2;
  o.target_logit[i] = xt;
}

// The public state of a row from its merged state: f32 max (exact: a raw logit), the sums rounded once.
// NaN anywhere: every sum NaN. Target outside the shard: targetLogit 0.
void finish_state(const StatesOut& o, int64_t i, const SliceState& st, float xt, bool in_shard) {
  write_states(o, i, float(st.m), float(st.s0), float(st.s1), float(st.s2), in_shard ? xt : 0.f);
}

// ======================================================================================== backward
struct Bwd {
  const LinearBackwardParams* p;
  int64_t d, d_pad, V;
  float scale2;
  // Plan.
  int64_t rc;       // rows per chunk (a multiple of kMR)
  int64_t nb_max;   // columns per block
  int64_t part;     // columns per item (pass 1: a part, a multiple of kPartAlign; pass 2: one block)
  // The pass: items of `part` columns over [col0, col1); gradHidden's partials (do_h) and/or gradWeight
  // and gradBias (do_w) into gw / gb, f32 rows from col0 on (the outputs themselves for f32 gradients,
  // else pass 2's accumulators), continuing their running sums after the first chunk.
  bool do_h, do_w;
  int64_t col0, col1;
  float* gw;
  float* gb;  // or null
  // Buffers.
  const int32_t* live;
  float* Hd;        // [rc][d] decoded rows of the chunk (f16/bf16)
  float* AH;        // [rc/kMR][d][kMR] the chunk's rows as A micro-panels (logits)
  float* BH;        // [d_pad/kNR][rc][kNR] the chunk's rows as B panels (gradWeight)
  float* partials;  // [kParts][rc][d_pad]
  const float* rows[kRowBlock];  // the chunk's rows in f32 (hidden's own, or Hd's)
  char* workers;
  size_t worker_bytes;
  // The current chunk.
  int64_t row0, nc, chunk;
};
struct BwdWorker {
  float* Wd;   // [nb][d] decoded weight rows (f16/bf16)
  float* Bt;   // [nb/kNR][d][kNR] the block's weight rows transposed (logits)
  float* Bn;   // [d_pad/kNR][nb][kNR] the block's weight rows in strips (gradHidden)
  float* G;    // [rc][nb] logits, then G
  float* AG;   // [rc/kMR][nb][kMR] G as A micro-panels (gradHidden)
  float* AGt;  // [nb/kMR][rc][kMR] Gᵀ as A micro-panels (gradWeight)
  float* bias;  // [nb]
};
size_t bwd_worker_layout(const Bwd& J, int dtype, char* base, BwdWorker* w) {
  Arena a{base};
  const size_t d = size_t(J.d > 0 ? J.d : 1), dp = size_t(J.d_pad > 0 ? J.d_pad : kNR);
  const size_t nb = size_t(J.nb_max), rc = size_t(J.rc);
  BwdWorker t{};
  t.Wd = a.take<float>(dtype != kF32 ? nb * d : 0);
  t.Bt = a.take<float>(nb * d);
  t.Bn = a.take<float>(dp * nb);
  t.G = a.take<float>(rc * nb);
  t.AG = a.take<float>(rc * nb);
  t.AGt = a.take<float>(nb * rc);
  t.bias = a.take<float>(nb);
  if (w) *w = t;
  return a.used;
}

struct BwdPlan {
  int64_t rc, nb, part;
  size_t shared, worker_bytes, total;
  // Gradients in the input dtype (f16/bf16): pass 2's columns per block and its f32 accumulators.
  int64_t acc_cols;
  size_t acc_bytes;
};
// Pass 2's accumulators: gradWeight [cols][d] and gradBias [cols], f32.
size_t acc_bytes_of(int64_t cols, int64_t dim) {
  return align64(size_t(cols) * size_t(dim > 0 ? dim : 1) * 4) + align64(size_t(cols) * 4);
}
BwdPlan bwd_plan(int64_t rows, int64_t vocab, int64_t dim, int dtype, int threads, int64_t acc_cols = 0) {
  BwdPlan p{};
  const int64_t d = dim > 0 ? dim : 1, dp = round_up(d, kNR);
  const int64_t fit = int64_t(kPartialBudget / (size_t(kParts) * size_t(dp) * 4)) / kMR * kMR;
  p.rc = imin(kRowBlock, imax(kMR * 2, fit));
  p.rc = imin(p.rc, round_up(imax(rows, 1), kMR));
  p.nb = d > 1024 ? kPartAlign : 2 * kPartAlign;
  p.part = round_up(ceil_div(vocab, kParts), kPartAlign);
  Bwd J{};
  J.d = dim;
  J.d_pad = dp;
  J.rc = p.rc;
  J.nb_max = p.nb;
  p.worker_bytes = bwd_worker_layout(J, dtype, nullptr, nullptr);
  p.shared = align64(size_t(rows) * 4)                                  // live rows
             + align64(dtype != kF32 ? size_t(p.rc * d) * 4 : 0)        // Hd
             + align64(size_t(p.rc * d) * 4)                            // AH
             + align64(size_t(dp * p.rc) * 4)                           // BH
             + align64(size_t(kParts * p.rc * dp) * 4);                 // partials
  p.total = p.shared + size_t(threads) * p.worker_bytes;
  // Pass 2: as many columns as kAccBudget of f32 holds (at least a block per thread), whole blocks.
  const int64_t acc_fit = int64_t(kAccBudget / (size_t(d) * 4)) / p.nb * p.nb;
  p.acc_cols = acc_cols > 0 ? round_up(acc_cols, p.nb) : imax(acc_fit, p.nb * int64_t(threads));
  p.acc_cols = imin(p.acc_cols, round_up(imax(vocab, 1), p.nb));
  p.acc_bytes = dtype != kF32 ? acc_bytes_of(p.acc_cols, dim) : 0;
  return p;
}

// G for live row `n` (the chunk's row i) over the block's logits g[0 .. nb) in place.
template <bool kEntropy>
void grad_row(const Bwd& J, int64_t n, float* g, const float* bias, int64_t v0, int64_t nb, int64_t ncols) {
  const LinearBackwardParams& p = *J.p;
  const double T = p.temperature;
  const double a1d = double(p.grad_logprobs[n]) / T;
  const double b1d = kEntropy ? double(p.grad_entropy[n]) / T : 0.0;
  const double hd = kEntropy ? double(p.entropy[n]) : 0.0;
  const float l = p.lse[n];
  const VF va1 = set1(float(a1d));
  const VF vb1 = set1(float(b1d));
  const VF vh = set1(float(hd));
  const VF vs2 = set1(J.scale2);
  const VF vnl2 = set1(float(-double(l) * 1.4426950408889634));
  const VF vln2 = set1(float(kLn2));
  const VF vneg_max = set1(-3.40282347e38f);
  const VF vzg = set1(-(float(a1d) + float(b1d)) * 0.0f);
  const VF vneg_a1 = set1(-float(a1d));
  const int64_t tc = int64_t(p.targets[n]) - p.vocab_start - v0;
  const float xt = tc >= 0 && tc < nb ? g[tc] + bias[tc] : 0.f;  // read before it is overwritten
  for (int64_t j = 0; j < ncols; j += kLanes) {
    const VF x = add(load(g + j), load(bias + j));
    // log2 p = x·log2(e)/T − lse·log2(e): one FMA; p = 2^that (logprobs.cc's backward).
    const VF t2 = fmadd(x, vs2, vnl2);
    const VF pr = exp2_full(t2);
    VF out;
    if (!kEntropy) {
      out = mul(vneg_a1, pr);
    } else {
      const VF logp = mul(clamp_lo(t2, vneg_max), vln2);
      const VF gg = mul(set1(-1.0f), mul(pr, fmadd(vb1, add(logp, vh), va1)));
      out = select_lt(gg, vzg, x, vneg_max);  // x = −Inf: −(a1 + b1)·0, never 0·(−Inf)
    }
    store(g + j, out);
  }
  if (tc >= 0 && tc < nb) {
    // The target's element in f64, as the reference (its one-hot term cancels against p_y).
    const double z = double(xt) / T;
    double v;
    if (z == -kInf) {
      v = -(kEntropy ? a1d + b1d : a1d) * 0;
    } else {
      const double logp = z - double(l);
      const double pr = __builtin_exp(logp);
      v = kEntropy ? -pr * (a1d + b1d * (logp + hd)) : -a1d * pr;
    }
    g[tc] = float(v + a1d);
  }
}

void bwd_part(void* ctx, int64_t s, int worker) {
  Bwd& J = *static_cast<Bwd*>(ctx);
  const LinearBackwardParams& p = *J.p;
  const int dtype = p.head.dtype;
  const int64_t c0 = J.col0 + s * J.part, c1 = imin(J.col1, c0 + J.part);
  if (c0 >= c1) return;
  BwdWorker w;
  bwd_worker_layout(J, dtype, J.workers + size_t(worker) * J.worker_bytes, &w);
  const int64_t d = J.d, dp = J.d_pad, nc = J.nc, rcp = round_up(nc, kMR);
  const int64_t nmH = rcp / kMR;
  float* partial = J.do_h ? J.partials + s * J.rc * dp : nullptr;  // pass 1 only (kParts items)
  const bool entropy = p.grad_entropy != nullptr;
  for (int64_t v0 = c0; v0 < c1; v0 += J.nb_max) {
    const int64_t nb = imin(J.nb_max, c1 - v0), nbp = round_up(nb, kNR);
    // The block's weight rows, decoded once; transposed panels (logits) and strips (gradHidden).
    const float* wrows[kPartAlign * 2];
    for (int64_t v = 0; v < nb; ++v) wrows[v] = row_f32(p.head.weight, dtype, d, v0 + v, w.Wd + v * d);
    for (int64_t j0 = 0; j0 < nb; j0 += kNR) {
      interleave<kNR>(wrows + j0, int(imin(kNR, nb - j0)), d, w.Bt + j0 * d);
      gemm_panel(J.AH, nmH, w.Bt + j0 * d, d, kKC, w.G + j0, J.nb_max, false);
    }
    for (int64_t j = 0; j < J.nb_max; ++j)
      w.bias[j] = j < nb && p.head.bias ? element(p.head.bias, dtype, v0 + j) : 0.f;
    // G, row by row (rows past the chunk: 0).
    for (int64_t i = 0; i < nc; ++i) {
      const int64_t n = J.live[J.row0 + i];
      if (entropy) grad_row<true>(J, n, w.G + i * J.nb_max, w.bias, v0, nb, nbp);
      else grad_row<false>(J, n, w.G + i * J.nb_max, w.bias, v0, nb, nbp);
    }
    for (int64_t i = nc; i < rcp; ++i)
      for (int64_t j = 0; j < J.nb_max; ++j) w.G[i * J.nb_max + j] = 0.f;
    // gradBias: an f32 chain over the live rows in order, across chunks.
    if (J.do_w && J.gb) {
      float* gb = J.gb + (v0 - J.col0);
      for (int64_t j = 0; j < nb; ++j) {
        float acc = J.chunk == 0 ? 0.f : gb[j];
        for (int64_t i = 0; i < nc; ++i) acc += w.G[i * J.nb_max + j];
        gb[j] = acc;
      }
    }
    // gradHidden's partial: G [rows × nb] · W_block [nb × d], an f32 chain over the part's columns.
    if (J.do_h) {
      for (int64_t m = 0; m < nmH; ++m) {
        const float* rows[kMR];
        for (int i = 0; i < kMR; ++i) rows[i] = w.G + (m * kMR + i) * J.nb_max;
        interleave<kMR>(rows, kMR, nb, w.AG + m * nb * kMR);
      }
      for (int64_t q = 0; q * kNR < dp; ++q) {
        strip(wrows, nb, q * kNR, imin(kNR, d - q * kNR), w.Bn + q * nb * kNR);
        gemm_panel(w.AG, nmH, w.Bn + q * nb * kNR, nb, kKC, partial + q * kNR, dp, v0 > c0);
      }
    }
    // gradWeight rows [v0, v0 + nb) (+)= Gᵀ [nb × rows] · H [rows × d]: the f32 rows are the accumulator.
    if (J.do_w) {
      const int64_t nmV = ceil_div(nb, kMR);
      for (int64_t m = 0; m < nmV; ++m) {
        float* a = w.AGt + m * nc * kMR;
        for (int64_t i = 0; i < nc; ++i)
          for (int r = 0; r < kMR; ++r) a[i * kMR + r] = w.G[i * J.nb_max + m * kMR + r];
      }
      float* gw = J.gw + (v0 - J.col0) * d;
      for (int64_t q = 0; q * kNR < dp; ++q)
        gemm_panel_masked(w.AGt, nmV, J.BH + q * J.rc * kNR, nc, kKC, gw + q * kNR, d, nb,
                          imin(kNR, d - q * kNR), J.chunk > 0);
    }
  }
}

// n f32 values → dst as `dtype` (f16/bf16: rounded to nearest even, simd.h's conversions).
template <int D>
void store_run_t(const float* src, int64_t n, void* dst) {
  int64_t j = 0;
  for (; j + kLanes <= n; j += kLanes) store_row<D>(dst, j, load(src + j), int(kLanes));
  if (j < n) {
    alignas(32) float t[kLanes] = {};
    for (int64_t i = j; i < n; ++i) t[i - j] = src[i];
    store_row<D>(dst, j, load(t), int(n - j));
  }
}
void store_run(const float* src, int64_t n, int dtype, void* dst) {
  if (dtype == kF32) memcpy(dst, src, size_t(n) * 4);
  else if (dtype == kF16) store_run_t<kF16>(src, n, dst);
  else store_run_t<kBF16>(src, n, dst);
}

// The chunk's live rows [row0, row0 + nc), packed: as A micro-panels (the logits, AH) and as B panels
// (gradWeight, BH), f16/bf16 decoded into Hd. Spread over the pool (copies: no bits depend on it).
void pack_chunk(Bwd& J, Pool* pool) {
  const LinearHead& h = J.p->head;
  const int64_t d = J.d;
  for (int64_t i = 0; i < J.nc; ++i)
    J.rows[i] = h.dtype == kF32 ? static_cast<const float*>(h.hidden) + int64_t(J.live[J.row0 + i]) * d
                                : J.Hd + i * d;
  pool_run(
      pool, ceil_div(J.nc, kMR),
      [](void* ctx, int64_t m, int) {
        Bwd& J = *static_cast<Bwd*>(ctx);
        const LinearHead& h = J.p->head;
        const int np = int(imin(kMR, J.nc - m * kMR));
        for (int i = 0; i < np; ++i) {
          const int64_t r = m * kMR + i;
          if (h.dtype != kF32) row_f32(h.hidden, h.dtype, J.d, J.live[J.row0 + r], J.Hd + r * J.d);
        }
        interleave<kMR>(J.rows + m * kMR, np, J.d, J.AH + m * J.d * kMR);
      },
      &J);
  pool_run(
      pool, J.d_pad / kNR,
      [](void* ctx, int64_t q, int) {
        Bwd& J = *static_cast<Bwd*>(ctx);
        strip(J.rows, J.nc, q * kNR, imin(kNR, J.d - q * kNR), J.BH + q * J.rc * kNR);
      },
      &J);
}

}  // namespace

// ========================================================================================= entries
LmheadPlan lmhead_plan(int64_t rows, int64_t vocab, int64_t dim, int dtype, int threads) {
  const FwdPlan f = fwd_plan(true, rows, vocab, dim, dtype, threads);
  const BwdPlan b = bwd_plan(rows, vocab, dim, dtype, threads);
  return LmheadPlan{double(f.total), double(b.total), double(b.total + b.acc_bytes)};
}

Report linear_forward(const LinearForwardParams& p, Pool* pool) {
  const LinearHead& h = p.head;
  if (h.rows == 0) return Report{kOk, 0, 0};
  const bool states = p.states.max != nullptr;
  if (!states) {
    const int64_t bad = bad_target(p.targets, h.rows, h.vocab, p.ignore_index);
    if (bad >= 0) return Report{kTargetRange, bad, p.targets[bad]};
  }
  Fwd J{};
  J.head = &h;
  J.dtype = h.dtype;
  J.vocab = h.vocab;
  J.dim = h.dim;
  J.targets = p.targets;
  J.vocab_start = p.vocab_start;
  J.T = p.temperature;
  J.scale2 = scale2_of(p.temperature);
  J.stats = p.entropy || p.sum_squares;
  int64_t neg_inf_row = INT64_MAX, n_live = 0;
  const double T = p.temperature;
  Report r;
  if (states) {
    r = forward_run(
        J, h.rows, p.targets, p.ignore_index, pool,
        [&](int64_t i, const SliceState& st, float xt) {
          const int64_t c = int64_t(p.targets[i]) - p.vocab_start;
          finish_state(p.states, i, st, xt, c >= 0 && c < h.vocab);
        },
        &n_live);
  } else {
    r = forward_run(
        J, h.rows, p.targets, p.ignore_index, pool,
        [&](int64_t i, const SliceState& st, float xt) {
          const float qnan = __builtin_nanf("");
          if (st.s0 != st.s0) return write_logprobs(p.out, i, qnan, qnan, qnan, qnan);
          if (st.m == -kInf) {
            atomic_min(&neg_inf_row, i);
            return write_logprobs(p.out, i, qnan, qnan, qnan, qnan);
          }
          const double log_s0 = __builtin_log(st.s0);
          write_logprobs(p.out, i, float((double(xt) - st.m) / T - log_s0), float(st.m / T + log_s0),
                         float(log_s0 - st.s1 / st.s0), float(st.s2 / (st.s0 * st.s0)));
        },
        &n_live);
  }
  if (r.fault != kOk) return r;
  for (int64_t i = 0; i < h.rows; ++i) {
    if (p.targets[i] != p.ignore_index) continue;
    if (states) write_states(p.states, i, 0.f, 0.f, 0.f, 0.f, 0.f);
    else write_logprobs(p.out, i, 0.f, 0.f, 0.f, 0.f);
  }
  if (neg_inf_row != INT64_MAX) return Report{kAllNegInf, neg_inf_row, 0};
  return Report{kOk, 0, 0};
}

Report logprob_states(const LogprobStatesParams& p, Pool* pool) {
  if (p.rows == 0) return Report{kOk, 0, 0};
  Fwd J{};
  J.logits = p.logits;
  J.dtype = p.dtype;
  J.vocab = p.vocab;
  J.dim = 0;
  J.targets = p.targets;
  J.vocab_start = p.vocab_start;
  J.T = p.temperature;
  J.scale2 = scale2_of(p.temperature);
  J.stats = p.entropy || p.sum_squares;
  int64_t n_live = 0;
  const Report r = forward_run(
      J, p.rows, p.targets, p.ignore_index, pool,
      [&](int64_t i, const SliceState& st, float xt) {
        const int64_t c = int64_t(p.targets[i]) - p.vocab_start;
        finish_state(p.states, i, st, xt, c >= 0 && c < p.vocab);
      },
      &n_live);
  if (r.fault != kOk) return r;
  for (int64_t i = 0; i < p.rows; ++i)
    if (p.targets[i] == p.ignore_index) write_states(p.states, i, 0.f, 0.f, 0.f, 0.f, 0.f);
  return Report{kOk, 0, 0};
}

namespace {
struct MergeJob {
  const MergeStatesParams* p;
  int64_t neg_inf_row;
};
void merge_item(void* ctx, int64_t item, int) {
  MergeJob& J = *static_cast<MergeJob*>(ctx);
  const MergeStatesParams& p = *J.p;
  const double T = p.temperature;
  const float qnan = __builtin_nanf("");
  const int64_t i1 = imin(p.rows, (item + 1) * kFinishRows);
  for (int64_t i = item * kFinishRows; i < i1; ++i) {
    const int64_t y = p.targets[i];
    if (y == p.ignore_index) {
      write_logprobs(p.out, i, 0.f, 0.f, 0.f, 0.f);
      continue;
    }
    double M = -kInf;
    bool nan = false;
    for (int64_t k = 0; k < p.count; ++k) {
      const double m = p.states[k].max[i];
      if (m != m) nan = true;
      else if (m > M) M = m;
    }
    double S = 0, Sd = 0, Sq = 0, xt = 0;
    for (int64_t k = 0; k < p.count; ++k) {
      const StatesIn& s = p.states[k];
      const double m = s.max[i];
      const double s0 = s.sum_exp[i];
      const double sd = p.out.entropy && s.sum_exp_delta ? double(s.sum_exp_delta[i]) : 0.0;
      const double sq = p.out.sum_squares && s.sum_exp_sq ? double(s.sum_exp_sq[i]) : 0.0;
      if (y >= s.vocab_start && y < s.vocab_end) xt = s.target_logit[i];
      if (m == -kInf || M == kInf) {
        S += s0;
        Sd += sd;
        Sq += sq;
        continue;
      }
      const double dm = (m - M) / T;
      const double c = __builtin_exp(dm);
      S += c * s0;
      Sd += c * sd + (c > 0 ? c * dm * s0 : 0);
      Sq += c * c * sq;
    }
    if (nan || S != S || M == kInf) {
      write_logprobs(p.out, i, qnan, qnan, qnan, qnan);
      continue;
    }
    if (M == -kInf) {
      atomic_min(&J.neg_inf_row, i);
      write_logprobs(p.out, i, qnan, qnan, qnan, qnan);
      continue;
    }
    const double logS = __builtin_log(S);
    write_logprobs(p.out, i, float((xt - M) / T - logS), float(M / T + logS), float(logS - Sd / S),
                   float(Sq / (S * S)));
  }
}
}  // namespace

Report merge_states(const MergeStatesParams& p, Pool* pool) {
  if (p.rows == 0) return Report{kOk, 0, 0};
  const int64_t bad = bad_target(p.targets, p.rows, p.vocab, p.ignore_index);
  if (bad >= 0) return Report{kTargetRange, bad, p.targets[bad]};
  MergeJob J{&p, INT64_MAX};
  pool_run(pool, ceil_div(p.rows, kFinishRows), merge_item, &J);
  if (J.neg_inf_row != INT64_MAX) return Report{kAllNegInf, J.neg_inf_row, 0};
  return Report{kOk, 0, 0};
}

Report linear_backward(const LinearBackwardParams& p, Pool* pool) {
  const LinearHead& h = p.head;
  if (h.rows > 0) {
    const int64_t bad = bad_target(p.targets, h.rows, p.target_limit, p.ignore_index);
    if (bad >= 0) return Report{kTargetRange, bad, p.targets[bad]};
  }
  const int gd = p.grad_dtype;  // kF32, or h.dtype (the API checks)
  const bool narrow = gd != kF32;
  const size_t es = elem_size(gd);
  const int threads = pool_threads(pool);
  const BwdPlan plan = bwd_plan(h.rows, h.vocab, h.dim, h.dtype, threads, p.acc_cols);
  const size_t bytes = plan.total + (narrow ? plan.acc_bytes : 0);
  char* block = static_cast<char*>(aligned_alloc(64, bytes > 0 ? bytes : 64));
  if (!block) return Report{kNoMemory, 0, 0};
  Bwd J{};
  J.p = &p;
  J.d = h.dim;
  J.d_pad = round_up(imax(h.dim, 1), kNR);
  J.V = h.vocab;
  J.scale2 = scale2_of(p.temperature);
  J.rc = plan.rc;
  J.nb_max = plan.nb;
  Arena a{block};
  int32_t* live = a.take<int32_t>(size_t(h.rows));
  const int64_t d = h.dim;
  J.Hd = a.take<float>(h.dtype != kF32 ? size_t(plan.rc * d) : 0);
  J.AH = a.take<float>(size_t(plan.rc * d));
  J.BH = a.take<float>(size_t(J.d_pad * plan.rc));
  J.partials = a.take<float>(size_t(kParts * plan.rc * J.d_pad));
  J.workers = block + a.used;
  J.worker_bytes = plan.worker_bytes;
  a.used += size_t(threads) * plan.worker_bytes;
  float* acc_w = narrow ? a.take<float>(size_t(plan.acc_cols) * size_t(d > 0 ? d : 1)) : nullptr;
  float* acc_b = narrow ? a.take<float>(size_t(plan.acc_cols)) : nullptr;
  J.live = live;
  const int64_t nl = live_rows(p.targets, h.rows, p.ignore_index, live);
  char* const gh = static_cast<char*>(p.grad_hidden);
  // Ignored rows: zero gradHidden. No live row: every gradient 0 (+0 in every dtype). At d = 0 gradHidden
  // and gradWeight are empty arrays, whose data pointer may be null: memset must not be passed it.
  for (int64_t i = 0; d > 0 && i < h.rows; ++i)
    if (p.targets[i] == p.ignore_index) memset(gh + size_t(i * d) * es, 0, size_t(d) * es);
  if (nl == 0) {
    if (d > 0) memset(p.grad_weight, 0, size_t(h.vocab * d) * es);
    if (p.grad_bias) memset(p.grad_bias, 0, size_t(h.vocab) * es);
  }
  // Pass 1: gradHidden, and with f32 gradients gradWeight and gradBias in the same sweep (their outputs
  // are their f32 accumulators across chunks).
  J.do_h = true;
  J.do_w = !narrow;
  J.col0 = 0;
  J.col1 = h.vocab;
  J.part = plan.part;
  J.gw = narrow ? nullptr : static_cast<float*>(p.grad_weight);
  J.gb = narrow ? nullptr : static_cast<float*>(p.grad_bias);
  const int64_t nparts = ceil_div(h.vocab, J.part);
  for (J.row0 = 0, J.chunk = 0; J.row0 < nl; J.row0 += plan.rc, ++J.chunk) {
    J.nc = imin(plan.rc, nl - J.row0);
    pack_chunk(J, pool);
    pool_run(pool, nparts, bwd_part, &J);
    // gradHidden = Σ of the parts' partials, in part order, in f64, rounded to f32 (then to gd).
    struct SumCtx {
      Bwd* J;
      int64_t nparts;
      int gd;
    } sc{&J, nparts, gd};
    pool_run(
        pool, J.nc,
        [](void* ctx, int64_t i, int) {
          SumCtx& c = *static_cast<SumCtx*>(ctx);
          Bwd& J = *c.J;
          const size_t es = elem_size(c.gd);
          char* out = static_cast<char*>(J.p->grad_hidden) + size_t(int64_t(J.live[J.row0 + i]) * J.d) * es;
          alignas(64) float f[64];
          for (int64_t k0 = 0; k0 < J.d; k0 += 64) {
            const int64_t n = imin(64, J.d - k0);
            for (int64_t k = 0; k < n; ++k) {
              double s = 0.0;
              for (int64_t q = 0; q < c.nparts; ++q) s += J.partials[(q * J.rc + i) * J.d_pad + k0 + k];
              f[k] = float(s);
            }
            store_run(f, n, c.gd, out + size_t(k0) * es);
          }
        },
        &sc);
  }
  // Pass 2 (gradients in the input dtype): gradWeight and gradBias, acc_cols columns at a time over
  // every chunk (items of one column block), in f32 accumulators, rounded once when the block is done.
  // The same logits, G and chains as pass 1 of f32 gradients: the f32 result, rounded.
  if (narrow && nl > 0) {
    J.do_h = false;
    J.do_w = true;
    J.part = plan.nb;
    J.gw = acc_w;
    J.gb = p.grad_bias ? acc_b : nullptr;
    for (int64_t c0 = 0; c0 < h.vocab; c0 += plan.acc_cols) {
      J.col0 = c0;
      J.col1 = imin(h.vocab, c0 + plan.acc_cols);
      const int64_t items = ceil_div(J.col1 - J.col0, J.part);
      for (J.row0 = 0, J.chunk = 0; J.row0 < nl; J.row0 += plan.rc, ++J.chunk) {
        J.nc = imin(plan.rc, nl - J.row0);
        pack_chunk(J, pool);
        pool_run(pool, items, bwd_part, &J);
      }
      pool_run(
          pool, items,
          [](void* ctx, int64_t s, int) {
            Bwd& J = *static_cast<Bwd*>(ctx);
            const LinearBackwardParams& p = *J.p;
            const size_t es = elem_size(p.grad_dtype);
            const int64_t v0 = J.col0 + s * J.part, nb = imin(J.part, J.col1 - v0);
            store_run(J.gw + (v0 - J.col0) * J.d, nb * J.d, p.grad_dtype,
                      static_cast<char*>(p.grad_weight) + size_t(v0 * J.d) * es);
            if (J.gb)
              store_run(J.gb + (v0 - J.col0), nb, p.grad_dtype, static_cast<char*>(p.grad_bias) + size_t(v0) * es);
          },
          &J);
    }
  }
  free(block);
  return Report{kOk, 0, 0};
}

// The f32 multiply-add peak of the pool's threads at this build's GEMM width (gemm.h's VW: 16 lanes in
// the AVX-512 build): 2·kMR independent chains per thread, as the tile has. The LM head's yardstick.
double lmhead_fma_probe(Pool* pool, int64_t iters) {
  struct Ctx {
    int64_t iters;
    float sink[256];
  } c{iters, {}};
  const int threads = pool_threads(pool);
  pool_run(
      pool, threads,
      [](void* ctx, int64_t, int worker) {
        Ctx& c = *static_cast<Ctx*>(ctx);
        Tile t;
        for (int i = 0; i < kMR; ++i) {
          t.c[i][0] = wset1(0.01f * float(2 * i + 1));  // distinct chains (equal ones would be merged)
          t.c[i][1] = wset1(0.01f * float(2 * i + 2));
        }
        const VW a = wset1(0.999f), b = wset1(1e-4f);
        for (int64_t k = 0; k < c.iters; ++k) {
#pragma GCC unroll 16
          for (int i = 0; i < kMR; ++i) {
            t.c[i][0] = wfmadd(t.c[i][0], a, b);
            t.c[i][1] = wfmadd(t.c[i][1], a, b);
          }
        }
        alignas(64) float s[kWLanes];
        // Every chain reaches the sink (a chain whose result is dropped would not be computed).
        VW acc = wzero();
        for (int i = 0; i < kMR; ++i) acc = wfmadd(t.c[i][1], a, wfmadd(t.c[i][0], a, acc));
        wstore(s, acc);
        c.sink[worker & 255] = s[0];
      },
      &c);
  return double(threads) * double(iters) * 2.0 * kMR * kNR;  // 2·kMR vectors of kNR/2 lanes, 2 FLOPs each
}

}  // namespace GK_CPU_ISA
}  // namespace cpu
}  // namespace gk
