// UpstreamPool (src/proxy/upstream_pool.h) over real sockets: connections
// come back by address (and by the identity their TLS peer proved), the
// newest first; a peer that closed, or spoke unasked, is noticed at take;
// the idle timeout and the cap close what they must.
#include <catch2/catch.hpp>

#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <memory>
#include <utility>
#include <vector>

#include "base/addr.h"
#include "proxy/upstream_pool.h"

using meshd::SocketAddr;
using meshd::proxy::IdleUpstream;
using meshd::proxy::UpstreamPool;

namespace {

// A connected pair: the pool keeps one end, the test plays the server at
// the other.
struct Pair {
  Pair() { REQUIRE(::socketpair(AF_UNIX, SOCK_STREAM, 0, fds) == 0); }
  ~Pair() {
    if (fds[1] >= 0) ::close(fds[1]);
  }
  Pair(const Pair&) = delete;
  Pair& operator=(const Pair&) = delete;
  IdleUpstream idle(const SocketAddr& a) {
    IdleUpstream c;
    c.fd = fds[0];
    c.address = a;
    return c;
  }
  // The pool's end is closed: the server reads its end of stream (or a
  // reset, when what it had sent was left unread).
  bool pool_end_closed() const {
    char b;
    ssize_t n = ::recv(fds[1], &b, 1, MSG_DONTWAIT);
    return n == 0 || (n < 0 && errno == ECONNRESET);
  }
  int fds[2] = {-1, -1};
};

SocketAddr addr(const char* text) { return *SocketAddr::parse(text); }

}  // namespace

TEST_CASE("upstream pool: a connection comes back for its address, newest first", "[pool]") {
  UpstreamPool pool(4000);
  Pair a1, a2, b;
  const SocketAddr A = addr("10.0.0.1:80"), B = addr("10.0.0.2:80");
  REQUIRE(pool.give(a1.idle(A), 100));
  REQUIRE(pool.give(b.idle(B), 100));
  REQUIRE(pool.give(a2.idle(A), 200));
  REQUIRE(pool.size() == 3);
  REQUIRE(pool.take(addr("10.0.0.3:80"), "").fd < 0);
  // Over plaintext only: a mesh TLS identity asked for finds none.
  REQUIRE(pool.take(A, "spiffe://td/ns/x").fd < 0);
  IdleUpstream got = pool.take(A, "");
  REQUIRE(got.fd == a2.fds[0]);
  REQUIRE(pool.take(A, "").fd == a1.fds[0]);
  REQUIRE(pool.take(A, "").fd < 0);
  REQUIRE(pool.size() == 1);
  ::close(a1.fds[0]);
  ::close(a2.fds[0]);
}

TEST_CASE("upstream pool: a server that closed or spoke while idle is not reused", "[pool]") {
  meshd::metrics::Counter idle, stale;
  UpstreamPool pool(4000, &idle, &stale);
  Pair closed, spoke, good;
  const SocketAddr A = addr("10.0.0.1:80");
  REQUIRE(pool.give(good.idle(A), 100));
  REQUIRE(pool.give(spoke.idle(A), 100));
  REQUIRE(pool.give(closed.idle(A), 100));
  REQUIRE(idle.get() == 3);
  ::close(closed.fds[1]);
  closed.fds[1] = -1;
  REQUIRE(::send(spoke.fds[1], "HTTP/1.1 408", 12, 0) == 12);
  // The newest two are dead: taken, found so, closed; the good one comes.
  REQUIRE(pool.take(A, "").fd == good.fds[0]);
  REQUIRE(pool.stale() == 2);
  REQUIRE(stale.get() == 2);
  REQUIRE(idle.get() == 0);
  REQUIRE(spoke.pool_end_closed());
  REQUIRE(pool.size() == 0);
  ::close(good.fds[0]);
}

TEST_CASE("upstream pool: idle ones expire, the oldest goes when full, clear closes all", "[pool]") {
  UpstreamPool pool(1000);
  const SocketAddr A = addr("10.0.0.1:80");
  Pair old, young;
  REQUIRE(pool.give(old.idle(A), 100));
  REQUIRE(pool.give(young.idle(A), 900));
  pool.expire(1099);
  REQUIRE(pool.size() == 2);
  pool.expire(1100);  // idle for the timeout: closed
  REQUIRE(pool.size() == 1);
  REQUIRE(old.pool_end_closed());
  REQUIRE_FALSE(young.pool_end_closed());

  SECTION("full") {
    std::vector<std::unique_ptr<Pair>> more;
    for (size_t i = 1; i < UpstreamPool::kMaxIdle; ++i) {
      more.push_back(std::make_unique<Pair>());
      REQUIRE(pool.give(more.back()->idle(A), 950));
    }
    REQUIRE(pool.size() == UpstreamPool::kMaxIdle);
    Pair last;
    REQUIRE(pool.give(last.idle(A), 960));
    REQUIRE(pool.size() == UpstreamPool::kMaxIdle);
    REQUIRE(young.pool_end_closed());  // the oldest made room
    pool.clear();
    REQUIRE(pool.size() == 0);
    REQUIRE(last.pool_end_closed());
    REQUIRE(more.front()->pool_end_closed());
  }
  SECTION("pooling off") {
    UpstreamPool off(0);
    Pair p;
    REQUIRE_FALSE(off.give(p.idle(A), 100));
    REQUIRE(p.pool_end_closed());
  }
}
