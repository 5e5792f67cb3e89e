#include "io/stream.h"

#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

namespace meshd::io {
namespace {

// Waits for `events` until the deadline; false on timeout (errno = ETIMEDOUT).
bool wait_for(int fd, short events, Stream::Clock::time_point deadline) {
  for (;;) {
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Stream::Clock::now()).count();
    if (left <= 0) {
      errno = ETIMEDOUT;
      return false;
    }
    pollfd p{fd, events, 0};
    int n = ::poll(&p, 1, static_cast<int>(std::min<long long>(left, 60'000)));
    if (n > 0) return true;
    if (n < 0 && errno != EINTR) return false;
  }
}

}  // namespace

std::string ms_text(uint64_t ms) {
  if (ms % 1000 == 0) return std::to_string(ms / 1000) + "s";
  return std::to_string(ms) + "ms";
}

bool Stream::wait(short events) const { return wait_for(fd_, events, deadline_); }

std::string errno_text(int err) {
  std::string s = std::strerror(err);
  if (!s.empty() && s[0] >= 'A' && s[0] <= 'Z') s[0] = static_cast<char>(s[0] - 'A' + 'a');
  return s;
}

std::expected<Stream, std::string> Stream::connect(const SocketAddr& addr, uint64_t timeout_ms) {
  const auto deadline = Clock::now() + std::chrono::milliseconds(timeout_ms);
  int fd = ::socket(addr.family(), SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) return std::unexpected(std::string("socket: ") + errno_text(errno));
  Stream s(fd, deadline, timeout_ms);
  // Non-blocking connect + poll: the only portable way to bound connect time.
  if (::connect(fd, addr.sa(), addr.len()) < 0) {
    if (errno != EINPROGRESS) return std::unexpected(errno_text(errno));
    if (!wait_for(fd, POLLOUT, deadline)) {
      if (errno == ETIMEDOUT) return std::unexpected("no answer to connect within " + ms_text(timeout_ms));
      return std::unexpected(std::string("poll: ") + errno_text(errno));
    }
    int err = 0;
    socklen_t len = sizeof err;
    if (::getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) < 0) err = errno;
    if (err != 0) return std::unexpected(errno_text(err));
  }
  return s;
}

Stream::~Stream() {
  if (fd_ >= 0) ::close(fd_);
}

std::string Stream::timeout_text() const { return ms_text(timeout_ms_); }

std::expected<void, std::string> Stream::send_all(std::string_view pending) {
  while (!pending.empty()) {
    ssize_t n = ::send(fd_, pending.data(), pending.size(), MSG_NOSIGNAL);
    if (n > 0) {
      pending.remove_prefix(static_cast<size_t>(n));
      continue;
    }
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
      if (!wait_for(fd_, POLLOUT, deadline_))
        return std::unexpected("connected, but could not send the request within " + ms_text(timeout_ms_));
      continue;
    }
    return std::unexpected(std::string("sending the request: ") + errno_text(errno));
  }
  return {};
}

std::expected<size_t, std::string> Stream::recv_some(char* buf, size_t cap) {
  for (;;) {
    ssize_t n = ::recv(fd_, buf, cap, 0);
    if (n >= 0) return static_cast<size_t>(n);
    if (errno == EINTR) continue;
    if (errno == EAGAIN || errno == EWOULDBLOCK) {
      if (!wait_for(fd_, POLLIN, deadline_)) return std::unexpected("no answer within " + ms_text(timeout_ms_));
      continue;
    }
    return std::unexpected(std::string("reading the answer: ") + errno_text(errno));
  }
}

}  // namespace meshd::io
