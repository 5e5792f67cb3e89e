// H2Forward: an application's HTTP/2 connection to a service, terminated so
// that every stream is balanced on its own. A TcpForward hands its client
// over once the first bytes are the HTTP/2 preface (outbound, to a service
// with endpoints); from then on:
//
//   client socket (H2Pipe) -> H2Conn (server end) -> one H2Stream per request
//     -> P2C over the service's endpoints, per stream
//     -> the worker's H2Upstream to that endpoint (h2_upstream.h): one
//        connection, mesh mTLS when the endpoint is meshed, shared by every
//        client connection of the worker that sends streams there
//
// Request and response bytes cross between the two H2Conns stream by
// stream; each side's window reopens only when the other side framed the
// bytes (H2Conn::consume), so flow control holds end to end and memory
// stays within the windows. A stream waits unsent (its head and body kept,
// the client's window closing on it) until its upstream is ready; if that
// connect fails, it goes to another endpoint, else it is answered 503.
// Each stream's outcome feeds the golden metrics and the balancer like the
// tap's requests do (HttpTap, with the endpoint of each stream).
//
// Every operation in flight is accounted for: the client socket is closed
// only once its reads and sends have completed; the worker frees the object
// when done() (Worker::sweep).
#pragma once

#include <cstdint>
#include <memory>
#include <span>
#include <string_view>
#include <unordered_map>

#include "base/addr.h"
#include "discovery/endpoint_set.h"
#include "http/h2_conn.h"
#include "io/op.h"
#include "metrics/tcp_stats.h"
#include "proxy/h2_pipe.h"
#include "proxy/h2_upstream.h"

struct io_uring_cqe;

namespace meshd::proxy {

class HttpTap;
class Worker;

class H2Forward final : public io::OpOwner, public H2Flushable, private http::H2Conn::Handler {
 public:
  // A request body kept whole while its stream may be sent again (an
  // endpoint refusing it unprocessed); larger ones are not kept.
  static constexpr size_t kMaxReplay = 16 * 1024;
  // How long a closing connection may take to send its last bytes (a
  // GOAWAY to a client that does not read) before it is cut.
  static constexpr uint64_t kLingerMs = 5000;
  // A stream refused unprocessed is sent again up to this many times (the
  // connections a worker keeps to an endpoint may all reach a server's
  // request limit at about the same time).
  static constexpr uint8_t kMaxRefusals = 4;
  // Retries on a retryable status, as HTTP/1's (relay_http.cc).
  static constexpr uint8_t kMaxRetries = 2;

  H2Forward() noexcept = default;
  H2Forward(const H2Forward&) = delete;
  H2Forward& operator=(const H2Forward&) = delete;

  // Takes the client's socket and the bytes read of it (the preface's
  // start at least); dialled: the service's address it dialled. False when
  // out of memory: the caller still owns fd.
  bool start(Worker* worker, int client_fd, std::span<const char> first, const SocketAddr& dialled,
             std::shared_ptr<const discovery::EndpointSet> set) noexcept;
  void on_complete(io::Op& op, const io_uring_cqe& cqe) noexcept override;
  void flush_now() noexcept override;
  // Request deadlines, idleness.
  void sweep(uint64_t now_ms) noexcept;
  // The worker drains: GOAWAY to the client, streams open now finish.
  void drain() noexcept;
  // Past the drain deadline: everything is cut.
  void abort() noexcept;
  // The socket closed, nothing in flight: the worker may free it.
  bool done() const noexcept { return ending_ && client_.fd < 0 && !client_.in_flight(); }

  // From the H2Upstream a stream is on (h2_upstream.cc).
  void on_upstream_headers(H2Stream* s, http::H2Block kind, http::H2Fields&& f, bool end) noexcept;
  bool on_upstream_data(H2Stream* s, std::span<const uint8_t> bytes) noexcept;  // false: not taken
  void on_upstream_end(H2Stream* s) noexcept;
  void on_upstream_took(H2Stream* s, size_t n) noexcept;  // n request bytes framed there
  void on_upstream_close(H2Stream* s, uint32_t error) noexcept;
  // The upstream cannot carry s: sent elsewhere when it never went out
  // (Lost), else failed.
  void on_upstream_lost(H2Stream* s, const SocketAddr& from, Lost how, std::string_view why) noexcept;

 private:
  // The client's H2Conn (server end).
  void on_headers(int32_t id, http::H2Block kind, http::H2Fields&& f, bool end) noexcept override;
  void on_head_too_large(int32_t id) noexcept override;
  void on_data(int32_t id, std::span<const uint8_t> bytes) noexcept override;
  void on_data_end(int32_t id) noexcept override;
  void on_data_sent(int32_t id, size_t n) noexcept override;
  void on_stream_close(int32_t id, uint32_t error) noexcept override;
  void on_goaway(int32_t, uint32_t) noexcept override {}

  H2Stream* find(int32_t down) noexcept;
  void route(H2Stream* s) noexcept;
  void request_ended(H2Stream* s) noexcept;
  // A response head with a retryable status: the request is sent again
  // (true) when it is kept whole, idempotent, and the budget allows.
  bool retry(H2Stream* s, uint16_t status) noexcept;
  void answer(H2Stream* s, uint16_t status, std::string_view reason) noexcept;
  void finish(H2Stream* s, bool complete, std::string_view error) noexcept;
  // The stream parts from its upstream (cancelled there when `cancel`),
  // its windows given back, its endpoint's load dropped.
  void detach(H2Stream* s, bool cancel) noexcept;
  void leave_endpoint(H2Stream* s) noexcept;
  void mark_dirty() noexcept;
  void close_all(std::string_view why) noexcept;
  void check_end() noexcept;

  Worker* worker_ = nullptr;
  // The service's endpoints as of the last stream (Worker::latest_set), and
  // the set the connection came with, whose names the metrics' labels hold.
  std::shared_ptr<const discovery::EndpointSet> set_;
  std::shared_ptr<const discovery::EndpointSet> first_set_;
  SocketAddr dialled_;      // the service's address the client dialled
  HttpTap* tap_ = nullptr;  // the metrics' sink
  H2Pipe client_;
  std::unordered_map<int32_t, std::unique_ptr<H2Stream>> streams_;
  // The client connection's TCP counters: the service's, under mTLS when
  // its endpoints are meshed (as TcpForward counts them).
  auto& tcp() noexcept { return mtls_ ? first_set_->stats->tcp_mtls : first_set_->stats->tcp; }
  bool mtls_ = false;
  uint32_t request_timeout_ms_ = 0;
  uint64_t last_active_ms_ = 0;
  bool ending_ = false;           // the client connection is being closed
  uint64_t end_deadline_ms_ = 0;  // ...and is cut at this time
  metrics::TcpError error_ = metrics::TcpError::kNone;
};

}  // namespace meshd::proxy
