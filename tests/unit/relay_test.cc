// The connection state machine: what one direction of a proxied connection
// does with each completion.
#include <catch2/catch.hpp>

#include "proxy/relay.h"

using namespace meshd::proxy;

TEST_CASE("relay: data read is sent while the next read starts") {
  RelayHalf h;
  REQUIRE(h.start() == kRecv);
  REQUIRE(h.on_recv(100, 7) == (kSend | kRecv));
  REQUIRE(h.send_buffer() == 7);
  REQUIRE(h.send_length() == 100);
  int released = -2;
  // The send finishes with the second read still in flight: nothing new.
  REQUIRE(h.on_send(100, &released) == kNothing);
  REQUIRE(released == 7);
  REQUIRE(h.chunks() == 0);
}

TEST_CASE("relay: at most two buffers per direction (backpressure)") {
  RelayHalf h;
  h.start();
  REQUIRE(h.on_recv(10, 1) == (kSend | kRecv));
  // Second chunk while the first is still being sent: no third read.
  REQUIRE(h.on_recv(20, 2) == kNothing);
  REQUIRE(h.chunks() == 2);
  int released = -2;
  // First chunk written: write the second, and read again.
  REQUIRE(h.on_send(10, &released) == (kSend | kRecv));
  REQUIRE(released == 1);
  REQUIRE(h.send_buffer() == 2);
  REQUIRE(h.send_length() == 20);
  REQUIRE(h.on_send(20, &released) == kNothing);  // the read is in flight
  REQUIRE(released == 2);
}

TEST_CASE("relay: a short write sends the rest, in order") {
  RelayHalf h;
  h.start();
  h.on_recv(1000, 3);
  int released = -2;
  REQUIRE(h.on_send(400, &released) == kSend);
  REQUIRE(released == RelayHalf::kNoBuffer);
  REQUIRE(h.send_offset() == 400);
  REQUIRE(h.send_length() == 600);
  REQUIRE(h.on_send(600, &released) == kNothing);
  REQUIRE(released == 3);
}

TEST_CASE("relay: end of stream waits for pending bytes, then shuts down") {
  RelayHalf h;
  h.start();
  h.on_recv(50, 4);
  // EOF arrives while the chunk is still being written: no shutdown yet.
  REQUIRE(h.on_recv(0, RelayHalf::kNoBuffer) == kNothing);
  int released = -2;
  REQUIRE(h.on_send(50, &released) == kShutdown);
  REQUIRE(released == 4);
  REQUIRE_FALSE(h.done());
  REQUIRE(h.on_shutdown(0) == kDone);
  REQUIRE(h.done());
}

TEST_CASE("relay: end of stream with nothing pending shuts down at once") {
  RelayHalf h;
  h.start();
  REQUIRE(h.on_recv(0, RelayHalf::kNoBuffer) == kShutdown);
  REQUIRE(h.on_shutdown(-ENOTCONN) == kDone);  // its result does not matter
}

TEST_CASE("relay: errors name the side that failed") {
  RelayHalf h;
  h.start();
  REQUIRE(h.on_recv(-ECONNRESET, RelayHalf::kNoBuffer) == kFailSource);
  RelayHalf g;
  g.start();
  g.on_recv(10, 1);
  int released = -2;
  REQUIRE(g.on_send(-EPIPE, &released) == kFailDest);
  REQUIRE(released == RelayHalf::kNoBuffer);
}

TEST_CASE("relay: teardown hands back every buffer held") {
  RelayHalf h;
  h.start();
  h.on_recv(10, 5);
  h.on_recv(10, 6);
  REQUIRE(h.take_buffer() == 5);
  REQUIRE(h.take_buffer() == 6);
  REQUIRE(h.take_buffer() == RelayHalf::kNoBuffer);
}

TEST_CASE("relay: an empty buffer ring waits, then reads again") {
  RelayHalf h;
  h.start();
  REQUIRE(h.on_recv(-ENOBUFS, RelayHalf::kNoBuffer) == kWaitBuffer);
  REQUIRE(h.on_buffer_available() == kRecv);
  // A second wake-up while the read is in flight does nothing.
  REQUIRE(h.on_buffer_available() == kNothing);
  REQUIRE(h.on_recv(-EINTR, RelayHalf::kNoBuffer) == kRecv);
  h.on_recv(5, 2);
  int released = -2;
  REQUIRE(h.on_send(-EAGAIN, &released) == kSend);
  REQUIRE(h.send_length() == 5);
}

TEST_CASE("relay: a zero-byte send is a failure, not a loop") {
  RelayHalf h;
  h.start();
  h.on_recv(5, 2);
  int released = -2;
  REQUIRE(h.on_send(0, &released) == kFailDest);
}
