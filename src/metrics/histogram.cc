#include "metrics/histogram.h"

#include <algorithm>

namespace meshd::metrics {

size_t bucket_of(std::span<const uint32_t> bounds_ms, uint64_t us) noexcept {
  // us <= bound * 1000 exactly when the whole milliseconds rounded up are
  // <= bound: 1000 us lands in the 1 ms bucket, 1001 us in the next.
  uint64_t ms = us / 1000 + (us % 1000 != 0);
  return static_cast<size_t>(
      std::lower_bound(bounds_ms.begin(), bounds_ms.end(), ms, [](uint32_t bound, uint64_t v) { return bound < v; }) -
      bounds_ms.begin());
}

}  // namespace meshd::metrics
