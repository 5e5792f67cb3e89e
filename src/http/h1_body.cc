#include "http/h1_body.h"

#include <algorithm>
#include <limits>

#include "base/hex.h"
#include "http/h1_parse.h"

namespace meshd::http {

namespace {

bool is_ows(char c) { return c == ' ' || c == '\t'; }

// VCHAR or obs-text: anything but controls (CR, LF, NUL, ...), SP and DEL.
bool is_visible(char c) {
  auto u = static_cast<uint8_t>(c);
  return u > 0x20 && u != 0x7f;
}

}  // namespace

BodyFramer::BodyFramer(Framing framing, uint32_t max_trailers) noexcept
    : framing_(framing), state_(State::kRaw), max_trailers_(max_trailers) {
  switch (framing.kind) {
    case FramingKind::kNone: state_ = State::kDone; break;
    case FramingKind::kContentLength:
      remaining_ = framing.length;
      if (remaining_ == 0) state_ = State::kDone;
      break;
    case FramingKind::kChunked: state_ = State::kSize; break;
    case FramingKind::kUntilClose:
    case FramingKind::kTunnel: break;
  }
}

BodyFramer::Step BodyFramer::fail(uint32_t consumed, std::string_view reason, std::string_view message) noexcept {
  state_ = State::kError;
  reason_ = reason;
  message_ = message;
  return {consumed, false, 400, reason, message};
}

BodyFramer::Step BodyFramer::feed(std::span<const char> bytes) noexcept {
  if (state_ == State::kError) return {0, false, 400, reason_, message_};
  if (state_ == State::kDone) return {0, true};
  const char* p = bytes.data();
  // Step::consumed is 32 bits; a larger input is taken in part, and the
  // caller feeds the rest.
  const size_t n = std::min<size_t>(bytes.size(), std::numeric_limits<uint32_t>::max());
  size_t i = 0;
  while (i < n) {
    // Payload is skipped in bulk; everything else is a byte at a time,
    // which keeps the answer independent of how the input was split.
    if (state_ == State::kRaw || state_ == State::kData) {
      size_t take = n - i;
      if (framing_.kind == FramingKind::kContentLength || state_ == State::kData)
        take = static_cast<size_t>(std::min<uint64_t>(remaining_, take));
      i += take;
      payload_ += take;
      if (framing_.kind == FramingKind::kUntilClose || framing_.kind == FramingKind::kTunnel) continue;
      remaining_ -= take;
      if (remaining_ > 0) continue;
      if (state_ == State::kRaw) {
        state_ = State::kDone;
        return {static_cast<uint32_t>(i), true};
      }
      state_ = State::kDataCr;
      continue;
    }

    const char c = p[i];
    const auto at = static_cast<uint32_t>(i);
    if (state_ == State::kSize || state_ == State::kSizeWs || state_ == State::kExt || state_ == State::kSizeLf) {
      if (++line_ > kMaxChunkLine) return fail(at, "chunk_line_too_long", "a chunk-size line is too long");
    } else if (state_ >= State::kTrailerStart && state_ <= State::kLastLf) {
      if (++trailers_ > max_trailers_) return fail(at, "trailers_too_large", "the trailer section is too large");
    }

    switch (state_) {
      case State::kSize:
        if (int v = hex_value(c); v >= 0) {
          if (digits_ == kMaxChunkSizeDigits) return fail(at, "chunk_size", "a chunk size has too many digits");
          remaining_ = remaining_ * 16 + static_cast<uint64_t>(v);
          ++digits_;
        } else if (digits_ == 0) {
          return fail(at, "chunk_size", "a chunk size is not hexadecimal");
        } else if (c == ';') {
          state_ = State::kExt;
        } else if (is_ows(c)) {
          state_ = State::kSizeWs;
        } else if (c == '\r') {
          state_ = State::kSizeLf;
        } else {
          return fail(at, "chunk_size", "a chunk size is not hexadecimal");
        }
        break;
      case State::kSizeWs:
        // BWS is allowed only before an extension's ';'.
        if (c == ';') {
          state_ = State::kExt;
        } else if (!is_ows(c)) {
          return fail(at, "chunk_size", "whitespace after a chunk size without an extension");
        }
        break;
      case State::kExt:
        if (c == '\r') {
          state_ = State::kSizeLf;
        } else if (!is_visible(c) && !is_ows(c)) {
          return fail(at, "chunk_ext", "a chunk extension has a control character");
        }
        break;
      case State::kSizeLf:
        if (c != '\n') return fail(at, "chunk_crlf", "a chunk-size line does not end in CRLF");
        line_ = 0;
        digits_ = 0;
        state_ = remaining_ == 0 ? State::kTrailerStart : State::kData;
        break;
      case State::kDataCr:
        if (c != '\r') return fail(at, "chunk_data_crlf", "chunk data is not followed by CRLF");
        state_ = State::kDataLf;
        break;
      case State::kDataLf:
        if (c != '\n') return fail(at, "chunk_data_crlf", "chunk data is not followed by CRLF");
        state_ = State::kSize;
        break;
      case State::kTrailerStart:
        if (c == '\r') {
          state_ = State::kLastLf;
        } else if (is_tchar(c)) {
          state_ = State::kTrailerName;
        } else if (is_ows(c)) {
          return fail(at, "trailer_obs_fold", "a trailer line starts with whitespace");
        } else {
          return fail(at, "trailer", "a trailer name has a character outside tchar");
        }
        break;
      case State::kTrailerName:
        if (c == ':') {
          state_ = State::kTrailerValue;
        } else if (!is_tchar(c)) {
          return fail(at, "trailer", "a trailer name has a character outside tchar, or no colon");
        }
        break;
      case State::kTrailerValue:
        if (c == '\r') {
          state_ = State::kTrailerLf;
        } else if (!is_visible(c) && !is_ows(c)) {
          return fail(at, "trailer", "a trailer value has a control character");
        }
        break;
      case State::kTrailerLf:
        if (c != '\n') return fail(at, "trailer", "a trailer line does not end in CRLF");
        state_ = State::kTrailerStart;
        break;
      case State::kLastLf:
        if (c != '\n') return fail(at, "trailer", "the chunked body does not end in CRLF");
        state_ = State::kDone;
        return {at + 1, true};
      case State::kRaw:
      case State::kData:
      case State::kDone:
      case State::kError: break;  // handled above
    }
    ++i;
  }
  return {static_cast<uint32_t>(i), false};
}

}  // namespace meshd::http
