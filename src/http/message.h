// HTTP message heads as views: what the HTTP/1 parser (h1_parse.h) fills in
// and what codecs, the tap and the router read.
//
// Every string_view points into bytes the caller owns (the head as it was
// read), so a head is valid only while those bytes are; nothing is copied.
// Names keep the case they were sent with (HTTP/1 forwards them verbatim);
// compare them case-insensitively.
#pragma once

#include <cstdint>
#include <span>
#include <string_view>

namespace meshd::http {

// The methods whose semantics the proxy must know (framing, tunnels,
// retry safety); any other token is kOther and its name is in method_name.
enum class Method : uint8_t { kOther, kGet, kHead, kPost, kPut, kDelete, kConnect, kOptions, kTrace, kPatch };

enum class Version : uint8_t { kHttp10, kHttp11, kHttp2 };

struct Header {
  std::string_view name;
  std::string_view value;  // without leading and trailing whitespace
};

// How the body after a head is delimited (RFC 9112 §6).
enum class FramingKind : uint8_t {
  kNone,           // no body: the next message starts right after the head
  kContentLength,  // exactly `length` bytes (0 is possible)
  kChunked,        // chunked coding, ended by the last chunk and trailers
  kUntilClose,     // a response read until the server closes
  kTunnel,         // bytes after the head are no longer HTTP (101, CONNECT 2xx)
};

struct Framing {
  FramingKind kind = FramingKind::kNone;
  uint64_t length = 0;  // kContentLength only
};

// The request-target's form (RFC 9112 §3.2).
enum class TargetForm : uint8_t {
  kOrigin,     // "/path?query"
  kAbsolute,   // "http://host:port/path" (to proxies)
  kAuthority,  // "host:port" (CONNECT only)
  kAsterisk,   // "*" (OPTIONS only)
};

// Connection options are hop-by-hop header names a terminating proxy must
// drop; more than this many in one head is rejected rather than half-known.
inline constexpr size_t kMaxConnectionTokens = 16;

// Facts common to requests and responses, derived from their headers.
struct HeadFacts {
  std::span<const Header> headers;  // in the order sent, into the caller's storage
  Framing framing;
  bool keep_alive = false;  // the connection may carry another message after this one
  bool upgrade = false;     // an Upgrade header is present
  uint8_t connection_token_count = 0;
  std::string_view connection_tokens[kMaxConnectionTokens];  // Connection header tokens

  std::span<const std::string_view> connection() const { return {connection_tokens, connection_token_count}; }
};

struct RequestHead : HeadFacts {
  Method method = Method::kOther;
  std::string_view method_name;
  std::string_view target;
  TargetForm form = TargetForm::kOrigin;
  Version version = Version::kHttp11;
  std::string_view host;         // the Host header's value; empty when absent
  std::string_view authority;    // the absolute-form or CONNECT target's authority, else `host`
  bool expect_continue = false;  // Expect: 100-continue
};

struct ResponseHead : HeadFacts {
  Version version = Version::kHttp11;
  uint16_t status = 0;
  std::string_view reason;
  bool interim = false;  // 1xx other than 101: the final response is still to come
};

}  // namespace meshd::http
