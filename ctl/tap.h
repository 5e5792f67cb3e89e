// `meshd-ctl tap`: the pieces that are pure functions (the poll's path,
// what one answer of GET /tap says, one line per event), exposed so they
// can be unit-tested without a proxy.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "base/result.h"
#include "ctl/command.h"

namespace meshd::ctl {

int run_tap(std::span<const std::string_view> args, const Io& io);

namespace tap {

// One request as /tap reports it (src/admin/tap_view.h).
struct Event {
  uint64_t seq = 0;
  uint64_t unix_ms = 0;
  std::string direction;
  std::string method;
  std::string authority;
  std::string path;
  bool path_truncated = false;
  std::string dst_service;
  bool tls = false;
  std::optional<uint64_t> status;       // none: no response came
  std::optional<uint64_t> grpc_status;  // a gRPC call's status
  std::string error;                    // why, when no response came
  double latency_ms = 0;                // to the response head (or the failure)
};

struct Page {
  uint64_t next = 0;
  uint64_t dropped = 0;
  std::vector<Event> events;
};

// What the operator asked for; empty fields match anything.
struct Filter {
  std::string authority;
  std::string path;  // prefix
  std::string method;
  std::string direction;
};

// RFC 3986 percent-encoding of a query value (unreserved bytes kept).
std::string percent_encode(std::string_view s);
// "/tap?after=7&authority=...&max=N"; without after, the poll that starts a tap.
std::string poll_path(const Filter& f, std::optional<uint64_t> after, size_t max);
// One answer of GET /tap; the error says what is wrong with it.
Parsed<Page> parse_page(std::string_view body);
// "req outbound GET api.prod /users -> 200 1.80ms dst=api.prod tls=true\n"
std::string render_text(const Event& e);
// The event as one line of JSON (NDJSON), newline included.
std::string render_json(const Event& e);

}  // namespace tap
}  // namespace meshd::ctl
