// OrigDst: where the application meant to connect before iptables' REDIRECT
// sent the connection to meshd.
#pragma once

#include "base/addr.h"
#include "base/result.h"

namespace meshd::proxy {

// Reads SO_ORIGINAL_DST (IPv4) or IP6T_SO_ORIGINAL_DST (IPv6) from an
// accepted socket: a plain getsockopt, once per connection, because
// io_uring's socket command only knows SOL_SOCKET. Fails with ENOENT when
// the connection was not redirected, which includes a client that dialled
// the proxy's own port directly.
Result<SocketAddr> original_dst(int fd, int family) noexcept;

}  // namespace meshd::proxy
