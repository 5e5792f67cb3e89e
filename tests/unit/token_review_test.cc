// The TokenReview verifier against an in-process fake API server speaking
// real TLS on 127.0.0.1: what it grants (and the request it sends for
// that), what it refuses and why, and that every misbehaving server ends
// in a bounded, named error. Also the HTTP/1.1 response reader alone.
#include <wolfssl/options.h>
// wolfSSL's options must come first.
#include <wolfssl/ssl.h>
#include <wolfssl/wolfcrypt/asn_public.h>
#include <wolfssl/wolfcrypt/ecc.h>
#include <wolfssl/wolfcrypt/random.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <catch2/catch.hpp>
#include <chrono>
#include <condition_variable>
#include <cstring>
#include <fstream>
#include <mutex>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "base/json_value.h"
#include "controller/certifier.h"
#include "controller/http_response.h"
#include "controller/pod_reviews.h"
#include "controller/token_review.h"
#include "identity/cert.h"
#include "identity/csr.h"
#include "identity/key.h"
#include "identity/pem.h"
#include "tests/unit/loopback.h"
#include "tests/unit/must.h"
#include "tests/unit/test_ca.h"

using namespace meshd;
using controller::HttpResponseReader;
using controller::TokenReviewOptions;
using controller::TokenReviewVerifier;
using meshd::test::must;

namespace {

bool contains(const std::string& s, std::string_view part) { return s.find(part) != std::string::npos; }

// ---- certificates -------------------------------------------------------

// identity::make_ca makes the CAs, but identity::issue_leaf only writes a
// SPIFFE URI SAN (all the mesh needs), so the API server's certificate,
// which must name 127.0.0.1 or localhost, is made here with wolfCrypt.
struct ServerCert {
  std::string cert_der;
  std::string key_der;
};

std::string tlv(uint8_t tag, std::string_view value) {
  REQUIRE(value.size() < 128);  // short form is all these names need
  return std::string(1, static_cast<char>(tag)) + static_cast<char>(value.size()) + std::string(value);
}

struct EccKey {
  ecc_key key{};
  explicit EccKey(const identity::PrivateKey& k) {
    REQUIRE(wc_ecc_init(&key) == 0);
    std::string der = k.der();
    word32 idx = 0;
    REQUIRE(wc_EccPrivateKeyDecode(reinterpret_cast<const byte*>(der.data()), &idx, &key,
                                   static_cast<word32>(der.size())) == 0);
  }
  ~EccKey() { wc_ecc_free(&key); }
};

ServerCert server_cert(const identity::Issuer& ca, const std::vector<std::string>& dns,
                       const std::vector<std::string>& ips) {
  auto leaf_key = must(identity::PrivateKey::generate());
  EccKey leaf(leaf_key), signer(ca.key);
  Cert c;
  REQUIRE(wc_InitCert(&c) == 0);
  c.daysValid = 2;
  c.sigType = CTC_SHA256wECDSA;
  std::strcpy(c.subject.commonName, "kube-apiserver");
  REQUIRE(wc_SetIssuerBuffer(&c, reinterpret_cast<const byte*>(ca.cert_der.data()),
                             static_cast<int>(ca.cert_der.size())) == 0);
  std::string names;
  for (const auto& d : dns) names += tlv(0x82, d);
  for (const auto& ip : ips) {
    in_addr a{};
    REQUIRE(inet_pton(AF_INET, ip.c_str(), &a) == 1);
    names += tlv(0x87, std::string_view(reinterpret_cast<const char*>(&a), 4));
  }
  std::string san = tlv(0x30, names);
  std::memcpy(c.altNames, san.data(), san.size());
  c.altNamesSz = static_cast<int>(san.size());
  WC_RNG rng;
  REQUIRE(wc_InitRng(&rng) == 0);
  std::string out(4096, '\0');
  auto* buf = reinterpret_cast<byte*>(out.data());
  int rc = wc_MakeCert_ex(&c, buf, static_cast<word32>(out.size()), ECC_TYPE, &leaf.key, &rng);
  REQUIRE(rc > 0);
  rc = wc_SignCert_ex(c.bodySz, c.sigType, buf, static_cast<word32>(out.size()), ECC_TYPE, &signer.key, &rng);
  wc_FreeRng(&rng);
  REQUIRE(rc > 0);
  out.resize(static_cast<size_t>(rc));
  return {out, leaf_key.der()};
}

struct Pki {
  identity::Issuer ca;
  identity::Issuer other_ca;  // a CA the verifier does not trust
  Pki() : ca(make("kube ca")), other_ca(make("someone else's ca")) {}
  static identity::Issuer make(std::string_view cn) {
    uint64_t t = static_cast<uint64_t>(time(nullptr));
    auto key = must(identity::PrivateKey::generate());
    std::string der = must(identity::make_ca(key, cn, t - 60, t + 86400, nullptr, -1));
    return {der, std::move(key)};
  }
};

Pki& pki() {
  static Pki p;  // key generation is the slow part: once for all tests
  return p;
}

// ---- files --------------------------------------------------------------

struct TempDir {
  std::string dir;
  std::vector<std::string> files;
  TempDir() {
    char tmpl[] = "/tmp/meshd-token-review-XXXXXX";
    dir = mkdtemp(tmpl);
  }
  ~TempDir() {
    for (const auto& f : files) unlink(f.c_str());
    rmdir(dir.c_str());
  }
  std::string write(const std::string& name, const std::string& text) {
    std::string path = dir + "/" + name;
    // A new file each time (as Kubernetes' symlink swap gives): a new inode.
    unlink(path.c_str());
    std::ofstream(path) << text;
    if (std::find(files.begin(), files.end(), path) == files.end()) files.push_back(path);
    return path;
  }
};

// ---- the fake API server ------------------------------------------------

class FakeApi {
 public:
  enum class Mode {
    kAnswer,              // reads the request, sends the reply pieces, closes
    kSilentTcp,           // accepts, never says a word
    kSilentAfterRequest,  // handshakes, reads the request, never answers
  };

  explicit FakeApi(const ServerCert& cert, Mode mode = Mode::kAnswer, bool tls12_only = false) : mode_(mode) {
    signal(SIGPIPE, SIG_IGN);  // a client that gave up must not kill the test
    listen_fd_ = meshd::test::listen_loopback(&port_, 16);
    ctx_ = wolfSSL_CTX_new(tls12_only ? wolfTLSv1_2_server_method() : wolfSSLv23_server_method());
    REQUIRE(ctx_ != nullptr);
    REQUIRE(wolfSSL_CTX_use_certificate_buffer(ctx_, reinterpret_cast<const unsigned char*>(cert.cert_der.data()),
                                               static_cast<long>(cert.cert_der.size()),
                                               WOLFSSL_FILETYPE_ASN1) == WOLFSSL_SUCCESS);
    REQUIRE(wolfSSL_CTX_use_PrivateKey_buffer(ctx_, reinterpret_cast<const unsigned char*>(cert.key_der.data()),
                                              static_cast<long>(cert.key_der.size()),
                                              WOLFSSL_FILETYPE_ASN1) == WOLFSSL_SUCCESS);
    thread_ = std::thread([this] { run(); });
  }
  ~FakeApi() {
    stop_ = true;
    thread_.join();
    for (WOLFSSL* s : held_ssl_) wolfSSL_free(s);
    for (int fd : held_fds_) ::close(fd);
    wolfSSL_CTX_free(ctx_);
    ::close(listen_fd_);
  }

  uint16_t port() const { return port_; }
  std::string url() const { return "https://127.0.0.1:" + std::to_string(port_); }
  void reply(std::vector<std::string> pieces) {
    std::lock_guard lock(mu_);
    pieces_ = std::move(pieces);
  }
  void reply(std::string whole) { reply(std::vector<std::string>{std::move(whole)}); }
  std::vector<std::string> requests() const {
    std::lock_guard lock(mu_);
    return requests_;
  }

 private:
  void run() {
    while (!stop_) {
      pollfd p{listen_fd_, POLLIN, 0};
      if (::poll(&p, 1, 20) <= 0) continue;
      int c = ::accept4(listen_fd_, nullptr, nullptr, SOCK_CLOEXEC);
      if (c < 0) continue;
      if (mode_ == Mode::kSilentTcp) {
        held_fds_.push_back(c);
        continue;
      }
      // Bounds every wait of this thread, whatever the client does.
      timeval tv{2, 0};
      ::setsockopt(c, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
      ::setsockopt(c, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
      serve(c);
    }
#ifdef FP_ECC
    wc_ecc_fp_free();  // this thread's ECC cache (see transport::release_thread_crypto)
#endif
  }

  void serve(int c) {
    WOLFSSL* ssl = wolfSSL_new(ctx_);
    wolfSSL_set_fd(ssl, c);
    if (wolfSSL_accept(ssl) != WOLFSSL_SUCCESS) {
      wolfSSL_free(ssl);
      ::close(c);
      return;
    }
    std::string req;
    char buf[4096];
    while (req.size() < (1u << 20)) {
      size_t head_end = req.find("\r\n\r\n");
      if (head_end != std::string::npos) {
        size_t cl = 0;
        if (size_t at = req.find("Content-Length: "); at != std::string::npos && at < head_end)
          cl = std::strtoul(req.c_str() + at + 16, nullptr, 10);
        if (req.size() >= head_end + 4 + cl) break;
      }
      int n = wolfSSL_read(ssl, buf, sizeof buf);
      if (n <= 0) break;
      req.append(buf, static_cast<size_t>(n));
    }
    std::vector<std::string> pieces;
    {
      std::lock_guard lock(mu_);
      requests_.push_back(req);
      pieces = pieces_;
    }
    if (mode_ == Mode::kSilentAfterRequest) {
      held_ssl_.push_back(ssl);
      held_fds_.push_back(c);
      return;
    }
    for (const auto& p : pieces)
      if (wolfSSL_write(ssl, p.data(), static_cast<int>(p.size())) != static_cast<int>(p.size())) break;
    wolfSSL_shutdown(ssl);
    wolfSSL_free(ssl);
    ::close(c);
  }

  Mode mode_;
  int listen_fd_ = -1;
  uint16_t port_ = 0;
  WOLFSSL_CTX* ctx_ = nullptr;
  std::atomic<bool> stop_{false};
  std::thread thread_;
  mutable std::mutex mu_;
  std::vector<std::string> pieces_;
  std::vector<std::string> requests_;
  std::vector<WOLFSSL*> held_ssl_;  // thread-owned until joined
  std::vector<int> held_fds_;
};

// ---- answers ------------------------------------------------------------

std::string review(bool authenticated, const std::string& username, const std::string& error = "",
                   const std::string& audiences = "") {
  std::string status = "\"authenticated\":" + std::string(authenticated ? "true" : "false");
  if (!username.empty())
    status += ",\"user\":{\"username\":\"" + username + "\",\"uid\":\"1b2c\",\"groups\":[\"system:serviceaccounts\"]}";
  if (!error.empty()) status += ",\"error\":\"" + error + "\"";
  if (!audiences.empty()) status += ",\"audiences\":" + audiences;
  return "{\"kind\":\"TokenReview\",\"apiVersion\":\"authentication.k8s.io/v1\",\"metadata\":{},"
         "\"spec\":{\"token\":\"\"},\"status\":{" +
         status + "}}";
}

std::string http(int status, const std::string& reason, const std::string& body) {
  return "HTTP/1.1 " + std::to_string(status) + " " + reason +
         "\r\nContent-Type: application/json\r\nAudit-Id: 5d1f\r\nContent-Length: " + std::to_string(body.size()) +
         "\r\n\r\n" + body;
}

std::string created(const std::string& body) { return http(201, "Created", body); }

std::string chunked(const std::string& body, size_t chunk) {
  std::string out = "HTTP/1.1 201 Created\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n";
  bool ext = true;
  for (size_t i = 0; i < body.size(); i += chunk) {
    std::string part = body.substr(i, chunk);
    char size[32];
    std::snprintf(size, sizeof size, "%zx", part.size());
    out += std::string(size) + (ext ? ";name=value" : "") + "\r\n" + part + "\r\n";
    ext = false;
  }
  return out + "0\r\nX-Trailer: yes\r\n\r\n";
}

const std::string kPodToken = "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJ3ZWIifQ.c2ln";
const std::string kWebId = "spiffe://mesh.test/ns/default/sa/web";

// A verifier pointed at a fake server, with its CA and token files.
struct Setup {
  TempDir files;
  TokenReviewOptions options;
  explicit Setup(const std::string& url) {
    options.api_url = url;
    options.ca_file = files.write("ca.crt", identity::pem_encode("CERTIFICATE", pki().ca.cert_der));
    options.token_file = files.write("token", "controller-token\n");
    options.trust_domain = "mesh.test";
    options.timeout_ms = 2000;
  }
  std::unique_ptr<TokenReviewVerifier> make() { return must(TokenReviewVerifier::create(options)); }
};

ServerCert good_cert() {
  static ServerCert c = server_cert(pki().ca, {"localhost"}, {"127.0.0.1"});
  return c;
}

uint64_t ms_since(std::chrono::steady_clock::time_point t) {
  return static_cast<uint64_t>(
      std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - t).count());
}

}  // namespace

TEST_CASE("token review: an authenticated service account is its SPIFFE identity", "[token_review]") {
  FakeApi api(good_cert());
  api.reply(created(review(true, "system:serviceaccount:default:web")));
  Setup s(api.url());
  auto v = s.make();
  uint64_t now = 1'700'000'000;
  CHECK(must(v->verify(kPodToken, now)) == kWebId);

  auto reqs = api.requests();
  REQUIRE(reqs.size() == 1);
  const std::string& req = reqs[0];
  CHECK(req.starts_with("POST /apis/authentication.k8s.io/v1/tokenreviews HTTP/1.1\r\n"));
  CHECK(contains(req, "\r\nHost: 127.0.0.1:" + std::to_string(api.port()) + "\r\n"));
  CHECK(contains(req, "\r\nAuthorization: Bearer controller-token\r\n"));
  CHECK(contains(req, "\r\nContent-Type: application/json\r\n"));
  CHECK(contains(req, "\r\nConnection: close\r\n"));
  auto body = must(parse_json(req.substr(req.find("\r\n\r\n") + 4)));
  CHECK(body["apiVersion"].as_string() == "authentication.k8s.io/v1");
  CHECK(body["kind"].as_string() == "TokenReview");
  CHECK(body["spec"]["token"].as_string() == kPodToken);
  CHECK(body["spec"].find("audiences") == nullptr);

  SECTION("an API server that speaks only TLS 1.2") {
    FakeApi old(good_cert(), FakeApi::Mode::kAnswer, true);
    old.reply(created(review(true, "system:serviceaccount:default:web")));
    Setup s12(old.url());
    CHECK(must(s12.make()->verify(kPodToken, now)) == kWebId);
  }
  SECTION("a second use within a minute is answered from the cache") {
    CHECK(must(v->verify(kPodToken, now + 59)) == kWebId);
    CHECK(api.requests().size() == 1);
    CHECK(v->cached() == 1);
    // ...and asks again once the entry expired, or the clock went back.
    CHECK(must(v->verify(kPodToken, now + 60)) == kWebId);
    CHECK(api.requests().size() == 2);
    CHECK(must(v->verify(kPodToken, now - 3600)) == kWebId);
    CHECK(api.requests().size() == 3);
  }
  SECTION("refusals are not cached") {
    api.reply(created(review(false, "", "token has been invalidated")));
    CHECK_FALSE(v->verify("another.token.here", now));
    api.reply(created(review(true, "system:serviceaccount:default:web")));
    CHECK(must(v->verify("another.token.here", now)) == kWebId);
    CHECK(api.requests().size() == 3);
  }
  SECTION("the controller's own token is re-read when its file changes") {
    s.files.write("token", "rotated-token");
    CHECK(must(v->verify("a.new.pod-token", now)) == kWebId);
    reqs = api.requests();
    REQUIRE(reqs.size() == 2);
    CHECK(contains(reqs[1], "\r\nAuthorization: Bearer rotated-token\r\n"));
  }
}

TEST_CASE("token review: the token and CA files are re-read when they change", "[token_review]") {
  FakeApi api(good_cert());
  api.reply(created(review(true, "system:serviceaccount:default:web")));
  Setup s(api.url());
  auto v = s.make();
  // Caching off: every verify is a review.
  s.options.cache_ttl_s = 0;
  v = s.make();
  s.files.write("token", "");  // caught mid-rotation: the last good token serves
  CHECK(must(v->verify(kPodToken, 1000)) == kWebId);
  s.files.write("token", "second-token");
  CHECK(must(v->verify(kPodToken, 1000)) == kWebId);
  auto reqs = api.requests();
  REQUIRE(reqs.size() == 2);
  CHECK(contains(reqs[0], "\r\nAuthorization: Bearer controller-token\r\n"));
  CHECK(contains(reqs[1], "\r\nAuthorization: Bearer second-token\r\n"));

  s.files.write("ca.crt", "garbage");  // a bad CA file keeps the CAs read before
  CHECK(must(v->verify(kPodToken, 1000)) == kWebId);
  // A CA that did not sign the server's certificate: now refused.
  s.files.write("ca.crt", identity::pem_encode("CERTIFICATE", pki().other_ca.cert_der));
  auto r = v->verify(kPodToken, 1000);
  REQUIRE_FALSE(r);
  CHECK(contains(r.error(), "not signed by a CA in"));
  s.files.write("ca.crt", identity::pem_encode("CERTIFICATE", pki().ca.cert_der));
  CHECK(must(v->verify(kPodToken, 1000)) == kWebId);
  CHECK(v->cached() == 0);
}

TEST_CASE("token review: audiences are asked for and must be confirmed", "[token_review]") {
  FakeApi api(good_cert());
  Setup s(api.url());
  s.options.audiences = {"meshd", "other"};
  auto v = s.make();
  api.reply(created(review(true, "system:serviceaccount:shop:cart", "", "[\"meshd\"]")));
  CHECK(must(v->verify(kPodToken, 1000)) == "spiffe://mesh.test/ns/shop/sa/cart");
  auto body = must(parse_json(api.requests().at(0).substr(api.requests().at(0).find("\r\n\r\n") + 4)));
  REQUIRE(body["spec"]["audiences"].size() == 2);
  CHECK(body["spec"]["audiences"][0].as_string() == "meshd");

  for (std::string auds : {"[]", "[\"kubernetes\"]", ""}) {
    INFO("audiences " << auds);
    api.reply(created(review(true, "system:serviceaccount:shop:cart", "", auds)));
    auto r = v->verify("token.for.something-else", 1000);
    REQUIRE_FALSE(r);
    CHECK(r.error() == "token review: the token is not for the audience meshd, other");
  }
}

TEST_CASE("token review: a token the API server does not authenticate is refused with its reason", "[token_review]") {
  FakeApi api(good_cert());
  api.reply(created(review(false, "", "[invalid bearer token, token has been invalidated]")));
  Setup s(api.url());
  auto r = s.make()->verify(kPodToken, 1000);
  REQUIRE_FALSE(r);
  CHECK(r.error() == "token review: not authenticated: [invalid bearer token, token has been invalidated]");

  api.reply(created(review(false, "")));
  r = s.make()->verify(kPodToken, 1000);
  REQUIRE_FALSE(r);
  CHECK(r.error() == "token review: not authenticated: the API server gave no reason");
}

TEST_CASE("token review: only service accounts with valid names become identities", "[token_review]") {
  FakeApi api(good_cert());
  Setup s(api.url());
  auto v = s.make();
  for (std::string user :
       {"system:node:worker-1", "alice", "system:serviceaccount:default", "system:serviceaccount:a:b:c",
        "system:serviceaccount:Default:web", "system:serviceaccount:default:", "system:serviceaccount::web",
        "system:serviceaccount:default:we/b", "system:serviceaccount:default:..", "system:serviceaccount:-ns:web"}) {
    INFO(user);
    api.reply(created(review(true, user)));
    auto r = v->verify(kPodToken, 1000);
    REQUIRE_FALSE(r);
    CHECK(r.error().starts_with("token review: '"));
  }
  CHECK(v->cached() == 0);
  // A long name that is valid for Kubernetes but makes the SPIFFE ID too long.
  api.reply(created(review(true, "system:serviceaccount:default:" + std::string(200, 'a'))));
  auto r = v->verify(kPodToken, 1000);
  REQUIRE_FALSE(r);
  CHECK(contains(r.error(), "more than the 200 allowed"));
}

TEST_CASE("token review: HTTP errors name the status and the API server's message", "[token_review]") {
  FakeApi api(good_cert());
  Setup s(api.url());
  auto v = s.make();
  const std::string where = "kube api 127.0.0.1:" + std::to_string(api.port()) + ": ";
  api.reply(http(401, "Unauthorized",
                 R"({"kind":"Status","apiVersion":"v1","status":"Failure","message":"Unauthorized","code":401})"));
  auto r = v->verify(kPodToken, 1000);
  REQUIRE_FALSE(r);
  CHECK(r.error().starts_with(where + "HTTP 401: Unauthorized ("));

  api.reply(http(
      403, "Forbidden",
      R"({"kind":"Status","message":"tokenreviews.authentication.k8s.io is forbidden: User \"system:serviceaccount:mesh:ctl\" cannot create resource","code":403})"));
  r = v->verify(kPodToken, 1000);
  REQUIRE_FALSE(r);
  CHECK(r.error().starts_with(where + "HTTP 403: tokenreviews.authentication.k8s.io is forbidden: User "
                                      "\"system:serviceaccount:mesh:ctl\" cannot create resource"));
  CHECK(contains(r.error(), "system:auth-delegator"));

  api.reply("HTTP/1.1 500 Internal Server Error\r\nContent-Length: 9\r\n\r\n\x01oops\nxyz");
  r = v->verify(kPodToken, 1000);
  REQUIRE_FALSE(r);
  CHECK(r.error() == where + "HTTP 500: ?oops?xyz");

  api.reply(created("this is not json"));
  r = v->verify(kPodToken, 1000);
  REQUIRE_FALSE(r);
  CHECK(r.error().starts_with("token review: the answer is not JSON: "));
}

TEST_CASE("token review: a chunked answer, sent in many pieces", "[token_review]") {
  FakeApi api(good_cert());
  std::string whole = chunked(review(true, "system:serviceaccount:default:web"), 7);
  std::vector<std::string> pieces;
  for (size_t i = 0; i < whole.size(); i += 5) pieces.push_back(whole.substr(i, 5));
  api.reply(pieces);
  Setup s(api.url());
  CHECK(must(s.make()->verify(kPodToken, 1000)) == kWebId);

  SECTION("a body that runs to the close, without Content-Length") {
    api.reply("HTTP/1.1 201 Created\r\nContent-Type: application/json\r\n\r\n" +
              review(true, "system:serviceaccount:default:web"));
    CHECK(must(s.make()->verify(kPodToken, 1000)) == kWebId);
  }
  SECTION("an interim 100 Continue before the answer") {
    api.reply("HTTP/1.1 100 Continue\r\n\r\n" + created(review(true, "system:serviceaccount:default:web")));
    CHECK(must(s.make()->verify(kPodToken, 1000)) == kWebId);
  }
}

TEST_CASE("token review: oversized answers end in a bounded error", "[token_review]") {
  FakeApi api(good_cert());
  Setup s(api.url());
  auto v = s.make();
  SECTION("headers over 16 KiB") {
    api.reply("HTTP/1.1 201 Created\r\nX-Filler: " + std::string(20'000, 'a') + "\r\n\r\n{}");
    auto r = v->verify(kPodToken, 1000);
    REQUIRE_FALSE(r);
    CHECK(contains(r.error(), "status line and headers are over 16 KiB"));
  }
  SECTION("a Content-Length over 1 MiB") {
    api.reply(std::vector<std::string>{"HTTP/1.1 201 Created\r\nContent-Length: 2097152\r\n\r\n",
                                       std::string(64 * 1024, '{')});
    auto r = v->verify(kPodToken, 1000);
    REQUIRE_FALSE(r);
    CHECK(contains(r.error(), "the response body is 2097152 bytes, over the 1 MiB allowed"));
  }
  SECTION("a chunked body that grows past 1 MiB") {
    std::vector<std::string> pieces = {"HTTP/1.1 201 Created\r\nTransfer-Encoding: chunked\r\n\r\n"};
    for (int i = 0; i < 20; ++i) pieces.push_back("10000\r\n" + std::string(0x10000, ' ') + "\r\n");
    api.reply(pieces);
    auto r = v->verify(kPodToken, 1000);
    REQUIRE_FALSE(r);
    CHECK(contains(r.error(), "the response body is over 1 MiB"));
  }
  SECTION("a body to the close past 1 MiB") {
    std::vector<std::string> pieces = {"HTTP/1.1 201 Created\r\n\r\n"};
    for (int i = 0; i < 20; ++i) pieces.push_back(std::string(0x10000, ' '));
    api.reply(pieces);
    auto r = v->verify(kPodToken, 1000);
    REQUIRE_FALSE(r);
    CHECK(contains(r.error(), "the response body is over 1 MiB"));
  }
  SECTION("cut short") {
    api.reply("HTTP/1.1 201 Created\r\nContent-Length: 100\r\n\r\n{\"kind\"");
    auto r = v->verify(kPodToken, 1000);
    REQUIRE_FALSE(r);
    CHECK(contains(r.error(), "closed with 93 bytes of the response body still to come"));
  }
  SECTION("nothing at all") {
    api.reply(std::vector<std::string>{});
    auto r = v->verify(kPodToken, 1000);
    REQUIRE_FALSE(r);
    CHECK(contains(r.error(), "the connection closed without an answer"));
  }
}

TEST_CASE("token review: the API server's certificate must chain to --kube-ca and name the host", "[token_review]") {
  SECTION("signed by another CA") {
    FakeApi api(server_cert(pki().other_ca, {"localhost"}, {"127.0.0.1"}));
    api.reply(created(review(true, "system:serviceaccount:default:web")));
    Setup s(api.url());
    auto r = s.make()->verify(kPodToken, 1000);
    REQUIRE_FALSE(r);
    CHECK(r.error() == "kube api 127.0.0.1:" + std::to_string(api.port()) +
                           ": TLS: the server's certificate is not signed by a CA in " + s.options.ca_file);
    // The pod's token never reached that server.
    CHECK(api.requests().empty());
  }
  SECTION("for another address") {
    FakeApi api(server_cert(pki().ca, {"localhost"}, {"127.0.0.2"}));
    api.reply(created(review(true, "system:serviceaccount:default:web")));
    Setup s(api.url());
    auto r = s.make()->verify(kPodToken, 1000);
    REQUIRE_FALSE(r);
    CHECK(contains(r.error(), "TLS: the server's certificate is not for the address 127.0.0.1"));
    CHECK(api.requests().empty());
  }
  SECTION("by name") {
    FakeApi api(server_cert(pki().ca, {"localhost"}, {}));
    api.reply(created(review(true, "system:serviceaccount:default:web")));
    Setup s("https://localhost:" + std::to_string(api.port()));
    CHECK(must(s.make()->verify(kPodToken, 1000)) == kWebId);
    CHECK(contains(api.requests().at(0), "\r\nHost: localhost:" + std::to_string(api.port()) + "\r\n"));
  }
  SECTION("for another name") {
    FakeApi api(server_cert(pki().ca, {"kubernetes.default.svc"}, {"127.0.0.1"}));
    Setup s("https://localhost:" + std::to_string(api.port()));
    auto r = s.make()->verify(kPodToken, 1000);
    REQUIRE_FALSE(r);
    CHECK(contains(r.error(), "TLS: the server's certificate is not for the name localhost"));
  }
}

TEST_CASE("token review: a server that never answers costs at most the timeout", "[token_review]") {
  SECTION("no TLS handshake") {
    FakeApi api(good_cert(), FakeApi::Mode::kSilentTcp);
    Setup s(api.url());
    s.options.timeout_ms = 300;
    auto v = s.make();
    auto t0 = std::chrono::steady_clock::now();
    auto r = v->verify(kPodToken, 1000);
    uint64_t took = ms_since(t0);
    REQUIRE_FALSE(r);
    CHECK(r.error() == "kube api 127.0.0.1:" + std::to_string(api.port()) + ": no TLS handshake within 300ms");
    CHECK(took >= 250);
    CHECK(took < 1500);
  }
  SECTION("no answer to the request") {
    FakeApi api(good_cert(), FakeApi::Mode::kSilentAfterRequest);
    Setup s(api.url());
    s.options.timeout_ms = 500;
    auto v = s.make();
    auto t0 = std::chrono::steady_clock::now();
    auto r = v->verify(kPodToken, 1000);
    uint64_t took = ms_since(t0);
    REQUIRE_FALSE(r);
    CHECK(contains(r.error(), ": no complete answer within 500ms"));
    CHECK(took < 1500);
    CHECK(api.requests().size() == 1);
  }
  SECTION("nobody listening") {
    uint16_t port = 0;
    {
      FakeApi api(good_cert());
      port = api.port();
    }
    Setup s("https://127.0.0.1:" + std::to_string(port));
    auto r = s.make()->verify(kPodToken, 1000);
    REQUIRE_FALSE(r);
    CHECK(contains(r.error(), "cannot connect to 127.0.0.1:" + std::to_string(port) + ": connection refused"));
  }
}

TEST_CASE("token review: bad settings and bad pod tokens are refused before any request", "[token_review]") {
  FakeApi api(good_cert());
  Setup s(api.url());
  auto fails = [&](const std::string& why) {
    auto r = TokenReviewVerifier::create(s.options);
    REQUIRE_FALSE(r);
    CHECK(contains(r.error(), why));
  };
  SECTION("url") {
    s.options.api_url = "http://127.0.0.1:6443";
    fails("is not an https:// URL");
    s.options.api_url = "https://127.0.0.1:6443/api";
    fails("only https://HOST[:PORT]");
  }
  SECTION("CA file") {
    s.options.ca_file = s.files.dir + "/missing.crt";
    fails("missing.crt");
    s.options.ca_file = s.files.write("junk.crt", "not a certificate");
    fails("no usable CA certificate");
  }
  SECTION("token file") {
    s.options.token_file = s.files.dir + "/missing-token";
    fails("the controller's service-account token: ");
    s.options.token_file = s.files.write("empty-token", "\n");
    fails("is empty");
    s.options.token_file = s.files.write("two-line-token", "abc\r\nX-Injected: 1");
    fails("holds something other than a token");
  }
  SECTION("trust domain") {
    s.options.trust_domain = "Not Valid";
    fails("trust domain");
  }
  SECTION("pod tokens") {
    auto v = s.make();
    for (std::string bad : {std::string(), std::string("a\r\nb"), std::string("tok en"), std::string(20'000, 'a')}) {
      auto r = v->verify(bad, 1000);
      REQUIRE_FALSE(r);
      CHECK(contains(r.error(), "the pod token"));
    }
    CHECK(api.requests().empty());
  }
  SECTION("default port") {
    auto u = must(controller::parse_https_url("https://[fd00::1]/"));
    CHECK(u.authority() == "[fd00::1]:443");
    CHECK(must(controller::parse_https_url("https://kubernetes.default.svc")).authority() ==
          "kubernetes.default.svc:443");
  }
}

TEST_CASE("token review: pods' tokens are reviewed off the caller's thread, and certified for that identity only",
          "[token_review]") {
  FakeApi api(good_cert());
  api.reply(created(review(true, "system:serviceaccount:default:web")));
  Setup s(api.url());
  meshd::test::CaDir ca;
  controller::Stats stats;
  auto certifier = must(controller::Certifier::load({ca.dir, "mesh.test", 600}, &stats));
  controller::PodReviews reviews(s.make(), [&] { return ca.now; });

  auto key = must(identity::PrivateKey::generate());
  proto::Certify req;
  req.set_identity(kWebId);
  req.set_csr_der(must(identity::make_csr(key, kWebId)));
  req.set_k8s_token(kPodToken);
  REQUIRE(reviews.submit({7, 42, req}));
  pollfd p{reviews.fd(), POLLIN, 0};
  REQUIRE(poll(&p, 1, 5000) == 1);  // the review's thread signals when it is done
  auto done = reviews.take();
  REQUIRE(done.size() == 1);
  CHECK(done[0].job.stream == 7);
  CHECK(done[0].job.request_id == 42);
  CHECK(must(Parsed<std::string>(done[0].identity)) == kWebId);
  auto got = must(certifier->certify(done[0].job.request, ca.now, &done[0].identity));
  CHECK(must(identity::verify_chain(got.leaf_der(), {got.chain_der(0)}, ca.anchors, ca.now)).identity == kWebId);

  // The review proves one identity; a CSR for another gets nothing.
  const std::string other = "spiffe://mesh.test/ns/default/sa/admin";
  req.set_identity(other);
  req.set_csr_der(must(identity::make_csr(key, other)));
  auto refused = certifier->certify(req, ca.now, &done[0].identity);
  REQUIRE_FALSE(refused);
  CHECK(refused.error() == "the credential is for " + kWebId + ", not " + other);
  // With no review (no TokenReview configured), pod tokens are refused.
  auto unreviewed = certifier->certify(req, ca.now);
  REQUIRE_FALSE(unreviewed);
  CHECK(contains(unreviewed.error(), "no TokenReview configured"));
}

TEST_CASE("token review: waiting reviews are bounded, and the API thread is never the one waiting", "[token_review]") {
  // A verifier as slow as an API server that does not answer: it holds
  // until the test lets it go.
  struct Held : controller::CredentialVerifier {
    std::mutex* mu;
    std::condition_variable* cv;
    bool* release;
    Parsed<std::string> verify(std::string_view credential, uint64_t) override {
      std::unique_lock lock(*mu);
      cv->wait(lock, [&] { return *release; });
      return invalid("token " + std::string(credential) + " is not authenticated");
    }
  };
  std::mutex mu;
  std::condition_variable cv;
  bool release = false;
  auto held = std::make_unique<Held>();
  held->mu = &mu;
  held->cv = &cv;
  held->release = &release;
  auto reviews = std::make_unique<controller::PodReviews>(std::move(held), [] { return uint64_t{1000}; });
  proto::Certify req;
  for (size_t i = 0; i < controller::PodReviews::kMaxWaiting; ++i) {
    req.set_k8s_token("t" + std::to_string(i));
    REQUIRE(reviews->submit({1, i, req}));  // returns at once: nobody waits on the review
  }
  CHECK_FALSE(reviews->submit({1, 999, req}));  // the bound
  pollfd p{reviews->fd(), POLLIN, 0};
  CHECK(poll(&p, 1, 0) == 0);  // nothing done yet
  {
    std::lock_guard lock(mu);
    release = true;
  }
  cv.notify_all();
  std::vector<controller::PodReviews::Done> done;
  while (done.size() < controller::PodReviews::kMaxWaiting) {
    REQUIRE(poll(&p, 1, 5000) == 1);
    for (auto& d : reviews->take()) done.push_back(std::move(d));
  }
  for (size_t i = 0; i < done.size(); ++i) {  // in the order they came
    CHECK(done[i].job.request_id == i);
    CHECK(done[i].identity.error() == "token t" + std::to_string(i) + " is not authenticated");
  }
  REQUIRE(reviews->submit({1, 1000, req}));  // taken results free their places
  reviews.reset();                           // stops with a review in progress or waiting: no hang, no leak
}

TEST_CASE("token review: the HTTP/1.1 response reader", "[token_review]") {
  auto read_all = [](std::string_view raw, size_t step) -> Parsed<controller::HttpResponse> {
    HttpResponseReader r;
    for (size_t i = 0; i < raw.size(); i += step) {
      auto done = r.feed(raw.substr(i, step));
      if (!done) return invalid(done.error());
      if (*done) return r.take();
    }
    if (auto ok = r.end_of_stream(); !ok) return invalid(ok.error());
    return r.take();
  };
  SECTION("byte by byte, chunked with extensions and trailers") {
    auto r = must(read_all(chunked("{\"a\":1,\"b\":[1,2,3]}", 3), 1));
    CHECK(r.status == 201);
    CHECK(r.reason == "Created");
    CHECK(r.body == "{\"a\":1,\"b\":[1,2,3]}");
    CHECK(*r.header("content-type") == "application/json");
  }
  SECTION("bytes after a complete response are ignored") {
    auto r = must(read_all("HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nokGARBAGE", 4));
    CHECK(r.body == "ok");
  }
  SECTION("no body for 204") {
    CHECK(must(read_all("HTTP/1.1 204 No Content\r\nContent-Length: 5\r\n\r\n", 64)).body.empty());
  }
  SECTION("malformed") {
    for (const std::string& bad :
         std::vector<std::string>{"SSH-2.0-OpenSSH_9.2\r\n", "HTTP/1.1 2000 OK\r\n\r\n", "HTTP/2 200\r\n\r\n",
                                  "HTTP/1.1 200 OK\r\nBad Header: x\r\n\r\n", "HTTP/1.1 200 OK\r\n folded\r\n\r\n",
                                  "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\nabc",
                                  "HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n",
                                  "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
                                  "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nabX\r\n0\r\n\r\n",
                                  "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n" + std::string(2000, '1'),
                                  "HTTP/1.1 101 Switching Protocols\r\n\r\n",
                                  "HTTP/1.1 200 OK\r\nX: a\x01"
                                  "b\r\n\r\n"}) {
      INFO(bad);
      CHECK_FALSE(read_all(bad, 7));
    }
  }
  SECTION("random bytes never crash it and stay within bounds") {
    std::mt19937 rng(7);
    const std::string seed = chunked("{\"status\":{}}", 4);
    for (int i = 0; i < 3000; ++i) {
      std::string s = seed;
      for (int k = 0; k < 4; ++k) s[rng() % s.size()] = static_cast<char>(rng());
      auto r = read_all(s, 1 + rng() % 16);
      if (r) CHECK(r->body.size() <= (1u << 20));
    }
  }
}

TEST_CASE("token review: answers parsed alone", "[token_review]") {
  const std::vector<std::string> none;
  CHECK(must(controller::identity_from_token_review(review(true, "system:serviceaccount:kube-system:coredns"),
                                                    "mesh.test", none)) ==
        "spiffe://mesh.test/ns/kube-system/sa/coredns");
  auto refused = [&](const std::string& json, std::string_view why) {
    auto r = controller::identity_from_token_review(json, "mesh.test", none);
    REQUIRE_FALSE(r);
    CHECK(contains(r.error(), why));
  };
  refused("[]", "the answer has no status object");
  refused("{\"status\":\"Failure\"}", "the answer has no status object");
  refused("{\"status\":{\"authenticated\":\"true\",\"user\":{\"username\":\"system:serviceaccount:a:b\"}}}",
          "not authenticated");
  refused("{\"status\":{\"authenticated\":true}}", "names no user");
  refused("{\"status\":{\"authenticated\":true,\"user\":{\"username\":7}}}", "names no user");
  refused("{\"status\":{\"authenticated\":true,\"authenticated\":true}}", "not JSON");
  CHECK(controller::token_review_body("t\"x", {"a"}) ==
        R"({"apiVersion":"authentication.k8s.io/v1","kind":"TokenReview","spec":{"token":"t\"x","audiences":["a"]}})");
}
