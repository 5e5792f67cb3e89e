#include "proxy/listener.h"

#include "base/log.h"
#include "io/ring.h"
#include "io/socket.h"
#include "proxy/worker.h"

namespace meshd::proxy {

void Listener::arm() noexcept {
  if (fd_ < 0 || stopping_ || accept_op_.in_flight) return;
  io_uring_sqe* s = worker_->ring().sqe();
  io_uring_prep_multishot_accept(s, fd_, nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
  io::Ring::bind(s, accept_op_);
}

void Listener::stop() noexcept {
  if (fd_ < 0 || stopping_) return;
  stopping_ = true;
  if (accept_op_.in_flight) {
    worker_->ring().cancel_op(accept_op_);
  } else {
    io::close_fd(fd_);
    fd_ = -1;
  }
}

void Listener::on_complete(io::Op&, const io_uring_cqe& cqe) noexcept {
  if (cqe.res >= 0) {
    last_error_ = 0;
    if (stopping_) {
      // Accepted as the listener closed: a reset says "not served", where
      // a FIN would read as an empty but complete exchange.
      io::set_reset_on_close(cqe.res);
      io::close_fd(cqe.res);
    } else {
      worker_->accepted(*this, cqe.res);
    }
  } else if (cqe.res != -ECANCELED) {
    // EMFILE/ENFILE and friends: the connection stays in the backlog; the
    // worker re-arms on its next tick instead of spinning on the error,
    // and says so once per error streak, not once per tick.
    if (cqe.res != last_error_)
      LOG_WARN("listener", "accept on %s failed: %s", spec_->address.str().c_str(), strerror(-cqe.res));
    last_error_ = cqe.res;
  }
  if (stopping_ && !accept_op_.in_flight && fd_ >= 0) {
    io::close_fd(fd_);
    fd_ = -1;
  }
}

}  // namespace meshd::proxy
