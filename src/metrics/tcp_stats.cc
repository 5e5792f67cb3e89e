#include "metrics/tcp_stats.h"

#include <cstring>
#include <new>

namespace meshd::metrics {

const char* direction_name(Direction d) noexcept { return d == Direction::kInbound ? "inbound" : "outbound"; }

const char* tcp_error_name(TcpError e) noexcept {
  switch (e) {
    case TcpError::kNone: return "none";
    case TcpError::kClientReset: return "client_reset";
    case TcpError::kUpstreamReset: return "upstream_reset";
    case TcpError::kConnectRefused: return "connect_refused";
    case TcpError::kConnectTimeout: return "connect_timeout";
    case TcpError::kConnectUnreachable: return "connect_unreachable";
    case TcpError::kConnectError: return "connect_error";
    case TcpError::kIdleTimeout: return "idle_timeout";
    case TcpError::kNoOriginalDst: return "no_original_dst";
    case TcpError::kShutdown: return "shutdown";
    case TcpError::kNoEndpoints: return "no_endpoints";
    case TcpError::kResolveFailed: return "resolve_failed";
    case TcpError::kTlsFailed: return "tls_failed";
    case TcpError::kIdentityMismatch: return "identity_mismatch";
    case TcpError::kNoIdentity: return "no_identity";
    case TcpError::kUnauthorized: return "unauthorized";
    case TcpError::kHttpRejected: return "http_rejected";
    case TcpError::kRequestTimeout: return "request_timeout";
    case TcpError::kCount: break;
  }
  return "unknown";
}

const char* refuse_reason_name(RefuseReason r) noexcept {
  return r == RefuseReason::kMaxConnections ? "max_connections" : "unknown";
}

uint64_t DirectionTotals::closed_total() const noexcept {
  uint64_t n = 0;
  for (uint64_t c : closed) n += c;
  return n;
}

uint64_t DirectionTotals::refused_total() const noexcept {
  uint64_t n = 0;
  for (uint64_t c : refused) n += c;
  return n;
}

ClientIdStats::~ClientIdStats() {
  for (size_t i = 0, n = size(); i < n; ++i) {
    entries_[i]->~Entry();
    ::operator delete(entries_[i]);
  }
}

TcpCounters<Counter>& ClientIdStats::intern(std::string_view id) noexcept {
  size_t n = size_.load(std::memory_order_relaxed);  // this thread is the only writer
  for (size_t i = 0; i < n; ++i)
    if (entries_[i]->length == id.size() && std::memcmp(entries_[i]->bytes(), id.data(), id.size()) == 0)
      return entries_[i]->counters;
  if (n == kMaxIds || id.empty()) return other_;
  void* p = ::operator new(sizeof(Entry) + id.size(), std::nothrow);
  if (p == nullptr) return other_;
  auto* e = new (p) Entry();
  e->length = id.size();
  std::memcpy(e->bytes(), id.data(), id.size());
  entries_[n] = e;
  // Published complete: a reader that sees the new size sees the entry.
  size_.store(n + 1, std::memory_order_release);
  return e->counters;
}

}  // namespace meshd::metrics
