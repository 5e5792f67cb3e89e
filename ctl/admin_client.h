// A tiny blocking HTTP/1.1 client for the proxy's admin endpoint, shared by
// every meshd-ctl command that asks the proxy something (status, endpoints,
// stat, tap).
//
// Blocking is fine in a CLI; what matters is that a hung or hostile peer
// cannot hang or exhaust it: connect and the whole exchange share one
// deadline, and the response size is capped. Each request is one connection
// with "Connection: close", so there is no connection state to get wrong.
#pragma once

#include <cstddef>
#include <cstdint>
#include <expected>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "base/addr.h"
#include "base/result.h"

namespace meshd::ctl {

inline constexpr std::string_view kDefaultAdmin = "127.0.0.1:4191";
inline constexpr uint64_t kDefaultTimeoutMs = 2000;
inline constexpr size_t kDefaultMaxResponseBytes = 4u << 20;

struct HttpResponse {
  int status = 0;
  std::string reason;                                        // "OK", "Not Found"; may be empty
  std::vector<std::pair<std::string, std::string>> headers;  // names as sent
  std::string body;

  // Case-insensitive lookup of the first header with this name.
  const std::string* header(std::string_view name) const;
};

// Parses a complete response (everything read until the peer closed, or up
// to Content-Length): status line, headers, and a body delimited by
// Content-Length, chunked encoding, or the end of the bytes. Any status code
// parses; deciding whether it is acceptable is the caller's job.
// Errors say what was wrong: "not an HTTP response", "truncated body", ...
Parsed<HttpResponse> parse_http_response(std::string_view raw, size_t max_body = kDefaultMaxResponseBytes);

// How many bytes the response in `raw` needs to be complete, when known:
// 0 = not enough to tell yet (headers incomplete, or the body runs to EOF).
// Lets the client stop reading when Content-Length is satisfied instead of
// trusting the peer to close.
size_t http_response_complete_size(std::string_view raw);

struct AdminTarget {
  SocketAddr addr;
  std::string text;  // as the operator wrote it, for messages
};

// "HOST:PORT" where HOST is an IP address or "localhost".
Parsed<AdminTarget> parse_admin_target(std::string_view text);

// Where the admin endpoint is: the --admin flag if given, else $MESHD_ADMIN,
// else 127.0.0.1:4191. The error names which of those was malformed.
Parsed<AdminTarget> resolve_admin_target(std::string_view flag_value);

struct AdminError {
  enum class Kind {
    kUnreachable,  // refused, timed out, no route: nothing (working) listening
    kProtocol,     // something answered, but not with a usable HTTP response
    kStatus,       // a valid response with a non-2xx status
  };
  Kind kind = Kind::kUnreachable;
  std::string message;  // one line, without the program name
  int status = 0;       // kStatus: the HTTP status
  std::string said;     // kStatus: the body's first line, printable
};

// GETs `path` from the admin endpoint and returns the body of a 2xx answer.
std::expected<std::string, AdminError> admin_get(const AdminTarget& target, std::string_view path,
                                                 uint64_t timeout_ms = kDefaultTimeoutMs,
                                                 size_t max_response_bytes = kDefaultMaxResponseBytes);

// One line for stderr. Unreachable reads "no proxy answering at ADDR
// (connection refused); is meshd running? (--admin to point elsewhere)".
std::string describe_admin_error(const AdminTarget& target, const AdminError& err);

}  // namespace meshd::ctl
