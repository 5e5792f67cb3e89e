#include "http/retry.h"

namespace meshd::http {

// The slot of this second, cleared when it last held an older second. Two
// workers may both clear it at a second's turn; at worst a count or two is
// lost then, which the budget's purpose does not notice.
RetryBudget::Slot& RetryBudget::current(uint64_t now_ms) noexcept {
  const uint64_t second = now_ms / 1000 + 1;  // +1: 0 marks a slot never used
  Slot& s = slots_[second % kWindowSeconds];
  uint64_t seen = s.second.load(std::memory_order_relaxed);
  if (seen != second && s.second.compare_exchange_strong(seen, second, std::memory_order_relaxed)) {
    s.requests.store(0, std::memory_order_relaxed);
    s.retries.store(0, std::memory_order_relaxed);
  }
  return s;
}

uint64_t RetryBudget::sum(uint64_t now_ms, std::atomic<uint32_t> Slot::*field) const noexcept {
  const uint64_t second = now_ms / 1000 + 1;
  uint64_t total = 0;
  for (const Slot& s : slots_) {
    const uint64_t at = s.second.load(std::memory_order_relaxed);
    if (at != 0 && at <= second && at + kWindowSeconds > second) total += (s.*field).load(std::memory_order_relaxed);
  }
  return total;
}

void RetryBudget::deposit(uint64_t now_ms) noexcept {
  current(now_ms).requests.fetch_add(1, std::memory_order_relaxed);
}

bool RetryBudget::withdraw(uint64_t now_ms) noexcept {
  const uint64_t allowed = uint64_t{kMinPerSecond} * kWindowSeconds + requests(now_ms) * kRatioPercent / 100;
  if (retries(now_ms) >= allowed) return false;
  current(now_ms).retries.fetch_add(1, std::memory_order_relaxed);
  return true;
}

}  // namespace meshd::http
