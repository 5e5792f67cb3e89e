// Per-worker TCP counters: written by the one worker that owns them, read by
// the admin thread when it renders /metrics or /status.json.
//
// Each counter has a single writer, so increments are a relaxed load and
// store (no locked instruction on the hot path); the reader sums workers.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <string_view>

#include "metrics/http_stats.h"
#include "metrics/tap_events.h"

namespace meshd::metrics {

enum class Direction : uint8_t { kInbound = 0, kOutbound = 1 };
inline constexpr int kDirections = 2;
const char* direction_name(Direction d) noexcept;

// Why a connection ended. kNone is success: both sides closed cleanly.
enum class TcpError : uint8_t {
  kNone = 0,
  kClientReset,         // the accepted side reset or failed
  kUpstreamReset,       // the upstream side reset or failed
  kConnectRefused,      // upstream refused the connection
  kConnectTimeout,      // upstream did not answer within connect-timeout
  kConnectUnreachable,  // no route to the upstream
  kConnectError,        // any other connect failure
  kIdleTimeout,         // no bytes either way for idle-timeout
  kNoOriginalDst,       // accepted connection was not redirected: nowhere to send it
  kShutdown,            // still open when the drain deadline passed
  kNoEndpoints,         // dialled a service's virtual address while it has no endpoint
  kResolveFailed,       // a --forward name neither the registry nor DNS could resolve
  kTlsFailed,           // the mesh TLS handshake failed (bad or missing certificate, protocol)
  kIdentityMismatch,    // the peer's certificate is not the identity discovery promised
  kNoIdentity,          // mTLS was needed, but this proxy holds no valid certificate
  kUnauthorized,        // the inbound authorization policy refused the client
  kHttpRejected,        // the HTTP tap refused a request (metrics/http_stats.h has why)
  kRequestTimeout,      // an HTTP request had no response within its request timeout
  kCount,
};
const char* tcp_error_name(TcpError e) noexcept;

// Why an accepted connection was refused before it was opened.
enum class RefuseReason : uint8_t { kMaxConnections = 0, kCount };
const char* refuse_reason_name(RefuseReason r) noexcept;

class Counter {
 public:
  void add(uint64_t n) noexcept { v_.store(v_.load(std::memory_order_relaxed) + n, std::memory_order_relaxed); }
  void inc() noexcept { add(1); }
  void set(uint64_t v) noexcept { v_.store(v, std::memory_order_relaxed); }  // for gauges
  uint64_t get() const noexcept { return v_.load(std::memory_order_relaxed); }

 private:
  std::atomic<uint64_t> v_{0};
};

// A counter that several threads add to (per-service and per-endpoint
// counters): a locked add, paid once per connection or completion.
class SharedCounter {
 public:
  void add(uint64_t n) noexcept { v_.fetch_add(n, std::memory_order_relaxed); }
  void inc() noexcept { add(1); }
  uint64_t get() const noexcept { return v_.load(std::memory_order_relaxed); }

 private:
  std::atomic<uint64_t> v_{0};
};

// The counters of a set of TCP connections: a direction (per worker), or
// one destination service (shared by the workers).
//
// Bytes are the application's, whichever side the mesh's mutual TLS is on:
// read_bytes is what the accepted (client) side sent, write_bytes what it
// was sent. Inbound over mTLS they are the plaintext the proxy decrypted
// from the client and handed to TLS for it (the ClientHello read while
// detecting, the rest of the handshake, record overhead and close_notify
// are not counted); outbound, the client side is plaintext anyway. So one
// connection counts the same bytes at both proxies it crosses, and a
// service counts the same bytes whether its callers are meshed or not.
template <class C>
struct TcpCounters {
  C opened;
  C closed[static_cast<int>(TcpError::kCount)];
  C read_bytes;   // the application bytes the accepted (client) side sent
  C write_bytes;  // the application bytes sent to the accepted (client) side
};

struct DirectionStats : TcpCounters<Counter> {
  Counter refused[static_cast<int>(RefuseReason::kCount)];
};

// Mesh TLS handshakes, by direction: outbound originates, inbound terminates.
struct TlsStats {
  Counter full;     // completed without resumption
  Counter resumed;  // completed by resuming a session (ticket)
  Counter failed;
};

// Inbound connections over the mesh's mutual TLS, by the client identity
// their handshake proved (the client_id label). The worker that owns the
// table interns an identity when a handshake completes (a scan of at most
// kMaxIds entries: the handshake's signatures cost far more) and keeps the
// counters' address for the connection's life; the admin thread reads.
//
// Bounded: every distinct identity is a set of series in every scrape and
// an entry here for the process's life, and identities are whatever the
// mesh's CA signed: a mesh with many workloads (or a CA that issues
// freely) must not grow either without limit. Past kMaxIds, connections
// from identities not seen before count under client_id="other", so that
// the totals stay exact. The bound is per worker: the rendered label set
// is at most kMaxIds per worker, and the same identities in practice.
class ClientIdStats {
 public:
  static constexpr size_t kMaxIds = 100;
  // The overflow's label value; identities are spiffe:// URIs, never this.
  static constexpr std::string_view kOther = "other";

  ClientIdStats() = default;
  ~ClientIdStats();
  ClientIdStats(const ClientIdStats&) = delete;
  ClientIdStats& operator=(const ClientIdStats&) = delete;

  // The owning worker only: the counters of id (not empty), interned when
  // new and there is room (and memory), else other()'s.
  TcpCounters<Counter>& intern(std::string_view id) noexcept;

  // Any thread. The entries below size() are complete and never change
  // (only their counters do), so no lock is needed to read them.
  size_t size() const noexcept { return size_.load(std::memory_order_acquire); }
  std::string_view id(size_t i) const noexcept { return {entries_[i]->bytes(), entries_[i]->length}; }
  const TcpCounters<Counter>& counters(size_t i) const noexcept { return entries_[i]->counters; }
  const TcpCounters<Counter>& other() const noexcept { return other_; }

 private:
  // One allocation: the counters, then the identity's bytes.
  struct Entry {
    TcpCounters<Counter> counters;
    size_t length = 0;
    char* bytes() noexcept { return reinterpret_cast<char*>(this + 1); }
    const char* bytes() const noexcept { return reinterpret_cast<const char*>(this + 1); }
  };
  Entry* entries_[kMaxIds] = {};
  std::atomic<size_t> size_{0};
  TcpCounters<Counter> other_;
};

struct WorkerStats {
  DirectionStats dir[kDirections];
  // Connections that went where they were dialled over the mesh's mutual
  // TLS (inbound ones the proxy terminated); dir[] has the others. Inbound,
  // only those whose client identity is unknown (the handshake failed, or
  // the certificate named none): the others are in inbound_clients.
  TcpCounters<Counter> dir_mtls[kDirections];
  ClientIdStats inbound_clients;
  TlsStats tls[kDirections];
  HttpStats http;              // the HTTP golden metrics of the connections this worker tapped
  TapEvents tap;               // live request summaries, only while someone taps (GET /tap)
  Counter buffers_in_use;      // receive buffers lent out of the ring right now
  Counter connections_live;    // connection objects held (open or closing)
  Counter spills_in_use;       // spill buffers held by connections whose destination is full
  Counter plain_bytes_in_use;  // mesh TLS plaintext slots held (decrypted bytes not yet forwarded), in bytes
  Counter upstream_idle;       // idle upstream connections in the worker's pool (proxy/upstream_pool.h)
  Counter upstream_stale;      // pooled connections found closed by their server when taken
  DirectionStats& of(Direction d) noexcept { return dir[static_cast<int>(d)]; }
};

// Sums over all workers, as plain numbers.
struct DirectionTotals {
  uint64_t opened = 0;
  uint64_t closed[static_cast<int>(TcpError::kCount)] = {};
  uint64_t refused[static_cast<int>(RefuseReason::kCount)] = {};
  uint64_t read_bytes = 0;
  uint64_t write_bytes = 0;
  uint64_t closed_total() const noexcept;
  uint64_t refused_total() const noexcept;
  uint64_t open() const noexcept {
    uint64_t ended = closed_total();
    return opened > ended ? opened - ended : 0;
  }
  // Adds one set of counters. Closes are read before opens: a connection
  // that opens and closes between the two reads then counts as neither,
  // never as closed-but-not-opened.
  template <class C>
  void add(const TcpCounters<C>& s) noexcept {
    for (int i = 0; i < static_cast<int>(TcpError::kCount); ++i) closed[i] += s.closed[i].get();
    opened += s.opened.get();
    read_bytes += s.read_bytes.get();
    write_bytes += s.write_bytes.get();
  }
  // Adds other totals (refusals included).
  void add(const DirectionTotals& o) noexcept {
    for (int i = 0; i < static_cast<int>(TcpError::kCount); ++i) closed[i] += o.closed[i];
    for (int i = 0; i < static_cast<int>(RefuseReason::kCount); ++i) refused[i] += o.refused[i];
    opened += o.opened;
    read_bytes += o.read_bytes;
    write_bytes += o.write_bytes;
  }
};

}  // namespace meshd::metrics
