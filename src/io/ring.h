// Ring: one io_uring instance, owned and used by exactly one thread.
//
// This folder is the only code that includes <liburing.h>. The ring is set up
// with the cheapest flags the kernel accepts (SINGLE_ISSUER | DEFER_TASKRUN,
// falling back without them) and submits in batches: the loop submits what
// it queued and waits for completions in one system call.
#pragma once

#include <liburing.h>

#include <cstdint>

#include "base/result.h"
#include "io/op.h"

namespace meshd::io {

class Ring {
 public:
  Ring() = default;
  Ring(const Ring&) = delete;
  Ring& operator=(const Ring&) = delete;
  ~Ring();

  Result<void> init(unsigned entries) noexcept;
  io_uring* raw() noexcept { return &ring_; }
  bool deferred_taskrun() const noexcept { return deferred_; }

  // A submission slot; submits what is queued first if the queue is full.
  io_uring_sqe* sqe() noexcept;
  // Prepares nothing: ties a prepared sqe to its Op and marks it in flight.
  static void bind(io_uring_sqe* sqe, Op& op) noexcept {
    io_uring_sqe_set_data(sqe, &op);
    op.in_flight = true;
  }

  // Operations whose completions nobody waits for (cancellations).
  void cancel_fd(int fd) noexcept;
  void cancel_op(Op& op) noexcept;

  // Submits and waits up to timeout_ms for at least one completion, then
  // hands every ready completion to its Op's owner. Returns how many ran.
  unsigned run_once(unsigned timeout_ms) noexcept;

 private:
  io_uring ring_{};
  bool ready_ = false;
  bool deferred_ = false;
};

}  // namespace meshd::io
