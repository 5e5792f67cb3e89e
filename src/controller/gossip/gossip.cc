#include "controller/gossip/gossip.h"

#include <netinet/in.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include "base/clock.h"
#include "base/log.h"
#include "io/socket.h"

namespace meshd::controller::gossip {
namespace {

static_assert(static_cast<int>(Drop::kCount) == kGossipDropReasons);

// Entries bigger than this go by push-pull only: they would crowd a
// datagram (or never fit one).
constexpr size_t kMaxPiggybackEntryBytes = 600;
constexpr uint64_t kTombstoneGcIntervalMs = 60'000;
constexpr size_t kMaxPiggybackBatch = 64;

}  // namespace

Gossip::Gossip(Options options, ClusterKey key, Controller* controller, Stats* stats, std::function<uint64_t()> wall_ms)
    : options_(std::move(options)),
      controller_(controller),
      stats_(stats),
      wall_ms_(std::move(wall_ms)),
      sealer_(std::move(key), std::random_device{}() ^ (uint64_t{std::random_device{}()} << 32)),
      membership_(options_.membership, this, std::random_device{}()),
      rng_(std::random_device{}()) {
  stats_->gossip_enabled = true;
  membership_.on_updates = [this](const proto::Packet& p) {
    // A renewal that was news here is passed on, like an entry that
    // changed the registry: each replica forwards it at most once.
    for (const auto& l : p.leases())
      if (controller_->merge_lease(l, wall_ms_())) membership_.queue().put(l);
    if (p.entries_size() > 0) apply_remote(p.entries(), false);
  };
  membership_.on_arrival = [this](const std::string& address) { start_sync(address); };
  controller_->set_on_change([this](const std::vector<proto::Entry>& winners) { on_local_change(winners); });
  controller_->set_on_lease([this](const proto::LeaseUpdate& l) {
    membership_.queue().put(l);
    membership_.gossip_soon();
  });
}

Gossip::~Gossip() {
  controller_->set_on_change(nullptr);
  controller_->set_on_lease(nullptr);
  for (auto& c : conns_) io::close_fd(c->fd);
  io::close_fd(udp_fd_);
  io::close_fd(tcp_fd_);
}

uint64_t Gossip::mono_ms() const { return monotonic_ms(); }

Parsed<bool> Gossip::start() {
  const SocketAddr& a = options_.listen;
  udp_fd_ = ::socket(a.family(), SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (udp_fd_ < 0) return invalid(std::string("gossip: udp socket: ") + strerror(errno));
  if (::bind(udp_fd_, a.sa(), a.len()) != 0)
    return invalid("cannot listen on " + a.str() + " (gossip, udp): " + strerror(errno));
  bound_ = *io::local_addr(udp_fd_);
  SocketAddr tcp_addr = a;
  tcp_addr.set_port(bound_.port());  // port 0: TCP takes the port UDP got
  if (auto free = io::ensure_address_free(tcp_addr); !free)
    return invalid("cannot listen on " + tcp_addr.str() + " (gossip, tcp): " + free.error().what());
  auto fd = io::listen_tcp(tcp_addr, false, 64);
  if (!fd) return invalid("cannot listen on " + tcp_addr.str() + " (gossip, tcp): " + fd.error().what());
  tcp_fd_ = *fd;
  started_mono_ms_ = mono_ms();
  LOG_INFO("gossip", "node %s gossiping on %s (advertised as %s)", options_.membership.name.c_str(),
           bound_.str().c_str(), options_.membership.address.c_str());
  // Joining is a push-pull with each seed: it brings the members and the
  // registry at once, and tells the seeds about this node.
  std::erase_if(options_.join, [this](const SocketAddr& seed) { return seed.str() == options_.membership.address; });
  for (const auto& seed : options_.join) start_sync(seed.str());
  next_sync_ms_ = started_mono_ms_ + options_.sync_interval_ms;
  next_tombstone_gc_ms_ = started_mono_ms_ + kTombstoneGcIntervalMs;
  update_gauges();
  return true;
}

void Gossip::drop(Drop d) { stats_->gossip_packets_dropped[static_cast<int>(d)].inc(); }

void Gossip::send(const std::string& address, const proto::Packet& packet) {
  auto to = SocketAddr::parse(address);
  if (!to) return;
  std::string sealed = sealer_.seal(proto::serialize_deterministic(packet), wall_ms_());
  if (sealed.size() > kMaxPacketBytes) {
    LOG_DEBUG("gossip", "not sending a %zu-byte packet to %s", sealed.size(), address.c_str());
    return;
  }
  if (::sendto(udp_fd_, sealed.data(), sealed.size(), MSG_DONTWAIT, to->sa(), to->len()) >= 0)
    stats_->gossip_packets_out.inc();
}

void Gossip::read_udp() {
  char buf[65536];
  // Bounded per wake-up, so a flood cannot starve the API's streams.
  for (int i = 0; i < 256; ++i) {
    sockaddr_storage ss{};
    socklen_t len = sizeof ss;
    ssize_t n = ::recvfrom(udp_fd_, buf, sizeof buf, MSG_TRUNC, reinterpret_cast<sockaddr*>(&ss), &len);
    if (n < 0) return;
    stats_->gossip_packets_in.inc();
    if (static_cast<size_t>(n) > kMaxPacketBytes) {
      drop(Drop::kOversize);
      continue;
    }
    auto payload = sealer_.open(std::string_view(buf, static_cast<size_t>(n)), wall_ms_());
    if (!payload) {
      drop(payload.error());
      continue;
    }
    proto::Packet p;
    if (!p.ParseFromArray(payload->data(), static_cast<int>(payload->size()))) {
      drop(Drop::kMalformed);
      continue;
    }
    SocketAddr from = SocketAddr::from_sockaddr(reinterpret_cast<sockaddr*>(&ss), len);
    membership_.on_packet(from.str(), p, mono_ms());
  }
}

void Gossip::apply_remote(const google::protobuf::RepeatedPtrField<proto::Entry>& entries, bool from_sync) {
  uint64_t now = wall_ms_();
  std::vector<proto::Entry> batch;
  batch.reserve(static_cast<size_t>(entries.size()));
  for (const auto& e : entries) {
    if (auto ok = validate(e); !ok) {
      stats_->gossip_entries_rejected.inc();
      LOG_DEBUG("gossip", "refused a remote entry: %s", ok.error().c_str());
      continue;
    }
    // A tombstone past its lifetime was forgotten here already (or is
    // about to be): taking it back would only start the forgetting again.
    if (e.tombstone() && now > options_.tombstone_lifetime_ms &&
        e.updated_unix_ms() < now - options_.tombstone_lifetime_ms)
      continue;
    batch.push_back(e);
  }
  if (batch.empty()) return;
  applying_sync_ = from_sync;
  uint64_t before = stats_->entries_applied.get();
  auto changes = controller_->apply(batch, now);
  applying_sync_ = false;
  if (!changes) {
    LOG_ERROR("gossip", "applying %zu remote entries: %s", batch.size(), changes.error().c_str());
    return;
  }
  stats_->gossip_entries_applied.add(stats_->entries_applied.get() - before);
  if (!changes->empty() && publish_) publish_(*changes);
}

void Gossip::on_local_change(const std::vector<proto::Entry>& winners) {
  // A bulk write (a registry file, a big registration) would take many
  // gossip rounds, one datagram at a time: a push-pull with every live
  // member delivers it at once instead.
  if (!applying_sync_ && winners.size() > kMaxPiggybackBatch) push_to_all_ = true;
  for (const auto& e : winners) {
    digest_.mark_dirty(e.service());
    if (!applying_sync_ && e.ByteSizeLong() <= kMaxPiggybackEntryBytes) membership_.queue().put(e);
  }
  if (!applying_sync_) membership_.gossip_soon();
}

// --- push-pull ---------------------------------------------------------------

proto::SyncFrame Gossip::frame(uint32_t step) const {
  proto::SyncFrame f;
  f.set_step(step);
  *f.mutable_from() = membership_.self();
  for (const auto& m : membership_.records()) *f.add_members() = m;
  for (const auto& l : controller_->leases()) *f.add_leases() = l;
  return f;
}

void Gossip::merge_frame_state(const proto::SyncFrame& f) {
  uint64_t now = mono_ms();
  for (const auto& m : f.members()) membership_.merge(m, now);
  for (const auto& l : f.leases()) controller_->merge_lease(l, wall_ms_());
}

void Gossip::queue_frame(Conn& c, const proto::SyncFrame& f) {
  std::string sealed = sealer_.seal(proto::serialize_deterministic(f), wall_ms_());
  uint32_t n = static_cast<uint32_t>(sealed.size());
  const char header[4] = {static_cast<char>(n >> 24), static_cast<char>(n >> 16), static_cast<char>(n >> 8),
                          static_cast<char>(n)};
  c.out.append(header, 4);
  c.out.append(sealed);
  write_conn(c);
}

void Gossip::start_sync(const std::string& address) {
  size_t outbound = 0;
  for (const auto& c : conns_) {
    if (!c->initiator) continue;
    if (c->peer == address) return;  // one exchange with a peer at a time
    ++outbound;
  }
  if (outbound >= options_.max_outbound_syncs) return;
  auto to = SocketAddr::parse(address);
  if (!to) return;
  int fd = ::socket(to->family(), SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) return;
  auto c = std::make_unique<Conn>();
  c->fd = fd;
  c->initiator = true;
  c->peer = address;
  // Its answer (step 2) carries entries: this side chose the peer, from
  // its members or seeds.
  c->decoder = proto::FrameDecoder(kMaxSyncFrameBytes + static_cast<uint32_t>(kHeaderBytes));
  c->deadline_ms = mono_ms() + options_.sync_timeout_ms;
  c->expect = 2;
  if (::connect(fd, to->sa(), to->len()) != 0) {
    if (errno != EINPROGRESS) {
      io::close_fd(fd);
      stats_->anti_entropy_failed.inc();
      return;
    }
    c->connecting = true;
  }
  io::set_nodelay(fd);
  Conn& ref = *c;
  conns_.push_back(std::move(c));
  if (!ref.connecting) {
    proto::SyncFrame f = frame(1);
    for (const auto& [service, hash] : digest_.get(controller_->registry())) {
      auto* d = f.add_digest();
      d->set_service(service);
      d->set_hash(hash);
    }
    queue_frame(ref, f);
  }
}

void Gossip::accept_syncs() {
  for (int i = 0; i < 16; ++i) {
    size_t inbound = 0;
    for (const auto& c : conns_) inbound += c->initiator ? 0 : 1;
    if (inbound >= options_.max_inbound_syncs) return;
    sockaddr_storage ss{};
    socklen_t len = sizeof ss;
    int fd = accept4(tcp_fd_, reinterpret_cast<sockaddr*>(&ss), &len, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (fd < 0) return;
    io::set_nodelay(fd);
    auto c = std::make_unique<Conn>();
    c->fd = fd;
    c->peer = SocketAddr::from_sockaddr(reinterpret_cast<sockaddr*>(&ss), len).str();
    c->deadline_ms = mono_ms() + options_.sync_timeout_ms;
    c->expect = 1;
    conns_.push_back(std::move(c));
  }
}

void Gossip::close_conn(Conn& c, bool ok, const std::string& why) {
  if (c.closed) return;
  c.closed = true;
  io::close_fd(c.fd);
  c.fd = -1;
  if (ok) {
    stats_->anti_entropy_ok.inc();
  } else {
    stats_->anti_entropy_failed.inc();
    LOG_DEBUG("gossip", "push-pull with %s failed: %s", c.peer.c_str(), why.c_str());
  }
}

void Gossip::write_conn(Conn& c) {
  while (c.sent < c.out.size()) {
    ssize_t n = ::send(c.fd, c.out.data() + c.sent, c.out.size() - c.sent, MSG_NOSIGNAL);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && errno == EAGAIN) return;
    if (n <= 0) {
      close_conn(c, false, std::string("send: ") + strerror(errno));
      return;
    }
    c.sent += static_cast<size_t>(n);
  }
  c.out.clear();
  c.sent = 0;
  if (c.finished) close_conn(c, true, "");
}

void Gossip::read_conn(Conn& c) {
  char buf[65536];
  for (int i = 0; i < 64 && !c.closed; ++i) {
    ssize_t n = ::recv(c.fd, buf, sizeof buf, 0);
    if (n < 0 && (errno == EAGAIN || errno == EINTR)) break;
    if (n <= 0) {
      close_conn(c, false, n == 0 ? "closed early" : strerror(errno));
      return;
    }
    c.decoder.feed(std::string_view(buf, static_cast<size_t>(n)));
    while (!c.closed) {
      auto sealed = c.decoder.next();
      if (!sealed) break;
      auto payload = sealer_.open(*sealed, wall_ms_());
      if (!payload) {
        drop(payload.error());
        close_conn(c, false, std::string("frame dropped: ") + drop_name(payload.error()));
        return;
      }
      proto::SyncFrame f;
      if (!f.ParseFromArray(payload->data(), static_cast<int>(payload->size())) || !within_bounds(f) ||
          f.step() != c.expect) {
        drop(Drop::kMalformed);
        close_conn(c, false, "malformed frame");
        return;
      }
      on_frame(c, f);
      // The peer holds the key: its later frames may carry whole services.
      if (!c.closed && c.decoder.buffered() == 0)
        c.decoder = proto::FrameDecoder(kMaxSyncFrameBytes + static_cast<uint32_t>(kHeaderBytes));
    }
    if (c.decoder.failed()) {
      drop(Drop::kOversize);
      close_conn(c, false, c.decoder.error());
      return;
    }
  }
}

void Gossip::on_frame(Conn& c, const proto::SyncFrame& in) {
  merge_frame_state(in);
  switch (in.step()) {
    case 1: {
      // Responder: everything the initiator lacks or has otherwise, and
      // the list of what this side wants.
      const auto& local = digest_.get(controller_->registry());
      DigestDiff d = diff(local, in.digest());
      proto::SyncFrame out = frame(2);
      append_entries(controller_->registry(), d.send, sync_rotation_++, out.mutable_entries());
      for (auto& s : d.want) out.add_want(std::move(s));
      c.expect = 3;
      queue_frame(c, out);
      break;
    }
    case 2: {
      apply_remote(in.entries(), true);
      std::vector<std::string> want(in.want().begin(), in.want().end());
      proto::SyncFrame out = frame(3);  // members again: after any refutation
      append_entries(controller_->registry(), want, sync_rotation_++, out.mutable_entries());
      c.finished = true;
      queue_frame(c, out);
      break;
    }
    case 3:
      apply_remote(in.entries(), true);
      c.finished = true;
      if (c.out.empty()) close_conn(c, true, "");
      break;
    default: break;
  }
}

// --- the poll loop -----------------------------------------------------------

void Gossip::add_fds(std::vector<pollfd>* fds) {
  fds->push_back({udp_fd_, POLLIN, 0});
  fds->push_back({tcp_fd_, POLLIN, 0});
  for (const auto& c : conns_) {
    short events = c->connecting ? POLLOUT : POLLIN;
    if (c->sent < c->out.size()) events |= POLLOUT;
    fds->push_back({c->fd, events, 0});
  }
}

void Gossip::on_events(std::span<const pollfd> fds) {
  if (fds.size() >= 2) {
    if (fds[0].revents & POLLIN) read_udp();
    if (fds[1].revents & POLLIN) accept_syncs();
    // conns_ may have grown in accept_syncs(): only the polled ones.
    size_t polled = fds.size() - 2;
    for (size_t i = 0; i < polled && i < conns_.size(); ++i) {
      Conn& c = *conns_[i];
      short ev = fds[i + 2].revents;
      if (c.closed || ev == 0) continue;
      if (c.connecting) {
        int err = 0;
        socklen_t len = sizeof err;
        getsockopt(c.fd, SOL_SOCKET, SO_ERROR, &err, &len);
        if (err != 0 || (ev & (POLLERR | POLLHUP))) {
          close_conn(c, false, std::string("connect: ") + strerror(err != 0 ? err : ECONNREFUSED));
          continue;
        }
        c.connecting = false;
        proto::SyncFrame f = frame(1);
        for (const auto& [service, hash] : digest_.get(controller_->registry())) {
          auto* d = f.add_digest();
          d->set_service(service);
          d->set_hash(hash);
        }
        queue_frame(c, f);
        continue;
      }
      if (ev & (POLLIN | POLLHUP | POLLERR)) read_conn(c);
      if (!c.closed && (ev & POLLOUT)) write_conn(c);
    }
  }
  timers();
}

void Gossip::timers() {
  uint64_t now = mono_ms();
  if (now >= membership_.next_timer_ms()) membership_.tick(now);
  for (auto& c : conns_)
    if (!c->closed && now >= c->deadline_ms) close_conn(*c, false, "timed out");
  std::erase_if(conns_, [](const std::unique_ptr<Conn>& c) { return c->closed; });
  if (push_to_all_) {
    push_to_all_ = false;
    for (const auto& [name, m] : membership_.members())
      if (m.info.state() == proto::MEMBER_ALIVE) start_sync(m.info.address());
  }
  if (now >= next_sync_ms_) {
    next_sync_ms_ = now + options_.sync_interval_ms;
    if (auto alive = membership_.random_address(proto::MEMBER_ALIVE)) {
      start_sync(*alive);
    } else if (!options_.join.empty()) {
      // Alone: try the seeds again (they may have started after this node).
      start_sync(options_.join[rng_() % options_.join.size()].str());
    }
    // A partition heals only if someone talks across it: one dead member
    // a round gets a push-pull too (a connect attempt, if it is gone).
    if (auto dead = membership_.random_address(proto::MEMBER_DEAD)) start_sync(*dead);
  }
  if (now >= next_tombstone_gc_ms_) {
    next_tombstone_gc_ms_ = now + kTombstoneGcIntervalMs;
    if (controller_->expire_tombstones(wall_ms_(), options_.tombstone_lifetime_ms) > 0) digest_.mark_all_dirty();
  }
  update_gauges();
}

int Gossip::timeout_ms() {
  uint64_t now = mono_ms();
  uint64_t next = std::min(membership_.next_timer_ms(), next_sync_ms_);
  for (const auto& c : conns_) next = std::min(next, c->deadline_ms);
  return next <= now ? 0 : static_cast<int>(std::min<uint64_t>(next - now, 1000));
}

void Gossip::update_gauges() {
  for (int s = proto::MEMBER_ALIVE; s <= proto::MEMBER_LEFT; ++s)
    stats_->gossip_members[s].set(membership_.count(static_cast<proto::MemberState>(s)));
}

proto::MemberList Gossip::members() const {
  proto::MemberList list;
  uint64_t wall = wall_ms_(), mono = mono_ms();
  auto since = [&](uint64_t mono_since) { return wall - std::min(wall, mono - std::min(mono, mono_since)); };
  auto add = [&](const proto::GossipMember& m, uint64_t since_mono, bool self) {
    proto::ClusterMember* c = list.add_members();
    c->set_name(m.name());
    c->set_address(m.address());
    c->set_api_address(m.api_address());
    c->set_state(member_state_name(m.state()));
    c->set_incarnation(m.incarnation());
    c->set_since_unix_ms(since(since_mono));
    c->set_self(self);
  };
  add(membership_.self(), started_mono_ms_, true);
  for (const auto& [name, m] : membership_.members()) add(m.info, m.since_ms, false);
  return list;
}

void Gossip::leave() {
  membership_.leave(mono_ms());
  // Directly to every live member (at most 32): a goodbye that waits for
  // gossip rounds would not be heard, as this node stops now.
  int sent = 0;
  for (const auto& [name, m] : membership_.members()) {
    if (sent >= 32) break;
    if (m.info.state() == proto::MEMBER_ALIVE || m.info.state() == proto::MEMBER_SUSPECT) {
      membership_.send_updates(m.info.address());
      ++sent;
    }
  }
}

}  // namespace meshd::controller::gossip
