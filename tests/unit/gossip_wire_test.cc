// Sealed gossip packets: what the cluster key lets through, and what it
// drops (tampered, unsigned, foreign, stale, replayed).
#include <catch2/catch.hpp>

#include <string>

#include "controller/gossip/wire.h"

using namespace meshd;
using controller::gossip::ClusterKey;
using controller::gossip::Drop;
using controller::gossip::Sealer;

namespace {
ClusterKey key(char fill) { return *ClusterKey::from_text(std::string(32, fill), "test"); }
}  // namespace

TEST_CASE("gossip: a sealed packet opens once, with the same key", "[gossip]") {
  Sealer a(key('k'), 1), b(key('k'), 2);
  std::string sealed = a.seal("hello", 1'000'000);
  auto payload = b.open(sealed, 1'000'100);
  REQUIRE(payload);
  REQUIRE(*payload == "hello");
  // The same bytes again: a replay.
  REQUIRE(b.open(sealed, 1'000'200).error() == Drop::kReplay);
}

TEST_CASE("gossip: tampered, unsigned, foreign and stale packets are dropped", "[gossip]") {
  Sealer a(key('k'), 1), b(key('k'), 2), other(key('o'), 3);
  std::string sealed = a.seal("members", 1'000'000);
  SECTION("tampered payload") {
    std::string t = sealed;
    t.back() ^= 1;
    REQUIRE(b.open(t, 1'000'000).error() == Drop::kBadMac);
  }
  SECTION("tampered timestamp") {
    std::string t = sealed;
    t[15] ^= 1;
    REQUIRE(b.open(t, 1'000'000).error() == Drop::kBadMac);
  }
  SECTION("unsigned bytes") {
    REQUIRE(b.open("members", 1'000'000).error() == Drop::kMalformed);
    REQUIRE(b.open(std::string(80, '\0'), 1'000'000).error() == Drop::kMalformed);
  }
  SECTION("another cluster's key") {
    REQUIRE(b.open(other.seal("members", 1'000'000), 1'000'000).error() == Drop::kWrongCluster);
  }
  SECTION("too old or from the future") {
    REQUIRE(b.open(sealed, 1'000'000 + 31'000).error() == Drop::kStale);
    REQUIRE(b.open(a.seal("x", 2'000'000), 1'000'000).error() == Drop::kStale);
  }
  SECTION("a replay after the window is stale, not accepted") {
    REQUIRE(b.open(sealed, 1'000'000));
    REQUIRE(b.open(sealed, 1'000'000 + 40'000).error() == Drop::kStale);
  }
}

TEST_CASE("gossip: the cluster key needs 32 bytes, raw or hex", "[gossip]") {
  REQUIRE_FALSE(ClusterKey::from_text("short", "file k"));
  REQUIRE(ClusterKey::from_text("short", "file k").error().find("holds 5 bytes; at least 32") != std::string::npos);
  REQUIRE_FALSE(ClusterKey::from_text("00112233445566778899aabbccddeeff", "file k"));  // 16 bytes in hex
  auto hex = ClusterKey::from_text("00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff\n", "file k");
  REQUIRE(hex);
  REQUIRE(hex->bytes().size() == 32);
  REQUIRE(ClusterKey::from_text(std::string(40, 'z'), "file k"));
  REQUIRE_FALSE(ClusterKey::load("/nonexistent/key"));
}
