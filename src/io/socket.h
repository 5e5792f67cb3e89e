// Plain socket set-up that never waits: listeners, options, and the reset
// that propagates a peer's RST. Data moves through the ring, not through here.
#pragma once

#include <optional>
#include <vector>

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

// Steers each new connection to the reuseport group's socket i whose worker
// runs on the CPU that received the connection (worker_cpus[i]), so that
// it is served without a cross-CPU wake-up; a CPU with no worker of its own
// maps to socket (CPU % group size).
Result<void> steer_by_cpu(int listen_fd, const std::vector<int>& worker_cpus) noexcept;

Result<int> tcp_socket(int family) noexcept;
void set_nodelay(int fd) noexcept;
// Acknowledges what was received now rather than after the delayed-ACK
// timer (40 ms), once.
void quick_ack(int fd) noexcept;
// Makes the next close() send RST instead of FIN.
void set_reset_on_close(int fd) noexcept;
Result<SocketAddr> local_addr(int fd) noexcept;
// The address of the peer a connected socket talks to.
Result<SocketAddr> peer_addr(int fd) noexcept;
// The address this host has towards peer, by the kernel's route choice (the
// source of a UDP socket connected to it; nothing is sent). What a host
// registers or advertises itself as.
std::optional<SocketAddr> local_address_towards(const SocketAddr& peer) noexcept;
void close_fd(int fd) noexcept;

}  // namespace meshd::io
