// What the controller counts, for its /metrics: written by the serving
// thread, read by the admin thread (single-writer counters, see
// metrics/tcp_stats.h).
#pragma once

#include <string>

#include "metrics/tcp_stats.h"

namespace meshd::controller {

inline constexpr int kGossipDropReasons = 7;  // gossip::Drop::kCount

// Why a Certify was refused: the reason label of controller_certify_refused_total.
enum class CertifyRefusal : uint8_t {
  kBadCsr,
  kWrongTrustDomain,
  kBadToken,
  kTokenRevoked,
  kTokenUsedUp,
  kBadRenewal,
  kBadPodToken,
  kNoCredential,
  kIssuerExpired,
  kInternal,
  kCount,
};
const char* refusal_name(CertifyRefusal r) noexcept;

struct Stats {
  metrics::Counter streams_opened;
  metrics::Counter streams_closed;
  metrics::Counter streams_closed_bad_input;  // garbage, oversized frames
  metrics::Counter streams_closed_slow;       // did not read what it was sent
  metrics::Counter requests;
  metrics::Counter requests_refused;
  metrics::Counter entries_applied;  // changed the registry, durably
  metrics::Counter leases_expired;
  metrics::Counter file_reloads;
  metrics::Counter file_reload_errors;
  metrics::Counter registry_entries;  // a gauge: set, not added
  metrics::Counter registry_services;

  // Gossip between replicas (src/controller/gossip/); all zero without it.
  bool gossip_enabled = false;
  metrics::Counter gossip_members[4];  // gauges, by proto::MemberState
  metrics::Counter gossip_packets_in;
  metrics::Counter gossip_packets_out;
  metrics::Counter gossip_packets_dropped[kGossipDropReasons];  // by gossip::Drop
  metrics::Counter anti_entropy_ok;
  metrics::Counter anti_entropy_failed;
  metrics::Counter gossip_entries_applied;   // remote entries that changed the registry
  metrics::Counter gossip_entries_rejected;  // remote entries that failed validate()

  // The CA (src/controller/certifier.h); all zero without --identity-dir.
  bool identity_enabled = false;
  metrics::Counter certificates_issued;
  metrics::Counter certify_refused[static_cast<int>(CertifyRefusal::kCount)];
  metrics::Counter join_token_marks;  // a gauge: revocations and uses held (controller/token_marks.h)
};

// The Prometheus text for /metrics.
std::string render_metrics(const Stats& stats);

}  // namespace meshd::controller
