// libFuzzer target for the HTTP/2 tap (src/http/h2_tap.h).
//
// Input: a control byte, an 8-byte script, a 2-byte big-endian length N,
// then N bytes the client sends and, after them, the bytes the server
// sends. The script is read round and round: each step feeds the next
// bytes of one side (bit 0: client or server; the rest: how many, 0
// meaning a step that feeds nothing), each span in a heap block of
// exactly its size so that ASan sees any read past it. The control byte:
// its low 5 bits are how much of the preface detection held (0-24), bit 5
// makes spans larger. Checked, at every step:
//  - tags are handed out once each and answered at most once, only after
//    they were handed out; open_streams() is exactly the tags outstanding
//    and never more than kMaxStreams;
//  - a response head comes at most once per tag, before its response,
//    with a final status (200-999); responses have 100-999; a gRPC status
//    is -1 or 0-99; failures and abandons say why;
//  - kOpaque answers every tag at once and leaves the tap inactive; a
//    stopped tap answers kOpaque and says nothing more;
// and after finish(): every tag answered exactly once, a second finish()
// silent. With control bit 6, the client's bytes then the server's are
// also fed whole and a byte at a time, and must give the same events.
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <span>
#include <string_view>
#include <vector>

#include "http/h2_tap.h"
#include "tests/fuzz/check.h"

namespace {

using meshd::fuzz::Exact;
using namespace meshd::http;

enum class Ev : uint8_t { kRequest, kHead, kResponse, kFailure, kAbandoned };

struct Event {
  Ev kind;
  uintptr_t tag = 0;
  int32_t value = 0;
  bool operator==(const Event&) const = default;
};

class Checker final : public TapSink {
 public:
  void on_detected(Protocol) noexcept override { FUZZ_CHECK(false, "H2Tap detects nothing"); }
  void* on_request(const RequestHead& head) noexcept override {
    FUZZ_CHECK(!quiet, "a request after the tap stopped");
    FUZZ_CHECK(head.version == Version::kHttp2, "an h2 request not marked HTTP/2");
    FUZZ_CHECK(head.target.size() <= H2Tap::kMaxPath && head.authority.size() <= H2Tap::kMaxAuthority,
               "a field longer than its bound");
    state.push_back(kOpen);
    events.push_back({Ev::kRequest, state.size()});
    return reinterpret_cast<void*>(static_cast<uintptr_t>(state.size()));
  }
  void on_response_head(void* tag, uint16_t status, uint64_t) noexcept override {
    uint8_t& s = at(tag);
    FUZZ_CHECK(s == kOpen, "a second head, or a head after the end");
    FUZZ_CHECK(status >= 200 && status <= 999, "a head with an interim or invalid status");
    s = kHeaded;
    events.push_back({Ev::kHead, id(tag), status});
  }
  void on_response(void* tag, uint16_t status, uint64_t, bool, int32_t grpc) noexcept override {
    FUZZ_CHECK(status >= 100 && status <= 999, "a response with an invalid status");
    FUZZ_CHECK(grpc >= -1 && grpc <= 99, "a gRPC status out of range");
    end(tag);
    events.push_back({Ev::kResponse, id(tag), status * 1000 + grpc});
  }
  void on_failure(void* tag, std::string_view error) noexcept override {
    FUZZ_CHECK(!error.empty(), "a failure without an error");
    end(tag);
    events.push_back({Ev::kFailure, id(tag)});
  }
  void on_rejected(uint16_t, std::string_view) noexcept override { FUZZ_CHECK(false, "H2Tap rejects nothing"); }
  void on_abandoned(std::string_view reason) noexcept override {
    FUZZ_CHECK(!reason.empty(), "an abandon without a reason");
    FUZZ_CHECK(!quiet, "an abandon after the tap stopped");
    count();
    FUZZ_CHECK(outstanding == 0, "abandoned with tags outstanding");
    events.push_back({Ev::kAbandoned});
  }

  std::vector<Event> events;
  std::vector<uint8_t> state;  // per tag (1, 2, ...)
  size_t outstanding = 0;
  bool quiet = false;

 private:
  enum : uint8_t { kOpen, kHeaded, kEnded };
  static uintptr_t id(void* tag) { return reinterpret_cast<uintptr_t>(tag); }
  uint8_t& at(void* tag) {
    FUZZ_CHECK(id(tag) >= 1 && id(tag) <= state.size(), "a tag never handed out");
    return state[id(tag) - 1];
  }
  void end(void* tag) {
    uint8_t& s = at(tag);
    FUZZ_CHECK(s != kEnded, "a tag answered twice");
    s = kEnded;
  }

 public:
  void count() {
    outstanding = static_cast<size_t>(std::count_if(state.begin(), state.end(), [](uint8_t s) { return s != kEnded; }));
  }
};

struct Sides {
  std::span<const char> client;
  std::span<const char> server;
};

std::vector<Event> run(Sides in, const uint8_t* script, uint32_t preface_held, bool big) {
  Checker c;
  H2Tap tap;
  FUZZ_CHECK(tap.reset(&c, preface_held), "reset failed");
  size_t pos[2] = {0, 0};
  bool stopped = false;
  for (size_t step = 0; (pos[0] < in.client.size() || pos[1] < in.server.size()) && step < 8192; ++step) {
    const uint8_t op = script[step % 8];
    const int s = op & 1;
    std::span<const char> side = s == 0 ? in.client : in.server;
    size_t len = std::max<size_t>(op >> 1, 1);
    if (big) len *= 131;
    if (pos[s] >= side.size()) {
      // This side is done: the other one's turn.
      continue;
    }
    Exact span(side.subspan(pos[s], std::min(len, side.size() - pos[s])));
    pos[s] += span.size;
    const size_t before = c.events.size();
    TapVerdict v = tap.feed(s == 0 ? TapSide::kRequests : TapSide::kResponses, span.span(), step);
    c.count();
    FUZZ_CHECK(v.kind == TapVerdict::kPass || v.kind == TapVerdict::kOpaque, "an h2 verdict other than pass or opaque");
    if (stopped) {
      FUZZ_CHECK(v.kind == TapVerdict::kOpaque && c.events.size() == before, "a stopped tap answered");
    } else if (v.kind == TapVerdict::kOpaque) {
      stopped = true;
      c.quiet = true;
      FUZZ_CHECK(c.outstanding == 0, "kOpaque left tags outstanding");
    }
    FUZZ_CHECK(tap.active() == !stopped, "active() disagrees with the verdicts");
    FUZZ_CHECK(tap.open_streams() == c.outstanding, "open_streams() disagrees with the tags outstanding");
    FUZZ_CHECK(tap.open_streams() <= H2Tap::kMaxStreams, "more streams than the bound");
  }
  tap.finish("closed", 0);
  c.count();
  FUZZ_CHECK(c.outstanding == 0 && !tap.active(), "a tag not answered after finish()");
  const size_t after = c.events.size();
  tap.finish("reset", 0);
  FUZZ_CHECK(tap.feed(TapSide::kRequests, in.client.first(std::min<size_t>(in.client.size(), 8)), 0).kind ==
                 TapVerdict::kOpaque,
             "a finished tap answered");
  FUZZ_CHECK(c.events.size() == after, "events after finish()");
  return c.events;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 11) return 0;
  const uint8_t control = data[0];
  const uint8_t* script = data + 1;
  size_t n = (size_t{data[9]} << 8) | data[10];
  std::span<const char> rest(reinterpret_cast<const char*>(data + 11), size - 11);
  n = std::min(n, rest.size());
  Sides in{rest.first(n), rest.subspan(n)};
  const uint32_t preface_held = (control & 31u) % 25u;
  run(in, script, preface_held, (control & 32) != 0);
  if (control & 64) {
    // All the client's bytes, then all the server's: whole, then a byte at
    // a time. The tap's events must not depend on where reads split.
    auto sequential = [&](size_t piece) {
      Checker c;
      H2Tap tap;
      FUZZ_CHECK(tap.reset(&c, preface_held), "reset failed");
      const std::span<const char> sides[2] = {in.client, in.server};
      for (int k = 0; k < 2; ++k) {
        const std::span<const char> side = sides[k];
        const TapSide which = k == 0 ? TapSide::kRequests : TapSide::kResponses;
        for (size_t i = 0; i < side.size(); i += piece) {
          Exact span(side.subspan(i, std::min(piece, side.size() - i)));
          tap.feed(which, span.span(), 0);
        }
      }
      tap.finish("closed", 0);
      return c.events;
    };
    FUZZ_CHECK(sequential(size) == sequential(1), "events depend on where reads split");
  }
  return 0;
}
