// BufferRing: a worker's pool of receive buffers, lent to the kernel.
//
// Receives name a buffer group instead of a buffer, so the kernel picks a
// buffer only when data arrives: an idle connection holds no buffer at all,
// and memory is bounded by count x size per worker whatever the number of
// connections. A buffer comes back to the ring once its bytes are sent on.
#pragma once

#include <liburing.h>

#include <cstddef>
#include <cstdint>

#include "base/result.h"

namespace meshd::io {

class BufferRing {
 public:
  BufferRing() = default;
  BufferRing(const BufferRing&) = delete;
  BufferRing& operator=(const BufferRing&) = delete;
  ~BufferRing();

  // count must be a power of two (the kernel's ring is indexed by a mask).
  Result<void> init(io_uring* ring, uint16_t group, uint32_t count, uint32_t size) noexcept;

  uint16_t group() const noexcept { return group_; }
  uint32_t size() const noexcept { return size_; }
  uint32_t count() const noexcept { return count_; }
  char* data(uint16_t id) noexcept { return base_ + static_cast<size_t>(id) * size_; }

  // Gives buffer `id` back to the kernel.
  void give_back(uint16_t id) noexcept;

 private:
  io_uring* ring_ = nullptr;
  io_uring_buf_ring* br_ = nullptr;
  char* base_ = nullptr;
  size_t ring_bytes_ = 0;
  uint16_t group_ = 0;
  uint32_t count_ = 0;
  uint32_t size_ = 0;
};

}  // namespace meshd::io
