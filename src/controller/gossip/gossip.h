// Gossip: the controller replicas' membership (SWIM, membership.h) and
// registry replication (piggybacked updates plus push-pull anti-entropy,
// anti_entropy.h) on one UDP and one TCP socket of the same port, sealed
// with the cluster key (wire.h).
//
// It runs inside the API server's poll loop (a PollHook), the registry's
// only thread: remote entries are validated and go through
// Controller::apply, like any other source, and their changes are
// published to subscribed proxies. What a change sets off:
//   local write (API, file, lease expiry) -> Controller::on_change ->
//   piggybacked on the next packets (gossip_interval, fanout 3), and, as
//   the digest changed, picked up by the next push-pull wherever gossip
//   did not reach.
// A remote entry that changes nothing here is not re-sent: gossip stops
// where there is nothing new.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "base/addr.h"
#include "controller/api_server.h"
#include "controller/controller.h"
#include "controller/gossip/anti_entropy.h"
#include "controller/gossip/membership.h"
#include "controller/gossip/wire.h"
#include "proto/frame.h"

namespace meshd::controller::gossip {

// Step 1 carries members, leases and digests, no entries.
inline constexpr uint32_t kMaxFirstSyncFrameBytes = 8u << 20;

struct Options {
  Config membership;
  SocketAddr listen;             // UDP and TCP
  std::vector<SocketAddr> join;  // seeds
  uint64_t sync_interval_ms = 5000;
  uint64_t sync_timeout_ms = 5000;  // a whole push-pull exchange
  uint64_t tombstone_lifetime_ms = 60 * 60 * 1000;
  size_t max_inbound_syncs = 8;
  size_t max_outbound_syncs = 8;
};

class Gossip : public PollHook, private Transport {
 public:
  // wall_ms: the clock entries and seals use; timers use CLOCK_MONOTONIC.
  Gossip(Options options, ClusterKey key, Controller* controller, Stats* stats, std::function<uint64_t()> wall_ms);
  ~Gossip() override;

  // Binds the sockets and starts joining the seeds.
  Parsed<bool> start();
  // Where the sockets are bound (the port the kernel chose, for port 0).
  SocketAddr local_address() const { return bound_; }
  // Subscribed proxies hear about changes that came by gossip through this.
  void set_publish(std::function<void(const Changes&)> publish) { publish_ = std::move(publish); }
  proto::MemberList members() const;
  // Says goodbye (state left) to the members, so they do not wait out a
  // suspicion; for a clean shutdown.
  void leave();

  void add_fds(std::vector<pollfd>* fds) override;
  void on_events(std::span<const pollfd> fds) override;
  int timeout_ms() override;

 private:
  struct Conn {
    int fd = -1;
    bool initiator = false;
    bool connecting = false;
    std::string peer;
    // Until the peer has proven it holds the key (its first frame), it may
    // only make this side buffer a small frame.
    proto::FrameDecoder decoder{kMaxFirstSyncFrameBytes};
    std::string out;
    size_t sent = 0;
    uint64_t deadline_ms = 0;
    uint32_t expect = 0;    // the step of the next frame
    bool finished = false;  // close once out is flushed
    bool closed = false;
  };

  void send(const std::string& address, const proto::Packet& packet) override;
  void read_udp();
  void accept_syncs();
  void start_sync(const std::string& address);
  void read_conn(Conn& c);
  void write_conn(Conn& c);
  void close_conn(Conn& c, bool ok, const std::string& why);
  void on_frame(Conn& c, const proto::SyncFrame& f);
  void queue_frame(Conn& c, const proto::SyncFrame& f);
  proto::SyncFrame frame(uint32_t step) const;
  void merge_frame_state(const proto::SyncFrame& f);
  void apply_remote(const google::protobuf::RepeatedPtrField<proto::Entry>& entries, bool from_sync);
  void on_local_change(const std::vector<proto::Entry>& winners);
  void timers();
  void update_gauges();
  void drop(Drop d);
  uint64_t mono_ms() const;

  Options options_;
  Controller* controller_;
  Stats* stats_;
  std::function<uint64_t()> wall_ms_;
  std::function<void(const Changes&)> publish_;
  Sealer sealer_;
  Membership membership_;
  Digest digest_;
  std::mt19937_64 rng_;
  int udp_fd_ = -1;
  int tcp_fd_ = -1;
  SocketAddr bound_;
  std::vector<std::unique_ptr<Conn>> conns_;
  bool applying_sync_ = false;  // entries from push-pull are not re-gossiped
  bool push_to_all_ = false;    // a local batch too big for piggybacking
  uint64_t started_mono_ms_ = 0;
  uint64_t next_sync_ms_ = 0;
  uint64_t next_tombstone_gc_ms_ = 0;
  uint64_t sync_rotation_ = 0;
};

}  // namespace meshd::controller::gossip
