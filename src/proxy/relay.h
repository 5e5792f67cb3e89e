// RelayHalf: one direction of a proxied TCP connection, as a state machine
// with no I/O in it.
//
// Bytes read from one socket are written to the other before the next read
// (so a slow reader stops the proxy reading from the fast writer: bounded
// memory, no reordering). End of stream becomes a shutdown(SHUT_WR) on the
// other socket, so a half-close crosses the proxy. The connection feeds it
// completions and carries out the step it answers; tests drive it directly.
#pragma once

#include <cerrno>
#include <cstdint>

namespace meshd::proxy {

enum class Step : uint8_t {
  kRecv,        // read from the source socket into a buffer from the ring
  kSend,        // write buffer[offset, length) to the destination socket
  kShutdown,    // the source ended its stream: shut the destination's write side
  kWaitBuffer,  // the buffer ring is empty: wait until a buffer comes back
  kDone,        // this direction has finished cleanly
  kFailSource,  // the source socket failed (reset): the connection must end
  kFailDest,    // the destination socket failed: the connection must end
};

class RelayHalf {
 public:
  static constexpr int kNoBuffer = -1;

  Step start() noexcept { return Step::kRecv; }

  // A receive completed with res; buffer is the ring buffer it filled, or
  // kNoBuffer.
  Step on_recv(int res, int buffer) noexcept {
    if (res > 0) {
      buffer_ = buffer;
      length_ = static_cast<uint32_t>(res);
      offset_ = 0;
      return Step::kSend;
    }
    if (res == 0) return Step::kShutdown;
    if (res == -ENOBUFS) return Step::kWaitBuffer;
    if (res == -EINTR || res == -EAGAIN) return Step::kRecv;
    return Step::kFailSource;
  }

  // A send completed with res. When the buffer has been sent whole, it is
  // handed back through *released so the caller can return it to the ring.
  Step on_send(int res, int* released) noexcept {
    *released = kNoBuffer;
    if (res == -EINTR || res == -EAGAIN) return Step::kSend;
    if (res <= 0) return Step::kFailDest;
    offset_ += static_cast<uint32_t>(res);
    if (offset_ < length_) return Step::kSend;  // short write: send the rest
    *released = buffer_;
    buffer_ = kNoBuffer;
    length_ = offset_ = 0;
    return Step::kRecv;
  }

  // The shutdown of the destination's write side completed. Its result does
  // not matter: a peer that already went away will fail the other half.
  Step on_shutdown(int) noexcept {
    done_ = true;
    return Step::kDone;
  }

  bool done() const noexcept { return done_; }
  int buffer() const noexcept { return buffer_; }
  // Gives up the buffer held (when the connection is torn down mid-send).
  int take_buffer() noexcept {
    int b = buffer_;
    buffer_ = kNoBuffer;
    return b;
  }
  uint32_t offset() const noexcept { return offset_; }
  uint32_t remaining() const noexcept { return length_ - offset_; }

 private:
  int buffer_ = kNoBuffer;
  uint32_t length_ = 0;
  uint32_t offset_ = 0;
  bool done_ = false;
};

}  // namespace meshd::proxy
