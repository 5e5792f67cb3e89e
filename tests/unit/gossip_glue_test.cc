// Two controllers gossiping over loopback in one process, driven by the
// test's own poll loop: join by push-pull, a registration replicated, a
// bulk write carried by push-pull, and garbage counted, not fatal.
#include <netinet/in.h>
#include <poll.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>
#include <catch2/catch.hpp>

#include <cstdio>
#include <memory>
#include <vector>

#include "base/log.h"
#include "controller/gossip/gossip.h"

using namespace meshd;
namespace g = controller::gossip;

namespace {

uint64_t wall_ms() {
  timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  return static_cast<uint64_t>(ts.tv_sec) * 1000 + static_cast<uint64_t>(ts.tv_nsec) / 1'000'000;
}

// A port free for UDP and TCP right now.
uint16_t free_port() {
  int fd = socket(AF_INET, SOCK_DGRAM, 0);
  SocketAddr a = SocketAddr::loopback(AF_INET, 0);
  REQUIRE(bind(fd, a.sa(), a.len()) == 0);
  sockaddr_storage ss{};
  socklen_t len = sizeof ss;
  getsockname(fd, reinterpret_cast<sockaddr*>(&ss), &len);
  uint16_t port = SocketAddr::from_sockaddr(reinterpret_cast<sockaddr*>(&ss), len).port();
  close(fd);
  return port;
}

struct Replica {
  std::string dir;
  controller::Stats stats;
  controller::Controller ctl{&stats};
  std::unique_ptr<g::Gossip> gossip;

  Replica(const std::string& name, uint16_t port, std::vector<uint16_t> join) {
    char tmpl[] = "/tmp/meshd-gossip-glue-XXXXXX";
    dir = mkdtemp(tmpl);
    REQUIRE(ctl.start({dir, ""}, wall_ms()));
    g::Options o;
    o.listen = SocketAddr::loopback(AF_INET, port);
    for (uint16_t j : join) o.join.push_back(SocketAddr::loopback(AF_INET, j));
    o.membership.name = name;
    o.membership.address = o.listen.str();
    o.membership.probe_interval_ms = 200;
    o.membership.probe_timeout_ms = 100;
    o.sync_interval_ms = 500;
    auto key = g::ClusterKey::from_text(std::string(32, 'k'), "test");
    gossip = std::make_unique<g::Gossip>(std::move(o), std::move(*key), &ctl, &stats, wall_ms);
    REQUIRE(gossip->start());
  }
  ~Replica() {
    gossip.reset();
    std::remove((dir + "/registry.log").c_str());
    rmdir(dir.c_str());
  }
  size_t alive() const {
    size_t n = 0;
    proto::MemberList list = gossip->members();
    for (const auto& m : list.members()) n += m.state() == "alive" ? 1 : 0;
    return n;
  }
};

// Runs both replicas' poll loops until done() or 5 s.
template <class F>
bool pump(std::vector<Replica*> rs, F done) {
  uint64_t end = wall_ms() + 5000;
  while (wall_ms() < end) {
    if (done()) return true;
    std::vector<pollfd> fds;
    std::vector<size_t> first;
    int timeout = 50;
    for (Replica* r : rs) {
      first.push_back(fds.size());
      r->gossip->add_fds(&fds);
      timeout = std::min(timeout, r->gossip->timeout_ms());
    }
    poll(fds.data(), fds.size(), timeout);
    for (size_t i = 0; i < rs.size(); ++i) {
      size_t last = i + 1 < rs.size() ? first[i + 1] : fds.size();
      rs[i]->gossip->on_events(std::span<const pollfd>(fds).subspan(first[i], last - first[i]));
    }
  }
  return done();
}

proto::Register registration(const std::string& service, int endpoints) {
  proto::Register r;
  r.set_owner("api:test");
  for (int i = 0; i < endpoints; ++i) {
    proto::Entry* e = r.add_entries();
    e->set_service(service);
    e->set_endpoint("10.0." + std::to_string(i / 250) + "." + std::to_string(i % 250 + 1) + ":80");
    e->mutable_address_of()->set_address(e->endpoint());
  }
  return r;
}

}  // namespace

TEST_CASE("gossip: two replicas join, replicate a write and a bulk write, and count garbage", "[gossip]") {
  log::Level saved = log::level();
  log::set_level(log::Level::kError);
  uint16_t p1 = free_port(), p2 = free_port();
  Replica a("a", p1, {}), b("b", p2, {p1});
  REQUIRE(pump({&a, &b}, [&] { return a.alive() == 2 && b.alive() == 2; }));

  // One endpoint: piggybacked on the next gossip round.
  REQUIRE(a.ctl.register_entries(registration("web.prod", 1), wall_ms()));
  REQUIRE(pump({&a, &b}, [&] { return b.ctl.registry().service("web.prod").size() == 1; }));
  REQUIRE(b.stats.gossip_entries_applied.get() == 1);

  // 2000 endpoints at once: too many for datagrams, a push-pull carries them.
  REQUIRE(a.ctl.register_entries(registration("bulk.prod", 2000), wall_ms()));
  REQUIRE(pump({&a, &b}, [&] { return b.ctl.registry().service("bulk.prod").size() == 2000; }));
  REQUIRE(a.ctl.registry().canonical() == b.ctl.registry().canonical());
  REQUIRE(a.stats.anti_entropy_ok.get() + b.stats.anti_entropy_ok.get() >= 2);

  // Garbage on both sockets: counted and dropped, and gossip goes on.
  int udp = socket(AF_INET, SOCK_DGRAM, 0);
  SocketAddr to = SocketAddr::loopback(AF_INET, p1);
  REQUIRE(sendto(udp, "garbage", 7, 0, to.sa(), to.len()) == 7);
  close(udp);
  int tcp = socket(AF_INET, SOCK_STREAM, 0);
  REQUIRE(connect(tcp, to.sa(), to.len()) == 0);
  const char frame[] = "\x00\x00\x00\x10MGS1xxxxyyyyzzzz";
  REQUIRE(send(tcp, frame, sizeof frame - 1, 0) == static_cast<ssize_t>(sizeof frame - 1));
  auto dropped = [&](g::Drop d) { return a.stats.gossip_packets_dropped[static_cast<int>(d)].get(); };
  REQUIRE(pump({&a, &b}, [&] { return dropped(g::Drop::kMalformed) == 2; }));
  close(tcp);
  REQUIRE(a.ctl.register_entries(registration("after.prod", 1), wall_ms()));
  REQUIRE(pump({&a, &b}, [&] { return b.ctl.registry().service("after.prod").size() == 1; }));
  log::set_level(saved);
}
