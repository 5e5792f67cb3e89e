// TcpForward: one proxied connection, from the upstream connect to the last
// byte, as two RelayHalfs over two sockets.
//
// Life: the worker accepted `client` and chose `target` -> (inbound, with
// identity on: detect the first bytes; a mesh ClientHello is answered with
// the TLS handshake, see mesh_tls.cc) -> connect (the worker's sweep
// enforces connect-timeout) -> (outbound to a meshed endpoint: the mTLS
// handshake, checking the endpoint's identity) -> both halves relay -> each
// half's end of stream shuts the other socket's write side -> when both are
// done, both sockets close. A failure on either side resets the other, so a
// peer's RST crosses the proxy as an RST. Every Op in flight is accounted
// for: teardown cancels them and the object is released only after their
// last completion (liburing's proxy.c discipline).
#pragma once

#include <cstdint>
#include <memory>
#include <span>
#include <string_view>
#include <vector>

#include "base/addr.h"
#include "base/intrusive_list.h"
#include "discovery/endpoint_set.h"
#include "io/op.h"
#include "metrics/tcp_stats.h"
#include "proxy/listener.h"
#include "proxy/relay.h"
#include "transport/tls_session.h"

struct io_uring_cqe;

namespace meshd::http {
struct TapVerdict;
}

namespace meshd::proxy {

class HttpTap;
class Worker;

class TcpForward final : public io::OpOwner {
 public:
  enum OpKind : uint8_t { kConnect, kRecvOp, kSendOp, kShutdownOp, kNotifyOp };
  enum Half : uint8_t { kFromClient = 0, kFromUpstream = 1 };

  TcpForward() noexcept;
  TcpForward(const TcpForward&) = delete;
  TcpForward& operator=(const TcpForward&) = delete;

  // Takes ownership of an accepted socket.
  void adopt(Worker* worker, int client_fd, metrics::Direction direction) noexcept;
  // Whether the relay reads HTTP/1 as it passes (relay_http.cc): not at all
  // (explicit forwards, --http off), counted as skipped (opaque ports), or
  // tapped when the first bytes are HTTP/1.
  enum class HttpMode : uint8_t { kOff, kSkip, kTap };
  void watch_http(HttpMode mode) noexcept { http_mode_ = mode; }
  // Opens the connection towards target as dialled (counted under its
  // direction) and starts connecting.
  void connect_direct(const SocketAddr& target) noexcept;
  // Opens the connection towards a service (counted under its dst) and
  // connects to one of its endpoints, trying others when a connect fails.
  // dialled: the address the client asked for, when it was one (not a name).
  void connect_balanced(std::shared_ptr<const discovery::EndpointSet> set, const SocketAddr& dialled = {}) noexcept;
  // Waits for discovery (or DNS) to answer about dst, or about a --forward
  // name; the worker keeps the deadline.
  enum class Wait : uint8_t { kNone, kDiscovery, kDns };
  void park(const SocketAddr& dst, Wait why) noexcept {
    target_ = dst;
    wait_ = why;
  }
  void park_for_name(const ListenerSpec* forward, Wait why) noexcept {
    forward_ = forward;
    wait_ = why;
  }
  const SocketAddr& target() const noexcept { return target_; }
  const ListenerSpec* forward() const noexcept { return forward_; }
  Wait waiting_for() const noexcept { return wait_; }
  // The worker's sweep found the connect overdue.
  void connect_timed_out() noexcept;
  // Inbound with identity on: reads the first bytes to tell a mesh
  // ClientHello from anything else, then goes on to target (the worker
  // keeps the detect deadline: detect_timed_out()).
  void detect(const SocketAddr& target) noexcept;
  void detect_timed_out() noexcept;
  // Inbound: the authorization policy decides, on the client's identity
  // (mesh TLS) and address, whether it goes on to target or is reset.
  void admit(const SocketAddr& target) noexcept;
  // Ends the connection: resets the sockets named, cancels what is in flight.
  void close(metrics::TcpError error, bool reset_client, bool reset_upstream) noexcept;

  void on_complete(io::Op& op, const io_uring_cqe& cqe) noexcept override;
  // The buffer ring has buffers again: retry the halves that ran dry.
  void buffers_available() noexcept;
  // The worker's sweep found request_deadline_ms passed (relay_http.cc):
  // the request awaiting its response is answered 504 when it can be, and
  // the connection ends.
  void request_timed_out() noexcept;

  bool connecting() const noexcept { return connecting_; }
  bool closing() const noexcept { return closing_; }
  uint64_t deadline_ms = 0;          // discovery or connect deadline, then last activity
  ListLink timer_link;               // in the worker's discovery, connecting or idle list
  ListLink wait_link;                // in the worker's list of connections out of buffers
  uint64_t request_deadline_ms = 0;  // while an HTTP request awaits its response (request timeout)
  ListLink request_link;             // ...in the worker's list of those, by that deadline

 private:
  void connect(const SocketAddr& target) noexcept;
  void on_connect(int res) noexcept;
  // Counts the connection as opened, under its dst or its direction.
  void count_open() noexcept;
  void count_bytes(bool read, uint64_t n) noexcept;
  void count_close() noexcept;
  metrics::DirectionStats& direction_stats() noexcept;
  // The worker's series this connection is counted in (when not balanced).
  metrics::TcpCounters<metrics::Counter>& worker_series() noexcept;
  bool retry_elsewhere(int res) noexcept;
  void on_recv(Half h, const io_uring_cqe& cqe) noexcept;
  void on_send(Half h, int res) noexcept;
  void run(Half h, Actions actions) noexcept;
  Actions spill(Half h) noexcept;
  void maybe_release() noexcept;
  void start_relay() noexcept;
  // A client read that completed while no relay could take it (early_).
  void hold_early(int buffer, int res) noexcept;
  bool take_early(int* buffer, int* res) noexcept;
  Actions start_half(Half h) noexcept;
  void submit_recv(Half h) noexcept;
  void submit_shutdown(Half h) noexcept;

  // Mesh TLS (mesh_tls.cc). The TLS socket is the client's when inbound
  // terminates mTLS, the upstream's when outbound originates it; the half
  // that reads it decrypts (tls_in_), the other encrypts.
  enum class Phase : uint8_t { kConnect, kDetect, kHandshake, kRelay };
  static constexpr int kPlainId = 1 << 20;  // chunk ids above the ring's: this connection's plain_ buffers
  bool wants_mtls() const noexcept;
  void start_client_tls() noexcept;
  void on_detect_recv(const io_uring_cqe& cqe, int buffer) noexcept;
  void after_detect(bool mesh_tls) noexcept;
  void on_handshake_recv(const io_uring_cqe& cqe, int buffer) noexcept;
  transport::TlsStatus step_handshake(size_t fed) noexcept;
  void after_handshake_step(transport::TlsStatus st) noexcept;
  void on_handshake_sent(int res) noexcept;
  void handshake_done() noexcept;
  void on_tls_recv(const io_uring_cqe& cqe, int buffer) noexcept;
  Actions encrypt_queued(Half h) noexcept;
  // Ciphertext the session queued outside write() (while reading).
  void queue_tls_output(size_t added) noexcept;
  // Queues close_notify towards the TLS socket; false when there is none to send.
  bool send_close_notify(Half h) noexcept;
  bool make_tls_session() noexcept;
  void end_tls() noexcept;
  void remember_ticket() noexcept;
  void tls_failed() noexcept;
  bool is_tls_dest(Half h) const noexcept { return tls_ && h != tls_in_; }
  // Chunks are ring buffers or this connection's plain buffers.
  char* chunk_data(int id) noexcept;
  void release_chunk(int id) noexcept;
  // A free plain slot (allocated) for a read of `fed` bytes, or -1.
  int take_plain(size_t fed) noexcept;
  void hold_first(int slot, uint32_t len) noexcept;
  int source_fd(Half h) const noexcept { return h == kFromClient ? client_fd_ : upstream_fd_; }
  int dest_fd(Half h) const noexcept { return h == kFromClient ? upstream_fd_ : client_fd_; }
  bool in_flight() const noexcept;

  // HTTP inside the relay (relay_http.cc). Every read reaches its half
  // through deliver(), so the tap sees each byte once, before it is sent.
  Actions deliver(Half h, int res, int chunk) noexcept;
  void start_tap() noexcept;
  void end_tap() noexcept;
  void refuse_request(const http::TapVerdict& v) noexcept;
  bool answer_client(uint16_t status, std::string_view reason, std::string_view message) noexcept;
  // Puts the connection in (or out of) the worker's request-timeout list
  // after the tap saw bytes: the deadline follows the request now awaited.
  void watch_request_timeout() noexcept;
  // Retries (relay_http.cc): an idempotent request read whole in one span
  // is kept (replay_) until its response begins; a retryable response
  // that came whole is dropped and the request sent again.
  const std::vector<uint16_t>& retry_statuses() const noexcept;
  bool may_keep_request() noexcept;
  void keep_request(int chunk, int res) noexcept;
  bool retry_response(int chunk, int res) noexcept;
  bool send_again() noexcept;
  bool retry_lost() noexcept;
  // One more attempt, when kMaxRetries and the service's budget allow it
  // (counted, and a failure of the endpoint that did not answer).
  bool take_retry() noexcept;
  bool retry_on_close() noexcept;
  // The kept request goes to another connection (upstream_reuse.cc): the
  // current one, with nothing in flight, is parked (reusable) or closed;
  // another endpoint's (else, when same_endpoint_ok, this endpoint's) pooled
  // or new connection takes the request. False, with nothing changed, when
  // that cannot be done cleanly now.
  bool can_resend_elsewhere() const noexcept;
  bool resend_elsewhere(bool reusable, bool same_endpoint_ok) noexcept;
  // Drops what is left of a retried response's body; true when the whole
  // read was (else *res is what follows it, moved to the chunk's start).
  bool discard_body(int chunk, int* res) noexcept;
  void drop_replay() noexcept;

  // Per-request balancing and upstream reuse (upstream_reuse.cc): between
  // HTTP/1 exchanges the upstream connection can be parked in the worker's
  // pool, and the next request sent to another endpoint.
  bool upstream_idle() const noexcept;
  bool rebalance(int chunk, int res) noexcept;
  void detach_upstream(int next) noexcept;
  void on_detached(int res, int buffer) noexcept;
  void park_upstream(bool reusable) noexcept;
  void attach_upstream(int e) noexcept;
  bool take_pooled(int e) noexcept;
  bool may_take_pooled(std::span<const char> first) const noexcept;
  // The largest request kept whole to be sent again (relay_http.cc).
  static constexpr int kMaxReplay = 16 * 1024;
  // Outbound HTTP to a service: the client's first bytes are awaited
  // (detect-timeout) before an upstream is chosen, so that an HTTP/1
  // request can take an idle pooled connection.
  bool waits_for_first_bytes() const noexcept;
  void await_first_bytes() noexcept;
  void on_first_bytes(const io_uring_cqe& cqe, int buffer) noexcept;
  void first_bytes_timed_out() noexcept;
  // Picks the endpoint (P2C) and connects, or takes a pooled connection
  // to it when the first bytes are an HTTP/1 request.
  void connect_endpoint(bool http1) noexcept;
  // To endpoint e: its pooled connection when may_reuse_ allows one, else a
  // connect (then mesh TLS when it wants it); start_relay() follows.
  void open_upstream(int e) noexcept;
  // No endpoint could be reached: the client is reset, or answered 503
  // when a request moved to another endpoint waits whole.
  void connect_failed(metrics::TcpError error) noexcept;
  bool answer_unreachable(metrics::TcpError error) noexcept;
  void resume_relay() noexcept;

  Worker* worker_ = nullptr;
  int client_fd_ = -1;
  int upstream_fd_ = -1;
  metrics::Direction direction_ = metrics::Direction::kOutbound;
  SocketAddr target_;
  SocketAddr dialled_;  // see connect_balanced
  RelayHalf half_[2];
  io::Op connect_op_;
  io::Op recv_op_[2];
  io::Op send_op_[2];
  io::Op shutdown_op_[2];
  io::Op notify_op_;                     // close_notify, linked before the TLS socket's shutdown
  char* spill_[2] = {nullptr, nullptr};  // per half, from the worker, only while spilled
  uint8_t waiting_buffer_ = 0;           // bit per half
  bool connecting_ = false;
  bool closing_ = false;
  bool released_ = true;  // back in the worker's pool
  metrics::TcpError error_ = metrics::TcpError::kNone;
  bool opened_ = false;                    // counted as opened (before any close is)
  bool handed_off_ = false;                // the client went on as an H2Forward: not counted here
  bool mtls_counted_ = false;              // ...under the mutual-TLS series
  Wait wait_ = Wait::kNone;                // what the connection waited for last
  const ListenerSpec* forward_ = nullptr;  // set while waiting on a --forward name
  bool timed_out_ = false;                 // the connect in flight was cancelled by the sweep
  bool endpoint_active_ = false;           // counted in its endpoint's open connections
  uint8_t attempts_ = 0;                   // endpoints tried
  int endpoint_ = -1;                      // index in set_, when balanced
  uint64_t tried_ = 0;                     // endpoints that failed this connection
  uint64_t connect_start_us_ = 0;
  std::shared_ptr<const discovery::EndpointSet> set_;  // when balanced: keeps the snapshot alive
  // Inbound over mTLS: the series of the identity the client proved (null:
  // unknown, or not inbound mTLS).
  metrics::TcpCounters<metrics::Counter>* client_series_ = nullptr;

  Phase phase_ = Phase::kConnect;
  bool tls_ = false;  // the relay goes through tls_session_
  Half tls_in_ = kFromClient;
  bool tls_closed_ = false;                             // the peer's close_notify: its direction has ended
  bool keep_ticket_ = false;                            // outbound: store the session's ticket once it has come
  std::unique_ptr<transport::TlsSession> tls_session_;  // (heap: a pooled upstream takes it along)
  const transport::TlsContext* tls_ctx_ = nullptr;      // the session's context: the key of its resumption ticket
  char* plain_[2] = {nullptr, nullptr};                 // decrypted chunks, or the bytes read while detecting
  uint32_t plain_cap_[2] = {0, 0};                      // their sizes (Worker::take_plain)
  uint8_t plain_busy_ = 0;                              // bit per slot: held by a RelayHalf or as first_
  int first_slot_ = -1;                                 // bytes to relay before the first read of the client half
  uint32_t first_len_ = 0;
  bool early_ = false;     // a client read completed before the relay (re)started:
  int early_buffer_ = -1;  // ...its buffer (or none)
  int early_res_ = 0;      // ...and its result (0: the client's end of stream)

  HttpMode http_mode_ = HttpMode::kOff;
  HttpTap* tap_ = nullptr;  // while the connection is followed as HTTP
  char* replay_ = nullptr;  // the request awaiting its response, kept to send again (replay_len_ bytes)
  uint32_t replay_len_ = 0;
  uint8_t retried_ = 0;              // times it was sent again
  uint64_t discard_ = 0;             // body bytes of a retried response still to drop
  uint32_t request_timeout_ms_ = 0;  // for tap_'s requests; 0: none
  bool detaching_ = false;           // the upstream's read is being cancelled, to park it
  bool switching_ = false;           // a client read waits for the upstream it goes to
  int switch_to_ = -1;               // ...that endpoint (kNoEndpoint: none, the client has gone)
  int held_chunk_ = -1;              // ...that read
  int held_res_ = 0;
  uint64_t switch_start_us_ = 0;
  bool may_reuse_ = false;        // the upstream being chosen may be a pooled connection (may_take_pooled)
  bool upstream_reused_ = false;  // the upstream is one the pool gave
  bool replaying_ = false;        // ...and takes the kept request (replay_) once there
};

}  // namespace meshd::proxy
