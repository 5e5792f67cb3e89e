#include "identity/der.h"

#include <cstdio>

namespace meshd::identity::der {
namespace {

constexpr std::string_view kOidSubjectAltName("\x55\x1d\x11", 3);
constexpr std::string_view kOidBasicConstraints("\x55\x1d\x13", 3);
constexpr std::string_view kOidCommonName("\x55\x04\x03", 3);
constexpr std::string_view kOidExtensionRequest("\x2a\x86\x48\x86\xf7\x0d\x01\x09\x0e", 9);
constexpr uint64_t kMaxUnixSeconds = 253402300799;  // 9999-12-31T23:59:59Z

// Howard Hinnant's days_from_civil / civil_from_days: exact for the
// proleptic Gregorian calendar, no time zone or libc involved.
int64_t days_from_civil(int64_t y, unsigned m, unsigned d) {
  y -= m <= 2;
  const int64_t era = (y >= 0 ? y : y - 399) / 400;
  const unsigned yoe = static_cast<unsigned>(y - era * 400);
  const unsigned doy = (153 * (m > 2 ? m - 3 : m + 9) + 2) / 5 + d - 1;
  const unsigned doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
  return era * 146097 + static_cast<int64_t>(doe) - 719468;
}

void civil_from_days(int64_t z, int64_t* y, unsigned* m, unsigned* d) {
  z += 719468;
  const int64_t era = (z >= 0 ? z : z - 146096) / 146097;
  const unsigned doe = static_cast<unsigned>(z - era * 146097);
  const unsigned yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
  const unsigned doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
  const unsigned mp = (5 * doy + 2) / 153;
  *d = doy - (153 * mp + 2) / 5 + 1;
  *m = mp < 10 ? mp + 3 : mp - 9;
  *y = static_cast<int64_t>(yoe) + era * 400 + (*m <= 2);
}

unsigned days_in_month(int64_t y, unsigned m) {
  static constexpr unsigned kDays[] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
  bool leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
  return m == 2 && leap ? 29 : kDays[m - 1];
}

bool digits(std::string_view s, size_t at, size_t n, unsigned* out) {
  unsigned v = 0;
  for (size_t i = at; i < at + n; ++i) {
    if (s[i] < '0' || s[i] > '9') return false;
    v = v * 10 + static_cast<unsigned>(s[i] - '0');
  }
  *out = v;
  return true;
}

Parsed<void> read_extensions(std::string_view extensions_seq, Parts* parts) {
  Reader outer(extensions_seq);
  auto seq = outer.expect(kSequence, "extensions");
  if (!seq) return std::unexpected(seq.error());
  if (!outer.empty()) return invalid("extensions: trailing data");
  Reader exts(seq->value);
  while (!exts.empty()) {
    auto ext = exts.expect(kSequence, "extension");
    if (!ext) return std::unexpected(ext.error());
    Reader e(ext->value);
    auto oid = e.expect(kOid, "extension id");
    if (!oid) return std::unexpected(oid.error());
    Tlv critical;
    e.next_if(kBoolean, &critical);
    auto value = e.expect(kOctetString, "extension value");
    if (!value) return std::unexpected(value.error());
    if (!e.empty()) return invalid("extension: trailing data");
    if (oid->value == kOidBasicConstraints) {
      Reader v(value->value);
      auto bc = v.expect(kSequence, "basicConstraints");
      if (!bc) return std::unexpected(bc.error());
      Reader b(bc->value);
      Tlv ca;
      parts->is_ca = b.next_if(kBoolean, &ca) && ca.value.size() == 1 && ca.value[0] != 0;
      continue;
    }
    if (oid->value != kOidSubjectAltName) continue;
    if (parts->has_san) return invalid("more than one subjectAltName extension");
    parts->has_san = true;
    Reader v(value->value);
    auto names = v.expect(kSequence, "subjectAltName");
    if (!names) return std::unexpected(names.error());
    if (!v.empty()) return invalid("subjectAltName: trailing data");
    Reader n(names->value);
    while (!n.empty()) {
      auto name = n.next();
      if (!name) return invalid("subjectAltName: " + name.error());
      if ((name->tag & 0xc0) != 0x80) return invalid("subjectAltName: an entry is not a GeneralName");
      parts->alt_names.push_back({name->tag, name->value});
    }
  }
  return {};
}

// Name ::= SEQUENCE OF SET OF SEQUENCE { type OID, value ANY }.
Parsed<std::string_view> common_name(std::string_view name_value) {
  Reader rdns(name_value);
  while (!rdns.empty()) {
    auto set = rdns.expect(kSet, "name");
    if (!set) return std::unexpected(set.error());
    Reader atvs(set->value);
    while (!atvs.empty()) {
      auto atv = atvs.expect(kSequence, "name attribute");
      if (!atv) return std::unexpected(atv.error());
      Reader a(atv->value);
      auto type = a.expect(kOid, "name attribute type");
      if (!type) return std::unexpected(type.error());
      auto value = a.next();
      if (!value) return invalid("name attribute value: " + value.error());
      if (type->value == kOidCommonName) return value->value;
    }
  }
  return std::string_view();
}

}  // namespace

Parsed<Tlv> Reader::next() {
  if (rest_.size() < 2) return invalid("truncated DER");
  const auto* p = reinterpret_cast<const uint8_t*>(rest_.data());
  uint8_t tag = p[0];
  if ((tag & 0x1f) == 0x1f) return invalid("DER tag numbers above 30 are not used here");
  size_t len = p[1], header = 2;
  if (len == 0x80) return invalid("indefinite DER length");
  if (len > 0x80) {
    size_t n = len & 0x7f;
    if (n > 4 || rest_.size() < 2 + n) return invalid("bad DER length");
    len = 0;
    for (size_t i = 0; i < n; ++i) len = (len << 8) | p[2 + i];
    header += n;
  }
  if (len > rest_.size() - header) return invalid("DER length runs past the end");
  Tlv t{tag, rest_.substr(header, len), rest_.substr(0, header + len)};
  rest_.remove_prefix(header + len);
  return t;
}

Parsed<Tlv> Reader::expect(uint8_t tag, std::string_view what) {
  auto t = next();
  if (!t) return invalid(std::string(what) + ": " + t.error());
  if (t->tag != tag) {
    char buf[80];
    snprintf(buf, sizeof buf, ": expected tag 0x%02x, found 0x%02x", tag, t->tag);
    return invalid(std::string(what) + buf);
  }
  return t;
}

bool Reader::next_if(uint8_t tag, Tlv* out) {
  if (rest_.empty() || static_cast<uint8_t>(rest_[0]) != tag) return false;
  Reader probe(rest_);
  auto t = probe.next();
  if (!t) return false;
  *out = *t;
  rest_ = probe.rest_;
  return true;
}

std::string tlv(uint8_t tag, std::string_view contents) {
  std::string out(1, static_cast<char>(tag));
  size_t n = contents.size();
  if (n < 0x80) {
    out += static_cast<char>(n);
  } else {
    std::string len;
    for (; n > 0; n >>= 8) len.insert(len.begin(), static_cast<char>(n & 0xff));
    out += static_cast<char>(0x80 | len.size());
    out += len;
  }
  out += contents;
  return out;
}

std::string uri_general_names(std::string_view uri) { return tlv(kSequence, tlv(kSanUri, uri)); }

Parsed<Parts> parse_certificate(std::string_view der) {
  Reader top(der);
  auto cert = top.expect(kSequence, "certificate");
  if (!cert) return std::unexpected(cert.error());
  if (!top.empty()) return invalid("certificate: trailing data");
  Reader c(cert->value);
  auto tbs = c.expect(kSequence, "tbsCertificate");
  if (!tbs) return std::unexpected(tbs.error());
  Reader t(tbs->value);
  Tlv skip;
  t.next_if(0xa0, &skip);  // version
  Parts parts;
  auto serial = t.expect(kInteger, "serial number");
  if (!serial) return std::unexpected(serial.error());
  parts.serial = serial->value;
  for (const char* what : {"signature algorithm", "issuer"}) {
    if (auto s = t.expect(kSequence, what); !s) return std::unexpected(s.error());
  }
  auto validity = t.expect(kSequence, "validity");
  if (!validity) return std::unexpected(validity.error());
  Reader v(validity->value);
  auto nb = v.next(), na = v.next();
  if (!nb || !na || !v.empty()) return invalid("validity is malformed");
  parts.not_before = nb->whole;
  parts.not_after = na->whole;
  auto subject = t.expect(kSequence, "subject");
  if (!subject) return std::unexpected(subject.error());
  auto cn = common_name(subject->value);
  if (!cn) return std::unexpected(cn.error());
  parts.subject_cn = *cn;
  auto spki = t.expect(kSequence, "subjectPublicKeyInfo");
  if (!spki) return std::unexpected(spki.error());
  parts.spki = spki->whole;
  t.next_if(0x81, &skip);  // issuerUniqueID
  t.next_if(0x82, &skip);  // subjectUniqueID
  Tlv exts;
  if (t.next_if(0xa3, &exts)) {
    if (auto ok = read_extensions(exts.value, &parts); !ok) return std::unexpected(ok.error());
  }
  if (!t.empty()) return invalid("tbsCertificate: trailing data");
  return parts;
}

Parsed<Parts> parse_csr(std::string_view der) {
  Reader top(der);
  auto req = top.expect(kSequence, "CSR");
  if (!req) return std::unexpected(req.error());
  if (!top.empty()) return invalid("CSR: trailing data");
  Reader r(req->value);
  auto info = r.expect(kSequence, "certificationRequestInfo");
  if (!info) return std::unexpected(info.error());
  Reader i(info->value);
  if (auto s = i.expect(kInteger, "CSR version"); !s) return std::unexpected(s.error());
  if (auto s = i.expect(kSequence, "CSR subject"); !s) return std::unexpected(s.error());
  Parts parts;
  auto spki = i.expect(kSequence, "CSR subjectPublicKeyInfo");
  if (!spki) return std::unexpected(spki.error());
  parts.spki = spki->whole;
  Tlv attrs;
  if (i.next_if(0xa0, &attrs)) {
    Reader a(attrs.value);
    while (!a.empty()) {
      auto attr = a.expect(kSequence, "CSR attribute");
      if (!attr) return std::unexpected(attr.error());
      Reader at(attr->value);
      auto oid = at.expect(kOid, "CSR attribute type");
      if (!oid) return std::unexpected(oid.error());
      auto values = at.expect(kSet, "CSR attribute values");
      if (!values) return std::unexpected(values.error());
      if (oid->value != kOidExtensionRequest) continue;
      if (auto ok = read_extensions(values->value, &parts); !ok) return std::unexpected(ok.error());
    }
  }
  if (!i.empty()) return invalid("certificationRequestInfo: trailing data");
  return parts;
}

Parsed<std::string> encode_time(uint64_t unix_s) {
  if (unix_s > kMaxUnixSeconds) return invalid("time is past the year 9999");
  int64_t y;
  unsigned m, d;
  civil_from_days(static_cast<int64_t>(unix_s / 86400), &y, &m, &d);
  uint64_t sod = unix_s % 86400;
  char buf[32];
  unsigned hh = static_cast<unsigned>(sod / 3600), mm = static_cast<unsigned>(sod / 60 % 60),
           ss = static_cast<unsigned>(sod % 60);
  if (y < 2050) {
    snprintf(buf, sizeof buf, "%02u%02u%02u%02u%02u%02uZ", static_cast<unsigned>(y % 100), m, d, hh, mm, ss);
    return tlv(kUtcTime, buf);
  }
  snprintf(buf, sizeof buf, "%04u%02u%02u%02u%02u%02uZ", static_cast<unsigned>(y), m, d, hh, mm, ss);
  return tlv(kGeneralizedTime, buf);
}

Parsed<uint64_t> decode_time(std::string_view whole_tlv) {
  Reader r(whole_tlv);
  auto t = r.next();
  if (!t) return invalid("time: " + t.error());
  std::string_view s = t->value;
  unsigned year = 0, at = 0;
  if (t->tag == kUtcTime && s.size() == 13) {
    if (!digits(s, 0, 2, &year)) return invalid("time is malformed");
    year += year >= 50 ? 1900 : 2000;
    at = 2;
  } else if (t->tag == kGeneralizedTime && s.size() == 15) {
    if (!digits(s, 0, 4, &year)) return invalid("time is malformed");
    at = 4;
  } else {
    return invalid("time is not a UTCTime or GeneralizedTime with seconds and Z");
  }
  unsigned mo, d, hh, mm, ss;
  if (!digits(s, at, 2, &mo) || !digits(s, at + 2, 2, &d) || !digits(s, at + 4, 2, &hh) || !digits(s, at + 6, 2, &mm) ||
      !digits(s, at + 8, 2, &ss) || s[at + 10] != 'Z') {
    return invalid("time is malformed");
  }
  if (year < 1970 || mo < 1 || mo > 12 || d < 1 || d > days_in_month(year, mo) || hh > 23 || mm > 59 || ss > 59) {
    return invalid("time is out of range");
  }
  int64_t days = days_from_civil(year, mo, d);
  return static_cast<uint64_t>(days) * 86400 + hh * 3600 + mm * 60 + ss;
}

}  // namespace meshd::identity::der
