// Plain socket set-up that never waits: listeners, options, and the reset
// that propagates a peer's RST. Data moves through the ring, not through here.
#pragma once

#include "base/addr.h"
#include "base/result.h"

namespace meshd::io {

// A non-blocking listening socket bound to addr; with reuseport, several
// sockets (one per worker) share the address and the kernel spreads
// connections among them.
Result<int> listen_tcp(const SocketAddr& addr, bool reuseport, int backlog) noexcept;

// Fails with EADDRINUSE when something listens on addr already. SO_REUSEPORT
// would otherwise let a second meshd (same user) join the first one's
// group and quietly take half its connections.
Result<void> ensure_address_free(const SocketAddr& addr) noexcept;

// Steers each new connection to the listener at index (current CPU % count)
// of the reuseport group, so that a connection is served by the worker
// running on the CPU that received it (no cross-CPU wake-up).
Result<void> steer_by_cpu(int listen_fd, unsigned count) noexcept;

Result<int> tcp_socket(int family) noexcept;
void set_nodelay(int fd) noexcept;
// Makes the next close() send RST instead of FIN.
void set_reset_on_close(int fd) noexcept;
Result<SocketAddr> local_addr(int fd) noexcept;
void close_fd(int fd) noexcept;

}  // namespace meshd::io
