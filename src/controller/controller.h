// Controller: the registry, its sources and its disk, behind one apply().
//
// Every source (the registry file today; the register API, leases and
// gossip next) hands versioned entries to apply(), which persists what
// changes the registry before it counts as applied, and reports which
// services changed so the API server can tell their subscribers.
#pragma once

#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "controller/registry.h"
#include "controller/registry_file.h"
#include "controller/stats.h"
#include "controller/store.h"
#include "controller/token_marks.h"
#include "proto/api.pb.h"
#include "proto/gossip.pb.h"

namespace meshd::controller {

struct Options {
  std::string data_dir;
  std::string registry_file;  // empty: none
};

// What one apply() changed, per service, as the update its subscribers get.
// Join-token marks (token_marks.h) change no service: they are in no update.
using Changes = std::vector<proto::ServiceUpdate>;

class Controller {
 public:
  explicit Controller(Stats* stats = nullptr)
      : stats_(stats != nullptr ? stats : &own_stats_), replica_(new_replica_name()) {}

  // Opens the store (replaying it) and loads the registry file. A bad file
  // at start-up is logged and the persisted state serves until a good edit.
  Parsed<bool> start(const Options& options, uint64_t now_ms);
  // Persists and merges entries; entries that change nothing are skipped.
  Parsed<Changes> apply(const std::vector<proto::Entry>& entries, uint64_t now_ms);
  // Rewrites the store when it has grown mostly stale.
  Parsed<bool> maybe_compact();
  // Re-reads the registry file when it changed on disk.
  Parsed<Changes> poll_file(uint64_t now_ms);

  // The register API. Entries are validated, owned and versioned here:
  // versions from the controller's clock, never from the client.
  Parsed<Changes> register_entries(const proto::Register& req, uint64_t now_ms);
  Parsed<Changes> deregister(const proto::Deregister& req, uint64_t now_ms);
  Parsed<bool> renew(const std::string& owner, uint64_t now_ms);
  // Removes the entries of owners whose lease ran out.
  Parsed<Changes> expire_leases(uint64_t now_ms);
  // Drops tombstones older than lifetime_ms, and the join-token marks of
  // expired tokens; returns how many entries went.
  size_t expire_tombstones(uint64_t now_ms, uint64_t lifetime_ms);

  // Join tokens (token_marks.h): their revocations and uses, shared with the
  // other replicas through the registry. What this replica knows now.
  struct TokenUse {
    bool revoked = false;
    uint64_t spent = 0;  // certificates granted on it, by every replica heard from
  };
  TokenUse token_use(const std::string& token_id) const;
  // Counts one more certificate granted on t here; on disk (and on its way
  // to the other replicas) before it returns.
  Parsed<bool> spend_token(const proto::JoinToken& t, uint64_t now_ms);
  // Revokes a token until expires_unix_s, on disk before it returns; false
  // when it was revoked already (for as long).
  Parsed<bool> revoke_token(const std::string& token_id, uint64_t expires_unix_s, uint64_t now_ms);
  // This process's name in the spent:ID:REPLICA keys it writes.
  const std::string& replica() const noexcept { return replica_; }

  // Replicas (gossip): every replica keeps every owner's lease deadline, so
  // entries live everywhere while their owner renews on any one replica,
  // and any replica removes them when it stops (the merge rule makes the
  // replicas' duplicate tombstones harmless). The later deadline wins.
  // True when it moved the deadline (news worth passing on). A deadline
  // already past is ignored: it could only bring back a lease that expired.
  bool merge_lease(const proto::LeaseUpdate& lease, uint64_t now_ms);
  std::vector<proto::LeaseUpdate> leases() const;
  // Called with the entries that changed the registry (after they are on
  // disk), whatever their source, and with every local lease renewal.
  void set_on_change(std::function<void(const std::vector<proto::Entry>&)> f) { on_change_ = std::move(f); }
  void set_on_lease(std::function<void(const proto::LeaseUpdate&)> f) { on_lease_ = std::move(f); }

  const Registry& registry() const noexcept { return registry_; }
  uint64_t store_bytes() const noexcept { return store_.log_bytes(); }
  proto::ServiceUpdate snapshot(const std::string& service) const;
  // The service that has addr (canonical IP:PORT) as a virtual address or
  // an endpoint; empty when none does.
  std::string service_for_address(const std::string& addr);
  // Grows whenever an address gains a service that claims it: callers that
  // wait for an unknown address look again only then.
  uint64_t address_generation() const noexcept { return address_generation_; }
  proto::ServiceList services() const;

 private:
  Parsed<Changes> load_file(uint64_t now_ms);
  // A full walk, at start-up; apply() keeps the counts from then on.
  void count_live();
  void publish_live_counts();
  // The addresses an entry claims while live: its endpoint, or its service's
  // virtual addresses.
  static std::vector<std::string> claims_of(const proto::Entry* e);
  void index_change(const proto::Entry* old, const proto::Entry& now);
  uint64_t next_version(const EntryKey& key, uint64_t now_ms);
  // Writes one join-token mark, making room for a new one first.
  Parsed<bool> put_token_mark(const EntryKey& key, const std::string& owner, const proto::TokenMark& mark,
                              uint64_t now_ms);
  size_t expire_token_marks(uint64_t now_ms);
  proto::Entry tombstone_for(const proto::Entry& e, uint64_t now_ms);
  std::map<std::string, uint64_t> lease_deadline_;  // owner -> unix ms
  std::map<std::string, uint64_t> lease_ms_;        // owner -> lease length
  void announce_lease(const std::string& owner);
  std::function<void(const std::vector<proto::Entry>&)> on_change_;
  std::function<void(const proto::LeaseUpdate&)> on_lease_;
  uint64_t last_version_ = 0;
  uint64_t next_compaction_check_ = 0;
  // address -> the services claiming it (a multiset: one service may claim
  // an address twice, as endpoint and as virtual address); the first one in
  // name order answers. Built on the first lookup, then kept by apply().
  std::map<std::string, std::multiset<std::string>> address_index_;
  bool address_index_stale_ = true;
  uint64_t address_generation_ = 1;
  uint64_t live_entries_ = 0;
  uint64_t live_services_ = 0;
  uint64_t token_marks_ = 0;  // entries of the reserved service
  Stats own_stats_;
  Stats* stats_;
  std::string replica_;
  Registry registry_;
  Store store_;
  std::optional<FileSource> file_;
  int file_loads_ = 0;
  int64_t file_mtime_ns_ = -1;
  uint64_t file_size_ = 0;
};

}  // namespace meshd::controller
