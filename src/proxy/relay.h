// RelayHalf: one direction of a proxied TCP connection, as a state machine
// with no I/O in it.
//
// Bytes read from one socket are written to the other in order. While one
// buffer is being written, the next may be read (two buffers at most: enough
// to keep a bulk transfer streaming, few enough that a slow reader stops the
// proxy reading from the fast writer, with memory bounded per connection).
// End of stream becomes a shutdown(SHUT_WR) on the other socket once every
// byte before it is written, so a half-close crosses the proxy. The
// connection feeds it completions and carries out the actions it answers;
// tests drive it directly.
#pragma once

#include <cerrno>
#include <cstdint>

namespace meshd::proxy {

// What to do next, as bits: several can be due at once (a read completes:
// write it, and read again into the second buffer).
enum Action : uint8_t {
  kNothing = 0,
  kRecv = 1 << 0,        // read from the source socket into a ring buffer
  kSend = 1 << 1,        // write the front chunk's unsent bytes to the destination
  kShutdown = 1 << 2,    // every byte is written and the source ended: shut the destination's write side
  kWaitBuffer = 1 << 3,  // the buffer ring is empty: read again when a buffer comes back
  kDone = 1 << 4,        // this direction has finished cleanly
  kFailSource = 1 << 5,  // the source socket failed (reset): the connection must end
  kFailDest = 1 << 6,    // the destination socket failed: the connection must end
};
using Actions = uint8_t;

class RelayHalf {
 public:
  static constexpr int kNoBuffer = -1;
  static constexpr int kMaxChunks = 2;

  Actions start() noexcept { return arm_recv(); }

  // A receive completed with res; buffer is the ring buffer it filled, or
  // kNoBuffer.
  Actions on_recv(int res, int buffer) noexcept {
    recv_in_flight_ = false;
    if (res > 0) {
      chunk_[(head_ + count_) % kMaxChunks] = {buffer, static_cast<uint32_t>(res)};
      ++count_;
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

  // A send completed with res. When the front chunk has been sent whole, its
  // buffer is handed back through *released to return to the ring.
  Actions on_send(int res, int* released) noexcept {
    *released = kNoBuffer;
    send_in_flight_ = false;
    if (res == -EINTR || res == -EAGAIN) return arm_send();
    if (res <= 0) return kFailDest;
    offset_ += static_cast<uint32_t>(res);
    Chunk& front = chunk_[head_];
    if (offset_ < front.length) return arm_send();  // short write: send the rest
    *released = front.buffer;
    head_ = (head_ + 1) % kMaxChunks;
    --count_;
    offset_ = 0;
    if (count_ > 0) return arm_send() | arm_recv();
    if (eof_) return finish_if_drained();
    return arm_recv();
  }

  // The shutdown of the destination's write side completed. Its result does
  // not matter: a peer that already went away will fail the other half.
  Actions on_shutdown(int) noexcept {
    done_ = true;
    return kDone;
  }

  bool done() const noexcept { return done_; }
  // The chunk to send now: its buffer, and where its unsent bytes start.
  int send_buffer() const noexcept { return chunk_[head_].buffer; }
  uint32_t send_offset() const noexcept { return offset_; }
  uint32_t send_length() const noexcept { return chunk_[head_].length - offset_; }
  int chunks() const noexcept { return count_; }
  // Gives up the buffers held (when the connection is torn down); call
  // until it answers kNoBuffer.
  int take_buffer() noexcept {
    if (count_ == 0) return kNoBuffer;
    int b = chunk_[head_].buffer;
    head_ = (head_ + 1) % kMaxChunks;
    --count_;
    offset_ = 0;
    return b;
  }

 private:
  struct Chunk {
    int buffer = kNoBuffer;
    uint32_t length = 0;
  };

  Actions arm_recv() noexcept {
    if (recv_in_flight_ || eof_ || count_ >= kMaxChunks) return kNothing;
    recv_in_flight_ = true;
    return kRecv;
  }
  Actions arm_send() noexcept {
    send_in_flight_ = true;
    return kSend;
  }
  Actions finish_if_drained() noexcept {
    if (count_ > 0 || send_in_flight_ || shutdown_sent_) return kNothing;
    shutdown_sent_ = true;
    return kShutdown;
  }

  Chunk chunk_[kMaxChunks];
  int head_ = 0;
  int count_ = 0;
  uint32_t offset_ = 0;  // bytes of the front chunk already sent
  bool recv_in_flight_ = false;
  bool send_in_flight_ = false;
  bool eof_ = false;
  bool shutdown_sent_ = false;
  bool done_ = false;
};

}  // namespace meshd::proxy
