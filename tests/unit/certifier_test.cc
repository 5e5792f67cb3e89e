// The controller's CA: what a Certify is granted on (a join token for the
// identity, or the current certificate with a signed renewal), what it is
// refused for and why; join tokens; the renewal schedule.
#include <catch2/catch.hpp>

#include <stdlib.h>
#include <unistd.h>

#include <fstream>
#include <string>

#include "base/secret.h"
#include "controller/certifier.h"
#include "identity/cert.h"
#include "identity/csr.h"
#include "identity/join_token.h"
#include "identity/pem.h"
#include "identity/proof.h"
#include "identity/renewal.h"

using namespace meshd;

namespace {

template <class T>
T must(Parsed<T> p) {
  INFO((p.has_value() ? std::string() : p.error()));
  REQUIRE(p.has_value());
  return std::move(*p);
}

const std::string kTokenKey(64, 'a');  // 32 bytes in hex
const std::string kWeb = "spiffe://mesh.test/host/web";

// An identity directory as `meshd-ctl identity init` writes it.
struct CaDir {
  std::string dir;
  uint64_t now = static_cast<uint64_t>(time(nullptr));
  CaDir() {
    char tmpl[] = "/tmp/meshd-ca-XXXXXX";
    dir = mkdtemp(tmpl);
    auto root_key = must(identity::PrivateKey::generate());
    std::string root = must(identity::make_ca(root_key, "root", now - 60, now + 86400 * 365, nullptr, -1));
    identity::Issuer r{root, std::move(root_key)};
    auto issuer_key = must(identity::PrivateKey::generate());
    std::string issuer = must(identity::make_ca(issuer_key, "issuer", now - 60, now + 86400 * 30, &r, 0));
    write("ca.crt", identity::pem_encode("CERTIFICATE", root));
    write("issuer.crt", identity::pem_encode("CERTIFICATE", issuer));
    write("issuer.key", issuer_key.pem());
    write("token.key", kTokenKey + "\n");
    anchors = {root};
  }
  ~CaDir() {
    for (const char* f : {"ca.crt", "issuer.crt", "issuer.key", "token.key"}) unlink((dir + "/" + f).c_str());
    rmdir(dir.c_str());
  }
  void write(const std::string& name, const std::string& text) const { std::ofstream(dir + "/" + name) << text; }
  std::vector<std::string> anchors;
};

std::string token_for(const std::string& id, uint32_t uses = 1, uint64_t ttl = 3600) {
  auto key = *hex_decode(kTokenKey);
  return must(identity::mint_join_token(key, {id, ttl, uses}, static_cast<uint64_t>(time(nullptr))));
}

proto::Certify request(const identity::PrivateKey& key, const std::string& id) {
  proto::Certify c;
  c.set_identity(id);
  c.set_csr_der(must(identity::make_csr(key, id)));
  return c;
}

}  // namespace

TEST_CASE("certifier: a join token for the identity gets a leaf that chains to the anchors", "[certifier]") {
  CaDir ca;
  controller::Stats stats;
  auto cert = must(controller::Certifier::load({ca.dir, "mesh.test", 600}, &stats));
  auto key = must(identity::PrivateKey::generate());
  auto req = request(key, kWeb);
  req.set_join_token(token_for(kWeb));
  auto got = must(cert->certify(req, ca.now));
  REQUIRE(got.chain_der_size() == 1);
  std::vector<std::string> chain(got.chain_der().begin(), got.chain_der().end());
  auto leaf = must(identity::verify_chain(got.leaf_der(), chain, ca.anchors, ca.now));
  CHECK(leaf.identity == kWeb);
  CHECK(leaf.public_key_der == key.public_der());
  CHECK(leaf.not_after_unix_s == ca.now + 600);
  CHECK(leaf.not_before_unix_s == ca.now - controller::Certifier::kBackdateS);
  CHECK(got.not_after_unix_ms() == (ca.now + 600) * 1000);
  CHECK(stats.certificates_issued.get() == 1);

  SECTION("a one-use token is spent") {
    auto again = request(key, kWeb);
    again.set_join_token(req.join_token());
    auto refused = cert->certify(again, ca.now);
    REQUIRE_FALSE(refused);
    CHECK(refused.error().find("used up") != std::string::npos);
    CHECK(stats.certify_refused[static_cast<int>(controller::CertifyRefusal::kBadToken)].get() == 1);
  }
  SECTION("renewal with the current certificate and a proof from its key") {
    auto next_key = must(identity::PrivateKey::generate());
    auto renew = request(next_key, kWeb);
    renew.mutable_renewal()->add_chain_der(got.leaf_der());
    renew.mutable_renewal()->add_chain_der(got.chain_der(0));
    renew.mutable_renewal()->set_signature(must(identity::sign_renewal(key, renew.csr_der())));
    auto renewed = must(cert->certify(renew, ca.now + 300));
    auto info = must(identity::parse_cert(renewed.leaf_der()));
    CHECK(info.public_key_der == next_key.public_der());

    SECTION("but not a proof signed by another key") {
      renew.mutable_renewal()->set_signature(must(identity::sign_renewal(next_key, renew.csr_der())));
      auto r = cert->certify(renew, ca.now + 300);
      REQUIRE_FALSE(r);
      CHECK(r.error().find("does not verify") != std::string::npos);
    }
    SECTION("nor once the current certificate expired") {
      auto r = cert->certify(renew, ca.now + 601);
      REQUIRE_FALSE(r);
      CHECK(r.error().find("current certificate") != std::string::npos);
    }
    SECTION("nor for another identity") {
      auto other_key = must(identity::PrivateKey::generate());
      auto other = request(other_key, "spiffe://mesh.test/host/db");
      *other.mutable_renewal() = renew.renewal();
      other.mutable_renewal()->set_signature(must(identity::sign_renewal(key, other.csr_der())));
      auto r = cert->certify(other, ca.now + 300);
      REQUIRE_FALSE(r);
      CHECK(r.error().find("credential is for " + kWeb) != std::string::npos);
    }
  }
}

TEST_CASE("certifier: refusals name the reason", "[certifier]") {
  CaDir ca;
  controller::Stats stats;
  auto cert = must(controller::Certifier::load({ca.dir, "mesh.test", 600}, &stats));
  auto key = must(identity::PrivateKey::generate());
  auto reason_of = [&](const proto::Certify& r) {
    auto got = cert->certify(r, ca.now);
    REQUIRE_FALSE(got);
    return got.error();
  };
  SECTION("a token for another identity") {
    auto req = request(key, kWeb);
    req.set_join_token(token_for("spiffe://mesh.test/host/db"));
    CHECK(reason_of(req).find("the credential is for spiffe://mesh.test/host/db") != std::string::npos);
  }
  SECTION("no credential") { CHECK(reason_of(request(key, kWeb)).find("needs a credential") != std::string::npos); }
  SECTION("a token minted with another key") {
    auto req = request(key, kWeb);
    req.set_join_token(must(identity::mint_join_token(std::string(32, 'z'), {kWeb, 60, 1}, ca.now)));
    CHECK(reason_of(req).find("not minted with this mesh's token key") != std::string::npos);
  }
  SECTION("a CSR naming another identity than the request") {
    auto req = request(key, kWeb);
    req.set_identity("spiffe://mesh.test/host/db");
    req.set_join_token(token_for("spiffe://mesh.test/host/db"));
    CHECK(reason_of(req).find("CSR names " + kWeb) != std::string::npos);
  }
  SECTION("another trust domain") {
    auto req = request(key, "spiffe://other.test/host/web");
    req.set_join_token(token_for("spiffe://other.test/host/web"));
    CHECK(reason_of(req).find("outside this mesh's trust domain") != std::string::npos);
  }
  SECTION("garbage CSR") {
    proto::Certify req;
    req.set_identity(kWeb);
    req.set_csr_der("not a csr");
    req.set_join_token(token_for(kWeb));
    CHECK(reason_of(req).find("CSR refused") != std::string::npos);
  }
  SECTION("a pod token without a TokenReview") {
    auto req = request(key, kWeb);
    req.set_k8s_token("eyJ...");
    CHECK(reason_of(req).find("no TokenReview") != std::string::npos);
  }
}

TEST_CASE("certifier: a bad identity directory is refused at load", "[certifier]") {
  CaDir ca;
  controller::Stats stats;
  CHECK_FALSE(controller::Certifier::load({ca.dir, "Not A Domain!", 600}, &stats));
  CHECK_FALSE(controller::Certifier::load({ca.dir, "mesh.test", 1}, &stats));
  SECTION("an issuer key that is not the issuer's") {
    ca.write("issuer.key", must(identity::PrivateKey::generate()).pem());
    auto r = controller::Certifier::load({ca.dir, "mesh.test", 600}, &stats);
    REQUIRE_FALSE(r);
    CHECK(r.error().find("is not the key of") != std::string::npos);
  }
  SECTION("an issuer from another root") {
    auto other = must(identity::PrivateKey::generate());
    ca.write("ca.crt", identity::pem_encode("CERTIFICATE", must(identity::make_ca(other, "other", ca.now - 60,
                                                                                  ca.now + 3600, nullptr, -1))));
    auto r = controller::Certifier::load({ca.dir, "mesh.test", 600}, &stats);
    REQUIRE_FALSE(r);
    CHECK(r.error().find("does not verify against") != std::string::npos);
  }
  SECTION("a short token key") {
    ca.write("token.key", "abcd");
    auto r = controller::Certifier::load({ca.dir, "mesh.test", 600}, &stats);
    REQUIRE_FALSE(r);
    CHECK(r.error().find("token key") != std::string::npos);
  }
}

TEST_CASE("join tokens: sealed, single purpose, expiring", "[certifier]") {
  std::string key(32, 'k');
  std::string t = must(identity::mint_join_token(key, {kWeb, 60, 1}, 1000));
  CHECK(t.starts_with("mjt1."));
  auto ok = must(identity::verify_join_token(key, t + "\n", 1059));
  CHECK(ok.identity() == kWeb);
  CHECK(ok.uses() == 1);
  CHECK(identity::verify_join_token(key, t, 1060).error().find("expired") != std::string::npos);
  CHECK_FALSE(identity::verify_join_token(std::string(32, 'x'), t, 1000));
  std::string tampered = t;
  tampered[10] = tampered[10] == 'a' ? 'b' : 'a';
  CHECK_FALSE(identity::verify_join_token(key, tampered, 1000));
  CHECK_FALSE(identity::verify_join_token(key, "mjt1.zz.zz", 1000));
  CHECK_FALSE(identity::verify_join_token(key, "", 1000));
  CHECK_FALSE(identity::verify_join_token(key, std::string(5000, 'a'), 1000));
  CHECK_FALSE(identity::mint_join_token(key, {"not-spiffe", 60, 1}, 1000));
  CHECK_FALSE(identity::mint_join_token(key, {kWeb, 0, 1}, 1000));
  CHECK_FALSE(identity::mint_join_token("short", {kWeb, 60, 1}, 1000));
}

TEST_CASE("renewal schedule: 70% of the life with jitter, backoff never past expiry", "[certifier]") {
  identity::RenewalSchedule s;
  // 100 s certificate at t=0: renew between 60 and 80 s.
  CHECK(s.on_success(0, 100'000, 0.0) == 60'000);
  CHECK(s.on_success(0, 100'000, 0.5) == 70'000);
  CHECK(s.on_success(0, 100'000, 0.999999) >= 79'999);
  // Failures back off 1 s, 2 s, 4 s ... 60 s (full jitter: u scales it).
  identity::RenewalSchedule f;
  CHECK(f.on_failure(0, 0, 1.0) == 1000);
  CHECK(f.on_failure(0, 0, 1.0) == 2000);
  CHECK(f.on_failure(0, 0, 1.0) == 4000);
  for (int i = 0; i < 10; ++i) f.on_failure(0, 0, 1.0);
  CHECK(f.on_failure(0, 0, 1.0) == 60'000);
  CHECK(f.on_failure(0, 0, 0.0) == identity::RenewalSchedule::kFloorMs);
  // Held certificate expiring in 5 s: the next try comes before that.
  CHECK(f.on_failure(10'000, 15'000, 1.0) == 15'000 - identity::RenewalSchedule::kFloorMs);
  // A success resets the backoff.
  f.on_success(0, 100'000, 0.5);
  CHECK(f.on_failure(0, 0, 1.0) == 1000);
}

TEST_CASE("secrets: hex, raw, and too short", "[certifier]") {
  CHECK(*secret_from_text("  " + std::string(64, 'a') + "\n", "k", "x", 32) == std::string(32, '\xaa'));
  CHECK(*secret_from_text(std::string(40, 'q'), "k", "x", 32) == std::string(40, 'q'));
  auto short_key = secret_from_text("abcd", "token key", "file t", 32);
  REQUIRE_FALSE(short_key);
  CHECK(short_key.error() ==
        "token key file t holds 2 bytes (hex); at least 32 are needed (e.g. openssl rand -hex 32 > FILE)");
  CHECK(hex_encode("\x01\xfe") == "01fe");
  CHECK_FALSE(hex_decode("0g"));
  CHECK_FALSE(hex_decode("abc"));
}
