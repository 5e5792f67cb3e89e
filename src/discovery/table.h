// DestinationTable: everything the discovery client knows, published as one
// immutable snapshot. Workers look a dialled address up here, per
// connection, without a lock.
#pragma once

#include <cstdint>
#include <cstring>
#include <map>
#include <memory>
#include <string>
#include <unordered_map>
#include <vector>

#include "base/addr.h"
#include "discovery/endpoint_set.h"

namespace meshd::discovery {

// A SocketAddr as a hash key: family, port and the address bytes.
struct AddrKey {
  uint8_t bytes[16] = {};
  uint16_t port = 0;
  uint8_t family = 0;
  static AddrKey of(const SocketAddr& a) noexcept {
    AddrKey k;
    k.family = static_cast<uint8_t>(a.family());
    k.port = a.port();
    if (a.family() == AF_INET)
      std::memcpy(k.bytes, &reinterpret_cast<const sockaddr_in*>(a.sa())->sin_addr, 4);
    else if (a.family() == AF_INET6)
      std::memcpy(k.bytes, &reinterpret_cast<const sockaddr_in6*>(a.sa())->sin6_addr, 16);
    return k;
  }
  bool operator==(const AddrKey& o) const noexcept {
    return family == o.family && port == o.port && std::memcmp(bytes, o.bytes, 16) == 0;
  }
};

struct AddrKeyHash {
  size_t operator()(const AddrKey& k) const noexcept {
    uint64_t a, b;
    std::memcpy(&a, k.bytes, 8);
    std::memcpy(&b, k.bytes + 8, 8);
    uint64_t h = (a * 0x9e3779b97f4a7c15ull) ^ (b + 0x632be59bd9b4e019ull + (uint64_t{k.port} << 8 | k.family));
    return static_cast<size_t>(h ^ (h >> 29));
  }
};

struct DestinationTable {
  std::unordered_map<AddrKey, Destination, AddrKeyHash> by_address;
  std::map<std::string, std::shared_ptr<const EndpointSet>> by_name;
  // Every service's counters seen since start, also of destinations since
  // evicted (Prometheus counters must not go backwards).
  std::vector<std::shared_ptr<ServiceStats>> stats;

  const Destination* find(const SocketAddr& a) const noexcept {
    auto it = by_address.find(AddrKey::of(a));
    return it == by_address.end() ? nullptr : &it->second;
  }
};

}  // namespace meshd::discovery
