// Inbound protocol detection: is this connection mesh TLS (a ClientHello
// offering the mesh ALPN), some other TLS, or not TLS at all?
//
// A pure function over the first bytes the connection sent, called again
// with more bytes while it answers kNeedMore. It never delays plaintext: a
// first byte that cannot start a TLS handshake record answers kNotTls at
// once. A ClientHello is judged only when it is complete, so the caller
// buffers at most kMaxClientHelloBytes before a verdict (beyond that the
// answer is kOtherTls). Never reads out of bounds, whatever the bytes.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <string_view>

namespace meshd::proxy {

inline constexpr size_t kMaxClientHelloBytes = 16 * 1024;

enum class Detected : uint8_t {
  kNeedMore,  // a TLS record header so far: read more (with a deadline)
  kMeshTls,   // a ClientHello whose ALPN list contains the mesh protocol
  kOtherTls,  // TLS, but not ours (no such ALPN, malformed, or too large)
  kNotTls,    // not a TLS handshake: plaintext
};

struct Detection {
  Detected kind;
  // The ClientHello's server_name (host_name), when it has one; points into
  // the input. Empty when absent or when it straddles two records.
  std::string_view sni;
};

// Records are reassembled, so a ClientHello split over several handshake
// records (up to kMaxClientHelloBytes of input in all) is handled.
Detection detect_client_hello(std::span<const char> bytes, std::string_view mesh_alpn);

}  // namespace meshd::proxy
