#include "controller/certifier.h"

#include "base/log.h"
#include "base/secret.h"
#include "identity/files.h"
#include "identity/join_token.h"
#include "identity/pem.h"
#include "identity/proof.h"
#include "identity/spiffe.h"

namespace meshd::controller {
namespace {

constexpr size_t kMaxChain = 4;
constexpr size_t kMaxCertBytes = 8192;

}  // namespace

Parsed<std::unique_ptr<Certifier>> Certifier::load(const CertifierOptions& options, Stats* stats) {
  if (auto ok = identity::check_trust_domain(options.trust_domain); !ok)
    return invalid("invalid --trust-domain: " + ok.error());
  if (options.cert_ttl_s < 5 || options.cert_ttl_s > 366ull * 24 * 3600)
    return invalid("--cert-ttl must be between 5s and 366 days");
  auto anchors = identity::load_certificates(options.dir + "/ca.crt");
  if (!anchors) return std::unexpected(anchors.error());
  auto issuer_certs = identity::load_certificates(options.dir + "/issuer.crt");
  if (!issuer_certs) return std::unexpected(issuer_certs.error());
  auto key_text = identity::read_small_file(options.dir + "/issuer.key");
  if (!key_text) return std::unexpected(key_text.error());
  auto key = identity::PrivateKey::from_pem(*key_text);
  if (!key) return invalid(options.dir + "/issuer.key: " + key.error());
  const std::string issuer_der = issuer_certs->front();
  auto info = identity::parse_cert(issuer_der);
  if (!info) return invalid(options.dir + "/issuer.crt: " + info.error());
  if (!info->is_ca) return invalid(options.dir + "/issuer.crt is not a CA certificate");
  if (info->public_key_der != key->public_der())
    return invalid(options.dir + "/issuer.key is not the key of " + options.dir + "/issuer.crt");
  // The issuer must chain to an anchor, or proxies would refuse every leaf.
  std::vector<std::string> above(issuer_certs->begin() + 1, issuer_certs->end());
  uint64_t now = static_cast<uint64_t>(time(nullptr));
  if (auto v = identity::verify_chain(issuer_der, above, *anchors, now); !v)
    return invalid(options.dir + "/issuer.crt does not verify against " + options.dir + "/ca.crt: " + v.error());
  auto token_key = load_secret(options.dir + "/token.key", "token key", identity::kTokenKeyMinBytes);
  if (!token_key) return std::unexpected(token_key.error());
  identity::Issuer issuer{issuer_der, std::move(*key)};
  std::unique_ptr<Certifier> c(new Certifier(options, std::move(issuer), std::move(*issuer_certs), std::move(*anchors),
                                             std::move(*token_key), info->not_after_unix_s));
  c->stats_ = stats;
  stats->identity_enabled = true;
  return c;
}

Parsed<proto::Certified> Certifier::refuse(CertifyRefusal reason, std::string message) {
  stats_->certify_refused[static_cast<int>(reason)].inc();
  return invalid(std::move(message));
}

Parsed<std::string> Certifier::granted_identity(const proto::Certify& request, uint64_t now,
                                                const Parsed<std::string>* pod_review, CertifyRefusal* reason,
                                                std::optional<proto::JoinToken>* token) {
  switch (request.credential_case()) {
    case proto::Certify::kJoinToken: {
      *reason = CertifyRefusal::kBadToken;
      auto t = identity::verify_join_token(token_key_, request.join_token(), now);
      if (!t) return invalid(t.error());
      if (ledger_ == nullptr) {
        *reason = CertifyRefusal::kInternal;
        return invalid("this controller keeps no record of join tokens, so it cannot count their uses");
      }
      // What this replica has heard from all of them: a spend on another
      // replica counts here once gossip brought it (token_marks.h).
      auto use = ledger_->token_use(t->id());
      if (use.revoked) {
        *reason = CertifyRefusal::kTokenRevoked;
        return invalid("join token " + t->id() + " has been revoked");
      }
      if (t->uses() > 0 && use.spent >= t->uses()) {
        *reason = CertifyRefusal::kTokenUsedUp;
        return invalid("join token " + t->id() + " has been used up (" + std::to_string(use.spent) + " of " +
                       std::to_string(t->uses()) + " certificates granted)");
      }
      *token = std::move(*t);
      return (*token)->identity();
    }
    case proto::Certify::kRenewal: {
      *reason = CertifyRefusal::kBadRenewal;
      const auto& r = request.renewal();
      if (r.chain_der_size() == 0 || r.chain_der_size() > static_cast<int>(kMaxChain))
        return invalid("renewal proof must carry the current certificate chain (1 to 4 certificates)");
      for (const auto& c : r.chain_der())
        if (c.size() > kMaxCertBytes) return invalid("renewal proof carries a certificate over 8 KiB");
      std::vector<std::string> intermediates(r.chain_der().begin() + 1, r.chain_der().end());
      auto leaf = identity::verify_chain(r.chain_der(0), intermediates, anchors_, now);
      if (!leaf) return invalid("current certificate: " + leaf.error());
      if (leaf->is_ca) return invalid("current certificate is a CA, not a workload's");
      if (auto ok = identity::verify_renewal(leaf->public_key_der, request.csr_der(), r.signature()); !ok)
        return invalid(ok.error());
      return leaf->identity;
    }
    case proto::Certify::kK8SToken:
      *reason = CertifyRefusal::kBadPodToken;
      if (pod_review == nullptr)
        return invalid("this controller verifies no Kubernetes service-account tokens (no TokenReview configured)");
      return *pod_review;
    case proto::Certify::CREDENTIAL_NOT_SET: break;
  }
  *reason = CertifyRefusal::kNoCredential;
  return invalid("a certificate needs a credential: a join token, a pod token or the current certificate");
}

Parsed<identity::CsrInfo> Certifier::check_request(const proto::Certify& request) {
  auto fail = [&](CertifyRefusal reason, std::string message) -> Parsed<identity::CsrInfo> {
    return invalid(refuse(reason, std::move(message)).error());
  };
  auto csr = identity::check_csr(request.csr_der());
  if (!csr) return fail(CertifyRefusal::kBadCsr, "CSR refused: " + csr.error());
  if (csr->identity != request.identity())
    return fail(CertifyRefusal::kBadCsr,
                "CSR names " + csr->identity + " but the request asks for " + request.identity());
  if (identity::trust_domain_of(csr->identity) != options_.trust_domain)
    return fail(CertifyRefusal::kWrongTrustDomain,
                "identity " + csr->identity + " is outside this mesh's trust domain " + options_.trust_domain);
  return csr;
}

Parsed<proto::Certified> Certifier::certify(const proto::Certify& request, uint64_t now,
                                            const Parsed<std::string>* pod_review) {
  auto csr = check_request(request);
  if (!csr) return invalid(csr.error());
  CertifyRefusal reason = CertifyRefusal::kNoCredential;
  std::optional<proto::JoinToken> token;
  auto granted = granted_identity(request, now, pod_review, &reason, &token);
  if (!granted) return refuse(reason, granted.error());
  if (*granted != csr->identity) return refuse(reason, "the credential is for " + *granted + ", not " + csr->identity);
  // A use counts once the request passed every check, and before the
  // certificate is made: a use that could not be recorded grants nothing.
  if (token && token->uses() > 0)
    if (auto spent = ledger_->spend_token(*token, now * 1000); !spent)
      return refuse(CertifyRefusal::kInternal, "recording a use of join token " + token->id() + ": " + spent.error());
  return issue(*csr, now);
}

Parsed<proto::Certified> Certifier::certify_self(const std::string& csr_der, uint64_t now) {
  auto csr = identity::check_csr(csr_der);
  if (!csr) return invalid("CSR refused: " + csr.error());
  if (csr->identity != identity::controller_identity(options_.trust_domain))
    return invalid("CSR names " + csr->identity + ", not this controller");
  return issue(*csr, now);
}

Parsed<proto::Certified> Certifier::issue(const identity::CsrInfo& csr, uint64_t now) {
  uint64_t not_before = now > kBackdateS ? now - kBackdateS : 0;
  uint64_t not_after = std::min(now + options_.cert_ttl_s, issuer_not_after_);
  if (not_after <= now) return refuse(CertifyRefusal::kIssuerExpired, "the mesh's issuer certificate has expired");
  auto leaf = identity::issue_leaf(issuer_, csr, not_before, not_after);
  if (!leaf) return refuse(CertifyRefusal::kInternal, "issuing: " + leaf.error());
  proto::Certified out;
  out.set_leaf_der(std::move(*leaf));
  for (const auto& c : chain_) out.add_chain_der(c);
  for (const auto& a : anchors_) out.add_trust_anchors_der(a);
  out.set_not_before_unix_ms(not_before * 1000);
  out.set_not_after_unix_ms(not_after * 1000);
  stats_->certificates_issued.inc();
  return out;
}

Parsed<proto::Ack> Certifier::revoke(const proto::RevokeToken& request, uint64_t now_ms) {
  if (auto ok = identity::verify_revocation(token_key_, request, now_ms / 1000); !ok)
    return invalid("revoke: " + ok.error());
  if (ledger_ == nullptr) return invalid("revoke: this controller keeps no record of join tokens");
  auto applied = ledger_->revoke_token(request.token_id(), request.expires_unix_s(), now_ms);
  if (!applied) return invalid("revoke: " + applied.error());
  if (*applied)
    LOG_WARN("certifier", "join token %s revoked (kept until %llu)", request.token_id().c_str(),
             static_cast<unsigned long long>(request.expires_unix_s()));
  proto::Ack ack;
  ack.set_applied(*applied ? 1 : 0);
  return ack;
}

}  // namespace meshd::controller
