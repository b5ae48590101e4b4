// Checks the CUDA emulator itself (build/emu/emu_selftest, run by test/cuda/emu.test.ts), so that a
// kernel passing on it has passed something: warp shuffles against CUDA's definitions (xor, down,
// idx, sub-warp widths), block barriers, the schedule-order probe that exposes a missing barrier,
// the launch failures it must report instead of hanging (deadlock, disagreeing masks, a lane that
// exits inside a shuffle, bad grid or block sizes), WMMA's tf32 product against float64, and the PTX
// stand-ins of tensor_core.cuh: mma.sync m16n8k8's per-lane fragment layout and its truncation of
// unrounded operands, cp.async's zero fill and its copies landing only when their group is waited for,
// __ballot_sync, and dynamic shared memory (poisoned, and over 48 KiB only after cudaFuncSetAttribute).
// Prints "ok <check>" or "FAIL <check>: why" per check; the exit status counts the failures.
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <random>
#include <string>
#include <vector>

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

}  // namespace

int main() {
  test_shuffles();
  test_barriers();
  test_failures();
  test_wmma();
  test_mma();
  test_cp_async();
  std::printf("%d failure(s)\n", failures);
  return failures;
}
