// A small, fast generator for choices that need to be spread, not secret
// (the balancer's two draws, backoff jitter): xorshift64*, one per thread.
#pragma once

#include <cstdint>

namespace meshd {

class FastRandom {
 public:
  explicit FastRandom(uint64_t seed) noexcept : state_(seed != 0 ? seed : 0x9e3779b97f4a7c15ull) {}
  uint64_t next() noexcept {
    state_ ^= state_ >> 12;
    state_ ^= state_ << 25;
    state_ ^= state_ >> 27;
    return state_ * 0x2545f4914f6cdd1dull;
  }
  // Uniform enough in [0, n) for n far below 2^32; n must not be 0.
  uint32_t below(uint32_t n) noexcept { return static_cast<uint32_t>(((next() >> 32) * n) >> 32); }

 private:
  uint64_t state_;
};

}  // namespace meshd
