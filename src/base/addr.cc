#include "base/addr.h"

#include <arpa/inet.h>

#include <cstdio>
#include <cstring>

#include "base/parse.h"

namespace meshd {

SocketAddr::SocketAddr() noexcept { std::memset(&storage_, 0, sizeof storage_); }

Parsed<SocketAddr> SocketAddr::parse(std::string_view text) {
  SocketAddr out;
  std::string host;
  std::string_view port_text;
  if (!text.empty() && text.front() == '[') {
    auto close = text.find(']');
    if (close == std::string_view::npos || close + 1 >= text.size() || text[close + 1] != ':')
      return invalid("'" + std::string(text) + "' is not an address: expected [IPv6]:PORT");
    host = std::string(text.substr(1, close - 1));
    port_text = text.substr(close + 2);
  } else {
    auto colon = text.rfind(':');
    if (colon == std::string_view::npos)
      return invalid("'" + std::string(text) + "' is not an address: expected IP:PORT");
    host = std::string(text.substr(0, colon));
    if (host.find(':') != std::string::npos)
      return invalid("'" + std::string(text) + "' is not an address: write IPv6 as [IPv6]:PORT");
    port_text = text.substr(colon + 1);
  }
  auto port = parse_port(port_text);
  if (!port) return invalid("'" + std::string(text) + "': " + port.error());
  auto* v4 = reinterpret_cast<sockaddr_in*>(&out.storage_);
  auto* v6 = reinterpret_cast<sockaddr_in6*>(&out.storage_);
  if (inet_pton(AF_INET, host.c_str(), &v4->sin_addr) == 1) {
    v4->sin_family = AF_INET;
    v4->sin_port = htons(*port);
  } else if (inet_pton(AF_INET6, host.c_str(), &v6->sin6_addr) == 1) {
    v6->sin6_family = AF_INET6;
    v6->sin6_port = htons(*port);
  } else {
    return invalid("'" + std::string(text) + "': '" + host + "' is not an IPv4 or IPv6 address");
  }
  return out;
}

SocketAddr SocketAddr::from_sockaddr(const sockaddr* sa, socklen_t len) noexcept {
  SocketAddr out;
  if (len > sizeof out.storage_) len = sizeof out.storage_;
  std::memcpy(&out.storage_, sa, len);
  return out;
}

SocketAddr SocketAddr::loopback(int family, uint16_t port) noexcept {
  SocketAddr out;
  if (family == AF_INET6) {
    auto* v6 = reinterpret_cast<sockaddr_in6*>(&out.storage_);
    v6->sin6_family = AF_INET6;
    v6->sin6_addr = in6addr_loopback;
    v6->sin6_port = htons(port);
  } else {
    auto* v4 = reinterpret_cast<sockaddr_in*>(&out.storage_);
    v4->sin_family = AF_INET;
    v4->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    v4->sin_port = htons(port);
  }
  return out;
}

std::optional<SocketAddr> SocketAddr::from_ip(std::string_view ip, uint16_t port) noexcept {
  if (ip.size() >= 2 && ip.front() == '[' && ip.back() == ']') {
    ip = ip.substr(1, ip.size() - 2);
    if (ip.find(':') == std::string_view::npos) return std::nullopt;  // "[10.0.0.1]" is not a form anyone writes
  }
  char text[INET6_ADDRSTRLEN + 1];
  if (ip.empty() || ip.size() >= sizeof text) return std::nullopt;
  std::memcpy(text, ip.data(), ip.size());
  text[ip.size()] = '\0';
  SocketAddr out;
  auto* v4 = reinterpret_cast<sockaddr_in*>(&out.storage_);
  auto* v6 = reinterpret_cast<sockaddr_in6*>(&out.storage_);
  if (inet_pton(AF_INET, text, &v4->sin_addr) == 1) {
    v4->sin_family = AF_INET;
    v4->sin_port = htons(port);
  } else if (inet_pton(AF_INET6, text, &v6->sin6_addr) == 1) {
    v6->sin6_family = AF_INET6;
    v6->sin6_port = htons(port);
  } else {
    return std::nullopt;
  }
  return out;
}

uint16_t SocketAddr::port() const noexcept {
  if (family() == AF_INET6) return ntohs(reinterpret_cast<const sockaddr_in6*>(&storage_)->sin6_port);
  if (family() == AF_INET) return ntohs(reinterpret_cast<const sockaddr_in*>(&storage_)->sin_port);
  return 0;
}

void SocketAddr::set_port(uint16_t port) noexcept {
  if (family() == AF_INET6) reinterpret_cast<sockaddr_in6*>(&storage_)->sin6_port = htons(port);
  if (family() == AF_INET) reinterpret_cast<sockaddr_in*>(&storage_)->sin_port = htons(port);
}

bool SocketAddr::is_unspecified() const noexcept {
  if (family() == AF_INET6)
    return IN6_IS_ADDR_UNSPECIFIED(&reinterpret_cast<const sockaddr_in6*>(&storage_)->sin6_addr);
  return reinterpret_cast<const sockaddr_in*>(&storage_)->sin_addr.s_addr == INADDR_ANY;
}

bool SocketAddr::is_loopback() const noexcept {
  if (family() == AF_INET6) return IN6_IS_ADDR_LOOPBACK(&reinterpret_cast<const sockaddr_in6*>(&storage_)->sin6_addr);
  return (ntohl(reinterpret_cast<const sockaddr_in*>(&storage_)->sin_addr.s_addr) >> 24) == 127;
}

socklen_t SocketAddr::len() const noexcept { return family() == AF_INET6 ? sizeof(sockaddr_in6) : sizeof(sockaddr_in); }

size_t SocketAddr::format(char* buf, size_t cap) const noexcept {
  char host[INET6_ADDRSTRLEN] = "?";
  int n;
  if (family() == AF_INET6) {
    inet_ntop(AF_INET6, &reinterpret_cast<const sockaddr_in6*>(&storage_)->sin6_addr, host, sizeof host);
    n = snprintf(buf, cap, "[%s]:%u", host, port());
  } else {
    inet_ntop(AF_INET, &reinterpret_cast<const sockaddr_in*>(&storage_)->sin_addr, host, sizeof host);
    n = snprintf(buf, cap, "%s:%u", host, port());
  }
  if (n < 0) return 0;
  return static_cast<size_t>(n) < cap ? static_cast<size_t>(n) : cap - 1;
}

std::string SocketAddr::str() const {
  char buf[INET6_ADDRSTRLEN + 10];
  size_t n = format(buf, sizeof buf);
  return std::string(buf, n);
}

std::string SocketAddr::host() const {
  char host[INET6_ADDRSTRLEN] = "?";
  if (family() == AF_INET6)
    inet_ntop(AF_INET6, &reinterpret_cast<const sockaddr_in6*>(&storage_)->sin6_addr, host, sizeof host);
  else
    inet_ntop(AF_INET, &reinterpret_cast<const sockaddr_in*>(&storage_)->sin_addr, host, sizeof host);
  return host;
}

bool SocketAddr::operator==(const SocketAddr& o) const noexcept {
  if (family() != o.family()) return false;
  if (family() == AF_INET6) {
    auto* a = reinterpret_cast<const sockaddr_in6*>(&storage_);
    auto* b = reinterpret_cast<const sockaddr_in6*>(&o.storage_);
    return a->sin6_port == b->sin6_port && std::memcmp(&a->sin6_addr, &b->sin6_addr, 16) == 0;
  }
  auto* a = reinterpret_cast<const sockaddr_in*>(&storage_);
  auto* b = reinterpret_cast<const sockaddr_in*>(&o.storage_);
  return a->sin_port == b->sin_port && a->sin_addr.s_addr == b->sin_addr.s_addr;
}

Parsed<Cidr> Cidr::parse(std::string_view text) {
  Cidr out;
  auto slash = text.find('/');
  std::string host(text.substr(0, slash));
  if (inet_pton(AF_INET, host.c_str(), out.bytes_) == 1) {
    out.family_ = AF_INET;
  } else if (inet_pton(AF_INET6, host.c_str(), out.bytes_) == 1) {
    out.family_ = AF_INET6;
  } else {
    return invalid("'" + std::string(text) + "' is not a subnet: expected ADDRESS/PREFIX");
  }
  int max = out.family_ == AF_INET ? 32 : 128;
  if (slash == std::string_view::npos) {
    out.prefix_ = max;
  } else {
    auto prefix = parse_u64(text.substr(slash + 1));
    if (!prefix || *prefix > static_cast<uint64_t>(max))
      return invalid("'" + std::string(text) + "': prefix length must be 0.." + std::to_string(max));
    out.prefix_ = static_cast<int>(*prefix);
  }
  // Clear host bits so that "10.1.2.3/8" and "10.0.0.0/8" render the same.
  int bytes = max / 8;
  for (int i = 0; i < bytes; ++i) {
    int keep = out.prefix_ - i * 8;
    if (keep <= 0)
      out.bytes_[i] = 0;
    else if (keep < 8)
      out.bytes_[i] &= static_cast<uint8_t>(0xff << (8 - keep));
  }
  return out;
}

Parsed<bool> check_host_name(std::string_view name) {
  auto bad = [&](const std::string& why) { return invalid("'" + std::string(name) + "' is not a host name: " + why); };
  if (name.empty()) return invalid("empty host name");
  std::string_view rest = name;
  if (rest.back() == '.') rest.remove_suffix(1);
  if (rest.empty()) return bad("no labels");
  if (rest.size() > 253) return bad("longer than 253 characters");
  std::string_view last;
  while (true) {
    auto dot = rest.find('.');
    std::string_view label = rest.substr(0, dot);
    if (label.empty()) return bad("empty label (two dots in a row, or a leading dot)");
    if (label.size() > 63)
      return bad("label '" + std::string(label.substr(0, 16)) + "...' is longer than 63 characters");
    for (char c : label) {
      bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' || c == '_';
      if (!ok) {
        std::string shown = (c >= ' ' && c < 0x7f) ? std::string("'") + c + "'" : "byte " + std::to_string(uint8_t(c));
        return bad(shown + " is not allowed (letters, digits, '-', '_' and dots)");
      }
    }
    if (label.front() == '-' || label.back() == '-')
      return bad("label '" + std::string(label) + "' starts or ends with '-'");
    last = label;
    if (dot == std::string_view::npos) break;
    rest.remove_prefix(dot + 1);
  }
  if (last.find_first_not_of("0123456789") == std::string_view::npos)
    return bad("not an IP address, and a host name cannot end in an all-numeric label");
  return true;
}

Parsed<HostPort> HostPort::parse(std::string_view text) {
  HostPort out;
  std::string_view host;
  std::string_view port_text;
  const std::string quoted = "'" + std::string(text) + "'";
  if (!text.empty() && text.front() == '[') {
    auto close = text.find(']');
    if (close == std::string_view::npos || close + 1 >= text.size() || text[close + 1] != ':')
      return invalid(quoted + " is not HOST:PORT: expected [IPv6]:PORT");
    host = text.substr(1, close - 1);
    port_text = text.substr(close + 2);
    auto ip = SocketAddr::from_ip(host, 0);
    if (!ip || !ip->is_v6()) return invalid(quoted + ": '" + std::string(host) + "' is not an IPv6 address");
  } else {
    auto colon = text.rfind(':');
    if (colon == std::string_view::npos) return invalid(quoted + " is not HOST:PORT: the port is missing");
    host = text.substr(0, colon);
    if (host.find(':') != std::string_view::npos)
      return invalid(quoted + " is not HOST:PORT: write IPv6 as [IPv6]:PORT");
    port_text = text.substr(colon + 1);
    if (host.empty()) return invalid(quoted + " is not HOST:PORT: the host is missing");
    if (!SocketAddr::from_ip(host, 0)) {
      auto name = check_host_name(host);
      if (!name) return invalid(quoted + ": " + name.error());
    }
  }
  auto port = parse_port(port_text);
  if (!port) return invalid(quoted + ": " + port.error());
  out.host = std::string(host);
  out.port = *port;
  return out;
}

Parsed<std::vector<HostPort>> HostPort::parse_list(std::string_view text) {
  std::vector<HostPort> out;
  for (const auto& item : split_list(text)) {
    auto hp = parse(item);
    if (!hp) return invalid(hp.error());
    out.push_back(std::move(*hp));
  }
  if (out.empty()) return invalid("'" + std::string(text) + "' is empty: expected HOST:PORT[,HOST:PORT...]");
  return out;
}

std::optional<SocketAddr> HostPort::literal() const noexcept { return SocketAddr::from_ip(host, port); }

std::string HostPort::str() const {
  if (host.find(':') != std::string::npos) return "[" + host + "]:" + std::to_string(port);
  return host + ":" + std::to_string(port);
}

std::string Cidr::str() const {
  char host[INET6_ADDRSTRLEN];
  inet_ntop(family_, bytes_, host, sizeof host);
  return std::string(host) + "/" + std::to_string(prefix_);
}

}  // namespace meshd
