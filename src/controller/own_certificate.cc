#include "controller/own_certificate.h"

#include "identity/csr.h"
#include "identity/key.h"
#include "identity/spiffe.h"

namespace meshd::controller {

Parsed<std::shared_ptr<const transport::TlsContext>> OwnCertificate::refresh(uint64_t now) {
  if ((renew_at_ != 0 && now < renew_at_) || now < retry_at_) return nullptr;
  auto ctx = issue(now);
  if (!ctx) retry_at_ = now + kRetryS;
  return ctx;
}

Parsed<std::shared_ptr<const transport::TlsContext>> OwnCertificate::issue(uint64_t now) {
  auto key = identity::PrivateKey::generate();
  if (!key) return invalid("controller certificate: key: " + key.error());
  const std::string name = identity::controller_identity(certifier_->trust_domain());
  auto csr = identity::make_csr(*key, name);
  if (!csr) return invalid("controller certificate: CSR: " + csr.error());
  auto cert = certifier_->certify_self(*csr, now);
  if (!cert) return invalid("controller certificate: " + cert.error());
  transport::TlsCredentials creds;
  creds.chain_der.push_back(cert->leaf_der());
  for (const auto& c : cert->chain_der()) creds.chain_der.push_back(c);
  creds.key_der = key->der();
  for (const auto& a : cert->trust_anchors_der()) creds.anchors_der.push_back(a);
  auto ctx = transport::TlsContext::create(creds, transport::Role::kServer, transport::kControlAlpn,
                                           transport::PeerCert::kOptional);
  if (!ctx) return invalid("controller certificate: " + ctx.error());
  // Two thirds of the time left from now, not from not_before: the
  // certificate is backdated for clock skew, which would eat a short life.
  not_after_ = cert->not_after_unix_ms() / 1000;
  renew_at_ = now + (not_after_ > now ? (not_after_ - now) * 2 / 3 : 0);
  if (renew_at_ <= now) renew_at_ = now + 1;  // a lifetime too short to wait on: bounded retries
  return ctx;
}

}  // namespace meshd::controller
