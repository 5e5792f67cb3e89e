// H2Tap: HTTP/2 seen from inside a TCP relay, as H1Tap sees HTTP/1. The
// relay forwards every byte verbatim, both directions; the tap reads the
// frames as they pass and tells the same TapSink about each stream: its
// request head, its response head, and how it ended, with the gRPC status
// from its trailers. Flow control, GOAWAY, trailers and everything else
// stay end to end between the application and its peer: the tap never
// writes, never holds a byte back, and never buffers a frame.
//
// Header blocks are decoded with nghttp2's HPACK inflater (Debian's
// libnghttp2), one per direction, fed fragment by fragment as the frames
// arrive (a block may straddle reads and CONTINUATION frames). HPACK is
// stateful: every block of a direction must be decoded, in order, even
// those the tap has no use for (PUSH_PROMISE, trailers of streams it does
// not follow), or the rest of the connection would decode wrong.
//
// It never blocks what it does not understand. A frame sequence that
// breaks the protocol, a header block HPACK cannot decode, a block larger
// than kMaxHeaderBlock or more concurrent streams than kMaxStreams answer
// kOpaque: the tap stops (the sink hears on_abandoned) and the bytes keep
// flowing untapped.
//
// Pure: no I/O, no clock (the caller passes the time), no exceptions.
// Memory: the two inflaters (their dynamic tables are bounded by
// kMaxTableSize) and the stream table, allocated once by reset().
#pragma once

#include <cstdint>
#include <span>
#include <string_view>

#include "http/h1_tap.h"

struct nghttp2_hd_inflater;

namespace meshd::http {

class H2Tap {
 public:
  // Streams followed at once. Servers advertise 100-250 concurrent streams
  // (nginx 128, Go 250); a client that opens more makes the tap give up.
  static constexpr uint32_t kMaxStreams = 256;
  // A header block's compressed bytes, across its CONTINUATION frames.
  static constexpr uint32_t kMaxHeaderBlock = 256 * 1024;
  // The largest HPACK dynamic table a peer may make the tap keep
  // (SETTINGS_HEADER_TABLE_SIZE; the default is 4096).
  static constexpr uint32_t kMaxTableSize = 64 * 1024;
  // What a request's path keeps for the sink (the live tap); longer paths
  // are cut here.
  static constexpr uint32_t kMaxPath = 512;
  static constexpr uint32_t kMaxAuthority = 256;

  H2Tap() noexcept = default;
  ~H2Tap();
  H2Tap(const H2Tap&) = delete;
  H2Tap& operator=(const H2Tap&) = delete;

  // A new connection, whose client sent the connection preface. The first
  // preface_seen bytes of it were read before the tap started (HTTP/1
  // detection held them) and will not be fed again. False when out of
  // memory: the connection is then not followed.
  bool reset(TapSink* sink, uint32_t preface_seen) noexcept;

  // Bytes read from one side, before they are forwarded: kPass, or kOpaque
  // once the tap gave up (further feeds do nothing).
  TapVerdict feed(TapSide side, std::span<const char> bytes, uint64_t now_us) noexcept;

  // The connection ended: streams still open fail with `error` (one whose
  // response head came counts as an incomplete response). Idempotent.
  void finish(std::string_view error, uint64_t now_us) noexcept;

  bool active() const noexcept { return sink_ != nullptr && !done_; }
  uint32_t open_streams() const noexcept { return stream_count_; }

 private:
  struct Stream {
    uint32_t id = 0;
    void* tag = nullptr;
    uint64_t start_us = 0;
    uint64_t ttfb_us = 0;
    uint16_t status = 0;       // the final response head's; 0 until it came
    int16_t grpc_status = -1;  // from the response's headers or trailers
    bool grpc = false;         // the response is gRPC (content-type application/grpc...)
  };

  // The fields a header block carries that the tap reports, copied out of
  // the inflater as they are emitted (they live only until its next call).
  struct Fields {
    char method[16];
    char authority[kMaxAuthority];
    char host[kMaxAuthority];
    char path[kMaxPath];
    uint8_t method_len;
    uint16_t authority_len;
    uint16_t host_len;
    uint16_t path_len;
    int32_t status;       // -1: none, or not a number
    int32_t grpc_status;  // -1: none, or not a number
    bool grpc;
  };

  // One direction's frame reader.
  struct Reader {
    nghttp2_hd_inflater* inflater = nullptr;
    uint32_t preface_left = 0;
    uint8_t header[9];
    uint8_t header_have = 0;
    // The frame being read.
    uint32_t length = 0;
    uint32_t pos = 0;
    uint8_t type = 0;
    uint8_t flags = 0;
    uint32_t stream = 0;
    // A header-bearing frame's fragment within its payload (after the pad
    // length, priority or promised stream, before the padding).
    bool fragment_known = false;
    uint32_t fragment_begin = 0;
    uint32_t fragment_end = 0;
    // Fixed-size payload fields (RST_STREAM, GOAWAY, one SETTINGS entry).
    uint8_t fixed[8];
    uint8_t fixed_have = 0;
    // The header block in progress, maybe across CONTINUATION frames.
    bool in_block = false;
    bool block_final = false;  // the inflater saw the block's end
    bool block_end_stream = false;
    bool block_push = false;
    uint32_t block_stream = 0;
    uint32_t block_bytes = 0;
    // A table size the other side allowed while a block was in progress:
    // applied when it ends (the inflater refuses a change mid-block).
    uint32_t deferred_table_size = 0;
    Fields fields;
  };

  TapVerdict feed_reader(TapSide side, std::span<const char> bytes, uint64_t now_us) noexcept;
  bool frame_start(TapSide side) noexcept;
  bool payload(TapSide side, std::span<const uint8_t> chunk) noexcept;
  bool frame_end(TapSide side, uint64_t now_us) noexcept;
  bool fixed(Reader& r, std::span<const uint8_t>* chunk, uint8_t size) noexcept;
  bool inflate(Reader& r, std::span<const uint8_t> fragment, bool final) noexcept;
  void collect(Reader& r, std::string_view name, std::string_view value) noexcept;
  bool block_done(TapSide side, uint64_t now_us) noexcept;
  bool allow_table_size(Reader& r, uint32_t size) noexcept;
  bool request_head(Reader& r, uint64_t now_us) noexcept;
  void response_headers(Reader& r, uint64_t now_us) noexcept;
  void reset_stream(TapSide side, uint32_t id, uint32_t code) noexcept;
  void goaway(uint32_t last_stream) noexcept;

  Stream* find(uint32_t id) noexcept;
  // Tells the sink how the stream ended and forgets it.
  void complete(Stream* s) noexcept;
  void fail(Stream* s, std::string_view error) noexcept;
  void remove(Stream* s) noexcept;
  TapVerdict opaque(std::string_view why) noexcept;

  Reader& reader(TapSide side) noexcept { return side == TapSide::kRequests ? client_ : server_; }

  TapSink* sink_ = nullptr;
  bool done_ = false;
  std::string_view failed_;  // why the tap gave up (opaque) while feeding
  Reader client_;
  Reader server_;
  uint32_t last_client_stream_ = 0;
  Stream* streams_ = nullptr;  // kMaxStreams, allocated by the first reset()
  uint32_t stream_count_ = 0;
};

}  // namespace meshd::http
