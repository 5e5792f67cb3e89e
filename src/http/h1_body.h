// BodyFramer: where one HTTP/1 message body ends, fed the bytes after the
// head as they arrive.
//
// The bytes pass through unchanged (the tap forwards them, the terminating
// codec passes chunked bodies verbatim): the framer only finds boundaries
// and validates the chunked syntax, so a body our peer would frame
// differently never gets through. State survives between feeds, so any
// split of the input gives the same answer as the whole.
//
// `consumed` stops exactly at the body's end: bytes after `done` belong to
// the next message (pipelining). No allocation, no copy, no exceptions.
#pragma once

#include <cstdint>
#include <span>
#include <string_view>

#include "http/message.h"

namespace meshd::http {

// A chunk-size line (size, extensions and CRLF) longer than this is refused:
// extensions are unbounded in the grammar and carry nothing we need.
inline constexpr uint32_t kMaxChunkLine = 4096;
// Hex digits in a chunk size: 16 fill a uint64_t, so it cannot overflow.
inline constexpr uint32_t kMaxChunkSizeDigits = 16;

class BodyFramer {
 public:
  // `max_trailers` bounds the trailer section (its lines and the final
  // CRLF) like Limits::max_head bounds a head.
  explicit BodyFramer(Framing framing, uint32_t max_trailers = 32768) noexcept;

  struct Step {
    uint32_t consumed = 0;      // bytes of this body in the input (on error: the valid ones before it)
    bool done = false;          // the body ended; later bytes are the next message's
    uint16_t error_status = 0;  // 400 when the body is malformed; then it stays so
    std::string_view reason;    // a stable short token for a metric label
    std::string_view message;   // for humans
  };

  // kUntilClose and kTunnel take every byte and are never done (the peer's
  // close ends them). kNone, and a Content-Length of 0, are done at once.
  Step feed(std::span<const char> bytes) noexcept;

  bool done() const noexcept { return state_ == State::kDone; }
  bool failed() const noexcept { return state_ == State::kError; }
  // Chunk payload (or Content-Length) bytes seen so far, framing excluded.
  uint64_t payload_bytes() const noexcept { return payload_; }

 private:
  enum class State : uint8_t {
    kRaw,     // counting down (Content-Length) or passing all (until close, tunnel)
    kSize,    // chunk-size hex digits
    kSizeWs,  // whitespace after the digits: only ';' may follow
    kExt,     // chunk extensions, up to CR
    kSizeLf,  // CR seen after the size line
    kData,    // chunk payload
    kDataCr,  // CRLF after the payload
    kDataLf,
    kTrailerStart,  // the start of a trailer line, or the final CRLF
    kTrailerName,
    kTrailerValue,
    kTrailerLf,
    kLastLf,  // the final CRLF's LF
    kDone,
    kError,
  };

  Step fail(uint32_t consumed, std::string_view reason, std::string_view message) noexcept;

  Framing framing_;
  State state_;
  uint64_t remaining_ = 0;  // Content-Length or chunk bytes still to come
  uint64_t payload_ = 0;
  uint32_t line_ = 0;      // bytes of the current chunk-size line
  uint32_t digits_ = 0;    // hex digits of the current chunk size
  uint32_t trailers_ = 0;  // bytes of the trailer section so far
  uint32_t max_trailers_;
  std::string_view reason_;
  std::string_view message_;
};

}  // namespace meshd::http
