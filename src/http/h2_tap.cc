#include "http/h2_tap.h"

#include <nghttp2/nghttp2.h>

#include <algorithm>
#include <cstring>
#include <new>

#include "base/bytes.h"
#include "http/classify.h"
#include "http/h1_parse.h"

namespace meshd::http {

namespace {

// RFC 9113 §6.
enum FrameType : uint8_t {
  kData = 0x0,
  kHeaders = 0x1,
  kRstStream = 0x3,
  kSettings = 0x4,
  kPushPromise = 0x5,
  kGoaway = 0x7,
  kContinuation = 0x9,
};
enum FrameFlag : uint8_t {
  kEndStream = 0x1,
  kAck = 0x1,  // SETTINGS, PING
  kEndHeaders = 0x4,
  kPadded = 0x8,
  kPriority = 0x20,
};
constexpr uint16_t kSettingsHeaderTableSize = 0x1;
constexpr uint32_t kRefusedStream = 0x7;
constexpr uint32_t kPrefaceSize = 24;  // "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"

template <size_t N, typename Len>
void keep(char (&out)[N], Len* len, std::string_view v) noexcept {
  size_t n = std::min(v.size(), N);
  std::memcpy(out, v.data(), n);
  *len = static_cast<Len>(n);
}

}  // namespace

H2Tap::~H2Tap() {
  if (client_.inflater != nullptr) nghttp2_hd_inflate_del(client_.inflater);
  if (server_.inflater != nullptr) nghttp2_hd_inflate_del(server_.inflater);
  delete[] streams_;
}

bool H2Tap::reset(TapSink* sink, uint32_t preface_seen) noexcept {
  sink_ = nullptr;
  done_ = false;
  failed_ = {};
  stream_count_ = 0;
  last_client_stream_ = 0;
  if (streams_ == nullptr) streams_ = new (std::nothrow) Stream[kMaxStreams];
  if (streams_ == nullptr) return false;
  for (Reader* r : {&client_, &server_}) {
    // A fresh inflater for each connection: HPACK state is per connection.
    if (r->inflater != nullptr) nghttp2_hd_inflate_del(r->inflater);
    r->inflater = nullptr;
    nghttp2_hd_inflater* inflater = nullptr;
    if (nghttp2_hd_inflate_new(&inflater) != 0) return false;
    *r = Reader();
    r->inflater = inflater;
  }
  client_.preface_left = kPrefaceSize - std::min(preface_seen, kPrefaceSize);
  sink_ = sink;
  return true;
}

TapVerdict H2Tap::feed(TapSide side, std::span<const char> bytes, uint64_t now_us) noexcept {
  if (!active()) return {TapVerdict::kOpaque};
  return feed_reader(side, bytes, now_us);
}

// One span may end a frame, hold whole frames and begin the next: each
// step takes what is its own and the loop goes on with the rest.
TapVerdict H2Tap::feed_reader(TapSide side, std::span<const char> bytes, uint64_t now_us) noexcept {
  Reader& r = reader(side);
  auto in = std::span<const uint8_t>(reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size());
  while (!in.empty()) {
    if (r.preface_left > 0) {
      // HTTP/1 detection matched the preface already.
      size_t n = std::min<size_t>(r.preface_left, in.size());
      r.preface_left -= static_cast<uint32_t>(n);
      in = in.subspan(n);
      continue;
    }
    if (r.header_have < sizeof r.header) {
      size_t n = std::min<size_t>(sizeof r.header - r.header_have, in.size());
      std::memcpy(r.header + r.header_have, in.data(), n);
      r.header_have = static_cast<uint8_t>(r.header_have + n);
      in = in.subspan(n);
      if (r.header_have < sizeof r.header) break;
      r.length = load_be24(r.header);
      r.type = r.header[3];
      r.flags = r.header[4];
      r.stream = load_be32(r.header + 5) & 0x7fffffffu;
      r.pos = 0;
      if (!frame_start(side)) return opaque(failed_);
      if (r.length == 0) {
        r.header_have = 0;
        if (!frame_end(side, now_us)) return opaque(failed_);
      }
      continue;
    }
    size_t n = std::min<size_t>(r.length - r.pos, in.size());
    if (!payload(side, in.first(n))) return opaque(failed_);
    r.pos += static_cast<uint32_t>(n);
    in = in.subspan(n);
    if (r.pos == r.length) {
      r.header_have = 0;
      if (!frame_end(side, now_us)) return opaque(failed_);
    }
  }
  return {};
}

bool H2Tap::frame_start(TapSide side) noexcept {
  Reader& r = reader(side);
  r.fixed_have = 0;
  // Only CONTINUATION frames of the same stream may follow a header
  // block's frame until END_HEADERS (RFC 9113 §6.10).
  if (r.in_block != (r.type == kContinuation) || (r.in_block && r.stream != r.block_stream)) {
    failed_ = "h2_protocol";
    return false;
  }
  switch (r.type) {
    case kHeaders:
    case kPushPromise: {
      if (r.stream == 0 || (r.type == kPushPromise && side == TapSide::kRequests)) {
        failed_ = "h2_protocol";
        return false;
      }
      r.in_block = true;
      r.block_final = false;
      r.block_push = r.type == kPushPromise;
      r.block_end_stream = r.type == kHeaders && (r.flags & kEndStream) != 0;
      r.block_stream = r.stream;
      r.block_bytes = 0;
      r.fields = Fields();
      r.fields.status = r.fields.grpc_status = -1;
      // PADDED puts the pad length first: the fragment's bounds are known
      // once it is read (payload()).
      r.fragment_known = (r.flags & kPadded) == 0;
      r.fragment_begin = (r.type == kPushPromise ? 4 : (r.flags & kPriority) != 0 ? 5 : 0);
      r.fragment_end = r.length;
      if (r.fragment_begin + (r.fragment_known ? 0 : 1) > r.length) {
        failed_ = "h2_protocol";
        return false;
      }
      return true;
    }
    case kContinuation:
      r.fragment_known = true;
      r.fragment_begin = 0;
      r.fragment_end = r.length;
      return true;
    case kRstStream:
      if (r.length != 4) failed_ = "h2_protocol";
      return r.length == 4;
    case kSettings:
      if ((r.flags & kAck) == 0 && r.length % 6 != 0) failed_ = "h2_protocol";
      return (r.flags & kAck) != 0 || r.length % 6 == 0;
    case kGoaway:
      if (r.length < 8) failed_ = "h2_protocol";
      return r.length >= 8;
    default: return true;  // DATA, PRIORITY, PING, WINDOW_UPDATE, extensions: passed over
  }
}

// Collects a fixed-size field that may straddle reads; true once whole.
bool H2Tap::fixed(Reader& r, std::span<const uint8_t>* chunk, uint8_t size) noexcept {
  size_t n = std::min<size_t>(size - r.fixed_have, chunk->size());
  std::memcpy(r.fixed + r.fixed_have, chunk->data(), n);
  r.fixed_have = static_cast<uint8_t>(r.fixed_have + n);
  *chunk = chunk->subspan(n);
  return r.fixed_have == size;
}

bool H2Tap::payload(TapSide side, std::span<const uint8_t> chunk) noexcept {
  Reader& r = reader(side);
  switch (r.type) {
    case kHeaders:
    case kPushPromise:
    case kContinuation: {
      uint32_t at = r.pos;
      if (!r.fragment_known) {
        // The pad length is the payload's first byte (chunk is not empty).
        uint32_t pad = chunk[0];
        r.fragment_begin += 1;
        if (r.fragment_begin + pad > r.length) {
          failed_ = "h2_protocol";
          return false;
        }
        r.fragment_end = r.length - pad;
        r.fragment_known = true;
      }
      uint32_t lo = std::max(at, r.fragment_begin);
      uint32_t hi = std::min(at + static_cast<uint32_t>(chunk.size()), r.fragment_end);
      if (lo >= hi) return true;
      bool final = (r.flags & kEndHeaders) != 0 && hi == r.fragment_end;
      return inflate(r, chunk.subspan(lo - at, hi - lo), final);
    }
    case kSettings:
      if (r.flags & kAck) return true;
      while (!chunk.empty()) {
        if (!fixed(r, &chunk, 6)) break;
        r.fixed_have = 0;
        const uint16_t id = load_be16(r.fixed);
        // This side's decoder allows the other side's encoder a table this
        // large: the tap's inflater for the other side must allow it too.
        if (id == kSettingsHeaderTableSize &&
            !allow_table_size(side == TapSide::kRequests ? server_ : client_, load_be32(r.fixed + 2)))
          return false;
      }
      return true;
    case kRstStream: fixed(r, &chunk, 4); return true;
    case kGoaway:
      if (r.fixed_have < 8) fixed(r, &chunk, 8);
      return true;  // the debug data after it is passed over
    default: return true;
  }
}

bool H2Tap::allow_table_size(Reader& r, uint32_t size) noexcept {
  if (size > kMaxTableSize) {
    failed_ = "h2_table_size";
    return false;
  }
  // Only ever raised: an encoder may go on using the old size until it
  // has seen the SETTINGS (which cross the blocks in flight), and a
  // larger bound decodes the smaller table all the same.
  if (r.in_block) {
    r.deferred_table_size = std::max(r.deferred_table_size, size);
    return true;
  }
  if (nghttp2_hd_inflate_change_table_size(r.inflater, size) != 0) {
    failed_ = "memory";
    return false;
  }
  return true;
}

bool H2Tap::inflate(Reader& r, std::span<const uint8_t> fragment, bool final) noexcept {
  r.block_bytes += static_cast<uint32_t>(fragment.size());
  if (r.block_bytes > kMaxHeaderBlock) {
    failed_ = "h2_headers_too_large";
    return false;
  }
  const uint8_t* in = fragment.data();
  size_t len = fragment.size();
  for (;;) {
    nghttp2_nv nv;
    int flags = 0;
    ssize_t n = nghttp2_hd_inflate_hd2(r.inflater, &nv, &flags, in, len, final ? 1 : 0);
    if (n < 0) {
      failed_ = n == NGHTTP2_ERR_NOMEM ? "memory" : "h2_hpack";
      return false;
    }
    in += n;
    len -= static_cast<size_t>(n);
    if (flags & NGHTTP2_HD_INFLATE_EMIT)
      collect(r, {reinterpret_cast<const char*>(nv.name), nv.namelen},
              {reinterpret_cast<const char*>(nv.value), nv.valuelen});
    if (flags & NGHTTP2_HD_INFLATE_FINAL) {
      nghttp2_hd_inflate_end_headers(r.inflater);
      r.block_final = true;
      return true;
    }
    if ((flags & NGHTTP2_HD_INFLATE_EMIT) == 0 && len == 0) return true;
  }
}

void H2Tap::collect(Reader& r, std::string_view name, std::string_view value) noexcept {
  Fields& f = r.fields;
  if (r.block_push) return;  // decoded for the table's sake only
  // Field names are lower case in HTTP/2 (RFC 9113 §8.2.1).
  if (&r == &client_) {
    if (name == ":method")
      keep(f.method, &f.method_len, value);
    else if (name == ":authority")
      keep(f.authority, &f.authority_len, value);
    else if (name == ":path")
      keep(f.path, &f.path_len, value);
    else if (name == "host")
      keep(f.host, &f.host_len, value);
  } else {
    if (name == ":status")
      f.status = parse_decimal(value, 3);
    else if (name == "grpc-status")
      f.grpc_status = parse_decimal(value, 2);
    else if (name == "content-type")
      f.grpc = is_grpc_content_type(value);
  }
}

bool H2Tap::frame_end(TapSide side, uint64_t now_us) noexcept {
  Reader& r = reader(side);
  switch (r.type) {
    case kHeaders:
    case kPushPromise:
    case kContinuation:
      if ((r.flags & kEndHeaders) == 0) return true;
      // The fragment's end may have come with no byte of it in the last
      // chunk (an empty fragment, or only padding after it).
      if (!r.block_final && !inflate(r, {}, true)) return false;
      return block_done(side, now_us);
    case kData:
      if ((r.flags & kEndStream) != 0 && side == TapSide::kResponses)
        if (Stream* s = find(r.stream)) complete(s);
      return true;
    case kRstStream: reset_stream(side, r.stream, load_be32(r.fixed)); return true;
    case kGoaway:
      // The server will not process streams above the last it names.
      if (side == TapSide::kResponses) goaway(load_be32(r.fixed) & 0x7fffffffu);
      return true;
    default: return true;
  }
}

bool H2Tap::block_done(TapSide side, uint64_t now_us) noexcept {
  Reader& r = reader(side);
  r.in_block = false;
  if (r.deferred_table_size != 0) {
    uint32_t size = r.deferred_table_size;
    r.deferred_table_size = 0;
    if (!allow_table_size(r, size)) return false;
  }
  if (r.block_push) return true;
  if (side == TapSide::kRequests) return request_head(r, now_us);
  response_headers(r, now_us);
  return true;
}

bool H2Tap::request_head(Reader& r, uint64_t now_us) noexcept {
  const uint32_t id = r.block_stream;
  // Client streams are odd and new ones are numbered upwards; a block on
  // an older stream is its trailers.
  if (id <= last_client_stream_) return true;
  if ((id & 1) == 0) {
    failed_ = "h2_protocol";
    return false;
  }
  last_client_stream_ = id;
  if (stream_count_ == kMaxStreams) {
    failed_ = "h2_streams";
    return false;
  }
  Fields& f = r.fields;
  RequestHead head;
  head.method_name = {f.method, f.method_len};
  head.method = method_of(head.method_name);
  head.target = {f.path, f.path_len};
  head.version = Version::kHttp2;
  head.host = {f.host, f.host_len};
  // :authority, else Host (RFC 9113 §8.3.1), as HTTP/1's absolute form
  // wins over Host.
  head.authority = f.authority_len != 0 ? std::string_view(f.authority, f.authority_len) : head.host;
  if (head.method == Method::kConnect) head.form = TargetForm::kAuthority;
  Stream& s = streams_[stream_count_++];
  s = Stream();
  s.id = id;
  s.start_us = now_us;
  s.tag = sink_->on_request(head);
  return true;
}

void H2Tap::response_headers(Reader& r, uint64_t now_us) noexcept {
  Stream* s = find(r.block_stream);
  if (s == nullptr) return;
  const Fields& f = r.fields;
  if (s->status == 0) {
    // 1xx heads are interim: the final one is still to come (a stream
    // that ends on one never got it: complete() fails it).
    if (f.status >= 100 && f.status < 200) {
      if (r.block_end_stream) complete(s);
      return;
    }
    s->status = static_cast<uint16_t>(f.status >= 100 && f.status <= 999 ? f.status : 0);
    s->grpc = f.grpc;
    s->ttfb_us = now_us > s->start_us ? now_us - s->start_us : 0;
    // A gRPC call's outcome is its trailers' status: what a live view
    // shows waits for them (on_response).
    if (s->status != 0 && !s->grpc) sink_->on_response_head(s->tag, s->status, s->ttfb_us);
  }
  // A trailers-only gRPC response has its status in the head.
  if (f.grpc_status >= 0) s->grpc_status = static_cast<int16_t>(f.grpc_status);
  if (r.block_end_stream) complete(s);
}

void H2Tap::reset_stream(TapSide side, uint32_t id, uint32_t code) noexcept {
  Stream* s = find(id);
  if (s == nullptr) return;
  if (s->status != 0) {
    // Cut in the response's body, by either side.
    sink_->on_response(s->tag, s->status, s->ttfb_us, false, reported_grpc_status(s->grpc, s->grpc_status, false));
    remove(s);
    return;
  }
  // REFUSED_STREAM: the server did not process it; the client may retry.
  if (side == TapSide::kResponses)
    fail(s, code == kRefusedStream ? "refused_stream" : "upstream_reset");
  else
    fail(s, "client_reset");
}

void H2Tap::goaway(uint32_t last_stream) noexcept {
  for (uint32_t i = 0; i < stream_count_;) {
    if (streams_[i].id > last_stream) {
      fail(&streams_[i], "refused_stream");  // moves the last stream into slot i
      continue;
    }
    ++i;
  }
}

H2Tap::Stream* H2Tap::find(uint32_t id) noexcept {
  for (uint32_t i = 0; i < stream_count_; ++i)
    if (streams_[i].id == id) return &streams_[i];
  return nullptr;
}

void H2Tap::complete(Stream* s) noexcept {
  if (s->status == 0) {
    // Ended without a final head (or one without a valid :status).
    fail(s, "h2_protocol");
    return;
  }
  sink_->on_response(s->tag, s->status, s->ttfb_us, true, reported_grpc_status(s->grpc, s->grpc_status, true));
  remove(s);
}

void H2Tap::fail(Stream* s, std::string_view error) noexcept {
  sink_->on_failure(s->tag, error);
  remove(s);
}

void H2Tap::remove(Stream* s) noexcept {
  // Order does not matter: streams are found by id.
  *s = streams_[--stream_count_];
}

void H2Tap::finish(std::string_view error, uint64_t) noexcept {
  if (sink_ == nullptr || done_) return;
  done_ = true;
  while (stream_count_ > 0) {
    Stream* s = &streams_[stream_count_ - 1];
    if (s->status != 0) {
      sink_->on_response(s->tag, s->status, s->ttfb_us, false, reported_grpc_status(s->grpc, s->grpc_status, false));
      remove(s);
    } else {
      fail(s, error);
    }
  }
}

TapVerdict H2Tap::opaque(std::string_view why) noexcept {
  finish("abandoned", 0);
  sink_->on_abandoned(why.empty() ? std::string_view("h2_protocol") : why);
  return {TapVerdict::kOpaque};
}

}  // namespace meshd::http
