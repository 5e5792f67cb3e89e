// The DNS resolver against a fake DNS server in the test process (UDP on
// 127.0.0.1, port 0): answers, TTLs, negative answers, silence, bounds; and
// HOST:PORT parsing, which is what --controller names are written as.
#include <arpa/inet.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <catch2/catch.hpp>
#include <chrono>
#include <map>
#include <mutex>
#include <thread>

#include "base/addr.h"
#include "discovery/resolver.h"

using namespace meshd;
using meshd::discovery::ResolvedName;
using meshd::discovery::Resolver;

namespace {

constexpr int kTypeA = 1;
constexpr int kTypeAaaa = 28;

// A tiny authoritative server: A and AAAA from a table, NXDOMAIN (with an
// SOA whose minimum is negative_ttl) for names it does not know, NODATA
// for a known name without records of the type asked, and silence on
// request. It counts every query it receives.
class FakeDns {
 public:
  struct Record {
    std::vector<std::string> v4;
    std::vector<std::string> v6;
    uint32_t ttl = 300;
  };

  FakeDns() {
    fd_ = ::socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    sockaddr_in sin{};
    sin.sin_family = AF_INET;
    sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    REQUIRE(::bind(fd_, reinterpret_cast<sockaddr*>(&sin), sizeof sin) == 0);
    socklen_t len = sizeof sin;
    REQUIRE(::getsockname(fd_, reinterpret_cast<sockaddr*>(&sin), &len) == 0);
    port_ = ntohs(sin.sin_port);
    thread_ = std::thread([this] { run(); });
  }
  ~FakeDns() {
    stop_ = true;
    thread_.join();
    ::close(fd_);
  }

  std::string server() const { return "127.0.0.1:" + std::to_string(port_); }
  void set(const std::string& name, Record r) {
    std::lock_guard<std::mutex> lock(mu_);
    table_[name] = std::move(r);
  }
  void set_silent(bool silent) { silent_ = silent; }
  void set_negative_ttl(uint32_t seconds) { negative_ttl_ = seconds; }
  int queries(const std::string& name, int type) {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = counts_.find({name, type});
    return it == counts_.end() ? 0 : it->second;
  }
  int total_queries() {
    std::lock_guard<std::mutex> lock(mu_);
    int n = 0;
    for (auto& [k, v] : counts_) n += v;
    return n;
  }

 private:
  void run() {
    unsigned char buf[1500];
    while (!stop_) {
      pollfd p{fd_, POLLIN, 0};
      if (::poll(&p, 1, 10) <= 0) continue;
      sockaddr_storage from{};
      socklen_t from_len = sizeof from;
      ssize_t n = ::recvfrom(fd_, buf, sizeof buf, 0, reinterpret_cast<sockaddr*>(&from), &from_len);
      if (n < 17) continue;
      std::vector<unsigned char> out;
      if (!answer(buf, static_cast<size_t>(n), &out)) continue;
      ::sendto(fd_, out.data(), out.size(), 0, reinterpret_cast<sockaddr*>(&from), from_len);
    }
  }

  static void put16(std::vector<unsigned char>* out, uint16_t v) {
    out->push_back(static_cast<unsigned char>(v >> 8));
    out->push_back(static_cast<unsigned char>(v));
  }
  static void put32(std::vector<unsigned char>* out, uint32_t v) {
    put16(out, static_cast<uint16_t>(v >> 16));
    put16(out, static_cast<uint16_t>(v));
  }

  bool answer(const unsigned char* q, size_t n, std::vector<unsigned char>* out) {
    size_t pos = 12;
    std::string name;
    while (pos < n && q[pos] != 0) {
      size_t len = q[pos];
      if (pos + 1 + len >= n) return false;
      if (!name.empty()) name += '.';
      for (size_t i = 0; i < len; ++i) name += static_cast<char>(std::tolower(q[pos + 1 + i]));
      pos += 1 + len;
    }
    if (pos + 5 > n) return false;
    size_t question_end = pos + 5;
    int type = (q[pos + 1] << 8) | q[pos + 2];
    Record record;
    bool known;
    {
      std::lock_guard<std::mutex> lock(mu_);
      counts_[{name, type}]++;
      auto it = table_.find(name);
      known = it != table_.end();
      if (known) record = it->second;
    }
    if (silent_) return false;
    const std::vector<std::string>& values = type == kTypeA ? record.v4 : record.v6;
    uint16_t answers = (type == kTypeA || type == kTypeAaaa) ? static_cast<uint16_t>(values.size()) : 0;
    uint16_t rcode = known ? 0 : 3;
    out->assign(q, q + 2);                                                     // id
    put16(out, static_cast<uint16_t>(0x8080 | (q[2] << 8 & 0x0100) | rcode));  // QR, RD as asked, RA
    put16(out, 1);
    put16(out, answers);
    put16(out, answers ? 0 : 1);  // the SOA of a negative answer
    put16(out, 0);
    out->insert(out->end(), q + 12, q + question_end);
    for (uint16_t i = 0; i < answers; ++i) {
      put16(out, 0xc00c);  // the question's name
      put16(out, static_cast<uint16_t>(type));
      put16(out, 1);
      put32(out, record.ttl);
      unsigned char bytes[16];
      REQUIRE(inet_pton(type == kTypeA ? AF_INET : AF_INET6, values[i].c_str(), bytes) == 1);
      put16(out, type == kTypeA ? 4 : 16);
      out->insert(out->end(), bytes, bytes + (type == kTypeA ? 4 : 16));
    }
    if (!answers) {
      put16(out, 0xc00c);
      put16(out, 6);  // SOA
      put16(out, 1);
      put32(out, 3600);
      put16(out, 22);
      out->push_back(0);  // MNAME: the root, to keep it short
      out->push_back(0);  // RNAME
      for (uint32_t v : {1u, 3600u, 600u, 86400u, negative_ttl_.load()}) put32(out, v);
    }
    return true;
  }

  int fd_ = -1;
  uint16_t port_ = 0;
  std::atomic<bool> stop_{false};
  std::atomic<bool> silent_{false};
  std::atomic<uint32_t> negative_ttl_{2};
  std::mutex mu_;
  std::map<std::string, Record> table_;
  std::map<std::pair<std::string, int>, int> counts_;
  std::thread thread_;
};

uint64_t now_ms() { return Resolver::monotonic_ms(); }

// Polls lookup() until pred holds or within_ms runs out; the last answer.
template <class Pred>
std::shared_ptr<const ResolvedName> lookup_until(Resolver& r, const std::string& name, Pred pred,
                                                 uint64_t within_ms = 2000) {
  uint64_t deadline = now_ms() + within_ms;
  std::shared_ptr<const ResolvedName> answer;
  while (true) {
    answer = r.lookup(name);
    if ((answer && pred(*answer)) || now_ms() >= deadline) return answer;
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
}

std::shared_ptr<const ResolvedName> lookup_any(Resolver& r, const std::string& name) {
  return lookup_until(r, name, [](const ResolvedName&) { return true; });
}

template <class Pred>
bool eventually(Pred pred, uint64_t within_ms = 2000) {
  uint64_t deadline = now_ms() + within_ms;
  while (!pred()) {
    if (now_ms() >= deadline) return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  return true;
}

std::vector<std::string> hosts(const ResolvedName& r) {
  std::vector<std::string> out;
  for (const auto& a : r.addresses) out.push_back(a.host());
  return out;
}

Resolver::Options options_for(const FakeDns& dns) {
  Resolver::Options o;
  o.servers = dns.server();
  o.timeout_ms = 200;
  o.tries = 2;
  return o;
}

}  // namespace

TEST_CASE("resolver: answers A then AAAA records, in answer order", "[resolver]") {
  FakeDns dns;
  dns.set("web.test", {{"10.0.0.1", "10.0.0.2"}, {"fd00::1"}, 300});
  Resolver r;
  std::mutex mu;
  std::vector<std::string> changed;
  r.on_change([&](const std::string& name) {
    std::lock_guard<std::mutex> lock(mu);
    changed.push_back(name);
  });
  REQUIRE(r.start(options_for(dns)));
  uint64_t before = now_ms();
  auto first = r.lookup("Web.Test");  // nothing yet: a miss, and a lookup starts
  auto answer = lookup_any(r, "web.test");
  REQUIRE(answer);
  CHECK(answer->name == "web.test");
  CHECK(answer->error.empty());
  CHECK(hosts(*answer) == std::vector<std::string>{"10.0.0.1", "10.0.0.2", "fd00::1"});
  CHECK(answer->addresses[0].port() == 0);
  CHECK(answer->expires_ms >= before + 299 * 1000);
  CHECK(answer->expires_ms <= now_ms() + 300 * 1000);
  CHECK(dns.queries("web.test", kTypeA) == 1);  // the miss and the polls shared one lookup
  CHECK(dns.queries("web.test", kTypeAaaa) == 1);
  REQUIRE(eventually([&] {
    std::lock_guard<std::mutex> lock(mu);
    return changed == std::vector<std::string>{"web.test"};
  }));
  (void)first;
}

TEST_CASE("resolver: after a 1 s TTL the name is asked again and the change is seen", "[resolver]") {
  FakeDns dns;
  dns.set("short.test", {{"10.0.0.1"}, {}, 1});
  Resolver r;
  REQUIRE(r.start(options_for(dns)));
  auto first = lookup_any(r, "short.test");
  REQUIRE(first);
  REQUIRE(hosts(*first) == std::vector<std::string>{"10.0.0.1"});
  CHECK(first->expires_ms <= now_ms() + 1000);
  dns.set("short.test", {{"10.0.0.9"}, {}, 1});
  // Until the refresh lands, the old answer is served: never a miss.
  bool missed = false;
  auto changed = lookup_until(
      r, "short.test", [&](const ResolvedName& a) { return hosts(a) == std::vector<std::string>{"10.0.0.9"}; }, 3000);
  for (int i = 0; i < 3; ++i) missed |= r.lookup("short.test") == nullptr;
  REQUIRE(changed);
  CHECK(hosts(*changed) == std::vector<std::string>{"10.0.0.9"});
  CHECK_FALSE(missed);
  CHECK(dns.queries("short.test", kTypeA) >= 2);
}

TEST_CASE("resolver: names in use are refreshed before they expire, idle ones are not", "[resolver]") {
  FakeDns dns;
  dns.set("busy.test", {{"10.0.0.1"}, {}, 1});
  dns.set("idle.test", {{"10.0.0.2"}, {}, 1});
  Resolver r;
  REQUIRE(r.start(options_for(dns)));
  auto busy = lookup_any(r, "busy.test");
  auto idle = lookup_any(r, "idle.test");
  REQUIRE(busy);
  REQUIRE(idle);
  // busy.test is looked up again; the refresh goes out at 3/4 of the TTL.
  REQUIRE(eventually([&] {
    r.lookup("busy.test");
    return dns.queries("busy.test", kTypeA) >= 2;
  }));
  CHECK(now_ms() < busy->expires_ms);
  // idle.test was not looked up again: past its TTL, nothing was asked.
  REQUIRE(eventually([&] { return now_ms() > idle->expires_ms + 100; }));
  CHECK(dns.queries("idle.test", kTypeA) == 1);
  // Looked up past its TTL: the expired answer is served while the name is
  // asked again, and the changed answer follows.
  dns.set("idle.test", {{"10.0.0.3"}, {}, 1});
  auto stale = r.lookup("idle.test");
  REQUIRE(stale);
  CHECK(hosts(*stale) == std::vector<std::string>{"10.0.0.2"});
  CHECK(stale->expires_ms <= now_ms());
  auto fresh = lookup_until(r, "idle.test", [](const ResolvedName& a) { return a.expires_ms > now_ms(); });
  REQUIRE(fresh);
  CHECK(hosts(*fresh) == std::vector<std::string>{"10.0.0.3"});
  CHECK(dns.queries("idle.test", kTypeA) == 2);
}

TEST_CASE("resolver: a long TTL sends no second query", "[resolver]") {
  FakeDns dns;
  dns.set("long.test", {{"10.0.0.1"}, {"fd00::1"}, 3600});
  Resolver r;
  REQUIRE(r.start(options_for(dns)));
  REQUIRE(lookup_any(r, "long.test"));
  for (int i = 0; i < 40; ++i) {
    auto a = r.lookup("long.test");
    REQUIRE(a);
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  CHECK(dns.queries("long.test", kTypeA) == 1);
  CHECK(dns.queries("long.test", kTypeAaaa) == 1);
  // Clamped to 5 minutes, whatever the server says.
  CHECK(r.lookup("long.test")->expires_ms <= now_ms() + 300 * 1000);
}

TEST_CASE("resolver: NXDOMAIN and NODATA name the name and are cached for the SOA minimum", "[resolver]") {
  FakeDns dns;
  dns.set_negative_ttl(2);
  dns.set("empty.test", {{}, {}, 300});
  Resolver r;
  REQUIRE(r.start(options_for(dns)));
  uint64_t before = now_ms();
  auto nx = lookup_any(r, "nope.test");
  REQUIRE(nx);
  CHECK(nx->error == "NXDOMAIN for nope.test");
  CHECK(nx->addresses.empty());
  CHECK(nx->expires_ms >= before + 1000);
  CHECK(nx->expires_ms <= now_ms() + 2000);
  for (int i = 0; i < 10; ++i) r.lookup("nope.test");
  CHECK(dns.queries("nope.test", kTypeA) == 1);
  auto nodata = lookup_any(r, "empty.test");
  REQUIRE(nodata);
  CHECK(nodata->error == "no A or AAAA records for empty.test");
  auto blocking = r.resolve_blocking("nope.test", 80, 1000);
  REQUIRE_FALSE(blocking);
  CHECK(blocking.error() == "NXDOMAIN for nope.test");
}

TEST_CASE("resolver: a silent server gives a timeout error within the bound", "[resolver]") {
  FakeDns dns;
  dns.set_silent(true);
  Resolver r;
  auto o = options_for(dns);
  o.timeout_ms = 100;  // 100 ms, then 200 ms: about 300 ms in all
  REQUIRE(r.start(o));
  uint64_t before = now_ms();
  auto answer = lookup_until(r, "quiet.test", [](const ResolvedName& a) { return !a.error.empty(); });
  REQUIRE(answer);
  CHECK(answer->error == "timeout asking " + dns.server() + " about quiet.test");
  CHECK(now_ms() - before < 1500);
  CHECK(dns.queries("quiet.test", kTypeA) == 2);  // one per try
}

TEST_CASE("resolver: a server that is not there is named in the error", "[resolver]") {
  // A UDP port nobody listens on: the kernel answers with ICMP unreachable.
  int fd = ::socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  sockaddr_in sin{};
  sin.sin_family = AF_INET;
  sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  REQUIRE(::bind(fd, reinterpret_cast<sockaddr*>(&sin), sizeof sin) == 0);
  socklen_t len = sizeof sin;
  REQUIRE(::getsockname(fd, reinterpret_cast<sockaddr*>(&sin), &len) == 0);
  ::close(fd);
  const std::string server = "127.0.0.1:" + std::to_string(ntohs(sin.sin_port));
  Resolver r;
  Resolver::Options o;
  o.servers = server;
  o.timeout_ms = 100;
  REQUIRE(r.start(o));
  auto answer = r.resolve_blocking("absent.test", 80, 2000);
  REQUIRE_FALSE(answer);
  // Refused at once, or (if the ICMP error is lost) timed out: either way
  // the error names the server and the name.
  CHECK(answer.error().find(server) != std::string::npos);
  CHECK(answer.error().find("absent.test") != std::string::npos);
}

TEST_CASE("resolver: addresses outlive a failing server, with the error", "[resolver]") {
  FakeDns dns;
  dns.set("flaky.test", {{"10.0.0.1"}, {}, 1});
  Resolver r;
  auto o = options_for(dns);
  o.timeout_ms = 50;
  REQUIRE(r.start(o));
  REQUIRE(lookup_any(r, "flaky.test"));
  dns.set_silent(true);
  auto failed = lookup_until(
      r, "flaky.test", [](const ResolvedName& a) { return !a.error.empty(); }, 3000);
  REQUIRE(failed);
  CHECK(failed->error == "timeout asking " + dns.server() + " about flaky.test");
  CHECK(hosts(*failed) == std::vector<std::string>{"10.0.0.1"});
  auto blocking = r.resolve_blocking("flaky.test", 443, 500);
  REQUIRE(blocking);
  CHECK(blocking->at(0).str() == "10.0.0.1:443");
  // When the server answers again, the error goes.
  dns.set_silent(false);
  auto healed = lookup_until(
      r, "flaky.test", [](const ResolvedName& a) { return a.error.empty(); }, 4000);
  REQUIRE(healed);
  CHECK(healed->error.empty());
}

TEST_CASE("resolver: literal IPs and localhost need no server", "[resolver]") {
  Resolver idle;  // never started: no DNS at all
  for (auto [text, want] : std::vector<std::pair<std::string, std::string>>{
           {"10.1.2.3", "10.1.2.3"}, {"fd00::1", "fd00::1"}, {"[fd00::2]", "fd00::2"}}) {
    INFO(text);
    auto a = idle.lookup(text);
    REQUIRE(a);
    CHECK(a->error.empty());
    CHECK(hosts(*a) == std::vector<std::string>{want});
  }
  auto local = idle.lookup("LocalHost");
  REQUIRE(local);
  CHECK(hosts(*local) == std::vector<std::string>{"127.0.0.1", "::1"});
  auto blocking = idle.resolve_blocking("[fd00::1]", 4190, 10);
  REQUIRE(blocking);
  CHECK(blocking->at(0).str() == "[fd00::1]:4190");

  FakeDns dns;
  Resolver r;
  REQUIRE(r.start(options_for(dns)));
  REQUIRE(r.lookup("192.168.0.1"));
  REQUIRE(r.resolve_blocking("192.168.0.1", 80, 100));
  CHECK(dns.total_queries() == 0);
  CHECK(r.size() == 0);
}

TEST_CASE("resolver: invalid names are refused with a clear message, without a query", "[resolver]") {
  FakeDns dns;
  Resolver r;
  REQUIRE(r.start(options_for(dns)));
  const std::string long_label(64, 'a');
  std::string long_name;
  while (long_name.size() < 254) long_name += "abcdefghi.";
  long_name += "test";
  std::vector<std::pair<std::string, std::string>> cases = {
      {"", "empty host name"},
      {"a..b", "empty label"},
      {".a", "empty label"},
      {"-a.test", "starts or ends with '-'"},
      {"a-.test", "starts or ends with '-'"},
      {long_label + ".test", "longer than 63 characters"},
      {long_name, "longer than 253 characters"},
      {"bad name.test", "' ' is not allowed"},
      {"web/x.test", "'/' is not allowed"},
      {"10.0.0.256", "cannot end in an all-numeric label"},
      {"[web.test]", "'[' is not allowed"},
  };
  for (const auto& [name, why] : cases) {
    INFO(name);
    auto a = r.lookup(name);
    REQUIRE(a);
    INFO(a->error);
    CHECK(a->addresses.empty());
    CHECK(a->error.find(why) != std::string::npos);
    if (!name.empty()) CHECK(a->error.find("'" + name + "' is not a host name") != std::string::npos);
    auto b = r.resolve_blocking(name, 80, 100);
    REQUIRE_FALSE(b);
    CHECK(b.error() == a->error);
  }
  CHECK(check_host_name("under_score.test"));
  CHECK(check_host_name("trailing.dot.test."));
  CHECK(check_host_name(std::string(63, 'a') + ".test"));
  std::this_thread::sleep_for(std::chrono::milliseconds(20));
  CHECK(dns.total_queries() == 0);
  CHECK(r.size() == 0);
}

TEST_CASE("resolver: the cache holds at most max_names, dropping the least recently used", "[resolver]") {
  FakeDns dns;
  dns.set("hot.test", {{"10.0.0.1"}, {}, 300});
  Resolver r;
  auto o = options_for(dns);
  o.max_names = 3;
  REQUIRE(r.start(o));
  REQUIRE(lookup_any(r, "hot.test"));
  for (int i = 0; i < 20; ++i) {
    r.lookup("cold" + std::to_string(i) + ".test");
    REQUIRE(r.lookup("hot.test"));  // used all along: never the one to go
    CHECK(r.size() <= 3);
  }
  CHECK(dns.queries("hot.test", kTypeA) == 1);
  CHECK(r.size() == 3);
}

TEST_CASE("resolver: names nobody looks up leave the cache", "[resolver]") {
  FakeDns dns;
  dns.set("gone.test", {{"10.0.0.1"}, {}, 300});
  Resolver r;
  auto o = options_for(dns);
  o.idle_ms = 100;
  REQUIRE(r.start(o));
  REQUIRE(lookup_any(r, "gone.test"));
  CHECK(r.size() == 1);
  CHECK(eventually([&] { return r.size() == 0; }, 1000));
}

TEST_CASE("resolver: resolve_blocking gives addresses with the port, and times out", "[resolver]") {
  FakeDns dns;
  dns.set("ctl.test", {{"10.0.0.7"}, {"fd00::7"}, 300});
  Resolver r;
  auto o = options_for(dns);
  o.timeout_ms = 2000;  // the server's timeout is longer than the caller's wait
  REQUIRE(r.start(o));
  auto got = r.resolve_blocking("ctl.test", 4190, 1000);
  REQUIRE(got);
  REQUIRE(got->size() == 2);
  CHECK(got->at(0).str() == "10.0.0.7:4190");
  CHECK(got->at(1).str() == "[fd00::7]:4190");

  dns.set_silent(true);
  uint64_t before = now_ms();
  auto slow = r.resolve_blocking("slow.test", 4190, 150);
  uint64_t took = now_ms() - before;
  REQUIRE_FALSE(slow);
  CHECK(slow.error() == "no DNS answer for slow.test within 150 ms");
  CHECK(took >= 140);
  CHECK(took < 1000);

  Resolver stopped;
  auto not_running = stopped.resolve_blocking("ctl.test", 80, 100);
  REQUIRE_FALSE(not_running);
  CHECK(not_running.error().find("not running") != std::string::npos);
}

TEST_CASE("resolver: search domains are tried in resolv.conf order", "[resolver]") {
  FakeDns dns;
  dns.set("web.ns.test", {{"10.0.0.3"}, {}, 300});
  Resolver r;
  auto o = options_for(dns);
  o.search = "ns.test, other.test";
  REQUIRE(r.start(o));
  auto web = lookup_any(r, "web");
  REQUIRE(web);
  CHECK(web->name == "web");
  CHECK(hosts(*web) == std::vector<std::string>{"10.0.0.3"});
  CHECK(dns.queries("web", kTypeA) == 0);  // fewer dots than ndots: the search list first
  auto nx = lookup_any(r, "db");
  REQUIRE(nx);
  CHECK(nx->error == "NXDOMAIN for db (tried db.ns.test, db.other.test, db)");
  auto fqdn = lookup_any(r, "web.ns.test.");
  REQUIRE(fqdn);
  CHECK(hosts(*fqdn) == std::vector<std::string>{"10.0.0.3"});
  CHECK(dns.queries("web.ns.test.ns.test", kTypeA) == 0);
}

TEST_CASE("resolver: bad options are refused, naming what was wrong", "[resolver]") {
  Resolver::Options o;
  o.servers = "dns.example:53";
  auto bad_server = Resolver().start(o);
  REQUIRE_FALSE(bad_server);
  CHECK(bad_server.error().find("'dns.example:53'") != std::string::npos);
  o.servers = "127.0.0.1:53";
  o.tries = 0;
  auto bad_tries = Resolver().start(o);
  REQUIRE_FALSE(bad_tries);
  CHECK(bad_tries.error().find("tries") != std::string::npos);
  o.tries = 2;
  o.search = "ok.test,bad..test";
  auto bad_search = Resolver().start(o);
  REQUIRE_FALSE(bad_search);
  CHECK(bad_search.error().find("'bad..test'") != std::string::npos);
}

TEST_CASE("hostport: names, IPv4 and bracketed IPv6 with a port", "[resolver]") {
  auto name = HostPort::parse("controller.example:4190");
  REQUIRE(name);
  CHECK(name->host == "controller.example");
  CHECK(name->port == 4190);
  CHECK_FALSE(name->literal());
  CHECK(name->str() == "controller.example:4190");
  auto v4 = HostPort::parse("10.0.0.5:4190");
  REQUIRE(v4);
  REQUIRE(v4->literal());
  CHECK(v4->literal()->str() == "10.0.0.5:4190");
  auto v6 = HostPort::parse("[fd00::1]:4190");
  REQUIRE(v6);
  CHECK(v6->host == "fd00::1");
  CHECK(v6->literal()->str() == "[fd00::1]:4190");
  CHECK(v6->str() == "[fd00::1]:4190");
  auto list = HostPort::parse_list("a.example:4190, 10.0.0.2:4190,[fd00::3]:4190");
  REQUIRE(list);
  REQUIRE(list->size() == 3);
  CHECK((*list)[0] == HostPort{"a.example", 4190});
  CHECK((*list)[2].host == "fd00::3");
}

TEST_CASE("hostport: bad HOST:PORT says why", "[resolver]") {
  std::vector<std::pair<std::string, std::string>> cases = {
      {"", "the port is missing"},
      {"controller.example", "the port is missing"},
      {":4190", "the host is missing"},
      {"controller.example:", "is not a port"},
      {"controller.example:0", "is not a port"},
      {"controller.example:70000", "is not a port"},
      {"fd00::1:4190", "write IPv6 as [IPv6]:PORT"},
      {"[fd00::1]4190", "expected [IPv6]:PORT"},
      {"[10.0.0.1]:4190", "is not an IPv6 address"},
      {"[fd00::zz]:4190", "is not an IPv6 address"},
      {"bad_host!:4190", "'!' is not allowed"},
      {"10.0.0.256:4190", "cannot end in an all-numeric label"},
  };
  for (const auto& [text, why] : cases) {
    INFO(text);
    auto r = HostPort::parse(text);
    REQUIRE_FALSE(r);
    CHECK(r.error().find("'" + text + "'") != std::string::npos);
    CHECK(r.error().find(why) != std::string::npos);
  }
  auto empty = HostPort::parse_list(" , ");
  REQUIRE_FALSE(empty);
  CHECK(empty.error().find("expected HOST:PORT") != std::string::npos);
  auto one_bad = HostPort::parse_list("a.example:1,b.example");
  REQUIRE_FALSE(one_bad);
  CHECK(one_bad.error().find("'b.example'") != std::string::npos);
}
