#include "admin/endpoints.h"

#include <unistd.h>

#include <map>

#include "admin/discovery_view.h"
#include "admin/http_view.h"
#include "admin/identity_view.h"
#include "admin/tap_view.h"
#include "base/clock.h"
#include "base/json.h"
#include "metrics/process.h"
#include "metrics/prometheus.h"
#include "proxy/buffer_sizes.h"
#include "proxy/tcp_forward.h"
#include "version.h"

namespace meshd::admin {

using metrics::Direction;
using metrics::TcpError;

metrics::DirectionTotals direct_totals(const ProxyView& view, Direction d, bool mtls) {
  metrics::DirectionTotals t;
  for (const auto* w : view.workers) {
    const auto& s = w->dir[static_cast<int>(d)];
    if (mtls) {
      t.add(w->dir_mtls[static_cast<int>(d)]);
      continue;
    }
    t.add(s);
    for (int i = 0; i < static_cast<int>(metrics::RefuseReason::kCount); ++i) t.refused[i] += s.refused[i].get();
  }
  return t;
}

std::map<std::string_view, metrics::DirectionTotals> inbound_client_totals(const ProxyView& view) {
  std::map<std::string_view, metrics::DirectionTotals> out;
  metrics::DirectionTotals other;
  for (const auto* w : view.workers) {
    const metrics::ClientIdStats& c = w->inbound_clients;
    for (size_t i = 0, n = c.size(); i < n; ++i) out[c.id(i)].add(c.counters(i));
    other.add(c.other());
  }
  // Only once some worker ran out of room: no series for nothing.
  if (other.opened > 0) out[metrics::ClientIdStats::kOther] = other;
  return out;
}

namespace {
struct PoolTotals {
  uint64_t buffers_in_use = 0;
  uint64_t connections_live = 0;
  uint64_t spills_in_use = 0;
  uint64_t plain_bytes_in_use = 0;
  uint64_t upstream_idle = 0;
  uint64_t upstream_stale = 0;
  uint64_t spill_bytes(const config::Config& c) const { return spills_in_use * proxy::spill_size(c.buffer_size); }
};
PoolTotals pool_totals(const ProxyView& view) {
  PoolTotals p;
  for (const auto* w : view.workers) {
    p.buffers_in_use += w->buffers_in_use.get();
    p.connections_live += w->connections_live.get();
    p.spills_in_use += w->spills_in_use.get();
    p.plain_bytes_in_use += w->plain_bytes_in_use.get();
    p.upstream_idle += w->upstream_idle.get();
    p.upstream_stale += w->upstream_stale.get();
  }
  return p;
}
uint64_t buffer_pool_bytes(const ProxyView& view) {
  return static_cast<uint64_t>(view.config->buffer_size) * view.config->buffers_per_thread * view.workers.size();
}
}  // namespace

namespace {
// One set of TCP series: a direction's connections that went where they
// were dialled, or one destination service's (the dst label).
struct SeriesSource {
  std::string_view direction;
  std::string_view dst;        // empty: no dst label
  bool mtls = false;           // tls="true": over the mesh's mutual TLS
  std::string_view server_id;  // outbound over mTLS: the identity the service's endpoints present
  metrics::DirectionTotals t;
  std::string_view client_id = {};  // inbound over mTLS: the identity the client proved
};

template <class F>
void each_source(const std::vector<SeriesSource>& sources, F&& f) {
  for (const auto& s : sources) f(s);
}

// The source's labels, then extra ones.
void sample_with(metrics::PrometheusWriter& w, std::string_view name, const SeriesSource& s,
                 std::initializer_list<metrics::Label> extra, uint64_t v) {
  metrics::Label labels[8];
  size_t n = 0;
  labels[n++] = {"direction", s.direction};
  if (!s.dst.empty()) labels[n++] = {"dst", s.dst};
  if (s.mtls) labels[n++] = {"tls", "true"};
  if (!s.server_id.empty()) labels[n++] = {"server_id", s.server_id};
  if (!s.client_id.empty()) labels[n++] = {"client_id", s.client_id};
  for (const auto& l : extra) labels[n++] = l;
  w.sample(name, std::span<const metrics::Label>(labels, n), v);
}

void sample(metrics::PrometheusWriter& w, std::string_view name, const SeriesSource& s, uint64_t v) {
  sample_with(w, name, s, {}, v);
}

void sample_close(metrics::PrometheusWriter& w, const SeriesSource& s, TcpError err, uint64_t v) {
  if (err == TcpError::kNone)
    sample_with(w, "tcp_close_total", s, {{"classification", "success"}}, v);
  else
    sample_with(w, "tcp_close_total", s, {{"classification", "failure"}, {"error", tcp_error_name(err)}}, v);
}

// The one identity a service's endpoints present, or none when they differ.
std::string_view server_id_of(const discovery::EndpointSet& set) {
  std::string_view id;
  for (const auto& e : set.endpoints) {
    if (e.identity.empty() || (!id.empty() && id != e.identity)) return {};
    id = e.identity;
  }
  return id;
}

}  // namespace

metrics::DirectionTotals totals(const ProxyView& view, Direction d) {
  metrics::DirectionTotals t = direct_totals(view, d);
  t.add(direct_totals(view, d, true));
  if (d == Direction::kInbound)
    for (const auto& [id, c] : inbound_client_totals(view)) t.add(c);
  if (d == Direction::kOutbound && view.discovery != nullptr)
    for (const auto& st : view.discovery->table()->stats) {
      t.add(st->tcp);
      t.add(st->tcp_mtls);
    }
  return t;
}

std::string render_metrics(const ProxyView& view) {
  metrics::PrometheusWriter w;
  std::shared_ptr<const discovery::DestinationTable> table =
      view.discovery != nullptr ? view.discovery->table() : std::make_shared<discovery::DestinationTable>();
  std::vector<SeriesSource> sources;
  sources.push_back({"inbound", "", false, "", direct_totals(view, Direction::kInbound)});
  sources.push_back({"outbound", "", false, "", direct_totals(view, Direction::kOutbound)});
  // Inbound over mTLS: without client_id those whose identity is unknown
  // (a failed handshake, mostly), then by the client's identity (the ids
  // live in the workers' tables).
  if (view.identity != nullptr)
    sources.push_back({"inbound", "", true, "", direct_totals(view, Direction::kInbound, true)});
  for (const auto& [id, t] : inbound_client_totals(view)) sources.push_back({"inbound", "", true, "", t, id});
  // The server identity of each service's mTLS series, from its endpoints.
  std::map<std::string_view, std::string_view> server_ids;
  for (const auto& set : services_of(*table)) server_ids[set->stats->name] = server_id_of(*set);
  for (const auto& st : table->stats) {
    metrics::DirectionTotals t;
    t.add(st->tcp);
    sources.push_back({"outbound", st->name, false, "", t});
    if (view.identity == nullptr) continue;
    metrics::DirectionTotals m;
    m.add(st->tcp_mtls);
    auto id = server_ids.find(st->name);
    sources.push_back({"outbound", st->name, true, id == server_ids.end() ? std::string_view() : id->second, m});
  }

  w.family("tcp_open_total", "counter",
           "TCP connections accepted and opened by the proxy; dst names the service an outbound connection was "
           "balanced to (none: it went where it was dialled).");
  each_source(sources, [&](const SeriesSource& s) { sample(w, "tcp_open_total", s, s.t.opened); });

  w.family("tcp_close_total", "counter",
           "TCP connections closed; classification is success when both sides ended cleanly, else error says why.");
  each_source(sources, [&](const SeriesSource& s) {
    for (int e = 0; e < static_cast<int>(TcpError::kCount); ++e)
      sample_close(w, s, static_cast<TcpError>(e), s.t.closed[e]);
  });

  w.family("tcp_open_connections", "gauge", "TCP connections open now.");
  each_source(sources, [&](const SeriesSource& s) { sample(w, "tcp_open_connections", s, s.t.open()); });

  w.family("tcp_refused_total", "counter", "Accepted TCP connections refused (reset) before being opened.");
  for (int i = 0; i < 2; ++i)
    for (int r = 0; r < static_cast<int>(metrics::RefuseReason::kCount); ++r)
      w.sample("tcp_refused_total",
               {{"direction", sources[static_cast<size_t>(i)].direction},
                {"reason", refuse_reason_name(static_cast<metrics::RefuseReason>(r))}},
               sources[static_cast<size_t>(i)].t.refused[r]);

  // Application bytes: over mTLS the plaintext (metrics/tcp_stats.h).
  w.family("tcp_read_bytes_total", "counter",
           "Bytes the connecting side sent (over mesh TLS: the application's, decrypted).");
  each_source(sources, [&](const SeriesSource& s) { sample(w, "tcp_read_bytes_total", s, s.t.read_bytes); });
  w.family("tcp_write_bytes_total", "counter",
           "Bytes sent to the connecting side (over mesh TLS: the application's, before encryption).");
  each_source(sources, [&](const SeriesSource& s) { sample(w, "tcp_write_bytes_total", s, s.t.write_bytes); });

  render_http_metrics(w, view.workers);
  if (view.discovery != nullptr) render_discovery_metrics(w, *view.discovery, *table);
  render_identity_metrics(w, view.identity, view.workers);
  if (view.policy != nullptr) view.policy->render_metrics(w);

  PoolTotals pool = pool_totals(view);
  w.family("meshd_buffer_pool_bytes", "gauge", "Receive buffer memory mapped for all workers (the ceiling).");
  w.sample("meshd_buffer_pool_bytes", {}, buffer_pool_bytes(view));
  w.family("meshd_buffer_bytes_in_use", "gauge", "Receive buffer memory holding bytes not yet forwarded.");
  w.sample("meshd_buffer_bytes_in_use", {}, pool.buffers_in_use * view.config->buffer_size);
  w.family("meshd_spill_bytes_in_use", "gauge",
           "Memory holding bytes that a full destination could not take yet (per connection, not from the ring).");
  w.sample("meshd_spill_bytes_in_use", {}, pool.spill_bytes(*view.config));
  w.family("meshd_tls_plain_bytes_in_use", "gauge",
           "Memory holding bytes decrypted from mesh TLS (or read while detecting it) not yet forwarded.");
  w.sample("meshd_tls_plain_bytes_in_use", {}, pool.plain_bytes_in_use);
  w.family("meshd_upstream_idle_connections", "gauge",
           "Idle outbound HTTP/1 connections kept for later requests (--upstream-idle-timeout).");
  w.sample("meshd_upstream_idle_connections", {}, pool.upstream_idle);
  w.family("meshd_upstream_stale_total", "counter",
           "Idle connections found closed by their server when a request would have taken them.");
  w.sample("meshd_upstream_stale_total", {}, pool.upstream_stale);
  w.family("meshd_connection_objects", "gauge", "Connection objects in use, open or closing.");
  w.sample("meshd_connection_objects", {}, pool.connections_live);
  w.family("meshd_idle_connection_bytes", "gauge",
           "Memory one idle proxied connection holds in meshd (it holds no buffer while idle).");
  w.sample("meshd_idle_connection_bytes", {}, static_cast<uint64_t>(sizeof(proxy::TcpForward)));

  metrics::write_process_metrics(w);
  w.family("meshd_threads", "gauge", "Worker threads.");
  w.sample("meshd_threads", {}, static_cast<uint64_t>(view.workers.size()));
  return w.str();
}

std::string render_status(const ProxyView& view) {
  JsonWriter j;
  j.begin_object();
  j.field("version", MESHD_VERSION).field("git_rev", MESHD_GIT_REV);
  j.field("pid", static_cast<int64_t>(getpid()));
  j.field("uptime_seconds", metrics::uptime_seconds());
  j.field("state", view.draining->load() ? "draining" : (view.ready->load() ? "serving" : "starting"));
  j.field("threads", static_cast<uint64_t>(view.workers.size()));
  j.key("listeners").begin_array();
  for (const auto& l : *view.listeners) {
    j.begin_object().field("name", l.name).field("address", l.address.str());
    j.field("direction", metrics::direction_name(l.direction));
    if (l.kind == proxy::ListenerKind::kForward)
      j.field("target", l.target_name.empty() ? l.target.str() : l.target_name + ":" + std::to_string(l.target_port));
    j.end_object();
  }
  j.end_array();
  if (view.discovery != nullptr) write_controller_status(j, *view.discovery);
  if (view.identity != nullptr) write_identity_status(j, *view.identity, unix_ms());
  if (view.policy != nullptr) view.policy->write_status(j);
  j.key("directions").begin_object();
  for (Direction d : {Direction::kInbound, Direction::kOutbound}) {
    auto t = totals(view, d);
    j.key(metrics::direction_name(d)).begin_object();
    j.field("open", t.open()).field("opened_total", t.opened).field("closed_total", t.closed_total());
    j.field("refused_total", t.refused_total());
    j.field("read_bytes_total", t.read_bytes).field("write_bytes_total", t.write_bytes);
    j.end_object();
  }
  j.end_object();
  PoolTotals pool = pool_totals(view);
  auto p = metrics::read_process_stats();
  j.key("memory").begin_object();
  j.field("rss_bytes", p.rss_bytes);
  j.field("buffer_bytes_in_use", pool.buffers_in_use * view.config->buffer_size);
  j.field("buffer_pool_bytes", buffer_pool_bytes(view));
  j.field("spill_bytes_in_use", pool.spill_bytes(*view.config));
  j.field("tls_plain_bytes_in_use", pool.plain_bytes_in_use);
  j.field("idle_connection_bytes", static_cast<uint64_t>(sizeof(proxy::TcpForward)));
  j.end_object();
  const auto& c = *view.config;
  j.key("config").begin_object();
  j.field("connect_timeout_ms", c.connect_timeout_ms).field("idle_timeout_ms", c.idle_timeout_ms);
  j.field("drain_timeout_ms", c.drain_timeout_ms).field("max_connections", static_cast<uint64_t>(c.max_connections));
  j.field("buffer_size", static_cast<uint64_t>(c.buffer_size));
  j.field("buffers_per_thread", static_cast<uint64_t>(c.buffers_per_thread));
  j.field("inbound_target", c.inbound_target == config::InboundTarget::kLoopback ? "loopback" : "original");
  j.field("proxy_uid", static_cast<uint64_t>(c.proxy_uid));
  j.end_object();
  j.end_object();
  return j.take() + "\n";
}

Handler make_handler(const ProxyView& view) {
  return [view](const Request& request) -> Response {
    std::string_view path = request.path;
    if (path == "/shutdown") {
      // Only from inside the host or pod: the admin port may be open to the
      // kubelet's probes, and anyone who reaches it must not stop the proxy.
      if (!request.post) return {405, "text/plain; charset=utf-8", "use POST /shutdown\n"};
      if (!request.from_loopback)
        return {403, "text/plain; charset=utf-8", "/shutdown is accepted from this host (loopback) only\n"};
      if (!view.shutdown) return {404, "text/plain; charset=utf-8", "not found\n"};
      view.shutdown();
      return {202, "text/plain; charset=utf-8", "shutting down\n"};
    }
    if (request.post) return {405, "text/plain; charset=utf-8", "only /shutdown takes POST\n"};
    if (path == "/tap") {
      std::vector<const metrics::TapEvents*> taps;
      for (const auto* w : view.workers) taps.push_back(&w->tap);
      return serve_tap(taps, request.query, monotonic_ms());
    }
    if (path.starts_with("/endpoints/")) {
      if (view.discovery == nullptr)
        return {404, "text/plain; charset=utf-8",
                "this proxy has no controller (--controller): no endpoints to show\n"};
      auto [code, body] = render_endpoints(*view.discovery, path.substr(11), 2000);
      return {code, code == 200 ? "application/json" : "text/plain; charset=utf-8", body};
    }
    if (path == "/metrics") return {200, "text/plain; version=0.0.4; charset=utf-8", render_metrics(view)};
    if (path == "/status.json") return {200, "application/json", render_status(view)};
    if (path == "/live") return {200, "text/plain; charset=utf-8", "live\n"};
    if (path == "/ready") {
      if (view.draining->load()) return {503, "text/plain; charset=utf-8", "draining\n"};
      if (!view.ready->load()) return {503, "text/plain; charset=utf-8", "starting\n"};
      // Not ready before the first certificate: mTLS would fail closed.
      if (view.identity != nullptr && view.identity->current() == nullptr)
        return {503, "text/plain; charset=utf-8", "waiting for a certificate\n"};
      return {200, "text/plain; charset=utf-8", "ready\n"};
    }
    return {404, "text/plain; charset=utf-8",
            "not found; try /metrics /ready /live /status.json /endpoints/SERVICE /tap (POST /shutdown)\n"};
  };
}

}  // namespace meshd::admin
