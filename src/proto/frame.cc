#include "proto/frame.h"

#include <google/protobuf/io/coded_stream.h>
#include <google/protobuf/io/zero_copy_stream_impl_lite.h>

#include "base/bytes.h"

namespace meshd::proto {

std::string serialize_deterministic(const google::protobuf::MessageLite& m) {
  std::string out;
  {
    google::protobuf::io::StringOutputStream stream(&out);
    google::protobuf::io::CodedOutputStream coded(&stream);
    coded.SetSerializationDeterministic(true);
    m.SerializeToCodedStream(&coded);
  }
  return out;
}

void append_frame(const google::protobuf::MessageLite& m, std::string* out) {
  std::string body = serialize_deterministic(m);
  auto n = static_cast<uint32_t>(body.size());
  char header[kFrameHeaderBytes];
  store_be32(header, n);
  out->append(header, kFrameHeaderBytes);
  out->append(body);
}

void FrameDecoder::feed(std::string_view bytes) {
  if (failed()) return;
  // Drop what was consumed before growing, so the buffer stays within one
  // frame plus what just arrived.
  if (start_ > 0 && start_ >= buffer_.size() / 2) {
    buffer_.erase(0, start_);
    start_ = 0;
  }
  buffer_.append(bytes);
}

std::optional<std::string> FrameDecoder::next() {
  if (failed() || buffered() < kFrameHeaderBytes) return std::nullopt;
  uint32_t n = load_be32(buffer_.data() + start_);
  if (n > max_) {
    error_ = "frame of " + std::to_string(n) + " bytes announced; at most " + std::to_string(max_) + " allowed";
    return std::nullopt;
  }
  if (buffered() < kFrameHeaderBytes + n) return std::nullopt;
  std::string frame = buffer_.substr(start_ + kFrameHeaderBytes, n);
  start_ += kFrameHeaderBytes + n;
  return frame;
}

bool FrameDecoder::next_message(google::protobuf::MessageLite* m) {
  auto frame = next();
  if (!frame) return false;
  if (!m->ParseFromString(*frame)) {
    error_ = "a frame of " + std::to_string(frame->size()) + " bytes is not a valid " + m->GetTypeName();
    return false;
  }
  return true;
}

}  // namespace meshd::proto
