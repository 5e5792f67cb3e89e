// Where an accepted connection goes: the destination stage of a connection's
// life. Today: the original destination (outbound), the application on
// loopback at the original port (inbound) or a fixed target (--forward).
// Discovery will plug in here.
#pragma once

#include "base/addr.h"
#include "base/result.h"
#include "config/config.h"
#include "proxy/listener.h"

namespace meshd::proxy {

Result<SocketAddr> choose_target(const ListenerSpec& listener, int client_fd, const config::Config& config) noexcept;

}  // namespace meshd::proxy
