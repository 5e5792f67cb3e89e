// TapEvents: the HTTP requests a worker saw while someone watched it live
// (`meshd-ctl tap`, the admin endpoint's GET /tap), one summary per
// request: method, authority, path, status or error, latency.
//
// Free while nobody taps. The admin thread sets a deadline each time /tap
// is polled (kActiveMs later); a worker asks armed() once per request, one
// relaxed load of a value that is 0 when idle, and reads the clock only
// when it is not. The first worker request to see the deadline passed puts
// it back to 0. Nothing is allocated before the first tap: the ring of
// finished events and the records of requests awaiting their response
// come with the first request captured, and stay (bounded) afterwards.
//
// Threads: a request's record (begin .. end) is the worker's alone. The
// ring is shared with the admin thread under a mutex, touched only while a
// tap is on. Each event gets a process-wide sequence number when it enters
// a ring, taken under that ring's mutex: a reader that reads the last
// number given out first and then locks each ring sees every event up to
// that number that was not overwritten (see collect()).
//
// Bounded, whatever the peers send: kCapacity events per worker (the
// oldest overwritten; a reader learns how many it missed from the gaps in
// the sequence), kMaxInFlight requests captured and awaiting a response
// (more are not captured, and counted), and every string cut to a bound
// (a cut path is marked).
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "base/ascii.h"

namespace meshd::metrics {

// Declared in tcp_stats.h, which includes this header for WorkerStats.
enum class Direction : uint8_t;

// A string of at most N bytes, stored inline (no allocation on the worker).
template <size_t N>
class BoundedString {
 public:
  // Keeps the first N bytes; false when some were cut.
  bool assign(std::string_view s) noexcept {
    size_ = static_cast<uint16_t>(s.size() < N ? s.size() : N);
    for (size_t i = 0; i < size_; ++i) data_[i] = s[i];
    return s.size() <= N;
  }
  // As assign(), ASCII letters lower-cased.
  bool assign_lower(std::string_view s) noexcept {
    bool whole = assign(s);
    for (size_t i = 0; i < size_; ++i) data_[i] = ascii_lower(data_[i]);
    return whole;
  }
  std::string_view view() const noexcept { return {data_, size_}; }

 private:
  static_assert(N <= UINT16_MAX);
  char data_[N] = {};
  uint16_t size_ = 0;
};

struct TapEvent {
  static constexpr size_t kMaxMethod = 32;
  static constexpr size_t kMaxAuthority = 255;  // HttpStats::kMaxAuthorityBytes
  static constexpr size_t kMaxPath = 256;
  static constexpr size_t kMaxDstService = 255;

  uint64_t seq = 0;         // process-wide, in the order events entered a ring; 0 before
  uint64_t unix_ms = 0;     // wall clock when the request head was seen
  uint64_t latency_us = 0;  // to the final response head (TTFB), or to the failure
  Direction direction{};
  bool tls = false;             // the hop is the mesh's mutual TLS
  bool path_truncated = false;  // path holds the first kMaxPath bytes only
  uint16_t status = 0;          // 0: no response came (error says why)
  int16_t grpc_status = -1;     // a gRPC call's status (HTTP/2 trailers); -1: not gRPC
  std::string_view error;       // static storage ("closed", "upstream_reset", ...); empty with a status
  BoundedString<kMaxMethod> method;
  BoundedString<kMaxAuthority> authority;  // lower-cased, as the metrics' label
  BoundedString<kMaxPath> path;            // the request target's path and query
  BoundedString<kMaxDstService> dst_service;
};

// Which events a tap wants; an empty field matches anything.
struct TapFilter {
  std::string authority;  // exactly, ignoring case
  std::string path;       // a prefix of the path
  std::string method;     // exactly (methods are case-sensitive)
  std::optional<Direction> direction;

  bool matches(const TapEvent& e) const noexcept;
};

// What a request's record is made from; the views live only for the call.
struct TapRequest {
  Direction direction{};
  bool tls = false;
  std::string_view method;
  std::string_view authority;
  std::string_view target;  // as sent: origin-form, absolute-form, authority-form or "*"
  std::string_view dst_service;
};

// The path an event shows for a request target: an absolute-form target's
// path and query ("/" when it has none), any other form as it is.
std::string_view tap_path_of(std::string_view target) noexcept;

class TapEvents {
 public:
  static constexpr size_t kCapacity = 512;
  static constexpr size_t kMaxInFlight = 128;
  // How long capture stays on after a poll of /tap.
  static constexpr uint64_t kActiveMs = 5000;

  // A request captured and awaiting its response: the worker's alone.
  struct Record {
    TapEvent event;
    uint64_t start_us = 0;
    Record* next_free = nullptr;
  };

  // sequence: where event numbers come from; null is the process's (tests
  // pass their own to get numbers they can predict).
  explicit TapEvents(std::atomic<uint64_t>* sequence = nullptr) noexcept;
  ~TapEvents();
  TapEvents(const TapEvents&) = delete;
  TapEvents& operator=(const TapEvents&) = delete;

  // --- The admin thread (which holds the workers' stats as const). ---

  // Capture stays on until until_ms (monotonic_ms()).
  void activate(uint64_t until_ms) const noexcept { active_until_.store(until_ms, std::memory_order_relaxed); }

  // --- The owning worker only. ---

  // Whether a tap may be on: the one check per request while idle.
  bool armed() const noexcept { return active_until_.load(std::memory_order_relaxed) != 0; }
  // After armed(): whether it still is at now_ms; disarms a passed deadline.
  bool active(uint64_t now_ms) noexcept;
  // A record for a request seen at now_us (monotonic) and unix_ms (wall);
  // null when kMaxInFlight are awaiting responses or memory ran out (the
  // request is not captured, and counted in uncaptured()).
  Record* begin(const TapRequest& r, uint64_t now_us, uint64_t unix_ms) noexcept;
  // The record's request ended: a final response head came after
  // latency_us (status; a gRPC call's status too, once its stream ended),
  // or it failed (status 0, error: static storage). Its event enters the
  // ring and the record is free again.
  void end(Record* r, uint16_t status, std::string_view error, uint64_t latency_us, int32_t grpc_status = -1) noexcept;

  // --- Any thread. ---

  // The last sequence number given out by `sequence` (by the process's when null).
  static uint64_t last_sequence(const std::atomic<uint64_t>* sequence = nullptr) noexcept;

  // The events held with after < seq <= last, oldest first: the first `max`
  // that match `filter` are appended to `out`, and every one's number, matching
  // or not, to `held` (so that a reader can count what was overwritten). An
  // event numbered at most `last`, read with last_sequence() before this
  // call, is in the ring by the time this call locks it.
  void collect(uint64_t after, uint64_t last, const TapFilter& filter, size_t max, std::vector<TapEvent>* out,
               std::vector<uint64_t>* held) const;
  // Events that entered this ring, ever; requests not captured (too many
  // awaiting responses, or no memory).
  uint64_t pushed() const noexcept;
  uint64_t uncaptured() const noexcept { return uncaptured_.load(std::memory_order_relaxed); }
  // Whether the ring was ever allocated (a tap captured something here).
  bool allocated() const noexcept;

 private:
  void push(const TapEvent& e) noexcept;

  std::atomic<uint64_t>* sequence_;
  mutable std::atomic<uint64_t> active_until_{0};  // monotonic ms; 0: idle
  std::atomic<uint64_t> uncaptured_{0};
  // The worker's: records, lent out by begin().
  std::unique_ptr<Record[]> records_;
  Record* free_ = nullptr;
  // Shared: the ring of finished events.
  mutable std::mutex mu_;
  std::unique_ptr<TapEvent[]> ring_;  // kCapacity, once a first event came
  uint64_t pushed_ = 0;               // the newest is ring_[(pushed_ - 1) % kCapacity]
};

}  // namespace meshd::metrics
