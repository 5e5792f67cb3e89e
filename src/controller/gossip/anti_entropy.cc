#include "controller/gossip/anti_entropy.h"

#include "proto/frame.h"

namespace meshd::controller::gossip {

uint64_t service_hash(const Registry& registry, const std::string& service) {
  // FNV-1a over the deterministic bytes: not cryptographic, and need not
  // be: both inputs are already trusted (merged) state, and a collision
  // only delays a sync until the next change of that service.
  uint64_t h = 1469598103934665603ull;
  registry.for_each_in(service, [&](const proto::Entry& e) {
    std::string bytes = proto::serialize_deterministic(e);
    for (unsigned char c : bytes) {
      h ^= c;
      h *= 1099511628211ull;
    }
    h ^= 0xff;  // entry boundary
    h *= 1099511628211ull;
  });
  return h;
}

const std::map<std::string, uint64_t>& Digest::get(const Registry& registry) {
  if (all_dirty_) {
    hashes_.clear();
    std::string last;
    bool any = false;
    registry.for_each([&](const proto::Entry& e) {
      if (any && e.service() == last) return;
      any = true;
      last = e.service();
      hashes_[last] = service_hash(registry, last);
    });
    all_dirty_ = false;
    dirty_.clear();
    return hashes_;
  }
  for (const auto& service : dirty_) {
    bool present = false;
    registry.for_each_in(service, [&](const proto::Entry&) { present = true; });
    if (present)
      hashes_[service] = service_hash(registry, service);
    else
      hashes_.erase(service);
  }
  dirty_.clear();
  return hashes_;
}

DigestDiff diff(const std::map<std::string, uint64_t>& local,
                const google::protobuf::RepeatedPtrField<proto::ServiceDigest>& remote) {
  DigestDiff out;
  std::map<std::string, uint64_t> theirs;
  for (const auto& d : remote) theirs[d.service()] = d.hash();
  // Both maps are sorted: one merge walk.
  auto a = local.begin();
  auto b = theirs.begin();
  while (a != local.end() || b != theirs.end()) {
    if (b == theirs.end() || (a != local.end() && a->first < b->first)) {
      out.send.push_back(a->first);
      ++a;
    } else if (a == local.end() || b->first < a->first) {
      out.want.push_back(b->first);
      ++b;
    } else {
      if (a->second != b->second) {
        out.send.push_back(a->first);
        out.want.push_back(a->first);
      }
      ++a;
      ++b;
    }
  }
  return out;
}

void append_entries(const Registry& registry, const std::vector<std::string>& services, uint64_t rotation,
                    google::protobuf::RepeatedPtrField<proto::Entry>* out) {
  if (services.empty()) return;
  size_t bytes = 0;
  size_t start = rotation % services.size();
  for (size_t i = 0; i < services.size() && bytes < kSyncEntryBudgetBytes; ++i) {
    registry.for_each_in(services[(start + i) % services.size()], [&](const proto::Entry& e) {
      if (static_cast<int>(out->size()) >= kMaxSyncEntries) return;
      bytes += e.ByteSizeLong() + 4;
      *out->Add() = e;
    });
  }
}

bool within_bounds(const proto::SyncFrame& f) {
  return f.members_size() <= kMaxSyncMembers && f.leases_size() <= kMaxSyncLeases &&
         f.digest_size() <= kMaxSyncDigests && f.entries_size() <= kMaxSyncEntries && f.want_size() <= kMaxSyncDigests;
}

}  // namespace meshd::controller::gossip
