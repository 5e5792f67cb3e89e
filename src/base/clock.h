// The two clocks meshd reads: monotonic for timers, deadlines and latency
// (never jumps), the wall clock for what is stored or shown to people
// (registry versions, "last update").
#pragma once

#include <time.h>

#include <cstdint>

namespace meshd {

inline uint64_t monotonic_us() noexcept {
  timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<uint64_t>(ts.tv_sec) * 1'000'000 + static_cast<uint64_t>(ts.tv_nsec) / 1000;
}

inline uint64_t monotonic_ms() noexcept { return monotonic_us() / 1000; }

inline uint64_t unix_ms() noexcept {
  timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  return static_cast<uint64_t>(ts.tv_sec) * 1000 + static_cast<uint64_t>(ts.tv_nsec) / 1'000'000;
}

}  // namespace meshd
