// meshd's configuration: defaults, then a config file (--config), then
// MESHD_* environment variables, then flags; a later source replaces the
// whole value an earlier one gave for the same setting.
//
// One table of settings serves all three sources, --help and /status.json,
// so a setting is named, parsed and checked in exactly one place.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "base/addr.h"
#include "base/log.h"
#include "base/result.h"

namespace meshd::config {

struct ForwardRule {
  SocketAddr listen;
  // An IP, or a name: a service the controller knows (balanced over its
  // endpoints), else a DNS name (resolved with c-ares, TTLs honoured).
  HostPort target;
};

enum class InboundTarget { kLoopback, kOriginal };

// `--register NAME=PORT`: a service this host's proxy fronts.
struct ServiceRegistration {
  std::string service;
  uint16_t port = 0;
};

struct Config {
  // Every value here is set by load(), from the settings table's defaults
  // when no source names it: the table is the one place defaults live.
  std::vector<SocketAddr> outbound_listen;
  std::vector<SocketAddr> inbound_listen;
  // The built-in listener lists include IPv6 addresses; on a host without
  // IPv6 those are skipped with a warning instead of failing start-up.
  bool outbound_listen_is_default = true;
  bool inbound_listen_is_default = true;
  std::vector<ForwardRule> forwards;
  std::optional<SocketAddr> admin;
  unsigned threads = 0;  // "auto" resolves to the CPUs this process may use
  uint64_t connect_timeout_ms = 0;
  uint64_t idle_timeout_ms = 0;  // 0: never
  uint64_t drain_timeout_ms = 0;
  uint32_t max_connections = 0;
  uint32_t buffer_size = 0;
  uint32_t buffers_per_thread = 0;
  InboundTarget inbound_target = InboundTarget::kLoopback;
  uint32_t proxy_uid = 0;
  std::vector<HostPort> controllers;  // empty: no controller; names resolved with c-ares
  std::vector<ServiceRegistration> registrations;
  uint64_t register_lease_ms = 0;
  // How long a new outbound connection to an address discovery has not
  // answered for yet waits for the controller before going as dialled.
  uint64_t discovery_timeout_ms = 0;
  uint64_t discovery_evict_ms = 0;  // unused destinations are forgotten after this
  // Connections wait this long for the client's first bytes: inbound (with
  // identity on) to tell mesh TLS from anything else, outbound to a service
  // to choose the upstream; ports in opaque_ports (server-speaks-first
  // protocols) skip the wait.
  uint64_t detect_timeout_ms = 0;
  std::vector<uint16_t> opaque_ports;
  bool is_opaque_port(uint16_t port) const {
    for (uint16_t p : opaque_ports)
      if (p == port) return true;
    return false;
  }
  // HTTP/1 awareness (the tap in the relay, src/http/h1_tap.h) and its
  // bounds on what a peer may send in one head.
  bool http = true;
  uint32_t http_max_request_line = 0;
  uint32_t http_max_head = 0;
  // An HTTP request with no response head this long after its last byte
  // is answered 504 (a service's registry entry may set its own); 0: never.
  uint64_t request_timeout_ms = 0;
  // Outbound HTTP/1 responses with these statuses to an idempotent request
  // are retried (within the service's retry budget); empty: none.
  std::vector<uint16_t> retry_statuses{503};
  // Idle outbound HTTP/1 connections to service endpoints are kept this
  // long for the next request (proxy/upstream_pool.h); 0: not kept, and
  // each client connection's requests stay on the endpoint it was
  // balanced to.
  uint64_t upstream_idle_timeout_ms = 0;
  // Inbound authorization: the policy file, and the default for ports no
  // policy names (all-unauthenticated, all-authenticated or deny).
  std::string policy_file;
  std::string default_inbound_policy;
  // Identity and mTLS: on when trust_anchors_file is set (with a controller).
  std::string trust_anchors_file;  // PEM roots every mesh peer's certificate must chain to
  std::string trust_domain;
  std::string identity;  // spiffe://... asked for; default spiffe://TRUST-DOMAIN/host/HOSTNAME
  std::string identity_token_file;
  // A pod's projected service-account token: the first certificate is asked
  // for with it instead of a join token (the controller reviews it).
  std::string identity_sa_token_file;
  log::Level log_level = log::Level::kInfo;
  std::string config_file;
};

// What the command line asked for.
enum class Action { kRun, kHelp, kVersion };

struct Loaded {
  Action action = Action::kRun;
  Config config;
};

// argv/envp as main() got them. The error names the setting, the source
// (flag, variable or file line) and the value.
Parsed<Loaded> load(int argc, const char* const* argv, const char* const* envp);

std::string help_text();

}  // namespace meshd::config
