// H2Tap (src/http/h2_tap.h) seen through a sink that records every event
// as a line. The frames are built here and their header blocks encoded by
// nghttp2's own HPACK deflater, as a real peer's would be: streams answered
// out of order, header blocks across CONTINUATION frames with padding and
// priority, gRPC status from trailers and trailers-only responses, resets,
// GOAWAY, the table size a peer's SETTINGS allow, the bounds that make the
// tap give up, and bytes arriving in any pieces.
#include <nghttp2/nghttp2.h>

#include <catch2/catch.hpp>

#include <cstdint>
#include <map>
#include <string>
#include <utility>
#include <vector>

#include "http/h2_tap.h"
#include "tests/unit/tap_recorder.h"

using namespace meshd::http;
using namespace std::literals;

namespace {

constexpr std::string_view kPreface = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

using Fields = std::vector<std::pair<std::string, std::string>>;

// One side's HPACK encoder, with the dynamic table a real peer keeps.
class Encoder {
 public:
  explicit Encoder(size_t table = 4096) { REQUIRE(nghttp2_hd_deflate_new(&d_, table) == 0); }
  ~Encoder() { nghttp2_hd_deflate_del(d_); }
  Encoder(const Encoder&) = delete;
  Encoder& operator=(const Encoder&) = delete;
  void table_size(size_t size) { REQUIRE(nghttp2_hd_deflate_change_table_size(d_, size) == 0); }
  std::string block(const Fields& fields) {
    std::vector<nghttp2_nv> nv;
    for (const auto& [n, v] : fields)
      nv.push_back({reinterpret_cast<uint8_t*>(const_cast<char*>(n.data())),
                    reinterpret_cast<uint8_t*>(const_cast<char*>(v.data())), n.size(), v.size(), NGHTTP2_NV_FLAG_NONE});
    std::string out(nghttp2_hd_deflate_bound(d_, nv.data(), nv.size()), '\0');
    ssize_t n = nghttp2_hd_deflate_hd(d_, reinterpret_cast<uint8_t*>(out.data()), out.size(), nv.data(), nv.size());
    REQUIRE(n >= 0);
    out.resize(static_cast<size_t>(n));
    return out;
  }

 private:
  nghttp2_hd_deflater* d_ = nullptr;
};

enum : uint8_t { kData = 0, kHeaders = 1, kPriorityFrame = 2, kRst = 3, kSettings = 4, kPush = 5, kPing = 6 };
enum : uint8_t { kGoaway = 7, kWindowUpdate = 8, kContinuation = 9 };
enum : uint8_t { kEndStream = 1, kEndHeaders = 4, kPadded = 8, kPriority = 0x20 };

std::string be32(uint32_t v) {
  return {static_cast<char>(v >> 24), static_cast<char>(v >> 16), static_cast<char>(v >> 8), static_cast<char>(v)};
}

std::string frame(uint8_t type, uint8_t flags, uint32_t stream, std::string_view payload) {
  std::string f;
  f += static_cast<char>(payload.size() >> 16);
  f += static_cast<char>(payload.size() >> 8);
  f += static_cast<char>(payload.size());
  f += static_cast<char>(type);
  f += static_cast<char>(flags);
  f += be32(stream);
  f += payload;
  return f;
}

std::string settings(std::vector<std::pair<uint16_t, uint32_t>> entries = {}) {
  std::string p;
  for (auto [id, v] : entries) {
    p += static_cast<char>(id >> 8);
    p += static_cast<char>(id);
    p += be32(v);
  }
  return frame(kSettings, 0, 0, p);
}

Fields get(std::string path, std::string authority = "api.prod:8080") {
  return {{":method", "GET"}, {":scheme", "http"}, {":authority", authority}, {":path", path}};
}
Fields grpc_call(std::string method) {
  return {{":method", "POST"},
          {":scheme", "http"},
          {":authority", "greeter.prod"},
          {":path", method},
          {"content-type", "application/grpc"},
          {"te", "trailers"}};
}
Fields status(std::string code, bool grpc = false) {
  Fields f{{":status", code}};
  if (grpc) f.push_back({"content-type", "application/grpc+proto"});
  return f;
}

std::span<const char> bytes_of(std::string_view s) { return {s.data(), s.size()}; }

// A tap with its recorder, a clock the test moves, and both peers'
// encoders. The client's preface opens the request side.
struct Conn {
  Conn() {
    REQUIRE(tap.reset(&rec, 0));
    REQUIRE(req(std::string(kPreface) + settings()).kind == TapVerdict::kPass);
    REQUIRE(resp(settings()).kind == TapVerdict::kPass);
  }
  TapVerdict req(std::string_view s) { return tap.feed(TapSide::kRequests, bytes_of(s), now); }
  TapVerdict resp(std::string_view s) { return tap.feed(TapSide::kResponses, bytes_of(s), now); }
  std::string headers(Encoder& e, uint32_t stream, const Fields& f, bool end_stream) {
    return frame(kHeaders, static_cast<uint8_t>(kEndHeaders | (end_stream ? kEndStream : 0)), stream, e.block(f));
  }
  TapVerdict request(uint32_t stream, const Fields& f, bool end_stream = true) {
    return req(headers(client, stream, f, end_stream));
  }
  TapVerdict response(uint32_t stream, const Fields& f, bool end_stream = false) {
    return resp(headers(server, stream, f, end_stream));
  }

  TapRecorder rec{true};
  H2Tap tap;
  Encoder client;
  Encoder server;
  uint64_t now = 1000;
};

}  // namespace

TEST_CASE("h2 tap: a request, its response head, body and end", "[h2tap]") {
  Conn c;
  REQUIRE(c.request(1, get("/users?id=7")).kind == TapVerdict::kPass);
  c.now = 3500;
  REQUIRE(c.response(1, status("200")).kind == TapVerdict::kPass);
  REQUIRE(c.resp(frame(kData, 0, 1, "hello ")).kind == TapVerdict::kPass);
  REQUIRE(c.resp(frame(kData, kEndStream, 1, "world")).kind == TapVerdict::kPass);
  CHECK(c.rec.events == std::vector<std::string>{"request 1 GET api.prod:8080 /users?id=7", "head 1 200 ttfb=2500",
                                                 "response 1 200 ttfb=2500 complete"});
  CHECK(c.rec.all_answered_once());
  CHECK(c.tap.open_streams() == 0);
}

TEST_CASE("h2 tap: streams answered out of order, each to its own request", "[h2tap]") {
  Conn c;
  c.request(1, get("/a"));
  c.request(3, get("/b"));
  c.request(5, get("/c"));
  c.now = 2000;
  c.response(5, status("404"), true);
  c.now = 3000;
  c.response(1, status("503"));
  c.response(3, status("200"));
  c.resp(frame(kData, kEndStream, 3, "b"));
  c.resp(frame(kData, kEndStream, 1, "a"));
  CHECK(c.rec.events == std::vector<std::string>{"request 1 GET api.prod:8080 /a", "request 2 GET api.prod:8080 /b",
                                                 "request 3 GET api.prod:8080 /c", "head 3 404 ttfb=1000",
                                                 "response 3 404 ttfb=1000 complete", "head 1 503 ttfb=2000",
                                                 "head 2 200 ttfb=2000", "response 2 200 ttfb=2000 complete",
                                                 "response 1 503 ttfb=2000 complete"});
  CHECK(c.rec.all_answered_once());
}

TEST_CASE("h2 tap: gRPC status from trailers, trailers-only, and a missing one", "[h2tap]") {
  Conn c;
  c.request(1, grpc_call("/helloworld.Greeter/SayHello"), false);
  c.req(frame(kData, kEndStream, 1, std::string("\0\0\0\0\0", 5)));
  c.response(1, status("200", true));
  c.resp(frame(kData, 0, 1, std::string("\0\0\0\0\0", 5)));
  c.response(1, {{"grpc-status", "14"}, {"grpc-message", "unavailable"}}, true);  // trailers
  c.request(3, grpc_call("/helloworld.Greeter/SayHello"));
  c.response(3, {{":status", "200"}, {"content-type", "application/grpc"}, {"grpc-status", "0"}}, true);
  c.request(5, grpc_call("/helloworld.Greeter/SayHello"));
  c.response(5, status("200", true));
  c.resp(frame(kData, kEndStream, 5, ""));
  // Not gRPC: a grpc-status header means nothing. (gRPC responses have no
  // head event: their outcome is in the trailers.)
  c.request(7, get("/plain"));
  c.response(7, {{":status", "200"}, {"grpc-status", "3"}}, true);
  CHECK(c.rec.events ==
        std::vector<std::string>{
            "request 1 POST greeter.prod /helloworld.Greeter/SayHello", "response 1 200 ttfb=0 complete grpc=14",
            "request 2 POST greeter.prod /helloworld.Greeter/SayHello", "response 2 200 ttfb=0 complete grpc=0",
            "request 3 POST greeter.prod /helloworld.Greeter/SayHello", "response 3 200 ttfb=0 complete grpc=2",
            "request 4 GET api.prod:8080 /plain", "head 4 200 ttfb=0", "response 4 200 ttfb=0 complete"});
}

TEST_CASE("h2 tap: interim heads wait for the final one; Host stands in for :authority", "[h2tap]") {
  Conn c;
  c.request(1, {{":method", "PUT"}, {":scheme", "http"}, {":path", "/up"}, {"host", "files.prod"}}, false);
  c.now = 1500;
  c.response(1, status("100"));
  c.now = 2000;
  c.req(frame(kData, kEndStream, 1, "x"));
  c.response(1, status("201"), true);
  CHECK(c.rec.events == std::vector<std::string>{"request 1 PUT files.prod /up", "head 1 201 ttfb=1000",
                                                 "response 1 201 ttfb=1000 complete"});
}

TEST_CASE("h2 tap: padded, prioritised blocks across CONTINUATION frames", "[h2tap]") {
  Conn c;
  Fields f = get("/long");
  f.push_back({"x-big", std::string(300, 'v')});
  std::string block = c.client.block(f);
  REQUIRE(block.size() > 20);
  // HEADERS: pad length 3, priority (5 bytes), the first 10 bytes, padding.
  std::string first = std::string(1, '\3') + std::string(5, '\0') + block.substr(0, 10) + "\0\0\0"s;
  std::string bytes = frame(kHeaders, kPadded | kPriority | kEndStream, 1, first) +
                      frame(kContinuation, 0, 1, block.substr(10, 7)) +
                      frame(kContinuation, kEndHeaders, 1, block.substr(17));
  // And a PRIORITY frame, a PING and a WINDOW_UPDATE, passed over.
  bytes += frame(kPriorityFrame, 0, 3, std::string(5, '\0')) + frame(kPing, 0, 0, std::string(8, 'p')) +
           frame(kWindowUpdate, 0, 0, be32(65535));
  REQUIRE(c.req(bytes).kind == TapVerdict::kPass);
  // A padded response head with an empty fragment in its first frame.
  std::string rblock = c.server.block(status("204"));
  REQUIRE(
      c.resp(frame(kHeaders, kPadded | kEndStream, 1, "\2\0\0"s) + frame(kContinuation, kEndHeaders, 1, rblock)).kind ==
      TapVerdict::kPass);
  CHECK(c.rec.events == std::vector<std::string>{"request 1 GET api.prod:8080 /long", "head 1 204 ttfb=0",
                                                 "response 1 204 ttfb=0 complete"});
}

TEST_CASE("h2 tap: the same conversation read in any pieces gives the same events", "[h2tap]") {
  // Both directions recorded once, then replayed split at every size.
  std::string reqs, resps;
  {
    Encoder client, server;
    reqs = std::string(kPreface) + settings({{1, 8192}, {3, 100}});
    resps = settings({{1, 16384}}) + frame(kSettings, 1, 0, "");
    server.table_size(8192);  // as the client's SETTINGS allow
    for (uint32_t s = 1; s <= 9; s += 2) {
      Fields f = grpc_call("/svc/M" + std::to_string(s));
      f.push_back({"x-trace", std::string(40, static_cast<char>('a' + s))});
      reqs += frame(kHeaders, kEndHeaders, s, client.block(f)) + frame(kData, kEndStream, s, "payload");
      // One statement per block: the encoder's table follows the order of
      // its calls, which must be the order on the wire.
      resps += frame(kHeaders, kEndHeaders, s, server.block(status("200", true)));
      resps += frame(kData, 0, s, "r");
      resps += frame(kHeaders, kEndHeaders | kEndStream, s, server.block({{"grpc-status", s == 5 ? "13" : "0"}}));
    }
  }
  auto run = [&](size_t piece) {
    TapRecorder rec{true};
    H2Tap tap;
    REQUIRE(tap.reset(&rec, 0));
    // All requests first, then the responses, each in pieces of `piece`.
    for (size_t i = 0; i < reqs.size(); i += piece)
      REQUIRE(tap.feed(TapSide::kRequests, bytes_of(std::string_view(reqs).substr(i, piece)), 0).kind ==
              TapVerdict::kPass);
    for (size_t i = 0; i < resps.size(); i += piece)
      REQUIRE(tap.feed(TapSide::kResponses, bytes_of(std::string_view(resps).substr(i, piece)), 0).kind ==
              TapVerdict::kPass);
    CHECK(rec.all_answered_once());
    return rec.events;
  };
  std::vector<std::string> whole = run(reqs.size() + resps.size());
  REQUIRE(whole.size() == 10);
  CHECK(whole[3] == "request 4 POST greeter.prod /svc/M7");
  CHECK(whole[5] == "response 1 200 ttfb=0 complete grpc=0");
  CHECK(whole[7] == "response 3 200 ttfb=0 complete grpc=13");
  for (size_t piece : {1, 2, 3, 5, 9, 10, 64}) CHECK(run(piece) == whole);
}

TEST_CASE("h2 tap: resets, refusals and GOAWAY end their streams", "[h2tap]") {
  Conn c;
  c.request(1, get("/reset-by-server"));
  c.request(3, get("/cut-in-body"));
  c.request(5, get("/cancelled"));
  c.request(7, get("/refused"));
  c.request(9, get("/after-goaway"));
  c.request(11, get("/before-goaway"));
  c.resp(frame(kRst, 0, 1, be32(2)));  // INTERNAL_ERROR
  c.response(3, status("200"));
  c.req(frame(kRst, 0, 3, be32(8)));  // the client cancels in the body
  c.req(frame(kRst, 0, 5, be32(8)));
  c.resp(frame(kRst, 0, 7, be32(7)));  // REFUSED_STREAM
  c.resp(frame(kGoaway, 0, 0, be32(7) + be32(0) + "draining"));
  c.response(11, status("200"), true);  // above the GOAWAY's last stream: failed already, not followed
  CHECK(c.rec.events ==
        std::vector<std::string>{"request 1 GET api.prod:8080 /reset-by-server",
                                 "request 2 GET api.prod:8080 /cut-in-body", "request 3 GET api.prod:8080 /cancelled",
                                 "request 4 GET api.prod:8080 /refused", "request 5 GET api.prod:8080 /after-goaway",
                                 "request 6 GET api.prod:8080 /before-goaway", "failure 1 upstream_reset",
                                 "head 2 200 ttfb=0", "response 2 200 ttfb=0 incomplete", "failure 3 client_reset",
                                 "failure 4 refused_stream", "failure 6 refused_stream", "failure 5 refused_stream"});
  CHECK(c.rec.all_answered_once());
}

TEST_CASE("h2 tap: the connection's end fails what is open", "[h2tap]") {
  Conn c;
  c.request(1, get("/headed"));
  c.request(3, get("/waiting"));
  c.response(1, status("200"));
  c.tap.finish("upstream_reset", c.now);
  c.tap.finish("closed", c.now);  // idempotent
  CHECK(c.rec.events == std::vector<std::string>{"request 1 GET api.prod:8080 /headed",
                                                 "request 2 GET api.prod:8080 /waiting", "head 1 200 ttfb=0",
                                                 "failure 2 upstream_reset", "response 1 200 ttfb=0 incomplete"});
  CHECK(c.rec.all_answered_once());
  CHECK(c.req(frame(kPing, 0, 0, std::string(8, 'p'))).kind == TapVerdict::kOpaque);
}

TEST_CASE("h2 tap: what it cannot follow makes it stop, and the bytes flow on", "[h2tap]") {
  SECTION("a header block HPACK cannot decode") {
    Conn c;
    c.request(1, get("/ok"));
    // Index 127+ into an empty dynamic table.
    CHECK(c.req(frame(kHeaders, kEndHeaders, 3, "\xff\x7f"s)).kind == TapVerdict::kOpaque);
    CHECK(c.rec.events ==
          std::vector<std::string>{"request 1 GET api.prod:8080 /ok", "failure 1 abandoned", "abandoned h2_hpack"});
    CHECK(c.req(frame(kData, 0, 1, "x")).kind == TapVerdict::kOpaque);
  }
  SECTION("a frame other than CONTINUATION inside a header block") {
    Conn c;
    std::string block = c.client.block(get("/x"));
    c.req(frame(kHeaders, 0, 1, block));
    CHECK(c.req(frame(kData, 0, 1, "x")).kind == TapVerdict::kOpaque);
    CHECK(c.rec.events == std::vector<std::string>{"abandoned h2_protocol"});
  }
  SECTION("HEADERS on stream 0, or an even client stream") {
    Conn c;
    CHECK(c.request(0, get("/x")).kind == TapVerdict::kOpaque);
    Conn d;
    CHECK(d.request(2, get("/x")).kind == TapVerdict::kOpaque);
  }
  SECTION("padding longer than the frame") {
    Conn c;
    CHECK(c.req(frame(kHeaders, kPadded | kEndHeaders, 1, "\x09zz"s)).kind == TapVerdict::kOpaque);
  }
  SECTION("more streams open at once than it follows") {
    Conn c;
    for (uint32_t i = 0; i < H2Tap::kMaxStreams; ++i)
      REQUIRE(c.request(1 + 2 * i, get("/s")).kind == TapVerdict::kPass);
    CHECK(c.request(1 + 2 * H2Tap::kMaxStreams, get("/s")).kind == TapVerdict::kOpaque);
    CHECK(c.rec.events.back() == "abandoned h2_streams");
    CHECK(c.rec.all_answered_once());
  }
  SECTION("a header block over the bound") {
    Conn c;
    std::string chunk(16384, 'x');
    std::string bytes = frame(kHeaders, 0, 1, chunk);
    for (uint32_t n = 16384; n <= H2Tap::kMaxHeaderBlock; n += 16384) bytes += frame(kContinuation, 0, 1, chunk);
    CHECK(c.req(bytes).kind == TapVerdict::kOpaque);
    CHECK(c.rec.events.back() == "abandoned h2_headers_too_large");
  }
  SECTION("a table size over the bound") {
    Conn c;
    CHECK(c.req(settings({{1, H2Tap::kMaxTableSize + 1}})).kind == TapVerdict::kOpaque);
    CHECK(c.rec.events.back() == "abandoned h2_table_size");
  }
}

TEST_CASE("h2 tap: a larger table allowed by SETTINGS, and blocks the tap has no use for, keep HPACK in step",
          "[h2tap]") {
  Conn c;
  // The client allows the server's encoder 32 KiB; the server uses it.
  c.req(settings({{1, 32768}}));
  c.server.table_size(32768);
  c.request(1, get("/a"));
  c.request(3, get("/b"));
  Fields big = status("200");
  big.push_back({"x-big", std::string(8000, 'q')});
  c.response(1, big, true);
  // A PUSH_PROMISE's block and a request's trailers go through the
  // inflaters too: the next blocks refer to what they added.
  std::string push = c.server.block(get("/pushed"));
  c.resp(frame(kPush, kEndHeaders, 3, be32(2) + push));
  c.req(frame(kData, 0, 3, "x"));
  c.req(c.headers(c.client, 3, {{"x-checksum", "abc"}}, true));
  big[1].second = std::string(8000, 'q');
  c.response(3, big, true);
  c.request(5, {{":method", "GET"},
                {":scheme", "http"},
                {":authority", "api.prod:8080"},
                {":path", "/pushed"},
                {"x-checksum", "abc"}});
  CHECK(c.rec.events == std::vector<std::string>{"request 1 GET api.prod:8080 /a", "request 2 GET api.prod:8080 /b",
                                                 "head 1 200 ttfb=0", "response 1 200 ttfb=0 complete",
                                                 "head 2 200 ttfb=0", "response 2 200 ttfb=0 complete",
                                                 "request 3 GET api.prod:8080 /pushed"});
}

TEST_CASE("h2 tap: a preface whose first bytes detection held", "[h2tap]") {
  TapRecorder rec{true};
  H2Tap tap;
  REQUIRE(tap.reset(&rec, 10));
  Encoder client;
  std::string rest = std::string(kPreface.substr(10)) + settings() +
                     frame(kHeaders, kEndHeaders | kEndStream, 1, client.block(get("/after")));
  CHECK(tap.feed(TapSide::kRequests, bytes_of(rest), 0).kind == TapVerdict::kPass);
  CHECK(rec.events == std::vector<std::string>{"request 1 GET api.prod:8080 /after"});
}
