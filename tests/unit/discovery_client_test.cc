// The proxy's discovery client against a scripted controller: lazy
// subscription by address, snapshot then deltas, negative answers, garbage
// that closes the stream while what was learned keeps serving (stale), the
// next replica taking over, and eviction with an Unsubscribe.
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>
#include <catch2/catch.hpp>

#include <chrono>
#include <string>
#include <thread>

#include "discovery/client.h"
#include "io/socket.h"
#include "proto/frame.h"

using namespace meshd;
using namespace std::chrono_literals;

namespace {

// One listening socket that accepts the client's stream and lets the test
// read its requests and write responses.
struct FakeController {
  int listen_fd = -1;
  int fd = -1;
  SocketAddr addr;
  proto::FrameDecoder decoder;
  FakeController() {
    auto l = io::listen_tcp(SocketAddr::loopback(AF_INET, 0), false, 16);
    REQUIRE(l);
    listen_fd = *l;
    sockaddr_storage ss{};
    socklen_t len = sizeof ss;
    getsockname(listen_fd, reinterpret_cast<sockaddr*>(&ss), &len);
    addr = SocketAddr::from_sockaddr(reinterpret_cast<sockaddr*>(&ss), len);
  }
  ~FakeController() {
    if (fd >= 0) close(fd);
    close(listen_fd);
  }
  void accept_stream() {
    pollfd p{listen_fd, POLLIN, 0};
    REQUIRE(poll(&p, 1, 5000) == 1);
    fd = accept4(listen_fd, nullptr, nullptr, SOCK_CLOEXEC);
    REQUIRE(fd >= 0);
    decoder = proto::FrameDecoder();
  }
  proto::Request next() {
    proto::Request req;
    while (!decoder.next_message(&req)) {
      REQUIRE_FALSE(decoder.failed());
      pollfd p{fd, POLLIN, 0};
      REQUIRE(poll(&p, 1, 5000) == 1);
      char buf[4096];
      ssize_t n = recv(fd, buf, sizeof buf, 0);
      REQUIRE(n > 0);
      decoder.feed(std::string_view(buf, static_cast<size_t>(n)));
    }
    return req;
  }
  void send_raw(const std::string& bytes) {
    REQUIRE(::send(fd, bytes.data(), bytes.size(), MSG_NOSIGNAL) == static_cast<ssize_t>(bytes.size()));
  }
  void send(const proto::Response& r) {
    std::string frame;
    proto::append_frame(r, &frame);
    send_raw(frame);
  }
};

proto::Response web_snapshot(uint64_t id, const std::string& address) {
  proto::Response r;
  r.set_id(id);
  auto* u = r.mutable_update();
  u->set_service("web.prod");
  u->set_address(address);
  u->set_exists(true);
  u->set_snapshot(true);
  u->mutable_definition()->set_name("web.prod");
  u->mutable_definition()->add_virtual_addresses("10.96.0.10:80");
  u->add_upserted()->set_address("10.0.0.7:8080");
  u->add_upserted()->set_address("10.0.0.8:8080");
  return r;
}

// Waits (bounded) until the client's table satisfies pred.
template <class P>
bool eventually(discovery::DiscoveryClient& c, P pred) {
  for (int i = 0; i < 500; ++i) {
    if (pred(*c.table())) return true;
    std::this_thread::sleep_for(10ms);
  }
  return false;
}

size_t endpoints_of(const discovery::DestinationTable& t, const char* addr) {
  const auto* d = t.find(*SocketAddr::parse(addr));
  return d == nullptr ? SIZE_MAX : d->set->endpoints.size();
}

}  // namespace

TEST_CASE("discovery client: lazy subscribe, snapshot, deltas, negative answers", "[discovery]") {
  FakeController ctl;
  discovery::ClientOptions o;
  o.controllers = {HostPort{ctl.addr.host(), ctl.addr.port()}};
  discovery::DiscoveryClient client(o);
  int published = 0;
  client.on_published([&] { ++published; });
  client.start();
  ctl.accept_stream();
  REQUIRE(eventually(client, [&](const auto&) { return client.connected(); }));

  SocketAddr vip = *SocketAddr::parse("10.96.0.10:80");
  REQUIRE(client.table()->find(vip) == nullptr);
  client.want(vip);
  auto req = ctl.next();
  REQUIRE(req.has_subscribe());
  REQUIRE(req.subscribe().address() == "10.96.0.10:80");
  ctl.send(web_snapshot(req.id(), "10.96.0.10:80"));
  REQUIRE(eventually(client, [](const auto& t) { return endpoints_of(t, "10.96.0.10:80") == 2; }));
  const auto* d = client.table()->find(vip);
  REQUIRE(d->virtual_address);
  REQUIRE(d->set->service == "web.prod");
  REQUIRE_FALSE(d->set->stale);
  REQUIRE(d->set->endpoints[0].address.str() == "10.0.0.7:8080");

  // A delta: one endpoint removed, one added; health of the kept one stays.
  auto kept_health = d->set->endpoints[1].health;
  proto::Response delta;
  delta.set_id(req.id());
  delta.mutable_update()->set_service("web.prod");
  delta.mutable_update()->set_exists(true);
  delta.mutable_update()->add_removed("10.0.0.7:8080");
  delta.mutable_update()->add_upserted()->set_address("10.0.0.9:8080");
  ctl.send(delta);
  REQUIRE(eventually(client, [](const auto& t) {
    const auto* x = t.find(*SocketAddr::parse("10.96.0.10:80"));
    return x != nullptr && x->set->endpoints.size() == 2 && x->set->endpoints[0].address.str() == "10.0.0.8:8080";
  }));
  REQUIRE(client.table()->find(vip)->set->endpoints[0].health == kept_health);

  // An address no service has: a negative answer, used as dialled.
  SocketAddr other = *SocketAddr::parse("192.0.2.1:443");
  client.want(other);
  auto req2 = ctl.next();
  REQUIRE(req2.subscribe().address() == "192.0.2.1:443");
  proto::Response none;
  none.set_id(req2.id());
  none.mutable_update()->set_address("192.0.2.1:443");
  none.mutable_update()->set_snapshot(true);
  ctl.send(none);
  REQUIRE(eventually(client, [&](const auto& t) { return t.find(other) != nullptr; }));
  REQUIRE(client.table()->find(other)->set->service.empty());
  REQUIRE(published >= 3);
  auto st = client.status();
  REQUIRE(st.connected);
  REQUIRE_FALSE(st.stale);
  REQUIRE(st.destinations == 2);
  client.stop();
}

TEST_CASE("discovery client: garbage closes the stream, old answers serve stale, the next replica takes over",
          "[discovery]") {
  FakeController first, second;
  discovery::ClientOptions o;
  o.controllers = {HostPort{first.addr.host(), first.addr.port()}, HostPort{second.addr.host(), second.addr.port()}};
  o.backoff_min_ms = 20;
  discovery::DiscoveryClient client(o);
  client.start();
  // The client starts at a random replica; whichever it picked plays "first".
  FakeController* a = &first;
  FakeController* b = &second;
  {
    pollfd p[2] = {{first.listen_fd, POLLIN, 0}, {second.listen_fd, POLLIN, 0}};
    REQUIRE(poll(p, 2, 5000) >= 1);
    if (!(p[0].revents & POLLIN)) std::swap(a, b);
  }
  a->accept_stream();
  REQUIRE(eventually(client, [&](const auto&) { return client.connected(); }));
  client.want(*SocketAddr::parse("10.0.0.7:8080"));
  auto req = a->next();
  a->send(web_snapshot(req.id(), "10.0.0.7:8080"));
  REQUIRE(eventually(client, [](const auto& t) { return endpoints_of(t, "10.0.0.7:8080") == 2; }));
  REQUIRE_FALSE(client.table()->find(*SocketAddr::parse("10.0.0.7:8080"))->virtual_address);

  // A frame header announcing 4 GiB: the stream is closed, nothing crashes.
  a->send_raw(std::string("\xff\xff\xff\xff", 4));
  REQUIRE(eventually(client, [](const auto& t) {
    const auto* x = t.find(*SocketAddr::parse("10.0.0.7:8080"));
    return x != nullptr && x->set->stale;
  }));
  REQUIRE(endpoints_of(*client.table(), "10.0.0.7:8080") == 2);
  REQUIRE(client.status().bad_frames == 1);

  // The other replica gets the subscription again; its answer replaces.
  b->accept_stream();
  auto again = b->next();
  REQUIRE(again.subscribe().address() == "10.0.0.7:8080");
  proto::Response snap = web_snapshot(again.id(), "10.0.0.7:8080");
  snap.mutable_update()->mutable_upserted()->RemoveLast();
  b->send(snap);
  REQUIRE(eventually(client, [](const auto& t) {
    const auto* x = t.find(*SocketAddr::parse("10.0.0.7:8080"));
    return x != nullptr && !x->set->stale && x->set->endpoints.size() == 1;
  }));
  REQUIRE(client.status().controller == b->addr.str());
  client.stop();
}

TEST_CASE("discovery client: a destination nobody uses is unsubscribed and forgotten", "[discovery]") {
  FakeController ctl;
  discovery::ClientOptions o;
  o.controllers = {HostPort{ctl.addr.host(), ctl.addr.port()}};
  o.evict_after_ms = 1000;
  discovery::DiscoveryClient client(o);
  client.start();
  ctl.accept_stream();
  REQUIRE(eventually(client, [&](const auto&) { return client.connected(); }));
  SocketAddr vip = *SocketAddr::parse("10.96.0.10:80");
  client.want(vip);
  auto req = ctl.next();
  ctl.send(web_snapshot(req.id(), "10.96.0.10:80"));
  REQUIRE(eventually(client, [&](const auto& t) { return t.find(vip) != nullptr; }));
  // Nobody touches it: within a few seconds it goes, and the controller is told.
  auto unsub = ctl.next();
  REQUIRE(unsub.has_unsubscribe());
  REQUIRE(unsub.unsubscribe().id() == req.id());
  REQUIRE(eventually(client, [&](const auto& t) { return t.find(vip) == nullptr; }));
  REQUIRE(client.status().destinations == 0);
  client.stop();
}
