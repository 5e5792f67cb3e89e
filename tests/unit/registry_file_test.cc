// The registry file: what it may say, the line named in every error, and
// how successive edits become registry changes.
#include <catch2/catch.hpp>

#include "controller/registry_file.h"

using namespace meshd;
using controller::FileSource;
using controller::parse_registry_file;

namespace {
const char* kGood = R"(# two services
[[service]]
name = "web.prod"
ports = [80]
virtual_addresses = ["10.96.0.10:80"]
protocol = "http1"
request_timeout = "2500ms"
retry_statuses = [502, 503]

  [[service.endpoint]]
  address = "10.0.0.7:8080"
  identity = "spiffe://mesh.local/ns/prod/sa/web"
  meshed = true
  labels = { zone = "a", version = "v2" }

  [[service.endpoint]]
  address = "[FD00::8]:8080"
  weight = 50

[[service]]
name = "db.prod"
protocol = "opaque"
)";

std::string error_of(const char* text) {
  auto r = parse_registry_file(text, "reg.toml");
  REQUIRE_FALSE(r);
  return r.error();
}
}  // namespace

TEST_CASE("registry file: services and endpoints become entries") {
  auto r = parse_registry_file(kGood, "reg.toml");
  REQUIRE(r);
  REQUIRE(r->size() == 4);
  const auto& web = (*r)[0];
  REQUIRE(web.service() == "web.prod");
  REQUIRE(web.endpoint().empty());
  REQUIRE(web.owner() == "file:reg.toml");
  REQUIRE(web.definition().protocol() == proto::PROTOCOL_HTTP1);
  REQUIRE(web.definition().request_timeout_ms() == 2500);
  REQUIRE((*r)[3].definition().request_timeout_ms() == 0);  // unset: the proxy's own
  REQUIRE(web.definition().retry_statuses_set());
  REQUIRE(web.definition().retry_statuses_size() == 2);
  REQUIRE(web.definition().retry_statuses(1) == 503);
  REQUIRE_FALSE((*r)[3].definition().retry_statuses_set());  // unset: the proxy's --retry-statuses
  REQUIRE(web.definition().virtual_addresses(0) == "10.96.0.10:80");
  const auto& ep = (*r)[1].address_of();
  REQUIRE(ep.address() == "10.0.0.7:8080");
  REQUIRE(ep.weight() == 100);
  REQUIRE(ep.meshed());
  REQUIRE(ep.labels().at("zone") == "a");
  REQUIRE((*r)[2].endpoint() == "[fd00::8]:8080");  // canonical form
  REQUIRE((*r)[2].address_of().weight() == 50);
  REQUIRE((*r)[3].definition().protocol() == proto::PROTOCOL_OPAQUE);
}

TEST_CASE("registry file: every error names the line") {
  REQUIRE(error_of("[[service]]\nname = \"web\"\nports = [80\n").rfind("reg.toml:3:", 0) == 0);
  REQUIRE(error_of("[[service]]\nname = \"web\"\n  [[service.endpoint]]\n  adress = \"10.0.0.1:80\"\n") ==
          "reg.toml:4: unknown key 'adress' in an endpoint");
  auto e = error_of("[[service]]\nname = \"web\"\n  [[service.endpoint]]\n  address = \"10.0.0.1\"\n");
  REQUIRE(e.rfind("reg.toml:4:", 0) == 0);
  REQUIRE(e.find("IP:PORT") != std::string::npos);
  REQUIRE(error_of("[[service]]\nname = \"web\"\nports = [0]\n").rfind("reg.toml:3:", 0) == 0);
  REQUIRE(error_of("[[service]]\nname = \"Web\"\n").find("'Web'") != std::string::npos);
  REQUIRE(error_of("[[service]]\nname = \"web\"\nprotocol = \"smtp\"\n").find("'smtp'") != std::string::npos);
  REQUIRE(error_of("[[service]]\nname = \"web\"\nrequest_timeout = \"2\"\n").rfind("reg.toml:3: request_timeout:", 0) ==
          0);
  REQUIRE(error_of("[[service]]\nname = \"web\"\nrequest_timeout = \"2h\"\n").find("between 1ms and 1h") !=
          std::string::npos);
  REQUIRE(error_of("[[service]]\nname = \"web\"\nrequest_timeout = 2000\n").rfind("reg.toml:3:", 0) == 0);
  REQUIRE(error_of("[[service]]\nname = \"web\"\nretry_statuses = [503, 404]\n") ==
          "reg.toml:3: a retry status must be 500-599");
  REQUIRE(error_of("[[service]]\nname = \"web\"\nretry_statuses = 503\n").find("must be an array") !=
          std::string::npos);
  REQUIRE(error_of("[[service]]\nname = \"a\"\n[[service]]\nname = \"a\"\n").find("defined twice") !=
          std::string::npos);
  REQUIRE(error_of("servce = 1\n").rfind("reg.toml:1: unknown key 'servce'", 0) == 0);
  REQUIRE(error_of("[[service]]\nname = \"w\"\n  [[service.endpoint]]\n  address = \"10.0.0.1:80\"\n"
                   "  identity = \"web\"\n")
              .find("spiffe://") != std::string::npos);
}

TEST_CASE("registry file: edits become versioned changes, bad edits change nothing") {
  FileSource src("reg.toml");
  auto first = src.update(kGood, 1000);
  REQUIRE(first);
  REQUIRE(first->size() == 4);
  for (const auto& e : *first) REQUIRE(e.version() == 1000);

  // The same file again: nothing to send.
  REQUIRE(src.update(kGood, 2000)->empty());

  // A bad edit is refused; the last good state stays.
  REQUIRE_FALSE(src.update("[[service]]\nname = \"web.prod\"\nports = [\n", 3000));

  // Drop one endpoint and change a weight: one tombstone, one update, with
  // a version larger than any before even though the clock went back.
  std::string edited = kGood;
  edited.replace(edited.find("weight = 50"), 11, "weight = 60");
  auto cut = edited.find("  [[service.endpoint]]\n  address = \"10.0.0.7:8080\"");
  auto end = edited.find("  [[service.endpoint]]", cut + 10);
  edited.erase(cut, end - cut);
  auto changes = src.update(edited, 500);
  REQUIRE(changes);
  REQUIRE(changes->size() == 2);
  for (const auto& e : *changes) REQUIRE(e.version() == 1001);
  int tombstones = 0;
  for (const auto& e : *changes) tombstones += e.tombstone() ? 1 : 0;
  REQUIRE(tombstones == 1);

  // Applied to a registry, the file's state is what remains.
  controller::Registry r;
  for (const auto& e : *first) r.apply(e);
  for (const auto& e : *changes) r.apply(e);
  REQUIRE(r.service("web.prod").size() == 2);  // definition + the [fd00::8] endpoint
}

namespace {
const char* kWithPolicies = R"([[service]]
name = "web.prod"
ports = [8080]

  [[service.endpoint]]
  address = "10.0.0.7:8080"

  [[service.policy]]
  port = 8080
  default = "deny"
    [[service.policy.rule]]
    name = "prod"
    identities = ["spiffe://mesh.local/ns/prod/*"]
    [[service.policy.rule]]
    name = "probes"
    networks = ["192.168.0.0/16"]

  [[service.policy]]
  default = "all-authenticated"
)";
}  // namespace

TEST_CASE("registry file: service policies become policy:PORT entries") {
  auto r = parse_registry_file(kWithPolicies, "reg.toml");
  INFO((r ? std::string() : r.error()));
  REQUIRE(r);
  REQUIRE(r->size() == 4);
  const auto& p = (*r)[2];
  REQUIRE(p.service() == "web.prod");
  REQUIRE(p.endpoint() == "policy:8080");
  REQUIRE(p.owner() == "file:reg.toml");
  REQUIRE(p.has_policy());
  REQUIRE(p.policy().port() == 8080);
  REQUIRE(p.policy().default_policy() == proto::DEFAULT_POLICY_DENY);
  REQUIRE(p.policy().rules_size() == 2);
  REQUIRE(p.policy().rules(0).identities(0) == "spiffe://mesh.local/ns/prod/*");
  REQUIRE(p.policy().rules(1).networks(0) == "192.168.0.0/16");
  REQUIRE((*r)[3].endpoint() == "policy:0");  // no port: every port
  REQUIRE((*r)[3].policy().default_policy() == proto::DEFAULT_POLICY_ALL_AUTHENTICATED);
  for (const auto& e : *r) REQUIRE(controller::validate(e));
}

TEST_CASE("registry file: policy errors name the line") {
  std::string head = "[[service]]\nname = \"web\"\n  [[service.policy]]\n  port = 80\n";
  REQUIRE(error_of((head + "  prot = 1\n").c_str()) == "reg.toml:5: unknown key 'prot' in a policy");
  REQUIRE(error_of(
              (head + "    [[service.policy.rule]]\n    name = \"a\"\n    identities = [\"spiffe://x/*/y\"]\n").c_str())
              .rfind("reg.toml:7: identity pattern 'spiffe://x/*/y'", 0) == 0);
  REQUIRE(error_of((head + "    [[service.policy.rule]]\n    name = \"a\"\n").c_str())
              .find("reg.toml:5: rule 'a': no identities and no networks") == 0);
  REQUIRE(error_of((head + "  [[service.policy]]\n  port = 80\n").c_str()) ==
          "reg.toml:5: a second policy for port 80 of 'web'");
  REQUIRE(error_of("[[service]]\nname = \"web\"\npolicy = 1\n") ==
          "reg.toml:3: policies must be written [[service.policy]]");
}

TEST_CASE("registry file: a policy removed from the file is tombstoned") {
  FileSource src("reg.toml");
  auto first = src.update(kWithPolicies, 1000);
  REQUIRE(first);
  REQUIRE(first->size() == 4);

  // Change one policy's default and drop the other.
  std::string edited = kWithPolicies;
  edited.replace(edited.find("default = \"deny\""), 16, "default = \"all-authenticated\"");
  edited.erase(edited.find("  [[service.policy]]\n  default = \"all-authenticated\""));
  auto changes = src.update(edited, 2000);
  INFO((changes ? std::string() : changes.error()));
  REQUIRE(changes);
  REQUIRE(changes->size() == 2);
  const proto::Entry* updated = nullptr;
  const proto::Entry* gone = nullptr;
  for (const auto& e : *changes) (e.tombstone() ? gone : updated) = &e;
  REQUIRE(updated != nullptr);
  REQUIRE(updated->endpoint() == "policy:8080");
  REQUIRE(updated->policy().default_policy() == proto::DEFAULT_POLICY_ALL_AUTHENTICATED);
  REQUIRE(gone != nullptr);
  REQUIRE(gone->endpoint() == "policy:0");
  REQUIRE(gone->owner() == "file:reg.toml");
  REQUIRE(controller::validate(*gone));

  controller::Registry r;
  for (const auto& e : *first) r.apply(e);
  for (const auto& e : *changes) r.apply(e);
  REQUIRE(r.find({"web.prod", "policy:0"})->tombstone());
  REQUIRE(r.find({"web.prod", "policy:8080"})->policy().default_policy() == proto::DEFAULT_POLICY_ALL_AUTHENTICATED);
}
