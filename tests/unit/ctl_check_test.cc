#include "ctl/check.h"

#include <catch2/catch.hpp>
#include <cerrno>
#include <string>

using meshd::JsonValue;
using meshd::parse_json;
using namespace meshd::ctl;

namespace {

// What meshd-init installs with its defaults, as iptables-save prints it.
std::string installed_save(int inbound = 4143, int outbound = 4140, int uid = 2102) {
  return "*nat\n:PREROUTING ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n:MESHD_INBOUND - [0:0]\n"
         ":MESHD_INBOUND_REDIRECT - [0:0]\n:MESHD_OUTBOUND_REDIRECT - [0:0]\n:MESHD_OUTPUT - [0:0]\n"
         "-A PREROUTING -p tcp -j MESHD_INBOUND\n-A OUTPUT -p tcp -j MESHD_OUTPUT\n"
         "-A MESHD_INBOUND -p tcp -m tcp --dport 4191 -j RETURN\n-A MESHD_INBOUND -p tcp -j MESHD_INBOUND_REDIRECT\n"
         "-A MESHD_INBOUND_REDIRECT -p tcp -j REDIRECT --to-ports " +
         std::to_string(inbound) + "\n-A MESHD_OUTBOUND_REDIRECT -p tcp -j REDIRECT --to-ports " +
         std::to_string(outbound) + "\n-A MESHD_OUTPUT -m owner --uid-owner " + std::to_string(uid) +
         " -j RETURN\n-A MESHD_OUTPUT -o lo -j RETURN\n-A MESHD_OUTPUT -p tcp -j MESHD_OUTBOUND_REDIRECT\nCOMMIT\n";
}

JsonValue doc(std::string_view text) {
  auto v = parse_json(text);
  REQUIRE(v);
  return *v;
}

const char* const kProxy = R"({"listeners":[{"name":"outbound","address":"127.0.0.1:4140","direction":"outbound"},
  {"name":"inbound","address":"0.0.0.0:4143","direction":"inbound"}],"config":{"proxy_uid":2102}})";

}  // namespace

TEST_CASE("check: io_uring verdicts name the knob and the fix", "[check]") {
  IoUringFacts f;
  f.disabled = 0;
  REQUIRE(check_io_uring(f).verdict == Verdict::kOk);
  f.disabled = std::nullopt;
  REQUIRE(check_io_uring(f).verdict == Verdict::kOk);
  f.disabled = 2;
  auto r = check_io_uring(f);
  REQUIRE(r.verdict == Verdict::kFail);
  REQUIRE(r.detail.find("io_uring_disabled = 2") != std::string::npos);
  REQUIRE(r.hint.find("sysctl") != std::string::npos);
  // 1: only root and the io_uring group; the proxy runs as neither.
  f.disabled = 1;
  f.group = 1234;
  REQUIRE(check_io_uring(f).verdict == Verdict::kFail);
  f.proxy_in_group = true;
  REQUIRE(check_io_uring(f).verdict == Verdict::kOk);
  // No user entry to tell (a container image): a warning, unless this
  // process is the proxy's UID and set up a ring itself.
  f.proxy_in_group = std::nullopt;
  REQUIRE(check_io_uring(f).verdict == Verdict::kWarn);
  f.running_as_proxy = true;
  REQUIRE(check_io_uring(f).verdict == Verdict::kOk);
  f.running_as_proxy = false;
  f.disabled = 0;
  f.setup_errno = EPERM;
  REQUIRE(check_io_uring(f).hint.find("seccomp") != std::string::npos);
  f.setup_errno = ENOSYS;
  REQUIRE(check_io_uring(f).verdict == Verdict::kFail);
  f.setup_errno = EINVAL;
  REQUIRE(check_io_uring(f).hint.find("5.19") != std::string::npos);
}

TEST_CASE("check: capabilities are required only before installing", "[check]") {
  const uint64_t admin = 1ull << 12, raw = 1ull << 13;
  REQUIRE(check_capabilities(admin | raw, true).verdict == Verdict::kOk);
  auto r = check_capabilities(admin, true);
  REQUIRE(r.verdict == Verdict::kFail);
  REQUIRE(r.detail.find("NET_RAW") != std::string::npos);
  REQUIRE(check_capabilities(0, false).verdict == Verdict::kWarn);
}

TEST_CASE("check: redirect rules must point at the proxy and spare its UID", "[check]") {
  auto proxy = doc(kProxy);
  auto ok = check_redirect_rules(meshd::init::parse_nat_table(installed_save()), &proxy, {});
  REQUIRE(ok.verdict == Verdict::kOk);
  REQUIRE(ok.detail == "inbound -> 4143, outbound -> 4140, UID 2102 left alone");

  auto absent =
      check_redirect_rules(meshd::init::parse_nat_table("*nat\n:PREROUTING ACCEPT [0:0]\nCOMMIT\n"), &proxy, {});
  REQUIRE(absent.verdict == Verdict::kFail);
  REQUIRE(absent.detail.find("not installed") != std::string::npos);

  // A redirect to a port the proxy does not listen on blackholes traffic.
  auto wrong_port = check_redirect_rules(meshd::init::parse_nat_table(installed_save(4999)), &proxy, {});
  REQUIRE(wrong_port.verdict == Verdict::kFail);
  REQUIRE(wrong_port.detail.find("no inbound listener on port 4999") != std::string::npos);

  // The proxy's own connections would loop back to it.
  auto wrong_uid = check_redirect_rules(meshd::init::parse_nat_table(installed_save(4143, 4140, 1000)), &proxy, {});
  REQUIRE(wrong_uid.verdict == Verdict::kFail);
  REQUIRE(wrong_uid.detail.find("UID 1000") != std::string::npos);

  // Without a proxy: compared with the flags' (default) ports.
  REQUIRE(check_redirect_rules(meshd::init::parse_nat_table(installed_save()), nullptr, {}).verdict == Verdict::kOk);
  ExpectedRedirect other;
  other.outbound_port = 15001;
  REQUIRE(check_redirect_rules(meshd::init::parse_nat_table(installed_save()), nullptr, other).verdict ==
          Verdict::kFail);

  std::string half = installed_save();
  half.erase(half.find("-A OUTPUT -p tcp -j MESHD_OUTPUT\n"), 32);
  auto h = check_redirect_rules(meshd::init::parse_nat_table(half), &proxy, {});
  REQUIRE(h.verdict == Verdict::kFail);
  REQUIRE(h.detail.find("outbound is not redirected") != std::string::npos);
}

TEST_CASE("check: the proxy's probes", "[check]") {
  REQUIRE(check_proxy_live({200, "live\n"}).verdict == Verdict::kOk);
  REQUIRE(check_proxy_live({0, "no proxy answering"}).verdict == Verdict::kFail);
  REQUIRE(check_proxy_ready({200, "ready\n"}).verdict == Verdict::kOk);
  auto waiting = check_proxy_ready({503, "waiting for a certificate"});
  REQUIRE(waiting.verdict == Verdict::kFail);
  REQUIRE(waiting.detail == "waiting for its first certificate");
  REQUIRE(check_proxy_ready({0, ""}).verdict == Verdict::kSkip);
}

TEST_CASE("check: the controller, as the proxy sees it and from here", "[check]") {
  auto connected = doc(R"({"controller":{"address":"10.0.0.1:4190","connected":true,"state":"fresh"}})");
  auto down = doc(R"({"controller":{"address":"10.0.0.1:4190","connected":false,"last_error":"refused"}})");
  auto none = doc(R"({"listeners":[]})");
  REQUIRE(check_controller(&connected, true, "10.0.0.1:4190", "").verdict == Verdict::kOk);
  auto d = check_controller(&down, true, "10.0.0.1:4190", "connection refused");
  REQUIRE(d.verdict == Verdict::kFail);
  REQUIRE(d.detail.find("not connected to 10.0.0.1:4190 (refused)") != std::string::npos);
  // The proxy is connected; only this tool is not (no trust anchors here).
  REQUIRE(check_controller(&connected, true, "10.0.0.1:4190", "TLS needed").verdict == Verdict::kWarn);
  REQUIRE(check_controller(&none, false, "", "").verdict == Verdict::kSkip);
  REQUIRE(check_controller(nullptr, true, "10.0.0.1:4190", "refused").verdict == Verdict::kFail);
}

TEST_CASE("check: the certificate is held and renewed in time", "[check]") {
  const uint64_t hour = 3'600'000, now = 1'000 * hour;
  auto cert = [](uint64_t renewed, uint64_t expires) {
    return doc(R"({"identity":{"name":"spiffe://mesh.test/ns/a/sa/b","renewed_unix_ms":)" + std::to_string(renewed) +
               R"(,"expires_unix_ms":)" + std::to_string(expires) + R"(,"last_error":""}})");
  };
  auto fresh = cert(now - hour, now + 23 * hour);
  REQUIRE(check_certificate(&fresh, now).verdict == Verdict::kOk);
  auto overdue = cert(now - 22 * hour, now + 2 * hour);  // 2h of 24h left: renewal missed
  REQUIRE(check_certificate(&overdue, now).detail.find("overdue") != std::string::npos);
  auto expired = cert(now - 25 * hour, now - hour);
  REQUIRE(check_certificate(&expired, now).verdict == Verdict::kFail);
  auto none = cert(0, 0);
  REQUIRE(check_certificate(&none, now).verdict == Verdict::kFail);
  auto off = doc("{}");
  REQUIRE(check_certificate(&off, now).verdict == Verdict::kWarn);
}

TEST_CASE("check: clock skew beyond the round trip", "[check]") {
  REQUIRE(check_clock(1'000'050, 1'000'000, 1'000'100).verdict == Verdict::kOk);
  REQUIRE(check_clock(1'000'000 + 6'100, 1'000'000, 1'000'100).verdict == Verdict::kWarn);
  auto far = check_clock(1'000'000 - 40'000, 1'000'000, 1'000'100);
  REQUIRE(far.verdict == Verdict::kFail);
  REQUIRE(far.detail == "the controller's clock is 40000 ms behind this one");
}

TEST_CASE("check: output, text and json, and the exit verdict", "[check]") {
  std::vector<CheckResult> rs = {{"io_uring", Verdict::kOk, "available", ""},
                                 {"redirect rules", Verdict::kFail, "not installed", "run meshd-init"}};
  std::string text = render_checks_text(rs);
  REQUIRE(text.find("[ok  ] io_uring        available\n") != std::string::npos);
  REQUIRE(text.find("[fail] redirect rules  not installed\n") != std::string::npos);
  REQUIRE(text.find("fix: run meshd-init\n") != std::string::npos);
  REQUIRE(text.find("1 ok, 1 failed, 0 warnings, 0 skipped") != std::string::npos);
  auto json = doc(render_checks_json(rs));
  REQUIRE(json["ok"].as_bool() == false);
  REQUIRE(json["checks"][1]["fix"].as_string() == "run meshd-init");
  REQUIRE(any_failed(rs));
  rs.pop_back();
  REQUIRE_FALSE(any_failed(rs));
}
