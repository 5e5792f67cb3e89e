#include "http/error_response.h"

#include <algorithm>
#include <cstring>

namespace meshd::http {

namespace {

constexpr size_t kMaxReason = 64;

// A reason token is a metric label too: letters, digits and "_-." only.
bool reason_char(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' || c == '-' || c == '.';
}

size_t digits(size_t v) {
  size_t n = 1;
  while (v >= 10) {
    v /= 10;
    ++n;
  }
  return n;
}

// Appends to a buffer known to be large enough.
struct Writer {
  char* p;
  void put(std::string_view s) {
    std::memcpy(p, s.data(), s.size());
    p += s.size();
  }
  void put_number(size_t v) {
    size_t n = digits(v);
    for (size_t i = n; i-- > 0; v /= 10) p[i] = static_cast<char>('0' + v % 10);
    p += n;
  }
};

}  // namespace

std::string_view reason_phrase(uint16_t status) noexcept {
  switch (status) {
    case 400: return "Bad Request";
    case 403: return "Forbidden";
    case 408: return "Request Timeout";
    case 413: return "Content Too Large";
    case 414: return "URI Too Long";
    case 431: return "Request Header Fields Too Large";
    case 500: return "Internal Server Error";
    case 501: return "Not Implemented";
    case 502: return "Bad Gateway";
    case 503: return "Service Unavailable";
    case 504: return "Gateway Timeout";
    case 505: return "HTTP Version Not Supported";
  }
  return "Error";
}

size_t write_error_response(std::span<char> out, uint16_t status, std::string_view reason,
                            std::string_view message) noexcept {
  if (status < 100 || status > 599) status = 500;
  const std::string_view phrase = reason_phrase(status);
  if (reason.empty()) reason = "unknown";
  reason = reason.substr(0, kMaxReason);

  constexpr std::string_view kHeaders[] = {
      "HTTP/1.1 ",
      " ",
      "\r\ncontent-type: text/plain\r\ncontent-length: ",
      "\r\nconnection: close\r\nmeshd-proxy-error: ",
      "\r\n\r\n",
  };
  size_t fixed = 3 + phrase.size() + reason.size() + 1;  // status digits, phrase, reason, the body's '\n'
  for (std::string_view s : kHeaders) fixed += s.size();
  // The longest message that fits with its own length's digits.
  if (out.size() < fixed + digits(1)) return 0;
  size_t room = out.size() - fixed;
  size_t m = std::min(message.size(), room - 1);
  while (m > 0 && digits(m + 1) + m > room) --m;
  message = message.substr(0, m);

  Writer w{out.data()};
  w.put(kHeaders[0]);
  w.put_number(status);
  w.put(kHeaders[1]);
  w.put(phrase);
  w.put(kHeaders[2]);
  w.put_number(message.size() + 1);
  w.put(kHeaders[3]);
  char* r = w.p;
  w.put(reason);
  for (char* c = r; c < w.p; ++c)
    if (!reason_char(*c)) *c = '_';
  w.put(kHeaders[4]);
  w.put(message);
  w.put("\n");
  return static_cast<size_t>(w.p - out.data());
}

}  // namespace meshd::http
