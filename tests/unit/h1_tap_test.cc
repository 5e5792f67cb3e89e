// H1Tap (src/http/h1_tap.h) seen through a sink that records every event
// as a line: detection, request/response pairing across keep-alive and
// pipelining, heads and bodies arriving in any pieces, tunnels, refusals
// of requests our peers could parse differently, giving up, and the
// accounting that answers every request exactly once. Also the error
// response the proxy writes for a refusal (src/http/error_response.h).
#include <catch2/catch.hpp>

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "http/error_response.h"
#include "http/h1_tap.h"
#include "tests/unit/tap_recorder.h"

using namespace meshd::http;
using namespace std::literals;

namespace {

using Recorder = TapRecorder;

std::span<const char> bytes_of(std::string_view s) { return {s.data(), s.size()}; }

// A tap with its recorder and a clock the test moves.
struct Conn {
  explicit Conn(const Limits& limits = {}) : tap(limits, &rec) {}
  TapVerdict req(std::string_view s) { return tap.feed(TapSide::kRequests, bytes_of(s), now); }
  TapVerdict resp(std::string_view s) { return tap.feed(TapSide::kResponses, bytes_of(s), now); }
  // Feeds `s` in pieces ending at `cuts`; the first verdict that is not kPass, else kPass.
  TapVerdict feed_split(TapSide side, std::string_view s, const std::vector<size_t>& cuts) {
    size_t pos = 0;
    for (size_t k = 0; k <= cuts.size(); ++k) {
      size_t end = k < cuts.size() ? cuts[k] : s.size();
      if (end <= pos) continue;
      TapVerdict v = tap.feed(side, bytes_of(s.substr(pos, end - pos)), now);
      if (v.kind != TapVerdict::kPass) return v;
      pos = end;
    }
    return {};
  }
  TapVerdict bytewise(TapSide side, std::string_view s) {
    std::vector<size_t> cuts;
    for (size_t i = 1; i < s.size(); ++i) cuts.push_back(i);
    return feed_split(side, s, cuts);
  }

  Recorder rec;
  H1Tap tap;
  uint64_t now = 1000;
};

std::string get(std::string_view target, std::string_view extra = "") {
  return "GET "s + std::string(target) + " HTTP/1.1\r\nHost: svc\r\n" + std::string(extra) + "\r\n";
}

std::string ok(std::string_view body, std::string_view status = "200 OK") {
  return "HTTP/1.1 "s + std::string(status) + "\r\nContent-Length: " + std::to_string(body.size()) + "\r\n\r\n" +
         std::string(body);
}

using Events = std::vector<std::string>;

}  // namespace

// --- Detection ---

TEST_CASE("h1tap: an HTTP/1 request line is detected and tapped", "[h1tap]") {
  Conn c;
  CHECK(c.req(get("/a")).kind == TapVerdict::kPass);
  CHECK(c.rec.events == Events{"detected http1", "request 1 GET /a"});
  CHECK(c.tap.active());
  CHECK_FALSE(c.tap.can_answer());
}

TEST_CASE("h1tap: the request line is read until it decides, a byte at a time", "[h1tap]") {
  Conn c;
  const std::string line = "OPTIONS * HTTP/1.0\r\n";
  for (char ch : line.substr(0, line.size() - 1)) {
    REQUIRE(c.req(std::string(1, ch)).kind == TapVerdict::kPass);
    REQUIRE(c.rec.events.empty());
  }
  CHECK(c.tap.held_bytes() == line.size() - 1);
  CHECK(c.req("\n").kind == TapVerdict::kPass);
  CHECK(c.rec.events == Events{"detected http1"});
  CHECK(c.req("\r\n").kind == TapVerdict::kPass);
  CHECK(c.rec.events == Events{"detected http1", "request 1 OPTIONS *"});
  CHECK(c.tap.held_bytes() == 0);
}

TEST_CASE("h1tap: what is not HTTP/1 is opaque from its first bytes", "[h1tap]") {
  struct Case {
    std::string what, bytes, detected;
  };
  const std::vector<Case> cases = {
      {"h2 preface", "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00\x12\x04"s, "h2"},
      {"TLS ClientHello", "\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03", "tls"},
      {"SSH banner", "SSH-2.0-OpenSSH_9.2\r\n", "opaque"},
      {"HTTP/2.0 request line", "GET / HTTP/2.0\r\n", "opaque"},
      {"two spaces after the method", "GET  / HTTP/1.1\r\n", "opaque"},
      {"a 33-character method", std::string(33, 'A') + " / HTTP/1.1\r\n", "opaque"},
      {"an empty line first", "\r\nGET / HTTP/1.1\r\n", "opaque"},
      {"binary", "\x00\x01\x02\x03"s, "opaque"},
      {"redis", "*1\r\n$4\r\nPING\r\n", "opaque"},
  };
  for (const Case& k : cases) {
    INFO(k.what);
    Conn c;
    CHECK(c.req(k.bytes).kind == TapVerdict::kOpaque);
    CHECK(c.rec.events == Events{"detected " + k.detected});
    CHECK_FALSE(c.tap.active());
    CHECK(c.tap.held_bytes() == 0);
    // Done: later bytes either way are not looked at.
    CHECK(c.req(get("/")).kind == TapVerdict::kOpaque);
    CHECK(c.resp(ok("x")).kind == TapVerdict::kOpaque);
    c.tap.end(TapSide::kResponses, c.now);
    c.tap.finish("closed", c.now);
    CHECK(c.rec.events.size() == 1);
  }
}

TEST_CASE("h1tap: a split h2 preface waits for all of it", "[h1tap]") {
  const std::string preface = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
  for (size_t cut = 1; cut < preface.size(); ++cut) {
    INFO("cut at " << cut);
    Conn c;
    CHECK(c.req(preface.substr(0, cut)).kind == TapVerdict::kPass);
    CHECK(c.rec.events.empty());
    CHECK(c.req(preface.substr(cut)).kind == TapVerdict::kOpaque);
    CHECK(c.rec.events == Events{"detected h2"});
    CHECK(c.tap.held_bytes() == 0);
  }
  Conn c;  // diverging from the preface after its first bytes: HTTP/1 after all
  CHECK(c.req("PRI * HTTP/").kind == TapVerdict::kPass);
  CHECK(c.req("1.1\r\n").kind == TapVerdict::kPass);
  CHECK(c.rec.events == Events{"detected http1"});
}

TEST_CASE("h1tap: a connection that ends before any byte is silent; one cut mid-line is opaque", "[h1tap]") {
  Conn silent;
  silent.tap.finish("closed", silent.now);
  CHECK(silent.rec.events == Events{"detected silent"});
  Conn cut;
  CHECK(cut.req("GE").kind == TapVerdict::kPass);
  cut.tap.finish("client_reset", cut.now);
  CHECK(cut.rec.events == Events{"detected opaque"});
  // Decided earlier: not counted again.
  Conn h1;
  CHECK(h1.req(get("/")).kind == TapVerdict::kPass);
  h1.tap.finish("closed", h1.now);
  CHECK(h1.rec.events == Events{"detected http1", "request 1 GET /", "failure 1 closed"});
}

TEST_CASE("h1tap: an h2 server's SETTINGS before the client's preface wait for the client", "[h1tap]") {
  // A SETTINGS frame (one setting) as grpc-go sends it on accept.
  const std::string settings("\0\0\6\4\0\0\0\0\0\0\3\0\0\0\x64", 15);
  constexpr std::string_view kPreface = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

  Conn h2;  // in two pieces, and the client's preface in two
  CHECK(h2.resp(settings.substr(0, 4)).kind == TapVerdict::kPass);
  CHECK(h2.resp(settings.substr(4)).kind == TapVerdict::kPass);
  CHECK(h2.req(kPreface.substr(0, 7)).kind == TapVerdict::kPass);
  CHECK(h2.tap.request_bytes_held() == 7);
  CHECK(h2.tap.early_response().size() == settings.size());
  CHECK(h2.req(kPreface.substr(7)).kind == TapVerdict::kOpaque);
  CHECK(h2.rec.events == Events{"detected h2"});

  Conn h1;  // the client is not the h2 client the server waits for
  CHECK(h1.resp(settings).kind == TapVerdict::kPass);
  CHECK(h1.req(get("/")).kind == TapVerdict::kOpaque);
  CHECK(h1.rec.events == Events{"detected server_first"});

  Conn partial;  // the client's held bytes cannot be the preface any more
  CHECK(partial.req("GE").kind == TapVerdict::kPass);
  CHECK(partial.resp(settings).kind == TapVerdict::kOpaque);
  CHECK(partial.rec.events == Events{"detected server_first"});

  Conn ack;  // a SETTINGS ACK, or any other frame, is not a server's first word
  CHECK(ack.resp(std::string("\0\0\0\4\1\0\0\0\0", 9)).kind == TapVerdict::kOpaque);
  CHECK(ack.rec.events == Events{"detected server_first"});

  Conn quiet;  // the client never spoke
  CHECK(quiet.resp(settings).kind == TapVerdict::kPass);
  quiet.tap.finish("closed", quiet.now);
  CHECK(quiet.rec.events == Events{"detected server_first"});
  CHECK(quiet.tap.held_bytes() == 0);
}

TEST_CASE("h1tap: a server speaking first is opaque", "[h1tap]") {
  Conn c;
  CHECK(c.resp("220 mail.example ESMTP\r\n").kind == TapVerdict::kOpaque);
  CHECK(c.rec.events == Events{"detected server_first"});

  Conn partial;  // the client's bytes so far decide nothing
  CHECK(partial.req("GE").kind == TapVerdict::kPass);
  CHECK(partial.resp("+OK ready\r\n").kind == TapVerdict::kOpaque);
  CHECK(partial.rec.events == Events{"detected server_first"});
  CHECK(partial.tap.held_bytes() == 0);
}

TEST_CASE("h1tap: a client that closes before its first line is whole is opaque", "[h1tap]") {
  Conn c;
  CHECK(c.req("GET /x").kind == TapVerdict::kPass);
  c.tap.end(TapSide::kRequests, c.now);
  CHECK(c.rec.events == Events{"detected opaque"});
  CHECK_FALSE(c.tap.active());
  CHECK(c.tap.held_bytes() == 0);
}

// --- Pairing ---

TEST_CASE("h1tap: keep-alive requests are paired with their responses", "[h1tap]") {
  Conn c;
  CHECK(c.req(get("/one")).kind == TapVerdict::kPass);
  c.now = 1250;
  CHECK(c.resp(ok("hello")).kind == TapVerdict::kPass);
  CHECK(c.tap.can_answer());
  c.now = 2000;
  CHECK(c.req("POST /two HTTP/1.1\r\nHost: svc\r\nContent-Length: 3\r\n\r\nabc").kind == TapVerdict::kPass);
  c.now = 2010;
  CHECK(c.resp("HTTP/1.1 201 Created\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n").kind ==
        TapVerdict::kPass);
  c.tap.finish("closed", c.now);
  CHECK(c.rec.events == Events{"detected http1", "request 1 GET /one", "response 1 200 ttfb=250 complete",
                               "request 2 POST /two", "response 2 201 ttfb=10 complete"});
  CHECK(c.rec.all_answered_once());
}

TEST_CASE("h1tap: three pipelined requests in one span, responses split at every byte", "[h1tap]") {
  const std::string requests = get("/1") + "POST /2 HTTP/1.1\r\nHost: svc\r\nContent-Length: 4\r\n\r\nbody" + get("/3");
  const std::string responses = ok("first") +
                                "HTTP/1.1 500 Oops\r\nTransfer-Encoding: chunked\r\n\r\n"
                                "2\r\nab\r\n0\r\nX-T: 1\r\n\r\n" +
                                "HTTP/1.1 204 No Content\r\n\r\n";
  const Events expected = {"detected http1",
                           "request 1 GET /1",
                           "request 2 POST /2",
                           "request 3 GET /3",
                           "response 1 200 ttfb=0 complete",
                           "response 2 500 ttfb=0 complete",
                           "response 3 204 ttfb=0 complete"};
  auto run = [&](const std::vector<size_t>& cuts) {
    Conn c;
    REQUIRE(c.req(requests).kind == TapVerdict::kPass);
    REQUIRE(c.feed_split(TapSide::kResponses, responses, cuts).kind == TapVerdict::kPass);
    CHECK(c.tap.can_answer());
    CHECK(c.tap.held_bytes() == 0);
    return c.rec.events;
  };
  CHECK(run({}) == expected);
  for (size_t cut = 1; cut < responses.size(); ++cut) {
    INFO("cut at " << cut);
    CHECK(run({cut}) == expected);
  }
  std::vector<size_t> every;
  for (size_t i = 1; i < responses.size(); ++i) every.push_back(i);
  CHECK(run(every) == expected);

  // The requests split anywhere too.
  for (size_t cut = 1; cut < requests.size(); ++cut) {
    INFO("request cut at " << cut);
    Conn c;
    REQUIRE(c.feed_split(TapSide::kRequests, requests, {cut}).kind == TapVerdict::kPass);
    REQUIRE(c.resp(responses).kind == TapVerdict::kPass);
    CHECK(c.rec.events == expected);
  }
}

TEST_CASE("h1tap: heads straddling reads are held and freed", "[h1tap]") {
  Conn c;
  const std::string r = get("/straddle", "Accept: */*\r\nX-Long: " + std::string(300, 'v') + "\r\n");
  CHECK(c.req(r.substr(0, 40)).kind == TapVerdict::kPass);
  CHECK(c.tap.held_bytes() == 40);
  CHECK(c.req(r.substr(40, 200)).kind == TapVerdict::kPass);
  CHECK(c.tap.held_bytes() == 240);
  CHECK(c.rec.events == Events{"detected http1"});
  CHECK(c.req(r.substr(240)).kind == TapVerdict::kPass);
  CHECK(c.tap.held_bytes() == 0);
  CHECK(c.rec.events == Events{"detected http1", "request 1 GET /straddle"});

  const std::string s = "HTTP/1.1 200 OK\r\nServer: x\r\nContent-Length: 2\r\n\r\nhi";
  CHECK(c.resp(s.substr(0, 20)).kind == TapVerdict::kPass);
  CHECK(c.tap.held_bytes() == 20);
  CHECK(c.resp(s.substr(20, s.size() - 22)).kind == TapVerdict::kPass);  // the head's end, not the body
  CHECK(c.tap.held_bytes() == 0);
  CHECK(c.rec.events.size() == 2);
  CHECK(c.resp("hi").kind == TapVerdict::kPass);
  CHECK(c.rec.events.back() == "response 1 200 ttfb=0 complete");
}

TEST_CASE("h1tap: HEAD, 204 and 304 responses have no body whatever they say", "[h1tap]") {
  Conn c;
  CHECK(c.req("HEAD /h HTTP/1.1\r\nHost: svc\r\n\r\n" + get("/nc") + get("/nm")).kind == TapVerdict::kPass);
  CHECK(c.resp("HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n"
               "HTTP/1.1 204 No Content\r\n\r\n"
               "HTTP/1.1 304 Not Modified\r\nContent-Length: 50\r\n\r\n")
            .kind == TapVerdict::kPass);
  CHECK(c.rec.events == Events{"detected http1", "request 1 HEAD /h", "request 2 GET /nc", "request 3 GET /nm",
                               "response 1 200 ttfb=0 complete", "response 2 204 ttfb=0 complete",
                               "response 3 304 ttfb=0 complete"});
  CHECK(c.tap.can_answer());
}

TEST_CASE("h1tap: chunked bodies with trailers, both ways, a byte at a time", "[h1tap]") {
  Conn c;
  const std::string body = "5;ext=1\r\nhello\r\n0\r\nX-Checksum: abc\r\n\r\n";
  CHECK(c.bytewise(TapSide::kRequests,
                   "POST /up HTTP/1.1\r\nHost: svc\r\nTransfer-Encoding: chunked\r\n\r\n" + body + get("/next"))
            .kind == TapVerdict::kPass);
  CHECK(c.bytewise(TapSide::kResponses, "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n" + body + ok("")).kind ==
        TapVerdict::kPass);
  CHECK(c.rec.events == Events{"detected http1", "request 1 POST /up", "request 2 GET /next",
                               "response 1 200 ttfb=0 complete", "response 2 200 ttfb=0 complete"});
}

TEST_CASE("h1tap: 100 Continue is not the response", "[h1tap]") {
  Conn c;
  CHECK(c.req("PUT /f HTTP/1.1\r\nHost: svc\r\nExpect: 100-continue\r\nContent-Length: 4\r\n\r\n").kind ==
        TapVerdict::kPass);
  c.now = 1100;
  CHECK(c.resp("HTTP/1.1 100 Continue\r\n\r\n").kind == TapVerdict::kPass);
  CHECK(c.rec.events.size() == 2);
  CHECK_FALSE(c.tap.can_answer());
  CHECK(c.req("data").kind == TapVerdict::kPass);
  c.now = 1500;
  CHECK(c.resp(ok("")).kind == TapVerdict::kPass);
  CHECK(c.rec.events.back() == "response 1 200 ttfb=500 complete");
  CHECK(c.tap.can_answer());
}

// --- Tunnels ---

TEST_CASE("h1tap: 101 Switching Protocols ends the tap", "[h1tap]") {
  const std::string upgrade = get("/ws", "Connection: Upgrade\r\nUpgrade: websocket\r\n");
  Conn c;
  CHECK(c.req(upgrade).kind == TapVerdict::kPass);
  c.now = 1003;
  CHECK(c.resp("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n\x81\x05hello")
            .kind == TapVerdict::kOpaque);
  CHECK(c.rec.events ==
        Events{"detected http1", "request 1 GET /ws", "response 1 101 ttfb=3 complete", "abandoned upgrade"});
  CHECK_FALSE(c.tap.active());
  c.tap.finish("closed", c.now);
  CHECK(c.rec.all_answered_once());
  CHECK(c.rec.events.size() == 4);

  Conn early;  // client bytes before the server decided: a tunnel or a request?
  CHECK(early.req(upgrade + "\x81\x05hello").kind == TapVerdict::kOpaque);
  CHECK(early.rec.events ==
        Events{"detected http1", "request 1 GET /ws", "abandoned upgrade_pipelined", "failure 1 abandoned"});

  Conn refused;  // a refused upgrade keeps the connection HTTP/1
  CHECK(refused.req(upgrade).kind == TapVerdict::kPass);
  CHECK(refused.resp(ok("no", "400 Bad Request")).kind == TapVerdict::kPass);
  CHECK(refused.req(get("/after")).kind == TapVerdict::kPass);
  CHECK(refused.resp(ok("")).kind == TapVerdict::kPass);
  CHECK(refused.rec.events == Events{"detected http1", "request 1 GET /ws", "response 1 400 ttfb=0 complete",
                                     "request 2 GET /after", "response 2 200 ttfb=0 complete"});

  Conn unasked;  // 101 to a request that did not ask for it
  CHECK(unasked.req(get("/plain")).kind == TapVerdict::kPass);
  CHECK(unasked.resp("HTTP/1.1 101 Switching Protocols\r\n\r\n").kind == TapVerdict::kOpaque);
  CHECK(unasked.rec.events ==
        Events{"detected http1", "request 1 GET /plain", "abandoned bad_response", "failure 1 abandoned"});
}

TEST_CASE("h1tap: CONNECT 2xx ends the tap, other answers do not", "[h1tap]") {
  const std::string connect = "CONNECT db:5432 HTTP/1.1\r\nHost: db:5432\r\n\r\n";
  Conn c;
  CHECK(c.req(connect).kind == TapVerdict::kPass);
  CHECK(c.resp("HTTP/1.1 200 Connection Established\r\n\r\n").kind == TapVerdict::kOpaque);
  CHECK(c.rec.events ==
        Events{"detected http1", "request 1 CONNECT db:5432", "response 1 200 ttfb=0 complete", "abandoned connect"});

  Conn denied;
  CHECK(denied.req(connect).kind == TapVerdict::kPass);
  CHECK(denied.resp(ok("", "407 Proxy Authentication Required")).kind == TapVerdict::kPass);
  CHECK(denied.req(get("/")).kind == TapVerdict::kPass);
  CHECK(denied.rec.events ==
        Events{"detected http1", "request 1 CONNECT db:5432", "response 1 407 ttfb=0 complete", "request 2 GET /"});
}

// --- Refusals ---

TEST_CASE("h1tap: smuggling patterns are refused before the span is forwarded", "[h1tap]") {
  struct Case {
    std::string what, first, second;  // the second span is the one refused
    uint16_t status;
    std::string reason;
  };
  const std::string post = "POST / HTTP/1.1\r\nHost: svc\r\n";
  const std::vector<Case> cases = {
      {"CL and TE", "", post + "Content-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n", 400, "cl_and_te"},
      {"two different CLs", "", post + "Content-Length: 5\r\nContent-Length: 6\r\n\r\n", 400,
       "content_length_mismatch"},
      {"bare LF arriving in a later span", post + "X-A: b\r", "\nX-B: c\n\r\n", 400, "bare_lf"},
      {"bare LF as the first byte of a later span", post + "X-A: b", "\n\r\n", 400, "bare_lf"},
      {"obs-fold", "", post + "X-A: b\r\n c\r\n\r\n", 400, "obs_fold"},
      {"HTTP/1.2", "", "GET / HTTP/1.2\r\nHost: svc\r\n\r\n", 505, "version"},
      {"TE gzip", "", post + "Transfer-Encoding: gzip\r\n\r\n", 501, "te_not_chunked"},
  };
  for (const Case& k : cases) {
    INFO(k.what);
    Conn c;
    if (!k.first.empty()) REQUIRE(c.req(k.first).kind == TapVerdict::kPass);
    TapVerdict v = c.req(k.second);
    CHECK(v.kind == TapVerdict::kReject);
    CHECK(v.status == k.status);
    CHECK(v.reason == k.reason);
    CHECK_FALSE(v.message.empty());
    CHECK(c.rec.events == Events{"detected http1", "rejected " + std::to_string(k.status) + " " + k.reason});
    CHECK(c.tap.can_answer());
    CHECK_FALSE(c.tap.active());
    CHECK(c.tap.held_bytes() == 0);
    CHECK(c.req(get("/")).kind == TapVerdict::kOpaque);
  }
}

TEST_CASE("h1tap: a bad chunk size refuses the span; its request is pending until finish", "[h1tap]") {
  Conn c;
  CHECK(c.req("POST /c HTTP/1.1\r\nHost: svc\r\nTransfer-Encoding: chunked\r\n\r\n").kind == TapVerdict::kPass);
  TapVerdict v = c.req("5\r\nhello\r\nzz\r\n");
  CHECK(v.kind == TapVerdict::kReject);
  CHECK(v.status == 400);
  CHECK(v.reason == "chunk_size");
  CHECK(c.tap.can_answer());  // the only request pending is the refused one, and no response has begun
  c.tap.finish("http_rejected", c.now);
  CHECK(c.rec.events ==
        Events{"detected http1", "request 1 POST /c", "rejected 400 chunk_size", "failure 1 http_rejected"});
  CHECK(c.rec.all_answered_once());
}

TEST_CASE("h1tap: a request refused in its body cannot be answered once its response has begun", "[h1tap]") {
  Conn c;
  CHECK(c.req("POST /c HTTP/1.1\r\nHost: svc\r\nTransfer-Encoding: chunked\r\n\r\n").kind == TapVerdict::kPass);
  CHECK(c.resp("HTTP/1.1 200 OK\r\nContent-Le").kind == TapVerdict::kPass);
  CHECK(c.req("zz\r\n").kind == TapVerdict::kReject);
  CHECK_FALSE(c.tap.can_answer());
}

TEST_CASE("h1tap: a request line ended by a bare LF is HTTP/1, refused by the parser", "[h1tap]") {
  Conn c;
  TapVerdict v = c.req("GET / HTTP/1.1\nHost: svc\n\n");
  CHECK(v.kind == TapVerdict::kReject);
  CHECK(v.status == 400);
  CHECK(c.tap.can_answer());
  CHECK(c.rec.events.front() == "detected http1");
}

TEST_CASE("h1tap: a refused request behind a pipelined one cannot be answered", "[h1tap]") {
  Conn c;
  TapVerdict v = c.req(get("/ok") + "GET / HTTP/1.1\r\nHost: svc\r\nX: a\r\n b\r\n\r\n");
  CHECK(v.kind == TapVerdict::kReject);
  CHECK(v.reason == "obs_fold");
  CHECK_FALSE(c.tap.can_answer());
  c.tap.finish("closed", c.now);
  CHECK(c.rec.events == Events{"detected http1", "request 1 GET /ok", "rejected 400 obs_fold", "failure 1 closed"});
}

TEST_CASE("h1tap: 414 and 431 are refused as soon as the head is too long", "[h1tap]") {
  const Limits small{.max_request_line = 64, .max_head = 256, .max_headers = 100};
  SECTION("a request line without its end, from the first span") {
    Conn c(small);
    CHECK(c.req("GET /" + std::string(200, 'a')).reason == "request_line_too_long");
  }
  SECTION("a request line growing a byte at a time") {
    Conn c(small);
    const std::string line = "GET /" + std::string(200, 'a');
    size_t i = 0;
    TapVerdict v;
    for (; i < line.size(); ++i) {
      v = c.req(line.substr(i, 1));
      if (v.kind != TapVerdict::kPass) break;
    }
    CHECK(v.kind == TapVerdict::kReject);
    CHECK(v.status == 414);
    CHECK(i + 1 == small.max_request_line + 2);  // the line and a CRLF could have ended by then
    CHECK(c.rec.events == Events{"detected http1", "rejected 414 request_line_too_long"});
  }
  SECTION("the default limits") {
    Conn c;
    CHECK(c.req("GET /" + std::string(4000, 'a')).kind == TapVerdict::kPass);
    TapVerdict v = c.req(std::string(4200, 'a'));
    CHECK(v.status == 414);
  }
  SECTION("a head without its end") {
    Conn c(small);
    CHECK(c.req("GET / HTTP/1.1\r\nHost: svc\r\n").kind == TapVerdict::kPass);
    TapVerdict v;
    for (int i = 0; i < 20 && v.kind == TapVerdict::kPass; ++i) v = c.req("X-Pad: 0123456789\r\n");
    CHECK(v.kind == TapVerdict::kReject);
    CHECK(v.status == 431);
    CHECK(v.reason == "head_too_large");
    CHECK(c.tap.held_bytes() == 0);
  }
  SECTION("too many header lines") {
    Conn c(Limits{.max_request_line = 64, .max_head = 4096, .max_headers = 3});
    TapVerdict v = c.req(get("/", "A: 1\r\nB: 2\r\nC: 3\r\n"));
    CHECK(v.status == 431);
    CHECK(v.reason == "too_many_headers");
  }
}

// --- Giving up ---

TEST_CASE("h1tap: more pipelined requests than tracked abandons the tap", "[h1tap]") {
  Conn c;
  std::string many;
  for (uint32_t i = 0; i <= H1Tap::kMaxPending; ++i) many += get("/" + std::to_string(i));
  CHECK(c.req(many).kind == TapVerdict::kOpaque);
  Events expected = {"detected http1"};
  for (uint32_t i = 1; i <= H1Tap::kMaxPending; ++i)
    expected.push_back("request " + std::to_string(i) + " GET /" + std::to_string(i - 1));
  expected.push_back("abandoned pipeline_depth");
  for (uint32_t i = 1; i <= H1Tap::kMaxPending; ++i) expected.push_back("failure " + std::to_string(i) + " abandoned");
  CHECK(c.rec.events == expected);
  CHECK(c.rec.all_answered_once());
  c.tap.finish("closed", c.now);
  CHECK(c.rec.events.size() == expected.size());
}

TEST_CASE("h1tap: responses it cannot follow abandon the tap, never refuse", "[h1tap]") {
  SECTION("a malformed status line") {
    Conn c;
    CHECK(c.req(get("/a") + get("/b")).kind == TapVerdict::kPass);
    CHECK(c.resp("HTTP/1.1 2OO OK\r\n\r\n").kind == TapVerdict::kOpaque);
    CHECK(c.rec.events == Events{"detected http1", "request 1 GET /a", "request 2 GET /b", "abandoned bad_response",
                                 "failure 1 abandoned", "failure 2 abandoned"});
  }
  SECTION("a malformed chunked body") {
    Conn c;
    CHECK(c.req(get("/a")).kind == TapVerdict::kPass);
    CHECK(c.resp("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nxyz\r\n").kind == TapVerdict::kOpaque);
    CHECK(c.rec.events.back() == "failure 1 abandoned");
  }
  SECTION("a response nobody asked for") {
    Conn c;
    CHECK(c.req(get("/a")).kind == TapVerdict::kPass);
    CHECK(c.resp(ok("") + ok("extra")).kind == TapVerdict::kOpaque);
    CHECK(c.rec.events ==
          Events{"detected http1", "request 1 GET /a", "response 1 200 ttfb=0 complete", "abandoned unsolicited"});
  }
  SECTION("a response before the request head is whole") {
    Conn c;
    CHECK(c.req("GET /a HTTP/1.1\r\n").kind == TapVerdict::kPass);
    CHECK(c.resp("HTTP/1.1 408 Request Timeout\r\n\r\n").kind == TapVerdict::kOpaque);
    CHECK(c.rec.events == Events{"detected http1", "abandoned unsolicited"});
    CHECK(c.tap.held_bytes() == 0);
  }
}

// --- Ends ---

TEST_CASE("h1tap: the server's end of stream ends a body read until close", "[h1tap]") {
  Conn c;
  CHECK(c.req("GET /old HTTP/1.0\r\n\r\n").kind == TapVerdict::kPass);
  CHECK(c.resp("HTTP/1.0 200 OK\r\n\r\nsome").kind == TapVerdict::kPass);
  CHECK(c.resp(" more").kind == TapVerdict::kPass);
  CHECK(c.rec.events.size() == 2);
  c.tap.end(TapSide::kResponses, c.now);
  CHECK(c.rec.events.back() == "response 1 200 ttfb=0 complete");
  c.tap.finish("closed", c.now);
  CHECK(c.rec.events.size() == 3);
  CHECK(c.rec.all_answered_once());
}

TEST_CASE("h1tap: the server's end of stream fails what it left unanswered", "[h1tap]") {
  Conn c;
  CHECK(c.req(get("/1") + get("/2") + get("/3")).kind == TapVerdict::kPass);
  CHECK(c.resp("HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc").kind == TapVerdict::kPass);
  c.tap.end(TapSide::kRequests, c.now);  // a client half-close changes nothing
  CHECK(c.rec.events.size() == 4);
  c.tap.end(TapSide::kResponses, c.now);
  CHECK(c.rec.events == Events{"detected http1", "request 1 GET /1", "request 2 GET /2", "request 3 GET /3",
                               "response 1 200 ttfb=0 incomplete", "failure 2 closed", "failure 3 closed"});
  c.tap.finish("reset", c.now);
  CHECK(c.rec.events.size() == 7);
  CHECK(c.rec.all_answered_once());
}

TEST_CASE("h1tap: finish() answers every request once, and only once", "[h1tap]") {
  Conn c;
  CHECK(c.req(get("/1") + get("/2") + get("/3") + "GET /4 HTTP/1.1\r\n").kind == TapVerdict::kPass);
  c.now = 1040;
  CHECK(c.resp(ok("done") + "HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc").kind == TapVerdict::kPass);
  CHECK(c.tap.held_bytes() > 0);
  c.tap.finish("reset", c.now);
  c.tap.finish("closed", c.now);
  c.tap.end(TapSide::kResponses, c.now);
  CHECK(c.rec.events == Events{"detected http1", "request 1 GET /1", "request 2 GET /2", "request 3 GET /3",
                               "response 1 200 ttfb=40 complete", "response 2 200 ttfb=40 incomplete",
                               "failure 3 reset"});
  CHECK(c.rec.all_answered_once());
  CHECK(c.tap.held_bytes() == 0);
  CHECK_FALSE(c.tap.active());
  CHECK(c.req(get("/5")).kind == TapVerdict::kOpaque);
}

// --- The request timeout's clock ---

TEST_CASE("h1tap: the awaited request is the oldest without a response head, from its last byte", "[h1tap]") {
  Conn c;
  CHECK(c.tap.awaited_since_us() == 0);
  // A body still coming: the server is not late yet.
  CHECK(c.req("POST /up HTTP/1.1\r\nHost: svc\r\nContent-Length: 4\r\n\r\nab").kind == TapVerdict::kPass);
  CHECK(c.tap.awaited_since_us() == 0);
  CHECK_FALSE(c.tap.awaited_answerable());
  c.now = 1100;
  CHECK(c.req("cd").kind == TapVerdict::kPass);
  CHECK(c.tap.awaited_since_us() == 1100);
  CHECK(c.tap.awaited_answerable());
  // A pipelined second request: still the first one's clock.
  c.now = 1200;
  CHECK(c.req(get("/2")).kind == TapVerdict::kPass);
  CHECK(c.tap.awaited_since_us() == 1100);
  // The first response's head comes, its body does not: the second is awaited.
  c.now = 1300;
  CHECK(c.resp("HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nab").kind == TapVerdict::kPass);
  CHECK(c.tap.awaited_since_us() == 1200);
  CHECK_FALSE(c.tap.awaited_answerable());  // the first response's bytes are on their way
  CHECK(c.resp("cde").kind == TapVerdict::kPass);
  CHECK(c.tap.awaited_since_us() == 1200);
  CHECK(c.tap.awaited_answerable());
  // Half a head of the second response: awaited still, but no longer answerable.
  CHECK(c.resp("HTTP/1.1 200").kind == TapVerdict::kPass);
  CHECK(c.tap.awaited_since_us() == 1200);
  CHECK_FALSE(c.tap.awaited_answerable());
  CHECK(c.resp(" OK\r\nContent-Length: 0\r\n\r\n").kind == TapVerdict::kPass);
  CHECK(c.tap.awaited_since_us() == 0);
  CHECK(c.rec.all_answered_once());
}

TEST_CASE("h1tap: a 100 Continue does not stop the clock; the proxy's answer is the response", "[h1tap]") {
  Conn c;
  CHECK(c.req(get("/slow") + get("/next")).kind == TapVerdict::kPass);
  c.now = 1500;
  CHECK(c.resp("HTTP/1.1 100 Continue\r\n\r\n").kind == TapVerdict::kPass);
  CHECK(c.tap.awaited_since_us() == 1000);
  REQUIRE(c.tap.awaited_answerable());
  c.now = 2000;
  c.tap.answered(504, c.now);
  c.tap.finish("request_timeout", c.now);
  CHECK(c.rec.events == Events{"detected http1", "request 1 GET /slow", "request 2 GET /next",
                               "response 1 504 ttfb=1000 complete", "failure 2 request_timeout"});
  CHECK(c.rec.all_answered_once());
  CHECK(c.tap.awaited_since_us() == 0);
  CHECK_FALSE(c.tap.awaited_answerable());
}

TEST_CASE("h1tap: a response in its body when the connection ends is incomplete", "[h1tap]") {
  SECTION("the only request") {
    Conn c;
    CHECK(c.req(get("/1")).kind == TapVerdict::kPass);
    CHECK(c.resp("HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc").kind == TapVerdict::kPass);
    c.tap.finish("reset", c.now);
    CHECK(c.rec.events.back() == "response 1 200 ttfb=0 incomplete");
  }
  SECTION("a read until close that the server did not end") {
    Conn c;
    CHECK(c.req("GET /old HTTP/1.0\r\n\r\n").kind == TapVerdict::kPass);
    CHECK(c.resp("HTTP/1.0 200 OK\r\n\r\nsome").kind == TapVerdict::kPass);
    c.tap.finish("reset", c.now);
    CHECK(c.rec.events.back() == "response 1 200 ttfb=0 incomplete");
  }
  SECTION("after a refused request") {
    Conn c;
    CHECK(c.req(get("/1")).kind == TapVerdict::kPass);
    CHECK(c.resp("HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc").kind == TapVerdict::kPass);
    CHECK(c.req("GET / HTTP/1.1\r\nHost: svc\r\nX: a\r\n b\r\n\r\n").kind == TapVerdict::kReject);
    c.tap.finish("http_rejected", c.now);
    CHECK(c.rec.events ==
          Events{"detected http1", "request 1 GET /1", "rejected 400 obs_fold", "response 1 200 ttfb=0 incomplete"});
  }
}

TEST_CASE("h1tap: reset() starts a new connection", "[h1tap]") {
  Conn c;
  CHECK(c.req(get("/1") + "GET /2 HTTP/1.1\r\n").kind == TapVerdict::kPass);
  c.tap.finish("closed", c.now);
  Recorder second;
  c.tap.reset(&second);
  CHECK(c.tap.active());
  CHECK(c.tap.can_answer());
  CHECK(c.tap.held_bytes() == 0);
  CHECK(c.tap.feed(TapSide::kRequests, bytes_of(get("/again")), 5).kind == TapVerdict::kPass);
  CHECK(c.tap.feed(TapSide::kResponses, bytes_of(ok("")), 7).kind == TapVerdict::kPass);
  CHECK(second.events == Events{"detected http1", "request 1 GET /again", "response 1 200 ttfb=2 complete"});
}

// --- The error response ---

TEST_CASE("h1tap: the error response names the status, the reason and the message", "[h1tap]") {
  char out[512];
  size_t n = write_error_response(out, 431, "head_too_large", "the head is larger than allowed");
  CHECK(std::string_view(out, n) ==
        "HTTP/1.1 431 Request Header Fields Too Large\r\n"
        "content-type: text/plain\r\n"
        "content-length: 32\r\n"
        "connection: close\r\n"
        "meshd-proxy-error: head_too_large\r\n"
        "\r\n"
        "the head is larger than allowed\n");
  const std::map<uint16_t, std::string_view> phrases = {
      {400, "Bad Request"},
      {403, "Forbidden"},
      {408, "Request Timeout"},
      {413, "Content Too Large"},
      {414, "URI Too Long"},
      {500, "Internal Server Error"},
      {501, "Not Implemented"},
      {502, "Bad Gateway"},
      {503, "Service Unavailable"},
      {504, "Gateway Timeout"},
      {505, "HTTP Version Not Supported"},
  };
  for (const auto& [status, phrase] : phrases) {
    n = write_error_response(out, status, "r", "m");
    CHECK(std::string_view(out, n).starts_with("HTTP/1.1 " + std::to_string(status) + " " + std::string(phrase) +
                                               "\r\n"));
  }
  n = write_error_response(out, 7, "r", "m");
  CHECK(std::string_view(out, n).starts_with("HTTP/1.1 500 Internal Server Error\r\n"));
}

TEST_CASE("h1tap: the error response's reason header cannot be used to inject", "[h1tap]") {
  char out[512];
  size_t n = write_error_response(out, 400, "bad\r\nSet-Cookie: x=1", "m");
  std::string_view r(out, n);
  CHECK(r.find("meshd-proxy-error: bad__Set-Cookie__x_1\r\n") != std::string_view::npos);
  CHECK(r.find("\r\nSet-Cookie") == std::string_view::npos);
  n = write_error_response(out, 400, "", "m");
  CHECK(std::string_view(out, n).find("meshd-proxy-error: unknown\r\n") != std::string_view::npos);
  n = write_error_response(out, 400, std::string(200, 'x'), "m");
  CHECK(std::string_view(out, n).find("meshd-proxy-error: " + std::string(64, 'x') + "\r\n") != std::string_view::npos);
}

TEST_CASE("h1tap: the error response cuts its message to fit, or writes nothing", "[h1tap]") {
  const std::string message(500, 'm');
  char big[1024];
  const size_t whole = write_error_response(big, 400, "r", message);
  const size_t least = write_error_response(big, 400, "r", "");  // the head and the body's newline
  CHECK(std::string_view(big, least)
            .ends_with("\r\ncontent-length: 1\r\nconnection: close\r\nmeshd-proxy-error: r\r\n\r\n\n"));
  for (size_t size = 0; size <= whole + 1; ++size) {
    INFO("buffer of " << size);
    std::vector<char> out(size);
    size_t n = write_error_response(out, 400, "r", message);
    if (size < least) {
      CHECK(n == 0);
      continue;
    }
    REQUIRE(n > 0);
    REQUIRE(n <= size);
    std::string_view r(out.data(), n);
    // The content-length header is right for what was written.
    size_t at = r.find("content-length: ") + 16;
    size_t cl = std::stoul(std::string(r.substr(at, r.find('\r', at) - at)));
    size_t body_at = r.find("\r\n\r\n") + 4;
    CHECK(cl == n - body_at);
    CHECK(r.back() == '\n');
    // The longest message that fits: one more byte would not.
    if (cl - 1 < message.size()) CHECK(n + 1 >= size);
  }
}

TEST_CASE("h1tap: what the proxy's retries ask of it", "[h1tap]") {
  Conn c;
  CHECK(c.tap.between_requests());  // nothing read yet: the first request may be kept
  CHECK(c.req("GE").kind == TapVerdict::kPass);
  CHECK_FALSE(c.tap.between_requests());
  CHECK(c.req("T /a HTTP/1.1\r\nHost: x\r\n\r\n").kind == TapVerdict::kPass);
  CHECK(c.tap.pending() == 1);
  CHECK(c.tap.between_requests());
  CHECK(c.tap.front_method() == Method::kGet);
  CHECK(c.tap.awaited_since_us() != 0);  // sent whole
  CHECK(c.req("POST /b HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\n\r\nab").kind == TapVerdict::kPass);
  CHECK(c.tap.pending() == 2);
  CHECK_FALSE(c.tap.between_requests());  // in the POST's body
  CHECK(c.tap.front_method() == Method::kGet);
}

TEST_CASE("h1tap: the server's side is idle between exchanges only when both sides keep the connection", "[h1tap]") {
  Conn c;
  REQUIRE_FALSE(c.tap.idle_between_exchanges());  // nothing yet: no exchange has shown keep-alive
  REQUIRE(c.req(get("/a")).kind == TapVerdict::kPass);
  REQUIRE_FALSE(c.tap.idle_between_exchanges());  // awaiting its response
  REQUIRE(c.resp("HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nab").kind == TapVerdict::kPass);
  REQUIRE_FALSE(c.tap.idle_between_exchanges());  // in its body
  REQUIRE(c.resp("cd").kind == TapVerdict::kPass);
  REQUIRE(c.tap.idle_between_exchanges());
  // Part of the next head read: not between exchanges any more.
  REQUIRE(c.req("GET /b HT").kind == TapVerdict::kPass);
  REQUIRE_FALSE(c.tap.idle_between_exchanges());
  REQUIRE(c.req("TP/1.1\r\nHost: svc\r\n\r\n").kind == TapVerdict::kPass);
  REQUIRE(c.resp(ok("x")).kind == TapVerdict::kPass);
  REQUIRE(c.tap.idle_between_exchanges());

  SECTION("the server closes after its response") {
    REQUIRE(c.req(get("/c")).kind == TapVerdict::kPass);
    REQUIRE(c.resp("HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 1\r\n\r\nx").kind == TapVerdict::kPass);
    REQUIRE_FALSE(c.tap.idle_between_exchanges());
  }
  SECTION("the client asked to close") {
    REQUIRE(c.req(get("/c", "Connection: close\r\n")).kind == TapVerdict::kPass);
    REQUIRE(c.resp(ok("x")).kind == TapVerdict::kPass);
    REQUIRE_FALSE(c.tap.idle_between_exchanges());
  }
  SECTION("a body delimited by the server's close") {
    REQUIRE(c.req(get("/c")).kind == TapVerdict::kPass);
    REQUIRE(c.resp("HTTP/1.1 200 OK\r\n\r\nuntil close").kind == TapVerdict::kPass);
    REQUIRE_FALSE(c.tap.idle_between_exchanges());
  }
  SECTION("HTTP/1.0 without keep-alive") {
    REQUIRE(c.req("GET /c HTTP/1.0\r\n\r\n").kind == TapVerdict::kPass);
    REQUIRE(c.resp("HTTP/1.0 200 OK\r\nContent-Length: 1\r\n\r\nx").kind == TapVerdict::kPass);
    REQUIRE_FALSE(c.tap.idle_between_exchanges());
  }
  SECTION("a new connection starts over") {
    c.tap.reset(&c.rec);
    REQUIRE_FALSE(c.tap.idle_between_exchanges());
  }
}

TEST_CASE("h1tap: a response is in its body from its head to its last byte", "[h1tap]") {
  Conn c;
  REQUIRE(c.req(get("/a")).kind == TapVerdict::kPass);
  REQUIRE_FALSE(c.tap.in_response_body());
  REQUIRE(c.resp("HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\n").kind == TapVerdict::kPass);
  REQUIRE(c.tap.in_response_body());  // the head alone: the body is awaited
  REQUIRE(c.resp("abcd").kind == TapVerdict::kPass);
  REQUIRE_FALSE(c.tap.in_response_body());
  REQUIRE(c.req(get("/b")).kind == TapVerdict::kPass);
  REQUIRE(c.resp(ok("whole")).kind == TapVerdict::kPass);  // head and body in one read
  REQUIRE_FALSE(c.tap.in_response_body());
}

TEST_CASE("h1tap: only a whole HTTP/1 request line opens a request", "[h1tap]") {
  REQUIRE(opens_http1_request(bytes_of("GET / HTTP/1.1\r\nHost: a\r\n\r\n")));
  REQUIRE(opens_http1_request(bytes_of("DELETE /x HTTP/1.0\r\n")));
  REQUIRE_FALSE(opens_http1_request(bytes_of("GET / HTTP/1.1")));  // the line's end not read yet
  REQUIRE_FALSE(opens_http1_request(bytes_of("GET /")));
  REQUIRE_FALSE(opens_http1_request(bytes_of("")));
  REQUIRE_FALSE(opens_http1_request(bytes_of("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n")));
  REQUIRE_FALSE(opens_http1_request(bytes_of("\x16\x03\x01\x00\x05hello")));
  REQUIRE_FALSE(opens_http1_request(bytes_of("SSH-2.0-OpenSSH_9.2\r\n")));
  REQUIRE_FALSE(opens_http1_request(bytes_of("GET / HTTP/3.0\r\n")));
}
