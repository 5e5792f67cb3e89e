// Registry: the controller's state, a map from (service, endpoint) to the
// winning version of that entry.
//
// The merge rule makes the registry a join-semilattice, so replicas that see
// the same entries in any order, any number of times, end in the same
// state: for one key, the entry that supersedes() the other stays.
//   1. the larger version wins;
//   2. at equal versions a delete (tombstone) wins over a value, so a delete
//      and a write racing at the same version cannot flip-flop;
//   3. then the larger owner (byte order);
//   4. then the larger deterministic serialization: two different entries
//      never tie.
// One reserved service, "meshd:join-tokens" (not a valid service name),
// holds the join-token state the replicas share (token_marks.h).
// Deletes are tombstones, dropped after a bounded lifetime by
// expire_tombstones(): a replica that was away longer than that may bring a
// deleted entry back, which its owner's next write or lease expiry settles.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <string>
#include <utility>
#include <vector>

#include "base/result.h"
#include "proto/registry.pb.h"

namespace meshd::controller {

using EntryKey = std::pair<std::string, std::string>;  // (service, endpoint or "")

EntryKey key_of(const proto::Entry& e);
bool supersedes(const proto::Entry& a, const proto::Entry& b);

// Checks an entry that came from outside (file, API, gossip) before it may
// be merged; the error names the field and the value.
Parsed<bool> validate(const proto::Entry& e);
Parsed<bool> validate_service_name(const std::string& name);

class Registry {
 public:
  enum class Applied { kNew, kReplaced, kStale };

  // Merges one (validated) entry.
  Applied apply(const proto::Entry& e);
  const proto::Entry* find(const EntryKey& key) const;
  // The live (not deleted) entries of one service: its definition first
  // (when it has one), then its endpoints in address order.
  std::vector<const proto::Entry*> service(const std::string& name) const;
  // Drops tombstones written before now_ms - lifetime_ms; returns how many.
  size_t expire_tombstones(uint64_t now_ms, uint64_t lifetime_ms);
  // Drops the entries of one service that drop() picks; returns how many.
  size_t erase_in(const std::string& service, const std::function<bool(const proto::Entry&)>& drop);
  size_t size() const noexcept { return entries_.size(); }
  // Every entry in key order, serialized deterministically: equal registries
  // give equal strings (for tests and anti-entropy digests).
  std::string canonical() const;
  // Calls f on every entry, tombstones included, in key order.
  template <class F>
  void for_each(F&& f) const {
    for (const auto& [key, e] : entries_) f(e);
  }
  // Calls f on every entry of one service, tombstones included, in key order.
  template <class F>
  void for_each_in(const std::string& service, F&& f) const {
    for (auto it = entries_.lower_bound({service, ""}); it != entries_.end() && it->first.first == service; ++it)
      f(it->second);
  }
  // Calls f on every entry of one service whose endpoint key starts with
  // prefix, in key order.
  template <class F>
  void for_each_prefixed(const std::string& service, const std::string& prefix, F&& f) const {
    for (auto it = entries_.lower_bound({service, prefix});
         it != entries_.end() && it->first.first == service && it->first.second.starts_with(prefix); ++it)
      f(it->second);
  }

 private:
  std::map<EntryKey, proto::Entry> entries_;
};

}  // namespace meshd::controller
