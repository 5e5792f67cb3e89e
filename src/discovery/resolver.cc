#include "discovery/resolver.h"

#include <ares.h>
#include <arpa/inet.h>
#include <netdb.h>
#include <poll.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstring>
#include <functional>
#include <mutex>
#include <queue>

#include "base/ascii.h"
#include "base/bytes.h"
#include "base/log.h"
#include "base/parse.h"

namespace meshd::discovery {

namespace {

constexpr uint64_t kMinTtlMs = 1000;
constexpr uint64_t kMaxTtlMs = 5 * 60 * 1000;
constexpr uint64_t kMinNegativeMs = 1000;
constexpr uint64_t kMaxNegativeMs = 30 * 1000;
// When a negative answer carries no SOA, there is no TTL to honour.
constexpr uint64_t kDefaultNegativeMs = 5000;
// /etc/hosts has no TTLs; re-reading it this often notices edits soon enough.
constexpr uint64_t kHostsFileTtlMs = 60 * 1000;
constexpr uint64_t kMaxBackoffMs = 30 * 1000;
constexpr uint64_t kSweepEveryMs = 1000;
constexpr uint64_t kNever = UINT64_MAX;
constexpr int kMaxAddresses = 64;
constexpr int kClassIn = 1;
constexpr int kTypeA = 1;
constexpr int kTypeAaaa = 28;
constexpr int kTypeSoa = 6;

std::string lower(std::string_view s) {
  std::string out(s);
  for (char& c : out) c = ascii_lower(c);
  return out;
}

bool is_localhost(std::string_view name) {
  if (!name.empty() && name.back() == '.') name.remove_suffix(1);
  return name.size() == 9 && lower(name) == "localhost";
}

uint64_t clamp_ms(uint64_t seconds, uint64_t lo, uint64_t hi) {
  return std::clamp<uint64_t>(std::min<uint64_t>(seconds, hi / 1000) * 1000, lo, hi);
}

// Moves pos past a (possibly compressed) name; false when it runs off the end.
bool skip_name(const unsigned char* buf, int len, int* pos) {
  while (*pos < len) {
    unsigned char b = buf[*pos];
    if (b == 0) {
      *pos += 1;
      return true;
    }
    if ((b & 0xc0) == 0xc0) {
      *pos += 2;
      return *pos <= len;
    }
    if (b & 0xc0) return false;
    *pos += 1 + b;
  }
  return false;
}

// The negative-caching TTL of an answer in seconds (RFC 2308: the smaller
// of the authority SOA's TTL and its MINIMUM field), or -1 without an SOA.
// c-ares has no parser for the authority section, hence this one.
int64_t soa_negative_ttl_s(const unsigned char* buf, int len) {
  if (buf == nullptr || len < 12) return -1;
  int counts[3] = {load_be16(buf + 4), load_be16(buf + 6), load_be16(buf + 8)};  // question, answer, authority
  int pos = 12;
  for (int i = 0; i < counts[0]; ++i) {
    if (!skip_name(buf, len, &pos)) return -1;
    pos += 4;
  }
  for (int section = 1; section <= 2; ++section) {
    for (int i = 0; i < counts[section]; ++i) {
      if (!skip_name(buf, len, &pos) || pos + 10 > len) return -1;
      uint16_t type = load_be16(buf + pos);
      uint32_t ttl = load_be32(buf + pos + 4);
      uint16_t rdlen = load_be16(buf + pos + 8);
      pos += 10;
      if (pos + rdlen > len) return -1;
      // The SOA's MINIMUM is the last of its five 32-bit fields.
      if (section == 2 && type == kTypeSoa && rdlen >= 22) return std::min(ttl, load_be32(buf + pos + rdlen - 4));
      pos += rdlen;
    }
  }
  return -1;
}

SocketAddr from_v4(const in_addr& a) {
  sockaddr_in sin{};
  sin.sin_family = AF_INET;
  sin.sin_addr = a;
  return SocketAddr::from_sockaddr(reinterpret_cast<const sockaddr*>(&sin), sizeof sin);
}

SocketAddr from_v6(const void* bytes16) {
  sockaddr_in6 sin6{};
  sin6.sin6_family = AF_INET6;
  std::memcpy(&sin6.sin6_addr, bytes16, 16);
  return SocketAddr::from_sockaddr(reinterpret_cast<const sockaddr*>(&sin6), sizeof sin6);
}

// Answers that need no DNS: literal IPs and "localhost" (RFC 6761).
std::shared_ptr<const ResolvedName> answer_without_dns(std::string_view name) {
  auto ip = SocketAddr::from_ip(name, 0);
  if (!ip && !is_localhost(name)) return nullptr;
  auto out = std::make_shared<ResolvedName>();
  out->name = lower(name);
  if (ip) {
    out->addresses.push_back(*ip);
  } else {
    out->addresses.push_back(SocketAddr::loopback(AF_INET, 0));
    out->addresses.push_back(SocketAddr::loopback(AF_INET6, 0));
  }
  out->expires_ms = kNever;
  return out;
}

std::once_flag ares_init_once;
int ares_init_status = ARES_SUCCESS;

}  // namespace

// What the resolver thread alone touches: the c-ares channel, its sockets
// and the refresh timers.
struct Resolver::Loop {
  struct Refresh {
    uint64_t due_ms;
    std::string name;
    uint64_t entry_id;
    uint64_t published_ms;
    uint64_t used_after_ms;  // refresh only if looked up after this
    bool operator>(const Refresh& o) const { return due_ms > o.due_ms; }
  };

  ares_channel channel = nullptr;
  std::unordered_map<int, short> sockets;  // fd -> poll events, kept by c-ares' socket state callback
  std::string servers;                     // "10.0.0.2:53, 10.0.0.3:53", for errors
  std::vector<std::string> search;
  int ndots = 1;
  bool hosts_file = false;
  std::priority_queue<Refresh, std::vector<Refresh>, std::greater<>> refreshes;
  uint64_t next_sweep_ms = 0;

  static void socket_state(void* data, ares_socket_t fd, int readable, int writable) {
    auto* loop = static_cast<Loop*>(data);
    if (!readable && !writable)
      loop->sockets.erase(fd);
    else
      loop->sockets[fd] = static_cast<short>((readable ? POLLIN : 0) | (writable ? POLLOUT : 0));
  }

  // The names to ask for, in order: the search list applied as resolv.conf
  // says (ndots), or the name alone when it ends in a dot.
  std::vector<std::string> candidates(const std::string& name) const {
    if (name.back() == '.' || search.empty()) return {name};
    int dots = static_cast<int>(std::count(name.begin(), name.end(), '.'));
    std::vector<std::string> out;
    if (dots >= ndots) out.push_back(name);
    for (const auto& domain : search) out.push_back(name + "." + domain);
    if (dots < ndots) out.push_back(name);
    return out;
  }
};

// One name being fetched: A and AAAA queries for each search candidate in
// turn, until one has records or the servers fail.
struct Resolver::Lookup {
  struct Half {
    Lookup* lookup = nullptr;
    int status = ARES_SUCCESS;
    std::vector<SocketAddr> addresses;
    uint64_t ttl_s = UINT64_MAX;  // the smallest TTL of the records
    int64_t negative_ttl_s = -1;

    void add(const SocketAddr& address, int ttl) {
      addresses.push_back(address);
      ttl_s = std::min<uint64_t>(ttl_s, static_cast<uint64_t>(std::max(ttl, 0)));
    }
  };

  Resolver* resolver;
  std::string name;
  uint64_t entry_id;
  std::vector<std::string> candidates;
  size_t next = 0;
  uint64_t sent_ms = 0;
  int outstanding = 0;
  Half a, aaaa;
  bool all_nxdomain = true;
  int64_t negative_ttl_s = -1;

  Lookup(Resolver* r, std::string n, uint64_t id) : resolver(r), name(std::move(n)), entry_id(id) {
    a.lookup = this;
    aaaa.lookup = this;
  }

  // Sends the next candidate's queries. c-ares may call back before
  // ares_query returns, and the last callback may delete this lookup:
  // nothing here touches `this` after the second ares_query.
  void send_next() {
    std::string qname = candidates[next++];
    a = Half{this};
    aaaa = Half{this};
    sent_ms = monotonic_ms();
    outstanding = 2;
    ares_channel channel = resolver->loop_->channel;
    ares_query(channel, qname.c_str(), kClassIn, kTypeA, &Lookup::answered, &a);
    ares_query(channel, qname.c_str(), kClassIn, kTypeAaaa, &Lookup::answered, &aaaa);
  }

  static void answered(void* arg, int status, int /*timeouts*/, unsigned char* abuf, int alen) {
    auto* half = static_cast<Half*>(arg);
    Lookup* self = half->lookup;
    half->status = status;
    if (status == ARES_SUCCESS) {
      if (half == &self->a) {
        ares_addrttl ttls[kMaxAddresses];
        int n = kMaxAddresses;
        if (ares_parse_a_reply(abuf, alen, nullptr, ttls, &n) == ARES_SUCCESS) {
          for (int i = 0; i < n; ++i) half->add(from_v4(ttls[i].ipaddr), ttls[i].ttl);
        }
      } else {
        ares_addr6ttl ttls[kMaxAddresses];
        int n = kMaxAddresses;
        if (ares_parse_aaaa_reply(abuf, alen, nullptr, ttls, &n) == ARES_SUCCESS) {
          for (int i = 0; i < n; ++i) half->add(from_v6(&ttls[i].ip6addr), ttls[i].ttl);
        }
      }
      // Records, but none of the type asked (a lone CNAME): no data.
      if (half->addresses.empty()) half->status = ARES_ENODATA;
    }
    if (half->status == ARES_ENOTFOUND || half->status == ARES_ENODATA)
      half->negative_ttl_s = soa_negative_ttl_s(abuf, alen);
    if (--self->outstanding > 0) return;
    if (status == ARES_EDESTRUCTION || status == ARES_ECANCELLED || self->a.status == ARES_EDESTRUCTION ||
        self->aaaa.status == ARES_EDESTRUCTION) {
      delete self;
      return;
    }
    self->candidate_done();
  }

  static bool negative(int status) { return status == ARES_ENOTFOUND || status == ARES_ENODATA; }

  void candidate_done() {
    if (!a.addresses.empty() || !aaaa.addresses.empty()) {
      auto out = std::make_shared<ResolvedName>();
      out->name = name;
      out->addresses = a.addresses;
      out->addresses.insert(out->addresses.end(), aaaa.addresses.begin(), aaaa.addresses.end());
      uint64_t ttl_s = UINT64_MAX;
      if (!a.addresses.empty()) ttl_s = std::min(ttl_s, a.ttl_s);
      if (!aaaa.addresses.empty()) ttl_s = std::min(ttl_s, aaaa.ttl_s);
      out->expires_ms = sent_ms + clamp_ms(ttl_s, kMinTtlMs, kMaxTtlMs);
      finish(std::move(out), Outcome::kRecords);
      return;
    }
    if (negative(a.status) && negative(aaaa.status)) {
      if (a.status != ARES_ENOTFOUND && aaaa.status != ARES_ENOTFOUND) all_nxdomain = false;
      for (int64_t t : {a.negative_ttl_s, aaaa.negative_ttl_s})
        if (t >= 0) negative_ttl_s = negative_ttl_s < 0 ? t : std::min(negative_ttl_s, t);
      if (next < candidates.size()) {
        send_next();
        return;
      }
      auto out = std::make_shared<ResolvedName>();
      out->name = name;
      out->error = (all_nxdomain ? "NXDOMAIN for " : "no A or AAAA records for ") + name;
      if (candidates.size() > 1) {
        out->error += " (tried ";
        for (size_t i = 0; i < candidates.size(); ++i) out->error += (i ? ", " : "") + candidates[i];
        out->error += ")";
      }
      uint64_t ms =
          negative_ttl_s >= 0 ? clamp_ms(uint64_t(negative_ttl_s), kMinNegativeMs, kMaxNegativeMs) : kDefaultNegativeMs;
      out->expires_ms = monotonic_ms() + ms;
      finish(std::move(out), Outcome::kNegative);
      return;
    }
    // The servers failed us (rather than saying the name has no records):
    // searching further would only wait longer on the same servers.
    int status = negative(a.status) ? aaaa.status : a.status;
    const std::string& servers = resolver->loop_->servers;
    auto out = std::make_shared<ResolvedName>();
    out->name = name;
    switch (status) {
      case ARES_ETIMEOUT: out->error = "timeout asking " + servers + " about " + name; break;
      case ARES_ECONNREFUSED: out->error = "connection refused by " + servers + " asking about " + name; break;
      case ARES_ESERVFAIL: out->error = "SERVFAIL from " + servers + " for " + name; break;
      case ARES_EREFUSED: out->error = "REFUSED by " + servers + " for " + name; break;
      default: out->error = "DNS lookup of " + name + " failed: " + ares_strerror(status); break;
    }
    finish(std::move(out), Outcome::kServerFailure);
  }

  enum class Outcome { kRecords, kNegative, kServerFailure };
  void finish(std::shared_ptr<ResolvedName> answer, Outcome outcome) {
    resolver->publish(name, entry_id, std::move(answer), outcome == Outcome::kRecords, outcome == Outcome::kNegative);
    delete this;
  }
};

Resolver::Resolver() = default;

Resolver::~Resolver() {
  stop();
  if (wake_fd_ >= 0) ::close(wake_fd_);
}

uint64_t Resolver::monotonic_ms() noexcept {
  return static_cast<uint64_t>(
      std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now().time_since_epoch())
          .count());
}

void Resolver::on_change(std::function<void(const std::string& name)> callback) { on_change_ = std::move(callback); }

size_t Resolver::size() const {
  std::lock_guard<std::mutex> lock(mu_);
  return entries_.size();
}

Parsed<bool> Resolver::start(const Options& options) {
  if (thread_.joinable() || stopping_) return invalid("DNS resolver: already started");
  if (options.tries < 1) return invalid("DNS resolver: tries must be at least 1, not " + std::to_string(options.tries));
  if (options.timeout_ms < 1) return invalid("DNS resolver: timeout must be at least 1 ms");
  if (options.max_names < 1) return invalid("DNS resolver: max names must be at least 1");
  if (options.idle_ms < 1) return invalid("DNS resolver: idle time must be at least 1 ms");
  if (options.ndots < 0) return invalid("DNS resolver: ndots must not be negative");
  std::string csv;
  for (const auto& item : split_list(options.servers)) {
    auto addr = SocketAddr::parse(item);
    if (!addr) return invalid("DNS server " + addr.error());
    csv += (csv.empty() ? "" : ",") + addr->str();
  }
  if (!trim(options.servers).empty() && csv.empty())
    return invalid("DNS servers '" + options.servers + "': expected IP:PORT[,IP:PORT...]");
  auto loop = std::make_unique<Loop>();
  for (const auto& domain : split_list(options.search)) {
    auto ok = check_host_name(domain);
    if (!ok) return invalid("DNS search domain " + ok.error());
    loop->search.push_back(lower(domain));
  }

  std::call_once(ares_init_once, [] { ares_init_status = ares_library_init(ARES_LIB_INIT_ALL); });
  if (ares_init_status != ARES_SUCCESS)
    return invalid(std::string("DNS resolver: c-ares initialisation failed: ") + ares_strerror(ares_init_status));

  ares_options opts{};
  opts.timeout = static_cast<int>(std::min<uint64_t>(options.timeout_ms, 1u << 30));
  opts.tries = options.tries;
  opts.sock_state_cb = &Loop::socket_state;
  opts.sock_state_cb_data = loop.get();
  int mask = ARES_OPT_TIMEOUTMS | ARES_OPT_TRIES | ARES_OPT_SOCK_STATE_CB;
  int status = ares_init_options(&loop->channel, &opts, mask);
  if (status != ARES_SUCCESS) return invalid(std::string("DNS resolver: c-ares channel: ") + ares_strerror(status));
  if (!csv.empty()) {
    status = ares_set_servers_ports_csv(loop->channel, csv.c_str());
    if (status != ARES_SUCCESS) {
      ares_destroy(loop->channel);
      return invalid("DNS servers '" + options.servers + "': " + ares_strerror(status));
    }
    loop->ndots = options.ndots;
  } else {
    // The system's way: resolv.conf's search list and ndots, and /etc/hosts.
    ares_options saved{};
    int saved_mask = 0;
    if (ares_save_options(loop->channel, &saved, &saved_mask) == ARES_SUCCESS) {
      for (int i = 0; i < saved.ndomains; ++i)
        if (saved.domains[i] && check_host_name(saved.domains[i])) loop->search.push_back(lower(saved.domains[i]));
      loop->ndots = saved.ndots;
      ares_destroy_options(&saved);
    }
    loop->hosts_file = true;
  }
  ares_addr_port_node* servers = nullptr;
  if (ares_get_servers_ports(loop->channel, &servers) == ARES_SUCCESS) {
    for (auto* s = servers; s; s = s->next) {
      char host[INET6_ADDRSTRLEN] = "?";
      inet_ntop(s->family, &s->addr, host, sizeof host);
      int port = s->udp_port ? s->udp_port : 53;
      if (!loop->servers.empty()) loop->servers += ", ";
      loop->servers += s->family == AF_INET6 ? "[" + std::string(host) + "]:" + std::to_string(port)
                                             : std::string(host) + ":" + std::to_string(port);
    }
    ares_free_data(servers);
  }
  if (loop->servers.empty()) loop->servers = "the DNS servers";

  if (wake_fd_ < 0) {
    wake_fd_ = ::eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (wake_fd_ < 0) {
      ares_destroy(loop->channel);
      return invalid(std::string("DNS resolver: eventfd: ") + std::strerror(errno));
    }
  }
  LOG_INFO("resolver", "DNS via %s (timeout %llu ms, %d tries, search %s)", loop->servers.c_str(),
           static_cast<unsigned long long>(options.timeout_ms), options.tries,
           loop->search.empty()     ? "none"
           : options.search.empty() ? "from resolv.conf"
                                    : options.search.c_str());
  options_ = options;
  loop_ = std::move(loop);
  {
    std::lock_guard<std::mutex> lock(mu_);
    running_ = true;
  }
  thread_ = std::thread([this] { run(); });
  return true;
}

void Resolver::stop() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (!running_) return;
    stopping_ = true;
    running_ = false;
  }
  published_cv_.notify_all();
  wake();
  if (thread_.joinable()) thread_.join();
  loop_.reset();
}

void Resolver::wake() {
  if (wake_fd_ < 0) return;
  uint64_t one = 1;
  // A full counter already means "wake up": nothing to do on EAGAIN.
  [[maybe_unused]] ssize_t n = ::write(wake_fd_, &one, sizeof one);
}

std::shared_ptr<const ResolvedName> Resolver::touch_locked(const std::string& key, uint64_t now, bool* queued) {
  auto it = entries_.find(key);
  if (it == entries_.end()) {
    // Full: the least recently used name goes. A lookup still in flight
    // for it finds its entry gone (or re-created, with another id) and
    // publishes nothing.
    while (entries_.size() >= options_.max_names && !lru_.empty()) {
      entries_.erase(lru_.back());
      lru_.pop_back();
    }
    lru_.push_front(key);
    Entry e;
    e.id = next_id_++;
    e.last_used_ms = now;
    e.in_flight = true;
    e.lru = lru_.begin();
    pending_.emplace_back(key, e.id);
    entries_.emplace(key, std::move(e));
    *queued = true;
    return nullptr;
  }
  Entry& e = it->second;
  e.last_used_ms = now;
  lru_.splice(lru_.begin(), lru_, e.lru);
  if (!e.in_flight && (!e.answer || now >= e.answer->expires_ms)) {
    e.in_flight = true;
    pending_.emplace_back(key, e.id);
    *queued = true;
  }
  return e.answer;
}

std::shared_ptr<const ResolvedName> Resolver::lookup(std::string_view name) {
  if (auto direct = answer_without_dns(name)) return direct;
  auto valid = check_host_name(name);
  if (!valid) {
    auto out = std::make_shared<ResolvedName>();
    out->name = std::string(name);
    out->error = valid.error();
    out->expires_ms = kNever;
    return out;
  }
  std::string key = lower(name);
  uint64_t now = monotonic_ms();
  bool queued = false;
  bool wake_loop = false;
  std::shared_ptr<const ResolvedName> answer;
  {
    std::lock_guard<std::mutex> lock(mu_);
    answer = touch_locked(key, now, &queued);
    // One wake per batch: the loop drains the whole queue when it wakes.
    wake_loop = queued && pending_.size() == 1;
  }
  if (wake_loop) wake();
  return answer;
}

Parsed<std::vector<SocketAddr>> Resolver::resolve_blocking(std::string_view host, uint16_t port, uint64_t timeout_ms) {
  auto with_port = [port](const std::vector<SocketAddr>& addresses) {
    std::vector<SocketAddr> out = addresses;
    for (auto& a : out) a.set_port(port);
    return out;
  };
  if (auto direct = answer_without_dns(host)) return with_port(direct->addresses);
  auto valid = check_host_name(host);
  if (!valid) return invalid(valid.error());
  std::string key = lower(host);
  uint64_t now = monotonic_ms();
  const uint64_t deadline = now + timeout_ms;
  std::shared_ptr<const ResolvedName> answer;
  std::unique_lock<std::mutex> lock(mu_);
  if (!running_) return invalid("cannot resolve " + key + ": the DNS resolver is not running");
  ++waiters_;
  while (true) {
    bool queued = false;
    answer = touch_locked(key, now, &queued);
    if (queued && pending_.size() == 1) {
      lock.unlock();
      wake();
      lock.lock();
    }
    if (answer && now < answer->expires_ms) break;
    if (!running_ || now >= deadline) break;
    published_cv_.wait_for(lock, std::chrono::milliseconds(deadline - now));
    now = monotonic_ms();
  }
  --waiters_;
  lock.unlock();
  // Stale addresses beat none: the caller can still try them.
  if (answer && !answer->addresses.empty()) return with_port(answer->addresses);
  if (answer && !answer->error.empty()) return invalid(answer->error);
  return invalid("no DNS answer for " + key + " within " + std::to_string(timeout_ms) + " ms");
}

void Resolver::publish(const std::string& key, uint64_t entry_id, std::shared_ptr<ResolvedName> answer, bool success,
                       bool negative) {
  const uint64_t now = monotonic_ms();
  bool changed = false;
  bool notify = false;
  {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = entries_.find(key);
    if (it == entries_.end() || it->second.id != entry_id) return;  // evicted meanwhile
    Entry& e = it->second;
    if (success) {
      e.good_until_ms = answer->expires_ms;
      e.failures = 0;
    } else if (negative) {
      e.good_until_ms = 0;
      e.failures = 0;
    } else {
      e.failures = std::min(e.failures + 1, 16);
      answer->expires_ms = now + std::min<uint64_t>(kMinTtlMs << (e.failures - 1), kMaxBackoffMs);
      if (e.answer && !e.answer->addresses.empty() && now < e.good_until_ms + kMaxStaleMs)
        answer->addresses = e.answer->addresses;
    }
    changed = !e.answer || e.answer->addresses != answer->addresses || e.answer->error != answer->error;
    e.answer = std::move(answer);
    e.in_flight = false;
    e.published_ms = now;
    notify = waiters_ > 0;
    if (success) {
      // Refresh names in use at 3/4 of their TTL, so that the answer
      // workers see is rarely past its expiry. "In use" means looked up
      // after the first quarter of the TTL: the lookup that merely picked
      // up a new answer does not keep a name alive.
      uint64_t ttl = e.answer->expires_ms > now ? e.answer->expires_ms - now : 0;
      loop_->refreshes.push(Loop::Refresh{now + ttl * 3 / 4, key, entry_id, now, now + ttl / 4});
    }
  }
  if (notify) published_cv_.notify_all();
  if (changed) {
    LOG_DEBUG("resolver", "%s: %s", key.c_str(), success ? "new addresses" : "lookup failed");
    if (on_change_) on_change_(key);
  }
}

void Resolver::run() {
  Loop& loop = *loop_;
  std::vector<std::pair<std::string, uint64_t>> batch;
  std::vector<pollfd> fds;
  while (true) {
    batch.clear();
    uint64_t now = monotonic_ms();
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (stopping_) break;
      // Names evicted since they were queued are not worth a query.
      for (auto& item : pending_) {
        auto it = entries_.find(item.first);
        if (it != entries_.end() && it->second.id == item.second) batch.push_back(std::move(item));
      }
      pending_.clear();
      // Due refreshes of names looked up since their answer was published;
      // the others are left to expire (and leave the cache when idle).
      while (!loop.refreshes.empty() && loop.refreshes.top().due_ms <= now) {
        const auto& r = loop.refreshes.top();
        auto it = entries_.find(r.name);
        if (it != entries_.end() && it->second.id == r.entry_id && it->second.published_ms == r.published_ms &&
            !it->second.in_flight && it->second.last_used_ms > r.used_after_ms) {
          it->second.in_flight = true;
          batch.emplace_back(r.name, r.entry_id);
        }
        loop.refreshes.pop();
      }
      if (now >= loop.next_sweep_ms) {
        loop.next_sweep_ms = now + std::min(kSweepEveryMs, options_.idle_ms);
        while (!lru_.empty()) {
          auto it = entries_.find(lru_.back());
          if (it->second.in_flight || now - it->second.last_used_ms < options_.idle_ms) break;
          entries_.erase(it);
          lru_.pop_back();
        }
      }
    }
    for (auto& [name, id] : batch) {
      if (loop.hosts_file) {
        // /etc/hosts first, as the system resolver does.
        auto out = std::make_shared<ResolvedName>();
        out->name = name;
        for (int family : {AF_INET, AF_INET6}) {
          hostent* he = nullptr;
          if (ares_gethostbyname_file(loop.channel, name.c_str(), family, &he) != ARES_SUCCESS || !he) continue;
          for (char** p = he->h_addr_list; *p; ++p)
            out->addresses.push_back(family == AF_INET ? from_v4(*reinterpret_cast<in_addr*>(*p)) : from_v6(*p));
          ares_free_hostent(he);
        }
        if (!out->addresses.empty()) {
          out->expires_ms = now + kHostsFileTtlMs;
          publish(name, id, std::move(out), true, false);
          continue;
        }
      }
      auto* lookup = new Lookup(this, name, id);
      lookup->candidates = loop.candidates(name);
      lookup->send_next();
    }

    fds.clear();
    fds.push_back(pollfd{wake_fd_, POLLIN, 0});
    for (auto [fd, events] : loop.sockets) fds.push_back(pollfd{fd, events, 0});
    now = monotonic_ms();
    uint64_t wait_ms = loop.next_sweep_ms > now ? loop.next_sweep_ms - now : 0;
    if (!loop.refreshes.empty())
      wait_ms = std::min(wait_ms, loop.refreshes.top().due_ms > now ? loop.refreshes.top().due_ms - now : 0);
    timeval max_tv{static_cast<time_t>(wait_ms / 1000), static_cast<suseconds_t>((wait_ms % 1000) * 1000)};
    timeval tv{};
    timeval* t = ares_timeout(loop.channel, &max_tv, &tv);
    int timeout = static_cast<int>(t->tv_sec * 1000 + (t->tv_usec + 999) / 1000);
    int n = ::poll(fds.data(), fds.size(), timeout);
    if (n < 0 && errno != EINTR) {
      LOG_ERROR("resolver", "poll: %s", std::strerror(errno));
      break;
    }
    if (n > 0 && (fds[0].revents & POLLIN)) {
      uint64_t count;
      [[maybe_unused]] ssize_t r = ::read(wake_fd_, &count, sizeof count);
    }
    bool processed = false;
    for (size_t i = 1; n > 0 && i < fds.size(); ++i) {
      if (!fds[i].revents) continue;
      ares_socket_t rfd = (fds[i].revents & (POLLIN | POLLERR | POLLHUP)) ? fds[i].fd : ARES_SOCKET_BAD;
      ares_socket_t wfd = (fds[i].revents & POLLOUT) ? fds[i].fd : ARES_SOCKET_BAD;
      ares_process_fd(loop.channel, rfd, wfd);
      processed = true;
    }
    // Retransmits and timeouts are handled by any call; make one if no
    // socket was ready.
    if (!processed) ares_process_fd(loop.channel, ARES_SOCKET_BAD, ARES_SOCKET_BAD);
  }
  // Every query still in flight is called back with ARES_EDESTRUCTION and
  // frees its lookup; those names stay marked in flight (nothing fetches
  // them any more).
  ares_destroy(loop.channel);
  loop.channel = nullptr;
}

}  // namespace meshd::discovery
