// logprobs family: forward, backward, gatherProbs.
//
// FORWARD  z = logits / T (per row of [N, V]); lse = log Σ_v e^{z_v}; logprob = z_y − lse;
//          entropy = lse − Σ p z = log s − Σ p (z − m); Σp² = Σ e^{2(z−m)} / s².
//   One pass over each row with an online state (m, s, t, q) in base 2 (z2 = x · log2e / T):
//     m = running max of z2, s = Σ 2^{z2−m}, t = Σ 2^{z2−m}·(z2−m), q = Σ 2^{2(z2−m)}.
//   Rescaling to a new max m' multiplies s by c = 2^{m−m'}, q by c², and t by c after adding (m−m')·s.
//   Block: one (row, vocabulary split) pair, 512 threads; each thread reads 16-byte vectors (8 bf16/f16
//   or 4 f32) with a scalar head (until the row is 16-byte aligned: V·sizeof need not be a multiple of
//   16) and tail; one exp2 per element plus one per vector when the max grows. The per-thread states
//   merge by warp shuffles and then across warps in a fixed order (deterministic).
//   Rows too few to fill the GPU (N < 4·SMs): the vocabulary is split across up to 64 blocks per
//   row; each writes its state (float4) and logprobs_merge_kernel merges them in split order.
//   Ignored rows (target == ignoreIndex) are never read and get 0 everywhere. A row whose max is −Inf
//   (all −Inf) raises kFlagAllNegInf, a target outside [0, V) kFlagTargetRange; the job turns them into
//   RANGE errors. NaN anywhere in a row makes its outputs NaN (s becomes NaN); +Inf gives NaN.
//   Bytes: N·V·sizeof(x) read (+ N·(4 target + 4·outputs)); FLOPs ≈ 6·N·V (+ N·V exp2).
//   Goal on an H100: ≥ 85% of copy bandwidth at [16384, 151936] bf16 (≈ 5 GB → ≈ 1.6 ms).
//
// BACKWARD gradLogits = [g·(1[v=y] − p_v) − gE·p_v·(log p_v + H)] / T, p_v = e^{z_v − lse}, in the
//   logits' dtype (rounded to nearest even). Block: (row, 8192-column chunk), 256 threads, vectorised
//   like the forward when input and output share their 16-byte misalignment, scalar otherwise.
//   In place (gradLogits == logits) is safe: each element is read and then written by one thread.
//   Bytes: N·V·2·sizeof(x); FLOPs ≈ 8·N·V + N·V exp2.
//
// GATHER PROBS  probs[g][i, k] = e^{logits[t, V*_g[k]] / T − lse[t]} for token t = i-th of group g.
//   Block: one token, 128 threads over its group's K_g columns (a gather: K_g·sizeof(x) read at
//   random columns of the row, K_g·4 written). Not renormalised on V*.
#include <climits>
#include <cmath>
#include <type_traits>

#include "logprobs.cuh"

namespace gk {
namespace {

constexpr int kFwdThreads = 512;
constexpr int kBwdThreads = 256;
constexpr int kMaxSplits = 64;
constexpr unsigned kFull = 0xffffffffu;

struct OnlineState {
  float m, s, t, q;
};

__device__ __forceinline__ OnlineState empty_state() { return {-INFINITY, 0.f, 0.f, 0.f}; }

// r += x rescaled to r.m (r.m ≥ x.m). An x whose max is −Inf holds only zeros, or NaN when its span had
// NaN: add it unscaled so NaN propagates and 0·(−Inf) never appears.
__device__ __forceinline__ void add_scaled(OnlineState& r, const OnlineState& x) {
  if (x.m == -INFINITY) {
    r.s += x.s;
    r.t += x.t;
    r.q += x.q;
    return;
  }
  const float dm = x.m - r.m;  // ≤ 0 (NaN only for +Inf − +Inf, which must give NaN)
  const float c = exp2f(dm);
  r.s = fmaf(c, x.s, r.s);
  r.t = fmaf(c, fmaf(dm, x.s, x.t), r.t);
  r.q = fmaf(c * c, x.q, r.q);
}

// Merge in a fixed order (a, then b): the same inputs give the same bits.
__device__ __forceinline__ OnlineState merge(const OnlineState& a, const OnlineState& b) {
  OnlineState r{fmaxf(a.m, b.m), 0.f, 0.f, 0.f};
  add_scaled(r, a);
  add_scaled(r, b);
  return r;
}

// Folds K values z (already in base-2 units) into the state: at most one rescale per call.
template <int K>
__device__ __forceinline__ void update(OnlineState& st, const float (&z)[K]) {
  float cm = z[0];
#pragma unroll
  for (int k = 1; k < K; ++k) cm = fmaxf(cm, z[k]);  // fmaxf drops NaN; NaN still reaches s below
  if (cm > st.m) {
    if (st.m != -INFINITY) {
      const float dm = st.m - cm;
      const float c = exp2f(dm);
      st.t = c * fmaf(dm, st.s, st.t);
      st.s *= c;
      st.q *= c * c;
    }
    st.m = cm;
  }
  // While the max is −Inf every non-NaN z is −Inf: subtracting 0 gives e = 0 and keeps NaN as NaN.
  const float ms = st.m == -INFINITY ? 0.f : st.m;
#pragma unroll
  for (int k = 0; k < K; ++k) {
    const float d = z[k] - ms;
    const float e = exp2f(d);
    st.s += e;
    st.t = fmaf(e, e > 0.f ? d : 0.f, st.t);  // e = 0 where d = −Inf: skip 0·(−Inf)
    st.q = fmaf(e, e, st.q);
  }
}

__device__ __forceinline__ OnlineState shfl_down(const OnlineState& s, int off) {
  return {__shfl_down_sync(kFull, s.m, off), __shfl_down_sync(kFull, s.s, off),
          __shfl_down_sync(kFull, s.t, off), __shfl_down_sync(kFull, s.q, off)};
}

// The block's merged state, valid in thread 0. Fixed tree: lane i merges lane i+off, then warp 0
// merges the warps' states in warp order.
__device__ OnlineState block_reduce(OnlineState st) {
  __shared__ OnlineState sh[32];
  const int lane = threadIdx.x & 31;
  const int warp = threadIdx.x >> 5;
#pragma unroll
  for (int off = 16; off > 0; off >>= 1) st = merge(st, shfl_down(st, off));
  if (lane == 0) sh[warp] = st;
  __syncthreads();
  if (warp == 0) {
    const int nw = blockDim.x >> 5;
    st = lane < nw ? sh[lane] : empty_state();
#pragma unroll
    for (int off = 16; off > 0; off >>= 1) st = merge(st, shfl_down(st, off));
  }
  return st;
}

// Online state of the n elements at p, over the block's threads.
// Every logit is scaled with __fmul_rn: a product the compiler may not fuse into a later subtraction
// (nvcc contracts x·s − m into one FFMA by default), so the max's own z − m is exactly 0 and a
// one-token row gets log p = 0 exactly, as the float64 reference does.
template <class T>
__device__ OnlineState scan_span(const T* __restrict__ p, int64_t n, float scale2) {
  constexpr int N = VecTraits<T>::N;
  OnlineState st = empty_state();
  const int64_t head = head_elems(p, n);
  const int64_t nvec = (n - head) / N;
  const int64_t tail = head + nvec * N;
  for (int64_t i = threadIdx.x; i < head; i += blockDim.x) {
    float z[1] = {__fmul_rn(load_f32(p + i), scale2)};
    update(st, z);
  }
  const uint4* __restrict__ v = reinterpret_cast<const uint4*>(p + head);
  int64_t i = threadIdx.x;
  // Two 16-byte loads in flight per thread before either is consumed.
  for (; i + blockDim.x < nvec; i += 2 * int64_t(blockDim.x)) {
    const uint4 a = __ldg(v + i);
    const uint4 b = __ldg(v + i + blockDim.x);
    float x[N];
    unpack_vec<T>(a, x);
#pragma unroll
    for (int k = 0; k < N; ++k) x[k] = __fmul_rn(x[k], scale2);
    update(st, x);
    unpack_vec<T>(b, x);
#pragma unroll
    for (int k = 0; k < N; ++k) x[k] = __fmul_rn(x[k], scale2);
    update(st, x);
  }
  for (; i < nvec; i += blockDim.x) {
    float x[N];
    unpack_vec<T>(__ldg(v + i), x);
#pragma unroll
    for (int k = 0; k < N; ++k) x[k] = __fmul_rn(x[k], scale2);
    update(st, x);
  }
  for (int64_t j = tail + threadIdx.x; j < n; j += blockDim.x) {
    float z[1] = {__fmul_rn(load_f32(p + j), scale2)};
    update(st, z);
  }
  return st;
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

// Outputs of one row from its merged state (one thread).
template <class T>
__device__ void finish_row(int64_t row, const OnlineState& st, const T* __restrict__ logits, int64_t vocab,
                           int tgt, float scale2, const FwdOut& o, ErrorFlags* flags) {
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
  // zt and m come from the same rounded product x·scale2, so zt − m is exact when the target is the max.
  const float zt = __fmul_rn(load_f32(logits + row * vocab + tgt), scale2);
  const float ls = logf(st.s);
  write_row(o, row, (zt - st.m) * kLn2 - ls, fmaf(st.m, kLn2, ls), ls - kLn2 * (st.t / st.s),
            st.q / (st.s * st.s));
}

template <class T>
__global__ void __launch_bounds__(kFwdThreads)
    logprobs_fwd_kernel(const T* __restrict__ logits, const int* __restrict__ targets, int64_t vocab,
                        int ignore, float scale2, int splits, int64_t chunk, float4* __restrict__ partial,
                        FwdOut o, ErrorFlags* flags) {
  const int64_t row = blockIdx.x;
  const int split = blockIdx.y;
  const int tgt = __ldg(targets + row);
  if (tgt == ignore) {  // uniform over the block: no thread reaches block_reduce's barrier
    if (splits == 1 && threadIdx.x == 0) write_row(o, row, 0.f, 0.f, 0.f, 0.f);
    return;  // with splits, the merge kernel writes the zeros
  }
  const int64_t begin = int64_t(split) * chunk;
  const int64_t end = begin + chunk < vocab ? begin + chunk : vocab;
  const int64_t n = end > begin ? end - begin : 0;
  OnlineState st = scan_span(logits + row * vocab + begin, n, scale2);
  st = block_reduce(st);
  if (threadIdx.x != 0) return;
  if (splits > 1) {
    partial[row * splits + split] = make_float4(st.m, st.s, st.t, st.q);
    return;
  }
  finish_row(row, st, logits, vocab, tgt, scale2, o, flags);
}

// One thread per row: merges the row's split states in split order.
template <class T>
__global__ void logprobs_merge_kernel(const float4* __restrict__ partial, int splits, int64_t rows,
                                      const T* __restrict__ logits, const int* __restrict__ targets,
                                      int64_t vocab, int ignore, float scale2, FwdOut o, ErrorFlags* flags) {
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
    st = merge(st, OnlineState{v.x, v.y, v.z, v.w});
  }
  finish_row(row, st, logits, vocab, tgt, scale2, o, flags);
}

// ------------------------------------------------------------------------------------- backward
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

struct BwdRow {
  int tgt;
  float g;      // gradLogprobs / T
  float ge;     // gradEntropy / T (0 without it)
  float h;      // entropy (0 without it)
  float lse2;   // lse · log2e
  float scale2; // log2e / T
  bool with_entropy;
};

__device__ __forceinline__ float grad_of(const BwdRow& r, float x, int64_t col) {
  const float lp2 = fmaf(x, r.scale2, -r.lse2);  // log2 p
  const float p = exp2f(lp2);
  float out = r.g * ((col == r.tgt ? 1.f : 0.f) - p);
  if (r.with_entropy) {
    const float term = p > 0.f ? p * fmaf(lp2, kLn2, r.h) : 0.f;  // p·(log p + H); 0 where p = 0
    out = fmaf(-r.ge, term, out);
  }
  return out;
}

// No __restrict__ / __ldg on logits: `out` may alias them (in place).
template <class T>
__global__ void __launch_bounds__(kBwdThreads)
    logprobs_bwd_kernel(const T* logits, const int* __restrict__ targets, const float* __restrict__ lse,
                        const float* __restrict__ glp, const float* __restrict__ gent,
                        const float* __restrict__ ent, int64_t vocab, int ignore, float scale2, float inv_t,
                        int64_t chunk, bool vec_ok, T* out, ErrorFlags* flags) {
  constexpr int N = VecTraits<T>::N;
  const int64_t row = blockIdx.x;
  const int64_t begin = int64_t(blockIdx.y) * chunk;
  const int64_t end = begin + chunk < vocab ? begin + chunk : vocab;
  if (begin >= end) return;
  const int64_t n = end - begin;
  const T* p = logits + row * vocab + begin;
  T* o = out + row * vocab + begin;
  const int tgt = targets[row];
  const bool ignored = tgt == ignore;
  const bool bad = !ignored && (tgt < 0 || tgt >= vocab);
  if (ignored || bad) {  // ignored rows: 0 without reading the logits; bad targets: NaN and a flag
    if (bad && blockIdx.y == 0 && threadIdx.x == 0) raise_flag(flags, kFlagTargetRange, int(row), tgt);
    const T fill = from_f32<T>(ignored ? 0.f : NAN);
    for (int64_t i = threadIdx.x; i < n; i += blockDim.x) o[i] = fill;
    return;
  }
  BwdRow r;
  r.tgt = tgt;
  r.g = glp[row] * inv_t;
  r.with_entropy = gent != nullptr;
  r.ge = gent ? gent[row] * inv_t : 0.f;
  r.h = ent ? ent[row] : 0.f;
  r.lse2 = lse[row] * kLog2e;
  r.scale2 = scale2;
  const int64_t head = vec_ok ? head_elems(p, n) : n;
  const int64_t nvec = (n - head) / N;
  const int64_t tail = head + nvec * N;
  for (int64_t i = threadIdx.x; i < head; i += blockDim.x) o[i] = from_f32<T>(grad_of(r, plain_f32(p + i), begin + i));
  const uint4* vin = reinterpret_cast<const uint4*>(p + head);
  uint4* vout = reinterpret_cast<uint4*>(o + head);
  for (int64_t i = threadIdx.x; i < nvec; i += blockDim.x) {
    float x[N];
    unpack_vec<T>(vin[i], x);
    const int64_t c0 = begin + head + i * N;
#pragma unroll
    for (int k = 0; k < N; ++k) x[k] = grad_of(r, x[k], c0 + k);
    vout[i] = pack_vec<T>(x);
  }
  for (int64_t i = tail + threadIdx.x; i < n; i += blockDim.x) o[i] = from_f32<T>(grad_of(r, plain_f32(p + i), begin + i));
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
  const T* row = logits + t * vocab;
  for (int k = threadIdx.x; k < K; k += blockDim.x) {
    const int c = cols[k0 + k];
    const float x = (c >= 0 && c < vocab) ? load_f32(row + c) : NAN;
    o[k] = exp2f(fmaf(x, scale2, -l2));
  }
}

}  // namespace

Status launch_logprobs_forward(const LogprobsParams& p, const LaunchEnv& env, Scratch& scratch,
                               ErrorFlags* flags) {
  if (p.rows == 0) return Status::Ok();
  GK_REQUIRE(p.vocab > 0, "logprobs: vocab must be ≥ 1");
  GK_REQUIRE(p.rows <= INT_MAX, "logprobs: rows must fit in int32");
  GK_REQUIRE(p.logits && p.targets && p.logprobs && p.lse, "logprobs: null pointer");
  GK_REQUIRE(p.temperature > 0.f && std::isfinite(p.temperature), "logprobs: temperature must be finite and > 0");
  const float scale2 = static_cast<float>(1.4426950408889634 / static_cast<double>(p.temperature));
  const FwdOut o{p.logprobs, p.lse, p.entropy, p.sum_squares};
  return dispatch_float(p.dtype, "logits", [&](auto tag) -> Status {
    using T = decltype(tag);
    constexpr int64_t N = VecTraits<T>::N;
    // Split the vocabulary when rows alone cannot fill the GPU; each split keeps ≥ 4 vectors/thread.
    const int64_t want_blocks = 4 * int64_t(env.sm_count);
    const int64_t min_chunk = int64_t(kFwdThreads) * N * 4;
    int64_t splits = 1;
    if (p.rows < want_blocks) {
      splits = ceil_div(want_blocks, p.rows);
      const int64_t by_len = ceil_div(p.vocab, min_chunk);
      if (splits > by_len) splits = by_len;
      if (splits > kMaxSplits) splits = kMaxSplits;
    }
    if (p.split_override > 0) splits = p.split_override;
    if (splits < 1) splits = 1;
    if (splits > p.vocab) splits = p.vocab;
    int64_t chunk = ceil_div(ceil_div(p.vocab, splits), N) * N;  // keeps split starts 16-byte aligned
    splits = ceil_div(p.vocab, chunk);
    GK_REQUIRE(splits <= 65535, "logprobs: too many vocabulary splits");
    float4* partial = nullptr;
    if (splits > 1) GK_TRY(scratch.alloc(&partial, size_t(p.rows * splits)));
    dim3 grid(static_cast<unsigned>(p.rows), static_cast<unsigned>(splits));
    logprobs_fwd_kernel<T><<<grid, kFwdThreads, 0, env.stream>>>(
        static_cast<const T*>(p.logits), p.targets, p.vocab, p.ignore_index, scale2, int(splits), chunk,
        partial, o, flags);
    GK_CHECK_LAUNCH("logprobs_fwd_kernel");
    if (splits > 1) {
      const int threads = 128;
      logprobs_merge_kernel<T><<<unsigned(ceil_div(p.rows, threads)), threads, 0, env.stream>>>(
          partial, int(splits), p.rows, static_cast<const T*>(p.logits), p.targets, p.vocab, p.ignore_index,
          scale2, o, flags);
      GK_CHECK_LAUNCH("logprobs_merge_kernel");
    }
    return Status::Ok();
  });
}

std::string logprobs_flags_message(const ErrorFlags& f, int64_t vocab) {
  if (f.bits & kFlagTargetRange)
    return "targets: expected ids in [0, " + std::to_string(vocab) + ") or ignoreIndex, got " +
           std::to_string(f.value()) + " at row " + std::to_string(f.first());
  if (f.bits & kFlagAllNegInf)
    return "logits: row " + std::to_string(f.first()) + " is all −Inf (no distribution to normalise)";
  return "";
}

Status launch_logprobs_backward(const LogprobsBackwardParams& p, const LaunchEnv& env, ErrorFlags* flags) {
  if (p.rows == 0) return Status::Ok();
  GK_REQUIRE(p.vocab > 0, "logprobsBackward: vocab must be ≥ 1");
  GK_REQUIRE(p.rows <= INT_MAX, "logprobsBackward: rows must fit in int32");
  GK_REQUIRE(p.logits && p.targets && p.lse && p.grad_logprobs && p.grad_logits, "logprobsBackward: null pointer");
  GK_REQUIRE(p.grad_entropy == nullptr || p.entropy != nullptr, "logprobsBackward: gradEntropy needs entropy");
  GK_REQUIRE(p.temperature > 0.f && std::isfinite(p.temperature),
             "logprobsBackward: temperature must be finite and > 0");
  const float scale2 = static_cast<float>(1.4426950408889634 / static_cast<double>(p.temperature));
  const float inv_t = static_cast<float>(1.0 / static_cast<double>(p.temperature));
  const bool vec_ok =
      (reinterpret_cast<uintptr_t>(p.grad_logits) - reinterpret_cast<uintptr_t>(p.logits)) % 16 == 0;
  return dispatch_float(p.dtype, "logits", [&](auto tag) -> Status {
    using T = decltype(tag);
    const int64_t chunk = int64_t(kBwdThreads) * VecTraits<T>::N * 4;
    const int64_t nchunks = ceil_div(p.vocab, chunk);
    GK_REQUIRE(nchunks <= 65535, "logprobsBackward: vocab too large");
    dim3 grid(static_cast<unsigned>(p.rows), static_cast<unsigned>(nchunks));
    logprobs_bwd_kernel<T><<<grid, kBwdThreads, 0, env.stream>>>(
        static_cast<const T*>(p.logits), p.targets, p.lse, p.grad_logprobs, p.grad_entropy, p.entropy, p.vocab,
        p.ignore_index, scale2, inv_t, chunk, vec_ok, static_cast<T*>(p.grad_logits), flags);
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
  const float scale2 = static_cast<float>(1.4426950408889634 / static_cast<double>(p.temperature));
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
