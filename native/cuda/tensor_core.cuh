// Tensor-core and asynchronous-copy primitives for the tiled kernels (thr.cu, lmhead.cu): mma.sync
// m16n8k8 on TF32 operands, mma.sync m16n8k16 on bf16 / f16 operands, cvt.rna.tf32, the 3xTF32 split,
// and cp.async with zero fill. Device code only; the
// CUDA emulator (tools/cuda-emu/cuda_emu.h) supplies stand-ins for the PTX, with the same per-lane
// fragment layout and the copies landing when their group is waited for.
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <mma.h>

#include <cstdint>

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

}  // namespace gk
