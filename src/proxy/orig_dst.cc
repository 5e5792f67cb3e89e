#include "proxy/orig_dst.h"

#include <linux/netfilter_ipv4.h>
#include <linux/netfilter_ipv6/ip6_tables.h>

#include "io/socket.h"

namespace meshd::proxy {

Result<SocketAddr> original_dst(int fd, int family) noexcept {
  sockaddr_storage ss{};
  socklen_t len = sizeof ss;
  int r = family == AF_INET6 ? getsockopt(fd, SOL_IPV6, IP6T_SO_ORIGINAL_DST, &ss, &len)
                             : getsockopt(fd, SOL_IP, SO_ORIGINAL_DST, &ss, &len);
  if (r < 0) return fail_errno();
  SocketAddr dst = SocketAddr::from_sockaddr(reinterpret_cast<sockaddr*>(&ss), len);
  // Tracked but not NATed: the "original" destination is the proxy itself.
  auto local = io::local_addr(fd);
  if (!dst.valid() || (local && *local == dst)) return fail(ENOENT);
  return dst;
}

}  // namespace meshd::proxy
