// OwnCertificate: the certificate the controller's API serves TLS with,
// spiffe://TRUST-DOMAIN/controller. The controller holds the issuer, so it
// certifies itself (no credential) with a key made in memory, like a
// proxy's, and renews when two thirds of its lifetime are gone: a renewal builds a new
// TLS context for new streams, and open streams keep the one they started
// with until they end.
#pragma once

#include <cstdint>
#include <memory>
#include <string>

#include "base/result.h"
#include "controller/certifier.h"
#include "transport/tls_context.h"

namespace meshd::controller {

class OwnCertificate {
 public:
  // After a failure, the next try waits this long (the API keeps serving
  // with the certificate it has, while it is valid).
  static constexpr uint64_t kRetryS = 10;

  explicit OwnCertificate(Certifier* certifier) : certifier_(certifier) {}

  // A new server context when one is due (none yet, or the current one is
  // past two thirds of its life), else null. The error says why issuing
  // failed; the next call after kRetryS tries again.
  Parsed<std::shared_ptr<const transport::TlsContext>> refresh(uint64_t now_unix_s);

  uint64_t not_after_unix_s() const { return not_after_; }

 private:
  Parsed<std::shared_ptr<const transport::TlsContext>> issue(uint64_t now_unix_s);

  Certifier* certifier_;
  uint64_t renew_at_ = 0;  // 0: nothing issued yet
  uint64_t not_after_ = 0;
  uint64_t retry_at_ = 0;
};

}  // namespace meshd::controller
