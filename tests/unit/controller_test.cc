// The controller's apply paths: renewals that change nothing write nothing,
// and a log that is mostly history is compacted.
#include <stdlib.h>
#include <unistd.h>
#include <catch2/catch.hpp>

#include <cstdio>

#include "controller/controller.h"

using namespace meshd;

namespace {
proto::Register registration(const std::string& owner, int endpoints, uint64_t lease_ms) {
  proto::Register r;
  r.set_owner(owner);
  r.set_lease_ms(lease_ms);
  for (int i = 0; i < endpoints; ++i) {
    proto::Entry* e = r.add_entries();
    e->set_service("web.prod");
    e->set_endpoint("10.0." + std::to_string(i / 250) + "." + std::to_string(i % 250 + 1) + ":80");
    e->mutable_address_of()->set_address(e->endpoint());
  }
  return r;
}
}  // namespace

TEST_CASE("controller: re-registering the same endpoints is a renewal, not a write") {
  char tmpl[] = "/tmp/meshd-controller-test-XXXXXX";
  std::string dir = mkdtemp(tmpl);
  controller::Controller ctl;
  REQUIRE(ctl.start({dir, ""}, 1000));
  auto first = ctl.register_entries(registration("lease:a", 3, 5000), 1000);
  REQUIRE(first);
  REQUIRE(first->size() == 1);  // one service changed
  uint64_t bytes = ctl.store_bytes();
  auto again = ctl.register_entries(registration("lease:a", 3, 5000), 3000);
  REQUIRE(again);
  REQUIRE(again->empty());
  REQUIRE(ctl.store_bytes() == bytes);
  // The renewal moved the lease: nothing expires at 7000 (1000 + 5000 < 7000 < 3000 + 5000).
  REQUIRE(ctl.expire_leases(7000)->empty());
  REQUIRE(ctl.expire_leases(9000)->size() == 1);
  REQUIRE(ctl.registry().service("web.prod").empty());
  std::remove((dir + "/registry.log").c_str());
  rmdir(dir.c_str());
}

TEST_CASE("controller: a log that is mostly history is compacted") {
  char tmpl[] = "/tmp/meshd-controller-test-XXXXXX";
  std::string dir = mkdtemp(tmpl);
  controller::Controller ctl;
  REQUIRE(ctl.start({dir, ""}, 1000));
  // Many changes to few entries: the log grows, the registry does not.
  uint64_t written = 0;
  for (int round = 0; written < (3u << 20); ++round) {
    auto r = registration("lease:a", 50, 60000);
    for (auto& e : *r.mutable_entries()) e.mutable_address_of()->set_weight(static_cast<uint32_t>(round % 2));
    uint64_t before = ctl.store_bytes();
    REQUIRE(ctl.register_entries(r, 1000 + static_cast<uint64_t>(round)));
    written += ctl.store_bytes() - before;
    REQUIRE(ctl.maybe_compact());
  }
  // 3 MiB went through the log; it holds little more than the live entries.
  REQUIRE(ctl.store_bytes() < (1u << 20) + (1u << 18));
  controller::Registry replayed;
  controller::Store store;
  REQUIRE(store.open(dir, &replayed));
  REQUIRE(replayed.canonical() == ctl.registry().canonical());
  std::remove((dir + "/registry.log").c_str());
  std::remove((dir + "/registry.log.new").c_str());
  rmdir(dir.c_str());
}

TEST_CASE("controller: an entry the register API took over survives the file dropping it") {
  char tmpl[] = "/tmp/meshd-controller-test-XXXXXX";
  std::string dir = mkdtemp(tmpl);
  const std::string file = dir + "/registry.toml";
  auto write = [&](const std::string& text) {
    FILE* f = std::fopen(file.c_str(), "w");
    REQUIRE(f != nullptr);
    std::fputs(text.c_str(), f);
    std::fclose(f);
  };
  write(
      "[[service]]\nname = \"web.prod\"\n\n  [[service.endpoint]]\n  address = \"10.0.0.1:80\"\n\n"
      "  [[service.endpoint]]\n  address = \"10.0.0.2:80\"\n");
  controller::Controller ctl;
  REQUIRE(ctl.start({dir, file}, 1000));
  REQUIRE(ctl.registry().service("web.prod").size() == 3);  // definition + 2 endpoints
  // An operator takes 10.0.0.1:80 over through the API.
  proto::Register r = registration("api:operator", 1, 0);
  REQUIRE(ctl.register_entries(r, 2000));
  REQUIRE(ctl.registry().find({"web.prod", "10.0.0.1:80"})->owner() == "api:operator");
  // The file then drops both endpoints: its own goes, the taken-over one stays.
  write("[[service]]\nname = \"web.prod\"\n");
  auto changes = ctl.poll_file(3000);
  REQUIRE(changes);
  REQUIRE(ctl.registry().find({"web.prod", "10.0.0.2:80"})->tombstone());
  const proto::Entry* kept = ctl.registry().find({"web.prod", "10.0.0.1:80"});
  REQUIRE(kept != nullptr);
  REQUIRE_FALSE(kept->tombstone());
  REQUIRE(kept->owner() == "api:operator");
  std::remove(file.c_str());
  std::remove((dir + "/registry.log").c_str());
  rmdir(dir.c_str());
}
