// Native benchmark harness (issue 10, "Measured like for like"): the launchers of native/cuda/*.cuh
// called directly, with a LaunchEnv and a Scratch per call as the addon's jobs do, but no Node,
// no job thread and no promise. Each case is timed with CUDA events and, in the same run, beside a
// device-to-device cudaMemcpyAsync of the same bytes, so GB/s come with the fraction of the copy
// bandwidth this card gives right now.
//
//   build/bench/harness [--rows 16384] [--vocab 151936] [--thr-groups 1] [--thr-responses 8] [--thr-tokens 2048]
//                       [--thr-d 3584] [--thr-vocab 4096] [--thr-small-tiles 0] [--groups 65536]
//                       [--responses 16·groups] [--lm-rows 8192] [--lm-dim 4096] [--lm-vocab 151936]
//                       [--reps 20] [--warmup 3] [--l2-mb <device's>] [--max-rotate 64] [--seed 1]
//                       [--only logprobs,backward,thr,advantages,lmhead]
//                       [--lm-paths 0,1,…,8] [--thr-paths 0,1,…,11] [--lm-chunk-rows 0] [--lm-chunk-vocab 0]
//
// Cases (defaults are the goal sizes of bench/RESULTS.md):
//   logprobs, logprobs+entropy, logprobs+entropy+sumSquares   forward, bf16 logits [rows, vocab]
//   logprobsBackward                                          same size, bf16 gradient, out of place
//   tokenHiddenReward/f32, tokenHiddenReward/tf32             one group of 8 responses × 2048 tokens,
//                                                             d 3584, |V*| 4096, f32 hidden (ThrPrecision);
//                                                             --thr-groups G: G such groups in one call
//                                                             (a trainer's batch: many groups, each with
//                                                             a V* of its own, half its responses correct);
//                                                             --thr-small-tiles 1: the small tile
//                                                             configuration (thr.cu), as a 99 KiB GPU runs it
//                                                             (the scores' tiles `auto` takes; then
//                                                             " mma" on mma.sync, " wgmma" on
//                                                             Hopper's, " wgmma-truncate" on them
//                                                             with truncated operands, " wgmma-m"
//                                                             with M on wgmma too, " tma" with
//                                                             M on wgmma and the scores TMA-fed
//                                                             ('tf32'; truncated operands in 'f32'),
//                                                             " tma-wide" in 256-column blocks
//                                                             ('tf32' only), " tma-rounded" and
//                                                             " tma-wide-rounded" M on mma.sync and
//                                                             the TMA-fed scores on rounded copies
//                                                             ('tf32' only), " tma-m" with M as a
//                                                             TMA-fed GEMM too ('tf32' only),
//                                                             " tma-wide-m" that in 256-column
//                                                             scores blocks, " tma-wide-m-wide"
//                                                             and M in 128 × 256 tiles, where the
//                                                             device has them)
//   advantages                                                2^20 responses in 65536 ragged groups
//                                                             (sizes 1..31, fixed seed), estimator grpo
//   advantages/uniform16                                      the same responses in groups of 16
//                                                             (groupSize: no offsets uploaded)
//   linearLogprobs, linearLogprobs+entropy,                   the LM head (issue 16's goal size):
//   linearLogprobsBackward                                    hidden [8192, 4096], weight [151936, 4096]
//                                                             bf16; FLOPs of useful work: 2·N·V·d
//                                                             forward, 4·N·V·d backward; the same
//                                                             with " mma" on mma.sync, " wgmma" on
//                                                             the wgmma tiles, " tma" on the
//                                                             TMA-fed ones, " tma-overlap" with a
//                                                             k-step in flight, " tma-wide" in
//                                                             128 × 256 tiles, " tma-cluster" those
//                                                             in clusters of 2 sharing B by TMA
//                                                             multicast, " tma-chain" and
//                                                             " tma-chain-cluster" those two with
//                                                             the sums chained on the tensor cores
//                                                             (no flush; a 9.0 device and a build
//                                                             with sm_90a); --lm-chunk-rows R and
//                                                             --lm-chunk-vocab C (multiples of 128;
//                                                             0: the plan's) set the backward's G
//                                                             chunks, its rows then named
//                                                             " chunks RxC"
// Output: one JSON line per case on stdout: {case, sizes, bytes, flops, ms_median, ms_p10, ms_p90, reps,
// rotate, gbps, tflops, copy_bytes, copy_ms_median, copy_ms_p10, copy_ms_p90, copy_rotate, copy_gbps,
// fraction, device, cc, sms, l2_bytes, runtime, driver, date, version; THR's rows also bits: FNV-1a 64 of
// thr and tau, which summarize.mjs compares across the tile sets the tests hold bit-equal}. Progress and errors go to
// stderr. Any failed CUDA call or launcher Status, an error flag a kernel raised, or an implausible
// output (the first 4096 elements of each output read back after its case: finite, log p ≤ 0, Σp² in
// (0, 1]) is printed and exits 1 (bad arguments: 2).
//
// Timing: per iteration the stream is idle, then event, one call of the launcher (its host plan, its
// uploads through the pinned staging buffer and its stream-ordered scratch included, as in the addon;
// Node's job round trip not), event, synchronise: the way bench/cuda/torch_reference.py times PyTorch. Median, p10 and p90 of
// --reps iterations after --warmup. The copy is timed the same way.
// Rotation: every input and output of a case exists in `rotate` copies, iteration i using copy
// i mod rotate, so that the bytes touched since copy i was last used are ≥ 2× the L2 (the device's
// l2CacheSize, or --l2-mb): rotate = 1 when one iteration moves ≥ 2·L2 bytes (the 5 GB logits, THR's
// 0.5 GB), else 1 + ceil(2·L2 / bytes), at most --max-rotate. The copy rotates its buffers likewise.
// Copies are byte-identical (generated once, then copied): the L2 keys on addresses, not values.
// Bytes are the compulsory traffic (each input read once, each output written once; scratch and
// re-reads not counted), as scripts/gpu/goals.mjs counts them; FLOPs follow the kernels' headers, an
// exp2 counted as one.
// Inputs come from a counter-based generator on the device (an LCG step and a 64-bit finaliser of
// (seed, index)); the advantages' group sizes from the host LCG of scripts/gpu/goals.mjs (same sizes).
//
// On the CUDA emulator (GK_CUDA_EMU; `node scripts/build-emu.mjs --harness` builds build/emu/harness)
// events read the host clock and launches run on the CPU: a dry run with tiny sizes checks the plumbing,
// never the speed.
#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <functional>
#include <initializer_list>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "advantages.cuh"
#include "common.cuh"
#include "lmhead.cuh"
#include "logprobs.cuh"
#include "thr.cuh"

#ifndef GK_HARNESS_VERSION
#define GK_HARNESS_VERSION "unknown"  // bench/cuda/build.sh passes package.json's version and the commit
#endif

namespace {

using gk::Status;

// ------------------------------------------------------------------------------------------ options
struct Options {
  int64_t rows = 16384;
  int64_t vocab = 151936;
  int64_t thr_groups = 1;
  int64_t thr_responses = 8;
  int64_t thr_tokens = 2048;  // per response
  int64_t thr_d = 3584;
  int64_t thr_vocab = 4096;
  int64_t thr_small_tiles = 0;  // 1: ThrParams::small_tiles
  int64_t groups = 65536;
  int64_t responses = 0;  // 0: 16 · groups
  int64_t lm_rows = 8192;
  int64_t lm_dim = 4096;
  int64_t lm_vocab = 151936;
  int64_t lm_chunk_rows = 0;   // the backward's G chunks (LinearLogprobsBackwardParams); 0: lmhead_plan's
  int64_t lm_chunk_vocab = 0;
  int64_t reps = 20;
  int64_t warmup = 3;
  double l2_mb = 0;  // 0: the device's l2CacheSize
  int64_t max_rotate = 64;
  int64_t seed = 1;
  std::vector<std::string> only;  // families; empty = all
  // The tile sets timed, in this order (LinearLogprobsParams::path, ThrParams::path; each row's name
  // says which): all by default. scripts/gpu/run.sh times the ones no GPU has verified in processes of
  // their own, so that one that fails takes no other row with it.
  std::vector<int> lm_paths{0, 1, 2, 3, 4, 5, 6, 7, 8};
  std::vector<int> thr_paths{0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11};
};
constexpr int kLmPaths = 9, kThrPaths = 12;

const char* kUsage =
    "usage: harness [--rows N] [--vocab V] [--thr-groups G] [--thr-responses R] [--thr-tokens L] [--thr-d D]\n"
    "               [--thr-vocab K] [--thr-small-tiles 0|1] [--groups G] [--responses R] [--reps N] [--warmup N]\n"
    "               [--lm-rows N] [--lm-dim D] [--lm-vocab V]\n"
    "               [--l2-mb MB] [--max-rotate N] [--seed S] [--only logprobs,backward,thr,advantages,lmhead]\n"
    "               [--lm-paths 0,1,2,3,4,5,6,7,8] [--thr-paths 0,1,2,3,4,5,6,7,8,9,10,11]\n"
    "               [--lm-chunk-rows R] [--lm-chunk-vocab C]\n";

bool parse_int(const std::string& s, int64_t* v) {
  char* end = nullptr;
  errno = 0;
  const long long x = std::strtoll(s.c_str(), &end, 10);
  if (errno != 0 || end == s.c_str() || *end != '\0') return false;
  *v = x;
  return true;
}

// value's comma-separated integers, each in [0, count), into *out; false if one is not.
bool parse_paths(const std::string& value, int count, std::vector<int>* out) {
  out->clear();
  size_t s = 0;
  while (s <= value.size()) {
    const size_t c = std::min(value.find(',', s), value.size());
    int64_t v = 0;
    if (!parse_int(value.substr(s, c - s), &v) || v < 0 || v >= count) return false;
    out->push_back(int(v));
    s = c + 1;
  }
  return true;
}

// Returns an empty string, or why the arguments are wrong.
std::string parse_args(int argc, char** argv, Options* o) {
  struct IntOpt {
    const char* name;
    int64_t* v;
    int64_t min;
  };
  const IntOpt ints[] = {{"rows", &o->rows, 1},          {"vocab", &o->vocab, 1},
                         {"thr-groups", &o->thr_groups, 1},
                         {"thr-responses", &o->thr_responses, 2}, {"thr-tokens", &o->thr_tokens, 1},
                         {"thr-d", &o->thr_d, 1},        {"thr-vocab", &o->thr_vocab, 1},
                         {"thr-small-tiles", &o->thr_small_tiles, 0},
                         {"groups", &o->groups, 1},      {"responses", &o->responses, 0},
                         {"lm-rows", &o->lm_rows, 1},    {"lm-dim", &o->lm_dim, 1},
                         {"lm-vocab", &o->lm_vocab, 1},
                         {"lm-chunk-rows", &o->lm_chunk_rows, 0}, {"lm-chunk-vocab", &o->lm_chunk_vocab, 0},
                         {"reps", &o->reps, 1},          {"warmup", &o->warmup, 0},
                         {"max-rotate", &o->max_rotate, 1}, {"seed", &o->seed, 0}};
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    if (a == "--help" || a == "-h") return "help";
    if (a.rfind("--", 0) != 0) return "unexpected argument '" + a + "'";
    std::string name = a.substr(2), value;
    const size_t eq = name.find('=');
    if (eq != std::string::npos) {
      value = name.substr(eq + 1);
      name = name.substr(0, eq);
    } else {
      if (i + 1 >= argc) return "--" + name + " needs a value";
      value = argv[++i];
    }
    bool known = false;
    for (const IntOpt& io : ints) {
      if (name != io.name) continue;
      known = true;
      if (!parse_int(value, io.v) || *io.v < io.min)
        return "--" + name + ": expected an integer ≥ " + std::to_string(io.min) + ", got '" + value + "'";
    }
    if (known) continue;
    if (name == "l2-mb") {
      char* end = nullptr;
      o->l2_mb = std::strtod(value.c_str(), &end);
      if (end == value.c_str() || *end != '\0' || !(o->l2_mb >= 0)) return "--l2-mb: expected a number ≥ 0";
    } else if (name == "only") {
      o->only.clear();
      size_t s = 0;
      while (s <= value.size()) {
        const size_t c = std::min(value.find(',', s), value.size());
        const std::string f = value.substr(s, c - s);
        if (f != "logprobs" && f != "backward" && f != "thr" && f != "advantages" && f != "lmhead")
          return "--only: unknown family '" + f + "' (logprobs, backward, thr, advantages, lmhead)";
        o->only.push_back(f);
        s = c + 1;
      }
    } else if (name == "lm-paths") {
      if (!parse_paths(value, kLmPaths, &o->lm_paths))
        return "--lm-paths: expected a comma-separated list of 0 … " + std::to_string(kLmPaths - 1) + ", got '" +
               value + "'";
    } else if (name == "thr-paths") {
      if (!parse_paths(value, kThrPaths, &o->thr_paths))
        return "--thr-paths: expected a comma-separated list of 0 … " + std::to_string(kThrPaths - 1) + ", got '" +
               value + "'";
    } else {
      return "unknown option --" + name;
    }
  }
  if (o->responses == 0) o->responses = 16 * o->groups;
  if (o->responses < o->groups) return "--responses must be ≥ --groups (every group needs a member)";
  if (o->responses > INT32_MAX || o->rows > INT32_MAX) return "--responses and --rows must fit in int32";
  if (o->thr_groups * o->thr_responses * o->thr_tokens > INT32_MAX) return "THR tokens must fit in int32";
  if (o->thr_groups * o->thr_vocab > INT32_MAX) return "THR's Σ|V*| must fit in int32";
  if (o->thr_small_tiles > 1) return "--thr-small-tiles: expected 0 or 1";
  if (o->lm_chunk_rows % 128 != 0 || o->lm_chunk_vocab % 128 != 0)
    return "--lm-chunk-rows and --lm-chunk-vocab must be multiples of 128";
  return "";
}

bool wants(const Options& o, const char* family) {
  return o.only.empty() || std::find(o.only.begin(), o.only.end(), family) != o.only.end();
}

// ------------------------------------------------------------------------------- input generation
// Counter-based: element i of stream `seed` is a function of (seed, i) alone, so the data do not depend
// on the grid. One LCG step (Knuth's MMIX constants) on the index, then splitmix64's finaliser.
__host__ __device__ inline uint64_t rand_u64(uint32_t seed, uint64_t i) {
  uint64_t s = (i ^ (uint64_t(seed) << 32)) * 6364136223846793005ull + 1442695040888963407ull;
  s ^= s >> 33;
  s *= 0xff51afd7ed558ccdull;
  s ^= s >> 33;
  s *= 0xc4ceb9fe1a85ec53ull;
  s ^= s >> 33;
  return s;
}
// Three 21-bit uniforms of one draw, summed (Irwin–Hall, mean 0 and variance 1 after the shift and
// scale, as scripts/gpu/goals.mjs's gauss()).
__host__ __device__ inline float rand_normal(uint32_t seed, uint64_t i) {
  const uint64_t r = rand_u64(seed, i);
  const float k = 1.f / float(1 << 21);
  const float u = float(r & 0x1fffff) * k + float((r >> 21) & 0x1fffff) * k + float((r >> 42) & 0x1fffff) * k;
  return (u - 1.5f) * 2.f;
}
__host__ __device__ inline float rand_uniform(uint32_t seed, uint64_t i) {
  return float(rand_u64(seed, i) >> 40) * (1.f / float(1 << 24));
}

// p[i] = scale · N(0, 1)-ish, in T.
template <class T>
__global__ void fill_normal_kernel(T* p, int64_t n, uint32_t seed, float scale) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x)
    p[i] = gk::from_f32<T>(scale * rand_normal(seed, uint64_t(i)));
}
// p[i] uniform in [0, hi).
__global__ void fill_uniform_kernel(float* p, int64_t n, uint32_t seed, float hi) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x)
    p[i] = hi * rand_uniform(seed, uint64_t(i));
}
// p[i] = i for i < prefix (so every id below `prefix` occurs), then a uniform draw in [0, mod).
__global__ void fill_index_kernel(int* p, int64_t n, uint32_t seed, int mod, int64_t prefix) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x)
    p[i] = i < prefix ? int(i) : int(rand_u64(seed, uint64_t(i)) % uint64_t(mod));
}
// Rewards as scripts/gpu/goals.mjs draws them: 1 with probability 0.4, plus 0.1 · N(0, 1).
__global__ void fill_rewards_kernel(float* p, int64_t n, uint32_t seed) {
  for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x)
    p[i] = (rand_uniform(seed, 2 * uint64_t(i)) < 0.4f ? 1.f : 0.f) +
           0.1f * rand_normal(seed, 2 * uint64_t(i) + 1);
}

constexpr int kFillThreads = 256;
unsigned fill_blocks(int64_t n) { return unsigned(std::min<int64_t>(gk::ceil_div(n, kFillThreads), 16384)); }

// ------------------------------------------------------------------------------ device state
struct Device {
  cudaDeviceProp prop{};
  cudaStream_t stream = nullptr;
  gk::LaunchEnv env;
  gk::ErrorFlags* d_flags = nullptr;
  gk::ErrorFlags* h_flags = nullptr;  // pinned
  std::unique_ptr<gk::HostStaging> staging;  // the pinned upload buffer, as the addon's jobs use
  size_t l2 = 0;                      // bytes used for the rotation rule
  int runtime = 0, driver = 0;
  std::string date;
};

// Device buffers of one case, freed together (cudaFree synchronises the device).
class Arena {
 public:
  Arena() = default;
  Arena(const Arena&) = delete;
  Arena& operator=(const Arena&) = delete;
  ~Arena() {
    for (void* p : ptrs_) cudaFree(p);
  }
  Status alloc(void** p, size_t bytes) {
    *p = nullptr;
    GK_CHECK(cudaMalloc(p, std::max<size_t>(bytes, 1)));
    ptrs_.push_back(*p);
    return Status::Ok();
  }

 private:
  std::vector<void*> ptrs_;
};

// `copies` copies of `bytes` bytes, each its own allocation (256-byte aligned, so the 16-byte vector
// paths stay on; exactly sized, so compute-sanitizer and the emulator's ASan build see an overrun).
struct Rotated {
  std::vector<char*> p;
  size_t bytes = 0;
  template <class T>
  T* at(int i) const {
    return reinterpret_cast<T*>(p[size_t(i) % p.size()]);
  }
};
Status alloc_rotated(Arena& arena, Rotated* r, size_t bytes, int copies) {
  r->bytes = bytes;
  r->p.assign(size_t(copies), nullptr);
  for (char*& q : r->p) GK_TRY(arena.alloc(reinterpret_cast<void**>(&q), bytes));
  return Status::Ok();
}
// Copies copy 0 into the others.
Status replicate(const Rotated& r, cudaStream_t s) {
  for (size_t i = 1; i < r.p.size(); ++i)
    GK_CHECK(cudaMemcpyAsync(r.p[i], r.p[0], r.bytes, cudaMemcpyDeviceToDevice, s));
  return Status::Ok();
}

int rotations(const Device& dev, const Options& o, double bytes) {
  const double need = 2.0 * double(dev.l2);
  if (bytes >= need) return 1;
  const double n = 1.0 + std::ceil(need / std::max(bytes, 1.0));
  return int(std::min<double>(n, double(o.max_rotate)));
}

// ------------------------------------------------------------------------------------------ timing
struct Timing {
  double median = 0, p10 = 0, p90 = 0;
  int64_t reps = 0;
  int rotate = 1;
};

class Events {
 public:
  ~Events() {
    if (a) cudaEventDestroy(a);
    if (b) cudaEventDestroy(b);
  }
  cudaEvent_t a = nullptr, b = nullptr;
};

// Runs iter(copy) warmup + reps times, each from an idle stream between two events.
Status time_it(const Device& dev, const Options& o, int rotate, const std::function<Status(int)>& iter,
               Timing* t) {
  Events ev;
  GK_CHECK(cudaEventCreate(&ev.a));
  GK_CHECK(cudaEventCreate(&ev.b));
  std::vector<double> ms;
  for (int64_t i = 0; i < o.warmup + o.reps; ++i) {
    GK_CHECK(cudaStreamSynchronize(dev.stream));
    GK_CHECK(cudaEventRecord(ev.a, dev.stream));
    GK_TRY(iter(int(i % rotate)));
    GK_CHECK(cudaEventRecord(ev.b, dev.stream));
    GK_CHECK(cudaEventSynchronize(ev.b));
    float x = 0;
    GK_CHECK(cudaEventElapsedTime(&x, ev.a, ev.b));
    if (i >= o.warmup) ms.push_back(x);
  }
  GK_CHECK(cudaGetLastError());
  std::sort(ms.begin(), ms.end());
  auto q = [&](double p) { return ms[size_t(std::lround(p * double(ms.size() - 1)))]; };
  t->median = q(0.5);
  t->p10 = q(0.1);
  t->p90 = q(0.9);
  t->reps = int64_t(ms.size());
  t->rotate = rotate;
  return Status::Ok();
}

// A device-to-device copy moving `bytes` (bytes/2 read, bytes/2 written), rotated like the cases.
Status time_copy(const Device& dev, const Options& o, double bytes, Timing* t, double* moved) {
  const size_t half = std::max<size_t>(16, (size_t(bytes / 2) + 15) & ~size_t(15));
  *moved = 2.0 * double(half);
  const int rot = rotations(dev, o, *moved);
  Arena arena;
  Rotated src, dst;
  GK_TRY(alloc_rotated(arena, &src, half, rot));
  GK_TRY(alloc_rotated(arena, &dst, half, rot));
  for (int i = 0; i < rot; ++i) {
    GK_CHECK(cudaMemsetAsync(src.at<char>(i), 1, half, dev.stream));
    GK_CHECK(cudaMemsetAsync(dst.at<char>(i), 0, half, dev.stream));
  }
  GK_TRY(time_it(dev, o, rot, [&](int c) -> Status {
    GK_CHECK(cudaMemcpyAsync(dst.at<char>(c), src.at<char>(c), half, cudaMemcpyDeviceToDevice, dev.stream));
    return Status::Ok();
  }, t));
  GK_CHECK(cudaStreamSynchronize(dev.stream));
  return Status::Ok();
}

// Reads the flags the case's kernels raised (reset before the case).
Status check_flags(const Device& dev, const std::function<std::string(const gk::ErrorFlags&)>& message) {
  GK_CHECK(cudaMemcpyAsync(dev.h_flags, dev.d_flags, sizeof(gk::ErrorFlags), cudaMemcpyDeviceToHost, dev.stream));
  GK_CHECK(cudaStreamSynchronize(dev.stream));
  if (dev.h_flags->bits != 0) {
    const std::string m = message ? message(*dev.h_flags) : "";
    return Status::Range(m.empty() ? "a kernel raised error flags " + std::to_string(dev.h_flags->bits) : m);
  }
  return Status::Ok();
}

// Reads back the first (up to 4096) elements of copy 0 of an output and checks them: a case timed on
// an early exit or on garbage is no measurement. kind: 'f' any finite f32, 'l' a log-probability
// (finite, ≤ 0), 'p' a probability mass in (0, 1], 'b' finite bf16.
Status check_output(const Device& dev, const char* what, const void* p, int64_t n, char kind) {
  const size_t k = size_t(std::min<int64_t>(n, 4096));
  const size_t elem = kind == 'b' ? 2 : 4;
  std::vector<uint8_t> h(k * elem);
  GK_CHECK(cudaMemcpyAsync(h.data(), p, h.size(), cudaMemcpyDeviceToHost, dev.stream));
  GK_CHECK(cudaStreamSynchronize(dev.stream));
  for (size_t i = 0; i < k; ++i) {
    float x;
    if (kind == 'b') {
      uint16_t b;
      std::memcpy(&b, &h[i * 2], 2);
      const uint32_t u = uint32_t(b) << 16;
      std::memcpy(&x, &u, 4);
    } else {
      std::memcpy(&x, &h[i * 4], 4);
    }
    const bool ok = std::isfinite(x) && (kind != 'l' || x <= 0.f) && (kind != 'p' || (x > 0.f && x <= 1.f));
    if (!ok)
      return Status::Range(std::string(what) + "[" + std::to_string(i) + "] = " + std::to_string(x) +
                           " is not a plausible result (inputs or launch wrong)");
  }
  return Status::Ok();
}

// FNV-1a (64 bits) over the bytes of device arrays (copy 0 of each output, read back whole): THR's rows
// carry it, so that the tile sets whose bits the tests assert equal (docs/cuda.md) can be compared at
// the harness's sizes too, each in its own process (summarize.mjs checks them).
Status bits_hash(const Device& dev, std::initializer_list<std::pair<const void*, size_t>> arrays, uint64_t* out) {
  uint64_t h = 1469598103934665603ull;
  for (const auto& [p, bytes] : arrays) {
    std::vector<uint8_t> b(bytes);
    GK_CHECK(cudaMemcpyAsync(b.data(), p, bytes, cudaMemcpyDeviceToHost, dev.stream));
    GK_CHECK(cudaStreamSynchronize(dev.stream));
    for (const uint8_t x : b) h = (h ^ x) * 1099511628211ull;
  }
  *out = h;
  return Status::Ok();
}

// ------------------------------------------------------------------------------------------ output
std::string json_str(const std::string& s) {
  std::string r = "\"";
  for (char c : s) {
    if (c == '"' || c == '\\') {
      r += '\\';
      r += c;
    } else if (static_cast<unsigned char>(c) < 0x20) {
      char b[8];
      std::snprintf(b, sizeof b, "\\u%04x", c);
      r += b;
    } else {
      r += c;
    }
  }
  return r + "\"";
}
std::string num(double x) {
  if (!std::isfinite(x)) return "null";
  char b[64];
  if (x == std::floor(x) && std::fabs(x) < 9e15)
    std::snprintf(b, sizeof b, "%.0f", x);
  else
    std::snprintf(b, sizeof b, "%.6g", x);
  return b;
}

// sizes: a JSON object's members, already formatted.
Status report(const Device& dev, const Options& o, const std::string& name, const std::string& sizes, double bytes,
              double flops, const Timing& t, const std::string& extra = "") {
  Timing c;
  double moved = 0;
  GK_TRY(time_copy(dev, o, bytes, &c, &moved));
  const double gbps = bytes / (t.median * 1e6);
  const double copy_gbps = moved / (c.median * 1e6);
  std::string row = "{\"case\":" + json_str(name) + ",\"sizes\":{" + sizes + "}";
  row += ",\"bytes\":" + num(bytes) + ",\"flops\":" + num(flops);
  row += ",\"ms_median\":" + num(t.median) + ",\"ms_p10\":" + num(t.p10) + ",\"ms_p90\":" + num(t.p90);
  row += ",\"reps\":" + num(double(t.reps)) + ",\"rotate\":" + num(t.rotate);
  row += ",\"gbps\":" + num(gbps) + ",\"tflops\":" + num(flops / (t.median * 1e9));
  row += ",\"copy_bytes\":" + num(moved) + ",\"copy_ms_median\":" + num(c.median) +
         ",\"copy_ms_p10\":" + num(c.p10) + ",\"copy_ms_p90\":" + num(c.p90) + ",\"copy_rotate\":" + num(c.rotate) +
         ",\"copy_gbps\":" + num(copy_gbps);
  row += ",\"fraction\":" + num(gbps / copy_gbps);
  row += ",\"device\":" + json_str(dev.prop.name) + ",\"cc\":\"" + std::to_string(dev.prop.major) + "." +
         std::to_string(dev.prop.minor) + "\",\"sms\":" + num(dev.prop.multiProcessorCount) +
         ",\"l2_bytes\":" + num(double(dev.l2)) + ",\"runtime\":" + num(dev.runtime) +
         ",\"driver\":" + num(dev.driver) + ",\"date\":" + json_str(dev.date) +
         ",\"version\":" + json_str(GK_HARNESS_VERSION) + extra + "}";
  std::printf("%s\n", row.c_str());
  std::fflush(stdout);
  return Status::Ok();
}

std::string kv(const char* k, double v) { return json_str(k) + ":" + num(v); }
std::string kv(const char* k, const char* v) { return json_str(k) + ":" + json_str(v); }

// --------------------------------------------------------------------------------- logprobs family
Status run_logprobs(const Device& dev, const Options& o) {
  const int64_t N = o.rows, V = o.vocab;
  const double logit_bytes = double(N) * double(V) * 2;
  // The forward moves the fewest bytes of the family: its rotation covers the backward too.
  const int rot = rotations(dev, o, logit_bytes + double(N) * 4 * 4);
  Arena arena;
  Rotated logits, targets, logprobs, lse, entropy, sumsq, grad_lp, grad_logits;
  const size_t rowf = size_t(N) * sizeof(float);
  GK_TRY(alloc_rotated(arena, &logits, size_t(N) * size_t(V) * 2, rot));
  GK_TRY(alloc_rotated(arena, &targets, size_t(N) * sizeof(int), rot));
  for (Rotated* r : {&logprobs, &lse, &entropy, &sumsq, &grad_lp}) GK_TRY(alloc_rotated(arena, r, rowf, rot));
  const bool bwd = wants(o, "backward");
  if (bwd) GK_TRY(alloc_rotated(arena, &grad_logits, size_t(N) * size_t(V) * 2, rot));
  std::fprintf(stderr, "[harness] logprobs: [%lld, %lld] bf16, %d cop%s\n", (long long)N, (long long)V, rot,
               rot == 1 ? "y" : "ies");

  const uint32_t seed = uint32_t(o.seed);
  const int64_t nl = N * V;
  fill_normal_kernel<__nv_bfloat16><<<fill_blocks(nl), kFillThreads, 0, dev.stream>>>(
      logits.at<__nv_bfloat16>(0), nl, seed, 3.f);
  GK_CHECK_LAUNCH("fill_normal_kernel (logits)");
  fill_index_kernel<<<fill_blocks(N), kFillThreads, 0, dev.stream>>>(targets.at<int>(0), N, seed + 1, int(V), 0);
  GK_CHECK_LAUNCH("fill_index_kernel (targets)");
  fill_normal_kernel<float><<<fill_blocks(N), kFillThreads, 0, dev.stream>>>(
      grad_lp.at<float>(0), N, seed + 2, 0.1f);
  GK_CHECK_LAUNCH("fill_normal_kernel (grad_logprobs)");
  for (const Rotated* r : {&logits, &targets, &grad_lp}) GK_TRY(replicate(*r, dev.stream));

  gk::LogprobsParams base;
  base.dtype = gk::DType::BF16;
  base.rows = N;
  base.vocab = V;
  auto forward = [&](int c, bool with_entropy, bool with_sumsq) -> Status {
    gk::LogprobsParams p = base;
    p.logits = logits.at<void>(c);
    p.targets = targets.at<int>(c);
    p.logprobs = logprobs.at<float>(c);
    p.lse = lse.at<float>(c);
    p.entropy = with_entropy ? entropy.at<float>(c) : nullptr;
    p.sum_squares = with_sumsq ? sumsq.at<float>(c) : nullptr;
    gk::Scratch scratch(dev.stream, dev.staging.get());
    return gk::launch_logprobs_forward(p, dev.env, scratch, dev.d_flags);
  };
  auto flags_message = [V](const gk::ErrorFlags& f) { return gk::logprobs_flags_message(f, V, -100); };
  const std::string sizes = kv("N", double(N)) + "," + kv("V", double(V)) + "," + kv("dtype", "bf16");

  if (wants(o, "logprobs")) {
    struct Variant {
      const char* name;
      bool entropy, sumsq;
    };
    for (const Variant& v : {Variant{"logprobs", false, false}, Variant{"logprobs+entropy", true, false},
                             Variant{"logprobs+entropy+sumSquares", true, true}}) {
      const int outs = 2 + int(v.entropy) + int(v.sumsq);
      const double bytes = logit_bytes + double(N) * 4 * (1 + outs);  // + targets and the [N] outputs
      // 4 flops per element (+3 with the statistics) and one exp2.
      const double flops = double(N) * double(V) * ((v.entropy || v.sumsq) ? 8 : 5);
      GK_TRY(gk::launch_reset_flags(dev.d_flags, dev.env));
      Timing t;
      GK_TRY(time_it(dev, o, rot, [&](int c) { return forward(c, v.entropy, v.sumsq); }, &t));
      GK_TRY(check_flags(dev, flags_message));
      GK_TRY(check_output(dev, "logprobs", logprobs.at<float>(0), N, 'l'));
      GK_TRY(check_output(dev, "lse", lse.at<float>(0), N, 'f'));
      if (v.entropy) GK_TRY(check_output(dev, "entropy", entropy.at<float>(0), N, 'f'));
      if (v.sumsq) GK_TRY(check_output(dev, "sumSquares", sumsq.at<float>(0), N, 'p'));
      GK_TRY(report(dev, o, v.name, sizes, bytes, flops, t));
    }
  }

  if (bwd) {
    // lse of every copy (the copies are identical, so one forward and a replication).
    GK_TRY(gk::launch_reset_flags(dev.d_flags, dev.env));
    GK_TRY(forward(0, false, false));
    GK_TRY(replicate(lse, dev.stream));
    GK_TRY(check_flags(dev, flags_message));
    gk::LogprobsBackwardParams bp;
    bp.dtype = gk::DType::BF16;
    bp.rows = N;
    bp.vocab = V;
    // The logits read once and the bf16 gradient written once, + targets, lse and the incoming gradient.
    const double bytes = 2 * logit_bytes + double(N) * 12;
    const double flops = double(N) * double(V) * 4;  // 3 per element (FMA, sub, mul) and one exp2
    GK_TRY(gk::launch_reset_flags(dev.d_flags, dev.env));
    Timing t;
    GK_TRY(time_it(dev, o, rot, [&](int c) -> Status {
      gk::LogprobsBackwardParams p = bp;
      p.logits = logits.at<void>(c);
      p.targets = targets.at<int>(c);
      p.lse = lse.at<float>(c);
      p.grad_logprobs = grad_lp.at<float>(c);
      p.grad_logits = grad_logits.at<void>(c);
      return gk::launch_logprobs_backward(p, dev.env, dev.d_flags);
    }, &t));
    GK_TRY(check_flags(dev, flags_message));
    GK_TRY(check_output(dev, "gradLogits", grad_logits.at<void>(0), N * V, 'b'));
    GK_TRY(report(dev, o, "logprobsBackward", sizes, bytes, flops, t));
  }
  GK_CHECK(cudaStreamSynchronize(dev.stream));
  return Status::Ok();
}

// ------------------------------------------------------------------------------------- LM head
// linearLogprobs (plain and with entropy) and its backward at [lm_rows, lm_dim] × [lm_vocab, lm_dim]
// bf16. Bytes: hidden and weight read once (+ the [N] vectors; the backward also writes gradHidden and
// gradWeight in f32), as scripts/gpu/goals.mjs counts them; the caches see the weight once per 128 rows.
Status run_lmhead(const Device& dev, const Options& o) {
  const int64_t N = o.lm_rows, d = o.lm_dim, V = o.lm_vocab;
  const double in_bytes = double(N + V) * double(d) * 2;
  const int rot = rotations(dev, o, in_bytes);
  Arena arena;
  Rotated hidden, weight, targets, logprobs, lse, entropy, grad_lp, grad_hidden, grad_weight;
  const size_t rowf = size_t(N) * sizeof(float);
  GK_TRY(alloc_rotated(arena, &hidden, size_t(N) * size_t(d) * 2, rot));
  GK_TRY(alloc_rotated(arena, &weight, size_t(V) * size_t(d) * 2, rot));
  GK_TRY(alloc_rotated(arena, &targets, size_t(N) * sizeof(int), rot));
  for (Rotated* r : {&logprobs, &lse, &entropy, &grad_lp}) GK_TRY(alloc_rotated(arena, r, rowf, rot));
  GK_TRY(alloc_rotated(arena, &grad_hidden, size_t(N) * size_t(d) * 4, rot));
  GK_TRY(alloc_rotated(arena, &grad_weight, size_t(V) * size_t(d) * 4, rot));
  std::fprintf(stderr, "[harness] lmhead: hidden [%lld, %lld], weight [%lld, %lld] bf16, %d cop%s\n", (long long)N,
               (long long)d, (long long)V, (long long)d, rot, rot == 1 ? "y" : "ies");
  const uint32_t seed = uint32_t(o.seed) + 40;
  fill_normal_kernel<__nv_bfloat16><<<fill_blocks(N * d), kFillThreads, 0, dev.stream>>>(
      hidden.at<__nv_bfloat16>(0), N * d, seed, 1.f);
  GK_CHECK_LAUNCH("fill_normal_kernel (hidden)");
  fill_normal_kernel<__nv_bfloat16><<<fill_blocks(V * d), kFillThreads, 0, dev.stream>>>(
      weight.at<__nv_bfloat16>(0), V * d, seed + 1, 3.f / std::sqrt(float(d)));
  GK_CHECK_LAUNCH("fill_normal_kernel (weight)");
  fill_index_kernel<<<fill_blocks(N), kFillThreads, 0, dev.stream>>>(targets.at<int>(0), N, seed + 2, int(V), 0);
  GK_CHECK_LAUNCH("fill_index_kernel (targets)");
  fill_normal_kernel<float><<<fill_blocks(N), kFillThreads, 0, dev.stream>>>(grad_lp.at<float>(0), N, seed + 3, 0.1f);
  GK_CHECK_LAUNCH("fill_normal_kernel (grad_logprobs)");
  for (const Rotated* r : {&hidden, &weight, &targets, &grad_lp}) GK_TRY(replicate(*r, dev.stream));

  auto forward = [&](int c, bool with_entropy, int path = 0) -> Status {
    gk::LinearLogprobsParams p;
    p.path = path;
    p.hidden = hidden.at<void>(c);
    p.weight = weight.at<void>(c);
    p.dtype = gk::DType::BF16;
    p.targets = targets.at<int>(c);
    p.rows = N;
    p.dim = d;
    p.vocab = V;
    p.logprobs = logprobs.at<float>(c);
    p.lse = lse.at<float>(c);
    p.entropy = with_entropy ? entropy.at<float>(c) : nullptr;
    gk::Scratch scratch(dev.stream, dev.staging.get());
    return gk::launch_linear_logprobs(p, dev.env, scratch, dev.d_flags);
  };
  auto flags_message = [V](const gk::ErrorFlags& f) { return gk::logprobs_flags_message(f, V, -100); };
  const std::string sizes =
      kv("N", double(N)) + "," + kv("d", double(d)) + "," + kv("V", double(V)) + "," + kv("dtype", "bf16");
  const double gemm = 2.0 * double(N) * double(V) * double(d);
  // The tiles (LinearLogprobsParams::path): auto, then mma.sync, then Hopper's where the device and the
  // build have them (lmhead.cu: lm_tiles).
#if defined(GK_BUILT_SM90A) || defined(GK_CUDA_EMU)
  const bool wgmma = dev.env.cc == 90;
#else
  const bool wgmma = false;
#endif
  if (!wgmma) std::fprintf(stderr, "[harness] lmhead: no wgmma rows (they need a 9.0 device and a build with 90a)\n");
  auto suffix = [](int path) -> std::string {
    static const char* const names[] = {
        "", " mma", " wgmma", " tma", " tma-overlap", " tma-wide", " tma-cluster", " tma-chain", " tma-chain-cluster"};
    return names[path];
  };
  for (const int path : o.lm_paths) {
    if (path >= 2 && !wgmma) continue;
    for (const bool ent : {false, true}) {
      GK_TRY(gk::launch_reset_flags(dev.d_flags, dev.env));
      Timing t;
      GK_TRY(time_it(dev, o, rot, [&](int c) { return forward(c, ent, path); }, &t));
      GK_TRY(check_flags(dev, flags_message));
      GK_TRY(check_output(dev, "logprobs", logprobs.at<float>(0), N, 'l'));
      GK_TRY(check_output(dev, "lse", lse.at<float>(0), N, 'f'));
      const std::string name =
          std::string(ent ? "linearLogprobs+entropy" : "linearLogprobs") + suffix(path);
      GK_TRY(report(dev, o, name.c_str(), sizes, in_bytes + double(N) * 4 * (ent ? 4 : 3), gemm, t));
    }
  }
  GK_TRY(gk::launch_reset_flags(dev.d_flags, dev.env));
  GK_TRY(forward(0, false));
  GK_TRY(replicate(lse, dev.stream));
  GK_TRY(check_flags(dev, flags_message));
  for (const int path : o.lm_paths) {
    if (path >= 2 && !wgmma) continue;
    Timing t;
    GK_TRY(time_it(dev, o, rot, [&](int c) -> Status {
      gk::LinearLogprobsBackwardParams p;
      p.path = path;
      p.hidden = hidden.at<void>(c);
      p.weight = weight.at<void>(c);
      p.dtype = gk::DType::BF16;
      p.targets = targets.at<int>(c);
      p.lse = lse.at<float>(c);
      p.grad_logprobs = grad_lp.at<float>(c);
      p.rows = N;
      p.dim = d;
      p.vocab = V;
      p.target_limit = V;
      p.grad_hidden = grad_hidden.at<float>(c);
      p.grad_weight = grad_weight.at<float>(c);
      p.chunk_rows = o.lm_chunk_rows;
      p.chunk_vocab = o.lm_chunk_vocab;
      gk::Scratch scratch(dev.stream, dev.staging.get());
      return gk::launch_linear_logprobs_backward(p, dev.env, scratch, dev.d_flags);
    }, &t));
    GK_TRY(check_flags(dev, flags_message));
    GK_TRY(check_output(dev, "gradHidden", grad_hidden.at<float>(0), N * d, 'f'));
    GK_TRY(check_output(dev, "gradWeight", grad_weight.at<float>(0), V * d, 'f'));
    const std::string chunks = o.lm_chunk_rows > 0 || o.lm_chunk_vocab > 0
                                   ? " chunks " + std::to_string(o.lm_chunk_rows) + "x" + std::to_string(o.lm_chunk_vocab)
                                   : "";
    GK_TRY(report(dev, o, ("linearLogprobsBackward" + suffix(path) + chunks).c_str(), sizes,
                  in_bytes + double(N + V) * double(d) * 4 + double(N) * 12, 2 * gemm, t));
  }
  GK_CHECK(cudaStreamSynchronize(dev.stream));
  return Status::Ok();
}

// -------------------------------------------------------------------------------------- THR family
// THR's host plan (ThrParams::correct_*), 'length' weighting: what the TypeScript API builds for the addon
// (src/api/thr-plan.ts, thrPlan, its f64 weights rounded once to f32). This harness calls the launcher
// directly, so as a benchmark driver it builds this input itself, outside the timed region.
void plan_thr(gk::ThrParams& p) {
  const auto& ro = p.layout.response_offsets;
  const auto& go = p.layout.group_offsets;
  const size_t G = go.size() - 1;
  p.correct_start.assign(G + 1, 0);
  p.correct_tokens.clear();
  p.correct_weights.clear();
  for (size_t g = 0; g < G; ++g) {
    p.correct_start[g] = int32_t(p.correct_tokens.size());
    if (p.layout.degenerate[g]) continue;
    for (int32_t r = go[g]; r < go[g + 1]; ++r) {
      if (!p.layout.correct[size_t(r)]) continue;
      const float w = float(1.0 / double(ro[size_t(r) + 1] - ro[size_t(r)]));
      for (int32_t t = ro[size_t(r)]; t < ro[size_t(r) + 1]; ++t) {
        p.correct_tokens.push_back(t);
        p.correct_weights.push_back(w);
      }
    }
  }
  p.correct_start[G] = int32_t(p.correct_tokens.size());
}

Status run_thr(const Device& dev, const Options& o) {
  const int64_t G = o.thr_groups, n = o.thr_responses, L = o.thr_tokens, d = o.thr_d, K = o.thr_vocab;
  const int64_t T = G * n * L, T_plus = G * (n / 2) * L;
  gk::ThrParams base;
  base.layout.response_offsets.resize(size_t(G * n) + 1);
  for (int64_t r = 0; r <= G * n; ++r) base.layout.response_offsets[size_t(r)] = int32_t(r * L);
  base.layout.correct.assign(size_t(G * n), 0);
  base.probs_offsets.resize(size_t(G) + 1);
  base.vocab_offsets.resize(size_t(G) + 1);
  for (int64_t g = 0; g <= G; ++g) {
    base.layout.group_offsets.push_back(int32_t(g * n));
    base.probs_offsets[size_t(g)] = g * n * L * K;  // each group's q block [n·L, K]
    base.vocab_offsets[size_t(g)] = int32_t(g * K);
  }
  for (int64_t g = 0; g < G; ++g)
    for (int64_t r = 0; r < n / 2; ++r) base.layout.correct[size_t(g * n + r)] = 1;  // the first half correct
  base.layout.degenerate.assign(size_t(G), 0);
  plan_thr(base);
  base.hidden_dtype = gk::DType::F32;
  base.dim = d;
  base.small_tiles = o.thr_small_tiles != 0;

  // hidden [T, d] and q [T, K] read, the token columns read, thr [T] and tau [G] written.
  const double bytes = double(T) * double(d) * 4 + double(T) * double(K) * 4 + double(T) * 8 + double(G) * 4;
  // 2·K·d·(T⁺ + T) in the two products, 2·T·K in the epilogue (ThrPrecision multiplies the MMAs only).
  const double flops = 2.0 * double(K) * double(d) * double(T_plus + T) + 2.0 * double(T) * double(K);
  const int rot = rotations(dev, o, bytes);
  Arena arena;
  Rotated hidden, probs, column, thr, tau;
  GK_TRY(alloc_rotated(arena, &hidden, size_t(T) * size_t(d) * 4, rot));
  GK_TRY(alloc_rotated(arena, &probs, size_t(T) * size_t(K) * 4, rot));
  GK_TRY(alloc_rotated(arena, &column, size_t(T) * 4, rot));
  GK_TRY(alloc_rotated(arena, &thr, size_t(T) * 4, rot));
  GK_TRY(alloc_rotated(arena, &tau, size_t(G) * 4, rot));  // one per group
  std::fprintf(stderr, "[harness] thr: %lld group%s of %lld × %lld tokens, d %lld, |V*| %lld, f32 hidden, %d cop%s\n",
               (long long)G, G == 1 ? "" : "s", (long long)n, (long long)L, (long long)d, (long long)K, rot,
               rot == 1 ? "y" : "ies");
  const uint32_t seed = uint32_t(o.seed) + 10;
  fill_normal_kernel<float><<<fill_blocks(T * d), kFillThreads, 0, dev.stream>>>(
      hidden.at<float>(0), T * d, seed, 1.f);
  GK_CHECK_LAUNCH("fill_normal_kernel (hidden)");
  // q: uniform in [0, 1/K), as goals.mjs draws it (a row sums to about 1/2 on V*).
  fill_uniform_kernel<<<fill_blocks(T * K), kFillThreads, 0, dev.stream>>>(
      probs.at<float>(0), T * K, seed + 1, 1.f / float(K));
  GK_CHECK_LAUNCH("fill_uniform_kernel (probs)");
  // Token t < K takes column t (so |V*| = K when T ≥ K), the rest a uniform column.
  fill_index_kernel<<<fill_blocks(T), kFillThreads, 0, dev.stream>>>(column.at<int>(0), T, seed + 2, int(K), K);
  GK_CHECK_LAUNCH("fill_index_kernel (token columns)");
  for (const Rotated* r : {&hidden, &probs, &column}) GK_TRY(replicate(*r, dev.stream));

  const std::string sizes_base = (G > 1 ? kv("groups", double(G)) + "," : std::string()) + kv("T", double(T)) +
                                 "," + kv("V*", double(K)) + "," + kv("d", double(d)) + "," +
                                 kv("T+", double(T_plus)) + "," + kv("hidden", "f32") +
                                 (base.small_tiles ? "," + kv("tiles", "small") : std::string());
  // The scores' tiles (ThrParams::path): auto, mma.sync, then wgmma (thr.cu, thr_scores_wgmma_kernel)
  // where the device and the build have them.
#if defined(GK_BUILT_SM90A) || defined(GK_CUDA_EMU)
  const bool wgmma = dev.env.cc == 90;
#else
  const bool wgmma = false;
#endif
  // Each path in 'f32' then 'tf32'; 6 to 11 are 'tf32' only ('tma-wide'; the rounded copies: their
  // 'f32' is auto's).
  std::vector<int> runs;
  for (const int path : o.thr_paths) {
    if (path < 6) runs.push_back(2 * path);
    runs.push_back(2 * path + 1);
  }
  for (const int run : runs) {
    const int path = run / 2;
    const gk::ThrPrecision prec = run % 2 == 0 ? gk::ThrPrecision::F32 : gk::ThrPrecision::Tf32;
    if (path >= 2 && !wgmma) continue;
    const char* pname = prec == gk::ThrPrecision::F32 ? "f32" : "tf32";
    base.precision = prec;
    base.path = path;
    Timing t;
    GK_TRY(time_it(dev, o, rot, [&](int c) -> Status {
      // Pointers set in place: copying ThrParams would copy its host vectors on every call.
      base.hidden = hidden.at<void>(c);
      base.probs = probs.at<float>(c);
      base.token_column = column.at<int>(c);
      base.thr = thr.at<float>(c);
      base.tau = tau.at<float>(c);
      gk::Scratch scratch(dev.stream, dev.staging.get());
      return gk::launch_token_hidden_reward(base, dev.env, scratch);
    }, &t));
    GK_TRY(check_output(dev, "thr", thr.at<float>(0), T, 'f'));
    GK_TRY(check_output(dev, "tau", tau.at<float>(0), G, 'f'));
    uint64_t h = 0;
    GK_TRY(bits_hash(dev, {{thr.at<float>(0), size_t(T) * 4}, {tau.at<float>(0), size_t(G) * 4}}, &h));
    char hex[24];
    std::snprintf(hex, sizeof hex, "%016llx", static_cast<unsigned long long>(h));
    static const char* const names[kThrPaths] = {"",           " mma",        " wgmma",           " wgmma-truncate",
                                                 " wgmma-m",   " tma",        " tma-wide",        " tma-rounded",
                                                 " tma-wide-rounded",         " tma-m",           " tma-wide-m",
                                                 " tma-wide-m-wide"};
    const std::string name = std::string("tokenHiddenReward/") + pname + names[path];
    GK_TRY(report(dev, o, name, sizes_base + "," + kv("precision", pname), bytes, flops, t,
                  std::string(",\"bits\":\"") + hex + "\""));
  }
  GK_CHECK(cudaStreamSynchronize(dev.stream));
  return Status::Ok();
}

// ------------------------------------------------------------------------------- advantages family
// Group sizes 1..31 (mean 16) from scripts/gpu/goals.mjs's LCG (seed 8), the last group absorbing the
// remainder, every group non-empty.
std::vector<int32_t> ragged_groups(int64_t G, int64_t R) {
  uint32_t s = 8;
  auto r = [&s]() {
    s = s * 1664525u + 1013904223u;
    return double(s) / 4294967296.0;
  };
  std::vector<int32_t> go(size_t(G) + 1, 0);
  for (int64_t g = 0; g < G; ++g)
    go[size_t(g) + 1] = int32_t(std::min<int64_t>(R, go[size_t(g)] + 1 + int64_t(r() * 31)));
  go[size_t(G)] = int32_t(R);
  for (int64_t g = G - 1; g > 0 && go[size_t(g)] > go[size_t(g) + 1] - 1; --g)
    go[size_t(g)] = go[size_t(g) + 1] - 1;
  return go;
}

// Two rows: the goal's ragged groups (their G+1 offsets uploaded through the pinned staging buffer,
// inside the timed region), and the same responses in uniform groups of 16 (groupSize: no upload).
Status run_advantages(const Device& dev, const Options& o) {
  const int64_t G = o.groups, R = o.responses;
  const int64_t U = R / 16;  // uniform groups of 16 over the first 16·U responses
  gk::AdvantagesParams ragged, uniform;
  ragged.group_offsets = ragged_groups(G, R);
  ragged.estimator = gk::Estimator::Grpo;
  uniform.group_size = 16;
  uniform.num_groups = U;
  uniform.estimator = gk::Estimator::Grpo;
  // rewards read and advantages written (4R each), mean, std (f32) and degenerate (u8) per group, and
  // the group offsets the launcher uploads and the kernel reads (ragged only).
  const double bytes = 8.0 * double(R) + 9.0 * double(G) + 4.0 * double(G + 1);
  const int rot = rotations(dev, o, bytes);
  Arena arena;
  Rotated rewards, adv, mean, stdv, deg;
  const int64_t Gmax = std::max(G, U);
  GK_TRY(alloc_rotated(arena, &rewards, size_t(R) * 4, rot));
  GK_TRY(alloc_rotated(arena, &adv, size_t(R) * 4, rot));
  GK_TRY(alloc_rotated(arena, &mean, size_t(Gmax) * 4, rot));
  GK_TRY(alloc_rotated(arena, &stdv, size_t(Gmax) * 4, rot));
  GK_TRY(alloc_rotated(arena, &deg, size_t(Gmax), rot));
  std::fprintf(stderr, "[harness] advantages: %lld responses in %lld ragged groups (and %lld of 16), %d cop%s\n",
               (long long)R, (long long)G, (long long)U, rot, rot == 1 ? "y" : "ies");
  fill_rewards_kernel<<<fill_blocks(R), kFillThreads, 0, dev.stream>>>(
      rewards.at<float>(0), R, uint32_t(o.seed) + 20);
  GK_CHECK_LAUNCH("fill_rewards_kernel");
  GK_TRY(replicate(rewards, dev.stream));
  auto time_case = [&](gk::AdvantagesParams& p, int64_t groups, int64_t members, const std::string& name,
                       const std::string& sizes, double case_bytes) -> Status {
    Timing t;
    GK_TRY(time_it(dev, o, rot, [&](int c) -> Status {
      p.rewards = rewards.at<float>(c);
      p.advantages = adv.at<float>(c);
      p.mean = mean.at<float>(c);
      p.std = stdv.at<float>(c);
      p.degenerate = deg.at<uint8_t>(c);
      gk::Scratch scratch(dev.stream, dev.staging.get());
      return gk::launch_advantages(p, dev.env, scratch);
    }, &t));
    GK_TRY(check_output(dev, "advantages", adv.at<float>(0), members, 'f'));
    GK_TRY(check_output(dev, "mean", mean.at<float>(0), groups, 'f'));
    GK_TRY(check_output(dev, "std", stdv.at<float>(0), groups, 'f'));
    GK_TRY(report(dev, o, name, sizes, case_bytes, 7.0 * double(members), t));
    return Status::Ok();
  };
  GK_TRY(time_case(ragged, G, R, "advantages",
                   kv("R", double(R)) + "," + kv("G", double(G)) + "," + kv("ragged", "1..31") + "," +
                       kv("estimator", "grpo"),
                   bytes));
  if (U > 0)
    GK_TRY(time_case(uniform, U, 16 * U, "advantages/uniform16",
                     kv("R", double(16 * U)) + "," + kv("G", double(U)) + "," + kv("groupSize", 16.0) + "," +
                         kv("estimator", "grpo"),
                     8.0 * double(16 * U) + 9.0 * double(U)));
  GK_CHECK(cudaStreamSynchronize(dev.stream));
  return Status::Ok();
}

// ------------------------------------------------------------------------------------------- setup
Status open_device(const Options& o, Device* dev) {
  int count = 0;
  GK_CHECK(cudaGetDeviceCount(&count));
  if (count < 1) return Status::Invalid("no CUDA device");
  GK_CHECK(cudaSetDevice(0));
  GK_CHECK(cudaGetDeviceProperties(&dev->prop, 0));
  // Stream-ordered scratch from the default pool, freed memory kept cached (as the addon's runtime does).
  cudaMemPool_t pool;
  GK_CHECK(cudaDeviceGetDefaultMemPool(&pool, 0));
  uint64_t threshold = UINT64_MAX;
  GK_CHECK(cudaMemPoolSetAttribute(pool, cudaMemPoolAttrReleaseThreshold, &threshold));
  GK_CHECK(cudaStreamCreateWithFlags(&dev->stream, cudaStreamNonBlocking));
  dev->env = gk::LaunchEnv{dev->stream, dev->prop.multiProcessorCount, 10 * dev->prop.major + dev->prop.minor};
  GK_CHECK(cudaMalloc(reinterpret_cast<void**>(&dev->d_flags), sizeof(gk::ErrorFlags)));
  GK_CHECK(cudaMallocHost(reinterpret_cast<void**>(&dev->h_flags), sizeof(gk::ErrorFlags)));
  dev->staging = std::make_unique<gk::HostStaging>();
  GK_CHECK(cudaRuntimeGetVersion(&dev->runtime));
  GK_CHECK(cudaDriverGetVersion(&dev->driver));
  dev->l2 = o.l2_mb > 0 ? size_t(o.l2_mb * 1048576.0) : size_t(std::max(dev->prop.l2CacheSize, 0));
  char date[32];
  const std::time_t now = std::time(nullptr);
  std::strftime(date, sizeof date, "%Y-%m-%dT%H:%M:%SZ", std::gmtime(&now));
  dev->date = date;
  return Status::Ok();
}

// Names the family in a failure's message.
Status in_family(const char* family, Status s) {
  if (!s.ok()) s.message = std::string(family) + ": " + s.message;
  return s;
}

Status run(const Options& o) {
  Device dev;
  GK_TRY(open_device(o, &dev));
  std::fprintf(stderr, "[harness] %s (cc %d.%d, %d SMs, L2 %zu bytes for rotation), runtime %d, driver %d\n",
               dev.prop.name, dev.prop.major, dev.prop.minor, dev.prop.multiProcessorCount, dev.l2, dev.runtime,
               dev.driver);
  if (o.reps < 20)
    std::fprintf(stderr, "[harness] note: --reps %lld (< 20): a dry run, not a measurement\n", (long long)o.reps);
  if (wants(o, "logprobs") || wants(o, "backward")) GK_TRY(in_family("logprobs", run_logprobs(dev, o)));
  if (wants(o, "thr")) GK_TRY(in_family("thr", run_thr(dev, o)));
  if (wants(o, "advantages")) GK_TRY(in_family("advantages", run_advantages(dev, o)));
  if (wants(o, "lmhead")) GK_TRY(in_family("lmhead", run_lmhead(dev, o)));
  GK_CHECK(cudaStreamSynchronize(dev.stream));
  GK_CHECK(cudaGetLastError());
  cudaFree(dev.d_flags);
  cudaFreeHost(dev.h_flags);
  dev.staging.reset();
  GK_CHECK(cudaStreamDestroy(dev.stream));
  return Status::Ok();
}

}  // namespace

int main(int argc, char** argv) {
  Options o;
  const std::string why = parse_args(argc, argv, &o);
  if (why == "help") {
    std::fputs(kUsage, stdout);
    return 0;
  }
  if (!why.empty()) {
    std::fprintf(stderr, "harness: %s\n%s", why.c_str(), kUsage);
    return 2;
  }
  const Status st = run(o);
  if (!st.ok()) {
    std::fprintf(stderr, "harness: %s\n", st.message.c_str());
    return 1;
  }
  return 0;
}
