#include "discovery/controller_call.h"

#include "discovery/resolver.h"
#include "identity/files.h"
#include "identity/spiffe.h"
#include "io/stream.h"
#include "proto/frame.h"

namespace meshd::discovery {

Parsed<ControlTls> ControlTls::from_anchors(const std::vector<std::string>& anchors_der, std::string trust_domain) {
  transport::TlsCredentials creds;
  creds.anchors_der = anchors_der;
  auto ctx = transport::TlsContext::create(creds, transport::Role::kClient, transport::kControlAlpn);
  if (!ctx) return invalid("TLS to the controller: " + ctx.error());
  return ControlTls{std::move(*ctx), std::move(trust_domain)};
}

Parsed<ControlTls> ControlTls::from_file(const std::string& anchors_path, std::string trust_domain) {
  auto anchors = identity::load_anchors(anchors_path);
  if (!anchors) return invalid(anchors.error());
  return from_anchors(*anchors, std::move(trust_domain));
}

transport::StreamTls::PeerCheck ControlTls::peer_check() const {
  return [td = trust_domain](std::string_view id) -> Parsed<void> {
    // The anchor vouched for the certificate; the name says it is a
    // controller's and not some proxy's of the same mesh.
    std::string_view peer_td = identity::trust_domain_of(id);
    bool ok = !peer_td.empty() && id == identity::controller_identity(peer_td) && (td.empty() || peer_td == td);
    if (ok) return {};
    std::string want = td.empty() ? "spiffe://<trust domain>/controller" : identity::controller_identity(td);
    return invalid("the peer's certificate names " + (id.empty() ? std::string("no identity") : std::string(id)) +
                   ", not " + want);
  };
}

Parsed<SocketAddr> controller_address(const HostPort& controller, Resolver* resolver, uint64_t timeout_ms) {
  if (auto ip = controller.literal()) return *ip;
  if (resolver == nullptr) return invalid("controller " + controller.str() + ": no resolver for its name");
  auto addrs = resolver->resolve_blocking(controller.host, controller.port, timeout_ms);
  if (!addrs) return invalid("controller " + controller.str() + ": " + addrs.error());
  if (addrs->empty()) return invalid("controller " + controller.str() + ": its name has no addresses");
  return addrs->front();
}

Parsed<proto::Response> controller_call(const SocketAddr& addr, const std::string& name, const proto::Request& request,
                                        uint64_t timeout_ms, const ControlTls& tls) {
  auto stream = io::Stream::connect(addr, timeout_ms);
  if (!stream)
    return invalid("no controller answering at " + name + " (" + stream.error() +
                   "); is meshd-controller running? (--controller to point elsewhere)");
  std::string frame;
  proto::append_frame(request, &frame);
  transport::StreamTls session;
  std::string wire;
  if (tls.on()) {
    if (auto ok = session.start(tls.ctx, tls.peer_check(), &wire); !ok)
      return invalid("controller " + name + ": " + ok.error());
    (void)session.send(frame, &wire);  // held until the handshake completes
  } else {
    wire = std::move(frame);
  }
  if (auto sent = stream->send_all(wire); !sent) return invalid("controller " + name + ": " + sent.error());
  proto::FrameDecoder decoder;
  std::string plain;
  char buf[65536];
  for (;;) {
    proto::Response resp;
    while (decoder.next_message(&resp)) {
      if (resp.id() == request.id()) return resp;
      resp.Clear();
    }
    if (decoder.failed()) return invalid("controller " + name + " sent garbage: " + decoder.error());
    auto n = stream->recv_some(buf, sizeof buf);
    if (!n) return invalid("controller " + name + ": " + n.error());
    if (*n == 0 && tls.on() && !session.established())
      return invalid("controller " + name +
                     " closed the stream during the TLS handshake (a controller started without "
                     "--identity-dir speaks plaintext; give the client no trust anchor for it)");
    if (*n == 0 || session.peer_closed()) return invalid("controller " + name + " closed the stream without an answer");
    if (!tls.on()) {
      decoder.feed(std::string_view(buf, *n));
      continue;
    }
    wire.clear();
    plain.clear();
    auto ok = session.received(std::string_view(buf, *n), &plain, &wire);
    if (!wire.empty())
      if (auto sent = stream->send_all(wire); !sent && ok) return invalid("controller " + name + ": " + sent.error());
    if (!ok) return invalid("controller " + name + ": " + ok.error());
    decoder.feed(plain);
  }
}

}  // namespace meshd::discovery
