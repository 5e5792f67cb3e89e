#include "controller/api_server.h"

#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <google/protobuf/io/coded_stream.h>

#include <algorithm>
#include <cerrno>

#include "base/log.h"
#include "io/socket.h"

namespace meshd::controller {

ApiServer::~ApiServer() {
  for (auto& c : clients_) io::close_fd(c->fd);
  io::close_fd(listen_fd_);
}

Parsed<bool> ApiServer::listen(const SocketAddr& addr) {
  if (addr.port() != 0)
    if (auto free = io::ensure_address_free(addr); !free)
      return invalid("cannot listen on " + addr.str() + ": " + free.error().what());
  auto fd = io::listen_tcp(addr, false, 1024);
  if (!fd) return invalid("cannot listen on " + addr.str() + ": " + fd.error().what());
  listen_fd_ = *fd;
  return true;
}

SocketAddr ApiServer::local_address() const {
  auto a = io::local_addr(listen_fd_);
  return a ? *a : SocketAddr();
}

void ApiServer::run(int stop_fd, unsigned tick_ms, const std::function<void()>& tick) {
  std::vector<pollfd> fds;
  while (true) {
    fds.clear();
    fds.push_back({stop_fd, POLLIN, 0});
    fds.push_back({clients_.size() < kMaxClients ? listen_fd_ : -1, POLLIN, 0});
    for (auto& c : clients_) {
      short events = POLLIN;
      if (c->sent < c->out.size()) events |= POLLOUT;
      fds.push_back({c->fd, events, 0});
    }
    const size_t polled_clients = clients_.size();
    fds.push_back({pod_reviews_ != nullptr ? pod_reviews_->fd() : -1, POLLIN, 0});
    const size_t hook_first = fds.size();
    int timeout = static_cast<int>(tick_ms);
    if (hook_ != nullptr) {
      hook_->add_fds(&fds);
      timeout = std::clamp(hook_->timeout_ms(), 0, timeout);
    }
    int n = poll(fds.data(), fds.size(), timeout);
    if (n < 0 && errno != EINTR) {
      LOG_ERROR("api", "poll failed: %s", strerror(errno));
      return;
    }
    if (fds[0].revents) return;
    if (fds[1].revents & POLLIN) accept_clients();
    // clients_ may grow in accept_clients(); only the polled ones are looked at.
    for (size_t i = 0; i < polled_clients; ++i) {
      Client& c = *clients_[i];
      short ev = fds[i + 2].revents;
      if (!c.closing && (ev & (POLLIN | POLLHUP | POLLERR))) read_from(c);
      if (!c.closing && (ev & POLLOUT)) write_to(c);
    }
    if (fds[hook_first - 1].revents & POLLIN) finish_reviews();
    if (hook_ != nullptr) hook_->on_events(std::span<const pollfd>(fds).subspan(hook_first));
    tick();
    // Closed streams leave, with their subscriptions.
    std::erase_if(clients_, [this](const std::unique_ptr<Client>& c) {
      if (!c->closing) return false;
      for (const auto& [service, id] : c->subscriptions) {
        auto it = subscribers_.find(service);
        if (it == subscribers_.end()) continue;
        it->second.erase(c.get());
        if (it->second.empty()) subscribers_.erase(it);
      }
      for (const auto& [address, id] : c->address_subscriptions) {
        auto it = address_waiters_.find(address);
        if (it == address_waiters_.end()) continue;
        it->second.erase(c.get());
        if (it->second.empty()) address_waiters_.erase(it);
      }
      io::close_fd(c->fd);
      stats_->streams_closed.inc();
      return true;
    });
  }
}

void ApiServer::accept_clients() {
  for (int i = 0; i < 64 && clients_.size() < kMaxClients; ++i) {
    sockaddr_storage ss{};
    socklen_t len = sizeof ss;
    int fd = accept4(listen_fd_, reinterpret_cast<sockaddr*>(&ss), &len, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (fd < 0) return;
    io::set_nodelay(fd);
    auto c = std::make_unique<Client>();
    c->id = ++streams_accepted_;
    c->fd = fd;
    c->peer = SocketAddr::from_sockaddr(reinterpret_cast<sockaddr*>(&ss), len).str();
    clients_.push_back(std::move(c));
    stats_->streams_opened.inc();
  }
}

void ApiServer::drop(Client& c, const std::string& why) {
  if (c.closing) return;
  LOG_WARN("api", "closing stream from %s: %s", c.peer.c_str(), why.c_str());
  c.closing = true;
}

void ApiServer::read_from(Client& c) {
  char buf[65536];
  ssize_t n = recv(c.fd, buf, sizeof buf, 0);
  if (n == 0 || (n < 0 && errno != EAGAIN && errno != EINTR)) {
    c.closing = true;  // the peer went away: nothing to say about it
    return;
  }
  if (n < 0) return;
  std::string_view bytes(buf, static_cast<size_t>(n));
  if (!c.started) {
    c.started = true;
    if (auto ok = start_stream(c, bytes); !ok) {
      drop(c, ok.error());
      return;
    }
  }
  if (!c.tls) {
    c.decoder.feed(bytes);
  } else {
    plain_.clear();
    auto ok = c.tls->received(bytes, &plain_, &c.out);
    write_to(c);  // handshake flights, or the alert that ends it
    if (!ok) {
      stats_->streams_closed_bad_input.inc();
      drop(c, ok.error());
      return;
    }
    c.decoder.feed(plain_);
    if (plain_.capacity() > (1u << 20)) std::string().swap(plain_);  // a burst does not stay
  }
  proto::Request req;
  while (!c.closing && c.decoder.next_message(&req)) {
    handle(c, req);
    req.Clear();
  }
  if (c.decoder.failed()) {
    stats_->streams_closed_bad_input.inc();
    drop(c, c.decoder.error());
  }
  if (c.tls && c.tls->peer_closed()) c.closing = true;
}

Parsed<void> ApiServer::start_stream(Client& c, std::string_view first) {
  if (tls_ == nullptr) return {};  // plaintext, as this controller has no certificate
  // Every TLS record, the ClientHello included, starts with content type 22.
  if (first.front() != 0x16) {
    LOG_DEBUG("api", "stream from %s is plaintext: discovery only, no certificates", c.peer.c_str());
    return {};
  }
  c.tls = std::make_unique<transport::StreamTls>();
  return c.tls->start(tls_, nullptr, &c.out);
}

void ApiServer::write_to(Client& c) {
  while (c.sent < c.out.size()) {
    ssize_t n = ::send(c.fd, c.out.data() + c.sent, c.out.size() - c.sent, MSG_NOSIGNAL);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && errno == EAGAIN) break;
    if (n <= 0) {
      c.closing = true;
      return;
    }
    c.sent += static_cast<size_t>(n);
  }
  if (c.sent == c.out.size()) {
    c.out.clear();
    c.sent = 0;
  } else if (c.sent > (1u << 20)) {
    c.out.erase(0, c.sent);
    c.sent = 0;
  }
}

void ApiServer::send(Client& c, const proto::Response& resp) {
  if (c.closing) return;
  if (!resp.error().empty()) stats_->requests_refused.inc();
  std::string frame;
  proto::append_frame(resp, &frame);
  send_frame(c, frame, {});
}

void ApiServer::queue(Client& c, std::string_view header, std::string_view body) {
  if (!c.tls) {
    c.out.append(header);
    c.out.append(body);
    return;
  }
  // One record for the frame, not one for its header and one for its body.
  frame_.assign(header);
  frame_.append(body);
  if (auto ok = c.tls->send(frame_, &c.out); !ok) drop(c, ok.error());
  if (frame_.capacity() > (1u << 20)) std::string().swap(frame_);
}

void ApiServer::send_frame(Client& c, std::string_view header, std::string_view body) {
  if (c.closing) return;
  queue(c, header, body);
  if (c.closing) return;
  if (c.out.size() - c.sent > kMaxQueuedBytes) {
    stats_->streams_closed_slow.inc();
    drop(c, "it does not read what it is sent (" + std::to_string(c.out.size() - c.sent) + " bytes queued)");
    return;
  }
  write_to(c);
}

void ApiServer::answer_certify(Client& c, uint64_t request_id, const proto::Certify& request,
                               const Parsed<std::string>* pod_review) {
  proto::Response resp;
  resp.set_id(request_id);
  if (auto cert = certifier_->certify(request, now_ms_() / 1000, pod_review); !cert) {
    LOG_INFO("api", "certificate for %s refused (%s): %s", request.identity().c_str(), c.peer.c_str(),
             cert.error().c_str());
    resp.set_error(cert.error());
  } else {
    LOG_DEBUG("api", "certificate issued for %s (%s)", request.identity().c_str(), c.peer.c_str());
    *resp.mutable_certified() = std::move(*cert);
  }
  send(c, resp);
}

void ApiServer::finish_reviews() {
  for (auto& done : pod_reviews_->take()) {
    // The stream may have closed meanwhile: then nobody waits for it.
    auto it = std::ranges::find_if(clients_, [&](const auto& c) { return c->id == done.job.stream; });
    if (it == clients_.end() || (*it)->closing) continue;
    answer_certify(**it, done.job.request_id, done.job.request, &done.identity);
  }
}

void ApiServer::handle(Client& c, const proto::Request& req) {
  stats_->requests.inc();
  proto::Response resp;
  resp.set_id(req.id());
  resp.set_now_unix_ms(now_ms_());
  // A join token, a revocation's proof and a certificate never cross in
  // clear, nor to a controller the client has not verified.
  const bool secret = req.kind_case() == proto::Request::kCertify || req.kind_case() == proto::Request::kRevokeToken;
  if (secret && !c.tls && certifier_ != nullptr) {
    resp.set_error(
        "certificates and revocations are served only over TLS: give the client the mesh's trust anchor "
        "(meshd --trust-anchors; meshd-ctl --trust-anchors or MESHD_TRUST_ANCHORS)");
    send(c, resp);
    return;
  }
  switch (req.kind_case()) {
    case proto::Request::kListServices: *resp.mutable_services() = controller_->services(); break;
    case proto::Request::kSubscribe: {
      const auto& sub = req.subscribe();
      if (c.subscriptions.size() + c.address_subscriptions.size() >= kMaxSubscriptionsPerStream) {
        resp.set_error("too many subscriptions on one stream (at most " + std::to_string(kMaxSubscriptionsPerStream) +
                       ")");
        break;
      }
      std::string service = sub.service();
      std::string address;
      if (service.empty()) {
        auto a = SocketAddr::parse(sub.address());
        if (!a) {
          resp.set_error("subscribe: " + a.error());
          break;
        }
        address = a->str();
        service = controller_->service_for_address(address);
        if (service.empty()) {
          // Known to no service yet: answer so, and follow up if one claims it.
          c.address_subscriptions[address] = req.id();
          address_waiters_[address].insert(&c);
          resp.mutable_update()->set_address(address);
          resp.mutable_update()->set_snapshot(true);
          break;
        }
      } else if (auto ok = validate_service_name(service); !ok) {
        resp.set_error(ok.error());
        break;
      }
      subscribe(c, service, req.id());
      *resp.mutable_update() = controller_->snapshot(service);
      resp.mutable_update()->set_address(address);
      break;
    }
    case proto::Request::kRegister:
    case proto::Request::kDeregister: {
      uint64_t now = now_ms_();
      auto changes = req.kind_case() == proto::Request::kRegister ? controller_->register_entries(req.register_(), now)
                                                                  : controller_->deregister(req.deregister(), now);
      if (!changes) {
        resp.set_error(changes.error());
        break;
      }
      resp.mutable_ack()->set_applied(static_cast<uint32_t>(changes->size()));
      // Answer first: the ack means "on disk"; then tell the subscribers.
      send(c, resp);
      publish(*changes);
      return;
    }
    case proto::Request::kRenew:
      if (auto ok = controller_->renew(req.renew().owner(), now_ms_()); !ok)
        resp.set_error(ok.error());
      else
        resp.mutable_ack();
      break;
    case proto::Request::kListMembers:
      if (members_)
        *resp.mutable_members() = members_();
      else
        resp.set_error("this controller does not gossip (start it with --cluster-key-file and --join)");
      break;
    case proto::Request::kCertify:
      if (certifier_ == nullptr) {
        resp.set_error("this controller issues no certificates (started without --identity-dir)");
        break;
      }
      if (req.certify().credential_case() == proto::Certify::kK8SToken && pod_reviews_ != nullptr) {
        if (auto ok = certifier_->check_request(req.certify()); !ok) {
          resp.set_error(ok.error());
          break;
        }
        // Answered when the review is done (finish_reviews), while this
        // thread serves everyone else.
        if (pod_reviews_->submit({c.id, req.id(), req.certify()})) return;
        resp.set_error("too many pods' tokens are waiting for review by the Kubernetes API server (at most " +
                       std::to_string(PodReviews::kMaxWaiting) + "): retry shortly");
        break;
      }
      answer_certify(c, req.id(), req.certify(), nullptr);
      return;
    case proto::Request::kRevokeToken:
      if (certifier_ == nullptr) {
        resp.set_error("this controller issues no certificates (started without --identity-dir)");
      } else if (auto ack = certifier_->revoke(req.revoke_token(), now_ms_()); !ack) {
        LOG_WARN("api", "revocation refused (%s): %s", c.peer.c_str(), ack.error().c_str());
        resp.set_error(ack.error());
      } else {
        *resp.mutable_ack() = *ack;
      }
      break;
    case proto::Request::kUnsubscribe:
      unsubscribe(c, req.unsubscribe().id());
      return;  // fire and forget: the subscription's updates simply stop
    case proto::Request::KIND_NOT_SET:
      resp.set_error("request " + std::to_string(req.id()) + " asks for nothing this controller knows");
      break;
  }
  send(c, resp);
}

void ApiServer::subscribe(Client& c, const std::string& service, uint64_t id) {
  c.subscriptions[service] = id;
  subscribers_[service].insert(&c);
}

void ApiServer::unsubscribe(Client& c, uint64_t id) {
  for (auto it = c.subscriptions.begin(); it != c.subscriptions.end(); ++it) {
    if (it->second != id) continue;
    if (auto s = subscribers_.find(it->first); s != subscribers_.end()) {
      s->second.erase(&c);
      if (s->second.empty()) subscribers_.erase(s);
    }
    c.subscriptions.erase(it);
    break;
  }
  for (auto it = c.address_subscriptions.begin(); it != c.address_subscriptions.end(); ++it) {
    if (it->second != id) continue;
    if (auto w = address_waiters_.find(it->first); w != address_waiters_.end()) {
      w->second.erase(&c);
      if (w->second.empty()) address_waiters_.erase(w);
    }
    c.address_subscriptions.erase(it);
    break;
  }
}

void ApiServer::resolve_waiting_addresses() {
  for (auto it = address_waiters_.begin(); it != address_waiters_.end();) {
    std::string service = controller_->service_for_address(it->first);
    if (service.empty()) {
      ++it;
      continue;
    }
    for (Client* c : it->second) {
      uint64_t id = c->address_subscriptions[it->first];
      c->address_subscriptions.erase(it->first);
      subscribe(*c, service, id);
      proto::Response resp;
      resp.set_id(id);
      *resp.mutable_update() = controller_->snapshot(service);
      resp.mutable_update()->set_address(it->first);
      send(*c, resp);
    }
    it = address_waiters_.erase(it);
  }
}

void ApiServer::publish(const Changes& changes) {
  using google::protobuf::io::CodedOutputStream;
  for (const auto& update : changes) {
    auto it = subscribers_.find(update.service());
    if (it == subscribers_.end()) continue;
    // The update is serialized once for all its subscribers; only the id
    // differs. Field 1 (id) comes first in a deterministic serialization,
    // so "id field + body without id" is the very bytes send() would make.
    proto::Response shared;
    *shared.mutable_update() = update;
    const std::string body = proto::serialize_deterministic(shared);
    // Copy: send_frame() may drop a slow client, which leaves the set later.
    std::vector<Client*> targets(it->second.begin(), it->second.end());
    for (Client* c : targets) {
      uint64_t id = c->subscriptions[update.service()];
      uint8_t head[proto::kFrameHeaderBytes + 1 + 10];  // header, tag, a varint64 (at most 10 bytes)
      uint8_t* p = head + proto::kFrameHeaderBytes;
      if (id != 0) {  // proto3: a zero id is not serialized at all
        *p++ = 0x08;  // field 1, varint
        p = CodedOutputStream::WriteVarint64ToArray(id, p);
      }
      auto n = static_cast<uint32_t>((p - head) - proto::kFrameHeaderBytes + body.size());
      head[0] = static_cast<uint8_t>(n >> 24);
      head[1] = static_cast<uint8_t>(n >> 16);
      head[2] = static_cast<uint8_t>(n >> 8);
      head[3] = static_cast<uint8_t>(n);
      send_frame(*c, std::string_view(reinterpret_cast<const char*>(head), static_cast<size_t>(p - head)), body);
    }
  }
  // Last, so that a stream that just learned its address's service gets
  // the snapshot (which includes these changes) and not the changes again.
  // Only when some address gained a service: a weight change resolves none.
  // Changes applied by gossip come through here too (Gossip's publish hook).
  if (!changes.empty() && !address_waiters_.empty() && controller_->address_generation() != waiters_checked_at_) {
    waiters_checked_at_ = controller_->address_generation();
    resolve_waiting_addresses();
  }
}

}  // namespace meshd::controller
