// Frames on the proxy <-> controller stream (and between controllers): a
// 4-byte big-endian length, then that many bytes of one protobuf message.
//
// The decoder is fed whatever bytes arrived and hands out whole frames. A
// peer controls the length field, so it is bounded: a header announcing more
// than the limit fails the stream at once, before any of it is buffered.
#pragma once

#include <google/protobuf/message_lite.h>

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace meshd::proto {

inline constexpr uint32_t kFrameHeaderBytes = 4;
inline constexpr uint32_t kMaxFrameBytes = 4u << 20;

// Appends m, framed, to out. Serialization is deterministic (map entries in
// key order), so equal messages always make equal bytes.
void append_frame(const google::protobuf::MessageLite& m, std::string* out);
std::string serialize_deterministic(const google::protobuf::MessageLite& m);

class FrameDecoder {
 public:
  explicit FrameDecoder(uint32_t max_frame_bytes = kMaxFrameBytes) : max_(max_frame_bytes) {}

  // Takes the bytes that arrived. Once failed(), further bytes are ignored:
  // the stream is to be closed.
  void feed(std::string_view bytes);
  // The next whole frame's payload, if one is complete.
  std::optional<std::string> next();
  // Parses the next whole frame into m; false when none is complete or
  // (then failed() is set) when its bytes are not a valid m.
  bool next_message(google::protobuf::MessageLite* m);

  bool failed() const noexcept { return !error_.empty(); }
  const std::string& error() const noexcept { return error_; }
  size_t buffered() const noexcept { return buffer_.size() - start_; }

 private:
  uint32_t max_;
  std::string buffer_;
  size_t start_ = 0;  // consumed bytes at the front, dropped lazily
  std::string error_;
};

}  // namespace meshd::proto
