#include "http/h1_parse.h"

#include <algorithm>
#include <array>
#include <cctype>
#include <cstring>

namespace meshd::http {

namespace {

// Character classes, one bit each, looked up by byte.
enum : uint8_t {
  kTchar = 1,       // token characters (RFC 9110 §5.6.2): method, field names, list tokens
  kFieldChar = 2,   // field-vchar: VCHAR and obs-text (SP and HTAB are allowed between them)
  kTargetChar = 4,  // request-target bytes: anything visible; obs-text as in detect_protocol
  kHostChar = 8,    // uri-host and port: unreserved, sub-delims, ':', '[', ']', '%'
  kDigit = 16,
};

constexpr std::array<uint8_t, 256> make_classes() {
  std::array<uint8_t, 256> t{};
  for (int c = 0x21; c <= 0xff; ++c) {
    if (c == 0x7f) continue;
    t[c] |= kFieldChar | kTargetChar;
  }
  auto add = [&t](std::string_view chars, uint8_t bit) {
    for (char c : chars) t[static_cast<uint8_t>(c)] |= bit;
  };
  for (int c = '0'; c <= '9'; ++c) t[c] |= kTchar | kHostChar | kDigit;
  for (int c = 'a'; c <= 'z'; ++c) t[c] |= kTchar | kHostChar;
  for (int c = 'A'; c <= 'Z'; ++c) t[c] |= kTchar | kHostChar;
  add("!#$%&'*+-.^_`|~", kTchar);
  add("-._~!$&'()*+,;=:[]%", kHostChar);
  return t;
}
constexpr std::array<uint8_t, 256> kClass = make_classes();

bool is(char c, uint8_t cls) { return (kClass[static_cast<uint8_t>(c)] & cls) != 0; }
bool is_ows(char c) { return c == ' ' || c == '\t'; }

bool all_of(std::string_view s, uint8_t cls) {
  for (char c : s)
    if (!is(c, cls)) return false;
  return true;
}

HeadResult fail(uint16_t status, std::string_view reason, std::string_view message) {
  return {HeadStatus::kError, 0, status, reason, message};
}

// Empty lines before a request line are ignored (RFC 9112 §2.2: some
// clients send a CRLF after a body); they count as part of the head.
size_t skip_leading_crlf(const char* p, size_t n) {
  size_t start = 0;
  while (start + 1 < n && p[start] == '\r' && p[start + 1] == '\n') start += 2;
  return start;
}

// "HTTP/1.0" or "HTTP/1.1"; other well-formed versions are 505, anything
// else is not a version at all (400).
HeadResult parse_version(std::string_view v, Version* out) {
  if (v.size() != 8 || v.substr(0, 5) != "HTTP/" || !is(v[5], kDigit) || v[6] != '.' || !is(v[7], kDigit))
    return fail(400, "version_syntax", "the HTTP version is malformed");
  if (v[5] != '1' || (v[7] != '0' && v[7] != '1'))
    return fail(505, "version", "only HTTP/1.0 and HTTP/1.1 are supported");
  *out = v[7] == '0' ? Version::kHttp10 : Version::kHttp11;
  return {HeadStatus::kDone};
}

}  // namespace

Method method_of(std::string_view m) {
  // Methods are case-sensitive (RFC 9110 §9.1).
  switch (m.size()) {
    case 3:
      if (m == "GET") return Method::kGet;
      if (m == "PUT") return Method::kPut;
      break;
    case 4:
      if (m == "HEAD") return Method::kHead;
      if (m == "POST") return Method::kPost;
      break;
    case 5:
      if (m == "PATCH") return Method::kPatch;
      if (m == "TRACE") return Method::kTrace;
      break;
    case 6:
      if (m == "DELETE") return Method::kDelete;
      break;
    case 7:
      if (m == "CONNECT") return Method::kConnect;
      if (m == "OPTIONS") return Method::kOptions;
      break;
  }
  return Method::kOther;
}

namespace {

// host ":" port with a non-empty host and a 1-5 digit port.
bool valid_host_port(std::string_view a) {
  size_t colon = a.rfind(':');
  if (colon == std::string_view::npos || colon == 0) return false;
  std::string_view port = a.substr(colon + 1);
  return !port.empty() && port.size() <= 5 && all_of(port, kDigit) && all_of(a, kHostChar);
}

// Classifies the request-target and extracts an authority from it.
HeadResult parse_target(std::string_view target, Method method, TargetForm* form, std::string_view* authority) {
  if (method == Method::kConnect) {
    if (!valid_host_port(target)) return fail(400, "target", "CONNECT needs a host:port target");
    *form = TargetForm::kAuthority;
    *authority = target;
    return {HeadStatus::kDone};
  }
  if (target == "*") {
    if (method != Method::kOptions) return fail(400, "target", "an asterisk target is only for OPTIONS");
    *form = TargetForm::kAsterisk;
    return {HeadStatus::kDone};
  }
  if (target[0] == '/') {
    *form = TargetForm::kOrigin;
    return {HeadStatus::kDone};
  }
  // absolute-form: scheme "://" authority [path-abempty ...]
  size_t i = 0;
  if (!((target[0] >= 'a' && target[0] <= 'z') || (target[0] >= 'A' && target[0] <= 'Z')))
    return fail(400, "target", "the request target is not origin-, absolute-, authority- or asterisk-form");
  // scheme = ALPHA *( ALPHA / DIGIT / "+" / "-" / "." ), ASCII only
  while (i < target.size() && (is(target[i], kDigit) || std::isalpha(static_cast<unsigned char>(target[i])) ||
                               target[i] == '+' || target[i] == '-' || target[i] == '.'))
    ++i;
  if (target.substr(i, 3) != "://") return fail(400, "target", "an absolute target has no scheme://");
  i += 3;
  size_t end = target.find_first_of("/?#", i);
  std::string_view a = target.substr(i, end == std::string_view::npos ? std::string_view::npos : end - i);
  // No userinfo ('@' is not a host character): RFC 9110 §4.2.4.
  if (a.empty() || !all_of(a, kHostChar)) return fail(400, "target", "an absolute target has a bad authority");
  *form = TargetForm::kAbsolute;
  *authority = a;
  return {HeadStatus::kDone};
}

// What the special headers said, gathered over the header lines.
struct Special {
  bool has_cl = false;
  uint64_t cl = 0;
  bool has_te = false;
  bool chunked_last = false;  // the last transfer coding so far is chunked
  bool chunked_seen = false;
  int hosts = 0;
  bool close = false;
  bool keep_alive = false;
};

HeadResult add_content_length(std::string_view value, Special* s) {
  // Elements are split by hand: an empty one is an error here, where
  // next_list_element would skip it.
  while (true) {
    size_t comma = value.find(',');
    std::string_view e = value.substr(0, comma);
    while (!e.empty() && is_ows(e.front())) e.remove_prefix(1);
    while (!e.empty() && is_ows(e.back())) e.remove_suffix(1);
    if (e.empty() || !all_of(e, kDigit)) return fail(400, "content_length", "Content-Length is not a number");
    uint64_t v = 0;
    for (char c : e) {
      uint64_t d = static_cast<uint64_t>(c - '0');
      // Bodies beyond 2^63-1 bytes are not real; the bound keeps signed
      // arithmetic in callers safe.
      if (v > (uint64_t{INT64_MAX} - d) / 10) return fail(400, "content_length", "Content-Length overflows");
      v = v * 10 + d;
    }
    if (s->has_cl && v != s->cl) return fail(400, "content_length_mismatch", "Content-Length values differ");
    s->has_cl = true;
    s->cl = v;
    if (comma == std::string_view::npos) return {HeadStatus::kDone};
    value.remove_prefix(comma + 1);
  }
}

HeadResult add_transfer_encoding(std::string_view value, Special* s) {
  bool any = false;
  // Codings with parameters are refused along with anything not a token:
  // nothing legitimate sends them, and every parser must agree on framing.
  while (true) {
    std::string_view e = next_list_element(&value);
    if (e.empty()) break;
    any = true;
    if (!all_of(e, kTchar)) return fail(400, "transfer_encoding", "Transfer-Encoding is not a list of codings");
    bool chunked = equals_ignore_case(e, "chunked");
    if (chunked && s->chunked_seen) return fail(400, "transfer_encoding", "chunked is applied twice");
    s->chunked_seen |= chunked;
    s->chunked_last = chunked;
  }
  if (!any) return fail(400, "transfer_encoding", "Transfer-Encoding is empty");
  s->has_te = true;
  return {HeadStatus::kDone};
}

HeadResult add_connection(std::string_view value, Special* s, HeadFacts* facts) {
  while (true) {
    std::string_view e = next_list_element(&value);
    if (e.empty()) return {HeadStatus::kDone};
    if (!all_of(e, kTchar)) return fail(400, "connection", "Connection is not a list of tokens");
    if (facts->connection_token_count == kMaxConnectionTokens)
      return fail(400, "connection_tokens", "too many Connection options");
    facts->connection_tokens[facts->connection_token_count++] = e;
    if (equals_ignore_case(e, "close")) s->close = true;
    if (equals_ignore_case(e, "keep-alive")) s->keep_alive = true;
  }
}

// Validates the header lines in [pos, end) (each ending in CRLF) into
// storage, and gathers the special ones. The same rules for requests and
// responses; a request (`req`) adds Host and Expect.
HeadResult parse_headers(const char* p, size_t pos, size_t end, const Limits& limits, Header* storage, Special* s,
                         HeadFacts* facts, RequestHead* req) {
  size_t count = 0;
  while (pos < end) {
    const char* lf = static_cast<const char*>(std::memchr(p + pos, '\n', end - pos));
    size_t line_end = static_cast<size_t>(lf - p) - 1;  // the CR; find_head_end checked it is there
    std::string_view line(p + pos, line_end - pos);
    pos = line_end + 2;
    if (line.empty() || is_ows(line[0]))
      return fail(400, "obs_fold", "a header line starts with whitespace (obsolete line folding)");
    size_t colon = 0;
    while (colon < line.size() && is(line[colon], kTchar)) ++colon;
    if (colon == line.size() || line[colon] != ':') {
      if (colon < line.size() && is_ows(line[colon]))
        return fail(400, "space_before_colon", "whitespace between a header name and its colon");
      return fail(400, "header_name", "a header name has a character outside tchar, or no colon");
    }
    if (colon == 0) return fail(400, "header_name", "a header has an empty name");
    std::string_view name = line.substr(0, colon);
    std::string_view value = line.substr(colon + 1);
    while (!value.empty() && is_ows(value.front())) value.remove_prefix(1);
    while (!value.empty() && is_ows(value.back())) value.remove_suffix(1);
    for (char c : value)
      if (!is(c, kFieldChar) && !is_ows(c))
        return fail(400, "header_value", "a header value has a control character (NUL, CR, LF, DEL, ...)");
    if (count == limits.max_headers) return fail(431, "too_many_headers", "more header lines than allowed");
    storage[count++] = {name, value};

    HeadResult r{HeadStatus::kDone};
    switch (name.size()) {
      case 4:
        if (req != nullptr && equals_ignore_case(name, "host")) {
          if (++s->hosts > 1) return fail(400, "duplicate_host", "more than one Host header");
          if (!all_of(value, kHostChar)) return fail(400, "host", "Host is not a valid authority");
          req->host = value;
        }
        break;
      case 6:
        if (req != nullptr && equals_ignore_case(name, "expect") && equals_ignore_case(value, "100-continue"))
          req->expect_continue = true;
        break;
      case 7:
        if (equals_ignore_case(name, "upgrade")) facts->upgrade = true;
        break;
      case 10:
        if (equals_ignore_case(name, "connection")) r = add_connection(value, s, facts);
        break;
      case 14:
        if (equals_ignore_case(name, "content-length")) r = add_content_length(value, s);
        break;
      case 17:
        if (equals_ignore_case(name, "transfer-encoding")) r = add_transfer_encoding(value, s);
        break;
    }
    if (r.status == HeadStatus::kError) return r;
  }
  facts->headers = {storage, count};
  return {HeadStatus::kDone};
}

bool keep_alive_of(Version v, const Special& s) {
  return v == Version::kHttp11 ? !s.close : (s.keep_alive && !s.close);
}

HeadResult parse_request(std::span<const char> bytes, const Limits& limits, RequestHead* out, Header* storage,
                         uint32_t scan_from) {
  HeadResult end = find_head_end(bytes, scan_from, limits, true);
  if (end.status != HeadStatus::kDone) return end;
  const char* p = bytes.data();
  size_t head_len = end.consumed;
  *out = RequestHead{};

  size_t pos = skip_leading_crlf(p, head_len);
  const char* lf = static_cast<const char*>(std::memchr(p + pos, '\n', head_len - pos));
  std::string_view line(p + pos, static_cast<size_t>(lf - p) - 1 - pos);
  if (line.size() > limits.max_request_line) return fail(414, "request_line_too_long", "the request line is too long");

  size_t i = 0;
  while (i < line.size() && is(line[i], kTchar)) ++i;
  if (i == 0 || i == line.size() || line[i] != ' ')
    return fail(400, "method", "the method is not a token followed by one space");
  out->method_name = line.substr(0, i);
  out->method = method_of(out->method_name);
  size_t t = ++i;
  while (i < line.size() && is(line[i], kTargetChar)) ++i;
  if (i == t || i == line.size() || line[i] != ' ')
    return fail(400, "request_line", "the request line is not method SP target SP version");
  out->target = line.substr(t, i - t);
  HeadResult r = parse_version(line.substr(i + 1), &out->version);
  if (r.status == HeadStatus::kError) return r;
  r = parse_target(out->target, out->method, &out->form, &out->authority);
  if (r.status == HeadStatus::kError) return r;

  Special s;
  r = parse_headers(p, static_cast<size_t>(lf - p) + 1, head_len - 2, limits, storage, &s, out, out);
  if (r.status == HeadStatus::kError) return r;

  if (s.has_cl && s.has_te)
    return fail(400, "cl_and_te", "both Content-Length and Transfer-Encoding (a smuggling pattern)");
  if (s.has_te && out->version == Version::kHttp10) return fail(400, "te_in_http10", "Transfer-Encoding in HTTP/1.0");
  if (s.has_te && !s.chunked_last) return fail(501, "te_not_chunked", "the final transfer coding is not chunked");
  if (out->version == Version::kHttp11 && s.hosts == 0) return fail(400, "missing_host", "HTTP/1.1 without Host");
  if (out->form == TargetForm::kAbsolute && s.hosts == 1 && !equals_ignore_case(out->host, out->authority))
    return fail(400, "host_mismatch", "Host differs from the target's authority");
  if (out->authority.empty()) out->authority = out->host;

  if (s.has_te) {
    out->framing = {FramingKind::kChunked, 0};
  } else if (s.has_cl) {
    out->framing = {FramingKind::kContentLength, s.cl};
  }
  out->keep_alive = keep_alive_of(out->version, s);
  return end;
}

HeadResult parse_response(std::span<const char> bytes, Method method, const Limits& limits, ResponseHead* out,
                          Header* storage, uint32_t scan_from) {
  HeadResult end = find_head_end(bytes, scan_from, limits, false);
  if (end.status != HeadStatus::kDone) return end;
  const char* p = bytes.data();
  size_t head_len = end.consumed;
  *out = ResponseHead{};

  const char* lf = static_cast<const char*>(std::memchr(p, '\n', head_len));
  std::string_view line(p, static_cast<size_t>(lf - p) - 1);
  HeadResult r = parse_version(line.substr(0, 8), &out->version);
  if (r.status == HeadStatus::kError) return r;
  // status-line = HTTP-version SP 3DIGIT SP [reason]; the second SP is
  // optional here because servers commonly drop it with an empty reason.
  if (line.size() < 12 || line[8] != ' ' || !all_of(line.substr(9, 3), kDigit) || (line.size() > 12 && line[12] != ' '))
    return fail(400, "status_line", "the status line is not version SP 3DIGIT SP reason");
  out->status = static_cast<uint16_t>((line[9] - '0') * 100 + (line[10] - '0') * 10 + (line[11] - '0'));
  if (out->status < 100 || out->status > 599) return fail(400, "status", "the status code is outside 100-599");
  out->reason = line.size() > 12 ? line.substr(13) : std::string_view{};
  for (char c : out->reason)
    if (!is(c, kFieldChar) && !is_ows(c)) return fail(400, "reason", "the reason phrase has a control character");

  Special s;
  r = parse_headers(p, static_cast<size_t>(lf - p) + 1, head_len - 2, limits, storage, &s, out, nullptr);
  if (r.status == HeadStatus::kError) return r;
  if (s.has_cl && s.has_te)
    return fail(400, "cl_and_te", "both Content-Length and Transfer-Encoding (a smuggling pattern)");
  if (s.has_te && out->version == Version::kHttp10) return fail(400, "te_in_http10", "Transfer-Encoding in HTTP/1.0");

  // RFC 9112 §6.3, in its order.
  uint16_t st = out->status;
  if (st == 101) {
    out->framing = {FramingKind::kTunnel, 0};
  } else if (st < 200) {
    out->interim = true;
  } else if (method == Method::kConnect && st < 300) {
    out->framing = {FramingKind::kTunnel, 0};
  } else if (method == Method::kHead || st == 204 || st == 304) {
    // no body, whatever the headers say
  } else if (s.has_te) {
    // A response may end a non-chunked coding by closing (§6.3 item 4).
    out->framing = {s.chunked_last ? FramingKind::kChunked : FramingKind::kUntilClose, 0};
  } else if (s.has_cl) {
    out->framing = {FramingKind::kContentLength, s.cl};
  } else {
    out->framing = {FramingKind::kUntilClose, 0};
  }
  out->keep_alive = keep_alive_of(out->version, s) && out->framing.kind != FramingKind::kUntilClose &&
                    out->framing.kind != FramingKind::kTunnel;
  return end;
}

}  // namespace

bool is_tchar(char c) noexcept { return is(c, kTchar); }

bool is_token(std::string_view s) noexcept { return !s.empty() && all_of(s, kTchar); }

std::string_view next_list_element(std::string_view* list) {
  while (!list->empty()) {
    size_t comma = list->find(',');
    std::string_view e = list->substr(0, comma);
    list->remove_prefix(comma == std::string_view::npos ? list->size() : comma + 1);
    while (!e.empty() && is_ows(e.front())) e.remove_prefix(1);
    while (!e.empty() && is_ows(e.back())) e.remove_suffix(1);
    if (!e.empty()) return e;
  }
  return {};
}

HeadResult find_head_end(std::span<const char> bytes, uint32_t scan_from, const Limits& limits, bool request) {
  const char* p = bytes.data();
  const size_t n = bytes.size();
  const size_t start = request ? skip_leading_crlf(p, n) : 0;
  // Only the first max_head bytes can hold an acceptable head's end.
  const size_t limit = std::min<size_t>(n, limits.max_head);
  size_t pos = std::max<size_t>(std::min<size_t>(scan_from, limit), start);
  while (pos < limit) {
    const char* lf = static_cast<const char*>(std::memchr(p + pos, '\n', limit - pos));
    if (lf == nullptr) {
      pos = limit;
      break;
    }
    size_t i = static_cast<size_t>(lf - p);
    // Only CRLF ends a line: a bare LF is where parsers disagree.
    if (i == start || p[i - 1] != '\r') return fail(400, "bare_lf", "a line ends in LF without CR");
    if (i >= start + 3 && p[i - 2] == '\n' && p[i - 3] == '\r')
      return {HeadStatus::kDone, static_cast<uint32_t>(i + 1)};
    pos = i + 1;
  }
  // A request line too long is 414 even before its end arrives. Checked
  // only while earlier scans had not passed where its LF had to be.
  const size_t line_bound = start + size_t{limits.max_request_line} + 2;  // the line, CR, LF
  if (request && n >= line_bound && scan_from < line_bound &&
      std::memchr(p + start, '\n', line_bound - start) == nullptr)
    return fail(414, "request_line_too_long", "the request line is too long");
  if (n >= limits.max_head) return fail(431, "head_too_large", "the head is larger than allowed");
  return {HeadStatus::kIncomplete, static_cast<uint32_t>(pos)};
}

HeadResult parse_request_head(std::span<const char> bytes, const Limits& limits, RequestHead* out, Header* storage,
                              uint32_t scan_from) {
  return parse_request(bytes, limits, out, storage, scan_from);
}

HeadResult parse_response_head(std::span<const char> bytes, Method request_method, const Limits& limits,
                               ResponseHead* out, Header* storage, uint32_t scan_from) {
  HeadResult r = parse_response(bytes, request_method, limits, out, storage, scan_from);
  // A response we cannot parse cannot be forwarded: the client gets 502.
  if (r.status == HeadStatus::kError) r.error_status = 502;
  return r;
}

}  // namespace meshd::http
