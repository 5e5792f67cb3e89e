// meshd-ctl identity token: mints a join token, offline, with the mesh's
// token key (what `identity init` wrote as token.key). A host's proxy reads
// it from --identity-token-file to get its first certificate; the token
// grants exactly one identity, expires, and is spent after --uses
// certificates (per controller replica).
#include <time.h>

#include <string>

#include "base/flags.h"
#include "base/parse.h"
#include "base/secret.h"
#include "ctl/common.h"
#include "ctl/identity.h"
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
    "\n"
    "  --dir DIR        the CA directory holding token.key (default /etc/meshd/identity)\n"
    "  --ttl DURATION   how long the token can be used (default 1h, at most 366 days)\n"
    "  --uses N         certificates it can get (default 1; 0: any number until it expires)\n";

int run_identity_token(std::span<const std::string_view> args, const Io& io) {
  std::string host, trust_domain, id, dir = "/etc/meshd/identity", ttl_text = "1h", uses_text = "1";
  bool help = false;
  FlagParser flags;
  flags.value("--host", "", &host)
      .value("--trust-domain", "", &trust_domain)
      .value("--identity", "", &id)
      .value("--dir", "", &dir)
      .value("--ttl", "", &ttl_text)
      .value("--uses", "", &uses_text)
      .toggle("--help", "-h", &help);
  auto usage = [&io](const std::string& m) { return usage_error(io, "identity token", m); };
  auto pos = flags.parse(args);
  if (!pos) return usage(pos.error());
  if (help) {
    write_all(io.out, kTokenHelp);
    return kExitOk;
  }
  if (!pos->empty()) return usage("unexpected argument '" + std::string(pos->front()) + "'");
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
  auto token = identity::mint_join_token(*key, {id, *ttl / 1000, static_cast<uint32_t>(*uses)},
                                         static_cast<uint64_t>(time(nullptr)));
  if (!token) {
    fprintf(io.err, "meshd-ctl identity token: %s\n", token.error().c_str());
    return kExitFailure;
  }
  write_all(io.out, *token + "\n");
  return kExitOk;
}

}  // namespace meshd::ctl
