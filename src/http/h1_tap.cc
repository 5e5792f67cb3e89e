#include "http/h1_tap.h"

#include <algorithm>
#include <cstring>
#include <new>

#include "base/bytes.h"

namespace meshd::http {

namespace {

constexpr std::string_view kH2Preface = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
constexpr uint8_t kTlsHandshake = 0x16;
constexpr size_t kMaxMethod = 32;

// A request-target byte: anything visible, obs-text included (as the parser).
bool is_target_char(char c) {
  auto u = static_cast<uint8_t>(c);
  return u > 0x20 && u != 0x7f;
}

// What the first client bytes are. *need_more: they are a consistent
// prefix of the h2 preface or of an HTTP/1 request line ("METHOD SP TARGET
// SP HTTP/1.x CRLF", or a bare LF for the parser to refuse), and the answer
// (kH2 or kHttp1) is only the likely one. A consistent prefix of `decide_at`
// bytes is HTTP/1 already: its line is too long, which the head parser then
// reports (414 or 431). A client's first bytes are never empty lines: those
// are opaque.
Protocol sniff(std::span<const char> bytes, uint32_t decide_at, bool* need_more) {
  *need_more = false;
  const size_t n = bytes.size();
  if (n == 0) {
    *need_more = true;
    return Protocol::kHttp1;
  }
  if (static_cast<uint8_t>(bytes[0]) == kTlsHandshake) return Protocol::kTls;
  const size_t m = std::min(n, kH2Preface.size());
  if (std::string_view(bytes.data(), m) == kH2Preface.substr(0, m)) {
    *need_more = m < kH2Preface.size();
    return Protocol::kH2;
  }

  enum { kMethod, kTarget, kVersion } part = kMethod;
  constexpr std::string_view kVersionPrefix = "HTTP/1.";
  size_t len = 0;  // of the current part
  const size_t limit = std::min<size_t>(n, decide_at);
  for (size_t i = 0; i < limit; ++i) {
    const char c = bytes[i];
    switch (part) {
      case kMethod:
        if (c == ' ' && len > 0) {
          part = kTarget;
          len = 0;
        } else if (!is_tchar(c) || ++len > kMaxMethod) {
          return Protocol::kOpaque;
        }
        break;
      case kTarget:
        if (c == ' ' && len > 0) {
          part = kVersion;
          len = 0;
        } else if (!is_target_char(c)) {
          return Protocol::kOpaque;
        } else {
          ++len;
        }
        break;
      case kVersion: {
        // A bare LF ending the line is HTTP/1 too, for the head parser
        // to refuse (400): a lenient server would take it as a request.
        if (len == kVersionPrefix.size() + 1 && c == '\n') return Protocol::kHttp1;
        bool ok = len < kVersionPrefix.size()        ? c == kVersionPrefix[len]
                  : len == kVersionPrefix.size()     ? (c >= '0' && c <= '9')
                  : len == kVersionPrefix.size() + 1 ? c == '\r'
                                                     : c == '\n';
        if (!ok) return Protocol::kOpaque;
        if (++len == kVersionPrefix.size() + 3) return Protocol::kHttp1;  // the line's LF
        break;
      }
    }
  }
  *need_more = limit < decide_at;
  return Protocol::kHttp1;
}

}  // namespace

bool opens_http1_request(std::span<const char> bytes) noexcept {
  bool need_more = false;
  // No length at which to decide: only the line's end does.
  return sniff(bytes, UINT32_MAX, &need_more) == Protocol::kHttp1 && !need_more;
}

bool opens_h2_preface(std::span<const char> bytes) noexcept {
  bool need_more = false;
  return sniff(bytes, UINT32_MAX, &need_more) == Protocol::kH2 && !need_more;
}

// Room for the header lines of one head, on the stack and left
// uninitialized: the parser writes each entry before anything reads it, and
// zeroing 4 KiB per head would cost more than the parse.
struct H1Tap::HeaderStorage {
  alignas(Header) unsigned char raw[sizeof(Header) * kMaxHeaders];
  Header* headers() noexcept { return reinterpret_cast<Header*>(raw); }
};

const char* protocol_name(Protocol p) noexcept {
  switch (p) {
    case Protocol::kHttp1: return "http1";
    case Protocol::kH2: return "h2";
    case Protocol::kTls: return "tls";
    case Protocol::kOpaque: return "opaque";
    case Protocol::kServerFirst: return "server_first";
    case Protocol::kSilent: return "silent";
  }
  return "unknown";
}

H1Tap::H1Tap(const Limits& limits, TapSink* sink) noexcept : limits_(limits), sink_(sink) {
  limits_.max_headers = std::min(limits_.max_headers, kMaxHeaders);
}

H1Tap::~H1Tap() = default;

void H1Tap::reset(TapSink* sink) noexcept {
  sink_ = sink;
  req_state_ = State::kDetect;
  resp_state_ = State::kHead;
  release(req_head_);
  release(resp_head_);
  req_body_ = BodyFramer(Framing{});
  resp_body_ = BodyFramer(Framing{});
  pending_first_ = 0;
  pending_count_ = 0;
  resp_status_ = 0;
  resp_until_close_ = false;
  resp_keep_alive_ = false;
  last_keep_alive_ = false;
  tunnel_pending_ = false;
  stopped_ = false;
  finished_ = false;
  refused_own_ = false;
}

bool H1Tap::active() const noexcept { return !stopped_ && !finished_; }

uint32_t H1Tap::held_bytes() const noexcept { return req_head_.held + resp_head_.held; }

TapVerdict H1Tap::feed(TapSide side, std::span<const char> bytes, uint64_t now_us) noexcept {
  if (!active()) return {TapVerdict::kOpaque};
  return side == TapSide::kRequests ? feed_requests(bytes, now_us) : feed_responses(bytes, now_us);
}

// One span may hold the end of a body, whole pipelined requests and the
// start of the next head: each step takes what is its own and the loop
// goes on with the rest.
TapVerdict H1Tap::feed_requests(std::span<const char> bytes, uint64_t now_us) noexcept {
  while (!bytes.empty()) {
    switch (req_state_) {
      case State::kDetect: {
        TapVerdict v = detect(bytes);
        if (req_state_ == State::kDetect || stopped_) return v;
        break;  // HTTP/1: the same bytes are read as its first head
      }
      case State::kHead: {
        TapVerdict v = request_head(&bytes, now_us);
        if (v.kind != TapVerdict::kPass) return v;
        break;
      }
      case State::kBody: {
        BodyFramer::Step s = req_body_.feed(bytes);
        if (s.error_status != 0) {
          // The refused request is the last pending: the error response
          // answers it when it is the only one and the server has not
          // begun answering (its bytes would come first).
          refused_own_ = pending_count_ == 1 && resp_state_ == State::kHead && resp_head_.held == 0;
          return reject(s.error_status, s.reason, s.message);
        }
        bytes = bytes.subspan(s.consumed);
        if (s.done) request_ended(now_us);
        break;
      }
      case State::kAwaitTunnel:
        // Bytes that are either the tunnel's or a next request, depending
        // on a response still to come: the tap cannot tell which.
        return opaque("upgrade_pipelined");
      case State::kDone: return {TapVerdict::kOpaque};
    }
  }
  return {};
}

TapVerdict H1Tap::detect(std::span<const char> bytes) noexcept {
  // The line and its CRLF; a buffer's worth at most.
  const auto decide_at =
      static_cast<uint32_t>(std::min<uint64_t>(uint64_t{limits_.max_request_line} + 2, limits_.max_head));
  bool need_more = false;
  Protocol p;
  if (req_head_.held == 0) {
    p = sniff(bytes, decide_at, &need_more);
    // TLS is told by its first byte: these bytes are all there is of it.
    if (p == Protocol::kTls) sink_->on_tls(bytes);
    if (need_more) {
      // Shorter than decide_at (or the preface), so it fits.
      req_head_.buffer.reset(new (std::nothrow) char[capacity()]);
      if (req_head_.buffer == nullptr) return opaque("memory");
      std::memcpy(req_head_.buffer.get(), bytes.data(), bytes.size());
      req_head_.held = static_cast<uint32_t>(bytes.size());
      return {};
    }
  } else {
    // The new bytes are appended after those held for the sniff, but held
    // only while still undecided: once HTTP/1 the head reader copies them.
    const size_t k = std::min<size_t>(bytes.size(), capacity() - req_head_.held);
    std::memcpy(req_head_.buffer.get() + req_head_.held, bytes.data(), k);
    p = sniff({req_head_.buffer.get(), req_head_.held + k}, decide_at, &need_more);
    if (need_more) {
      req_head_.held += static_cast<uint32_t>(k);  // k is all of bytes: capacity() >= decide_at
      return {};
    }
  }
  return decided(p);
}

// An HTTP/2 server may send its SETTINGS before it reads the client's
// preface (grpc-go does, and so does nghttp2's server): those bytes are
// held while the client's first bytes can still be the preface, so that
// the client decides. Anything else from the server first is server_first.
bool H1Tap::hold_early_settings(std::span<const char> bytes) noexcept {
  const size_t seen = std::min<size_t>(req_head_.held, kH2Preface.size());
  if (std::string_view(req_head_.buffer.get(), seen) != kH2Preface.substr(0, seen)) return false;
  if (resp_head_.held == 0) {
    // A SETTINGS frame's header, as far as it came: type 4, no flags (not
    // an ACK), stream 0, and a length of whole settings (a few of them).
    const auto* p = reinterpret_cast<const uint8_t*>(bytes.data());
    const size_t n = bytes.size();
    if (n >= 3) {
      const uint32_t length = load_be24(p);
      if (length % 6 != 0 || length > 6 * 16) return false;
    }
    for (size_t i = 3; i < std::min<size_t>(n, 9); ++i)
      if (p[i] != (i == 3 ? 4 : 0)) return false;
  }
  if (resp_head_.held + bytes.size() > capacity()) return false;
  if (resp_head_.buffer == nullptr) resp_head_.buffer.reset(new (std::nothrow) char[capacity()]);
  if (resp_head_.buffer == nullptr) return false;
  std::memcpy(resp_head_.buffer.get() + resp_head_.held, bytes.data(), bytes.size());
  resp_head_.held += static_cast<uint32_t>(bytes.size());
  return true;
}

TapVerdict H1Tap::decided(Protocol p) noexcept {
  // The server spoke first (early_response()), and the client is not the
  // h2 client it was waiting for.
  if (resp_head_.held > 0 && p != Protocol::kH2) p = Protocol::kServerFirst;
  sink_->on_detected(p);
  if (p == Protocol::kHttp1) {
    req_state_ = State::kHead;
    return {};
  }
  stop();
  return {TapVerdict::kOpaque};
}

TapVerdict H1Tap::request_head(std::span<const char>* bytes, uint64_t now_us) noexcept {
  RequestHead head;
  HeaderStorage storage;
  std::span<const char> view = head_view(req_head_, *bytes);
  HeadResult r = parse_request_head(view, limits_, &head, storage.headers(), req_head_.scan_from);
  if (r.status == HeadStatus::kError) return reject(r.error_status, r.reason, r.message);
  uint32_t used = 0;
  if (!keep(req_head_, *bytes, r, &used)) return opaque("memory");
  *bytes = bytes->subspan(used);
  if (r.status == HeadStatus::kIncomplete) return {};

  if (pending_count_ == kMaxPending) {
    release(req_head_);
    return opaque("pipeline_depth");
  }
  // The views point into `view`: the sink reads them before the release.
  void* tag = sink_->on_request(head);
  release(req_head_);
  const bool tunnel = head.upgrade || head.method == Method::kConnect;
  pending_[(pending_first_ + pending_count_) % kMaxPending] = {tag, head.method, tunnel, head.keep_alive, now_us, 0, 0};
  ++pending_count_;
  tunnel_pending_ = tunnel;
  req_body_ = BodyFramer(head.framing, limits_.max_head);
  req_state_ = State::kBody;
  if (req_body_.done()) request_ended(now_us);
  return {};
}

// A request's body ended: the next head follows, unless it asked for a
// tunnel, whose response decides what the client's next bytes are.
// The request is the last pending one, unless its response already came
// whole (a server may answer before the body ends).
void H1Tap::request_ended(uint64_t now_us) noexcept {
  if (pending_count_ > 0) {
    Pending& last = pending_[(pending_first_ + pending_count_ - 1) % kMaxPending];
    if (last.end_us == 0) last.end_us = now_us;
  }
  req_state_ = tunnel_pending_ ? State::kAwaitTunnel : State::kHead;
}

uint64_t H1Tap::awaited_since_us() const noexcept {
  if (!active() || pending_count_ == 0) return 0;
  // Only the front request can have its response head already (its body
  // is being read).
  uint32_t i = pending_first_;
  if (resp_state_ == State::kBody) {
    if (pending_count_ == 1) return 0;
    i = (i + 1) % kMaxPending;
  }
  return pending_[i].end_us;
}

bool H1Tap::awaited_answerable() const noexcept {
  return active() && pending_count_ > 0 && resp_state_ == State::kHead && resp_head_.held == 0 &&
         pending_[pending_first_].end_us != 0;
}

void H1Tap::answered(uint16_t status, uint64_t now_us) noexcept {
  Pending& p = front();
  sink_->on_response(p.tag, status, now_us > p.start_us ? now_us - p.start_us : 0, true, -1);
  pop();
}

TapVerdict H1Tap::feed_responses(std::span<const char> bytes, uint64_t now_us) noexcept {
  if (req_state_ == State::kDetect) {
    if (hold_early_settings(bytes)) return {};
    sink_->on_detected(Protocol::kServerFirst);
    stop();
    return {TapVerdict::kOpaque};
  }
  while (!bytes.empty()) {
    switch (resp_state_) {
      case State::kHead: {
        if (pending_count_ == 0) return opaque("unsolicited");
        TapVerdict v = response_head(&bytes, now_us);
        if (v.kind != TapVerdict::kPass) return v;
        break;
      }
      case State::kBody: {
        BodyFramer::Step s = resp_body_.feed(bytes);
        if (s.error_status != 0) return opaque("bad_response");
        bytes = bytes.subspan(s.consumed);
        if (s.done) response_ended(true);
        break;
      }
      case State::kDetect:
      case State::kAwaitTunnel:
      case State::kDone: return {};  // after the server's end of stream: nothing is expected
    }
  }
  return {};
}

TapVerdict H1Tap::response_head(std::span<const char>* bytes, uint64_t now_us) noexcept {
  Pending& p = front();
  ResponseHead head;
  HeaderStorage storage;
  std::span<const char> view = head_view(resp_head_, *bytes);
  // Never refused: what the tap cannot read still goes to the client.
  HeadResult r = parse_response_head(view, p.method, limits_, &head, storage.headers(), resp_head_.scan_from);
  if (r.status == HeadStatus::kError) return opaque("bad_response");
  uint32_t used = 0;
  if (!keep(resp_head_, *bytes, r, &used)) return opaque("memory");
  *bytes = bytes->subspan(used);
  if (r.status == HeadStatus::kIncomplete) return {};
  release(resp_head_);

  if (head.interim) return {};  // 100 Continue and the like: the final head is still to come
  const uint64_t ttfb = now_us > p.start_us ? now_us - p.start_us : 0;
  if (head.framing.kind == FramingKind::kTunnel) {
    // 101 to a request that did not ask for it switches to a protocol
    // nobody agreed on.
    if (!p.upgrade) return opaque("bad_response");
    const bool connect = p.method == Method::kConnect;
    sink_->on_response(p.tag, head.status, ttfb, true, -1);
    pop();
    return opaque(connect ? "connect" : "upgrade");
  }
  p.ttfb_us = ttfb;
  sink_->on_response_head(p.tag, head.status, ttfb);
  if (p.upgrade && pending_count_ == 1) {
    // Refused, or ignored: the connection stays HTTP/1.
    tunnel_pending_ = false;
    if (req_state_ == State::kAwaitTunnel) req_state_ = State::kHead;
  }
  resp_status_ = head.status;
  resp_until_close_ = head.framing.kind == FramingKind::kUntilClose;
  resp_keep_alive_ = head.keep_alive && !resp_until_close_;
  resp_body_ = BodyFramer(head.framing, limits_.max_head);
  resp_state_ = State::kBody;
  if (resp_body_.done()) response_ended(true);
  return {};
}

void H1Tap::response_ended(bool complete) noexcept {
  Pending& p = front();
  last_keep_alive_ = complete && p.keep_alive && resp_keep_alive_;
  sink_->on_response(p.tag, resp_status_, p.ttfb_us, complete, -1);
  pop();
  resp_state_ = State::kHead;
}

void H1Tap::pop() noexcept {
  pending_first_ = (pending_first_ + 1) % kMaxPending;
  --pending_count_;
}

void H1Tap::end(TapSide side, uint64_t) noexcept {
  if (!active()) return;
  if (side == TapSide::kRequests) {
    // Responses may still come after a half-close; only an undecided start
    // is decided now: those bytes will never be a request.
    if (req_state_ == State::kDetect && req_head_.held > 0) decided(Protocol::kOpaque);
    return;
  }
  if (resp_state_ == State::kBody) response_ended(resp_until_close_);
  while (pending_count_ > 0) {
    sink_->on_failure(front().tag, "closed");
    pop();
  }
  release(resp_head_);
  resp_state_ = State::kDone;
}

void H1Tap::finish(std::string_view error, uint64_t) noexcept {
  if (finished_) return;
  finished_ = true;
  // Every connection is counted once: one that ends undecided is too.
  if (req_state_ == State::kDetect && !stopped_)
    sink_->on_detected(resp_head_.held > 0  ? Protocol::kServerFirst
                       : req_head_.held > 0 ? Protocol::kOpaque
                                            : Protocol::kSilent);
  // Only the front request can be in its response's body; an until-close
  // body that the server did not end (end()) is incomplete too.
  if (pending_count_ > 0 && resp_state_ == State::kBody) response_ended(false);
  while (pending_count_ > 0) {
    sink_->on_failure(front().tag, error);
    pop();
  }
  stop();
}

TapVerdict H1Tap::opaque(std::string_view why) noexcept {
  sink_->on_abandoned(why);
  while (pending_count_ > 0) {
    sink_->on_failure(front().tag, "abandoned");
    pop();
  }
  stop();
  return {TapVerdict::kOpaque};
}

// The requests still pending stay so until finish(): the caller asks
// can_answer() first.
TapVerdict H1Tap::reject(uint16_t status, std::string_view reason, std::string_view message) noexcept {
  sink_->on_rejected(status, reason);
  stop();
  return {TapVerdict::kReject, status, reason, message};
}

// The states stay as they were: finish() still tells a response in its
// body from one not begun.
void H1Tap::stop() noexcept {
  stopped_ = true;
  release(req_head_);
  release(resp_head_);
}

// --- Heads that straddle reads ---
//
// A head wholly inside one span is parsed there. Otherwise its bytes so far
// are copied into the side's buffer, and each later span is appended (as
// much as can still matter: the parser looks at max_head bytes at most) and
// scanned from where the last scan stopped.

uint32_t H1Tap::capacity() const noexcept { return std::max(limits_.max_head, kMinBuffer); }

std::span<const char> H1Tap::head_view(Assembly& a, std::span<const char> bytes) noexcept {
  if (a.held == 0) return bytes;
  const size_t k = std::min<size_t>(bytes.size(), capacity() - a.held);
  std::memcpy(a.buffer.get() + a.held, bytes.data(), k);
  return {a.buffer.get(), a.held + k};
}

// After a parse of head_view(a, bytes): how many of `bytes` the head took
// (*used), holding them when the head is incomplete. False when the buffer
// could not be had.
bool H1Tap::keep(Assembly& a, std::span<const char> bytes, const HeadResult& r, uint32_t* used) noexcept {
  if (r.status == HeadStatus::kDone) {
    *used = r.consumed - a.held;  // the held bytes had no end: it is in `bytes`
    return true;
  }
  // Incomplete: fewer than max_head bytes in all, else it would be 431.
  if (a.held == 0) {
    a.buffer.reset(new (std::nothrow) char[capacity()]);
    if (a.buffer == nullptr) return false;
    std::memcpy(a.buffer.get(), bytes.data(), bytes.size());
  }
  a.held += static_cast<uint32_t>(bytes.size());
  a.scan_from = r.consumed;
  *used = static_cast<uint32_t>(bytes.size());
  return true;
}

void H1Tap::release(Assembly& a) noexcept {
  a.buffer.reset();
  a.held = 0;
  a.scan_from = 0;
}

}  // namespace meshd::http
