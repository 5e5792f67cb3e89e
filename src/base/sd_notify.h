// Tells a service manager (systemd's Type=notify) where the process is:
// "READY=1" once it serves, "STOPPING=1" when it starts to drain. The
// protocol is one datagram on the unix socket named by $NOTIFY_SOCKET, so
// no library is needed. Without $NOTIFY_SOCKET it does nothing.
//
// Why meshd cares: meshd.service installs the redirect rules after READY=1
// (ExecStartPost), so no connection is redirected to a proxy that does not
// listen yet.
#pragma once

#include <string>
#include <string_view>

namespace meshd {

// Sends `state` ("READY=1\nSTATUS=...") to $NOTIFY_SOCKET. Returns what
// went wrong, or an empty string (also when there is no socket to tell).
std::string sd_notify(std::string_view state);

}  // namespace meshd
