#include "controller/gossip/wire.h"

#include <cstring>

#include "base/bytes.h"
#include "base/parse.h"
#include "base/secret.h"

namespace meshd::controller::gossip {
namespace {

constexpr char kMagic[4] = {'M', 'G', 'S', '1'};

// Over the header without its MAC, then the payload: one HMAC, no copy.
Mac mac_of(std::string_view key, std::string_view head, std::string_view payload) noexcept {
  return meshd::hmac_sha256(key, head, payload);
}

}  // namespace

const char* drop_name(Drop d) noexcept {
  switch (d) {
    case Drop::kMalformed: return "malformed";
    case Drop::kWrongCluster: return "wrong_cluster";
    case Drop::kBadMac: return "bad_mac";
    case Drop::kStale: return "stale";
    case Drop::kReplay: return "replay";
    case Drop::kOversize: return "oversize";
    case Drop::kOverload: return "overload";
    case Drop::kCount: break;
  }
  return "unknown";
}

Parsed<ClusterKey> ClusterKey::from_text(std::string_view text, const std::string& origin) {
  auto bytes = secret_from_text(text, "cluster key", origin, kMinKeyBytes);
  if (!bytes) return std::unexpected(bytes.error());
  return from_bytes(std::move(*bytes));
}

ClusterKey ClusterKey::from_bytes(std::string bytes) {
  ClusterKey k;
  k.bytes_ = std::move(bytes);
  Mac id = hmac_sha256(k.bytes_, "meshd gossip key id");
  k.id_ = load_be32(reinterpret_cast<const char*>(id.data()));
  return k;
}

Parsed<ClusterKey> ClusterKey::load(const std::string& path) {
  auto bytes = load_secret(path, "cluster key", kMinKeyBytes);
  if (!bytes) return std::unexpected(bytes.error());
  return from_bytes(std::move(*bytes));
}

std::string Sealer::seal(std::string_view payload, uint64_t now_unix_ms) {
  std::string out(kHeaderBytes, '\0');
  std::memcpy(out.data(), kMagic, 4);
  store_be32(out.data() + 4, key_.id());
  store_be64(out.data() + 8, now_unix_ms);
  store_be64(out.data() + 16, rng_());
  Mac mac = mac_of(key_.bytes(), std::string_view(out.data(), 24), payload);
  std::memcpy(out.data() + 24, mac.data(), mac.size());
  out.append(payload);
  return out;
}

std::expected<std::string_view, Drop> Sealer::open(std::string_view sealed, uint64_t now_unix_ms) {
  if (sealed.size() < kHeaderBytes || std::memcmp(sealed.data(), kMagic, 4) != 0)
    return std::unexpected(Drop::kMalformed);
  if (load_be32(sealed.data() + 4) != key_.id()) return std::unexpected(Drop::kWrongCluster);
  std::string_view payload = sealed.substr(kHeaderBytes);
  Mac want = mac_of(key_.bytes(), sealed.substr(0, 24), payload);
  if (!equal_in_constant_time(want.data(), reinterpret_cast<const uint8_t*>(sealed.data() + 24), want.size()))
    return std::unexpected(Drop::kBadMac);
  uint64_t sent = load_be64(sealed.data() + 8);
  uint64_t skew = sent > now_unix_ms ? sent - now_unix_ms : now_unix_ms - sent;
  if (skew > kMaxClockSkewMs) return std::unexpected(Drop::kStale);
  while (!nonce_order_.empty() && nonce_order_.front().first < now_unix_ms) {
    nonces_.erase(nonce_order_.front().second);
    nonce_order_.pop_front();
  }
  uint64_t nonce = load_be64(sealed.data() + 16);
  if (nonces_.contains(nonce)) return std::unexpected(Drop::kReplay);
  if (nonces_.size() >= kMaxRememberedNonces) return std::unexpected(Drop::kOverload);
  nonces_.insert(nonce);
  // Remembered until the message's timestamp can no longer pass the skew
  // check; pushed in arrival order, so the deque is only roughly sorted and
  // a few nonces may live slightly longer: harmless.
  nonce_order_.emplace_back(sent + kMaxClockSkewMs + 1, nonce);
  return payload;
}

}  // namespace meshd::controller::gossip
