#include "proxy/h2_forward.h"

#include <liburing.h>
#include <nghttp2/nghttp2.h>

#include <algorithm>
#include <charconv>
#include <new>

#include "base/log.h"
#include "discovery/balancer.h"
#include "http/error_response.h"
#include "http/h1_parse.h"
#include "io/ring.h"
#include "io/socket.h"
#include "proxy/http_tap.h"
#include "proxy/worker.h"

namespace meshd::proxy {

using http::H2Block;
using http::H2Conn;
using http::H2Fields;
using metrics::TcpError;

namespace {

int32_t grpc_status_of(const H2Fields& fields) noexcept {
  std::string_view v = http::h2_field(fields, "grpc-status");
  int32_t n = -1;
  if (v.empty() || std::from_chars(v.data(), v.data() + v.size(), n).ec != std::errc{}) return -1;
  return n;
}

uint16_t status_of(const H2Fields& fields) noexcept {
  std::string_view v = http::h2_field(fields, ":status");
  uint16_t n = 0;
  if (std::from_chars(v.data(), v.data() + v.size(), n).ec != std::errc{}) return 0;
  return n;
}

}  // namespace

H2Forward::~H2Forward() {
  // done() was true: every fd is closed and nothing is in flight.
}

bool H2Forward::start(Worker* worker, int client_fd, std::span<const char> first, const SocketAddr& dialled,
                      std::shared_ptr<const discovery::EndpointSet> set) noexcept {
  worker_ = worker;
  dialled_ = dialled;
  set_ = std::move(set);
  first_set_ = set_;
  client_.reset(this, 0);
  client_.in.reset(new (std::nothrow) char[kReadSize]);
  client_.conn.reset(new (std::nothrow) H2Conn(H2Conn::Role::kServer, this));
  tap_ = worker_->take_tap();
  if (!client_.in || !client_.conn || tap_ == nullptr || !client_.conn->start()) {
    if (tap_ != nullptr) worker_->give_tap(tap_);
    tap_ = nullptr;
    return false;
  }
  client_.fd = client_fd;
  client_.ready = true;
  HttpTap::Labels labels;
  labels.direction = metrics::Direction::kOutbound;
  labels.dst_service = set_->service;
  labels.budget = &set_->stats->retry_budget;
  // The hop is the mesh's mTLS when the service's endpoints are meshed
  // (each stream's own endpoint decides how its leg connects).
  labels.tls = worker_->shared_identity() != nullptr &&
               std::any_of(set_->endpoints.begin(), set_->endpoints.end(),
                           [](const discovery::Endpoint& e) { return e.meshed && !e.identity.empty(); });
  mtls_ = labels.tls;
  tap_->start(&worker_->stats(), &worker_->random(), labels);
  tap_->begin_streams();
  request_timeout_ms_ = worker_->request_timeout_ms(set_.get());
  tcp().opened.inc();
  last_active_ms_ = worker_->now_ms();
  io::set_nodelay(client_fd);
  if (!client_.conn->recv({reinterpret_cast<const uint8_t*>(first.data()), first.size()})) {
    client_.flushed_close = true;  // its GOAWAY goes, then the socket closes
    error_ = TcpError::kClientReset;
  }
  flush_all();
  if (!client_.flushed_close) recv(0);
  check_end();
  return true;
}

// --- the client's streams ----------------------------------------------------

H2Forward::Stream* H2Forward::find(int32_t down) noexcept {
  auto it = streams_.find(down);
  return it == streams_.end() ? nullptr : it->second.get();
}

void H2Forward::on_headers(int32_t id, H2Block kind, H2Fields&& fields, bool end) noexcept {
  if (kind == H2Block::kTrailers) {
    Stream* s = find(id);
    if (s == nullptr) return;
    request_ended(s);
    s->trailers = std::move(fields);  // (kept: the request may be sent again)
    if (s->up >= 0) s->leg->pipe.conn->end_data(s->up, s->trailers);
    return;
  }
  if (kind != H2Block::kRequest || ending_) return;
  auto owned = std::unique_ptr<Stream>(new (std::nothrow) Stream());
  if (!owned) {
    client_.conn->reset(id, NGHTTP2_INTERNAL_ERROR);
    return;
  }
  Stream* s = owned.get();
  streams_[id] = std::move(owned);
  s->down = id;
  s->start_us = worker_->now_us();
  if (end) request_ended(s);
  s->head = std::move(fields);
  // The metrics' view of the head: what HTTP/1's parser would have given.
  http::RequestHead head;
  head.version = http::Version::kHttp2;
  head.method_name = http::h2_field(s->head, ":method");
  head.method = http::method_of(head.method_name);
  head.target = http::h2_field(s->head, ":path");
  head.host = http::h2_field(s->head, "host");
  head.authority = http::h2_field(s->head, ":authority");
  if (head.authority.empty()) head.authority = head.host;
  s->tag = tap_->on_request(head);
  set_ = worker_->latest_set(dialled_, set_);
  route(s);
}

void H2Forward::on_head_too_large(int32_t id) noexcept {
  if (ending_) return;
  tap_->on_rejected(431, "header_too_large");
  H2Fields head{{":status", "431"}, {"meshd-proxy-error", "header_too_large"}};
  client_.conn->submit_response(id, head, true);
}

void H2Forward::on_data(int32_t id, std::span<const uint8_t> bytes) noexcept {
  Stream* s = find(id);
  if (s == nullptr || (s->answered && s->leg == nullptr)) {
    client_.conn->consume(id, bytes.size());  // nobody takes them
    return;
  }
  s->owed += bytes.size();
  if (s->replay_ok) {
    if (s->replay.size() + bytes.size() <= kMaxReplay) {
      s->replay.append(reinterpret_cast<const char*>(bytes.data()), bytes.size());
    } else {
      s->replay_ok = false;
      std::string().swap(s->replay);
    }
  }
  if (s->up >= 0) {
    s->leg->pipe.conn->send_data(s->up, bytes);  // consumed once framed there (Leg::on_data_sent)
    return;
  }
  // Not sent yet: kept, the client's window closing on it.
  s->body.append(reinterpret_cast<const char*>(bytes.data()), bytes.size());
}

void H2Forward::on_data_end(int32_t id) noexcept {
  Stream* s = find(id);
  if (s == nullptr) return;
  request_ended(s);
  if (s->up >= 0) s->leg->pipe.conn->end_data(s->up, {});
}

// The request timeout runs from the request's last byte, as HTTP/1's: an
// upload or a client-streaming call takes the time it takes.
void H2Forward::request_ended(Stream* s) noexcept {
  s->ended = true;
  if (request_timeout_ms_ != 0 && !s->answered) s->deadline_ms = worker_->now_ms() + request_timeout_ms_;
}

// Response bytes went to the client: the leg's window reopens by as many.
void H2Forward::on_data_sent(int32_t id, size_t n) noexcept {
  Stream* s = find(id);
  if (s == nullptr || s->up < 0 || s->leg == nullptr) return;
  const size_t c = std::min(n, s->up_owed);  // (the mesh's own answers owe nothing)
  s->up_owed -= c;
  s->leg->pipe.conn->consume(s->up, c);
}

// A stream parts from its leg before its bytes crossed: the windows they
// hold open again, else the connections' windows would shrink for good.
void H2Forward::give_windows_back(Stream* s) noexcept {
  client_.conn->consume(s->down, s->owed);
  s->owed = 0;
  if (s->up >= 0 && s->leg != nullptr) s->leg->pipe.conn->consume(s->up, s->up_owed);
  s->up_owed = 0;
}

void H2Forward::on_stream_close(int32_t id, uint32_t error) noexcept {
  Stream* s = find(id);
  if (s == nullptr) return;
  // Reset by the client (or ended while the endpoint still sends): the
  // endpoint's side stops too.
  detach(s, error != 0);
  if (!s->finished) finish(s, false, error == 0 ? "closed" : "client_reset");
  forget(s);
}

void H2Forward::detach(Stream* s, bool cancel) noexcept {
  give_windows_back(s);
  if (s->leg != nullptr && s->up >= 0) {
    s->leg->pipe.conn->set_stream_user(s->up, nullptr);
    if (cancel) s->leg->pipe.conn->reset(s->up, NGHTTP2_CANCEL);
  } else if (s->leg != nullptr) {
    auto& w = s->leg->waiting;
    w.erase(std::remove(w.begin(), w.end(), s), w.end());
  }
  leave_endpoint(s);
  s->up = -1;
  s->leg = nullptr;
}

// --- balancing ---------------------------------------------------------------

void H2Forward::route(Stream* s) noexcept {
  int e = discovery::pick_endpoint(*set_, worker_->now_ms(), s->tried, worker_->random());
  if (e == discovery::kNoEndpoint) {
    answer(s, 503, "no_endpoints");
    return;
  }
  const auto& ep = set_->endpoints[static_cast<size_t>(e)];
  Leg* leg = leg_for(ep);
  if (leg == nullptr) {
    answer(s, 503, "connect_failed");
    return;
  }
  ++s->attempts;
  s->leg = leg;
  ep.health->active.fetch_add(1, std::memory_order_relaxed);  // a stream in flight is load for P2C
  s->load = ep.health;
  tap_->retarget(s->tag, ep.health.get());
  if (leg->pipe.ready)
    submit(s);
  else
    leg->waiting.push_back(s);
}

// The endpoint's leg with room for another stream, else a new one.
H2Forward::Leg* H2Forward::leg_for(const discovery::Endpoint& ep) noexcept {
  const std::string_view identity = ep.meshed ? std::string_view(ep.identity) : std::string_view();
  Leg* spare = nullptr;
  for (auto& l : legs_) {
    if (l->address == ep.address && l->identity == identity && !l->pipe.closing && !l->pipe.flushed_close &&
        (!l->pipe.ready || l->pipe.conn->streams_available() > 0))
      return l.get();
    if (spare == nullptr && l->pipe.closing && l->pipe.fd < 0 && !l->pipe.in_flight()) spare = l.get();
  }
  if (spare == nullptr) {
    if (legs_.size() >= kMaxLegs) return nullptr;
    auto leg = std::unique_ptr<Leg>(new (std::nothrow) Leg());
    if (!leg) return nullptr;
    leg->index = legs_.size();
    legs_.push_back(std::move(leg));
    spare = legs_.back().get();
  }
  Leg* leg = spare;
  const size_t op_index = leg->index + 1;
  leg->owner = this;
  leg->address = ep.address;
  leg->identity = identity;
  leg->health = ep.health;
  leg->waiting.clear();
  leg->pipe.reset(this, static_cast<uint8_t>(op_index));
  if (!leg->pipe.in) leg->pipe.in.reset(new (std::nothrow) char[kReadSize]);
  leg->pipe.conn.reset(new (std::nothrow) H2Conn(H2Conn::Role::kClient, leg));
  if (!leg->pipe.in || !leg->pipe.conn || !leg->pipe.conn->start()) {
    leg->pipe.closing = true;
    return nullptr;
  }
  connect(leg);
  if (leg->pipe.closing) return nullptr;
  return leg;
}

void H2Forward::submit(Stream* s) noexcept {
  H2Conn& up = *s->leg->pipe.conn;
  const bool end_now = s->ended && s->body.empty() && s->trailers.empty();
  int32_t id = up.submit_request(s->head, end_now, s);
  if (id < 0) {
    leave_endpoint(s);
    answer(s, 503, "connect_failed");
    return;
  }
  s->up = id;
  if (!s->replay_ok) H2Fields().swap(s->head);  // (else kept, to be sent again)
  if (!s->body.empty()) {
    up.send_data(id, {reinterpret_cast<const uint8_t*>(s->body.data()), s->body.size()});
    std::string().swap(s->body);
  }
  if (s->ended && !end_now) up.end_data(id, s->trailers);
}

void H2Forward::leave_endpoint(Stream* s) noexcept {
  if (s->load) s->load->active.fetch_sub(1, std::memory_order_relaxed);
  s->load.reset();
}

int H2Forward::index_of(const Leg& leg) const noexcept {
  for (size_t i = 0; i < set_->endpoints.size(); ++i)
    if (set_->endpoints[i].address == leg.address) return static_cast<int>(i);
  return -1;
}

// The mesh's own answer to a stream no endpoint answered.
void H2Forward::answer(Stream* s, uint16_t status, std::string_view reason) noexcept {
  if (s->answered) {
    client_.conn->reset(s->down, NGHTTP2_INTERNAL_ERROR);
    return;
  }
  s->answered = true;
  s->status = status;
  s->ttfb_us = worker_->now_us() - s->start_us;
  char code[4];
  std::to_chars(code, code + 3, status);
  H2Fields head{
      {":status", std::string(code, 3)}, {"content-type", "text/plain"}, {"meshd-proxy-error", std::string(reason)}};
  client_.conn->submit_response(s->down, head, false);
  std::string text = std::string(http::reason_phrase(status)) + " (" + std::string(reason) + ")\n";
  client_.conn->send_data(s->down, {reinterpret_cast<const uint8_t*>(text.data()), text.size()});
  client_.conn->end_data(s->down, {});
  detach(s, true);
  // The client's request body, if any more comes, is dropped (on_data).
  // Counted as what the client got, as HTTP/1's own answers are.
  if (!s->finished) {
    s->finished = true;
    tap_->on_response(s->tag, status, s->ttfb_us, true, -1);
  }
}

void H2Forward::finish(Stream* s, bool complete, std::string_view error) noexcept {
  if (s->finished) return;
  s->finished = true;
  if (s->status != 0)
    tap_->on_response(s->tag, s->status, s->ttfb_us, complete, s->grpc_status);
  else
    tap_->on_failure(s->tag, error);
}

void H2Forward::forget(Stream* s) noexcept {
  leave_endpoint(s);
  streams_.erase(s->down);  // frees s
}

// --- a leg's streams -----------------------------------------------------------

void H2Forward::Leg::on_headers(int32_t id, H2Block kind, H2Fields&& f, bool end) noexcept {
  auto* s = static_cast<Stream*>(pipe.conn->stream_user(id));
  if (s == nullptr) return;
  H2Conn& down = *owner->client_.conn;
  switch (kind) {
    case H2Block::kInterim: down.submit_response(s->down, f, false); return;
    case H2Block::kResponse: {
      s->answered = true;
      s->deadline_ms = 0;
      s->status = status_of(f);
      s->ttfb_us = owner->worker_->now_us() - s->start_us;
      s->grpc_status = grpc_status_of(f);  // a trailers-only gRPC answer
      if (http::h2_field(f, "content-type").substr(0, 16) != "application/grpc")
        owner->tap_->on_response_head(s->tag, s->status, s->ttfb_us);
      down.submit_response(s->down, f, end);
      if (end) owner->finish(s, true, {});
      return;
    }
    case H2Block::kTrailers:
      if (int32_t g = grpc_status_of(f); g >= 0) s->grpc_status = g;
      down.end_data(s->down, std::move(f));
      owner->finish(s, true, {});
      return;
    case H2Block::kRequest: return;
  }
}

void H2Forward::Leg::on_data(int32_t id, std::span<const uint8_t> bytes) noexcept {
  auto* s = static_cast<Stream*>(pipe.conn->stream_user(id));
  if (s == nullptr || !owner->client_.conn->send_data(s->down, bytes)) {
    pipe.conn->consume(id, bytes.size());
    return;
  }
  s->up_owed += bytes.size();  // consumed once framed to the client (H2Forward::on_data_sent)
}

void H2Forward::Leg::on_data_end(int32_t id) noexcept {
  auto* s = static_cast<Stream*>(pipe.conn->stream_user(id));
  if (s == nullptr) return;
  owner->client_.conn->end_data(s->down, {});
  owner->finish(s, true, {});
}

// Request bytes went to the endpoint: the client's window reopens.
void H2Forward::Leg::on_data_sent(int32_t id, size_t n) noexcept {
  auto* s = static_cast<Stream*>(pipe.conn->stream_user(id));
  if (s == nullptr) return;
  // A request sent again re-sends bytes whose window came back already.
  const size_t c = std::min(n, s->owed);
  s->owed -= c;
  owner->client_.conn->consume(s->down, c);
}

void H2Forward::Leg::on_stream_close(int32_t id, uint32_t error) noexcept {
  auto* s = static_cast<Stream*>(pipe.conn->stream_user(id));
  if (s == nullptr) return;
  pipe.conn->consume(id, s->up_owed);  // (the connection's window: the stream's is gone)
  s->up_owed = 0;
  owner->leave_endpoint(s);
  s->up = -1;
  s->leg = nullptr;
  if (error == 0) return;  // ended cleanly: the client's side ends by its own frames
  if (!s->answered && error == NGHTTP2_REFUSED_STREAM && s->replay_ok && s->attempts < discovery::kMaxConnectAttempts) {
    // The endpoint did not process it (RFC 9113 §8.7: a GOAWAY's streams
    // past its last, a concurrency limit): sent again, whole, elsewhere
    // when the balancer has another endpoint.
    // (Not marked as tried: a GOAWAY'd leg takes no new stream, so even a
    // single endpoint gets it again over a new connection.)
    s->body = s->replay;
    owner->route(s);
    return;
  }
  if (!s->answered) {
    owner->answer(s, 502, error == NGHTTP2_REFUSED_STREAM ? "refused_stream" : "upstream_reset");
    return;
  }
  owner->finish(s, false, "upstream_reset");
  owner->client_.conn->reset(s->down, error);
}

// --- legs: connect, handshake -------------------------------------------------

void H2Forward::connect(Leg* leg) noexcept {
  auto fd = io::tcp_socket(leg->address.family());
  if (!fd) {
    leg->pipe.closing = true;
    return;
  }
  leg->pipe.fd = *fd;
  io::set_nodelay(leg->pipe.fd);
  leg->connect_start_us = worker_->now_us();
  leg->pipe.deadline_ms = worker_->now_ms() + worker_->config().connect_timeout_ms;
  io_uring_sqe* sqe = worker_->ring().sqe();
  io_uring_prep_connect(sqe, leg->pipe.fd, leg->address.sa(), leg->address.len());
  io::Ring::bind(sqe, leg->pipe.connect_op);
}

void H2Forward::on_connect(Leg* leg, int res) noexcept {
  if (leg->pipe.closing) return;
  if (leg->pipe.flushed_close) {  // the client went while it connected: nothing to say
    shut(leg->index + 1);
    return;
  }
  if (res < 0) {
    leg->health->record_connect(false, 0, worker_->now_ms());
    leg_failed(leg, "connect_failed", true);
    return;
  }
  leg->health->record_connect(true, worker_->now_us() - leg->connect_start_us, worker_->now_ms());
  if (!leg->identity.empty() && worker_->shared_identity() != nullptr) {
    const identity::Credential* cred = worker_->credential();
    leg->pipe.tls.reset(new (std::nothrow) transport::StreamTls());
    if (cred == nullptr || !cred->valid_at(worker_->unix_ms()) || !leg->pipe.tls) {
      leg_failed(leg, "no_identity", true);
      return;
    }
    std::string expected = leg->identity;
    leg->pipe.tls->keep_thread_crypto();
    auto check = [expected](std::string_view got) -> Parsed<void> {
      if (got != expected) return invalid("the endpoint is " + std::string(got) + ", not " + expected);
      return {};
    };
    if (auto ok = leg->pipe.tls->start(cred->client, check, &leg->pipe.wire); !ok) {
      LOG_WARN("proxy", "mesh TLS to %s: %s", leg->address.str().c_str(), ok.error().c_str());
      leg_failed(leg, "tls_failed", true);
      return;
    }
    flush(leg->index + 1);
    recv(leg->index + 1);
    return;  // ready once the handshake completes (on_recv)
  }
  leg_ready(leg);
  recv(leg->index + 1);
}

void H2Forward::leg_ready(Leg* leg) noexcept {
  leg->pipe.ready = true;
  leg->pipe.deadline_ms = 0;
  std::vector<Stream*> waiting = std::move(leg->waiting);
  leg->waiting.clear();
  for (Stream* s : waiting) submit(s);
  flush_all();
}

// The leg cannot carry streams: those it never sent go elsewhere (their
// request is whole in hand), those it sent fail.
void H2Forward::leg_failed(Leg* leg, std::string_view why, bool connect_failed) noexcept {
  LOG_DEBUG("proxy", "h2 leg to %s (%s): %.*s", leg->address.str().c_str(), set_->service.c_str(),
            static_cast<int>(why.size()), why.data());
  std::vector<Stream*> waiting = std::move(leg->waiting);
  leg->waiting.clear();
  const int e = index_of(*leg);
  for (Stream* s : waiting) {
    leave_endpoint(s);
    s->leg = nullptr;
    if (e >= 0 && e < 64) s->tried |= uint64_t{1} << e;
    if (connect_failed && s->attempts < discovery::kMaxConnectAttempts) {
      route(s);
    } else {
      answer(s, 503, why);
    }
  }
  // Streams it carried: nghttp2 does not close them when the socket goes, so
  // they are closed here, each as a reset.
  for (auto& [id, owned] : streams_) {
    Stream* s = owned.get();
    if (s->leg != leg) continue;
    leave_endpoint(s);
    s->up = -1;
    s->leg = nullptr;
    if (s->finished) continue;  // its response came whole: the client has it, or will
    if (!s->answered) {
      answer(s, 502, "upstream_reset");
    } else {
      finish(s, false, "upstream_reset");
      client_.conn->reset(s->down, NGHTTP2_INTERNAL_ERROR);
    }
  }
  shut(leg->index + 1);
  flush(0);
}

// --- sockets -------------------------------------------------------------------

void H2Forward::Pipe::reset(io::OpOwner* owner, uint8_t index) noexcept {
  for (auto [op, kind] : {std::pair{&connect_op, kConnectOp}, {&recv_op, kRecvOp}, {&send_op, kSendOp}}) {
    op->owner = owner;
    op->kind = kind;
    op->index = index;
  }
  fd = -1;
  wire.clear();
  tls_out.clear();
  tls.reset();
  conn.reset();
  ready = closing = flushed_close = false;
  deadline_ms = 0;
}

void H2Forward::recv(size_t index) noexcept {
  Pipe& p = pipe(index);
  if (p.recv_op.in_flight || p.closing || p.fd < 0) return;
  io_uring_sqe* sqe = worker_->ring().sqe();
  io_uring_prep_recv(sqe, p.fd, p.in.get(), kReadSize, 0);
  io::Ring::bind(sqe, p.recv_op);
}

void H2Forward::on_recv(size_t index, int res) noexcept {
  Pipe& p = pipe(index);
  if (p.closing) return;
  last_active_ms_ = worker_->now_ms();
  if (res <= 0) {
    if (index == 0) {
      error_ = res == 0 ? TcpError::kNone : TcpError::kClientReset;
      close_all(res == 0 ? "closed" : "client_reset");
    } else {
      leg_failed(legs_[index - 1].get(), "upstream_reset", false);
    }
    check_end();
    return;
  }
  if (index == 0) tcp().read_bytes.add(static_cast<uint64_t>(res));
  std::span<const uint8_t> bytes{reinterpret_cast<const uint8_t*>(p.in.get()), static_cast<size_t>(res)};
  std::string plain;
  bool ok = true;
  if (p.tls) {
    const bool was_ready = p.ready;
    if (auto r = p.tls->received({p.in.get(), static_cast<size_t>(res)}, &plain, &p.tls_out); !r) {
      LOG_DEBUG("proxy", "h2 leg: %s", r.error().c_str());
      worker_->stats().tls[static_cast<int>(metrics::Direction::kOutbound)].failed.inc();
      leg_failed(legs_[index - 1].get(), "tls_failed", !was_ready);
      check_end();
      return;
    }
    if (!was_ready && p.tls->established()) {
      worker_->stats().tls[static_cast<int>(metrics::Direction::kOutbound)].full.inc();
      leg_ready(legs_[index - 1].get());
    }
    bytes = {reinterpret_cast<const uint8_t*>(plain.data()), plain.size()};
  }
  if (!bytes.empty()) ok = p.conn->recv(bytes);
  if (!ok) {
    if (index == 0) {
      error_ = TcpError::kClientReset;
      p.flushed_close = true;
      close_all("h2_protocol");
    } else {
      leg_failed(legs_[index - 1].get(), "upstream_reset", false);
    }
  }
  flush_all();
  if (!pipe(index).closing && !pipe(index).flushed_close) recv(index);
  check_end();
}

void H2Forward::flush(size_t index) noexcept {
  Pipe& p = pipe(index);
  if (p.closing || p.fd < 0 || p.send_op.in_flight || p.connect_op.in_flight) return;
  if (p.wire.empty()) p.wire.swap(p.tls_out);  // (records the TLS layer wrote while a send was in flight)
  if (p.wire.empty()) {
    std::span<const uint8_t> out = p.conn->pending();
    if (!out.empty()) {
      std::string_view view(reinterpret_cast<const char*>(out.data()), out.size());
      if (p.tls) {
        if (auto ok = p.tls->send(view, &p.wire); !ok) {
          leg_failed(legs_[index - 1].get(), "tls_failed", false);
          return;
        }
      } else {
        p.wire.assign(view);
      }
      p.conn->sent(out.size());
    }
  }
  if (p.wire.empty()) {
    if (!p.flushed_close && !p.conn->finished()) return;
    // A leg whose connection ended (its GOAWAY, or nghttp2's after a
    // protocol error) with streams still on it fails them first.
    if (index > 0 && legs_[index - 1]->pipe.conn->open_streams() > 0 && !ending_) {
      leg_failed(legs_[index - 1].get(), "upstream_reset", false);
      return;
    }
    shut(index);
    return;
  }
  io_uring_sqe* sqe = worker_->ring().sqe();
  io_uring_prep_send(sqe, p.fd, p.wire.data(), p.wire.size(), MSG_NOSIGNAL);
  io::Ring::bind(sqe, p.send_op);
}

void H2Forward::flush_all() noexcept {
  flush(0);
  for (size_t i = 0; i < legs_.size(); ++i) flush(i + 1);
}

void H2Forward::on_send(size_t index, int res) noexcept {
  Pipe& p = pipe(index);
  if (p.closing) return;
  if (res < 0) {
    if (index == 0) {
      error_ = TcpError::kClientReset;
      close_all("client_reset");
    } else {
      leg_failed(legs_[index - 1].get(), "upstream_reset", false);
    }
    check_end();
    return;
  }
  if (index == 0) tcp().write_bytes.add(static_cast<uint64_t>(res));
  p.wire.erase(0, static_cast<size_t>(res));
  // (Window updates this send's framing queued on the other side go too.)
  flush_all();
  check_end();
}

// Closes a socket once nothing is in flight on it (cancelling what is).
void H2Forward::shut(size_t index) noexcept {
  Pipe& p = pipe(index);
  p.closing = true;
  p.ready = false;
  if (p.fd < 0) return;
  if (p.in_flight()) {
    if (p.connect_op.in_flight) worker_->ring().cancel_op(p.connect_op);
    if (p.recv_op.in_flight) worker_->ring().cancel_op(p.recv_op);
    if (p.send_op.in_flight) worker_->ring().cancel_op(p.send_op);
    return;  // closed by on_complete when the last one completes
  }
  io::close_fd(p.fd);
  p.fd = -1;
}

void H2Forward::close_all(std::string_view why) noexcept {
  if (ending_) return;
  ending_ = true;
  end_deadline_ms_ = worker_->now_ms() + kLingerMs;
  for (auto& [id, owned] : streams_) {
    detach(owned.get(), true);
    finish(owned.get(), false, why);
  }
  streams_.clear();
  // Nothing reports to the metrics from here on.
  tcp().closed[static_cast<int>(error_)].inc();
  tap_->finish(why, worker_->now_us());
  worker_->give_tap(tap_);
  tap_ = nullptr;
  // The legs say GOAWAY and close once it is sent.
  for (auto& l : legs_) {
    if (l->pipe.closing) continue;
    l->waiting.clear();
    l->pipe.conn->goaway(0);
    l->pipe.flushed_close = true;
  }
  if (!client_.flushed_close) shut(0);
  flush_all();
}

void H2Forward::check_end() noexcept {
  if (ending_) return;
  // The client's connection finished (both ends said GOAWAY, no stream
  // open) or broke: everything goes.
  if (client_.closing || (client_.conn->finished() && client_.wire.empty())) close_all("closed");
}

void H2Forward::on_complete(io::Op& op, const io_uring_cqe& cqe) noexcept {
  const size_t index = op.index;
  Pipe& p = pipe(index);
  switch (op.kind) {
    case kConnectOp:
      if (index > 0) on_connect(legs_[index - 1].get(), cqe.res);
      break;
    case kRecvOp: on_recv(index, cqe.res); break;
    case kSendOp: on_send(index, cqe.res); break;
  }
  if (p.closing && p.fd >= 0 && !p.in_flight()) {
    io::close_fd(p.fd);
    p.fd = -1;
  }
}

void H2Forward::sweep(uint64_t now_ms) noexcept {
  if (ending_) {
    // A peer that does not read what is left for it (a GOAWAY), or an
    // endpoint that never answers a connect, holds the sockets no longer.
    if (now_ms >= end_deadline_ms_) abort();
    return;
  }
  // (Failing a leg can open another, growing legs_: collected first.)
  std::vector<Leg*> overdue;
  for (auto& l : legs_) {
    if (l->pipe.closing || l->pipe.flushed_close) continue;
    if (l->pipe.deadline_ms != 0 && now_ms >= l->pipe.deadline_ms) {
      overdue.push_back(l.get());
    } else if (l->pipe.ready && l->pipe.conn->open_streams() == 0 && l->waiting.empty() && index_of(*l) < 0) {
      // Its endpoint left the service: no stream will come for it.
      l->pipe.conn->goaway(0);
      l->pipe.flushed_close = true;
    }
  }
  for (Leg* l : overdue) {
    l->health->record_connect(false, 0, now_ms);
    leg_failed(l, "connect_timeout", true);
  }
  std::vector<Stream*> late;
  for (auto& [id, s] : streams_)
    if (s->deadline_ms != 0 && now_ms >= s->deadline_ms && !s->answered) late.push_back(s.get());
  for (Stream* s : late) answer(s, 504, "request_timeout");
  const uint64_t idle = worker_->config().idle_timeout_ms;
  if (idle != 0 && streams_.empty() && now_ms >= last_active_ms_ + idle) {
    error_ = TcpError::kIdleTimeout;
    client_.conn->goaway(0);
  }
  flush_all();
  check_end();
}

void H2Forward::abort() noexcept {
  if (!ending_) {
    error_ = TcpError::kShutdown;
    close_all("shutdown");
  }
  // Everything still open is cut, its operations cancelled.
  for (size_t i = 0; i <= legs_.size(); ++i) {
    if (pipe(i).fd < 0) continue;
    io::set_reset_on_close(pipe(i).fd);
    shut(i);
  }
}

void H2Forward::drain() noexcept {
  if (ending_) return;
  client_.conn->goaway(0);
  flush_all();
  check_end();
}

bool H2Forward::done() const noexcept {
  if (client_.fd >= 0 || client_.in_flight()) return false;
  for (const auto& l : legs_)
    if (l->pipe.fd >= 0 || l->pipe.in_flight()) return false;
  return ending_;
}

}  // namespace meshd::proxy
