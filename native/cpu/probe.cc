// The benchmarks' yardsticks, run over the pool's threads (the runtime times them: native/runtime/
// cpu_device.cc). Copy: memcpy of 1 MiB items, `bytes` read + `bytes` written (ctx.copyProbe, the
// bandwidth every backend reports). Read: a streaming read of an array (below), the memory-bound
// kernels' yardstick. FMA: the f32 multiply-add peak of the pool's threads, for the benchmarks'
// "fraction of peak" (THR's products): every thread runs 12 independent chains of 8-lane FMAs (the
// register tile's shape in thr.cc, no memory traffic) for a fixed count, and the rate is FLOPs over
// the slowest thread's wall time. Compiled per instruction set (kernels.h): the AVX2 build's peak
// with FMA, the portable build's with its multiply and add.
#include "kernels.h"
#include "simd.h"

namespace gk {
namespace cpu {
namespace GK_CPU_ISA {
namespace {

struct ProbeCtx {
  int64_t iters;
  float sink[256];
};

void probe_item(void* ctx, int64_t, int worker) {
  ProbeCtx& p = *static_cast<ProbeCtx*>(ctx);
  VF c0 = set1(0.1f), c1 = set1(0.2f), c2 = set1(0.3f), c3 = set1(0.4f), c4 = set1(0.5f), c5 = set1(0.6f);
  VF c6 = set1(0.7f), c7 = set1(0.8f), c8 = set1(0.9f), c9 = set1(1.0f), c10 = set1(1.1f), c11 = set1(1.2f);
  const VF a = set1(0.999f), b = set1(1e-4f);
  for (int64_t k = 0; k < p.iters; ++k) {
    c0 = fmadd(c0, a, b);
    c1 = fmadd(c1, a, b);
    c2 = fmadd(c2, a, b);
    c3 = fmadd(c3, a, b);
    c4 = fmadd(c4, a, b);
    c5 = fmadd(c5, a, b);
    c6 = fmadd(c6, a, b);
    c7 = fmadd(c7, a, b);
    c8 = fmadd(c8, a, b);
    c9 = fmadd(c9, a, b);
    c10 = fmadd(c10, a, b);
    c11 = fmadd(c11, a, b);
  }
  alignas(32) float t[kLanes];
  store(t, add(add(add(c0, c1), add(c2, c3)), add(add(add(c4, c5), add(c6, c7)), add(add(c8, c9), add(c10, c11)))));
  p.sink[worker & 255] = t[0];
}

struct ReadCtx {
  const uint8_t* data;
  size_t bytes;
  size_t chunk;
  uint64_t sink[256];
};

// Sums chunk `i` of the array as 64-bit integers (integer adds: no floating-point assists on odd bit
// patterns), four accumulators of 32-byte loads, prefetching 1 KiB ahead: the best plain streaming
// read we know how to write, the yardstick of the memory-bound kernels.
void read_item(void* ctx, int64_t i, int worker) {
  ReadCtx& r = *static_cast<ReadCtx*>(ctx);
  const size_t o = size_t(i) * r.chunk;
  const size_t e = o + r.chunk < r.bytes ? o + r.chunk : r.bytes;
  size_t k = o;
  uint64_t s = 0;
#if GK_SIMD_AVX2
  __m256i a0 = _mm256_setzero_si256(), a1 = a0, a2 = a0, a3 = a0;
  for (; k + 128 <= e; k += 128) {
    __builtin_prefetch(r.data + k + 1024, 0, 0);
    a0 = _mm256_add_epi64(a0, _mm256_loadu_si256(reinterpret_cast<const __m256i*>(r.data + k)));
    a1 = _mm256_add_epi64(a1, _mm256_loadu_si256(reinterpret_cast<const __m256i*>(r.data + k + 32)));
    a2 = _mm256_add_epi64(a2, _mm256_loadu_si256(reinterpret_cast<const __m256i*>(r.data + k + 64)));
    a3 = _mm256_add_epi64(a3, _mm256_loadu_si256(reinterpret_cast<const __m256i*>(r.data + k + 96)));
  }
  alignas(32) uint64_t t[4];
  _mm256_store_si256(reinterpret_cast<__m256i*>(t), _mm256_add_epi64(_mm256_add_epi64(a0, a1), _mm256_add_epi64(a2, a3)));
  s = t[0] + t[1] + t[2] + t[3];
#else
  uint64_t s0 = 0, s1 = 0, s2 = 0, s3 = 0;
  for (; k + 32 <= e; k += 32) {
    uint64_t v[4];
    memcpy(v, r.data + k, 32);
    s0 += v[0];
    s1 += v[1];
    s2 += v[2];
    s3 += v[3];
  }
  s = s0 + s1 + s2 + s3;
#endif
  for (; k < e; ++k) s += r.data[k];
  r.sink[worker & 255] += s;
}

struct CopyCtx {
  const uint8_t* src;
  uint8_t* dst;
  size_t bytes, chunk;
};

void copy_item(void* ctx, int64_t i, int) {
  CopyCtx& c = *static_cast<CopyCtx*>(ctx);
  const size_t o = size_t(i) * c.chunk;
  memcpy(c.dst + o, c.src + o, c.chunk < c.bytes - o ? c.chunk : c.bytes - o);
}

}  // namespace

// One copy of `bytes` bytes over the pool (1 MiB items).
void copy_probe(Pool* pool, const void* src, void* dst, size_t bytes) {
  CopyCtx c{static_cast<const uint8_t*>(src), static_cast<uint8_t*>(dst), bytes, size_t(1) << 20};
  pool_run(pool, int64_t((bytes + c.chunk - 1) / c.chunk), copy_item, &c);
}

// One streaming read of `bytes` bytes over the pool (1 MiB items); returns a checksum (keeps the loads).
double read_probe(Pool* pool, const void* data, size_t bytes) {
  ReadCtx r{};
  r.data = static_cast<const uint8_t*>(data);
  r.bytes = bytes;
  r.chunk = size_t(1) << 20;
  pool_run(pool, int64_t((bytes + r.chunk - 1) / r.chunk), read_item, &r);
  uint64_t s = 0;
  for (int i = 0; i < 256; ++i) s += r.sink[i];
  return double(s & 0xffff);
}

// FLOPs done by one pool_run of the probe with `iters` steps: 2 · 8 lanes · 12 chains per step per thread.
double fma_probe(Pool* pool, int64_t iters) {
  ProbeCtx p{};
  p.iters = iters;
  const int threads = pool_threads(pool);
  pool_run(pool, threads, probe_item, &p);  // one item per thread: all run at once
  double s = 0;
  for (int i = 0; i < 256; ++i) s += p.sink[i];
  return s == 12345.678 ? 0 : double(iters) * 2 * kLanes * 12 * threads;
}

}  // namespace GK_CPU_ISA
}  // namespace cpu
}  // namespace gk
