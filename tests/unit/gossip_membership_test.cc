// SWIM membership with a fake clock and a fake network: probes and acks,
// indirect probes, suspicion, death, refutation, and a member that comes
// back.
#include <catch2/catch.hpp>

#include <deque>
#include <map>
#include <memory>
#include <set>
#include <string>

#include "base/log.h"
#include "controller/gossip/membership.h"

using namespace meshd;
using controller::gossip::Config;
using controller::gossip::Membership;
using controller::gossip::Transport;

namespace {

struct Net;

struct Node : Transport {
  Net* net = nullptr;
  std::string address;
  std::unique_ptr<Membership> m;
  void send(const std::string& to, const proto::Packet& p) override;
};

struct Net {
  // Membership logs every state change; a test makes hundreds.
  log::Level saved_level = log::level();
  Net() { log::set_level(log::Level::kError); }
  ~Net() { log::set_level(saved_level); }
  uint64_t now = 0;
  std::map<std::string, std::unique_ptr<Node>> nodes;  // by address
  std::deque<std::tuple<std::string, std::string, proto::Packet>> inflight;
  std::set<std::string> down;                         // addresses that neither send nor receive
  std::set<std::pair<std::string, std::string>> cut;  // links (both ways) that drop everything
  int pings = 0, acks = 0, ping_reqs = 0;

  Node& add(const std::string& name, uint64_t seed) {
    auto n = std::make_unique<Node>();
    n->net = this;
    n->address = "10.0.0." + std::to_string(nodes.size() + 1) + ":4192";
    Config c;
    c.name = name;
    c.address = n->address;
    n->m = std::make_unique<Membership>(c, n.get(), seed);
    Node& ref = *n;
    nodes[n->address] = std::move(n);
    return ref;
  }
  // Everyone learns everyone (what a push-pull join does).
  void introduce() {
    for (auto& [a, x] : nodes)
      for (auto& [b, y] : nodes)
        if (a != b && !down.contains(a) && !down.contains(b))
          for (const auto& r : y->m->records()) x->m->merge(r, now);
  }
  bool blocked(const std::string& a, const std::string& b) const {
    return down.contains(a) || down.contains(b) || cut.contains({a, b}) || cut.contains({b, a});
  }
  void run_for(uint64_t ms) {
    uint64_t end = now + ms;
    while (now < end) {
      now += 10;
      for (auto& [addr, n] : nodes)
        if (!down.contains(addr) && now >= n->m->next_timer_ms()) n->m->tick(now);
      while (!inflight.empty()) {
        auto [from, to, p] = std::move(inflight.front());
        inflight.pop_front();
        if (blocked(from, to)) continue;
        auto it = nodes.find(to);
        if (it != nodes.end()) it->second->m->on_packet(from, p, now);
      }
    }
  }
  proto::MemberState state_seen(const Node& observer, const std::string& name) const {
    auto it = observer.m->members().find(name);
    REQUIRE(it != observer.m->members().end());
    return it->second.info.state();
  }
};

void Node::send(const std::string& to, const proto::Packet& p) {
  if (p.has_ping()) ++net->pings;
  if (p.has_ack()) ++net->acks;
  if (p.has_ping_req()) ++net->ping_reqs;
  net->inflight.emplace_back(address, to, p);
}

}  // namespace

TEST_CASE("gossip: probes are acked and every member stays alive", "[gossip]") {
  Net net;
  Node& a = net.add("a", 1);
  Node& b = net.add("b", 2);
  Node& c = net.add("c", 3);
  net.introduce();
  net.run_for(10'000);
  REQUIRE(net.pings >= 25);  // about one per node per second
  REQUIRE(net.acks >= net.pings - 3);
  REQUIRE(net.ping_reqs == 0);
  for (Node* n : {&a, &b, &c}) REQUIRE(n->m->count(proto::MEMBER_ALIVE) == 3);
}

TEST_CASE("gossip: a member that stops answering is suspect, then dead, everywhere", "[gossip]") {
  Net net;
  Node& a = net.add("a", 1);
  Node& b = net.add("b", 2);
  Node& c = net.add("c", 3);
  net.add("d", 4);
  net.introduce();
  net.run_for(3000);
  net.down.insert(c.address);
  // Within two probe rounds (4 members: each probed once a round) someone
  // probes c, asks the others to try, and suspects it.
  net.run_for(2500);
  REQUIRE(net.ping_reqs > 0);
  bool suspected = false;
  for (Node* n : {&a, &b}) suspected = suspected || net.state_seen(*n, "c") == proto::MEMBER_SUSPECT;
  REQUIRE(suspected);
  // No refutation can come: dead after the suspicion timeout (5 s here).
  net.run_for(a.m->suspicion_timeout_ms() + 1500);
  REQUIRE(net.state_seen(a, "c") == proto::MEMBER_DEAD);
  REQUIRE(net.state_seen(b, "c") == proto::MEMBER_DEAD);
  REQUIRE(a.m->count(proto::MEMBER_ALIVE) == 3);
}

TEST_CASE("gossip: a broken direct link is bridged by indirect probes", "[gossip]") {
  Net net;
  Node& a = net.add("a", 1);
  Node& b = net.add("b", 2);
  Node& c = net.add("c", 3);
  net.add("d", 4);
  net.introduce();
  net.cut.insert({a.address, c.address});
  net.run_for(20'000);
  REQUIRE(net.ping_reqs > 0);
  // a cannot reach c itself, but b and d relay c's acks: never dead.
  REQUIRE(net.state_seen(a, "c") != proto::MEMBER_DEAD);
  REQUIRE(net.state_seen(b, "c") != proto::MEMBER_DEAD);
  (void)c;
}

TEST_CASE("gossip: a suspected member refutes with a higher incarnation", "[gossip]") {
  Net net;
  Node& a = net.add("a", 1);
  Node& b = net.add("b", 2);
  Node& c = net.add("c", 3);
  net.introduce();
  net.run_for(2000);
  // A false suspicion, as a lossy network would cause.
  proto::GossipMember rumour = c.m->self();
  rumour.set_state(proto::MEMBER_SUSPECT);
  a.m->merge(rumour, net.now);
  REQUIRE(net.state_seen(a, "c") == proto::MEMBER_SUSPECT);
  net.run_for(3000);
  REQUIRE(c.m->self().incarnation() == 1);
  for (Node* n : {&a, &b}) {
    REQUIRE(net.state_seen(*n, "c") == proto::MEMBER_ALIVE);
    REQUIRE(n->m->members().at("c").info.incarnation() == 1);
  }
  // An old suspicion (a lower incarnation) cannot override the refutation.
  a.m->merge(rumour, net.now);
  REQUIRE(net.state_seen(a, "c") == proto::MEMBER_ALIVE);
}

TEST_CASE("gossip: a dead member that comes back is alive again, with a higher incarnation", "[gossip]") {
  Net net;
  Node& a = net.add("a", 1);
  Node& b = net.add("b", 2);
  Node& c = net.add("c", 3);
  net.introduce();
  net.run_for(2000);
  net.down.insert(c.address);
  net.run_for(12'000);
  REQUIRE(net.state_seen(a, "c") == proto::MEMBER_DEAD);
  // c restarts: a fresh process at incarnation 0, which joins by a
  // push-pull with a (each side merges the other's records).
  Config cfg;
  cfg.name = "c";
  cfg.address = c.address;
  c.m = std::make_unique<Membership>(cfg, &c, 33);
  net.down.erase(c.address);
  for (const auto& r : a.m->records()) c.m->merge(r, net.now);
  for (const auto& r : c.m->records()) a.m->merge(r, net.now);
  REQUIRE(c.m->self().incarnation() == 1);  // it heard it was dead, and outbid that
  REQUIRE(net.state_seen(a, "c") == proto::MEMBER_ALIVE);
  net.run_for(3000);
  REQUIRE(net.state_seen(b, "c") == proto::MEMBER_ALIVE);
  REQUIRE(c.m->count(proto::MEMBER_ALIVE) == 3);
}

TEST_CASE("gossip: dead members are forgotten after their retention", "[gossip]") {
  Net net;
  Node& a = net.add("a", 1);
  Node& b = net.add("b", 2);
  net.introduce();
  net.run_for(1000);
  net.down.insert(b.address);
  net.run_for(12'000);
  REQUIRE(net.state_seen(a, "b") == proto::MEMBER_DEAD);
  net.run_for(10 * 60 * 1000);
  REQUIRE_FALSE(a.m->members().contains("b"));
}

TEST_CASE("gossip: updates ride on packets a bounded number of times", "[gossip]") {
  controller::gossip::BroadcastQueue q(100);
  proto::Entry e;
  e.set_service("web.prod");
  e.set_endpoint("10.0.0.1:80");
  e.set_owner("api:x");
  e.set_version(1);
  q.put(e);
  for (int i = 0; i < 4; ++i) {
    proto::Packet p;
    q.fill(&p, 1300, 4);
    REQUIRE(p.entries_size() == 1);
  }
  REQUIRE(q.empty());
  // Many updates: each packet stays within its budget.
  for (int i = 0; i < 100; ++i) {
    e.set_endpoint("10.0.1." + std::to_string(i) + ":80");
    q.put(e);
  }
  proto::Packet p;
  q.fill(&p, 1300, 4);
  REQUIRE(p.ByteSizeLong() <= 1300);
  REQUIRE(p.entries_size() > 10);
  REQUIRE(p.entries_size() < 100);
}
