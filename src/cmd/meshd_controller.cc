// meshd-controller: serves the registry to proxies and meshd-ctl.
// Opens its data directory (replaying what was acknowledged before), loads
// and watches the registry file, gossips with its replicas when given a
// cluster key, and answers the API on --listen until SIGTERM.
#include <ifaddrs.h>
#include <netdb.h>
#include <signal.h>
#include <sys/signalfd.h>
#include <time.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <optional>
#include <string>
#include <vector>

#include "admin/server.h"
#include "base/clock.h"
#include "base/flags.h"
#include "base/log.h"
#include "base/parse.h"
#include "controller/api_server.h"
#include "controller/controller.h"
#include "controller/gossip/gossip.h"
#include "controller/own_certificate.h"
#include "controller/pod_reviews.h"
#include "controller/token_review.h"
#include "io/socket.h"
#include "metrics/process.h"
#include "transport/tls_context.h"
#include "version.h"

namespace {

using namespace meshd;

constexpr const char* kUsage =
    "usage: meshd-controller [flags]\n\n"
    "Serves the meshd registry (services and their endpoints) to proxies and\n"
    "meshd-ctl. State that was acknowledged is kept in --data-dir and survives\n"
    "restarts; the registry file is re-read when it changes, and a bad edit is\n"
    "refused (with the line at fault) while the last good state keeps serving.\n\n"
    "flags:\n"
    "  --listen ADDR          API address (default 0.0.0.0:4190; env MESHD_CONTROLLER_LISTEN)\n"
    "  --data-dir DIR         where state is persisted (default /var/lib/meshd-controller;\n"
    "                         env MESHD_CONTROLLER_DATA_DIR)\n"
    "  --registry-file FILE   services and endpoints in TOML (env MESHD_CONTROLLER_REGISTRY_FILE)\n"
    "  --admin ADDR           /metrics, /ready, /live (default 127.0.0.1:4194; 'off' to disable;\n"
    "                         env MESHD_CONTROLLER_ADMIN)\n"
    "  --log-level LEVEL      debug, info, warn or error (default info)\n"
    "  --version, -h/--help\n\n"
    "replicas (gossip; on when a cluster key is given, off otherwise):\n"
    "  --cluster-key-file PATH  the key shared by the replicas, at least 32 bytes (raw, or\n"
    "                         64+ hex digits, e.g. openssl rand -hex 32); every gossip packet\n"
    "                         is authenticated with it (HMAC-SHA256), others are dropped and\n"
    "                         counted (env MESHD_CONTROLLER_CLUSTER_KEY_FILE)\n"
    "  --join HOST:PORT,...   replicas to join (their gossip address); the first replica of a\n"
    "                         cluster starts without (env MESHD_CONTROLLER_JOIN)\n"
    "  --gossip-listen ADDR   UDP and TCP address for gossip (default 0.0.0.0:4192; 'off' to\n"
    "                         disable gossip; env MESHD_CONTROLLER_GOSSIP_LISTEN)\n"
    "  --gossip-advertise ADDR  the address other replicas reach this one at (default: the\n"
    "                         --gossip-listen address; when that is 0.0.0.0, this host's\n"
    "                         address towards the first --join replica, else its first\n"
    "                         non-loopback address; env MESHD_CONTROLLER_GOSSIP_ADVERTISE)\n"
    "  --node-name NAME       this replica's name, unique in the cluster (default the host name;\n"
    "                         env MESHD_CONTROLLER_NODE_NAME)\n"
    "  --gossip-probe-interval DURATION  one failure-detection probe per interval (default 1s);\n"
    "                         a member that misses its probe, also through 3 others, is\n"
    "                         suspect, and dead 5 intervals later (more in large clusters)\n"
    "                         (env MESHD_CONTROLLER_GOSSIP_PROBE_INTERVAL)\n"
    "  --gossip-sync-interval DURATION  push-pull anti-entropy with a random replica, and one\n"
    "                         that is dead so a healed partition merges (default 5s;\n"
    "                         env MESHD_CONTROLLER_GOSSIP_SYNC_INTERVAL)\n"
    "  Clocks of the replicas must agree within 30s (packets carry a timestamp against\n"
    "  replays); `meshd-ctl members` lists the replicas and their state.\n\n"
    "identity (the mesh's certificate authority; on when --identity-dir is given):\n"
    "  --identity-dir DIR     what `meshd-ctl identity init` wrote: ca.crt (trust anchors),\n"
    "                         issuer.crt, issuer.key, token.key; every replica holds the same\n"
    "                         (env MESHD_CONTROLLER_IDENTITY_DIR)\n"
    "  --trust-domain NAME    the mesh's SPIFFE trust domain; other identities are refused\n"
    "                         (env MESHD_CONTROLLER_TRUST_DOMAIN)\n"
    "  --cert-ttl DURATION    lifetime of workload certificates (default 24h, 5s to 366d;\n"
    "                         proxies renew at about 70% of it; env MESHD_CONTROLLER_CERT_TTL)\n"
    "  With the CA, pods may ask with their Kubernetes service-account token, which the\n"
    "  API server reviews (TokenReview): system:serviceaccount:NS:SA is granted\n"
    "  spiffe://TRUST-DOMAIN/ns/NS/sa/SA. On by default inside a pod; the controller's\n"
    "  service account needs the ClusterRole system:auth-delegator.\n"
    "  --kube-api URL         the API server, https://HOST[:PORT] (default in a pod:\n"
    "                         https://$KUBERNETES_SERVICE_HOST:$KUBERNETES_SERVICE_PORT; 'off' to\n"
    "                         refuse pod tokens; env MESHD_CONTROLLER_KUBE_API)\n"
    "  --kube-ca FILE         its CA (default /var/run/secrets/kubernetes.io/serviceaccount/ca.crt;\n"
    "                         env MESHD_CONTROLLER_KUBE_CA)\n"
    "  --kube-token-file FILE the controller's own service-account token, re-read when it changes\n"
    "                         (default /var/run/secrets/kubernetes.io/serviceaccount/token;\n"
    "                         env MESHD_CONTROLLER_KUBE_TOKEN_FILE)\n"
    "  --kube-audience AUD,.. audiences a pod's token must be for (default: the API server's;\n"
    "                         env MESHD_CONTROLLER_KUBE_AUDIENCE)\n"
    "  With the CA, the API also speaks TLS, with a certificate for\n"
    "  spiffe://TRUST-DOMAIN/controller that the controller issues itself; clients verify it\n"
    "  against ca.crt (meshd --trust-anchors, meshd-ctl --trust-anchors / MESHD_TRUST_ANCHORS).\n"
    "  Certificates and token revocations are served only over TLS; discovery also in clear.\n";

int fail(int code, const std::string& message) {
  std::fprintf(stderr, "meshd-controller: %s\n", message.c_str());
  return code;
}

std::string env_or(const char* name, const char* fallback) {
  const char* v = std::getenv(name);
  return v != nullptr && *v != '\0' ? v : fallback;
}

// The API server as a pod sees it (what client-go's in-cluster config reads);
// empty outside Kubernetes.
std::string in_cluster_api() {
  const char* host = std::getenv("KUBERNETES_SERVICE_HOST");
  const char* port = std::getenv("KUBERNETES_SERVICE_PORT");
  if (host == nullptr || *host == '\0' || port == nullptr || *port == '\0') return {};
  std::string h = host;
  if (h.find(':') != std::string::npos) h = "[" + h + "]";
  return "https://" + h + ":" + port;
}

std::string host_name() {
  char host[256] = "localhost";
  gethostname(host, sizeof host - 1);
  return host;
}

// A host:port of --join: an IP, or a name resolved once now.
Parsed<SocketAddr> resolve(const std::string& text) {
  if (auto a = SocketAddr::parse(text)) return a;
  auto colon = text.rfind(':');
  if (colon == std::string::npos) return invalid("'" + text + "' is not HOST:PORT");
  auto port = parse_port(text.substr(colon + 1));
  if (!port) return invalid("'" + text + "': " + port.error());
  addrinfo hints{};
  hints.ai_socktype = SOCK_DGRAM;
  addrinfo* res = nullptr;
  std::string host = text.substr(0, colon);
  if (int rc = getaddrinfo(host.c_str(), nullptr, &hints, &res); rc != 0 || res == nullptr)
    return invalid("cannot resolve '" + host + "': " + gai_strerror(rc));
  SocketAddr a = SocketAddr::from_sockaddr(res->ai_addr, res->ai_addrlen);
  freeaddrinfo(res);
  a.set_port(*port);
  return a;
}

std::optional<SocketAddr> first_interface_address(int family) {
  ifaddrs* list = nullptr;
  if (getifaddrs(&list) != 0) return std::nullopt;
  std::optional<SocketAddr> out;
  for (ifaddrs* i = list; i != nullptr && !out; i = i->ifa_next) {
    if (i->ifa_addr == nullptr || i->ifa_addr->sa_family != family) continue;
    socklen_t len = family == AF_INET ? sizeof(sockaddr_in) : sizeof(sockaddr_in6);
    SocketAddr a = SocketAddr::from_sockaddr(i->ifa_addr, len);
    if (!a.is_loopback() && !a.is_unspecified() && !(a.is_v6() && a.host().starts_with("fe80"))) out = a;
  }
  freeifaddrs(list);
  return out;
}

using GossipSetup = std::pair<controller::gossip::Options, controller::gossip::ClusterKey>;

Parsed<GossipSetup> gossip_setup(const std::string& key_file, const std::string& join, const std::string& listen,
                                 const std::string& advertise, const std::string& node_name,
                                 const std::string& probe_interval, const std::string& sync_interval,
                                 const SocketAddr& api) {
  if (key_file.empty()) return invalid("gossip (--join, --gossip-listen) needs a cluster key: --cluster-key-file PATH");
  auto key = controller::gossip::ClusterKey::load(key_file);
  if (!key) return invalid(key.error());
  controller::gossip::Options o;
  auto l = SocketAddr::parse(listen.empty() ? "0.0.0.0:4192" : listen);
  if (!l) return invalid("invalid --gossip-listen: " + l.error());
  o.listen = *l;
  for (const auto& j : split_list(join)) {
    auto a = resolve(j);
    if (!a) return invalid("invalid --join: " + a.error());
    o.join.push_back(*a);
  }
  SocketAddr adv = *l;
  if (!advertise.empty()) {
    auto a = SocketAddr::parse(advertise);
    if (!a) return invalid("invalid --gossip-advertise: " + a.error());
    adv = *a;
  } else if (adv.is_unspecified()) {
    std::optional<SocketAddr> host;
    if (!o.join.empty()) host = io::local_address_towards(o.join.front());
    if (!host) host = first_interface_address(adv.family());
    if (!host) return invalid("cannot tell this host's address for gossip: give --gossip-advertise");
    host->set_port(adv.port());
    adv = *host;
  }
  if (adv.port() == 0) return invalid("--gossip-advertise needs a port");
  auto probe = parse_duration_ms(probe_interval);
  if (!probe || *probe < 100 || *probe > 60'000)
    return invalid("invalid --gossip-probe-interval '" + probe_interval + "' (100ms to 1m)");
  auto sync = parse_duration_ms(sync_interval);
  if (!sync || *sync < 200 || *sync > 3'600'000)
    return invalid("invalid --gossip-sync-interval '" + sync_interval + "' (200ms to 1h)");
  o.membership.name = node_name.empty() ? host_name() : node_name;
  if (o.membership.name.size() > 128) return invalid("--node-name is over 128 characters");
  o.membership.address = adv.str();
  SocketAddr api_adv = api;
  if (api_adv.is_unspecified()) {
    api_adv = adv;
    api_adv.set_port(api.port());
  }
  o.membership.api_address = api_adv.str();
  o.membership.probe_interval_ms = *probe;
  o.membership.probe_timeout_ms = std::max<uint64_t>(*probe / 2, 50);
  o.sync_interval_ms = *sync;
  return GossipSetup{std::move(o), std::move(*key)};
}

}  // namespace

int main(int argc, char** argv) {
  metrics::mark_start_time();
  wolfSSL_Init();
  std::string listen = env_or("MESHD_CONTROLLER_LISTEN", "0.0.0.0:4190");
  std::string data_dir = env_or("MESHD_CONTROLLER_DATA_DIR", "/var/lib/meshd-controller");
  std::string registry_file = env_or("MESHD_CONTROLLER_REGISTRY_FILE", "");
  std::string level = "info";
  std::string admin = env_or("MESHD_CONTROLLER_ADMIN", "127.0.0.1:4194");
  std::string key_file = env_or("MESHD_CONTROLLER_CLUSTER_KEY_FILE", "");
  std::string join = env_or("MESHD_CONTROLLER_JOIN", "");
  std::string gossip_listen = env_or("MESHD_CONTROLLER_GOSSIP_LISTEN", "");
  std::string gossip_advertise = env_or("MESHD_CONTROLLER_GOSSIP_ADVERTISE", "");
  std::string node_name = env_or("MESHD_CONTROLLER_NODE_NAME", "");
  std::string probe_interval = env_or("MESHD_CONTROLLER_GOSSIP_PROBE_INTERVAL", "1s");
  std::string sync_interval = env_or("MESHD_CONTROLLER_GOSSIP_SYNC_INTERVAL", "5s");
  std::string identity_dir = env_or("MESHD_CONTROLLER_IDENTITY_DIR", "");
  std::string trust_domain = env_or("MESHD_CONTROLLER_TRUST_DOMAIN", "");
  std::string cert_ttl = env_or("MESHD_CONTROLLER_CERT_TTL", "24h");
  const std::string sa_dir(controller::kServiceAccountDir);
  std::string kube_api = env_or("MESHD_CONTROLLER_KUBE_API", "");
  std::string kube_ca = env_or("MESHD_CONTROLLER_KUBE_CA", (sa_dir + "/ca.crt").c_str());
  std::string kube_token_file = env_or("MESHD_CONTROLLER_KUBE_TOKEN_FILE", (sa_dir + "/token").c_str());
  std::string kube_audience = env_or("MESHD_CONTROLLER_KUBE_AUDIENCE", "");
  bool help = false, version = false;
  std::vector<std::string_view> args(argv + 1, argv + argc);
  FlagParser flags;
  flags.value("--listen", "", &listen)
      .value("--data-dir", "", &data_dir)
      .value("--registry-file", "", &registry_file)
      .value("--log-level", "", &level)
      .value("--admin", "", &admin)
      .value("--cluster-key-file", "", &key_file)
      .value("--join", "", &join)
      .value("--gossip-listen", "", &gossip_listen)
      .value("--gossip-advertise", "", &gossip_advertise)
      .value("--node-name", "", &node_name)
      .value("--gossip-probe-interval", "", &probe_interval)
      .value("--gossip-sync-interval", "", &sync_interval)
      .value("--identity-dir", "", &identity_dir)
      .value("--trust-domain", "", &trust_domain)
      .value("--cert-ttl", "", &cert_ttl)
      .value("--kube-api", "", &kube_api)
      .value("--kube-ca", "", &kube_ca)
      .value("--kube-token-file", "", &kube_token_file)
      .value("--kube-audience", "", &kube_audience)
      .toggle("--help", "-h", &help)
      .toggle("--version", "", &version);
  auto rest = flags.parse(args);
  if (!rest) return fail(2, rest.error() + " (see --help)");
  if (help) {
    std::fputs(kUsage, stdout);
    return 0;
  }
  if (version) {
    std::printf("meshd-controller %s (%s)\n", MESHD_VERSION, MESHD_GIT_REV);
    return 0;
  }
  if (!rest->empty()) return fail(2, "unexpected argument '" + std::string(rest->front()) + "' (see --help)");
  log::Level lvl;
  if (!log::parse_level(level.c_str(), &lvl)) return fail(2, "invalid --log-level '" + level + "'");
  log::set_level(lvl);
  auto addr = SocketAddr::parse(listen);
  if (!addr) return fail(2, "invalid --listen: " + addr.error());
  if (data_dir.empty()) return fail(2, "--data-dir must not be empty");
  std::optional<SocketAddr> admin_addr;
  if (admin != "off") {
    auto a = SocketAddr::parse(admin);
    if (!a) return fail(2, "invalid --admin: " + a.error());
    admin_addr = *a;
  }

  std::optional<controller::gossip::Options> gossip_options;
  std::optional<controller::gossip::ClusterKey> cluster_key;
  if (gossip_listen == "off" && !join.empty()) return fail(2, "--join needs gossip, but --gossip-listen is off");
  if (gossip_listen != "off" && (!key_file.empty() || !join.empty() || !gossip_listen.empty())) {
    auto g =
        gossip_setup(key_file, join, gossip_listen, gossip_advertise, node_name, probe_interval, sync_interval, *addr);
    if (!g) return fail(2, g.error());
    gossip_options = std::move(g->first);
    cluster_key = std::move(g->second);
  }

  if (identity_dir.empty() && !trust_domain.empty()) return fail(2, "--trust-domain needs --identity-dir");
  // Asked for by name, TokenReview must work; found in the environment of a
  // pod, it is tried, and pod tokens are refused (with a warning) if not.
  const bool kube_explicit = !kube_api.empty() && kube_api != "off";
  if (kube_explicit && identity_dir.empty()) return fail(2, "--kube-api needs --identity-dir");
  if (kube_api.empty()) kube_api = in_cluster_api();
  controller::CertifierOptions ca_options;
  if (!identity_dir.empty()) {
    if (trust_domain.empty()) return fail(2, "--identity-dir needs --trust-domain");
    auto ttl = parse_duration_ms(cert_ttl);
    if (!ttl) return fail(2, "invalid --cert-ttl '" + cert_ttl + "'");
    ca_options = {identity_dir, trust_domain, *ttl / 1000};
  }

  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGTERM);
  sigaddset(&signals, SIGINT);
  sigprocmask(SIG_BLOCK, &signals, nullptr);
  signal(SIGPIPE, SIG_IGN);
  int stop_fd = signalfd(-1, &signals, SFD_CLOEXEC | SFD_NONBLOCK);
  if (stop_fd < 0) return fail(1, std::string("signalfd: ") + strerror(errno));

  static controller::Stats stats;
  controller::Controller ctl(&stats);
  if (auto r = ctl.start({data_dir, registry_file}, unix_ms()); !r) return fail(1, r.error());
  controller::ApiServer api(&ctl, &stats, unix_ms);
  std::unique_ptr<controller::Certifier> certifier;
  std::unique_ptr<controller::PodReviews> pod_reviews;
  if (!identity_dir.empty()) {
    auto c = controller::Certifier::load(ca_options, &stats);
    if (!c) return fail(1, c.error());
    certifier = std::move(*c);
    api.set_certifier(certifier.get());
    if (!kube_api.empty() && kube_api != "off") {
      controller::TokenReviewOptions review{kube_api, kube_ca, kube_token_file, split_list(kube_audience),
                                            trust_domain};
      auto verifier = controller::TokenReviewVerifier::create(std::move(review));
      if (!verifier && kube_explicit) return fail(1, "TokenReview: " + verifier.error());
      if (!verifier) {
        LOG_WARN("meshd-controller", "TokenReview is off, pods' service-account tokens will be refused: %s",
                 verifier.error().c_str());
      } else {
        LOG_INFO("meshd-controller", "pods' service-account tokens are reviewed by %s", kube_api.c_str());
        pod_reviews = std::make_unique<controller::PodReviews>(std::move(*verifier), [] { return unix_ms() / 1000; });
        api.set_pod_reviews(pod_reviews.get());
      }
    }
  }
  // With the CA comes the controller's own certificate: the API speaks TLS.
  std::optional<controller::OwnCertificate> own_cert;
  if (certifier) {
    own_cert.emplace(certifier.get());
    auto tls = own_cert->refresh(unix_ms() / 1000);
    if (!tls) return fail(1, tls.error());
    api.set_tls(std::move(*tls));
  }
  admin::Server admin_server;
  if (admin_addr) {
    if (auto r = admin_server.bind(*admin_addr); !r)
      return fail(1, "cannot listen on " + admin_addr->str() + " (admin): " + r.error().what());
    admin_server.start([](const admin::Request& request) -> admin::Response {
      const std::string_view path = request.path;
      if (path == "/metrics")
        return {200, "text/plain; version=0.0.4; charset=utf-8", controller::render_metrics(stats)};
      if (path == "/live" || path == "/ready") return {200, "text/plain; charset=utf-8", "ok\n"};
      return {404, "text/plain; charset=utf-8", "not found; try /metrics /ready /live\n"};
    });
  }
  if (auto r = api.listen(*addr); !r) return fail(1, r.error());
  std::unique_ptr<controller::gossip::Gossip> gossip;
  if (gossip_options) {
    gossip = std::make_unique<controller::gossip::Gossip>(std::move(*gossip_options), std::move(*cluster_key), &ctl,
                                                          &stats, unix_ms);
    if (auto r = gossip->start(); !r) return fail(1, r.error());
    gossip->set_publish([&api](const controller::Changes& c) { api.publish(c); });
    api.set_poll_hook(gossip.get());
    api.set_members([&gossip] { return gossip->members(); });
  }
  LOG_INFO("meshd-controller", "meshd-controller %s serving %zu registry entries on %s", MESHD_VERSION,
           ctl.registry().size(), addr->str().c_str());

  // The registry file is checked every tick; a change applies within one.
  api.run(stop_fd, 250, [&] {
    if (own_cert) {
      if (auto tls = own_cert->refresh(unix_ms() / 1000); !tls)
        LOG_ERROR("meshd-controller", "%s; the API keeps its current certificate", tls.error().c_str());
      else if (*tls != nullptr)
        api.set_tls(std::move(*tls));
    }
    auto changes = ctl.poll_file(unix_ms());
    if (!changes)
      LOG_ERROR("meshd-controller", "%s; keeping the last good registry", changes.error().c_str());
    else if (!changes->empty())
      api.publish(*changes);
    auto expired = ctl.expire_leases(unix_ms());
    if (!expired)
      LOG_ERROR("meshd-controller", "expiring leases: %s", expired.error().c_str());
    else if (!expired->empty())
      api.publish(*expired);
    if (auto compacted = ctl.maybe_compact(); !compacted)
      LOG_ERROR("meshd-controller", "compacting the store: %s", compacted.error().c_str());
  });
  if (gossip) gossip->leave();
  admin_server.stop();
  LOG_INFO("meshd-controller", "stopped");
  close(stop_fd);
  pod_reviews.reset();                 // its thread ends (and frees its TLS state) before wolfSSL does
  transport::release_thread_crypto();  // the API thread signed certificates
  wolfSSL_Cleanup();
  return 0;
}
