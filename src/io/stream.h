// Stream: a blocking TCP connection for tools and helper threads (never a
// worker), whose connect, sends and
// reads all share one deadline, so no command can hang on a peer that
// accepts and then says nothing. Used for the proxy's admin endpoint (HTTP)
// the controller's API (framed protobuf) and the Kubernetes API (TLS).
#pragma once

#include <chrono>
#include <cstdint>
#include <expected>
#include <string>
#include <string_view>

#include "base/addr.h"

namespace meshd::io {

class Stream {
 public:
  using Clock = std::chrono::steady_clock;

  // Errors are one phrase for a sentence: "connection refused", "no answer
  // to connect within 2s".
  static std::expected<Stream, std::string> connect(const SocketAddr& addr, uint64_t timeout_ms);
  Stream(Stream&& o) noexcept : fd_(o.fd_), deadline_(o.deadline_), timeout_ms_(o.timeout_ms_) { o.fd_ = -1; }
  Stream(const Stream&) = delete;
  Stream& operator=(const Stream&) = delete;
  ~Stream();

  std::expected<void, std::string> send_all(std::string_view data);
  // Some bytes into buf (0: the peer closed), or why not (timed out, failed).
  std::expected<size_t, std::string> recv_some(char* buf, size_t cap);
  std::string timeout_text() const;
  // Waits until the socket is ready for `events` (POLLIN, POLLOUT), for
  // callers that drive it themselves (a TLS library); false once the
  // deadline has passed (errno ETIMEDOUT) or poll failed.
  bool wait(short events) const;
  int fd() const { return fd_; }

 private:
  Stream(int fd, Clock::time_point deadline, uint64_t timeout_ms)
      : fd_(fd), deadline_(deadline), timeout_ms_(timeout_ms) {}
  int fd_ = -1;
  Clock::time_point deadline_;
  uint64_t timeout_ms_ = 0;
};

// strerror() with its first letter lowered, to sit inside a sentence.
std::string errno_text(int err);
// A timeout as an operator writes it: "2s", "250ms".
std::string ms_text(uint64_t ms);

}  // namespace meshd::io
