// A blocking request to the controller's API: one framed Request, then the
// framed Response with the same id (src/proto/api.proto).
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "base/result.h"
#include "ctl/admin_client.h"
#include "ctl/command.h"
#include "proto/api.pb.h"

namespace meshd::ctl {

// --controller if given, else $MESHD_CONTROLLER, else 127.0.0.1:4190.
Parsed<AdminTarget> resolve_controller_target(std::string_view flag_value);

// What a command does with it: resolves --controller, calls, and on any
// failure (bad flag, no controller, refusal) prints one line on io.err and
// answers the exit code to return.
std::expected<proto::Response, int> call_controller(const Io& io, std::string_view command,
                                                    const std::string& controller_flag, uint64_t timeout_ms,
                                                    const proto::Request& request);

}  // namespace meshd::ctl
