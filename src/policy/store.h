// PolicyStore: the inbound authorization policy a proxy enforces now, as an
// immutable PolicyTable snapshot the workers read once per connection, and
// the allow/deny counters its decisions feed.
//
// Sources, most specific first: the registry's policies for the services
// this proxy serves (from the controller), then the proxy's --policy-file,
// then --default-inbound-policy for every other port. A new snapshot applies
// to new connections at once; open ones keep what they were admitted under.
#pragma once

#include <atomic>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "base/json.h"
#include "base/result.h"
#include "metrics/prometheus.h"
#include "metrics/tcp_stats.h"
#include "policy/authz.h"

namespace meshd::policy {

class PolicyStore {
 public:
  // policy_file: empty for none. The error names the file and line.
  static Parsed<std::unique_ptr<PolicyStore>> create(DefaultPolicy fallback, const std::string& policy_file);

  uint64_t version() const { return version_.load(std::memory_order_acquire); }
  std::shared_ptr<const PolicyTable> current() const;

  // The registry's policies changed (they replace the file's for the same
  // port). An invalid combination keeps the last good table; the error
  // says why.
  Parsed<void> set_registry_policies(std::vector<proto::InboundPolicy> policies);

  // One decision for a connection to port, counted by the policy that made it.
  void count(const PortPolicy& policy, const Decision& d);

  void render_metrics(metrics::PrometheusWriter& w) const;
  void write_status(JsonWriter& j) const;

 private:
  PolicyStore(DefaultPolicy fallback, std::vector<proto::InboundPolicy> file)
      : fallback_(fallback), file_(std::move(file)) {}
  Parsed<void> rebuild();

  DefaultPolicy fallback_;
  std::vector<proto::InboundPolicy> file_;
  std::vector<proto::InboundPolicy> registry_;
  std::atomic<uint64_t> version_{1};
  mutable std::mutex mu_;
  std::shared_ptr<const PolicyTable> table_;  // under mu_
  // (policy port, rule or reason) -> count; bounded by the policies' size.
  std::map<std::pair<uint16_t, std::string>, uint64_t> allowed_;  // under mu_
  std::map<std::pair<uint16_t, std::string>, uint64_t> denied_;   // under mu_
};

}  // namespace meshd::policy
