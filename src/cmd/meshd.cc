// meshd: the proxy. Reads its configuration, binds every listener once per
// worker (SO_REUSEPORT), gives up root, starts one worker thread per core
// and the admin thread, then waits for SIGTERM to drain.
#include <grp.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <sys/resource.h>
#include <unistd.h>
#include <wolfssl/options.h>
#include <wolfssl/ssl.h>

#include <atomic>
#include <cstdio>
#include <memory>
#include <set>
#include <thread>
#include <vector>

#include "admin/endpoints.h"
#include "admin/server.h"
#include "base/log.h"
#include "base/sd_notify.h"
#include "config/config.h"
#include "discovery/client.h"
#include "discovery/registrar.h"
#include "discovery/resolver.h"
#include "identity/agent.h"
#include "identity/files.h"
#include "identity/spiffe.h"
#include "io/socket.h"
#include "metrics/process.h"
#include "policy/store.h"
#include "proxy/worker.h"
#include "version.h"

extern char** environ;

namespace meshd {
namespace {

[[noreturn]] void die(int code, const std::string& message) {
  fprintf(stderr, "meshd: %s\n", message.c_str());
  exit(code);
}

std::vector<int> usable_cpus() {
  std::vector<int> cpus;
  cpu_set_t set;
  if (sched_getaffinity(0, sizeof set, &set) == 0)
    for (int i = 0; i < CPU_SETSIZE; ++i)
      if (CPU_ISSET(i, &set)) cpus.push_back(i);
  return cpus;
}

void raise_fd_limit() {
  // Each proxied connection holds two descriptors; the default soft limit
  // (1024) would cap meshd at a few hundred connections.
  rlimit rl{};
  if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
    rl.rlim_cur = rl.rlim_max;
    setrlimit(RLIMIT_NOFILE, &rl);
  }
}

std::vector<proxy::ListenerSpec> listener_specs(const config::Config& c) {
  std::vector<proxy::ListenerSpec> specs;
  for (const auto& a : c.outbound_listen)
    specs.push_back({"outbound", proxy::ListenerKind::kOutbound, metrics::Direction::kOutbound, a, {}});
  for (const auto& a : c.inbound_listen)
    specs.push_back({"inbound", proxy::ListenerKind::kInbound, metrics::Direction::kInbound, a, {}});
  for (const auto& f : c.forwards) {
    proxy::ListenerSpec s{"forward", proxy::ListenerKind::kForward, metrics::Direction::kOutbound, f.listen, {}, {}, 0};
    if (auto ip = f.target.literal()) {
      s.target = *ip;
    } else {
      s.target_name = f.target.host;
      s.target_port = f.target.port;
    }
    specs.push_back(std::move(s));
  }
  return specs;
}

// The built-in listener lists name IPv6 addresses too; a host without IPv6
// cannot bind them, which is no reason to refuse to proxy IPv4.
bool optional_listener(const config::Config& c, const proxy::ListenerSpec& spec, int err) {
  bool is_default = (spec.kind == proxy::ListenerKind::kOutbound && c.outbound_listen_is_default) ||
                    (spec.kind == proxy::ListenerKind::kInbound && c.inbound_listen_is_default);
  return is_default && spec.address.is_v6() && (err == EADDRNOTAVAIL || err == EAFNOSUPPORT);
}

void drop_privileges(const config::Config& c) {
  if (geteuid() != 0) {
    if (geteuid() != c.proxy_uid)
      LOG_WARN("meshd",
               "running as uid %u, not the proxy uid %u that the redirect rules exclude: if meshd-init's rules are "
               "installed, meshd's own upstream connections will be redirected back to it",
               geteuid(), c.proxy_uid);
    return;
  }
  gid_t gid = c.proxy_uid;
  if (setgroups(0, nullptr) != 0 || setgid(gid) != 0 || setuid(c.proxy_uid) != 0)
    die(1, "cannot switch to proxy uid " + std::to_string(c.proxy_uid) + ": " + strerror(errno));
  LOG_INFO("meshd", "switched to uid %u (proxy-uid)", c.proxy_uid);
}

// The registry's policies for the services this proxy serves, each on the
// port it serves them at (a policy for port 0 means all of them).
void apply_registry_policies(const discovery::DiscoveryClient& d, policy::PolicyStore& store,
                             const config::Config& config) {
  auto table = d.table();
  std::vector<proto::InboundPolicy> policies;
  std::set<uint32_t> ports;
  for (const auto& r : config.registrations) {
    auto it = table->by_name.find(r.service);
    if (it == table->by_name.end()) continue;
    const proto::InboundPolicy* chosen = nullptr;  // the port's own, else the service-wide one
    for (const auto& p : it->second->policies)
      if (p.port() == r.port || (p.port() == 0 && chosen == nullptr)) chosen = &p;
    if (chosen == nullptr || !ports.insert(r.port).second) continue;  // none, or another service's port
    policies.push_back(*chosen);
    policies.back().set_port(r.port);
  }
  static std::string last;  // the discovery thread's only: apply only changes
  std::string now;
  for (const auto& p : policies) now += p.SerializeAsString();
  if (now == last) return;
  last = now;
  if (auto ok = store.set_registry_policies(std::move(policies)); !ok)
    LOG_ERROR("meshd", "the registry's inbound policy is invalid here (%s); keeping the last good one",
              ok.error().c_str());
  else
    LOG_INFO("meshd", "inbound policy from the registry applied (%zu ports)", ports.size());
}

int run(int argc, char** argv) {
  metrics::mark_start_time();
  wolfSSL_Init();
  auto loaded = config::load(argc, argv, environ);
  if (!loaded) die(2, loaded.error());
  if (loaded->action == config::Action::kHelp) {
    fputs(config::help_text().c_str(), stdout);
    return 0;
  }
  if (loaded->action == config::Action::kVersion) {
    printf("meshd %s (%s)\n", MESHD_VERSION, MESHD_GIT_REV);
    return 0;
  }
  static const config::Config config = loaded->config;
  log::set_level(config.log_level);
  raise_fd_limit();

  // Signals are taken synchronously by the main thread (sigwait below);
  // threads started from here inherit the mask.
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGTERM);
  sigaddset(&signals, SIGINT);
  sigaddset(&signals, SIGQUIT);
  sigaddset(&signals, SIGHUP);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);
  signal(SIGPIPE, SIG_IGN);

  const unsigned n = config.threads;
  std::vector<int> cpus = usable_cpus();
  static proxy::Shared shared;
  shared.config = &config;
  // Discovery for outbound connections, when there is a controller: made
  // before the workers, started once they run.
  // DNS (c-ares, on its own thread) for names: controllers and --forward
  // targets given by name; none is started when every address is an IP.
  bool names = false;
  for (const auto& c : config.controllers) names = names || !c.literal();
  for (const auto& f : config.forwards) names = names || !f.target.literal();
  std::unique_ptr<discovery::Resolver> resolver;
  if (names) {
    resolver = std::make_unique<discovery::Resolver>();
    shared.resolver = resolver.get();
  }
  // With the mesh's trust anchor, every stream to the controllers is TLS to
  // a certificate naming spiffe://TRUST-DOMAIN/controller (the join token
  // and the registry never cross in clear).
  std::vector<std::string> anchors;
  discovery::ControlTls control_tls;
  if (!config.trust_anchors_file.empty()) {
    auto anchor_certs = identity::load_anchors(config.trust_anchors_file);
    if (!anchor_certs) die(2, "invalid --trust-anchors: " + anchor_certs.error());
    anchors = std::move(*anchor_certs);
    auto tls = discovery::ControlTls::from_anchors(anchors, std::string(identity::trust_domain_of(config.identity)));
    if (!tls) die(2, "invalid --trust-anchors: " + tls.error());
    control_tls = std::move(*tls);
  }
  std::unique_ptr<discovery::DiscoveryClient> discovery;
  if (!config.controllers.empty()) {
    discovery::ClientOptions o;
    o.tls = control_tls;
    o.controllers = config.controllers;
    o.resolver = resolver.get();
    o.evict_after_ms = config.discovery_evict_ms;
    for (const auto& r : config.registrations) o.pinned_services.push_back(r.service);
    discovery = std::make_unique<discovery::DiscoveryClient>(std::move(o));
    shared.discovery = discovery.get();
  }
  // Identity: the agent asks the controller for a certificate for this
  // proxy's key, and keeps it renewed; mTLS uses whatever it holds now.
  std::unique_ptr<identity::Agent> identity_agent;
  if (!config.trust_anchors_file.empty()) {
    identity::AgentOptions o;
    o.controllers = config.controllers;
    o.resolver = resolver.get();
    o.identity = config.identity;
    o.anchors_der = anchors;
    o.control = control_tls;
    o.token_file = config.identity_token_file;
    if (!config.identity_sa_token_file.empty()) {
      o.token_file = config.identity_sa_token_file;
      o.token_kind = identity::TokenKind::kServiceAccount;
    }
    if (!o.token_file.empty())
      if (auto t = identity::read_token(o.token_file, o.token_kind)) o.token = std::move(*t);
    identity_agent = std::make_unique<identity::Agent>(std::move(o));
    shared.identity = identity_agent.get();
  }
  // Inbound authorization: only when some policy can refuse anything (a
  // file, a default other than all-unauthenticated, or the registry's
  // policies for the services this proxy serves).
  std::unique_ptr<policy::PolicyStore> policy_store;
  auto fallback = policy::parse_default_policy(config.default_inbound_policy);
  if (!config.policy_file.empty() || *fallback != policy::DefaultPolicy::kAllUnauthenticated ||
      (!config.controllers.empty() && !config.registrations.empty())) {
    auto store = policy::PolicyStore::create(*fallback, config.policy_file);
    if (!store) die(2, "invalid --policy-file: " + store.error());
    policy_store = std::move(*store);
    shared.policy = policy_store.get();
  }
  auto stats = std::make_unique<metrics::WorkerStats[]>(n);
  std::vector<std::unique_ptr<proxy::Worker>> workers;
  std::vector<int> worker_cpus;  // where each worker is pinned (-1: not pinned)
  for (unsigned i = 0; i < n; ++i) {
    int cpu = cpus.empty() || n == 1 ? -1 : cpus[i % cpus.size()];
    worker_cpus.push_back(cpu);
    workers.push_back(std::make_unique<proxy::Worker>(i, cpu, &shared, &stats[i]));
  }

  // Bind everything before starting anything, so that a taken port or a bad
  // address fails start-up with one line instead of a half-running proxy.
  std::vector<std::pair<proxy::ListenerSpec, std::vector<int>>> bound;
  for (auto& spec : listener_specs(config)) {
    std::vector<int> fds;
    int err = 0;
    if (auto free = io::ensure_address_free(spec.address); !free) err = free.error().value;
    for (unsigned i = 0; i < n && err == 0; ++i) {
      auto fd = io::listen_tcp(spec.address, true, 4096);
      if (fd)
        fds.push_back(*fd);
      else
        err = fd.error().value;
    }
    if (err != 0) {
      for (int fd : fds) io::close_fd(fd);
      if (optional_listener(config, spec, err)) {
        LOG_WARN("meshd", "skipping %s listener %s: %s", spec.name.c_str(), spec.address.str().c_str(), strerror(err));
        continue;
      }
      die(1, "cannot listen on " + spec.address.str() + " (" + spec.name + "): " + strerror(err));
    }
    if (n > 1) {
      if (auto r = io::steer_by_cpu(fds[0], worker_cpus); !r)
        LOG_WARN("meshd", "cannot steer connections by CPU on %s: %s", spec.address.str().c_str(), r.error().what());
    }
    bound.emplace_back(spec, std::move(fds));
  }
  // Workers keep pointers to their listener's spec: the vector is complete
  // before the first pointer is taken, and never changes after.
  static std::vector<proxy::ListenerSpec> specs;
  for (auto& b : bound) specs.push_back(b.first);
  for (size_t s = 0; s < specs.size(); ++s)
    for (unsigned i = 0; i < n; ++i) workers[i]->add_listener(&specs[s], bound[s].second[i]);

  static std::atomic<bool> ready{false};
  static std::atomic<bool> draining{false};
  admin::Server admin_server;
  if (config.admin) {
    if (auto r = admin_server.bind(*config.admin); !r)
      die(1, "cannot listen on " + config.admin->str() + " (admin): " + r.error().what());
  }

  drop_privileges(config);

  std::vector<std::thread> threads;
  std::vector<std::atomic<int>> init_result(n);
  std::atomic<unsigned> finished{0};
  for (auto& r : init_result) r.store(-1);
  for (unsigned i = 0; i < n; ++i) {
    threads.emplace_back([&, i] {
      auto r = workers[i]->init();
      init_result[i].store(r ? 0 : r.error().value);
      init_result[i].notify_all();
      if (r) workers[i]->run();
      transport::release_thread_crypto();
      finished.fetch_add(1);
    });
  }
  for (unsigned i = 0; i < n; ++i) {
    init_result[i].wait(-1);
    int err = init_result[i].load();
    if (err != 0) {
      std::string why = strerror(err);
      if (err == EPERM || err == ENOSYS) why += " (is io_uring disabled? see /proc/sys/kernel/io_uring_disabled)";
      for (auto& w : workers) w->command(proxy::Worker::Command::kStopNow);
      for (auto& t : threads) t.join();
      die(1, "cannot start worker " + std::to_string(i) + ": io_uring: " + why);
    }
  }

  admin::ProxyView view;
  view.config = &config;
  view.listeners = &specs;
  for (unsigned i = 0; i < n; ++i) view.workers.push_back(&stats[i]);
  view.ready = &ready;
  view.draining = &draining;
  view.discovery = discovery.get();
  std::vector<proxy::Worker*> all_workers;
  for (auto& w : workers) all_workers.push_back(w.get());
  if (resolver) {
    resolver->on_change([all_workers](const std::string&) {
      shared.names_version.fetch_add(1, std::memory_order_release);
      for (proxy::Worker* w : all_workers) w->notify();
    });
    if (auto r = resolver->start({}); !r) die(1, "cannot start the DNS resolver: " + r.error());
  }
  if (discovery) {
    discovery->on_published([all_workers, d = discovery.get(), p = policy_store.get()] {
      if (p != nullptr) apply_registry_policies(*d, *p, config);
      for (proxy::Worker* w : all_workers) w->notify();
    });
    discovery->start();
  }
  if (identity_agent) identity_agent->start(nullptr);
  view.identity = identity_agent.get();
  view.policy = policy_store.get();
  // The main thread waits for SIGTERM below: /shutdown sends it one.
  view.shutdown = [] { kill(getpid(), SIGTERM); };
  if (config.admin) admin_server.start(admin::make_handler(view), /*accepts_post=*/true);
  ready.store(true);
  std::vector<discovery::Registration> registrations;
  for (const auto& r : config.registrations) registrations.push_back({r.service, r.port});
  discovery::Registrar registrar(config.controllers, resolver.get(), std::move(registrations), config.register_lease_ms,
                                 identity_agent ? config.identity : std::string(), control_tls);
  registrar.start();

  std::string where;
  for (const auto& s : specs) where += " " + s.name + "=" + s.address.str();
  LOG_INFO("meshd", "meshd %s serving with %u threads:%s%s", MESHD_VERSION, n, where.c_str(),
           config.admin ? (" admin=" + config.admin->str()).c_str() : "");
  // After the log line: a service manager that installs the redirect rules
  // on READY=1 (meshd.service) finds every listener bound.
  if (std::string err = sd_notify("READY=1\nSTATUS=serving"); !err.empty())
    LOG_WARN("meshd", "telling the service manager it is ready: %s", err.c_str());

  int sig = 0;
  while (sigwait(&signals, &sig) == 0 && sig == SIGHUP)
    LOG_WARN("meshd", "SIGHUP: meshd does not reload its configuration yet; restart it to apply changes");
  LOG_INFO("meshd", "%s: draining (up to %llu ms)", strsignal(sig),
           static_cast<unsigned long long>(config.drain_timeout_ms));
  draining.store(true);
  sd_notify("STOPPING=1\nSTATUS=draining");
  // Leave the registry first, so that no new traffic is sent here.
  registrar.stop();
  for (auto& w : workers) w->command(proxy::Worker::Command::kDrain);
  // A second signal cuts the drain short.
  while (finished.load() < n) {
    timespec ts{0, 100'000'000};
    int again = sigtimedwait(&signals, nullptr, &ts);
    if (again > 0 && again != SIGHUP) {
      LOG_INFO("meshd", "second signal: closing what is still open");
      for (auto& w : workers) w->command(proxy::Worker::Command::kStopNow);
    }
  }
  for (auto& t : threads) t.join();
  admin_server.stop();
  if (discovery) discovery->stop();
  if (identity_agent) identity_agent->stop();
  if (resolver) resolver->stop();
  LOG_INFO("meshd", "stopped");
  transport::release_thread_crypto();
  wolfSSL_Cleanup();
  return 0;
}

}  // namespace
}  // namespace meshd

int main(int argc, char** argv) { return meshd::run(argc, argv); }
