#include "metrics/histogram.h"

namespace meshd::metrics {

void Histogram::observe_us(uint64_t us) noexcept {
  size_t i = 0;
  // Bucket bounds are inclusive ("le"): 1000 us lands in the 1 ms bucket.
  while (i < kBoundsMs.size() && us > static_cast<uint64_t>(kBoundsMs[i]) * 1000) ++i;
  buckets_[i].fetch_add(1, std::memory_order_relaxed);
  sum_us_.fetch_add(us, std::memory_order_relaxed);
}

Histogram::Snapshot Histogram::snapshot() const noexcept {
  Snapshot s;
  uint64_t running = 0;
  for (size_t i = 0; i < kBuckets; ++i) {
    running += buckets_[i].load(std::memory_order_relaxed);
    s.cumulative[i] = running;
  }
  s.count = running;
  s.sum_ms = static_cast<double>(sum_us_.load(std::memory_order_relaxed)) / 1000.0;
  return s;
}

}  // namespace meshd::metrics
