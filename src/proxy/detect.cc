#include "proxy/detect.h"

#include <algorithm>
#include <cstring>

namespace meshd::proxy {

namespace {

constexpr uint8_t kContentHandshake = 0x16;
constexpr uint8_t kClientHello = 1;
constexpr size_t kRecordHeader = 5;
constexpr size_t kMaxRecordPayload = 16 * 1024;
constexpr uint16_t kExtServerName = 0x0000;
constexpr uint16_t kExtAlpn = 0x0010;
constexpr uint8_t kSniHostName = 0;

// Reads the handshake byte stream carried by consecutive handshake records,
// forward only, never past the input or kMaxClientHelloBytes. Every read
// either succeeds or stops the reader for good: kShort when the input ends
// before the bytes (more may come), kBad when the records are not a
// handshake or the limit is passed.
class Reader {
 public:
  enum class Stop : uint8_t { kNone, kShort, kBad };

  explicit Reader(std::span<const char> in) : in_(in) {}

  Stop stop() const { return stop_; }
  void bad() { stop_ = Stop::kBad; }
  // Handshake bytes consumed so far (record headers excluded).
  size_t offset() const { return offset_; }

  bool u8(size_t& v) { return number(1, v); }
  bool u16(size_t& v) { return number(2, v); }
  bool u24(size_t& v) { return number(3, v); }

  bool skip(size_t n) {
    std::string_view p;
    while (n > 0) {
      if (!piece(n, p)) return false;
      n -= p.size();
    }
    return true;
  }

  // Whether the next n bytes equal want.
  bool equals(size_t n, std::string_view want, bool& eq) {
    eq = n == want.size();
    std::string_view p;
    for (size_t done = 0; done < n; done += p.size()) {
      if (!piece(n - done, p)) return false;
      if (eq && std::memcmp(p.data(), want.data() + done, p.size()) != 0) eq = false;
    }
    return true;
  }

  // The next n bytes as a view of the input, or an empty view when they
  // straddle two records.
  bool view(size_t n, std::string_view& out) {
    out = {};
    if (n == 0) return true;
    std::string_view p;
    if (!piece(n, p)) return false;
    if (p.size() == n) {
      out = p;
      return true;
    }
    return skip(n - p.size());
  }

 private:
  bool number(size_t width, size_t& v) {
    v = 0;
    std::string_view p;
    while (width > 0) {
      if (!piece(width, p)) return false;
      for (char c : p) v = (v << 8) | static_cast<uint8_t>(c);
      width -= p.size();
    }
    return true;
  }

  // Up to n (> 0) bytes that are contiguous in the input.
  bool piece(size_t n, std::string_view& out) {
    if (!next_record()) return false;
    if (pos_ >= kMaxClientHelloBytes) {
      bad();
      return false;
    }
    if (pos_ >= in_.size()) {
      stop_ = Stop::kShort;
      return false;
    }
    size_t k = std::min({n, record_left_, in_.size() - pos_, kMaxClientHelloBytes - pos_});
    out = {in_.data() + pos_, k};
    pos_ += k;
    record_left_ -= k;
    offset_ += k;
    return true;
  }

  // Makes sure the current record has bytes left, entering the next one.
  bool next_record() {
    if (stop_ != Stop::kNone) return false;
    if (record_left_ > 0) return true;
    if (pos_ + kRecordHeader > kMaxClientHelloBytes) {
      bad();
      return false;
    }
    const auto* h = reinterpret_cast<const uint8_t*>(in_.data() + pos_);
    size_t avail = in_.size() - pos_;
    // A ClientHello's records are all handshake records: judge the header
    // bytes already here before asking for the rest.
    if ((avail >= 1 && h[0] != kContentHandshake) || (avail >= 2 && h[1] != 0x03) ||
        (avail >= 3 && (h[2] < 0x01 || h[2] > 0x04))) {
      bad();
      return false;
    }
    if (avail < kRecordHeader) {
      stop_ = Stop::kShort;
      return false;
    }
    size_t len = (size_t{h[3]} << 8) | h[4];
    if (len == 0 || len > kMaxRecordPayload) {
      bad();
      return false;
    }
    pos_ += kRecordHeader;
    record_left_ = len;
    return true;
  }

  std::span<const char> in_;
  size_t pos_ = 0;          // next input byte
  size_t record_left_ = 0;  // payload bytes left in the current record
  size_t offset_ = 0;
  Stop stop_ = Stop::kNone;
};

}  // namespace

Detection detect_client_hello(std::span<const char> bytes, std::string_view mesh_alpn) {
  if (bytes.empty()) return {Detected::kNeedMore, {}};
  // Plaintext must not wait: a first byte (or header prefix) that cannot
  // start a TLS handshake record decides at once.
  const auto* b = reinterpret_cast<const uint8_t*>(bytes.data());
  if (b[0] != kContentHandshake) return {Detected::kNotTls, {}};
  if (bytes.size() >= 2 && b[1] != 0x03) return {Detected::kNotTls, {}};
  if (bytes.size() >= 3 && (b[2] < 0x01 || b[2] > 0x04)) return {Detected::kNotTls, {}};

  Reader r(bytes);
  auto stopped = [&r] {
    return Detection{r.stop() == Reader::Stop::kShort ? Detected::kNeedMore : Detected::kOtherTls, {}};
  };
  auto other = [] { return Detection{Detected::kOtherTls, {}}; };

  size_t type = 0;
  size_t length = 0;
  if (!r.u8(type)) return stopped();
  if (type != kClientHello) return other();
  if (!r.u24(length)) return stopped();
  if (length + 4 + kRecordHeader > kMaxClientHelloBytes) return other();
  const size_t end = r.offset() + length;

  // legacy_version, random, legacy_session_id, cipher_suites,
  // legacy_compression_methods: walked only to reach the extensions.
  size_t n = 0;
  if (!r.skip(2 + 32)) return stopped();
  if (!r.u8(n)) return stopped();
  if (n > 32) return other();
  if (!r.skip(n)) return stopped();
  if (!r.u16(n)) return stopped();
  if (n < 2 || n % 2 != 0) return other();
  if (!r.skip(n)) return stopped();
  if (!r.u8(n)) return stopped();
  if (n < 1) return other();
  if (!r.skip(n)) return stopped();
  if (r.offset() > end) return other();
  if (r.offset() == end) return other();  // no extensions, so no ALPN

  size_t ext_total = 0;
  if (!r.u16(ext_total)) return stopped();
  const size_t ext_end = r.offset() + ext_total;
  if (ext_end > end) return other();

  bool mesh = false;
  std::string_view sni;
  while (r.offset() < ext_end) {
    size_t ext_type = 0;
    size_t ext_len = 0;
    if (ext_end - r.offset() < 4) return other();
    if (!r.u16(ext_type) || !r.u16(ext_len)) return stopped();
    if (r.offset() + ext_len > ext_end) return other();
    if (ext_type == kExtAlpn) {
      // ProtocolNameList: u16 length, then (u8 length, name) entries, none empty.
      size_t list_len = 0;
      if (ext_len < 2) return other();
      if (!r.u16(list_len)) return stopped();
      if (list_len + 2 != ext_len) return other();
      const size_t list_end = r.offset() + list_len;
      while (r.offset() < list_end) {
        size_t name_len = 0;
        bool eq = false;
        if (!r.u8(name_len)) return stopped();
        if (name_len == 0 || r.offset() + name_len > list_end) return other();
        if (!r.equals(name_len, mesh_alpn, eq)) return stopped();
        mesh = mesh || eq;
      }
    } else if (ext_type == kExtServerName) {
      // ServerNameList: u16 length, then (u8 type, u16 length, name) entries.
      size_t list_len = 0;
      if (ext_len < 2) return other();
      if (!r.u16(list_len)) return stopped();
      if (list_len + 2 != ext_len) return other();
      const size_t list_end = r.offset() + list_len;
      while (r.offset() < list_end) {
        size_t name_type = 0;
        size_t name_len = 0;
        if (list_end - r.offset() < 3) return other();
        if (!r.u8(name_type) || !r.u16(name_len)) return stopped();
        if (r.offset() + name_len > list_end) return other();
        std::string_view name;
        if (!r.view(name_len, name)) return stopped();
        if (name_type == kSniHostName && sni.empty()) sni = name;
      }
    } else {
      if (!r.skip(ext_len)) return stopped();
    }
  }
  // Judge only a whole ClientHello, so that the answer never changes as
  // more bytes arrive.
  if (!r.skip(end - r.offset())) return stopped();
  return {mesh ? Detected::kMeshTls : Detected::kOtherTls, sni};
}

}  // namespace meshd::proxy
