// A latency histogram with fixed millisecond buckets, written by any thread
// (one relaxed add per observation) and rendered in Prometheus' cumulative
// form. The buckets are Linkerd's, so dashboards built for it read ours.
#pragma once

#include <array>
#include <atomic>
#include <cstdint>
#include <span>

namespace meshd::metrics {

class Histogram {
 public:
  // Upper bounds in ms; a last, implicit bucket is +Inf.
  static constexpr std::array<uint32_t, 17> kBoundsMs = {1,  2,   3,   4,   5,   10,   20,   30,   40,
                                                         50, 100, 200, 300, 400, 1000, 5000, 10000};
  static constexpr size_t kBuckets = kBoundsMs.size() + 1;

  void observe_us(uint64_t us) noexcept;
  // Cumulative counts per bound (+Inf last), the sum in ms and the count.
  struct Snapshot {
    std::array<uint64_t, kBuckets> cumulative{};
    double sum_ms = 0;
    uint64_t count = 0;
  };
  Snapshot snapshot() const noexcept;

 private:
  std::array<std::atomic<uint64_t>, kBuckets> buckets_{};
  std::atomic<uint64_t> sum_us_{0};
};

}  // namespace meshd::metrics
