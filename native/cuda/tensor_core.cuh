// Tensor-core and asynchronous-copy primitives for the tiled kernels (thr.cu, lmhead.cu): mma.sync
// m16n8k8 on TF32 operands, mma.sync m16n8k16 on bf16 / f16 operands, cvt.rna.tf32, the 3xTF32 split,
// and cp.async with zero fill. Device code only; the
// CUDA emulator (tools/cuda-emu/cuda_emu.h) supplies stand-ins for the PTX, with the same per-lane
// fragment layout and the copies landing when their group is waited for.
#pragma once

#include <cuda.h>
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <mma.h>

#include <cstdint>
#include <type_traits>

#if !defined(GK_CUDA_EMU)
// extern __shared__ storage of a kernel launched with dynamic shared memory (the emulator defines its
// own: a per-launch buffer).
#define GK_DYNAMIC_SMEM(T, name) extern __shared__ __align__(128) T name[]
#endif

namespace gk {

// ------------------------------------------------------------------------------------- TF32
// Rounds to TF32 as cvt.rna.tf32.f32 does: 10 mantissa bits, to nearest, ties away from zero. The
// result is still an f32 bit pattern whose low 13 bits are zero, which is what mma.sync reads.
__device__ __forceinline__ float tf32_round(float x) { return nvcuda::wmma::__float_to_tf32(x); }
// x with its low 13 bits cleared: the TF32 value the tensor cores read for an f32 operand.
__device__ __forceinline__ float tf32_truncate(float x) { return __uint_as_float(__float_as_uint(x) & 0xffffe000u); }

// x = hi + lo (+ a residual below 2^-22·|x|): hi = tf32(x), lo = tf32(x − hi). x − hi is exact in f32
// (Sterbenz: hi is within a factor 2 of x). A ±Inf x gives lo = NaN, so the product is NaN, never a
// finite number.
__device__ __forceinline__ void split_tf32(float x, float& hi, float& lo) {
  hi = tf32_round(x);
  lo = tf32_round(x - hi);
}

// d += a·b over one 16 × 8 × 8 tile: mma.sync.aligned.m16n8k8.row.col.f32.tf32.tf32.f32 (sm_80+).
// Lane l = 4g + t holds a[i] = A[g + 8(i & 1)][t + 4(i >> 1)], b[i] = B[t + 4i][g] and
// d[i] = D[g + 8(i >> 1)][2t + (i & 1)] (PTX ISA, "Matrix fragments for mma.m16n8k8", .tf32).
// Operands must already be TF32 (tf32_round / split_tf32): the hardware ignores their low 13 bits.
// Tensor cores sum each MMA's products and c with truncation toward zero (see thr.cu, "flush").
__device__ __forceinline__ void mma_tf32(float (&d)[4], const float (&a)[4], const float (&b)[2]) {
#if defined(GK_CUDA_EMU)
  ::gkemu::mma_m16n8k8_tf32(d, a, b);
#else
  asm volatile(
      "mma.sync.aligned.m16n8k8.row.col.f32.tf32.tf32.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, "
      "{%0,%1,%2,%3};\n"
      : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
      : "r"(__float_as_uint(a[0])), "r"(__float_as_uint(a[1])), "r"(__float_as_uint(a[2])),
        "r"(__float_as_uint(a[3])), "r"(__float_as_uint(b[0])), "r"(__float_as_uint(b[1])));
#endif
}

// ------------------------------------------------------------------------------ bf16 / f16
// d += a·b over one 16 × 8 × 16 tile: mma.sync.aligned.m16n8k16.row.col.f32.{bf16,f16}.{bf16,f16}.f32
// (sm_80+), T = __nv_bfloat16 or __half. Each 32-bit register holds two consecutive-k elements, the
// lower k in its low half. Lane l = 4g + t holds (PTX ISA, "Matrix fragments for mma.m16n8k16"):
//   a[0] = A[g][2t, 2t+1], a[1] = A[g+8][2t, 2t+1], a[2] = A[g][2t+8, 2t+9], a[3] = A[g+8][2t+8, 2t+9]
//   b[0] = B[2t, 2t+1][g], b[1] = B[2t+8, 2t+9][g]
//   d[i] = D[g + 8(i >> 1)][2t + (i & 1)] (as m16n8k8).
// The products of two bf16 (f16) values are exact in f32; tensor cores sum them with c and truncate the
// sum toward zero once per MMA (as the TF32 form; see thr.cu, "flush").
template <class T>
__device__ __forceinline__ void mma_16816(float (&d)[4], const uint32_t (&a)[4], const uint32_t (&b)[2]);
template <>
__device__ __forceinline__ void mma_16816<__nv_bfloat16>(float (&d)[4], const uint32_t (&a)[4], const uint32_t (&b)[2]) {
#if defined(GK_CUDA_EMU)
  ::gkemu::mma_m16n8k16(d, a, b, /*bf16=*/true);
#else
  asm volatile(
      "mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, "
      "{%0,%1,%2,%3};\n"
      : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]));
#endif
}
template <>
__device__ __forceinline__ void mma_16816<__half>(float (&d)[4], const uint32_t (&a)[4], const uint32_t (&b)[2]) {
#if defined(GK_CUDA_EMU)
  ::gkemu::mma_m16n8k16(d, a, b, /*bf16=*/false);
#else
  asm volatile(
      "mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, "
      "{%0,%1,%2,%3};\n"
      : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]));
#endif
}

// -------------------------------------------------------------------------------- cp.async
// 16 bytes global → shared, bypassing L1 (cp.async.cg); the bytes past src_bytes (0..16) are zero-filled
// and never read, so a tile edge needs no separate zeroing. Both addresses 16-byte aligned; with
// src_bytes = 0 the source is not read (callers still pass an address inside the tensor).
__device__ __forceinline__ void cp_async16(void* smem, const void* gmem, int src_bytes) {
#if defined(GK_CUDA_EMU)
  ::gkemu::cp_async(smem, gmem, 16, src_bytes);
#else
  const unsigned s = static_cast<unsigned>(__cvta_generic_to_shared(smem));
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(s), "l"(gmem), "r"(src_bytes) : "memory");
#endif
}
// 4 bytes (cp.async.ca; .cg takes only 16): for rows that are not 16-byte aligned.
__device__ __forceinline__ void cp_async4(void* smem, const void* gmem, int src_bytes) {
#if defined(GK_CUDA_EMU)
  ::gkemu::cp_async(smem, gmem, 4, src_bytes);
#else
  const unsigned s = static_cast<unsigned>(__cvta_generic_to_shared(smem));
  asm volatile("cp.async.ca.shared.global [%0], [%1], 4, %2;\n" ::"r"(s), "l"(gmem), "r"(src_bytes) : "memory");
#endif
}
// Closes the calling thread's group of cp.async issued since the last commit.
__device__ __forceinline__ void cp_async_commit() {
#if defined(GK_CUDA_EMU)
  ::gkemu::cp_async_commit();
#else
  asm volatile("cp.async.commit_group;\n" ::: "memory");
#endif
}
// Waits until at most N of the calling thread's committed groups are still in flight. Other threads'
// copies become visible only after a barrier that follows their own wait.
template <int N>
__device__ __forceinline__ void cp_async_wait() {
#if defined(GK_CUDA_EMU)
  ::gkemu::cp_async_wait(N);
#else
  asm volatile("cp.async.wait_group %0;\n" ::"n"(N) : "memory");
#endif
}

// ------------------------------------------------------------------------------ wgmma (sm_90a)
// Warpgroup MMAs (PTX ISA, "Asynchronous Warpgroup Level Matrix Multiply-Accumulate"): the 128 threads
// of a warpgroup (warps 4w..4w+3) together compute D[64 × N] (+)= A[64 × K] · B[K × N], A and B read
// from shared memory through 64-bit matrix descriptors, D in registers: thread r = 32·v + 4g + t of the
// warpgroup (warp v, lane 4g + t) holds d[4j + i] = D[16v + g + 8(i >> 1)][8j + 2t + (i & 1)],
// j = 0 … N/8 − 1 (mma.m16n8's D fragment, repeated along N). K = 16 for bf16 / f16, 8 for tf32. The
// products are summed with D as mma.sync does (one truncation per instruction; thr.cu, "flush").
// Only sm_90a runs them: kernels that call them are compiled to code under GK_WGMMA_DEVICE (nvcc's
// __CUDA_ARCH_FEAT_SM90_ALL) and the host launches them only on a 9.0 device when the build carried
// sm_90a (GK_BUILT_SM90A). The CUDA emulator executes them per thread (tools/cuda-emu/cuda_emu.h).
#if defined(__CUDA_ARCH__) && defined(__CUDA_ARCH_FEAT_SM90_ALL)
#define GK_WGMMA_DEVICE 1
#endif

// The shared-window address of a pointer into shared memory (what descriptors and cp.async take).
__device__ __forceinline__ uint32_t smem_address(const void* p) {
#if defined(GK_CUDA_EMU)
  return ::gkemu::shared_address(p);
#else
  return static_cast<uint32_t>(__cvta_generic_to_shared(p));
#endif
}

// Shared-memory matrix descriptor: start address, leading- and stride-dimension byte offsets (all
// multiples of 16), swizzle mode (kSwizzleNone, kSwizzle128 = 128-byte rows in 1024-byte atoms, whose
// 16-byte chunks are permuted by chunk ^= (address bits 7-9); kSwizzle64, kSwizzle32), base offset 0:
// a swizzled operand's atoms are 1024-byte aligned in the shared window.
enum WgmmaSwizzle : int { kSwizzleNone = 0, kSwizzle128 = 1, kSwizzle64 = 2, kSwizzle32 = 3 };
__device__ __forceinline__ uint64_t wgmma_desc(uint32_t address, uint32_t lead_bytes, uint32_t stride_bytes,
                                               WgmmaSwizzle swizzle) {
  return uint64_t((address & 0x3FFFF) >> 4) | uint64_t((lead_bytes & 0x3FFFF) >> 4) << 16 |
         uint64_t((stride_bytes & 0x3FFFF) >> 4) << 32 | uint64_t(swizzle) << 62;
}

// wgmma.fence.sync.aligned: orders this thread's earlier register and shared-memory accesses before the
// warpgroup's next wgmma (needed before the first one and after touching its accumulators).
__device__ __forceinline__ void wgmma_fence() {
#if defined(GK_CUDA_EMU)
  ::gkemu::wgmma_fence();
#elif defined(GK_WGMMA_DEVICE)
  asm volatile("wgmma.fence.sync.aligned;\n" ::: "memory");
#endif
}
// wgmma.commit_group.sync.aligned: closes the group of wgmma issued since the last commit.
__device__ __forceinline__ void wgmma_commit() {
#if defined(GK_CUDA_EMU)
  ::gkemu::wgmma_commit();
#elif defined(GK_WGMMA_DEVICE)
  asm volatile("wgmma.commit_group.sync.aligned;\n" ::: "memory");
#endif
}
// wgmma.wait_group.sync.aligned N: returns once at most N committed groups are pending; only then may
// their accumulators be read or their shared memory be overwritten.
template <int N>
__device__ __forceinline__ void wgmma_wait() {
#if defined(GK_CUDA_EMU)
  ::gkemu::wgmma_wait(N);
#elif defined(GK_WGMMA_DEVICE)
  asm volatile("wgmma.wait_group.sync.aligned %0;\n" ::"n"(N) : "memory");
#endif
}
// fence.proxy.async.shared::cta: this thread's shared-memory writes through the generic proxy (stores,
// landed cp.async copies) become visible to the async proxy through which wgmma reads its operands.
// Each writer fences before the barrier that precedes the wgmma (the emulator has one proxy: no-op).
__device__ __forceinline__ void fence_proxy_async() {
#if defined(GK_WGMMA_DEVICE)
  asm volatile("fence.proxy.async.shared::cta;\n" ::: "memory");
#endif
}
// Keeps the compiler from moving accumulator accesses across an asynchronous wgmma.
template <int R>
__device__ __forceinline__ void wgmma_fence_regs(float (&d)[R]) {
#if !defined(GK_CUDA_EMU)
#pragma unroll
  for (int i = 0; i < R; ++i) asm volatile("" : "+f"(d[i])::"memory");
#endif
}

#define GK_WGMMA_D32 "{%0,%1,%2,%3,%4,%5,%6,%7,%8,%9,%10,%11,%12,%13,%14,%15,%16,%17,%18,%19,%20,%21,%22,%23,%24,%25,%26,%27,%28,%29,%30,%31}"
#define GK_WGMMA_OUT32(d) \
    "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3]), "+f"(d[4]), "+f"(d[5]), "+f"(d[6]), "+f"(d[7]), \
    "+f"(d[8]), "+f"(d[9]), "+f"(d[10]), "+f"(d[11]), "+f"(d[12]), "+f"(d[13]), "+f"(d[14]), "+f"(d[15]), \
    "+f"(d[16]), "+f"(d[17]), "+f"(d[18]), "+f"(d[19]), "+f"(d[20]), "+f"(d[21]), "+f"(d[22]), "+f"(d[23]), \
    "+f"(d[24]), "+f"(d[25]), "+f"(d[26]), "+f"(d[27]), "+f"(d[28]), "+f"(d[29]), "+f"(d[30]), "+f"(d[31])
#define GK_WGMMA_D64 "{%0,%1,%2,%3,%4,%5,%6,%7,%8,%9,%10,%11,%12,%13,%14,%15,%16,%17,%18,%19,%20,%21,%22,%23,%24,%25,%26,%27,%28,%29,%30,%31,%32,%33,%34,%35,%36,%37,%38,%39,%40,%41,%42,%43,%44,%45,%46,%47,%48,%49,%50,%51,%52,%53,%54,%55,%56,%57,%58,%59,%60,%61,%62,%63}"
#define GK_WGMMA_OUT64(d) \
    "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3]), "+f"(d[4]), "+f"(d[5]), "+f"(d[6]), "+f"(d[7]), \
    "+f"(d[8]), "+f"(d[9]), "+f"(d[10]), "+f"(d[11]), "+f"(d[12]), "+f"(d[13]), "+f"(d[14]), "+f"(d[15]), \
    "+f"(d[16]), "+f"(d[17]), "+f"(d[18]), "+f"(d[19]), "+f"(d[20]), "+f"(d[21]), "+f"(d[22]), "+f"(d[23]), \
    "+f"(d[24]), "+f"(d[25]), "+f"(d[26]), "+f"(d[27]), "+f"(d[28]), "+f"(d[29]), "+f"(d[30]), "+f"(d[31]), \
    "+f"(d[32]), "+f"(d[33]), "+f"(d[34]), "+f"(d[35]), "+f"(d[36]), "+f"(d[37]), "+f"(d[38]), "+f"(d[39]), \
    "+f"(d[40]), "+f"(d[41]), "+f"(d[42]), "+f"(d[43]), "+f"(d[44]), "+f"(d[45]), "+f"(d[46]), "+f"(d[47]), \
    "+f"(d[48]), "+f"(d[49]), "+f"(d[50]), "+f"(d[51]), "+f"(d[52]), "+f"(d[53]), "+f"(d[54]), "+f"(d[55]), \
    "+f"(d[56]), "+f"(d[57]), "+f"(d[58]), "+f"(d[59]), "+f"(d[60]), "+f"(d[61]), "+f"(d[62]), "+f"(d[63])
// R accumulators are operands %0 … %R−1; desc_a, desc_b and scale_d follow (%R, %R+1, %R+2: A, B, P).
#define GK_WGMMA_ASM(INSTR, D, A, B, P, OUT)                                                         \
  asm volatile("{\n.reg .pred p;\nsetp.ne.b32 p, %" P ", 0;\nwgmma.mma_async.sync.aligned." INSTR " " D \
               ", %" A ", %" B ", p, 1, 1" GK_WGMMA_TAIL ";\n}\n"                                   \
               : OUT(d)                                                                           \
               : "l"(desc_a), "l"(desc_b), "r"(scale_d))

// d (+)= A·B on one m64 × N × K tile: scale_d = 0 gives D = A·B (the registers' old values ignored).
// T: __nv_bfloat16, __half (K 16) or float (tf32 operands, K 8; the hardware ignores each value's low
// 13 bits). A is K-major; B is K-major (kTransB = 0) or N-major (kTransB = 1, 16-bit types only).
template <class T, int N, int kTransB>
__device__ __forceinline__ void wgmma_async(float (&d)[N / 2], uint64_t desc_a, uint64_t desc_b, int scale_d) {
  static_assert(N == 64 || N == 128, "wgmma_async: N is 64 or 128");
  static_assert(!kTransB || !std::is_same<T, float>::value, "wgmma_async: tf32 takes K-major B only");
#if defined(GK_CUDA_EMU)
  constexpr int type = std::is_same<T, __nv_bfloat16>::value ? 0 : std::is_same<T, __half>::value ? 1 : 2;
  ::gkemu::wgmma(d, N, desc_a, desc_b, scale_d, type, 0, kTransB);
#elif defined(GK_WGMMA_DEVICE)
  if constexpr (std::is_same<T, float>::value) {
#define GK_WGMMA_TAIL ""
    if constexpr (N == 64) GK_WGMMA_ASM("m64n64k8.f32.tf32.tf32", GK_WGMMA_D32, "32", "33", "34", GK_WGMMA_OUT32);
    else GK_WGMMA_ASM("m64n128k8.f32.tf32.tf32", GK_WGMMA_D64, "64", "65", "66", GK_WGMMA_OUT64);
#undef GK_WGMMA_TAIL
  } else if constexpr (kTransB) {
#define GK_WGMMA_TAIL ", 0, 1"
    if constexpr (std::is_same<T, __nv_bfloat16>::value) {
      if constexpr (N == 64) GK_WGMMA_ASM("m64n64k16.f32.bf16.bf16", GK_WGMMA_D32, "32", "33", "34", GK_WGMMA_OUT32);
      else GK_WGMMA_ASM("m64n128k16.f32.bf16.bf16", GK_WGMMA_D64, "64", "65", "66", GK_WGMMA_OUT64);
    } else {
      if constexpr (N == 64) GK_WGMMA_ASM("m64n64k16.f32.f16.f16", GK_WGMMA_D32, "32", "33", "34", GK_WGMMA_OUT32);
      else GK_WGMMA_ASM("m64n128k16.f32.f16.f16", GK_WGMMA_D64, "64", "65", "66", GK_WGMMA_OUT64);
    }
#undef GK_WGMMA_TAIL
  } else {
#define GK_WGMMA_TAIL ", 0, 0"
    if constexpr (std::is_same<T, __nv_bfloat16>::value) {
      if constexpr (N == 64) GK_WGMMA_ASM("m64n64k16.f32.bf16.bf16", GK_WGMMA_D32, "32", "33", "34", GK_WGMMA_OUT32);
      else GK_WGMMA_ASM("m64n128k16.f32.bf16.bf16", GK_WGMMA_D64, "64", "65", "66", GK_WGMMA_OUT64);
    } else {
      if constexpr (N == 64) GK_WGMMA_ASM("m64n64k16.f32.f16.f16", GK_WGMMA_D32, "32", "33", "34", GK_WGMMA_OUT32);
      else GK_WGMMA_ASM("m64n128k16.f32.f16.f16", GK_WGMMA_D64, "64", "65", "66", GK_WGMMA_OUT64);
    }
#undef GK_WGMMA_TAIL
  }
#else
  (void)d, (void)desc_a, (void)desc_b, (void)scale_d;
  __trap();
#endif
}

// setmaxnreg.{inc,dec}.sync.aligned.u32 N (sm_90a): every thread of the calling warpgroup gets N
// registers from then on, taken from or returned to the block's pool; a warp-specialised kernel gives its
// loading warpgroup few and its multiplying ones many (the emulator has no register file: no-op).
template <int N>
__device__ __forceinline__ void warpgroup_registers_up() {
  static_assert(N >= 24 && N <= 256 && N % 8 == 0, "setmaxnreg takes 24 to 256, a multiple of 8");
#if defined(GK_WGMMA_DEVICE)
  asm volatile("setmaxnreg.inc.sync.aligned.u32 %0;\n" ::"n"(N));
#endif
}
template <int N>
__device__ __forceinline__ void warpgroup_registers_down() {
  static_assert(N >= 24 && N <= 256 && N % 8 == 0, "setmaxnreg takes 24 to 256, a multiple of 8");
#if defined(GK_WGMMA_DEVICE)
  asm volatile("setmaxnreg.dec.sync.aligned.u32 %0;\n" ::"n"(N));
#endif
}
// exit: the calling thread ends (a warp-specialised kernel's loading warpgroup, so that ptxas sees its
// registers' region end there). Block barriers no longer wait for it; named_barrier_sync then counts
// the threads left.
__device__ __forceinline__ void thread_exit() {
#if defined(GK_CUDA_EMU)
  ::gkemu::thread_exit();
#else
  asm volatile("exit;\n" ::: "memory");
#endif
}
// bar.sync id, n: the n threads (a multiple of 32) that reach barrier `id` (1 … 15; 0 is __syncthreads')
// wait for each other; the emulator has one barrier, on which every thread left waits.
template <int kId, int kThreadCount>
__device__ __forceinline__ void named_barrier_sync() {
#if defined(GK_CUDA_EMU)
  __syncthreads();
#else
  asm volatile("bar.sync %0, %1;\n" ::"n"(kId), "n"(kThreadCount) : "memory");
#endif
}

// ------------------------------------------------------------------------ mbarrier and TMA (sm_90)
// An mbarrier (PTX ISA, "Parallel Synchronization and Communication Instructions: mbarrier"): a 64-bit
// object in shared memory (here, dynamic shared memory: the emulator's shared window) counting the
// arrivals of the current phase and the bytes of transactions (TMA copies) it still expects; the phase
// completes when both reach zero and the next begins, its parity flipped. Waiters name the parity of
// the phase they wait for (0 for a barrier's first phase). TMA (cp.async.bulk.tensor) copies a box of a
// tensor described by a CUtensorMap (encode_tensor_map_2d, common.cuh) into shared memory, elements
// outside the tensor zero-filled, 128-byte swizzled as wgmma's K-major tiles (wgmma_tiles.cuh), and
// completes its bytes on an mbarrier. The emulator (tools/cuda-emu) models both.
// mbarrier.init.shared::cta.b64: `count` arrivals per phase.
__device__ __forceinline__ void mbar_init(uint64_t* bar, uint32_t count) {
#if defined(GK_CUDA_EMU)
  ::gkemu::mbar_init(bar, count);
#elif defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  asm volatile("mbarrier.init.shared::cta.b64 [%0], %1;\n" ::"r"(smem_address(bar)), "r"(count) : "memory");
#endif
}
// fence.mbarrier_init.release.cluster: the initialisations above visible (to the async proxy too)
// before the barrier that follows them.
__device__ __forceinline__ void mbar_fence_init() {
#if defined(GK_CUDA_EMU)
  ::gkemu::mbar_fence_init();
#elif defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  asm volatile("fence.mbarrier_init.release.cluster;\n" ::: "memory");
#endif
}
// mbarrier.arrive.expect_tx: one arrival, and `bytes` more of transactions for the current phase.
__device__ __forceinline__ void mbar_arrive_expect_tx(uint64_t* bar, uint32_t bytes) {
#if defined(GK_CUDA_EMU)
  ::gkemu::mbar_arrive_expect_tx(bar, bytes);
#elif defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  asm volatile("mbarrier.arrive.expect_tx.shared::cta.b64 _, [%0], %1;\n" ::"r"(smem_address(bar)), "r"(bytes)
               : "memory");
#endif
}
// mbarrier.arrive: one arrival.
__device__ __forceinline__ void mbar_arrive(uint64_t* bar) {
#if defined(GK_CUDA_EMU)
  ::gkemu::mbar_arrive(bar);
#elif defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  asm volatile("mbarrier.arrive.shared::cta.b64 _, [%0];\n" ::"r"(smem_address(bar)) : "memory");
#endif
}
// Returns once the phase of parity `parity` has completed (mbarrier.try_wait.parity in a loop).
// Watchdog: a wait that has not returned after kMbarWatchdogNs of the global timer (%globaltimer_lo, ns;
// its u32 difference is exact below 2^32 ns) executes `trap`, so a phase that can never complete (a bug in
// a pipeline's arrival or byte counts, never a property of the input) ends the launch with a sticky
// launch error (the driver's "unspecified launch failure" for a trap; DEVICE_LOST to the API) at the next
// wait instead of hanging the stream.
// A phase completes within one k-step of its block's (or its cluster's) own warps, microseconds on a GPU,
// milliseconds under compute-sanitizer. The timer is read only after a try_wait fails; the first try
// is the whole cost of a wait that needs no second. The emulator reports a deadlock itself.
constexpr uint32_t kMbarWatchdogNs = 4000000000u;
__device__ __forceinline__ void mbar_wait(uint64_t* bar, uint32_t parity) {
#if defined(GK_CUDA_EMU)
  ::gkemu::mbar_wait(bar, parity);
#elif defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  asm volatile(
      "{\n.reg .pred p;\n.reg .u32 t0, t1;\n"
      "mbarrier.try_wait.parity.shared::cta.b64 p, [%0], %1;\n"
      "@p bra GK_MBAR_DONE_%=;\n"
      "mov.u32 t0, %%globaltimer_lo;\n"
      "GK_MBAR_WAIT_%=:\n"
      "mbarrier.try_wait.parity.shared::cta.b64 p, [%0], %1;\n"
      "@p bra GK_MBAR_DONE_%=;\n"
      "mov.u32 t1, %%globaltimer_lo;\n"
      "sub.u32 t1, t1, t0;\n"
      "setp.lt.u32 p, t1, %2;\n"
      "@p bra GK_MBAR_WAIT_%=;\n"
      "trap;\n"
      "GK_MBAR_DONE_%=:\n}\n" ::"r"(smem_address(bar)),
      "r"(parity), "n"(kMbarWatchdogNs)
      : "memory");
#endif
}
// cp.async.bulk.tensor.2d: the box at (c0 along the inner dimension, c1 along the outer) of the tensor
// `map` describes, into dst (1024-byte aligned for the 128-byte swizzle), its bytes completing on bar.
// One thread issues it. `map` is a __grid_constant__ kernel parameter.
__device__ __forceinline__ void tma_load_2d(void* dst, const CUtensorMap* map, int32_t c0, int32_t c1, uint64_t* bar) {
#if defined(GK_CUDA_EMU)
  ::gkemu::tma_load_2d(dst, map, c0, c1, bar);
#elif defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  asm volatile(
      "cp.async.bulk.tensor.2d.shared::cluster.global.tile.mbarrier::complete_tx::bytes [%0], [%1, {%2, %3}], [%4];\n" ::
          "r"(smem_address(dst)),
      "l"(reinterpret_cast<uint64_t>(map)), "r"(c0), "r"(c1), "r"(smem_address(bar))
      : "memory");
#endif
}

// ------------------------------------------------------------------ thread-block clusters (sm_90)
// A cluster (PTX ISA, "Cluster of Cooperative Thread Arrays"): blocks launched together on one GPC
// (launch_clustered, common.cuh), each able to reach the others' shared memory. Here only as the
// LM head's 'tma-cluster' tiles use it: the blocks of a cluster share a TMA box (multicast: one L2
// read lands in every block's stage) and release a stage on every block's `empty` barrier. The
// emulator runs a cluster's blocks together (tools/cuda-emu, "clusters").
// %cluster_ctarank: this block's rank in its cluster.
__device__ __forceinline__ uint32_t cluster_cta_rank() {
#if defined(GK_CUDA_EMU)
  return ::gkemu::cluster_cta_rank();
#elif defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  uint32_t r;
  asm volatile("mov.u32 %0, %%cluster_ctarank;\n" : "=r"(r));
  return r;
#else
  return 0;
#endif
}
// barrier.cluster.arrive.release + wait.acquire: every thread of every block of the cluster (its
// writes, and mbarrier inits fenced by mbar_fence_init, visible to the others after it).
__device__ __forceinline__ void cluster_sync() {
#if defined(GK_CUDA_EMU)
  ::gkemu::cluster_sync();
#elif defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  asm volatile("barrier.cluster.arrive.release.aligned;\nbarrier.cluster.wait.acquire.aligned;\n" ::: "memory");
#endif
}
// One arrival on the mbarrier at bar's offset in the shared memory of block `cta` of the cluster
// (mapa, then mbarrier.arrive.release.cluster.shared::cluster; cta may be this block).
__device__ __forceinline__ void mbar_arrive_cluster(uint64_t* bar, uint32_t cta) {
#if defined(GK_CUDA_EMU)
  ::gkemu::mbar_arrive_cluster(bar, cta);
#elif defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  uint32_t remote;
  asm volatile("mapa.shared::cluster.u32 %0, %1, %2;\n" : "=r"(remote) : "r"(smem_address(bar)), "r"(cta));
  asm volatile("mbarrier.arrive.release.cluster.shared::cluster.b64 _, [%0];\n" ::"r"(remote) : "memory");
#endif
}
// tma_load_2d's box into dst's offset in the shared memory of every block of the cluster named in
// cta_mask (bit c: rank c), its bytes completing on the mbarrier at bar's offset in each of them.
__device__ __forceinline__ void tma_load_2d_multicast(void* dst, const CUtensorMap* map, int32_t c0, int32_t c1,
                                                      uint64_t* bar, uint16_t cta_mask) {
#if defined(GK_CUDA_EMU)
  ::gkemu::tma_load_2d_multicast(dst, map, c0, c1, bar, cta_mask);
#elif defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  asm volatile(
      "cp.async.bulk.tensor.2d.shared::cluster.global.tile.mbarrier::complete_tx::bytes.multicast::cluster"
      " [%0], [%1, {%2, %3}], [%4], %5;\n" ::"r"(smem_address(dst)),
      "l"(reinterpret_cast<uint64_t>(map)), "r"(c0), "r"(c1), "r"(smem_address(bar)), "h"(cta_mask)
      : "memory");
#endif
}

}  // namespace gk
