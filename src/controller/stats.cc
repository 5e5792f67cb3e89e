#include "controller/stats.h"

#include "controller/gossip/wire.h"
#include "metrics/process.h"
#include "metrics/prometheus.h"

namespace meshd::controller {

const char* refusal_name(CertifyRefusal r) noexcept {
  switch (r) {
    case CertifyRefusal::kBadCsr: return "bad_csr";
    case CertifyRefusal::kWrongTrustDomain: return "wrong_trust_domain";
    case CertifyRefusal::kBadToken: return "bad_token";
    case CertifyRefusal::kTokenRevoked: return "token_revoked";
    case CertifyRefusal::kTokenUsedUp: return "token_used_up";
    case CertifyRefusal::kBadRenewal: return "bad_renewal";
    case CertifyRefusal::kBadPodToken: return "bad_pod_token";
    case CertifyRefusal::kNoCredential: return "no_credential";
    case CertifyRefusal::kIssuerExpired: return "issuer_expired";
    case CertifyRefusal::kInternal: return "internal";
    case CertifyRefusal::kCount: break;
  }
  return "unknown";
}

std::string render_metrics(const Stats& s) {
  metrics::PrometheusWriter w;
  auto counter = [&w](const char* name, const char* help, const metrics::Counter& c) {
    w.family(name, "counter", help);
    w.sample(name, {}, c.get());
  };
  counter("controller_streams_opened_total", "API streams accepted.", s.streams_opened);
  w.family("controller_streams_closed_total", "counter", "API streams closed, by reason.");
  uint64_t bad = s.streams_closed_bad_input.get(), slow = s.streams_closed_slow.get();
  uint64_t all = s.streams_closed.get();
  w.sample("controller_streams_closed_total", {{"reason", "peer"}}, all - std::min(all, bad + slow));
  w.sample("controller_streams_closed_total", {{"reason", "bad_input"}}, bad);
  w.sample("controller_streams_closed_total", {{"reason", "slow_reader"}}, slow);
  w.family("controller_streams_open", "gauge", "API streams open now.");
  w.sample("controller_streams_open", {}, s.streams_opened.get() - std::min(s.streams_opened.get(), all));
  counter("controller_requests_total", "API requests answered.", s.requests);
  counter("controller_requests_refused_total", "API requests refused with an error.", s.requests_refused);
  counter("controller_entries_applied_total", "Registry entries that changed the registry, on disk.",
          s.entries_applied);
  counter("controller_leases_expired_total", "Owners whose lease ran out; their entries were removed.",
          s.leases_expired);
  counter("controller_file_reloads_total", "Registry file loads that applied.", s.file_reloads);
  counter("controller_file_reload_errors_total", "Registry file edits refused (the last good state stayed).",
          s.file_reload_errors);
  w.family("controller_registry_entries", "gauge", "Live registry entries (definitions and endpoints).");
  w.sample("controller_registry_entries", {}, s.registry_entries.get());
  w.family("controller_registry_services", "gauge", "Services with live entries.");
  w.sample("controller_registry_services", {}, s.registry_services.get());
  if (s.gossip_enabled) {
    static constexpr const char* kStates[] = {"alive", "suspect", "dead", "left"};
    w.family("gossip_members", "gauge", "Controller replicas this one knows, by state (itself included).");
    for (int i = 0; i < 4; ++i) w.sample("gossip_members", {{"state", kStates[i]}}, s.gossip_members[i].get());
    w.family("gossip_packets_total", "counter", "Gossip UDP packets, by direction.");
    w.sample("gossip_packets_total", {{"direction", "in"}}, s.gossip_packets_in.get());
    w.sample("gossip_packets_total", {{"direction", "out"}}, s.gossip_packets_out.get());
    w.family("gossip_packets_dropped_total", "counter",
             "Gossip packets and push-pull frames dropped unread, by reason.");
    for (int i = 0; i < kGossipDropReasons; ++i)
      w.sample("gossip_packets_dropped_total", {{"reason", gossip::drop_name(static_cast<gossip::Drop>(i))}},
               s.gossip_packets_dropped[i].get());
    w.family("anti_entropy_syncs_total", "counter", "Push-pull exchanges with another replica, by result.");
    w.sample("anti_entropy_syncs_total", {{"result", "ok"}}, s.anti_entropy_ok.get());
    w.sample("anti_entropy_syncs_total", {{"result", "failed"}}, s.anti_entropy_failed.get());
    counter("gossip_entries_applied_total", "Entries from other replicas that changed the registry.",
            s.gossip_entries_applied);
    counter("gossip_entries_rejected_total", "Entries from other replicas refused as invalid.",
            s.gossip_entries_rejected);
  }
  if (s.identity_enabled) {
    counter("controller_certificates_issued_total", "Workload certificates issued.", s.certificates_issued);
    w.family("controller_certify_refused_total", "counter", "Certificate requests refused, by reason.");
    for (int i = 0; i < static_cast<int>(CertifyRefusal::kCount); ++i)
      w.sample("controller_certify_refused_total", {{"reason", refusal_name(static_cast<CertifyRefusal>(i))}},
               s.certify_refused[i].get());
    w.family("controller_join_token_marks", "gauge",
             "Join-token revocations and per-replica use counts held, shared by gossip; kept until the token "
             "expires.");
    w.sample("controller_join_token_marks", {}, s.join_token_marks.get());
  }
  metrics::write_process_metrics(w);
  return w.str();
}

}  // namespace meshd::controller
