// The registry's merge rule: deterministic, commutative, idempotent, so
// replicas converge whatever order they hear entries in.
#include <catch2/catch.hpp>

#include <algorithm>
#include <random>

#include "controller/registry.h"
#include "controller/token_marks.h"

using namespace meshd;
using controller::Registry;

namespace {
proto::Entry endpoint_entry(const std::string& service, const std::string& address, const std::string& owner,
                            uint64_t version, bool tombstone = false, uint32_t weight = 100) {
  proto::Entry e;
  e.set_service(service);
  e.set_endpoint(address);
  e.set_owner(owner);
  e.set_version(version);
  e.set_tombstone(tombstone);
  e.set_updated_unix_ms(1000 * version);
  if (!tombstone) {
    e.mutable_address_of()->set_address(address);
    e.mutable_address_of()->set_weight(weight);
  }
  return e;
}
}  // namespace

TEST_CASE("registry: newer versions win, older ones are stale") {
  Registry r;
  REQUIRE(r.apply(endpoint_entry("web.prod", "10.0.0.1:80", "a", 2)) == Registry::Applied::kNew);
  REQUIRE(r.apply(endpoint_entry("web.prod", "10.0.0.1:80", "a", 1)) == Registry::Applied::kStale);
  REQUIRE(r.apply(endpoint_entry("web.prod", "10.0.0.1:80", "a", 3, false, 50)) == Registry::Applied::kReplaced);
  REQUIRE(r.find({"web.prod", "10.0.0.1:80"})->address_of().weight() == 50);
  // Applying the same entry again changes nothing.
  REQUIRE(r.apply(endpoint_entry("web.prod", "10.0.0.1:80", "a", 3, false, 50)) == Registry::Applied::kStale);
}

TEST_CASE("registry: at equal versions a delete wins, then the larger owner") {
  Registry r;
  r.apply(endpoint_entry("web.prod", "10.0.0.1:80", "a", 5));
  REQUIRE(r.apply(endpoint_entry("web.prod", "10.0.0.1:80", "a", 5, true)) == Registry::Applied::kReplaced);
  REQUIRE(r.service("web.prod").empty());
  REQUIRE(r.apply(endpoint_entry("web.prod", "10.0.0.1:80", "z", 5)) == Registry::Applied::kStale);
  Registry q;
  q.apply(endpoint_entry("web.prod", "10.0.0.2:80", "a", 5));
  REQUIRE(q.apply(endpoint_entry("web.prod", "10.0.0.2:80", "b", 5)) == Registry::Applied::kReplaced);
  REQUIRE(q.find({"web.prod", "10.0.0.2:80"})->owner() == "b");
}

TEST_CASE("registry: any order of any operations converges (property)") {
  std::mt19937 rng(2026);
  const std::vector<std::string> services = {"web.prod", "api.prod"};
  const std::vector<std::string> addresses = {"10.0.0.1:80", "10.0.0.2:80", "[fd00::3]:80"};
  const std::vector<std::string> owners = {"lease:a", "lease:b", "file:/etc/meshd/registry.toml"};
  for (int round = 0; round < 200; ++round) {
    std::vector<proto::Entry> ops;
    int n = 1 + static_cast<int>(rng() % 30);
    for (int i = 0; i < n; ++i)
      ops.push_back(endpoint_entry(services[rng() % 2], addresses[rng() % 3], owners[rng() % 3], 1 + rng() % 4,
                                   rng() % 4 == 0, 1 + rng() % 3));
    Registry first;
    for (const auto& op : ops) first.apply(op);
    for (int order = 0; order < 5; ++order) {
      auto shuffled = ops;
      std::shuffle(shuffled.begin(), shuffled.end(), rng);
      // Duplicates (gossip repeats itself) change nothing either.
      shuffled.insert(shuffled.end(), ops.begin(), ops.begin() + static_cast<long>(rng() % ops.size()));
      Registry other;
      for (const auto& op : shuffled) other.apply(op);
      REQUIRE(other.canonical() == first.canonical());
    }
  }
}

TEST_CASE("registry: tombstones expire after their lifetime, and only tombstones") {
  Registry r;
  r.apply(endpoint_entry("web.prod", "10.0.0.1:80", "a", 1, true));  // written at 1000 ms
  r.apply(endpoint_entry("web.prod", "10.0.0.2:80", "a", 1));
  auto huge = endpoint_entry("web.prod", "10.0.0.3:80", "a", 2, true);
  huge.set_updated_unix_ms(UINT64_MAX);  // a peer's clock: must not wrap into the past
  r.apply(huge);
  REQUIRE(r.expire_tombstones(5000, 10000) == 0);
  REQUIRE(r.expire_tombstones(20000, 10000) == 1);
  REQUIRE(r.size() == 2);
  REQUIRE(r.service("web.prod").size() == 1);
}

TEST_CASE("registry: validation names the field and the value") {
  auto e = endpoint_entry("web.prod", "10.0.0.1:80", "a", 1);
  REQUIRE(controller::validate(e));
  auto bad = e;
  bad.set_service("Web_Prod");
  REQUIRE(controller::validate(bad).error().find("'Web_Prod'") != std::string::npos);
  bad = e;
  bad.set_version(0);
  REQUIRE_FALSE(controller::validate(bad));
  bad = e;
  bad.set_owner("");
  REQUIRE_FALSE(controller::validate(bad));
  bad = e;
  bad.set_endpoint("10.0.0.1");
  REQUIRE(controller::validate(bad).error().find("IP:PORT") != std::string::npos);
  bad = e;
  bad.mutable_address_of()->set_address("10.0.0.9:80");
  REQUIRE(controller::validate(bad).error().find("filed under") != std::string::npos);
  bad = e;
  bad.mutable_address_of()->set_weight(1u << 30);
  REQUIRE_FALSE(controller::validate(bad));
  proto::Entry svc;
  svc.set_service("web.prod");
  svc.set_owner("file:x");
  svc.set_version(1);
  REQUIRE_FALSE(controller::validate(svc));  // no definition
  svc.mutable_definition()->set_name("web.prod");
  svc.mutable_definition()->add_ports(80);
  svc.mutable_definition()->add_virtual_addresses("10.96.0.10:80");
  REQUIRE(controller::validate(svc));
  // Retry statuses come from the API too: 5xx only, and a few.
  proto::Entry retry = svc;
  retry.mutable_definition()->add_retry_statuses(503);
  REQUIRE(controller::validate(retry));
  retry.mutable_definition()->add_retry_statuses(200);
  REQUIRE(controller::validate(retry).error().find("retry status 200") != std::string::npos);
  retry = svc;
  for (int i = 0; i < 17; ++i) retry.mutable_definition()->add_retry_statuses(503);
  REQUIRE(controller::validate(retry).error().find("more than 16") != std::string::npos);
  svc.mutable_definition()->add_ports(70000);
  REQUIRE(controller::validate(svc).error().find("70000") != std::string::npos);
}

TEST_CASE("registry: policy entries are checked by the policy compiler") {
  proto::Entry e;
  e.set_service("web.prod");
  e.set_endpoint("policy:8080");
  e.set_owner("api:ops");
  e.set_version(1);
  auto* p = e.mutable_policy();
  p->set_port(8080);
  p->set_default_policy(proto::DEFAULT_POLICY_DENY);
  auto* rule = p->add_rules();
  rule->set_name("web");
  rule->add_identities("spiffe://td/ns/prod/*");
  REQUIRE(controller::validate(e));

  auto bad = e;
  bad.mutable_policy()->set_port(9090);
  REQUIRE(controller::validate(bad).error() == "policy for port 9090 filed under policy:8080 of 'web.prod'");
  bad = e;
  bad.mutable_policy()->mutable_rules(0)->set_identities(0, "spiffe://td/ns/*/x");
  REQUIRE(controller::validate(bad).error().find("service 'web.prod': policy for port 8080: rule 'web': identity "
                                                 "pattern 'spiffe://td/ns/*/x'") == 0);
  bad = e;
  bad.mutable_policy()->mutable_rules(0)->clear_identities();  // an accidental allow-all
  REQUIRE(controller::validate(bad).error().find("allow every client") != std::string::npos);
  bad = e;
  bad.clear_policy();
  REQUIRE(controller::validate(bad).error().find("carries no policy") != std::string::npos);
  bad.mutable_address_of()->set_address("policy:8080");
  REQUIRE(controller::validate(bad).error().find("other than a policy") != std::string::npos);
  for (const char* key : {"policy:08080", "policy:", "policy:70000", "policy:web"}) {
    bad = e;
    bad.set_endpoint(key);
    REQUIRE(controller::validate(bad).error().find("is not policy:PORT") != std::string::npos);
  }

  // Deleting a policy needs no value.
  auto gone = e;
  gone.clear_policy();
  gone.set_tombstone(true);
  REQUIRE(controller::validate(gone));

  // Policies go under policy keys only.
  auto ep = endpoint_entry("web.prod", "10.0.0.1:80", "a", 1);
  *ep.mutable_policy() = e.policy();
  REQUIRE(controller::validate(ep).error() == "endpoint entry 10.0.0.1:80 carries a policy");
  ep.set_tombstone(true);
  REQUIRE_FALSE(controller::validate(ep));
  proto::Entry svc = e;
  svc.set_endpoint("");
  REQUIRE_FALSE(controller::validate(svc));
  svc.set_tombstone(true);
  REQUIRE(controller::validate(svc).error().find("carries a policy") != std::string::npos);
}

TEST_CASE("registry: join-token marks live only in their reserved service, well formed") {
  proto::Entry m;
  m.set_service(std::string(controller::kTokenService));
  m.set_endpoint(controller::revoked_key("0a1b2c3d4e5f6071"));
  m.set_owner("revoke");
  m.set_version(1);
  m.mutable_token()->set_expires_unix_s(5000);
  REQUIRE(controller::validate(m));
  auto spent = m;
  spent.set_endpoint(controller::spent_key("0a1b2c3d4e5f6071", "00ff00ff00ff00ff"));
  spent.mutable_token()->set_spent(2);
  REQUIRE(controller::validate(spent));

  // Nobody deletes a mark (it expires with its token), and each key says what it holds.
  auto bad = m;
  bad.clear_token();
  bad.set_tombstone(true);
  REQUIRE(controller::validate(bad).error().find("is a delete") != std::string::npos);
  bad = m;
  bad.clear_token();
  REQUIRE(controller::validate(bad).error().find("carries no mark") != std::string::npos);
  bad = m;
  bad.mutable_token()->set_expires_unix_s(0);
  REQUIRE(controller::validate(bad).error().find("has no expiry") != std::string::npos);
  bad = m;
  bad.mutable_token()->set_spent(1);
  REQUIRE(controller::validate(bad).error().find("counts uses") != std::string::npos);
  bad = spent;
  bad.mutable_token()->set_spent(0);
  REQUIRE(controller::validate(bad).error().find("counts no use") != std::string::npos);
  for (const char* key :
       {"revoked:", "revoked:XYZ", "spent:0a1b", "spent:0a1b:", "spent::00ff", "10.0.0.1:80", "policy:80", ""}) {
    bad = spent;
    bad.set_endpoint(key);
    INFO(key);
    REQUIRE_FALSE(controller::validate(bad));
  }
  bad = spent;
  bad.set_endpoint(std::string("spent:0a1b:\x01\xff", 13));
  REQUIRE(controller::validate(bad).error().find("'?'") != std::string::npos);  // peer bytes are not echoed
  bad = m;
  bad.set_lease_ms(1000);
  REQUIRE_FALSE(controller::validate(bad));
  // Marks go nowhere else: a service cannot carry one.
  auto ep = endpoint_entry("web.prod", "10.0.0.1:80", "a", 1);
  *ep.mutable_token() = m.token();
  REQUIRE(controller::validate(ep).error() == "entry for 'web.prod' carries a join-token mark");
  // And the reserved service holds nothing but marks.
  auto svc = endpoint_entry(std::string(controller::kTokenService), "10.0.0.1:80", "a", 1);
  REQUIRE_FALSE(controller::validate(svc));
}

TEST_CASE("registry: erase_in drops only what it picks, in one service") {
  Registry r;
  for (const char* a : {"10.0.0.1:80", "10.0.0.2:80", "10.0.0.3:80"}) {
    r.apply(endpoint_entry("web.prod", a, "a", 1));
    r.apply(endpoint_entry("api.prod", a, "a", 1));
  }
  REQUIRE(r.erase_in("web.prod", [](const proto::Entry& e) { return e.endpoint() != "10.0.0.2:80"; }) == 2);
  REQUIRE(r.service("web.prod").size() == 1);
  REQUIRE(r.service("api.prod").size() == 3);
  size_t seen = 0;
  r.for_each_prefixed("api.prod", "10.0.0.", [&](const proto::Entry&) { ++seen; });
  REQUIRE(seen == 3);
  seen = 0;
  r.for_each_prefixed("api.prod", "10.0.0.3", [&](const proto::Entry&) { ++seen; });
  REQUIRE(seen == 1);
}
