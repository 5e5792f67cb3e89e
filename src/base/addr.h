// Typed socket addresses: what a connection's facts are made of.
//
// A SocketAddr is an IPv4 or IPv6 address with a port; a Cidr is a subnet.
// Both parse the forms an operator writes ("10.0.0.5:80", "[fd00::1]:80",
// "10.0.0.0/8") and reject anything else with a message naming the text.
#pragma once

#include <netinet/in.h>
#include <sys/socket.h>

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "base/result.h"

namespace meshd {

class SocketAddr {
 public:
  SocketAddr() noexcept;
  static Parsed<SocketAddr> parse(std::string_view text);
  // From what the kernel filled in (accept, getsockname, SO_ORIGINAL_DST).
  static SocketAddr from_sockaddr(const sockaddr* sa, socklen_t len) noexcept;
  static SocketAddr loopback(int family, uint16_t port) noexcept;
  // A literal IP without a port ("10.0.0.5", "fd00::1" or "[fd00::1]") with
  // port; nullopt when ip is anything else (such as a host name).
  static std::optional<SocketAddr> from_ip(std::string_view ip, uint16_t port) noexcept;

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

// Whether name is a DNS host name we are willing to ask about: at most 253
// characters (one trailing dot allowed), labels of 1-63 letters, digits, '-'
// or '_' that neither start nor end with '-', and a last label that is not
// all digits (so that a mistyped IPv4 address is not sent to DNS). The error
// names the text and the rule it broke.
Parsed<bool> check_host_name(std::string_view name);

// HOST:PORT as operators write a peer they want reached by name or address:
// "controller.example:4190", "10.0.0.5:4190", "[fd00::1]:4190". The host is
// kept as written (without brackets); resolving a name is the resolver's job.
struct HostPort {
  std::string host;
  uint16_t port = 0;

  static Parsed<HostPort> parse(std::string_view text);
  // "a:1,b:2" (spaces around items allowed); an empty list is an error.
  static Parsed<std::vector<HostPort>> parse_list(std::string_view text);
  // The address when host is a literal IP, nullopt for a name.
  std::optional<SocketAddr> literal() const noexcept;
  std::string str() const;  // brackets around IPv6, as parse() reads it
  bool operator==(const HostPort& o) const = default;
};

}  // namespace meshd
