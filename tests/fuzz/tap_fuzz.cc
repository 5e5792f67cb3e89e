// libFuzzer target for the HTTP/1 tap (src/http/h1_tap.h).
//
// Input: a control byte, an 8-byte script, then the bytes of a connection.
// The script is read round and round: each step feeds the next bytes to one
// side (bit 0: requests or responses; the rest: how many, 0 meaning that
// side's end of stream), each span in a heap block of exactly its size so
// that ASan sees any read past it. The control byte picks small or default
// limits and larger spans. Checked, at every step:
//  - on_detected comes once, first; on_request only after HTTP/1 was seen;
//  - tags are answered in the order they were handed out (FIFO), never a
//    tag not handed out or already answered; can_answer() is exactly "no
//    tag outstanding", except after a reject, when the one outstanding may
//    be the refused request itself;
//  - kReject only for requests, with a documented status and a reason, and
//    on_rejected with the same; after kReject or kOpaque the tap is
//    inactive, answers kOpaque and says nothing more, except finish()
//    answering what a reject left pending;
//  - held_bytes() stays within two head buffers;
//  - the request timeout's clock: awaited_since_us() is never in the
//    future, and awaited_answerable() only with a request outstanding and
//    awaited; with control bit 3 the proxy answers it (answered(504)) once
//    it may, as on a timeout, and the connection ends there;
// and after finish(): every tag answered exactly once, nothing held, and a
// second finish() silent. With control bit 2, the requests alone are fed
// whole and a byte at a time, and must give the same events.
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <span>
#include <string_view>
#include <vector>

#include "http/h1_tap.h"
#include "tests/fuzz/check.h"

namespace {

using meshd::fuzz::Exact;
using namespace meshd::http;

enum class Ev : uint8_t { kDetected, kRequest, kResponse, kFailure, kRejected, kAbandoned };

struct Event {
  Ev kind;
  uintptr_t tag = 0;
  uint16_t status = 0;
  bool operator==(const Event&) const = default;
};

class Checker final : public TapSink {
 public:
  void on_detected(Protocol p) noexcept override {
    FUZZ_CHECK(!detected_ && events.empty(), "on_detected twice or late");
    detected_ = true;
    http1_ = p == Protocol::kHttp1;
    events.push_back({Ev::kDetected, 0, static_cast<uint16_t>(p)});
  }
  void* on_request(const RequestHead& head) noexcept override {
    FUZZ_CHECK(http1_, "a request on a connection not detected as HTTP/1");
    FUZZ_CHECK(!head.method_name.empty() && !head.target.empty(), "a request without method or target");
    FUZZ_CHECK(!quiet_, "a request after the tap stopped");
    events.push_back({Ev::kRequest, ++issued});
    return reinterpret_cast<void*>(issued);
  }
  void on_response_head(void* tag, uint16_t status, uint64_t) noexcept override {
    // Only the oldest outstanding request's response can be read, once.
    FUZZ_CHECK(reinterpret_cast<uintptr_t>(tag) == answered + 1 && headed_ < answered + 1,
               "a response head for a request not at the front, or twice");
    FUZZ_CHECK(status >= 200 && status <= 599, "a response head with an interim or tunnel status");
    headed_ = answered + 1;
  }
  void on_response(void* tag, uint16_t status, uint64_t, bool, int32_t grpc_status) noexcept override {
    FUZZ_CHECK(grpc_status == -1, "a gRPC status from HTTP/1");
    FUZZ_CHECK(status == 101 || (status >= 200 && status <= 599), "a response with an interim status");
    answer(tag);
    events.push_back({Ev::kResponse, reinterpret_cast<uintptr_t>(tag), status});
  }
  void on_failure(void* tag, std::string_view error) noexcept override {
    FUZZ_CHECK(!error.empty(), "a failure without an error");
    answer(tag);
    events.push_back({Ev::kFailure, reinterpret_cast<uintptr_t>(tag)});
  }
  void on_rejected(uint16_t status, std::string_view reason) noexcept override {
    FUZZ_CHECK(!reason.empty(), "a reject without a reason");
    FUZZ_CHECK(!quiet_, "a reject after the tap stopped");
    events.push_back({Ev::kRejected, 0, status});
  }
  void on_abandoned(std::string_view reason) noexcept override {
    FUZZ_CHECK(!reason.empty(), "an abandon without a reason");
    FUZZ_CHECK(!quiet_, "an abandon after the tap stopped");
    events.push_back({Ev::kAbandoned});
  }

  uintptr_t outstanding() const { return issued - answered; }

  std::vector<Event> events;
  uintptr_t issued = 0;
  uintptr_t answered = 0;
  bool quiet_ = false;  // the tap stopped: only finish() may still answer tags

 private:
  void answer(void* tag) {
    // FIFO: the oldest outstanding tag, always.
    FUZZ_CHECK(reinterpret_cast<uintptr_t>(tag) == answered + 1, "a tag answered out of order, twice or unknown");
    ++answered;
  }
  bool detected_ = false;
  bool http1_ = false;
  uintptr_t headed_ = 0;  // the last tag whose response head came
};

void check_verdict(const TapVerdict& v, TapSide side, const Checker& c, size_t events_before) {
  switch (v.kind) {
    case TapVerdict::kPass: break;
    case TapVerdict::kReject:
      FUZZ_CHECK(side == TapSide::kRequests, "a response rejected");
      FUZZ_CHECK(v.status == 400 || v.status == 414 || v.status == 431 || v.status == 501 || v.status == 505,
                 "an undocumented reject status");
      FUZZ_CHECK(!v.reason.empty() && !v.message.empty(), "a reject without reason or message");
      FUZZ_CHECK(c.events.size() > events_before && c.events.back().kind == Ev::kRejected &&
                     c.events.back().status == v.status,
                 "kReject without the matching on_rejected");
      break;
    case TapVerdict::kOpaque: break;
    default: FUZZ_CHECK(false, "a verdict outside the enum");
  }
}

// Feeds the script's steps; returns the events (for the differential run).
std::vector<Event> run(std::span<const char> in, const uint8_t* script, const Limits& limits, bool big, bool time_out) {
  Checker c;
  H1Tap tap(limits, &c);
  const uint32_t cap = std::max<uint32_t>(limits.max_head, 64);
  size_t pos = 0;
  uint64_t now = 0;
  bool stopped = false;
  bool rejected = false;
  for (size_t step = 0; pos < in.size() && step < 4096; ++step) {
    const uint8_t op = script[step % 8];
    const TapSide side = (op & 1) != 0 ? TapSide::kResponses : TapSide::kRequests;
    size_t len = op >> 1;
    now += op;
    const size_t before = c.events.size();
    if (len == 0) {
      tap.end(side, now);
      if (stopped) FUZZ_CHECK(c.events.size() == before, "an event from end() after the tap stopped");
    } else {
      if (big) len *= 97;
      Exact span(in.subspan(pos, std::min(len, in.size() - pos)));
      pos += span.size;
      TapVerdict v = tap.feed(side, span.span(), now);
      check_verdict(v, side, c, before);
      if (stopped) {
        FUZZ_CHECK(v.kind == TapVerdict::kOpaque && c.events.size() == before, "a stopped tap answered");
      } else if (v.kind != TapVerdict::kPass) {
        stopped = true;
        rejected = v.kind == TapVerdict::kReject;
        c.quiet_ = true;
        // Opaque settles everything at once; a reject leaves it to finish().
        if (v.kind == TapVerdict::kOpaque) FUZZ_CHECK(c.outstanding() == 0, "kOpaque left tags outstanding");
      }
    }
    FUZZ_CHECK(tap.active() == !stopped || (len == 0 && !tap.active()), "active() disagrees with the verdicts");
    if (!tap.active()) {
      stopped = true;
      c.quiet_ = true;
    }
    // After a reject the refused request itself may be pending (refused in
    // its body) and still be answerable; never with another one waiting.
    if (rejected)
      FUZZ_CHECK(!tap.can_answer() || c.outstanding() <= 1, "can_answer() with earlier requests waiting");
    else
      FUZZ_CHECK(tap.can_answer() == (c.outstanding() == 0), "can_answer() disagrees with the tags outstanding");
    FUZZ_CHECK(tap.held_bytes() <= 2 * cap, "more held than two head buffers");
    // What the proxy's upstream pool relies on: idle between exchanges
    // means nothing outstanding, nothing of a head held, no body awaited.
    if (tap.idle_between_exchanges())
      FUZZ_CHECK(tap.active() && c.outstanding() == 0 && tap.between_requests() && !tap.in_response_body() &&
                     tap.held_bytes() == 0,
                 "idle between exchanges with something under way");
    if (tap.in_response_body()) FUZZ_CHECK(c.outstanding() > 0, "a response body with no request outstanding");
    const uint64_t since = tap.awaited_since_us();
    FUZZ_CHECK(since <= now, "a request awaited since the future");
    FUZZ_CHECK(since == 0 || c.outstanding() > 0, "a request awaited with none outstanding");
    if (tap.awaited_answerable()) {
      FUZZ_CHECK(since != 0 && !stopped, "answerable, but not awaited");
      if (time_out) {
        const uintptr_t front = c.answered + 1;
        tap.answered(504, now);
        FUZZ_CHECK(c.events.back() == (Event{Ev::kResponse, front, 504}), "answered() is not the front's response");
        tap.finish("request_timeout", now);
        FUZZ_CHECK(c.outstanding() == 0, "tags left after a timeout's finish()");
        break;
      }
    }
  }
  tap.finish("closed", now);
  FUZZ_CHECK(c.outstanding() == 0, "a tag not answered after finish()");
  FUZZ_CHECK(tap.held_bytes() == 0 && !tap.active(), "finish() left state behind");
  const size_t after = c.events.size();
  tap.finish("reset", now);
  tap.end(TapSide::kResponses, now);
  FUZZ_CHECK(tap.feed(TapSide::kRequests, in.first(std::min<size_t>(in.size(), 8)), now).kind == TapVerdict::kOpaque,
             "a finished tap answered");
  FUZZ_CHECK(c.events.size() == after, "events after finish()");
  return c.events;
}

// The requests alone, whole and a byte at a time: the same events, except
// that a refusal's status may differ (the parser reports the first fault it
// sees, and what it sees first depends on the split).
void differential(std::span<const char> in, const Limits& limits) {
  auto events = [&](bool bytewise) {
    Checker c;
    H1Tap tap(limits, &c);
    if (bytewise) {
      for (size_t i = 0; i < in.size(); ++i) {
        Exact one(in.subspan(i, 1));
        if (tap.feed(TapSide::kRequests, one.span(), 0).kind != TapVerdict::kPass) break;
      }
    } else {
      Exact whole(in);
      tap.feed(TapSide::kRequests, whole.span(), 0);
    }
    tap.finish("closed", 0);
    for (Event& e : c.events)
      if (e.kind == Ev::kRejected) e.status = 0;
    return c.events;
  };
  FUZZ_CHECK(events(false) == events(true), "requests fed a byte at a time differ from whole");
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 9) return 0;
  const uint8_t control = data[0];
  const uint8_t* script = data + 1;
  std::span<const char> in(reinterpret_cast<const char*>(data) + 9, size - 9);
  Limits limits;
  if (control & 1) limits = {48, 192, 6};
  run(in, script, limits, (control & 2) != 0, (control & 8) != 0);
  if ((control & 4) && in.size() <= 4096) differential(in, limits);
  return 0;
}
