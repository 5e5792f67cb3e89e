// Agent: the proxy's side of identity. It makes a key in memory (a new one
// for every certificate; keys never leave the process), asks a controller
// to certify it, and publishes what it got as the TLS contexts every worker
// uses for mTLS, renewing before expiry (renewal.h).
//
// The first certificate is granted on the join token in --identity-token-file
// or, in a pod, on the service-account token in --identity-sa-token-file
// (read at each attempt, so it may be written after start); later ones on the
// certificate held now (identity/proof.h). Until a certificate arrives, or
// after it expired with no renewal, current() has no contexts: connections
// that need mTLS fail closed, plaintext ones carry on.
//
// It runs on its own thread with blocking calls to the controller, never on
// a worker. Workers read current() once per new connection: a version number
// tells them when to take the new snapshot (one atomic load otherwise).
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "base/addr.h"
#include "discovery/controller_call.h"
#include "identity/key.h"
#include "transport/tls_context.h"

namespace meshd::discovery {
class Resolver;
}

namespace meshd::identity {

// What the token file holds: a join token (hosts) or a projected
// Kubernetes service-account token (pods), which the controller reviews.
enum class TokenKind { kJoin, kServiceAccount };
// Service-account tokens are JWTs of one to a few KiB.
inline constexpr size_t kMaxTokenFileBytes = 16384;

// Reads a token file as the agent does at each attempt: bounded, without a
// trailing newline. The error names the kind of token.
Parsed<std::string> read_token(const std::string& path, TokenKind kind);

struct AgentOptions {
  std::vector<HostPort> controllers;
  discovery::Resolver* resolver = nullptr;
  std::string identity;                  // spiffe://... this proxy asks for
  std::vector<std::string> anchors_der;  // --trust-anchors: what peers' certificates must chain to
  std::string token_file;                // --identity-token-file or --identity-sa-token-file
  TokenKind token_kind = TokenKind::kJoin;
  discovery::ControlTls control;  // how the controllers are reached
  // The token as read at start-up, before meshd dropped its privileges: a
  // file only root can read still works once.
  std::string token;
};

// One certificate's worth of TLS, shared by all workers.
struct Credential {
  std::string identity;
  uint64_t not_before_ms = 0;
  uint64_t not_after_ms = 0;
  std::shared_ptr<const transport::TlsContext> client;  // originating mTLS
  std::shared_ptr<const transport::TlsContext> server;  // terminating mTLS
  bool valid_at(uint64_t unix_ms) const { return client && unix_ms < not_after_ms; }
};

struct AgentStatus {
  std::string identity;
  uint64_t not_after_ms = 0;     // 0: no certificate yet
  uint64_t last_renewal_ms = 0;  // when the current one arrived
  uint64_t next_attempt_ms = 0;
  uint64_t renewals_ok = 0;
  uint64_t renewals_failed = 0;
  std::string last_error;
};

class Agent {
 public:
  explicit Agent(AgentOptions options);
  ~Agent();
  Agent(const Agent&) = delete;
  Agent& operator=(const Agent&) = delete;

  // on_change runs on the agent's thread after each new credential.
  void start(std::function<void()> on_change);
  void stop();

  uint64_t version() const { return version_.load(std::memory_order_acquire); }
  std::shared_ptr<const Credential> current() const;
  AgentStatus status() const;
  const std::string& identity() const { return options_.identity; }

 private:
  void run();
  // One attempt; the error says why it failed.
  Parsed<void> certify_once();

  AgentOptions options_;
  std::function<void()> on_change_;
  std::atomic<uint64_t> version_{0};
  mutable std::mutex mu_;
  std::condition_variable cv_;
  bool stopping_ = false;
  std::shared_ptr<const Credential> current_;  // under mu_
  AgentStatus status_;                         // under mu_
  // The key and chain of the current certificate: the renewal proof.
  std::unique_ptr<PrivateKey> key_;  // agent thread only
  std::vector<std::string> chain_;   // agent thread only
  size_t controller_ = 0;
  std::thread thread_;
};

}  // namespace meshd::identity
