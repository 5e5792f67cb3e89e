// Certifier: the controller as the mesh's certificate authority.
//
// Every replica loads the same issuer (certificate and key, from the
// directory `meshd-ctl identity init` wrote), so any replica can answer a
// proxy's Certify, and nothing about issuance crosses gossip. A request is
// granted when its credential vouches for the identity the CSR names:
//   - a join token minted for exactly that identity, not revoked and not
//     used up (hosts; its uses and revocation are shared by the replicas
//     through the registry, see token_marks.h);
//   - the proxy's current certificate for that identity, still valid, with
//     the new CSR signed by its key (renewals);
//   - a Kubernetes service-account token, once a CredentialVerifier has
//     reviewed it (pods; off this thread, see pod_reviews.h).
// The leaf lives --cert-ttl (24 h by default), backdated a minute for clock
// skew, and is never valid past the issuer.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "base/result.h"
#include "controller/controller.h"
#include "controller/stats.h"
#include "identity/cert.h"
#include "identity/csr.h"
#include "proto/api.pb.h"

namespace meshd::controller {

// Turns a pod's credential into the identity it grants (pluggable: the
// Kubernetes TokenReview verifier is one).
class CredentialVerifier {
 public:
  virtual ~CredentialVerifier() = default;
  virtual Parsed<std::string> verify(std::string_view credential, uint64_t now_unix_s) = 0;
};

struct CertifierOptions {
  std::string dir;           // ca.crt, issuer.crt, issuer.key, token.key
  std::string trust_domain;  // identities outside it are refused
  uint64_t cert_ttl_s = 24 * 3600;
};

class Certifier {
 public:
  static constexpr uint64_t kBackdateS = 60;

  // stats: where issuances and refusals are counted (controller_certify_*).
  static Parsed<std::unique_ptr<Certifier>> load(const CertifierOptions& options, Stats* stats);

  // The answer to a Certify, or the reason it was refused (sent back to the
  // proxy as the response's error). pod_review: for a pod's token, what
  // the review of it found (none: pod tokens are refused).
  Parsed<proto::Certified> certify(const proto::Certify& request, uint64_t now_unix_s,
                                   const Parsed<std::string>* pod_review = nullptr);
  // The checks that need no credential (the CSR, the identity it names, the
  // trust domain), refusals counted; certify() starts with them, and a
  // pod's token is sent for review only once they pass.
  Parsed<identity::CsrInfo> check_request(const proto::Certify& request);
  // The answer to a RevokeToken (applied 1: newly revoked, 0: it already
  // was), or why it was refused: only a holder of the token key revokes.
  Parsed<proto::Ack> revoke(const proto::RevokeToken& request, uint64_t now_ms);

  // Where join tokens' revocations and uses are kept and shared with the
  // other replicas: the controller's registry. Without it, join tokens
  // are refused, as their uses could not be counted.
  void set_ledger(Controller* controller) { ledger_ = controller; }
  // The controller's own certificate for its API's TLS, for the identity
  // spiffe://TRUST-DOMAIN/controller only: no credential, as the controller
  // holds the issuer (see OwnCertificate).
  Parsed<proto::Certified> certify_self(const std::string& csr_der, uint64_t now_unix_s);

  const std::string& trust_domain() const { return options_.trust_domain; }
  const std::vector<std::string>& anchors() const { return anchors_; }
  const std::string& issuer_der() const { return issuer_.cert_der; }

 private:
  Certifier(CertifierOptions options, identity::Issuer issuer, std::vector<std::string> chain,
            std::vector<std::string> anchors, std::string token_key, uint64_t issuer_not_after)
      : options_(std::move(options)),
        issuer_(std::move(issuer)),
        chain_(std::move(chain)),
        anchors_(std::move(anchors)),
        token_key_(std::move(token_key)),
        issuer_not_after_(issuer_not_after) {}
  // The identity the request's credential grants; *token gets the join token
  // it was, if it was one.
  Parsed<std::string> granted_identity(const proto::Certify& request, uint64_t now_unix_s,
                                       const Parsed<std::string>* pod_review, CertifyRefusal* reason,
                                       std::optional<proto::JoinToken>* token);
  Parsed<proto::Certified> refuse(CertifyRefusal reason, std::string message);
  // Signs a checked CSR: where certify() and certify_self() end.
  Parsed<proto::Certified> issue(const identity::CsrInfo& csr, uint64_t now_unix_s);

  CertifierOptions options_;
  identity::Issuer issuer_;
  std::vector<std::string> chain_;  // the issuer, then any CA above it short of the anchor
  std::vector<std::string> anchors_;
  std::string token_key_;
  uint64_t issuer_not_after_;
  Controller* ledger_ = nullptr;
  Stats* stats_ = nullptr;
};

}  // namespace meshd::controller
