#include <wolfssl/options.h>
// wolfSSL's options must come first.
#include <wolfssl/wolfcrypt/hash.h>

#include <algorithm>

#include "base/json.h"
#include "base/json_value.h"
#include "base/log.h"
#include "base/parse.h"
#include "controller/token_review.h"
#include "identity/files.h"
#include "identity/spiffe.h"

namespace meshd::controller {
namespace {

constexpr std::string_view kServiceAccountPrefix = "system:serviceaccount:";
// Service-account tokens are JWTs of about a kilobyte.
constexpr size_t kMaxTokenBytes = 16 * 1024;
constexpr size_t kMaxTokenFileBytes = 64 * 1024;

// Peer-supplied text in messages: printable, and short.
std::string shown(std::string_view s, size_t max = 200) {
  std::string out;
  for (char c : s.substr(0, max)) out += (c >= 0x20 && c < 0x7f) ? c : '?';
  if (s.size() > max) out += "...";
  return out;
}

// A JWT is base64url parts and dots; anything outside printable ASCII is
// not a token, and could not travel in a header or be echoed safely.
bool token_chars(std::string_view t) {
  return std::ranges::all_of(t, [](char c) { return c > 0x20 && c < 0x7f; });
}

bool lower_alnum(char c) { return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9'); }

// Kubernetes' DNS-1123 label (namespaces) and subdomain (service accounts).
bool dns_label(std::string_view s) {
  return !s.empty() && s.size() <= 63 && lower_alnum(s.front()) && lower_alnum(s.back()) &&
         std::ranges::all_of(s, [](char c) { return lower_alnum(c) || c == '-'; });
}
bool dns_subdomain(std::string_view s) {
  return !s.empty() && s.size() <= 253 && lower_alnum(s.front()) && lower_alnum(s.back()) &&
         s.find("..") == std::string_view::npos && s.find(".-") == std::string_view::npos &&
         s.find("-.") == std::string_view::npos &&
         std::ranges::all_of(s, [](char c) { return lower_alnum(c) || c == '-' || c == '.'; });
}

std::string joined(const std::vector<std::string>& v) {
  std::string out;
  for (const auto& s : v) out += (out.empty() ? "" : ", ") + s;
  return out;
}

// What the API server said when it refused: a Status object's message, or
// the start of the body.
std::string refusal_text(const HttpResponse& r) {
  if (auto doc = parse_json(r.body); doc)
    if (auto m = (*doc)["message"].as_string(); m && !m->empty()) return shown(*m);
  std::string body = shown(trim(r.body));
  return body.empty() ? shown(r.reason) : body;
}

}  // namespace

Parsed<std::string> identity_of_service_account(std::string_view username, std::string_view trust_domain) {
  const std::string expected = " (expected system:serviceaccount:NAMESPACE:NAME)";
  if (!username.starts_with(kServiceAccountPrefix))
    return invalid("'" + shown(username) + "' is not a service account" + expected);
  std::string_view rest = username.substr(kServiceAccountPrefix.size());
  size_t colon = rest.find(':');
  if (colon == std::string_view::npos || rest.find(':', colon + 1) != std::string_view::npos)
    return invalid("'" + shown(username) + "' is not a service account's user name" + expected);
  std::string_view ns = rest.substr(0, colon);
  std::string_view sa = rest.substr(colon + 1);
  if (!dns_label(ns)) return invalid("'" + shown(ns) + "' in '" + shown(username) + "' is not a namespace name");
  if (!dns_subdomain(sa))
    return invalid("'" + shown(sa) + "' in '" + shown(username) + "' is not a service account name");
  std::string id = identity::pod_identity(trust_domain, ns, sa);
  if (auto ok = identity::check_identity(id); !ok) return invalid(ok.error());
  return id;
}

Parsed<std::string> identity_from_token_review(std::string_view answer_json, std::string_view trust_domain,
                                               const std::vector<std::string>& audiences) {
  auto doc = parse_json(answer_json);
  if (!doc) return invalid("token review: the answer is not JSON: " + doc.error());
  const JsonValue& status = (*doc)["status"];
  if (!status.is_object()) return invalid("token review: the answer has no status object");
  auto authenticated = status["authenticated"].as_bool();
  if (!authenticated || !*authenticated) {
    auto why = status["error"].as_string();
    return invalid("token review: not authenticated: " +
                   (why && !why->empty() ? shown(*why) : std::string("the API server gave no reason")));
  }
  auto username = status["user"]["username"].as_string();
  if (!username) return invalid("token review: authenticated, but the answer names no user");
  if (!audiences.empty()) {
    // The API server lists the asked-for audiences the token is valid for;
    // an empty or missing list means none of them.
    bool one = std::ranges::any_of(status["audiences"].items(), [&](const JsonValue& a) {
      auto s = a.as_string();
      return s && std::ranges::find(audiences, *s) != audiences.end();
    });
    if (!one) return invalid("token review: the token is not for the audience " + joined(audiences));
  }
  auto id = identity_of_service_account(*username, trust_domain);
  if (!id) return invalid("token review: " + id.error());
  return id;
}

std::string token_review_body(std::string_view token, const std::vector<std::string>& audiences) {
  JsonWriter w;
  w.begin_object().field("apiVersion", "authentication.k8s.io/v1").field("kind", "TokenReview");
  w.key("spec").begin_object().field("token", token);
  if (!audiences.empty()) {
    w.key("audiences").begin_array();
    for (const auto& a : audiences) w.value(a);
    w.end_array();
  }
  w.end_object().end_object();
  return w.take();
}

Parsed<std::unique_ptr<TokenReviewVerifier>> TokenReviewVerifier::create(TokenReviewOptions options) {
  if (auto ok = identity::check_trust_domain(options.trust_domain); !ok) return invalid(ok.error());
  for (const auto& a : options.audiences)
    if (a.empty() || a.size() > 256 || !token_chars(a)) return invalid("audience '" + shown(a) + "' is not valid");
  if (options.cache_ttl_s > 0 && options.cache_entries == 0) return invalid("a cache needs room for an entry");
  if (options.timeout_ms == 0 || options.timeout_ms > 60'000)
    return invalid("the TokenReview timeout must be between 1ms and 60s");
  auto client = HttpsClient::create({options.api_url, options.ca_file, options.timeout_ms, {}});
  if (!client) return invalid("kube api: " + client.error());
  std::unique_ptr<TokenReviewVerifier> v(new TokenReviewVerifier(std::move(options), std::move(*client)));
  if (auto t = v->bearer_token(); !t) return invalid(t.error());
  return v;
}

Parsed<std::string> TokenReviewVerifier::bearer_token() {
  auto stamp = FileStamp::of(options_.token_file);
  if (!bearer_.empty() && stamp == bearer_stamp_) return bearer_;
  auto text = identity::read_small_file(options_.token_file, kMaxTokenFileBytes);
  std::string token = text ? std::string(trim(*text)) : std::string();
  std::string problem = !text                 ? text.error()
                        : token.empty()       ? options_.token_file + " is empty"
                        : !token_chars(token) ? options_.token_file + " holds something other than a token"
                                              : std::string();
  if (!problem.empty()) {
    if (bearer_.empty()) return invalid("the controller's service-account token: " + problem);
    bearer_stamp_ = stamp;  // said once; tried again when the file changes
    LOG_WARN("token-review", "%s; keeping the token read before", problem.c_str());
    return bearer_;
  }
  if (!bearer_.empty() && token != bearer_) LOG_INFO("token-review", "re-read %s", options_.token_file.c_str());
  bearer_ = std::move(token);
  bearer_stamp_ = stamp;
  return bearer_;
}

Parsed<std::string> TokenReviewVerifier::review(std::string_view token) {
  auto bearer = bearer_token();
  if (!bearer) return invalid(bearer.error());
  const std::string where = "kube api " + client_->name() + ": ";
  HttpHeaders headers = {{"Authorization", "Bearer " + *bearer},
                         {"Content-Type", "application/json"},
                         {"Accept", "application/json"},
                         {"User-Agent", "meshd-controller"}};
  ++reviews_sent_;
  auto r = client_->post(kTokenReviewPath, headers, token_review_body(token, options_.audiences));
  if (!r) return invalid(where + r.error());
  if (r->status != 200 && r->status != 201) {
    std::string hint;
    if (r->status == 401) hint = " (is " + options_.token_file + " the controller's own, current token?)";
    if (r->status == 403)
      hint = " (the controller's service account needs to create tokenreviews: bind it to system:auth-delegator)";
    return invalid(where + "HTTP " + std::to_string(r->status) + ": " + refusal_text(*r) + hint);
  }
  return identity_from_token_review(r->body, options_.trust_domain, options_.audiences);
}

void TokenReviewVerifier::remember(const Digest& key, const std::string& identity, uint64_t now) {
  if (options_.cache_ttl_s == 0) return;
  if (cache_.size() >= options_.cache_entries && !cache_.contains(key)) {
    std::erase_if(cache_, [now](const auto& e) { return e.second.expires_unix_s <= now; });
    if (cache_.size() >= options_.cache_entries)
      cache_.erase(std::ranges::min_element(cache_, {}, [](const auto& e) { return e.second.expires_unix_s; }));
  }
  cache_[key] = {identity, now + options_.cache_ttl_s};
}

Parsed<std::string> TokenReviewVerifier::verify(std::string_view credential, uint64_t now) {
  if (credential.empty()) return invalid("the pod token is empty");
  if (credential.size() > kMaxTokenBytes) return invalid("the pod token is over 16 KiB");
  if (!token_chars(credential)) return invalid("the pod token has characters no service-account token has");
  Digest key{};
  if (wc_Sha256Hash(reinterpret_cast<const byte*>(credential.data()), static_cast<word32>(credential.size()),
                    key.data()) != 0)
    return invalid("hashing the pod token failed");
  if (auto it = cache_.find(key); it != cache_.end()) {
    // Also refused when the clock went back by more than the TTL.
    if (now < it->second.expires_unix_s && it->second.expires_unix_s <= now + options_.cache_ttl_s)
      return it->second.identity;
    cache_.erase(it);
  }
  auto id = review(credential);
  if (id) remember(key, *id, now);
  return id;
}

}  // namespace meshd::controller
