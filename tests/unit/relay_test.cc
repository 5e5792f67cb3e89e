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

TEST_CASE("relay: a short write keeps its place") {
  RelayHalf h;
  h.start();
  h.on_recv(1000, 3);
  int released = -2;
  // A ring send that the destination takes only in part spills the rest
  // (see the spill cases below), rather than holding the ring buffer.
  REQUIRE(h.on_send(400, &released) == kSpill);
  REQUIRE(released == RelayHalf::kNoBuffer);
  REQUIRE(h.send_offset() == 400);
  REQUIRE(h.send_length() == 600);
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
  REQUIRE(h.take_unsent().buffer == 5);
  REQUIRE(h.take_unsent().buffer == 6);
  REQUIRE(h.take_unsent().buffer == RelayHalf::kNoBuffer);
}

TEST_CASE("relay: a full destination spills; the ring buffers go back at once") {
  RelayHalf h;
  h.start();
  REQUIRE(h.on_recv(1000, 1) == (kSend | kRecv));
  int released = -2;
  // The destination took 300 bytes and no more: the rest spills.
  REQUIRE(h.on_send(300, &released) == kSpill);
  REQUIRE(released == RelayHalf::kNoBuffer);
  auto u = h.take_unsent();
  REQUIRE((u.buffer == 1 && u.offset == 300 && u.length == 700));
  REQUIRE(h.take_unsent().buffer == RelayHalf::kNoBuffer);
  REQUIRE(h.on_spilled(700) == kSend);
  REQUIRE(h.spilled());
  REQUIRE(h.spill_length() == 700);
  // The read that was in flight lands: it joins the spill, no new read.
  REQUIRE(h.on_recv(50, 2) == kSpill);
  u = h.take_unsent();
  REQUIRE((u.buffer == 2 && u.offset == 0 && u.length == 50));
  REQUIRE(h.on_spilled(50) == kNothing);  // the spill send goes on
  REQUIRE(h.spill_length() == 750);
  // Spill sends wait for the destination; short writes continue from the spill.
  REQUIRE(h.on_send(500, &released) == kSend);
  REQUIRE(h.spill_offset() == 500);
  // Spill written: reading resumes.
  REQUIRE(h.on_send(250, &released) == kRecv);
  REQUIRE_FALSE(h.spilled());
}

TEST_CASE("relay: EAGAIN from a ring send spills both queued chunks in order") {
  RelayHalf h;
  h.start();
  h.on_recv(10, 1);
  h.on_recv(20, 2);
  int released = -2;
  REQUIRE(h.on_send(-EAGAIN, &released) == kSpill);
  REQUIRE(h.take_unsent().length == 10);
  REQUIRE(h.take_unsent().length == 20);
  REQUIRE(h.on_spilled(30) == kSend);
  // End of stream while spilled waits for the spill.
  REQUIRE(h.on_send(30, &released) == kRecv);
  REQUIRE(h.on_recv(0, RelayHalf::kNoBuffer) == kShutdown);
}

TEST_CASE("relay: end of stream during a spill shuts down after it") {
  RelayHalf h;
  h.start();
  h.on_recv(10, 1);
  int released = -2;
  REQUIRE(h.on_send(4, &released) == kSpill);
  h.take_unsent();
  REQUIRE(h.on_spilled(6) == kSend);
  REQUIRE(h.on_recv(0, RelayHalf::kNoBuffer) == kNothing);
  REQUIRE(h.on_send(6, &released) == kShutdown);
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
  REQUIRE(h.on_send(-EINTR, &released) == kSend);
  REQUIRE(h.send_length() == 5);
}

TEST_CASE("relay: a zero-byte send is a failure, not a loop") {
  RelayHalf h;
  h.start();
  h.on_recv(5, 2);
  int released = -2;
  REQUIRE(h.on_send(0, &released) == kFailDest);
}

TEST_CASE("relay: bytes queued for the destination unasked (a TLS reply) go first, and hold reading") {
  // mesh_tls.cc: wolfSSL answers a KeyUpdate while reading the other
  // direction; the encrypting half accounts the ciphertext as its spill.
  RelayHalf h;
  REQUIRE(h.start() == kRecv);  // idle: a read in flight, nothing to send
  REQUIRE(h.on_spilled(40) == kSend);
  REQUIRE(h.spilled());
  REQUIRE(h.spill_length() == 40);
  // The read in flight lands behind them, and no further read starts.
  REQUIRE(h.on_recv(100, 1) == kSpill);
  REQUIRE(h.take_unsent().length == 100);
  REQUIRE(h.on_spilled(122) == kNothing);  // its ciphertext, behind the reply
  int released = -2;
  REQUIRE(h.on_send(40, &released) == kSend);  // every byte accounted: the send goes on
  REQUIRE(h.on_send(122, &released) == kRecv);
  REQUIRE_FALSE(h.spilled());
  // Once the destination is being shut, nothing more may be queued.
  REQUIRE(h.on_recv(0, RelayHalf::kNoBuffer) == kShutdown);
  REQUIRE(h.shutting_down());
}
