#include "proxy/target.h"

#include "proxy/orig_dst.h"

namespace meshd::proxy {

Result<SocketAddr> choose_target(const ListenerSpec& listener, int client_fd, const config::Config& config) noexcept {
  if (listener.kind == ListenerKind::kForward) return listener.target;  // by name: the worker resolves it
  auto dst = original_dst(client_fd, listener.address.family());
  if (!dst) return dst;
  if (listener.kind == ListenerKind::kInbound && config.inbound_target == config::InboundTarget::kLoopback)
    return SocketAddr::loopback(dst->family(), dst->port());
  return dst;
}

}  // namespace meshd::proxy
