// RelayHalf: one direction of a proxied TCP connection, as a state machine
// with no I/O in it.
//
// Bytes read from one socket are written to the other in order. While one
// ring buffer is being written, the next may be read (two at most: enough to
// keep a bulk transfer streaming, few enough that a slow reader stops the
// proxy reading from the fast writer). Writes from ring buffers never wait:
// when the destination cannot take a whole chunk, the unsent bytes move to
// this connection's own spill buffer and the ring buffers go back at once,
// so a peer that stops reading can never starve the worker's other
// connections of ring buffers. Reading stops until the spill is written.
// End of stream becomes a shutdown(SHUT_WR) on the other socket once every
// byte before it is written, so a half-close crosses the proxy.
#pragma once

#include <cerrno>
#include <cstdint>

namespace meshd::proxy {

// What to do next, as bits: several can be due at once (a read completes:
// write it, and read again into the second buffer).
enum Action : uint16_t {
  kNothing = 0,
  kRecv = 1 << 0,        // read from the source socket into a ring buffer
  kSend = 1 << 1,        // write the unsent bytes (see spilled()) to the destination
  kShutdown = 1 << 2,    // every byte is written and the source ended: shut the destination's write side
  kWaitBuffer = 1 << 3,  // the buffer ring is empty: read again when a buffer comes back
  kDone = 1 << 4,        // this direction has finished cleanly
  kFailSource = 1 << 5,  // the source socket failed (reset): the connection must end
  kFailDest = 1 << 6,    // the destination socket failed: the connection must end
  kSpill = 1 << 7,       // move every queued chunk (take_unsent) to the spill, then on_spilled()
};
using Actions = uint16_t;

class RelayHalf {
 public:
  static constexpr int kNoBuffer = -1;
  static constexpr int kMaxChunks = 2;

  struct Unsent {
    int buffer = kNoBuffer;
    uint32_t offset = 0;
    uint32_t length = 0;
  };

  Actions start() noexcept { return arm_recv(); }

  // A receive completed with res; buffer is the ring buffer it filled, or
  // kNoBuffer.
  Actions on_recv(int res, int buffer) noexcept {
    recv_in_flight_ = false;
    if (res > 0) {
      chunk_[(head_ + count_) % kMaxChunks] = {buffer, static_cast<uint32_t>(res)};
      ++count_;
      if (spilled_) return kSpill;  // behind bytes already waiting: join them
      Actions a = kNothing;
      if (!send_in_flight_) a |= arm_send();
      return a | arm_recv();
    }
    if (res == 0) {
      eof_ = true;
      return finish_if_drained();
    }
    if (res == -ENOBUFS) return kWaitBuffer;
    if (res == -EINTR || res == -EAGAIN) return arm_recv();
    return kFailSource;
  }

  // A buffer came back to the ring after kWaitBuffer.
  Actions on_buffer_available() noexcept { return arm_recv(); }

  // A send completed with res. Sends from ring buffers are made not to
  // wait (MSG_DONTWAIT): a full destination answers -EAGAIN or a short
  // count, and the rest spills. When a ring chunk has been sent whole, its
  // buffer is handed back through *released to return to the ring.
  Actions on_send(int res, int* released) noexcept {
    *released = kNoBuffer;
    send_in_flight_ = false;
    if (res == -EINTR) return arm_send();
    if (spilled_) {
      if (res == -EAGAIN) return arm_send();
      if (res <= 0) return kFailDest;
      spill_sent_ += static_cast<uint32_t>(res);
      if (spill_sent_ < spill_length_) return arm_send();
      spilled_ = false;
      spill_sent_ = spill_length_ = 0;
      return eof_ ? finish_if_drained() : arm_recv();
    }
    if (res == -EAGAIN) return kSpill;
    if (res <= 0) return kFailDest;
    offset_ += static_cast<uint32_t>(res);
    if (offset_ < chunk_[head_].length) return kSpill;  // the destination is full
    *released = chunk_[head_].buffer;
    head_ = (head_ + 1) % kMaxChunks;
    --count_;
    offset_ = 0;
    if (count_ > 0) return arm_send() | arm_recv();
    if (eof_) return finish_if_drained();
    return arm_recv();
  }

  // The front queued chunk's unsent bytes, removed from the queue (its
  // buffer is the caller's to give back); buffer is kNoBuffer when none.
  Unsent take_unsent() noexcept {
    if (count_ == 0) return {};
    Chunk c = chunk_[head_];
    Unsent u{c.buffer, offset_, c.length - offset_};
    head_ = (head_ + 1) % kMaxChunks;
    --count_;
    offset_ = 0;
    return u;
  }

  // The caller moved `bytes` into the spill after kSpill, or queued them
  // for the destination itself (mesh TLS: what the session answers while
  // reading). Either way they go before anything read later, and reading
  // waits until they are sent.
  Actions on_spilled(uint32_t bytes) noexcept {
    spill_length_ += bytes;
    if (spilled_) return kNothing;  // a spill send is in flight and will go on
    spilled_ = true;
    return arm_send();
  }

  // The shutdown of the destination's write side completed. Its result does
  // not matter: a peer that already went away will fail the other half.
  Actions on_shutdown(int) noexcept {
    done_ = true;
    return kDone;
  }

  bool done() const noexcept { return done_; }
  // The destination's write side is being (or has been) shut: nothing more
  // may be sent.
  bool shutting_down() const noexcept { return shutdown_sent_; }
  // What kSend writes: from the spill when spilled(), else the front chunk.
  bool spilled() const noexcept { return spilled_; }
  uint32_t spill_offset() const noexcept { return spill_sent_; }
  uint32_t spill_length() const noexcept { return spill_length_; }
  int send_buffer() const noexcept { return chunk_[head_].buffer; }
  uint32_t send_offset() const noexcept { return offset_; }
  uint32_t send_length() const noexcept { return chunk_[head_].length - offset_; }
  int chunks() const noexcept { return count_; }

 private:
  struct Chunk {
    int buffer = kNoBuffer;
    uint32_t length = 0;
  };

  Actions arm_recv() noexcept {
    if (recv_in_flight_ || eof_ || spilled_ || count_ >= kMaxChunks) return kNothing;
    recv_in_flight_ = true;
    return kRecv;
  }
  Actions arm_send() noexcept {
    send_in_flight_ = true;
    return kSend;
  }
  Actions finish_if_drained() noexcept {
    if (count_ > 0 || spilled_ || send_in_flight_ || shutdown_sent_) return kNothing;
    shutdown_sent_ = true;
    return kShutdown;
  }

  Chunk chunk_[kMaxChunks];
  int head_ = 0;
  int count_ = 0;
  uint32_t offset_ = 0;  // bytes of the front chunk already sent
  uint32_t spill_length_ = 0;
  uint32_t spill_sent_ = 0;
  bool spilled_ = false;
  bool recv_in_flight_ = false;
  bool send_in_flight_ = false;
  bool eof_ = false;
  bool shutdown_sent_ = false;
  bool done_ = false;
};

}  // namespace meshd::proxy
