#include "controller/http_response.h"

#include <algorithm>
#include <optional>

#include "base/ascii.h"
#include "base/parse.h"

namespace meshd::controller {
namespace {

// A chunk-size line is a hex number and optional extensions; anything
// longer than this is not one we need to read.
constexpr size_t kMaxChunkLine = 1024;

// Peer bytes in messages: printable, and short.
std::string shown(std::string_view s, size_t max = 60) {
  std::string out;
  for (char c : s.substr(0, max)) out += (c >= 0x20 && c < 0x7f) ? c : '.';
  if (s.size() > max) out += "...";
  return out;
}

std::string size_text(size_t n) {
  if (n >= (1u << 20) && n % (1u << 20) == 0) return std::to_string(n >> 20) + " MiB";
  if (n >= 1024 && n % 1024 == 0) return std::to_string(n >> 10) + " KiB";
  return std::to_string(n) + " bytes";
}

// RFC 9110 token characters, for header names.
bool token_char(char c) {
  if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9')) return true;
  return std::string_view("!#$%&'*+-.^_`|~").find(c) != std::string_view::npos;
}

// Decimal digits only, without overflow; nullopt otherwise.
std::optional<uint64_t> parse_decimal(std::string_view s) {
  if (s.empty() || s.size() > 19) return std::nullopt;
  uint64_t n = 0;
  for (char c : s) {
    if (c < '0' || c > '9') return std::nullopt;
    n = n * 10 + static_cast<uint64_t>(c - '0');
  }
  return n;
}

std::optional<uint64_t> parse_hex(std::string_view s) {
  if (s.empty() || s.size() > 15) return std::nullopt;  // 15 digits: no overflow, far past any limit
  uint64_t n = 0;
  for (char c : s) {
    c = ascii_lower(c);
    int d = c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
    if (d < 0) return std::nullopt;
    n = n * 16 + static_cast<uint64_t>(d);
  }
  return n;
}

}  // namespace

const std::string* HttpResponse::header(std::string_view name) const {
  for (const auto& [k, v] : headers)
    if (equals_ignore_case(k, name)) return &v;
  return nullptr;
}

Parsed<bool> HttpResponseReader::fail(std::string message) {
  phase_ = Phase::kFailed;
  error_ = std::move(message);
  pending_.clear();
  return invalid(error_);
}

Parsed<void> HttpResponseReader::append_body(std::string_view data) {
  if (data.size() > limits_.max_body_bytes - response_.body.size()) {
    fail("the response body is over " + size_text(limits_.max_body_bytes));
    return invalid(error_);
  }
  response_.body.append(data);
  return {};
}

Parsed<bool> HttpResponseReader::feed(std::string_view data) {
  if (phase_ == Phase::kFailed) return invalid(error_);
  if (phase_ == Phase::kDone) return true;
  // Body bytes framed by length go straight to the body: no second copy.
  if (phase_ == Phase::kToClose && pending_.empty()) {
    if (auto ok = append_body(data); !ok) return invalid(ok.error());
    return false;
  }
  pending_.append(data);
  return step();
}

Parsed<bool> HttpResponseReader::step() {
  size_t used = 0;  // bytes of pending_ consumed by this call
  auto rest = [&] { return std::string_view(pending_).substr(used); };
  for (;;) {
    switch (phase_) {
      case Phase::kHead: {
        std::string_view r = rest();
        // Say early that this is not HTTP, rather than after 16 KiB of it.
        std::string_view prefix = r.substr(0, 5);
        if (!std::string_view("HTTP/").starts_with(prefix))
          return fail("the answer is not HTTP (it starts with \"" + shown(r, 20) + "\")");
        size_t end = r.find("\r\n\r\n");
        size_t have = end == std::string_view::npos ? r.size() : end + 4;
        if (head_used_ + have > limits_.max_head_bytes)
          return fail("the response's status line and headers are over " + size_text(limits_.max_head_bytes));
        if (end == std::string_view::npos) {
          pending_.erase(0, used);
          return false;
        }
        head_used_ += have;
        used += have;
        if (auto ok = parse_head(r.substr(0, end + 2)); !ok) return invalid(ok.error());
        break;
      }
      case Phase::kLength:
      case Phase::kChunkData: {
        std::string_view r = rest();
        size_t n = static_cast<size_t>(std::min<uint64_t>(remaining_, r.size()));
        if (auto ok = append_body(r.substr(0, n)); !ok) return invalid(ok.error());
        used += n;
        remaining_ -= n;
        if (remaining_ > 0) {
          pending_.clear();
          return false;
        }
        phase_ = phase_ == Phase::kLength ? Phase::kDone : Phase::kChunkEnd;
        break;
      }
      case Phase::kChunkEnd: {
        std::string_view r = rest();
        if (r.size() < 2) {
          pending_.erase(0, used);
          return false;
        }
        if (!r.starts_with("\r\n")) return fail("a chunk of the response body is not followed by CRLF");
        used += 2;
        phase_ = Phase::kChunkSize;
        break;
      }
      case Phase::kChunkSize: {
        std::string_view r = rest();
        size_t eol = r.find("\r\n");
        if (eol == std::string_view::npos) {
          if (r.size() > kMaxChunkLine) return fail("a chunk-size line of the response body is too long");
          pending_.erase(0, used);
          return false;
        }
        if (eol > kMaxChunkLine) return fail("a chunk-size line of the response body is too long");
        std::string_view line = r.substr(0, eol);
        std::string_view digits = trim(line.substr(0, line.find(';')));  // extensions are ignored
        auto n = parse_hex(digits);
        if (!n) return fail("bad chunk size \"" + shown(line) + "\" in the response body");
        if (*n > limits_.max_body_bytes - response_.body.size())
          return fail("the response body is over " + size_text(limits_.max_body_bytes));
        used += eol + 2;
        remaining_ = *n;
        phase_ = *n == 0 ? Phase::kTrailers : Phase::kChunkData;
        break;
      }
      case Phase::kTrailers: {
        std::string_view r = rest();
        size_t eol = r.find("\r\n");
        size_t have = eol == std::string_view::npos ? r.size() : eol + 2;
        if (head_used_ + have > limits_.max_head_bytes)
          return fail("the response's headers and trailers are over " + size_text(limits_.max_head_bytes));
        if (eol == std::string_view::npos) {
          pending_.erase(0, used);
          return false;
        }
        head_used_ += have;
        used += have;
        if (eol == 0) phase_ = Phase::kDone;  // trailers themselves are of no interest
        break;
      }
      case Phase::kToClose: {
        if (auto ok = append_body(rest()); !ok) return invalid(ok.error());
        pending_.clear();
        return false;
      }
      case Phase::kDone: pending_.clear(); return true;
      case Phase::kFailed: return invalid(error_);
    }
  }
}

Parsed<bool> HttpResponseReader::parse_head(std::string_view head) {
  size_t eol = head.find("\r\n");
  std::string_view status_line = head.substr(0, eol);
  head.remove_prefix(eol + 2);
  // "HTTP/1.1 200 OK"; the reason phrase may be empty, and so may the space before it.
  const std::string bad_status = "bad status line \"" + shown(status_line) + "\"";
  if (status_line.size() < 12 || !(status_line.starts_with("HTTP/1.1 ") || status_line.starts_with("HTTP/1.0 ")))
    return fail(bad_status);
  auto code = parse_decimal(status_line.substr(9, 3));
  if (!code || *code < 100 || *code > 599 || (status_line.size() > 12 && status_line[12] != ' '))
    return fail(bad_status);
  HttpResponse r;
  r.status = static_cast<int>(*code);
  if (status_line.size() > 13) r.reason = shown(status_line.substr(13), 200);
  while (!head.empty()) {
    eol = head.find("\r\n");
    std::string_view line = head.substr(0, eol);
    head.remove_prefix(eol + 2);
    size_t colon = line.find(':');
    std::string_view name = line.substr(0, colon);
    // No whitespace before the colon, no folded lines (RFC 9112 5.1, 5.2):
    // both are ways two parsers come to disagree.
    if (colon == std::string_view::npos || name.empty() || !std::ranges::all_of(name, token_char))
      return fail("bad header line \"" + shown(line) + "\" in the response");
    std::string_view value = trim(line.substr(colon + 1));
    for (char c : value)
      if ((static_cast<unsigned char>(c) < 0x20 && c != '\t') || c == 0x7f)
        return fail("a control character in the response's " + shown(name) + " header");
    r.headers.emplace_back(std::string(name), std::string(value));
  }
  if (r.status == 101) return fail("the server switched protocols (HTTP 101), which was not asked for");
  if (r.status < 200) return false;  // an interim answer: the real one follows
  response_ = std::move(r);

  if (response_.status == 204 || response_.status == 304) {
    phase_ = Phase::kDone;
    return true;
  }
  // Transfer-Encoding wins over Content-Length (RFC 9112 6.3); a coding
  // other than chunked last means the body runs to the close.
  std::string codings;
  std::string length;
  bool has_length = false;
  for (const auto& [k, v] : response_.headers) {
    if (equals_ignore_case(k, "Transfer-Encoding")) codings += (codings.empty() ? "" : ",") + v;
    if (!equals_ignore_case(k, "Content-Length")) continue;
    // Repeated values (as headers or as a list) must all agree.
    for (const std::string& item : split_list(v)) {
      if (has_length && item != length)
        return fail("the response has conflicting Content-Length values (" + shown(length) + ", " + shown(item) + ")");
      length = item;
      has_length = true;
    }
    if (!has_length) return fail("the response has an empty Content-Length");
  }
  if (!codings.empty()) {
    std::string_view last = codings;
    if (size_t comma = last.rfind(','); comma != std::string_view::npos) last.remove_prefix(comma + 1);
    phase_ = equals_ignore_case(trim(last), "chunked") ? Phase::kChunkSize : Phase::kToClose;
    return true;
  }
  if (has_length) {
    auto n = parse_decimal(length);
    if (!n) return fail("bad Content-Length \"" + shown(length) + "\" in the response");
    if (*n > limits_.max_body_bytes)
      return fail("the response body is " + std::to_string(*n) + " bytes, over the " +
                  size_text(limits_.max_body_bytes) + " allowed");
    remaining_ = *n;
    response_.body.reserve(static_cast<size_t>(*n));
    phase_ = *n == 0 ? Phase::kDone : Phase::kLength;
    return true;
  }
  phase_ = Phase::kToClose;
  return true;
}

Parsed<void> HttpResponseReader::end_of_stream() {
  switch (phase_) {
    case Phase::kDone: return {};
    case Phase::kToClose: phase_ = Phase::kDone; return {};
    case Phase::kFailed: return invalid(error_);
    case Phase::kHead:
      fail(head_used_ == 0 && pending_.empty() ? "the connection closed without an answer"
                                               : "the connection closed in the middle of the response's headers");
      return invalid(error_);
    case Phase::kLength:
      fail("the connection closed with " + std::to_string(remaining_) + " bytes of the response body still to come");
      return invalid(error_);
    case Phase::kChunkSize:
    case Phase::kChunkData:
    case Phase::kChunkEnd:
    case Phase::kTrailers:
      fail("the connection closed in the middle of the chunked response body");
      return invalid(error_);
  }
  return {};
}

}  // namespace meshd::controller
