// Push-pull anti-entropy: the digest finds the services that differ, and
// exchanging only those makes two registries equal.
#include <catch2/catch.hpp>

#include <stdlib.h>
#include <unistd.h>

#include <cstdio>

#include "controller/controller.h"
#include "controller/gossip/anti_entropy.h"

using namespace meshd;
using controller::Registry;
namespace ae = controller::gossip;

namespace {
proto::Entry endpoint(const std::string& service, const std::string& address, uint64_t version,
                      bool tombstone = false) {
  proto::Entry e;
  e.set_service(service);
  e.set_endpoint(address);
  e.set_owner("api:test");
  e.set_version(version);
  e.set_tombstone(tombstone);
  e.set_updated_unix_ms(version);
  if (!tombstone) e.mutable_address_of()->set_address(address);
  return e;
}

google::protobuf::RepeatedPtrField<proto::ServiceDigest> as_wire(const std::map<std::string, uint64_t>& d) {
  google::protobuf::RepeatedPtrField<proto::ServiceDigest> out;
  for (const auto& [s, h] : d) {
    auto* x = out.Add();
    x->set_service(s);
    x->set_hash(h);
  }
  return out;
}

// One push-pull between two registries, as gossip.cc runs it; returns how
// many entries crossed.
size_t sync(Registry& a, ae::Digest& da, Registry& b, ae::Digest& db) {
  // 1: a sends its digest; 2: b answers with its differing entries and
  // what it wants; 3: a sends those.
  auto d = ae::diff(db.get(b), as_wire(da.get(a)));
  google::protobuf::RepeatedPtrField<proto::Entry> to_a, to_b;
  ae::append_entries(b, d.send, 0, &to_a);
  ae::append_entries(a, d.want, 0, &to_b);
  for (const auto& e : to_a)
    if (a.apply(e) != Registry::Applied::kStale) da.mark_dirty(e.service());
  for (const auto& e : to_b)
    if (b.apply(e) != Registry::Applied::kStale) db.mark_dirty(e.service());
  return static_cast<size_t>(to_a.size() + to_b.size());
}
}  // namespace

TEST_CASE("gossip: push-pull converges two registries that differ", "[gossip]") {
  Registry a, b;
  ae::Digest da, db;
  // Shared history, then each side's own changes: a newer version, a
  // delete, a service only one side has.
  for (auto* r : {&a, &b}) {
    r->apply(endpoint("web.prod", "10.0.0.1:80", 1));
    r->apply(endpoint("web.prod", "10.0.0.2:80", 1));
    r->apply(endpoint("db.prod", "10.0.1.1:5432", 1));
  }
  a.apply(endpoint("web.prod", "10.0.0.1:80", 5));
  b.apply(endpoint("web.prod", "10.0.0.2:80", 6, true));
  b.apply(endpoint("cache.prod", "10.0.2.1:6379", 3));
  REQUIRE(a.canonical() != b.canonical());
  size_t crossed = sync(a, da, b, db);
  REQUIRE(a.canonical() == b.canonical());
  // db.prod was the same on both sides: none of it crossed.
  REQUIRE(crossed == 2 + 2 + 1);
  REQUIRE(a.find({"web.prod", "10.0.0.2:80"})->tombstone());
  REQUIRE(a.find({"web.prod", "10.0.0.1:80"})->version() == 5);
  // In sync: a second exchange sends nothing.
  REQUIRE(sync(a, da, b, db) == 0);
}

TEST_CASE("gossip: the digest keeps push-pull cheap at 1000 services x 10 endpoints", "[gossip]") {
  Registry a, b;
  ae::Digest da, db;
  for (int s = 0; s < 1000; ++s)
    for (int i = 0; i < 10; ++i) {
      auto e = endpoint("svc-" + std::to_string(s),
                        "10.1." + std::to_string(s % 250) + "." + std::to_string(i + 1) + ":80", 1);
      a.apply(e);
      b.apply(e);
    }
  REQUIRE(sync(a, da, b, db) == 0);
  auto changed = endpoint("svc-500", "10.1.0.99:80", 2);
  a.apply(changed);
  da.mark_dirty("svc-500");
  // Only svc-500 crosses, both ways (11 entries from a, 10 from b).
  REQUIRE(sync(a, da, b, db) == 21);
  REQUIRE(a.canonical() == b.canonical());
}

TEST_CASE("gossip: a lease renewed on one replica keeps entries on another, and expires everywhere", "[gossip]") {
  char t1[] = "/tmp/meshd-gossip-test-XXXXXX";
  char t2[] = "/tmp/meshd-gossip-test-XXXXXX";
  std::string d1 = mkdtemp(t1), d2 = mkdtemp(t2);
  controller::Controller one, two;
  REQUIRE(one.start({d1, ""}, 1000));
  REQUIRE(two.start({d2, ""}, 1000));
  std::vector<proto::Entry> gossiped;
  std::vector<proto::LeaseUpdate> leases;
  one.set_on_change([&](const std::vector<proto::Entry>& w) { gossiped.insert(gossiped.end(), w.begin(), w.end()); });
  one.set_on_lease([&](const proto::LeaseUpdate& l) { leases.push_back(l); });
  proto::Register reg;
  reg.set_owner("lease:proxy-1");
  reg.set_lease_ms(5000);
  proto::Entry* e = reg.add_entries();
  e->set_service("web.prod");
  e->set_endpoint("10.0.0.7:80");
  e->mutable_address_of()->set_address("10.0.0.7:80");
  REQUIRE(one.register_entries(reg, 1000));
  REQUIRE(gossiped.size() == 1);
  REQUIRE(leases.size() == 1);
  REQUIRE(two.apply(gossiped, 1000));
  // The owner renews on replica one only; replica two hears the renewals.
  for (uint64_t t = 3000; t <= 15000; t += 3000) {
    REQUIRE(one.renew("lease:proxy-1", t));
    REQUIRE(two.merge_lease(leases.back(), t));
    REQUIRE_FALSE(two.merge_lease(leases.back(), t));  // heard twice: no news the second time
    REQUIRE(two.expire_leases(t + 100)->empty());
  }
  REQUIRE(two.registry().service("web.prod").size() == 1);
  // Replica two also takes the renewal itself: the owner may come to it.
  REQUIRE(two.renew("lease:proxy-1", 15000));
  // Renewals stop (the owner and replica one are gone): it expires on two.
  auto gone = two.expire_leases(21000);
  REQUIRE(gone);
  REQUIRE(gone->size() == 1);
  REQUIRE(two.registry().service("web.prod").empty());
  for (const auto& d : {d1, d2}) {
    std::remove((d + "/registry.log").c_str());
    rmdir(d.c_str());
  }
}
