// Checks the CUDA emulator itself (build/emu/emu_selftest, run by test/cuda/emu.test.ts), so that a
// kernel passing on it has passed something: warp shuffles against CUDA's definitions (xor, down,
// idx, sub-warp widths), block barriers, the schedule-order probe that exposes a missing barrier,
// the launch failures it must report instead of hanging (deadlock, disagreeing masks, a lane that
// exits inside a shuffle, bad grid or block sizes), a thread ending early (PTX exit) before a barrier,
// WMMA's tf32 product against float64, and the PTX
// stand-ins of tensor_core.cuh: mma.sync m16n8k8's per-lane fragment layout and its truncation of
// unrounded operands, cp.async's zero fill and its copies landing only when their group is waited for,
// __ballot_sync, dynamic shared memory (poisoned, and over 48 KiB only after cudaFuncSetAttribute), and
// wgmma: every swizzle and major-ness of its shared-memory operands against a placement written here from
// the PTX ISA's canonical layouts, each thread's accumulator fragment, deferred execution, and the
// pipeline mistakes it must refuse; mbarrier phases and parities, TMA boxes against the ISA's swizzle
// table (zero fill outside the tensor), their deferred landing, a TMA → wgmma producer / consumer
// pipeline, and the mbarrier / TMA misuses it must refuse (deadlock included); thread-block clusters: a
// TMA pipeline a cluster of 2 shares (multicast boxes, remote releases, phases wrapping, producer tail),
// cluster ranks and cluster_sync, and the cluster misuses and launch shapes it must refuse.
// Prints "ok <check>" or "FAIL <check>: why" per check; the exit status counts the failures.
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <initializer_list>
#include <random>
#include <string>
#include <vector>

#include "common.cuh"
#include "tensor_core.cuh"

namespace {

int failures = 0;
void check(bool ok, const std::string& name, const std::string& why = "") {
  std::printf("%s %s%s%s\n", ok ? "ok" : "FAIL", name.c_str(), ok ? "" : ": ", ok ? "" : why.c_str());
  if (!ok) ++failures;
}

// ------------------------------------------------------------------------------------ shuffles
constexpr int kShflOut = 12;
__global__ void shfl_kernel(int* out) {
  const int lane = threadIdx.x & 31;
  const int v = lane * 3 + 1 + int(threadIdx.x >> 5) * 1000;
  int* o = out + threadIdx.x * kShflOut;
  int k = 0;
  for (int m = 1; m < 32; m <<= 1) o[k++] = __shfl_xor_sync(0xffffffffu, v, m);
  for (int d = 1; d < 32; d <<= 1) o[k++] = __shfl_down_sync(0xffffffffu, v, d);
  o[k++] = __shfl_sync(0xffffffffu, v, 7);
  o[k++] = __shfl_xor_sync(0xffffffffu, v, 1, 8);
}

void test_shuffles() {
  const int n = 64;
  std::vector<int> out(n * kShflOut, -1);
  int* d = nullptr;
  cudaMalloc(reinterpret_cast<void**>(&d), out.size() * sizeof(int));
  shfl_kernel<<<1, n, 0, nullptr>>>(d);
  check(cudaGetLastError() == cudaSuccess, "shuffle kernel launches");
  std::memcpy(out.data(), d, out.size() * sizeof(int));
  cudaFree(d);
  std::string bad;
  for (int t = 0; t < n && bad.empty(); ++t) {
    const int lane = t & 31, base = (t >> 5) * 1000;
    auto val = [&](int l) { return l * 3 + 1 + base; };
    std::vector<int> want;
    for (int m = 1; m < 32; m <<= 1) want.push_back(val(lane ^ m));
    for (int dd = 1; dd < 32; dd <<= 1) want.push_back(val(lane + dd < 32 ? lane + dd : lane));
    want.push_back(val(7));
    want.push_back(val((lane & ~7) | ((lane & 7) ^ 1)));
    for (int k = 0; k < kShflOut; ++k)
      if (out[t * kShflOut + k] != want[k])
        bad = "thread " + std::to_string(t) + " result " + std::to_string(k) + ": got " +
              std::to_string(out[t * kShflOut + k]) + ", want " + std::to_string(want[k]);
  }
  check(bad.empty(), "xor / down / idx / width-8 shuffles follow CUDA's definitions", bad);
}

// ------------------------------------------------------------------------------------ barriers
__global__ void block_sum_kernel(const int* in, int* out) {
  __shared__ int s[256];
  s[threadIdx.x] = in[blockIdx.x * blockDim.x + threadIdx.x];
  __syncthreads();
  for (int h = int(blockDim.x) / 2; h > 0; h >>= 1) {
    if (int(threadIdx.x) < h) s[threadIdx.x] += s[threadIdx.x + h];
    __syncthreads();
  }
  if (threadIdx.x == 0) out[blockIdx.x] = s[0];
}

// Reads a neighbour's shared slot with (race) or without (sync) a missing barrier.
__global__ void neighbour_kernel(int* out, int with_barrier) {
  __shared__ int s[64];
  s[threadIdx.x] = -1;
  __syncthreads();
  s[threadIdx.x] = int(threadIdx.x) + 1;
  if (with_barrier) __syncthreads();
  out[threadIdx.x] = s[(threadIdx.x + 1) % 64];
}

std::vector<int> neighbours(bool with_barrier, bool reverse) {
  gkemu::set_reverse_order(reverse);
  int* d = nullptr;
  cudaMalloc(reinterpret_cast<void**>(&d), 64 * sizeof(int));
  neighbour_kernel<<<1, 64, 0, nullptr>>>(d, with_barrier ? 1 : 0);
  std::vector<int> out(64);
  std::memcpy(out.data(), d, sizeof(int) * 64);
  cudaFree(d);
  gkemu::set_reverse_order(false);
  return out;
}

void test_barriers() {
  std::vector<int> in(512);
  for (int i = 0; i < 512; ++i) in[i] = (i * 7919) % 1000 - 500;
  int *din = nullptr, *dout = nullptr;
  cudaMalloc(reinterpret_cast<void**>(&din), in.size() * sizeof(int));
  cudaMalloc(reinterpret_cast<void**>(&dout), 2 * sizeof(int));
  std::memcpy(din, in.data(), in.size() * sizeof(int));
  block_sum_kernel<<<2, 256, 0, nullptr>>>(din, dout);
  long want0 = 0, want1 = 0;
  for (int i = 0; i < 256; ++i) want0 += in[i], want1 += in[256 + i];
  check(dout[0] == want0 && dout[1] == want1, "__syncthreads tree sums over two blocks");
  cudaFree(din);
  cudaFree(dout);

  std::vector<int> want(64);
  for (int i = 0; i < 64; ++i) want[i] = (i + 1) % 64 + 1;
  check(neighbours(true, false) == want && neighbours(true, true) == want,
        "with the barrier, both schedule orders give the right neighbours");
  check(neighbours(false, false) != neighbours(false, true),
        "without it, the two schedule orders disagree (GK_EMU_ORDER=reverse exposes the race)");
}

// ------------------------------------------------------------------------------ reported failures
__global__ void deadlock_kernel() {
  if (threadIdx.x == 1)
    __syncwarp(0x3u);  // waits for lane 0 ...
  else
    __syncthreads();  // ... which waits for lane 1
}
__global__ void mask_mismatch_kernel(int* out) {
  const unsigned mask = threadIdx.x == 1 ? 0x3u : 0xffffffffu;  // lane 0 waits with the full mask
  out[threadIdx.x] = __shfl_xor_sync(mask, int(threadIdx.x), 1);
}
__global__ void exited_lane_kernel(int* out) {
  if (threadIdx.x >= 16) return;
  out[threadIdx.x] = __shfl_xor_sync(0xffffffffu, int(threadIdx.x), 1);
}
__global__ void nop_kernel() {}
// Threads 32 … 63 end inside a helper (thread_exit: PTX exit); the rest then meet at a barrier.
__device__ void end_here() { gk::thread_exit(); }
__global__ void exit_kernel(int* out) {
  __shared__ int seen;
  if (threadIdx.x == 0) seen = 0;
  __syncthreads();
  if (threadIdx.x >= 32) {
    end_here();
    out[threadIdx.x] = 1;  // never runs
  }
  atomicAdd(&seen, 1);
  __syncthreads();  // waits for the 32 threads left only
  out[threadIdx.x] = seen;
}

void expect_failure(cudaError_t want, const char* what, const char* needle) {
  const cudaError_t e = cudaGetLastError();
  const std::string msg = cudaGetErrorString(e);
  check(e == want && msg.find(needle) != std::string::npos, what,
        std::string(cudaGetErrorName(e)) + ": " + msg);
}

void test_failures() {
  int* d = nullptr;
  cudaMalloc(reinterpret_cast<void**>(&d), 64 * sizeof(int));
  deadlock_kernel<<<1, 32, 0, nullptr>>>();
  expect_failure(cudaErrorLaunchFailure, "a deadlock fails the launch instead of hanging", "deadlock");
  mask_mismatch_kernel<<<1, 32, 0, nullptr>>>(d);
  expect_failure(cudaErrorLaunchFailure, "lanes disagreeing on a shuffle mask fail the launch", "disagree");
  exited_lane_kernel<<<1, 32, 0, nullptr>>>(d);
  expect_failure(cudaErrorLaunchFailure, "a shuffle naming an exited lane fails the launch", "exited");
  nop_kernel<<<1, 2048, 0, nullptr>>>();
  expect_failure(cudaErrorInvalidConfiguration, "a block of 2048 threads is an invalid configuration", "1024");
  nop_kernel<<<dim3(1, 70000), 32, 0, nullptr>>>();
  expect_failure(cudaErrorInvalidConfiguration, "grid.y = 70000 is an invalid configuration", "65535");
  nop_kernel<<<0, 32, 0, nullptr>>>();
  expect_failure(cudaErrorInvalidConfiguration, "an empty grid is an invalid configuration", "empty");
  nop_kernel<<<1, 32, 0, nullptr>>>();
  check(cudaGetLastError() == cudaSuccess, "a good launch after the failures succeeds");
  std::fill(d, d + 64, 0);  // the emulator's device memory is the host's
  exit_kernel<<<1, 64, 0, nullptr>>>(d);
  bool exit_ok = cudaGetLastError() == cudaSuccess;
  for (int i = 0; i < 64; ++i) exit_ok = exit_ok && d[i] == (i < 32 ? 32 : 0);
  check(exit_ok, "thread_exit ends a thread inside a helper; a later barrier waits for the threads left");
  cudaFree(d);
}

// ------------------------------------------------------------------------------------------ WMMA
using namespace nvcuda;
__global__ void wmma_kernel(const float* a_row, const float* b_col, float* c) {
  wmma::fragment<wmma::matrix_a, 16, 16, 8, wmma::precision::tf32, wmma::row_major> fa;
  wmma::fragment<wmma::matrix_b, 16, 16, 8, wmma::precision::tf32, wmma::col_major> fb;
  wmma::fragment<wmma::accumulator, 16, 16, 8, float> acc;
  wmma::fill_fragment(acc, 0.5f);
  wmma::load_matrix_sync(fa, a_row, 8);   // A[i][k] = a_row[i·8 + k]
  wmma::load_matrix_sync(fb, b_col, 8);   // B[k][j] = b_col[j·8 + k]
  for (int i = 0; i < fa.num_elements; ++i) fa.x[i] = wmma::__float_to_tf32(fa.x[i]);
  for (int i = 0; i < fb.num_elements; ++i) fb.x[i] = wmma::__float_to_tf32(fb.x[i]);
  wmma::mma_sync(acc, fa, fb, acc);
  wmma::store_matrix_sync(c, acc, 16, wmma::mem_col_major);  // C[i][j] at c[j·16 + i]
}

double tf32(double x) {  // round to 10 mantissa bits, ties away from zero
  int e = 0;
  const double m = std::frexp(x, &e);
  return std::ldexp(std::round(std::ldexp(m, 11)), e - 11);
}

void test_wmma() {
  std::mt19937 rng(1234);
  std::normal_distribution<float> nd(0.f, 1.f);
  std::vector<float> a(16 * 8), b(8 * 16), c(16 * 16);
  for (float& x : a) x = nd(rng);
  for (float& x : b) x = nd(rng);
  float *da, *db, *dc;
  cudaMalloc(reinterpret_cast<void**>(&da), a.size() * 4);
  cudaMalloc(reinterpret_cast<void**>(&db), b.size() * 4);
  cudaMalloc(reinterpret_cast<void**>(&dc), c.size() * 4);
  std::memcpy(da, a.data(), a.size() * 4);
  std::memcpy(db, b.data(), b.size() * 4);
  wmma_kernel<<<1, 32, 0, nullptr>>>(da, db, dc);
  std::memcpy(c.data(), dc, c.size() * 4);
  double worst = 0;
  for (int i = 0; i < 16; ++i)
    for (int j = 0; j < 16; ++j) {
      double s = 0.5;
      for (int k = 0; k < 8; ++k) s += tf32(a[i * 8 + k]) * tf32(b[j * 8 + k]);
      worst = std::fmax(worst, std::fabs(c[j * 16 + i] - s) / (1 + std::fabs(s)));
    }
  check(worst < 1e-6, "WMMA tf32 16x16x8 (row-major A, col-major B, col-major store) matches float64",
        "worst error " + std::to_string(worst));
  cudaFree(da);
  cudaFree(db);
  cudaFree(dc);
}

// ------------------------------------------------------------------------ mma.sync m16n8k8 TF32
// One warp: A [16][8] row-major, B stored [n][k] (8 × 8), C [16][8] row-major, D = A·B + 0.5. Each lane
// loads and stores exactly its fragment elements (tensor_core.cuh's layout), so a wrong layout in the
// stand-in (or the documentation of it) gives a wrong D.
__global__ void mma_kernel(const float* A, const float* Bnk, float* C, int round) {
  const int lane = threadIdx.x & 31, g = lane >> 2, t = lane & 3;
  float a[4], b[2], d[4] = {0.5f, 0.5f, 0.5f, 0.5f};
  for (int i = 0; i < 4; ++i) a[i] = A[(g + 8 * (i & 1)) * 8 + t + 4 * (i >> 1)];
  for (int i = 0; i < 2; ++i) b[i] = Bnk[g * 8 + t + 4 * i];
  if (round) {
    for (float& x : a) x = gk::tf32_round(x);
    for (float& x : b) x = gk::tf32_round(x);
  }
  gk::mma_tf32(d, a, b);
  for (int i = 0; i < 4; ++i) C[(g + 8 * (i >> 1)) * 8 + 2 * t + (i & 1)] = d[i];
}

void test_mma() {
  std::mt19937 rng(4321);
  std::normal_distribution<float> nd(0.f, 1.f);
  std::vector<float> a(16 * 8), b(8 * 8), c(16 * 8);
  for (float& x : a) x = nd(rng);
  for (float& x : b) x = nd(rng);
  float *da, *db, *dc;
  cudaMalloc(reinterpret_cast<void**>(&da), a.size() * 4);
  cudaMalloc(reinterpret_cast<void**>(&db), b.size() * 4);
  cudaMalloc(reinterpret_cast<void**>(&dc), c.size() * 4);
  std::memcpy(da, a.data(), a.size() * 4);
  std::memcpy(db, b.data(), b.size() * 4);
  mma_kernel<<<1, 32, 0, nullptr>>>(da, db, dc, 1);
  std::memcpy(c.data(), dc, c.size() * 4);
  double worst = 0;
  for (int i = 0; i < 16; ++i)
    for (int j = 0; j < 8; ++j) {
      double s = 0.5;
      for (int k = 0; k < 8; ++k) s += tf32(a[i * 8 + k]) * tf32(b[j * 8 + k]);
      worst = std::fmax(worst, std::fabs(c[i * 8 + j] - s) / (1 + std::fabs(s)));
    }
  check(worst < 1e-6, "mma.sync m16n8k8 tf32 stand-in: per-lane fragments of A, B, C/D as documented, vs float64",
        "worst error " + std::to_string(worst));
  // Unrounded operands: the hardware reads the top 19 bits (truncation). 1 + 0.75·2^-10 rounds to
  // 1 + 2^-10 but truncates to 1.
  std::fill(a.begin(), a.end(), 0.f);
  std::fill(b.begin(), b.end(), 0.f);
  a[0] = 1.f + 0.75f / 1024.f;
  b[0] = 1.f;
  std::memcpy(da, a.data(), a.size() * 4);
  std::memcpy(db, b.data(), b.size() * 4);
  mma_kernel<<<1, 32, 0, nullptr>>>(da, db, dc, 0);
  std::memcpy(c.data(), dc, c.size() * 4);
  check(c[0] == 1.5f, "mma.sync stand-in truncates operands that were not rounded to tf32",
        "got " + std::to_string(c[0]));
  cudaFree(da);
  cudaFree(db);
  cudaFree(dc);
}

// ------------------------------------------------------------------------------------- cp.async
constexpr int kCpSmem = 64 << 10;  // over 48 KiB: needs cudaFuncSetAttribute
// Thread i copies 16 bytes of src to its chunk with src_bytes = i mod 17 (the rest zero-filled): out
// gets what the chunk held before the wait (the poison: the copy has not landed), then a neighbour's
// chunk after wait + barrier. Then two groups: after wait_group 1 only the older one has landed.
__global__ void cp_async_kernel(const float* src, float* out) {
  GK_DYNAMIC_SMEM(float, sm);
  const int i = threadIdx.x;
  gk::cp_async16(sm + 4 * i, src + 4 * i, i % 17);
  gk::cp_async_commit();
  out[i * 12 + 0] = sm[4 * i];
  gk::cp_async_wait<0>();
  __syncthreads();
  const int j = (i + 1) % 32;
  for (int e = 0; e < 4; ++e) out[i * 12 + 1 + e] = sm[4 * j + e];
  __syncthreads();
  gk::cp_async16(sm + 1024 + 4 * i, src + 128 + 4 * i, 16);
  gk::cp_async_commit();
  gk::cp_async4(sm + 2048 + i, src + 256 + i, 4);
  gk::cp_async_commit();
  gk::cp_async_wait<1>();
  out[i * 12 + 5] = sm[1024 + 4 * i];
  out[i * 12 + 6] = sm[2048 + i];
  gk::cp_async_wait<0>();
  out[i * 12 + 7] = sm[2048 + i];
  out[i * 12 + 8] = __uint_as_float(__ballot_sync(0xffffffffu, i & 1));
}
__global__ void uses_dynamic_smem_kernel(float* out) {
  GK_DYNAMIC_SMEM(float, sm);
  out[0] = sm[0];
}

void test_cp_async() {
  const bool eager = [] {
    const char* e = std::getenv("GK_EMU_CP_ASYNC");
    return e && std::strcmp(e, "eager") == 0;
  }();
  std::vector<float> src(512), out(32 * 12);
  for (size_t k = 0; k < src.size(); ++k) src[k] = float(k + 1);
  float *ds, *dout;
  cudaMalloc(reinterpret_cast<void**>(&ds), src.size() * 4);
  cudaMalloc(reinterpret_cast<void**>(&dout), out.size() * 4);
  std::memcpy(ds, src.data(), src.size() * 4);
  cp_async_kernel<<<1, 32, kCpSmem, nullptr>>>(ds, dout);
  expect_failure(cudaErrorInvalidValue, "a launch over 48 KiB of dynamic shared memory without the opt-in fails",
                 "invalid argument");
  check(cudaFuncSetAttribute(reinterpret_cast<const void*>(&cp_async_kernel), cudaFuncAttributeMaxDynamicSharedMemorySize,
                             kCpSmem) == cudaSuccess,
        "cudaFuncSetAttribute(MaxDynamicSharedMemorySize) is accepted");
  cp_async_kernel<<<1, 32, kCpSmem, nullptr>>>(ds, dout);
  check(cudaGetLastError() == cudaSuccess, "the same launch after the opt-in succeeds");
  std::memcpy(out.data(), dout, out.size() * 4);
  std::string bad_fill, bad_wait;
  for (int i = 0; i < 32 && bad_fill.empty(); ++i) {
    const int j = (i + 1) % 32, bytes = j % 17;
    for (int e = 0; e < 4; ++e) {
      const float want = e * 4 < bytes ? src[4 * j + e] : 0.f;  // src_bytes are multiples of 4 or partial
      const int kept = bytes - e * 4;                           // bytes of this float that were copied
      float w = want;
      if (kept > 0 && kept < 4) {  // a partially copied float: its low bytes from src, the rest zero
        uint32_t u = 0, v = __float_as_uint(src[4 * j + e]);
        std::memcpy(&u, &v, size_t(kept));
        w = __uint_as_float(u);
      }
      if (out[i * 12 + 1 + e] != w && !(std::isnan(w) && std::isnan(out[i * 12 + 1 + e])))
        bad_fill = "thread " + std::to_string(i) + " float " + std::to_string(e) + ": got " +
                   std::to_string(out[i * 12 + 1 + e]) + ", want " + std::to_string(w);
    }
  }
  check(bad_fill.empty(), "cp.async copies src_bytes and zero-fills the rest of its 16 bytes", bad_fill);
  for (int i = 0; i < 32 && bad_wait.empty(); ++i) {
    const float* o = &out[i * 12];
    const bool before_ok = eager ? true : std::isnan(o[0]);  // the poison: nothing landed before the wait
    if (!before_ok || o[5] != src[128 + 4 * i] || (!eager && !std::isnan(o[6])) || o[7] != src[256 + i])
      bad_wait = "thread " + std::to_string(i) + ": before wait " + std::to_string(o[0]) + ", group 1 " +
                 std::to_string(o[5]) + ", group 2 before/after its wait " + std::to_string(o[6]) + "/" +
                 std::to_string(o[7]);
  }
  check(bad_wait.empty(),
        "cp.async lands when its group is waited for (wait_group 1 leaves the newest group in flight)", bad_wait);
  check(__float_as_uint(out[8]) == 0xaaaaaaaau, "__ballot_sync gathers the lanes' predicates",
        "got " + std::to_string(__float_as_uint(out[8])));
  uses_dynamic_smem_kernel<<<1, 32, 0, nullptr>>>(dout);
  expect_failure(cudaErrorLaunchFailure, "dynamic shared memory used by a launch that asked for none fails",
                 "asked for 0 bytes");
  cudaFree(ds);
  cudaFree(dout);
}

// ---------------------------------------------------------------------------------------- wgmma
// Where element (mn, k) of an operand tile lies in shared memory, written here from the PTX ISA's
// canonical layouts (9.7.15.5.1.2, in CuTe notation) apart from the emulator's own address formulas:
// a CuTe layout over (mn, k) (three modes each, strides in elements, first mode fastest), the byte
// offset of that, then Swizzle<B,4,3> on the shared-window address. A kernel copies the host's image
// of A and B into dynamic shared memory, walks K by advancing each descriptor's start address to the
// (unswizzled) origin of the next K slice, and returns every thread's accumulators.
struct WgmmaOperand {
  bool mn_major;
  int swizzle;        // descriptor code: 0 none, 1 128B, 2 64B, 3 32B
  uint32_t lbo, sbo;  // bytes, as the descriptor takes them
  int e;              // bytes an element
  int mn_shape[3], mn_stride[3], k_shape[3], k_stride[3];
  uint32_t region;    // where the tile starts in the image (1024-byte aligned)
  static long eval(int x, const int (&shape)[3], const int (&stride)[3]) {
    long off = 0;
    for (int i = 0; i < 3; ++i) {
      off += long(x % shape[i]) * stride[i];
      x /= shape[i];
    }
    return off;
  }
  uint32_t unswizzled(int mn, int k) const {
    return region + uint32_t((eval(mn, mn_shape, mn_stride) + eval(k, k_shape, k_stride)) * e);
  }
  uint32_t address(int mn, int k) const {  // window address, the image's base being window address 0
    const uint32_t a = unswizzled(mn, k);
    const int bits = swizzle == 1 ? 3 : swizzle == 2 ? 2 : swizzle == 3 ? 1 : 0;
    return a ^ ((a >> 7) & ((1u << bits) - 1)) << 4;
  }
};

// The canonical layout of a rows × kt tile (rows: 64 for A, N for B). `alt` picks another packing
// (other LBO / SBO, gaps between 8-row groups), so neither offset is assumed.
WgmmaOperand wgmma_operand(bool mn_major, int swizzle, int rows, int kt, int e, bool alt) {
  WgmmaOperand o{};
  o.mn_major = mn_major;
  o.swizzle = swizzle;
  o.e = e;
  const int t = 16 / e, w = swizzle == 1 ? 128 : swizzle == 2 ? 64 : 32;
  auto set = [](int (&shape)[3], int (&stride)[3], std::initializer_list<int> sh, std::initializer_list<int> st) {
    int i = 0;
    for (int x : sh) shape[i++] = x;
    i = 0;
    for (int x : st) stride[i++] = x;
  };
  if (!mn_major && swizzle == 0) {  // ((8,m),(T,2k)):((1T,SBO),(1,LBO))
    o.sbo = alt ? uint32_t(kt / t) * 128 : 128;
    o.lbo = alt ? 128 : uint32_t(rows / 8) * 128;
    set(o.mn_shape, o.mn_stride, {8, rows / 8, 1}, {t, int(o.sbo) / e, 0});
    set(o.k_shape, o.k_stride, {t, kt / t, 1}, {1, int(o.lbo) / e, 0});
  } else if (!mn_major) {  // ((8,m),(T,2k)):((W/16·T,SBO),(1,T)); K atoms after the rows
    o.sbo = uint32_t(8 * w * (alt ? 2 : 1));
    o.lbo = alt ? 16 : 0;  // unused
    set(o.mn_shape, o.mn_stride, {8, rows / 8, 1}, {w / e, int(o.sbo) / e, 0});
    set(o.k_shape, o.k_stride, {t, w / 16, kt * e / w}, {1, t, rows / 8 * int(o.sbo) / e});
  } else if (swizzle == 0) {  // ((T,1,m),(8,k)):((1,T,SBO),(1T,LBO))
    o.sbo = alt ? uint32_t(kt / 8) * 128 : 128;
    o.lbo = alt ? 128 : uint32_t(rows / t) * 128;
    set(o.mn_shape, o.mn_stride, {t, rows / t, 1}, {1, int(o.sbo) / e, 0});
    set(o.k_shape, o.k_stride, {8, kt / 8, 1}, {t, int(o.lbo) / e, 0});
  } else {  // ((T,W/16,m),(8,k)):((1,T,LBO),(W/16·T,SBO))
    o.lbo = uint32_t(8 * w);
    o.sbo = uint32_t(rows * e / w * 8 * w * (alt ? 2 : 1));
    set(o.mn_shape, o.mn_stride, {t, w / 16, rows * e / w}, {1, t, int(o.lbo) / e});
    set(o.k_shape, o.k_stride, {8, kt / 8, 1}, {w / e, int(o.sbo) / e, 0});
  }
  return o;
}

struct WgmmaCase {
  int type, n, trans_a, trans_b, steps, scale_first;  // type: 0 bf16, 1 f16, 2 tf32
  uint32_t image_bytes;
  uint32_t a_start[4], b_start[4];  // each step's descriptor start, bytes into the image
  uint32_t a_lbo, a_sbo, b_lbo, b_sbo;
  int a_swizzle, b_swizzle;
  int mode;  // wgmma_fail_kernel's failure
};

template <class T, int N, int TB>
void wgmma_issue(float* d, uint64_t da, uint64_t db, int scale) {
  gk::wgmma_async<T, N, TB>(*reinterpret_cast<float(*)[N / 2]>(d), da, db, scale);
}
// tensor_core.cuh's wrapper (K-major A), or the emulator's entry for an M-major A.
void wgmma_any(const WgmmaCase& c, float* d, uint64_t da, uint64_t db, int scale) {
  if (c.trans_a) return ::gkemu::wgmma(d, c.n, da, db, scale, c.type, 1, c.trans_b);
  switch (c.type * 4 + (c.n == 128) * 2 + c.trans_b) {
    case 0: return wgmma_issue<__nv_bfloat16, 64, 0>(d, da, db, scale);
    case 1: return wgmma_issue<__nv_bfloat16, 64, 1>(d, da, db, scale);
    case 2: return wgmma_issue<__nv_bfloat16, 128, 0>(d, da, db, scale);
    case 3: return wgmma_issue<__nv_bfloat16, 128, 1>(d, da, db, scale);
    case 4: return wgmma_issue<__half, 64, 0>(d, da, db, scale);
    case 5: return wgmma_issue<__half, 64, 1>(d, da, db, scale);
    case 6: return wgmma_issue<__half, 128, 0>(d, da, db, scale);
    case 7: return wgmma_issue<__half, 128, 1>(d, da, db, scale);
    case 8: return wgmma_issue<float, 64, 0>(d, da, db, scale);
    default: return wgmma_issue<float, 128, 0>(d, da, db, scale);
  }
}
uint64_t wgmma_desc_a(const WgmmaCase& c, uint32_t base, int s) {
  return gk::wgmma_desc(base + c.a_start[s], c.a_lbo, c.a_sbo, gk::WgmmaSwizzle(c.a_swizzle));
}
uint64_t wgmma_desc_b(const WgmmaCase& c, uint32_t base, int s) {
  return gk::wgmma_desc(base + c.b_start[s], c.b_lbo, c.b_sbo, gk::WgmmaSwizzle(c.b_swizzle));
}
__device__ void wgmma_load_image(const unsigned char* image, unsigned char* sm, uint32_t bytes) {
  for (uint32_t i = threadIdx.x * 16; i < bytes; i += blockDim.x * 16) std::memcpy(sm + i, image + i, 16);
}

// io: each thread's n/2 accumulators in, D out (all steps in one group).
__global__ void wgmma_kernel(const unsigned char* image, float* io, uint32_t* base_out, WgmmaCase c) {
  GK_DYNAMIC_SMEM(unsigned char, sm);
  wgmma_load_image(image, sm, c.image_bytes);
  __syncthreads();
  const uint32_t base = gk::smem_address(sm);
  if (threadIdx.x == 0) *base_out = base;
  float d[64];
  float* mine = io + threadIdx.x * unsigned(c.n / 2);
  for (int q = 0; q < c.n / 2; ++q) d[q] = mine[q];
  gk::wgmma_fence();
  for (int s = 0; s < c.steps; ++s) wgmma_any(c, d, wgmma_desc_a(c, base, s), wgmma_desc_b(c, base, s), s > 0 || c.scale_first);
  gk::wgmma_commit();
  gk::wgmma_wait<0>();
  for (int q = 0; q < c.n / 2; ++q) mine[q] = d[q];
}

// Two groups (step 0 into d0, step 1 into d1, n = 64): out[thread][0..5] = d0[0], d1[0] before any wait,
// after wait_group 1, after wait_group 0; then d0 and d1 in full.
__global__ void wgmma_pipeline_kernel(const unsigned char* image, float* out, WgmmaCase c) {
  GK_DYNAMIC_SMEM(unsigned char, sm);
  wgmma_load_image(image, sm, c.image_bytes);
  __syncthreads();
  const uint32_t base = gk::smem_address(sm);
  float d0[32], d1[32];
  for (int q = 0; q < 32; ++q) d0[q] = 1.f, d1[q] = 2.f;
  float* o = out + threadIdx.x * 70;
  gk::wgmma_fence();
  wgmma_any(c, d0, wgmma_desc_a(c, base, 0), wgmma_desc_b(c, base, 0), 1);
  gk::wgmma_commit();
  wgmma_any(c, d1, wgmma_desc_a(c, base, 1), wgmma_desc_b(c, base, 1), 1);
  gk::wgmma_commit();
  o[0] = d0[0], o[1] = d1[0];
  gk::wgmma_wait<1>();
  o[2] = d0[0], o[3] = d1[0];
  gk::wgmma_wait<0>();
  o[4] = d0[0], o[5] = d1[0];
  for (int q = 0; q < 32; ++q) o[6 + q] = d0[q], o[38 + q] = d1[q];
}

// Kernels the emulator must refuse, by c.mode: 0 shared memory overwritten under a pending wgmma,
// 1 operands written only after the wgmma was issued, 2 accumulators written before the wait,
// 3 a thread exits with a wgmma pending, 4 a descriptor with a non-zero base offset, 5 one thread's
// descriptor differs from its warpgroup's, 6 half the warpgroup never issues, 7 a static __shared__
// operand, 8 a block of 64 threads (no whole warpgroup), 9 no wgmma_fence before the first wgmma,
// 10 accumulators written after a wait and accumulated into again without a fence, 11 B's descriptor
// starting 16 bytes before the end of dynamic shared memory (its elements past the end).
__global__ void wgmma_fail_kernel(const unsigned char* image, WgmmaCase c) {
  __shared__ unsigned char static_smem[1024];
  GK_DYNAMIC_SMEM(unsigned char, sm);
  const uint32_t base = c.mode == 7 ? gk::smem_address(static_smem) : gk::smem_address(sm);
  if (c.mode != 1) wgmma_load_image(image, sm, c.image_bytes);
  __syncthreads();
  if (c.mode == 6 && threadIdx.x < 64) return;
  float d[32] = {};
  uint64_t da = wgmma_desc_a(c, base, 0), db = wgmma_desc_b(c, base, 0);
  if (c.mode == 4) da |= uint64_t(1) << 49;
  if (c.mode == 5 && threadIdx.x == 5) db += 1;
  if (c.mode == 11) db = (db & ~uint64_t(0x3FFF)) | uint64_t((base + c.image_bytes - 16) >> 4);
  if (c.mode != 9) gk::wgmma_fence();
  wgmma_any(c, d, da, db, 1);
  gk::wgmma_commit();
  if (c.mode == 3) return;
  __syncthreads();
  if (c.mode == 0 && threadIdx.x == 0) sm[c.a_start[0]] ^= 1;  // A[0][0] of step 0
  if (c.mode == 1) wgmma_load_image(image, sm, c.image_bytes);
  __syncthreads();
  if (c.mode == 2) d[3] = 5.f;
  gk::wgmma_wait<0>();
  if (c.mode != 10) return;
  d[0] *= 0.5f;  // e.g. a rescale, then the next k-block into the same registers
  wgmma_any(c, d, da, db, 1);
  gk::wgmma_commit();
  gk::wgmma_wait<0>();
}

// Random values of the type (bits and value), exact in double: ±(1 + m·2^-p)·2^e or 0.
struct WgmmaValue {
  uint32_t bits;
  double value;
};
WgmmaValue wgmma_value(std::mt19937& rng, int type) {
  const uint32_t r = rng();
  if (r % 11 == 0) return {0, 0.0};
  const int e = int(r >> 4 & 7u) - 4;  // [-4, 3]
  const uint32_t sign = r >> 31, m = (r >> 8) & (type == 0 ? 127u : 1023u);
  const double v = (sign ? -1 : 1) * std::ldexp(1.0 + m / (type == 0 ? 128.0 : 1024.0), e);
  if (type == 0) return {sign << 15 | uint32_t(e + 127) << 7 | m, v};
  if (type == 1) return {sign << 15 | uint32_t(e + 15) << 10 | m, v};
  return {sign << 31 | uint32_t(e + 127) << 23 | m << 13, v};
}
float wgmma_rtz(double x) {  // to f32 toward zero
  float f = float(x);
  if (std::fabs(double(f)) > std::fabs(x)) f = std::nextafter(f, 0.f);
  return f;
}

// One configuration: the image, the case, the matrices (A 64 × kt, B kt × n, as values).
struct WgmmaSetup {
  WgmmaCase c{};
  std::vector<unsigned char> image;
  std::vector<double> a, b;  // a[m·kt + k], b[k·n + c]
  int kt = 0;
};
// The setup's shared-memory image in device memory (the caller frees it).
unsigned char* device_image(const WgmmaSetup& s) {
  unsigned char* dimg;
  cudaMalloc(reinterpret_cast<void**>(&dimg), s.image.size());
  std::memcpy(dimg, s.image.data(), s.image.size());
  return dimg;
}
WgmmaSetup wgmma_setup(int type, int n, bool a_mn, int a_sw, bool b_mn, int b_sw, std::mt19937& rng, bool alt) {
  WgmmaSetup s;
  const int e = type == 2 ? 4 : 2, k_instr = type == 2 ? 8 : 16;
  s.kt = 128 / e;  // one 128-byte row: 4 wgmma along K
  WgmmaOperand oa = wgmma_operand(a_mn, a_sw, 64, s.kt, e, alt);
  WgmmaOperand ob = wgmma_operand(b_mn, b_sw, n, s.kt, e, !alt);
  auto extent = [&](const WgmmaOperand& o, int rows) {
    uint32_t end = 0;
    for (int mn = 0; mn < rows; ++mn)
      for (int k = 0; k < s.kt; ++k) end = std::max(end, o.address(mn, k) + uint32_t(e));
    return (end + 1023u) & ~1023u;
  };
  oa.region = 0;
  ob.region = extent(oa, 64);
  s.image.assign(ob.region + extent(ob, n), 0xFF);  // bytes no element covers read as NaN
  s.a.resize(size_t(64) * s.kt);
  s.b.resize(size_t(s.kt) * n);
  auto put = [&](uint32_t addr, uint32_t bits) { std::memcpy(&s.image[addr], &bits, size_t(e)); };
  for (int m = 0; m < 64; ++m)
    for (int k = 0; k < s.kt; ++k) {
      const WgmmaValue v = wgmma_value(rng, type);
      s.a[size_t(m) * s.kt + k] = v.value;
      put(oa.address(m, k), v.bits);
    }
  for (int k = 0; k < s.kt; ++k)
    for (int c = 0; c < n; ++c) {
      const WgmmaValue v = wgmma_value(rng, type);
      s.b[size_t(k) * n + c] = v.value;
      put(ob.address(c, k), v.bits);
    }
  WgmmaCase& c = s.c;
  c.type = type;
  c.n = n;
  c.trans_a = a_mn;
  c.trans_b = b_mn;
  c.steps = s.kt / k_instr;
  c.image_bytes = uint32_t(s.image.size());
  for (int st = 0; st < c.steps; ++st) c.a_start[st] = oa.unswizzled(0, st * k_instr), c.b_start[st] = ob.unswizzled(0, st * k_instr);
  c.a_lbo = oa.lbo, c.a_sbo = oa.sbo, c.b_lbo = ob.lbo, c.b_sbo = ob.sbo;
  c.a_swizzle = a_sw, c.b_swizzle = b_sw;
  return s;
}

// Thread r's register q of D = A·B over steps [0, steps) (each a truncated sum), from d0.
float wgmma_expect(const WgmmaSetup& s, int r, int q, float d0, bool scale_first, int first_step, int steps) {
  const int v = (r & 127) >> 5, g = (r >> 2) & 7, t = r & 3, j = q / 4, i = q % 4;
  const int m = 16 * v + g + 8 * (i >> 1), col = 8 * j + 2 * t + (i & 1), n = s.c.n;
  const int k_instr = s.c.type == 2 ? 8 : 16;
  float d = d0;
  for (int st = first_step; st < first_step + steps; ++st) {
    double acc = st > first_step || scale_first ? double(d) : 0.0;
    for (int k = st * k_instr; k < (st + 1) * k_instr; ++k) acc += s.a[size_t(m) * s.kt + k] * s.b[size_t(k) * n + col];
    d = wgmma_rtz(acc);
  }
  return d;
}

// Runs s on `threads` threads; returns "" or the first mismatch.
std::string wgmma_run(WgmmaSetup& s, int threads, bool scale_first, std::mt19937& rng, uint32_t* base = nullptr) {
  s.c.scale_first = scale_first;
  const int regs = s.c.n / 2;
  std::vector<float> io(size_t(threads) * regs);
  std::normal_distribution<float> nd(0.f, 4.f);
  for (float& x : io) x = scale_first ? nd(rng) : std::nanf("");
  const std::vector<float> init = io;
  unsigned char* dimg = device_image(s);
  float* dio;
  uint32_t* dbase;
  cudaMalloc(reinterpret_cast<void**>(&dio), io.size() * 4);
  cudaMalloc(reinterpret_cast<void**>(&dbase), 4);
  std::memcpy(dio, io.data(), io.size() * 4);
  wgmma_kernel<<<1, threads, s.image.size(), nullptr>>>(dimg, dio, dbase, s.c);
  const cudaError_t e = cudaGetLastError();
  std::memcpy(io.data(), dio, io.size() * 4);
  if (base) *base = *dbase;
  cudaFree(dimg);
  cudaFree(dio);
  cudaFree(dbase);
  if (e != cudaSuccess) return std::string("launch failed: ") + cudaGetErrorString(e);
  for (int r = 0; r < threads; ++r)
    for (int q = 0; q < regs; ++q) {
      const float want = wgmma_expect(s, r, q, init[size_t(r) * regs + q], scale_first, 0, s.c.steps);
      const float got = io[size_t(r) * regs + q];
      if (__float_as_uint(got) != __float_as_uint(want))
        return "thread " + std::to_string(r) + " d[" + std::to_string(q) + "]: got " + std::to_string(got) + ", want " +
               std::to_string(want);
    }
  return "";
}

const char* const kSwizzleName[4] = {"none", "128B", "64B", "32B"};

void test_wgmma() {
  for (const void* k : {reinterpret_cast<const void*>(&wgmma_kernel), reinterpret_cast<const void*>(&wgmma_pipeline_kernel),
                        reinterpret_cast<const void*>(&wgmma_fail_kernel)})
    cudaFuncSetAttribute(k, cudaFuncAttributeMaxDynamicSharedMemorySize, 227 * 1024);
  std::mt19937 rng(9090);
  const char* const names[3] = {"bf16", "f16", "tf32"};
  uint32_t base = 1;
  for (int type = 0; type < 3; ++type) {
    std::string bad;
    int cases = 0;
    const int majors = type == 2 ? 1 : 2;
    for (int n : {64, 128})
      for (int am = 0; am < majors; ++am)
        for (int asw = 0; asw < 4; ++asw)
          for (int bm = 0; bm < majors; ++bm)
            for (int bsw = 0; bsw < 4; ++bsw) {
              if (!bad.empty()) continue;
              WgmmaSetup s = wgmma_setup(type, n, am, asw, bm, bsw, rng, cases % 2 == 1);
              const std::string why = wgmma_run(s, cases % 5 == 0 ? 256 : 128, cases % 3 != 0, rng, &base);
              if (!why.empty())
                bad = std::string("n ") + std::to_string(n) + (am ? " M-major " : " K-major ") + kSwizzleName[asw] + " A, " +
                      (bm ? "N-major " : "K-major ") + kSwizzleName[bsw] + " B: " + why;
              ++cases;
            }
    check(bad.empty(),
          std::string("wgmma ") + names[type] + " m64n{64,128}: " + (type == 2 ? "K-major A and B" : "K-/M-major A × K-/N-major B") +
              " in every swizzle, K walked by the descriptor start, each thread's D fragment as documented (" +
              std::to_string(cases) + " layouts, float64 truncated once per wgmma; scale_d 0 and 1; two warpgroups)",
          bad);
  }
  check(base == 0, "shared_address puts dynamic shared memory at window address 0 (1024-byte aligned)",
        "got " + std::to_string(base));

  // tf32 operands are read with their low 13 bits dropped: 1 + 0.75·2^-10 counts as 1.
  {
    WgmmaSetup s = wgmma_setup(2, 64, false, 0, false, 0, rng, false);
    std::vector<float> a(64 * 32, 0.f), b(32 * 64, 0.f);
    WgmmaOperand oa = wgmma_operand(false, 0, 64, 32, 4, false), ob = wgmma_operand(false, 0, 64, 32, 4, true);
    ob.region = s.c.b_start[0];
    std::fill(s.image.begin(), s.image.end(), 0);
    const float one_plus = 1.f + 0.75f / 1024.f, one = 1.f;
    std::memcpy(&s.image[oa.address(0, 0)], &one_plus, 4);
    std::memcpy(&s.image[ob.address(0, 0)], &one, 4);
    std::fill(s.a.begin(), s.a.end(), 0.0);
    std::fill(s.b.begin(), s.b.end(), 0.0);
    s.a[0] = 1.0;  // what the hardware reads
    s.b[0] = 1.0;
    check(wgmma_run(s, 128, true, rng).empty(), "wgmma tf32 drops the low 13 bits of operands not rounded to tf32");
  }

  // Deferred execution: d holds its old values until its group is waited for.
  {
    WgmmaSetup s = wgmma_setup(0, 64, false, 1, false, 1, rng, false);
    std::vector<float> out(128 * 70);
    unsigned char* dimg = device_image(s);
    float* dout;
    cudaMalloc(reinterpret_cast<void**>(&dout), out.size() * 4);
    wgmma_pipeline_kernel<<<1, 128, s.image.size(), nullptr>>>(dimg, dout, s.c);
    const cudaError_t e = cudaGetLastError();
    std::memcpy(out.data(), dout, out.size() * 4);
    cudaFree(dimg);
    cudaFree(dout);
    std::string bad = e == cudaSuccess ? "" : cudaGetErrorString(e);
    for (int r = 0; r < 128 && bad.empty(); ++r) {
      const float* o = &out[size_t(r) * 70];
      const float w0 = wgmma_expect(s, r, 0, 1.f, true, 0, 1), w1 = wgmma_expect(s, r, 0, 2.f, true, 1, 1);
      if (o[0] != 1.f || o[1] != 2.f || o[2] != w0 || o[3] != 2.f || o[4] != w0 || o[5] != w1)
        bad = "thread " + std::to_string(r) + ": before wait " + std::to_string(o[0]) + ", " + std::to_string(o[1]) +
              "; after wait_group 1 " + std::to_string(o[2]) + ", " + std::to_string(o[3]) + "; after wait_group 0 " +
              std::to_string(o[4]) + ", " + std::to_string(o[5]);
      for (int q = 0; q < 32 && bad.empty(); ++q)
        if (o[6 + q] != wgmma_expect(s, r, q, 1.f, true, 0, 1) || o[38 + q] != wgmma_expect(s, r, q, 2.f, true, 1, 1))
          bad = "thread " + std::to_string(r) + " register " + std::to_string(q);
    }
    check(bad.empty(), "wgmma runs when its group is waited for (d keeps its old values until then; wait_group 1 leaves the newest group pending)",
          bad);
  }

  // What the emulator refuses.
  {
    WgmmaSetup s = wgmma_setup(0, 64, false, 1, false, 1, rng, false);
    unsigned char* dimg = device_image(s);
    struct Refusal {
      const char* what;
      const char* needle;
    } const refusals[] = {
        {"shared memory written under a pending wgmma fails the launch at its wait", "operands changed between issue and wait"},
        {"a wgmma issued before its operands were written fails the launch at its wait", "operands changed between issue and wait"},
        {"accumulators written between wgmma and its wait fail the launch", "accumulators of a pending wgmma"},
        {"a thread exiting with a wgmma pending fails the launch", "not waited for"},
        {"a descriptor with a non-zero base offset fails the launch", "base offset"},
        {"threads of a warpgroup issuing different wgmma fail the launch", "disagree"},
        {"a wgmma issued by half a warpgroup fails the launch", "only 64 of the 128 threads"},
        {"shared_address of a static __shared__ array fails the launch", "outside the block's dynamic shared memory"},
        {"wgmma in a block without a whole warpgroup fails the launch", "a warpgroup is 128 threads"},
        {"a wgmma before the thread's first wgmma_fence fails the launch", "before any wgmma_fence"},
        {"accumulators written after a wait and fed to a wgmma without wgmma_fence fail the launch", "no wgmma_fence"},
    };
    for (int mode = 0; mode < 11; ++mode) {
      s.c.mode = mode;
      wgmma_fail_kernel<<<1, mode == 8 ? 64 : 128, s.image.size(), nullptr>>>(dimg, s.c);
      expect_failure(cudaErrorLaunchFailure, refusals[mode].what, refusals[mode].needle);
    }
    cudaFree(dimg);
  }
  // An operand reaching past dynamic shared memory, K-major (read 16 bytes at a time) and MN-major (two
  // columns at a time): the launch fails, naming the element.
  for (const bool b_mn : {false, true}) {
    WgmmaSetup s = wgmma_setup(0, 64, false, 1, b_mn, 1, rng, false);
    unsigned char* dimg = device_image(s);
    s.c.mode = 11;
    wgmma_fail_kernel<<<1, 128, s.image.size(), nullptr>>>(dimg, s.c);
    expect_failure(cudaErrorLaunchFailure,
                   b_mn ? "an MN-major operand reaching past dynamic shared memory fails the launch"
                        : "a K-major operand reaching past dynamic shared memory fails the launch",
                   "B column");
    cudaFree(dimg);
  }
}

// ------------------------------------------------------------------------------------- mbarrier
// Phases and parities (PTX ISA, mbarrier: a phase completes when its expected arrivals and its
// tx-count reach zero; try_wait.parity(p) is true once the phase of parity p completed, and for parity 1
// on a fresh mbarrier, whose "preceding phase" counts as completed). Four rounds on one mbarrier of
// count 3: threads 1-3 write a slot, arrive and wait; threads 40 and 41 only wait, then sum the round's
// slots; everyone else waits at __syncthreads meanwhile (threads in mbar_wait have not arrived there).
// Then a second mbarrier of count 2 whose TMA bytes complete before its expect_tx is announced.
__global__ void mbar_phase_kernel(int* out, const __grid_constant__ CUtensorMap map) {
  GK_DYNAMIC_SMEM(unsigned char, sm);
  uint64_t* bar = reinterpret_cast<uint64_t*>(sm + 4096);
  uint64_t* tx_bar = bar + 1;
  uint64_t* go = bar + 2;
  int* slot = reinterpret_cast<int*>(sm + 4096 + 64);
  const int t = int(threadIdx.x);
  if (t == 0) {
    gk::mbar_init(bar, 3);
    gk::mbar_init(tx_bar, 2);
    gk::mbar_init(go, 1);
    gk::mbar_fence_init();
  }
  __syncthreads();
  if (t == 10) {
    gk::mbar_wait(bar, 1);  // returns at once
    out[0] = 1;
  }
  __syncthreads();  // (after round 0's phase completed, parity 1 would name the current phase)
  for (int r = 0; r < 4; ++r) {
    if (t >= 1 && t <= 3) {
      slot[r * 4 + t] = 100 * r + t;
      gk::mbar_arrive(bar);
      gk::mbar_wait(bar, uint32_t(r & 1));
    }
    if (t == 40 || t == 41) {
      gk::mbar_wait(bar, uint32_t(r & 1));
      out[1 + r * 2 + (t - 40)] = slot[r * 4 + 1] + slot[r * 4 + 2] + slot[r * 4 + 3];
    }
    __syncthreads();
  }
  // complete_tx before expect_tx: thread 0 issues the copy and arrives, then lets thread 1 arrive with
  // the bytes; thread 0's wait lands the copy first (tx-count −4096 meanwhile, legal), so the phase
  // completes only at thread 1's arrival.
  if (t == 0) {
    gk::tma_load_2d(sm, &map, 0, 0, tx_bar);
    gk::mbar_arrive(tx_bar);
    gk::mbar_arrive(go);
    gk::mbar_wait(tx_bar, 0);
    out[9] = reinterpret_cast<const uint16_t*>(sm)[0];
  }
  if (t == 1) {
    gk::mbar_wait(go, 0);
    out[10] = reinterpret_cast<const uint16_t*>(sm)[0];  // landed by thread 0's wait (phase not complete)
    gk::mbar_arrive_expect_tx(tx_bar, 4096);
    gk::mbar_wait(tx_bar, 0);
  }
}

// Host-side TMA fixtures: a bf16 [rows][cols] matrix (row stride ld) of distinct values, its map.
struct TmaMatrix {
  int rows, cols, ld;
  std::vector<uint16_t> host;
  uint16_t* dev = nullptr;
  CUtensorMap map{};
  TmaMatrix(int r, int c, int l, int box_rows, uint32_t seed) : rows(r), cols(c), ld(l), host(size_t(r) * l, 0) {
    std::mt19937 rng(seed);
    for (int i = 0; i < r; ++i)
      for (int j = 0; j < l; ++j)  // bf16 of small integers / 2 (exact products and sums), never 0 inside
        host[size_t(i) * l + j] = j < c ? uint16_t(__float_as_uint(float(int(rng() % 8) + 1) * (rng() & 1 ? 0.5f : -0.5f)) >> 16) : 0xDEAD;
    cudaMalloc(reinterpret_cast<void**>(&dev), host.size() * 2);
    std::memcpy(dev, host.data(), host.size() * 2);
    const gk::Status st = gk::encode_tensor_map_2d(&map, dev, r, c, l, box_rows, 64);
    if (!st.ok()) std::printf("encode_tensor_map_2d: %s\n", st.message.c_str());
  }
  ~TmaMatrix() { cudaFree(dev); }
  uint16_t at(long i, long j) const { return i >= 0 && i < rows && j >= 0 && j < cols ? host[size_t(i) * ld + size_t(j)] : 0; }
};

std::string mbar_phase_run(bool reverse, const TmaMatrix& m) {
  int* d = nullptr;
  cudaMalloc(reinterpret_cast<void**>(&d), 16 * sizeof(int));
  std::memset(d, 0, 16 * sizeof(int));
  gkemu::set_reverse_order(reverse);
  mbar_phase_kernel<<<1, 64, 4096 + 64 + 256, nullptr>>>(d, m.map);
  gkemu::set_reverse_order(false);
  const cudaError_t e = cudaGetLastError();
  std::vector<int> out(d, d + 16);
  cudaFree(d);
  if (e != cudaSuccess) return cudaGetErrorString(e);
  if (out[0] != 1) return "a wait for parity 1 on a fresh mbarrier did not return";
  for (int r = 0; r < 4; ++r)
    for (int w = 0; w < 2; ++w)
      if (out[1 + r * 2 + w] != 300 * r + 6)
        return "round " + std::to_string(r) + " waiter " + std::to_string(w) + " read " + std::to_string(out[1 + r * 2 + w]);
  if (out[9] != m.at(0, 0) || out[10] != m.at(0, 0))
    return "the early copy read " + std::to_string(out[9]) + " / " + std::to_string(out[10]) + ", want " + std::to_string(m.at(0, 0));
  return "";
}

// Deadlock: two arrivals expected, one ever made.
__global__ void mbar_deadlock_kernel() {
  GK_DYNAMIC_SMEM(uint64_t, bar);
  if (threadIdx.x == 0) {
    gk::mbar_init(bar, 2);
    gk::mbar_fence_init();
  }
  __syncthreads();
  if (threadIdx.x == 0) gk::mbar_arrive(bar);
  gk::mbar_wait(bar, 0);
}

void test_mbarrier() {
  TmaMatrix m(32, 64, 64, 32, 7);
  const std::string fwd = mbar_phase_run(false, m), rev = mbar_phase_run(true, m);
  check(fwd.empty() && rev.empty(),
        "mbarrier phases: arrivals of count 3 over four rounds, parities 0/1, a fresh mbarrier's parity 1 passes, "
        "waiters beside __syncthreads, complete_tx before expect_tx (both schedule orders)",
        fwd + (rev.empty() ? "" : " | reverse: " + rev));
  mbar_deadlock_kernel<<<1, 32, 64, nullptr>>>();
  expect_failure(cudaErrorLaunchFailure, "an mbarrier wait that can never complete fails the launch (deadlock) instead of hanging",
                 "1 of 2 arrivals");
}

// ------------------------------------------------------------------------------------------ TMA
// Boxes of 64 bf16 columns × 32 rows at several coordinates (inside, straddling each edge, wholly
// outside, negative), one phase each: thread 0 announces 4096 bytes and issues the copy into its own
// 1024-byte-aligned tile; everyone waits; the tiles come back raw. Checked against the ISA's 128-byte
// swizzle table: 16-byte chunk j of a box row r lands at chunk j ^ (r % 8) of that 128-byte row, and
// elements outside the matrix read 0.
constexpr int kTmaBoxes = 9;
struct TmaCoords {
  int c0[kTmaBoxes], c1[kTmaBoxes];
};
__global__ void tma_box_kernel(uint16_t* out, const __grid_constant__ CUtensorMap map, TmaCoords at) {
  GK_DYNAMIC_SMEM(unsigned char, sm);
  uint64_t* bar = reinterpret_cast<uint64_t*>(sm + kTmaBoxes * 4096);
  if (threadIdx.x == 0) {
    gk::mbar_init(bar, 1);
    gk::mbar_fence_init();
  }
  __syncthreads();
  for (int i = 0; i < kTmaBoxes; ++i) {
    if (threadIdx.x == 0) {
      gk::mbar_arrive_expect_tx(bar, 4096);
      gk::tma_load_2d(sm + i * 4096, &map, at.c0[i], at.c1[i], bar);
    }
    gk::mbar_wait(bar, uint32_t(i & 1));
    __syncthreads();  // nobody falls two phases behind (parity i & 1 would then name the current phase)
  }
  for (int i = int(threadIdx.x); i < kTmaBoxes * 2048; i += int(blockDim.x))
    out[i] = reinterpret_cast<const uint16_t*>(sm)[i];
}

// A consumer reading the stage before waiting sees what was there (the block's 0xFF fill); after
// mbar_wait, the box.
__global__ void tma_stale_kernel(uint32_t* out, const __grid_constant__ CUtensorMap map) {
  GK_DYNAMIC_SMEM(unsigned char, sm);
  uint64_t* bar = reinterpret_cast<uint64_t*>(sm + 4096);
  if (threadIdx.x == 0) {
    gk::mbar_init(bar, 1);
    gk::mbar_fence_init();
  }
  __syncthreads();
  if (threadIdx.x == 0) {
    gk::mbar_arrive_expect_tx(bar, 4096);
    gk::tma_load_2d(sm, &map, 0, 0, bar);
  }
  __syncthreads();  // the copy is issued; nothing waited on its mbarrier yet
  const uint16_t* tile = reinterpret_cast<const uint16_t*>(sm);
  const uint32_t before = tile[threadIdx.x];
  __syncthreads();  // every thread read before any waits (a wait lands the copy for all)
  gk::mbar_wait(bar, 0);
  out[threadIdx.x * 2] = before;
  out[threadIdx.x * 2 + 1] = tile[threadIdx.x];
}

// Kernels the emulator must refuse, by mode (the table in test_tma).
__global__ void tma_fail_kernel(const __grid_constant__ CUtensorMap map, int mode) {
  __shared__ uint64_t static_bar[1];
  GK_DYNAMIC_SMEM(unsigned char, sm);
  uint64_t* bar = reinterpret_cast<uint64_t*>(sm + 8192);
  const int t = int(threadIdx.x);
  if (mode == 0) {  // a wait on an mbarrier nobody initialised
    gk::mbar_wait(bar, 0);
    return;
  }
  if (mode == 9) {  // an mbarrier in a static __shared__ array
    if (t == 0) gk::mbar_init(static_bar, 1);
    return;
  }
  if (t == 0) {
    gk::mbar_init(bar, 1);
    if (mode == 2) gk::mbar_init(bar, 1);  // initialised twice
    if (mode != 6) gk::mbar_fence_init();
  }
  if (mode == 7 && t == 1) gk::mbar_arrive(bar);  // before the __syncthreads that publishes the init
  __syncthreads();
  if (t != 0) return;
  switch (mode) {
    case 1:  // two arrivals on a count of 1 (the second beyond it: the phase awaits only bytes)
      gk::mbar_arrive_expect_tx(bar, 4096);
      gk::mbar_arrive(bar);
      break;
    case 3:  // a copy nobody waits for: the block exits with it in flight
      gk::mbar_arrive_expect_tx(bar, 4096);
      gk::tma_load_2d(sm, &map, 0, 0, bar);
      break;
    case 4:  // dst 128-byte but not 1024-byte aligned, with the 128-byte swizzle
      gk::mbar_arrive_expect_tx(bar, 4096);
      gk::tma_load_2d(sm + 128, &map, 0, 0, bar);
      gk::mbar_wait(bar, 0);
      break;
    case 5:  // a store over a live mbarrier
      *bar = 0;
      gk::mbar_arrive(bar);
      break;
    case 6:  // no fence.mbarrier_init before the TMA unit uses the mbarrier
    case 8:  // fewer bytes announced than the box has
      gk::mbar_arrive_expect_tx(bar, mode == 8 ? 2048 : 4096);
      gk::tma_load_2d(sm, &map, 0, 0, bar);
      gk::mbar_wait(bar, 0);
      break;
    case 10:  // an arrive-on in phase 1 before any wait saw phase 0 complete
      gk::mbar_arrive(bar);
      gk::mbar_arrive(bar);
      break;
    case 11:  // a box over the mbarrier
      gk::mbar_arrive_expect_tx(bar, 4096);
      gk::tma_load_2d(sm + 6144, &map, 0, 0, bar);  // 6144 to 10240: over the mbarrier at 8192
      gk::mbar_wait(bar, 0);
      break;
    default:
      break;
  }
}

void test_tma() {
  for (const void* k : {reinterpret_cast<const void*>(&tma_box_kernel)})
    cudaFuncSetAttribute(k, cudaFuncAttributeMaxDynamicSharedMemorySize, 227 * 1024);
  // 150 × 200 bf16, row stride 208 elements (416 bytes: a multiple of 16, not of 128).
  TmaMatrix m(150, 200, 208, 32, 11);
  const TmaCoords at{{0, 64, 170, 136, 180, -10, -40, 300, -64}, {0, 32, 10, 140, 130, -5, 100, 0, -32}};
  uint16_t* d = nullptr;
  cudaMalloc(reinterpret_cast<void**>(&d), kTmaBoxes * 4096);
  tma_box_kernel<<<1, 96, kTmaBoxes * 4096 + 64, nullptr>>>(d, m.map, at);
  const cudaError_t e = cudaGetLastError();
  std::vector<uint16_t> got(d, d + kTmaBoxes * 2048);
  cudaFree(d);
  std::string bad = e == cudaSuccess ? "" : cudaGetErrorString(e);
  for (int i = 0; i < kTmaBoxes && bad.empty(); ++i)
    for (int r = 0; r < 32 && bad.empty(); ++r)
      for (int c = 0; c < 64 && bad.empty(); ++c) {
        const int chunk = c / 8, phys = r * 128 + ((chunk ^ (r % 8)) * 16) + (c % 8) * 2;
        const uint16_t want = m.at(long(at.c1[i]) + r, long(at.c0[i]) + c), have = got[size_t(i) * 2048 + size_t(phys / 2)];
        if (have != want)
          bad = "box at (" + std::to_string(at.c0[i]) + ", " + std::to_string(at.c1[i]) + ") element (" + std::to_string(r) +
                ", " + std::to_string(c) + "): got " + std::to_string(have) + ", want " + std::to_string(want);
      }
  check(bad.empty(),
        "TMA bf16 boxes of 64 × 32 with the 128-byte swizzle: inside, straddling each edge, wholly outside, negative "
        "coordinates (zero fill), placed as the PTX ISA's swizzle table says",
        bad);

  {
    uint32_t* o = nullptr;
    cudaMalloc(reinterpret_cast<void**>(&o), 64 * 8);
    tma_stale_kernel<<<1, 64, 4096 + 64, nullptr>>>(o, m.map);
    const cudaError_t e2 = cudaGetLastError();
    std::string why = e2 == cudaSuccess ? "" : cudaGetErrorString(e2);
    for (int t = 0; t < 64 && why.empty(); ++t) {
      // thread t read tile element t: row 0, whose chunks the swizzle leaves in place
      if (o[t * 2] != 0xFFFFu || o[t * 2 + 1] != m.at(0, t))
        why = "thread " + std::to_string(t) + ": before the wait " + std::to_string(o[t * 2]) + ", after " +
              std::to_string(o[t * 2 + 1]) + " (want 65535, " + std::to_string(m.at(0, t)) + ")";
    }
    cudaFree(o);
    check(why.empty(), "a TMA box lands when its mbarrier is waited on: read before the wait, the stage holds its old bytes (NaN)", why);
  }

  struct Refusal {
    const char* what;
    const char* needle;
  } const refusals[] = {
      {"a wait on an uninitialised mbarrier fails the launch", "never initialised"},
      {"an arrival beyond an mbarrier's count fails the launch", "beyond the 1 expected"},
      {"an mbarrier initialised twice fails the launch", "initialised twice"},
      {"a block exiting with a TMA copy in flight fails the launch", "in flight"},
      {"a 128-byte-swizzled TMA box not 1024-byte aligned fails the launch", "1024-byte aligned"},
      {"a store over a live mbarrier fails the launch", "overwritten"},
      {"a TMA on an mbarrier whose init was not fenced (fence.mbarrier_init) fails the launch", "mbar_fence_init"},
      {"an mbarrier used by another thread before a __syncthreads published its init fails the launch", "before a __syncthreads"},
      {"expect_tx announcing fewer bytes than the box fails the launch (deadlock, tx-count negative)", "more bytes than expect_tx"},
      {"an mbarrier outside dynamic shared memory fails the launch", "not in the block's dynamic shared memory"},
      {"an arrive-on before any wait observed the previous phase fails the launch (PTX primary phase)", "primary phase"},
      {"a TMA box over an mbarrier fails the launch", "covers the mbarrier"},
  };
  for (int mode = 0; mode < 12; ++mode) {
    tma_fail_kernel<<<1, 64, 16384, nullptr>>>(m.map, mode);
    expect_failure(cudaErrorLaunchFailure, refusals[mode].what, refusals[mode].needle);
  }

  // The host side: the map's rules (cuda.h) and the driver entry point.
  {
    CUtensorMap bad_map;
    const bool stride_refused = !gk::encode_tensor_map_2d(&bad_map, m.dev, 150, 200, 204, 32, 64).ok();  // 408 bytes
    const bool box_refused = !gk::encode_tensor_map_2d(&bad_map, m.dev, 150, 200, 208, 32, 128).ok();   // 256-byte rows
    const bool rows_refused = !gk::encode_tensor_map_2d(&bad_map, m.dev, 150, 200, 208, 512, 64).ok();  // box > 256
    void* fn = &bad_map;
    cudaDriverEntryPointQueryResult q = cudaDriverEntryPointSuccess;
    cudaGetDriverEntryPointByVersion("cuMemAlloc", &fn, 12000, cudaEnableDefault, &q);
    check(stride_refused && box_refused && rows_refused && fn == nullptr && q == cudaDriverEntryPointSymbolNotFound,
          "cuTensorMapEncodeTiled refuses a row stride not a multiple of 16 bytes, 128B-swizzled rows over 128 bytes and "
          "boxes over 256; other driver entry points are not found");
  }
}

// A producer / consumer pipeline: C[128][64] = A[128][K] · B[64][K]ᵀ (bf16, K = 428: the last k-tile
// straddles the edge; B has 60 rows: the boxes' last 4 are zero). Warp 8's lane 0 produces: for each
// k-tile of 64 it waits for stage k % 3 to be empty, announces 24 KiB on its full mbarrier and issues
// two TMA boxes (A 128 × 64, B 64 × 64, 128-byte swizzled: wgmma's K-major SW128 tiles, SBO 1024). The
// two consumer warpgroups wait for the stage to be full, run four wgmma m64n64k16 on it (their 64 rows
// of A, all of B), and release it (one arrival per warpgroup: empty's count is 2). Exact in float.
constexpr int kPipeStages = 3, kPipeK = 428, kPipeLd = 432, kPipeTiles = (kPipeK + 63) / 64;
constexpr uint32_t kPipeStageBytes = 128 * 128 + 64 * 128;
__global__ void tma_pipeline_kernel(float* c, const __grid_constant__ CUtensorMap map_a,
                                    const __grid_constant__ CUtensorMap map_b) {
  GK_DYNAMIC_SMEM(unsigned char, sm);
  uint64_t* full = reinterpret_cast<uint64_t*>(sm + kPipeStages * kPipeStageBytes);
  uint64_t* empty = full + kPipeStages;
  const int t = int(threadIdx.x);
  if (t == 256) {
    for (int s = 0; s < kPipeStages; ++s) {
      gk::mbar_init(&full[s], 1);
      gk::mbar_init(&empty[s], 2);
    }
    gk::mbar_fence_init();
  }
  __syncthreads();
  if (t >= 256) {
    if (t != 256) return;
    for (int k = 0; k < kPipeTiles; ++k) {
      const int s = k % kPipeStages;
      gk::mbar_wait(&empty[s], uint32_t((k / kPipeStages) & 1) ^ 1u);  // round 0: passes at once
      unsigned char* stage = sm + s * kPipeStageBytes;
      gk::mbar_arrive_expect_tx(&full[s], kPipeStageBytes);
      gk::tma_load_2d(stage, &map_a, k * 64, 0, &full[s]);
      gk::tma_load_2d(stage + 128 * 128, &map_b, k * 64, 0, &full[s]);
    }
    return;  // exits with copies in flight: the consumers wait for them
  }
  const int g = t / 128;
  float d[32];
  for (float& x : d) x = 0.f;
  for (int k = 0; k < kPipeTiles; ++k) {
    const int s = k % kPipeStages;
    gk::mbar_wait(&full[s], uint32_t((k / kPipeStages) & 1));
    const uint32_t b = gk::smem_address(sm + s * kPipeStageBytes) + 128 * 128, a = b - 128 * 128 + uint32_t(g) * 64 * 128;
    gk::wgmma_fence();
    for (int kk = 0; kk < 4; ++kk)
      gk::wgmma_async<__nv_bfloat16, 64, 0>(d, gk::wgmma_desc(a + kk * 32, 16, 1024, gk::kSwizzle128),
                                            gk::wgmma_desc(b + kk * 32, 16, 1024, gk::kSwizzle128), 1);
    gk::wgmma_commit();
    gk::wgmma_wait<0>();
    if (t % 128 == 0) gk::mbar_arrive(&empty[s]);
  }
  const int r = t & 127, v = r >> 5, gg = (r >> 2) & 7, tt = r & 3;
  for (int j = 0; j < 8; ++j)
    for (int i = 0; i < 4; ++i)
      c[(64 * g + 16 * v + gg + 8 * (i >> 1)) * 64 + 8 * j + 2 * tt + (i & 1)] = d[4 * j + i];
}

void test_tma_pipeline() {
  cudaFuncSetAttribute(reinterpret_cast<const void*>(&tma_pipeline_kernel), cudaFuncAttributeMaxDynamicSharedMemorySize,
                       227 * 1024);
  TmaMatrix a(128, kPipeK, kPipeLd, 128, 21), b(60, kPipeK, kPipeLd, 64, 22);
  auto val = [](uint16_t bits) { return double(__uint_as_float(uint32_t(bits) << 16)); };
  std::string bad;
  for (const bool reverse : {false, true}) {
    float* dc = nullptr;
    cudaMalloc(reinterpret_cast<void**>(&dc), 128 * 64 * sizeof(float));
    gkemu::set_reverse_order(reverse);
    tma_pipeline_kernel<<<1, 288, kPipeStages * kPipeStageBytes + 64, nullptr>>>(dc, a.map, b.map);
    gkemu::set_reverse_order(false);
    const cudaError_t e = cudaGetLastError();
    std::vector<float> got(dc, dc + 128 * 64);
    cudaFree(dc);
    if (e != cudaSuccess && bad.empty()) bad = cudaGetErrorString(e);
    for (int i = 0; i < 128 && bad.empty(); ++i)
      for (int j = 0; j < 64 && bad.empty(); ++j) {
        double want = 0;
        for (int k = 0; k < kPipeK; ++k) want += val(a.at(i, k)) * val(b.at(j, k));
        if (double(got[size_t(i) * 64 + j]) != want)
          bad = std::string(reverse ? "reverse order: " : "") + "C[" + std::to_string(i) + "][" + std::to_string(j) +
                "] = " + std::to_string(got[size_t(i) * 64 + j]) + ", want " + std::to_string(want);
      }
  }
  check(bad.empty(),
        "TMA → wgmma pipeline: one producer lane, 3 stages of full / empty mbarriers over 7 k-tiles, two consumer "
        "warpgroups (SW128 K-major tiles straight from TMA, edge boxes zero-filled), exact in both schedule orders",
        bad);
}


// ------------------------------------------------------------------------------------- clusters
// A pipeline shared by a cluster of 2, as the LM head's 'tma-cluster' tiles share B's boxes (grid of 4
// blocks: 2 clusters, one after the other): round k's 32 rows of a bf16 [160][64] matrix pass through
// stage k % 2 (4096 bytes) of both blocks, the block of rank r loading rows 16 r + [0, 16) of them into
// both (tma_load_2d_multicast, mask 0b11) and announcing the whole stage on its own full barrier. Thread
// 64 produces; threads 0-63 (two warps) copy the stage out through the 128-byte swizzle and release it
// on both blocks' empty barriers (count 4: two warps of each block), so a producer refills a stage only
// once both blocks' consumers are done with it, and waits at the end for the last releases (its
// barriers die with its block). 5 rounds over 2 stages: the phases wrap. No __syncthreads: the
// cluster_sync after the inits publishes them within the block too. Shared state in dynamic shared
// memory only (a __shared__ static would be shared by the blocks of the cluster here).
constexpr int kClRounds = 5, kClRows = 32 * kClRounds;
__global__ void cluster_pipeline_kernel(uint16_t* out, unsigned* ranks, const __grid_constant__ CUtensorMap map) {
  GK_DYNAMIC_SMEM(unsigned char, sm);
  uint64_t* full = reinterpret_cast<uint64_t*>(sm + 2 * 4096);
  uint64_t* empty = full + 2;
  const int t = int(threadIdx.x);
  const unsigned rank = ::gkemu::cluster_cta_rank();
  if (t == 64) {
    for (int s = 0; s < 2; ++s) {
      ::gkemu::mbar_init(&full[s], 1);
      ::gkemu::mbar_init(&empty[s], 4);
    }
    ::gkemu::mbar_fence_init();
  }
  if (t == 0) ranks[blockIdx.x] = rank + 100 * ::gkemu::g_ctx->cluster_size;
  ::gkemu::cluster_sync();
  if (t >= 64) {
    if (t != 64) return;
    for (int k = 0; k < kClRounds + 2; ++k) {  // rounds 5 and 6: the tail
      const int s = k % 2, n = k / 2;
      if (n > 0) ::gkemu::mbar_wait(&empty[s], uint32_t(n - 1) & 1u);  // round n - 1 of stage s released
      if (k >= kClRounds) continue;
      ::gkemu::mbar_arrive_expect_tx(&full[s], 4096);
      ::gkemu::tma_load_2d_multicast(sm + s * 4096 + rank * 2048, &map, 0, 32 * k + 16 * int(rank), &full[s], 0x3);
    }
    return;
  }
  uint16_t* o = out + size_t(blockIdx.x) * kClRows * 64;
  for (int k = 0; k < kClRounds; ++k) {
    const int s = k % 2;
    ::gkemu::mbar_wait(&full[s], uint32_t(k / 2) & 1u);
    const uint16_t* stage = reinterpret_cast<const uint16_t*>(sm + s * 4096);
    for (int i = t; i < 32 * 64; i += 64) {
      const int row = i / 64, col = i % 64;  // the row's 16-byte chunk col / 8 lies at chunk (col / 8) ^ (row % 8)
      o[(32 * k + row) * 64 + col] = stage[row * 64 + ((col / 8) ^ (row % 8)) * 8 + col % 8];
    }
    __syncwarp();  // the warp's lanes are done with the stage before lane 0 releases it
    if (t % 32 == 0) {
      ::gkemu::mbar_arrive_cluster(&empty[s], 0);
      ::gkemu::mbar_arrive_cluster(&empty[s], 1);
    }
  }
}

// Clusters of (2, 2, 1) in a grid of (4, 4, 1): each block's rank, its cluster's size, and how many
// blocks of its cluster had raised their flag when the cluster_sync after the raise returned.
__global__ void cluster_rank_kernel(int* flags, unsigned* out) {
  const unsigned b = blockIdx.y * gridDim.x + blockIdx.x;
  if (threadIdx.x == 0) flags[b] = 1;
  ::gkemu::cluster_sync();
  if (threadIdx.x != 0) return;
  const unsigned x0 = blockIdx.x & ~1u, y0 = blockIdx.y & ~1u;
  unsigned seen = 0;
  for (unsigned y = y0; y < y0 + 2; ++y)
    for (unsigned x = x0; x < x0 + 2; ++x) seen += unsigned(flags[y * gridDim.x + x]);
  out[b] = ::gkemu::cluster_cta_rank() + 100 * ::gkemu::g_ctx->cluster_size + 1000 * seen;
}

// Cluster kernels the emulator must refuse, by mode (the table in test_clusters); clusters of 2.
__global__ void cluster_fail_kernel(const __grid_constant__ CUtensorMap map, int mode) {
  GK_DYNAMIC_SMEM(unsigned char, sm);
  uint64_t* bar = reinterpret_cast<uint64_t*>(sm + 8192);
  const int t = int(threadIdx.x);
  const unsigned rank = ::gkemu::cluster_cta_rank();
  if (t == 0) {
    ::gkemu::mbar_init(bar, 1);
    ::gkemu::mbar_fence_init();
  }
  switch (mode) {
    case 0:  // a remote arrival with only a __syncthreads after the init (block 1 waits at the cluster_sync)
    case 1:  // a multicast into block 1 likewise
      __syncthreads();
      if (rank == 0 && t == 0) {
        if (mode == 0) {
          ::gkemu::mbar_arrive_cluster(bar, 1);
        } else {
          ::gkemu::mbar_arrive_expect_tx(bar, 4096);
          ::gkemu::tma_load_2d_multicast(sm, &map, 0, 0, bar, 0x3);
        }
      }
      ::gkemu::cluster_sync();
      break;
    case 2:  // a multicast naming block rank 2 of a cluster of 2
      ::gkemu::cluster_sync();
      if (t == 0) ::gkemu::tma_load_2d_multicast(sm, &map, 0, 0, bar, 0x5);
      break;
    case 3:  // a cluster_sync that a thread of block 1 exited before
      if (rank == 1 && t == 5) return;
      ::gkemu::cluster_sync();
      break;
    case 4:  // an arrival on block 1 after every thread of it exited
      ::gkemu::cluster_sync();
      if (rank == 1) return;
      __syncthreads();  // block 1's threads run to their end meanwhile
      if (t == 0) ::gkemu::mbar_arrive_cluster(bar, 1);
      break;
    default:
      break;
  }
}

void test_clusters() {
  TmaMatrix m(kClRows, 64, 64, 16, 31);
  std::string bad;
  for (const bool reverse : {false, true}) {
    uint16_t* d = nullptr;
    unsigned* ranks = nullptr;
    cudaMalloc(reinterpret_cast<void**>(&d), 4 * kClRows * 64 * 2);
    cudaMalloc(reinterpret_cast<void**>(&ranks), 4 * sizeof(unsigned));
    gkemu::set_reverse_order(reverse);
    ::gkemu::launch("cluster_pipeline_kernel", cluster_pipeline_kernel, dim3(4), dim3(96), 2 * 4096 + 64, nullptr,
                    dim3(2, 1, 1))(d, ranks, m.map);
    gkemu::set_reverse_order(false);
    const cudaError_t e = cudaGetLastError();
    std::vector<uint16_t> got(d, d + 4 * kClRows * 64);
    const std::vector<unsigned> rk(ranks, ranks + 4);
    cudaFree(d);
    cudaFree(ranks);
    const std::string order = reverse ? "reverse order: " : "";
    if (e != cudaSuccess && bad.empty()) bad = order + cudaGetErrorString(e);
    for (int b = 0; b < 4 && bad.empty(); ++b) {
      if (rk[b] != unsigned(b % 2) + 200)
        bad = order + "block " + std::to_string(b) + " has rank + 100 size " + std::to_string(rk[b]);
      for (int i = 0; i < kClRows && bad.empty(); ++i)
        for (int j = 0; j < 64 && bad.empty(); ++j)
          if (got[(size_t(b) * kClRows + i) * 64 + j] != m.at(i, j))
            bad = order + "block " + std::to_string(b) + " element (" + std::to_string(i) + ", " + std::to_string(j) +
                  "): got " + std::to_string(got[(size_t(b) * kClRows + i) * 64 + j]) + ", want " +
                  std::to_string(m.at(i, j));
    }
  }
  check(bad.empty(),
        "a cluster of 2 shares a TMA pipeline: each block multicasts half of every stage into both, consumers release "
        "it on both blocks' empty barriers (mbar_arrive_cluster), 5 rounds over 2 stages, producer tail; every block "
        "holds the whole matrix, both schedule orders",
        bad);

  {
    int* flags = nullptr;
    unsigned* out = nullptr;
    cudaMalloc(reinterpret_cast<void**>(&flags), 16 * sizeof(int));
    cudaMalloc(reinterpret_cast<void**>(&out), 16 * sizeof(unsigned));
    std::memset(flags, 0, 16 * sizeof(int));
    ::gkemu::launch("cluster_rank_kernel", cluster_rank_kernel, dim3(4, 4), dim3(64), 0, nullptr, dim3(2, 2, 1))(flags,
                                                                                                                 out);
    const cudaError_t e = cudaGetLastError();
    std::string why = e == cudaSuccess ? "" : cudaGetErrorString(e);
    for (unsigned b = 0; b < 16 && why.empty(); ++b) {
      const unsigned want = (b % 4) % 2 + 2 * ((b / 4) % 2) + 400 + 4000;
      if (out[b] != want)
        why = "block " + std::to_string(b) + ": " + std::to_string(out[b]) + ", want " + std::to_string(want);
    }
    cudaFree(flags);
    cudaFree(out);
    check(why.empty(),
          "cluster_cta_rank is x-major over clusters of (2, 2, 1), and a cluster_sync returns once every block of the "
          "cluster arrived",
          why);
  }

  struct Refusal {
    const char* what;
    const char* needle;
  } const refusals[] = {
      {"an arrival on another block's mbarrier before a cluster_sync published its init fails the launch",
       "before a cluster_sync made the init visible to the cluster"},
      {"a multicast into another block's mbarrier before a cluster_sync published its init fails the launch",
       "before a cluster_sync made the init visible to the cluster"},
      {"a multicast mask naming a block beyond the cluster fails the launch", "beyond the cluster's 2 block(s)"},
      {"a cluster_sync that an exited thread never reaches fails the launch (deadlock)",
       "at cluster_sync (barrier.cluster"},
      {"an arrival on a block of the cluster that has exited fails the launch", "its shared memory is gone"},
  };
  for (int mode = 0; mode < 5; ++mode) {
    ::gkemu::launch("cluster_fail_kernel", cluster_fail_kernel, dim3(2), dim3(64), 16384, nullptr, dim3(2, 1, 1))(m.map,
                                                                                                                 mode);
    expect_failure(cudaErrorLaunchFailure, refusals[mode].what, refusals[mode].needle);
  }
  ::gkemu::launch("nop_kernel", nop_kernel, dim3(3), dim3(32), 0, nullptr, dim3(2, 1, 1))();
  expect_failure(cudaErrorInvalidConfiguration, "a grid of 3 blocks in clusters of 2 is an invalid configuration",
                 "not a whole number of clusters");
  ::gkemu::launch("nop_kernel", nop_kernel, dim3(16), dim3(32), 0, nullptr, dim3(16, 1, 1))();
  expect_failure(cudaErrorInvalidConfiguration, "a cluster of 16 blocks is an invalid configuration",
                 "exceeds 8 blocks");
  ::gkemu::launch("nop_kernel", nop_kernel, dim3(4), dim3(512), 0, nullptr, dim3(4, 1, 1))();
  expect_failure(cudaErrorInvalidConfiguration,
                 "a cluster of more than 1024 threads is an invalid configuration (the emulator's fibers)",
                 "1024 fibers");
  ::gkemu::launch("nop_kernel", nop_kernel, dim3(4), dim3(256), 0, nullptr, dim3(4, 1, 1))();
  check(cudaGetLastError() == cudaSuccess, "a good clustered launch after the failures succeeds");
}

}  // namespace

int main() {
  test_shuffles();
  test_barriers();
  test_failures();
  test_wmma();
  test_mma();
  test_cp_async();
  test_wgmma();
  test_mbarrier();
  test_tma();
  test_tma_pipeline();
  test_clusters();
  std::printf("%d failure(s)\n", failures);
  return failures;
}
