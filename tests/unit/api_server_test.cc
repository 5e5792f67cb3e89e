// The controller's API end to end over loopback: a subscriber gets a
// snapshot, then each change to its service, and nothing about others; a
// pod's Certify waits for its review without holding up anyone else.
#include <netinet/in.h>
#include <poll.h>
#include <stdlib.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>
#include <catch2/catch.hpp>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <mutex>
#include <thread>
#include <vector>

#include "controller/api_server.h"
#include "controller/certifier.h"
#include "controller/controller.h"
#include "controller/own_certificate.h"
#include "controller/pod_reviews.h"
#include "discovery/controller_call.h"
#include "identity/csr.h"
#include "identity/key.h"
#include "proto/frame.h"
#include "tests/unit/must.h"
#include "tests/unit/test_ca.h"
#include "transport/tls_context.h"

using namespace meshd;

namespace {
proto::Entry endpoint(const std::string& service, const std::string& address, uint64_t version, bool tombstone) {
  proto::Entry e;
  e.set_service(service);
  e.set_endpoint(address);
  e.set_owner("api:test");
  e.set_version(version);
  e.set_tombstone(tombstone);
  if (!tombstone) e.mutable_address_of()->set_address(address);
  return e;
}

struct Client {
  int fd;
  proto::FrameDecoder decoder;
  explicit Client(const SocketAddr& addr) {
    fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    REQUIRE(connect(fd, addr.sa(), addr.len()) == 0);
  }
  ~Client() { close(fd); }
  void send(const proto::Request& r) {
    std::string frame;
    proto::append_frame(r, &frame);
    REQUIRE(::send(fd, frame.data(), frame.size(), MSG_NOSIGNAL) == static_cast<ssize_t>(frame.size()));
  }
  // The next response, waiting up to 5 s.
  proto::Response next() {
    proto::Response resp;
    while (!decoder.next_message(&resp)) {
      REQUIRE_FALSE(decoder.failed());
      pollfd p{fd, POLLIN, 0};
      REQUIRE(poll(&p, 1, 5000) == 1);
      char buf[4096];
      ssize_t n = recv(fd, buf, sizeof buf, 0);
      REQUIRE(n > 0);
      decoder.feed(std::string_view(buf, static_cast<size_t>(n)));
    }
    return resp;
  }
};
// Stops and joins the server however the test leaves its scope, so a
// failed assertion reports instead of aborting on a joinable thread.
struct Joiner {
  int fd;
  std::thread& t;
  ~Joiner() {
    uint64_t one = 1;
    if (write(fd, &one, sizeof one) == sizeof one && t.joinable()) t.join();
    close(fd);
  }
};
}  // namespace

TEST_CASE("api: subscribe gets a snapshot, then the changes to its service only") {
  char tmpl[] = "/tmp/meshd-api-test-XXXXXX";
  std::string dir = mkdtemp(tmpl);
  controller::Stats stats;
  controller::Controller ctl(&stats);
  REQUIRE(ctl.start({dir, ""}, 1000));
  controller::ApiServer api(&ctl, &stats, [] { return uint64_t{3000}; });
  REQUIRE(api.listen(SocketAddr::loopback(AF_INET, 0)));
  SocketAddr addr = api.local_address();
  REQUIRE(addr.port() != 0);

  // Changes are applied on the server's own thread, in its tick.
  std::mutex mu;
  std::vector<proto::Entry> pending;
  std::atomic<bool> apply_failed{false};
  int stop = eventfd(0, EFD_CLOEXEC);
  std::thread server([&] {
    api.run(stop, 10, [&] {
      std::vector<proto::Entry> batch;
      {
        std::lock_guard<std::mutex> lock(mu);
        batch.swap(pending);
      }
      if (batch.empty()) return;
      // Catch2 asserts only on the test's own thread: note failures here.
      auto changes = ctl.apply(batch, 2000);
      if (!changes) {
        apply_failed = true;
        return;
      }
      api.publish(*changes);
    });
  });
  Joiner joiner{stop, server};
  auto apply = [&](proto::Entry e) {
    std::lock_guard<std::mutex> lock(mu);
    pending.push_back(std::move(e));
  };

  {
    Client c(addr);
    proto::Request sub;
    sub.set_id(7);
    sub.mutable_subscribe()->set_service("web.prod");
    c.send(sub);
    auto snap = c.next();
    REQUIRE(snap.id() == 7);
    REQUIRE(snap.update().snapshot());
    REQUIRE_FALSE(snap.update().exists());

    apply(endpoint("api.prod", "10.0.0.9:80", 1, false));  // another service: not sent
    apply(endpoint("web.prod", "10.0.0.1:80", 1, false));
    auto up = c.next();
    REQUIRE(up.id() == 7);
    REQUIRE(up.update().service() == "web.prod");
    REQUIRE(up.update().exists());
    REQUIRE(up.update().upserted_size() == 1);
    REQUIRE(up.update().upserted(0).address() == "10.0.0.1:80");

    apply(endpoint("web.prod", "10.0.0.1:80", 2, true));
    auto gone = c.next();
    REQUIRE(gone.update().removed_size() == 1);
    REQUIRE_FALSE(gone.update().exists());

    // By address: a VIP no service has yet, then one that claims it.
    proto::Request by_addr;
    by_addr.set_id(9);
    by_addr.mutable_subscribe()->set_address("10.96.0.10:80");
    c.send(by_addr);
    auto unknown = c.next();
    REQUIRE(unknown.id() == 9);
    REQUIRE(unknown.update().address() == "10.96.0.10:80");
    REQUIRE_FALSE(unknown.update().exists());
    proto::Entry def;
    def.set_service("db.prod");
    def.set_owner("api:test");
    def.set_version(1);
    def.mutable_definition()->set_name("db.prod");
    def.mutable_definition()->add_virtual_addresses("10.96.0.10:80");
    apply(def);
    auto claimed = c.next();
    REQUIRE(claimed.id() == 9);
    REQUIRE(claimed.update().service() == "db.prod");
    REQUIRE(claimed.update().snapshot());
    REQUIRE(claimed.update().exists());
    apply(endpoint("db.prod", "10.0.0.5:5432", 1, false));
    auto more = c.next();
    REQUIRE(more.id() == 9);
    REQUIRE(more.update().upserted_size() == 1);
    REQUIRE_FALSE(more.update().snapshot());

    // Unsubscribe (a proxy evicting db.prod): its changes stop coming. The
    // next answer on the stream is the one to the request sent after the
    // change had time to be applied and published.
    proto::Request unsub;
    unsub.set_id(10);
    unsub.mutable_unsubscribe()->set_id(9);
    c.send(unsub);
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
    apply(endpoint("db.prod", "10.0.0.6:5432", 1, false));
    std::this_thread::sleep_for(std::chrono::milliseconds(100));

    proto::Request bad;
    bad.set_id(8);
    bad.mutable_subscribe()->set_service("Not A Name");
    c.send(bad);
    auto refused = c.next();
    REQUIRE(refused.id() == 8);
    REQUIRE(refused.error().find("'Not A Name'") != std::string::npos);
  }

  REQUIRE_FALSE(apply_failed.load());
  REQUIRE(stats.requests_refused.get() == 1);
  REQUIRE(stats.registry_services.get() == 2);  // web.prod is gone: api.prod, db.prod
  REQUIRE(controller::render_metrics(stats).find("controller_requests_refused_total 1\n") != std::string::npos);
  // (the Joiner stops the server at the end of this scope)
  std::remove((dir + "/registry.log").c_str());
  rmdir(dir.c_str());
}

TEST_CASE("api: a pod's Certify waits for its token review off the API thread; plaintext Certify is refused") {
  meshd::test::CaDir ca;
  char tmpl[] = "/tmp/meshd-api-test-XXXXXX";
  std::string dir = mkdtemp(tmpl);
  controller::Stats stats;
  controller::Controller ctl(&stats);
  REQUIRE(ctl.start({dir, ""}, 1000));
  controller::ApiServer api(&ctl, &stats, [&] { return ca.now * 1000; });
  REQUIRE(api.listen(SocketAddr::loopback(AF_INET, 0)));
  const SocketAddr addr = api.local_address();
  auto certifier = meshd::test::must(controller::Certifier::load({ca.dir, "mesh.test", 600}, &stats));
  api.set_certifier(certifier.get());
  controller::OwnCertificate own(certifier.get());
  api.set_tls(meshd::test::must(own.refresh(ca.now)));

  // A review that takes as long as the test says (an API server that is slow).
  struct Held : controller::CredentialVerifier {
    std::mutex mu;
    std::condition_variable cv;
    bool release = false;
    Parsed<std::string> verify(std::string_view, uint64_t) override {
      std::unique_lock lock(mu);
      cv.wait(lock, [&] { return release; });
      return invalid("the API server says: token expired");
    }
  };
  auto held = std::make_unique<Held>();
  Held* h = held.get();
  controller::PodReviews reviews(std::move(held), [&] { return ca.now; });
  api.set_pod_reviews(&reviews);
  // However the test ends, the held review is let go before the reviews'
  // thread is joined.
  struct Letgo {
    Held* h;
    ~Letgo() {
      {
        std::lock_guard lock(h->mu);
        h->release = true;
      }
      h->cv.notify_all();
    }
  } letgo{h};

  int stop = eventfd(0, EFD_CLOEXEC);
  // Threads that did TLS free wolfSSL's per-thread ECC cache (LeakSanitizer).
  std::thread server([&] {
    api.run(stop, 10, [] {});
    transport::release_thread_crypto();
  });
  Joiner joiner{stop, server};

  auto tls = meshd::test::must(discovery::ControlTls::from_anchors(ca.anchors, "mesh.test"));
  proto::Request certify;
  certify.set_id(5);
  const std::string web = "spiffe://mesh.test/ns/default/sa/web";
  auto key = meshd::test::must(identity::PrivateKey::generate());
  certify.mutable_certify()->set_identity(web);
  certify.mutable_certify()->set_csr_der(meshd::test::must(identity::make_csr(key, web)));
  certify.mutable_certify()->set_k8s_token("pod-token");
  Parsed<proto::Response> pod_answer = invalid("not answered");
  std::jthread pod([&] {
    pod_answer = discovery::controller_call(addr, "controller", certify, 10000, tls);
    transport::release_thread_crypto();
  });

  // (A jthread: joined however the test ends, within the call's 10 s.)
  // While the review holds, the API thread answers everyone else.
  proto::Request list;
  list.set_id(6);
  list.mutable_list_services();
  for (int i = 0; i < 3; ++i) {
    auto r = meshd::test::must(discovery::controller_call(addr, "controller", list, 2000, tls));
    CHECK(r.error().empty());
    CHECK(r.has_services());
  }
  // Over plaintext, a Certify is refused before anything is looked at.
  auto plain = meshd::test::must(discovery::controller_call(addr, "controller", certify, 2000, {}));
  CHECK(plain.error().starts_with("certificates and revocations are served only over TLS"));
  {
    std::lock_guard lock(h->mu);
    h->release = true;
  }
  h->cv.notify_all();
  pod.join();
  auto answer = meshd::test::must(std::move(pod_answer));
  CHECK(answer.id() == 5);
  CHECK(answer.error() == "the API server says: token expired");
  CHECK(stats.certify_refused[static_cast<int>(controller::CertifyRefusal::kBadPodToken)].get() == 1);

  // A request that fails the checks needing no credential is not sent for
  // review: the verifier would hold it again (release is reset) and time out.
  {
    std::lock_guard lock(h->mu);
    h->release = false;
  }
  certify.mutable_certify()->set_csr_der("not a CSR");
  auto bad = meshd::test::must(discovery::controller_call(addr, "controller", certify, 2000, tls));
  CHECK(bad.error().starts_with("CSR refused:"));
  {
    std::lock_guard lock(h->mu);
    h->release = true;
  }
  h->cv.notify_all();
  std::remove((dir + "/registry.log").c_str());
  rmdir(dir.c_str());
}
