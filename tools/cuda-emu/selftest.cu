// Checks the CUDA emulator itself (build/emu/emu_selftest, run by test/cuda/emu.test.ts), so that a
// kernel passing on it has passed something: warp shuffles against CUDA's definitions (xor, down,
// idx, sub-warp widths), block barriers, the schedule-order probe that exposes a missing barrier,
// the launch failures it must report instead of hanging (deadlock, disagreeing masks, a lane that
// exits inside a shuffle, bad grid or block sizes) and WMMA's tf32 product against float64.
// Prints "ok <check>" or "FAIL <check>: why" per check; the exit status counts the failures.
#include <cmath>
#include <cstdio>
#include <cstring>
#include <random>
#include <string>
#include <vector>

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

}  // namespace

int main() {
  test_shuffles();
  test_barriers();
  test_failures();
  test_wmma();
  std::printf("%d failure(s)\n", failures);
  return failures;
}
