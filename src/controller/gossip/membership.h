// Membership: SWIM failure detection and dissemination, as a state machine
// with no sockets and no clock of its own (tests drive it with a fake
// transport and a fake clock; gossip.h wires it to UDP).
//
// Every probe interval one member (round robin over a shuffled list) gets
// a Ping. No Ack within the probe timeout: k other members are asked to
// probe it (PingReq) and relay the Ack. Still none at the end of the
// interval: the member is suspected, and the suspicion is gossiped. A
// suspect that does not refute it (by announcing itself alive with a
// higher incarnation, which only it may raise) within the suspicion timeout
// (suspicion_mult probe intervals, scaled by log10 of the cluster size) is
// declared dead. Dead and left members are remembered for dead_retention_ms
// (shown by meshd-ctl members, and probed by push-pull so a healed partition
// merges back), then forgotten.
//
// Updates (member records, and for gossip.h registry entries and leases)
// ride on every packet that has room, each at most retransmit_mult *
// ceil(log10(n + 1)) times, the freshest first; packets with nothing but
// updates go to gossip_fanout members every gossip_interval_ms.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <random>
#include <string>
#include <vector>

#include "controller/gossip/wire.h"
#include "proto/gossip.pb.h"

namespace meshd::controller::gossip {

// "alive", "suspect", "dead", "left": for logs, metrics and meshd-ctl members.
const char* member_state_name(proto::MemberState s);

struct Config {
  std::string name;
  std::string address;      // the gossip IP:PORT others reach this node at
  std::string api_address;  // shown to operators
  uint64_t probe_interval_ms = 1000;
  uint64_t probe_timeout_ms = 500;
  unsigned indirect_probes = 3;
  unsigned suspicion_mult = 5;
  unsigned retransmit_mult = 4;
  uint64_t gossip_interval_ms = 200;
  uint64_t min_gossip_gap_ms = 20;
  unsigned gossip_fanout = 3;
  uint64_t dead_retention_ms = 10 * 60 * 1000;
  size_t max_members = 1024;
  size_t max_queued_updates = 8192;
  // Room for updates in one packet: the datagram limit minus the seal and
  // some slack for the packet's own fields.
  size_t packet_budget = kMaxPacketBytes - kHeaderBytes;
};

class Transport {
 public:
  virtual ~Transport() = default;
  virtual void send(const std::string& address, const proto::Packet& packet) = 0;
};

// Updates waiting to be piggybacked. One slot per subject (a member name,
// an entry key, a lease owner): a newer update replaces the older one and
// starts its count again.
class BroadcastQueue {
 public:
  explicit BroadcastQueue(size_t max_items) : max_(max_items) {}
  void put(const proto::GossipMember& m);
  void put(const proto::Entry& e);
  void put(const proto::LeaseUpdate& l);
  // Adds the least-sent updates that fit in budget bytes (of p's total
  // size); an update sent `limit` times leaves the queue.
  void fill(proto::Packet* p, size_t budget, unsigned limit);
  size_t size() const noexcept { return items_.size(); }
  bool empty() const noexcept { return items_.empty(); }

 private:
  struct Item {
    int kind = 0;  // 0 member, 1 entry, 2 lease
    proto::GossipMember member;
    proto::Entry entry;
    proto::LeaseUpdate lease;
    unsigned sent = 0;
    uint64_t seq = 0;  // larger: newer
    size_t bytes = 0;
  };
  void put(std::string key, Item item);
  size_t max_;
  uint64_t seq_ = 0;
  std::map<std::string, Item> items_;
};

struct Member {
  proto::GossipMember info;
  uint64_t since_ms = 0;             // entered its current state
  uint64_t suspect_deadline_ms = 0;  // for suspects: when it is declared dead
};

class Membership {
 public:
  Membership(Config config, Transport* transport, uint64_t seed);

  // Timers: probes, indirect probes, suspicion timeouts, gossip rounds and
  // forgetting the dead. Call at next_timer_ms() or earlier.
  void tick(uint64_t now_ms);
  uint64_t next_timer_ms() const noexcept;
  // A packet that passed authentication; from: its UDP source.
  void on_packet(const std::string& from, const proto::Packet& packet, uint64_t now_ms);
  // A record heard from someone (a packet, a push-pull): SWIM's merge rule.
  void merge(const proto::GossipMember& m, uint64_t now_ms);
  // Announces that this node leaves; its next packets carry it.
  void leave(uint64_t now_ms);
  // A fresh update is waiting: the next gossip round comes now rather than
  // at the end of the interval, but never sooner than min_gossip_gap_ms
  // after the last one, so a burst of changes shares rounds.
  void gossip_soon();
  // Sends an update-only packet to address (the goodbye on shutdown).
  void send_updates(const std::string& address);

  const proto::GossipMember& self() const noexcept { return self_; }
  const std::map<std::string, Member>& members() const noexcept { return members_; }  // without self
  // Every record this node knows, self included: a push-pull's members.
  std::vector<proto::GossipMember> records() const;
  // The address of a random member in one of the states, if any.
  std::optional<std::string> random_address(proto::MemberState state);
  size_t count(proto::MemberState state) const;  // self counts as alive
  BroadcastQueue& queue() noexcept { return queue_; }
  uint64_t suspicion_timeout_ms() const;
  unsigned retransmit_limit() const;

  // Entries and leases that arrived on a packet, for the registry.
  std::function<void(const proto::Packet&)> on_updates;
  // A member joined, or came back from the dead: its registry may differ
  // from this node's in any way, so gossip.h runs a push-pull with it now.
  std::function<void(const std::string& address)> on_arrival;
  // Members that were refused because the table is full.
  uint64_t members_refused = 0;

 private:
  struct Probe {
    std::string target;
    std::string address;
    uint64_t seq = 0;
    uint64_t started_ms = 0;
    bool indirect_sent = false;
    bool acked = false;
  };
  struct Relay {
    std::string origin;
    uint64_t origin_seq = 0;
    uint64_t expires_ms = 0;
  };
  void send(const std::string& address, proto::Packet p);
  void start_probe(uint64_t now_ms);
  void suspect(const std::string& name, uint64_t now_ms);
  void set_state(Member& m, proto::MemberState state, uint64_t now_ms);
  void refute(uint64_t incarnation);
  size_t live_count() const;  // alive + suspect, self included

  Config config_;
  Transport* transport_;
  std::mt19937_64 rng_;
  proto::GossipMember self_;
  bool leaving_ = false;
  bool name_conflict_logged_ = false;
  std::map<std::string, Member> members_;
  BroadcastQueue queue_;
  std::vector<std::string> probe_order_;
  size_t probe_index_ = 0;
  std::optional<Probe> probe_;
  std::map<uint64_t, Relay> relays_;  // our ping's seq -> whom to tell
  uint64_t seq_ = 0;
  uint64_t next_probe_ms_ = 0;
  uint64_t next_gossip_ms_ = 0;
  uint64_t last_gossip_ms_ = 0;
};

}  // namespace meshd::controller::gossip
