// Resolver: DNS (c-ares) for the names the registry does not know, so that
// a proxy without a controller still reaches what the application asked for.
//
// Workers never wait for DNS: lookup() answers from an in-memory cache of
// immutable snapshots (shared_ptr<const ResolvedName>) and, on a miss or an
// expired answer, asks the resolver thread to fetch the name; the worker
// gets nullptr (a miss) or the stale answer meanwhile, and on_change tells
// the owner when the fresh one lands. The mutex guards only the map; every
// query, socket and parse happens on the resolver thread, outside it.
//
// TTLs are honoured: an answer expires after the smallest TTL of its records
// (clamped to [1 s, 5 min], so a zero TTL cannot turn every connection into
// a query); names in use are refreshed at 3/4 of their TTL, so that workers
// rarely see an expired answer. Negative answers (NXDOMAIN, no records) are
// cached for the SOA minimum (RFC 2308), clamped to [1 s, 30 s]. When the
// servers fail (timeout, SERVFAIL, refused), the last good addresses are
// kept, with the error, for up to kMaxStaleMs (serve-stale, RFC 8767), and
// retried with backoff; an authoritative "no such name" drops them at once.
#pragma once

#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <list>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <thread>
#include <unordered_map>
#include <vector>

#include "base/addr.h"
#include "base/result.h"

namespace meshd::discovery {

// One name's answer, immutable once published: workers hold it as long as
// they like while the resolver publishes the next one.
struct ResolvedName {
  std::string name;                   // as looked up, lower-cased
  std::vector<SocketAddr> addresses;  // port 0; A records first, then AAAA, each in answer order
  uint64_t expires_ms = 0;            // monotonic_ms() after which a refresh is due
  std::string error;                  // non-empty when the last lookup failed; names the name
};

class Resolver {
 public:
  struct Options {
    // "" = the system's (/etc/resolv.conf servers, search list and ndots,
    // plus /etc/hosts); else "IP:PORT,..." and nothing else from the system,
    // so that tests are hermetic.
    std::string servers;
    // With servers: the search domains ("a.example,b.example") and ndots.
    std::string search;
    int ndots = 1;
    // The first try's timeout; c-ares doubles it on each later round, so a
    // silent server fails a lookup after about timeout_ms * (2^tries - 1).
    uint64_t timeout_ms = 2000;
    int tries = 2;
    size_t max_names = 10000;
    // A name nobody looked up for this long leaves the cache.
    uint64_t idle_ms = 10 * 60 * 1000;
  };
  // How long addresses outlive failed refreshes (the servers being down).
  static constexpr uint64_t kMaxStaleMs = 5 * 60 * 1000;

  Resolver();
  ~Resolver();
  Resolver(const Resolver&) = delete;
  Resolver& operator=(const Resolver&) = delete;

  // Starts the resolver thread; the error says which option was wrong.
  Parsed<bool> start(const Options& options);
  // Cancels the lookups in flight and joins the thread; the cache stays
  // readable, but nothing is fetched any more.
  void stop();

  // Non-blocking, callable from any thread: the current answer for name, or
  // nullptr while the first lookup is in flight. A miss or an expired answer
  // starts (at most one) lookup in the background; an expired answer keeps
  // being returned until the refresh lands. Literal IPs ("10.0.0.1",
  // "fd00::1", "[fd00::1]") and "localhost" are answered at once, and an
  // invalid name gets an answer whose error says why, without any query.
  std::shared_ptr<const ResolvedName> lookup(std::string_view name);

  // Called on the resolver thread when a name's addresses or error changed
  // (so that the owner can wake its workers). Set it before start().
  void on_change(std::function<void(const std::string& name)> callback);

  // For helper threads (never workers): the addresses of host with port,
  // waiting up to timeout_ms for a fresh answer (stale addresses are better
  // than none when the wait runs out).
  Parsed<std::vector<SocketAddr>> resolve_blocking(std::string_view host, uint16_t port, uint64_t timeout_ms);

  // Monotonic milliseconds, the clock of expires_ms.
  static uint64_t monotonic_ms() noexcept;
  // How many names the cache holds.
  size_t size() const;

 private:
  struct Entry {
    std::shared_ptr<const ResolvedName> answer;
    uint64_t id = 0;  // tells a re-inserted name from the one evicted
    uint64_t last_used_ms = 0;
    uint64_t published_ms = 0;
    uint64_t good_until_ms = 0;  // expiry of the last successful answer
    int failures = 0;            // consecutive server failures, for backoff
    bool in_flight = false;
    std::list<std::string>::iterator lru;
  };
  struct Lookup;
  struct Loop;

  // Under mu_: the entry for key, created (evicting the least recently used
  // name when full) and queued for a lookup when needed. Returns the answer.
  std::shared_ptr<const ResolvedName> touch_locked(const std::string& key, uint64_t now, bool* queued);
  void wake();
  void run();
  void publish(const std::string& key, uint64_t entry_id, std::shared_ptr<ResolvedName> answer, bool success,
               bool negative);

  Options options_;
  std::function<void(const std::string&)> on_change_;
  mutable std::mutex mu_;
  std::condition_variable published_cv_;
  int waiters_ = 0;
  std::unordered_map<std::string, Entry> entries_;
  std::list<std::string> lru_;                             // most recently used first
  std::vector<std::pair<std::string, uint64_t>> pending_;  // (name, entry id) to fetch
  uint64_t next_id_ = 1;
  bool running_ = false;
  bool stopping_ = false;
  int wake_fd_ = -1;
  std::unique_ptr<Loop> loop_;
  std::thread thread_;
};

}  // namespace meshd::discovery
