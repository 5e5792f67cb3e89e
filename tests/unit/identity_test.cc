// The identity primitives: SPIFFE IDs, PEM, keys, CSRs, issuance and chain
// verification. Time is always passed in, so expiry is tested with a fake
// clock; keys are P-256 (about 50 µs each), so the file stays fast.
#include <wolfssl/options.h>
// wolfSSL's options must come first.
#include <wolfssl/wolfcrypt/asn_public.h>
#include <wolfssl/wolfcrypt/random.h>
#include <wolfssl/wolfcrypt/rsa.h>

#include <sys/stat.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <fstream>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

#include "ctl/identity.h"

#include "identity/cert.h"
#include "identity/csr.h"
#include "identity/der.h"
#include "identity/key.h"
#include "identity/key_access.h"
#include "identity/pem.h"
#include "identity/spiffe.h"

using namespace meshd::identity;

namespace {

constexpr uint64_t kNow = 1767225600;  // 2026-01-01T00:00:00Z
constexpr uint64_t kDay = 86400;
const std::string kWeb = "spiffe://mesh.test/ns/prod/sa/web";

PrivateKey new_key() {
  auto k = PrivateKey::generate();
  REQUIRE(k);
  return std::move(*k);
}

struct Pki {
  Issuer root;
  Issuer issuer;
};

Pki make_pki(std::string_view name = "mesh root") {
  PrivateKey root_key = new_key();
  auto root = make_ca(root_key, name, kNow - kDay, kNow + 3650 * kDay, nullptr, -1);
  REQUIRE(root);
  Pki p{Issuer{*root, std::move(root_key)}, Issuer{"", new_key()}};
  auto issuer = make_ca(p.issuer.key, "mesh issuer", kNow - kDay, kNow + 365 * kDay, &p.root, 0);
  REQUIRE(issuer);
  p.issuer.cert_der = *issuer;
  return p;
}

CsrInfo csr_for(const PrivateKey& key, const std::string& id) {
  auto csr = make_csr(key, id);
  REQUIRE(csr);
  auto info = check_csr(*csr);
  REQUIRE(info);
  return *info;
}

struct CertFree {
  void operator()(Cert* c) const { wc_CertFree(c); }
};

// A CSR with arbitrary GeneralNames, for what make_csr refuses to make.
std::string raw_csr(const std::string& general_names, int key_type, void* key) {
  std::unique_ptr<Cert, CertFree> r(wc_CertNew(nullptr));
  REQUIRE(r);
  r->sigType = key_type == ECC_TYPE ? CTC_SHA256wECDSA : CTC_SHA256wRSA;
  memcpy(r->altNames, general_names.data(), general_names.size());
  r->altNamesSz = static_cast<int>(general_names.size());
  std::string out(2048, '\0');
  auto* buf = reinterpret_cast<byte*>(out.data());
  REQUIRE(wc_MakeCertReq_ex(r.get(), buf, 2048, key_type, key) > 0);
  WC_RNG rng;
  REQUIRE(wc_InitRng(&rng) == 0);
  int n = wc_SignCert_ex(r->bodySz, r->sigType, buf, 2048, key_type, key, &rng);
  wc_FreeRng(&rng);
  REQUIRE(n > 0);
  out.resize(static_cast<size_t>(n));
  return out;
}

std::string uri(std::string_view u) { return meshd::identity::der::tlv(0x86, u); }
std::string names(const std::string& inner) { return meshd::identity::der::tlv(0x30, inner); }

}  // namespace

TEST_CASE("identity: check_identity table", "[identity]") {
  struct Row {
    std::string id;
    bool ok;
  };
  const Row rows[] = {
      {"spiffe://mesh.test/ns/prod/sa/web", true},
      {"spiffe://mesh.test/host/node-1", true},
      {"spiffe://mesh.test/controller", true},
      {"spiffe://a_b-c.d/x.y_Z-9", true},
      {"spiffe://mesh.test", false},              // no path
      {"spiffe://mesh.test/", false},             // empty segment
      {"spiffe://mesh.test/a//b", false},         // empty segment
      {"spiffe://mesh.test/a/", false},           // trailing slash
      {"spiffe://mesh.test/./a", false},          // dot segment
      {"spiffe://mesh.test/a/..", false},         // dot-dot segment
      {"spiffe://Mesh.test/a", false},            // uppercase trust domain
      {"spiffe:///a", false},                     // empty trust domain
      {"spiffe://mesh.test:443/a", false},        // port
      {"spiffe://user@mesh.test/a", false},       // userinfo
      {"spiffe://mesh.test/a?x=1", false},        // query
      {"spiffe://mesh.test/a#f", false},          // fragment
      {"spiffe://mesh.test/a b", false},          // space
      {"spiffe://mesh.test/caf\xc3\xa9", false},  // non-ASCII
      {"SPIFFE://mesh.test/a", false},
      {"https://mesh.test/a", false},
      {"", false},
      {"spiffe://mesh.test/" + std::string(181, 'a'), true},   // exactly 200 bytes
      {"spiffe://mesh.test/" + std::string(182, 'a'), false},  // 201 bytes
  };
  for (const Row& r : rows) {
    INFO(r.id);
    auto ok = check_identity(r.id);
    CHECK(ok.has_value() == r.ok);
    if (!ok) CHECK(!ok.error().empty());
  }
  CHECK(check_trust_domain("mesh.test"));
  CHECK(!check_trust_domain(""));
  CHECK(!check_trust_domain(std::string(256, 'a')));
  CHECK(check_trust_domain(std::string(255, 'a')));
  CHECK(!check_trust_domain("mesh/test"));
}

TEST_CASE("identity: builders and trust_domain_of", "[identity]") {
  CHECK(host_identity("mesh.test", "node-1") == "spiffe://mesh.test/host/node-1");
  CHECK(pod_identity("mesh.test", "prod", "web") == "spiffe://mesh.test/ns/prod/sa/web");
  CHECK(controller_identity("mesh.test") == "spiffe://mesh.test/controller");
  CHECK(trust_domain_of("spiffe://mesh.test/ns/x") == "mesh.test");
  CHECK(trust_domain_of("spiffe://mesh.test") == "mesh.test");
  CHECK(trust_domain_of("https://x/y").empty());
  CHECK(check_identity(pod_identity("mesh.test", "prod", "web")));
}

TEST_CASE("identity: pem encode and decode_all edge cases", "[identity]") {
  const std::string a("\x30\x03\x02\x01\x05", 5), b(100, '\xab'), c("x");
  std::string pa = pem_encode("CERTIFICATE", a);
  CHECK(pa == "-----BEGIN CERTIFICATE-----\nMAMCAQU=\n-----END CERTIFICATE-----\n");
  std::string pb = pem_encode("CERTIFICATE", b);
  CHECK(pb.find('\n', 28) - 28 == 64);  // 64-column lines
  // Several blocks, other labels and text around them: ours, in order.
  std::string text = "junk\n" + pa + pem_encode("EC PRIVATE KEY", c) + "between\r\n" + pb + "trailer";
  auto all = pem_decode_all(text, "CERTIFICATE");
  REQUIRE(all);
  REQUIRE(all->size() == 2);
  CHECK((*all)[0] == a);
  CHECK((*all)[1] == b);
  auto keys = pem_decode_all(text, "EC PRIVATE KEY");
  REQUIRE(keys);
  CHECK(keys->size() == 1);
  CHECK((*keys)[0] == c);
  // CRLF line ends decode the same.
  std::string crlf;
  for (char ch : pb) crlf += ch == '\n' ? std::string("\r\n") : std::string(1, ch);
  auto viacrlf = pem_decode_all(crlf, "CERTIFICATE");
  REQUIRE(viacrlf);
  CHECK((*viacrlf)[0] == b);
  // Every length mod 3 round-trips.
  for (size_t n = 1; n < 8; ++n) {
    std::string d(n, '\x7f');
    auto back = pem_decode_all(pem_encode("X", d), "X");
    REQUIRE(back);
    CHECK((*back)[0] == d);
  }

  auto none = pem_decode_all("nothing here", "CERTIFICATE");
  REQUIRE(!none);
  CHECK(none.error().find("CERTIFICATE") != std::string::npos);
  CHECK(!pem_decode_all(pa, "CERT"));                                                // a label is matched whole
  CHECK(!pem_decode_all("-----BEGIN CERTIFICATE-----\nMAMCAQU=\n", "CERTIFICATE"));  // no END
  CHECK(!pem_decode_all("-----BEGIN CERTIFICATE-----\nMAM*AQU=\n-----END CERTIFICATE-----\n", "CERTIFICATE"));
  CHECK(!pem_decode_all("-----BEGIN CERTIFICATE-----\nMAMCAQ\n-----END CERTIFICATE-----\n", "CERTIFICATE"));
  CHECK(!pem_decode_all("-----BEGIN CERTIFICATE-----\nMA==MAMC\n-----END CERTIFICATE-----\n", "CERTIFICATE"));
  CHECK(!pem_decode_all("-----BEGIN CERTIFICATE-----\n\n-----END CERTIFICATE-----\n", "CERTIFICATE"));
  // A block cut short by the next one is an error, not a merged block.
  auto cut = pem_decode_all("-----BEGIN CERTIFICATE-----\nMAMC\n" + pa, "CERTIFICATE");
  REQUIRE(!cut);
  CHECK(cut.error().find("CERTIFICATE") != std::string::npos);
}

TEST_CASE("identity: private key round-trips through DER and PEM", "[identity]") {
  PrivateKey k = new_key();
  const std::string der = k.der();
  REQUIRE(der.size() > 100);
  auto back = PrivateKey::from_der(der);
  REQUIRE(back);
  CHECK(back->der() == der);
  CHECK(back->public_der() == k.public_der());
  CHECK(k.public_der().size() == 91);  // P-256 SubjectPublicKeyInfo

  const std::string pem = k.pem();
  CHECK(pem.starts_with("-----BEGIN EC PRIVATE KEY-----\n"));
  auto fromp = PrivateKey::from_pem("comment\n" + pem);
  REQUIRE(fromp);
  CHECK(fromp->der() == der);

  PrivateKey other = new_key();
  CHECK(other.public_der() != k.public_der());
  PrivateKey moved = std::move(other);
  CHECK(!moved.der().empty());

  CHECK(!PrivateKey::from_der(""));
  CHECK(!PrivateKey::from_der("garbage bytes, not a key"));
  std::string flipped = der;
  flipped[10] ^= 0x01;  // inside the private scalar: no longer matches the public key
  CHECK(!PrivateKey::from_der(flipped));
  auto nopem = PrivateKey::from_pem(pem_encode("CERTIFICATE", "x"));
  REQUIRE(!nopem);
  CHECK(nopem.error().find("EC PRIVATE KEY") != std::string::npos);
}

TEST_CASE("identity: a good CSR is accepted with its identity and key", "[identity]") {
  PrivateKey k = new_key();
  auto csr = make_csr(k, kWeb);
  REQUIRE(csr);
  CHECK(csr->size() < 400);
  auto info = check_csr(*csr);
  REQUIRE(info);
  CHECK(info->identity == kWeb);
  CHECK(info->public_key_der == k.public_der());
  // A long identity needs long-form DER lengths.
  const std::string long_id = "spiffe://mesh.test/" + std::string(181, 'a');
  auto long_info = check_csr(*make_csr(k, long_id));
  REQUIRE(long_info);
  CHECK(long_info->identity == long_id);
  CHECK(!make_csr(k, "https://not.spiffe/x"));
}

TEST_CASE("identity: bad CSRs are refused with a reason", "[identity]") {
  PrivateKey k = new_key();
  ecc_key* ek = KeyAccess::raw(k);
  auto refused = [](const std::string& csr, std::string_view reason) {
    auto r = check_csr(csr);
    INFO(reason);
    REQUIRE(!r);
    INFO(r.error());
    CHECK(r.error().find(reason) != std::string::npos);
  };
  refused(raw_csr(names(uri(kWeb) + uri("spiffe://mesh.test/ns/prod/sa/db")), ECC_TYPE, ek), "exactly one URI");
  refused(raw_csr(names(uri(kWeb) + meshd::identity::der::tlv(0x82, "web.example")), ECC_TYPE, ek), "DNS");
  refused(raw_csr(names(uri(kWeb) + meshd::identity::der::tlv(0x87, std::string("\x0a\x00\x00\x01", 4))), ECC_TYPE, ek),
          "IP");
  refused(raw_csr(names(meshd::identity::der::tlv(0x81, "a@b.c") + uri(kWeb)), ECC_TYPE, ek), "email");
  refused(raw_csr(names(uri("https://mesh.test/web")), ECC_TYPE, ek), "spiffe://");
  refused(raw_csr(names(uri("spiffe://mesh.test/a/../b")), ECC_TYPE, ek), "'..'");

  auto good = make_csr(k, kWeb);
  REQUIRE(good);
  std::string tampered = *good;
  tampered.back() ^= 0x01;  // the last byte of the ECDSA signature
  refused(tampered, "signature");
  std::string body = *good;
  body[body.find("web")] = 'x';  // the identity itself: the signature no longer covers it
  refused(body, "signature");

  refused("", "empty");
  refused("garbage bytes that are no DER at all", "not parseable");
  refused(std::string(4097, '\x30'), "4096");
  refused(good->substr(0, good->size() - 5), "not parseable");

  SECTION("an RSA key") {
    RsaKey rsa;
    REQUIRE(wc_InitRsaKey(&rsa, nullptr) == 0);
    WC_RNG rng;
    REQUIRE(wc_InitRng(&rng) == 0);
    // 1024 bits keeps the test fast; the size does not matter to the check.
    REQUIRE(wc_MakeRsaKey(&rsa, 1024, WC_RSA_EXPONENT, &rng) == 0);
    wc_RsaSetRNG(&rsa, &rng);
    std::string csr = raw_csr(names(uri(kWeb)), RSA_TYPE, &rsa);
    refused(csr, "not EC P-256");
    wc_FreeRsaKey(&rsa);
    wc_FreeRng(&rng);
  }
}

TEST_CASE("identity: issue a leaf and verify root -> issuer -> leaf", "[identity]") {
  Pki p = make_pki();
  PrivateKey leaf_key = new_key();
  auto leaf = issue_leaf(p.issuer, csr_for(leaf_key, kWeb), kNow - 60, kNow + kDay);
  REQUIRE(leaf);
  CHECK(leaf->size() < 1024);

  auto ok = verify_chain(*leaf, {p.issuer.cert_der}, {p.root.cert_der}, kNow);
  INFO((ok ? "" : ok.error()));
  REQUIRE(ok);
  CHECK(ok->identity == kWeb);
  CHECK(ok->subject_cn.empty());
  CHECK(!ok->is_ca);
  CHECK(ok->public_key_der == leaf_key.public_der());
  CHECK(ok->serial_hex.size() == 32);
  CHECK(ok->not_before_unix_s == kNow - 60);
  CHECK(ok->not_after_unix_s == kNow + kDay);

  auto root = parse_cert(p.root.cert_der);
  REQUIRE(root);
  CHECK(root->is_ca);
  CHECK(root->subject_cn == "mesh root");
  CHECK(root->identity.empty());
  CHECK(root->public_key_der == p.root.key.public_der());

  // Serials are random.
  auto leaf2 = issue_leaf(p.issuer, csr_for(leaf_key, kWeb), kNow - 60, kNow + kDay);
  REQUIRE(leaf2);
  CHECK(parse_cert(*leaf2)->serial_hex != ok->serial_hex);

  // Without the intermediate there is no path to the anchor.
  auto no_inter = verify_chain(*leaf, {}, {p.root.cert_der}, kNow);
  REQUIRE(!no_inter);
  CHECK(no_inter.error().find("not signed by a trust anchor") != std::string::npos);
  // The issuer may also be the anchor itself.
  CHECK(verify_chain(*leaf, {}, {p.issuer.cert_der}, kNow));
  // Several anchors (a rotation): any one will do.
  Pki other = make_pki("other root");
  CHECK(verify_chain(*leaf, {p.issuer.cert_der}, {other.root.cert_der, p.root.cert_der}, kNow));
}

TEST_CASE("identity: another root, a forged intermediate and a non-CA signer are refused", "[identity]") {
  Pki p = make_pki();
  Pki evil = make_pki("mesh root");  // same name, different key
  PrivateKey k = new_key();
  auto leaf = issue_leaf(evil.issuer, csr_for(k, kWeb), kNow - 60, kNow + kDay);
  REQUIRE(leaf);
  auto r = verify_chain(*leaf, {evil.issuer.cert_der}, {p.root.cert_der}, kNow);
  REQUIRE(!r);
  CHECK(r.error().find("not signed by a trust anchor") != std::string::npos);
  // Expired and forged: the forgery is what gets reported.
  auto old_forged = issue_leaf(evil.issuer, csr_for(k, kWeb), kNow - 3 * kDay, kNow - 2 * kDay);
  REQUIRE(old_forged);
  auto r2 = verify_chain(*old_forged, {evil.issuer.cert_der}, {p.root.cert_der}, kNow);
  REQUIRE(!r2);
  CHECK(r2.error().find("not signed by a trust anchor") != std::string::npos);

  // A leaf used as an issuer: make_ca refuses it, and a hand-made
  // grandchild signed by it does not verify.
  auto leaf_cert = issue_leaf(p.issuer, csr_for(k, kWeb), kNow - 60, kNow + kDay);
  REQUIRE(leaf_cert);
  Issuer not_ca{*leaf_cert, std::move(k)};
  PrivateKey k2 = new_key();
  CHECK(!issue_leaf(not_ca, csr_for(k2, kWeb), kNow - 60, kNow + kDay));
  // The issuer has pathLen 0: a CA below it is refused.
  PrivateKey sub_key = new_key();
  auto sub = make_ca(sub_key, "sub ca", kNow - 60, kNow + kDay, &p.issuer, -1);
  REQUIRE(sub);
  Issuer sub_issuer{*sub, std::move(sub_key)};
  auto deep = issue_leaf(sub_issuer, csr_for(k2, kWeb), kNow - 60, kNow + kDay);
  REQUIRE(deep);
  CHECK(!verify_chain(*deep, {p.issuer.cert_der, *sub}, {p.root.cert_der}, kNow));
  // A mismatched issuer key is caught at issue time.
  Issuer wrong{p.issuer.cert_der, new_key()};
  auto mismatch = issue_leaf(wrong, csr_for(k2, kWeb), kNow - 60, kNow + kDay);
  REQUIRE(!mismatch);
  CHECK(mismatch.error().find("does not match") != std::string::npos);
}

TEST_CASE("identity: expiry and not-yet-valid use the given time, to the second", "[identity]") {
  Pki p = make_pki();
  PrivateKey k = new_key();
  auto leaf = issue_leaf(p.issuer, csr_for(k, kWeb), kNow - 60, kNow + 3600);
  REQUIRE(leaf);
  const std::vector<std::string> inter{p.issuer.cert_der}, anchors{p.root.cert_der};
  CHECK(verify_chain(*leaf, inter, anchors, kNow + 3600));
  auto expired = verify_chain(*leaf, inter, anchors, kNow + 3601);
  REQUIRE(!expired);
  CHECK(expired.error().find("expired at 2026-01-01T01:00:00Z") != std::string::npos);
  CHECK(verify_chain(*leaf, inter, anchors, kNow - 60));
  auto early = verify_chain(*leaf, inter, anchors, kNow - 61);
  REQUIRE(!early);
  CHECK(early.error().find("not valid before 2025-12-31T23:59:00Z") != std::string::npos);
  // An expired issuer fails the chain even for a current leaf.
  auto late = verify_chain(*leaf, inter, anchors, kNow + 400 * kDay);
  REQUIRE(!late);
  // An expired anchor is not an anchor.
  auto dead = verify_chain(*leaf, inter, anchors, kNow + 3651 * kDay);
  REQUIRE(!dead);
  CHECK(dead.error().find("trust anchor 1 expired") != std::string::npos);
}

TEST_CASE("identity: a fake clock far from the system clock still verifies", "[identity]") {
  // wolfSSL's own date checks follow the system clock; ours must win.
  constexpr uint64_t k2060 = 2840140800;  // 2060-01-01: GeneralizedTime
  PrivateKey root_key = new_key(), leaf_key = new_key();
  auto root = make_ca(root_key, "future root", k2060 - kDay, k2060 + 10 * kDay, nullptr, -1);
  REQUIRE(root);
  Issuer is{*root, std::move(root_key)};
  auto leaf = issue_leaf(is, csr_for(leaf_key, kWeb), k2060 - 1, k2060 + 7);
  REQUIRE(leaf);
  auto info = parse_cert(*leaf);
  REQUIRE(info);
  CHECK(info->not_before_unix_s == k2060 - 1);
  CHECK(info->not_after_unix_s == k2060 + 7);
  CHECK(verify_chain(*leaf, {}, {*root}, k2060));
  CHECK(!verify_chain(*leaf, {}, {*root}, k2060 + 8));
  CHECK(!verify_chain(*leaf, {}, {*root}, kNow));
}

TEST_CASE("identity: parse_cert and time helpers refuse bad input", "[identity]") {
  CHECK(!parse_cert(""));
  CHECK(!parse_cert("definitely not a certificate"));
  Pki p = make_pki();
  CHECK(!parse_cert(p.root.cert_der.substr(0, p.root.cert_der.size() - 1)));
  CHECK(!make_ca(p.root.key, "x", kNow, kNow, nullptr, -1));  // empty validity
  CHECK(!make_ca(p.root.key, "", kNow, kNow + 1, nullptr, -1));
  CHECK(format_time(0) == "1970-01-01T00:00:00Z");
  CHECK(format_time(kNow) == "2026-01-01T00:00:00Z");
  auto t = meshd::identity::der::encode_time(951782400);  // 2000-02-29 (leap day)
  REQUIRE(t);
  CHECK(*meshd::identity::der::decode_time(*t) == 951782400);
  CHECK(!meshd::identity::der::decode_time(meshd::identity::der::tlv(0x17, "990230000000Z")));  // Feb 30
}

namespace {

struct Ran {
  int rc;
  std::string out, err;
};

Ran run_identity_with(std::vector<std::string_view> args) {
  char *out_buf = nullptr, *err_buf = nullptr;
  size_t out_len = 0, err_len = 0;
  FILE* out = open_memstream(&out_buf, &out_len);
  FILE* err = open_memstream(&err_buf, &err_len);
  int rc = meshd::ctl::run_identity(args, meshd::ctl::Io{out, err});
  fclose(out);
  fclose(err);
  Ran r{rc, std::string(out_buf, out_len), std::string(err_buf, err_len)};
  free(out_buf);
  free(err_buf);
  return r;
}

std::string slurp(const std::string& path) {
  std::ifstream f(path);
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

mode_t mode_of(const std::string& path) {
  struct stat st;
  REQUIRE(stat(path.c_str(), &st) == 0);
  return st.st_mode & 0777;
}

}  // namespace

TEST_CASE("identity: meshd-ctl identity init writes a CA that verifies, and keeps it", "[identity][ctl]") {
  char tmpl[] = "/tmp/meshd-identity-test-XXXXXX";
  const std::string base = mkdtemp(tmpl);
  const std::string dir = base + "/pki";
  auto r = run_identity_with({"init", "--trust-domain", "mesh.test", "--dir", dir, "--issuer-ttl", "2h"});
  INFO(r.err);
  REQUIRE(r.rc == 0);
  CHECK(r.out.find("fingerprint") != std::string::npos);
  CHECK(mode_of(dir) == 0700);
  CHECK(mode_of(dir + "/issuer.key") == 0600);
  CHECK(mode_of(dir + "/token.key") == 0600);
  const std::string token = slurp(dir + "/token.key");
  CHECK(token.size() == 65);

  auto anchors = pem_decode_all(slurp(dir + "/ca.crt"), "CERTIFICATE");
  auto issuer_cert = pem_decode_all(slurp(dir + "/issuer.crt"), "CERTIFICATE");
  auto issuer_key = PrivateKey::from_pem(slurp(dir + "/issuer.key"));
  REQUIRE(anchors);
  REQUIRE(issuer_cert);
  REQUIRE(issuer_key);
  const uint64_t now = static_cast<uint64_t>(time(nullptr));
  auto info = verify_chain(issuer_cert->front(), {}, *anchors, now);
  REQUIRE(info);
  CHECK(info->is_ca);
  CHECK(info->not_after_unix_s - now <= 2 * 3600);
  // The files work as an issuer.
  Issuer issuer{issuer_cert->front(), std::move(*issuer_key)};
  PrivateKey k = new_key();
  auto leaf = issue_leaf(issuer, csr_for(k, kWeb), now - 60, now + 600);
  REQUIRE(leaf);
  CHECK(verify_chain(*leaf, {issuer.cert_der}, *anchors, now));

  // Nothing is overwritten without --force.
  auto again = run_identity_with({"init", "--trust-domain", "mesh.test", "--dir", dir});
  CHECK(again.rc == 1);
  CHECK(again.err.find("--force") != std::string::npos);
  CHECK(slurp(dir + "/token.key") == token);
  auto forced = run_identity_with({"init", "--trust-domain", "mesh.test", "--dir", dir, "--force"});
  CHECK(forced.rc == 0);
  CHECK(slurp(dir + "/token.key") != token);

  auto inspect = run_identity_with({"inspect", dir + "/issuer.crt"});
  CHECK(inspect.rc == 0);
  CHECK(inspect.out.find("meshd issuer mesh.test") != std::string::npos);
  CHECK(run_identity_with({"init", "--dir", dir}).rc == 2);
  CHECK(run_identity_with({"init", "--trust-domain", "mesh.test", "--dir", dir, "--ca-cert", "x"}).rc == 2);
  for (const char* f : {"ca.crt", "issuer.crt", "issuer.key", "token.key"}) unlink((dir + "/" + f).c_str());
  rmdir(dir.c_str());
  rmdir(base.c_str());
}
