#include "identity/agent.h"

#include <random>

#include "base/clock.h"
#include "base/log.h"
#include "discovery/controller_call.h"
#include "identity/cert.h"
#include "identity/csr.h"
#include "identity/files.h"
#include "identity/proof.h"
#include "identity/renewal.h"

namespace meshd::identity {
namespace {

constexpr uint64_t kCallTimeoutMs = 3000;

}  // namespace

Parsed<std::string> read_token(const std::string& path, TokenKind kind) {
  if (path.empty())
    return invalid("no token: start meshd with --identity-token-file (a host) or --identity-sa-token-file (a pod)");
  auto token = read_small_file(path, kMaxTokenFileBytes);
  if (!token)
    return invalid(std::string(kind == TokenKind::kJoin ? "the join token: " : "the service-account token: ") +
                   token.error());
  // A projected token file may end with a newline; the token does not.
  while (!token->empty() && (token->back() == '\n' || token->back() == '\r')) token->pop_back();
  return token;
}

Agent::Agent(AgentOptions options) : options_(std::move(options)) { status_.identity = options_.identity; }

Agent::~Agent() { stop(); }

void Agent::start(std::function<void()> on_change) {
  on_change_ = std::move(on_change);
  if (options_.controllers.empty() || thread_.joinable()) return;
  thread_ = std::thread([this] { run(); });
}

void Agent::stop() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stopping_ = true;
  }
  cv_.notify_all();
  if (thread_.joinable()) thread_.join();
}

std::shared_ptr<const Credential> Agent::current() const {
  std::lock_guard<std::mutex> lock(mu_);
  return current_;
}

AgentStatus Agent::status() const {
  std::lock_guard<std::mutex> lock(mu_);
  return status_;
}

void Agent::run() {
  RenewalSchedule schedule;
  std::mt19937_64 rng(std::random_device{}());
  std::uniform_real_distribution<double> uniform(0.0, 1.0);
  std::unique_lock<std::mutex> lock(mu_);
  while (!stopping_) {
    lock.unlock();
    auto ok = certify_once();
    // Renewals are hours apart: wolfSSL's ~3 MB per-thread ECC point cache
    // (key, CSR, handshake, chain check) would only hold memory meanwhile.
    transport::release_thread_crypto();
    uint64_t now = unix_ms();
    lock.lock();
    if (ok) {
      ++status_.renewals_ok;
      status_.last_error.clear();
      status_.next_attempt_ms = schedule.on_success(now, current_->not_after_ms, uniform(rng));
    } else {
      ++status_.renewals_failed;
      status_.last_error = ok.error();
      uint64_t held = current_ ? current_->not_after_ms : 0;
      status_.next_attempt_ms = schedule.on_failure(now, held, uniform(rng));
      LOG_WARN("identity", "no certificate for %s yet: %s (retrying in %llu ms)", options_.identity.c_str(),
               ok.error().c_str(), static_cast<unsigned long long>(status_.next_attempt_ms - now));
    }
    uint64_t wait_ms = status_.next_attempt_ms > now ? status_.next_attempt_ms - now : 0;
    cv_.wait_for(lock, std::chrono::milliseconds(wait_ms), [this] { return stopping_; });
  }
}

Parsed<void> Agent::certify_once() {
  auto key = PrivateKey::generate();
  if (!key) return invalid("key: " + key.error());
  auto csr = make_csr(*key, options_.identity);
  if (!csr) return invalid("CSR: " + csr.error());
  proto::Request req;
  req.set_id(1);
  auto* c = req.mutable_certify();
  c->set_identity(options_.identity);
  c->set_csr_der(*csr);
  uint64_t now = unix_ms();
  bool renewing = false;
  {
    std::lock_guard<std::mutex> lock(mu_);
    renewing = current_ && now + 1000 < current_->not_after_ms && key_ != nullptr;
  }
  if (renewing) {
    auto sig = sign_renewal(*key_, *csr);
    if (!sig) return invalid("renewal proof: " + sig.error());
    for (const auto& d : chain_) c->mutable_renewal()->add_chain_der(d);
    c->mutable_renewal()->set_signature(*sig);
  } else {
    auto token = read_token(options_.token_file, options_.token_kind);
    if (!token && options_.token.empty()) return std::unexpected(token.error());
    const std::string& t = token ? *token : options_.token;
    if (options_.token_kind == TokenKind::kServiceAccount)
      c->set_k8s_token(t);
    else
      c->set_join_token(t);
  }

  std::string last_error = "no controller";
  for (size_t tried = 0; tried < options_.controllers.size(); ++tried) {
    const HostPort& name = options_.controllers[controller_ % options_.controllers.size()];
    auto addr = discovery::controller_address(name, options_.resolver, kCallTimeoutMs);
    Parsed<proto::Response> resp =
        addr ? discovery::controller_call(*addr, name.str(), req, kCallTimeoutMs, options_.control)
             : std::unexpected(addr.error());
    if (!resp) {
      last_error = resp.error();
      ++controller_;  // unreachable: the next replica
      continue;
    }
    if (!resp->error().empty()) {
      // A refusal is the CA's answer, the same from every replica. A
      // renewal it refused may still be granted on the token.
      if (renewing && !options_.token_file.empty()) {
        LOG_WARN("identity", "renewal refused (%s); trying the join token", resp->error().c_str());
        {
          std::lock_guard<std::mutex> lock(mu_);
          key_.reset();
        }
        return certify_once();
      }
      return invalid("the controller refused: " + resp->error());
    }
    if (!resp->has_certified()) return invalid("the controller answered without a certificate");
    const auto& got = resp->certified();
    std::vector<std::string> intermediates(got.chain_der().begin(), got.chain_der().end());
    auto leaf = verify_chain(got.leaf_der(), intermediates, options_.anchors_der, now / 1000);
    if (!leaf) return invalid("the certificate the controller sent does not verify: " + leaf.error());
    if (leaf->identity != options_.identity)
      return invalid("the controller sent a certificate for " + leaf->identity + ", not " + options_.identity);
    if (leaf->public_key_der != key->public_der()) return invalid("the controller sent a certificate for another key");
    transport::TlsCredentials creds;
    creds.chain_der.push_back(got.leaf_der());
    for (const auto& d : intermediates) creds.chain_der.push_back(d);
    creds.key_der = key->der();
    creds.anchors_der = options_.anchors_der;
    auto client = transport::TlsContext::create(creds, transport::Role::kClient);
    if (!client) return invalid("TLS client context: " + client.error());
    auto server = transport::TlsContext::create(creds, transport::Role::kServer);
    if (!server) return invalid("TLS server context: " + server.error());
    auto cred = std::make_shared<Credential>();
    cred->identity = leaf->identity;
    cred->not_before_ms = leaf->not_before_unix_s * 1000;
    cred->not_after_ms = leaf->not_after_unix_s * 1000;
    cred->client = std::move(*client);
    cred->server = std::move(*server);
    {
      std::lock_guard<std::mutex> lock(mu_);
      current_ = std::move(cred);
      key_ = std::make_unique<PrivateKey>(std::move(*key));
      chain_ = creds.chain_der;
      status_.not_after_ms = current_->not_after_ms;
      status_.last_renewal_ms = now;
    }
    version_.fetch_add(1, std::memory_order_acq_rel);
    LOG_INFO("identity", "certificate for %s valid until %s", options_.identity.c_str(),
             format_time(leaf->not_after_unix_s).c_str());
    if (on_change_) on_change_();
    return {};
  }
  return invalid(last_error);
}

}  // namespace meshd::identity
