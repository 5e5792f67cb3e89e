// H2Upstream: one HTTP/2 connection from a worker to one endpoint, shared
// by the streams of every terminated client connection (H2Forward) of that
// worker that go there, as Linkerd's and Envoy's pools share theirs: a
// connect and an mTLS handshake per endpoint, not per client connection.
// The worker keeps them (Worker::h2_upstream) and closes one that carried
// no stream for --upstream-idle-timeout.
//
// A stream waits, unsent, until the connection is ready (connected, and
// the endpoint proved its identity); if it never is, the waiting streams
// go back to their owners to be sent elsewhere. Streams are told apart by
// the H2Stream each carries as its user; whatever reaches a stream is
// handed to its owner, which relays it to the client.
#pragma once

#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "base/addr.h"
#include "discovery/endpoint_set.h"
#include "http/h2_conn.h"
#include "io/op.h"
#include "proxy/h2_pipe.h"

struct io_uring_cqe;

namespace meshd::proxy {

class H2Forward;
class H2Upstream;
class Worker;

// Something with HTTP/2 frames to send: flushed by the worker after the
// completion being handled (Worker::flush_h2), once however many streams
// queued frames on it meanwhile.
class H2Flushable {
 public:
  virtual void flush_now() noexcept = 0;
  bool dirty = false;

 protected:
  ~H2Flushable() = default;
};

// Why an upstream gives a stream back (H2Forward::on_upstream_lost).
enum class Lost : uint8_t {
  kConnectFailed,  // never sent: the connection never became ready (the endpoint is tried)
  kNotSent,        // never sent: the connection takes no more streams (a GOAWAY)
  kBroken,         // sent, and the connection broke: processed or not, nobody knows
};

// One request stream of a terminated client connection.
struct H2Stream {
  H2Forward* owner = nullptr;
  int32_t down = 0;                // the client's stream id
  H2Upstream* upstream = nullptr;  // once an endpoint is chosen
  int32_t up = -1;                 // the upstream's stream id, once submitted
  void* tag = nullptr;             // the metrics' request (HttpTap)
  uint64_t start_us = 0;
  uint64_t deadline_ms = 0;  // the request timeout, until the response head
  uint64_t tried = 0;        // endpoints whose connect failed it (bits by index in the set)
  uint8_t attempts = 0;      // endpoints chosen for it
  uint8_t refusals = 0;      // times an endpoint gave it back unprocessed (REFUSED_STREAM, GOAWAY)
  uint8_t retries = 0;       // times sent again after a retryable status
  bool answered = false;     // a final response head went to the client
  bool finished = false;     // its outcome was told to the metrics
  bool grpc = false;         // the response is gRPC (content-type application/grpc...)
  int32_t grpc_status = -1;
  uint16_t status = 0;
  uint64_t ttfb_us = 0;
  // The request: its head, the body the client sent while it was not yet
  // submitted, how it ended. The head, the whole body so far (replay) and
  // the trailers stay while it may be sent again (replay_ok).
  http::H2Fields head;
  std::string body;
  bool ended = false;
  http::H2Fields trailers;
  std::string replay;
  bool replay_ok = true;
  // Received bytes whose window has not been given back yet: the client's
  // (consumed when framed to the upstream), the upstream's (when framed to
  // the client).
  size_t owed = 0;
  size_t up_owed = 0;
  std::shared_ptr<discovery::EndpointHealth> load;  // the endpoint whose active count it is in
};

class H2Upstream final : public io::OpOwner, public H2Flushable, private http::H2Conn::Handler {
 public:
  H2Upstream(Worker* worker, const discovery::Endpoint& ep, bool mtls) noexcept;
  H2Upstream(const H2Upstream&) = delete;
  H2Upstream& operator=(const H2Upstream&) = delete;

  // Starts connecting; false when it cannot (out of memory, no socket).
  bool open() noexcept;
  bool is(const SocketAddr& address, std::string_view identity) const noexcept {
    return address_ == address && identity_ == identity;
  }
  // It takes another stream (now, or once ready).
  bool usable() const noexcept;
  const SocketAddr& address() const noexcept { return address_; }

  // A stream goes to this endpoint: sent now, or once ready.
  void add(H2Stream* s) noexcept;
  // The client sent more of s's request (after add()).
  void send_data(H2Stream* s, std::span<const uint8_t> bytes) noexcept;
  void end_data(H2Stream* s, const http::H2Fields& trailers) noexcept;
  // Response bytes of s went to the client: the endpoint may send as many.
  void consume(H2Stream* s, size_t n) noexcept;
  // The stream parts from this connection: its leftover window given back,
  // cancelled at the endpoint when `cancel`; the connection forgets it.
  void forget(H2Stream* s, bool cancel) noexcept;

  void on_complete(io::Op& op, const io_uring_cqe& cqe) noexcept override;
  void flush_now() noexcept override;
  // Connect deadline, idleness (closes after idle_ms with no stream).
  void sweep(uint64_t now_ms, uint64_t idle_ms) noexcept;
  // Past the drain deadline: cut.
  void abort() noexcept;
  // Closed, nothing in flight: the worker may free it.
  bool done() const noexcept { return pipe_.closing && pipe_.fd < 0 && !pipe_.in_flight(); }

 private:
  // The connection's H2Conn.
  void on_headers(int32_t id, http::H2Block kind, http::H2Fields&& f, bool end) noexcept override;
  void on_head_too_large(int32_t) noexcept override {}
  void on_data(int32_t id, std::span<const uint8_t> bytes) noexcept override;
  void on_data_end(int32_t id) noexcept override;
  void on_data_sent(int32_t id, size_t n) noexcept override;
  void on_stream_close(int32_t id, uint32_t error) noexcept override;
  void on_goaway(int32_t, uint32_t) noexcept override;

  H2Stream* stream(int32_t id) const noexcept { return static_cast<H2Stream*>(pipe_.conn->stream_user(id)); }
  void submit(H2Stream* s) noexcept;
  // Submits waiting streams while the endpoint's concurrency limit allows.
  void pump() noexcept;
  // Hands the waiting streams back to their owners, to go elsewhere.
  void give_back_waiting(Lost why) noexcept;
  void on_connect(int res) noexcept;
  void ready() noexcept;
  // It cannot carry streams: those it never sent go back to be sent
  // elsewhere, those it carried fail; then it closes.
  void fail(std::string_view why) noexcept;
  void mark_dirty() noexcept;

  Worker* worker_;
  SocketAddr address_;
  std::string identity_;  // the mesh identity it must prove; empty: plain
  std::shared_ptr<discovery::EndpointHealth> health_;
  H2Pipe pipe_;
  std::vector<H2Stream*> waiting_;
  uint64_t connect_start_us_ = 0;
  uint64_t idle_since_ms_ = 0;  // when its last stream ended (0: streams open)
};

}  // namespace meshd::proxy
