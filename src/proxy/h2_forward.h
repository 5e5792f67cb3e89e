// H2Forward: an application's HTTP/2 connection to a service, terminated so
// that every stream is balanced on its own. A TcpForward hands its client
// over once the first bytes are the HTTP/2 preface (outbound, to a service
// with endpoints); from then on:
//
//   client socket -> H2Conn (server end) -> one Stream per request
//     -> P2C over the service's endpoints, per stream
//     -> a Leg to that endpoint: its own socket (mesh mTLS when the endpoint
//        is meshed) and H2Conn (client end), shared by every stream this
//        connection sends there, opened when first needed
//
// Request and response bytes cross between the two H2Conns stream by
// stream; each side's window reopens only when the other side framed the
// bytes (H2Conn::consume), so flow control holds end to end and memory
// stays within the windows. A stream waits unsent (its head and body kept,
// the client's window closing on it) until its Leg is connected; if that
// connect fails, it goes to another endpoint, else it is answered 503.
// Each stream's outcome feeds the golden metrics and the balancer like the
// tap's requests do (HttpTap, with the endpoint of each stream).
//
// Every operation in flight is accounted for: a socket is closed only once
// its connect, read and send have completed; the worker frees the object
// when done() (Worker::sweep).
#pragma once

#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <unordered_map>
#include <vector>

#include "base/addr.h"
#include "discovery/endpoint_set.h"
#include "http/h2_conn.h"
#include "io/op.h"
#include "metrics/tcp_stats.h"
#include "transport/stream_tls.h"

struct io_uring_cqe;

namespace meshd::proxy {

class HttpTap;
class Worker;

class H2Forward final : public io::OpOwner, private http::H2Conn::Handler {
 public:
  // Endpoints one client connection opens legs to at most.
  static constexpr size_t kMaxLegs = 32;
  static constexpr size_t kReadSize = 16 * 1024;
  // A request body kept whole while its stream may be sent again (an
  // endpoint refusing it unprocessed); larger ones are not kept.
  static constexpr size_t kMaxReplay = 16 * 1024;
  // How long a closing connection may take to send its last bytes (a
  // GOAWAY to a client that does not read, a leg's connect) before it is cut.
  static constexpr uint64_t kLingerMs = 5000;

  H2Forward() noexcept = default;
  ~H2Forward();
  H2Forward(const H2Forward&) = delete;
  H2Forward& operator=(const H2Forward&) = delete;

  // Takes the client's socket and the bytes read of it (the preface's
  // start at least). False when out of memory: the caller still owns fd.
  bool start(Worker* worker, int client_fd, std::span<const char> first, const SocketAddr& dialled,
             std::shared_ptr<const discovery::EndpointSet> set) noexcept;
  void on_complete(io::Op& op, const io_uring_cqe& cqe) noexcept override;
  // Connect and handshake deadlines, request deadlines, idleness.
  void sweep(uint64_t now_ms) noexcept;
  // The worker drains: GOAWAY to the client, streams open now finish.
  void drain() noexcept;
  // Past the drain deadline: everything is cut.
  void abort() noexcept;
  // Every socket closed, nothing in flight: the worker may free it.
  bool done() const noexcept;

 private:
  enum OpKind : uint8_t { kConnectOp, kRecvOp, kSendOp };
  struct Stream;

  // One socket and its HTTP/2 end: the client's (index 0) or a leg's.
  struct Pipe {
    int fd = -1;
    io::Op connect_op, recv_op, send_op;
    std::unique_ptr<char[]> in;  // kReadSize, the read in flight
    std::string wire;            // bytes being sent (ciphertext when tls)
    std::string tls_out;         // TLS records written while wire was being sent: they go next
    std::unique_ptr<transport::StreamTls> tls;
    std::unique_ptr<http::H2Conn> conn;
    bool ready = false;          // connected (and handshaken): streams may be sent
    bool closing = false;        // the fd closes once nothing is in flight
    bool flushed_close = false;  // close once wire and the conn's output are sent
    uint64_t deadline_ms = 0;    // of the connect and handshake
    bool in_flight() const noexcept { return connect_op.in_flight || recv_op.in_flight || send_op.in_flight; }
    // A fresh start for a (closed) pipe, its ops telling owner which one.
    void reset(io::OpOwner* owner, uint8_t index) noexcept;
  };

  // A connection to one endpoint, carrying this client's streams there.
  struct Leg final : http::H2Conn::Handler {
    H2Forward* owner = nullptr;
    // The endpoint, as discovery described it when the leg opened (the
    // service's set may change under a long-lived client connection).
    SocketAddr address;
    std::string identity;  // the mesh identity it must prove; empty: plain
    std::shared_ptr<discovery::EndpointHealth> health;
    size_t index = 0;  // in legs_, +1 in Op::index
    Pipe pipe;
    uint64_t connect_start_us = 0;
    std::vector<Stream*> waiting;  // streams to submit once ready

    void on_headers(int32_t id, http::H2Block kind, http::H2Fields&& f, bool end) noexcept override;
    void on_head_too_large(int32_t) noexcept override {}
    void on_data(int32_t id, std::span<const uint8_t> bytes) noexcept override;
    void on_data_end(int32_t id) noexcept override;
    void on_data_sent(int32_t id, size_t n) noexcept override;
    void on_stream_close(int32_t id, uint32_t error) noexcept override;
    void on_goaway(int32_t, uint32_t) noexcept override {}
  };

  struct Stream {
    int32_t down = 0;     // the client's stream id
    Leg* leg = nullptr;   // once an endpoint is chosen
    int32_t up = -1;      // the leg's stream id, once submitted
    void* tag = nullptr;  // the metrics' request (HttpTap)
    uint64_t start_us = 0;
    uint64_t deadline_ms = 0;  // the request timeout, until the response head
    uint64_t tried = 0;        // endpoints whose connect failed it (bits by index in set_)
    uint8_t attempts = 0;
    bool answered = false;  // a final response head went to the client
    bool finished = false;  // its outcome was told to the metrics
    int32_t grpc_status = -1;
    uint16_t status = 0;
    uint64_t ttfb_us = 0;
    // The request: its head, the body the client sent while it was not
    // yet submitted, how it ended. The head, the whole body so far (replay)
    // and the trailers stay while it may be sent again (replay_ok).
    http::H2Fields head;
    std::string body;
    bool ended = false;
    http::H2Fields trailers;
    std::string replay;
    bool replay_ok = true;
    // Received bytes whose window has not been given back yet: the
    // client's (consumed when framed to the leg), the leg's (when framed
    // to the client).
    size_t owed = 0;
    size_t up_owed = 0;
    std::shared_ptr<discovery::EndpointHealth> load;  // the endpoint whose active count it is in
  };

  // The client's H2Conn (server end).
  void on_headers(int32_t id, http::H2Block kind, http::H2Fields&& f, bool end) noexcept override;
  void on_head_too_large(int32_t id) noexcept override;
  void on_data(int32_t id, std::span<const uint8_t> bytes) noexcept override;
  void on_data_end(int32_t id) noexcept override;
  void on_data_sent(int32_t id, size_t n) noexcept override;
  void on_stream_close(int32_t id, uint32_t error) noexcept override;
  void on_goaway(int32_t, uint32_t) noexcept override {}

  // Streams.
  void route(Stream* s) noexcept;
  Leg* leg_for(const discovery::Endpoint& ep) noexcept;
  // The index of the leg's endpoint in set_, or -1 (no longer there).
  int index_of(const Leg& leg) const noexcept;
  void submit(Stream* s) noexcept;
  void answer(Stream* s, uint16_t status, std::string_view reason) noexcept;
  void finish(Stream* s, bool complete, std::string_view error) noexcept;
  void forget(Stream* s) noexcept;
  Stream* find(int32_t down) noexcept;
  void leave_endpoint(Stream* s) noexcept;
  void give_windows_back(Stream* s) noexcept;
  void request_ended(Stream* s) noexcept;
  // The stream parts from its leg (cancelled there when `cancel`), its
  // windows given back, its endpoint's load dropped.
  void detach(Stream* s, bool cancel) noexcept;

  // Legs.
  void connect(Leg* leg) noexcept;
  void on_connect(Leg* leg, int res) noexcept;
  void leg_ready(Leg* leg) noexcept;
  void leg_failed(Leg* leg, std::string_view why, bool connect_failed) noexcept;

  // Sockets.
  Pipe& pipe(size_t index) noexcept { return index == 0 ? client_ : legs_[index - 1]->pipe; }
  void recv(size_t index) noexcept;
  void on_recv(size_t index, int res) noexcept;
  void flush(size_t index) noexcept;
  void flush_all() noexcept;
  void on_send(size_t index, int res) noexcept;
  void shut(size_t index) noexcept;
  void close_all(std::string_view why) noexcept;
  void check_end() noexcept;

  Worker* worker_ = nullptr;
  // The service's endpoints as of the last stream (Worker::latest_set), and
  // the set the connection came with, whose names the metrics' labels hold.
  std::shared_ptr<const discovery::EndpointSet> set_;
  std::shared_ptr<const discovery::EndpointSet> first_set_;
  SocketAddr dialled_;      // the service's address the client dialled
  HttpTap* tap_ = nullptr;  // the metrics' sink
  Pipe client_;
  std::vector<std::unique_ptr<Leg>> legs_;
  std::unordered_map<int32_t, std::unique_ptr<Stream>> streams_;
  // The client connection's TCP counters: the service's, under mTLS when
  // its endpoints are meshed (as TcpForward counts them).
  auto& tcp() noexcept { return mtls_ ? first_set_->stats->tcp_mtls : first_set_->stats->tcp; }
  bool mtls_ = false;
  uint32_t request_timeout_ms_ = 0;
  uint64_t last_active_ms_ = 0;
  bool ending_ = false;           // the client connection is being closed
  uint64_t end_deadline_ms_ = 0;  // ...and everything is cut at this time
  metrics::TcpError error_ = metrics::TcpError::kNone;
};

}  // namespace meshd::proxy
