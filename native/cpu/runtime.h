// What the cpu device runtime (native/runtime/cpu_device.cc) starts from: the thread pool's lifetime,
// the machine's core count, and the choice of kernels (AVX2 + FMA + F16C when the CPU has them, else
// the portable build). Not included by the per-ISA kernel files (kernels.h says why).
#pragma once

#include "kernels.h"

namespace gk {
namespace cpu {

// The cores this process may run on (sched_getaffinity on Linux, else std::thread's count), ≥ 1.
int core_count();
// A pool of `threads` ≥ 1 compute threads: threads − 1 workers plus the thread that calls pool_run.
Pool* pool_create(int threads);
void pool_destroy(Pool* pool);

// Whether this CPU (and OS) runs the AVX2 + FMA + F16C build, and whether that build was compiled in.
bool avx2_supported();
bool avx2_compiled();
// Whether it runs the LM head's AVX-512 build (AVX-512F besides; compiled in with the AVX2 one).
bool avx512_supported();
// The lowest i ≥ 1 with offsets[i] < offsets[i − 1], or −1 (offsets.cc): the API's offsets check.
int64_t first_decrease(const int32_t* offsets, int64_t n);
// Of non-decreasing offsets: how many of the n − 1 ranges are nonempty, and the longest one's length.
void offset_counts(const int32_t* offsets, int64_t n, int64_t* nonempty, int64_t* max_length);
// Asks for 2 MiB pages for the whole 2 MiB pages inside [data, data + bytes), before it is first written
// (memory.cc); returns the bytes advised (0: none, or not supported here).
size_t advise_huge_pages(void* data, size_t bytes);
// The kernels to use: the AVX2 build when compiled in, supported and not `portable`, else the portable;
// with the AVX2 build, the LM head's AVX-512 build when supported and `avx512`.
const KernelTable& kernel_table(bool portable, bool avx512 = true);

}  // namespace cpu
}  // namespace gk
