#include "policy/store.h"

#include <set>

#include "policy/policy_file.h"

namespace meshd::policy {

Parsed<std::unique_ptr<PolicyStore>> PolicyStore::create(DefaultPolicy fallback, const std::string& policy_file) {
  std::vector<proto::InboundPolicy> file;
  if (!policy_file.empty()) {
    auto f = read_policy_file(policy_file);
    if (!f) return std::unexpected(f.error());
    if (f->fallback) fallback = *f->fallback;
    file = std::move(f->policies);
  }
  std::unique_ptr<PolicyStore> s(new PolicyStore(fallback, std::move(file)));
  if (auto ok = s->rebuild(); !ok) return invalid(policy_file + ": " + ok.error());
  return s;
}

std::shared_ptr<const PolicyTable> PolicyStore::current() const {
  std::lock_guard<std::mutex> lock(mu_);
  return table_;
}

Parsed<void> PolicyStore::set_registry_policies(std::vector<proto::InboundPolicy> policies) {
  std::vector<proto::InboundPolicy> previous = std::move(registry_);
  registry_ = std::move(policies);
  auto ok = rebuild();
  if (!ok) registry_ = std::move(previous);
  return ok;
}

Parsed<void> PolicyStore::rebuild() {
  std::vector<proto::InboundPolicy> all = registry_;
  std::set<uint32_t> ports;
  for (const auto& p : registry_) ports.insert(p.port());
  for (const auto& p : file_)
    if (!ports.contains(p.port())) all.push_back(p);
  auto table = PolicyTable::build(all, fallback_);
  if (!table) return invalid(table.error());
  {
    std::lock_guard<std::mutex> lock(mu_);
    table_ = std::make_shared<const PolicyTable>(std::move(*table));
  }
  version_.fetch_add(1, std::memory_order_acq_rel);
  return {};
}

void PolicyStore::count(const PortPolicy& policy, const Decision& d) {
  std::lock_guard<std::mutex> lock(mu_);
  auto& m = d.allowed ? allowed_ : denied_;
  ++m[{policy.port(), std::string(d.allowed ? d.rule : d.reason)}];
}

void PolicyStore::render_metrics(metrics::PrometheusWriter& w) const {
  std::lock_guard<std::mutex> lock(mu_);
  auto port_label = [](uint16_t p) { return p == 0 ? std::string("all") : std::to_string(p); };
  w.family("inbound_tcp_authz_allow_total", "counter",
           "Inbound connections the policy allowed, by the policy's port (all: every port) and the rule (or "
           "default:POLICY) that allowed them.");
  for (const auto& [k, v] : allowed_)
    w.sample("inbound_tcp_authz_allow_total", {{"port", port_label(k.first)}, {"rule", k.second}}, v);
  w.family("inbound_tcp_authz_deny_total", "counter",
           "Inbound connections the policy refused (reset), by the policy's port and why: default_deny, or "
           "unauthenticated (the default wants a mesh identity and the client had none).");
  for (const auto& [k, v] : denied_)
    w.sample("inbound_tcp_authz_deny_total", {{"port", port_label(k.first)}, {"reason", k.second}}, v);
}

void PolicyStore::write_status(JsonWriter& j) const {
  auto t = current();
  j.key("policy");
  t->write_json(j);
}

}  // namespace meshd::policy
