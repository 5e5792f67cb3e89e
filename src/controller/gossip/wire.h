// Sealed gossip messages: what goes on the wire between controllers.
//
// Every UDP datagram and every TCP push-pull frame is
//
//   magic "MGS1" | key id (4) | sent unix ms (8) | nonce (8) | HMAC (32) | payload
//
// with the HMAC-SHA256, under the shared cluster key, over everything but
// the HMAC itself. The key id (derived from the key, so it reveals nothing
// useful) tells "another cluster" from "tampered"; the timestamp bounds a
// replay to a window of kMaxClockSkewMs, and the nonce, remembered for that
// window, refuses a replay inside it. Only packets that passed the HMAC
// reach the nonce memory, so an outsider cannot fill it.
#pragma once

#include <array>
#include <cstdint>
#include <deque>
#include <expected>
#include <random>
#include <string>
#include <string_view>
#include <unordered_set>

#include "base/result.h"
#include "base/secret.h"

namespace meshd::controller::gossip {

inline constexpr size_t kMaxPacketBytes = 1400;  // a sealed UDP datagram, under any usual MTU
inline constexpr size_t kHeaderBytes = 4 + 4 + 8 + 8 + 32;
inline constexpr uint64_t kMaxClockSkewMs = 30'000;
inline constexpr size_t kMinKeyBytes = 32;
inline constexpr size_t kMaxRememberedNonces = 200'000;

// Why a packet (or a push-pull frame) was dropped; the label of
// gossip_packets_dropped_total.
enum class Drop : uint8_t {
  kMalformed = 0,  // too short, bad magic, or a payload that does not parse
  kWrongCluster,   // sealed with another key
  kBadMac,         // our key id, but the HMAC does not match: tampered or forged
  kStale,          // timestamp outside the allowed clock skew
  kReplay,         // a nonce seen within the window
  kOversize,       // larger than allowed
  kOverload,       // the nonce memory is full: too many packets in the window
  kCount,
};
const char* drop_name(Drop d) noexcept;

using meshd::Mac;

class ClusterKey {
 public:
  // The key file holds at least 32 bytes: hex (64+ hex digits), or raw
  // bytes; surrounding whitespace is ignored. The error is one line.
  static Parsed<ClusterKey> load(const std::string& path);
  static Parsed<ClusterKey> from_text(std::string_view text, const std::string& origin);
  const std::string& bytes() const noexcept { return bytes_; }
  uint32_t id() const noexcept { return id_; }

 private:
  static ClusterKey from_bytes(std::string bytes);
  std::string bytes_;
  uint32_t id_ = 0;
};

class Sealer {
 public:
  Sealer(ClusterKey key, uint64_t seed) : key_(std::move(key)), rng_(seed) {}

  std::string seal(std::string_view payload, uint64_t now_unix_ms);
  // The payload (a view into sealed) when it is authentic and fresh.
  std::expected<std::string_view, Drop> open(std::string_view sealed, uint64_t now_unix_ms);

 private:
  ClusterKey key_;
  std::mt19937_64 rng_;
  // Nonces of accepted messages within the window, oldest first.
  std::deque<std::pair<uint64_t, uint64_t>> nonce_order_;  // (expiry ms, nonce)
  std::unordered_set<uint64_t> nonces_;
};

}  // namespace meshd::controller::gossip
