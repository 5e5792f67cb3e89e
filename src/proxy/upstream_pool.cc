#include "proxy/upstream_pool.h"

#include <sys/socket.h>

#include <cerrno>

#include "io/socket.h"

namespace meshd::proxy {

namespace {
// Still connected, with nothing unread: a server that closed or reset it,
// or that sent something while nothing was asked (a 408 before closing),
// makes it unusable.
bool alive(int fd) noexcept {
  char byte;
  ssize_t n = ::recv(fd, &byte, 1, MSG_PEEK | MSG_DONTWAIT);
  return n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK);
}
}  // namespace

void UpstreamPool::close_idle(IdleUpstream& c) noexcept {
  if (c.tls && c.tls->shutdown() == transport::TlsStatus::kOk) {
    while (c.tls->out_size() > 0) {
      ssize_t n = ::send(c.fd, c.tls->out_data(), c.tls->out_size(), MSG_DONTWAIT | MSG_NOSIGNAL);
      if (n <= 0) break;
      c.tls->consume_out(static_cast<size_t>(n));
    }
  }
  c.tls.reset();
  io::close_fd(c.fd);
  c.fd = -1;
}

bool UpstreamPool::give(IdleUpstream&& c, uint64_t now_ms) noexcept {
  if (idle_timeout_ms_ == 0) {
    close_idle(c);
    return false;
  }
  if (idle_.size() >= kMaxIdle) {
    // The oldest goes: it is the likeliest to have been closed by its server.
    close_idle(idle_.front());
    idle_.erase(idle_.begin());
  }
  c.since_ms = now_ms;
  idle_.push_back(std::move(c));
  changed();
  return true;
}

IdleUpstream UpstreamPool::take(const SocketAddr& address, std::string_view identity) noexcept {
  for (size_t i = idle_.size(); i-- > 0;) {
    IdleUpstream& c = idle_[i];
    if (!(c.address == address)) continue;
    const bool tls_match = c.tls ? c.tls->peer_identity() == identity : identity.empty();
    if (!tls_match) continue;
    IdleUpstream out = std::move(c);
    idle_.erase(idle_.begin() + static_cast<std::ptrdiff_t>(i));
    changed();
    if (alive(out.fd)) return out;
    ++stale_;
    if (stale_counter_ != nullptr) stale_counter_->inc();
    close_idle(out);
  }
  return {};
}

void UpstreamPool::expire(uint64_t now_ms) noexcept {
  size_t n = 0;
  while (n < idle_.size() && idle_[n].since_ms + idle_timeout_ms_ <= now_ms) close_idle(idle_[n++]);
  if (n == 0) return;
  idle_.erase(idle_.begin(), idle_.begin() + static_cast<std::ptrdiff_t>(n));
  changed();
}

void UpstreamPool::clear() noexcept {
  for (auto& c : idle_) close_idle(c);
  idle_.clear();
  changed();
}

}  // namespace meshd::proxy
