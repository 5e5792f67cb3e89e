#include "metrics/tap_events.h"

#include <algorithm>
#include <functional>
#include <new>

#include "base/ascii.h"
#include "metrics/tcp_stats.h"

namespace meshd::metrics {

namespace {

// The process's event numbers: one sequence for every worker, so that a
// reader merges the rings by number.
std::atomic<uint64_t> g_sequence{0};

}  // namespace

bool TapFilter::matches(const TapEvent& e) const noexcept {
  if (direction && *direction != e.direction) return false;
  if (!method.empty() && e.method.view() != method) return false;
  if (!authority.empty() && !equals_ignore_case(e.authority.view(), authority)) return false;
  // A cut path still holds kMaxPath bytes, and a filter's path is no
  // longer than that (admin/tap_view.cc), so a prefix test stays exact.
  if (!path.empty() && !e.path.view().starts_with(path)) return false;
  return true;
}

std::string_view tap_path_of(std::string_view target) noexcept {
  if (target.starts_with('/') || target == "*") return target;
  auto scheme = target.find("://");
  if (scheme == std::string_view::npos) return target;  // authority-form (CONNECT)
  auto slash = target.find('/', scheme + 3);
  return slash == std::string_view::npos ? std::string_view("/") : target.substr(slash);
}

TapEvents::TapEvents(std::atomic<uint64_t>* sequence) noexcept
    : sequence_(sequence != nullptr ? sequence : &g_sequence) {}

TapEvents::~TapEvents() = default;

bool TapEvents::active(uint64_t now_ms) noexcept {
  uint64_t until = active_until_.load(std::memory_order_relaxed);
  if (until == 0) return false;
  if (now_ms < until) return true;
  // Back to the one-load check. A poll that set a new deadline meanwhile
  // makes this fail, and its deadline stands.
  active_until_.compare_exchange_strong(until, 0, std::memory_order_relaxed);
  return false;
}

TapEvents::Record* TapEvents::begin(const TapRequest& r, uint64_t now_us, uint64_t unix_ms) noexcept {
  if (!records_) {
    records_.reset(new (std::nothrow) Record[kMaxInFlight]);
    if (!records_) {
      uncaptured_.store(uncaptured_.load(std::memory_order_relaxed) + 1, std::memory_order_relaxed);
      return nullptr;
    }
    for (size_t i = kMaxInFlight; i-- > 0;) {
      records_[i].next_free = free_;
      free_ = &records_[i];
    }
  }
  Record* rec = free_;
  if (rec == nullptr) {
    uncaptured_.store(uncaptured_.load(std::memory_order_relaxed) + 1, std::memory_order_relaxed);
    return nullptr;
  }
  free_ = rec->next_free;
  rec->next_free = nullptr;
  rec->start_us = now_us;
  TapEvent& e = rec->event;
  e.seq = 0;
  e.unix_ms = unix_ms;
  e.latency_us = 0;
  e.direction = r.direction;
  e.tls = r.tls;
  e.status = 0;
  e.error = {};
  e.method.assign(r.method);
  e.authority.assign_lower(r.authority);
  e.path_truncated = !e.path.assign(tap_path_of(r.target));
  e.dst_service.assign(r.dst_service);
  return rec;
}

void TapEvents::end(Record* r, uint16_t status, std::string_view error, uint64_t latency_us,
                    int32_t grpc_status) noexcept {
  r->event.status = status;
  r->event.grpc_status = static_cast<int16_t>(status != 0 && grpc_status >= 0 && grpc_status <= 99 ? grpc_status : -1);
  r->event.error = status != 0 ? std::string_view() : error;
  r->event.latency_us = latency_us;
  push(r->event);
  r->next_free = free_;
  free_ = r;
}

void TapEvents::push(const TapEvent& e) noexcept {
  std::lock_guard lock(mu_);
  if (!ring_) {
    ring_.reset(new (std::nothrow) TapEvent[kCapacity]);
    if (!ring_) {
      uncaptured_.store(uncaptured_.load(std::memory_order_relaxed) + 1, std::memory_order_relaxed);
      return;
    }
  }
  TapEvent& slot = ring_[pushed_ % kCapacity];
  slot = e;
  // Numbered under the lock: see the top of tap_events.h.
  slot.seq = sequence_->fetch_add(1, std::memory_order_acq_rel) + 1;
  ++pushed_;
}

uint64_t TapEvents::last_sequence(const std::atomic<uint64_t>* sequence) noexcept {
  return (sequence != nullptr ? sequence : &g_sequence)->load(std::memory_order_acquire);
}

void TapEvents::collect(uint64_t after, uint64_t last, const TapFilter& filter, size_t max, std::vector<TapEvent>* out,
                        std::vector<uint64_t>* held) const {
  std::lock_guard lock(mu_);
  if (!ring_) return;
  size_t count = pushed_ < kCapacity ? static_cast<size_t>(pushed_) : kCapacity;
  size_t matched = 0;
  for (size_t i = 0; i < count; ++i) {
    const TapEvent& e = ring_[(pushed_ - count + i) % kCapacity];
    if (e.seq <= after) continue;
    if (e.seq > last) break;  // numbers grow along the ring
    held->push_back(e.seq);
    if (matched < max && filter.matches(e)) {
      out->push_back(e);
      ++matched;
    }
  }
}

uint64_t TapEvents::pushed() const noexcept {
  std::lock_guard lock(mu_);
  return pushed_;
}

bool TapEvents::allocated() const noexcept {
  std::lock_guard lock(mu_);
  return ring_ != nullptr;
}

}  // namespace meshd::metrics
