#include "admin/identity_view.h"

namespace meshd::admin {

void render_identity_metrics(metrics::PrometheusWriter& w, const identity::Agent* agent,
                             const std::vector<const metrics::WorkerStats*>& workers) {
  if (agent == nullptr) return;
  identity::AgentStatus st = agent->status();
  w.family("identity_cert_expiry_timestamp_seconds", "gauge",
           "When this proxy's certificate expires (Unix seconds; 0: it holds none).");
  w.sample("identity_cert_expiry_timestamp_seconds", {}, st.not_after_ms / 1000);
  w.family("identity_renewals_total", "counter", "Certificate requests to the controller, by result.");
  w.sample("identity_renewals_total", {{"result", "ok"}}, st.renewals_ok);
  w.sample("identity_renewals_total", {{"result", "failed"}}, st.renewals_failed);
  uint64_t full[metrics::kDirections] = {}, resumed[metrics::kDirections] = {}, failed[metrics::kDirections] = {};
  for (const auto* s : workers)
    for (int d = 0; d < metrics::kDirections; ++d) {
      full[d] += s->tls[d].full.get();
      resumed[d] += s->tls[d].resumed.get();
      failed[d] += s->tls[d].failed.get();
    }
  w.family("tls_handshakes_total", "counter",
           "Mesh TLS handshakes completed: inbound terminated, outbound originated; resumed ones used a ticket.");
  w.family("tls_handshake_failures_total", "counter", "Mesh TLS handshakes that failed or timed out.");
  for (int d = 0; d < metrics::kDirections; ++d) {
    const char* dir = metrics::direction_name(static_cast<metrics::Direction>(d));
    w.sample("tls_handshakes_total", {{"direction", dir}, {"resumed", "false"}}, full[d]);
    w.sample("tls_handshakes_total", {{"direction", dir}, {"resumed", "true"}}, resumed[d]);
    w.sample("tls_handshake_failures_total", {{"direction", dir}}, failed[d]);
  }
}

void write_identity_status(JsonWriter& j, const identity::Agent& agent, uint64_t now_unix_ms) {
  identity::AgentStatus st = agent.status();
  j.key("identity").begin_object();
  j.field("name", st.identity);
  const char* state = st.not_after_ms == 0 ? "none" : (now_unix_ms < st.not_after_ms ? "valid" : "expired");
  j.field("state", state);
  j.field("expires_unix_ms", st.not_after_ms);
  j.field("renewed_unix_ms", st.last_renewal_ms);
  j.field("next_renewal_unix_ms", st.next_attempt_ms);
  j.field("renewals_ok", st.renewals_ok);
  j.field("renewals_failed", st.renewals_failed);
  j.field("last_error", st.last_error);
  j.end_object();
}

}  // namespace meshd::admin
