// libFuzzer target for inbound protocol detection (src/proxy/detect.h).
//
// Each input is the first bytes of a connection. Besides "no crash and no
// read out of bounds" (every call gets a buffer of exactly its size, so ASan
// sees a read past the end), it checks what detect.h promises:
//  - a first byte that cannot start a handshake record is kNotTls at once;
//  - the answer for a prefix is final unless it is kNeedMore: more bytes
//    never change a verdict (nor the SNI it reports);
//  - at kMaxClientHelloBytes of input there is a verdict (bounded buffering);
//  - a reported SNI points into the input.
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <string_view>
#include <vector>

#include "proxy/detect.h"
#include "tests/fuzz/check.h"

namespace {

using meshd::fuzz::Exact;

using meshd::proxy::Detected;
using meshd::proxy::Detection;
using meshd::proxy::kMaxClientHelloBytes;

constexpr std::string_view kMeshAlpn = "meshd/1";

// The mesh ALPN in a heap block of its own, so that a read past it is seen.
std::string_view mesh_alpn() {
  static const Exact alpn(std::span<const char>(kMeshAlpn.data(), kMeshAlpn.size()));
  return {alpn.bytes.get(), alpn.size};
}

// Checks the answer for one input on its own, and returns it with the SNI's
// offset into the input (or -1 without one).
struct Answer {
  Detected kind;
  std::string_view sni;
  ptrdiff_t sni_at;
};

Answer detect_checked(std::span<const char> in) {
  Exact exact(in);
  Detection d = meshd::proxy::detect_client_hello(exact.span(), mesh_alpn());
  FUZZ_CHECK(d.kind == Detected::kNeedMore || d.kind == Detected::kMeshTls || d.kind == Detected::kOtherTls ||
                 d.kind == Detected::kNotTls,
             "a Detected value outside the enum");
  if (!in.empty() && static_cast<uint8_t>(in[0]) != 0x16) {
    FUZZ_CHECK(d.kind == Detected::kNotTls, "a first byte that is not a handshake record must answer kNotTls");
  }
  if (in.size() == 1 && static_cast<uint8_t>(in[0]) == 0x16) {
    FUZZ_CHECK(d.kind == Detected::kNeedMore, "a lone handshake record type must ask for more");
  }
  if (in.size() >= kMaxClientHelloBytes) {
    FUZZ_CHECK(d.kind != Detected::kNeedMore, "kMaxClientHelloBytes of input must give a verdict");
  }
  ptrdiff_t sni_at = -1;
  if (!d.sni.empty()) {
    FUZZ_CHECK(d.kind == Detected::kMeshTls || d.kind == Detected::kOtherTls, "an SNI without a ClientHello");
    const char* base = exact.bytes.get();
    FUZZ_CHECK(d.sni.data() >= base && d.sni.data() + d.sni.size() <= base + exact.size,
               "the SNI must point into the input");
    sni_at = d.sni.data() - base;
  }
  // The SNI is kept as an offset: its view dies with `exact`.
  return {d.kind, d.sni.empty() ? std::string_view{} : std::string_view(in.data() + sni_at, d.sni.size()), sni_at};
}

// A prefix's verdict, unless it asked for more, must be the whole input's.
void check_prefix(std::span<const char> in, size_t n, const Answer& whole) {
  Answer part = detect_checked(in.first(n));
  if (part.kind == Detected::kNeedMore) return;
  FUZZ_CHECK(part.kind == whole.kind, "a verdict changed when more bytes came");
  FUZZ_CHECK(part.sni_at == whole.sni_at && part.sni == whole.sni, "the SNI changed when more bytes came");
}

// Prefix lengths worth trying: every short one (the record header and the
// handshake header), the bytes around each record boundary the input
// announces, and a spread of others picked by a hash of the input, so that
// a run stays linear-ish in the input's size.
std::vector<size_t> cuts(std::span<const char> in) {
  std::vector<size_t> out;
  const size_t n = in.size();
  for (size_t i = 0; i < std::min<size_t>(n, 48); ++i) out.push_back(i);
  size_t pos = 0;
  for (int records = 0; records < 64 && pos + 5 <= n; ++records) {
    size_t len = (size_t{static_cast<uint8_t>(in[pos + 3])} << 8) | static_cast<uint8_t>(in[pos + 4]);
    for (size_t d = 0; d <= 6; ++d) out.push_back(pos + d);
    size_t end = pos + 5 + len;
    for (size_t d = 0; d <= 2; ++d) out.push_back(end + d - 1);
    pos = end;
  }
  uint64_t h = 1469598103934665603ull;  // FNV-1a
  for (char c : in) h = (h ^ static_cast<uint8_t>(c)) * 1099511628211ull;
  for (int i = 0; i < 24 && n > 0; ++i) {
    h = h * 6364136223846793005ull + 1442695040888963407ull;
    out.push_back(static_cast<size_t>((h >> 33) % n));
  }
  if (n > 0) out.push_back(n - 1);
  std::erase_if(out, [n](size_t c) { return c >= n; });
  std::sort(out.begin(), out.end());
  out.erase(std::unique(out.begin(), out.end()), out.end());
  return out;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::span<const char> in(reinterpret_cast<const char*>(data), size);
  Answer whole = detect_checked(in);
  for (size_t n : cuts(in)) check_prefix(in, n, whole);

  // The same bytes followed by more of them (the input again, up to past the
  // limit): a verdict stays, and the limit forces one.
  if (size > 0) {
    std::vector<char> longer;
    longer.reserve(kMaxClientHelloBytes + size);
    while (longer.size() < kMaxClientHelloBytes) longer.insert(longer.end(), in.begin(), in.end());
    Answer grown = detect_checked(longer);
    if (whole.kind != Detected::kNeedMore) {
      FUZZ_CHECK(grown.kind == whole.kind, "a verdict changed when more bytes came");
      FUZZ_CHECK(grown.sni_at == whole.sni_at, "the SNI changed when more bytes came");
    }
  }
  return 0;
}
