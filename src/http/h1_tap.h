// H1Tap: HTTP/1 seen from inside a TCP relay. The relay forwards bytes
// verbatim, both directions; the tap reads them as they pass, pairs each
// request with its response (FIFO: pipelining comes free) and tells a sink
// what happened, for the golden metrics. It never buffers a message to
// forward it: only the bytes of a head that straddles reads are copied,
// into a buffer of the tap's own (at most Limits::max_head per side), so
// that the head can be parsed whole.
//
// It can refuse. A request the application might parse differently from us
// (request smuggling: CL with TE, bare LF, obs-fold, a bad chunk size) or
// that is too large (414, 431) answers kReject for the span that shows it,
// and that span must not be forwarded. Forwarding the earlier part of a
// head is safe: find_head_end() reports a bare LF or an overlong line as
// soon as it is read, so nothing forwarded before the verdict can complete
// a head in any parser (only CRLFCRLF ends one, and it arrives in the span
// judged).
//
// It never blocks what it does not understand. The first client bytes
// decide the protocol: an HTTP/1.x request line taps; the h2 preface, a TLS
// record or anything else answers kOpaque, as does a server that speaks
// first (unless what it says is an h2 server's SETTINGS: then the client's
// first bytes still decide). A response it cannot parse, more pipelined requests than it
// tracks, or a tunnel after 101 / CONNECT 2xx also answer kOpaque: from
// then on the connection is plain TCP to the tap's owner, and every byte
// keeps flowing.
//
// Pure: no I/O, no clock (the caller passes the time), no exceptions. One
// allocation at most per side, and only while a head straddles reads.
#pragma once

#include <cstdint>
#include <memory>
#include <span>
#include <string_view>

#include "http/h1_body.h"
#include "http/h1_parse.h"
#include "http/message.h"

namespace meshd::http {

// What the first client bytes (or a server speaking first) showed.
enum class Protocol : uint8_t {
  kHttp1,        // an HTTP/1.0 or 1.1 request line: tapped
  kH2,           // the HTTP/2 connection preface (prior knowledge h2c)
  kTls,          // a TLS handshake record (the application's own TLS)
  kOpaque,       // anything else
  kServerFirst,  // the server sent bytes before the client did
  kSilent,       // the connection ended before either side sent a byte (a TCP health check, a port scan)
};
const char* protocol_name(Protocol p) noexcept;
// Whether a client's first bytes open with a whole HTTP/1.x request line:
// enough for the proxy to send them over an idle connection that carried
// HTTP/1 before (proxy/upstream_pool.h).
bool opens_http1_request(std::span<const char> bytes) noexcept;
// Whether they open with the whole HTTP/2 connection preface (prior
// knowledge): enough for the proxy to terminate the connection (H2Forward).
bool opens_h2_preface(std::span<const char> bytes) noexcept;

// Told what the tap saw; implemented by the proxy's recorder. Every request
// handed to on_request() gets exactly one on_response() or on_failure()
// later, with the tag on_request() returned (finish() sees to the ones
// still pending when the connection ends).
class TapSink {
 public:
  // Once per connection, when the first bytes decided.
  virtual void on_detected(Protocol p) noexcept = 0;
  // Before on_detected(kTls): the client's first read, the start of its
  // ClientHello (whole when it came in one read), for its server name.
  virtual void on_tls(std::span<const char> first) noexcept { (void)first; }
  // A request head passed validation and goes to the server. The head's
  // views live only for the call. The returned tag comes back with its
  // response.
  virtual void* on_request(const RequestHead& head) noexcept = 0;
  // The final response head to `tag` came (its body may follow): what a
  // live view shows at once, before a long body ends. on_response() or
  // on_failure() still follows. Not for gRPC responses, whose outcome is
  // the status in their trailers.
  virtual void on_response_head(void* tag, uint16_t status, uint64_t ttfb_us) noexcept {
    (void)tag, (void)status, (void)ttfb_us;
  }
  // The response to `tag` ended: its body is complete (complete=true), or
  // the connection ended in its body (false). ttfb_us: from the request
  // head to the final response head (1xx interim responses do not count).
  // 101 Switching Protocols and a 2xx to CONNECT end here too. grpc_status:
  // a gRPC response's status (HTTP/2 trailers), else -1.
  virtual void on_response(void* tag, uint16_t status, uint64_t ttfb_us, bool complete,
                           int32_t grpc_status) noexcept = 0;
  // `tag` got no final response head: the connection ended, or the tap
  // gave up. error: a stable token ("closed", "reset", "abandoned").
  virtual void on_failure(void* tag, std::string_view error) noexcept = 0;
  // A request was refused (see TapVerdict::kReject); reason is the
  // parser's stable token.
  virtual void on_rejected(uint16_t status, std::string_view reason) noexcept = 0;
  // The tap stopped following an HTTP/1 connection it had detected, and
  // why ("upgrade" and "connect" for tunnels are normal ends, not faults).
  virtual void on_abandoned(std::string_view reason) noexcept = 0;

 protected:
  ~TapSink() = default;
};

enum class TapSide : uint8_t { kRequests, kResponses };  // client->server, server->client

struct TapVerdict {
  enum Kind : uint8_t {
    kPass,    // forward the span
    kReject,  // do not forward the span; answer `status` if can_answer(), else reset both sides
    kOpaque,  // forward the span and everything after it untapped (the tap is done)
  };
  Kind kind = kPass;
  uint16_t status = 0;       // kReject: 400, 414, 431, 501 or 505
  std::string_view reason;   // kReject: stable token (metric label, meshd-proxy-error header)
  std::string_view message;  // kReject: for humans (the error response's body)
};

class H1Tap {
 public:
  // More pipelined requests than this waiting for responses: the tap gives
  // up rather than grow (the relay's own bounds still hold the bytes).
  static constexpr uint32_t kMaxPending = 16;

  H1Tap(const Limits& limits, TapSink* sink) noexcept;
  ~H1Tap();
  H1Tap(const H1Tap&) = delete;
  H1Tap& operator=(const H1Tap&) = delete;

  // Back to a new connection's start (the object is pooled).
  void reset(TapSink* sink) noexcept;

  // Bytes read from one side, before they are forwarded. After kReject or
  // kOpaque the tap is finished: further feeds answer kOpaque and do nothing.
  TapVerdict feed(TapSide side, std::span<const char> bytes, uint64_t now_us) noexcept;

  // A side reached end of stream. The server's: a response read until close
  // ends (complete), the others pending fail ("closed"). The client's:
  // nothing pending changes (responses may still come after a half-close).
  void end(TapSide side, uint64_t now_us) noexcept;

  // The connection ended: whatever is pending fails with `error` (a
  // response whose head came counts as incomplete). Idempotent.
  void finish(std::string_view error, uint64_t now_us) noexcept;

  // After kReject: an error response written now answers the refused
  // request and no other. So no earlier request may be waiting for its
  // response; a request refused in its body (its head went on) may be
  // pending itself, when its response has not begun.
  bool can_answer() const noexcept { return pending_count_ == 0 || refused_own_; }

  // The request timeout runs from a request's last byte to its response's
  // head. When the oldest request waiting for its response head was sent
  // whole, in the feeds' clock; 0 when no request waits so.
  uint64_t awaited_since_us() const noexcept;
  // That request may be answered by the proxy now: it is the oldest
  // pending and no byte of its response has come.
  bool awaited_answerable() const noexcept;
  // The proxy answered it (awaited_answerable() held) with `status`: its
  // response is counted as that. finish() then fails the rest.
  void answered(uint16_t status, uint64_t now_us) noexcept;
  // Still following the connection (not finished, rejected or opaque).
  bool active() const noexcept;
  // For the proxy's retries: the requests waiting for responses, whether
  // the client side is between requests (nothing of a next head read; or
  // nothing read at all yet), and the oldest pending request's method.
  uint32_t pending() const noexcept { return pending_count_; }
  bool between_requests() const noexcept {
    return !stopped_ && (req_state_ == State::kHead || req_state_ == State::kDetect) && req_head_.held == 0;
  }
  Method front_method() const noexcept { return pending_[pending_first_].method; }
  bool front_keeps_alive() const noexcept { return pending_[pending_first_].keep_alive; }
  // A response's head has come and its body has not ended.
  bool in_response_body() const noexcept { return !stopped_ && resp_state_ == State::kBody; }
  // Every request so far has had its whole response, the last exchange
  // left the connection open on both sides (keep-alive), and nothing of a
  // next request has been read: the server's side of the connection is
  // idle and may serve another client, and this client's next request
  // may go to another server (the proxy's upstream pool).
  bool idle_between_exchanges() const noexcept {
    return !stopped_ && req_state_ == State::kHead && req_head_.held == 0 && pending_count_ == 0 &&
           resp_state_ == State::kHead && resp_head_.held == 0 && last_keep_alive_;
  }
  const Limits& limits() const noexcept { return limits_; }
  // Bytes held in head buffers right now (a memory gauge).
  uint32_t held_bytes() const noexcept;
  // While the client's first bytes are undecided (and during
  // on_detected()): how many of them were held from earlier feeds, and
  // what an HTTP/2 server sent before them (its SETTINGS; already
  // forwarded), for the HTTP/2 tap to start from.
  uint32_t request_bytes_held() const noexcept { return req_head_.held; }
  std::span<const char> early_response() const noexcept { return {resp_head_.buffer.get(), resp_head_.held}; }

 private:
  // Header lines parsed per head, on the stack: limits.max_headers above
  // this is lowered to it (a larger head answers 431).
  static constexpr uint16_t kMaxHeaders = 128;
  // The smallest head buffer: room for the h2 preface and a method, however
  // small max_head is (the parser still applies max_head).
  static constexpr uint32_t kMinBuffer = 64;

  struct Pending {
    void* tag = nullptr;
    Method method = Method::kOther;
    bool upgrade = false;     // the request asked to switch protocols
    bool keep_alive = false;  // the request lets the connection go on after its response
    uint64_t start_us = 0;
    uint64_t ttfb_us = 0;  // set when the final response head came
    uint64_t end_us = 0;   // set when the request's last byte went
  };
  // A head being read on one side: bytes copied while it straddles reads.
  struct Assembly {
    std::unique_ptr<char[]> buffer;  // capacity() bytes, only while held > 0
    uint32_t held = 0;
    uint32_t scan_from = 0;
  };
  enum class State : uint8_t { kDetect, kHead, kBody, kAwaitTunnel, kDone };
  struct HeaderStorage;

  TapVerdict feed_requests(std::span<const char> bytes, uint64_t now_us) noexcept;
  TapVerdict feed_responses(std::span<const char> bytes, uint64_t now_us) noexcept;
  TapVerdict detect(std::span<const char> bytes) noexcept;
  TapVerdict request_head(std::span<const char>* bytes, uint64_t now_us) noexcept;
  TapVerdict response_head(std::span<const char>* bytes, uint64_t now_us) noexcept;
  void request_ended(uint64_t now_us) noexcept;
  void response_ended(bool complete) noexcept;
  TapVerdict opaque(std::string_view why) noexcept;
  TapVerdict reject(uint16_t status, std::string_view reason, std::string_view message) noexcept;
  TapVerdict decided(Protocol p) noexcept;
  bool hold_early_settings(std::span<const char> bytes) noexcept;
  void stop() noexcept;

  // Heads that straddle reads (see h1_tap.cc).
  uint32_t capacity() const noexcept;
  std::span<const char> head_view(Assembly& a, std::span<const char> bytes) noexcept;
  bool keep(Assembly& a, std::span<const char> bytes, const HeadResult& r, uint32_t* used) noexcept;
  static void release(Assembly& a) noexcept;

  Pending& front() noexcept { return pending_[pending_first_]; }
  void pop() noexcept;

  Limits limits_;
  TapSink* sink_ = nullptr;
  State req_state_ = State::kDetect;
  State resp_state_ = State::kHead;
  Assembly req_head_;
  Assembly resp_head_;
  BodyFramer req_body_{Framing{}};
  BodyFramer resp_body_{Framing{}};
  Pending pending_[kMaxPending];
  uint32_t pending_first_ = 0;
  uint32_t pending_count_ = 0;
  uint16_t resp_status_ = 0;       // the final response in its body
  bool resp_until_close_ = false;  // ... and that body ends when the server closes
  bool resp_keep_alive_ = false;   // ... and the server lets the connection go on after it
  bool last_keep_alive_ = false;   // the last response ended with both sides keeping the connection
  bool tunnel_pending_ = false;    // the last request pending asked for a tunnel (Upgrade, CONNECT)
  bool stopped_ = false;           // rejected or opaque: feeds do nothing
  bool finished_ = false;          // finish() ran
  bool refused_own_ = false;       // refused in its body, the only request pending, no response begun
};

}  // namespace meshd::http
