// The sizes of a connection's own buffers (those outside the buffer ring),
// from the ring's buffer size: for the worker that allocates them and the
// admin endpoint that reports them.
#pragma once

#include <cstdint>

#include "proxy/detect.h"
#include "transport/tls_session.h"

namespace meshd::proxy {

// A plain slot holds one read decrypted from mesh TLS: the plaintext of
// the ciphertext fed plus a record begun in an earlier read
// (TlsSession::read_capacity). Two sizes: a full one for a whole ring
// buffer of ciphertext, and a small one for reads of at most kSmallPlainFed
// bytes, which is what request/response traffic reads (a slot is held until
// its bytes are forwarded: the first request's across the upstream connect).
// Detection keeps what it read in one too; it stops past
// kMaxClientHelloBytes, so one more ring buffer always fits a full slot.
constexpr uint32_t kSmallPlainFed = 4096;
constexpr uint32_t plain_slot_size(uint32_t buffer) {
  return static_cast<uint32_t>(transport::TlsSession::read_capacity(buffer));
}
constexpr uint32_t small_plain_slot_size() { return plain_slot_size(kSmallPlainFed); }
static_assert(kMaxClientHelloBytes <= plain_slot_size(0), "detection's bytes must fit a plain slot");

// A spill holds the unsent bytes of at most two consecutive chunks
// (relay.h): two ring buffers, or two consecutive plain slots. Those two
// reads decrypt at most the ciphertext of their two ring buffers plus the
// one record begun before them, so the same slack as one plain slot covers
// both (and detection's bytes plus one ring buffer).
constexpr uint32_t spill_size(uint32_t buffer) { return buffer + plain_slot_size(buffer); }

}  // namespace meshd::proxy
