#include "metrics/http_stats.h"

#include <algorithm>
#include <cstring>
#include <new>

#include "base/ascii.h"
#include "http/classify.h"
#include "metrics/tcp_stats.h"

namespace meshd::metrics {

static_assert(HttpStats::kDirections == kDirections);
static_assert(HttpStats::kMaxSeries < 0xffff, "slots_ hold a series index + 1 in 16 bits");

const char* detect_outcome_name(DetectOutcome p) noexcept {
  switch (p) {
    case DetectOutcome::kHttp1: return "http1";
    case DetectOutcome::kH2: return "h2";
    case DetectOutcome::kTls: return "tls";
    case DetectOutcome::kOpaque: return "opaque";
    case DetectOutcome::kServerFirst: return "server_first";
    case DetectOutcome::kSilent: return "silent";
    case DetectOutcome::kSkipped: return "skipped";
    case DetectOutcome::kCount: break;
  }
  return "unknown";
}

const char* authority_overflow_name(AuthorityOverflow r) noexcept {
  switch (r) {
    case AuthorityOverflow::kLimit: return "limit";
    case AuthorityOverflow::kInvalid: return "invalid";
    case AuthorityOverflow::kCount: break;
  }
  return "unknown";
}

namespace {

void bump(std::atomic<uint64_t>& c) noexcept { SingleWriter::add(c, 1); }

uint32_t fnv1a(uint32_t h, std::string_view bytes) noexcept {
  for (unsigned char c : bytes) h = (h ^ c) * 16777619u;
  return h;
}
constexpr uint32_t kFnvBasis = 2166136261u;

bool is_hex(char c) noexcept { return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F'); }
bool is_digit(char c) noexcept { return c >= '0' && c <= '9'; }
bool is_alnum(char c) noexcept { return is_digit(c) || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z'); }

// RFC 3986 reg-name: unreserved / pct-encoded / sub-delims (an IPv4
// address is one too). Not empty.
bool valid_reg_name(std::string_view h) noexcept {
  if (h.empty()) return false;
  for (size_t i = 0; i < h.size(); ++i) {
    char c = h[i];
    if (is_alnum(c) || std::string_view("-._~!$&'()*+,;=").find(c) != std::string_view::npos) continue;
    if (c == '%' && i + 2 < h.size() && is_hex(h[i + 1]) && is_hex(h[i + 2])) {
      i += 2;
      continue;
    }
    return false;
  }
  return true;
}

// "[" IPv6 "]": hex digits and colons (a dotted IPv4 tail allowed); no
// zone, no IPvFuture.
bool valid_ipv6_literal(std::string_view h) noexcept {
  if (h.size() < 4 || h.front() != '[' || h.back() != ']') return false;
  bool colon = false;
  for (char c : h.substr(1, h.size() - 2)) {
    if (c == ':')
      colon = true;
    else if (!is_hex(c) && c != '.')
      return false;
  }
  return colon;
}

// Lower-cases a host[:port] into out (kMaxAuthorityBytes); its length, or
// -1 when it is not one. An empty authority is a valid empty one.
int normalize_authority(std::string_view a, char* out) noexcept {
  if (a.size() > HttpStats::kMaxAuthorityBytes) return -1;
  if (a.empty()) return 0;
  size_t host_end = a.find(a.front() == '[' ? ']' : ':');
  if (a.front() == '[') {
    if (host_end == std::string_view::npos) return -1;
    ++host_end;
  }
  host_end = std::min(host_end, a.size());
  std::string_view host = a.substr(0, host_end), port = a.substr(host_end);
  if (!(host.front() == '[' ? valid_ipv6_literal(host) : valid_reg_name(host))) return -1;
  if (!port.empty()) {
    if (port.front() != ':') return -1;
    port.remove_prefix(1);
    if (port.empty() || port.size() > 5) return -1;
    for (char c : port)
      if (!is_digit(c)) return -1;
  }
  for (size_t i = 0; i < a.size(); ++i) out[i] = ascii_lower(a[i]);
  return static_cast<int>(a.size());
}

// Tokens have static storage, so the same token is nearly always the same
// pointer; the bytes decide.
bool same_token(std::string_view a, std::string_view b) noexcept {
  return a.size() == b.size() && (a.empty() || a.data() == b.data() || std::memcmp(a.data(), b.data(), a.size()) == 0);
}

}  // namespace

void TokenCounts::add(Direction d, uint16_t status, std::string_view token) noexcept {
  if (token.empty()) token = "unknown";
  size_t n = size_.load(std::memory_order_relaxed);  // this thread is the only writer
  for (size_t i = 0; i < n; ++i) {
    Entry& e = entries_[i];
    if (e.direction == d && e.status == status && same_token(e.token, token)) return bump(e.count);
  }
  if (n == kMaxEntries) return bump(other_[static_cast<int>(d)]);
  Entry& e = entries_[n];
  e.direction = d;
  e.status = status;
  e.token = token;
  e.count.store(1, std::memory_order_relaxed);
  size_.store(n + 1, std::memory_order_release);
}

HttpStats::HttpStats() noexcept {
  for (int d = 0; d < kDirections; ++d)
    for (int tls = 0; tls < 2; ++tls) {
      overflow_[d][tls].direction_ = static_cast<Direction>(d);
      overflow_[d][tls].tls_ = tls != 0;
    }
}

HttpStats::~HttpStats() {
  for (size_t i = 0, n = size(); i < n; ++i) {
    series_[i]->~HttpSeries();
    ::operator delete(series_[i]);
  }
  for (size_t i = 0; i < authority_count_; ++i) delete[] authorities_[i].bytes;
}

HttpSeries* HttpStats::overflowed(Direction d, bool tls, AuthorityOverflow why) noexcept {
  bump(authority_overflow_[static_cast<int>(d)][static_cast<int>(why)]);
  return &overflow_[static_cast<int>(d)][tls];
}

HttpSeries* HttpStats::series(Direction d, std::string_view authority, std::string_view dst_service,
                              bool tls) noexcept {
  char folded[kMaxAuthorityBytes];
  int length = normalize_authority(authority, folded);
  bool invalid = length < 0;
  std::string_view a(folded, invalid ? 0 : static_cast<size_t>(length));
  AuthorityOverflow why = invalid ? AuthorityOverflow::kInvalid : AuthorityOverflow::kLimit;
  // An invalid authority is counted once per request, whichever series the
  // request then lands in.
  auto kept = [&](HttpSeries* s) {
    if (invalid) bump(authority_overflow_[static_cast<int>(d)][static_cast<int>(why)]);
    return s;
  };
  if (dst_service.size() > kMaxDstServiceBytes) return overflowed(d, tls, why);
  // The overflow series' own labels: no second series with them.
  if (a.empty() && dst_service.empty()) return kept(&overflow_[static_cast<int>(d)][tls]);

  uint32_t ha = fnv1a(kFnvBasis, a);
  const char key[2] = {static_cast<char>(d), static_cast<char>(tls)};
  uint32_t h = fnv1a(fnv1a(ha, dst_service), {key, 2});
  size_t slot = h & (kSlots - 1);
  for (; slots_[slot] != 0; slot = (slot + 1) & (kSlots - 1)) {
    HttpSeries* s = series_[slots_[slot] - 1];
    if (s->hash_ == h && s->direction_ == d && s->tls_ == tls && s->authority_ == a && s->dst_service_ == dst_service)
      return kept(s);
  }

  // New: slot is where it goes. The authority is interned before the
  // series is created, so that the series can point at its bytes.
  std::string_view interned;
  if (!a.empty()) {
    const Authority* ia = intern_authority(a, ha);
    if (ia == nullptr) return overflowed(d, tls, why);
    interned = {ia->bytes, ia->length};
  }
  size_t index = size_.load(std::memory_order_relaxed);  // this thread is the only writer
  HttpSeries* s = create(d, interned, dst_service, tls, h);
  if (s == nullptr) return overflowed(d, tls, why);
  slots_[slot] = static_cast<uint16_t>(index + 1);
  return kept(s);
}

const HttpStats::Authority* HttpStats::intern_authority(std::string_view a, uint32_t hash) noexcept {
  for (size_t i = 0; i < authority_count_; ++i) {
    const Authority& e = authorities_[i];
    if (e.hash == hash && e.length == a.size() && std::memcmp(e.bytes, a.data(), a.size()) == 0) return &e;
  }
  if (authority_count_ == kMaxAuthorities) return nullptr;
  char* bytes = new (std::nothrow) char[a.size()];
  if (bytes == nullptr) return nullptr;
  std::memcpy(bytes, a.data(), a.size());
  Authority& e = authorities_[authority_count_++];
  e.bytes = bytes;
  e.length = a.size();
  e.hash = hash;
  return &e;
}

HttpSeries* HttpStats::create(Direction d, std::string_view authority, std::string_view dst, bool tls,
                              uint32_t hash) noexcept {
  size_t n = size_.load(std::memory_order_relaxed);  // this thread is the only writer
  if (n == kMaxSeries) return nullptr;
  // One allocation: the series, then dst_service's bytes.
  void* p = ::operator new(sizeof(HttpSeries) + dst.size(), std::nothrow);
  if (p == nullptr) return nullptr;
  auto* s = new (p) HttpSeries();
  char* bytes = reinterpret_cast<char*>(s + 1);
  if (!dst.empty()) std::memcpy(bytes, dst.data(), dst.size());
  s->direction_ = d;
  s->tls_ = tls;
  s->hash_ = hash;
  s->authority_ = authority;
  s->dst_service_ = {bytes, dst.size()};
  series_[n] = s;
  // Published complete: a reader that sees the new size sees the series.
  size_.store(n + 1, std::memory_order_release);
  return s;
}

void HttpStats::request(HttpSeries* s) noexcept {
  if (s != nullptr) bump(s->requests_);
}

void HttpStats::count_outcome(HttpSeries& s, uint16_t status, int32_t grpc_status, bool success,
                              std::string_view error) noexcept {
  size_t n = s.outcome_count_.load(std::memory_order_relaxed);  // this thread is the only writer
  for (size_t i = 0; i < n; ++i) {
    HttpSeries::Outcome& o = s.outcomes_[i];
    if (o.status == status && o.grpc_status == grpc_status && o.success == success && same_token(o.error, error))
      return bump(o.count);
  }
  if (n == HttpSeries::kMaxOutcomes) return bump(s.other_[success]);
  HttpSeries::Outcome& o = s.outcomes_[n];
  o.status = status;
  o.grpc_status = grpc_status;
  o.success = success;
  o.error = error;
  o.count.store(1, std::memory_order_relaxed);
  s.outcome_count_.store(n + 1, std::memory_order_release);
}

void HttpStats::response(HttpSeries* s, uint16_t status, uint64_t ttfb_us, bool complete, int grpc_status) noexcept {
  if (s == nullptr) return;
  if (grpc_status < 0) grpc_status = -1;
  const bool success = http::response_succeeded(status, complete, grpc_status);
  s->latency_.observe_us(ttfb_us);
  count_outcome(*s, status, grpc_status, success, {});
}

void HttpStats::failure(HttpSeries* s, std::string_view error) noexcept {
  if (s == nullptr) return;
  count_outcome(*s, 0, -1, false, error.empty() ? "unknown" : error);
}

void HttpStats::detected(Direction d, DetectOutcome p) noexcept {
  if (p < DetectOutcome::kCount) bump(detected_[static_cast<int>(d)][static_cast<int>(p)]);
}

void HttpStats::tls_sni(Direction d, std::string_view sni) noexcept {
  // A DNS host name (RFC 6066): no port, no address literal.
  char folded[kMaxAuthorityBytes];
  int length = sni.find_first_of(":[") == std::string_view::npos ? normalize_authority(sni, folded) : -1;
  std::string_view name(folded, length > 0 ? static_cast<size_t>(length) : 0);
  size_t n = sni_size_.load(std::memory_order_relaxed);  // this thread is the only writer
  for (size_t i = 0; i < n; ++i)
    if (sni_[i].direction == d && sni_[i].name == name) return bump(sni_[i].count);
  std::string_view interned;
  if (!name.empty()) {
    const Authority* a = n < kMaxSni ? intern_authority(name, fnv1a(kFnvBasis, name)) : nullptr;
    if (a == nullptr) return bump(sni_overflow_[static_cast<int>(d)]);
    interned = {a->bytes, a->length};
  } else if (n == kMaxSni) {
    return bump(sni_overflow_[static_cast<int>(d)]);
  }
  sni_[n].direction = d;
  sni_[n].name = interned;
  sni_[n].count.store(1, std::memory_order_relaxed);
  sni_size_.store(n + 1, std::memory_order_release);
}

void HttpStats::rejected(Direction d, uint16_t status, std::string_view reason) noexcept {
  rejected_.add(d, status, reason);
}

void HttpStats::abandoned(Direction d, std::string_view reason) noexcept { abandoned_.add(d, 0, reason); }

}  // namespace meshd::metrics
