// DiscoveryClient: the proxy's side of the controller protocol.
//
// One helper thread keeps one stream to one controller (any replica; the
// next one in --controller when it fails, after a jittered backoff) and
// subscribes lazily: workers ask for the addresses their connections dial
// (want()), the client subscribes to each once, and every answer or change
// is folded into a new DestinationTable, published whole. Workers read the
// latest table without a lock and never wait for the client; a worker with
// connections waiting on an answer is woken by the published() callback.
//
// When the stream ends, what was learned keeps serving (marked stale) until
// the new stream's answers replace it; a destination nobody dialled for
// evict_after_ms is unsubscribed and forgotten. Frames are bounded and
// checked (src/proto/frame.h): a controller that sends garbage has its
// stream closed and counted, and the next replica is tried.
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "base/addr.h"
#include "base/random.h"
#include "discovery/controller_call.h"
#include "discovery/table.h"
#include "proto/api.pb.h"
#include "proto/frame.h"

namespace meshd::discovery {

class Resolver;

struct ClientOptions {
  std::vector<HostPort> controllers;
  Resolver* resolver = nullptr;  // for controllers given by name
  uint64_t evict_after_ms = 10 * 60 * 1000;
  uint64_t connect_timeout_ms = 2000;
  uint64_t backoff_min_ms = 100;
  uint64_t backoff_max_ms = 5000;
  // At most this many destinations are subscribed at once; past it, new
  // addresses go to their original destination without discovery.
  size_t max_destinations = 10000;
  // Subscribed from the start and never evicted: the services this proxy
  // serves (their inbound policies apply here).
  std::vector<std::string> pinned_services;
  ControlTls tls;  // TLS to the controllers (when it has a context)
};

// What `meshd-ctl status` shows about the controller connection.
struct ClientStatus {
  std::string controller;  // the replica connected to (or last tried)
  bool connected = false;
  bool tls = false;  // the stream is TLS, to a verified controller certificate
  uint64_t connected_since_unix_ms = 0;
  uint64_t last_update_unix_ms = 0;  // last message from a controller
  bool stale = true;                 // not connected, or answers still pending
  uint64_t destinations = 0;
  uint64_t services = 0;
  uint64_t streams_started = 0;
  uint64_t streams_failed = 0;
  uint64_t bad_frames = 0;  // streams closed because the controller sent garbage
  std::string last_error;
};

class DiscoveryClient {
 public:
  explicit DiscoveryClient(ClientOptions options);
  ~DiscoveryClient();
  DiscoveryClient(const DiscoveryClient&) = delete;
  DiscoveryClient& operator=(const DiscoveryClient&) = delete;

  // Before start(): called on the client's thread after each publish.
  void on_published(std::function<void()> f) { published_ = std::move(f); }
  void start();
  void stop();

  // From any thread; none waits on I/O.
  uint64_t version() const noexcept { return version_.load(std::memory_order_acquire); }
  std::shared_ptr<const DestinationTable> table() const noexcept;
  // Asks for an address's service; the answer comes in a later table.
  void want(const SocketAddr& dst) noexcept;
  void want_service(const std::string& name);
  // A stream is up: an answer is worth waiting a little for.
  bool connected() const noexcept { return connected_.load(std::memory_order_relaxed); }
  ClientStatus status() const;

 private:
  struct AddressState {
    SocketAddr address;
    std::string service;  // empty: no service has it (or not answered yet)
    uint64_t sub_id = 0;  // on the current stream; 0: not subscribed there
    bool answered = false;
    std::shared_ptr<ServiceStats> usage;  // last use, for a negative answer
  };
  struct ServiceState {
    bool exists = false;
    bool fresh = false;    // answered on the current stream
    bool by_name = false;  // subscribed by name (admin, forward rules)
    std::vector<uint64_t> sub_ids;
    proto::Service definition;
    std::map<std::string, proto::Endpoint> endpoints;  // by address text
    std::map<std::string, std::shared_ptr<EndpointHealth>> health;
    std::map<uint32_t, proto::InboundPolicy> policies;  // by port
    std::shared_ptr<ServiceStats> stats;
    std::shared_ptr<const EndpointSet> set;  // built on publish; null: rebuild
  };
  struct Subscription {
    bool by_address = false;
    std::string key;  // canonical address, or service name
  };

  void run();
  void connect_next(uint64_t now);
  void on_connected(uint64_t now);
  // The stream is usable: TCP connected, and with TLS, the controller's
  // certificate verified.
  void on_stream_up();
  void disconnect(const std::string& why, uint64_t now);
  void read_stream(uint64_t now);
  void write_stream();
  void take_wanted();
  void subscribe_address(AddressState& a);
  void subscribe_name(const std::string& name, ServiceState& s);
  void send(const proto::Request& req);
  void handle(const proto::Response& resp, uint64_t now);
  void apply_update(const proto::ServiceUpdate& u, const std::string& service);
  void recheck_addresses(const std::string& service);
  void evict(uint64_t now);
  void publish();
  ServiceState& service_state(const std::string& name);
  std::shared_ptr<ServiceStats> stats_for(const std::string& name);
  std::shared_ptr<const EndpointSet> build_set(const std::string& name, ServiceState& s);

  ClientOptions options_;
  std::function<void()> published_;

  // Shared with other threads.
  mutable std::mutex table_mu_;
  std::shared_ptr<const DestinationTable> table_;
  std::atomic<uint64_t> version_{0};
  std::atomic<bool> connected_{false};
  mutable std::mutex want_mu_;
  std::vector<SocketAddr> wanted_;
  std::vector<std::string> wanted_names_;
  mutable std::mutex status_mu_;
  ClientStatus status_;
  int wake_fd_ = -1;
  std::atomic<bool> stopping_{false};
  std::thread thread_;

  // The client thread's own state.
  int fd_ = -1;
  bool connecting_ = false;
  size_t current_ = 0;  // index into controllers
  uint64_t connect_deadline_ = 0;
  uint64_t next_attempt_ = 0;
  uint64_t backoff_ms_ = 0;
  uint64_t next_id_ = 1;
  proto::FrameDecoder decoder_;
  std::unique_ptr<transport::StreamTls> tls_;  // this stream's, when options_.tls is on
  std::string tls_error_;                      // a failure while queueing: the stream ends
  std::string plain_;                          // decrypted bytes, reused
  std::string out_;                            // bytes for the socket (ciphertext when TLS)
  size_t out_sent_ = 0;
  bool dirty_ = false;
  std::map<std::string, AddressState> addresses_;  // by canonical address
  std::map<std::string, ServiceState> services_;
  std::map<uint64_t, Subscription> subscriptions_;
  std::map<std::string, std::shared_ptr<ServiceStats>> stats_;
  FastRandom random_;
};

}  // namespace meshd::discovery
