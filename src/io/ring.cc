#include "io/ring.h"

#include "base/log.h"

namespace meshd::io {

Ring::~Ring() {
  if (ready_) io_uring_queue_exit(&ring_);
}

Result<void> Ring::init(unsigned entries) noexcept {
  io_uring_params p{};
  // CQ larger than SQ: multishot accept and recv can post many completions
  // per submission.
  p.flags = IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN | IORING_SETUP_SUBMIT_ALL | IORING_SETUP_CQSIZE;
  p.cq_entries = entries * 4;
  int r = io_uring_queue_init_params(entries, &ring_, &p);
  if (r == -EINVAL) {
    // Kernels before 6.1 lack DEFER_TASKRUN; COOP_TASKRUN (5.19) is the next
    // best thing, and plain setup works everywhere io_uring does.
    p = {};
    p.flags = IORING_SETUP_COOP_TASKRUN | IORING_SETUP_SUBMIT_ALL | IORING_SETUP_CQSIZE;
    p.cq_entries = entries * 4;
    r = io_uring_queue_init_params(entries, &ring_, &p);
    if (r == -EINVAL) {
      p = {};
      r = io_uring_queue_init_params(entries, &ring_, &p);
    }
  } else if (r == 0) {
    deferred_ = true;
  }
  if (r < 0) return fail(-r);
  ready_ = true;
  return {};
}

io_uring_sqe* Ring::sqe() noexcept {
  io_uring_sqe* s = io_uring_get_sqe(&ring_);
  while (s == nullptr) {
    io_uring_submit(&ring_);
    s = io_uring_get_sqe(&ring_);
  }
  return s;
}

void Ring::cancel_fd(int fd) noexcept {
  io_uring_sqe* s = sqe();
  io_uring_prep_cancel_fd(s, fd, IORING_ASYNC_CANCEL_ALL);
  io_uring_sqe_set_data(s, nullptr);
}

void Ring::cancel_op(Op& op) noexcept {
  io_uring_sqe* s = sqe();
  io_uring_prep_cancel(s, &op, 0);
  io_uring_sqe_set_data(s, nullptr);
}

unsigned Ring::run_once(unsigned timeout_ms) noexcept {
  __kernel_timespec ts{};
  ts.tv_sec = timeout_ms / 1000;
  ts.tv_nsec = static_cast<long long>(timeout_ms % 1000) * 1'000'000;
  io_uring_cqe* first = nullptr;
  int r = io_uring_submit_and_wait_timeout(&ring_, &first, 1, &ts, nullptr);
  if (r < 0 && r != -ETIME && r != -EINTR && r != -EBUSY) LOG_WARN("io", "io_uring wait failed: %s", strerror(-r));
  unsigned head;
  unsigned seen = 0;
  io_uring_cqe* cqe;
  io_uring_for_each_cqe(&ring_, head, cqe) {
    ++seen;
    auto* op = static_cast<Op*>(io_uring_cqe_get_data(cqe));
    if (op == nullptr) continue;  // a cancellation's own completion
    // A multishot operation stays armed while the kernel says "more".
    if (!(cqe->flags & IORING_CQE_F_MORE)) op->in_flight = false;
    op->owner->on_complete(*op, *cqe);
  }
  io_uring_cq_advance(&ring_, seen);
  return seen;
}

}  // namespace meshd::io
