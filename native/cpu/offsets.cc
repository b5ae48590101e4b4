// The API's offsets check on the native cpu backend (runtime.h): src/layout.ts's validateOffsets asks
// a backend that has it for the first decrease of an offsets array, which the addon finds here, on the
// main thread, before any op is queued (so a bad layout still throws before any kernel runs, worded by
// the API). Four offsets per SSE2 comparison, 16 per step; ~0.15 ms per 1M offsets in cache against
// ~0.5 ms for the JavaScript loop (the largest host cost of expandToTokens on 1M responses).
#include "runtime.h"

#if defined(__SSE2__)
#include <emmintrin.h>
#endif

namespace gk {
namespace cpu {

int64_t first_decrease(const int32_t* o, int64_t n) {
  int64_t i = 1;
#if defined(__SSE2__)
  for (; i + 16 <= n; i += 16) {
    // o[i − 1 + k] > o[i + k] for k < 16, four comparisons of four lanes, one test.
    __m128i any = _mm_setzero_si128();
    for (int k = 0; k < 16; k += 4) {
      const __m128i prev = _mm_loadu_si128(reinterpret_cast<const __m128i*>(o + i - 1 + k));
      const __m128i cur = _mm_loadu_si128(reinterpret_cast<const __m128i*>(o + i + k));
      any = _mm_or_si128(any, _mm_cmpgt_epi32(prev, cur));
    }
    if (_mm_movemask_epi8(any) != 0) break;  // the exact index below
  }
#endif
  for (; i < n; ++i)
    if (o[i] < o[i - 1]) return i;
  return -1;
}

void offset_counts(const int32_t* o, int64_t n, int64_t* nonempty, int64_t* max_length) {
  // Non-decreasing offsets (first_decrease found none): each length o[i] − o[i − 1] ≥ 0. One pass the
  // compiler vectorises (a count of nonzero lengths and a max); ~0.1 ms per 1M offsets against ~1.3 ms
  // for policyLoss's JavaScript loop.
  int64_t count = 0;
  int32_t longest = 0;
  for (int64_t i = 1; i < n; ++i) {
    const int32_t len = o[i] - o[i - 1];
    count += len != 0;
    longest = len > longest ? len : longest;
  }
  *nonempty = count;
  *max_length = longest;
}

}  // namespace cpu
}  // namespace gk
