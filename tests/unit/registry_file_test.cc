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
