#include "proxy/h2_forward.h"

#include <nghttp2/nghttp2.h>

#include <algorithm>
#include <charconv>
#include <new>
#include <vector>

#include "base/log.h"
#include "discovery/balancer.h"
#include "http/classify.h"
#include "http/error_response.h"
#include "http/h1_parse.h"
#include "http/retry.h"
#include "io/socket.h"
#include "proxy/http_tap.h"
#include "proxy/worker.h"

namespace meshd::proxy {

using http::H2Block;
using http::H2Conn;
using http::H2Fields;
using metrics::TcpError;

namespace {

// Read as the HTTP/2 tap reads them (http/classify.h).
int32_t grpc_status_of(const H2Fields& fields) noexcept {
  return http::parse_decimal(http::h2_field(fields, "grpc-status"), 2);
}

uint16_t status_of(const H2Fields& fields) noexcept {
  const int32_t n = http::parse_decimal(http::h2_field(fields, ":status"), 3);
  return static_cast<uint16_t>(n >= 100 ? n : 0);
}

}  // namespace

bool H2Forward::start(Worker* worker, int client_fd, std::span<const char> first, const SocketAddr& dialled,
                      std::shared_ptr<const discovery::EndpointSet> set) noexcept {
  worker_ = worker;
  dialled_ = dialled;
  set_ = std::move(set);
  first_set_ = set_;
  tap_ = worker_->take_tap();
  if (tap_ == nullptr || !client_.reset(this, 0, H2Conn::Role::kServer, this)) {
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
  // (each stream's own endpoint decides how its upstream connects).
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
  client_.recv(*worker_);
  mark_dirty();
  worker_->flush_h2();
  return true;
}

void H2Forward::mark_dirty() noexcept { worker_->h2_dirty(this); }

// --- the client's streams ----------------------------------------------------

H2Stream* H2Forward::find(int32_t down) noexcept {
  auto it = streams_.find(down);
  return it == streams_.end() ? nullptr : it->second.get();
}

void H2Forward::on_headers(int32_t id, H2Block kind, H2Fields&& fields, bool end) noexcept {
  if (kind == H2Block::kTrailers) {
    H2Stream* s = find(id);
    if (s == nullptr) return;
    request_ended(s);
    s->trailers = std::move(fields);  // (kept: the request may be sent again)
    if (s->upstream != nullptr) s->upstream->end_data(s, s->trailers);
    return;
  }
  if (kind != H2Block::kRequest || ending_) return;
  auto owned = std::unique_ptr<H2Stream>(new (std::nothrow) H2Stream());
  if (!owned) {
    client_.conn->reset(id, NGHTTP2_INTERNAL_ERROR);
    return;
  }
  H2Stream* s = owned.get();
  streams_[id] = std::move(owned);
  s->owner = this;
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
  H2Stream* s = find(id);
  if (s == nullptr || (s->answered && s->upstream == nullptr)) {
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
  if (s->upstream != nullptr && s->up >= 0) {
    s->upstream->send_data(s, bytes);  // consumed once framed there (on_upstream_took)
    return;
  }
  // Not sent yet: kept, the client's window closing on it.
  s->body.append(reinterpret_cast<const char*>(bytes.data()), bytes.size());
}

void H2Forward::on_data_end(int32_t id) noexcept {
  H2Stream* s = find(id);
  if (s == nullptr) return;
  request_ended(s);
  if (s->upstream != nullptr) s->upstream->end_data(s, {});
}

// The request timeout runs from the request's last byte, as HTTP/1's: an
// upload or a client-streaming call takes the time it takes.
void H2Forward::request_ended(H2Stream* s) noexcept {
  s->ended = true;
  if (request_timeout_ms_ != 0 && !s->answered) s->deadline_ms = worker_->now_ms() + request_timeout_ms_;
}

// Response bytes went to the client: the upstream's window reopens by as many.
void H2Forward::on_data_sent(int32_t id, size_t n) noexcept {
  H2Stream* s = find(id);
  if (s != nullptr && s->upstream != nullptr) s->upstream->consume(s, n);
}

void H2Forward::on_stream_close(int32_t id, uint32_t error) noexcept {
  H2Stream* s = find(id);
  if (s == nullptr) return;
  // Reset by the client (or ended while the endpoint still reads or
  // sends): the endpoint's side stops too.
  detach(s, true);
  if (!s->finished) finish(s, false, error == 0 ? "closed" : "client_reset");
  streams_.erase(id);  // frees s
}

void H2Forward::detach(H2Stream* s, bool cancel) noexcept {
  client_.conn->consume(s->down, s->owed);  // (else the client's window would shrink for good)
  s->owed = 0;
  if (s->upstream != nullptr) s->upstream->forget(s, cancel);
  leave_endpoint(s);
  mark_dirty();
}

void H2Forward::leave_endpoint(H2Stream* s) noexcept {
  if (s->load) s->load->active.fetch_sub(1, std::memory_order_relaxed);
  s->load.reset();
}

// --- balancing ---------------------------------------------------------------

void H2Forward::route(H2Stream* s) noexcept {
  int e = discovery::pick_endpoint(*set_, worker_->now_ms(), s->tried, worker_->random());
  if (e == discovery::kNoEndpoint) {
    answer(s, 503, "no_endpoints");
    return;
  }
  const auto& ep = set_->endpoints[static_cast<size_t>(e)];
  H2Upstream* up = worker_->h2_upstream(ep);
  if (up == nullptr) {
    answer(s, 503, "connect_failed");
    return;
  }
  ++s->attempts;
  ep.health->active.fetch_add(1, std::memory_order_relaxed);  // a stream in flight is load for P2C
  s->load = ep.health;
  tap_->retarget(s->tag, ep.health.get());
  up->add(s);
}

// --- from the upstream ---------------------------------------------------------

void H2Forward::on_upstream_headers(H2Stream* s, H2Block kind, H2Fields&& f, bool end) noexcept {
  H2Conn& down = *client_.conn;
  mark_dirty();
  switch (kind) {
    case H2Block::kInterim: down.submit_response(s->down, f, false); return;
    case H2Block::kResponse: {
      if (retry(s, status_of(f))) return;
      s->answered = true;
      s->deadline_ms = 0;
      s->status = status_of(f);
      s->ttfb_us = worker_->now_us() - s->start_us;
      s->grpc = http::is_grpc_content_type(http::h2_field(f, "content-type"));
      s->grpc_status = grpc_status_of(f);  // a trailers-only gRPC answer
      if (!s->grpc) tap_->on_response_head(s->tag, s->status, s->ttfb_us);
      down.submit_response(s->down, f, end);
      if (end) finish(s, true, {});
      return;
    }
    case H2Block::kTrailers:
      if (int32_t g = grpc_status_of(f); g >= 0) s->grpc_status = g;
      down.end_data(s->down, std::move(f));
      finish(s, true, {});
      return;
    case H2Block::kRequest: return;
  }
}

bool H2Forward::retry(H2Stream* s, uint16_t status) noexcept {
  const auto& statuses = worker_->retry_statuses(set_.get());
  if (std::find(statuses.begin(), statuses.end(), status) == statuses.end()) return false;
  if (!s->replay_ok || !s->ended || s->retries >= kMaxRetries || s->upstream == nullptr) return false;
  if (!http::retry_safe(http::method_of(http::h2_field(s->head, ":method")))) return false;
  discovery::ServiceStats& stats = *first_set_->stats;
  if (!stats.retry_budget.withdraw(worker_->now_ms())) {
    stats.retries_refused.inc();
    return false;
  }
  stats.retries.inc();
  ++s->retries;
  // The endpoint failed this attempt (failure accrual); the metrics never
  // see it. Another endpoint takes the request when the service has one.
  if (s->load)
    s->load->record_response(false, 0, worker_->now_ms(), static_cast<uint32_t>(worker_->random().next() >> 32));
  const SocketAddr from = s->upstream->address();
  detach(s, true);
  if (set_->endpoints.size() > 1)
    for (size_t i = 0; i < set_->endpoints.size() && i < 64; ++i)
      if (set_->endpoints[i].address == from) s->tried |= uint64_t{1} << i;
  s->body = s->replay;
  route(s);
  return true;
}

bool H2Forward::on_upstream_data(H2Stream* s, std::span<const uint8_t> bytes) noexcept {
  mark_dirty();
  return client_.conn->send_data(s->down, bytes);
}

void H2Forward::on_upstream_end(H2Stream* s) noexcept {
  client_.conn->end_data(s->down, {});
  finish(s, true, {});
  mark_dirty();
}

void H2Forward::on_upstream_took(H2Stream* s, size_t n) noexcept {
  // A request sent again re-sends bytes whose window came back already.
  const size_t c = std::min(n, s->owed);
  s->owed -= c;
  client_.conn->consume(s->down, c);
  mark_dirty();
}

void H2Forward::on_upstream_close(H2Stream* s, uint32_t error) noexcept {
  leave_endpoint(s);
  mark_dirty();
  // Request bytes still queued there will never go: their window comes back.
  client_.conn->consume(s->down, s->owed);
  s->owed = 0;
  if (s->finished) return;                         // the response came whole: the client has it, or will
  if (error == 0) error = NGHTTP2_INTERNAL_ERROR;  // RST_STREAM(NO_ERROR) before the response ended
  if (!s->answered && error == NGHTTP2_REFUSED_STREAM && s->replay_ok && ++s->refusals <= kMaxRefusals) {
    // The endpoint did not process it (RFC 9113 §8.7: a GOAWAY's streams
    // past its last, a concurrency limit): sent again, whole, over a
    // connection that takes it (not marked as tried: a GOAWAY'd connection
    // takes no new stream, so even a single endpoint gets it again).
    s->body = s->replay;
    route(s);
    return;
  }
  if (!s->answered) {
    answer(s, 502, error == NGHTTP2_REFUSED_STREAM ? "refused_stream" : "upstream_reset");
    return;
  }
  finish(s, false, "upstream_reset");
  client_.conn->reset(s->down, error);
}

void H2Forward::on_upstream_lost(H2Stream* s, const SocketAddr& from, Lost how, std::string_view why) noexcept {
  leave_endpoint(s);
  mark_dirty();
  if (s->finished) return;  // its response came whole: the client has it, or will
  if (how == Lost::kConnectFailed)
    for (size_t i = 0; i < set_->endpoints.size() && i < 64; ++i)
      if (set_->endpoints[i].address == from) s->tried |= uint64_t{1} << i;
  // (Not when the worker cuts everything at its drain deadline.)
  const bool resend = why == "shutdown"             ? false
                      : how == Lost::kConnectFailed ? s->attempts < discovery::kMaxConnectAttempts
                      : how == Lost::kNotSent       ? ++s->refusals <= kMaxRefusals
                                                    : false;
  if (resend) {
    route(s);
    return;
  }
  if (!s->answered) {
    // Never sent: the mesh could not get it to the service (503); sent on
    // a connection that broke: no answer came (502).
    if (how == Lost::kBroken)
      answer(s, 502, "upstream_reset");
    else
      answer(s, 503, why);
    return;
  }
  finish(s, false, "upstream_reset");
  client_.conn->reset(s->down, NGHTTP2_INTERNAL_ERROR);
}

// --- answers and outcomes -------------------------------------------------------

// The mesh's own answer to a stream no endpoint answered.
void H2Forward::answer(H2Stream* s, uint16_t status, std::string_view reason) noexcept {
  mark_dirty();
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

void H2Forward::finish(H2Stream* s, bool complete, std::string_view error) noexcept {
  if (s->finished) return;
  s->finished = true;
  if (s->status != 0)
    tap_->on_response(s->tag, s->status, s->ttfb_us, complete,
                      http::reported_grpc_status(s->grpc, s->grpc_status, complete));
  else
    tap_->on_failure(s->tag, error);
}

// --- the client's socket ----------------------------------------------------------

void H2Forward::flush_now() noexcept {
  dirty = false;
  if (client_.flush(*worker_) == H2Pipe::Flush::kDone) client_.shut(*worker_);
  check_end();
}

void H2Forward::on_complete(io::Op& op, const io_uring_cqe& cqe) noexcept {
  if (!client_.closing) {
    last_active_ms_ = worker_->now_ms();
    if (op.kind == H2Pipe::kRecvOp) {
      if (cqe.res <= 0) {
        error_ = cqe.res == 0 ? TcpError::kNone : TcpError::kClientReset;
        close_all(cqe.res == 0 ? "closed" : "client_reset");
      } else {
        tcp().read_bytes.add(static_cast<uint64_t>(cqe.res));
        bool unused = false;
        std::string why;
        if (client_.take(cqe.res, &unused, &why) != H2Pipe::Read::kOk) {
          error_ = TcpError::kClientReset;
          client_.flushed_close = true;  // the GOAWAY nghttp2 queued goes first
          close_all("h2_protocol");
        }
        client_.recv(*worker_);
        mark_dirty();
      }
    } else if (op.kind == H2Pipe::kSendOp) {
      if (cqe.res < 0) {
        error_ = TcpError::kClientReset;
        close_all("client_reset");
      } else {
        tcp().write_bytes.add(static_cast<uint64_t>(cqe.res));
        client_.sent(cqe.res);
        mark_dirty();
      }
    }
  }
  client_.settle();
  worker_->flush_h2();
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
  if (!client_.flushed_close) client_.shut(*worker_);
  mark_dirty();
}

void H2Forward::check_end() noexcept {
  // The client's connection finished (both ends said GOAWAY, no stream
  // open) or broke: everything goes.
  if (!ending_ && client_.closing) close_all("closed");
}

void H2Forward::sweep(uint64_t now_ms) noexcept {
  if (ending_) {
    // A client that does not read what is left for it (a GOAWAY) holds the
    // socket no longer.
    if (now_ms >= end_deadline_ms_) abort();
    return;
  }
  std::vector<H2Stream*> late;
  for (auto& [id, s] : streams_)
    if (s->deadline_ms != 0 && now_ms >= s->deadline_ms && !s->answered) late.push_back(s.get());
  for (H2Stream* s : late) answer(s, 504, "request_timeout");
  const uint64_t idle = worker_->config().idle_timeout_ms;
  if (idle != 0 && streams_.empty() && now_ms >= last_active_ms_ + idle) {
    error_ = TcpError::kIdleTimeout;
    client_.conn->goaway(0);
    mark_dirty();
  }
  worker_->flush_h2();
}

void H2Forward::drain() noexcept {
  if (ending_) return;
  client_.conn->goaway(0);
  mark_dirty();
  worker_->flush_h2();
}

void H2Forward::abort() noexcept {
  if (!ending_) {
    error_ = TcpError::kShutdown;
    close_all("shutdown");
  }
  if (client_.fd >= 0) io::set_reset_on_close(client_.fd);
  client_.shut(*worker_);
}

}  // namespace meshd::proxy
