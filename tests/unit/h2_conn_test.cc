// H2Conn (src/http/h2_conn.h): a kClient and a kServer connection joined
// in memory, each with a handler that records what it heard. Requests and
// responses with bodies and trailers, 1xx heads, flow control held back
// until the bytes are consumed (and a stalled stream not stalling another),
// the bounds a peer controls, resets, GOAWAY, and bytes that break the
// protocol.
#include <nghttp2/nghttp2.h>

#include <catch2/catch.hpp>

#include <cstdint>
#include <map>
#include <string>
#include <utility>
#include <vector>

#include "http/h2_conn.h"

using namespace meshd::http;
using namespace std::literals;

namespace {

struct Heard {
  std::vector<std::pair<H2Block, H2Fields>> blocks;
  std::string data;
  bool head_end = false;  // a block ended the peer's side
  bool data_end = false;
  bool too_large = false;
  bool closed = false;
  uint32_t error = 0;
  size_t sent = 0;  // on_data_sent, for this stream's outgoing body
  void* user_at_close = nullptr;
};

class Recorder : public H2Conn::Handler {
 public:
  bool auto_consume = true;
  bool consume_connection_only = false;  // a shared connection: its window back on receipt
  H2Conn* conn = nullptr;
  std::map<int32_t, Heard> streams;
  int32_t goaway_last = -1;

  void on_headers(int32_t s, H2Block kind, H2Fields&& fields, bool end) noexcept override {
    streams[s].blocks.emplace_back(kind, std::move(fields));
    if (end) streams[s].head_end = true;
  }
  void on_head_too_large(int32_t s) noexcept override { streams[s].too_large = true; }
  void on_data(int32_t s, std::span<const uint8_t> b) noexcept override {
    streams[s].data.append(reinterpret_cast<const char*>(b.data()), b.size());
    if (consume_connection_only)
      conn->consume_connection(b.size());
    else if (auto_consume)
      conn->consume(s, b.size());
  }
  void on_data_end(int32_t s) noexcept override { streams[s].data_end = true; }
  void on_data_sent(int32_t s, size_t n) noexcept override { streams[s].sent += n; }
  void on_stream_close(int32_t s, uint32_t error) noexcept override {
    streams[s].closed = true;
    streams[s].error = error;
    streams[s].user_at_close = conn->stream_user(s);
  }
  void on_goaway(int32_t last, uint32_t) noexcept override { goaway_last = last; }
};

struct Pair {
  Recorder client_heard, server_heard;
  H2Conn client{H2Conn::Role::kClient, &client_heard};
  H2Conn server{H2Conn::Role::kServer, &server_heard};

  Pair() {
    client_heard.conn = &client;
    server_heard.conn = &server;
    REQUIRE(client.start());
    REQUIRE(server.start());
    pump();
  }

  // Moves bytes both ways until neither side has any to send.
  void pump() {
    for (int round = 0; round < 1000; ++round) {
      bool moved = false;
      for (auto [from, to] : {std::pair{&client, &server}, std::pair{&server, &client}}) {
        std::span<const uint8_t> out = from->pending();
        if (out.empty()) continue;
        std::vector<uint8_t> copy(out.begin(), out.end());
        from->sent(copy.size());
        to->recv(copy);
        moved = true;
      }
      if (!moved) return;
    }
    FAIL("the two ends never went quiet");
  }
};

H2Fields get(std::string path = "/") {
  return {{":method", "GET"}, {":scheme", "http"}, {":authority", "web.prod:80"}, {":path", std::move(path)}};
}

H2Fields post() { return {{":method", "POST"}, {":scheme", "http"}, {":authority", "web.prod"}, {":path", "/up"}}; }

std::span<const uint8_t> bytes(const std::string& s) { return {reinterpret_cast<const uint8_t*>(s.data()), s.size()}; }

}  // namespace

TEST_CASE("a request and its answer cross with body and trailers", "[h2conn]") {
  Pair p;
  int32_t id = p.client.submit_request(get("/a?b=1"), true, nullptr);
  REQUIRE(id == 1);
  p.pump();
  Heard& req = p.server_heard.streams[id];
  REQUIRE(req.blocks.size() == 1);
  CHECK(req.blocks[0].first == H2Block::kRequest);
  CHECK(h2_field(req.blocks[0].second, ":path") == "/a?b=1");
  CHECK(h2_field(req.blocks[0].second, ":authority") == "web.prod:80");
  CHECK(req.head_end);

  REQUIRE(p.server.submit_response(id, {{":status", "100"}}, false));
  REQUIRE(p.server.submit_response(id, {{":status", "200"}, {"content-type", "application/grpc"}}, false));
  REQUIRE(p.server.send_data(id, bytes("hello ")));
  p.pump();
  REQUIRE(p.server.send_data(id, bytes("world")));
  REQUIRE(p.server.end_data(id, {{"grpc-status", "0"}}));
  p.pump();

  Heard& resp = p.client_heard.streams[id];
  REQUIRE(resp.blocks.size() == 3);
  CHECK(resp.blocks[0].first == H2Block::kInterim);
  CHECK(resp.blocks[1].first == H2Block::kResponse);
  CHECK(h2_field(resp.blocks[1].second, ":status") == "200");
  CHECK(resp.blocks[2].first == H2Block::kTrailers);
  CHECK(h2_field(resp.blocks[2].second, "grpc-status") == "0");
  CHECK(resp.head_end);
  CHECK(resp.data == "hello world");
  CHECK(p.server_heard.streams[id].sent == 11);
  CHECK(resp.closed);
  CHECK(resp.error == 0);
  CHECK(p.server_heard.streams[id].closed);
  CHECK(p.client.open_streams() == 0);
  CHECK(p.server.open_streams() == 0);
}

TEST_CASE("a request body ends with a DATA frame, or with trailers", "[h2conn]") {
  Pair p;
  int32_t a = p.client.submit_request(post(), false, nullptr);
  int32_t b = p.client.submit_request(post(), false, nullptr);
  REQUIRE(p.client.send_data(a, bytes("abc")));
  REQUIRE(p.client.end_data(a, {}));
  REQUIRE(p.client.send_data(b, bytes("xyz")));
  REQUIRE(p.client.end_data(b, {{"checksum", "1"}}));
  CHECK_FALSE(p.client.send_data(a, bytes("late")));  // after the end: refused
  p.pump();
  CHECK(p.server_heard.streams[a].data == "abc");
  CHECK(p.server_heard.streams[a].data_end);
  CHECK(p.server_heard.streams[b].data == "xyz");
  CHECK_FALSE(p.server_heard.streams[b].data_end);
  REQUIRE(p.server_heard.streams[b].blocks.size() == 2);
  CHECK(p.server_heard.streams[b].blocks[1].first == H2Block::kTrailers);
  CHECK(p.server_heard.streams[b].head_end);
}

TEST_CASE("received bytes hold the window until consumed, stream by stream", "[h2conn]") {
  Pair p;
  p.server_heard.auto_consume = false;
  const std::string big(3 * H2Conn::kStreamWindow, 'x');
  int32_t slow = p.client.submit_request(post(), false, nullptr);
  REQUIRE(p.client.send_data(slow, bytes(big)));
  REQUIRE(p.client.end_data(slow, {}));
  p.pump();
  // The peer sent exactly what the stream's window allows, keeping the rest.
  CHECK(p.server_heard.streams[slow].data.size() == H2Conn::kStreamWindow);
  CHECK(p.client.queued(slow) == big.size() - H2Conn::kStreamWindow);
  CHECK(p.client_heard.streams[slow].sent == H2Conn::kStreamWindow);

  // Another stream is not held up by the stalled one.
  int32_t other = p.client.submit_request(post(), false, nullptr);
  REQUIRE(p.client.send_data(other, bytes("quick")));
  REQUIRE(p.client.end_data(other, {}));
  p.pump();
  CHECK(p.server_heard.streams[other].data == "quick");
  CHECK(p.server_heard.streams[other].data_end);

  // Consuming opens the window again (nghttp2 updates it once half is used).
  p.server.consume(slow, H2Conn::kStreamWindow);
  p.pump();
  CHECK(p.server_heard.streams[slow].data.size() == 2 * H2Conn::kStreamWindow);
  p.server.consume(slow, 2 * H2Conn::kStreamWindow);
  p.pump();
  CHECK(p.server_heard.streams[slow].data == big);
  CHECK(p.server_heard.streams[slow].data_end);
  CHECK(p.client.queued(slow) == 0);
}

TEST_CASE("with its connection window given back on receipt, each unread stream holds only its own", "[h2conn]") {
  Pair p;
  p.server_heard.consume_connection_only = true;
  // 20 streams of 3 windows each: unread, they would fill the 4 MiB
  // connection window after 16; here every one gets its stream's window.
  const std::string big(3 * H2Conn::kStreamWindow, 'x');
  std::vector<int32_t> ids;
  for (int i = 0; i < 20; ++i) {
    ids.push_back(p.client.submit_request(post(), false, nullptr));
    REQUIRE(p.client.send_data(ids.back(), bytes(big)));
  }
  p.pump();
  for (int32_t id : ids) CHECK(p.server_heard.streams[id].data.size() == H2Conn::kStreamWindow);
  // Reading one stream lets that one go on.
  p.server.consume_stream(ids[0], H2Conn::kStreamWindow);
  p.pump();
  CHECK(p.server_heard.streams[ids[0]].data.size() == 2 * H2Conn::kStreamWindow);
  CHECK(p.server_heard.streams[ids[1]].data.size() == H2Conn::kStreamWindow);
}

TEST_CASE("a request head over the bound is reported for a 431, the stream kept", "[h2conn]") {
  Pair p;
  H2Fields head = get();
  head.push_back({"x-big", std::string(H2Conn::kMaxHeaderList, 'a')});
  int32_t id = p.client.submit_request(head, true, nullptr);
  REQUIRE(id > 0);
  p.pump();
  CHECK(p.server_heard.streams[id].too_large);
  CHECK(p.server_heard.streams[id].blocks.empty());
  REQUIRE(p.server.submit_response(id, {{":status", "431"}}, true));
  p.pump();
  REQUIRE(p.client_heard.streams[id].blocks.size() == 1);
  CHECK(h2_field(p.client_heard.streams[id].blocks[0].second, ":status") == "431");
  // The connection goes on.
  int32_t next = p.client.submit_request(get(), true, nullptr);
  p.pump();
  CHECK(p.server_heard.streams[next].blocks.size() == 1);
}

TEST_CASE("a reset reaches the other end with its code", "[h2conn]") {
  Pair p;
  int tag = 0;
  int32_t id = p.client.submit_request(post(), false, &tag);
  REQUIRE(p.client.send_data(id, bytes("part")));
  p.pump();
  p.client.reset(id, NGHTTP2_CANCEL);
  p.pump();
  CHECK(p.server_heard.streams[id].closed);
  CHECK(p.server_heard.streams[id].error == NGHTTP2_CANCEL);
  CHECK(p.client_heard.streams[id].closed);
  // The closing stream's user is still there for the handler, then gone.
  CHECK(p.client_heard.streams[id].user_at_close == &tag);
  CHECK(p.client.stream_user(id) == nullptr);
  CHECK(p.client.open_streams() == 0);
  CHECK(p.server.open_streams() == 0);
}

TEST_CASE("a graceful GOAWAY lets open streams finish and stops new ones", "[h2conn]") {
  Pair p;
  int32_t id = p.client.submit_request(get(), true, nullptr);
  p.pump();
  CHECK(p.client.streams_available() == H2Conn::kMaxConcurrentStreams - 1);
  p.server.goaway(0);
  p.pump();
  CHECK(p.client_heard.goaway_last == id);
  CHECK(p.client.going_away());
  CHECK(p.client.streams_available() == 0);
  CHECK(p.client.submit_request(get(), true, nullptr) == -1);
  REQUIRE(p.server.submit_response(id, {{":status", "204"}}, true));
  p.pump();
  CHECK(p.client_heard.streams[id].closed);
  CHECK(p.client_heard.streams[id].error == 0);
  CHECK(p.server.finished());
}

TEST_CASE("the peer's concurrent stream limit bounds new requests", "[h2conn]") {
  Pair p;
  for (uint32_t i = 0; i < H2Conn::kMaxConcurrentStreams; ++i)
    REQUIRE(p.client.submit_request(post(), false, nullptr) > 0);
  CHECK(p.client.streams_available() == 0);
  CHECK(p.client.submit_request(post(), false, nullptr) == -1);
  p.pump();
  CHECK(p.server.open_streams() == H2Conn::kMaxConcurrentStreams);
}

TEST_CASE("bytes that are not HTTP/2 end the connection with a GOAWAY", "[h2conn]") {
  Recorder heard;
  H2Conn server(H2Conn::Role::kServer, &heard);
  heard.conn = &server;
  REQUIRE(server.start());
  const std::string junk = "GET / HTTP/1.1\r\nHost: x\r\n\r\n";
  CHECK_FALSE(server.recv(bytes(junk)));
  CHECK(server.going_away());
  std::span<const uint8_t> out = server.pending();
  REQUIRE(out.size() >= 9);
  // The last frame queued is the GOAWAY (type 7), after the SETTINGS.
  bool goaway = false;
  for (size_t at = 0; at + 9 <= out.size();) {
    size_t len = (size_t{out[at]} << 16) | (size_t{out[at + 1]} << 8) | out[at + 2];
    if (out[at + 3] == NGHTTP2_GOAWAY) goaway = true;
    at += 9 + len;
  }
  CHECK(goaway);
  server.sent(out.size());
  CHECK(server.finished());
  CHECK_FALSE(server.recv(bytes(junk)));  // and stays ended
}
