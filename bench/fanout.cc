// bench-fanout: how long one endpoint change takes to reach every proxy
// stream subscribed to its service, as the controller sees real load.
//
// It speaks the controller's API (src/proto/api.proto) the way proxies do:
// seeds the registry with --services x --endpoints through Register batches,
// opens --streams subscriber streams, each subscribed to --subs services by
// name (one "hot" service that every stream shares, the rest spread evenly
// over the others, as a proxy talks to a handful of services), waits for
// every snapshot, then runs --rounds rounds: change the weight of one hot
// endpoint through a separate API stream and time, per stream, the arrival
// of that update. A round's figure is the time until the LAST stream has it,
// because a mesh converges only when every proxy does.
//
// One thread, epoll, non-blocking sockets: 500 streams cost this tool a few
// milliseconds of parsing per round, which is part of what it measures (the
// controller's sends land while the tool still reads) and is reported as
// the tool's own CPU. Every wait is bounded by --deadline.
#include <fcntl.h>
#include <netinet/in.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cinttypes>
#include <cstdarg>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <string>
#include <utility>
#include <vector>

#include "base/addr.h"
#include "base/flags.h"
#include "base/parse.h"
#include "io/socket.h"
#include "proto/api.pb.h"
#include "proto/frame.h"

namespace {

using namespace meshd;

constexpr const char* kUsage =
    "usage: bench-fanout [flags]\n\n"
    "Seeds a meshd-controller with --services x --endpoints, opens --streams\n"
    "subscriber streams (--subs services each, one of them the hot service every\n"
    "stream shares), then changes one hot endpoint --rounds times and reports how\n"
    "long each change takes to reach the last stream. Prints a table on stderr and\n"
    "one JSON line on stdout.\n\n"
    "flags:\n"
    "  --controller ADDR     controller API (default 127.0.0.1:4190)\n"
    "  --streams N           subscriber streams (default 500)\n"
    "  --services N          services seeded (default 1000)\n"
    "  --endpoints N         endpoints per service (default 10)\n"
    "  --subs N              services each stream subscribes to, the hot one included (default 20)\n"
    "  --unknown-addrs N     extra subscriptions by an address no service has, per stream (default 0):\n"
    "                        a proxy asking about destinations outside the mesh\n"
    "  --rounds N            endpoint changes timed (default 50)\n"
    "  --gap-ms N            pause between rounds (default 20)\n"
    "  --batch N             entries per seeding Register request (default 1000; at most 10000)\n"
    "  --round-timeout-ms N  a round that has not reached every stream by then counts as missed (default 5000)\n"
    "  --deadline S          the whole run, in seconds (default 120)\n"
    "  --owner NAME          owner of the seeded entries (default bench-fanout)\n"
    "  --controller-pid PID  also report that process's CPU time per phase and its RSS (from /proc)\n"
    "  -h/--help\n";

[[noreturn]] void die(const char* fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  std::fputs("bench-fanout: ", stderr);
  std::vfprintf(stderr, fmt, ap);
  std::fputc('\n', stderr);
  va_end(ap);
  std::exit(1);
}

int64_t now_us() {
  timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return int64_t{ts.tv_sec} * 1'000'000 + ts.tv_nsec / 1000;
}

// Linear interpolation between closest ranks (numpy's default), so a p99 of
// 50 rounds is not simply the maximum.
double percentile(std::vector<double> v, double p) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  double rank = p / 100.0 * static_cast<double>(v.size() - 1);
  auto lo = static_cast<size_t>(rank);
  size_t hi = std::min(lo + 1, v.size() - 1);
  return v[lo] + (v[hi] - v[lo]) * (rank - static_cast<double>(lo));
}

std::string ipv4(uint32_t a, uint16_t port) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%u.%u.%u.%u:%u", a >> 24, (a >> 16) & 0xff, (a >> 8) & 0xff, a & 0xff, port);
  return buf;
}

struct Options {
  SocketAddr controller;
  std::string controller_text = "127.0.0.1:4190";
  uint64_t streams = 500, services = 1000, endpoints = 10, subs = 20, unknown_addrs = 0;
  uint64_t rounds = 50, gap_ms = 20, batch = 1000, round_timeout_ms = 5000, deadline_s = 120;
  std::string owner = "bench-fanout";
  uint64_t controller_pid = 0;  // 0: not sampled
};

// The controller's CPU time and memory, from /proc, when its pid is known:
// CPU per phase tells the cost of one change apart from seeding and snapshots.
struct ProcSample {
  double cpu_ms = -1;
  int64_t rss_kb = -1, hwm_kb = -1;
};

ProcSample sample_process(uint64_t pid) {
  ProcSample out;
  if (pid == 0) return out;
  std::string base = "/proc/" + std::to_string(pid);
  if (FILE* f = std::fopen((base + "/stat").c_str(), "r")) {
    char buf[1024];
    size_t n = std::fread(buf, 1, sizeof buf - 1, f);
    std::fclose(f);
    buf[n] = '\0';
    // Fields after "pid (comm) ": state is field 3, utime 14, stime 15.
    if (const char* p = std::strrchr(buf, ')')) {
      unsigned long long utime = 0, stime = 0;
      if (std::sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu", &utime, &stime) == 2)
        out.cpu_ms = static_cast<double>(utime + stime) * 1000.0 / static_cast<double>(sysconf(_SC_CLK_TCK));
    }
  }
  if (FILE* f = std::fopen((base + "/status").c_str(), "r")) {
    char line[256];
    long long kb = 0;
    while (std::fgets(line, sizeof line, f) != nullptr) {
      if (std::sscanf(line, "VmRSS: %lld", &kb) == 1) out.rss_kb = kb;
      if (std::sscanf(line, "VmHWM: %lld", &kb) == 1) out.hwm_kb = kb;
    }
    std::fclose(f);
  }
  return out;
}

// Names and addresses are derived from indices, so every run (and every
// stream) agrees on them without a shared table. Addresses are strings in
// the registry only: nothing ever dials them.
std::string service_name(uint64_t i) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "svc-%04" PRIu64 ".bench", i);
  return buf;
}
std::string endpoint_address(const Options& o, uint64_t service, uint64_t endpoint) {
  return ipv4(static_cast<uint32_t>((10u << 24) + service * o.endpoints + endpoint + 1), 8080);
}
std::string virtual_address(uint64_t service) {
  return ipv4(static_cast<uint32_t>((10u << 24) + (96u << 16) + service + 1), 80);
}
// In TEST-NET-3 (RFC 5737), which no service will ever claim; one distinct
// address per stream and k, as each proxy has its own outside destinations.
std::string unknown_address(uint64_t stream, uint64_t k) {
  return ipv4((203u << 24) + (113u << 8) + static_cast<uint32_t>(k % 250 + 1), static_cast<uint16_t>(1024 + stream));
}

struct Conn {
  int fd = -1;
  bool connected = false;
  bool polling_out = false;
  proto::FrameDecoder decoder;
  std::string out;
  size_t sent = 0;
  uint64_t hot_id = 0;           // request id of this stream's hot subscription
  size_t snapshots_pending = 0;  // subscribe answers still to come
  int64_t got_us = -1;           // when this round's change arrived
};

class Bench {
 public:
  explicit Bench(Options o) : o_(std::move(o)) {}
  void run();

 private:
  void open(Conn& c, uint32_t index);
  void queue(Conn& c, const proto::Request& req);
  void flush(Conn& c, uint32_t index);
  void on_event(uint32_t index, uint32_t events);
  void on_response(uint32_t index, Conn& c, const proto::Response& resp, int64_t at);
  // Runs the loop until done() or until deadline_us; false on time-out.
  bool pump_until(int64_t deadline_us, const std::function<bool()>& done);
  int64_t overall_deadline() const { return start_us_ + static_cast<int64_t>(o_.deadline_s) * 1'000'000; }
  void register_entries(std::vector<proto::Entry> entries, const char* what);
  proto::Entry endpoint_entry(uint64_t service, uint64_t endpoint, uint32_t weight) const;

  Options o_;
  int ep_ = -1;
  int64_t start_us_ = 0;
  std::vector<Conn> conns_;  // [0] is the API stream, then the subscribers
  uint64_t next_id_ = 1;
  uint64_t ack_wanted_ = 0;  // request id whose ack is awaited on the API stream
  int64_t ack_us_ = -1;
  uint32_t round_weight_ = 0;  // the weight that marks this round's change
  std::string hot_address_;
  size_t arrived_ = 0;
  size_t connected_ = 0;
};

void Bench::open(Conn& c, uint32_t index) {
  int fd = socket(o_.controller.family(), SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) die("socket: %s", std::strerror(errno));
  io::set_nodelay(fd);
  if (connect(fd, o_.controller.sa(), o_.controller.len()) != 0 && errno != EINPROGRESS)
    die("cannot connect to %s: %s (is meshd-controller running?)", o_.controller_text.c_str(), std::strerror(errno));
  c.fd = fd;
  epoll_event ev{};
  ev.events = EPOLLIN | EPOLLOUT;  // writable = the connect finished
  ev.data.u32 = index;
  c.polling_out = true;
  if (epoll_ctl(ep_, EPOLL_CTL_ADD, fd, &ev) != 0) die("epoll_ctl: %s", std::strerror(errno));
}

void Bench::queue(Conn& c, const proto::Request& req) { proto::append_frame(req, &c.out); }

void Bench::flush(Conn& c, uint32_t index) {
  if (!c.connected) return;
  while (c.sent < c.out.size()) {
    ssize_t n = ::send(c.fd, c.out.data() + c.sent, c.out.size() - c.sent, MSG_NOSIGNAL);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && errno == EAGAIN) break;
    if (n <= 0) die("stream %u: send to %s: %s", index, o_.controller_text.c_str(), std::strerror(errno));
    c.sent += static_cast<size_t>(n);
  }
  if (c.sent == c.out.size()) {
    c.out.clear();
    c.sent = 0;
  }
  bool want_out = !c.out.empty();
  if (want_out != c.polling_out) {
    epoll_event ev{};
    ev.events = EPOLLIN | (want_out ? EPOLLOUT : 0u);
    ev.data.u32 = index;
    if (epoll_ctl(ep_, EPOLL_CTL_MOD, c.fd, &ev) != 0) die("epoll_ctl: %s", std::strerror(errno));
    c.polling_out = want_out;
  }
}

void Bench::on_event(uint32_t index, uint32_t events) {
  Conn& c = conns_[index];
  if (!c.connected && (events & (EPOLLOUT | EPOLLERR | EPOLLHUP))) {
    int err = 0;
    socklen_t len = sizeof err;
    getsockopt(c.fd, SOL_SOCKET, SO_ERROR, &err, &len);
    if (err != 0)
      die("cannot connect to %s: %s (is meshd-controller running?)", o_.controller_text.c_str(), std::strerror(err));
    c.connected = true;
    ++connected_;
  }
  if (events & (EPOLLIN | EPOLLHUP | EPOLLERR)) {
    char buf[65536];
    while (true) {
      ssize_t n = recv(c.fd, buf, sizeof buf, 0);
      if (n < 0 && errno == EINTR) continue;
      if (n < 0 && errno == EAGAIN) break;
      if (n == 0) die("stream %u: the controller closed it (see its log: too slow a reader, or bad input)", index);
      if (n < 0) die("stream %u: recv: %s", index, std::strerror(errno));
      int64_t at = now_us();
      c.decoder.feed(std::string_view(buf, static_cast<size_t>(n)));
      proto::Response resp;
      while (c.decoder.next_message(&resp)) {
        on_response(index, c, resp, at);
        resp.Clear();
      }
      if (c.decoder.failed()) die("stream %u: %s", index, c.decoder.error().c_str());
      if (static_cast<size_t>(n) < sizeof buf) break;
    }
  }
  flush(c, index);
}

void Bench::on_response(uint32_t index, Conn& c, const proto::Response& resp, int64_t at) {
  if (!resp.error().empty())
    die("stream %u: the controller refused request %" PRIu64 ": %s", index, resp.id(), resp.error().c_str());
  if (index == 0) {
    if (resp.id() == ack_wanted_) ack_us_ = at;
    return;
  }
  if (!resp.has_update()) return;
  const proto::ServiceUpdate& u = resp.update();
  if (u.snapshot()) {
    if (c.snapshots_pending > 0) --c.snapshots_pending;
    return;
  }
  if (resp.id() != c.hot_id || c.got_us >= 0 || round_weight_ == 0) return;
  for (const auto& e : u.upserted()) {
    if (e.address() == hot_address_ && e.weight() == round_weight_) {
      c.got_us = at;
      ++arrived_;
      return;
    }
  }
}

bool Bench::pump_until(int64_t deadline_us, const std::function<bool()>& done) {
  epoll_event events[1024];
  while (!done()) {
    int64_t now = now_us();
    if (now >= deadline_us) return false;
    int timeout_ms = static_cast<int>(std::min<int64_t>((deadline_us - now + 999) / 1000, 1000));
    int n = epoll_wait(ep_, events, 1024, timeout_ms);
    if (n < 0 && errno != EINTR) die("epoll_wait: %s", std::strerror(errno));
    for (int i = 0; i < n; ++i) on_event(events[i].data.u32, events[i].events);
  }
  return true;
}

proto::Entry Bench::endpoint_entry(uint64_t service, uint64_t endpoint, uint32_t weight) const {
  proto::Entry e;
  e.set_service(service_name(service));
  e.set_endpoint(endpoint_address(o_, service, endpoint));
  proto::Endpoint* ep = e.mutable_address_of();
  ep->set_address(e.endpoint());
  ep->set_weight(weight);
  ep->set_meshed(true);
  ep->set_identity("spiffe://bench.local/ns/bench/sa/" + service_name(service));
  (*ep->mutable_labels())["zone"] = endpoint % 2 == 0 ? "zone-a" : "zone-b";
  return e;
}

void Bench::register_entries(std::vector<proto::Entry> entries, const char* what) {
  proto::Request req;
  req.set_id(next_id_++);
  proto::Register* r = req.mutable_register_();
  r->set_owner(o_.owner);
  for (auto& e : entries) *r->add_entries() = std::move(e);
  ack_wanted_ = req.id();
  ack_us_ = -1;
  queue(conns_[0], req);
  flush(conns_[0], 0);
  if (!pump_until(overall_deadline(), [&] { return ack_us_ >= 0; }))
    die("%s: no answer from %s before the deadline (--deadline %" PRIu64 ")", what, o_.controller_text.c_str(),
        o_.deadline_s);
}

void Bench::run() {
  start_us_ = now_us();
  ep_ = epoll_create1(EPOLL_CLOEXEC);
  if (ep_ < 0) die("epoll_create1: %s", std::strerror(errno));
  conns_.resize(o_.streams + 1);
  hot_address_ = endpoint_address(o_, 0, 0);

  // The API stream first: an unreachable controller shows here, at once.
  open(conns_[0], 0);
  int64_t connect_deadline = std::min(overall_deadline(), now_us() + 5'000'000);
  if (!pump_until(connect_deadline, [&] { return conns_[0].connected; }))
    die("cannot connect to %s within 5 s (is meshd-controller running?)", o_.controller_text.c_str());

  // Seed: each service's definition and its endpoints, in batches.
  ProcSample at_start = sample_process(o_.controller_pid);
  int64_t t = now_us();
  std::vector<proto::Entry> batch;
  for (uint64_t s = 0; s < o_.services; ++s) {
    proto::Entry def;
    def.set_service(service_name(s));
    proto::Service* d = def.mutable_definition();
    d->set_name(def.service());
    d->add_ports(8080);
    d->add_virtual_addresses(virtual_address(s));
    d->set_protocol(proto::PROTOCOL_HTTP1);
    batch.push_back(std::move(def));
    for (uint64_t e = 0; e < o_.endpoints; ++e) {
      batch.push_back(endpoint_entry(s, e, 100));
      if (batch.size() >= o_.batch) register_entries(std::exchange(batch, {}), "seeding");
    }
  }
  if (!batch.empty()) register_entries(std::move(batch), "seeding");
  double seed_ms = static_cast<double>(now_us() - t) / 1000;
  ProcSample after_seed = sample_process(o_.controller_pid);

  // Subscriber streams: connect all, then subscribe each to the hot service
  // and to subs-1 others, spread so that every service has about as many
  // subscribers as any other.
  t = now_us();
  for (uint32_t i = 1; i <= o_.streams; ++i) open(conns_[i], i);
  if (!pump_until(overall_deadline(), [&] { return connected_ == conns_.size(); }))
    die("only %zu of %" PRIu64 " streams connected before the deadline", connected_ - 1, o_.streams);
  double connect_ms = static_cast<double>(now_us() - t) / 1000;
  t = now_us();
  for (uint32_t i = 1; i <= o_.streams; ++i) {
    Conn& c = conns_[i];
    proto::Request req;
    for (uint64_t k = 0; k < o_.subs; ++k) {
      req.Clear();
      req.set_id(next_id_++);
      uint64_t s = k == 0 ? 0 : 1 + ((i - 1) * (o_.subs - 1) + (k - 1)) % (o_.services - 1);
      req.mutable_subscribe()->set_service(service_name(s));
      if (k == 0) c.hot_id = req.id();
      queue(c, req);
    }
    for (uint64_t k = 0; k < o_.unknown_addrs; ++k) {
      req.Clear();
      req.set_id(next_id_++);
      req.mutable_subscribe()->set_address(unknown_address(i, k));
      queue(c, req);
    }
    c.snapshots_pending = o_.subs + o_.unknown_addrs;
    flush(c, i);
  }
  auto all_snapshots = [&] {
    for (size_t i = 1; i < conns_.size(); ++i)
      if (conns_[i].snapshots_pending > 0) return false;
    return true;
  };
  if (!pump_until(overall_deadline(), all_snapshots)) die("not every snapshot arrived before the deadline");
  double subscribe_ms = static_cast<double>(now_us() - t) / 1000;
  ProcSample after_subscribe = sample_process(o_.controller_pid);

  rusage ru0{};
  getrusage(RUSAGE_SELF, &ru0);
  std::vector<double> last_ms, ack_ms, stream_ms, median_ms;
  uint64_t missed = 0, done_rounds = 0;
  for (uint64_t r = 1; r <= o_.rounds && now_us() < overall_deadline(); ++r) {
    for (size_t i = 1; i < conns_.size(); ++i) conns_[i].got_us = -1;
    arrived_ = 0;
    // Seeded weights are 100; a distinct weight per round marks this
    // round's update, so a late one from the round before is not counted.
    round_weight_ = static_cast<uint32_t>(101 + r % 9000);
    int64_t t0 = now_us();
    register_entries({endpoint_entry(0, 0, round_weight_)}, "changing the hot endpoint");
    int64_t round_deadline = std::min(overall_deadline(), t0 + static_cast<int64_t>(o_.round_timeout_ms) * 1000);
    bool all = pump_until(round_deadline, [&] { return arrived_ == o_.streams; });
    ++done_rounds;
    ack_ms.push_back(static_cast<double>(ack_us_ - t0) / 1000);
    std::vector<double> per_stream;
    int64_t last = t0;
    for (size_t i = 1; i < conns_.size(); ++i) {
      if (conns_[i].got_us < 0) continue;
      per_stream.push_back(static_cast<double>(conns_[i].got_us - t0) / 1000);
      last = std::max(last, conns_[i].got_us);
    }
    stream_ms.insert(stream_ms.end(), per_stream.begin(), per_stream.end());
    median_ms.push_back(percentile(per_stream, 50));
    if (!all) {
      ++missed;
      std::fprintf(stderr,
                   "bench-fanout: round %" PRIu64 ": %zu of %" PRIu64 " streams got the change within %" PRIu64 " ms\n",
                   r, arrived_, o_.streams, o_.round_timeout_ms);
      round_weight_ = 0;
      continue;
    }
    last_ms.push_back(static_cast<double>(last - t0) / 1000);
    round_weight_ = 0;
    int64_t gap_end = std::min(overall_deadline(), now_us() + static_cast<int64_t>(o_.gap_ms) * 1000);
    pump_until(gap_end, [] { return false; });
  }
  rusage ru1{};
  getrusage(RUSAGE_SELF, &ru1);
  auto cpu_us = [](const rusage& u) {
    return (u.ru_utime.tv_sec + u.ru_stime.tv_sec) * 1'000'000.0 + u.ru_utime.tv_usec + u.ru_stime.tv_usec;
  };
  double tool_cpu_ms = (cpu_us(ru1) - cpu_us(ru0)) / 1000;
  ProcSample after_rounds = sample_process(o_.controller_pid);

  std::fprintf(stderr,
               "bench-fanout: %" PRIu64 " services x %" PRIu64 " endpoints, %" PRIu64 " streams x %" PRIu64
               " subscriptions (+%" PRIu64 " by unknown address), %" PRIu64 " rounds (%" PRIu64 " missed)\n",
               o_.services, o_.endpoints, o_.streams, o_.subs, o_.unknown_addrs, done_rounds, missed);
  std::fprintf(stderr, "  seed %.0f ms, connect %.0f ms, all snapshots %.0f ms\n", seed_ms, connect_ms, subscribe_ms);
  std::fprintf(stderr, "  %-34s %9s %9s %9s\n", "per round, ms", "p50", "p99", "max");
  auto row = [](const char* name, const std::vector<double>& v) {
    std::fprintf(stderr, "  %-34s %9.2f %9.2f %9.2f\n", name, percentile(v, 50), percentile(v, 99),
                 v.empty() ? 0.0 : *std::max_element(v.begin(), v.end()));
  };
  row("change -> ack (incl. fdatasync)", ack_ms);
  row("change -> median stream", median_ms);
  row("change -> LAST stream", last_ms);
  row("change -> any stream (pooled)", stream_ms);
  std::fprintf(stderr, "  tool CPU during the rounds: %.0f ms\n", tool_cpu_ms);
  // CPU time comes in clock ticks (10 ms): per change it is an average over
  // the rounds, and includes the pauses between them (the controller idles).
  double ctl_seed = after_seed.cpu_ms - at_start.cpu_ms, ctl_sub = after_subscribe.cpu_ms - after_seed.cpu_ms,
         ctl_rounds = after_rounds.cpu_ms - after_subscribe.cpu_ms;
  double ctl_per_change = done_rounds > 0 ? ctl_rounds / static_cast<double>(done_rounds) : 0;
  if (o_.controller_pid != 0)
    std::fprintf(stderr,
                 "  controller CPU: seeding %.0f ms, subscribing %.0f ms, rounds %.0f ms (%.2f ms per change)\n"
                 "  controller RSS: %.1f MB after seeding, %.1f MB after subscribing, %.1f MB after the rounds, "
                 "peak (VmHWM) %.1f MB\n",
                 ctl_seed, ctl_sub, ctl_rounds, ctl_per_change, static_cast<double>(after_seed.rss_kb) / 1024,
                 static_cast<double>(after_subscribe.rss_kb) / 1024, static_cast<double>(after_rounds.rss_kb) / 1024,
                 static_cast<double>(after_rounds.hwm_kb) / 1024);

  std::printf("{\"streams\":%" PRIu64 ",\"services\":%" PRIu64 ",\"endpoints\":%" PRIu64 ",\"subs\":%" PRIu64
              ",\"unknown_addrs\":%" PRIu64 ",\"rounds\":%" PRIu64 ",\"missed\":%" PRIu64
              ",\"seed_ms\":%.1f,\"connect_ms\":%.1f,\"subscribe_ms\":%.1f,"
              "\"ack_ms_p50\":%.3f,\"ack_ms_p99\":%.3f,"
              "\"last_ms_p50\":%.3f,\"last_ms_p99\":%.3f,\"last_ms_max\":%.3f,"
              "\"median_ms_p50\":%.3f,\"stream_ms_p50\":%.3f,\"stream_ms_p99\":%.3f,\"tool_cpu_ms\":%.0f",
              o_.streams, o_.services, o_.endpoints, o_.subs, o_.unknown_addrs, done_rounds, missed, seed_ms,
              connect_ms, subscribe_ms, percentile(ack_ms, 50), percentile(ack_ms, 99), percentile(last_ms, 50),
              percentile(last_ms, 99), last_ms.empty() ? 0.0 : *std::max_element(last_ms.begin(), last_ms.end()),
              percentile(median_ms, 50), percentile(stream_ms, 50), percentile(stream_ms, 99), tool_cpu_ms);
  if (o_.controller_pid != 0)
    std::printf(
        ",\"ctl_cpu_ms_seed\":%.0f,\"ctl_cpu_ms_subscribe\":%.0f,\"ctl_cpu_ms_rounds\":%.0f,"
        "\"ctl_cpu_ms_per_change\":%.3f,\"ctl_rss_kb_seeded\":%lld,\"ctl_rss_kb_subscribed\":%lld,"
        "\"ctl_rss_kb_end\":%lld,\"ctl_hwm_kb\":%lld",
        ctl_seed, ctl_sub, ctl_rounds, ctl_per_change, static_cast<long long>(after_seed.rss_kb),
        static_cast<long long>(after_subscribe.rss_kb), static_cast<long long>(after_rounds.rss_kb),
        static_cast<long long>(after_rounds.hwm_kb));
  std::printf("}\n");
  std::fflush(stdout);
  if (missed > 0 || done_rounds < o_.rounds) {
    if (done_rounds < o_.rounds)
      std::fprintf(stderr,
                   "bench-fanout: the deadline (--deadline %" PRIu64 ") ended the run after %" PRIu64 " of %" PRIu64
                   " rounds\n",
                   o_.deadline_s, done_rounds, o_.rounds);
    std::exit(1);
  }
}

// Parses "--flag N" into *out, within [lo, hi].
void number(const char* flag, const std::string& text, uint64_t lo, uint64_t hi, uint64_t* out) {
  auto v = parse_u64(text);
  if (!v || *v < lo || *v > hi)
    die("%s must be a whole number from %" PRIu64 " to %" PRIu64 ", not '%s'", flag, lo, hi, text.c_str());
  *out = *v;
}

}  // namespace

int main(int argc, char** argv) {
  Options o;
  std::string streams = "500", services = "1000", endpoints = "10", subs = "20", unknown = "0", rounds = "50",
              gap = "20", batch = "1000", round_timeout = "5000", deadline = "120", pid = "0";
  bool help = false;
  std::vector<std::string_view> args(argv + 1, argv + argc);
  FlagParser flags;
  flags.value("--controller", "", &o.controller_text)
      .value("--streams", "", &streams)
      .value("--services", "", &services)
      .value("--endpoints", "", &endpoints)
      .value("--subs", "", &subs)
      .value("--unknown-addrs", "", &unknown)
      .value("--rounds", "", &rounds)
      .value("--gap-ms", "", &gap)
      .value("--batch", "", &batch)
      .value("--round-timeout-ms", "", &round_timeout)
      .value("--deadline", "", &deadline)
      .value("--owner", "", &o.owner)
      .value("--controller-pid", "", &pid)
      .toggle("--help", "-h", &help);
  auto rest = flags.parse(args);
  if (!rest) die("%s (see --help)", rest.error().c_str());
  if (help) {
    std::fputs(kUsage, stdout);
    return 0;
  }
  if (!rest->empty()) die("unexpected argument '%s' (see --help)", std::string(rest->front()).c_str());
  auto addr = SocketAddr::parse(o.controller_text);
  if (!addr) die("--controller: %s", addr.error().c_str());
  o.controller = *addr;
  number("--streams", streams, 1, 60000, &o.streams);
  number("--services", services, 2, 100000, &o.services);
  number("--endpoints", endpoints, 1, 1000, &o.endpoints);
  number("--subs", subs, 1, 5000, &o.subs);
  number("--unknown-addrs", unknown, 0, 250, &o.unknown_addrs);
  number("--rounds", rounds, 1, 100000, &o.rounds);
  number("--gap-ms", gap, 0, 60000, &o.gap_ms);
  number("--batch", batch, 1, 10000, &o.batch);
  number("--round-timeout-ms", round_timeout, 1, 600000, &o.round_timeout_ms);
  number("--deadline", deadline, 1, 86400, &o.deadline_s);
  number("--controller-pid", pid, 0, 1u << 30, &o.controller_pid);
  if (o.controller_pid != 0 && sample_process(o.controller_pid).cpu_ms < 0)
    die("--controller-pid %" PRIu64 ": no such process", o.controller_pid);
  if (o.subs > o.services) die("--subs (%" PRIu64 ") is more than --services (%" PRIu64 ")", o.subs, o.services);
  if (o.services * o.endpoints >= (1u << 24)) die("--services x --endpoints must stay under 16M (IPv4 10/8)");
  if (o.owner.empty()) die("--owner must not be empty");

  // One descriptor per stream, plus a few.
  rlimit lim{};
  if (getrlimit(RLIMIT_NOFILE, &lim) == 0 && lim.rlim_cur < o.streams + 64) {
    lim.rlim_cur = std::min<rlim_t>(lim.rlim_max, o.streams + 64);
    setrlimit(RLIMIT_NOFILE, &lim);
    if (lim.rlim_cur < o.streams + 64)
      die("--streams %" PRIu64 " needs more descriptors than RLIMIT_NOFILE allows", o.streams);
  }
  Bench(std::move(o)).run();
  return 0;
}
