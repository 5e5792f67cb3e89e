#include "discovery/registrar.h"

#include <arpa/inet.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <random>

#include "base/log.h"
#include "discovery/controller_call.h"
#include "io/socket.h"
#include "transport/tls_context.h"

namespace meshd::discovery {

namespace {
constexpr uint64_t kCallTimeoutMs = 2000;
}

Registrar::Registrar(std::vector<HostPort> controllers, Resolver* resolver, std::vector<Registration> registrations,
                     uint64_t lease_ms, std::string identity, ControlTls tls)
    : controllers_(std::move(controllers)),
      resolver_(resolver),
      registrations_(std::move(registrations)),
      lease_ms_(lease_ms),
      identity_(std::move(identity)),
      tls_(std::move(tls)) {
  char host[256] = "localhost";
  gethostname(host, sizeof host - 1);
  hostname_ = host;
  owner_ = "lease:" + hostname_;
}

Registrar::~Registrar() { stop(); }

std::string Registrar::endpoint_address(uint16_t port) const {
  SocketAddr a = *local_;
  a.set_port(port);
  return a.str();
}

void Registrar::start() {
  if (registrations_.empty() || controllers_.empty()) return;
  thread_ = std::thread([this] {
    run();
    transport::release_thread_crypto();  // its streams to the controller may be TLS
  });
}

void Registrar::stop() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (stopping_) return;
    stopping_ = true;
  }
  cv_.notify_all();
  if (thread_.joinable()) {
    thread_.join();
    deregister_all();
  }
}

bool Registrar::register_once(const HostPort& name) {
  auto controller = controller_address(name, resolver_, kCallTimeoutMs);
  if (!controller) {
    LOG_WARN("registrar", "%s", controller.error().c_str());
    return false;
  }
  auto local = io::local_address_towards(*controller);
  if (!local) return false;
  if (!local_ || local_->host() != local->host()) {
    local_ = local;
    // The owner names this proxy: the host name alone is not unique (pods
    // and containers may share one), its address towards the controller is.
    owner_ = "lease:" + hostname_ + "/" + local->host();
    if (local->is_loopback())
      LOG_WARN("registrar", "registering on loopback (%s): only this host can reach these endpoints",
               local->host().c_str());
  }
  proto::Request req;
  req.set_id(1);
  auto* reg = req.mutable_register_();
  reg->set_owner(owner_);
  reg->set_lease_ms(lease_ms_);
  for (const auto& r : registrations_) {
    std::string addr = endpoint_address(r.port);
    proto::Entry* e = reg->add_entries();
    e->set_service(r.service);
    e->set_endpoint(addr);
    e->mutable_address_of()->set_address(addr);
    e->mutable_address_of()->set_weight(100);
    e->mutable_address_of()->set_meshed(true);  // this proxy's inbound fronts it
    if (!identity_.empty()) e->mutable_address_of()->set_identity(identity_);
  }
  auto resp = controller_call(*controller, name.str(), req, kCallTimeoutMs, tls_);
  if (!resp || !resp->error().empty()) {
    LOG_WARN("registrar", "registering with %s failed: %s", name.str().c_str(),
             resp ? resp->error().c_str() : resp.error().c_str());
    return false;
  }
  return true;
}

void Registrar::run() {
  std::mt19937_64 rng(std::random_device{}());
  uint64_t backoff_ms = 250;
  bool registered = false;
  std::unique_lock<std::mutex> lock(mu_);
  while (!stopping_) {
    lock.unlock();
    bool ok = false;
    for (size_t i = 0; i < controllers_.size() && !ok; ++i) {
      size_t idx = (current_ + i) % controllers_.size();
      ok = register_once(controllers_[idx]);
      if (ok) current_ = idx;
    }
    if (ok && !registered)
      LOG_INFO("registrar", "registered %zu service(s) as %s with %s (lease %llu ms)", registrations_.size(),
               owner_.c_str(), controllers_[current_].str().c_str(), static_cast<unsigned long long>(lease_ms_));
    registered = ok;
    // Renew well inside the lease; retry sooner, backing off, on failure.
    // Jitter keeps a fleet of proxies from renewing in lockstep.
    uint64_t wait_ms = ok ? lease_ms_ / 3 : backoff_ms;
    backoff_ms = ok ? 250 : std::min<uint64_t>(backoff_ms * 2, std::max<uint64_t>(lease_ms_ / 3, 1000));
    wait_ms = wait_ms * (90 + rng() % 21) / 100;
    lock.lock();
    cv_.wait_for(lock, std::chrono::milliseconds(wait_ms), [this] { return stopping_; });
  }
}

void Registrar::deregister_all() {
  if (controllers_.empty() || !local_) return;
  const HostPort& name = controllers_[current_];
  auto controller = controller_address(name, resolver_, 1000);
  if (!controller) {
    LOG_WARN("registrar", "not deregistering (the lease will expire): %s", controller.error().c_str());
    return;
  }
  for (const auto& r : registrations_) {
    proto::Request req;
    req.set_id(1);
    auto* d = req.mutable_deregister();
    d->set_owner(owner_);
    d->set_service(r.service);
    d->set_endpoint(endpoint_address(r.port));
    auto resp = controller_call(*controller, name.str(), req, 1000, tls_);
    if (!resp || !resp->error().empty())
      LOG_WARN("registrar", "deregistering %s from %s failed (its lease will expire): %s", r.service.c_str(),
               name.str().c_str(), resp ? resp->error().c_str() : resp.error().c_str());
  }
}

}  // namespace meshd::discovery
