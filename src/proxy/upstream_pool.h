// UpstreamPool: a worker's idle connections to service endpoints, kept
// between HTTP/1 requests so that the next request to that endpoint skips
// the connect and the mesh's TLS handshake (HAProxy's idle connection
// pools, Linkerd's per-endpoint pools).
//
// A connection comes here from a TcpForward when an HTTP/1 exchange on it
// ended cleanly and both sides let the connection go on (keep-alive), and
// the TcpForward either moved its next request to another endpoint (per-
// request balancing) or its client went away. It leaves when a request for
// that endpoint takes it, when it has been idle for the pool's idle
// timeout (kept below the usual servers' own keep-alive timeouts, so the
// server rarely closes first), or when the pool is full.
//
// Nothing is in flight on a pooled socket: a server that closes it while
// it waits is noticed when it is taken (a peek that does not wait), and
// taken connections are checked that way before reuse. The one race left
// (the server closes just after the check) is the one every pooling proxy
// has; the request then fails as if the server had closed mid-request.
//
// One worker's, never shared: no locks.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "base/addr.h"
#include "metrics/tcp_stats.h"
#include "transport/tls_session.h"

namespace meshd::proxy {

struct IdleUpstream {
  int fd = -1;
  SocketAddr address;
  // The mesh's TLS session on it, past its handshake (the peer proved the
  // identity discovery promised); null: plaintext.
  std::unique_ptr<transport::TlsSession> tls;
  uint64_t since_ms = 0;  // pooled at (monotonic)
};

class UpstreamPool {
 public:
  // At most this many idle connections per worker; more are closed.
  static constexpr size_t kMaxIdle = 128;

  // idle and stale (optional): where the pool's size and the dead
  // connections it met are shown (the worker's stats).
  explicit UpstreamPool(uint64_t idle_timeout_ms, metrics::Counter* idle = nullptr,
                        metrics::Counter* stale = nullptr) noexcept
      : idle_timeout_ms_(idle_timeout_ms), idle_gauge_(idle), stale_counter_(stale) {}
  UpstreamPool(const UpstreamPool&) = delete;
  UpstreamPool& operator=(const UpstreamPool&) = delete;
  ~UpstreamPool() { clear(); }

  // Keeps c (its fd and session are the pool's now); closes it when the pool
  // is full or pooling is off (idle timeout 0). False then.
  bool give(IdleUpstream&& c, uint64_t now_ms) noexcept;
  // The most recently pooled live connection to address, over mesh TLS to
  // `identity` (empty: plaintext). Dead ones met on the way are closed.
  // c.fd < 0: none.
  IdleUpstream take(const SocketAddr& address, std::string_view identity) noexcept;
  // Closes the connections idle for the idle timeout or longer.
  void expire(uint64_t now_ms) noexcept;
  // Closes every connection (the worker is stopping).
  void clear() noexcept;
  size_t size() const noexcept { return idle_.size(); }
  // Pooled connections closed because the server had closed them.
  uint64_t stale() const noexcept { return stale_; }

 private:
  // A clean end for the server: the mesh's close_notify when over TLS (best
  // effort, without waiting), then a FIN.
  static void close_idle(IdleUpstream& c) noexcept;
  void changed() noexcept {
    if (idle_gauge_ != nullptr) idle_gauge_->set(idle_.size());
  }

  uint64_t idle_timeout_ms_;
  metrics::Counter* idle_gauge_;
  metrics::Counter* stale_counter_;
  std::vector<IdleUpstream> idle_;  // oldest first
  uint64_t stale_ = 0;
};

}  // namespace meshd::proxy
