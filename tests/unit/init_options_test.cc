#include <catch2/catch.hpp>

#include <cstring>

#include "init/options.h"

using namespace meshd::init;

namespace {
meshd::Parsed<Options> parse(std::vector<std::string_view> args, EnvLookup env = nullptr) {
  return parse_options(args, env);
}
std::string error_of(std::vector<std::string_view> args) {
  auto o = parse(args);
  REQUIRE_FALSE(o.has_value());
  return o.error();
}
}  // namespace

TEST_CASE("meshd-init defaults", "[init][options]") {
  auto o = parse({});
  REQUIRE(o.has_value());
  CHECK(o->inbound_port == 4143);
  CHECK(o->outbound_port == 4140);
  CHECK(o->proxy_uid == 2102);
  REQUIRE(o->skip_inbound_ports.size() == 3);
  CHECK(o->skip_inbound_ports[0].str() == "4190");
  CHECK(o->skip_inbound_ports[1].str() == "4191");
  CHECK(o->skip_inbound_ports[2].str() == "4192");
  CHECK(o->skip_outbound_ports.empty());
  CHECK(o->skip_subnets.empty());
  CHECK_FALSE(o->ipv6);
  CHECK_FALSE(o->dry_run);
  CHECK_FALSE(o->cleanup);
}

TEST_CASE("meshd-init flags", "[init][options]") {
  auto o = parse({"--inbound-port=1", "--outbound-port", "2", "--proxy-uid", "0", "--ipv6", "--dry-run", "--cleanup",
                  "--skip-inbound-ports", "4191,22,22,1000-2000", "--skip-outbound-ports=", "--skip-subnets",
                  "10.1.2.3/8, fd00::1/64", "--templates", "/tmp/t"});
  REQUIRE(o.has_value());
  CHECK(o->inbound_port == 1);
  CHECK(o->outbound_port == 2);
  CHECK(o->proxy_uid == 0);
  CHECK(o->ipv6);
  CHECK(o->dry_run);
  CHECK(o->cleanup);
  // The defaults stay, duplicates collapse, ranges use iptables' syntax.
  REQUIRE(o->skip_inbound_ports.size() == 5);
  CHECK(o->skip_inbound_ports[3].str() == "22");
  CHECK(o->skip_inbound_ports[4].str() == "1000:2000");
  CHECK(o->skip_outbound_ports.empty());
  REQUIRE(o->skip_subnets.size() == 2);
  CHECK(o->skip_subnets[0].str() == "10.0.0.0/8");
  CHECK(o->skip_subnets[1].str() == "fd00::/64");
  CHECK(o->templates_dir == "/tmp/t");
  auto off = parse({"--ipv6=false"});
  REQUIRE(off.has_value());
  CHECK_FALSE(off->ipv6);
}

TEST_CASE("meshd-init flag errors name the flag and the value", "[init][options]") {
  CHECK(error_of({"--inbound-port", "70000"}) == "--inbound-port: '70000' is not a port (1-65535)");
  CHECK(error_of({"--outbound-port=http"}) == "--outbound-port: 'http' is not a port (1-65535)");
  CHECK(error_of({"--proxy-uid", "-1"}) == "--proxy-uid: '-1' is not a user id (0-4294967294)");
  CHECK(error_of({"--skip-inbound-ports", "22,9000-80"})
            .starts_with("--skip-inbound-ports: '9000-80' is not a port range"));
  CHECK(error_of({"--skip-outbound-ports", "0"}) == "--skip-outbound-ports: '0' is not a port (1-65535)");
  CHECK(error_of({"--skip-subnets", "10.0.0.0/8,300.1.1.1/32"}) ==
        "--skip-subnets: '300.1.1.1/32' is not a subnet: expected ADDRESS/PREFIX");
  CHECK(error_of({"--skip-subnets", "fd00::/129"}) == "--skip-subnets: 'fd00::/129': prefix length must be 0..128");
  CHECK(error_of({"--bogus"}) == "unknown flag '--bogus' (see --help)");
  CHECK(error_of({"install"}).starts_with("unexpected argument 'install'"));
  CHECK(error_of({"--inbound-port"}) == "--inbound-port needs a value");
  CHECK(error_of({"--ipv6=maybe"}) == "--ipv6: 'maybe' is not a boolean (true or false)");
  CHECK(error_of({"--inbound-port", "4140"}).starts_with("--inbound-port and --outbound-port are both 4140"));
}

TEST_CASE("meshd-init reads MESHD_INIT_* and flags override them", "[init][options]") {
  EnvLookup env = [](const char* name) -> const char* {
    if (std::strcmp(name, "MESHD_INIT_OUTBOUND_PORT") == 0) return "5000";
    if (std::strcmp(name, "MESHD_INIT_SKIP_SUBNETS") == 0) return "10.0.0.0/8";
    if (std::strcmp(name, "MESHD_INIT_IPV6") == 0) return "true";
    if (std::strcmp(name, "MESHD_INIT_DRY_RUN") == 0) return "true";  // not read: flags only
    return nullptr;
  };
  auto o = parse({"--skip-subnets", "192.168.0.0/16"}, env);
  REQUIRE(o.has_value());
  CHECK(o->outbound_port == 5000);
  CHECK(o->ipv6);
  CHECK_FALSE(o->dry_run);
  REQUIRE(o->skip_subnets.size() == 1);
  CHECK(o->skip_subnets[0].str() == "192.168.0.0/16");

  EnvLookup bad = [](const char* name) -> const char* {
    return std::strcmp(name, "MESHD_INIT_INBOUND_PORT") == 0 ? "x" : nullptr;
  };
  auto e = parse({}, bad);
  REQUIRE_FALSE(e.has_value());
  CHECK(e.error() == "MESHD_INIT_INBOUND_PORT: 'x' is not a port (1-65535)");
}

TEST_CASE("meshd-init --cleanup is not stopped by a bad MESHD_INIT_* value", "[init][options]") {
  auto env = [](const char* name) -> const char* {
    return std::strcmp(name, "MESHD_INIT_SKIP_INBOUND_PORTS") == 0 ? "22,80-" : nullptr;
  };
  REQUIRE_FALSE(parse({}, env).has_value());  // installing: refused
  auto o = parse({"--cleanup"}, env);
  REQUIRE(o.has_value());
  REQUIRE(o->ignored_env.size() == 1);
  CHECK(o->ignored_env[0].find("MESHD_INIT_SKIP_INBOUND_PORTS") != std::string::npos);
  // A bad flag is still an error: it was typed on this command line.
  REQUIRE_FALSE(parse({"--cleanup", "--inbound-port", "x"}, env).has_value());
}

TEST_CASE("meshd-init --help documents every flag", "[init][options]") {
  std::string text = usage();
  for (const char* flag : {"--inbound-port", "--outbound-port", "--proxy-uid", "--skip-inbound-ports",
                           "--skip-outbound-ports", "--skip-subnets", "--ipv6", "--templates", "--dry-run", "--cleanup",
                           "--version", "--help", "4190", "4191", "4192", "MESHD_INIT_"})
    CHECK(text.find(flag) != std::string::npos);
}
