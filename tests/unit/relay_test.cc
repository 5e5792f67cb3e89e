// The connection state machine: what one direction of a proxied connection
// does with each completion.
#include <catch2/catch.hpp>

#include "proxy/relay.h"

using meshd::proxy::RelayHalf;
using meshd::proxy::Step;

TEST_CASE("relay: data read is sent, then the next read starts") {
  RelayHalf h;
  REQUIRE(h.start() == Step::kRecv);
  REQUIRE(h.on_recv(100, 7) == Step::kSend);
  REQUIRE(h.buffer() == 7);
  REQUIRE(h.remaining() == 100);
  int released = -2;
  REQUIRE(h.on_send(100, &released) == Step::kRecv);
  REQUIRE(released == 7);
  REQUIRE(h.buffer() == RelayHalf::kNoBuffer);
}

TEST_CASE("relay: a short write sends the rest before reading again") {
  RelayHalf h;
  h.on_recv(1000, 3);
  int released = -2;
  REQUIRE(h.on_send(400, &released) == Step::kSend);
  REQUIRE(released == RelayHalf::kNoBuffer);
  REQUIRE(h.offset() == 400);
  REQUIRE(h.remaining() == 600);
  REQUIRE(h.on_send(600, &released) == Step::kRecv);
  REQUIRE(released == 3);
}

TEST_CASE("relay: end of stream becomes a shutdown of the other side, then done") {
  RelayHalf h;
  REQUIRE(h.on_recv(0, RelayHalf::kNoBuffer) == Step::kShutdown);
  REQUIRE_FALSE(h.done());
  REQUIRE(h.on_shutdown(0) == Step::kDone);
  REQUIRE(h.done());
}

TEST_CASE("relay: a failed shutdown still finishes the half") {
  RelayHalf h;
  h.on_recv(0, RelayHalf::kNoBuffer);
  REQUIRE(h.on_shutdown(-ENOTCONN) == Step::kDone);
}

TEST_CASE("relay: errors name the side that failed") {
  RelayHalf h;
  REQUIRE(h.on_recv(-ECONNRESET, RelayHalf::kNoBuffer) == Step::kFailSource);
  RelayHalf g;
  g.on_recv(10, 1);
  int released = -2;
  REQUIRE(g.on_send(-EPIPE, &released) == Step::kFailDest);
  REQUIRE(released == RelayHalf::kNoBuffer);
  REQUIRE(g.take_buffer() == 1);  // teardown returns it to the ring
  REQUIRE(g.take_buffer() == RelayHalf::kNoBuffer);
}

TEST_CASE("relay: an empty buffer ring waits, transient errors retry") {
  RelayHalf h;
  REQUIRE(h.on_recv(-ENOBUFS, RelayHalf::kNoBuffer) == Step::kWaitBuffer);
  REQUIRE(h.on_recv(-EINTR, RelayHalf::kNoBuffer) == Step::kRecv);
  h.on_recv(5, 2);
  int released = -2;
  REQUIRE(h.on_send(-EAGAIN, &released) == Step::kSend);
  REQUIRE(h.remaining() == 5);
}

TEST_CASE("relay: a zero-byte send is a failure, not a loop") {
  RelayHalf h;
  h.on_recv(5, 2);
  int released = -2;
  REQUIRE(h.on_send(0, &released) == Step::kFailDest);
}
