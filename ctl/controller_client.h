// A blocking request to the controller's API: one framed Request, then the
// framed Response with the same id (src/proto/api.proto).
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <string_view>

#include "base/flags.h"
#include "base/result.h"
#include "ctl/admin_client.h"
#include "ctl/command.h"
#include "proto/api.pb.h"

namespace meshd::ctl {

// --controller if given, else $MESHD_CONTROLLER, else 127.0.0.1:4190.
Parsed<AdminTarget> resolve_controller_target(std::string_view flag_value);

// What every command that talks to a controller takes: where it is, and
// the mesh's trust anchor, which makes the stream TLS to a verified
// controller (a controller with an identity speaks nothing else).
struct ControllerFlags {
  std::string controller;     // --controller
  std::string trust_anchors;  // --trust-anchors, else $MESHD_TRUST_ANCHORS; empty: plaintext
  void add_to(FlagParser& flags);
};

// What a command does with it: resolves --controller, calls, and on any
// failure (bad flag, no controller, refusal) prints one line on io.err and
// answers the exit code to return.
std::expected<proto::Response, int> call_controller(const Io& io, std::string_view command,
                                                    const ControllerFlags& controller, uint64_t timeout_ms,
                                                    const proto::Request& request);

// The whole of a command that asks a controller one question and prints the
// answer (services, members): the controller flags, -o text|json,
// --timeout and --help, no positional arguments; request_kind fills the request's kind.
int run_controller_query(std::span<const std::string_view> args, const Io& io, std::string_view command,
                         std::string_view help, void (*request_kind)(proto::Request*),
                         std::string (*render)(const proto::Response&, bool json));

}  // namespace meshd::ctl
