// Library-internal: a small strict DER reader and the few encodings the
// identity code needs that wolfSSL does not export (GeneralNames with one
// URI, raw X.509 times). Reading SANs and validity ourselves avoids
// DecodedCert, whose layout depends on wolfSSL's build macros, and lets us
// see every GeneralName type, not just the ones wolfSSL keeps.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "base/result.h"

namespace meshd::identity::der {

struct Tlv {
  uint8_t tag = 0;
  std::string_view value;  // the contents
  std::string_view whole;  // tag + length + contents
};

// Reads consecutive TLVs from a buffer, refusing indefinite lengths,
// high tag numbers and lengths past the end.
class Reader {
 public:
  explicit Reader(std::string_view in) : rest_(in) {}
  bool empty() const { return rest_.empty(); }
  // The next TLV; fails when malformed.
  Parsed<Tlv> next();
  // The next TLV, which must have this tag.
  Parsed<Tlv> expect(uint8_t tag, std::string_view what);
  // The next TLV if it has this tag (nothing consumed otherwise).
  bool next_if(uint8_t tag, Tlv* out);

 private:
  std::string_view rest_;
};

inline constexpr uint8_t kSequence = 0x30;
inline constexpr uint8_t kSet = 0x31;
inline constexpr uint8_t kInteger = 0x02;
inline constexpr uint8_t kBitString = 0x03;
inline constexpr uint8_t kOctetString = 0x04;
inline constexpr uint8_t kOid = 0x06;
inline constexpr uint8_t kBoolean = 0x01;
inline constexpr uint8_t kUtcTime = 0x17;
inline constexpr uint8_t kGeneralizedTime = 0x18;
inline constexpr uint8_t kSanUri = 0x86;    // [6] IA5String
inline constexpr uint8_t kSanDns = 0x82;    // [2]
inline constexpr uint8_t kSanEmail = 0x81;  // [1]
inline constexpr uint8_t kSanIp = 0x87;     // [7]

// A tag and length header (long form when needed) followed by contents.
std::string tlv(uint8_t tag, std::string_view contents);

// GeneralNames DER holding one URI, for Cert.altNames.
std::string uri_general_names(std::string_view uri);

struct GeneralName {
  uint8_t tag = 0;  // the context tag byte, e.g. kSanUri
  std::string_view value;
};

// The parts of a certificate or CSR the identity code reads itself.
struct Parts {
  std::string_view spki;                   // SubjectPublicKeyInfo, whole TLV
  std::string_view serial;                 // INTEGER contents (certificates only)
  std::string_view not_before, not_after;  // whole time TLVs (certificates only)
  std::string_view subject_cn;             // first commonName, raw bytes (certificates only)
  bool is_ca = false;                      // basicConstraints cA (certificates only)
  bool has_san = false;
  std::vector<GeneralName> alt_names;  // SubjectAltName entries, in order
};
Parsed<Parts> parse_certificate(std::string_view der);
Parsed<Parts> parse_csr(std::string_view der);

// X.509 times: UTCTime before 2050, GeneralizedTime from 2050 (RFC 5280).
// Seconds must fit in year 9999.
Parsed<std::string> encode_time(uint64_t unix_s);
Parsed<uint64_t> decode_time(std::string_view whole_tlv);

}  // namespace meshd::identity::der
