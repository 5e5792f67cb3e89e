// Inbound detection over real ClientHellos (the bytes wolfSSL's client
// writes first), every truncation of them, re-fragmented records, and junk.
#include <wolfssl/options.h>
#include <wolfssl/ssl.h>
#include <wolfssl/wolfio.h>

#include <time.h>

#include <catch2/catch.hpp>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "identity/cert.h"
#include "identity/key.h"
#include "proxy/detect.h"
#include "transport/tls_context.h"
#include "transport/tls_session.h"

using meshd::proxy::detect_client_hello;
using meshd::proxy::Detected;
using meshd::proxy::kMaxClientHelloBytes;
using meshd::transport::Role;
using meshd::transport::TlsContext;
using meshd::transport::TlsCredentials;
using meshd::transport::TlsSession;

namespace {

constexpr std::string_view kAlpn = "meshd/1";

// A self-signed CA as its own leaf: enough for a client to say hello.
const TlsCredentials& creds() {
  static const TlsCredentials c = [] {
    uint64_t now = static_cast<uint64_t>(::time(nullptr));
    auto key = meshd::identity::PrivateKey::generate();
    REQUIRE(key.has_value());
    auto der = meshd::identity::make_ca(*key, "detect test", now - 60, now + 3600, nullptr, -1);
    REQUIRE(der.has_value());
    return TlsCredentials{{*der}, key->der(), {*der}};
  }();
  return c;
}

// The first flight of a TlsSession client: its ClientHello record(s).
std::string session_hello(std::string_view alpn) {
  auto ctx = TlsContext::create(creds(), Role::kClient, alpn);
  REQUIRE(ctx.has_value());
  TlsSession s;
  REQUIRE(s.start(*ctx).has_value());
  REQUIRE(s.handshake() == meshd::transport::TlsStatus::kWantRead);
  return std::string(s.out_data(), s.out_size());
}

// A plain wolfSSL client's hello, with no ALPN and optionally an SNI.
std::string raw_hello(const char* sni) {
  WOLFSSL_CTX* ctx = wolfSSL_CTX_new(wolfTLSv1_3_client_method());
  REQUIRE(ctx != nullptr);
  wolfSSL_CTX_SetIORecv(ctx, [](WOLFSSL*, char*, int, void*) { return int{WOLFSSL_CBIO_ERR_WANT_READ}; });
  wolfSSL_CTX_SetIOSend(ctx, [](WOLFSSL*, char* buf, int sz, void* out) {
    static_cast<std::string*>(out)->append(buf, static_cast<size_t>(sz));
    return sz;
  });
  std::string out;
  WOLFSSL* ssl = wolfSSL_new(ctx);
  REQUIRE(ssl != nullptr);
  wolfSSL_SetIOWriteCtx(ssl, &out);
  if (sni != nullptr) wolfSSL_UseSNI(ssl, WOLFSSL_SNI_HOST_NAME, sni, static_cast<unsigned short>(std::strlen(sni)));
  wolfSSL_connect(ssl);
  wolfSSL_free(ssl);
  wolfSSL_CTX_free(ctx);
  return out;
}

// The same handshake bytes, re-cut into records of at most `size` bytes.
std::string refragment(const std::string& record, size_t size) {
  REQUIRE(record.size() > 5);
  std::string payload = record.substr(5);
  std::string out;
  for (size_t off = 0; off < payload.size(); off += size) {
    size_t n = std::min(size, payload.size() - off);
    out += std::string{'\x16', '\x03', '\x01', static_cast<char>(n >> 8), static_cast<char>(n & 0xff)};
    out += payload.substr(off, n);
  }
  return out;
}

// detect over exactly the first n bytes, in a buffer of exactly that size
// (so that ASan sees any read past the end).
meshd::proxy::Detection detect_prefix(const std::string& bytes, size_t n, std::string_view alpn = kAlpn) {
  std::vector<char> exact(bytes.begin(), bytes.begin() + static_cast<std::ptrdiff_t>(n));
  return detect_client_hello(exact, alpn);
}

void check_every_truncation(const std::string& hello, Detected verdict) {
  for (size_t n = 0; n < hello.size(); ++n) {
    INFO("prefix of " << n << " bytes out of " << hello.size());
    REQUIRE(detect_prefix(hello, n).kind == Detected::kNeedMore);
  }
  CHECK(detect_prefix(hello, hello.size()).kind == verdict);
}

std::string u16(size_t v) { return {static_cast<char>(v >> 8), static_cast<char>(v & 0xff)}; }

// A hand-made ClientHello with the given extensions block.
std::string synthetic_hello(const std::string& extensions) {
  std::string body = u16(0x0303) + std::string(32, 'r') + std::string(1, '\0') + u16(2) + u16(0x1303) +
                     std::string{'\x01', '\x00'} + u16(extensions.size()) + extensions;
  std::string hs =
      std::string{'\x01', '\0', static_cast<char>(body.size() >> 8), static_cast<char>(body.size())} + body;
  return std::string{'\x16', '\x03', '\x01'} + u16(hs.size()) + hs;
}

std::string alpn_ext(std::vector<std::string> names) {
  std::string list;
  for (auto& n : names) list += static_cast<char>(n.size()) + n;
  return u16(0x0010) + u16(list.size() + 2) + u16(list.size()) + list;
}

}  // namespace

TEST_CASE("detect: a mesh client's real ClientHello, every truncation", "[detect]") {
  std::string hello = session_hello(kAlpn);
  check_every_truncation(hello, Detected::kMeshTls);
  // Trailing bytes (the client's next flight, say) change nothing.
  CHECK(detect_client_hello(hello + "more", kAlpn).kind == Detected::kMeshTls);
  // Another mesh ALPN is another protocol.
  CHECK(detect_client_hello(hello, "meshd/2").kind == Detected::kOtherTls);
  CHECK(detect_client_hello(hello, "meshd").kind == Detected::kOtherTls);
  CHECK(detect_client_hello(hello, "").kind == Detected::kOtherTls);
}

TEST_CASE("detect: ClientHellos without the mesh ALPN are other TLS", "[detect]") {
  SECTION("another ALPN") { check_every_truncation(session_hello("h2"), Detected::kOtherTls); }
  SECTION("no ALPN, with SNI") {
    std::string hello = raw_hello("backend.example");
    check_every_truncation(hello, Detected::kOtherTls);
    CHECK(detect_client_hello(hello, kAlpn).sni == "backend.example");
  }
  SECTION("no ALPN, no SNI") {
    std::string hello = raw_hello(nullptr);
    check_every_truncation(hello, Detected::kOtherTls);
    CHECK(detect_client_hello(hello, kAlpn).sni.empty());
  }
}

TEST_CASE("detect: the mesh entry anywhere in an ALPN list", "[detect]") {
  std::string hello = synthetic_hello(alpn_ext({"h2", "meshd/1", "http/1.1"}));
  check_every_truncation(hello, Detected::kMeshTls);
  CHECK(detect_client_hello(synthetic_hello(alpn_ext({"h2", "meshd/10"})), kAlpn).kind == Detected::kOtherTls);
  CHECK(detect_client_hello(synthetic_hello(alpn_ext({"meshd/"})), kAlpn).kind == Detected::kOtherTls);
  // No extensions at all.
  std::string bare = synthetic_hello("");
  bare.resize(bare.size() - 2);  // drop the empty extensions length too
  bare[4] = static_cast<char>(bare[4] - 2);
  bare[8] = static_cast<char>(bare[8] - 2);
  CHECK(detect_client_hello(bare, kAlpn).kind == Detected::kOtherTls);
}

TEST_CASE("detect: a ClientHello fragmented over many records", "[detect]") {
  std::string hello = session_hello(kAlpn);
  for (size_t size : {1, 2, 3, 7, 64, 100, 1000}) {
    INFO("records of " << size << " bytes");
    std::string split = refragment(hello, size);
    check_every_truncation(split, Detected::kMeshTls);
  }
  std::string sni_hello = raw_hello("backend.example");
  CHECK(detect_client_hello(refragment(sni_hello, 1000), kAlpn).sni == "backend.example");
  // An SNI cut by a record boundary is not reported, and nothing breaks.
  auto one_byte = detect_client_hello(refragment(sni_hello, 1), kAlpn);
  CHECK(one_byte.kind == Detected::kOtherTls);
  CHECK(one_byte.sni.empty());
}

TEST_CASE("detect: plaintext is decided on its first byte", "[detect]") {
  std::string get = "GET / HTTP/1.1\r\nHost: x\r\n\r\n";
  CHECK(detect_prefix(get, 1).kind == Detected::kNotTls);
  CHECK(detect_client_hello(get, kAlpn).kind == Detected::kNotTls);
  CHECK(detect_client_hello(std::string("\x16"), kAlpn).kind == Detected::kNeedMore);
  CHECK(detect_client_hello(std::string("\x16\x02"), kAlpn).kind == Detected::kNotTls);
  CHECK(detect_client_hello(std::string("\x16\x03\x00", 3), kAlpn).kind == Detected::kNotTls);
  CHECK(detect_client_hello(std::string("\x16\x03\x05"), kAlpn).kind == Detected::kNotTls);
  CHECK(detect_client_hello(std::string("\x17\x03\x03\x00\x10"), kAlpn).kind == Detected::kNotTls);
  CHECK(detect_client_hello(std::string("SSH-2.0-OpenSSH_9.2\r\n"), kAlpn).kind == Detected::kNotTls);
  CHECK(detect_client_hello(std::string(1, '\0'), kAlpn).kind == Detected::kNotTls);
}

TEST_CASE("detect: malformed lengths are other TLS, never a crash", "[detect]") {
  std::string hello = session_hello(kAlpn);
  auto with = [&](size_t at, char v) {
    std::string h = hello;
    h[at] = v;
    return detect_client_hello(h, kAlpn).kind;
  };
  // Record length 0, and above 2^14.
  CHECK(detect_client_hello(std::string("\x16\x03\x01\x00\x00", 5), kAlpn).kind == Detected::kOtherTls);
  CHECK(detect_client_hello(std::string("\x16\x03\x01\x40\x01\x01", 6), kAlpn).kind == Detected::kOtherTls);
  // Not a ClientHello (a ServerHello).
  CHECK(with(5, '\x02') == Detected::kOtherTls);
  // A handshake longer than the bound is never waited for.
  CHECK(detect_client_hello(std::string("\x16\x03\x01\x00\x04\x01\x00\x40\x00", 9), kAlpn).kind == Detected::kOtherTls);
  // Session id longer than 32.
  CHECK(with(5 + 4 + 34, '\x21') == Detected::kOtherTls);
  // A handshake length shorter than its contents: the extensions overrun it.
  std::string shorter = hello;
  shorter[8] = static_cast<char>(shorter[8] - 10);
  CHECK(detect_client_hello(shorter, kAlpn).kind == Detected::kOtherTls);
  // A record after the first that is not a handshake record.
  std::string split = refragment(hello, 50);
  split[55] = '\x17';
  CHECK(detect_client_hello(split, kAlpn).kind == Detected::kOtherTls);
  // Bad ALPN list lengths.
  std::string bad_list = u16(0x0010) + u16(5) + u16(9) + "\x02h2";
  CHECK(detect_client_hello(synthetic_hello(bad_list), kAlpn).kind == Detected::kOtherTls);
  std::string empty_name = u16(0x0010) + u16(3) + u16(1) + std::string(1, '\0');
  CHECK(detect_client_hello(synthetic_hello(empty_name), kAlpn).kind == Detected::kOtherTls);
  std::string overrun = u16(0x0010) + u16(4) + u16(2) + "\x07m";
  CHECK(detect_client_hello(synthetic_hello(overrun), kAlpn).kind == Detected::kOtherTls);
  // An extension longer than the block.
  std::string long_ext = u16(0x1234) + u16(100) + "abc";
  CHECK(detect_client_hello(synthetic_hello(long_ext), kAlpn).kind == Detected::kOtherTls);
}

TEST_CASE("detect: more than 16 KiB of records is other TLS", "[detect]") {
  // A ClientHello cut into 1-byte records needs 6 input bytes per byte: a
  // big one passes the bound before it is complete.
  std::string pad = u16(0x0015) + u16(3000) + std::string(3000, '\0');
  std::string hello = synthetic_hello(pad + alpn_ext({"meshd/1"}));
  CHECK(detect_client_hello(hello, kAlpn).kind == Detected::kMeshTls);
  std::string split = refragment(hello, 1);
  REQUIRE(split.size() > kMaxClientHelloBytes);
  CHECK(detect_client_hello(split, kAlpn).kind == Detected::kOtherTls);
  CHECK(detect_prefix(split, 12000).kind == Detected::kNeedMore);
  // Once the next record header could not fit in the bound, it is decided.
  CHECK(detect_prefix(split, kMaxClientHelloBytes - 1).kind == Detected::kOtherTls);
}

TEST_CASE("detect: random and mutated input never crashes", "[detect]") {
  std::mt19937 rng(4242);
  std::string hello = session_hello(kAlpn);
  std::string split = refragment(hello, 37);
  int verdicts[4] = {};
  for (int i = 0; i < 4000; ++i) {
    std::string buf;
    switch (i % 4) {
      case 0:  // pure noise
        buf.resize(rng() % 700);
        for (char& c : buf) c = static_cast<char>(rng());
        break;
      case 1:  // noise behind a plausible record header
        buf.resize(5 + rng() % 700);
        for (char& c : buf) c = static_cast<char>(rng());
        buf[0] = '\x16', buf[1] = '\x03', buf[2] = '\x03', buf[5 % buf.size()] = '\x01';
        break;
      default:  // a real hello with a few bytes changed
        buf = (i % 4 == 2) ? hello : split;
        for (int k = 1 + static_cast<int>(rng() % 4); k > 0; --k) buf[rng() % buf.size()] = static_cast<char>(rng());
        buf.resize(rng() % (buf.size() + 1));
        break;
    }
    std::vector<char> exact(buf.begin(), buf.end());
    auto d = detect_client_hello(exact, kAlpn);
    ++verdicts[static_cast<int>(d.kind)];
    if (!d.sni.empty()) {
      CHECK(d.sni.data() >= exact.data());
      CHECK(d.sni.data() + d.sni.size() <= exact.data() + exact.size());
    }
  }
  // The corpus reaches every verdict, so the walk is exercised, not just the first byte.
  CHECK(verdicts[0] > 0);
  CHECK(verdicts[1] > 0);
  CHECK(verdicts[2] > 0);
  CHECK(verdicts[3] > 0);
}
