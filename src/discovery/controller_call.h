// One request to a controller and its answer, over a fresh blocking stream:
// for meshd-ctl and for the proxy's helper threads (never a worker).
#pragma once

#include <cstdint>
#include <string>

#include "base/addr.h"
#include "base/result.h"
#include "proto/api.pb.h"

namespace meshd::discovery {

// Sends request and waits (up to timeout_ms in all) for the response with
// its id. The error is one line naming the controller (as `name`).
Parsed<proto::Response> controller_call(const SocketAddr& addr, const std::string& name, const proto::Request& request,
                                        uint64_t timeout_ms);

}  // namespace meshd::discovery
