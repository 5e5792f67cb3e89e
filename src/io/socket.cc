#include "io/socket.h"

#include <linux/filter.h>
#include <netinet/tcp.h>
#include <unistd.h>

#include <algorithm>

namespace meshd::io {

Result<int> listen_tcp(const SocketAddr& addr, bool reuseport, int backlog) noexcept {
  int fd = ::socket(addr.family(), SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, IPPROTO_TCP);
  if (fd < 0) return fail_errno();
  int one = 1;
  setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  if (reuseport && setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof one) < 0) {
    int e = errno;
    ::close(fd);
    return fail(e);
  }
  // An IPv6 wildcard listener takes IPv6 only: IPv4 has its own listener,
  // so the original destination is always read with the right family.
  if (addr.is_v6()) setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof one);
  if (::bind(fd, addr.sa(), addr.len()) < 0 || ::listen(fd, backlog) < 0) {
    int e = errno;
    ::close(fd);
    return fail(e);
  }
  return fd;
}

Result<void> ensure_address_free(const SocketAddr& addr) noexcept {
  // Bound without SO_REUSEPORT, this socket conflicts with any listener on
  // the address; it is closed before the real group binds.
  int fd = ::socket(addr.family(), SOCK_STREAM | SOCK_CLOEXEC, IPPROTO_TCP);
  if (fd < 0) return fail_errno();
  int one = 1;
  setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  if (addr.is_v6()) setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof one);
  int r = ::bind(fd, addr.sa(), addr.len());
  int e = errno;
  ::close(fd);
  if (r < 0) return fail(e);
  return {};
}

Result<void> steer_by_cpu(int listen_fd, const std::vector<int>& worker_cpus) noexcept {
  // Classic BPF, run by the kernel on each new connection:
  //   A = current cpu; if A == cpu[k] return k (for each worker k);
  //   return A % n.
  // Each JEQ jumps over the remaining JEQs and the fallback to its RET k,
  // which lands at the same distance (m + 1) for every k.
  const auto n = static_cast<uint32_t>(worker_cpus.size());
  const uint32_t m = std::min<uint32_t>(n, 200);  // jump offsets are 8 bits
  std::vector<sock_filter> code;
  code.push_back({BPF_LD | BPF_W | BPF_ABS, 0, 0, static_cast<uint32_t>(SKF_AD_OFF + SKF_AD_CPU)});
  for (uint32_t k = 0; k < m; ++k) {
    uint32_t cpu = worker_cpus[k] < 0 ? 0xffffffffu : static_cast<uint32_t>(worker_cpus[k]);
    code.push_back({BPF_JMP | BPF_JEQ | BPF_K, static_cast<uint8_t>(m + 1), 0, cpu});
  }
  code.push_back({BPF_ALU | BPF_MOD | BPF_K, 0, 0, n});
  code.push_back({BPF_RET | BPF_A, 0, 0, 0});
  for (uint32_t k = 0; k < m; ++k) code.push_back({BPF_RET | BPF_K, 0, 0, k});
  sock_fprog prog{static_cast<unsigned short>(code.size()), code.data()};
  if (setsockopt(listen_fd, SOL_SOCKET, SO_ATTACH_REUSEPORT_CBPF, &prog, sizeof prog) < 0) return fail_errno();
  return {};
}

Result<int> tcp_socket(int family) noexcept {
  int fd = ::socket(family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, IPPROTO_TCP);
  if (fd < 0) return fail_errno();
  return fd;
}

void set_nodelay(int fd) noexcept {
  // The application already chose how to batch its writes; a proxy that
  // adds Nagle's delay on top only adds latency.
  int one = 1;
  setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
}

void quick_ack(int fd) noexcept {
  int one = 1;
  (void)::setsockopt(fd, IPPROTO_TCP, TCP_QUICKACK, &one, sizeof(one));
}

void set_reset_on_close(int fd) noexcept {
  linger l{1, 0};
  setsockopt(fd, SOL_SOCKET, SO_LINGER, &l, sizeof l);
}

Result<SocketAddr> local_addr(int fd) noexcept {
  sockaddr_storage ss{};
  socklen_t len = sizeof ss;
  if (getsockname(fd, reinterpret_cast<sockaddr*>(&ss), &len) < 0) return fail_errno();
  return SocketAddr::from_sockaddr(reinterpret_cast<sockaddr*>(&ss), len);
}

Result<SocketAddr> peer_addr(int fd) noexcept {
  sockaddr_storage ss{};
  socklen_t len = sizeof ss;
  if (getpeername(fd, reinterpret_cast<sockaddr*>(&ss), &len) < 0) return fail_errno();
  return SocketAddr::from_sockaddr(reinterpret_cast<sockaddr*>(&ss), len);
}

void close_fd(int fd) noexcept {
  if (fd >= 0) ::close(fd);
}

std::optional<SocketAddr> local_address_towards(const SocketAddr& peer) noexcept {
  int fd = ::socket(peer.family(), SOCK_DGRAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return std::nullopt;
  std::optional<SocketAddr> out;
  if (::connect(fd, peer.sa(), peer.len()) == 0) {
    if (auto a = local_addr(fd)) out = *a;
  }
  ::close(fd);
  return out;
}

}  // namespace meshd::io
