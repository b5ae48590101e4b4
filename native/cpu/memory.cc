// Memory advice for the native cpu backend's large host arrays (runtime.h): 2 MiB pages.
//
// The backend's tensors are JavaScript typed arrays: their memory is the engine's (an ArrayBuffer's
// backing store, from calloc: a fresh mmap for large sizes, untouched until written). On 4 KiB pages a
// gather of one element per row (gatherProbs: random columns of 600 KB rows) pays a TLB miss per
// element as well as the cache miss. With transparent huge pages in "madvise" mode (the common default)
// the kernel backs a range with 2 MiB pages only when asked, and does so at the first write of each
// 2 MiB page. So the TypeScript side allocates a large array for an uploaded tensor, asks here for the
// whole 2 MiB pages inside it, and only then copies the data in (src/backends/cpu/storage.ts, which also
// says why outputs keep 4 KiB pages). The memory stays the engine's: freeing it unmaps it as before (the
// advice is a property of the mapping), so no finalizer is involved.
#include "runtime.h"

#if defined(__linux__)
#include <sys/mman.h>
#endif

namespace gk {
namespace cpu {

size_t advise_huge_pages(void* data, size_t bytes) {
#if defined(__linux__) && defined(MADV_HUGEPAGE)
  constexpr uintptr_t kHuge = uintptr_t(2) << 20;
  const uintptr_t begin = (reinterpret_cast<uintptr_t>(data) + kHuge - 1) & ~(kHuge - 1);
  const uintptr_t end = (reinterpret_cast<uintptr_t>(data) + bytes) & ~(kHuge - 1);
  if (end <= begin) return 0;
  // Refused (no THP in this kernel, a mapping that cannot take it): the array keeps 4 KiB pages.
  if (madvise(reinterpret_cast<void*>(begin), end - begin, MADV_HUGEPAGE) != 0) return 0;
  return size_t(end - begin);
#else
  (void)data;
  (void)bytes;
  return 0;
#endif
}

}  // namespace cpu
}  // namespace gk
