#include "ctl/status.h"

#include <catch2/catch.hpp>
#include <cstdio>
#include <string>

#include "ctl/command.h"

using meshd::JsonValue;
using meshd::parse_json;
using meshd::ctl::format_bytes;
using meshd::ctl::format_uptime;
using meshd::ctl::RedirectReport;
using meshd::ctl::render_status_text;

namespace {

const char* const kSample =
    R"({"version":"0.1.0","git_rev":"abc1234","pid":1234,"uptime_seconds":133.2,"state":"serving","threads":2,
 "listeners":[{"name":"outbound","address":"127.0.0.1:4140","direction":"outbound"},
              {"name":"inbound","address":"0.0.0.0:4143","direction":"inbound"},
              {"name":"forward","address":"127.0.0.1:9000","direction":"outbound","target":"10.0.0.5:80"}],
 "directions":{"inbound":{"open":3,"opened_total":120,"closed_total":117,"refused_total":0,"read_bytes_total":1234567,"write_bytes_total":3565158},
               "outbound":{"open":1,"opened_total":40,"closed_total":39,"refused_total":2,"read_bytes_total":1,"write_bytes_total":2048}},
 "memory":{"rss_bytes":5300000,"buffer_bytes_in_use":262144,"buffer_pool_bytes":8388608},
 "some_future_field":{"nested":[1,2,3]}})";

JsonValue doc_of(std::string_view text) {
  auto v = parse_json(text);
  REQUIRE(v);
  return *v;
}

RedirectReport installed(int in_port, int out_port) {
  meshd::init::NatState s;
  s.inbound_installed = in_port != 0;
  s.outbound_installed = out_port != 0;
  s.inbound_redirect_port = in_port;
  s.outbound_redirect_port = out_port;
  return s;
}

}  // namespace

TEST_CASE("status: text rendering of a full document", "[ctl][status]") {
  std::string text = render_status_text(doc_of(kSample), installed(4143, 4140), 0);
  CHECK(text ==
        "meshd 0.1.0 (abc1234)  pid 1234  up 2m13s  state serving\n"
        "threads      2\n"
        "listeners    outbound 127.0.0.1:4140, inbound 0.0.0.0:4143, forward 127.0.0.1:9000 -> 10.0.0.5:80\n"
        "connections  inbound 3 open (120 total)  outbound 1 open (40 total)  refused 2\n"
        "bytes        inbound read 1.2 MiB write 3.4 MiB  outbound read 1 B write 2.0 KiB\n"
        "memory       rss 5.1 MiB  buffers 256 KiB in use of 8.0 MiB\n"
        "controller   none (no --controller: connections go where they were dialled)\n"
        "identity     none (no --trust-anchors: no mTLS)\n"
        "redirect     installed (inbound -> 4143, outbound -> 4140)\n");
}

TEST_CASE("status: redirect line variants", "[ctl][status]") {
  JsonValue doc = doc_of(kSample);
  auto line = [&](const RedirectReport& r) {
    std::string text = render_status_text(doc, r, 0);
    size_t at = text.find("redirect");
    REQUIRE(at != std::string::npos);
    return text.substr(at);
  };
  CHECK(line(installed(0, 0)) == "redirect     not installed\n");
  CHECK(line(RedirectReport(std::unexpected(std::string("run as root to check")))) ==
        "redirect     unknown (run as root to check)\n");
  CHECK(line(installed(4143, 0)) == "redirect     partial (inbound -> 4143; outbound not installed)\n");
  CHECK(line(installed(0, 4140)) == "redirect     partial (inbound not installed; outbound -> 4140)\n");
  // Traffic redirected to a port the proxy does not listen on is blackholed:
  // the status must say so.
  CHECK(line(installed(5555, 4140)) ==
        "redirect     installed (inbound -> 5555, outbound -> 4140)  WARNING: no inbound listener on port 5555\n");
  CHECK(line(installed(5555, 4141)) ==
        "redirect     installed (inbound -> 5555, outbound -> 4141)  WARNING: no inbound listener on port 5555, "
        "no outbound listener on port 4141\n");
  // The forward listener is an outbound listener too.
  CHECK(line(installed(4143, 9000)) == "redirect     installed (inbound -> 4143, outbound -> 9000)\n");
}

TEST_CASE("status: missing and mistyped fields render as '?' without failing", "[ctl][status]") {
  std::string text = render_status_text(doc_of("{}"), installed(0, 0), 0);
  CHECK(text ==
        "meshd ?\n"
        "threads      ?\n"
        "listeners    ?\n"
        "connections  ?\n"
        "bytes        ?\n"
        "memory       ?\n"
        "controller   none (no --controller: connections go where they were dialled)\n"
        "identity     none (no --trust-anchors: no mTLS)\n"
        "redirect     not installed\n");
  std::string odd = render_status_text(
      doc_of(R"({"version":7,"pid":"x","state":"draining","threads":2.5,"listeners":[{"address":"1.2.3.4:5"},{}],
                 "directions":{"inbound":{"open":"many"}},"memory":{"rss_bytes":1e9}})"),
      installed(0, 0), 0);
  CHECK(odd ==
        "meshd ?  state draining\n"
        "threads      2\n"
        "listeners    ? 1.2.3.4:5, ? ?\n"
        "connections  inbound ? open (? total)\n"
        "bytes        inbound read ? write ?\n"
        "memory       rss 954 MiB\n"
        "controller   none (no --controller: connections go where they were dialled)\n"
        "identity     none (no --trust-anchors: no mTLS)\n"
        "redirect     not installed\n");
  CHECK(render_status_text(doc_of(R"({"listeners":[]})"), installed(0, 0), 0).find("listeners    none\n") !=
        std::string::npos);
}

TEST_CASE("status: uptime and byte formats", "[ctl][status]") {
  CHECK(format_uptime(0) == "0s");
  CHECK(format_uptime(59.9) == "59s");
  CHECK(format_uptime(133.2) == "2m13s");
  CHECK(format_uptime(3600 * 5 + 180 + 7) == "5h3m");
  CHECK(format_uptime(86400 * 3 + 3600 * 4 + 5) == "3d4h");
  CHECK(format_uptime(-1) == "?");
  CHECK(format_bytes(0) == "0 B");
  CHECK(format_bytes(1023) == "1023 B");
  CHECK(format_bytes(1024) == "1.0 KiB");
  CHECK(format_bytes(262144) == "256 KiB");
  CHECK(format_bytes(8u << 20) == "8.0 MiB");
  CHECK(format_bytes((1u << 20) - 1) == "1.0 MiB");  // never "1024 KiB"
  CHECK(format_bytes(UINT64_MAX) == "16 EiB");
}

namespace {

struct Captured {
  int rc;
  std::string out, err;
};

// Runs the command with memory streams in place of stdout/stderr.
Captured run_status_with(std::initializer_list<std::string_view> args) {
  char* out_buf = nullptr;
  char* err_buf = nullptr;
  size_t out_len = 0, err_len = 0;
  FILE* out = open_memstream(&out_buf, &out_len);
  FILE* err = open_memstream(&err_buf, &err_len);
  std::vector<std::string_view> v(args);
  int rc = meshd::ctl::run_status(v, meshd::ctl::Io{out, err});
  fclose(out);
  fclose(err);
  Captured c{rc, std::string(out_buf, out_len), std::string(err_buf, err_len)};
  free(out_buf);
  free(err_buf);
  return c;
}

}  // namespace

TEST_CASE("status command: usage errors exit 2 with one line", "[ctl][status]") {
  auto bad_flag = run_status_with({"--bogus"});
  CHECK(bad_flag.rc == 2);
  CHECK(bad_flag.err == "meshd-ctl status: unknown flag '--bogus' (see meshd-ctl status --help)\n");
  auto bad_output = run_status_with({"-o", "yaml"});
  CHECK(bad_output.rc == 2);
  CHECK(bad_output.err ==
        "meshd-ctl status: -o: 'yaml' is not an output format (expected text or json) (see meshd-ctl status --help)\n");
  auto bad_timeout = run_status_with({"--timeout", "30"});
  CHECK(bad_timeout.rc == 2);
  CHECK(bad_timeout.err.find("--timeout: '30' is not a duration") != std::string::npos);
  auto bad_admin = run_status_with({"--admin=nowhere"});
  CHECK(bad_admin.rc == 2);
  CHECK(bad_admin.err.starts_with("meshd-ctl status: --admin: "));
  auto missing_value = run_status_with({"--admin"});
  CHECK(missing_value.rc == 2);
  CHECK(missing_value.err == "meshd-ctl status: --admin needs a value (see meshd-ctl status --help)\n");
  auto extra = run_status_with({"pods"});
  CHECK(extra.rc == 2);
  CHECK(extra.err.find("unexpected argument 'pods'") != std::string::npos);
}

TEST_CASE("status command: --help describes every flag", "[ctl][status]") {
  auto help = run_status_with({"--help"});
  CHECK(help.rc == 0);
  CHECK(help.err.empty());
  for (const char* flag : {"--admin", "-o, --output", "--timeout", "MESHD_ADMIN", "json", "text"}) {
    INFO(flag);
    CHECK(help.out.find(flag) != std::string::npos);
  }
}

TEST_CASE("status: the controller line, connected and not") {
  std::string fresh =
      render_status_text(doc_of(R"({"controller":{"address":"10.0.0.2:4190","connected":true,"state":"fresh","tls":true,
                 "connected_since_unix_ms":1000000,"last_update_unix_ms":1120000,"destinations":12}})"),
                         installed(0, 0), 1125.0);
  CHECK(fresh.find("controller   10.0.0.2:4190 fresh, TLS, connected 2m5s, last update 5s ago, 12 destinations\n") !=
        std::string::npos);
  std::string gone =
      render_status_text(doc_of(R"({"controller":{"address":"10.0.0.2:4190","connected":false,"state":"disconnected",
                 "last_error":"10.0.0.2:4190: connect: Connection refused","last_update_unix_ms":0,
                 "destinations":3}})"),
                         installed(0, 0), 1125.0);
  CHECK(gone.find("controller   10.0.0.2:4190 disconnected, serving what it last said (stale): 10.0.0.2:4190: "
                  "connect: Connection refused, last update never, 3 destinations\n") != std::string::npos);
}

TEST_CASE("status: the identity line, valid, expired and waiting") {
  const double now = 1'800'000'000.0;
  auto line = [&](const std::string& identity) {
    std::string text = render_status_text(doc_of(R"({"identity":)" + identity + "}"), installed(0, 0), now);
    auto at = text.find("identity");
    REQUIRE(at != std::string::npos);
    return text.substr(at, text.find('\n', at) - at);
  };
  CHECK(line(R"({"name":"spiffe://td/host/web","state":"valid","expires_unix_ms":1800003600000,)"
             R"("renewed_unix_ms":1799999700000,"last_error":""})") ==
        "identity     spiffe://td/host/web valid, expires in 1h0m (2027-01-15T09:00:00Z), renewed 5m0s ago");
  CHECK(line(R"({"name":"spiffe://td/host/web","state":"expired","expires_unix_ms":1799999000000,)"
             R"("last_error":"connection refused"})") ==
        "identity     spiffe://td/host/web EXPIRED at 2027-01-15T07:43:20Z: mTLS connections fail closed; renewal: "
        "connection refused");
  CHECK(line(R"({"name":"spiffe://td/host/web","state":"none","expires_unix_ms":0,"last_error":"no join token"})") ==
        "identity     spiffe://td/host/web waiting for its first certificate: no join token");
}
