#include "controller/gossip/membership.h"

#include <algorithm>
#include <cmath>

#include "base/log.h"

namespace meshd::controller::gossip {

const char* member_state_name(proto::MemberState s) {
  switch (s) {
    case proto::MEMBER_ALIVE: return "alive";
    case proto::MEMBER_SUSPECT: return "suspect";
    case proto::MEMBER_DEAD: return "dead";
    case proto::MEMBER_LEFT: return "left";
    default: return "unknown";
  }
}

namespace {

bool gone(proto::MemberState s) { return s == proto::MEMBER_DEAD || s == proto::MEMBER_LEFT; }

// A record from a peer must name a member the way this node would: a peer
// controls these bytes.
bool plausible(const proto::GossipMember& m) {
  return !m.name().empty() && m.name().size() <= 128 && !m.address().empty() && m.address().size() <= 64 &&
         m.api_address().size() <= 64 && m.state() >= proto::MEMBER_ALIVE && m.state() <= proto::MEMBER_LEFT;
}

}  // namespace

void BroadcastQueue::put(std::string key, Item item) {
  item.seq = ++seq_;
  items_[std::move(key)] = std::move(item);
  if (items_.size() <= max_) return;
  // Over the bound: the most-sent (then oldest) update goes; anti-entropy
  // carries whatever gossip could not.
  auto victim = items_.begin();
  for (auto it = items_.begin(); it != items_.end(); ++it)
    if (it->second.sent > victim->second.sent ||
        (it->second.sent == victim->second.sent && it->second.seq < victim->second.seq))
      victim = it;
  items_.erase(victim);
}

void BroadcastQueue::put(const proto::GossipMember& m) {
  Item i;
  i.kind = 0;
  i.member = m;
  i.bytes = m.ByteSizeLong() + 3;
  put("m" + m.name(), std::move(i));
}

void BroadcastQueue::put(const proto::Entry& e) {
  Item i;
  i.kind = 1;
  i.entry = e;
  i.bytes = e.ByteSizeLong() + 3;
  std::string key = "e" + e.service();
  key.push_back('\0');
  key += e.endpoint();
  put(std::move(key), std::move(i));
}

void BroadcastQueue::put(const proto::LeaseUpdate& l) {
  Item i;
  i.kind = 2;
  i.lease = l;
  i.bytes = l.ByteSizeLong() + 3;
  put("l" + l.owner(), std::move(i));
}

void BroadcastQueue::fill(proto::Packet* p, size_t budget, unsigned limit) {
  if (items_.empty()) return;
  std::vector<std::map<std::string, Item>::iterator> order;
  order.reserve(items_.size());
  for (auto it = items_.begin(); it != items_.end(); ++it) order.push_back(it);
  std::sort(order.begin(), order.end(), [](const auto& a, const auto& b) {
    if (a->second.sent != b->second.sent) return a->second.sent < b->second.sent;
    return a->second.seq > b->second.seq;
  });
  size_t used = p->ByteSizeLong();
  for (auto it : order) {
    Item& item = it->second;
    if (used + item.bytes > budget) continue;
    used += item.bytes;
    if (item.kind == 0)
      *p->add_members() = item.member;
    else if (item.kind == 1)
      *p->add_entries() = item.entry;
    else
      *p->add_leases() = item.lease;
    if (++item.sent >= limit) items_.erase(it);
    if (budget - used < 16) break;
  }
}

Membership::Membership(Config config, Transport* transport, uint64_t seed)
    : config_(std::move(config)), transport_(transport), rng_(seed), queue_(config_.max_queued_updates) {
  self_.set_name(config_.name);
  self_.set_address(config_.address);
  self_.set_api_address(config_.api_address);
  self_.set_state(proto::MEMBER_ALIVE);
  self_.set_incarnation(0);
}

size_t Membership::live_count() const {
  size_t n = 1;
  for (const auto& [name, m] : members_)
    if (!gone(m.info.state())) ++n;
  return n;
}

size_t Membership::count(proto::MemberState state) const {
  size_t n = state == proto::MEMBER_ALIVE && !leaving_ ? 1 : 0;
  for (const auto& [name, m] : members_)
    if (m.info.state() == state) ++n;
  return n;
}

uint64_t Membership::suspicion_timeout_ms() const {
  double scale = std::max(1.0, std::log10(static_cast<double>(live_count())));
  return static_cast<uint64_t>(config_.suspicion_mult * scale * static_cast<double>(config_.probe_interval_ms));
}

unsigned Membership::retransmit_limit() const {
  return config_.retransmit_mult *
         std::max(1u, static_cast<unsigned>(std::ceil(std::log10(static_cast<double>(live_count() + 1)))));
}

std::vector<proto::GossipMember> Membership::records() const {
  std::vector<proto::GossipMember> out;
  out.reserve(members_.size() + 1);
  out.push_back(self_);
  for (const auto& [name, m] : members_) out.push_back(m.info);
  return out;
}

std::optional<std::string> Membership::random_address(proto::MemberState state) {
  std::vector<const Member*> pick;
  for (const auto& [name, m] : members_)
    if (m.info.state() == state) pick.push_back(&m);
  if (pick.empty()) return std::nullopt;
  return pick[rng_() % pick.size()]->info.address();
}

void Membership::send(const std::string& address, proto::Packet p) {
  *p.mutable_from() = self_;
  queue_.fill(&p, config_.packet_budget, retransmit_limit());
  transport_->send(address, p);
}

void Membership::send_updates(const std::string& address) { send(address, proto::Packet()); }

void Membership::set_state(Member& m, proto::MemberState state, uint64_t now_ms) {
  if (m.info.state() != state) {
    m.since_ms = now_ms;
    if (state == proto::MEMBER_DEAD)
      LOG_WARN("gossip", "member %s (%s) is dead", m.info.name().c_str(), m.info.address().c_str());
    else
      LOG_INFO("gossip", "member %s (%s) is %s", m.info.name().c_str(), m.info.address().c_str(),
               member_state_name(state));
  }
  m.info.set_state(state);
  if (state == proto::MEMBER_SUSPECT) m.suspect_deadline_ms = now_ms + suspicion_timeout_ms();
}

void Membership::refute(uint64_t incarnation) {
  self_.set_incarnation(incarnation + 1);
  self_.set_state(proto::MEMBER_ALIVE);
  LOG_INFO("gossip", "refuting a suspicion: incarnation %llu", static_cast<unsigned long long>(self_.incarnation()));
  queue_.put(self_);
}

void Membership::merge(const proto::GossipMember& in, uint64_t now_ms) {
  if (!plausible(in)) return;
  if (in.name() == self_.name()) {
    if (leaving_) return;
    // Others believe something about this node that is not true, or not
    // any more (a restart forgot the incarnation): outbid it.
    if (in.state() == proto::MEMBER_ALIVE && in.address() != self_.address() && !name_conflict_logged_) {
      // Either this node restarted on a new address (the refutation below
      // fixes it) or two nodes share a name: say so once.
      name_conflict_logged_ = true;
      LOG_WARN("gossip", "node name %s is also announced at %s (this node is %s): node names must be unique",
               self_.name().c_str(), in.address().c_str(), self_.address().c_str());
    }
    if (in.incarnation() > self_.incarnation() ||
        (in.incarnation() == self_.incarnation() && in.state() != proto::MEMBER_ALIVE))
      refute(std::max(in.incarnation(), self_.incarnation()));
    return;
  }
  auto it = members_.find(in.name());
  if (it == members_.end()) {
    // Nothing to learn from the death of a stranger.
    if (gone(in.state())) return;
    if (members_.size() >= config_.max_members) {
      ++members_refused;
      return;
    }
    Member& m = members_[in.name()];
    m.info = in;
    m.since_ms = now_ms;
    if (in.state() == proto::MEMBER_SUSPECT) m.suspect_deadline_ms = now_ms + suspicion_timeout_ms();
    LOG_INFO("gossip", "member %s (%s) joined, %s", in.name().c_str(), in.address().c_str(),
             member_state_name(in.state()));
    queue_.put(m.info);
    if (on_arrival) on_arrival(in.address());
    return;
  }
  Member& m = it->second;
  const bool newer = in.incarnation() > m.info.incarnation();
  const bool same = in.incarnation() == m.info.incarnation();
  bool accept = false;
  switch (in.state()) {
    case proto::MEMBER_ALIVE: accept = newer; break;
    case proto::MEMBER_SUSPECT: accept = newer || (same && m.info.state() == proto::MEMBER_ALIVE); break;
    case proto::MEMBER_DEAD:
    case proto::MEMBER_LEFT: accept = newer || (same && !gone(m.info.state())); break;
    default: break;
  }
  if (!accept) return;
  if (in.state() == proto::MEMBER_ALIVE) {
    m.info.set_address(in.address());
    m.info.set_api_address(in.api_address());
  }
  const bool returns = gone(m.info.state()) && in.state() == proto::MEMBER_ALIVE;
  m.info.set_incarnation(in.incarnation());
  set_state(m, in.state(), now_ms);
  queue_.put(m.info);
  if (returns && on_arrival) on_arrival(m.info.address());
}

void Membership::suspect(const std::string& name, uint64_t now_ms) {
  auto it = members_.find(name);
  if (it == members_.end() || it->second.info.state() != proto::MEMBER_ALIVE) return;
  set_state(it->second, proto::MEMBER_SUSPECT, now_ms);
  queue_.put(it->second.info);
}

void Membership::leave(uint64_t) {
  leaving_ = true;
  self_.set_state(proto::MEMBER_LEFT);
  queue_.put(self_);
}

void Membership::start_probe(uint64_t now_ms) {
  probe_.reset();
  for (size_t tries = 0; tries < 2; ++tries) {
    while (probe_index_ < probe_order_.size()) {
      const std::string& name = probe_order_[probe_index_++];
      auto it = members_.find(name);
      if (it == members_.end() || gone(it->second.info.state())) continue;
      probe_ = Probe{name, it->second.info.address(), ++seq_, now_ms, false, false};
      proto::Packet p;
      p.mutable_ping()->set_seq(probe_->seq);
      p.mutable_ping()->set_target(name);
      send(probe_->address, std::move(p));
      return;
    }
    // A fresh shuffled round: every member is probed once per round, in an
    // order no one can predict or align with.
    probe_order_.clear();
    for (const auto& [name, m] : members_)
      if (!gone(m.info.state())) probe_order_.push_back(name);
    std::shuffle(probe_order_.begin(), probe_order_.end(), rng_);
    probe_index_ = 0;
  }
}

void Membership::tick(uint64_t now_ms) {
  if (leaving_) return;
  if (probe_ && !probe_->acked && !probe_->indirect_sent && now_ms >= probe_->started_ms + config_.probe_timeout_ms) {
    probe_->indirect_sent = true;
    std::vector<const Member*> helpers;
    for (const auto& [name, m] : members_)
      if (name != probe_->target && m.info.state() == proto::MEMBER_ALIVE) helpers.push_back(&m);
    std::shuffle(helpers.begin(), helpers.end(), rng_);
    if (helpers.size() > config_.indirect_probes) helpers.resize(config_.indirect_probes);
    auto target = members_.find(probe_->target);
    for (const Member* h : helpers) {
      if (target == members_.end()) break;
      proto::Packet p;
      p.mutable_ping_req()->set_seq(probe_->seq);
      *p.mutable_ping_req()->mutable_target() = target->second.info;
      send(h->info.address(), std::move(p));
    }
  }
  if (now_ms >= next_probe_ms_) {
    if (probe_ && !probe_->acked) suspect(probe_->target, now_ms);
    next_probe_ms_ = now_ms + config_.probe_interval_ms;
    start_probe(now_ms);
  }
  for (auto& [name, m] : members_)
    if (m.info.state() == proto::MEMBER_SUSPECT && now_ms >= m.suspect_deadline_ms) {
      set_state(m, proto::MEMBER_DEAD, now_ms);
      queue_.put(m.info);
    }
  std::erase_if(members_, [&](const auto& kv) {
    const Member& m = kv.second;
    return gone(m.info.state()) && now_ms >= m.since_ms + config_.dead_retention_ms;
  });
  std::erase_if(relays_, [&](const auto& kv) { return now_ms >= kv.second.expires_ms; });
  if (now_ms >= next_gossip_ms_) {
    next_gossip_ms_ = now_ms + config_.gossip_interval_ms;
    last_gossip_ms_ = now_ms;
    if (!queue_.empty()) {
      std::vector<const Member*> peers;
      for (const auto& [name, m] : members_)
        if (!gone(m.info.state())) peers.push_back(&m);
      std::shuffle(peers.begin(), peers.end(), rng_);
      if (peers.size() > config_.gossip_fanout) peers.resize(config_.gossip_fanout);
      for (const Member* m : peers) send(m->info.address(), proto::Packet());
    }
  }
}

void Membership::gossip_soon() {
  next_gossip_ms_ = std::min(next_gossip_ms_, last_gossip_ms_ + config_.min_gossip_gap_ms);
}

uint64_t Membership::next_timer_ms() const noexcept {
  uint64_t next = std::min(next_probe_ms_, next_gossip_ms_);
  if (probe_ && !probe_->acked && !probe_->indirect_sent)
    next = std::min(next, probe_->started_ms + config_.probe_timeout_ms);
  for (const auto& [name, m] : members_)
    if (m.info.state() == proto::MEMBER_SUSPECT) next = std::min(next, m.suspect_deadline_ms);
  return next;
}

void Membership::on_packet(const std::string& from, const proto::Packet& p, uint64_t now_ms) {
  if (p.has_from() && p.from().state() == proto::MEMBER_ALIVE) {
    merge(p.from(), now_ms);
    // A member that talks while this node holds it suspect or dead at its
    // own incarnation is told so (the reply carries it), so it refutes now
    // rather than when push-pull next reaches it.
    auto it = members_.find(p.from().name());
    if (it != members_.end() && it->second.info.state() != proto::MEMBER_ALIVE &&
        it->second.info.incarnation() >= p.from().incarnation())
      queue_.put(it->second.info);
  }
  for (const auto& m : p.members()) merge(m, now_ms);
  if (on_updates && (p.entries_size() > 0 || p.leases_size() > 0)) on_updates(p);
  if (leaving_) return;
  if (p.has_ping()) {
    // A ping meant for another node at this address (this one restarted
    // under a new name) gets no ack: the prober must not be misled.
    if (!p.ping().target().empty() && p.ping().target() != self_.name()) return;
    proto::Packet ack;
    ack.mutable_ack()->set_seq(p.ping().seq());
    send(from, std::move(ack));
  } else if (p.has_ping_req()) {
    const proto::GossipMember& target = p.ping_req().target();
    if (!plausible(target) || relays_.size() >= 1024) return;
    uint64_t seq = ++seq_;
    relays_[seq] = Relay{from, p.ping_req().seq(), now_ms + config_.probe_interval_ms};
    proto::Packet ping;
    ping.mutable_ping()->set_seq(seq);
    ping.mutable_ping()->set_target(target.name());
    send(target.address(), std::move(ping));
  } else if (p.has_ack()) {
    uint64_t seq = p.ack().seq();
    if (probe_ && probe_->seq == seq) {
      probe_->acked = true;
    } else if (auto it = relays_.find(seq); it != relays_.end()) {
      proto::Packet ack;
      ack.mutable_ack()->set_seq(it->second.origin_seq);
      std::string origin = it->second.origin;
      relays_.erase(it);
      send(origin, std::move(ack));
    }
  }
}

}  // namespace meshd::controller::gossip
