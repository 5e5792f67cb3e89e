// The TLS engine over memory: two TlsSessions (or a raw wolfSSL client for
// the misbehaving cases) talk through in-memory pipes, the way the proxy's
// ring will drive them.
#include <wolfssl/options.h>
#include <wolfssl/ssl.h>
#include <wolfssl/wolfio.h>

#include <malloc.h>
#include <time.h>

#include <algorithm>
#include <catch2/catch.hpp>
#include <cstring>
#include <string>
#include <vector>

#include "identity/cert.h"
#include "identity/csr.h"
#include "identity/key.h"
#include "transport/session_cache.h"
#include "transport/tls_context.h"
#include "transport/tls_session.h"

using namespace meshd::transport;
using meshd::identity::Issuer;
using meshd::identity::PrivateKey;

namespace {

constexpr std::string_view kClientId = "spiffe://mesh.test/ns/a/sa/client";
constexpr std::string_view kServerId = "spiffe://mesh.test/ns/b/sa/server";

template <class T>
T must(meshd::Parsed<T> p) {
  INFO((p ? std::string() : p.error()));
  REQUIRE(p.has_value());
  return std::move(*p);
}

// root -> issuer -> leaves, plus a forged root with leaves of its own that
// claim the same identities.
struct Pki {
  std::string root_der;
  std::string issuer_der;
  TlsCredentials client, server, forged_client, forged_server;
};

TlsCredentials make_leaf(const Issuer& issuer, std::vector<std::string> intermediates, std::string_view id,
                         const std::string& anchor, uint64_t now) {
  PrivateKey key = must(PrivateKey::generate());
  std::string csr = must(meshd::identity::make_csr(key, id));
  auto info = must(meshd::identity::check_csr(csr));
  TlsCredentials c;
  c.chain_der.push_back(must(meshd::identity::issue_leaf(issuer, info, now - 60, now + 86400)));
  for (auto& i : intermediates) c.chain_der.push_back(i);
  c.key_der = key.der();
  c.anchors_der.push_back(anchor);
  return c;
}

Pki make_pki() {
  uint64_t now = static_cast<uint64_t>(::time(nullptr));
  Pki p;
  PrivateKey root_key = must(PrivateKey::generate());
  p.root_der = must(meshd::identity::make_ca(root_key, "mesh root", now - 60, now + 86400 * 365, nullptr, -1));
  Issuer root{p.root_der, std::move(root_key)};
  PrivateKey issuer_key = must(PrivateKey::generate());
  p.issuer_der = must(meshd::identity::make_ca(issuer_key, "mesh issuer", now - 60, now + 86400 * 30, &root, 0));
  Issuer issuer{p.issuer_der, std::move(issuer_key)};
  p.client = make_leaf(issuer, {p.issuer_der}, kClientId, p.root_der, now);
  p.server = make_leaf(issuer, {p.issuer_der}, kServerId, p.root_der, now);

  PrivateKey evil_key = must(PrivateKey::generate());
  std::string evil_der = must(meshd::identity::make_ca(evil_key, "mesh root", now - 60, now + 86400, nullptr, -1));
  Issuer evil{evil_der, std::move(evil_key)};
  // Forged leaves trust the real root, so the refusal is the other side's.
  p.forged_client = make_leaf(evil, {}, kClientId, p.root_der, now);
  p.forged_server = make_leaf(evil, {}, kServerId, p.root_der, now);
  return p;
}

const Pki& pki() {
  static const Pki p = make_pki();
  return p;
}

std::shared_ptr<const TlsContext> context(const TlsCredentials& c, Role role, std::string_view alpn = kMeshAlpn) {
  return must(TlsContext::create(c, role, alpn));
}

// One end of an in-memory connection.
struct Peer {
  TlsSession tls;
  std::string received;  // plaintext read so far
  TlsStatus status = TlsStatus::kWantRead;

  // Drives the session over what has been fed until it needs more.
  TlsStatus step() {
    for (;;) {
      if (!tls.handshake_done()) {
        status = tls.handshake();
        if (status != TlsStatus::kOk) return status;
      }
      char buf[4096];
      auto r = tls.read(buf, sizeof buf);
      received.append(buf, r.bytes);
      status = r.status;
      if (r.status != TlsStatus::kOk) return status;
    }
  }

  // Feeds wire in pieces of at most chunk bytes, as separate receives.
  TlsStatus deliver(const std::string& wire, size_t chunk) {
    for (size_t off = 0; off < wire.size();) {
      size_t n = std::min(chunk, wire.size() - off);
      tls.feed(wire.data() + off, n);
      off += n;
      step();
      if (status == TlsStatus::kError || status == TlsStatus::kClosed) return status;
      REQUIRE(tls.unconsumed() == 0);
    }
    return status;
  }

  // Everything queued for the socket, drained span by span.
  std::string take_output() {
    std::string wire;
    while (tls.out_size() > 0) {
      wire.append(tls.out_data(), tls.out_size());
      tls.consume_out(tls.out_size());
    }
    REQUIRE(tls.out_total() == 0);
    return wire;
  }
};

// Moves ciphertext both ways until both handshakes finish or one side fails.
void connect(Peer& c, Peer& s, size_t chunk = 1 << 20) {
  c.step();
  for (int round = 0; round < 8; ++round) {
    std::string to_server = c.take_output();
    if (!to_server.empty()) s.deliver(to_server, chunk);
    std::string to_client = s.take_output();
    if (!to_client.empty()) c.deliver(to_client, chunk);
    if (c.status == TlsStatus::kError || s.status == TlsStatus::kError) return;
    if (c.tls.handshake_done() && s.tls.handshake_done() && c.tls.out_size() == 0 && s.tls.out_size() == 0) return;
  }
}

void start(Peer& p, std::shared_ptr<const TlsContext> ctx, WOLFSSL_SESSION* resume = nullptr) {
  auto ok = p.tls.start(std::move(ctx), resume);
  INFO((ok ? std::string() : ok.error()));
  REQUIRE(ok.has_value());
}

std::string pattern(size_t n, unsigned seed) {
  std::string s(n, '\0');
  for (size_t i = 0; i < n; ++i) s[i] = static_cast<char>((i * 131 + seed * 7 + (i >> 8)) & 0xff);
  return s;
}

// A wolfSSL client outside TlsContext's policy: no certificate, or no ALPN.
struct RawClient {
  WOLFSSL_CTX* ctx = nullptr;
  WOLFSSL* ssl = nullptr;
  std::string in, out;
  size_t in_off = 0;

  RawClient(const std::string& anchor, const TlsCredentials* creds, const char* alpn) {
    ctx = wolfSSL_CTX_new(wolfTLSv1_3_client_method());
    REQUIRE(ctx != nullptr);
    REQUIRE(wolfSSL_CTX_load_verify_buffer(ctx, reinterpret_cast<const unsigned char*>(anchor.data()),
                                           static_cast<long>(anchor.size()), WOLFSSL_FILETYPE_ASN1) == WOLFSSL_SUCCESS);
    if (creds != nullptr) {
      std::string chain;
      for (auto& c : creds->chain_der) chain += c;
      REQUIRE(wolfSSL_CTX_use_certificate_chain_buffer_format(ctx, reinterpret_cast<const unsigned char*>(chain.data()),
                                                              static_cast<long>(chain.size()),
                                                              WOLFSSL_FILETYPE_ASN1) == WOLFSSL_SUCCESS);
      REQUIRE(wolfSSL_CTX_use_PrivateKey_buffer(ctx, reinterpret_cast<const unsigned char*>(creds->key_der.data()),
                                                static_cast<long>(creds->key_der.size()),
                                                WOLFSSL_FILETYPE_ASN1) == WOLFSSL_SUCCESS);
    }
    wolfSSL_CTX_SetIORecv(ctx, [](WOLFSSL*, char* buf, int sz, void* self) -> int {
      auto* r = static_cast<RawClient*>(self);
      size_t n = std::min(static_cast<size_t>(sz), r->in.size() - r->in_off);
      if (n == 0) return WOLFSSL_CBIO_ERR_WANT_READ;
      std::memcpy(buf, r->in.data() + r->in_off, n);
      r->in_off += n;
      return static_cast<int>(n);
    });
    wolfSSL_CTX_SetIOSend(ctx, [](WOLFSSL*, char* buf, int sz, void* self) -> int {
      static_cast<RawClient*>(self)->out.append(buf, static_cast<size_t>(sz));
      return sz;
    });
    ssl = wolfSSL_new(ctx);
    REQUIRE(ssl != nullptr);
    wolfSSL_SetIOReadCtx(ssl, this);
    wolfSSL_SetIOWriteCtx(ssl, this);
    if (alpn != nullptr)
      wolfSSL_UseALPN(ssl, const_cast<char*>(alpn), std::strlen(alpn), WOLFSSL_ALPN_FAILED_ON_MISMATCH);
  }
  ~RawClient() {
    wolfSSL_free(ssl);
    wolfSSL_CTX_free(ctx);
  }
  // One connect step; returns wolfSSL's error (0 once connected).
  int connect() {
    int r = wolfSSL_connect(ssl);
    return r == WOLFSSL_SUCCESS ? 0 : wolfSSL_get_error(ssl, r);
  }
};

// Runs a raw client against a TlsSession server until one of them stops.
void connect_raw(RawClient& c, Peer& s) {
  for (int round = 0; round < 8; ++round) {
    int err = c.connect();
    if (!c.out.empty()) {
      std::string wire;
      wire.swap(c.out);
      s.deliver(wire, wire.size());
    }
    c.in += s.take_output();
    if (s.status == TlsStatus::kError) return;
    if (err != 0 && err != WOLFSSL_ERROR_WANT_READ) return;
    if (err == 0 && s.tls.handshake_done()) return;
  }
}

}  // namespace

TEST_CASE("tls: mutual handshake over memory, both identities and ALPN", "[tls]") {
  Peer c, s;
  start(c, context(pki().client, Role::kClient));
  start(s, context(pki().server, Role::kServer));
  connect(c, s);
  INFO(c.tls.error_text() << " / " << s.tls.error_text());
  REQUIRE(c.tls.handshake_done());
  REQUIRE(s.tls.handshake_done());
  CHECK(c.tls.peer_identity() == kServerId);
  CHECK(s.tls.peer_identity() == kClientId);
  CHECK(c.tls.alpn() == "meshd/1");
  CHECK(s.tls.alpn() == "meshd/1");
  CHECK_FALSE(c.tls.resumed());
  CHECK_FALSE(s.tls.resumed());
  CHECK(c.tls.failure().empty());
  CHECK(s.tls.failure().empty());
}

TEST_CASE("tls: handshake and data with one byte per receive", "[tls]") {
  Peer c, s;
  start(c, context(pki().client, Role::kClient));
  start(s, context(pki().server, Role::kServer));
  connect(c, s, 1);
  REQUIRE(c.tls.handshake_done());
  REQUIRE(s.tls.handshake_done());

  std::string small = "hello over mTLS";
  REQUIRE(c.tls.write(small.data(), small.size()) == TlsStatus::kOk);
  std::string big = pattern(16 * 1024, 1);
  REQUIRE(c.tls.write(big.data(), big.size()) == TlsStatus::kOk);
  CHECK(s.deliver(c.take_output(), 1) == TlsStatus::kWantRead);
  CHECK(s.received == small + big);

  std::string reply = pattern(16 * 1024 + 3, 2);
  REQUIRE(s.tls.write(reply.data(), reply.size()) == TlsStatus::kOk);
  CHECK(c.deliver(s.take_output(), 1) == TlsStatus::kWantRead);
  CHECK(c.received == reply);
}

TEST_CASE("tls: a 1 MiB write each way arrives intact", "[tls]") {
  Peer c, s;
  start(c, context(pki().client, Role::kClient));
  start(s, context(pki().server, Role::kServer));
  connect(c, s);
  REQUIRE(s.tls.handshake_done());
  std::string up = pattern(1 << 20, 3);
  std::string down = pattern(1 << 20, 4);
  REQUIRE(c.tls.write(up.data(), up.size()) == TlsStatus::kOk);
  CHECK(c.tls.out_total() <= TlsSession::max_ciphertext(up.size()));
  CHECK(c.tls.out_total() > up.size());
  REQUIRE(s.tls.write(down.data(), down.size()) == TlsStatus::kOk);
  // Odd receive sizes, so records straddle receives.
  CHECK(s.deliver(c.take_output(), 7919) == TlsStatus::kWantRead);
  CHECK(c.deliver(s.take_output(), 65536) == TlsStatus::kWantRead);
  CHECK(s.received == up);
  CHECK(c.received == down);
}

TEST_CASE("tls: a read sized by read_capacity consumes everything fed", "[tls]") {
  Peer c, s;
  start(c, context(pki().client, Role::kClient));
  start(s, context(pki().server, Role::kServer));
  connect(c, s);
  REQUIRE(s.tls.handshake_done());
  std::string data = pattern(300 * 1000, 5);
  REQUIRE(c.tls.write(data.data(), data.size()) == TlsStatus::kOk);
  std::string wire = c.take_output();
  std::string got;
  // Pieces that cut records anywhere; each gets exactly one read().
  for (size_t off = 0, piece = 1000; off < wire.size(); off += piece, piece = piece * 3 % 40000 + 17) {
    size_t n = std::min(piece, wire.size() - off);
    s.tls.feed(wire.data() + off, n);
    std::vector<char> buf(TlsSession::read_capacity(n));
    auto r = s.tls.read(buf.data(), buf.size());
    REQUIRE(r.status == TlsStatus::kWantRead);
    REQUIRE(s.tls.unconsumed() == 0);
    got.append(buf.data(), r.bytes);
  }
  CHECK(got == data);
}

TEST_CASE("tls: a small read buffer strands no plaintext", "[tls]") {
  Peer c, s;
  start(c, context(pki().client, Role::kClient));
  start(s, context(pki().server, Role::kServer));
  connect(c, s);
  std::string data = pattern(40000, 6);
  REQUIRE(c.tls.write(data.data(), data.size()) == TlsStatus::kOk);
  std::string wire = c.take_output();
  s.tls.feed(wire.data(), wire.size());
  std::string got;
  char buf[1000];
  for (int i = 0; i < 100; ++i) {
    auto r = s.tls.read(buf, sizeof buf);
    got.append(buf, r.bytes);
    if (r.status != TlsStatus::kOk) {
      CHECK(r.status == TlsStatus::kWantRead);
      break;
    }
  }
  CHECK(s.tls.unconsumed() == 0);
  CHECK(got == data);
}

TEST_CASE("tls: queued ciphertext never moves while more is appended", "[tls]") {
  Peer c, s;
  start(c, context(pki().client, Role::kClient));
  start(s, context(pki().server, Role::kServer));
  connect(c, s);
  std::string a = pattern(100, 7);
  REQUIRE(c.tls.write(a.data(), a.size()) == TlsStatus::kOk);
  const char* span = c.tls.out_data();
  size_t span_size = c.tls.out_size();
  std::string copy(span, span_size);
  // Pretend a send of that span is in flight while the relay writes more.
  std::string b = pattern(200 * 1000, 8);
  REQUIRE(c.tls.write(b.data(), b.size()) == TlsStatus::kOk);
  CHECK(c.tls.out_data() == span);
  CHECK(std::string(span, span_size) == copy);
  CHECK(c.tls.out_total() > b.size());
  s.deliver(c.take_output(), 1 << 20);
  CHECK(s.received == a + b);
  // Drained: no output memory is held.
  CHECK(c.tls.out_data() == nullptr);
  CHECK(c.tls.out_total() == 0);
}

TEST_CASE("tls: output is bounded", "[tls]") {
  Peer c, s;
  start(c, context(pki().client, Role::kClient));
  start(s, context(pki().server, Role::kServer));
  connect(c, s);
  std::string chunk = pattern(1 << 20, 9);
  TlsStatus st = TlsStatus::kOk;
  int writes = 0;
  while (st == TlsStatus::kOk && writes < 10) {
    st = c.tls.write(chunk.data(), chunk.size());
    ++writes;
  }
  CHECK(st == TlsStatus::kError);
  CHECK(writes == 4);  // 3 MiB queued fit, a fourth does not
  CHECK(c.tls.failure() == "internal");
  CHECK(c.tls.out_total() <= TlsSession::kMaxPendingOut);
}

TEST_CASE("tls: resumption with the ticket from the first connection", "[tls]") {
  auto cctx = context(pki().client, Role::kClient);
  auto sctx = context(pki().server, Role::kServer);
  WOLFSSL_SESSION* ticket = nullptr;
  WOLFSSL_SESSION* ticket2 = nullptr;
  {
    Peer c, s;
    start(c, cctx);
    start(s, sctx);
    connect(c, s);
    REQUIRE(c.tls.handshake_done());
    // The NewSessionTicket came with the server's last flight; the client
    // has read it by now.
    ticket = c.tls.get1_session();
    REQUIRE(ticket != nullptr);
    CHECK(s.tls.get1_session() == nullptr);  // servers keep nothing
  }
  Peer c, s;
  start(c, cctx, ticket);
  wolfSSL_SESSION_free(ticket);  // start() copied it
  start(s, sctx);
  connect(c, s);
  INFO(c.tls.error_text() << " / " << s.tls.error_text());
  REQUIRE(c.tls.handshake_done());
  REQUIRE(s.tls.handshake_done());
  CHECK(c.tls.resumed());
  CHECK(s.tls.resumed());
  CHECK(s.tls.peer_identity() == kClientId);
  CHECK(c.tls.peer_identity() == kServerId);
  CHECK(c.tls.alpn() == "meshd/1");
  {
    // After a renewal the server has a new context, whose ticket key cannot
    // open the old ticket: a full handshake, not a failure.
    Peer c2, s2;
    start(c2, cctx, ticket2 = c.tls.get1_session());
    wolfSSL_SESSION_free(ticket2);
    start(s2, context(pki().server, Role::kServer));
    connect(c2, s2);
    INFO(c2.tls.error_text() << " / " << s2.tls.error_text());
    REQUIRE(s2.tls.handshake_done());
    CHECK_FALSE(c2.tls.resumed());
    CHECK_FALSE(s2.tls.resumed());
    CHECK(s2.tls.peer_identity() == kClientId);
  }
  std::string msg = "after resumption";
  REQUIRE(c.tls.write(msg.data(), msg.size()) == TlsStatus::kOk);
  s.deliver(c.take_output(), 5);
  CHECK(s.received == msg);
}

TEST_CASE("tls: a client certificate from another root is refused", "[tls]") {
  Peer c, s;
  start(c, context(pki().forged_client, Role::kClient));
  start(s, context(pki().server, Role::kServer));
  connect(c, s);
  INFO(s.tls.error_text());
  CHECK_FALSE(s.tls.handshake_done());
  CHECK(s.status == TlsStatus::kError);
  CHECK(s.tls.failure() == "cert_verify_failed");
  CHECK(s.tls.peer_identity().empty());
  // The client may have finished its side (TLS 1.3 clients do before the
  // server checks them); it learns of the refusal from the alert.
  CHECK(c.deliver(s.take_output(), 100) == TlsStatus::kError);
  INFO(c.tls.error_text());
  CHECK(c.tls.failure() == "cert_verify_failed");
}

TEST_CASE("tls: a server certificate from another root is refused", "[tls]") {
  Peer c, s;
  start(c, context(pki().client, Role::kClient));
  start(s, context(pki().forged_server, Role::kServer));
  connect(c, s);
  INFO(c.tls.error_text());
  CHECK(c.status == TlsStatus::kError);
  CHECK_FALSE(c.tls.handshake_done());
  CHECK(c.tls.failure() == "cert_verify_failed");
  s.deliver(c.take_output(), 100);
  INFO(s.tls.error_text());
  CHECK(s.status == TlsStatus::kError);
  CHECK(s.tls.failure() == "cert_verify_failed");
}

TEST_CASE("tls: a client without a certificate is refused", "[tls]") {
  RawClient c(pki().root_der, nullptr, "meshd/1");
  Peer s;
  start(s, context(pki().server, Role::kServer));
  connect_raw(c, s);
  INFO(s.tls.error_text());
  CHECK(s.status == TlsStatus::kError);
  CHECK(s.tls.failure() == "no_peer_cert");
}

TEST_CASE("tls: ALPN other than the mesh's is refused", "[tls]") {
  SECTION("a client offering another protocol") {
    Peer c, s;
    start(c, context(pki().client, Role::kClient, "h2"));
    start(s, context(pki().server, Role::kServer));
    connect(c, s);
    INFO(s.tls.error_text() << " / " << c.tls.error_text());
    CHECK(s.tls.failure() == "alpn_mismatch");
    CHECK(c.tls.failure() == "alpn_mismatch");
    CHECK_FALSE(s.tls.handshake_done());
  }
  SECTION("a client offering none") {
    RawClient c(pki().root_der, &pki().client, nullptr);
    Peer s;
    start(s, context(pki().server, Role::kServer));
    connect_raw(c, s);
    INFO(s.tls.error_text());
    CHECK(s.status == TlsStatus::kError);
    CHECK(s.tls.failure() == "alpn_mismatch");
    CHECK_FALSE(s.tls.handshake_done());
  }
}

TEST_CASE("tls: reading a KeyUpdate queues a reply outside write()", "[tls]") {
  // The proxy sends what read() queues as the encrypting half's output
  // (mesh_tls.cc, queue_tls_output): this is the case that needs it.
  RawClient c(pki().root_der, &pki().client, "meshd/1");
  Peer s;
  start(s, context(pki().server, Role::kServer));
  connect_raw(c, s);
  REQUIRE(s.tls.handshake_done());
  REQUIRE(s.tls.out_total() == 0);
  REQUIRE(wolfSSL_update_keys(c.ssl) == WOLFSSL_SUCCESS);  // update_requested
  REQUIRE(wolfSSL_write(c.ssl, "ping", 4) == 4);
  std::string wire;
  wire.swap(c.out);
  s.deliver(wire, wire.size());
  CHECK(s.received == "ping");
  CHECK(s.tls.out_total() > 0);  // nothing written: the KeyUpdate's answer
  // The client takes it, and data goes on both ways under the new keys.
  c.in += s.take_output();
  REQUIRE(s.tls.write("pong", 4) == TlsStatus::kOk);
  c.in += s.take_output();
  char buf[16];
  int n = wolfSSL_read(c.ssl, buf, sizeof buf);
  REQUIRE(n == 4);
  CHECK(std::string(buf, 4) == "pong");
}

TEST_CASE("tls: close_notify ends one direction; the other keeps going", "[tls]") {
  Peer c, s;
  start(c, context(pki().client, Role::kClient));
  start(s, context(pki().server, Role::kServer));
  connect(c, s);
  std::string req = "request";
  REQUIRE(c.tls.write(req.data(), req.size()) == TlsStatus::kOk);
  REQUIRE(c.tls.shutdown() == TlsStatus::kOk);
  CHECK(s.deliver(c.take_output(), 3) == TlsStatus::kClosed);
  CHECK(s.received == req);
  CHECK(s.tls.read(nullptr, 0).status == TlsStatus::kClosed);
  // The server answers after the client's end of stream, then ends too.
  std::string resp = pattern(20000, 10);
  REQUIRE(s.tls.write(resp.data(), resp.size()) == TlsStatus::kOk);
  REQUIRE(s.tls.shutdown() == TlsStatus::kOk);
  CHECK(c.deliver(s.take_output(), 1000) == TlsStatus::kClosed);
  INFO(c.tls.error_text());
  CHECK(c.received == resp);
  CHECK(s.tls.shutdown() == TlsStatus::kOk);  // once is enough; again is harmless
  CHECK(s.tls.out_total() == 0);
  CHECK(c.tls.write("late", 4) == TlsStatus::kError);  // after its own close_notify
}

TEST_CASE("tls: garbage and early EOF fail cleanly", "[tls]") {
  SECTION("plaintext HTTP to a server") {
    Peer s;
    start(s, context(pki().server, Role::kServer));
    std::string junk = "GET / HTTP/1.1\r\nHost: x\r\n\r\n";
    CHECK(s.deliver(junk, junk.size()) == TlsStatus::kError);
    CHECK(s.tls.failure() == "protocol_error");
    CHECK_FALSE(s.tls.error_text().empty());
    CHECK(s.tls.write("x", 1) == TlsStatus::kError);
  }
  SECTION("random bytes to a server, many times") {
    auto sctx = context(pki().server, Role::kServer);
    uint32_t seed = 12345;
    for (int i = 0; i < 200; ++i) {
      Peer s;
      start(s, sctx);
      std::string junk(1 + i * 7 % 600, '\0');
      for (char& ch : junk) ch = static_cast<char>((seed = seed * 1103515245 + 12345) >> 16);
      if (i % 2 == 0) junk[0] = 0x16;  // past the record type check
      s.deliver(junk, 1 + i % 50);
      CHECK(s.status != TlsStatus::kOk);
      CHECK_FALSE(s.tls.handshake_done());
      s.tls.feed_eof();
      CHECK(s.step() == TlsStatus::kError);
    }
  }
  SECTION("EOF in the middle of the handshake") {
    Peer c, s;
    start(c, context(pki().client, Role::kClient));
    start(s, context(pki().server, Role::kServer));
    c.step();
    std::string hello = c.take_output();
    REQUIRE(hello.size() > 10);
    s.deliver(hello.substr(0, hello.size() / 2), 1000);
    CHECK(s.status == TlsStatus::kWantRead);
    s.tls.feed_eof();
    CHECK(s.step() == TlsStatus::kError);
    CHECK(s.tls.failure() == "closed_early");
    c.tls.feed_eof();
    CHECK(c.step() == TlsStatus::kError);
    CHECK(c.tls.failure() == "closed_early");
  }
  SECTION("EOF without close_notify after the handshake") {
    Peer c, s;
    start(c, context(pki().client, Role::kClient));
    start(s, context(pki().server, Role::kServer));
    connect(c, s);
    REQUIRE(s.tls.handshake_done());
    s.tls.feed_eof();
    CHECK(s.step() == TlsStatus::kError);
    CHECK(s.tls.failure() == "closed_early");
  }
}

TEST_CASE("tls: context creation names what is wrong", "[tls]") {
  TlsCredentials c = pki().client;
  SECTION("a key of another certificate") {
    c.key_der = pki().server.key_der;
    auto r = TlsContext::create(c, Role::kClient);
    REQUIRE_FALSE(r.has_value());
    CHECK(r.error() == "private key does not match the certificate");
  }
  SECTION("a certificate that is not DER") {
    c.chain_der[0] = "not a certificate";
    auto r = TlsContext::create(c, Role::kServer);
    REQUIRE_FALSE(r.has_value());
    CHECK(r.error().starts_with("certificate chain: "));
  }
  SECTION("no anchors") {
    c.anchors_der.clear();
    auto r = TlsContext::create(c, Role::kServer);
    REQUIRE_FALSE(r.has_value());
    CHECK(r.error().starts_with("trust anchors"));
  }
  SECTION("a bad ALPN") {
    auto r = TlsContext::create(c, Role::kClient, "a,b");
    REQUIRE_FALSE(r.has_value());
    CHECK(r.error().starts_with("alpn"));
  }
  SECTION("the real thing") {
    auto r = TlsContext::create(c, Role::kClient);
    REQUIRE(r.has_value());
    CHECK((*r)->leaf_der() == c.chain_der[0]);
    CHECK((*r)->alpn() == "meshd/1");
    auto again = TlsContext::create(c, Role::kClient);
    REQUIRE(again.has_value());
    CHECK((*again)->generation() != (*r)->generation());
  }
}

TEST_CASE("tls: a session resets to nothing and starts again", "[tls]") {
  Peer c, s;
  CHECK_FALSE(c.tls.active());
  CHECK(c.tls.handshake() == TlsStatus::kError);
  CHECK(c.tls.read(nullptr, 0).status == TlsStatus::kError);
  auto cctx = context(pki().client, Role::kClient);
  auto sctx = context(pki().server, Role::kServer);
  start(c, cctx);
  start(s, sctx);
  connect(c, s);
  REQUIRE(c.tls.handshake_done());
  c.tls.reset();
  s.tls.reset();
  CHECK_FALSE(c.tls.active());
  CHECK(c.tls.peer_identity().empty());
  CHECK(c.tls.out_total() == 0);
  start(c, cctx);
  start(s, sctx);
  connect(c, s);
  CHECK(c.tls.handshake_done());
  CHECK(s.tls.peer_identity() == kClientId);
}

TEST_CASE("tls: client session cache is LRU and per context", "[tls]") {
  auto cctx = context(pki().client, Role::kClient);
  auto sctx = context(pki().server, Role::kServer);
  auto ticket = [&]() {
    Peer c, s;
    start(c, cctx);
    start(s, sctx);
    connect(c, s);
    WOLFSSL_SESSION* t = c.tls.get1_session();
    REQUIRE(t != nullptr);
    return t;
  };
  ClientSessionCache cache(2);
  cache.store("10.0.0.1:80", cctx.get(), ticket());
  cache.store("10.0.0.2:80", cctx.get(), ticket());
  CHECK(cache.find("10.0.0.1:80", cctx.get()) != nullptr);  // now most recent
  cache.store("10.0.0.3:80", cctx.get(), ticket());         // evicts .2
  CHECK(cache.size() == 2);
  CHECK(cache.find("10.0.0.2:80", cctx.get()) == nullptr);
  CHECK(cache.find("10.0.0.3:80", cctx.get()) != nullptr);
  // Kept serialized: ~1 KB each, not a 38 KB WOLFSSL_SESSION.
  CHECK(cache.bytes() > 0);
  CHECK(cache.bytes() < 2 * 4096);
  // A renewed identity (new context) never resumes the old one's sessions.
  auto renewed = context(pki().client, Role::kClient);
  CHECK(cache.find("10.0.0.1:80", renewed.get()) == nullptr);
  CHECK(cache.size() == 1);
  cache.store("10.0.0.3:80", cctx.get(), nullptr);  // a failed resumption forgets it
  CHECK(cache.size() == 0);
  // The cached session resumes.
  cache.store("10.0.0.4:80", cctx.get(), ticket());
  Peer c, s;
  start(c, cctx, cache.find("10.0.0.4:80", cctx.get()));
  start(s, sctx);
  connect(c, s);
  CHECK(c.tls.resumed());
  CHECK(s.tls.resumed());
  CHECK(c.tls.peer_identity() == kServerId);
  CHECK(s.tls.peer_identity() == kClientId);
  CHECK(cache.find("nowhere", cctx.get()) == nullptr);
  cache.clear();
  CHECK(cache.bytes() == 0);
}

#if !defined(__SANITIZE_ADDRESS__)
// This thread's CPU time in microseconds: other processes on the machine do not count.
double cpu_now() {
  timespec ts{};
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  return static_cast<double>(ts.tv_sec) * 1e6 + static_cast<double>(ts.tv_nsec) / 1e3;
}

TEST_CASE("tls: heap per idle session pair, and handshake cost", "[tls]") {
  auto cctx = context(pki().client, Role::kClient);
  auto sctx = context(pki().server, Role::kServer);
  {  // warm wolfSSL's lazily built tables (FP_ECC caches, ...)
    Peer c, s;
    start(c, cctx);
    start(s, sctx);
    connect(c, s);
  }
  constexpr int kPairs = 20;
  std::vector<std::unique_ptr<Peer>> peers;
  peers.reserve(2 * kPairs);
  size_t before = mallinfo2().uordblks;
  auto t0 = cpu_now();
  for (int i = 0; i < kPairs; ++i) {
    peers.push_back(std::make_unique<Peer>());
    peers.push_back(std::make_unique<Peer>());
    Peer& c = *peers[peers.size() - 2];
    Peer& s = *peers.back();
    start(c, cctx);
    start(s, sctx);
    connect(c, s);
    REQUIRE(c.tls.handshake_done());
    REQUIRE(c.tls.out_total() + s.tls.out_total() == 0);
    std::string().swap(c.received);
    std::string().swap(s.received);
  }
  auto t1 = cpu_now();
  size_t per_pair = (mallinfo2().uordblks - before) / kPairs;
  double full_us = (t1 - t0) / kPairs;

  WOLFSSL_SESSION* ticket = peers[0]->tls.get1_session();
  REQUIRE(ticket != nullptr);
  auto t2 = cpu_now();
  for (int i = 0; i < kPairs; ++i) {
    Peer c, s;
    start(c, cctx, ticket);
    start(s, sctx);
    connect(c, s);
    REQUIRE(c.tls.resumed());
  }
  auto t3 = cpu_now();
  wolfSSL_SESSION_free(ticket);
  double resumed_us = (t3 - t2) / kPairs;
  WARN("idle established client+server pair: " << per_pair << " bytes of heap; full handshake " << full_us
                                               << " us, resumed " << resumed_us << " us (CPU, both sides, one core)");
  CHECK(per_pair < 160 * 1024);
}
#endif

TEST_CASE("tls: handshakes keep working past the first second of a context", "[tls]") {
  // wolfSSL seals each server ticket with a key that must outlive the
  // session timeout; with kSessionTimeoutSeconds equal to the key's life no
  // key qualified once a second had passed, and every handshake failed.
  auto cctx = context(pki().client, Role::kClient);
  auto sctx = context(pki().server, Role::kServer);
  auto handshake = [&] {
    Peer c, s;
    start(c, cctx);
    start(s, sctx);
    connect(c, s);
    INFO(c.tls.error_text() << " / " << s.tls.error_text());
    CHECK(s.tls.handshake_done());
    CHECK(c.tls.handshake_done());
  };
  handshake();
  // Into the next whole second of wolfSSL's low-resolution clock.
  timespec now{};
  clock_gettime(CLOCK_REALTIME, &now);
  ::usleep(static_cast<useconds_t>((1'000'000'000 - now.tv_nsec) / 1000 + 100'000));
  handshake();
  STATIC_REQUIRE(kSessionTimeoutSeconds < 3600);
}
