// The CUDA emulator's device side: force-included (g++ -include) before every native/cuda/*.cu file
// when scripts/build-emu.mjs compiles them as plain C++ for the CPU. Test-only: it lets CI, which has
// no GPU, execute the real kernels and launchers (every index, reduction, split and merge) against the
// CPU reference. It proves the kernels' logic, never their speed or the GPU's memory model.
//
// Model (tools/cuda-emu/emu_runtime.cc): a launch runs its blocks one after another on the calling
// thread; the threads of a block are fibers switched only at __syncthreads and warp shuffles, so
// shared memory is a function-local static (launches from different OS threads take turns). A block barrier waits
// for every thread that has not exited; a shuffle waits for exactly the lanes of its mask and fails
// the launch if they disagree or a lane in the mask never arrives; a thread in mbar_wait yields until its
// phase completes. WMMA fragments hold the whole tile
// in every lane (num_elements = rows × cols), so element-wise code on fragment.x[] stays layout-free.
// The PTX stand-ins native/cuda/tensor_core.cuh calls (mma.sync m16n8k8 TF32, cp.async) keep the
// hardware's per-lane view instead: an MMA gathers the warp's registers and gives each lane its own
// four outputs in the documented fragment layout, and cp.async copies land when the issuing thread
// waits for their group (GK_EMU_CP_ASYNC=eager: when issued), so a layout or pipeline mistake shows.
// Hopper's wgmma (m64nNk16 bf16/f16, m64nNk8 tf32, operands in dynamic shared memory through matrix
// descriptors) runs per thread when the thread waits for its group: each thread reads its A rows and
// B columns through the descriptors (all four swizzles, K- and MN-major) and computes its own
// accumulators; operands that changed between issue and wait fail the launch (emu_runtime.cc).
// Thread-block clusters (sm_90): a launch with cluster dims runs its clusters one after another and the
// blocks of a cluster together, their threads interleaved as one block's are, each block with its own
// dynamic shared memory, barriers and mbarriers; a block reaches another's only through the cluster
// calls below (cluster_sync, mbar_arrive_cluster, tma_load_2d_multicast). `__shared__` being a static,
// the blocks of a cluster share it: a cluster kernel keeps all its shared state in dynamic shared memory.
#pragma once

#include <cuda.h>
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <tuple>
#include <type_traits>
#include <utility>

#undef __shared__
#define __shared__ static
#undef __grid_constant__
#define __grid_constant__
#define __launch_bounds__(...)

namespace gkemu {

// Where the running emulated thread is.
struct ThreadCtx {
  uint3 tid;
  uint3 bid;
  dim3 bdim;
  dim3 gdim;
  unsigned linear;  // tid.x + bdim.x (tid.y + bdim.y tid.z)
  unsigned char* dyn_smem;  // the block's dynamic shared memory (null when the launch asked for none)
  unsigned cluster_rank;    // %cluster_ctarank: the block's rank in its cluster (x-major over the cluster dims)
  unsigned cluster_size;    // blocks in the cluster (1 for a launch without clusters)
};
// The running emulated thread (launches are serialised process-wide, so one pointer suffices).
inline ThreadCtx* g_ctx = nullptr;

void syncthreads();
// PTX `exit`: the calling thread ends here, as if its kernel had returned (every exit check applies).
[[noreturn]] void thread_exit();
// Exchanges 8 bytes with the lanes of `mask`; returns what lane src_lane(lane) deposited.
// mode 0: xor, 1: down, 2: up, 3: idx.
uint64_t shuffle(unsigned mask, uint64_t bits, int arg, int mode, int width);
void syncwarp(unsigned mask);
// Warp-collective exchange: every lane of `mask` deposits `bytes` (≤ 32) from `mine` and receives
// every lane's deposit in `all` (32 slots of `bytes`, lane-major; slots of lanes outside the mask are
// left as they were). Fails the launch as a shuffle does (disagreeing masks, a lane that exited).
void warp_exchange(unsigned mask, const void* mine, int bytes, void* all);
// The block's dynamic shared memory (the launch's smem bytes, 1024-byte aligned, filled with 0xFF bytes
// at each block's start: NaN as floats, so reading what the block never wrote shows). Fails the launch
// when it asked for none.
unsigned char* dynamic_smem();
// cp.async of cp_bytes (4, 8 or 16; src and dst aligned to it): src_bytes are read, the rest zeroed.
// Queued in the calling thread's open group; cp_async_commit closes it, cp_async_wait(n) performs the
// copies of every closed group but the newest n (as cp.async.wait_group n returns once they landed).
// GK_EMU_CP_ASYNC=eager copies at issue instead (a copy racing ahead of a reader shows that way).
void cp_async(void* dst, const void* src, int cp_bytes, int src_bytes);
void cp_async_commit();
void cp_async_wait(int newest_pending);
// wgmma (tensor_core.cuh, "wgmma (sm_90a)"; emu_runtime.cc has the layouts and what was verified).
// The shared window holds only the block's dynamic shared memory, at window address 0 (so swizzle
// bits of a window address are those of the offset into it): shared_address fails the launch for any
// other pointer (a static __shared__ array: put wgmma operands in dynamic shared memory).
uint32_t shared_address(const void* p);
// wgmma.mma_async.sync.aligned.m64n{n}k{16|8}.f32.{bf16|f16|tf32} with A and B from shared memory:
// d = this thread's n/2 accumulators; type 0 bf16, 1 f16 (K 16), 2 tf32 (K 8); scale_d 0: D = A·B,
// else D = A·B + D; trans_a / trans_b 0 K-major, 1 M- / N-major (16-bit types only). Queued in the
// calling thread's open group with what it reads of A and B at issue; wgmma_commit closes the group,
// wgmma_wait(n) executes every closed group but the newest n, in issue order. A thread that exits
// with wgmma pending fails the launch.
void wgmma(float* d, int n, uint64_t desc_a, uint64_t desc_b, int scale_d, int type, int trans_a, int trans_b);
void wgmma_commit();
void wgmma_wait(int newest_pending);
// wgmma.fence orders the thread's register accesses before the warpgroup's next wgmma. Here it only
// counts: a wgmma before the thread's first fence fails the launch, and so does one whose d was
// written since a wgmma's result landed in it with no fence in between.
void wgmma_fence();
// mbarrier and TMA (tensor_core.cuh, "mbarrier and TMA"; emu_runtime.cc has the model and what was
// verified). An mbarrier lives in dynamic shared memory; its phases complete when the expected
// arrivals and the transaction bytes announced by expect_tx (less those TMA copies completed) reach
// zero. mbar_wait(bar, p) returns once the phase of parity p completed (the current phase's parity
// differs from p), yielding to the block's other threads meanwhile. tma_load_2d queues the box copy
// (zero outside the tensor, swizzled as the map says) on bar; it is performed, and its bytes
// completed, when a thread waits on bar, so a stage read without waiting shows stale bytes. Misuse
// (uninitialised or overwritten mbarriers, arrivals beyond the count, a wait that can never complete,
// a block exiting with copies in flight, misaligned boxes) fails the launch.
void mbar_init(uint64_t* bar, uint32_t count);
void mbar_fence_init();
void mbar_arrive_expect_tx(uint64_t* bar, uint32_t bytes);
void mbar_arrive(uint64_t* bar);
void mbar_wait(uint64_t* bar, uint32_t parity);
void tma_load_2d(void* dst, const CUtensorMap* map, int32_t c0, int32_t c1, uint64_t* bar);
// Thread-block clusters (tensor_core.cuh, "thread-block clusters"; emu_runtime.cc has the model). A
// launch without clusters is a cluster of one block, where these work too.
// %cluster_ctarank: rank = cx + cdim.x (cy + cdim.y cz), (cx, cy, cz) = blockIdx % the cluster dims.
unsigned cluster_cta_rank();
// barrier.cluster.arrive.release + wait.acquire: returns once every thread of every block of the
// cluster arrived. An exited thread never arrives (the launch then fails as a deadlock: stricter than
// the ISA, emu_runtime.cc). It makes mbarrier inits fenced before it (mbar_fence_init) usable by the
// cluster's other blocks.
void cluster_sync();
// mapa + mbarrier.arrive.release.cluster.shared::cluster: one arrival on the mbarrier at bar's window
// address in block `cta` of the cluster (this one's rank too). Checked as mbar_arrive, and the target
// must be fenced, published to the cluster by a cluster_sync (another block's), and not yet exited.
void mbar_arrive_cluster(uint64_t* bar, uint32_t cta);
// cp.async.bulk.tensor.2d ... multicast::cluster: tma_load_2d's box into dst's window address of every
// block whose bit is set in cta_mask, its bytes completing on the mbarrier at bar's window address in
// each of them (queued there as tma_load_2d's; checked per destination as a remote arrival's target).
void tma_load_2d_multicast(void* dst, const CUtensorMap* map, int32_t c0, int32_t c1, uint64_t* bar,
                           uint16_t cta_mask);
// The emulator's cuTensorMapEncodeTiled (cudaGetDriverEntryPointByVersion hands it out).
void* tensor_map_encoder();
// Resumes a cluster's threads last to first (as GK_EMU_ORDER=reverse does); for the self-test.
void set_reverse_order(bool reverse);

// Runs kernel(args...) over grid × block; returns cudaSuccess or the launch's error (also kept for
// cudaGetLastError).
using Body = void (*)(void*);
// fn: the kernel, for the dynamic shared memory limit cudaFuncSetAttribute raised for it; cluster: the
// cluster dims (1, 1, 1: none).
cudaError_t run_grid(dim3 grid, dim3 block, size_t smem, cudaStream_t stream, Body body, void* arg,
                     const char* name, const void* fn, dim3 cluster = dim3(1, 1, 1));

template <class T>
T shfl_as(unsigned mask, T v, int arg, int mode, int width) {
  static_assert(sizeof(T) <= 8 && std::is_trivially_copyable<T>::value, "emulated shuffle of <= 8 bytes");
  uint64_t b = 0;
  std::memcpy(&b, &v, sizeof(T));
  b = shuffle(mask, b, arg, mode, width);
  T r;
  std::memcpy(&r, &b, sizeof(T));
  return r;
}

// One launch: the kernel, its configuration and name.
template <class... P>
struct Launcher {
  const char* name;
  void (*kernel)(P...);
  dim3 grid, block;
  size_t smem;
  cudaStream_t stream;
  dim3 cluster = dim3(1, 1, 1);
  template <class... A>
  void operator()(A&&... args) const {
    // Arguments are converted once, as the runtime copies them into the parameter buffer; every
    // thread then calls the kernel with its own copy of the parameters.
    std::tuple<std::decay_t<P>...> params(static_cast<std::decay_t<P>>(std::forward<A>(args))...);
    struct Pack {
      void (*k)(P...);
      std::tuple<std::decay_t<P>...>* p;
    } pack{kernel, &params};
    run_grid(
        grid, block, smem, stream,
        [](void* a) {
          Pack* pk = static_cast<Pack*>(a);
          std::apply([pk](auto... copy) { pk->k(copy...); }, *pk->p);
        },
        &pack, name, reinterpret_cast<const void*>(kernel), cluster);
  }
};

// kernel<<<grid, block, smem, stream>>>(args...) is rewritten by scripts/build-emu.mjs into
// ::gkemu::launch("kernel", kernel, grid, block, smem, stream)(args...); a clustered launch
// (cudaLaunchKernelEx with cudaLaunchAttributeClusterDimension) passes its cluster dims after the stream.
template <class... P>
Launcher<P...> launch(const char* name, void (*kernel)(P...), dim3 grid, dim3 block, size_t smem = 0,
                      cudaStream_t stream = nullptr, dim3 cluster = dim3(1, 1, 1)) {
  return Launcher<P...>{name, kernel, grid, block, smem, stream, cluster};
}

}  // namespace gkemu

// CUDA's global math overloads that device code calls unqualified.
using std::isfinite;
using std::isinf;
using std::isnan;
inline int min(int a, int b) { return a < b ? a : b; }
inline int max(int a, int b) { return a > b ? a : b; }
inline long long min(long long a, long long b) { return a < b ? a : b; }
inline long long max(long long a, long long b) { return a > b ? a : b; }
inline unsigned min(unsigned a, unsigned b) { return a < b ? a : b; }
inline unsigned max(unsigned a, unsigned b) { return a > b ? a : b; }
inline float min(float a, float b) { return std::fmin(a, b); }
inline float max(float a, float b) { return std::fmax(a, b); }

#define threadIdx (::gkemu::g_ctx->tid)
#define blockIdx (::gkemu::g_ctx->bid)
#define blockDim (::gkemu::g_ctx->bdim)
#define gridDim (::gkemu::g_ctx->gdim)

inline void __syncthreads() { ::gkemu::syncthreads(); }
inline void __syncwarp(unsigned mask = 0xffffffffu) { ::gkemu::syncwarp(mask); }
template <class T>
T __shfl_xor_sync(unsigned mask, T v, int lane_mask, int width = 32) {
  return ::gkemu::shfl_as(mask, v, lane_mask, 0, width);
}
template <class T>
T __shfl_down_sync(unsigned mask, T v, unsigned delta, int width = 32) {
  return ::gkemu::shfl_as(mask, v, static_cast<int>(delta), 1, width);
}
template <class T>
T __shfl_up_sync(unsigned mask, T v, unsigned delta, int width = 32) {
  return ::gkemu::shfl_as(mask, v, static_cast<int>(delta), 2, width);
}
template <class T>
T __shfl_sync(unsigned mask, T v, int src, int width = 32) {
  return ::gkemu::shfl_as(mask, v, src, 3, width);
}

// Bit l: lane l of `mask` passed a non-zero predicate.
inline unsigned __ballot_sync(unsigned mask, int pred) {
  int all[32] = {};
  const int mine = pred != 0;
  ::gkemu::warp_exchange(mask, &mine, sizeof mine, all);
  unsigned bits = 0;
  for (int l = 0; l < 32; ++l)
    if ((mask >> l & 1u) && all[l]) bits |= 1u << l;
  return bits;
}

// 1 + the index of the lowest set bit, 0 for 0 (CUDA's __ffs).
inline int __ffs(int x) { return __builtin_ffs(x); }

// extern __shared__ T name[] (tensor_core.cuh's GK_DYNAMIC_SMEM on a GPU).
#define GK_DYNAMIC_SMEM(T, name) T* name = reinterpret_cast<T*>(::gkemu::dynamic_smem())

template <class T>
inline T __ldg(const T* p) {
  return *p;
}

// Rounded product that is never fused into a later add (as nvcc guarantees for __fmul_rn): the empty
// asm makes the rounded value opaque, so -ffp-contract cannot fold it into an FMA.
inline float __fmul_rn(float a, float b) {
  float r = a * b;
#if defined(__x86_64__)
  asm("" : "+x"(r));
#else
  asm("" : "+r"(r));
#endif
  return r;
}

namespace gkemu {
template <class To, class From>
inline To bit_cast(From x) {
  static_assert(sizeof(To) == sizeof(From), "same size");
  To t;
  std::memcpy(&t, &x, sizeof t);
  return t;
}
}  // namespace gkemu
inline float __uint_as_float(unsigned u) { return ::gkemu::bit_cast<float>(u); }
inline unsigned __float_as_uint(float f) { return ::gkemu::bit_cast<unsigned>(f); }
inline float __int_as_float(int u) { return ::gkemu::bit_cast<float>(u); }
inline int __float_as_int(float f) { return ::gkemu::bit_cast<int>(f); }

// Atomics: launches take turns and a block's threads never run at the same time, so a plain
// read-modify-write is atomic.
template <class T>
inline T atomicOr(T* p, T v) {
  T old = *p;
  *p = old | v;
  return old;
}
template <class T>
inline T atomicMin(T* p, T v) {
  T old = *p;
  if (v < old) *p = v;
  return old;
}
template <class T>
inline T atomicMax(T* p, T v) {
  T old = *p;
  if (v > old) *p = v;
  return old;
}
template <class T>
inline T atomicAdd(T* p, T v) {
  T old = *p;
  *p = old + v;
  return old;
}

// ----------------------------------------------------------------------------------------- WMMA
namespace nvcuda {
namespace wmma {
struct matrix_a {};
struct matrix_b {};
struct accumulator {};
struct row_major {};
struct col_major {};
namespace precision {
struct tf32 {};
}  // namespace precision
enum layout_t { mem_row_major, mem_col_major };

template <class Use, int M, int N, int K>
struct frag_shape;
template <int M, int N, int K>
struct frag_shape<matrix_a, M, N, K> {
  static constexpr int rows = M, cols = K;
};
template <int M, int N, int K>
struct frag_shape<matrix_b, M, N, K> {
  static constexpr int rows = K, cols = N;
};
template <int M, int N, int K>
struct frag_shape<accumulator, M, N, K> {
  static constexpr int rows = M, cols = N;
};

// The whole rows × cols tile, row-major, in every lane.
template <class Use, int M, int N, int K, class T, class Layout = void>
struct fragment {
  static constexpr int rows = frag_shape<Use, M, N, K>::rows;
  static constexpr int cols = frag_shape<Use, M, N, K>::cols;
  static constexpr int num_elements = rows * cols;
  float x[num_elements];
};

// Rounds to tf32 as cvt.rna.tf32.f32 does: 10 mantissa bits, to nearest, ties away from zero.
inline float __float_to_tf32(float f) {
  unsigned u = __float_as_uint(f);
  if ((u & 0x7f800000u) == 0x7f800000u) return f;  // Inf, NaN unchanged
  u = (u + 0x1000u) & 0xffffe000u;
  return __uint_as_float(u);
}

template <class Use, int M, int N, int K, class T, class Layout>
void fill_fragment(fragment<Use, M, N, K, T, Layout>& f, float v) {
  for (float& e : f.x) e = v;
}

template <class Use, int M, int N, int K, class T, class Layout>
void load_matrix_sync(fragment<Use, M, N, K, T, Layout>& f, const float* p, unsigned ldm) {
  using F = fragment<Use, M, N, K, T, Layout>;
  const bool col = std::is_same<Layout, col_major>::value;
  for (int r = 0; r < F::rows; ++r)
    for (int c = 0; c < F::cols; ++c) f.x[r * F::cols + c] = col ? p[c * size_t(ldm) + r] : p[r * size_t(ldm) + c];
}
template <int M, int N, int K>
void load_matrix_sync(fragment<accumulator, M, N, K, float>& f, const float* p, unsigned ldm, layout_t l) {
  for (int r = 0; r < M; ++r)
    for (int c = 0; c < N; ++c) f.x[r * N + c] = l == mem_col_major ? p[c * size_t(ldm) + r] : p[r * size_t(ldm) + c];
}
template <int M, int N, int K>
void store_matrix_sync(float* p, const fragment<accumulator, M, N, K, float>& f, unsigned ldm, layout_t l) {
  for (int r = 0; r < M; ++r)
    for (int c = 0; c < N; ++c) (l == mem_col_major ? p[c * size_t(ldm) + r] : p[r * size_t(ldm) + c]) = f.x[r * N + c];
}

// d = a b + c as tensor cores compute it: the K products exactly (a tf32 product has ≤ 22 significant
// bits), summed with c, and the sum rounded toward zero to f32 once per MMA. NVIDIA's tensor cores
// truncate their f32 accumulation (Fasi et al., "Numerical behavior of NVIDIA tensor cores", 2021), so
// a long chain of MMAs into one accumulator drifts toward zero by up to an ulp per MMA: a bias a
// round-to-nearest FMA chain would not show. On an H200, 3xTF32 THR at d = 896 (native/cuda/thr.cu)
// gave 1.5e-5 of max|THR| with one accumulator per tile and 5.5e-7 with each k-step's MMAs summed
// apart and added in round-to-nearest f32. Round-to-nearest FMAs here measured 1.1e-6 for the first,
// hiding the drift; this model measures 7.7e-6 and 2.9e-7. Real hardware may also drop low bits of the
// smaller addends when it aligns them; this model does not, so it is a lower bound.
inline float round_toward_zero(double s) {
  float f = static_cast<float>(s);  // to nearest; one step back toward zero if that rounded away from it
  uint32_t u;                       // (bits − 1 shrinks the magnitude: ±Inf from an overflow → ±FLT_MAX)
  std::memcpy(&u, &f, sizeof u);
  u -= std::fabs(static_cast<double>(f)) > std::fabs(s) ? 1u : 0u;  // false for NaN and ±Inf inputs
  std::memcpy(&f, &u, sizeof f);
  return f;
}
template <int M, int N, int K, class T, class LA, class LB>
void mma_sync(fragment<accumulator, M, N, K, float>& d, const fragment<matrix_a, M, N, K, T, LA>& a,
              const fragment<matrix_b, M, N, K, T, LB>& b, const fragment<accumulator, M, N, K, float>& c) {
  float out[M * N];
  for (int i = 0; i < M; ++i)
    for (int j = 0; j < N; ++j) {
      double s = c.x[i * N + j];
      for (int k = 0; k < K; ++k) s += static_cast<double>(a.x[i * K + k]) * static_cast<double>(b.x[k * N + j]);
      out[i * N + j] = round_toward_zero(s);
    }
  std::memcpy(d.x, out, sizeof out);
}
}  // namespace wmma
}  // namespace nvcuda

// ------------------------------------------------------------------- mma.sync m16n8k8 TF32 (PTX)
namespace gkemu {
// What a tensor core reads of a .tf32 operand register: the sign, the exponent and the top 10
// mantissa bits; the low 13 are ignored (truncated), so a kernel that forgets cvt.rna.tf32 gets the
// hardware's truncation here too. NaN stays NaN (masking could turn a NaN payload into Inf).
inline float tf32_operand(float x) {
  if (x != x) return x;
  return __uint_as_float(__float_as_uint(x) & 0xffffe000u);
}
// mma.sync.aligned.m16n8k8.row.col.f32.tf32.tf32.f32 {d}, {a}, {b}, {d}: warp-collective. Lane
// l = 4·g + t holds (PTX ISA, "Matrix fragments for mma.m16n8k8" with .tf32):
//   a[i] = A[g + 8·(i & 1)][t + 4·(i >> 1)]  (A: 16 × 8, row-major)
//   b[i] = B[t + 4·i][g]                       (B: 8 × 8, "col": k varies fastest in a lane's pair)
//   d[i] = D[g + 8·(i >> 1)][2t + (i & 1)]     (D, C: 16 × 8)
// The registers of all 32 lanes are gathered and each lane computes its own four outputs: the eight
// products exactly, summed with c, rounded toward zero once (as nvcuda::wmma::mma_sync above).
inline void mma_m16n8k8_tf32(float (&d)[4], const float (&a)[4], const float (&b)[2]) {
  float mine[6] = {a[0], a[1], a[2], a[3], b[0], b[1]};
  float all[32][6];
  warp_exchange(0xffffffffu, mine, sizeof mine, all);
  const unsigned lane = g_ctx->linear & 31u, g = lane >> 2, t = lane & 3u;
  auto A = [&](unsigned r, unsigned k) { return tf32_operand(all[(r & 7u) * 4 + (k & 3u)][(r >> 3) + 2 * (k >> 2)]); };
  auto B = [&](unsigned k, unsigned n) { return tf32_operand(all[n * 4 + (k & 3u)][4 + (k >> 2)]); };
  // The lane's two A rows (g, g + 8) and two B columns (2t, 2t + 1), each read once.
  double ar[2][8], bc[2][8];
  for (unsigned h = 0; h < 2; ++h)
    for (unsigned k = 0; k < 8; ++k) ar[h][k] = static_cast<double>(A(g + 8 * h, k));
  for (unsigned q = 0; q < 2; ++q)
    for (unsigned k = 0; k < 8; ++k) bc[q][k] = static_cast<double>(B(k, 2 * t + q));
  for (int i = 0; i < 4; ++i) {
    const double* ra = ar[unsigned(i) >> 1];
    const double* cb = bc[unsigned(i) & 1u];
    double s = d[i];
    for (unsigned k = 0; k < 8; ++k) s += ra[k] * cb[k];
    d[i] = nvcuda::wmma::round_toward_zero(s);
  }
}
// mma.sync.aligned.m16n8k16.row.col.f32.{bf16,f16}.{bf16,f16}.f32 {d}, {a}, {b}, {d}: warp-collective.
// Lane l = 4·g + t holds (PTX ISA, "Matrix fragments for mma.m16n8k16" with .bf16 / .f16), two
// consecutive-k elements per 32-bit register, the lower k in the low half:
//   a[r] = A[g + 8·(r & 1)][2t + 8·(r >> 1) + {0, 1}]  (A: 16 × 16, row-major)
//   b[r] = B[2t + 8·r + {0, 1}][g]                     (B: 16 × 8)
//   d[i] = D[g + 8·(i >> 1)][2t + (i & 1)]
// Every lane's registers are gathered and each lane computes its own four outputs: the sixteen exact
// products (a bf16 or f16 product has ≤ 22 significant bits), summed with c, rounded toward zero once.
inline float half_bits_value(unsigned bits, bool bf16) {
  if (bf16) return __uint_as_float(bits << 16);
  __half_raw raw;
  raw.x = static_cast<unsigned short>(bits);
  return __half2float(__half(raw));
}
inline void mma_m16n8k16(float (&d)[4], const uint32_t (&a)[4], const uint32_t (&b)[2], bool bf16) {
  uint32_t mine[6] = {a[0], a[1], a[2], a[3], b[0], b[1]};
  uint32_t all[32][6];
  warp_exchange(0xffffffffu, mine, sizeof mine, all);
  const unsigned lane = g_ctx->linear & 31u, g = lane >> 2, t = lane & 3u;
  auto half_of = [](uint32_t w, unsigned k) { return (k & 1u) ? (w >> 16) : (w & 0xffffu); };
  auto A = [&](unsigned r, unsigned k) {
    const unsigned reg = (r >> 3) + 2 * (k >> 3);
    return half_bits_value(half_of(all[(r & 7u) * 4 + ((k & 7u) >> 1)][reg], k), bf16);
  };
  auto B = [&](unsigned k, unsigned n) {
    return half_bits_value(half_of(all[n * 4 + ((k & 7u) >> 1)][4 + (k >> 3)], k), bf16);
  };
  // The lane's two A rows (g, g + 8) and two B columns (2t, 2t + 1), each converted once.
  double ar[2][16], bc[2][16];
  for (unsigned h = 0; h < 2; ++h)
    for (unsigned k = 0; k < 16; ++k) ar[h][k] = static_cast<double>(A(g + 8 * h, k));
  for (unsigned q = 0; q < 2; ++q)
    for (unsigned k = 0; k < 16; ++k) bc[q][k] = static_cast<double>(B(k, 2 * t + q));
  for (int i = 0; i < 4; ++i) {
    const double* ra = ar[unsigned(i) >> 1];
    const double* cb = bc[unsigned(i) & 1u];
    double s = d[i];
    for (unsigned k = 0; k < 16; ++k) s += ra[k] * cb[k];
    d[i] = nvcuda::wmma::round_toward_zero(s);
  }
}
}  // namespace gkemu
