#include "io/buffer_ring.h"

#include <sys/mman.h>

namespace meshd::io {

BufferRing::~BufferRing() {
  if (br_ != nullptr) {
    io_uring_unregister_buf_ring(ring_, group_);
    munmap(br_, ring_bytes_);
  }
  if (base_ != nullptr) munmap(base_, static_cast<size_t>(count_) * size_);
}

Result<void> BufferRing::init(io_uring* ring, uint16_t group, uint32_t count, uint32_t size) noexcept {
  if (count == 0 || (count & (count - 1)) != 0 || count > 32768) return fail(EINVAL);
  ring_ = ring;
  group_ = group;
  count_ = count;
  size_ = size;
  // liburing 2.3 has no io_uring_setup_buf_ring: map the ring ourselves.
  ring_bytes_ = sizeof(io_uring_buf) * count;
  void* mem = mmap(nullptr, ring_bytes_, PROT_READ | PROT_WRITE, MAP_ANONYMOUS | MAP_PRIVATE, -1, 0);
  if (mem == MAP_FAILED) return fail_errno();
  br_ = static_cast<io_uring_buf_ring*>(mem);
  // Buffer memory is mapped, not touched: pages become resident only when
  // the kernel first fills them, so idle RSS stays small.
  mem = mmap(nullptr, static_cast<size_t>(count) * size, PROT_READ | PROT_WRITE, MAP_ANONYMOUS | MAP_PRIVATE, -1, 0);
  if (mem == MAP_FAILED) return fail_errno();
  base_ = static_cast<char*>(mem);

  io_uring_buf_reg reg{};
  reg.ring_addr = reinterpret_cast<uint64_t>(br_);
  reg.ring_entries = count;
  reg.bgid = group;
  int r = io_uring_register_buf_ring(ring, &reg, 0);
  if (r < 0) {
    munmap(br_, ring_bytes_);
    br_ = nullptr;
    return fail(-r);
  }
  io_uring_buf_ring_init(br_);
  int mask = io_uring_buf_ring_mask(count);
  for (uint32_t i = 0; i < count; ++i) io_uring_buf_ring_add(br_, data(i), size, i, mask, i);
  io_uring_buf_ring_advance(br_, count);
  return {};
}

void BufferRing::give_back(uint16_t id) noexcept {
  io_uring_buf_ring_add(br_, data(id), size_, id, io_uring_buf_ring_mask(count_), 0);
  io_uring_buf_ring_advance(br_, 1);
}

}  // namespace meshd::io
