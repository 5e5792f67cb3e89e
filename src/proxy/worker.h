// Worker: one thread, one io_uring, its own listeners, buffers and
// connections (shared-nothing, HAProxy's per-thread loop). A connection
// lives and dies on the worker that accepted it.
#pragma once

#include <atomic>
#include <memory>
#include <vector>

#include "base/intrusive_list.h"
#include "base/random.h"
#include "config/config.h"
#include "discovery/client.h"
#include "discovery/resolver.h"
#include "identity/agent.h"
#include "io/buffer_ring.h"
#include "io/op.h"
#include "io/ring.h"
#include "metrics/tcp_stats.h"
#include "policy/store.h"
#include "proxy/buffer_sizes.h"
#include "proxy/h2_forward.h"
#include "proxy/listener.h"
#include "proxy/tcp_forward.h"
#include "proxy/upstream_pool.h"
#include "transport/session_cache.h"

namespace meshd::proxy {

// What all workers share: read-only settings and a few process-wide atomics
// touched once per connection, never per byte.
struct Shared {
  const config::Config* config = nullptr;
  discovery::DiscoveryClient* discovery = nullptr;  // null: no controller
  discovery::Resolver* resolver = nullptr;          // null: no --forward names
  identity::Agent* identity = nullptr;              // null: no identity, no mTLS
  policy::PolicyStore* policy = nullptr;            // null: every inbound connection is allowed
  std::atomic<uint64_t> names_version{0};           // bumped when a DNS answer changes
  std::atomic<uint32_t> open_connections{0};
};

class Worker final : public io::OpOwner {
 public:
  enum class Command : uint8_t { kNone, kDrain, kStopNow };

  Worker(unsigned index, int cpu, Shared* shared, metrics::WorkerStats* stats) noexcept;
  ~Worker();
  Worker(const Worker&) = delete;
  Worker& operator=(const Worker&) = delete;

  // Called before the thread starts: this worker's socket for a listener.
  void add_listener(const ListenerSpec* spec, int fd);
  // On the worker's own thread: sets up the ring and buffers.
  Result<void> init() noexcept;
  // Runs until drained (or stopped) after a command.
  void run() noexcept;
  // From any thread.
  void command(Command c) noexcept;
  // From the discovery client's thread: a new table is out.
  void notify() noexcept;

  // For listeners and connections of this worker.
  io::Ring& ring() noexcept { return ring_; }
  metrics::WorkerStats& stats() noexcept { return *stats_; }
  uint32_t buffer_size() const noexcept { return buffers_.size(); }
  uint16_t buffer_group() const noexcept { return buffers_.group(); }
  char* buffer_data(int id) noexcept { return buffers_.data(static_cast<uint16_t>(id)); }
  void buffer_taken(int id) noexcept;
  void give_back(int id) noexcept;
  // Spill buffers: a connection's own, taken only while its destination is
  // full (see relay.h), so the ring is never held hostage by a slow reader.
  // Two chunks' worth (buffer_sizes.h). Null when out of memory.
  uint32_t spill_size() const noexcept { return proxy::spill_size(buffers_.size()); }
  char* take_spill() noexcept;
  void give_spill(char* spill) noexcept;
  // Plain slots (mesh TLS): one decrypted read, or what detection read,
  // held by a connection only until it is forwarded. Pools of their own, by
  // what a read of `fed` bytes of ciphertext needs (buffer_sizes.h): small,
  // or full (kAnyRead: a full one). *capacity is the slot's size. Null
  // when out of memory.
  static constexpr size_t kAnyRead = ~size_t{0};
  char* take_plain(size_t fed, uint32_t* capacity) noexcept;
  void give_plain(char* slot, uint32_t capacity) noexcept;
  void wait_for_buffer(TcpForward* c) noexcept { buffer_waiters_.push_back(c); }
  // HTTP/1 taps (relay_http.cc): one per connection followed as HTTP/1,
  // pooled. Null when out of memory (the connection goes untapped).
  HttpTap* take_tap() noexcept;
  void give_tap(HttpTap* tap) noexcept;
  // Idle outbound HTTP/1 connections (upstream_pool.h); null while the
  // worker drains or when pooling is off.
  UpstreamPool* upstream_pool() noexcept { return draining_ || !pool_enabled_ ? nullptr : &pool_; }
  void accepted(Listener& listener, int fd) noexcept;
  // Outbound HTTP/2 to a service: the client's connection (fd, and the
  // bytes read of it) goes on as an H2Forward, each stream balanced on its
  // own. False (out of memory) when the caller keeps it.
  bool terminate_h2(int fd, std::span<const char> first, const SocketAddr& dialled,
                    std::shared_ptr<const discovery::EndpointSet> set) noexcept;
  // The worker's HTTP/2 connection to an endpoint that takes another
  // stream, opened if none does (h2_upstream.h); null when out of memory.
  H2Upstream* h2_upstream(const discovery::Endpoint& ep) noexcept;
  // Terminated HTTP/2 (H2Forward, H2Upstream): frames were queued on f;
  // flush_h2() sends what every such connection has, once, after a
  // completion's work.
  void h2_dirty(H2Flushable* f) noexcept {
    if (f->dirty) return;
    f->dirty = true;
    h2_dirty_.push_back(f);
  }
  void flush_h2() noexcept;
  // The service's endpoints as discovery knows them now: a long-lived
  // HTTP/2 connection balances each stream over the latest (had, when
  // discovery no longer has the service or it has no endpoint).
  std::shared_ptr<const discovery::EndpointSet> latest_set(
      const SocketAddr& dialled, const std::shared_ptr<const discovery::EndpointSet>& had) noexcept;
  // The statuses a service's requests are retried on: the registry's, else --retry-statuses.
  const std::vector<uint16_t>& retry_statuses(const discovery::EndpointSet* set) const noexcept {
    return set != nullptr && set->retry_statuses_set ? set->retry_statuses : shared_->config->retry_statuses;
  }
  // The request timeout of a service's requests: the registry's, else the proxy's.
  uint32_t request_timeout_ms(const discovery::EndpointSet* set) const noexcept {
    return set != nullptr && set->request_timeout_ms != 0 ? set->request_timeout_ms
                                                          : static_cast<uint32_t>(shared_->config->request_timeout_ms);
  }
  void track_connecting(TcpForward* c) noexcept;
  // c's request_deadline_ms is set: (re)placed in the request-timeout list.
  void await_response(TcpForward* c) noexcept;
  const config::Config& config() const noexcept { return *shared_->config; }
  void track_detecting(TcpForward* c) noexcept;
  // The certificate mTLS uses now (null: none yet, or identity is off).
  const identity::Credential* credential() noexcept;
  transport::ClientSessionCache& sessions() noexcept { return sessions_; }
  identity::Agent* shared_identity() const noexcept { return shared_->identity; }
  policy::PolicyStore* shared_policy() const noexcept { return shared_->policy; }
  // The inbound policy for new connections (null: no policy, all allowed).
  const policy::PolicyTable* policy() noexcept;
  uint64_t unix_ms() const noexcept;
  void track_active(TcpForward* c) noexcept;
  void touch(TcpForward* c) noexcept;
  void release(TcpForward* c) noexcept;
  uint64_t now_ms() const noexcept { return now_ms_; }
  uint64_t now_us() const noexcept;
  FastRandom& random() noexcept { return random_; }

  void on_complete(io::Op& op, const io_uring_cqe& cqe) noexcept override;

 private:
  void arm_wakeup() noexcept;
  void handle_command() noexcept;
  void sweep() noexcept;
  void wake_buffer_waiters() noexcept;
  bool finished() const noexcept;
  TcpForward* take_connection() noexcept;
  // The destination stage for outbound connections: a service's endpoints
  // when discovery knows the address, else the address as dialled.
  void route(TcpForward* c, const SocketAddr& dst) noexcept;
  // --forward to a name: the registry's service by that name, else DNS.
  // expired: the wait for the current stage ran out.
  void route_name(TcpForward* c, const ListenerSpec& spec, bool expired) noexcept;
  bool answer_ready(TcpForward* c) noexcept;
  void wait(TcpForward* c, uint64_t ms) noexcept;
  const discovery::DestinationTable* table() noexcept;
  void resume_waiting() noexcept;

  unsigned index_;
  int cpu_;
  Shared* shared_;
  metrics::WorkerStats* stats_;
  io::Ring ring_;
  io::BufferRing buffers_;
  std::vector<std::unique_ptr<Listener>> listeners_;
  std::vector<std::unique_ptr<TcpForward>> all_;  // every connection object ever made
  std::vector<TcpForward*> free_;
  std::vector<std::unique_ptr<H2Forward>> h2_;             // terminated HTTP/2 connections, freed once done
  std::vector<std::unique_ptr<H2Upstream>> h2_upstreams_;  // their connections to endpoints, freed once done
  std::vector<H2Flushable*> h2_dirty_;
  // Buffers of one size, a few kept for reuse, the rest given back.
  class SparePool {
   public:
    SparePool() = default;
    SparePool(const SparePool&) = delete;
    SparePool& operator=(const SparePool&) = delete;
    ~SparePool();
    char* take(uint32_t size) noexcept;
    void give(char* buffer) noexcept;

   private:
    static constexpr int kKeep = 16;
    char* spare_[kKeep] = {};
    int count_ = 0;
  };
  std::vector<std::unique_ptr<HttpTap>> taps_;  // every tap ever made
  std::vector<HttpTap*> free_taps_;
  SparePool spills_;
  SparePool plains_;        // full plain slots
  SparePool small_plains_;  // small ones

  uint32_t live_ = 0;                                              // connection objects in use (open or closing)
  IntrusiveList<TcpForward, &TcpForward::timer_link> waiting_;     // for discovery, by deadline
  IntrusiveList<TcpForward, &TcpForward::timer_link> connecting_;  // by connect deadline
  IntrusiveList<TcpForward, &TcpForward::timer_link> idle_;        // by last activity
  IntrusiveList<TcpForward, &TcpForward::timer_link> detecting_;   // inbound, by detect deadline
  IntrusiveList<TcpForward, &TcpForward::request_link> awaiting_;  // HTTP requests, by request deadline
  IntrusiveList<TcpForward, &TcpForward::wait_link> buffer_waiters_;
  uint64_t now_ms_ = 0;
  std::shared_ptr<const discovery::DestinationTable> table_;
  uint64_t table_version_ = 0;
  uint64_t waiting_version_ = 0;  // the table version waiting_ was last resumed against
  uint64_t names_version_ = 0;
  uint32_t name_turn_ = 0;  // round robin over a name's DNS addresses
  FastRandom random_;
  std::shared_ptr<const identity::Credential> credential_;
  uint64_t credential_version_ = 0;
  std::shared_ptr<const policy::PolicyTable> policy_;
  uint64_t policy_version_ = 0;
  transport::ClientSessionCache sessions_;
  UpstreamPool pool_;
  bool pool_enabled_ = false;
  uint64_t drain_deadline_ms_ = 0;
  bool draining_ = false;

  int wake_fd_ = -1;
  uint64_t wake_value_ = 0;
  io::Op wake_op_;
  std::atomic<Command> pending_{Command::kNone};
};

}  // namespace meshd::proxy
