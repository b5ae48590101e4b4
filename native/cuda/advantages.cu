// advantages family: group-relative advantages (every estimator of docs/ESTIMATORS.md), expandToTokens,
// whiten. Conventions mirror the cpu reference (src/backends/cpu/advantages.ts) line by line:
//
//   per group g, members [lo, hi), n = hi − lo, pivot p = r_lo (0 if r_lo is ±Inf/NaN):
//     d = Σ(r − p)/n  (μ − p);  c_i = (r_i − p) − d  (r_i − μ);  M2 = Σ c_i²;  s = sqrt(M2/(n−1) | M2/n)
//   grpo c/(D + eps), D = s | batch std ('batch') ; c ('none')
//   dr_grpo, reinforce_pp_baseline (before whitening)  c ;  rloo n/(n−1)·c
//   opo (r − p) − (b − p), b − p = Σ L (r − p) / Σ L ;  gpg α·c, α = R / max(#{r ≠ 0}, 1)
//   grpo_passk: first maximum gets (r_max − r_second)/(D + eps), others 0; a NaN member → NaN group
//   mean output μ = p + d (opo: b); degenerate: empty, singleton, zero variance (all members equal: value
//   0), opo with Σ L = 0. Singleton policies: 'zero' (value 0, mean r, std 0), 'mean0' (p := 0, d := 0,
//   s := 1), 'nan' (plain formula).
//   Numerics: never r − f32(Σr/n). For rewards like 1e6 + 0.25·N(0,1) the f32 spacing at 1e6 (0.0625) is a
//   quarter of the spread, so an f32 mean (and the batch mean of whiten / scale 'batch') loses the digits
//   that carry the signal (relative errors ~1e-1, issue 10). Shifted by a member of the data, r − p is
//   exact (Sterbenz) and the sums hold only deviations: error ≲ n·u of Σ|r − p|, as in the webgpu kernels
//   (shaders/advantages.wgsl). A non-finite r_lo gives p = 0: the group's sums are ±Inf/NaN anyway, and
//   NaN/±Inf reach every output exactly as in the unshifted formulas. Finite values whose shift overflows
//   (|r| near FLT_MAX of both signs; r − p = ±Inf) take p = 0 instead, the unshifted sums, so they keep
//   the results they had before the pivot (group kernel and batch statistics alike).
//
// NAN_SKIP (nanRewards 'unscorable', TRL; GroupArgs::skip_nan): every member loop skips NaN rewards, so a
//   group's n, pivot (its first scorable member), sums, min/max, opo baseline and grpo_passk are those of
//   its scorable members, and the batch statistics give NaN elements weight 0 (batch std, gpg's α =
//   #scorable / #nonzero, reinforce_pp_baseline's whitening). A NaN member's advantage is 0
//   (reinforce_pp_baseline: its value stays NaN, out of the whitening, and expand_kernel's nan_to_num
//   makes its tokens 0); every advantage goes through nan_to_num (NaN → 0, ±Inf → ±FLT_MAX).
// GROUP KERNEL: one launch for the whole batch; a group of n members occupies w = group_lanes(n) lanes
//   of a warp: w = the power of two ≥ ⌈n/4⌉ (1 for n ≤ 4, 2 ≤ 8, 4 ≤ 16, 8 ≤ 32, 16 ≤ 64, 32 ≤ 128), so
//   a lane holds ≤ 4 members in registers and the rewards are read from memory once; groups of more
//   than 128 take a whole warp, strided, re-reading their members per pass (from L1/L2). Segments are
//   aligned to their w, so several groups share a warp (8 groups of 16, 16 of 8, 32 of ≤ 4): lane j of a
//   segment sums members j, j + w, j + 2w, j + 3w in index order, then xor-butterfly steps w/2 … 1 combine
//   the segment's lanes (steps ≥ w, taken for a wider neighbour, leave it alone). n alone fixes w and
//   with it every rounding, so a group's bits depend on its members only: not on its position, its
//   warp-mates, the number of groups, or whether the batch is uniform (batch invariant,
//   ops-advantages-groups.test.ts). Two passes (Σ(r − p), then Σ c²), never E[r²] − E[r]².
//   Uniform batches (every group n members: `group_size`) get 32/w groups per warp in one round and
//   compute the offsets g·n: nothing is uploaded. Ragged batches: each warp takes `window` consecutive
//   groups (≤ 16, about one round's worth at the mean size), reads their offsets once (lanes 0..window),
//   and packs them in order into rounds of 32 lanes, each group at the next lane aligned to its w. The
//   packing is the same on every lane, so every shuffle has all 32 lanes (idle ones with no group).
//   A group's pivot comes from its first lane by shuffle; the overflow fallback is voted warp-wide and
//   taken by the groups that need it. Zero variance is tested exactly as min == max (all members
//   equal), which is what the f64 reference's M2 == 0 means for f32 inputs.
//   Bytes: 4R read once (groups ≤ 128; larger ones ~3 reads, cached after the first) + 4R written + 9G,
//   + 4(G+1) offsets for ragged groups (opo: + 8R of response offsets); FLOPs ~7R.
//   Host side, per call: uniform groups, nothing; ragged ones, 4(G+1) bytes copied into a pinned
//   staging buffer and one asynchronous DMA (256 KiB for 64k groups: a few µs at PCIe rates, where the
//   pageable copy it replaces blocked the host while the driver staged it in chunks). No error flags:
//   nothing here can raise one, so the runtime (native/runtime/cuda_device.cc) neither resets nor reads
//   them for this op.
//   Registers (ptxas, sm_80 / sm_90): 60 / 63 per thread, no spills, so 4 blocks of 256 per SM; the
//   strided path of groups > 128 is a call, which keeps its registers out of that count.
//   Goal on an H100: 1M responses in 64k ragged groups under 50 µs (≈ 9 MB of traffic, 3 µs at copy
//   bandwidth: launch and upload latency dominate).
// BATCH STATISTICS (scale 'batch', gpg's α, whitening): a two-pass reduction over a fixed grid of at
//   most 256 blocks writing per-block partials, then one thread adding the partials in block order:
//   deterministic (no float atomics) and independent of timing. Pass 1: block b sums w·(x − p_b) from its
//   own pivot p_b (its first weighted element, 0 if ±Inf/NaN or none); the final step takes the global
//   pivot P = the first weighted block's p_b and shift = mean − P = (Σ_b [S_b + W_b·(p_b − P)] − maskEps·P)
//   / (W + maskEps) (W = Σ w). Pass 2: Σ w·((x − P) − shift)², the reference's Σ w (x − mean)².
// EXPAND: one warp per response copies its value to its tokens (4R read, 4·Ttotal written).
// WHITEN: out = ((x − P) − shift)·rstd (+ P + shift with keepMean), rstd = rsqrt(var + 1e-8) (or
//   rsqrt(max(var, 1e-8)) 'clamp') over the valid elements: mean = Σx/(n + maskEps) = P + shift,
//   var = Σ(x − mean)²/(n + maskEps)·(n/(n−1) 'sample'); invalid → 0.
//   Bytes: 3 reads of x (+ mask) and 1 write; FLOPs ~6 per element. reinforce_pp_baseline whitens the
//   expanded per-token values without materialising them twice: response i weighs L_i.
#include <algorithm>
#include <climits>
#include <cmath>

#include "advantages.cuh"

namespace gk {
namespace {

constexpr unsigned kFull = 0xffffffffu;
constexpr int kGroupThreads = 256;  // 8 warps
constexpr int kStatThreads = 256;
constexpr int kMaxStatBlocks = 256;

// ------------------------------------------------------------------------------ batch statistics
// Element weight: the mask (0/1), or a response's length L_i = woff[i+1] − woff[i], or 1.
struct StatsIn {
  const float* x;
  const uint8_t* mask;
  const int* woff;
  int64_t n;
  int skip_nan = 0;  // nanRewards 'unscorable': NaN elements have weight 0 (left out of every sum)
};
struct Partial {
  float pivot;  // pass 1: the block's pivot p_b
  float sum;    // pass 1: Σ w·(x − p_b)
  float raw;    // pass 1: Σ w·x, the fallback when the shifted sums overflow
  float m2;     // pass 2: Σ w·((x − P) − shift)²
  long long count;
  long long nnz;
};
// Final statistics on the device, read by later kernels of the same job.
struct Stats {
  float pivot;  // P: the first weighted element of the batch (0 if ±Inf/NaN or none)
  float shift;  // mean − P, mean = Σ w x / (count + maskEps)
  float rstd;   // whitening scale
  float std;    // sqrt(M2/(count−1) | M2/count): the batch std of scale 'batch'
  float alpha;  // gpg: count / max(nnz, 1)
  long long count;
  long long nnz;
};

__device__ __forceinline__ float weight_of(const StatsIn& in, int64_t i) {
  if (in.mask) return in.mask[i] != 0 ? 1.f : 0.f;
  if (in.woff) return static_cast<float>(in.woff[i + 1] - in.woff[i]);
  return 1.f;
}

// Pass 1 (st == null): the block's pivot p_b, Σ w·(x − p_b), Σ w, #{w ≠ 0 and x ≠ 0}. Pass 2:
// Σ w·((x − P) − shift)² with the global P and shift of stats_final1. Masked-out elements are never read
// (a NaN outside the mask stays out, as in the reference's whitenInto). Length weights are different: the
// reference sums L_i·v_i and L_i·(v_i − mean)² for every response, so an empty response (L_i = 0) with a
// NaN or ±Inf value still makes the sums NaN (0·NaN); the webgpu backend does the same. Skipping weight-0
// responses there would turn the reference's NaN into a finite number.
__global__ void __launch_bounds__(kStatThreads) stats_pass_kernel(StatsIn in, const Stats* st, Partial* part) {
  __shared__ Partial sh[kStatThreads];
  __shared__ long long sh_first[kStatThreads];
  const int64_t start = blockIdx.x * int64_t(blockDim.x) + threadIdx.x;
  const int64_t stride = int64_t(gridDim.x) * blockDim.x;
  float pivot = 0.f, shift = 0.f;
  if (st == nullptr) {
    // The block's pivot: its lowest-index element of nonzero weight (each thread's first one, usually
    // its first element, then a fixed-order min over the block). Any value works for correctness; one
    // of the data makes x − p exact for data clustered around an offset.
    long long first = LLONG_MAX;
    for (int64_t i = start; i < in.n; i += stride)
      if (weight_of(in, i) != 0.f && !(in.skip_nan && isnan(in.x[i]))) {
        first = i;
        break;
      }
    sh_first[threadIdx.x] = first;
    __syncthreads();
    for (int half = blockDim.x >> 1; half > 0; half >>= 1) {
      if (int(threadIdx.x) < half)
        sh_first[threadIdx.x] = min(sh_first[threadIdx.x], sh_first[threadIdx.x + half]);
      __syncthreads();
    }
    if (sh_first[0] != LLONG_MAX) {
      const float x0 = in.x[sh_first[0]];
      pivot = isfinite(x0) ? x0 : 0.f;  // a non-finite element makes the sums ±Inf/NaN anyway
    }
  } else {
    pivot = st->pivot;
    shift = st->shift;
  }
  Partial p{pivot, 0.f, 0.f, 0.f, 0, 0};
  for (int64_t i = start; i < in.n; i += stride) {
    const float w = weight_of(in, i);
    if (w == 0.f && in.woff == nullptr) continue;
    const float x = in.x[i];
    if (in.skip_nan && isnan(x)) continue;
    if (st == nullptr) {
      p.sum = fmaf(w, x - pivot, p.sum);
      p.raw = fmaf(w, x, p.raw);
      p.count += static_cast<long long>(w);
      p.nnz += (w != 0.f && x != 0.f) ? 1 : 0;  // NaN counts as nonzero
    } else {
      const float c = (x - pivot) - shift;
      p.m2 = fmaf(w * c, c, p.m2);
    }
  }
  sh[threadIdx.x] = p;
  __syncthreads();
  for (int half = blockDim.x >> 1; half > 0; half >>= 1) {  // fixed tree
    if (int(threadIdx.x) < half) {
      Partial& a = sh[threadIdx.x];
      const Partial& b = sh[threadIdx.x + half];
      a.sum += b.sum;
      a.raw += b.raw;
      a.m2 += b.m2;
      a.count += b.count;
      a.nnz += b.nnz;
    }
    __syncthreads();
  }
  if (threadIdx.x == 0) part[blockIdx.x] = sh[0];
}

// Merges the block partials in block order, each re-based from its own pivot p_b to the global P:
// Σ w (x − P) = Σ_b [S_b + W_b·(p_b − P)] (p_b − P exact for clustered data, W_b·(p_b − P) one rounding).
__global__ void stats_final1_kernel(const Partial* part, int nblocks, float mask_eps, Stats* st) {
  float P = 0.f;
  for (int b = 0; b < nblocks; ++b)
    if (part[b].count > 0) {
      P = part[b].pivot;
      break;
    }
  float sum = 0.f, raw = 0.f;
  long long count = 0, nnz = 0;
  for (int b = 0; b < nblocks; ++b) {  // block order
    sum += fmaf(static_cast<float>(part[b].count), part[b].pivot - P, part[b].sum);
    raw += part[b].raw;
    count += part[b].count;
    nnz += part[b].nnz;
  }
  if (isinf(sum) && isfinite(raw)) {
    // Finite data spanning more than FLT_MAX made x − p_b or p_b − P overflow: take the unshifted sums
    // (P = 0), so such data keep the finite results they had without a pivot. A NaN or ±Inf element
    // makes raw non-finite, and then the shifted sums carry the same NaN / ±Inf.
    P = 0.f;
    sum = raw;
  }
  st->count = count;
  st->nnz = nnz;
  st->pivot = P;
  // mean = Σ w x / (W + maskEps) = (W·P + sum) / (W + maskEps), so
  // mean − P = (sum − maskEps·P) / (W + maskEps).
  st->shift = fmaf(-mask_eps, P, sum) / (static_cast<float>(count) + mask_eps);
  st->alpha = static_cast<float>(count) / static_cast<float>(nnz > 1 ? nnz : 1);
}

__global__ void stats_final2_kernel(const Partial* part, int nblocks, float mask_eps, int sample, int clamp,
                                    Stats* st) {
  float m2 = 0.f;
  for (int b = 0; b < nblocks; ++b) m2 += part[b].m2;
  const float n = static_cast<float>(st->count);
  float var = m2 / (n + mask_eps);
  if (sample) var = st->count == 1 ? NAN : var * (n / (n - 1.f));
  const float v = clamp ? (isnan(var) ? var : fmaxf(var, 1e-8f)) : var + 1e-8f;
  st->rstd = 1.f / sqrtf(v);
  st->std = sqrtf(sample ? m2 / (n - 1.f) : m2 / n);
}

struct StatsPlan {
  Partial* part = nullptr;
  Stats* stats = nullptr;
  int blocks = 1;
};

// Enqueues both passes; *stats is valid on the device after them.
Status run_stats(const StatsIn& in, float mask_eps, bool sample, bool clamp, const LaunchEnv& env,
                 Scratch& scratch, Stats** out) {
  StatsPlan pl;
  int64_t b = ceil_div(in.n > 0 ? in.n : 1, int64_t(kStatThreads) * 8);
  pl.blocks = static_cast<int>(b < kMaxStatBlocks ? b : kMaxStatBlocks);
  GK_TRY(scratch.alloc(&pl.part, size_t(pl.blocks)));
  GK_TRY(scratch.alloc(&pl.stats, 1));
  stats_pass_kernel<<<pl.blocks, kStatThreads, 0, env.stream>>>(in, nullptr, pl.part);
  GK_CHECK_LAUNCH("stats_pass_kernel (sums)");
  stats_final1_kernel<<<1, 1, 0, env.stream>>>(pl.part, pl.blocks, mask_eps, pl.stats);
  GK_CHECK_LAUNCH("stats_final1_kernel");
  stats_pass_kernel<<<pl.blocks, kStatThreads, 0, env.stream>>>(in, pl.stats, pl.part);
  GK_CHECK_LAUNCH("stats_pass_kernel (squares)");
  stats_final2_kernel<<<1, 1, 0, env.stream>>>(pl.part, pl.blocks, mask_eps, sample ? 1 : 0, clamp ? 1 : 0,
                                                pl.stats);
  GK_CHECK_LAUNCH("stats_final2_kernel");
  *out = pl.stats;
  return Status::Ok();
}

// ---------------------------------------------------------------------------------- group kernel
// A group of n members runs on w = group_lanes(n) lanes of one warp (w a power of two, the segment
// aligned to w). Lane j of the segment holds members j, j + w, j + 2w, ... and sums them in index order;
// then xor-butterfly steps w/2, ..., 1 combine the lanes. n alone fixes w and with it the whole tree:
// a group gives the same bits wherever it sits in its warp, in the batch, and whatever comes with it.
constexpr int kPerLane = 4;                // members a lane holds in registers
constexpr int kSmallMax = kPerLane * 32;   // groups up to this size are read once, held in registers
constexpr int kMaxWindow = 16;             // ragged: groups one warp packs (≤ 31: lanes 0..K hold K+1 offsets)

GK_HOST_DEVICE inline int group_lanes(int n) {
  if (n > kSmallMax) return 32;  // strided over the warp, re-read per pass
  const int need = (n + kPerLane - 1) / kPerLane;
  int w = 1;
  while (w < need) w <<= 1;
  return w;
}

struct GroupArgs {
  const float* r;
  const int* go;   // [G+1], or null for uniform groups
  const int* ro;   // [R+1] or null
  int G;
  int group_size;  // > 0: every group has this many members (offsets g·n, nothing uploaded); 0: ragged
  int window;      // ragged: groups per warp
  int estimator;
  int sample;
  float eps;
  int scale;
  int singleton;
  int skip_nan;        // nanRewards 'unscorable' (the header's NAN_SKIP)
  const Stats* batch;  // scale 'batch' (divides) or gpg; else null
  float* values;       // [R]: the advantages, or reinforce_pp_baseline's per-response values
  float* mean;
  float* std;
  uint8_t* deg;
};

// A lane's share of one round: its group and place in the group's segment.
struct Seg {
  int g;   // group, −1: the lane is idle this round
  int lo;  // first member
  int n;   // members
  int w;   // lanes of the group's segment (1 for an idle lane)
  int j;   // this lane's index in the segment
};
__device__ __forceinline__ Seg idle_seg() { return Seg{-1, 0, 0, 1, 0}; }

struct AddF {
  __device__ float operator()(float a, float b) const { return a + b; }
};
struct MaxF {
  __device__ float operator()(float a, float b) const { return fmaxf(a, b); }
};
struct OrI {
  __device__ int operator()(int a, int b) const { return a | b; }
};
struct AddI {
  __device__ int operator()(int a, int b) const { return a + b; }
};
struct MinI {
  __device__ int operator()(int a, int b) const { return a < b ? a : b; }
};

// torch.nan_to_num of an f32 advantage: NaN → 0, ±Inf → ±FLT_MAX.
__device__ __forceinline__ float nan_to_num(float x) {
  if (isnan(x)) return 0.f;
  if (isinf(x)) return x > 0.f ? 3.40282347e38f : -3.40282347e38f;
  return x;
}

// Combines the lanes of every segment of the warp at once: xor steps wmax/2 … 1 (wmax, the widest
// segment of the round, is the same on every lane), a lane taking its partner's value only at steps
// below its own w, where the partner is in its own segment (aligned, power-of-two segments). So a
// segment's tree is steps w/2 … 1 whatever its neighbours, and all its lanes end with the same bits
// (IEEE addition, min and max are commutative).
template <class T, class Op>
__device__ __forceinline__ T seg_reduce(T v, int w, int wmax, Op op) {
  for (int off = wmax >> 1; off > 0; off >>= 1) {
    const T o = __shfl_xor_sync(kFull, v, off);
    if (off < w) v = op(v, o);
  }
  return v;
}

__device__ __forceinline__ bool warp_any(bool p) {
#ifdef GK_CUDA_EMU
  int v = p ? 1 : 0;  // the emulator has shuffles, not votes
  for (int off = 16; off > 0; off >>= 1) v |= __shfl_xor_sync(kFull, v, off);
  return v != 0;
#else
  return __any_sync(kFull, p);
#endif
}

// A lane's members in index order: held in registers (groups of ≤ kSmallMax) or re-read (larger ones).
template <bool kBig>
struct Members;
template <>
struct Members<false> {
  float v[kPerLane];
  __device__ void load(const float* r, const Seg& s) {
#pragma unroll
    for (int k = 0; k < kPerLane; ++k) {
      const int m = s.j + k * s.w;
      v[k] = m < s.n ? r[s.lo + m] : 0.f;
    }
  }
  __device__ float first(const float*, const Seg&) const { return v[0]; }
  template <class F>
  __device__ void each(const float*, const Seg& s, F&& f) const {
#pragma unroll
    for (int k = 0; k < kPerLane; ++k) {
      const int m = s.j + k * s.w;
      if (m < s.n) f(s.lo + m, v[k]);
    }
  }
};
template <>
struct Members<true> {
  __device__ void load(const float*, const Seg&) {}
  __device__ float first(const float* r, const Seg& s) const { return s.j == 0 && s.n > 0 ? r[s.lo] : 0.f; }
  template <class F>
  __device__ void each(const float* r, const Seg& s, F&& f) const {
    for (int64_t i = s.lo + s.j; i < int64_t(s.lo) + s.n; i += 32) f(int(i), r[i]);
  }
};

// One round of a warp: every lane's group (or none), all lanes in every shuffle. wmax is warp-uniform.
template <bool kBig>
__device__ __forceinline__ void group_round(const GroupArgs& a, const Seg& sg, int wmax) {
  const int lane = threadIdx.x & 31;
  const auto est = static_cast<Estimator>(a.estimator);
  const bool divides = est == Estimator::Grpo || est == Estimator::GrpoPassk;
  const bool batch_scale = a.scale == int(ScaleKind::Batch);
  const float batch_std = (divides && batch_scale) ? a.batch->std : NAN;
  const bool skip = a.skip_nan != 0;  // the same on every lane
  Members<kBig> mem;
  mem.load(a.r, sg);
  // Pivot p = r_lo (0 if ±Inf/NaN), from the segment's first lane: every sum below is of deviations
  // r − p, exact for rewards clustered around an offset, where an f32 Σr/n would round away the spread.
  float r_lo = __shfl_sync(kFull, mem.first(a.r, sg), lane - sg.j);
  // n: the members the statistics use. Under skip, the scorable ones, and the pivot is the first of them.
  int n = sg.n;
  if (skip) {
    int first = INT_MAX, cnt = 0;
    mem.each(a.r, sg, [&](int i, float x) {
      if (!isnan(x)) {
        first = i < first ? i : first;
        ++cnt;
      }
    });
    first = seg_reduce(first, sg.w, wmax, MinI());
    n = seg_reduce(cnt, sg.w, wmax, AddI());
    r_lo = first != INT_MAX ? a.r[first] : 0.f;
  }
  const auto used = [&](float x) { return !(skip && isnan(x)); };
  float p = isfinite(r_lo) ? r_lo : 0.f;
  // Pass 1: Σ (r − p), min, max.
  float sum = 0.f, mn = INFINITY, mx = -INFINITY;
  mem.each(a.r, sg, [&](int, float x) {
    if (!used(x)) return;
    sum += x - p;
    mn = fminf(mn, x);
    mx = fmaxf(mx, x);
  });
  for (int off = wmax >> 1; off > 0; off >>= 1) {  // seg_reduce of all three, their shuffles in flight together
    const float os = __shfl_xor_sync(kFull, sum, off);
    const float on = __shfl_xor_sync(kFull, mn, off);
    const float ox = __shfl_xor_sync(kFull, mx, off);
    if (off < sg.w) {
      sum += os;
      mn = fminf(mn, on);
      mx = fmaxf(mx, ox);
    }
  }
  // Finite members whose r − p overflowed (some |r| near FLT_MAX with the other sign from r_lo): sum
  // from 0 instead, the unshifted formulas, so such groups keep their finite results (the f64
  // reference's). Never taken otherwise: NaN members make the sum NaN, ±Inf members make mn/mx
  // infinite. A vote keeps the shuffles warp-wide; only the groups that overflowed take the raw sum.
  const bool overflow = isinf(sum) && isfinite(mn) && isfinite(mx);
  if (warp_any(overflow)) {
    float raw = 0.f;
    mem.each(a.r, sg, [&](int, float x) {
      if (used(x)) raw += x;
    });
    raw = seg_reduce(raw, sg.w, wmax, AddF());
    if (overflow) {
      p = 0.f;
      sum = raw;
    }
  }
  float d = sum / static_cast<float>(n);  // μ − p
  // Pass 2: Σ ((r − p) − d)² = Σ (r − μ)².
  float m2 = 0.f;
  mem.each(a.r, sg, [&](int, float x) {
    if (!used(x)) return;
    const float c = (x - p) - d;
    m2 = fmaf(c, c, m2);
  });
  m2 = seg_reduce(m2, sg.w, wmax, AddF());
  // The estimators' own reductions, for every segment (the estimator is the same on every lane).
  float wsum = 0.f;  // opo: Σ L (r − p)
  int lsum = 0;      //      Σ L
  float best = skip ? -INFINITY : r_lo, second = -INFINITY;  // grpo_passk: the first maximum and the runner-up
  int best_i = skip ? INT_MAX : sg.lo, has_nan = 0;
  if (est == Estimator::Opo) {
    mem.each(a.r, sg, [&](int i, float x) {
      if (!used(x)) return;
      const int L = a.ro[i + 1] - a.ro[i];
      wsum = fmaf(static_cast<float>(L), x - p, wsum);
      lsum += L;
    });
    for (int off = wmax >> 1; off > 0; off >>= 1) {  // seg_reduce of both
      const float ow = __shfl_xor_sync(kFull, wsum, off);
      const int ol = __shfl_xor_sync(kFull, lsum, off);
      if (off < sg.w) {
        wsum += ow;
        lsum += ol;
      }
    }
  } else if (est == Estimator::GrpoPassk) {
    // First maximum (lowest index wins ties; NaN never compares greater), then the runner-up. Both
    // are order-free (a total order on (value, index)), so any tree gives the same member.
    mem.each(a.r, sg, [&](int i, float x) {
      if (isnan(x))
        has_nan = skip ? 0 : 1;  // under skip a NaN member is simply not a candidate
      else if (x > best || (x == best && i < best_i))
        best = x, best_i = i;
    });
    for (int off = wmax >> 1; off > 0; off >>= 1) {
      const float ov = __shfl_xor_sync(kFull, best, off);
      const int oi = __shfl_xor_sync(kFull, best_i, off);
      if (off < sg.w && (ov > best || (ov == best && oi < best_i))) best = ov, best_i = oi;
    }
    has_nan = seg_reduce(has_nan, sg.w, wmax, OrI());
    mem.each(a.r, sg, [&](int i, float x) {
      if (i != best_i && x > second) second = x;
    });
    second = seg_reduce(second, sg.w, wmax, MaxF());
  }
  // No shuffles below: lanes may leave.
  if (sg.g < 0) return;
  const int g = sg.g;
  const bool lead = sg.j == 0;
  auto finish = [&](float mu, float s, int deg) {
    if (lead) {
      a.mean[g] = mu;
      a.std[g] = (divides && batch_scale) ? batch_std : s;
      a.deg[g] = static_cast<uint8_t>(deg);
    }
  };
  const bool rpp = est == Estimator::ReinforcePpBaseline;
  float* out = a.values;
  // A member's output: under skip, a NaN member gets 0 (reinforce_pp_baseline: NaN, left out of the
  // whitening and 0 after it), the others nan_to_num of their value (rpp: raw, fixed after whitening).
  auto put = [&](int i, float x, float v) {
    if (skip) v = isnan(x) ? (rpp ? NAN : 0.f) : (rpp ? v : nan_to_num(v));
    out[i] = v;
  };
  if (n == 0) {  // an empty group, or under skip one without a scorable member
    mem.each(a.r, sg, [&](int i, float x) { put(i, x, 0.f); });
    if (lead) {
      a.mean[g] = 0.f;
      a.std[g] = 0.f;
      a.deg[g] = 1;
    }
    return;
  }
  const bool sample = a.sample != 0;
  float s = sqrtf(sample ? m2 / static_cast<float>(n - 1) : m2 / static_cast<float>(n));
  const bool single = n == 1;
  // All members equal and finite (NaN or ±Inf make the reference's M2 NaN, not 0). Tested exactly on the
  // members themselves, not on M2 or μ in f32. fminf/fmaxf skip NaN, so NaN is caught through the sum
  // (NaN − p + anything = NaN).
  const bool zero_var = !single && mn == mx && isfinite(mn) && !isnan(sum);
  float mu = p + d;
  // The reference's exact mean of equal members (d = 0 here, so p + d is that already; written out for
  // clarity): + 0 turns a −0 member into the +0 that the reference's sum (starting at +0) gives.
  if (zero_var) mu = mn + 0.f;
  int deg = (single || zero_var) ? 1 : 0;
  const auto pol = static_cast<Singleton>(a.singleton);

  if (zero_var || (single && pol == Singleton::Zero)) {
    mem.each(a.r, sg, [&](int i, float x) { put(i, x, 0.f); });
    finish(mu, 0.f, 1);
    return;
  }
  const bool mean0 = single && pol == Singleton::Mean0;
  if (mean0) {  // baseline 0: value_i = (r_i − 0) − 0
    p = 0.f;
    d = 0.f;
    mu = 0.f;
    s = 1.f;
  }
  const float divisor = batch_scale ? batch_std : s;
  const bool none = a.scale == int(ScaleKind::None);

  switch (est) {
    case Estimator::Grpo:
      mem.each(a.r, sg, [&](int i, float x) {
        const float c = (x - p) - d;
        put(i, x, none ? c : c / (divisor + a.eps));
      });
      break;
    case Estimator::DrGrpo:
    case Estimator::ReinforcePpBaseline:
      mem.each(a.r, sg, [&](int i, float x) { put(i, x, (x - p) - d); });
      break;
    case Estimator::Rloo: {
      if (mean0) {
        mem.each(a.r, sg, [&](int i, float x) { put(i, x, x); });  // the singleton's own reward
      } else {
        const float k = static_cast<float>(n) / static_cast<float>(n - 1);
        mem.each(a.r, sg, [&](int i, float x) { put(i, x, k * ((x - p) - d)); });
      }
      break;
    }
    case Estimator::Gpg: {
      const float alpha = a.batch->alpha;
      mem.each(a.r, sg, [&](int i, float x) { put(i, x, alpha * ((x - p) - d)); });
      break;
    }
    case Estimator::Opo: {
      // Baseline b = Σ L r / Σ L, from the same pivot: b − p = Σ L (r − p) / Σ L (0/0 = NaN for Σ L = 0).
      if (!mean0) {
        d = wsum / static_cast<float>(lsum);
        mu = p + d;
        if (lsum == 0) deg = 1;
      }
      mem.each(a.r, sg, [&](int i, float x) { put(i, x, (x - p) - d); });
      break;
    }
    case Estimator::GrpoPassk: {
      const float gap = best - second;  // best is r[best_i]'s bits
      // Fewer than two scorable members (only under skip; the API rejects smaller groups): 0.
      const float value = n < 2 ? 0.f : none ? gap : gap / (divisor + a.eps);
      mem.each(a.r, sg, [&](int i, float x) { put(i, x, has_nan ? NAN : (i == best_i ? value : 0.f)); });
      break;
    }
  }
  finish(mu, s, deg);
}

// Groups of more than 128 members: a call, so that the strided path's registers do not add to those of
// the small groups' path around it (which then needs no spills at 64 registers).
#ifdef GK_CUDA_EMU
#define GK_NOINLINE  // plain C++ there; inlining changes nothing the emulator shows
#else
#define GK_NOINLINE __noinline__
#endif
__device__ GK_NOINLINE void group_round_big(const GroupArgs& a, const Seg& sg) { group_round<true>(a, sg, 32); }

// Uniform groups (group_size n > 0): 32/w consecutive groups per warp, one round, offsets g·n computed
// here. Ragged groups: `window` consecutive groups per warp (their offsets read once, by lanes
// 0..window), packed in order into rounds of 32 lanes, each group at the next lane aligned to its w; a
// group that does not fit starts the next round. The packing decides only where a group runs, never
// how it is reduced.
__global__ void __launch_bounds__(kGroupThreads) group_advantages_kernel(GroupArgs a) {
  const int lane = threadIdx.x & 31;
  const int64_t warp = blockIdx.x * int64_t(kGroupThreads / 32) + (threadIdx.x >> 5);
  if (a.group_size > 0) {
    const int n = a.group_size, w = group_lanes(n);
    const int64_t g = warp * (32 / w) + lane / w;
    if (warp * (32 / w) >= a.G) return;  // the whole warp leaves together
    const Seg sg = g < a.G ? Seg{int(g), int(g) * n, n, w, lane & (w - 1)} : idle_seg();
    if (n > kSmallMax)
      group_round_big(a, sg);
    else
      group_round<false>(a, sg, w);
    return;
  }
  const int64_t g0 = warp * a.window;
  if (g0 >= a.G) return;  // the whole warp leaves together
  const int ng = static_cast<int>(a.G - g0 < a.window ? a.G - g0 : a.window);
  const int off = lane <= ng ? a.go[g0 + lane] : 0;
  int i = 0;
  while (i < ng) {  // one round per iteration; every lane computes the same packing
    Seg sg = idle_seg();
    int pos = 0, wmax = 1;
    bool big = false;
    while (i < ng) {
      const int lo = __shfl_sync(kFull, off, i), hi = __shfl_sync(kFull, off, i + 1);
      const int n = hi - lo, w = group_lanes(n);
      const int start = (pos + w - 1) & -w;
      if (start + w > 32) break;  // never for the round's first group (w ≤ 32)
      if (lane >= start && lane < start + w) sg = Seg{int(g0) + i, lo, n, w, lane - start};
      pos = start + w;
      wmax = w > wmax ? w : wmax;
      big = big || n > kSmallMax;  // such a group has w = 32: alone in its round
      ++i;
    }
    if (big)
      group_round_big(a, sg);
    else
      group_round<false>(a, sg, wmax);
  }
}

// --------------------------------------------------------------------------------------- expand
// out[t] = v[r] (or ((v[r] − P) − shift)·rstd with stats) for the tokens of response r; one warp per
// response.
__global__ void expand_kernel(const float* __restrict__ v, const int* __restrict__ ro, int R, const Stats* st,
                              int fix, float* __restrict__ out) {
  const int r = blockIdx.x * (blockDim.x >> 5) + (threadIdx.x >> 5);
  if (r >= R) return;
  float x = v[r];
  if (st) x = ((x - st->pivot) - st->shift) * st->rstd;
  if (fix) x = nan_to_num(x);  // nanRewards 'unscorable': an unscorable response's tokens (NaN) get 0
  const int t1 = ro[r + 1];
  for (int64_t t = ro[r] + (threadIdx.x & 31); t < t1; t += 32) out[t] = x;  // (64-bit: t1 may be near 2^31)
}

__global__ void whiten_apply_kernel(const float* __restrict__ x, const uint8_t* __restrict__ mask, int64_t n,
                                    const Stats* st, int keep_mean, float* __restrict__ out) {
  const float pivot = st->pivot, shift = st->shift, rstd = st->rstd;
  const bool empty = st->count == 0;
  const float keep = keep_mean ? pivot + shift : 0.f;  // the mean
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x) {
    const bool valid = mask == nullptr || mask[i] != 0;
    out[i] = (valid && !empty) ? fmaf((x[i] - pivot) - shift, rstd, keep) : 0.f;
  }
}

Status launch_expand_raw(const float* v, const int* ro, int R, const Stats* st, int fix, float* out,
                         const LaunchEnv& env) {
  if (R == 0) return Status::Ok();
  const int warps = 8;
  expand_kernel<<<unsigned(ceil_div(R, warps)), warps * 32, 0, env.stream>>>(v, ro, R, st, fix, out);
  GK_CHECK_LAUNCH("expand_kernel");
  return Status::Ok();
}

// n when offsets = [0, n, 2n, …] with n ≥ 1 and at least one group, else 0 (ragged). Stops at the first
// unequal pair, so ragged offsets cost a few compares; uniform ones a pass that saves their upload.
int uniform_group_size(const std::vector<int32_t>& go) {
  if (go.size() < 2 || go[0] != 0) return 0;
  const int32_t n = go[1];
  if (n < 1) return 0;
  for (size_t g = 2; g < go.size(); ++g)
    if (go[g] - go[g - 1] != n) return 0;
  return n;
}

}  // namespace

Status launch_advantages(const AdvantagesParams& p, const LaunchEnv& env, Scratch& scratch) {
  int G = 0, R = 0, uniform = 0;
  if (p.group_size > 0) {
    GK_REQUIRE(p.group_offsets.empty(), "advantages: groupSize and groupOffsets are exclusive");
    GK_REQUIRE(p.num_groups >= 0 && p.num_groups * int64_t(p.group_size) <= INT32_MAX,
               "advantages: numGroups · groupSize must be in [0, 2^31)");
    G = static_cast<int>(p.num_groups);
    R = G * p.group_size;
    uniform = p.group_size;
  } else {
    GK_REQUIRE(!p.group_offsets.empty(), "advantages: groupOffsets needs G+1 ≥ 1 entries (or a groupSize)");
    G = static_cast<int>(p.group_offsets.size() - 1);
    R = p.group_offsets.back();
    uniform = uniform_group_size(p.group_offsets);
  }
  const bool per_token = p.estimator == Estimator::ReinforcePpBaseline;
  const bool needs_lengths = per_token || p.estimator == Estimator::Opo;
  GK_REQUIRE(!needs_lengths || int64_t(p.response_offsets.size()) == int64_t(R) + 1,
             "advantages: responseOffsets [R+1] required by opo and reinforce_pp_baseline");
  GK_REQUIRE(p.rewards || R == 0, "advantages: null rewards");
  if (G == 0) return Status::Ok();
  // Uniform groups upload nothing (offsets g·n in the kernel); ragged ones their G+1 offsets.
  int* go = nullptr;
  int* ro = nullptr;
  if (uniform == 0) GK_TRY(scratch.upload(&go, p.group_offsets));
  if (needs_lengths) GK_TRY(scratch.upload(&ro, p.response_offsets));

  const bool divides = p.estimator == Estimator::Grpo || p.estimator == Estimator::GrpoPassk;
  const int skip = p.nan_rewards == NanRewards::Unscorable ? 1 : 0;
  Stats* batch = nullptr;
  if ((divides && p.scale == ScaleKind::Batch) || p.estimator == Estimator::Gpg)
    GK_TRY(run_stats(StatsIn{p.rewards, nullptr, nullptr, R, skip}, 0.f, p.std_kind == StdKind::Sample, false, env,
                     scratch, &batch));

  float* values = p.advantages;
  if (per_token) GK_TRY(scratch.alloc(&values, size_t(R)));
  // Ragged: about one round of 32 lanes per warp for groups of the mean size (a speed choice only).
  const int mean_lanes = group_lanes(static_cast<int>(ceil_div(R, G)));
  const int window = std::min(kMaxWindow, std::max(1, 32 / mean_lanes));
  GroupArgs a{p.rewards,         go,     ro,     G,     uniform, window, int(p.estimator),
              p.std_kind == StdKind::Sample ? 1 : 0, p.eps, int(p.scale), int(p.singleton), skip, batch,
              values,            p.mean, p.std, p.degenerate};
  const int64_t groups_per_warp = uniform > 0 ? 32 / group_lanes(uniform) : window;
  const int64_t blocks = ceil_div(ceil_div(G, groups_per_warp), kGroupThreads / 32);
  group_advantages_kernel<<<unsigned(blocks), kGroupThreads, 0, env.stream>>>(a);
  GK_CHECK_LAUNCH("group_advantages_kernel");

  if (per_token) {
    const int64_t T = p.response_offsets.back();
    if (T == 0 || R == 0) return Status::Ok();
    // Whiten expand(values) over all T tokens: response i weighs L_i (Σx = Σ L_i v_i, ...).
    Stats* st = nullptr;
    GK_TRY(run_stats(StatsIn{values, nullptr, ro, R, skip}, p.whiten_mask_eps, p.whiten_sample, p.whiten_clamp, env,
                     scratch, &st));
    GK_TRY(launch_expand_raw(values, ro, R, st, skip, p.advantages, env));
  }
  return Status::Ok();
}

Status launch_expand_to_tokens(const ExpandParams& p, const LaunchEnv& env, Scratch& scratch) {
  GK_REQUIRE(!p.response_offsets.empty(), "expandToTokens: responseOffsets needs R+1 ≥ 1 entries");
  const int R = static_cast<int>(p.response_offsets.size() - 1);
  if (R == 0 || p.response_offsets.back() == 0) return Status::Ok();
  GK_REQUIRE(p.values && p.out, "expandToTokens: null pointer");
  int* ro = nullptr;
  GK_TRY(scratch.upload(&ro, p.response_offsets));
  return launch_expand_raw(p.values, ro, R, nullptr, 0, p.out, env);
}

Status launch_whiten(const WhitenParams& p, const LaunchEnv& env, Scratch& scratch) {
  if (p.n == 0) return Status::Ok();
  GK_REQUIRE(p.values && p.out, "whiten: null pointer");
  Stats* st = nullptr;
  GK_TRY(run_stats(StatsIn{p.values, p.mask, nullptr, p.n}, p.mask_eps, p.sample, p.clamp, env, scratch, &st));
  const int64_t blocks = ceil_div(p.n, 256);
  whiten_apply_kernel<<<unsigned(blocks < 4096 ? blocks : 4096), 256, 0, env.stream>>>(
      p.values, p.mask, p.n, st, p.keep_mean ? 1 : 0, p.out);
  GK_CHECK_LAUNCH("whiten_apply_kernel");
  return Status::Ok();
}

}  // namespace gk
