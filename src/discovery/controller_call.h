// One request to a controller and its answer, over a fresh blocking stream:
// for meshd-ctl and for the proxy's helper threads (never a worker).
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "base/addr.h"
#include "base/result.h"
#include "proto/api.pb.h"
#include "transport/stream_tls.h"

namespace meshd::discovery {

class Resolver;

// How a client reaches the controller: over TLS when it has the mesh's
// trust anchor (no certificate of its own is needed), verifying that the
// controller's certificate chains to the anchor and names
// spiffe://TRUST-DOMAIN/controller; in plaintext otherwise. There is no
// fallback from TLS to plaintext: that would hand an attacker the stream.
struct ControlTls {
  std::shared_ptr<const transport::TlsContext> ctx;  // null: plaintext
  std::string trust_domain;                          // empty: any (the anchor names the mesh)

  static Parsed<ControlTls> from_anchors(const std::vector<std::string>& anchors_der, std::string trust_domain);
  // From a PEM file of anchors (meshd-ctl's --trust-anchors).
  static Parsed<ControlTls> from_file(const std::string& anchors_path, std::string trust_domain);
  bool on() const { return ctx != nullptr; }
  transport::StreamTls::PeerCheck peer_check() const;
};

// Where a controller is now: its address when written as an IP, else its
// name resolved with c-ares (waiting up to timeout_ms: helper threads only),
// so a controller behind a DNS name that moves is followed. The error names
// the controller.
Parsed<SocketAddr> controller_address(const HostPort& controller, Resolver* resolver, uint64_t timeout_ms);

// Sends request and waits (up to timeout_ms in all) for the response with
// its id. The error is one line naming the controller (as `name`).
Parsed<proto::Response> controller_call(const SocketAddr& addr, const std::string& name, const proto::Request& request,
                                        uint64_t timeout_ms, const ControlTls& tls);

}  // namespace meshd::discovery
