// Push-pull anti-entropy: two replicas compare digests of their registries
// and exchange only the services that differ, so a replica that missed
// gossip (partitioned, restarted, just joined) converges, cheaply at
// thousands of services.
//
// The digest is one 64-bit hash per service over its entries, tombstones
// included, kept up to date incrementally (mark_dirty on every change). The
// exchange is three frames over one TCP connection (see SyncFrame in
// src/proto/gossip.proto); this file builds and reads them, gossip.cc moves
// them. Both sides send what they have for a differing service and merge
// what they get: the merge rule makes the result the same whoever sends
// first, and sending a little too much costs only bytes.
#pragma once

#include <cstdint>
#include <map>
#include <set>
#include <string>
#include <vector>

#include "controller/registry.h"
#include "proto/gossip.pb.h"

namespace meshd::controller::gossip {

inline constexpr uint32_t kMaxSyncFrameBytes = 32u << 20;
// Entries sent in one frame stop short of this, so a frame stays under
// kMaxSyncFrameBytes; what did not fit goes in the next exchange.
inline constexpr size_t kSyncEntryBudgetBytes = 24u << 20;
inline constexpr int kMaxSyncMembers = 4096;
inline constexpr int kMaxSyncLeases = 200'000;
inline constexpr int kMaxSyncDigests = 200'000;
inline constexpr int kMaxSyncEntries = 500'000;

uint64_t service_hash(const Registry& registry, const std::string& service);

class Digest {
 public:
  void mark_dirty(const std::string& service) { dirty_.insert(service); }
  void mark_all_dirty() { all_dirty_ = true; }
  // service -> hash for every service the registry has (tombstones count).
  const std::map<std::string, uint64_t>& get(const Registry& registry);

 private:
  std::map<std::string, uint64_t> hashes_;
  std::set<std::string> dirty_;
  bool all_dirty_ = true;
};

struct DigestDiff {
  std::vector<std::string> send;  // local has it, and the remote's differs or lacks it
  std::vector<std::string> want;  // the remote has it, and ours differs or lacks it
};
DigestDiff diff(const std::map<std::string, uint64_t>& local,
                const google::protobuf::RepeatedPtrField<proto::ServiceDigest>& remote);

// Appends the entries of services to out, within kSyncEntryBudgetBytes,
// starting at a rotating offset so that a backlog larger than one frame
// still drains over successive exchanges.
void append_entries(const Registry& registry, const std::vector<std::string>& services, uint64_t rotation,
                    google::protobuf::RepeatedPtrField<proto::Entry>* out);

// Checks the peer-controlled counts of a frame before any of it is used.
bool within_bounds(const proto::SyncFrame& f);

}  // namespace meshd::controller::gossip
