#include "discovery/client.h"

#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>

#include "base/clock.h"
#include "base/log.h"
#include "discovery/controller_call.h"
#include "io/socket.h"
#include "transport/tls_context.h"

namespace meshd::discovery {

namespace {
// How often the thread wakes at least (eviction, connect deadlines).
constexpr int kTickMs = 1000;
// Answers to garbage are not worth more than this many frames' memory.
constexpr uint32_t kMaxFrame = 4u << 20;
}  // namespace

DiscoveryClient::DiscoveryClient(ClientOptions options)
    : options_(std::move(options)),
      table_(std::make_shared<DestinationTable>()),
      decoder_(kMaxFrame),
      random_(static_cast<uint64_t>(monotonic_ms()) ^ (static_cast<uint64_t>(getpid()) << 32)) {
  wake_fd_ = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
  // Replicas share the load: each proxy starts at a random one.
  if (!options_.controllers.empty()) current_ = random_.below(static_cast<uint32_t>(options_.controllers.size()));
}

DiscoveryClient::~DiscoveryClient() {
  stop();
  io::close_fd(wake_fd_);
}

void DiscoveryClient::start() {
  if (options_.controllers.empty() || thread_.joinable()) return;
  for (const auto& name : options_.pinned_services) want_service(name);
  thread_ = std::thread([this] {
    run();
    transport::release_thread_crypto();  // its streams to the controller may be TLS
  });
}

void DiscoveryClient::stop() {
  if (!thread_.joinable()) return;
  stopping_.store(true);
  uint64_t one = 1;
  ssize_t ignored = ::write(wake_fd_, &one, sizeof one);
  (void)ignored;
  thread_.join();
}

std::shared_ptr<const DestinationTable> DiscoveryClient::table() const noexcept {
  std::lock_guard lock(table_mu_);
  return table_;
}

void DiscoveryClient::want(const SocketAddr& dst) noexcept {
  {
    std::lock_guard lock(want_mu_);
    // A burst of connections to one new address asks once per burst.
    if (!wanted_.empty() && wanted_.back() == dst) return;
    if (wanted_.size() >= 4096) return;  // the client is behind; they go direct
    wanted_.push_back(dst);
  }
  uint64_t one = 1;
  ssize_t ignored = ::write(wake_fd_, &one, sizeof one);
  (void)ignored;
}

void DiscoveryClient::want_service(const std::string& name) {
  {
    std::lock_guard lock(want_mu_);
    if (!wanted_names_.empty() && wanted_names_.back() == name) return;
    if (wanted_names_.size() >= 4096) return;
    wanted_names_.push_back(name);
  }
  uint64_t one = 1;
  ssize_t ignored = ::write(wake_fd_, &one, sizeof one);
  (void)ignored;
}

ClientStatus DiscoveryClient::status() const {
  std::lock_guard lock(status_mu_);
  return status_;
}

void DiscoveryClient::run() {
  uint64_t next_evict = monotonic_ms() + kTickMs;
  while (!stopping_.load()) {
    uint64_t now = monotonic_ms();
    if (fd_ < 0 && now >= next_attempt_) connect_next(now);
    pollfd p[2] = {{wake_fd_, POLLIN, 0}, {fd_, 0, 0}};
    if (fd_ >= 0)
      p[1].events = static_cast<short>(connecting_ ? POLLOUT : (POLLIN | (out_sent_ < out_.size() ? POLLOUT : 0)));
    int timeout = kTickMs;
    if (fd_ < 0 && next_attempt_ > now) timeout = static_cast<int>(std::min<uint64_t>(next_attempt_ - now, kTickMs));
    if (connecting_)
      timeout = static_cast<int>(std::min<uint64_t>(connect_deadline_ > now ? connect_deadline_ - now : 0, kTickMs));
    ::poll(p, fd_ >= 0 ? 2 : 1, timeout);
    now = monotonic_ms();
    if (p[0].revents & POLLIN) {
      uint64_t v;
      ssize_t ignored = ::read(wake_fd_, &v, sizeof v);
      (void)ignored;
    }
    take_wanted();
    if (fd_ >= 0 && connecting_) {
      if (p[1].revents & (POLLOUT | POLLERR | POLLHUP)) {
        int err = 0;
        socklen_t len = sizeof err;
        getsockopt(fd_, SOL_SOCKET, SO_ERROR, &err, &len);
        if (err != 0)
          disconnect(std::string("connect: ") + strerror(err), now);
        else
          on_connected(now);
      } else if (now >= connect_deadline_) {
        disconnect("no answer to connect within " + std::to_string(options_.connect_timeout_ms) + " ms", now);
      }
    } else if (fd_ >= 0) {
      if (p[1].revents & (POLLIN | POLLHUP | POLLERR)) read_stream(now);
      if (fd_ >= 0 && (p[1].revents & POLLOUT)) write_stream();
    }
    if (now >= next_evict) {
      evict(now);
      next_evict = now + kTickMs;
    }
    if (fd_ >= 0 && !tls_error_.empty()) disconnect(tls_error_, now);
    if (fd_ >= 0 && !connecting_ && out_sent_ < out_.size()) write_stream();
    if (dirty_) publish();
  }
  if (fd_ >= 0) io::close_fd(fd_);
  fd_ = -1;
  connected_.store(false);
}

void DiscoveryClient::connect_next(uint64_t now) {
  const HostPort& name = options_.controllers[current_];
  {
    std::lock_guard lock(status_mu_);
    status_.controller = name.str();
    ++status_.streams_started;
  }
  // A name is resolved again for every stream: a controller that moved is
  // followed. Blocking here is fine: this is the client's own thread.
  auto resolved = controller_address(name, options_.resolver, options_.connect_timeout_ms);
  if (!resolved) {
    disconnect(resolved.error(), monotonic_ms());
    return;
  }
  const SocketAddr& addr = *resolved;
  fd_ = ::socket(addr.family(), SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd_ < 0) {
    disconnect(std::string("socket: ") + strerror(errno), now);
    return;
  }
  int one = 1;
  setsockopt(fd_, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  connecting_ = true;
  connect_deadline_ = now + options_.connect_timeout_ms;
  if (::connect(fd_, addr.sa(), addr.len()) == 0) {
    on_connected(now);
  } else if (errno != EINPROGRESS) {
    disconnect(std::string("connect: ") + strerror(errno), now);
  }
}

void DiscoveryClient::on_connected(uint64_t) {
  connecting_ = false;
  if (options_.tls.on()) {
    // Requests queue behind the handshake; the controller's certificate is
    // checked before any of them leaves, and the stream is up only then
    // (a controller of another mesh is never "connected", and is retried
    // with backoff).
    tls_ = std::make_unique<transport::StreamTls>();
    if (auto ok = tls_->start(options_.tls.ctx, options_.tls.peer_check(), &out_); !ok) tls_error_ = ok.error();
  } else {
    on_stream_up();
  }
  dirty_ = true;
  // Everything known is asked again; the old answers serve until the new
  // ones arrive.
  subscriptions_.clear();
  for (auto& [key, a] : addresses_) subscribe_address(a);
  for (auto& [name, s] : services_)
    if (s.by_name) subscribe_name(name, s);
}

void DiscoveryClient::on_stream_up() {
  backoff_ms_ = 0;
  connected_.store(true);
  LOG_INFO("discovery", "connected to controller %s%s", options_.controllers[current_].str().c_str(),
           tls_ ? " (TLS, its certificate verified)" : "");
  std::lock_guard lock(status_mu_);
  status_.connected = true;
  status_.tls = tls_ != nullptr;
  status_.connected_since_unix_ms = unix_ms();
  status_.last_error.clear();
  status_.stale = !addresses_.empty() || !services_.empty();
}

void DiscoveryClient::disconnect(const std::string& why, uint64_t now) {
  const bool was_connected = connected_.load();  // its stream was up (TLS: verified)
  if (fd_ >= 0) io::close_fd(fd_);
  fd_ = -1;
  connecting_ = false;
  connected_.store(false);
  out_.clear();
  out_sent_ = 0;
  tls_.reset();
  tls_error_.clear();
  decoder_ = proto::FrameDecoder(kMaxFrame);
  subscriptions_.clear();
  const std::string controller = options_.controllers[current_].str();
  LOG_WARN("discovery", "controller %s: %s; keeping what it said, trying the next replica", controller.c_str(),
           why.c_str());
  // Stale from here: kept and served until a new stream answers again.
  for (auto& [key, a] : addresses_) a.sub_id = 0;
  for (auto& [name, s] : services_) {
    s.sub_ids.clear();
    if (s.fresh) {
      s.fresh = false;
      s.set.reset();
      dirty_ = true;
    }
  }
  current_ = (current_ + 1) % options_.controllers.size();
  // Full jitter over an exponential backoff, so proxies that lost the same
  // replica do not all arrive at the next one in the same instant.
  backoff_ms_ = backoff_ms_ == 0 ? options_.backoff_min_ms : std::min(backoff_ms_ * 2, options_.backoff_max_ms);
  next_attempt_ = now + backoff_ms_ / 2 + random_.below(static_cast<uint32_t>(backoff_ms_ / 2 + 1));
  std::lock_guard lock(status_mu_);
  status_.connected = false;
  status_.tls = false;
  if (was_connected) ++status_.streams_failed;
  status_.last_error = controller + ": " + why;
  status_.stale = true;
}

void DiscoveryClient::send(const proto::Request& req) {
  if (fd_ < 0) return;
  if (!tls_) {
    proto::append_frame(req, &out_);
    return;
  }
  std::string frame;
  proto::append_frame(req, &frame);
  // Callers iterate the subscriptions: a failure ends the stream later, in run().
  if (auto ok = tls_->send(frame, &out_); !ok && tls_error_.empty()) tls_error_ = ok.error();
}

void DiscoveryClient::write_stream() {
  while (out_sent_ < out_.size()) {
    ssize_t n = ::send(fd_, out_.data() + out_sent_, out_.size() - out_sent_, MSG_NOSIGNAL);
    if (n < 0) {
      if (errno == EAGAIN || errno == EINTR) return;
      disconnect(std::string("send: ") + strerror(errno), monotonic_ms());
      return;
    }
    out_sent_ += static_cast<size_t>(n);
  }
  out_.clear();
  out_sent_ = 0;
}

void DiscoveryClient::read_stream(uint64_t now) {
  char buf[65536];
  for (int round = 0; round < 16 && fd_ >= 0; ++round) {
    ssize_t n = ::recv(fd_, buf, sizeof buf, 0);
    if (n == 0) {
      disconnect(tls_ && !tls_->established() ? "closed the stream during the TLS handshake (is it started with "
                                                "--identity-dir? without, it speaks plaintext)"
                                              : "closed the stream",
                 now);
      return;
    }
    if (n < 0) {
      if (errno == EAGAIN || errno == EINTR) return;
      disconnect(std::string("recv: ") + strerror(errno), now);
      return;
    }
    if (!tls_) {
      decoder_.feed(std::string_view(buf, static_cast<size_t>(n)));
    } else {
      const bool was_established = tls_->established();
      plain_.clear();
      auto ok = tls_->received(std::string_view(buf, static_cast<size_t>(n)), &plain_, &out_);
      if (!ok) {
        write_stream();  // the alert, best effort
        if (fd_ >= 0) disconnect(ok.error(), now);
        return;
      }
      if (!was_established && tls_->established()) on_stream_up();
      decoder_.feed(plain_);
      if (plain_.capacity() > (1u << 20)) std::string().swap(plain_);  // a burst does not stay
    }
    proto::Response resp;
    while (decoder_.next_message(&resp)) {
      handle(resp, now);
      resp.Clear();
    }
    if (decoder_.failed()) {
      {
        std::lock_guard lock(status_mu_);
        ++status_.bad_frames;
      }
      disconnect("sent garbage (" + decoder_.error() + ")", now);
      return;
    }
    if (tls_ && tls_->peer_closed()) {
      disconnect("closed the stream", now);
      return;
    }
  }
}

void DiscoveryClient::take_wanted() {
  std::vector<SocketAddr> addrs;
  std::vector<std::string> names;
  {
    std::lock_guard lock(want_mu_);
    addrs.swap(wanted_);
    names.swap(wanted_names_);
  }
  for (const auto& a : addrs) {
    std::string key = a.str();
    auto it = addresses_.find(key);
    if (it != addresses_.end()) continue;
    if (addresses_.size() >= options_.max_destinations) continue;
    AddressState& st = addresses_[key];
    st.address = a;
    st.usage = std::make_shared<ServiceStats>("");
    st.usage->touch(monotonic_ms());
    subscribe_address(st);
  }
  for (const auto& n : names) {
    ServiceState& s = service_state(n);
    s.stats->touch(monotonic_ms());
    if (!s.by_name) {
      s.by_name = true;
      subscribe_name(n, s);
    }
  }
}

void DiscoveryClient::subscribe_address(AddressState& a) {
  if (fd_ < 0 || connecting_) return;
  proto::Request req;
  a.sub_id = next_id_++;
  req.set_id(a.sub_id);
  req.mutable_subscribe()->set_address(a.address.str());
  subscriptions_[a.sub_id] = {true, a.address.str()};
  send(req);
}

void DiscoveryClient::subscribe_name(const std::string& name, ServiceState& s) {
  if (fd_ < 0 || connecting_) return;
  proto::Request req;
  uint64_t id = next_id_++;
  req.set_id(id);
  req.mutable_subscribe()->set_service(name);
  subscriptions_[id] = {false, name};
  s.sub_ids.push_back(id);
  send(req);
}

DiscoveryClient::ServiceState& DiscoveryClient::service_state(const std::string& name) {
  ServiceState& s = services_[name];
  if (!s.stats) s.stats = stats_for(name);
  return s;
}

std::shared_ptr<ServiceStats> DiscoveryClient::stats_for(const std::string& name) {
  auto& p = stats_[name];
  if (!p) p = std::make_shared<ServiceStats>(name);
  return p;
}

void DiscoveryClient::handle(const proto::Response& resp, uint64_t now) {
  (void)now;
  {
    std::lock_guard lock(status_mu_);
    status_.last_update_unix_ms = unix_ms();
  }
  if (!resp.error().empty()) {
    auto sub = subscriptions_.find(resp.id());
    if (sub == subscriptions_.end()) return;
    LOG_WARN("discovery", "controller refused subscribing to %s: %s", sub->second.key.c_str(), resp.error().c_str());
    // Treated as "no service": the destination is used as dialled.
    if (sub->second.by_address) {
      if (auto a = addresses_.find(sub->second.key); a != addresses_.end()) {
        a->second.service.clear();
        a->second.answered = true;
        dirty_ = true;
      }
    }
    return;
  }
  if (!resp.has_update()) return;
  // Updates are routed by what they are about, not by request id: the
  // controller sends a service's changes under the id of the latest
  // subscription that led to it.
  const proto::ServiceUpdate& u = resp.update();
  bool wanted = services_.contains(u.service());
  if (!u.address().empty()) {
    auto a = addresses_.find(u.address());
    if (a != addresses_.end()) {
      a->second.service = u.service();
      a->second.answered = true;
      dirty_ = true;
      wanted = true;
    }
  }
  if (u.service().empty() || !wanted) return;
  ServiceState& s = service_state(u.service());
  if (std::find(s.sub_ids.begin(), s.sub_ids.end(), resp.id()) == s.sub_ids.end()) s.sub_ids.push_back(resp.id());
  apply_update(u, u.service());
  recheck_addresses(u.service());
}

void DiscoveryClient::apply_update(const proto::ServiceUpdate& u, const std::string& name) {
  ServiceState& s = service_state(name);
  if (u.snapshot()) {
    s.endpoints.clear();
    s.definition.Clear();
    s.policies.clear();
  }
  for (uint32_t port : u.removed_policies()) s.policies.erase(port);
  for (const auto& p : u.policies()) s.policies[p.port()] = p;
  s.exists = u.exists();
  s.fresh = true;
  if (u.has_definition()) s.definition = u.definition();
  for (const auto& r : u.removed()) s.endpoints.erase(r);
  for (const auto& e : u.upserted()) s.endpoints[e.address()] = e;
  // Health belongs to endpoints that exist: forget the others'.
  std::erase_if(s.health, [&](const auto& kv) { return !s.endpoints.contains(kv.first); });
  s.set.reset();
  dirty_ = true;
}

void DiscoveryClient::recheck_addresses(const std::string& service) {
  // An address that left the service (a VIP dropped, an endpoint removed)
  // may belong to another one now: ask again rather than guess.
  const ServiceState& s = services_[service];
  for (auto& [key, a] : addresses_) {
    if (a.service != service || !a.answered) continue;
    bool still = s.endpoints.contains(key);
    for (const auto& v : s.definition.virtual_addresses()) {
      auto parsed = SocketAddr::parse(v);
      if (parsed && parsed->str() == key) still = true;
    }
    if (!still) {
      a.service.clear();
      a.answered = false;
      subscribe_address(a);
      dirty_ = true;
    }
  }
}

void DiscoveryClient::evict(uint64_t now) {
  const uint64_t idle = options_.evict_after_ms;
  std::set<std::string> in_use;
  for (auto it = addresses_.begin(); it != addresses_.end();) {
    AddressState& a = it->second;
    uint64_t last = a.usage->last_used_ms.load(std::memory_order_relaxed);
    if (!a.service.empty())
      if (auto s = services_.find(a.service); s != services_.end())
        last = std::max(last, s->second.stats->last_used_ms.load(std::memory_order_relaxed));
    if (last + idle > now) {
      if (!a.service.empty()) in_use.insert(a.service);
      ++it;
      continue;
    }
    if (a.service.empty() && a.sub_id != 0 && fd_ >= 0 && !connecting_) {
      proto::Request req;
      req.set_id(next_id_++);
      req.mutable_unsubscribe()->set_id(a.sub_id);
      send(req);
    }
    subscriptions_.erase(a.sub_id);
    it = addresses_.erase(it);
    dirty_ = true;
  }
  for (auto it = services_.begin(); it != services_.end();) {
    ServiceState& s = it->second;
    bool pinned = std::find(options_.pinned_services.begin(), options_.pinned_services.end(), it->first) !=
                  options_.pinned_services.end();
    bool used = pinned || in_use.contains(it->first) ||
                (s.by_name && s.stats->last_used_ms.load(std::memory_order_relaxed) + idle > now);
    if (used) {
      ++it;
      continue;
    }
    for (uint64_t id : s.sub_ids) {
      if (fd_ >= 0 && !connecting_) {
        proto::Request req;
        req.set_id(next_id_++);
        req.mutable_unsubscribe()->set_id(id);
        send(req);
      }
      subscriptions_.erase(id);
    }
    it = services_.erase(it);
    dirty_ = true;
  }
  // Counters of services long gone are dropped past a bound, oldest first.
  if (stats_.size() > 4 * options_.max_destinations) {
    std::erase_if(stats_, [&](const auto& kv) { return !services_.contains(kv.first) && kv.second.use_count() == 1; });
  }
}

std::shared_ptr<const EndpointSet> DiscoveryClient::build_set(const std::string& name, ServiceState& s) {
  if (s.set) return s.set;
  auto set = std::make_shared<EndpointSet>();
  set->service = name;
  set->exists = s.exists;
  set->stale = !s.fresh;
  set->opaque = s.definition.protocol() == proto::PROTOCOL_OPAQUE;
  set->request_timeout_ms = s.definition.request_timeout_ms();
  set->retry_statuses_set = s.definition.retry_statuses_set();
  for (uint32_t status : s.definition.retry_statuses()) set->retry_statuses.push_back(static_cast<uint16_t>(status));
  set->stats = s.stats;
  for (const auto& [port, p] : s.policies) set->policies.push_back(p);
  for (const auto& [addr, e] : s.endpoints) {
    auto parsed = SocketAddr::parse(addr);
    if (!parsed) continue;  // the controller validates; a bad one is skipped, not fatal
    Endpoint ep;
    ep.address = *parsed;
    ep.weight = e.weight() == 0 ? 100 : e.weight();
    ep.meshed = e.meshed();
    ep.identity = e.identity();
    ep.labels.insert(e.labels().begin(), e.labels().end());
    auto& h = s.health[addr];
    if (!h) h = std::make_shared<EndpointHealth>();
    ep.health = h;
    set->endpoints.push_back(std::move(ep));
  }
  s.set = set;
  return set;
}

void DiscoveryClient::publish() {
  dirty_ = false;
  auto t = std::make_shared<DestinationTable>();
  for (auto& [key, a] : addresses_) {
    if (!a.answered && a.sub_id != 0) continue;  // asked on this stream: not known yet
    Destination d;
    if (a.service.empty()) {
      if (!a.answered) continue;
      auto neg = std::make_shared<EndpointSet>();
      neg->stats = a.usage;
      d.set = neg;
    } else {
      auto s = services_.find(a.service);
      if (s == services_.end()) continue;
      d.set = build_set(a.service, s->second);
      for (const auto& v : s->second.definition.virtual_addresses()) {
        auto parsed = SocketAddr::parse(v);
        if (parsed && parsed->str() == key) d.virtual_address = true;
      }
    }
    t->by_address.emplace(AddrKey::of(a.address), std::move(d));
  }
  for (auto& [name, s] : services_)
    if (s.by_name) t->by_name.emplace(name, build_set(name, s));
  for (const auto& [name, st] : stats_) t->stats.push_back(st);
  bool stale = fd_ < 0 || connecting_;
  for (const auto& [name, s] : services_) stale = stale || !s.fresh;
  {
    std::lock_guard lock(table_mu_);
    table_ = std::move(t);
  }
  version_.fetch_add(1, std::memory_order_release);
  {
    std::lock_guard lock(status_mu_);
    status_.stale = stale;
    status_.destinations = addresses_.size();
    status_.services = services_.size();
  }
  if (published_) published_();
}

}  // namespace meshd::discovery
