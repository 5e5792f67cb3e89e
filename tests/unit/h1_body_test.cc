// BodyFramer (src/http/h1_body.h): Content-Length and chunked bodies end
// exactly where they should, whole or fed a byte at a time or split
// anywhere; malformed chunked bodies are refused at the same byte however
// they arrive.
#include <catch2/catch.hpp>

#include <string>
#include <vector>

#include "http/h1_body.h"

using namespace meshd::http;
using namespace std::literals;

namespace {

struct Outcome {
  uint64_t consumed = 0;
  bool done = false;
  uint16_t error_status = 0;
  std::string reason;
  bool operator==(const Outcome&) const = default;
};

std::ostream& operator<<(std::ostream& os, const Outcome& o) {
  return os << "{consumed " << o.consumed << ", done " << o.done << ", error " << o.error_status << " " << o.reason
            << "}";
}

// Feeds `bytes` in pieces of the given sizes (the last piece takes the
// rest), re-offering the unconsumed tail as a caller would, until the body
// is done, fails, or the input runs out.
Outcome feed_split(Framing f, std::string_view bytes, const std::vector<size_t>& cuts, uint32_t max_trailers = 32768) {
  BodyFramer framer(f, max_trailers);
  Outcome o;
  size_t pos = 0;
  for (size_t k = 0; k <= cuts.size(); ++k) {
    size_t end = k < cuts.size() ? std::min(bytes.size(), cuts[k]) : bytes.size();
    if (end < pos) continue;
    BodyFramer::Step s = framer.feed(bytes.substr(pos, end - pos));
    REQUIRE(s.consumed <= end - pos);
    o.consumed += s.consumed;
    pos += s.consumed;
    if (s.error_status != 0) {
      o.error_status = s.error_status;
      o.reason = std::string(s.reason);
      CHECK(framer.failed());
      return o;
    }
    if (s.done) {
      o.done = true;
      CHECK(framer.done());
      return o;
    }
    // A feed that is neither done nor failed takes everything it was given.
    CHECK(pos == end);
  }
  return o;
}

Outcome feed_whole(Framing f, std::string_view bytes, uint32_t max_trailers = 32768) {
  return feed_split(f, bytes, {}, max_trailers);
}

Outcome feed_bytewise(Framing f, std::string_view bytes, uint32_t max_trailers = 32768) {
  std::vector<size_t> cuts;
  for (size_t i = 1; i < bytes.size(); ++i) cuts.push_back(i);
  return feed_split(f, bytes, cuts, max_trailers);
}

const Framing kChunked{FramingKind::kChunked, 0};

// Whole, byte at a time, and split once at every position: all the same.
Outcome check_all_splits(Framing f, std::string_view bytes, uint32_t max_trailers = 32768) {
  Outcome whole = feed_whole(f, bytes, max_trailers);
  CHECK(feed_bytewise(f, bytes, max_trailers) == whole);
  for (size_t i = 0; i <= bytes.size(); ++i) {
    INFO("split at " << i);
    CHECK(feed_split(f, bytes, {i}, max_trailers) == whole);
  }
  return whole;
}

Outcome ok(uint64_t consumed) { return {consumed, true, 0, ""}; }
Outcome error(uint64_t consumed, std::string reason) { return {consumed, false, 400, std::move(reason)}; }

}  // namespace

TEST_CASE("h1 body: Content-Length counts down and stops exactly", "[h1][http]") {
  Framing f{FramingKind::kContentLength, 5};
  CHECK(check_all_splits(f, "helloGET / HTTP/1.1\r\n") == ok(5));
  CHECK(check_all_splits(f, "hel") == Outcome{3, false, 0, ""});
  BodyFramer framer(f);
  CHECK(framer.feed("he"sv).consumed == 2);
  BodyFramer::Step s = framer.feed("llo, next"sv);
  CHECK(s.consumed == 3);
  CHECK(s.done);
  CHECK(framer.payload_bytes() == 5);
  // Done stays done and takes nothing more.
  s = framer.feed("more"sv);
  CHECK(s.done);
  CHECK(s.consumed == 0);
}

TEST_CASE("h1 body: no body and a zero length are done at once", "[h1][http]") {
  for (Framing f : {Framing{FramingKind::kNone, 0}, Framing{FramingKind::kContentLength, 0}}) {
    BodyFramer framer(f);
    CHECK(framer.done());
    BodyFramer::Step s = framer.feed("GET /"sv);
    CHECK(s.done);
    CHECK(s.consumed == 0);
  }
}

TEST_CASE("h1 body: until-close and tunnel take everything and never end", "[h1][http]") {
  for (FramingKind k : {FramingKind::kUntilClose, FramingKind::kTunnel}) {
    BodyFramer framer({k, 0});
    BodyFramer::Step s = framer.feed("0\r\n\r\nanything"sv);
    CHECK(s.consumed == 13);
    CHECK_FALSE(s.done);
    CHECK(s.error_status == 0);
    CHECK(framer.payload_bytes() == 13);
  }
}

TEST_CASE("h1 body: chunked bodies end exactly, however they are split", "[h1][http]") {
  const std::string next = "GET /next HTTP/1.1\r\n";
  const std::vector<std::string> bodies = {
      "0\r\n\r\n",
      "5\r\nhello\r\n0\r\n\r\n",
      "5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n",
      "A\r\n0123456789\r\n0\r\n\r\n",
      "a;name=value\r\n0123456789\r\n0;last\r\n\r\n",
      "3 ;ext=\"quoted \\\" str\"\r\nabc\r\n0\r\n\r\n",
      "000004\r\n\r\n\r\n\r\n0\r\n\r\n",  // payload of CRLFs
      "2\r\nab\r\n0\r\nTrailer-A: 1\r\nGrpc-Status:  0 \r\nx:\r\n\r\n",
      "0\r\nEmpty:\r\n\r\n",
  };
  for (const std::string& b : bodies) {
    INFO(b);
    CHECK(check_all_splits(kChunked, b + next) == ok(b.size()));
  }
  BodyFramer framer(kChunked);
  CHECK(framer.feed("5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n"sv).done);
  CHECK(framer.payload_bytes() == 11);
}

TEST_CASE("h1 body: a chunked body cut short is not done", "[h1][http]") {
  std::string b = "5\r\nhello\r\n0\r\nT: v\r\n\r\n";
  for (size_t n = 0; n < b.size(); ++n) {
    INFO("prefix " << n);
    CHECK(check_all_splits(kChunked, b.substr(0, n)) == Outcome{n, false, 0, ""});
  }
}

TEST_CASE("h1 body: malformed chunked bodies are refused at the same byte", "[h1][http]") {
  struct Case {
    std::string input;
    Outcome want;
  };
  const std::vector<Case> cases = {
      {"\r\n", error(0, "chunk_size")},
      {"g\r\n", error(0, "chunk_size")},
      {"-1\r\n", error(0, "chunk_size")},
      {"0x5\r\nhello\r\n", error(1, "chunk_size")},
      {"5\n", error(1, "chunk_size")},  // bare LF after the size
      {"5\rx", error(2, "chunk_crlf")},
      {"5 \r\nhello\r\n", error(2, "chunk_size")},  // whitespace without an extension
      {"5 ; a\r\nhello\r\n0\r\n\r\n", ok(19)},
      {"5;a\x01\r\n", error(3, "chunk_ext")},
      {"5;a\nb\r\n", error(3, "chunk_ext")},
      {"5\r\nhelloX\r\n", error(8, "chunk_data_crlf")},
      {"5\r\nhello\rX", error(9, "chunk_data_crlf")},
      {"5\r\nhello\n0\r\n\r\n", error(8, "chunk_data_crlf")},
      {"5\r\nhello\r\n0\r\n\n", error(13, "trailer")},
      {"0\r\n\rX", error(4, "trailer")},
      {"0\r\n T: v\r\n\r\n", error(3, "trailer_obs_fold")},
      {"0\r\nT : v\r\n\r\n", error(4, "trailer")},
      {"0\r\nT: v\x01\r\n\r\n", error(7, "trailer")},
      {"0\r\nT: v\n\r\n", error(7, "trailer")},
      {"0\r\nT: v\r\n X\r\n\r\n", error(9, "trailer_obs_fold")},
      {"0\r\n(: v\r\n\r\n", error(3, "trailer")},
  };
  for (const Case& c : cases) {
    INFO(c.input);
    CHECK(check_all_splits(kChunked, c.input) == c.want);
  }
}

TEST_CASE("h1 body: an error sticks", "[h1][http]") {
  BodyFramer framer(kChunked);
  BodyFramer::Step s = framer.feed("zz"sv);
  CHECK(s.error_status == 400);
  CHECK(s.reason == "chunk_size");
  CHECK_FALSE(s.message.empty());
  s = framer.feed("0\r\n\r\n"sv);
  CHECK(s.error_status == 400);
  CHECK(s.consumed == 0);
  CHECK(s.reason == "chunk_size");
  CHECK(framer.failed());
}

TEST_CASE("h1 body: chunk sizes up to 16 hex digits, not 17", "[h1][http]") {
  BodyFramer framer(kChunked);
  BodyFramer::Step s = framer.feed("ffffffffffffffff\r\nabc"sv);
  CHECK(s.error_status == 0);
  CHECK(s.consumed == 21);
  CHECK_FALSE(s.done);
  CHECK(check_all_splits(kChunked, "0000000000000000\r\n\r\n") == ok(20));
  CHECK(check_all_splits(kChunked, "00000000000000001\r\n") == error(16, "chunk_size"));
  CHECK(check_all_splits(kChunked, "10000000000000000\r\n") == error(16, "chunk_size"));
}

TEST_CASE("h1 body: the chunk-size line limit, at and one past it", "[h1][http]") {
  // The line counts its CRLF: kMaxChunkLine bytes in all is allowed.
  std::string at = "1;" + std::string(kMaxChunkLine - 4, 'e') + "\r\n";
  REQUIRE(at.size() == kMaxChunkLine);
  std::string body = at + "x\r\n0\r\n\r\n";
  CHECK(feed_whole(kChunked, body) == ok(body.size()));
  CHECK(feed_bytewise(kChunked, body) == ok(body.size()));
  std::string past = "1;" + std::string(kMaxChunkLine - 3, 'e') + "\r\n";
  CHECK(feed_whole(kChunked, past + "x\r\n0\r\n\r\n") == error(kMaxChunkLine, "chunk_line_too_long"));
  CHECK(feed_bytewise(kChunked, past + "x\r\n0\r\n\r\n") == error(kMaxChunkLine, "chunk_line_too_long"));
  // The count starts again for each chunk.
  std::string two = at + "x\r\n" + at + "y\r\n0\r\n\r\n";
  CHECK(feed_whole(kChunked, two) == ok(two.size()));
}

TEST_CASE("h1 body: the trailer section limit, at and one past it", "[h1][http]") {
  // Trailers and the final CRLF: "T: vvvv\r\n\r\n" is 11 bytes.
  std::string body = "0\r\nT: vvvv\r\n\r\n";
  CHECK(check_all_splits(kChunked, body, 11) == ok(body.size()));
  CHECK(check_all_splits(kChunked, body, 10) == error(13, "trailers_too_large"));
  CHECK(check_all_splits(kChunked, "0\r\n\r\n", 2) == ok(5));
  CHECK(check_all_splits(kChunked, "0\r\n\r\n", 1) == error(4, "trailers_too_large"));
}

TEST_CASE("h1 body: pipelined chunked bodies, fed in random pieces", "[h1][http]") {
  std::string one = "4\r\nWiki\r\n5\r\npedia\r\nE\r\n in\r\n\r\nchunks.\r\n0\r\n\r\n";
  std::string stream;
  for (int i = 0; i < 4; ++i) stream += one;
  // A simple LCG so the pieces differ per round but the test is repeatable.
  uint32_t seed = 12345;
  for (int round = 0; round < 50; ++round) {
    std::string_view rest = stream;
    int bodies = 0;
    while (!rest.empty()) {
      BodyFramer framer(kChunked);
      size_t taken = 0;
      while (true) {
        seed = seed * 1103515245u + 12345u;
        size_t n = std::min<size_t>(rest.size(), 1 + (seed >> 16) % 9);
        BodyFramer::Step s = framer.feed(rest.substr(0, n));
        REQUIRE(s.error_status == 0);
        rest.remove_prefix(s.consumed);
        taken += s.consumed;
        if (s.done) break;
        REQUIRE_FALSE(rest.empty());
      }
      CHECK(taken == one.size());
      CHECK(framer.payload_bytes() == 23);
      ++bodies;
    }
    CHECK(bodies == 4);
  }
}
