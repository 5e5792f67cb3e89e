#include "discovery/controller_call.h"

#include "discovery/resolver.h"
#include "io/stream.h"
#include "proto/frame.h"

namespace meshd::discovery {

Parsed<SocketAddr> controller_address(const HostPort& controller, Resolver* resolver, uint64_t timeout_ms) {
  if (auto ip = controller.literal()) return *ip;
  if (resolver == nullptr) return invalid("controller " + controller.str() + ": no resolver for its name");
  auto addrs = resolver->resolve_blocking(controller.host, controller.port, timeout_ms);
  if (!addrs) return invalid("controller " + controller.str() + ": " + addrs.error());
  if (addrs->empty()) return invalid("controller " + controller.str() + ": its name has no addresses");
  return addrs->front();
}

Parsed<proto::Response> controller_call(const SocketAddr& addr, const std::string& name, const proto::Request& request,
                                        uint64_t timeout_ms) {
  auto stream = io::Stream::connect(addr, timeout_ms);
  if (!stream)
    return invalid("no controller answering at " + name + " (" + stream.error() +
                   "); is meshd-controller running? (--controller to point elsewhere)");
  std::string frame;
  proto::append_frame(request, &frame);
  if (auto sent = stream->send_all(frame); !sent) return invalid("controller " + name + ": " + sent.error());
  proto::FrameDecoder decoder;
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
    if (*n == 0) return invalid("controller " + name + " closed the stream without an answer");
    decoder.feed(std::string_view(buf, *n));
  }
}

}  // namespace meshd::discovery
