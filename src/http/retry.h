// Retries: which requests may be sent again, and how many retries a
// service may take so that they never amplify an outage.
//
// The budget is Finagle's and Linkerd's: within a sliding window of
// kWindowSeconds, retries may be kMinPerSecond per second (so a quiet
// service can still retry) plus kRatio of the requests made. Past that a
// failed request is answered as it failed. One budget per service, shared
// by the workers (relaxed atomics: a few retries over or under at the edge
// of a second do not matter; a storm of them cannot happen).
#pragma once

#include <atomic>
#include <cstdint>

#include "http/message.h"

namespace meshd::http {

// Idempotent methods (RFC 9110 §9.2.2): sending one twice has the effect
// of sending it once, so a proxy may repeat it.
constexpr bool retry_safe(Method m) noexcept {
  switch (m) {
    case Method::kGet:
    case Method::kHead:
    case Method::kOptions:
    case Method::kTrace:
    case Method::kPut:
    case Method::kDelete: return true;
    default: return false;
  }
}

class RetryBudget {
 public:
  static constexpr uint32_t kWindowSeconds = 10;
  static constexpr uint32_t kMinPerSecond = 10;
  static constexpr uint32_t kRatioPercent = 20;

  // A request was made (retries are not requests).
  void deposit(uint64_t now_ms) noexcept;
  // A retry is wanted: true (and counted) when the budget allows it.
  bool withdraw(uint64_t now_ms) noexcept;

  // Over the window ending now.
  uint64_t requests(uint64_t now_ms) const noexcept { return sum(now_ms, &Slot::requests); }
  uint64_t retries(uint64_t now_ms) const noexcept { return sum(now_ms, &Slot::retries); }

 private:
  struct Slot {
    std::atomic<uint64_t> second{0};  // the second (monotonic, +1) whose counts these are
    std::atomic<uint32_t> requests{0};
    std::atomic<uint32_t> retries{0};
  };
  Slot& current(uint64_t now_ms) noexcept;
  uint64_t sum(uint64_t now_ms, std::atomic<uint32_t> Slot::*field) const noexcept;

  Slot slots_[kWindowSeconds];
};

}  // namespace meshd::http
