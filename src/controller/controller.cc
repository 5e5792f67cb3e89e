#include "controller/controller.h"

#include <sys/stat.h>

#include <map>

#include "base/addr.h"
#include "base/log.h"
#include "policy/authz.h"
#include "proto/frame.h"

namespace meshd::controller {

void Controller::count_live() {
  uint64_t entries = 0, services = 0, marks = 0;
  std::string last;
  registry_.for_each([&](const proto::Entry& e) {
    if (is_token_service(e.service())) {
      ++marks;
      return;
    }
    if (e.tombstone()) return;
    ++entries;
    if (e.service() != last) ++services;
    last = e.service();
  });
  live_entries_ = entries;
  live_services_ = services;
  token_marks_ = marks;
  publish_live_counts();
}

void Controller::publish_live_counts() {
  stats_->registry_entries.set(live_entries_);
  stats_->registry_services.set(live_services_);
  stats_->join_token_marks.set(token_marks_);
}

std::vector<std::string> Controller::claims_of(const proto::Entry* e) {
  if (e == nullptr || e->tombstone() || policy::is_policy_key(e->endpoint()) || is_token_service(e->service()))
    return {};
  if (!e->endpoint().empty()) return {e->endpoint()};
  return {e->definition().virtual_addresses().begin(), e->definition().virtual_addresses().end()};
}

void Controller::index_change(const proto::Entry* old, const proto::Entry& now) {
  std::vector<std::string> before = claims_of(old), after = claims_of(&now);
  // An endpoint's weight, labels or identity changing claims nothing new:
  // the common change costs no index work at all.
  if (before == after) return;
  for (const auto& a : before) {
    auto it = address_index_.find(a);
    if (it == address_index_.end()) continue;
    if (auto s = it->second.find(now.service()); s != it->second.end()) it->second.erase(s);
    if (it->second.empty()) address_index_.erase(it);
  }
  for (const auto& a : after) address_index_[a].insert(now.service());
  if (!after.empty()) ++address_generation_;
}

Parsed<bool> Controller::start(const Options& options, uint64_t now_ms) {
  auto opened = store_.open(options.data_dir, &registry_);
  if (!opened) return invalid(opened.error());
  count_live();
  expire_token_marks(now_ms);  // of tokens that expired while it was down
  LOG_INFO("controller", "%s: %zu records replayed, %zu entries", store_.path().c_str(), opened->records,
           registry_.size());
  // Leased entries that survived a restart get their full lease again: their
  // owners could not renew while the controller was down.
  registry_.for_each([&](const proto::Entry& e) {
    last_version_ = std::max(last_version_, e.version());
    if (e.tombstone() || e.lease_ms() == 0) return;
    lease_ms_[e.owner()] = e.lease_ms();
    lease_deadline_[e.owner()] = now_ms + e.lease_ms();
  });
  if (!options.registry_file.empty()) {
    file_.emplace(options.registry_file);
    // Entries the file no longer has were persisted under its owner: the
    // first load must know them to send their tombstones.
    if (auto r = load_file(now_ms); !r)
      LOG_ERROR("controller", "%s; serving the persisted registry until the file is fixed", r.error().c_str());
  }
  return true;
}

Parsed<Changes> Controller::load_file(uint64_t now_ms) {
  struct stat st {};
  if (stat(file_->path().c_str(), &st) != 0)
    return invalid("cannot read registry file " + file_->path() + ": " + strerror(errno));
  file_mtime_ns_ = static_cast<int64_t>(st.st_mtim.tv_sec) * 1'000'000'000 + st.st_mtim.tv_nsec;
  file_size_ = static_cast<uint64_t>(st.st_size);
  auto changes = file_->reload(now_ms);
  if (!changes) {
    stats_->file_reload_errors.inc();
    return invalid(changes.error());
  }
  stats_->file_reloads.inc();
  std::vector<proto::Entry> all = std::move(*changes);
  // An entry the file drops is the file's to delete only while the file
  // still owns it: one the register API (or another owner) took over since
  // stays, or an edit of the file would silently delete someone else's data.
  std::erase_if(all, [&](const proto::Entry& c) {
    if (!c.tombstone()) return false;
    const proto::Entry* cur = registry_.find(key_of(c));
    return cur != nullptr && !cur->tombstone() && cur->owner() != c.owner();
  });
  if (file_loads_++ == 0) {
    // After a restart the file may no longer list entries it owned before
    // (edited while the controller was down): they go now. On the first
    // load every entry of the file is in `all`, so "not in all" means gone.
    const std::string owner = file_->owner();
    std::vector<proto::Entry> gone;
    registry_.for_each([&](const proto::Entry& e) {
      if (e.owner() != owner || e.tombstone()) return;
      for (const auto& c : all)
        if (key_of(c) == key_of(e)) return;
      proto::Entry t;
      t.set_service(e.service());
      t.set_endpoint(e.endpoint());
      t.set_owner(owner);
      t.set_version(std::max(e.version() + 1, now_ms));
      t.set_tombstone(true);
      t.set_updated_unix_ms(now_ms);
      gone.push_back(std::move(t));
    });
    all.insert(all.end(), gone.begin(), gone.end());
  }
  LOG_INFO("controller", "%s: loaded (%zu changes)", file_->path().c_str(), all.size());
  return apply(all, now_ms);
}

Parsed<bool> Controller::maybe_compact() {
  // Rewrite the log when it is mostly history: past 1 MiB and four times
  // what the registry holds now.
  // Looked at again only after the log grew by a quarter, so the check
  // itself (a walk of the registry) stays rare.
  if (store_.log_bytes() < std::max<uint64_t>(next_compaction_check_, 1u << 20)) return true;
  next_compaction_check_ = store_.log_bytes() + store_.log_bytes() / 4;
  uint64_t live = registry_.canonical().size();
  if (store_.log_bytes() < 4 * live) return true;
  uint64_t before = store_.log_bytes();
  if (auto r = store_.compact(registry_); !r) return r;
  LOG_INFO("controller", "%s: compacted %llu -> %llu bytes", store_.path().c_str(),
           static_cast<unsigned long long>(before), static_cast<unsigned long long>(store_.log_bytes()));
  return true;
}

Parsed<Changes> Controller::poll_file(uint64_t now_ms) {
  if (!file_) return Changes{};
  struct stat st {};
  if (stat(file_->path().c_str(), &st) != 0) return Changes{};  // being replaced: look again next time
  int64_t mtime = static_cast<int64_t>(st.st_mtim.tv_sec) * 1'000'000'000 + st.st_mtim.tv_nsec;
  if (mtime == file_mtime_ns_ && static_cast<uint64_t>(st.st_size) == file_size_) return Changes{};
  return load_file(now_ms);
}

Parsed<Changes> Controller::apply(const std::vector<proto::Entry>& entries, uint64_t now_ms) {
  // What would change the registry, in order (a later entry for the same
  // key in this batch must beat the earlier one too).
  Registry staged_view;
  std::vector<proto::Entry> winners;
  for (const auto& e : entries) {
    // The marks of an expired token are gone on every replica: one that
    // arrives late (from a replica that was away) must not come back.
    if (is_token_service(e.service()) && e.token().expires_unix_s() <= now_ms / 1000) continue;
    const proto::Entry* old = staged_view.find(key_of(e));
    if (old == nullptr) old = registry_.find(key_of(e));
    if (old != nullptr && !supersedes(e, *old)) continue;
    staged_view.apply(e);
    winners.push_back(e);
  }
  // On disk before it counts: a crash after this line replays it.
  if (auto r = store_.append(winners); !r) return invalid(r.error());
  std::map<std::string, proto::ServiceUpdate> by_service;
  // Whether each touched service had a live entry before this batch, for
  // the services gauge: O(entries of the touched services), not O(registry).
  // Every entry, local or from gossip, reaches the registry here (replay
  // and tombstone expiry aside, see count_live() and expire_tombstones()).
  std::map<std::string, bool> was_live;
  for (const auto& e : winners)
    if (!is_token_service(e.service()) && !was_live.contains(e.service()))
      was_live[e.service()] = !registry_.service(e.service()).empty();
  bool marks_changed = false;
  for (const auto& e : winners) {
    // Looked at before registry_.apply() overwrites it in place. A later
    // winner for the same key in this batch finds the earlier one here.
    const proto::Entry* old = registry_.find(key_of(e));
    if (is_token_service(e.service())) {
      // No service, no address, no subscriber: only counted.
      if (old == nullptr) ++token_marks_;
      registry_.apply(e);
      stats_->entries_applied.inc();
      marks_changed = true;
      continue;
    }
    bool old_live = old != nullptr && !old->tombstone();
    if (!address_index_stale_) index_change(old, e);
    if (old_live && e.tombstone()) --live_entries_;
    if (!old_live && !e.tombstone()) ++live_entries_;
    registry_.apply(e);
    // A leased entry learned from another replica: its owner renews there,
    // and the deadline arrives by gossip; until then it gets a full lease.
    if (e.lease_ms() > 0 && !e.tombstone() && !lease_deadline_.contains(e.owner())) {
      lease_ms_[e.owner()] = e.lease_ms();
      lease_deadline_[e.owner()] = now_ms + e.lease_ms();
    }
    stats_->entries_applied.inc();
    proto::ServiceUpdate& u = by_service[e.service()];
    u.set_service(e.service());
    if (e.endpoint().empty()) {
      if (!e.tombstone()) *u.mutable_definition() = e.definition();
    } else if (policy::is_policy_key(e.endpoint())) {
      if (e.tombstone())
        u.add_removed_policies(policy::policy_key_port(e.endpoint()).value_or(0));
      else
        *u.add_policies() = e.policy();
    } else if (e.tombstone()) {
      u.add_removed(e.endpoint());
    } else {
      *u.add_upserted() = e.address_of();
    }
  }
  Changes out;
  for (auto& [name, u] : by_service) {
    u.set_exists(!registry_.service(name).empty());
    if (u.exists() && !was_live[name]) ++live_services_;
    if (!u.exists() && was_live[name]) --live_services_;
    out.push_back(std::move(u));
  }
  if (!by_service.empty() || marks_changed) publish_live_counts();
  // A stale index is rebuilt whole on its next lookup: say it may know more.
  if (!by_service.empty() && address_index_stale_) ++address_generation_;
  if (on_change_ && !winners.empty()) on_change_(winners);
  return out;
}

namespace {
// Equal but for version and write time.
bool same_value(const proto::Entry& a, const proto::Entry& b) {
  if (a.tombstone() || b.tombstone() || a.owner() != b.owner() || a.lease_ms() != b.lease_ms()) return false;
  proto::Entry x = a, y = b;
  x.set_version(0);
  y.set_version(0);
  x.set_updated_unix_ms(0);
  y.set_updated_unix_ms(0);
  return proto::serialize_deterministic(x) == proto::serialize_deterministic(y);
}
}  // namespace

uint64_t Controller::next_version(const EntryKey& key, uint64_t now_ms) {
  uint64_t v = std::max(last_version_ + 1, now_ms);
  if (const proto::Entry* old = registry_.find(key)) v = std::max(v, old->version() + 1);
  last_version_ = v;
  return v;
}

proto::Entry Controller::tombstone_for(const proto::Entry& e, uint64_t now_ms) {
  proto::Entry t;
  t.set_service(e.service());
  t.set_endpoint(e.endpoint());
  t.set_owner(e.owner());
  t.set_version(next_version(key_of(e), now_ms));
  t.set_tombstone(true);
  t.set_updated_unix_ms(now_ms);
  return t;
}

Parsed<Changes> Controller::register_entries(const proto::Register& req, uint64_t now_ms) {
  if (req.owner().empty() || req.owner().size() > 256) return invalid("register: an owner name is required");
  if (req.entries().empty()) return invalid("register: no entries");
  if (req.entries_size() > 10000) return invalid("register: at most 10000 entries at once");
  if (req.lease_ms() > 0 && (req.lease_ms() < 1000 || req.lease_ms() > 86'400'000))
    return invalid("register: a lease must be between 1s and 24h");
  std::vector<proto::Entry> entries;
  for (const auto& in : req.entries()) {
    // Only the certifier and a holder of the token key write marks.
    if (is_token_service(in.service()))
      return invalid("register: service '" + in.service() + "' is reserved for join-token state");
    proto::Entry e = in;
    e.set_owner(req.owner());
    e.set_tombstone(false);
    e.set_version(1);  // for validate(); the real one below
    e.set_updated_unix_ms(now_ms);
    e.set_lease_ms(req.lease_ms());
    if (!e.endpoint().empty()) {
      // One spelling per address, so re-registering finds the same key.
      if (auto a = SocketAddr::parse(e.endpoint())) {
        e.set_endpoint(a->str());
        if (e.has_address_of()) e.mutable_address_of()->set_address(a->str());
      }
    }
    if (auto ok = validate(e); !ok) return invalid("register: " + ok.error());
    // Re-registering what is already there, unchanged, is a renewal: no
    // new version and no write, or every renewal of every endpoint would
    // grow the log and wake every subscriber.
    if (const proto::Entry* old = registry_.find(key_of(e)); old != nullptr && same_value(*old, e)) continue;
    e.set_version(next_version(key_of(e), now_ms));
    entries.push_back(std::move(e));
  }
  auto changes = apply(entries, now_ms);
  if (!changes) return changes;
  if (req.lease_ms() > 0) {
    lease_ms_[req.owner()] = req.lease_ms();
    lease_deadline_[req.owner()] = std::max(lease_deadline_[req.owner()], now_ms + req.lease_ms());
    announce_lease(req.owner());
  }
  return changes;
}

Parsed<Changes> Controller::deregister(const proto::Deregister& req, uint64_t now_ms) {
  // A revocation is undone by no one: it expires with its token.
  if (is_token_service(req.service()))
    return invalid("deregister: service '" + req.service() + "' is reserved for join-token state");
  std::string endpoint = req.endpoint();
  if (!endpoint.empty() && !policy::is_policy_key(endpoint)) {
    auto a = SocketAddr::parse(endpoint);
    if (!a) return invalid("deregister: " + a.error());
    endpoint = a->str();
  }
  const proto::Entry* e = registry_.find({req.service(), endpoint});
  if (e == nullptr || e->tombstone())
    return invalid("deregister: " + req.service() + (endpoint.empty() ? "" : " " + endpoint) + " is not registered");
  if (!req.owner().empty() && e->owner() != req.owner())
    return invalid("deregister: " + req.service() + " " + endpoint + " belongs to " + e->owner() + ", not " +
                   req.owner());
  return apply({tombstone_for(*e, now_ms)}, now_ms);
}

Parsed<bool> Controller::renew(const std::string& owner, uint64_t now_ms) {
  auto it = lease_ms_.find(owner);
  if (it == lease_ms_.end()) {
    // Entries another replica accepted carry their lease: an owner that
    // registered elsewhere may renew here (its replica may have died).
    uint64_t lease = 0;
    registry_.for_each([&](const proto::Entry& e) {
      if (lease == 0 && e.owner() == owner && !e.tombstone()) lease = e.lease_ms();
    });
    if (lease == 0) return invalid("renew: " + owner + " holds no lease (register again)");
    it = lease_ms_.emplace(owner, lease).first;
  }
  lease_deadline_[owner] = std::max(lease_deadline_[owner], now_ms + it->second);
  announce_lease(owner);
  return true;
}

void Controller::announce_lease(const std::string& owner) {
  if (!on_lease_) return;
  proto::LeaseUpdate l;
  l.set_owner(owner);
  l.set_deadline_unix_ms(lease_deadline_[owner]);
  l.set_lease_ms(lease_ms_[owner]);
  on_lease_(l);
}

bool Controller::merge_lease(const proto::LeaseUpdate& lease, uint64_t now_ms) {
  if (lease.owner().empty() || lease.owner().size() > 256 || lease.lease_ms() == 0 || lease.lease_ms() > 86'400'000 ||
      lease.deadline_unix_ms() < now_ms)
    return false;
  // Kept also for an owner with no entries here yet (they may arrive after
  // its renewal); a deadline that passes with nothing to remove is simply
  // forgotten by expire_leases().
  uint64_t& deadline = lease_deadline_[lease.owner()];
  lease_ms_[lease.owner()] = lease.lease_ms();
  if (lease.deadline_unix_ms() <= deadline) return false;
  deadline = lease.deadline_unix_ms();
  return true;
}

std::vector<proto::LeaseUpdate> Controller::leases() const {
  std::vector<proto::LeaseUpdate> out;
  for (const auto& [owner, deadline] : lease_deadline_) {
    proto::LeaseUpdate l;
    l.set_owner(owner);
    l.set_deadline_unix_ms(deadline);
    auto it = lease_ms_.find(owner);
    l.set_lease_ms(it == lease_ms_.end() ? 0 : it->second);
    out.push_back(std::move(l));
  }
  return out;
}

size_t Controller::expire_tombstones(uint64_t now_ms, uint64_t lifetime_ms) {
  // Only tombstones and marks go: they count in no live gauge and claim no
  // address, so the live counts and the address index stay as they are.
  return registry_.expire_tombstones(now_ms, lifetime_ms) + expire_token_marks(now_ms);
}

size_t Controller::expire_token_marks(uint64_t now_ms) {
  // Every replica drops them at the same time, with no tombstone: they are
  // worthless once their token expired, and apply() refuses them from then.
  size_t n = registry_.erase_in(std::string(kTokenService), [now_s = now_ms / 1000](const proto::Entry& e) {
    return e.token().expires_unix_s() <= now_s;
  });
  if (n > 0) {
    token_marks_ -= std::min<uint64_t>(token_marks_, n);
    publish_live_counts();
  }
  return n;
}

Controller::TokenUse Controller::token_use(const std::string& token_id) const {
  TokenUse use;
  const std::string service(kTokenService);
  use.revoked = registry_.find({service, revoked_key(token_id)}) != nullptr;
  registry_.for_each_prefixed(service, spent_prefix(token_id),
                              [&](const proto::Entry& e) { use.spent += e.token().spent(); });
  return use;
}

Parsed<bool> Controller::put_token_mark(const EntryKey& key, const std::string& owner, const proto::TokenMark& mark,
                                        uint64_t now_ms) {
  if (registry_.find(key) == nullptr && token_marks_ >= kMaxTokenMarks) expire_token_marks(now_ms);
  if (registry_.find(key) == nullptr && token_marks_ >= kMaxTokenMarks)
    return invalid("this controller holds " + std::to_string(token_marks_) +
                   " join-token revocations and use counts already, the most it keeps until tokens expire "
                   "(mint fewer or shorter-lived tokens)");
  proto::Entry e;
  e.set_service(key.first);
  e.set_endpoint(key.second);
  e.set_owner(owner);
  e.set_updated_unix_ms(now_ms);
  *e.mutable_token() = mark;
  e.set_version(next_version(key, now_ms));
  if (auto ok = validate(e); !ok) return ok;
  if (auto r = apply({e}, now_ms); !r) return invalid(r.error());
  return true;
}

Parsed<bool> Controller::spend_token(const proto::JoinToken& t, uint64_t now_ms) {
  // Only this replica writes its own counter, so its versions only grow and
  // the merge keeps its latest count (see token_marks.h).
  EntryKey key{std::string(kTokenService), spent_key(t.id(), replica_)};
  const proto::Entry* old = registry_.find(key);
  proto::TokenMark mark;
  mark.set_expires_unix_s(t.expires_unix_s());
  mark.set_spent(old == nullptr ? 1 : old->token().spent() + 1);
  return put_token_mark(key, "replica:" + replica_, mark, now_ms);
}

Parsed<bool> Controller::revoke_token(const std::string& token_id, uint64_t expires_unix_s, uint64_t now_ms) {
  EntryKey key{std::string(kTokenService), revoked_key(token_id)};
  const proto::Entry* old = registry_.find(key);
  const bool revoked_already = old != nullptr && !old->tombstone();
  if (revoked_already && old->token().expires_unix_s() >= expires_unix_s) return false;
  // A later expiry is kept (revoked by id, the expiry is "366 days from
  // now", later each time), but the token was refused already.
  proto::TokenMark mark;
  mark.set_expires_unix_s(expires_unix_s);
  if (auto ok = put_token_mark(key, "revoke", mark, now_ms); !ok) return ok;
  return !revoked_already;
}

Parsed<Changes> Controller::expire_leases(uint64_t now_ms) {
  std::vector<std::string> expired;
  for (const auto& [owner, deadline] : lease_deadline_)
    if (deadline < now_ms) expired.push_back(owner);
  if (expired.empty()) return Changes{};
  std::vector<proto::Entry> gone;
  for (const auto& owner : expired) {
    size_t n = 0;
    registry_.for_each([&](const proto::Entry& e) {
      if (e.owner() == owner && !e.tombstone()) {
        gone.push_back(tombstone_for(e, now_ms));
        ++n;
      }
    });
    lease_deadline_.erase(owner);
    lease_ms_.erase(owner);
    // With replicas every one of them sees each deadline pass; only the
    // ones that still had entries to remove say so.
    if (n == 0) continue;
    LOG_WARN("controller", "lease of %s expired: removing its %zu entries", owner.c_str(), n);
    stats_->leases_expired.inc();
  }
  return apply(gone, now_ms);
}

proto::ServiceUpdate Controller::snapshot(const std::string& service) const {
  proto::ServiceUpdate u;
  u.set_service(service);
  u.set_snapshot(true);
  if (is_token_service(service)) return u;  // no service: marks are not served
  auto entries = registry_.service(service);
  u.set_exists(!entries.empty());
  for (const proto::Entry* e : entries) {
    if (e->endpoint().empty())
      *u.mutable_definition() = e->definition();
    else if (policy::is_policy_key(e->endpoint()))
      *u.add_policies() = e->policy();
    else
      *u.add_upserted() = e->address_of();
  }
  return u;
}

std::string Controller::service_for_address(const std::string& addr) {
  if (address_index_stale_) {
    address_index_.clear();
    registry_.for_each([&](const proto::Entry& e) {
      for (auto& a : claims_of(&e)) address_index_[std::move(a)].insert(e.service());
    });
    address_index_stale_ = false;
  }
  auto it = address_index_.find(addr);
  return it == address_index_.end() ? std::string() : *it->second.begin();
}

proto::ServiceList Controller::services() const {
  proto::ServiceList list;
  proto::ServiceSummary* current = nullptr;
  registry_.for_each([&](const proto::Entry& e) {
    if (e.tombstone() || is_token_service(e.service())) return;
    if (current == nullptr || current->definition().name() != e.service()) {
      current = list.add_services();
      current->mutable_definition()->set_name(e.service());
    }
    if (e.endpoint().empty()) {
      *current->mutable_definition() = e.definition();
      current->set_owner(e.owner());
    } else if (!policy::is_policy_key(e.endpoint())) {
      current->set_endpoints(current->endpoints() + 1);
    }
  });
  return list;
}

}  // namespace meshd::controller
