#include "proxy/worker.h"

#include <pthread.h>
#include <sched.h>
#include <sys/eventfd.h>
#include <time.h>
#include <unistd.h>

#include <new>

#include "base/clock.h"
#include "base/log.h"
#include "io/socket.h"
#include "proxy/http_tap.h"
#include "proxy/target.h"

namespace meshd::proxy {

using metrics::TcpError;

namespace {
// The loop wakes at least this often to run its timer sweep.
constexpr unsigned kTickMs = 100;
}  // namespace

Worker::Worker(unsigned index, int cpu, Shared* shared, metrics::WorkerStats* stats) noexcept
    : index_(index),
      cpu_(cpu),
      shared_(shared),
      stats_(stats),
      random_(monotonic_ms() * 0x9e3779b97f4a7c15ull + index),
      pool_(shared->config->upstream_idle_timeout_ms, &stats->upstream_idle, &stats->upstream_stale),
      pool_enabled_(shared->config->upstream_idle_timeout_ms != 0),
      wake_op_(this, 0) {
  // Made here, before any thread runs, so that a command sent while this
  // worker is still starting (another failed to) is never lost.
  wake_fd_ = eventfd(0, EFD_CLOEXEC);
}

Worker::~Worker() { io::close_fd(wake_fd_); }

void Worker::add_listener(const ListenerSpec* spec, int fd) {
  listeners_.push_back(std::make_unique<Listener>(this, spec, fd));
}

Result<void> Worker::init() noexcept {
  if (cpu_ >= 0) {
    cpu_set_t set;
    CPU_ZERO(&set);
    CPU_SET(cpu_, &set);
    pthread_setaffinity_np(pthread_self(), sizeof set, &set);
  }
  if (wake_fd_ < 0) return fail(EMFILE);
  if (auto r = ring_.init(4096); !r) return r;
  const config::Config& c = *shared_->config;
  if (auto r = buffers_.init(ring_.raw(), 0, c.buffers_per_thread, c.buffer_size); !r) return r;
  return {};
}

void Worker::command(Command c) noexcept {
  pending_.store(c, std::memory_order_release);
  uint64_t one = 1;
  ssize_t ignored = ::write(wake_fd_, &one, sizeof one);
  (void)ignored;
}

void Worker::notify() noexcept {
  uint64_t one = 1;
  ssize_t ignored = ::write(wake_fd_, &one, sizeof one);
  (void)ignored;
}

uint64_t Worker::now_us() const noexcept { return monotonic_us(); }

namespace {
// A published snapshot (discovery's table, the certificate, the policy),
// held by this worker and re-read only when its version moved: one atomic
// load per use, the source's lock only after it published something new.
template <class T, class Read>
const T* refreshed(uint64_t version, std::shared_ptr<const T>& held, uint64_t& held_version, Read read) {
  if (version != held_version || !held) {
    held = read();
    held_version = version;
  }
  return held.get();
}
}  // namespace

const discovery::DestinationTable* Worker::table() noexcept {
  return refreshed(shared_->discovery->version(), table_, table_version_,
                   [this] { return shared_->discovery->table(); });
}

const identity::Credential* Worker::credential() noexcept {
  if (shared_->identity == nullptr) return nullptr;
  return refreshed(shared_->identity->version(), credential_, credential_version_,
                   [this] { return shared_->identity->current(); });
}

const policy::PolicyTable* Worker::policy() noexcept {
  if (shared_->policy == nullptr) return nullptr;
  return refreshed(shared_->policy->version(), policy_, policy_version_, [this] { return shared_->policy->current(); });
}

uint64_t Worker::unix_ms() const noexcept { return meshd::unix_ms(); }

void Worker::arm_wakeup() noexcept {
  io_uring_sqe* s = ring_.sqe();
  io_uring_prep_read(s, wake_fd_, &wake_value_, sizeof wake_value_, 0);
  io::Ring::bind(s, wake_op_);
}

void Worker::on_complete(io::Op&, const io_uring_cqe&) noexcept {
  handle_command();
  if (pending_.load(std::memory_order_acquire) != Command::kStopNow) arm_wakeup();
}

void Worker::handle_command() noexcept {
  Command c = pending_.load(std::memory_order_acquire);
  if (c == Command::kNone) return;
  if (!draining_) {
    draining_ = true;
    drain_deadline_ms_ = now_ms_ + shared_->config->drain_timeout_ms;
    for (auto& l : listeners_) l->stop();
    pool_.clear();  // idle: nothing more will be asked of them
    for (auto& h : h2_) h->drain();
  }
  if (c == Command::kStopNow) drain_deadline_ms_ = now_ms_;
}

void Worker::run() noexcept {
  now_ms_ = monotonic_ms();
  arm_wakeup();
  for (auto& l : listeners_) l->arm();
  while (!finished()) {
    ring_.run_once(kTickMs);
    now_ms_ = monotonic_ms();
    if (!waiting_.empty()) resume_waiting();
    wake_buffer_waiters();
    sweep();
  }
  if (wake_op_.in_flight) ring_.cancel_op(wake_op_);
  io_uring_submit(ring_.raw());
}

bool Worker::finished() const noexcept {
  if (!draining_ || live_ != 0 || !h2_upstreams_.empty()) return false;
  for (const auto& l : listeners_)
    if (!l->stopped()) return false;
  return true;
}

void Worker::sweep() noexcept {
  pool_.expire(now_ms_);
  while (TcpForward* c = waiting_.front()) {
    if (c->deadline_ms > now_ms_) break;
    waiting_.pop_front();
    if (c->forward() != nullptr)
      route_name(c, *c->forward(), true);
    else
      c->connect_direct(c->target());  // no answer in time: as dialled, never a blackhole
  }
  while (TcpForward* c = detecting_.front()) {
    if (c->deadline_ms > now_ms_) break;
    c->detect_timed_out();
  }
  while (TcpForward* c = connecting_.front()) {
    if (c->deadline_ms > now_ms_) break;
    c->connect_timed_out();
  }
  while (TcpForward* c = awaiting_.front()) {
    if (c->request_deadline_ms > now_ms_) break;
    c->request_timed_out();
  }
  uint64_t idle = shared_->config->idle_timeout_ms;
  if (idle != 0) {
    while (TcpForward* c = idle_.front()) {
      if (c->deadline_ms + idle > now_ms_) break;
      c->close(TcpError::kIdleTimeout, false, false);
    }
  }
  const bool cut = draining_ && now_ms_ >= drain_deadline_ms_;
  for (size_t i = 0; i < h2_upstreams_.size();) {
    if (cut) h2_upstreams_[i]->abort();
    // Draining: a connection with no stream left closes at once.
    h2_upstreams_[i]->sweep(now_ms_, draining_ ? 0 : shared_->config->upstream_idle_timeout_ms);
    if (!h2_upstreams_[i]->done() || h2_upstreams_[i]->dirty) {
      ++i;
      continue;
    }
    h2_upstreams_[i] = std::move(h2_upstreams_.back());
    h2_upstreams_.pop_back();
  }
  flush_h2();
  for (size_t i = 0; i < h2_.size();) {
    if (cut) h2_[i]->abort();
    h2_[i]->sweep(now_ms_);
    if (!h2_[i]->done() || h2_[i]->dirty) {
      ++i;
      continue;
    }
    h2_[i] = std::move(h2_.back());
    h2_.pop_back();
    --live_;
    stats_->connections_live.add(static_cast<uint64_t>(-1));
    shared_->open_connections.fetch_sub(1, std::memory_order_relaxed);
  }
  if (draining_ && now_ms_ >= drain_deadline_ms_ && live_ != 0) {
    // Past the drain deadline: what is still open is cut, and says so.
    waiting_.for_each([](TcpForward* c) { c->close(TcpError::kShutdown, true, true); });
    connecting_.for_each([](TcpForward* c) { c->close(TcpError::kShutdown, true, true); });
    detecting_.for_each([](TcpForward* c) { c->close(TcpError::kShutdown, true, true); });
    idle_.for_each([](TcpForward* c) { c->close(TcpError::kShutdown, true, true); });
    buffer_waiters_.for_each([](TcpForward* c) { c->close(TcpError::kShutdown, true, true); });
  }
  if (!draining_)
    for (auto& l : listeners_)
      if (l->needs_rearm()) l->arm();
}

// Request deadlines are a fixed time after the request, so they mostly come
// in order: the walk from the back is short unless services' timeouts differ.
void Worker::await_response(TcpForward* c) noexcept {
  awaiting_.insert_from_back(
      c, [c](const TcpForward* other) { return other->request_deadline_ms > c->request_deadline_ms; });
}

bool Worker::terminate_h2(int fd, std::span<const char> first, const SocketAddr& dialled,
                          std::shared_ptr<const discovery::EndpointSet> set) noexcept {
  auto h = std::unique_ptr<H2Forward>(new (std::nothrow) H2Forward());
  if (!h || !h->start(this, fd, first, dialled, std::move(set))) return false;
  if (draining_) h->drain();
  h2_.push_back(std::move(h));
  // Counted as the connection it continues (its TcpForward uncounts itself).
  ++live_;
  stats_->connections_live.inc();
  shared_->open_connections.fetch_add(1, std::memory_order_relaxed);
  return true;
}

H2Upstream* Worker::h2_upstream(const discovery::Endpoint& ep) noexcept {
  const bool mtls = ep.meshed && !ep.identity.empty() && shared_->identity != nullptr;
  const std::string_view identity = mtls ? std::string_view(ep.identity) : std::string_view();
  for (auto& u : h2_upstreams_)
    if (u->is(ep.address, identity) && u->usable()) return u.get();
  auto u = std::unique_ptr<H2Upstream>(new (std::nothrow) H2Upstream(this, ep, mtls));
  if (!u) return nullptr;
  h2_upstreams_.push_back(std::move(u));
  H2Upstream* up = h2_upstreams_.back().get();
  if (!up->open()) {
    up->abort();  // (freed by the sweep, with nothing in flight)
    return nullptr;
  }
  return up;
}

void Worker::flush_h2() noexcept {
  // Flushing one may queue frames on another (a window update): until none
  // has any left. Each pass takes the list as it stands.
  while (!h2_dirty_.empty()) {
    std::vector<H2Flushable*> now;
    now.swap(h2_dirty_);
    for (H2Flushable* f : now) f->flush_now();
  }
}

std::shared_ptr<const discovery::EndpointSet> Worker::latest_set(
    const SocketAddr& dialled, const std::shared_ptr<const discovery::EndpointSet>& had) noexcept {
  if (shared_->discovery == nullptr) return had;
  const discovery::Destination* d = table()->find(dialled);
  if (d == nullptr || d->set == had || d->set->service != had->service || d->set->endpoints.empty()) return had;
  return d->set;
}

TcpForward* Worker::take_connection() noexcept {
  if (!free_.empty()) {
    TcpForward* c = free_.back();
    free_.pop_back();
    return c;
  }
  all_.push_back(std::make_unique<TcpForward>());
  return all_.back().get();
}

void Worker::accepted(Listener& listener, int fd) noexcept {
  const ListenerSpec& spec = listener.spec();
  auto& stats = stats_->of(spec.direction);
  if (draining_) {
    io::set_reset_on_close(fd);
    io::close_fd(fd);
    return;
  }
  // One atomic per accepted connection, so the limit holds across workers.
  uint32_t open = shared_->open_connections.fetch_add(1, std::memory_order_relaxed);
  if (open >= shared_->config->max_connections) {
    shared_->open_connections.fetch_sub(1, std::memory_order_relaxed);
    stats.refused[static_cast<int>(metrics::RefuseReason::kMaxConnections)].inc();
    io::set_reset_on_close(fd);
    io::close_fd(fd);
    return;
  }
  ++live_;
  stats_->connections_live.inc();
  TcpForward* c = take_connection();
  c->adopt(this, fd, spec.direction);
  auto target = choose_target(spec, fd, *shared_->config);
  if (!target) {
    // Not redirected (someone dialled the proxy port itself): there is no
    // destination to forward to, and forwarding to ourselves would loop.
    c->close(TcpError::kNoOriginalDst, true, false);
    return;
  }
  // Explicit forwards stay plain TCP: they are how operators say "just
  // these bytes, there".
  bool opaque_port = shared_->config->is_opaque_port(target->port());
  if (spec.kind != ListenerKind::kForward && shared_->config->http)
    c->watch_http(opaque_port ? TcpForward::HttpMode::kSkip : TcpForward::HttpMode::kTap);
  if (spec.kind == ListenerKind::kInbound) {
    if (shared_->identity != nullptr && !opaque_port)
      c->detect(*target);  // mesh TLS or not, then admit()
    else
      c->admit(*target);
    return;
  }
  if (spec.kind == ListenerKind::kForward && !spec.target_name.empty())
    route_name(c, spec, false);
  else if (spec.kind == ListenerKind::kOutbound && shared_->discovery != nullptr)
    route(c, *target);
  else
    c->connect_direct(*target);
}

void Worker::wait(TcpForward* c, uint64_t ms) noexcept {
  c->deadline_ms = now_ms_ + ms;
  waiting_.push_back(c);
}

void Worker::route_name(TcpForward* c, const ListenerSpec& spec, bool expired) noexcept {
  using Wait = TcpForward::Wait;
  const std::string& name = spec.target_name;
  discovery::DiscoveryClient* disco = shared_->discovery;
  bool discovery_done = expired && c->waiting_for() == Wait::kDiscovery;
  if (disco != nullptr && !discovery_done && c->waiting_for() != Wait::kDns) {
    const auto& by_name = table()->by_name;
    if (auto it = by_name.find(name); it != by_name.end()) {
      it->second->stats->touch(now_ms_);
      if (it->second->exists && !it->second->endpoints.empty()) {
        c->connect_balanced(it->second);
        return;
      }
      // Not a service, or one with no endpoints: DNS may know the name.
    } else {
      disco->want_service(name);
      if (disco->connected() && shared_->config->discovery_timeout_ms > 0) {
        c->park_for_name(&spec, Wait::kDiscovery);
        wait(c, shared_->config->discovery_timeout_ms);
        return;
      }
    }
  }
  if (shared_->resolver == nullptr) {
    c->close(TcpError::kResolveFailed, true, false);
    return;
  }
  auto answer = shared_->resolver->lookup(name);
  if (answer == nullptr || (answer->addresses.empty() && answer->error.empty())) {
    if (expired && c->waiting_for() == Wait::kDns) {
      c->close(TcpError::kResolveFailed, true, false);
      return;
    }
    // DNS is asked on the resolver's thread; this connection waits for it
    // (bounded by connect-timeout), the worker does not.
    c->park_for_name(&spec, Wait::kDns);
    wait(c, shared_->config->connect_timeout_ms);
    return;
  }
  if (answer->addresses.empty()) {
    LOG_DEBUG("proxy", "forward to %s: %s", name.c_str(), answer->error.c_str());
    c->close(TcpError::kResolveFailed, true, false);
    return;
  }
  SocketAddr target = answer->addresses[name_turn_++ % answer->addresses.size()];
  target.set_port(spec.target_port);
  c->connect_direct(target);
}

bool Worker::answer_ready(TcpForward* c) noexcept {
  const ListenerSpec* spec = c->forward();
  if (spec == nullptr) return table()->find(c->target()) != nullptr;
  if (c->waiting_for() == TcpForward::Wait::kDiscovery) return table()->by_name.contains(spec->target_name);
  auto answer = shared_->resolver->lookup(spec->target_name);
  return answer != nullptr && (!answer->addresses.empty() || !answer->error.empty());
}

void Worker::route(TcpForward* c, const SocketAddr& dst) noexcept {
  const discovery::Destination* d = table()->find(dst);
  if (d == nullptr) {
    shared_->discovery->want(dst);
    uint64_t wait_ms = shared_->config->discovery_timeout_ms;
    if (wait_ms == 0 || !shared_->discovery->connected()) {
      // No controller to ask (or told not to wait): as dialled, at once.
      c->connect_direct(dst);
      return;
    }
    c->park(dst, TcpForward::Wait::kDiscovery);
    wait(c, wait_ms);
    return;
  }
  const discovery::EndpointSet& set = *d->set;
  set.stats->touch(now_ms_);
  if (set.service.empty() || (set.endpoints.empty() && !d->virtual_address)) {
    // Not a service's, or a service with no endpoint left whose address
    // is a real one: the address as dialled.
    c->connect_direct(dst);
    return;
  }
  c->connect_balanced(d->set, dst);
}

void Worker::resume_waiting() noexcept {
  // Only when something was published since the last look.
  // Against the version the waiting connections were last looked at with,
  // not table_version_: a connection accepted since the table changed
  // refreshed that already (route), and those parked before it would then
  // wait for nothing until their discovery timeout sent them as dialled.
  uint64_t names = shared_->names_version.load(std::memory_order_acquire);
  const uint64_t version = shared_->discovery != nullptr ? shared_->discovery->version() : 0;
  bool table_changed = shared_->discovery != nullptr && version != waiting_version_;
  if (!table_changed && names == names_version_) return;
  names_version_ = names;
  waiting_version_ = version;
  if (table_changed) table();
  waiting_.for_each([this](TcpForward* c) {
    if (!answer_ready(c)) return;
    c->timer_link.unlink();
    if (c->forward() != nullptr)
      route_name(c, *c->forward(), false);
    else
      route(c, c->target());
  });
}

void Worker::track_connecting(TcpForward* c) noexcept {
  c->deadline_ms = now_ms_ + shared_->config->connect_timeout_ms;
  connecting_.push_back(c);
}

void Worker::track_detecting(TcpForward* c) noexcept {
  c->deadline_ms = now_ms_ + shared_->config->detect_timeout_ms;
  detecting_.push_back(c);
}

void Worker::track_active(TcpForward* c) noexcept {
  c->deadline_ms = now_ms_;
  idle_.push_back(c);
}

void Worker::touch(TcpForward* c) noexcept {
  // Moving to the back keeps the idle list ordered by last activity.
  if (c->deadline_ms != now_ms_) {
    c->deadline_ms = now_ms_;
    idle_.push_back(c);
  }
}

void Worker::release(TcpForward* c) noexcept {
  free_.push_back(c);
  --live_;
  stats_->connections_live.add(static_cast<uint64_t>(-1));
  shared_->open_connections.fetch_sub(1, std::memory_order_relaxed);
}

HttpTap* Worker::take_tap() noexcept {
  if (!free_taps_.empty()) {
    HttpTap* t = free_taps_.back();
    free_taps_.pop_back();
    return t;
  }
  const config::Config& c = *shared_->config;
  auto tap = std::unique_ptr<HttpTap>(new (std::nothrow) HttpTap(
      http::Limits{.max_request_line = c.http_max_request_line, .max_head = c.http_max_head}));
  if (tap == nullptr) return nullptr;
  taps_.push_back(std::move(tap));
  return taps_.back().get();
}

void Worker::give_tap(HttpTap* tap) noexcept { free_taps_.push_back(tap); }

void Worker::buffer_taken(int) noexcept { stats_->buffers_in_use.inc(); }

Worker::SparePool::~SparePool() {
  for (int i = 0; i < count_; ++i) delete[] spare_[i];
}

char* Worker::SparePool::take(uint32_t size) noexcept {
  return count_ > 0 ? spare_[--count_] : new (std::nothrow) char[size];
}

void Worker::SparePool::give(char* buffer) noexcept {
  // Keep a few for the next taker; give the rest back to the system.
  if (count_ < kKeep)
    spare_[count_++] = buffer;
  else
    delete[] buffer;
}

char* Worker::take_spill() noexcept {
  char* s = spills_.take(spill_size());
  if (s != nullptr) stats_->spills_in_use.inc();
  return s;
}

void Worker::give_spill(char* spill) noexcept {
  stats_->spills_in_use.add(static_cast<uint64_t>(-1));
  spills_.give(spill);
}

char* Worker::take_plain(size_t fed, uint32_t* capacity) noexcept {
  uint32_t full = plain_slot_size(buffers_.size());
  bool small = fed <= kSmallPlainFed && small_plain_slot_size() < full;
  *capacity = small ? small_plain_slot_size() : full;
  char* p = (small ? small_plains_ : plains_).take(*capacity);
  if (p != nullptr) stats_->plain_bytes_in_use.add(*capacity);
  return p;
}

void Worker::give_plain(char* slot, uint32_t capacity) noexcept {
  stats_->plain_bytes_in_use.add(-static_cast<uint64_t>(capacity));
  (capacity == plain_slot_size(buffers_.size()) ? plains_ : small_plains_).give(slot);
}

void Worker::wake_buffer_waiters() noexcept {
  // A connection can run dry after buffers came back earlier in the same
  // batch of completions; give_back() woke nobody then. Retry as many
  // waiters as there are free buffers.
  uint64_t in_use = stats_->buffers_in_use.get();
  uint64_t free = buffers_.count() > in_use ? buffers_.count() - in_use : 0;
  while (free-- > 0) {
    TcpForward* c = buffer_waiters_.pop_front();
    if (c == nullptr) break;
    c->buffers_available();
  }
}

void Worker::give_back(int id) noexcept {
  buffers_.give_back(static_cast<uint16_t>(id));
  stats_->buffers_in_use.add(static_cast<uint64_t>(-1));
  if (TcpForward* c = buffer_waiters_.pop_front()) c->buffers_available();
}

}  // namespace meshd::proxy
