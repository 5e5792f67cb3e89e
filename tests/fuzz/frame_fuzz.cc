// libFuzzer target for the frame decoder (src/proto/frame.h).
//
// Input layout: byte 0 is a small frame limit for the bounded runs, byte 1
// (mod 8) is how many chunk-size bytes follow, and the rest is the stream.
// The stream is decoded into proto::Request messages several ways:
//  - by a reference model written from frame.h's contract;
//  - fed whole, then drained;
//  - fed in chunks of the sizes chosen (cycled, 0 meaning an empty feed),
//    draining after each;
// with the default limit and with the small one. All must give the same
// messages, the same failure (or none), and once failed, stay failed.
#include <google/protobuf/stubs/logging.h>

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "proto/api.pb.h"
#include "proto/frame.h"
#include "tests/fuzz/check.h"

namespace {

using meshd::proto::FrameDecoder;
using meshd::proto::kFrameHeaderBytes;

// What decoding a stream gave: each message (re-serialized, so that equal
// messages compare equal), and whether the stream failed.
struct Outcome {
  std::vector<std::string> messages;
  bool failed = false;
  size_t buffered = 0;  // what is left of an unfinished frame (when not failed)

  bool operator==(const Outcome&) const = default;
};

// frame.h's contract, spelled out: 4-byte big-endian length, a length above
// the limit fails the stream as soon as the header is there, a whole frame
// that is not a valid Request fails it, an unfinished frame waits.
Outcome model(std::string_view stream, uint32_t max) {
  Outcome out;
  size_t pos = 0;
  while (stream.size() - pos >= kFrameHeaderBytes) {
    const auto* p = reinterpret_cast<const unsigned char*>(stream.data() + pos);
    uint32_t n = (uint32_t{p[0]} << 24) | (uint32_t{p[1]} << 16) | (uint32_t{p[2]} << 8) | uint32_t{p[3]};
    if (n > max) {
      out.failed = true;
      return out;
    }
    if (stream.size() - pos - kFrameHeaderBytes < n) break;
    meshd::proto::Request m;
    if (!m.ParseFromArray(stream.data() + pos + kFrameHeaderBytes, static_cast<int>(n))) {
      out.failed = true;
      return out;
    }
    out.messages.push_back(meshd::proto::serialize_deterministic(m));
    pos += kFrameHeaderBytes + n;
  }
  out.buffered = stream.size() - pos;
  return out;
}

// Takes every message the decoder has whole, until next_message says no.
void drain(FrameDecoder& d, uint32_t max, Outcome& out) {
  for (;;) {
    meshd::proto::Request m;
    if (!d.next_message(&m)) break;
    FUZZ_CHECK(!d.failed(), "next_message returned a message on a failed stream");
    out.messages.push_back(meshd::proto::serialize_deterministic(m));
  }
  if (d.failed()) {
    FUZZ_CHECK(!d.error().empty(), "a failed stream must say why");
  } else {
    // Drained: what is left is less than one whole frame within the limit.
    FUZZ_CHECK(d.buffered() < uint64_t{kFrameHeaderBytes} + max, "more than a frame buffered after draining");
  }
}

// Once failed, a decoder stays failed whatever it is fed or asked.
void check_sticky(FrameDecoder& d, std::string_view more) {
  if (!d.failed()) return;
  const std::string error = d.error();
  const size_t buffered = d.buffered();
  for (int i = 0; i < 2; ++i) {
    d.feed(more);
    d.feed(std::string_view("\0\0\0\0", 4));  // an empty frame: a valid Request
    meshd::proto::Request m;
    FUZZ_CHECK(!d.next_message(&m), "a failed stream handed out a message");
    FUZZ_CHECK(!d.next().has_value(), "a failed stream handed out a frame");
    FUZZ_CHECK(d.failed() && d.error() == error, "failed() must be sticky, its error unchanged");
    FUZZ_CHECK(d.buffered() == buffered, "a failed stream must ignore further bytes");
  }
}

Outcome whole(std::string_view stream, uint32_t max) {
  FrameDecoder d(max);
  Outcome out;
  d.feed(stream);
  drain(d, max, out);
  out.failed = d.failed();
  if (!out.failed) out.buffered = d.buffered();
  check_sticky(d, stream);
  return out;
}

Outcome chunked(std::string_view stream, uint32_t max, const std::vector<size_t>& sizes) {
  FrameDecoder d(max);
  Outcome out;
  size_t pos = 0;
  for (size_t i = 0; pos < stream.size(); ++i) {
    size_t n = std::min(sizes[i % sizes.size()], stream.size() - pos);
    d.feed(stream.substr(pos, n));
    pos += n;
    drain(d, max, out);
    if (d.failed()) break;
  }
  drain(d, max, out);
  out.failed = d.failed();
  if (!out.failed) out.buffered = d.buffered();
  check_sticky(d, stream.substr(pos));
  return out;
}

void check_same(const Outcome& got, const Outcome& want, const char* what) {
  FUZZ_CHECK(got.messages.size() == want.messages.size(), what);
  FUZZ_CHECK(got.messages == want.messages, what);
  FUZZ_CHECK(got.failed == want.failed, what);
  FUZZ_CHECK(got.buffered == want.buffered, what);
}

}  // namespace

// protobuf logs each string field with invalid UTF-8 it refuses: noise here.
extern "C" int LLVMFuzzerInitialize(int*, char***) {
  google::protobuf::SetLogHandler(nullptr);
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 2) return 0;
  const uint32_t small_max = data[0];
  const size_t nsizes = data[1] % 8;
  if (size < 2 + nsizes) return 0;
  std::vector<size_t> sizes(data + 2, data + 2 + nsizes);
  size_t total = 0;
  for (size_t s : sizes) total += s;
  if (total == 0) sizes = {1};  // no sizes, or only empty feeds: byte by byte
  std::string_view stream(reinterpret_cast<const char*>(data) + 2 + nsizes, size - 2 - nsizes);

  for (uint32_t max : {meshd::proto::kMaxFrameBytes, small_max}) {
    Outcome want = model(stream, max);
    check_same(whole(stream, max), want, "feeding the stream whole disagrees with the frame contract");
    check_same(chunked(stream, max, sizes), want, "feeding the stream in chunks disagrees with feeding it whole");
  }
  return 0;
}
