// Typed socket addresses: what a connection's facts are made of.
//
// A SocketAddr is an IPv4 or IPv6 address with a port; a Cidr is a subnet.
// Both parse the forms an operator writes ("10.0.0.5:80", "[fd00::1]:80",
// "10.0.0.0/8") and reject anything else with a message naming the text.
#pragma once

#include <netinet/in.h>
#include <sys/socket.h>

#include <cstdint>
#include <string>
#include <string_view>

#include "base/result.h"

namespace meshd {

class SocketAddr {
 public:
  SocketAddr() noexcept;
  static Parsed<SocketAddr> parse(std::string_view text);
  // From what the kernel filled in (accept, getsockname, SO_ORIGINAL_DST).
  static SocketAddr from_sockaddr(const sockaddr* sa, socklen_t len) noexcept;
  static SocketAddr loopback(int family, uint16_t port) noexcept;

  int family() const noexcept { return storage_.ss_family; }
  bool is_v6() const noexcept { return family() == AF_INET6; }
  bool valid() const noexcept { return family() == AF_INET || family() == AF_INET6; }
  uint16_t port() const noexcept;
  void set_port(uint16_t port) noexcept;
  bool is_unspecified() const noexcept;  // 0.0.0.0 or ::
  bool is_loopback() const noexcept;     // 127.0.0.0/8 or ::1

  const sockaddr* sa() const noexcept { return reinterpret_cast<const sockaddr*>(&storage_); }
  sockaddr* sa() noexcept { return reinterpret_cast<sockaddr*>(&storage_); }
  socklen_t len() const noexcept;

  // "10.0.0.5:80" or "[fd00::1]:80"; host() without the port and brackets.
  std::string str() const;
  std::string host() const;
  // Writes str() into buf (no allocation); returns the length written.
  size_t format(char* buf, size_t cap) const noexcept;

  bool operator==(const SocketAddr& o) const noexcept;

 private:
  sockaddr_storage storage_;
};

class Cidr {
 public:
  static Parsed<Cidr> parse(std::string_view text);
  int family() const noexcept { return family_; }
  int prefix() const noexcept { return prefix_; }
  std::string str() const;  // canonical: host bits cleared

 private:
  int family_ = AF_INET;
  int prefix_ = 0;
  uint8_t bytes_[16] = {};
};

}  // namespace meshd
