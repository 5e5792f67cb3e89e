// When a proxy asks for its next certificate: a pure schedule, so that a
// fake clock tests it.
//
// A certificate is renewed at about 70% of its life (plus or minus 10%, so
// that proxies started together do not renew together). A failed attempt is
// retried with full-jitter exponential backoff (1 s to 1 min), and never
// later than just before the held certificate expires: a proxy whose
// controller is away keeps trying while its certificate still serves.
#pragma once

#include <algorithm>
#include <cstdint>

namespace meshd::identity {

class RenewalSchedule {
 public:
  static constexpr double kRenewAt = 0.7;
  static constexpr double kJitter = 0.1;
  static constexpr uint64_t kMinBackoffMs = 1000;
  static constexpr uint64_t kMaxBackoffMs = 60'000;
  static constexpr uint64_t kFloorMs = 200;  // no tighter loop than this, whatever the jitter

  // A certificate valid until not_after_ms arrived at now_ms; u is uniform
  // in [0, 1). Returns when to renew it.
  uint64_t on_success(uint64_t now_ms, uint64_t not_after_ms, double u) {
    failures_ = 0;
    uint64_t life = not_after_ms > now_ms ? not_after_ms - now_ms : 0;
    double fraction = kRenewAt + (2 * u - 1) * kJitter;
    return now_ms + std::max<uint64_t>(static_cast<uint64_t>(static_cast<double>(life) * fraction), kFloorMs);
  }

  // An attempt failed at now_ms; held_not_after_ms is the expiry of the
  // certificate still held (0: none). Returns when to try again.
  uint64_t on_failure(uint64_t now_ms, uint64_t held_not_after_ms, double u) {
    uint64_t backoff = kMinBackoffMs << std::min<uint32_t>(failures_, 6);
    backoff = std::min(backoff, kMaxBackoffMs);
    ++failures_;
    uint64_t at = now_ms + std::max<uint64_t>(static_cast<uint64_t>(static_cast<double>(backoff) * u), kFloorMs);
    // One more try just before the held certificate expires, rather than
    // sleeping past it.
    if (held_not_after_ms > now_ms + kFloorMs) at = std::min(at, held_not_after_ms - kFloorMs);
    return at;
  }

  uint32_t failures() const { return failures_; }

 private:
  uint32_t failures_ = 0;
};

}  // namespace meshd::identity
