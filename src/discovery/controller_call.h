// One request to a controller and its answer, over a fresh blocking stream:
// for meshd-ctl and for the proxy's helper threads (never a worker).
#pragma once

#include <cstdint>
#include <string>

#include "base/addr.h"
#include "base/result.h"
#include "proto/api.pb.h"

namespace meshd::discovery {

class Resolver;

// Where a controller is now: its address when written as an IP, else its
// name resolved with c-ares (waiting up to timeout_ms: helper threads only),
// so a controller behind a DNS name that moves is followed. The error names
// the controller.
Parsed<SocketAddr> controller_address(const HostPort& controller, Resolver* resolver, uint64_t timeout_ms);

// Sends request and waits (up to timeout_ms in all) for the response with
// its id. The error is one line naming the controller (as `name`).
Parsed<proto::Response> controller_call(const SocketAddr& addr, const std::string& name, const proto::Request& request,
                                        uint64_t timeout_ms);

}  // namespace meshd::discovery
