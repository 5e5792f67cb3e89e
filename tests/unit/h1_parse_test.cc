// HTTP/1 head parsing (src/http/h1_parse.h): every rejection with its
// status and reason, the framing and connection facts, limits exactly at and
// one past their bound, heads arriving in pieces, and pipelined messages.
#include <catch2/catch.hpp>

#include <string>
#include <vector>

#include "http/h1_body.h"
#include "http/h1_parse.h"

using namespace meshd::http;

namespace {

// A parse whose views stay valid: the input is kept with the result.
struct Req {
  std::string bytes;
  std::vector<Header> storage;
  RequestHead head;
  HeadResult r;
};

Req parse_req(std::string bytes, const Limits& limits = {}) {
  Req q{std::move(bytes), std::vector<Header>(limits.max_headers), {}, {}};
  q.r = parse_request_head(q.bytes, limits, &q.head, q.storage.data());
  return q;
}

struct Resp {
  std::string bytes;
  std::vector<Header> storage;
  ResponseHead head;
  HeadResult r;
};

Resp parse_resp(std::string bytes, Method method = Method::kGet, const Limits& limits = {}) {
  Resp q{std::move(bytes), std::vector<Header>(limits.max_headers), {}, {}};
  q.r = parse_response_head(q.bytes, method, limits, &q.head, q.storage.data());
  return q;
}

// A request line and headers, with the head's final CRLF added.
std::string head(std::string_view first, std::string_view headers) {
  return std::string(first) + "\r\n" + std::string(headers) + "\r\n";
}

bool within(std::string_view view, const std::string& s) {
  return view.empty() || (view.data() >= s.data() && view.data() + view.size() <= s.data() + s.size());
}

}  // namespace

TEST_CASE("h1: a plain GET gives views into the input", "[h1][http]") {
  Req q = parse_req(head("GET /a/b?c=d HTTP/1.1", "Host: example.com:8080\r\nAccept: */*\r\nX-Empty:\r\n"));
  REQUIRE(q.r.status == HeadStatus::kDone);
  CHECK(q.r.consumed == q.bytes.size());
  CHECK(q.head.method == Method::kGet);
  CHECK(q.head.method_name == "GET");
  CHECK(q.head.target == "/a/b?c=d");
  CHECK(q.head.form == TargetForm::kOrigin);
  CHECK(q.head.version == Version::kHttp11);
  CHECK(q.head.host == "example.com:8080");
  CHECK(q.head.authority == "example.com:8080");
  REQUIRE(q.head.headers.size() == 3);
  CHECK(q.head.headers[1].name == "Accept");
  CHECK(q.head.headers[1].value == "*/*");
  CHECK(q.head.headers[2].value.empty());
  CHECK(q.head.framing.kind == FramingKind::kNone);
  CHECK(q.head.keep_alive);
  CHECK_FALSE(q.head.upgrade);
  CHECK_FALSE(q.head.expect_continue);
  CHECK(within(q.head.method_name, q.bytes));
  CHECK(within(q.head.target, q.bytes));
  for (const Header& h : q.head.headers) CHECK((within(h.name, q.bytes) && within(h.value, q.bytes)));
}

TEST_CASE("h1: header values are trimmed; tabs and obs-text inside are kept", "[h1][http]") {
  Req q = parse_req(head("GET / HTTP/1.1", "Host: a\r\nX-A: \t one\ttwo \xe2\x82\xac \t\r\nHost2:x\r\n"));
  REQUIRE(q.r.status == HeadStatus::kDone);
  CHECK(q.head.headers[1].value == "one\ttwo \xe2\x82\xac");
  CHECK(q.head.headers[2].value == "x");
}

TEST_CASE("h1: the head ends at CRLFCRLF and the body is not consumed", "[h1][http]") {
  std::string h = head("POST /u HTTP/1.1", "Host: a\r\nContent-Length: 5\r\n");
  Req q = parse_req(h + "helloGET / HTTP/1.1\r\n");
  REQUIRE(q.r.status == HeadStatus::kDone);
  CHECK(q.r.consumed == h.size());
  CHECK(q.head.framing.kind == FramingKind::kContentLength);
  CHECK(q.head.framing.length == 5);
}

TEST_CASE("h1: empty lines before a request line are skipped", "[h1][http]") {
  Req q = parse_req("\r\n\r\n" + head("GET / HTTP/1.1", "Host: a\r\n"));
  REQUIRE(q.r.status == HeadStatus::kDone);
  CHECK(q.r.consumed == q.bytes.size());
  CHECK(q.head.target == "/");
  CHECK(parse_req("\r\n").r.status == HeadStatus::kIncomplete);
  CHECK(parse_req("\r\n\r").r.status == HeadStatus::kIncomplete);
}

namespace {
struct Reject {
  const char* what;
  std::string input;
  uint16_t status;
  std::string_view reason;
};
}  // namespace

TEST_CASE("h1: request rejections answer their status and reason", "[h1][http]") {
  const std::string post = "POST / HTTP/1.1";
  const std::vector<Reject> cases = {
      {"CL and TE", head(post, "Host: a\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n"), 400, "cl_and_te"},
      {"TE and CL", head(post, "Host: a\r\nTransfer-Encoding: chunked\r\nContent-Length: 0\r\n"), 400, "cl_and_te"},
      {"two CLs differ", head(post, "Host: a\r\nContent-Length: 5\r\nContent-Length: 6\r\n"), 400,
       "content_length_mismatch"},
      {"a CL list differs", head(post, "Host: a\r\nContent-Length: 5, 6\r\n"), 400, "content_length_mismatch"},
      {"CL with a sign", head(post, "Host: a\r\nContent-Length: +5\r\n"), 400, "content_length"},
      {"CL negative", head(post, "Host: a\r\nContent-Length: -1\r\n"), 400, "content_length"},
      {"CL hex", head(post, "Host: a\r\nContent-Length: 0x5\r\n"), 400, "content_length"},
      {"CL trailing junk", head(post, "Host: a\r\nContent-Length: 5a\r\n"), 400, "content_length"},
      {"CL inner space", head(post, "Host: a\r\nContent-Length: 5 5\r\n"), 400, "content_length"},
      {"CL empty", head(post, "Host: a\r\nContent-Length:\r\n"), 400, "content_length"},
      {"CL empty element", head(post, "Host: a\r\nContent-Length: 5,,5\r\n"), 400, "content_length"},
      {"CL overflow", head(post, "Host: a\r\nContent-Length: 9223372036854775808\r\n"), 400, "content_length"},
      {"CL huge", head(post, "Host: a\r\nContent-Length: 99999999999999999999999\r\n"), 400, "content_length"},
      {"TE in HTTP/1.0", head("POST / HTTP/1.0", "Transfer-Encoding: chunked\r\n"), 400, "te_in_http10"},
      {"TE gzip only", head(post, "Host: a\r\nTransfer-Encoding: gzip\r\n"), 501, "te_not_chunked"},
      {"TE chunked not last", head(post, "Host: a\r\nTransfer-Encoding: chunked, gzip\r\n"), 501, "te_not_chunked"},
      {"TE chunked then gzip in two headers",
       head(post, "Host: a\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: gzip\r\n"), 501, "te_not_chunked"},
      {"TE chunked twice", head(post, "Host: a\r\nTransfer-Encoding: chunked, chunked\r\n"), 400, "transfer_encoding"},
      {"TE with a parameter", head(post, "Host: a\r\nTransfer-Encoding: chunked;q=1\r\n"), 400, "transfer_encoding"},
      {"TE empty", head(post, "Host: a\r\nTransfer-Encoding: ,\r\n"), 400, "transfer_encoding"},
      {"TE quoted", head(post, "Host: a\r\nTransfer-Encoding: \"chunked\"\r\n"), 400, "transfer_encoding"},
      {"obs-fold", head("GET / HTTP/1.1", "Host: a\r\nX-A: b\r\n c\r\n"), 400, "obs_fold"},
      {"obs-fold with a tab", head("GET / HTTP/1.1", "Host: a\r\nX-A: b\r\n\tc\r\n"), 400, "obs_fold"},
      {"space before colon", head("GET / HTTP/1.1", "Host : a\r\n"), 400, "space_before_colon"},
      {"tab before colon", head("GET / HTTP/1.1", "Host: a\r\nContent-Length\t: 0\r\n"), 400, "space_before_colon"},
      {"no colon", head("GET / HTTP/1.1", "Host: a\r\nX-A\r\n"), 400, "header_name"},
      {"empty name", head("GET / HTTP/1.1", "Host: a\r\n: b\r\n"), 400, "header_name"},
      {"bad tchar in a name", head("GET / HTTP/1.1", "Host: a\r\nX(A): b\r\n"), 400, "header_name"},
      {"non-ASCII name", head("GET / HTTP/1.1", "Host: a\r\nX\xc3\xa9: b\r\n"), 400, "header_name"},
      {"bare LF after the request line", "GET / HTTP/1.1\nHost: a\r\n\r\n", 400, "bare_lf"},
      {"bare LF after a header", "GET / HTTP/1.1\r\nHost: a\n\r\n", 400, "bare_lf"},
      {"bare LF as the empty line", "GET / HTTP/1.1\r\nHost: a\r\n\n", 400, "bare_lf"},
      {"bare LF after skipped empty lines", "\r\n\nGET / HTTP/1.1\r\nHost: a\r\n\r\n", 400, "bare_lf"},
      {"bare CR in a value", head("GET / HTTP/1.1", "Host: a\r\nX-A: b\rc\r\n"), 400, "header_value"},
      {"bare CR ending a header", head("GET / HTTP/1.1", "Host: a\r\nX-A: b\r\r\n"), 400, "header_value"},
      {"bare CR in the request line", head("GET /\r HTTP/1.1", "Host: a\r\n"), 400, "request_line"},
      {"NUL in a value", head("GET / HTTP/1.1", std::string("Host: a\r\nX-A: b\0c\r\n", 19)), 400, "header_value"},
      {"CTL in a value", head("GET / HTTP/1.1", "Host: a\r\nX-A: b\x01\r\n"), 400, "header_value"},
      {"DEL in a value", head("GET / HTTP/1.1", "Host: a\r\nX-A: b\x7f\r\n"), 400, "header_value"},
      {"bad tchar in the method", head("G(T / HTTP/1.1", "Host: a\r\n"), 400, "method"},
      {"no method", head(" / HTTP/1.1", "Host: a\r\n"), 400, "method"},
      {"two spaces after the method", head("GET  / HTTP/1.1", "Host: a\r\n"), 400, "request_line"},
      {"tab as a separator", head("GET\t/ HTTP/1.1", "Host: a\r\n"), 400, "method"},
      {"space in the target", head("GET /a b HTTP/1.1", "Host: a\r\n"), 400, "version_syntax"},
      {"no version", head("GET /", "Host: a\r\n"), 400, "request_line"},
      {"lowercase version", head("GET / http/1.1", "Host: a\r\n"), 400, "version_syntax"},
      {"long version", head("GET / HTTP/1.10", "Host: a\r\n"), 400, "version_syntax"},
      {"HTTP/2.0", head("GET / HTTP/2.0", "Host: a\r\n"), 505, "version"},
      {"HTTP/1.2", head("GET / HTTP/1.2", "Host: a\r\n"), 505, "version"},
      {"HTTP/0.9", head("GET / HTTP/0.9", "Host: a\r\n"), 505, "version"},
      {"HTTP/1.1 without Host", head("GET / HTTP/1.1", "Accept: */*\r\n"), 400, "missing_host"},
      {"two Hosts", head("GET / HTTP/1.1", "Host: a\r\nHost: a\r\n"), 400, "duplicate_host"},
      {"two Hosts in HTTP/1.0", head("GET / HTTP/1.0", "Host: a\r\nhost: b\r\n"), 400, "duplicate_host"},
      {"Host with a slash", head("GET / HTTP/1.1", "Host: a/b\r\n"), 400, "host"},
      {"Host with userinfo", head("GET / HTTP/1.1", "Host: u@a\r\n"), 400, "host"},
      {"Host differs from the absolute target", head("GET http://a/x HTTP/1.1", "Host: b\r\n"), 400, "host_mismatch"},
      {"CONNECT to a path", head("CONNECT / HTTP/1.1", "Host: a\r\n"), 400, "target"},
      {"CONNECT without a port", head("CONNECT a HTTP/1.1", "Host: a\r\n"), 400, "target"},
      {"an asterisk for GET", head("GET * HTTP/1.1", "Host: a\r\n"), 400, "target"},
      {"a relative target", head("GET a/b HTTP/1.1", "Host: a\r\n"), 400, "target"},
      {"an absolute target with userinfo", head("GET http://u@a/ HTTP/1.1", "Host: u@a\r\n"), 400, "target"},
      {"an absolute target without authority", head("GET http:///x HTTP/1.1", "Host: a\r\n"), 400, "target"},
      {"Connection with a non-token", head("GET / HTTP/1.1", "Host: a\r\nConnection: a b\r\n"), 400, "connection"},
  };
  for (const Reject& c : cases) {
    INFO(c.what);
    Req q = parse_req(c.input);
    REQUIRE(q.r.status == HeadStatus::kError);
    CHECK(q.r.error_status == c.status);
    CHECK(q.r.reason == c.reason);
    CHECK_FALSE(q.r.message.empty());
    CHECK(q.r.consumed == 0);
  }
}

TEST_CASE("h1: a bare LF is reported before the head is complete", "[h1][http]") {
  Req q = parse_req("GET / HTTP/1.1\nHost: a\n");
  CHECK(q.r.status == HeadStatus::kError);
  CHECK(q.r.reason == "bare_lf");
}

TEST_CASE("h1: Content-Length lists of equal values are accepted", "[h1][http]") {
  Req one = parse_req(head("POST / HTTP/1.1", "Host: a\r\nContent-Length: 7, 7,7\r\n"));
  REQUIRE(one.r.status == HeadStatus::kDone);
  CHECK(one.head.framing.kind == FramingKind::kContentLength);
  CHECK(one.head.framing.length == 7);
  Req two = parse_req(head("POST / HTTP/1.1", "Host: a\r\ncontent-length: 7\r\nContent-Length: 007\r\n"));
  REQUIRE(two.r.status == HeadStatus::kDone);
  CHECK(two.head.framing.length == 7);
  Req max = parse_req(head("POST / HTTP/1.1", "Host: a\r\nContent-Length: 9223372036854775807\r\n"));
  REQUIRE(max.r.status == HeadStatus::kDone);
  CHECK(max.head.framing.length == 9223372036854775807ull);
  Req zero = parse_req(head("POST / HTTP/1.1", "Host: a\r\nContent-Length: 0\r\n"));
  REQUIRE(zero.r.status == HeadStatus::kDone);
  CHECK(zero.head.framing.kind == FramingKind::kContentLength);
  CHECK(zero.head.framing.length == 0);
}

TEST_CASE("h1: request framing", "[h1][http]") {
  auto kind = [](std::string_view headers, std::string_view first = "POST / HTTP/1.1") {
    Req q = parse_req(head(first, "Host: a\r\n" + std::string(headers)));
    REQUIRE(q.r.status == HeadStatus::kDone);
    return q.head.framing.kind;
  };
  CHECK(kind("") == FramingKind::kNone);
  CHECK(kind("", "GET / HTTP/1.0") == FramingKind::kNone);
  CHECK(kind("Content-Length: 3\r\n") == FramingKind::kContentLength);
  CHECK(kind("Transfer-Encoding: chunked\r\n") == FramingKind::kChunked);
  CHECK(kind("transfer-encoding: CHUNKED\r\n") == FramingKind::kChunked);
  CHECK(kind("Transfer-Encoding: gzip, chunked\r\n") == FramingKind::kChunked);
  CHECK(kind("Transfer-Encoding: gzip\r\nTransfer-Encoding: chunked\r\n") == FramingKind::kChunked);
  CHECK(kind("Content-Length: 3\r\n", "POST / HTTP/1.0") == FramingKind::kContentLength);
}

TEST_CASE("h1: keep-alive, Connection tokens, Upgrade and Expect", "[h1][http]") {
  auto req = [](std::string_view first, std::string_view headers) {
    return parse_req(head(first, "Host: a\r\n" + std::string(headers)));
  };
  CHECK(req("GET / HTTP/1.1", "").head.keep_alive);
  CHECK_FALSE(req("GET / HTTP/1.1", "Connection: close\r\n").head.keep_alive);
  CHECK_FALSE(req("GET / HTTP/1.1", "Connection: keep-alive, CLOSE\r\n").head.keep_alive);
  CHECK_FALSE(req("GET / HTTP/1.0", "").head.keep_alive);
  CHECK(req("GET / HTTP/1.0", "Connection: Keep-Alive\r\n").head.keep_alive);
  CHECK_FALSE(req("GET / HTTP/1.0", "Connection: keep-alive\r\nConnection: close\r\n").head.keep_alive);

  Req up = req("GET /chat HTTP/1.1", "Connection: Upgrade, x-custom\r\nConnection: ,te,\r\nUpgrade: websocket\r\n");
  REQUIRE(up.r.status == HeadStatus::kDone);
  CHECK(up.head.upgrade);
  REQUIRE(up.head.connection().size() == 3);
  CHECK(up.head.connection()[0] == "Upgrade");
  CHECK(up.head.connection()[1] == "x-custom");
  CHECK(up.head.connection()[2] == "te");
  CHECK(up.head.keep_alive);

  CHECK(req("POST / HTTP/1.1", "Expect: 100-Continue\r\nContent-Length: 1\r\n").head.expect_continue);
  CHECK_FALSE(req("POST / HTTP/1.1", "Expect: 100-continue-x\r\n").head.expect_continue);

  std::string many = "Connection: ";
  for (int i = 0; i < 16; ++i) many += (i ? ",t" : "t") + std::to_string(i);
  Req sixteen = req("GET / HTTP/1.1", many + "\r\n");
  REQUIRE(sixteen.r.status == HeadStatus::kDone);
  CHECK(sixteen.head.connection().size() == 16);
  Req seventeen = req("GET / HTTP/1.1", many + ",t16\r\n");
  REQUIRE(seventeen.r.status == HeadStatus::kError);
  CHECK(seventeen.r.error_status == 400);
  CHECK(seventeen.r.reason == "connection_tokens");
}

TEST_CASE("h1: target forms and the authority", "[h1][http]") {
  Req abs = parse_req(head("GET http://Example.com:80/x?y HTTP/1.1", "Host: example.com:80\r\n"));
  REQUIRE(abs.r.status == HeadStatus::kDone);
  CHECK(abs.head.form == TargetForm::kAbsolute);
  CHECK(abs.head.authority == "Example.com:80");

  Req abs10 = parse_req(head("GET https://b.example HTTP/1.0", ""));
  REQUIRE(abs10.r.status == HeadStatus::kDone);
  CHECK(abs10.head.authority == "b.example");
  CHECK(abs10.head.host.empty());

  Req conn = parse_req(head("CONNECT [::1]:443 HTTP/1.1", "Host: [::1]:443\r\n"));
  REQUIRE(conn.r.status == HeadStatus::kDone);
  CHECK(conn.head.method == Method::kConnect);
  CHECK(conn.head.form == TargetForm::kAuthority);
  CHECK(conn.head.authority == "[::1]:443");

  Req star = parse_req(head("OPTIONS * HTTP/1.1", "Host: a:1\r\n"));
  REQUIRE(star.r.status == HeadStatus::kDone);
  CHECK(star.head.form == TargetForm::kAsterisk);
  CHECK(star.head.authority == "a:1");

  Req other = parse_req(head("PURGE /x HTTP/1.1", "Host: a\r\n"));
  REQUIRE(other.r.status == HeadStatus::kDone);
  CHECK(other.head.method == Method::kOther);
  CHECK(other.head.method_name == "PURGE");

  Req empty_host = parse_req(head("GET / HTTP/1.1", "Host:\r\n"));
  REQUIRE(empty_host.r.status == HeadStatus::kDone);
  CHECK(empty_host.head.host.empty());
}

TEST_CASE("h1: the request line limit, at and one past it", "[h1][http]") {
  Limits l;
  l.max_request_line = 64;
  std::string at = "GET /" + std::string(64 - 14, 'a') + " HTTP/1.1";
  REQUIRE(at.size() == 64);
  CHECK(parse_req(head(at, "Host: a\r\n"), l).r.status == HeadStatus::kDone);
  std::string past = "GET /" + std::string(64 - 13, 'a') + " HTTP/1.1";
  Req q = parse_req(head(past, "Host: a\r\n"), l);
  REQUIRE(q.r.status == HeadStatus::kError);
  CHECK(q.r.error_status == 414);
  CHECK(q.r.reason == "request_line_too_long");

  // Before the line's end arrives: the bytes a line of the limit could
  // take (with its CRLF) are enough to answer 414.
  std::string partial = "GET /" + std::string(100, 'a');
  CHECK(parse_req(partial.substr(0, 65), l).r.status == HeadStatus::kIncomplete);
  Req early = parse_req(partial.substr(0, 66), l);
  REQUIRE(early.r.status == HeadStatus::kError);
  CHECK(early.r.error_status == 414);
  // A line exactly at the limit whose CRLF has arrived is not 414.
  CHECK(parse_req(at + "\r\n", l).r.status == HeadStatus::kIncomplete);
}

TEST_CASE("h1: the head size limit, at and one past it", "[h1][http]") {
  Limits l;
  l.max_head = 128;
  // A header value padded so that the head is exactly 128 bytes.
  std::string prefix = "GET / HTTP/1.1\r\nHost: a\r\nX-Pad: ";
  std::string at = prefix + std::string(128 - prefix.size() - 4, 'p') + "\r\n\r\n";
  REQUIRE(at.size() == 128);
  CHECK(parse_req(at, l).r.status == HeadStatus::kDone);
  std::string past = prefix + std::string(128 - prefix.size() - 3, 'p') + "\r\n\r\n";
  Req q = parse_req(past, l);
  REQUIRE(q.r.status == HeadStatus::kError);
  CHECK(q.r.error_status == 431);
  CHECK(q.r.reason == "head_too_large");
  // Incomplete heads: 127 bytes wait, 128 without an end are too large.
  CHECK(parse_req(past.substr(0, 127), l).r.status == HeadStatus::kIncomplete);
  CHECK(parse_req(past.substr(0, 128), l).r.error_status == 431);
}

TEST_CASE("h1: the header count limit, at and one past it", "[h1][http]") {
  Limits l;
  l.max_headers = 5;
  std::string hs = "Host: a\r\n";
  for (int i = 1; i < 5; ++i) hs += "X-" + std::to_string(i) + ": v\r\n";
  Req at = parse_req(head("GET / HTTP/1.1", hs), l);
  REQUIRE(at.r.status == HeadStatus::kDone);
  CHECK(at.head.headers.size() == 5);
  Req past = parse_req(head("GET / HTTP/1.1", hs + "X-5: v\r\n"), l);
  REQUIRE(past.r.status == HeadStatus::kError);
  CHECK(past.r.error_status == 431);
  CHECK(past.r.reason == "too_many_headers");
}

TEST_CASE("h1: a head arriving in pieces is incomplete, then the same", "[h1][http]") {
  std::string whole = head("POST /p HTTP/1.1", "Host: a\r\nContent-Length: 2\r\nX-A: b\r\n") + "xy";
  Req full = parse_req(whole);
  REQUIRE(full.r.status == HeadStatus::kDone);
  for (size_t n = 0; n < full.r.consumed; ++n) {
    INFO("prefix " << n);
    Req part = parse_req(whole.substr(0, n));
    REQUIRE(part.r.status == HeadStatus::kIncomplete);
    CHECK(part.r.consumed <= n);
    // Resuming the scan where it stopped gives the whole answer.
    RequestHead h;
    std::vector<Header> storage(100);
    HeadResult r = parse_request_head(whole, {}, &h, storage.data(), part.r.consumed);
    CHECK(r.status == HeadStatus::kDone);
    CHECK(r.consumed == full.r.consumed);
    CHECK(h.framing.length == 2);
  }
  // Growing one byte at a time, resuming each time: the scan never goes back.
  uint32_t from = 0;
  for (size_t n = 0; n <= whole.size(); ++n) {
    RequestHead h;
    std::vector<Header> storage(100);
    HeadResult r = parse_request_head(std::string_view(whole).substr(0, n), {}, &h, storage.data(), from);
    if (r.status == HeadStatus::kDone) {
      CHECK(n == full.r.consumed);
      break;
    }
    REQUIRE(r.status == HeadStatus::kIncomplete);
    CHECK(r.consumed >= from);
    from = r.consumed;
  }
}

TEST_CASE("h1: pipelined requests back to back", "[h1][http]") {
  std::string a = head("POST /a HTTP/1.1", "Host: h\r\nContent-Length: 3\r\n") + "abc";
  std::string b = head("POST /b HTTP/1.1", "Host: h\r\nTransfer-Encoding: chunked\r\n") + "2\r\nxy\r\n0\r\n\r\n";
  std::string c = head("GET /c HTTP/1.1", "Host: h\r\n");
  std::string stream = a + b + c;
  std::vector<std::string> targets;
  std::string_view rest = stream;
  while (!rest.empty()) {
    RequestHead h;
    Header storage[100];
    HeadResult r = parse_request_head(rest, {}, &h, storage);
    REQUIRE(r.status == HeadStatus::kDone);
    targets.emplace_back(h.target);
    rest.remove_prefix(r.consumed);
    BodyFramer f(h.framing);
    BodyFramer::Step s = f.feed(rest);
    REQUIRE(s.done);
    rest.remove_prefix(s.consumed);
  }
  CHECK(targets == std::vector<std::string>{"/a", "/b", "/c"});
}

TEST_CASE("h1: a response head", "[h1][http]") {
  Resp q = parse_resp("HTTP/1.1 200 OK\r\nContent-Length: 2\r\nSet-Cookie: a\r\nSet-Cookie: b\r\n\r\nhi");
  REQUIRE(q.r.status == HeadStatus::kDone);
  CHECK(q.r.consumed == q.bytes.size() - 2);
  CHECK(q.head.version == Version::kHttp11);
  CHECK(q.head.status == 200);
  CHECK(q.head.reason == "OK");
  CHECK(q.head.headers.size() == 3);
  CHECK(q.head.framing.kind == FramingKind::kContentLength);
  CHECK(q.head.framing.length == 2);
  CHECK(q.head.keep_alive);
  CHECK_FALSE(q.head.interim);

  Resp noreason = parse_resp("HTTP/1.0 404\r\nContent-Length: 0\r\nConnection: keep-alive\r\n\r\n");
  REQUIRE(noreason.r.status == HeadStatus::kDone);
  CHECK(noreason.head.status == 404);
  CHECK(noreason.head.reason.empty());
  CHECK(noreason.head.keep_alive);
  Resp empty_reason = parse_resp("HTTP/1.1 500 \r\nContent-Length: 0\r\n\r\n");
  REQUIRE(empty_reason.r.status == HeadStatus::kDone);
  CHECK(empty_reason.head.reason.empty());
}

TEST_CASE("h1: response framing by method and status (RFC 9112 §6.3)", "[h1][http]") {
  struct Case {
    Method method;
    std::string head;
    FramingKind kind;
    bool interim;
    bool keep_alive;
  };
  const std::string cl = "Content-Length: 5\r\n", te = "Transfer-Encoding: chunked\r\n";
  const std::vector<Case> cases = {
      {Method::kGet, "HTTP/1.1 200 OK\r\n" + cl, FramingKind::kContentLength, false, true},
      {Method::kGet, "HTTP/1.1 200 OK\r\n" + te, FramingKind::kChunked, false, true},
      {Method::kGet, "HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n", FramingKind::kUntilClose, false, false},
      {Method::kGet, "HTTP/1.1 200 OK\r\n", FramingKind::kUntilClose, false, false},
      {Method::kGet, "HTTP/1.0 200 OK\r\n", FramingKind::kUntilClose, false, false},
      {Method::kHead, "HTTP/1.1 200 OK\r\n" + cl, FramingKind::kNone, false, true},
      {Method::kHead, "HTTP/1.1 200 OK\r\n" + te, FramingKind::kNone, false, true},
      {Method::kHead, "HTTP/1.1 200 OK\r\n", FramingKind::kNone, false, true},
      {Method::kGet, "HTTP/1.1 204 No Content\r\n", FramingKind::kNone, false, true},
      {Method::kGet, "HTTP/1.1 304 Not Modified\r\n" + cl, FramingKind::kNone, false, true},
      {Method::kPost, "HTTP/1.1 100 Continue\r\n", FramingKind::kNone, true, true},
      {Method::kGet, "HTTP/1.1 103 Early Hints\r\nLink: </s.css>\r\n", FramingKind::kNone, true, true},
      {Method::kGet, "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n",
       FramingKind::kTunnel, false, false},
      {Method::kConnect, "HTTP/1.1 200 Connection established\r\n", FramingKind::kTunnel, false, false},
      {Method::kConnect, "HTTP/1.1 407 Proxy Auth\r\n" + cl, FramingKind::kContentLength, false, true},
      {Method::kGet, "HTTP/1.1 200 OK\r\nConnection: close\r\n" + cl, FramingKind::kContentLength, false, false},
      {Method::kGet, "HTTP/1.0 200 OK\r\n" + cl, FramingKind::kContentLength, false, false},
  };
  for (const Case& c : cases) {
    INFO(c.head);
    Resp q = parse_resp(c.head + "\r\n", c.method);
    REQUIRE(q.r.status == HeadStatus::kDone);
    CHECK(q.head.framing.kind == c.kind);
    CHECK(q.head.interim == c.interim);
    CHECK(q.head.keep_alive == c.keep_alive);
  }
  CHECK(parse_resp("HTTP/1.1 101 Switching Protocols\r\nUpgrade: h2c\r\n\r\n").head.upgrade);
}

TEST_CASE("h1: response rejections answer 502 with the reason", "[h1][http]") {
  const std::vector<std::pair<std::string, std::string_view>> cases = {
      {"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n", "cl_and_te"},
      {"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n", "content_length_mismatch"},
      {"HTTP/1.0 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n", "te_in_http10"},
      {"HTTP/1.1 200 OK\nContent-Length: 1\r\n\r\n", "bare_lf"},
      {"HTTP/1.1 200 OK\r\nA: b\r\n c\r\n\r\n", "obs_fold"},
      {"HTTP/1.1 200 OK\r\nA : b\r\n\r\n", "space_before_colon"},
      {"HTTP/2.0 200 OK\r\n\r\n", "version"},
      {"HTTP/1.1 20 OK\r\n\r\n", "status_line"},
      {"HTTP/1.1 2000 OK\r\n\r\n", "status_line"},
      {"HTTP/1.1 099 Low\r\n\r\n", "status"},
      {"HTTP/1.1 600 High\r\n\r\n", "status"},
      {"HTTP/1.1 200 O\x01K\r\n\r\n", "reason"},
      {"ICY 200 OK\r\n\r\n", "version_syntax"},
  };
  for (const auto& [input, reason] : cases) {
    INFO(input);
    Resp q = parse_resp(input);
    REQUIRE(q.r.status == HeadStatus::kError);
    CHECK(q.r.error_status == 502);
    CHECK(q.r.reason == reason);
  }
  Limits l;
  l.max_headers = 1;
  Resp many = parse_resp("HTTP/1.1 200 OK\r\nA: 1\r\nB: 2\r\n\r\n", Method::kGet, l);
  CHECK(many.r.error_status == 502);
  CHECK(many.r.reason == "too_many_headers");
}

TEST_CASE("h1: next_list_element splits and trims", "[h1][http]") {
  std::string_view list = " a ,, b\t,c,";
  CHECK(next_list_element(&list) == "a");
  CHECK(next_list_element(&list) == "b");
  CHECK(next_list_element(&list) == "c");
  CHECK(next_list_element(&list).empty());
  CHECK(list.empty());
}

TEST_CASE("h1: a response head arriving in pieces", "[h1][http]") {
  std::string whole = "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n";
  Resp full = parse_resp(whole);
  REQUIRE(full.r.status == HeadStatus::kDone);
  CHECK(full.head.framing.kind == FramingKind::kChunked);
  for (size_t n = 0; n < full.r.consumed; ++n) {
    INFO("prefix " << n);
    Resp part = parse_resp(whole.substr(0, n));
    REQUIRE(part.r.status == HeadStatus::kIncomplete);
    ResponseHead h;
    Header storage[100];
    HeadResult r = parse_response_head(whole, Method::kGet, {}, &h, storage, part.r.consumed);
    CHECK(r.status == HeadStatus::kDone);
    CHECK(r.consumed == full.r.consumed);
  }
  // Responses have no empty lines to skip: a CRLF first is a malformed line.
  CHECK(parse_resp("\r\nHTTP/1.1 200 OK\r\n\r\n").r.status == HeadStatus::kError);
}
