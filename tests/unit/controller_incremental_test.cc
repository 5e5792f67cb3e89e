// apply() keeps the live-entry gauges and the address index by increments:
// after any sequence of writes they equal what a full walk of the registry
// gives. The writes come from every path that reaches the registry: the
// register API, entries from other replicas (gossip hands them to apply()),
// lease expiry and tombstone expiry.
#include <stdlib.h>
#include <unistd.h>
#include <catch2/catch.hpp>

#include <cstdio>
#include <map>
#include <random>
#include <set>

#include "controller/controller.h"
#include "proto/frame.h"

using namespace meshd;

TEST_CASE("controller: gauges and address index by increments match a full walk") {
  char tmpl[] = "/tmp/meshd-controller-test-XXXXXX";
  std::string dir = mkdtemp(tmpl);
  controller::Stats stats;
  controller::Controller ctl(&stats);
  REQUIRE(ctl.start({dir, ""}, 1000));
  const std::vector<std::string> services = {"a.x", "b.x", "c.x"};
  const std::vector<std::string> addrs = {"10.0.0.1:80", "10.0.0.2:80", "10.0.0.3:80", "10.0.0.4:80"};
  std::mt19937 rng(7);
  uint64_t now = 2000;
  uint64_t remote_version = 1;
  uint64_t generation = ctl.address_generation();
  for (int step = 0; step < 3000; ++step) {
    now += 1 + rng() % 50;
    const std::string& svc = services[rng() % services.size()];
    // The addresses nobody claimed before this step: one that gains a
    // service must move address_generation() (waiters look again then).
    std::set<std::string> unclaimed;
    for (const auto& a : addrs)
      if (ctl.service_for_address(a).empty()) unclaimed.insert(a);
    generation = ctl.address_generation();
    int kind = static_cast<int>(rng() % 8);
    if (kind == 0) {  // definition with 0..2 virtual addresses (overlapping endpoints)
      proto::Register r;
      r.set_owner("o");
      proto::Entry* e = r.add_entries();
      e->set_service(svc);
      e->mutable_definition()->set_name(svc);
      for (unsigned k = rng() % 3; k > 0; --k)
        e->mutable_definition()->add_virtual_addresses(addrs[rng() % addrs.size()]);
      (void)ctl.register_entries(r, now);
    } else if (kind == 1) {  // endpoint, with a random weight, leased or not
      proto::Register r;
      r.set_owner(rng() % 2 ? "o" : "leased");
      if (r.owner() == "leased") r.set_lease_ms(1000);
      proto::Entry* e = r.add_entries();
      e->set_service(svc);
      e->set_endpoint(addrs[rng() % addrs.size()]);
      e->mutable_address_of()->set_address(e->endpoint());
      e->mutable_address_of()->set_weight(static_cast<uint32_t>(rng() % 3));
      (void)ctl.register_entries(r, now);
    } else if (kind == 2) {  // remove an endpoint or the definition
      proto::Deregister d;
      d.set_service(svc);
      if (rng() % 2) d.set_endpoint(addrs[rng() % addrs.size()]);
      (void)ctl.deregister(d, now);
    } else if (kind == 3) {  // a lookup, so the index is built and then kept by increments
      (void)ctl.service_for_address(addrs[rng() % addrs.size()]);
    } else if (kind == 4) {  // a batch from another replica: values and tombstones, some superseded
      std::vector<proto::Entry> batch;
      for (unsigned k = 1 + rng() % 3; k > 0; --k) {
        proto::Entry e;
        e.set_service(services[rng() % services.size()]);
        e.set_owner("remote");
        // Versions from another clock: some older than what is here (stale).
        e.set_version(rng() % 3 == 0 ? remote_version : now + rng() % 5);
        ++remote_version;
        e.set_updated_unix_ms(now);
        if (rng() % 2) e.set_endpoint(addrs[rng() % addrs.size()]);
        if (rng() % 3 == 0) {
          e.set_tombstone(true);
        } else if (e.endpoint().empty()) {
          e.mutable_definition()->set_name(e.service());
          if (rng() % 2) e.mutable_definition()->add_virtual_addresses(addrs[rng() % addrs.size()]);
        } else {
          e.mutable_address_of()->set_address(e.endpoint());
        }
        REQUIRE(controller::validate(e));
        batch.push_back(std::move(e));
      }
      REQUIRE(ctl.apply(batch, now));
    } else if (kind == 5) {  // leases run out (the "leased" owner renews rarely)
      REQUIRE(ctl.expire_leases(now));
    } else if (kind == 6) {  // tombstones forgotten, then perhaps taken back by a stale remote entry
      (void)ctl.expire_tombstones(now, 100);
    } else if (rng() % 4 == 0) {
      (void)ctl.renew("leased", now);
    }
    uint64_t entries = 0;
    std::set<std::string> live_services;
    std::map<std::string, std::string> first_claim;
    ctl.registry().for_each([&](const proto::Entry& e) {
      if (e.tombstone()) return;
      ++entries;
      live_services.insert(e.service());
      if (e.endpoint().empty()) {
        for (const auto& v : e.definition().virtual_addresses()) first_claim.emplace(v, e.service());
      } else {
        first_claim.emplace(e.endpoint(), e.service());
      }
    });
    INFO("step " << step << " kind " << kind);
    REQUIRE(stats.registry_entries.get() == entries);
    REQUIRE(stats.registry_services.get() == live_services.size());
    bool gained = false;
    for (const auto& a : addrs) {
      auto it = first_claim.find(a);
      REQUIRE(ctl.service_for_address(a) == (it == first_claim.end() ? "" : it->second));
      if (it != first_claim.end() && unclaimed.contains(a)) gained = true;
    }
    if (gained) REQUIRE(ctl.address_generation() != generation);
  }
  std::remove((dir + "/registry.log").c_str());
  rmdir(dir.c_str());
}

TEST_CASE("controller: an update framed with its id in front is what send() frames") {
  // ApiServer::publish serializes an update once and writes only the id
  // field in front of it per subscriber: field 1 must come first.
  proto::ServiceUpdate u;
  u.set_service("web.prod");
  u.set_exists(true);
  u.add_removed("10.0.0.1:80");
  proto::Endpoint* a = u.add_upserted();
  a->set_address("10.0.0.2:80");
  a->set_weight(7);
  proto::Response shared;
  *shared.mutable_update() = u;
  const std::string body = proto::serialize_deterministic(shared);
  for (uint64_t id : {0ull, 1ull, 127ull, 128ull, 300ull, ~0ull}) {
    proto::Response resp;
    resp.set_id(id);
    *resp.mutable_update() = u;
    std::string prefix;
    if (id != 0) {
      prefix.push_back(0x08);
      for (uint64_t v = id;; v >>= 7) {
        if (v < 0x80) {
          prefix.push_back(static_cast<char>(v));
          break;
        }
        prefix.push_back(static_cast<char>((v & 0x7f) | 0x80));
      }
    }
    REQUIRE(proto::serialize_deterministic(resp) == prefix + body);
  }
}
