// Per-worker HTTP golden metrics: requests, responses by outcome and their
// latency, for each label set (direction, authority, dst_service, tls);
// and what protocol detection saw, what the HTTP tap refused or gave up on.
//
// Same discipline as ClientIdStats (tcp_stats.h): the worker that owns an
// HttpStats is its only writer (relaxed load and store, no locked
// instruction); the admin thread reads. Whatever the admin thread can
// reach is append-only: an entry is filled in, then published by a release
// store of its table's size, and never changes afterwards (only its
// counters do). Nothing is freed before the HttpStats is.
//
// Bounded, whatever the peers send: the authority label comes from the
// clients' Host headers, so a scan with a random Host per request must not
// grow a worker's memory or a scrape. A worker keeps at most
// kMaxAuthorities distinct authorities and kMaxSeries label sets; past
// them (or out of memory) a request counts in its direction's overflow
// series (authority "" and no dst_service), and in
// http_authority_overflow_total, so that totals stay exact.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <string_view>

#include "metrics/histogram.h"

namespace meshd::metrics {

// Declared (with kDirections and direction_name) in tcp_stats.h, which
// includes this header for WorkerStats.
enum class Direction : uint8_t;

// What the first bytes of a connection showed (protocol_detect_total{direction,protocol}).
enum class DetectOutcome : uint8_t { kHttp1, kH2, kTls, kOpaque, kServerFirst, kSilent, kSkipped, kCount };
const char* detect_outcome_name(DetectOutcome p) noexcept;

// Why a request's authority was not kept as its label
// (http_authority_overflow_total{direction,reason}).
enum class AuthorityOverflow : uint8_t {
  kLimit,    // the worker's bound on authorities or label sets, or memory, ran out
  kInvalid,  // not a host[:port]: counted under authority ""
  kCount,
};
const char* authority_overflow_name(AuthorityOverflow r) noexcept;

// One label set (direction, authority, dst_service, tls) and its counters.
// Callers of HttpStats only hold pointers to it; the admin thread reads.
class HttpSeries {
 public:
  // Distinct (status_code, grpc_status, classification, error) tuples kept
  // per series; more count as "other", by classification.
  static constexpr size_t kMaxOutcomes = 32;

  struct Outcome {
    uint16_t status = 0;  // 0: no response came (error says why)
    bool success = false;
    int32_t grpc_status = -1;  // -1: none
    std::string_view error;    // static storage; empty when a response came
    std::atomic<uint64_t> count{0};
  };

  Direction direction() const noexcept { return direction_; }
  bool tls() const noexcept { return tls_; }
  std::string_view authority() const noexcept { return authority_; }      // "" when none, invalid or overflowed
  std::string_view dst_service() const noexcept { return dst_service_; }  // "" when none
  uint64_t requests() const noexcept { return requests_.load(std::memory_order_relaxed); }
  const LatencyHistogram& latency() const noexcept { return latency_; }
  // The outcomes below outcomes() are complete and keep their labels.
  size_t outcomes() const noexcept { return outcome_count_.load(std::memory_order_acquire); }
  const Outcome& outcome(size_t i) const noexcept { return outcomes_[i]; }
  uint64_t other_outcomes(bool success) const noexcept { return other_[success].load(std::memory_order_relaxed); }

 private:
  friend class HttpStats;
  HttpSeries() = default;
  HttpSeries(const HttpSeries&) = delete;
  HttpSeries& operator=(const HttpSeries&) = delete;

  Direction direction_{};
  bool tls_ = false;
  uint32_t hash_ = 0;
  std::string_view authority_;    // an HttpStats authority's bytes
  std::string_view dst_service_;  // this series' own bytes (after the object)
  std::atomic<uint64_t> requests_{0};
  LatencyHistogram latency_;
  std::atomic<size_t> outcome_count_{0};
  Outcome outcomes_[kMaxOutcomes];
  std::atomic<uint64_t> other_[2] = {};  // [success]
};

// Counts by (direction, status, token), the token a static-storage string
// from the parser or the tap: a small set in practice, bounded anyway.
// Past kMaxEntries distinct keys, the direction's other() counts.
class TokenCounts {
 public:
  static constexpr size_t kMaxEntries = 32;
  struct Entry {
    Direction direction{};
    uint16_t status = 0;
    std::string_view token;
    std::atomic<uint64_t> count{0};
  };

  // The owning worker only.
  void add(Direction d, uint16_t status, std::string_view token) noexcept;

  // Any thread, as HttpSeries::outcomes().
  size_t size() const noexcept { return size_.load(std::memory_order_acquire); }
  const Entry& entry(size_t i) const noexcept { return entries_[i]; }
  uint64_t other(Direction d) const noexcept { return other_[static_cast<int>(d)].load(std::memory_order_relaxed); }

 private:
  Entry entries_[kMaxEntries];
  std::atomic<size_t> size_{0};
  std::atomic<uint64_t> other_[2] = {};  // by direction
};

class HttpStats {
 public:
  static constexpr int kDirections = 2;  // metrics::kDirections (checked in http_stats.cc)
  static constexpr size_t kMaxAuthorities = 100;
  static constexpr size_t kMaxSeries = 512;
  static constexpr size_t kMaxAuthorityBytes = 255;  // a DNS name's bound, port included
  static constexpr size_t kMaxDstServiceBytes = 255;

  HttpStats() noexcept;
  ~HttpStats();
  HttpStats(const HttpStats&) = delete;
  HttpStats& operator=(const HttpStats&) = delete;

  // --- The owning worker only. ---

  // The series of a request; never null. The authority is lower-cased;
  // one that is not a host[:port] counts under "". Past the bounds, the
  // overflow series of (d, tls). dst_service is copied.
  HttpSeries* series(Direction d, std::string_view authority, std::string_view dst_service, bool tls) noexcept;
  void request(HttpSeries* s) noexcept;
  // A final response: success when complete, status < 500 and (when
  // given, >= 0) grpc_status is 0. ttfb_us goes to the latency histogram.
  void response(HttpSeries* s, uint16_t status, uint64_t ttfb_us, bool complete, int grpc_status = -1) noexcept;
  // No response came: a failure without status_code; error is a
  // static-storage token ("closed", "reset", ...).
  void failure(HttpSeries* s, std::string_view error) noexcept;
  void detected(Direction d, DetectOutcome p) noexcept;
  // A connection that began with the application's own TLS, by the server
  // name its ClientHello asked for (tls_sni_total{direction,sni}): which
  // TLS hosts the applications talk to. Names share the authorities'
  // bound; sni "" when there was none, it was not a host name, or past
  // the bounds.
  void tls_sni(Direction d, std::string_view sni) noexcept;
  // reason: a static-storage token from the parser.
  void rejected(Direction d, uint16_t status, std::string_view reason) noexcept;
  void abandoned(Direction d, std::string_view reason) noexcept;

  // --- Any thread. ---

  // The interned series below size() are complete (see the top).
  size_t size() const noexcept { return size_.load(std::memory_order_acquire); }
  const HttpSeries& at(size_t i) const noexcept { return *series_[i]; }
  // Also the series of requests with neither authority nor dst_service.
  const HttpSeries& overflow(Direction d, bool tls) const noexcept { return overflow_[static_cast<int>(d)][tls]; }
  uint64_t detections(Direction d, DetectOutcome p) const noexcept {
    return detected_[static_cast<int>(d)][static_cast<int>(p)].load(std::memory_order_relaxed);
  }
  uint64_t authority_overflows(Direction d, AuthorityOverflow r) const noexcept {
    return authority_overflow_[static_cast<int>(d)][static_cast<int>(r)].load(std::memory_order_relaxed);
  }
  struct SniCount {
    Direction direction{};
    std::string_view name;  // an interned authority's bytes, or ""
    std::atomic<uint64_t> count{0};
  };
  static constexpr size_t kMaxSni = 64;
  // The names below sni_size() are complete, as series are.
  size_t sni_size() const noexcept { return sni_size_.load(std::memory_order_acquire); }
  const SniCount& sni_at(size_t i) const noexcept { return sni_[i]; }
  // Connections past kMaxSni, or whose name could not be kept (under sni "").
  uint64_t sni_overflow(Direction d) const noexcept {
    return sni_overflow_[static_cast<int>(d)].load(std::memory_order_relaxed);
  }
  const TokenCounts& rejections() const noexcept { return rejected_; }  // status: the response refused with
  const TokenCounts& abandons() const noexcept { return abandoned_; }   // status: always 0

 private:
  // A distinct authority, owned here; series point into it.
  struct Authority {
    char* bytes = nullptr;
    size_t length = 0;
    uint32_t hash = 0;
  };
  // Open addressing over series_, twice kMaxSeries so that a probe always
  // ends at an empty slot; only the worker reads it.
  static constexpr size_t kSlots = 2 * kMaxSeries;

  HttpSeries* overflowed(Direction d, bool tls, AuthorityOverflow why) noexcept;
  // Interns (copies) the authority when new; null when there is no room.
  const Authority* intern_authority(std::string_view a, uint32_t hash) noexcept;
  HttpSeries* create(Direction d, std::string_view authority, std::string_view dst, bool tls, uint32_t hash) noexcept;
  static void count_outcome(HttpSeries& s, uint16_t status, int32_t grpc_status, bool success,
                            std::string_view error) noexcept;

  HttpSeries* series_[kMaxSeries] = {};
  std::atomic<size_t> size_{0};
  uint16_t slots_[kSlots] = {};  // index into series_ + 1; 0 is empty
  Authority authorities_[kMaxAuthorities];
  size_t authority_count_ = 0;
  HttpSeries overflow_[kDirections][2];  // [direction][tls]
  std::atomic<uint64_t> detected_[kDirections][static_cast<int>(DetectOutcome::kCount)] = {};
  std::atomic<uint64_t> authority_overflow_[kDirections][static_cast<int>(AuthorityOverflow::kCount)] = {};
  TokenCounts rejected_;
  TokenCounts abandoned_;
  SniCount sni_[kMaxSni];
  std::atomic<size_t> sni_size_{0};
  std::atomic<uint64_t> sni_overflow_[kDirections] = {};
};

}  // namespace meshd::metrics
