// HTTP/1.1 head parsing (RFC 9112), zero-copy and strict.
//
// Two phases: find where the head ends (the first CRLFCRLF), then one
// validating pass over exactly those bytes that fills a RequestHead or
// ResponseHead with views into them. A head that straddles reads is the
// caller's to assemble: while the end is not in sight the answer is
// kIncomplete with `consumed` = how far the scan got, to be passed back as
// `scan_from` with more bytes so nothing is scanned twice.
//
// Strict where request smuggling hides, because the tap forwards the bytes
// verbatim and the application must parse exactly what we parsed: only CRLF
// ends a line, no obs-fold, no whitespace before a colon, no CL with TE, no
// conflicting lengths. Each rejection carries the status to answer, a short
// stable reason (a metric label) and a message for logs.
//
// Content-Length policy: a list of equal values, in one header or several,
// is accepted as that value (RFC 9110 §8.6 allows either); unequal values,
// empty list elements and anything that is not 1*DIGIT are rejected.
//
// No exceptions and no allocation: headers go into the caller's array of
// Limits::max_headers entries.
//
// Inputs are spans of the bytes read. (A string literal passed as a span
// includes its NUL: tests pass string_views.)
#pragma once

#include <cstdint>
#include <span>
#include <string_view>

#include "base/ascii.h"
#include "http/message.h"

namespace meshd::http {

struct Limits {
  uint32_t max_request_line = 8192;  // request line without its CRLF; over it: 414
  uint32_t max_head = 32768;         // the whole head with its final CRLFCRLF; over it: 431
  uint16_t max_headers = 100;        // header lines; over it: 431
};

enum class HeadStatus : uint8_t { kIncomplete, kDone, kError };

struct HeadResult {
  HeadStatus status = HeadStatus::kIncomplete;
  // kDone: the head's length (the body starts here). kIncomplete: the offset
  // to resume scanning from. kError: 0.
  uint32_t consumed = 0;
  uint16_t error_status = 0;  // kError: the status to answer (400, 414, 431, 501, 505; 502 for responses)
  std::string_view reason;    // kError: a stable short token, e.g. "cl_and_te"
  std::string_view message;   // kError: for humans
};

// Finds the end of a head in `bytes`, starting the scan at `scan_from` (a
// previous kIncomplete's `consumed`). kDone's `consumed` is the head length.
// Reports a bare LF, a head longer than max_head and, for requests, a first
// line longer than max_request_line as soon as the bytes show them.
HeadResult find_head_end(std::span<const char> bytes, uint32_t scan_from, const Limits& limits, bool request);

// A method's token as Method (case-sensitive); kOther for any other.
Method method_of(std::string_view m);

// `storage` has room for limits.max_headers entries. On kDone, *out's views
// point into `bytes`.
HeadResult parse_request_head(std::span<const char> bytes, const Limits& limits, RequestHead* out, Header* storage,
                              uint32_t scan_from = 0);

// The response to a request made with `request_method` (HEAD and CONNECT
// change its framing). Errors answer 502: the response cannot be forwarded.
HeadResult parse_response_head(std::span<const char> bytes, Method request_method, const Limits& limits,
                               ResponseHead* out, Header* storage, uint32_t scan_from = 0);

// The next element of a comma-separated header list (RFC 9110 §5.6.1),
// trimmed of whitespace; empty elements are skipped. Advances *list; returns
// an empty view when none is left.
std::string_view next_list_element(std::string_view* list);

// A token character (RFC 9110 §5.6.2: methods, field names, codings), and a
// whole token (one or more of them).
bool is_tchar(char c) noexcept;
bool is_token(std::string_view s) noexcept;

}  // namespace meshd::http
