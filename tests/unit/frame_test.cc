// Length-prefixed protobuf frames: whole, split, truncated, oversized,
// garbage.
#include <catch2/catch.hpp>

#include <random>

#include "proto/frame.h"
#include "proto/registry.pb.h"

using namespace meshd;

namespace {
proto::Entry sample_entry(int i) {
  proto::Entry e;
  e.set_service("web.prod");
  e.set_endpoint("10.0.0." + std::to_string(i) + ":80");
  e.set_owner("lease:node-" + std::to_string(i));
  e.set_version(static_cast<uint64_t>(i) + 1);
  auto* ep = e.mutable_address_of();
  ep->set_address(e.endpoint());
  (*ep->mutable_labels())["zone"] = "a";
  (*ep->mutable_labels())["version"] = "v" + std::to_string(i);
  return e;
}
}  // namespace

TEST_CASE("frame: messages survive any split of the byte stream") {
  std::string stream;
  for (int i = 0; i < 5; ++i) proto::append_frame(sample_entry(i), &stream);
  std::mt19937 rng(7);
  for (int round = 0; round < 50; ++round) {
    proto::FrameDecoder d;
    std::vector<proto::Entry> got;
    size_t pos = 0;
    while (pos < stream.size()) {
      size_t n = std::min<size_t>(stream.size() - pos, 1 + rng() % 23);
      d.feed(std::string_view(stream).substr(pos, n));
      pos += n;
      proto::Entry e;
      while (d.next_message(&e)) got.push_back(e);
      REQUIRE_FALSE(d.failed());
    }
    REQUIRE(got.size() == 5);
    for (int i = 0; i < 5; ++i) REQUIRE(got[i].owner() == "lease:node-" + std::to_string(i));
    REQUIRE(d.buffered() == 0);
  }
}

TEST_CASE("frame: a truncated frame waits, it is not an error") {
  std::string stream;
  proto::append_frame(sample_entry(1), &stream);
  proto::FrameDecoder d;
  d.feed(std::string_view(stream).substr(0, stream.size() - 1));
  REQUIRE_FALSE(d.next().has_value());
  REQUIRE_FALSE(d.failed());
  d.feed(std::string_view(stream).substr(stream.size() - 1));
  REQUIRE(d.next().has_value());
}

TEST_CASE("frame: an oversized length fails the stream before buffering it") {
  proto::FrameDecoder d(1024);
  d.feed(std::string("\x00\x00\x04\x01", 4));  // 1025 bytes announced
  REQUIRE_FALSE(d.next().has_value());
  REQUIRE(d.failed());
  REQUIRE(d.error().find("1025") != std::string::npos);
  d.feed(std::string(4096, 'x'));  // ignored once failed
  REQUIRE(d.buffered() == 4);
}

TEST_CASE("frame: garbage inside a frame is a clear error, never a crash") {
  std::mt19937 rng(11);
  for (int round = 0; round < 200; ++round) {
    std::string body(rng() % 64, '\0');
    for (auto& c : body) c = static_cast<char>(rng());
    std::string stream;
    auto n = static_cast<uint32_t>(body.size());
    stream += {static_cast<char>(n >> 24), static_cast<char>(n >> 16), static_cast<char>(n >> 8), static_cast<char>(n)};
    stream += body;
    proto::FrameDecoder d;
    d.feed(stream);
    proto::Entry e;
    bool ok = d.next_message(&e);
    // Random bytes may happen to parse; when they do not, the error says so.
    if (!ok) REQUIRE(d.error().find("not a valid meshd.proto.Entry") != std::string::npos);
  }
}

TEST_CASE("frame: deterministic serialization orders map entries") {
  proto::Entry a = sample_entry(3), b = sample_entry(3);
  b.mutable_address_of()->mutable_labels()->clear();
  (*b.mutable_address_of()->mutable_labels())["version"] = "v3";
  (*b.mutable_address_of()->mutable_labels())["zone"] = "a";
  REQUIRE(proto::serialize_deterministic(a) == proto::serialize_deterministic(b));
}
