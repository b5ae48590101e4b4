// logprobs family: forward, backward, gatherProbs.
//
// FORWARD  z = logits / T (per row of [N, V]); lse = log Σ_v e^{z_v}; logprob = z_y − lse;
//          entropy = lse − Σ p z = log s − Σ p (z − m); Σp² = Σ e^{2(z−m)} / s².
//   One pass over each row with an online state (m, s, t, q) over the raw logits x, in base 2:
//     m = running max of x, d = (x − m)·log2e/T, s = Σ 2^d, t = Σ 2^d·d, q = Σ 2^{2d};
//     lse = m/T + ln s, logprob = (x_y − m)/T − ln s, entropy = ln s − ln2·t/s, Σp² = q/s².
//   Rescaling to a new max m' multiplies s by c = 2^{(m−m')·log2e/T}, q by c², and t by c after adding
//   (m−m')·log2e/T · s. x − m is exactly 0 for the max itself, so a one-token row gets log p = 0.
//   Batch invariance: each row is cut into segments of 32 KiB of logits (V and the dtype alone fix
//   their number); block = (row, segment), 256 threads, each loading 8 16-byte vectors (8 bf16/f16 or
//   4 f32 each) before computing on any, vector j of a segment always going to thread j mod 256 in
//   increasing j; a fixed shuffle tree and then warp order merge the threads, and with several segments
//   logprobs_merge_kernel merges their states (float4 each) in segment order. The bits of a row
//   therefore never depend on N, on the row's position (a misaligned row reads the same elements
//   with scalar loads) or on how the caller chunks the rows.
//   Per element: a subtraction, a multiplication, one MUFU.EX2 (ex2.approx.ftz: 2^d below 2^−126 is 0)
//   and an addition; + 2 FMAs and a max when entropy or Σp² is asked for (a separate instantiation,
//   so the plain forward carries no dead accumulators).
//   Ignored rows (target == ignoreIndex) are never read and get 0 everywhere. A row whose max is −Inf
//   (all −Inf) raises kFlagAllNegInf, a target outside [0, V) kFlagTargetRange; the job turns them into
//   RANGE errors. NaN anywhere in a row makes its outputs NaN (s becomes NaN); +Inf gives NaN.
//   Bytes: N·V·sizeof(x) read (+ N·(4 target + 4·outputs) + 16·N·segments of partial states);
//   FLOPs ≈ 4·N·V (+ 3·N·V with the statistics) + N·V exp2.
//   Measured on an H200 (2026-11-26): 60–65% of copy bandwidth before this layout (issue-bound: SM 88%,
//   DRAM 50% in ncu), 68% after it for the plain forward and 61–63% with the statistics.
//   Goal on an H100 or H200: ≥ 85% of copy bandwidth at [16384, 151936] bf16 (≈ 5 GB; ≈ 1.4 ms on an H200).
//
// BACKWARD gradLogits = [g·(1[v=y] − p_v) − gE·p_v·(log p_v + H)] / T, p_v = e^{z_v − lse}, in the
//   logits' dtype (rounded to nearest even). p_v = 2^{x_v·log2e/T − lse·log2e}: one FMA and one MUFU.EX2
//   (ex2.approx.ftz, as the forward's sum: p below 2^−126 is 0). Elementwise, no reduction: an element's
//   bits depend on its own logit and its row's lse, g, gE, H alone, whatever path computes it.
//   Block: one 32 KiB chunk of one row (256 threads × 8 vectors of 16 bytes: 16384 bf16/f16 or 8192 f32
//   columns; V and the dtype alone fix the chunks, the last one may be short), a 1-D grid with each
//   row's chunks adjacent so consecutive blocks stream consecutive memory. Each thread issues every
//   load of its chunk (8 vectors, vector i going to thread i mod 256, + at most one scalar of the
//   chunk's head and one of its tail where a misaligned row needs them) before computing on any, then
//   computes and stores: 128 bytes in flight per thread (the loop before this layout had 16). The row
//   base is 64-bit; columns within a row are 32-bit (V < 2^31). When input and output differ in their
//   16-byte misalignment, scalars only, 8 per thread in flight. The one-hot term costs no per-element
//   compare: one unsigned compare per vector finds the vector that holds the target, which recomputes
//   that element. A separate instantiation carries the entropy term. Ignored rows are not read and
//   get 0; a target outside [0, V) gives NaN and kFlagTargetRange.
//   In place (gradLogits == logits) is safe: a thread writes only the elements it read, after reading
//   them, and no other thread reads them (so no __restrict__ and no __ldg on the logits).
//   Bytes: N·V·2·sizeof(x) (+ N·(4 target + 8..16 of row scalars)); FLOPs ≈ 3·N·V + N·V exp2 (an FMA, a
//   subtraction, a multiplication; + an FMA, a multiplication and an FMA with gradEntropy).
//   Measured on an H200 (2026-11-26) before this layout (16 KiB chunks, a loop of 4 vectors per thread
//   with one load in flight, since a store may alias the next load): 2.84 ms at [16384, 151936] bf16 =
//   1.20x a copy of the same bytes (goal ≤ 1.3x). This layout is not measured yet; expected near copy
//   speed: about 6 instructions per bf16 element (unpack, FFMA, MUFU.EX2, FADD, FMUL, half a pack; about
//   11 with gradEntropy) against about 25 that an H200's issue rate allows per element at copy
//   bandwidth, and 128 KiB of loads in flight per SM (≤ 64 registers: 4 blocks of 256 threads).
//
// GATHER PROBS  probs[g][i, k] = e^{logits[t, V*_g[k]] / T − lse[t]} for token t = i-th of group g.
//   Block: one token, 128 threads over its group's K_g columns (a gather: K_g·sizeof(x) read at
//   random columns of the row, K_g·4 written). Not renormalised on V*.
#include <algorithm>
#include <cfloat>
#include <climits>
#include <cmath>
#include <type_traits>

#include "logprobs.cuh"
#include "online_softmax.cuh"

namespace gk {
namespace {

constexpr int kFwdThreads = 256;
constexpr int kFwdBatch = 8;  // 16-byte vectors each thread loads before it computes on any of them
constexpr int kBwdThreads = 256;
constexpr int kBwdBatch = 8;  // 16-byte vectors each backward thread loads before it computes on any

// A factor of 1/T as the kernels take it (log2e/T or 1/T, computed in double): at least FLT_MIN, so a
// −Inf logit times it stays −Inf (0·−Inf would be NaN) when it underflows f32 (T above ~1e38: the
// uniform limit either way). The API keeps T ≥ 2^-126, so it is finite.
inline float scale_of(double f) { return std::max(static_cast<float>(f), FLT_MIN); }

// Elements of one vocabulary segment: kFwdThreads · kFwdBatch vectors (32 KiB of logits, any dtype).
template <class T>
constexpr int64_t segment_elems() {
  return int64_t(kFwdThreads) * kFwdBatch * VecTraits<T>::N;
}

// OnlineState, empty_state, add_scaled, state_merge, state_update, shfl_down, FwdOut, write_row and finish_row:
// online_softmax.cuh (shared with lmhead.cu).

// The block's merged state, valid in thread 0. Fixed tree: lane i merges lane i+off, then warp 0
// merges the warps' states in warp order.
__device__ OnlineState block_reduce(OnlineState st, float scale2) {
  __shared__ OnlineState sh[32];
  const int lane = threadIdx.x & 31;
  const int warp = threadIdx.x >> 5;
#pragma unroll
  for (int off = 16; off > 0; off >>= 1) st = state_merge(st, shfl_down(st, off), scale2);
  if (lane == 0) sh[warp] = st;
  __syncthreads();
  if (warp == 0) {
    const int nw = blockDim.x >> 5;
    st = lane < nw ? sh[lane] : empty_state();
#pragma unroll
    for (int off = 16; off > 0; off >>= 1) st = state_merge(st, shfl_down(st, off), scale2);
  }
  return st;
}

// Online state of the segment [begin, begin + seg) of one row (elements past `vocab` read as −Inf,
// which adds exactly 0). Vector j of the segment (elements begin + j·N … + N − 1) belongs to thread
// j mod kFwdThreads, and each thread folds its vectors in increasing j: which element meets which
// depends on the segment's position in the row alone, never on the row's address, so a row gives
// the same bits wherever it sits (the aligned path and the scalar path read the same values).
template <bool kStats, class T>
__device__ OnlineState scan_segment(const T* __restrict__ row, int64_t vocab, int64_t begin, int64_t seg,
                                    float scale2) {
  constexpr int N = VecTraits<T>::N;
  OnlineState st = empty_state();
  const int64_t end = begin + seg < vocab ? begin + seg : vocab;
  // 16-byte loads when the row is 16-byte aligned (every row is when V·sizeof(x) is a multiple of 16).
  const bool aligned = (reinterpret_cast<uintptr_t>(row) & 15) == 0;
  for (int64_t b0 = 0; b0 < seg; b0 += int64_t(kFwdThreads) * kFwdBatch * N) {
    const int64_t e0 = begin + b0 + int64_t(threadIdx.x) * N;  // first element of this thread's vector 0
    const int64_t step = int64_t(kFwdThreads) * N;
    if (aligned && begin + b0 + step * kFwdBatch <= end) {
      uint4 v[kFwdBatch];  // every load in flight before the first is consumed
#pragma unroll
      for (int j = 0; j < kFwdBatch; ++j) v[j] = __ldg(reinterpret_cast<const uint4*>(row + e0 + j * step));
#pragma unroll
      for (int j = 0; j < kFwdBatch; ++j) {
        float x[N];
        unpack_vec<T>(v[j], x);
        state_update<kStats>(st, x, scale2);
      }
    } else {  // a misaligned row or the row's last batch: the same elements in the same order
#pragma unroll
      for (int j = 0; j < kFwdBatch; ++j) {
        // A vector wholly past the end would add exact zeros (all −Inf): skipping it changes no bit.
        if (e0 + j * step >= end) break;
        float x[N];
#pragma unroll
        for (int k = 0; k < N; ++k) {
          const int64_t e = e0 + j * step + k;
          x[k] = e < end ? load_f32(row + e) : -INFINITY;
        }
        state_update<kStats>(st, x, scale2);
      }
    }
  }
  return st;
}

// Block: (row, segment). One segment per row: the block writes the outputs; several: it writes its
// state and logprobs_merge_kernel merges them. The segment count depends on V and the dtype alone.
template <bool kStats, class T>
__global__ void __launch_bounds__(kFwdThreads)
    logprobs_fwd_kernel(const T* __restrict__ logits, const int* __restrict__ targets, int64_t vocab,
                        int ignore, float scale2, float inv_t, int splits, int64_t seg,
                        float4* __restrict__ partial, FwdOut o, ErrorFlags* flags) {
  const int64_t row = blockIdx.x;
  const int split = blockIdx.y;
  const int tgt = __ldg(targets + row);
  if (tgt == ignore) {  // uniform over the block: no thread reaches block_reduce's barrier
    if (splits == 1 && threadIdx.x == 0) write_row(o, row, 0.f, 0.f, 0.f, 0.f);
    return;  // with splits, the merge kernel writes the zeros
  }
  const T* r = logits + row * vocab;
  // The target's logit, fetched before the scan so its latency hides behind it.
  const float xt = (splits == 1 && threadIdx.x == 0 && tgt >= 0 && tgt < vocab) ? load_f32(r + tgt) : 0.f;
  OnlineState st = scan_segment<kStats>(r, vocab, int64_t(split) * seg, seg, scale2);
  st = block_reduce(st, scale2);
  if (threadIdx.x != 0) return;
  if (splits > 1) {
    partial[row * splits + split] = make_float4(st.m, st.s, st.t, st.q);
    return;
  }
  finish_row(row, st, vocab, tgt, xt, inv_t, o, flags);
}

// One thread per row: merges the row's segment states in segment order.
template <class T>
__global__ void logprobs_merge_kernel(const float4* __restrict__ partial, int splits, int64_t rows,
                                      const T* __restrict__ logits, const int* __restrict__ targets,
                                      int64_t vocab, int ignore, float scale2, float inv_t, FwdOut o,
                                      ErrorFlags* flags) {
  const int64_t row = blockIdx.x * int64_t(blockDim.x) + threadIdx.x;
  if (row >= rows) return;
  const int tgt = targets[row];
  if (tgt == ignore) {
    write_row(o, row, 0.f, 0.f, 0.f, 0.f);
    return;
  }
  OnlineState st = empty_state();
  for (int k = 0; k < splits; ++k) {
    const float4 v = partial[row * splits + k];
    st = state_merge(st, OnlineState{v.x, v.y, v.z, v.w}, scale2);
  }
  const float xt = (tgt >= 0 && tgt < vocab) ? load_f32(logits + row * vocab + tgt) : 0.f;
  finish_row(row, st, vocab, tgt, xt, inv_t, o, flags);
}

// ------------------------------------------------------------------------------------- backward
// Elements of one backward chunk: kBwdThreads · kBwdBatch vectors (32 KiB of logits, any dtype).
template <class T>
constexpr unsigned bwd_chunk_elems() {
  return unsigned(kBwdThreads) * kBwdBatch * VecTraits<T>::N;
}

// A plain load (no __ldg, no __restrict__): in place, `out` aliases the logits, and the non-coherent
// read-only path is only promised for data the kernel never writes.
template <class T>
__device__ __forceinline__ float plain_f32(const T* p) {
  if constexpr (sizeof(T) == 4) {
    return *reinterpret_cast<const float*>(p);
  } else if constexpr (std::is_same<T, __half>::value) {
    return __half2float(*p);
  } else {
    return __bfloat162float(*p);
  }
}

// What one row's gradient needs, loaded once per block.
struct BwdRow {
  unsigned tgt;  // the target column (checked to be in [0, V))
  float g;       // gradLogprobs / T
  float ge;      // gradEntropy / T (kEnt only)
  float h;       // entropy (kEnt only)
  float lse2;    // lse · log2e
  float scale2;  // log2e / T
};

// The gradient of one element: log2 p = x·log2e/T − lse·log2e, p = 2^{log2 p} (ex2.approx.ftz, as the
// forward's sum: p below 2^−126 is 0), g·(1[col = y] − p), and with kEnt − gE·p·(ln p + H), 0 where
// p = 0. Every path (16-byte vectors, scalar heads and tails, misaligned rows) calls this one function
// with explicit FMAs, so an element's bits depend on its value and its row's scalars alone. The fast
// path passes is_target = false and so computes g·(0 − p) exactly as the general form does; do not
// rewrite it as −g·p, which gives the other sign of zero where p = 0.
template <bool kEnt>
__device__ __forceinline__ float grad_of(const BwdRow& r, float x, bool is_target) {
  const float lp2 = fmaf(x, r.scale2, -r.lse2);
  const float p = ex2_ftz(lp2);
  float out = r.g * ((is_target ? 1.f : 0.f) - p);
  if (kEnt) {
    const float term = p > 0.f ? p * fmaf(lp2, kLn2, r.h) : 0.f;
    out = fmaf(-r.ge, term, out);
  }
  return out;
}

// Block: chunk `blockIdx.x mod chunks` of row `blockIdx.x / chunks` (chunk c = columns
// [c·kChunk, min((c+1)·kChunk, V)); consecutive blocks stream consecutive memory). Within the chunk the
// first `head` elements (< 16/sizeof(x), to reach a 16-byte boundary on a misaligned row) and the
// last `tail` (< 16/sizeof(x)) are scalars; vector i of the rest belongs to thread i mod kBwdThreads.
// Each thread issues every load of its chunk (≤ kBwdBatch vectors and ≤ 2 scalars) before it computes
// on any, then computes and stores. In place is safe: a thread writes only the elements it read, after
// reading them, and no other thread reads them. No __restrict__ on logits or out (they may alias).
// The row's base pointer is 64-bit; columns within a row are 32-bit (the launcher checks V < 2^31).
template <class T, bool kEnt>
__global__ void __launch_bounds__(kBwdThreads, 4)
    logprobs_bwd_kernel(const T* logits, const int* __restrict__ targets, const float* __restrict__ lse,
                        const float* __restrict__ glp, const float* __restrict__ gent,
                        const float* __restrict__ ent, unsigned vocab, unsigned chunks, int ignore,
                        float scale2, float inv_t, bool vec_ok, T* out, ErrorFlags* flags) {
  constexpr unsigned N = VecTraits<T>::N;
  constexpr unsigned kChunk = bwd_chunk_elems<T>();
  const unsigned row = blockIdx.x / chunks;
  const unsigned begin = (blockIdx.x - row * chunks) * kChunk;
  const unsigned n = min(kChunk, vocab - begin);
  const size_t base = size_t(row) * vocab + begin;
  const T* p = logits + base;
  T* o = out + base;
  // The row's scalars are loaded with the target, before the target is known, so their latencies overlap.
  const int tgt = __ldg(targets + row);
  BwdRow r;
  r.g = __ldg(glp + row) * inv_t;
  r.lse2 = __ldg(lse + row) * kLog2e;
  r.ge = kEnt ? __ldg(gent + row) * inv_t : 0.f;
  r.h = kEnt ? __ldg(ent + row) : 0.f;
  // lse = +Inf (|max|/T beyond f32): every p is 0, as in the float64 reference; FLT_MIN keeps x·scale2
  // finite for finite x, so x·scale2 − lse2 is −Inf rather than Inf − Inf.
  r.scale2 = r.lse2 == INFINITY ? FLT_MIN : scale2;
  r.tgt = unsigned(tgt);
  const bool ignored = tgt == ignore;
  const bool bad = !ignored && (tgt < 0 || unsigned(tgt) >= vocab);
  // head: elements before p reaches 16 bytes; all n when input and output differ in misalignment
  // (then the scalar loop below takes the whole chunk).
  const unsigned head = vec_ok ? unsigned(head_elems(p, int64_t(n))) : n;
  const unsigned nvec = (n - head) / N;
  const unsigned tail = n - head - nvec * N;
  const unsigned t = threadIdx.x;
  const uint4* vin = reinterpret_cast<const uint4*>(p + head);
  uint4* vout = reinterpret_cast<uint4*>(o + head);
  if (ignored || bad) {  // ignored rows: 0 without reading the logits; bad targets: NaN and a flag
    if (bad && begin == 0 && t == 0) raise_flag(flags, kFlagTargetRange, int(row), tgt);
    const T fill = from_f32<T>(ignored ? 0.f : NAN);
    uint4 fv;
    T* fe = reinterpret_cast<T*>(&fv);
#pragma unroll
    for (unsigned k = 0; k < N; ++k) fe[k] = fill;
    for (unsigned i = t; i < nvec; i += kBwdThreads) vout[i] = fv;
    for (unsigned i = t; i < head; i += kBwdThreads) o[i] = fill;
    if (t < tail) o[n - tail + t] = fill;
    return;
  }
  if (head >= N) {  // input and output misaligned differently, or a row not even sizeof(x)-aligned:
    // scalars only, still kBwdBatch loads in flight per thread before computing on them.
    for (unsigned b0 = 0; b0 < n; b0 += kBwdThreads * kBwdBatch) {
      float x[kBwdBatch];
#pragma unroll
      for (int j = 0; j < kBwdBatch; ++j) {
        const unsigned i = b0 + j * kBwdThreads + t;
        x[j] = i < n ? plain_f32(p + i) : 0.f;
      }
#pragma unroll
      for (int j = 0; j < kBwdBatch; ++j) {
        const unsigned i = b0 + j * kBwdThreads + t;
        if (i < n) o[i] = from_f32<T>(grad_of<kEnt>(r, x[j], begin + i == r.tgt));
      }
    }
    return;
  }
  // Every load first: ≤ kBwdBatch 16-byte vectors (all of them in a full chunk: no bounds checks then)
  // and this thread's head and tail element, if any.
  uint4 v[kBwdBatch];
  if (nvec == kBwdThreads * kBwdBatch) {
#pragma unroll
    for (int j = 0; j < kBwdBatch; ++j) v[j] = vin[j * kBwdThreads + t];
  } else {
#pragma unroll
    for (int j = 0; j < kBwdBatch; ++j) {
      const unsigned i = j * kBwdThreads + t;
      v[j] = i < nvec ? vin[i] : make_uint4(0u, 0u, 0u, 0u);
    }
  }
  const unsigned ih = t;             // head element of this thread (t < head)
  const unsigned it = n - tail + t;  // tail element of this thread (t < tail)
  const float xh = t < head ? plain_f32(p + ih) : 0.f;
  const float xt = t < tail ? plain_f32(p + it) : 0.f;
  // Then compute and store.
#pragma unroll
  for (int j = 0; j < kBwdBatch; ++j) {
    const unsigned i = j * kBwdThreads + t;
    if (i < nvec) {
      float x[N], y[N];
      unpack_vec<T>(v[j], x);
#pragma unroll
      for (unsigned k = 0; k < N; ++k) y[k] = grad_of<kEnt>(r, x[k], false);
      // The one vector of the row that holds the target recomputes that element: no per-element
      // column compare elsewhere (a thread meets it at most once per row).
      const unsigned dt = r.tgt - (begin + head + i * N);
      if (dt < N) {
#pragma unroll
        for (unsigned k = 0; k < N; ++k)
          if (k == dt) y[k] = grad_of<kEnt>(r, x[k], true);
      }
      vout[i] = pack_vec<T>(y);
    }
  }
  if (t < head) o[ih] = from_f32<T>(grad_of<kEnt>(r, xh, begin + ih == r.tgt));
  if (t < tail) o[it] = from_f32<T>(grad_of<kEnt>(r, xt, begin + it == r.tgt));
}

// ---------------------------------------------------------------------------------- gatherProbs
template <class T>
__global__ void gather_probs_kernel(const T* __restrict__ logits, const float* __restrict__ lse, int64_t vocab,
                                    float scale2, const int* __restrict__ gto, int num_groups,
                                    const int* __restrict__ voff, const int* __restrict__ cols,
                                    const long long* __restrict__ poff, float* __restrict__ probs) {
  const int64_t t = blockIdx.x;
  const int g = find_range(gto, num_groups, static_cast<int>(t));
  const int i = static_cast<int>(t) - gto[g];
  const int k0 = voff[g];
  const int K = voff[g + 1] - k0;
  float* __restrict__ o = probs + poff[g] + int64_t(i) * K;
  const float l2 = lse[t] * kLog2e;
  const float s2 = l2 == INFINITY ? FLT_MIN : scale2;  // lse = +Inf: p = 0 (as the backward)
  const T* row = logits + t * vocab;
  for (int64_t k = threadIdx.x; k < K; k += blockDim.x) {
    const int c = cols[k0 + k];
    const float x = (c >= 0 && c < vocab) ? load_f32(row + c) : NAN;
    o[k] = exp2f(fmaf(x, s2, -l2));
  }
}

}  // namespace

Status launch_logprobs_forward(const LogprobsParams& p, const LaunchEnv& env, Scratch& scratch,
                               ErrorFlags* flags) {
  if (p.rows == 0) return Status::Ok();
  GK_REQUIRE(p.vocab > 0, "logprobs: vocab must be ≥ 1");
  GK_REQUIRE(p.rows <= INT_MAX, "logprobs: rows must fit in int32");
  GK_REQUIRE(p.logits && p.targets && p.logprobs && p.lse, "logprobs: null pointer");
  GK_REQUIRE(p.temperature >= 0x1p-126 && std::isfinite(p.temperature), "logprobs: temperature must be finite and ≥ 2^-126");
  const float scale2 = scale_of(1.4426950408889634 / p.temperature);
  const float inv_t = scale_of(1.0 / p.temperature);
  const FwdOut o{p.logprobs, p.lse, p.entropy, p.sum_squares};
  const bool stats = p.entropy != nullptr || p.sum_squares != nullptr;
  return dispatch_float(p.dtype, "logits", [&](auto tag) -> Status {
    using T = decltype(tag);
    constexpr int64_t N = VecTraits<T>::N;
    // Batch invariance: the segments (and so every reduction tree) depend on V and the dtype only,
    // never on the number of rows. split_override (tests) picks another segment count, rounded to
    // whole vectors.
    int64_t seg = segment_elems<T>();
    if (p.split_override > 0) seg = ceil_div(ceil_div(p.vocab, p.split_override), N) * N;
    const int64_t splits = ceil_div(p.vocab, seg);
    GK_REQUIRE(splits <= 65535, "logprobs: vocab too large (more than 65535 segments)");
    float4* partial = nullptr;
    if (splits > 1) GK_TRY(scratch.alloc(&partial, size_t(p.rows * splits)));
    dim3 grid(static_cast<unsigned>(p.rows), static_cast<unsigned>(splits));
    const T* logits = static_cast<const T*>(p.logits);
    if (stats) {
      logprobs_fwd_kernel<true, T><<<grid, kFwdThreads, 0, env.stream>>>(
          logits, p.targets, p.vocab, p.ignore_index, scale2, inv_t, int(splits), seg, partial, o, flags);
    } else {
      logprobs_fwd_kernel<false, T><<<grid, kFwdThreads, 0, env.stream>>>(
          logits, p.targets, p.vocab, p.ignore_index, scale2, inv_t, int(splits), seg, partial, o, flags);
    }
    GK_CHECK_LAUNCH("logprobs_fwd_kernel");
    if (splits > 1) {
      const int threads = 128;
      logprobs_merge_kernel<T><<<unsigned(ceil_div(p.rows, threads)), threads, 0, env.stream>>>(
          partial, int(splits), p.rows, logits, p.targets, p.vocab, p.ignore_index, scale2, inv_t, o, flags);
      GK_CHECK_LAUNCH("logprobs_merge_kernel");
    }
    return Status::Ok();
  });
}

std::string logprobs_flags_message(const ErrorFlags& f, int64_t vocab, int ignore_index) {
  if (f.bits & kFlagTargetRange)
    return "targets: expected values in [0, " + std::to_string(vocab) + ") or ignoreIndex (" +
           std::to_string(ignore_index) + "), got targets[" + std::to_string(f.first()) +
           "] = " + std::to_string(f.value());
  if (f.bits & kFlagAllNegInf)
    return "logits: row " + std::to_string(f.first()) +
           " has every element −Inf: its softmax is undefined; mask the row with ignoreIndex instead";
  return "";
}

Status launch_logprobs_backward(const LogprobsBackwardParams& p, const LaunchEnv& env, ErrorFlags* flags) {
  if (p.rows == 0) return Status::Ok();
  GK_REQUIRE(p.vocab > 0, "logprobsBackward: vocab must be ≥ 1");
  GK_REQUIRE(p.rows <= INT_MAX, "logprobsBackward: rows must fit in int32");
  GK_REQUIRE(p.logits && p.targets && p.lse && p.grad_logprobs && p.grad_logits, "logprobsBackward: null pointer");
  GK_REQUIRE(p.grad_entropy == nullptr || p.entropy != nullptr, "logprobsBackward: gradEntropy needs entropy");
  GK_REQUIRE(p.temperature >= 0x1p-126 && std::isfinite(p.temperature),
             "logprobsBackward: temperature must be finite and ≥ 2^-126");
  // Columns are 32-bit in the kernel: V plus one chunk must fit in uint32 (V < 2^31 is ample).
  GK_REQUIRE(p.vocab <= INT_MAX, "logprobsBackward: vocab must be < 2^31");
  const float scale2 = scale_of(1.4426950408889634 / p.temperature);
  // The gradient's factor 1/T itself is not clamped (only the exponent's scale is): for T above ~1e38
  // it is the f32 rounding of 1/T (a subnormal, or 0), as the float64 reference rounds it.
  const float inv_t = static_cast<float>(1.0 / p.temperature);
  // Vectors need input and output at the same offset from a 16-byte boundary (always true in place).
  const bool vec_ok =
      (reinterpret_cast<uintptr_t>(p.grad_logits) - reinterpret_cast<uintptr_t>(p.logits)) % 16 == 0;
  return dispatch_float(p.dtype, "logits", [&](auto tag) -> Status {
    using T = decltype(tag);
    // Batch invariance: the chunks depend on V and the dtype only (and each element's gradient on its
    // own value and its row's scalars only, whatever path computes it).
    const int64_t chunks = ceil_div(p.vocab, int64_t(bwd_chunk_elems<T>()));
    GK_REQUIRE(p.rows * chunks <= INT_MAX, "logprobsBackward: rows × vocabulary chunks must fit in int32");
    const unsigned blocks = static_cast<unsigned>(p.rows * chunks);
    const T* logits = static_cast<const T*>(p.logits);
    T* out = static_cast<T*>(p.grad_logits);
    if (p.grad_entropy) {
      logprobs_bwd_kernel<T, true><<<blocks, kBwdThreads, 0, env.stream>>>(
          logits, p.targets, p.lse, p.grad_logprobs, p.grad_entropy, p.entropy, unsigned(p.vocab),
          unsigned(chunks), p.ignore_index, scale2, inv_t, vec_ok, out, flags);
    } else {
      logprobs_bwd_kernel<T, false><<<blocks, kBwdThreads, 0, env.stream>>>(
          logits, p.targets, p.lse, p.grad_logprobs, nullptr, nullptr, unsigned(p.vocab), unsigned(chunks),
          p.ignore_index, scale2, inv_t, vec_ok, out, flags);
    }
    GK_CHECK_LAUNCH("logprobs_bwd_kernel");
    return Status::Ok();
  });
}

Status launch_gather_probs(const GatherProbsParams& p, const LaunchEnv& env, Scratch& scratch) {
  if (p.num_tokens == 0) return Status::Ok();
  const size_t G1 = p.group_token_offsets.size();
  GK_REQUIRE(G1 >= 2 && p.vocab_offsets.size() == G1 && p.probs_offsets.size() == G1,
             "gatherProbs: offsets of G+1 groups expected");
  GK_REQUIRE(p.group_token_offsets.back() == p.num_tokens, "gatherProbs: group token offsets must end at numTokens");
  GK_REQUIRE(p.num_tokens <= INT_MAX, "gatherProbs: tokens must fit in int32");
  GK_REQUIRE(p.logits && p.lse && p.columns && p.probs, "gatherProbs: null pointer");
  const float scale2 = scale_of(1.4426950408889634 / p.temperature);
  int* gto = nullptr;
  int* voff = nullptr;
  long long* poff = nullptr;
  GK_TRY(scratch.upload(&gto, p.group_token_offsets));
  GK_TRY(scratch.upload(&voff, p.vocab_offsets));
  std::vector<long long> po(p.probs_offsets.begin(), p.probs_offsets.end());
  GK_TRY(scratch.upload(&poff, po));
  const int G = static_cast<int>(G1 - 1);
  return dispatch_float(p.dtype, "logits", [&](auto tag) -> Status {
    using T = decltype(tag);
    gather_probs_kernel<T><<<unsigned(p.num_tokens), 128, 0, env.stream>>>(
        static_cast<const T*>(p.logits), p.lse, p.vocab, scale2, gto, G, voff, p.columns, poff, p.probs);
    GK_CHECK_LAUNCH("gather_probs_kernel");
    return Status::Ok();
  });
}

}  // namespace gk
