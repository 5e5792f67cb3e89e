// Latency histograms with fixed millisecond buckets, rendered in
// Prometheus' cumulative form. One template, two uses:
//
//   Histogram         Linkerd's connect-latency buckets, written by any
//                     thread (a locked add per observation): per endpoint,
//                     shared by the workers.
//   LatencyHistogram  the HTTP response-latency buckets, written only by
//                     the worker that owns it (a relaxed load and store, as
//                     Counter does: no locked instruction on the hot path).
//
// Any thread may take a snapshot; it reads each bucket once, so a snapshot
// taken while observations land may be off by those (never torn).
#pragma once

#include <array>
#include <atomic>
#include <cstddef>
#include <cstdint>
#include <span>

namespace meshd::metrics {

// How an observation is added to a cell, by the histogram's writers.
struct SharedWriters {
  static void add(std::atomic<uint64_t>& cell, uint64_t n) noexcept { cell.fetch_add(n, std::memory_order_relaxed); }
};
struct SingleWriter {
  static void add(std::atomic<uint64_t>& cell, uint64_t n) noexcept {
    cell.store(cell.load(std::memory_order_relaxed) + n, std::memory_order_relaxed);
  }
};

// The bucket of an observation of `us` microseconds: the first bound (in
// ms, inclusive: "le") at or above it, or bounds_ms.size() for +Inf.
// bounds_ms ascends.
size_t bucket_of(std::span<const uint32_t> bounds_ms, uint64_t us) noexcept;

// kBounds: ascending upper bounds in ms (a last, implicit bucket is +Inf).
template <const auto& kBounds, class Writers>
class BasicHistogram {
 public:
  static constexpr auto kBoundsMs = kBounds;
  static constexpr size_t kBuckets = kBoundsMs.size() + 1;

  void observe_us(uint64_t us) noexcept {
    Writers::add(buckets_[bucket_of(kBoundsMs, us)], 1);
    Writers::add(sum_us_, us);
  }

  // Cumulative counts per bound (+Inf last), the sum in ms and the count.
  struct Snapshot {
    std::array<uint64_t, kBuckets> cumulative{};
    double sum_ms = 0;
    uint64_t count = 0;
  };
  Snapshot snapshot() const noexcept {
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

 private:
  std::array<std::atomic<uint64_t>, kBuckets> buckets_{};
  std::atomic<uint64_t> sum_us_{0};
};

// Linkerd's connect-latency buckets, so dashboards built for it read ours.
inline constexpr std::array<uint32_t, 17> kConnectLatencyBoundsMs = {1,  2,   3,   4,   5,   10,   20,   30,   40,
                                                                     50, 100, 200, 300, 400, 1000, 5000, 10000};
// Linkerd's response_latency_ms buckets.
inline constexpr std::array<uint32_t, 25> kResponseLatencyBoundsMs = {
    1,   2,   3,    4,    5,    10,   20,   30,    40,    50,    100,   200,  300,
    400, 500, 1000, 2000, 3000, 4000, 5000, 10000, 20000, 30000, 40000, 50000};

using Histogram = BasicHistogram<kConnectLatencyBoundsMs, SharedWriters>;
using LatencyHistogram = BasicHistogram<kResponseLatencyBoundsMs, SingleWriter>;

}  // namespace meshd::metrics
