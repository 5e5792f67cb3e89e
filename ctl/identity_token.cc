// meshd-ctl identity token: mints a join token, offline, with the mesh's
// token key (what `identity init` wrote as token.key). A host's proxy reads
// it from --identity-token-file to get its first certificate; the token
// grants exactly one identity, expires, and is spent after --uses
// certificates (counted across the controller replicas).
//
// meshd-ctl identity revoke: revokes one, on every replica, with a request
// sealed by the same key.
#include <sys/stat.h>
#include <time.h>

#include <cstdlib>
#include <string>

#include "base/flags.h"
#include "base/json.h"
#include "base/parse.h"
#include "base/secret.h"
#include "ctl/admin_client.h"
#include "ctl/common.h"
#include "ctl/controller_client.h"
#include "ctl/identity.h"
#include "identity/cert.h"
#include "identity/join_token.h"
#include "identity/spiffe.h"

namespace meshd::ctl {

constexpr std::string_view kTokenHelp =
    "Usage: meshd-ctl identity token (--host NAME --trust-domain TD | --identity SPIFFE-ID)\n"
    "                                [--dir DIR] [--ttl DURATION] [--uses N]\n"
    "\n"
    "Prints a join token for one identity: spiffe://TD/host/NAME for a host, or the\n"
    "identity given. Give it to that host's proxy (meshd --identity-token-file FILE\n"
    "--identity ID); the controller certifies that identity, and only that, on it.\n"
    "Renewals need no token: the proxy proves it holds the current certificate.\n"
    "The token goes to stdout; its id, to revoke it by (meshd-ctl identity revoke),\n"
    "goes to stderr, or with the token in one object with -o json.\n"
    "\n"
    "  --dir DIR        the CA directory holding token.key (default /etc/meshd/identity)\n"
    "  --ttl DURATION   how long the token can be used (default 1h, at most 366 days)\n"
    "  --uses N         certificates it can get, counted across the controller replicas\n"
    "                   (default 1; 0: any number until it expires)\n"
    "  -o, --output F   text (default) or json\n";

constexpr std::string_view kRevokeHelp =
    "Usage: meshd-ctl identity revoke (TOKEN | TOKEN-ID) [--dir DIR] [--controller HOST:PORT]\n"
    "                                 [--trust-anchors FILE] [--timeout DURATION]\n"
    "\n"
    "Revokes a join token: from then on every controller replica refuses it. The\n"
    "controller asked keeps the revocation on disk and passes it on by gossip; the\n"
    "other replicas have it within seconds (a partitioned one, once it is back).\n"
    "Give the token itself, or its id (what `identity token` printed, or what the\n"
    "controller's logs name). A token's revocation is kept until it expires; one\n"
    "by id, whose expiry is not known, is kept 366 days (the longest a token lives).\n"
    "The request is sealed with token.key: only a holder of the key can revoke.\n"
    "\n"
    "  --dir DIR               the CA directory holding token.key (default /etc/meshd/identity)\n"
    "  --controller HOST:PORT  a controller's API (default $MESHD_CONTROLLER, else 127.0.0.1:4190)\n"
    "  --trust-anchors FILE    the mesh's trust anchor, to reach the controller over TLS\n"
    "                          (default $MESHD_TRUST_ANCHORS, else DIR/ca.crt when it exists)\n"
    "  --timeout DURATION      give up after this long (default 2s)\n";

std::string token_json(const std::string& token, const proto::JoinToken& t) {
  JsonWriter w;
  w.begin_object()
      .field("token", token)
      .field("id", t.id())
      .field("identity", t.identity())
      .field("expires_unix_s", t.expires_unix_s())
      .field("uses", t.uses())
      .end_object();
  return w.take() + "\n";
}

int run_identity_token(std::span<const std::string_view> args, const Io& io) {
  std::string host, trust_domain, id, dir = "/etc/meshd/identity", ttl_text = "1h", uses_text = "1", output = "text";
  bool help = false;
  FlagParser flags;
  flags.value("--host", "", &host)
      .value("--trust-domain", "", &trust_domain)
      .value("--identity", "", &id)
      .value("--dir", "", &dir)
      .value("--ttl", "", &ttl_text)
      .value("--uses", "", &uses_text)
      .value("--output", "-o", &output)
      .toggle("--help", "-h", &help);
  auto usage = [&io](const std::string& m) { return usage_error(io, "identity token", m); };
  auto pos = flags.parse(args);
  if (!pos) return usage(pos.error());
  if (help) {
    write_all(io.out, kTokenHelp);
    return kExitOk;
  }
  if (!pos->empty()) return usage("unexpected argument '" + std::string(pos->front()) + "'");
  if (auto ok = check_output(output); !ok) return usage(ok.error());
  if (!id.empty() && !host.empty()) return usage("give --host or --identity, not both");
  if (id.empty()) {
    if (host.empty() || trust_domain.empty()) return usage("give --host NAME --trust-domain TD, or --identity");
    if (auto ok = identity::check_trust_domain(trust_domain); !ok) return usage("--trust-domain: " + ok.error());
    id = identity::host_identity(trust_domain, host);
  }
  if (auto ok = identity::check_identity(id); !ok) return usage("identity " + id + ": " + ok.error());
  auto ttl = parse_duration_ms(ttl_text);
  if (!ttl || *ttl < 1000) return usage("invalid --ttl '" + ttl_text + "'");
  auto uses = parse_u64(uses_text);
  if (!uses || *uses > 1'000'000) return usage("invalid --uses '" + uses_text + "'");
  auto key = load_secret(dir + "/token.key", "token key", identity::kTokenKeyMinBytes);
  if (!key) {
    fprintf(io.err, "meshd-ctl identity token: %s\n", key.error().c_str());
    return kExitFailure;
  }
  proto::JoinToken minted;
  auto token = identity::mint_join_token(*key, {id, *ttl / 1000, static_cast<uint32_t>(*uses)},
                                         static_cast<uint64_t>(time(nullptr)), &minted);
  if (!token) {
    fprintf(io.err, "meshd-ctl identity token: %s\n", token.error().c_str());
    return kExitFailure;
  }
  if (output == "json") {
    write_all(io.out, token_json(*token, minted));
    return kExitOk;
  }
  write_all(io.out, *token + "\n");
  // On stderr: stdout stays the token alone, for a file or a pipe.
  std::string uses_left = minted.uses() == 0
                              ? std::string("any number of certificates")
                              : std::to_string(minted.uses()) + (minted.uses() == 1 ? " certificate" : " certificates");
  fprintf(io.err, "join token %s for %s: %s until %s; revoke with: meshd-ctl identity revoke %s\n", minted.id().c_str(),
          minted.identity().c_str(), uses_left.c_str(), identity::format_time(minted.expires_unix_s()).c_str(),
          minted.id().c_str());
  return kExitOk;
}

int run_identity_revoke(std::span<const std::string_view> args, const Io& io) {
  std::string dir = "/etc/meshd/identity", timeout_text;
  ControllerFlags controller;
  bool help = false, timeout_seen = false;
  FlagParser flags;
  controller.add_to(flags);
  flags.value("--dir", "", &dir).value("--timeout", "", &timeout_text, &timeout_seen).toggle("--help", "-h", &help);
  auto usage = [&io](const std::string& m) { return usage_error(io, "identity revoke", m); };
  auto pos = flags.parse(args);
  if (!pos) return usage(pos.error());
  if (help) {
    write_all(io.out, kRevokeHelp);
    return kExitOk;
  }
  if (pos->size() != 1) return usage("expected one TOKEN or TOKEN-ID");
  auto timeout = timeout_flag(timeout_text, timeout_seen, kDefaultTimeoutMs);
  if (!timeout) return usage(timeout.error());
  auto fail = [&io](const std::string& m) {
    fprintf(io.err, "meshd-ctl identity revoke: %s\n", m.c_str());
    return kExitFailure;
  };
  auto key = load_secret(dir + "/token.key", "token key", identity::kTokenKeyMinBytes);
  if (!key) return fail(key.error());
  const uint64_t now = static_cast<uint64_t>(time(nullptr));
  std::string_view what = trim((*pos)[0]);
  std::string token_id;
  uint64_t expires = 0;
  if (what.starts_with("mjt1.")) {
    // Checked with the key, the expiry aside: an expired token is reported
    // as such, not as a forgery.
    auto t = identity::verify_join_token(*key, what, 0);
    if (!t) return fail(t.error());
    if (t->expires_unix_s() <= now)
      return fail("join token " + t->id() + " has expired already (" + identity::format_time(t->expires_unix_s()) +
                  "): there is nothing to revoke");
    token_id = t->id();
    expires = t->expires_unix_s();
  } else {
    if (!identity::valid_token_id(what))
      return usage("'" + std::string(what) + "' is neither a join token (mjt1....) nor a token id (hex digits)");
    token_id = std::string(what);
    expires = now + identity::kMaxTokenTtlS;
  }
  // The CA directory has the trust anchor a controller with an identity
  // needs its clients to check it with.
  struct stat st;
  if (controller.trust_anchors.empty() && std::getenv("MESHD_TRUST_ANCHORS") == nullptr &&
      stat((dir + "/ca.crt").c_str(), &st) == 0)
    controller.trust_anchors = dir + "/ca.crt";
  proto::Request req;
  req.set_id(1);
  *req.mutable_revoke_token() = identity::seal_revocation(*key, token_id, expires);
  auto resp = call_controller(io, "identity revoke", controller, *timeout, req);
  if (!resp) return resp.error();
  fprintf(io.out, "join token %s %s until %s; every controller replica refuses it once gossip brings it there\n",
          token_id.c_str(), resp->ack().applied() > 0 ? "revoked" : "was revoked already",
          identity::format_time(expires).c_str());
  return kExitOk;
}

}  // namespace meshd::ctl
