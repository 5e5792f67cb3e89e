#include "controller/registry.h"

#include "base/addr.h"
#include "proto/frame.h"

namespace meshd::controller {

EntryKey key_of(const proto::Entry& e) { return {e.service(), e.endpoint()}; }

bool supersedes(const proto::Entry& a, const proto::Entry& b) {
  if (a.version() != b.version()) return a.version() > b.version();
  if (a.tombstone() != b.tombstone()) return a.tombstone();
  if (a.owner() != b.owner()) return a.owner() > b.owner();
  return proto::serialize_deterministic(a) > proto::serialize_deterministic(b);
}

namespace {
// Service names are DNS-like labels separated by dots: "web.prod".
bool valid_service_name(const std::string& name) {
  if (name.empty() || name.size() > 253 || name.front() == '.' || name.back() == '.') return false;
  char prev = '.';
  for (char c : name) {
    bool ok = (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' || c == '.';
    if (!ok || (c == '.' && prev == '.')) return false;
    prev = c;
  }
  return true;
}
}  // namespace

Parsed<bool> validate_service_name(const std::string& name) {
  if (!valid_service_name(name))
    return invalid("service '" + name + "' is not a service name (lowercase letters, digits, '-', '.')");
  return true;
}

Parsed<bool> validate(const proto::Entry& e) {
  if (auto ok = validate_service_name(e.service()); !ok) return ok;
  if (e.owner().empty() || e.owner().size() > 256) return invalid("entry for '" + e.service() + "' has no owner");
  if (e.version() == 0) return invalid("entry for '" + e.service() + "' has version 0");
  if (e.endpoint().empty()) {
    if (!e.tombstone() && !e.has_definition())
      return invalid("entry for service '" + e.service() + "' carries no definition");
    if (e.has_address_of()) return invalid("service entry '" + e.service() + "' carries an endpoint");
    if (e.has_definition() && e.definition().name() != e.service())
      return invalid("definition named '" + e.definition().name() + "' filed under '" + e.service() + "'");
    for (uint32_t port : e.definition().ports())
      if (port == 0 || port > 65535)
        return invalid("service '" + e.service() + "': port " + std::to_string(port) + " is not 1-65535");
    for (const auto& vip : e.definition().virtual_addresses())
      if (auto a = SocketAddr::parse(vip); !a)
        return invalid("service '" + e.service() + "' virtual address " + a.error());
    return true;
  }
  auto addr = SocketAddr::parse(e.endpoint());
  if (!addr) return invalid("endpoint of '" + e.service() + "': " + addr.error());
  if (e.has_definition()) return invalid("endpoint entry " + e.endpoint() + " carries a service definition");
  if (!e.tombstone()) {
    if (!e.has_address_of()) return invalid("endpoint entry " + e.endpoint() + " carries no endpoint");
    if (e.address_of().address() != e.endpoint())
      return invalid("endpoint " + e.address_of().address() + " filed under " + e.endpoint());
    if (e.address_of().weight() > 10000)
      return invalid("endpoint " + e.endpoint() + ": weight " + std::to_string(e.address_of().weight()) +
                     " is over 10000");
  }
  return true;
}

Registry::Applied Registry::apply(const proto::Entry& e) {
  auto key = key_of(e);
  auto it = entries_.find(key);
  if (it == entries_.end()) {
    entries_.emplace(std::move(key), e);
    return Applied::kNew;
  }
  if (!supersedes(e, it->second)) return Applied::kStale;
  it->second = e;
  return Applied::kReplaced;
}

const proto::Entry* Registry::find(const EntryKey& key) const {
  auto it = entries_.find(key);
  return it == entries_.end() ? nullptr : &it->second;
}

std::vector<const proto::Entry*> Registry::service(const std::string& name) const {
  std::vector<const proto::Entry*> out;
  for (auto it = entries_.lower_bound({name, ""}); it != entries_.end() && it->first.first == name; ++it)
    if (!it->second.tombstone()) out.push_back(&it->second);
  return out;
}

size_t Registry::expire_tombstones(uint64_t now_ms, uint64_t lifetime_ms) {
  return std::erase_if(entries_, [&](const auto& kv) {
    const proto::Entry& e = kv.second;
    // Written as a subtraction: updated_unix_ms comes from peers, and a
    // huge value must not wrap into "long ago".
    return e.tombstone() && now_ms > lifetime_ms && e.updated_unix_ms() < now_ms - lifetime_ms;
  });
}

std::string Registry::canonical() const {
  std::string out;
  for (const auto& [key, e] : entries_) proto::append_frame(e, &out);
  return out;
}

}  // namespace meshd::controller
