// The controller's apply paths: renewals that change nothing write nothing,
// and a log that is mostly history is compacted.
#include <stdlib.h>
#include <unistd.h>
#include <catch2/catch.hpp>

#include <cstdio>
#include <vector>

#include "controller/controller.h"
#include "controller/token_marks.h"

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

namespace {
struct TempDir {
  std::string path;
  TempDir() {
    char tmpl[] = "/tmp/meshd-controller-test-XXXXXX";
    path = mkdtemp(tmpl);
  }
  ~TempDir() {
    std::remove((path + "/registry.log").c_str());
    std::remove((path + "/registry.log.new").c_str());
    rmdir(path.c_str());
  }
};

proto::JoinToken join_token(const std::string& id, uint64_t expires_unix_s) {
  proto::JoinToken t;
  t.set_id(id);
  t.set_identity("spiffe://mesh.test/host/web");
  t.set_expires_unix_s(expires_unix_s);
  t.set_uses(1);
  return t;
}
}  // namespace

TEST_CASE("controller: revoking a revoked token again says it was, and keeps the later expiry", "[tokens]") {
  TempDir dir;
  controller::Stats stats;
  controller::Controller ctl(&stats);
  REQUIRE(ctl.start({dir.path, ""}, 1'000'000));
  REQUIRE(*ctl.revoke_token("0c0d", 1500, 1'000'000));
  // Revoked by id, the expiry is "366 days from now": later at each try.
  REQUIRE_FALSE(*ctl.revoke_token("0c0d", 1501, 1'001'000));
  CHECK(ctl.expire_tombstones(1'500'000, 3'600'000) == 0);  // kept until the later one
  CHECK(ctl.token_use("0c0d").revoked);
  CHECK(ctl.expire_tombstones(1'501'000, 3'600'000) == 1);
  CHECK_FALSE(ctl.token_use("0c0d").revoked);
}

TEST_CASE("controller: join-token marks expire with their token, and do not come back", "[tokens]") {
  TempDir dir;
  controller::Stats stats;
  std::vector<proto::Entry> written;
  {
    controller::Controller ctl(&stats);
    REQUIRE(ctl.start({dir.path, ""}, 1'000'000));
    ctl.set_on_change([&](const std::vector<proto::Entry>& w) { written.insert(written.end(), w.begin(), w.end()); });
    REQUIRE(ctl.spend_token(join_token("0a1b", 2000), 1'000'000));
    REQUIRE(ctl.spend_token(join_token("0a1b", 2000), 1'000'500));
    REQUIRE(*ctl.revoke_token("0c0d", 1500, 1'000'000));
    REQUIRE_FALSE(*ctl.revoke_token("0c0d", 1400, 1'000'000));  // already, and for longer
    CHECK(ctl.token_use("0a1b").spent == 2);
    CHECK_FALSE(ctl.token_use("0a1b").revoked);
    CHECK(ctl.token_use("0c0d").revoked);
    CHECK(ctl.token_use("0a1").spent == 0);  // a prefix of an id is another token
    CHECK(stats.join_token_marks.get() == 2);
    CHECK(stats.registry_entries.get() == 0);  // marks are no service's entries
    CHECK(stats.registry_services.get() == 0);
    REQUIRE(written.size() == 3);  // each write is handed on to the other replicas
    const proto::Entry revocation = written[2];
    REQUIRE(revocation.endpoint() == controller::revoked_key("0c0d"));

    CHECK(ctl.expire_tombstones(1'499'999, 3'600'000) == 0);
    CHECK(ctl.expire_tombstones(1'500'000, 3'600'000) == 1);
    CHECK_FALSE(ctl.token_use("0c0d").revoked);
    CHECK(ctl.token_use("0a1b").spent == 2);
    CHECK(stats.join_token_marks.get() == 1);
    // A replica that was away sends the expired revocation again: ignored.
    written.clear();
    auto late = ctl.apply({revocation}, 1'600'000);
    REQUIRE(late);
    CHECK(late->empty());
    CHECK(written.empty());
    CHECK_FALSE(ctl.token_use("0c0d").revoked);
  }
  // A restart after the token expired: the log still has its marks; they go.
  controller::Stats after;
  controller::Controller restarted(&after);
  REQUIRE(restarted.start({dir.path, ""}, 1'999'000));
  CHECK(restarted.token_use("0a1b").spent == 2);
  CHECK(after.join_token_marks.get() == 1);
  controller::Controller later(&after);
  REQUIRE(later.start({dir.path, ""}, 2'000'000));
  CHECK(later.token_use("0a1b").spent == 0);
  CHECK(after.join_token_marks.get() == 0);
  CHECK(later.registry().size() == 0);
}

TEST_CASE("controller: marks are bounded; at the bound new ones are refused until some expire", "[tokens]") {
  TempDir dir;
  controller::Stats stats;
  controller::Controller ctl(&stats);
  REQUIRE(ctl.start({dir.path, ""}, 1'000'000));
  // The bound's worth from another replica (gossip is not refused: its
  // senders keep the same bound); half of them expire at 1500 s.
  std::vector<proto::Entry> marks;
  for (size_t i = 0; i < controller::kMaxTokenMarks; ++i) {
    proto::Entry e;
    char id[17];
    snprintf(id, sizeof id, "%016zx", i);
    e.set_service(std::string(controller::kTokenService));
    e.set_endpoint(controller::spent_key(id, "00ff00ff00ff00ff"));
    e.set_owner("replica:00ff00ff00ff00ff");
    e.set_version(1);
    e.mutable_token()->set_expires_unix_s(i % 2 == 0 ? 1500 : 5000);
    e.mutable_token()->set_spent(1);
    marks.push_back(std::move(e));
  }
  REQUIRE(ctl.apply(marks, 1'000'000));
  CHECK(stats.join_token_marks.get() == controller::kMaxTokenMarks);
  auto full = ctl.revoke_token("0a1b", 3000, 1'000'000);
  REQUIRE_FALSE(full);
  CHECK(full.error().find("holds 100000 join-token revocations and use counts already") != std::string::npos);
  CHECK_FALSE(ctl.spend_token(join_token("0a1b", 3000), 1'000'000));
  CHECK(ctl.token_use(std::string(15, '0') + "1").spent == 1);
  // Once half of them expired there is room again.
  REQUIRE(ctl.revoke_token("0a1b", 3000, 1'500'000));
  CHECK(ctl.token_use("0a1b").revoked);
  CHECK(stats.join_token_marks.get() == controller::kMaxTokenMarks / 2 + 1);
}
