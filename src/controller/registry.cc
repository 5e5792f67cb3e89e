#include "controller/registry.h"

#include "base/addr.h"
#include "controller/token_marks.h"
#include "policy/authz.h"
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

// A service's inbound policy, keyed "policy:PORT". Compiled here, so that a
// policy any replica would refuse to enforce never enters the registry,
// whichever way it came (file, API, gossip).
Parsed<bool> validate_policy_entry(const proto::Entry& e) {
  auto port = policy::policy_key_port(e.endpoint());
  if (!port)
    return invalid("policy key '" + e.endpoint() + "' of '" + e.service() +
                   "' is not policy:PORT (PORT 0-65535, no leading zeros)");
  if (e.has_definition() || e.has_address_of())
    return invalid("policy entry " + e.endpoint() + " of '" + e.service() + "' carries something other than a policy");
  if (e.tombstone()) return true;
  if (!e.has_policy()) return invalid("policy entry " + e.endpoint() + " of '" + e.service() + "' carries no policy");
  if (e.policy().port() != *port)
    return invalid("policy for port " + std::to_string(e.policy().port()) + " filed under " + e.endpoint() + " of '" +
                   e.service() + "'");
  // The fallback only stands in for an unspecified default; any will do.
  if (auto p = policy::PortPolicy::compile(e.policy(), policy::DefaultPolicy::kDeny); !p)
    return invalid("service '" + e.service() + "': " + p.error());
  return true;
}
}  // namespace

Parsed<bool> validate_service_name(const std::string& name) {
  if (!valid_service_name(name))
    return invalid("service '" + name + "' is not a service name (lowercase letters, digits, '-', '.')");
  return true;
}

Parsed<bool> validate(const proto::Entry& e) {
  // The one name outside the service-name syntax: join-token marks.
  const bool marks = is_token_service(e.service());
  if (!marks)
    if (auto ok = validate_service_name(e.service()); !ok) return ok;
  if (e.owner().empty() || e.owner().size() > 256) return invalid("entry for '" + e.service() + "' has no owner");
  if (e.version() == 0) return invalid("entry for '" + e.service() + "' has version 0");
  if (marks) return validate_token_mark(e);
  if (e.has_token()) return invalid("entry for '" + e.service() + "' carries a join-token mark");
  if (e.endpoint().empty()) {
    if (!e.tombstone() && !e.has_definition())
      return invalid("entry for service '" + e.service() + "' carries no definition");
    if (e.has_address_of()) return invalid("service entry '" + e.service() + "' carries an endpoint");
    if (e.has_policy())
      return invalid("service entry '" + e.service() + "' carries a policy (file it under policy:PORT)");
    if (e.has_definition() && e.definition().name() != e.service())
      return invalid("definition named '" + e.definition().name() + "' filed under '" + e.service() + "'");
    for (uint32_t port : e.definition().ports())
      if (port == 0 || port > 65535)
        return invalid("service '" + e.service() + "': port " + std::to_string(port) + " is not 1-65535");
    for (const auto& vip : e.definition().virtual_addresses())
      if (auto a = SocketAddr::parse(vip); !a)
        return invalid("service '" + e.service() + "' virtual address " + a.error());
    if (e.definition().request_timeout_ms() > 3'600'000)
      return invalid("service '" + e.service() + "': request timeout " +
                     std::to_string(e.definition().request_timeout_ms()) + " ms is over an hour");
    if (e.definition().retry_statuses_size() > 16)
      return invalid("service '" + e.service() + "': more than 16 retry statuses");
    for (uint32_t status : e.definition().retry_statuses())
      if (status < 500 || status > 599)
        return invalid("service '" + e.service() + "': retry status " + std::to_string(status) + " is not 500-599");
    return true;
  }
  if (policy::is_policy_key(e.endpoint())) return validate_policy_entry(e);
  auto addr = SocketAddr::parse(e.endpoint());
  if (!addr) return invalid("endpoint of '" + e.service() + "': " + addr.error());
  if (e.has_definition()) return invalid("endpoint entry " + e.endpoint() + " carries a service definition");
  if (e.has_policy()) return invalid("endpoint entry " + e.endpoint() + " carries a policy");
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

size_t Registry::erase_in(const std::string& service, const std::function<bool(const proto::Entry&)>& drop) {
  size_t n = 0;
  for (auto it = entries_.lower_bound({service, ""}); it != entries_.end() && it->first.first == service;) {
    if (drop(it->second)) {
      it = entries_.erase(it);
      ++n;
    } else {
      ++it;
    }
  }
  return n;
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
