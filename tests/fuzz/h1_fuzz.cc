// libFuzzer target for HTTP/1 heads and bodies (src/http/h1_parse.h,
// src/http/h1_body.h).
//
// Input: one control byte, one split-seed byte, then the bytes of a
// connection. The control byte picks request or response parsing, the
// request method a response answers, small or default limits, and the
// framing tried on the bytes when no head parses. Every call gets a heap
// block of exactly its size, so ASan sees any read past the end. Checked:
//  - views (method, target, host, authority, headers, Connection tokens)
//    point inside the input; consumed <= input; a head fits the limits;
//  - errors carry a status the header documents and a reason;
//  - a prefix of a complete head is kIncomplete, an error in a prefix stays
//    an error, and resuming at a prefix's `consumed` answers as the whole;
//  - the body after the head (or the whole input, with a chosen framing)
//    frames the same whole, a byte at a time, and at fuzzer-chosen splits,
//    and never consumes more than it was given.
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <memory>
#include <span>
#include <string_view>
#include <vector>

#include "http/h1_body.h"
#include "http/h1_parse.h"
#include "tests/fuzz/check.h"

namespace {

using meshd::fuzz::Exact;

using namespace meshd::http;

bool inside(std::string_view v, std::span<const char> in) {
  return v.empty() || (v.data() >= in.data() && v.data() + v.size() <= in.data() + in.size());
}

void check_facts(const HeadFacts& f, std::span<const char> in, const Limits& limits) {
  FUZZ_CHECK(f.headers.size() <= limits.max_headers, "more headers than max_headers");
  for (const Header& h : f.headers) {
    FUZZ_CHECK(!h.name.empty(), "an empty header name");
    FUZZ_CHECK(inside(h.name, in) && inside(h.value, in), "a header view outside the input");
  }
  FUZZ_CHECK(f.connection_token_count <= kMaxConnectionTokens, "too many Connection tokens");
  for (std::string_view t : f.connection()) FUZZ_CHECK(inside(t, in), "a Connection token outside the input");
  if (f.framing.kind != FramingKind::kContentLength) FUZZ_CHECK(f.framing.length == 0, "a length without CL");
}

struct Parsed {
  HeadResult r;
  Framing framing;
};

bool same(const HeadResult& a, const HeadResult& b) {
  return a.status == b.status && a.consumed == b.consumed && a.error_status == b.error_status && a.reason == b.reason;
}

// One parse of `in` (copied to an exact block), checked on its own.
Parsed parse(std::span<const char> in, bool request, Method method, const Limits& limits, uint32_t scan_from) {
  Exact exact(in);
  std::vector<Header> storage(limits.max_headers);
  Parsed p{};
  if (request) {
    RequestHead h;
    p.r = parse_request_head(exact.span(), limits, &h, storage.data(), scan_from);
    if (p.r.status == HeadStatus::kDone) {
      check_facts(h, exact.span(), limits);
      FUZZ_CHECK(inside(h.method_name, exact.span()) && inside(h.target, exact.span()) &&
                     inside(h.host, exact.span()) && inside(h.authority, exact.span()),
                 "a request view outside the input");
      FUZZ_CHECK(!h.method_name.empty() && !h.target.empty(), "an empty method or target");
      FUZZ_CHECK(h.version == Version::kHttp10 || h.version == Version::kHttp11, "a version other than 1.0/1.1");
      FUZZ_CHECK(h.framing.kind == FramingKind::kNone || h.framing.kind == FramingKind::kContentLength ||
                     h.framing.kind == FramingKind::kChunked,
                 "a request framed other than none, CL or chunked");
      FUZZ_CHECK(!(h.framing.kind == FramingKind::kChunked && h.version == Version::kHttp10), "chunked in 1.0");
      p.framing = h.framing;
    } else if (p.r.status == HeadStatus::kError) {
      uint16_t s = p.r.error_status;
      FUZZ_CHECK(s == 400 || s == 414 || s == 431 || s == 501 || s == 505, "an undocumented request error status");
    }
  } else {
    ResponseHead h;
    p.r = parse_response_head(exact.span(), method, limits, &h, storage.data(), scan_from);
    if (p.r.status == HeadStatus::kDone) {
      check_facts(h, exact.span(), limits);
      FUZZ_CHECK(inside(h.reason, exact.span()), "the reason outside the input");
      FUZZ_CHECK(h.status >= 100 && h.status <= 599, "a status outside 100-599");
      if (h.interim) FUZZ_CHECK(h.status < 200 && h.framing.kind == FramingKind::kNone, "a bad interim response");
      if (method == Method::kHead && h.status >= 200)
        FUZZ_CHECK(h.framing.kind == FramingKind::kNone, "a body after HEAD");
      p.framing = h.framing;
    } else if (p.r.status == HeadStatus::kError) {
      FUZZ_CHECK(p.r.error_status == 502, "a response error other than 502");
    }
  }
  FUZZ_CHECK(
      p.r.status == HeadStatus::kIncomplete || p.r.status == HeadStatus::kDone || p.r.status == HeadStatus::kError,
      "a HeadStatus outside the enum");
  FUZZ_CHECK(p.r.consumed <= in.size(), "consumed past the input");
  if (p.r.status == HeadStatus::kDone) {
    FUZZ_CHECK(p.r.consumed >= 4 && p.r.consumed <= limits.max_head, "a head length outside the limits");
    FUZZ_CHECK(std::memcmp(in.data() + p.r.consumed - 4, "\r\n\r\n", 4) == 0, "a head not ending in CRLFCRLF");
  }
  if (p.r.status == HeadStatus::kError) {
    FUZZ_CHECK(!p.r.reason.empty() && !p.r.message.empty(), "an error without a reason");
    FUZZ_CHECK(p.r.consumed == 0, "an error that consumed");
  }
  if (p.r.status == HeadStatus::kIncomplete) FUZZ_CHECK(p.r.consumed >= scan_from, "a scan that went back");
  return p;
}

struct Framed {
  uint64_t consumed = 0;
  bool done = false;
  uint16_t error_status = 0;
  std::string_view reason;
  bool operator==(const Framed& o) const {
    return consumed == o.consumed && done == o.done && error_status == o.error_status && reason == o.reason;
  }
};

// Frames `in` fed in pieces ending at `cuts` (ascending), each piece in an
// exact block; the unconsumed part of a piece is offered again, as callers
// do, only if the framer has not finished.
Framed frame(Framing f, std::span<const char> in, const std::vector<size_t>& cuts, uint32_t max_trailers) {
  BodyFramer framer(f, max_trailers);
  Framed out;
  size_t pos = 0;
  for (size_t k = 0; k <= cuts.size(); ++k) {
    size_t end = k < cuts.size() ? std::min(cuts[k], in.size()) : in.size();
    if (end < pos) continue;
    Exact piece(in.subspan(pos, end - pos));
    BodyFramer::Step s = framer.feed(piece.span());
    FUZZ_CHECK(s.consumed <= piece.size, "a framer consumed past its input");
    out.consumed += s.consumed;
    pos += s.consumed;
    FUZZ_CHECK(framer.payload_bytes() <= out.consumed, "more payload than bytes");
    if (s.error_status != 0) {
      FUZZ_CHECK(s.error_status == 400 && !s.reason.empty() && framer.failed() && !s.done, "a bad framer error");
      out.error_status = s.error_status;
      out.reason = s.reason;
      return out;
    }
    if (s.done) {
      FUZZ_CHECK(framer.done(), "done() disagrees with the step");
      if (f.kind == FramingKind::kContentLength) FUZZ_CHECK(out.consumed == f.length, "CL consumed != length");
      out.done = true;
      return out;
    }
    FUZZ_CHECK(pos == end, "an unfinished framer left bytes of its input");
  }
  return out;
}

void check_framing(Framing f, std::span<const char> in, uint8_t seed, uint32_t max_trailers) {
  Framed whole = frame(f, in, {}, max_trailers);
  std::vector<size_t> bytewise;
  for (size_t i = 1; i < in.size(); ++i) bytewise.push_back(i);
  FUZZ_CHECK(frame(f, in, bytewise, max_trailers) == whole, "byte-at-a-time framing differs from whole");
  // Splits from the seed: a simple LCG, so the fuzzer steers them.
  std::vector<size_t> cuts;
  uint32_t x = seed;
  for (size_t at = 0; at < in.size();) {
    x = x * 1103515245u + 12345u;
    at += 1 + (x >> 16) % 13;
    cuts.push_back(at);
  }
  FUZZ_CHECK(frame(f, in, cuts, max_trailers) == whole, "split framing differs from whole");
}

constexpr Method kMethods[] = {Method::kGet,     Method::kHead,  Method::kConnect, Method::kPost,
                               Method::kOptions, Method::kOther, Method::kPut,     Method::kDelete};

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 2) return 0;
  const uint8_t control = data[0];
  const uint8_t seed = data[1];
  std::span<const char> in(reinterpret_cast<const char*>(data) + 2, size - 2);

  const bool request = (control & 1) == 0;
  const Method method = kMethods[(control >> 1) & 7];
  Limits limits;
  uint32_t max_trailers = 32768;
  if (control & 0x10) {
    limits = {32, 256, 4};
    max_trailers = 64;
  }

  Parsed whole = parse(in, request, method, limits, 0);

  // Prefixes: every short one, and a spread chosen by the seed.
  std::vector<size_t> prefixes;
  for (size_t n = 0; n < std::min<size_t>(in.size(), 40); ++n) prefixes.push_back(n);
  uint32_t x = seed + 1u;
  for (int i = 0; i < 16 && !in.empty(); ++i) {
    x = x * 1103515245u + 12345u;
    prefixes.push_back((x >> 8) % in.size());
  }
  for (size_t n : prefixes) {
    Parsed part = parse(in.first(n), request, method, limits, 0);
    if (whole.r.status == HeadStatus::kDone && n < whole.r.consumed)
      FUZZ_CHECK(part.r.status == HeadStatus::kIncomplete, "a prefix of a complete head was not incomplete");
    if (part.r.status == HeadStatus::kError)
      FUZZ_CHECK(whole.r.status == HeadStatus::kError, "an error in a prefix went away with more bytes");
    if (part.r.status == HeadStatus::kIncomplete) {
      Parsed resumed = parse(in, request, method, limits, part.r.consumed);
      FUZZ_CHECK(same(resumed.r, whole.r), "resuming the scan answered differently");
    }
  }

  // The body after a head, or the whole input under a framing picked by the
  // control byte (most inputs have no valid head).
  if (whole.r.status == HeadStatus::kDone) {
    check_framing(whole.framing, in.subspan(whole.r.consumed), seed, max_trailers);
  }
  Framing chosen{FramingKind::kChunked, 0};
  switch ((control >> 5) & 3) {
    case 0:
    case 1: break;
    case 2: chosen = {FramingKind::kContentLength, seed}; break;
    case 3: chosen = {FramingKind::kUntilClose, 0}; break;
  }
  check_framing(chosen, in, seed, max_trailers);
  return 0;
}
