#include "ctl/admin_client.h"

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <cstdlib>
#include <cstring>
#include <optional>

#include "base/ascii.h"
#include "base/parse.h"
#include "io/stream.h"
#include "version.h"

#ifndef MESHD_VERSION
#define MESHD_VERSION "0.0.0"
#endif

namespace meshd::ctl {

namespace {

// Short, printable rendering of peer bytes for error messages: a garbage
// answer should be recognizable ("SSH-2.0-...") without flooding the terminal.
std::string printable_prefix(std::string_view s, size_t max = 40) {
  std::string out;
  for (size_t i = 0; i < s.size() && i < max; ++i) {
    unsigned char c = static_cast<unsigned char>(s[i]);
    out += (c >= 0x20 && c < 0x7f) ? static_cast<char>(c) : '.';
  }
  if (s.size() > max) out += "...";
  return out;
}

std::string_view next_line(std::string_view& rest) {
  size_t eol = rest.find("\r\n");
  std::string_view line = rest.substr(0, eol);
  rest.remove_prefix(eol == std::string_view::npos ? rest.size() : eol + 2);
  return line;
}

Parsed<size_t> parse_content_length(std::string_view v) {
  v = trim(v);
  size_t n = 0;
  auto [p, ec] = std::from_chars(v.data(), v.data() + v.size(), n);
  if (v.empty() || ec != std::errc() || p != v.data() + v.size())
    return invalid("bad Content-Length '" + printable_prefix(v) + "'");
  return n;
}

// Decodes a chunked body; `max_body` bounds the decoded size so a peer
// cannot make us allocate without limit.
Parsed<std::string> decode_chunked(std::string_view rest, size_t max_body) {
  std::string body;
  for (;;) {
    size_t eol = rest.find("\r\n");
    if (eol == std::string_view::npos) return invalid("truncated chunked body (no chunk size line)");
    std::string_view size_text = rest.substr(0, eol);
    size_text = size_text.substr(0, size_text.find(';'));  // chunk extensions are ignored
    size_text = trim(size_text);
    size_t n = 0;
    auto [p, ec] = std::from_chars(size_text.data(), size_text.data() + size_text.size(), n, 16);
    if (size_text.empty() || ec != std::errc() || p != size_text.data() + size_text.size())
      return invalid("bad chunk size '" + printable_prefix(size_text) + "'");
    rest.remove_prefix(eol + 2);
    if (n == 0) return body;  // trailers, if any, are of no interest
    if (n > max_body - body.size())
      return invalid("response body larger than the limit of " + std::to_string(max_body) + " bytes");
    if (rest.size() < n + 2) return invalid("truncated chunked body");
    body.append(rest.substr(0, n));
    if (rest.substr(n, 2) != "\r\n") return invalid("chunk not followed by CRLF");
    rest.remove_prefix(n + 2);
  }
}

}  // namespace

const std::string* HttpResponse::header(std::string_view name) const {
  for (const auto& [k, v] : headers) {
    if (equals_ignore_case(k, name)) return &v;
  }
  return nullptr;
}

Parsed<HttpResponse> parse_http_response(std::string_view raw, size_t max_body) {
  if (raw.empty()) return invalid("empty response (the peer closed without answering)");
  if (!raw.starts_with("HTTP/1."))
    return invalid("not an HTTP response (starts with \"" + printable_prefix(raw) + "\")");
  size_t head_end = raw.find("\r\n\r\n");
  if (head_end == std::string_view::npos) return invalid("truncated response: headers never ended");
  std::string_view head = raw.substr(0, head_end + 2);
  std::string_view rest = raw.substr(head_end + 4);

  HttpResponse resp;
  // Status line: "HTTP/1.1 200 OK" (the reason phrase may be empty).
  std::string_view status_line = next_line(head);
  if (status_line.size() < 12 || status_line[8] != ' ')
    return invalid("bad status line \"" + printable_prefix(status_line) + "\"");
  std::string_view code = status_line.substr(9, 3);
  for (char c : code) {
    if (c < '0' || c > '9') return invalid("bad status line \"" + printable_prefix(status_line) + "\"");
  }
  if (status_line.size() > 12 && status_line[12] != ' ')
    return invalid("bad status line \"" + printable_prefix(status_line) + "\"");
  resp.status = (code[0] - '0') * 100 + (code[1] - '0') * 10 + (code[2] - '0');
  if (status_line.size() > 13) resp.reason = std::string(status_line.substr(13));

  while (!head.empty()) {
    std::string_view line = next_line(head);
    size_t colon = line.find(':');
    if (colon == std::string_view::npos || colon == 0)
      return invalid("bad header line \"" + printable_prefix(line) + "\"");
    resp.headers.emplace_back(std::string(line.substr(0, colon)), std::string(trim(line.substr(colon + 1))));
  }

  // 1xx, 204 and 304 never have a body, whatever the headers say.
  if (resp.status < 200 || resp.status == 204 || resp.status == 304) return resp;

  const std::string* te = resp.header("Transfer-Encoding");
  if (te && equals_ignore_case(trim(*te), "chunked")) {
    auto body = decode_chunked(rest, max_body);
    if (!body) return invalid(body.error());
    resp.body = std::move(*body);
    return resp;
  }
  if (const std::string* cl = resp.header("Content-Length")) {
    auto n = parse_content_length(*cl);
    if (!n) return invalid(n.error());
    if (*n > max_body)
      return invalid("response body of " + std::to_string(*n) + " bytes is larger than the limit of " +
                     std::to_string(max_body));
    if (rest.size() < *n)
      return invalid("truncated body: Content-Length is " + std::to_string(*n) + " but only " +
                     std::to_string(rest.size()) + " bytes arrived");
    // Bytes past Content-Length are ignored: with Connection: close there is
    // no next response they could belong to.
    resp.body = std::string(rest.substr(0, *n));
    return resp;
  }
  if (rest.size() > max_body)
    return invalid("response body larger than the limit of " + std::to_string(max_body) + " bytes");
  resp.body = std::string(rest);
  return resp;
}

size_t http_response_complete_size(std::string_view raw) {
  size_t head_end = raw.find("\r\n\r\n");
  if (head_end == std::string_view::npos) return 0;
  std::string_view head = raw.substr(0, head_end + 2);
  next_line(head);  // status line
  std::optional<size_t> length;
  while (!head.empty()) {
    std::string_view line = next_line(head);
    size_t colon = line.find(':');
    if (colon == std::string_view::npos) return 0;
    std::string_view name = line.substr(0, colon);
    // Chunked or ambiguous framing: read to EOF and let the parser judge.
    if (equals_ignore_case(name, "Transfer-Encoding")) return 0;
    if (equals_ignore_case(name, "Content-Length")) {
      auto n = parse_content_length(line.substr(colon + 1));
      if (!n || (length && *length != *n)) return 0;
      length = *n;
    }
  }
  if (!length) return 0;
  return head_end + 4 + *length;
}

Parsed<AdminTarget> parse_admin_target(std::string_view text) {
  std::string_view t = trim(text);
  // "localhost" is what people type; resolving it to IPv4 loopback avoids a
  // resolver (and its own timeouts) in a tool meant to diagnose networking.
  std::string rewritten;
  if (t.starts_with("localhost:")) {
    rewritten = "127.0.0.1" + std::string(t.substr(9));
    t = rewritten;
  }
  auto addr = SocketAddr::parse(t);
  if (!addr) return invalid(addr.error() + " (expected HOST:PORT with an IP address, e.g. 127.0.0.1:4191)");
  return AdminTarget{*addr, std::string(trim(text))};
}

Parsed<AdminTarget> resolve_admin_target(std::string_view flag_value) {
  if (!flag_value.empty()) {
    auto t = parse_admin_target(flag_value);
    if (!t) return invalid("--admin: " + t.error());
    return t;
  }
  if (const char* env = std::getenv("MESHD_ADMIN"); env && *env) {
    auto t = parse_admin_target(env);
    if (!t) return invalid("MESHD_ADMIN: " + t.error());
    return t;
  }
  return parse_admin_target(kDefaultAdmin);
}

namespace {

AdminError unreachable(std::string why) { return AdminError{AdminError::Kind::kUnreachable, std::move(why)}; }
AdminError protocol(std::string why) { return AdminError{AdminError::Kind::kProtocol, std::move(why)}; }

}  // namespace

std::expected<std::string, AdminError> admin_get(const AdminTarget& target, std::string_view path, uint64_t timeout_ms,
                                                 size_t max_response_bytes) {
  auto stream = io::Stream::connect(target.addr, timeout_ms);
  if (!stream) return std::unexpected(unreachable(stream.error()));
  std::string request = "GET " + std::string(path) + " HTTP/1.1\r\nHost: " + target.addr.str() +
                        "\r\nUser-Agent: meshd-ctl/" MESHD_VERSION
                        "\r\nAccept: application/json, text/plain\r\nConnection: close\r\n\r\n";
  if (auto sent = stream->send_all(request); !sent) return std::unexpected(unreachable(sent.error()));

  // Headers are small; allow them on top of the body limit so a body of
  // exactly the limit still fits.
  const size_t max_raw = max_response_bytes + 64 * 1024;
  std::string raw;
  char buf[16384];
  for (;;) {
    if (size_t need = http_response_complete_size(raw); need != 0 && raw.size() >= need) break;
    auto n = stream->recv_some(buf, sizeof buf);
    if (!n) {
      if (raw.empty()) return std::unexpected(unreachable("connected, but " + n.error()));
      return std::unexpected(protocol("response incomplete: " + n.error()));
    }
    if (*n == 0) break;  // peer closed: the response is whatever arrived
    if (raw.size() + *n > max_raw)
      return std::unexpected(
          protocol("response larger than the limit of " + std::to_string(max_response_bytes) + " bytes"));
    raw.append(buf, *n);
  }

  auto resp = parse_http_response(raw, max_response_bytes);
  if (!resp) return std::unexpected(protocol(resp.error()));
  if (resp->status < 200 || resp->status > 299) {
    std::string msg = "GET " + std::string(path) + " answered " + std::to_string(resp->status);
    if (!resp->reason.empty()) msg += " " + resp->reason;
    // The body of an error often says why; one line of it is enough.
    std::string_view first = trim(std::string_view(resp->body).substr(0, resp->body.find('\n')));
    std::string said = printable_prefix(first, 120);
    if (!first.empty()) msg += ": " + said;
    return std::unexpected(AdminError{AdminError::Kind::kStatus, std::move(msg), resp->status, std::move(said)});
  }
  return std::move(resp->body);
}

std::string describe_admin_error(const AdminTarget& target, const AdminError& err) {
  if (err.kind == AdminError::Kind::kUnreachable) {
    return "no proxy answering at " + target.text + " (" + err.message +
           "); is meshd running? (--admin to point elsewhere)";
  }
  return "admin endpoint " + target.text + ": " + err.message;
}

}  // namespace meshd::ctl
