// TokenReviewVerifier: the CredentialVerifier for pods. A pod proves its
// identity with its Kubernetes service-account token; the API server says
// whose it is (POST /apis/authentication.k8s.io/v1/tokenreviews, the
// controller authenticating with its own service-account token), and
//   system:serviceaccount:NS:SA  ->  spiffe://TRUST_DOMAIN/ns/NS/sa/SA
// which the certifier then requires to be the identity the CSR names.
//
// With audiences configured, the review asks for them and the answer must
// confirm at least one (tokens minted for something else are refused).
// The controller's own token is re-read when its file changes (projected
// tokens rotate hourly); the CA file likewise (see HttpsClient).
//
// Certify is answered synchronously on the controller's API thread, so a
// review blocks that thread for up to the timeout (3 s by default: small on
// purpose). Successful reviews are therefore cached for a minute, keyed by
// a SHA-256 of the token, bounded in entries, so that a burst of pods
// restarting with the same tokens costs the API server one review each.
// Refusals and failures are not cached.
//
// Not thread-safe: one caller (the API thread).
#pragma once

#include <array>
#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "base/result.h"
#include "controller/certifier.h"
#include "controller/file_stamp.h"
#include "controller/https_client.h"

namespace meshd::controller {

inline constexpr std::string_view kTokenReviewPath = "/apis/authentication.k8s.io/v1/tokenreviews";
inline constexpr std::string_view kServiceAccountDir = "/var/run/secrets/kubernetes.io/serviceaccount";

struct TokenReviewOptions {
  std::string api_url;                 // https://HOST[:PORT] of the API server
  std::string ca_file;                 // the API server's CA (PEM)
  std::string token_file;              // the controller's own service-account token
  std::vector<std::string> audiences;  // empty: the API server's default
  std::string trust_domain;
  uint64_t timeout_ms = 3000;  // connect to answer, per review
  uint64_t cache_ttl_s = 60;   // 0: no cache
  size_t cache_entries = 4096;
};

// The identity a TokenReview answer grants, or why none: authenticated,
// a service account's user name, one of the audiences (when any are
// asked for), and an identity that fits the trust domain.
Parsed<std::string> identity_from_token_review(std::string_view answer_json, std::string_view trust_domain,
                                               const std::vector<std::string>& audiences);

// The TokenReview request body for token.
std::string token_review_body(std::string_view token, const std::vector<std::string>& audiences);

// spiffe://TD/ns/NS/sa/SA for "system:serviceaccount:NS:SA", or why not.
Parsed<std::string> identity_of_service_account(std::string_view username, std::string_view trust_domain);

class TokenReviewVerifier : public CredentialVerifier {
 public:
  // Fails when an option is wrong, the API server's name does not resolve,
  // or the CA or token file cannot be read: each named.
  static Parsed<std::unique_ptr<TokenReviewVerifier>> create(TokenReviewOptions options);

  Parsed<std::string> verify(std::string_view credential, uint64_t now_unix_s) override;

  size_t cached() const { return cache_.size(); }
  uint64_t reviews_sent() const { return reviews_sent_; }

 private:
  using Digest = std::array<uint8_t, 32>;
  struct Cached {
    std::string identity;
    uint64_t expires_unix_s = 0;
  };
  TokenReviewVerifier(TokenReviewOptions options, std::unique_ptr<HttpsClient> client)
      : options_(std::move(options)), client_(std::move(client)) {}
  // The controller's own token, re-read when its file changed.
  Parsed<std::string> bearer_token();
  Parsed<std::string> review(std::string_view token);
  void remember(const Digest& key, const std::string& identity, uint64_t now);

  TokenReviewOptions options_;
  std::unique_ptr<HttpsClient> client_;
  std::string bearer_;
  std::optional<FileStamp> bearer_stamp_;
  std::map<Digest, Cached> cache_;
  uint64_t reviews_sent_ = 0;
};

}  // namespace meshd::controller
