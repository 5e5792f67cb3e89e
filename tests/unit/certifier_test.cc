// The controller's CA: what a Certify is granted on (a join token for the
// identity, or the current certificate with a signed renewal), what it is
// refused for and why; join tokens, their revocation and their uses counted
// across replicas; the renewal schedule.
#include <catch2/catch.hpp>

#include <stdlib.h>
#include <unistd.h>

#include <cstdio>
#include <fstream>
#include <string>
#include <vector>

#include "base/secret.h"
#include "controller/certifier.h"
#include "controller/controller.h"
#include "controller/own_certificate.h"
#include "controller/token_marks.h"
#include "identity/cert.h"
#include "identity/csr.h"
#include "identity/join_token.h"
#include "identity/pem.h"
#include "identity/proof.h"
#include "identity/renewal.h"
#include "tests/unit/must.h"
#include "tests/unit/test_ca.h"

using namespace meshd;
using meshd::test::CaDir;
using meshd::test::kTokenKey;
using meshd::test::must;

namespace {

const std::string kWeb = "spiffe://mesh.test/host/web";

// A controller replica: its registry (in a data directory of its own) is
// where the certifier keeps join tokens' revocations and uses. What it
// writes is kept in `sent`, as gossip would carry it to the other replicas.
struct Replica {
  std::string dir;
  controller::Stats stats;
  controller::Controller ctl{&stats};
  std::unique_ptr<controller::Certifier> cert;
  std::vector<proto::Entry> sent;
  explicit Replica(const std::string& ca_dir, uint64_t now_ms = static_cast<uint64_t>(time(nullptr)) * 1000) {
    char tmpl[] = "/tmp/meshd-replica-XXXXXX";
    dir = mkdtemp(tmpl);
    REQUIRE(ctl.start({dir, ""}, now_ms));
    ctl.set_on_change([this](const std::vector<proto::Entry>& w) { sent.insert(sent.end(), w.begin(), w.end()); });
    cert = must(controller::Certifier::load({ca_dir, "mesh.test", 600}, &stats));
    cert->set_ledger(&ctl);
  }
  ~Replica() {
    std::remove((dir + "/registry.log").c_str());
    std::remove((dir + "/registry.log.new").c_str());
    rmdir(dir.c_str());
  }
  // Hands what this replica wrote to another, through its merge path (as
  // gossip does).
  void gossip_to(Replica& other, uint64_t now_ms) {
    auto batch = std::move(sent);
    sent.clear();
    REQUIRE(other.ctl.apply(batch, now_ms));
  }
  uint64_t refused(controller::CertifyRefusal r) const { return stats.certify_refused[static_cast<int>(r)].get(); }
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
  Replica replica(ca.dir);
  auto& stats = replica.stats;
  auto& cert = replica.cert;
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
    CHECK(refused.error().find("has been used up (1 of 1 certificates granted)") != std::string::npos);
    CHECK(stats.certify_refused[static_cast<int>(controller::CertifyRefusal::kTokenUsedUp)].get() == 1);
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
  Replica replica(ca.dir);
  auto& cert = replica.cert;
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

TEST_CASE("join tokens: only the token key revokes, and only what can still be used", "[certifier]") {
  std::string key(32, 'k');
  auto r = identity::seal_revocation(key, "0a1b2c3d4e5f6071", 5000);
  CHECK(identity::verify_revocation(key, r, 1000));
  SECTION("another key") {
    auto other = identity::seal_revocation(std::string(32, 'x'), "0a1b2c3d4e5f6071", 5000);
    CHECK(identity::verify_revocation(key, other, 1000).error().find("not signed with this mesh's token key") !=
          std::string::npos);
  }
  SECTION("tampered: another token, a longer life, a cut MAC") {
    auto t = r;
    t.set_token_id("0a1b2c3d4e5f6072");
    CHECK(identity::verify_revocation(key, t, 1000).error().find("not signed") != std::string::npos);
    t = r;
    t.set_expires_unix_s(5001);
    CHECK(identity::verify_revocation(key, t, 1000).error().find("not signed") != std::string::npos);
    t = r;
    t.set_mac(r.mac().substr(0, 31));
    CHECK(identity::verify_revocation(key, t, 1000).error().find("not signed") != std::string::npos);
    t.clear_mac();
    CHECK_FALSE(identity::verify_revocation(key, t, 1000));
  }
  SECTION("expired: the token can no longer be used anyway") {
    CHECK(identity::verify_revocation(key, r, 5000).error() ==
          "join token 0a1b2c3d4e5f6071 has expired already: there is nothing to revoke");
  }
  SECTION("a revocation that would outlast any token") {
    auto far = identity::seal_revocation(key, "0a1b", 1000 + identity::kMaxTokenTtlS + 2 * 86400);
    CHECK(identity::verify_revocation(key, far, 1000).error().find("366 days") != std::string::npos);
  }
  SECTION("ids are what mint_join_token makes") {
    for (const char* id : {"", "0A1B", "0a1b:00", "revoked:0a", "g0"}) {
      INFO(id);
      CHECK(
          identity::verify_revocation(key, identity::seal_revocation(key, id, 5000), 1000).error().find("malformed") !=
          std::string::npos);
    }
    CHECK_FALSE(identity::valid_token_id(std::string(65, 'a')));
    CHECK(identity::valid_token_id(std::string(64, 'a')));
    proto::JoinToken minted;
    auto t = must(identity::mint_join_token(key, {kWeb, 60, 1}, 1000, &minted));
    CHECK(identity::valid_token_id(minted.id()));
    CHECK(must(identity::verify_join_token(key, t, 1000)).id() == minted.id());
  }
}

TEST_CASE("certifier: a revoked token is refused by every replica that heard, also after a restart", "[certifier]") {
  CaDir ca;
  const uint64_t now_ms = ca.now * 1000;
  Replica a(ca.dir), b(ca.dir);
  auto key = must(identity::PrivateKey::generate());
  auto keyed = hex_decode(kTokenKey).value();
  proto::JoinToken minted;
  std::string token = must(identity::mint_join_token(keyed, {kWeb, 3600, 0}, ca.now, &minted));
  auto req = request(key, kWeb);
  req.set_join_token(token);
  REQUIRE(a.cert->certify(req, ca.now));  // any number of uses, until revoked

  SECTION("a revocation not sealed with the token key changes nothing") {
    auto forged = identity::seal_revocation(std::string(32, 'z'), minted.id(), minted.expires_unix_s());
    auto r = a.cert->revoke(forged, now_ms);
    REQUIRE_FALSE(r);
    CHECK(r.error().find("revoke: the revocation of join token " + minted.id() + " is not signed") == 0);
    CHECK(a.sent.empty());
    CHECK(a.cert->certify(req, ca.now));
  }
  SECTION("a revocation with the token key") {
    auto revocation = identity::seal_revocation(keyed, minted.id(), minted.expires_unix_s());
    CHECK(must(a.cert->revoke(revocation, now_ms)).applied() == 1);
    CHECK(must(a.cert->revoke(revocation, now_ms)).applied() == 0);  // again: nothing new
    auto r = a.cert->certify(req, ca.now);
    REQUIRE_FALSE(r);
    CHECK(r.error() == "join token " + minted.id() + " has been revoked");
    CHECK(a.refused(controller::CertifyRefusal::kTokenRevoked) == 1);
    // b has not heard yet; once the revocation reaches it, it refuses too.
    CHECK(b.cert->certify(req, ca.now));
    a.gossip_to(b, now_ms);
    REQUIRE_FALSE(b.cert->certify(req, ca.now));
    CHECK(b.refused(controller::CertifyRefusal::kTokenRevoked) == 1);
    CHECK(b.stats.join_token_marks.get() == 1);
    // It is on disk: a restarted replica still refuses.
    controller::Controller restarted;
    REQUIRE(restarted.start({a.dir, ""}, now_ms));
    CHECK(restarted.token_use(minted.id()).revoked);
    CHECK(restarted.replica() != a.ctl.replica());
    // Nor can the register API or a deregistration undo it.
    proto::Deregister d;
    d.set_service(std::string(controller::kTokenService));
    d.set_endpoint(controller::revoked_key(minted.id()));
    CHECK(restarted.deregister(d, now_ms).error().find("reserved for join-token state") != std::string::npos);
    proto::Register reg;
    reg.set_owner("api:x");
    proto::Entry* e = reg.add_entries();
    e->set_service(std::string(controller::kTokenService));
    e->set_endpoint(controller::revoked_key("00ff"));
    e->mutable_token()->set_expires_unix_s(ca.now + 60);
    CHECK(restarted.register_entries(reg, now_ms).error().find("reserved for join-token state") != std::string::npos);
    // The marks are no service: not listed, not counted as entries.
    CHECK(restarted.services().services_size() == 0);
    CHECK(restarted.snapshot(std::string(controller::kTokenService)).exists() == false);
  }
  SECTION("revoked by id alone, for the longest a token lives") {
    auto revocation = identity::seal_revocation(keyed, minted.id(), ca.now + identity::kMaxTokenTtlS);
    CHECK(must(a.cert->revoke(revocation, now_ms)).applied() == 1);
    // The token's own expiry is shorter: nothing to extend.
    auto by_token = identity::seal_revocation(keyed, minted.id(), minted.expires_unix_s());
    CHECK(must(a.cert->revoke(by_token, now_ms)).applied() == 0);
    CHECK_FALSE(a.cert->certify(req, ca.now));
  }
}

TEST_CASE("certifier: a token's uses are counted across replicas once their spends meet", "[certifier]") {
  CaDir ca;
  const uint64_t now_ms = ca.now * 1000;
  Replica a(ca.dir), b(ca.dir);
  auto key = must(identity::PrivateKey::generate());
  auto keyed = hex_decode(kTokenKey).value();
  proto::JoinToken minted;
  auto req = request(key, kWeb);
  req.set_join_token(must(identity::mint_join_token(keyed, {kWeb, 3600, 3}, ca.now, &minted)));
  // Two on a, one on b, before either heard of the other's: within the
  // window token_marks.h documents, each counts only its own.
  REQUIRE(a.cert->certify(req, ca.now));
  REQUIRE(a.cert->certify(req, ca.now));
  REQUIRE(b.cert->certify(req, ca.now));
  CHECK(a.ctl.token_use(minted.id()).spent == 2);
  CHECK(b.ctl.token_use(minted.id()).spent == 1);
  // Their counters meet (in both directions, any number of times): the sum
  // is the same on both, and the token is used up everywhere.
  a.gossip_to(b, now_ms);
  b.gossip_to(a, now_ms);
  CHECK(a.ctl.token_use(minted.id()).spent == 3);
  CHECK(b.ctl.token_use(minted.id()).spent == 3);
  CHECK(a.ctl.registry().canonical() == b.ctl.registry().canonical());
  for (Replica* r : {&a, &b}) {
    auto refused = r->cert->certify(req, ca.now);
    REQUIRE_FALSE(refused);
    CHECK(refused.error().find("used up (3 of 3") != std::string::npos);
    CHECK(r->refused(controller::CertifyRefusal::kTokenUsedUp) == 1);
  }
  // An old copy of a's counter arriving late changes nothing: versions only grow.
  proto::Entry stale = *a.ctl.registry().find(
      {std::string(controller::kTokenService), controller::spent_key(minted.id(), a.ctl.replica())});
  stale.set_version(stale.version() - 1);
  stale.mutable_token()->set_spent(1);
  REQUIRE(b.ctl.apply({stale}, now_ms));
  CHECK(b.ctl.token_use(minted.id()).spent == 3);
  // A refused request spends nothing: a token for another identity.
  a.sent.clear();
  auto other = request(key, kWeb);
  other.set_join_token(token_for("spiffe://mesh.test/host/db", 1));
  REQUIRE_FALSE(a.cert->certify(other, ca.now));
  CHECK(a.sent.empty());
}

TEST_CASE("certifier: without a ledger, join tokens are refused", "[certifier]") {
  CaDir ca;
  controller::Stats stats;
  auto cert = must(controller::Certifier::load({ca.dir, "mesh.test", 600}, &stats));
  auto key = must(identity::PrivateKey::generate());
  auto req = request(key, kWeb);
  req.set_join_token(token_for(kWeb));
  auto r = cert->certify(req, ca.now);
  REQUIRE_FALSE(r);
  CHECK(r.error().find("cannot count their uses") != std::string::npos);
  CHECK_FALSE(cert->revoke(identity::seal_revocation(*hex_decode(kTokenKey), "0a1b", ca.now + 60), ca.now * 1000));
}

TEST_CASE("controller's own certificate: renewed while the current one is valid, also when short-lived",
          "[certifier]") {
  CaDir ca;
  controller::Stats stats;
  // Six seconds of life (meshd-controller --cert-ttl 6s), backdated like
  // every leaf: renewal must still come before the expiry.
  auto certifier = must(controller::Certifier::load({ca.dir, "mesh.test", 6}, &stats));
  controller::OwnCertificate own(certifier.get());
  auto first = must(own.refresh(ca.now));
  REQUIRE(first != nullptr);
  CHECK(own.not_after_unix_s() == ca.now + 6);
  CHECK(must(own.refresh(ca.now + 3)) == nullptr);  // not due: the API keeps its context
  auto second = must(own.refresh(ca.now + 4));
  REQUIRE(second != nullptr);
  CHECK(second != first);
  CHECK(own.not_after_unix_s() == ca.now + 10);
  CHECK(stats.certificates_issued.get() == 2);
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
