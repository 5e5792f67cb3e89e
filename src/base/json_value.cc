#include "base/json_value.h"

#include <algorithm>
#include <charconv>
#include <cmath>
#include <cstdio>

namespace meshd {

// ---- JsonValue ------------------------------------------------------------

JsonValue JsonValue::boolean(bool b) {
  JsonValue v;
  v.kind_ = Kind::kBool;
  v.bool_ = b;
  return v;
}

JsonValue JsonValue::number(double d) {
  JsonValue v;
  v.kind_ = Kind::kNumber;
  v.num_ = d;
  // Integral doubles up to 2^53 are exact, so as_int() may report them:
  // "1e3" and "1000" should read the same to a caller.
  if (std::isfinite(d) && std::trunc(d) == d && std::fabs(d) <= 9007199254740992.0) {
    v.exact_int_ = true;
    v.int_ = static_cast<int64_t>(d);
  }
  return v;
}

JsonValue JsonValue::integer(int64_t i) {
  JsonValue v;
  v.kind_ = Kind::kNumber;
  v.num_ = static_cast<double>(i);
  v.exact_int_ = true;
  v.int_ = i;
  return v;
}

JsonValue JsonValue::string(std::string s) {
  JsonValue v;
  v.kind_ = Kind::kString;
  v.payload_ = std::move(s);
  return v;
}

JsonValue JsonValue::array(std::vector<JsonValue> items) {
  JsonValue v;
  v.kind_ = Kind::kArray;
  v.payload_ = std::move(items);
  return v;
}

JsonValue JsonValue::object(std::vector<JsonMember> members) {
  JsonValue v;
  v.kind_ = Kind::kObject;
  v.payload_ = std::move(members);
  return v;
}

std::optional<bool> JsonValue::as_bool() const noexcept {
  if (kind_ != Kind::kBool) return std::nullopt;
  return bool_;
}

std::optional<double> JsonValue::as_double() const noexcept {
  if (kind_ != Kind::kNumber) return std::nullopt;
  return num_;
}

std::optional<int64_t> JsonValue::as_int() const noexcept {
  if (kind_ != Kind::kNumber || !exact_int_) return std::nullopt;
  return int_;
}

std::optional<uint64_t> JsonValue::as_uint() const noexcept {
  if (kind_ != Kind::kNumber || !exact_int_ || int_ < 0) return std::nullopt;
  return static_cast<uint64_t>(int_);
}

std::optional<std::string_view> JsonValue::as_string() const noexcept {
  if (kind_ != Kind::kString) return std::nullopt;
  return std::string_view(std::get<std::string>(payload_));
}

const std::vector<JsonValue>& JsonValue::items() const noexcept {
  static const std::vector<JsonValue> kNone;
  if (kind_ != Kind::kArray) return kNone;
  return std::get<std::vector<JsonValue>>(payload_);
}

const std::vector<JsonMember>& JsonValue::members() const noexcept {
  static const std::vector<JsonMember> kNone;
  if (kind_ != Kind::kObject) return kNone;
  return std::get<std::vector<JsonMember>>(payload_);
}

size_t JsonValue::size() const noexcept {
  if (kind_ == Kind::kArray) return items().size();
  if (kind_ == Kind::kObject) return members().size();
  return 0;
}

const JsonValue* JsonValue::find(std::string_view key) const noexcept {
  // Linear: objects here are small, and the parser has already refused
  // duplicate keys, so the first match is the only one.
  for (const auto& [k, v] : members()) {
    if (k == key) return &v;
  }
  return nullptr;
}

namespace {
const JsonValue& shared_null() noexcept {
  static const JsonValue kNull;
  return kNull;
}
}  // namespace

const JsonValue& JsonValue::operator[](std::string_view key) const noexcept {
  const JsonValue* v = find(key);
  return v ? *v : shared_null();
}

const JsonValue& JsonValue::operator[](size_t index) const noexcept {
  const auto& all = items();
  return index < all.size() ? all[index] : shared_null();
}

bool JsonValue::operator==(const JsonValue& o) const noexcept {
  if (kind_ != o.kind_) return false;
  switch (kind_) {
    case Kind::kNull: return true;
    case Kind::kBool: return bool_ == o.bool_;
    case Kind::kNumber:
      if (exact_int_ && o.exact_int_) return int_ == o.int_;
      return num_ == o.num_;
    case Kind::kString:
    case Kind::kArray:
    case Kind::kObject: return payload_ == o.payload_;
  }
  return false;
}

// ---- parser ---------------------------------------------------------------

namespace {

class Parser {
 public:
  Parser(std::string_view text, const JsonLimits& limits) : s_(text), limits_(limits) {}

  Parsed<JsonValue> parse_document() {
    skip_ws();
    JsonValue v;
    if (!parse_value(v, 0)) return invalid(std::move(error_));
    skip_ws();
    if (pos_ != s_.size()) {
      fail_expected("end of input after the value");
      return invalid(std::move(error_));
    }
    return v;
  }

 private:
  // Every failure goes through here, so each message has the same shape and
  // names the offset where reading stopped.
  bool fail_at(size_t at, std::string what) {
    if (error_.empty()) error_ = "invalid JSON at byte " + std::to_string(at) + ": " + what;
    return false;
  }
  bool fail_expected(std::string_view expected) {
    return fail_at(pos_, "expected " + std::string(expected) + ", found " + describe_here());
  }

  std::string describe_here() const {
    if (pos_ >= s_.size()) return "end of input";
    unsigned char c = static_cast<unsigned char>(s_[pos_]);
    if (c >= 0x21 && c < 0x7f) return std::string("'") + static_cast<char>(c) + "'";
    char buf[16];
    snprintf(buf, sizeof buf, "byte 0x%02x", c);
    return buf;
  }

  bool at_end() const { return pos_ >= s_.size(); }
  char peek() const { return pos_ < s_.size() ? s_[pos_] : '\0'; }

  void skip_ws() {
    // RFC 8259 whitespace only: a form feed or NBSP is an error, not space.
    while (pos_ < s_.size()) {
      char c = s_[pos_];
      if (c != ' ' && c != '\t' && c != '\n' && c != '\r') break;
      ++pos_;
    }
  }

  bool parse_value(JsonValue& out, int depth) {
    if (at_end()) return fail_expected("a value");
    switch (s_[pos_]) {
      case '{': return parse_object(out, depth + 1);
      case '[': return parse_array(out, depth + 1);
      case '"': {
        std::string str;
        if (!parse_string(str)) return false;
        out = JsonValue::string(std::move(str));
        return true;
      }
      case 't': return parse_literal("true", JsonValue::boolean(true), out);
      case 'f': return parse_literal("false", JsonValue::boolean(false), out);
      case 'n': return parse_literal("null", JsonValue(), out);
      default:
        if (s_[pos_] == '-' || (s_[pos_] >= '0' && s_[pos_] <= '9')) return parse_number(out);
        return fail_expected("a value (object, array, string, number, true, false or null)");
    }
  }

  bool parse_literal(std::string_view word, JsonValue value, JsonValue& out) {
    if (s_.substr(pos_, word.size()) != word) return fail_expected(std::string("'") + std::string(word) + "'");
    pos_ += word.size();
    out = std::move(value);
    return true;
  }

  bool check_depth(int depth) {
    if (depth > limits_.max_depth)
      return fail_at(pos_, "nesting deeper than " + std::to_string(limits_.max_depth) + " levels");
    return true;
  }

  bool parse_array(JsonValue& out, int depth) {
    if (!check_depth(depth)) return false;
    ++pos_;  // '['
    std::vector<JsonValue> items;
    skip_ws();
    if (peek() == ']') {
      ++pos_;
      out = JsonValue::array(std::move(items));
      return true;
    }
    for (;;) {
      skip_ws();
      items.emplace_back();
      if (!parse_value(items.back(), depth)) return false;
      skip_ws();
      if (peek() == ',') {
        ++pos_;
        continue;
      }
      if (peek() == ']') {
        ++pos_;
        break;
      }
      return fail_expected("',' or ']' after an array element");
    }
    out = JsonValue::array(std::move(items));
    return true;
  }

  bool parse_object(JsonValue& out, int depth) {
    if (!check_depth(depth)) return false;
    ++pos_;  // '{'
    std::vector<JsonMember> members;
    std::vector<size_t> key_offsets;  // for naming the offset of a duplicate
    skip_ws();
    if (peek() == '}') {
      ++pos_;
      out = JsonValue::object(std::move(members));
      return true;
    }
    for (;;) {
      skip_ws();
      if (peek() != '"') return fail_expected("a string key");
      key_offsets.push_back(pos_);
      std::string key;
      if (!parse_string(key)) return false;
      skip_ws();
      if (peek() != ':') return fail_expected("':' after an object key");
      ++pos_;
      skip_ws();
      members.emplace_back(std::move(key), JsonValue());
      if (!parse_value(members.back().second, depth)) return false;
      skip_ws();
      if (peek() == ',') {
        ++pos_;
        continue;
      }
      if (peek() == '}') {
        ++pos_;
        break;
      }
      return fail_expected("',' or '}' after an object member");
    }
    if (!check_duplicates(members, key_offsets)) return false;
    out = JsonValue::object(std::move(members));
    return true;
  }

  // Duplicate keys are refused: RFC 8259 leaves their meaning open, and two
  // readers picking different ones is how smuggling bugs start. Sorting
  // indices keeps this O(n log n) for a hostile object with many keys.
  bool check_duplicates(const std::vector<JsonMember>& members, const std::vector<size_t>& offsets) {
    if (members.size() < 2) return true;
    std::vector<uint32_t> order(members.size());
    for (uint32_t i = 0; i < order.size(); ++i) order[i] = i;
    std::sort(order.begin(), order.end(), [&](uint32_t a, uint32_t b) {
      if (members[a].first != members[b].first) return members[a].first < members[b].first;
      return a < b;
    });
    for (size_t i = 1; i < order.size(); ++i) {
      if (members[order[i]].first == members[order[i - 1]].first) {
        std::string key = members[order[i]].first;
        if (key.size() > 64) key = key.substr(0, 64) + "...";
        return fail_at(offsets[order[i]], "duplicate object key \"" + key + "\"");
      }
    }
    return true;
  }

  static int hex_digit(char c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
  }

  // Reads the 4 hex digits after "\u" (pos_ at the first digit).
  bool parse_hex4(uint32_t& out) {
    out = 0;
    for (int i = 0; i < 4; ++i) {
      int d = at_end() ? -1 : hex_digit(s_[pos_]);
      if (d < 0) return fail_expected("4 hex digits after \\u");
      out = out << 4 | static_cast<uint32_t>(d);
      ++pos_;
    }
    return true;
  }

  static void append_utf8(std::string& out, uint32_t cp) {
    if (cp < 0x80) {
      out += static_cast<char>(cp);
    } else if (cp < 0x800) {
      out += static_cast<char>(0xC0 | cp >> 6);
      out += static_cast<char>(0x80 | (cp & 0x3F));
    } else if (cp < 0x10000) {
      out += static_cast<char>(0xE0 | cp >> 12);
      out += static_cast<char>(0x80 | (cp >> 6 & 0x3F));
      out += static_cast<char>(0x80 | (cp & 0x3F));
    } else {
      out += static_cast<char>(0xF0 | cp >> 18);
      out += static_cast<char>(0x80 | (cp >> 12 & 0x3F));
      out += static_cast<char>(0x80 | (cp >> 6 & 0x3F));
      out += static_cast<char>(0x80 | (cp & 0x3F));
    }
  }

  bool parse_escape(std::string& out) {
    size_t start = pos_;  // at the backslash
    ++pos_;
    if (at_end()) return fail_expected("an escape character after '\\'");
    char c = s_[pos_++];
    switch (c) {
      case '"': out += '"'; return true;
      case '\\': out += '\\'; return true;
      case '/': out += '/'; return true;
      case 'b': out += '\b'; return true;
      case 'f': out += '\f'; return true;
      case 'n': out += '\n'; return true;
      case 'r': out += '\r'; return true;
      case 't': out += '\t'; return true;
      case 'u': break;
      default: --pos_; return fail_expected("one of \" \\ / b f n r t u after '\\'");
    }
    uint32_t cp;
    if (!parse_hex4(cp)) return false;
    if (cp >= 0xDC00 && cp <= 0xDFFF)
      return fail_at(start, "lone low surrogate \\u" + hex4(cp) + " (not valid Unicode)");
    if (cp >= 0xD800 && cp <= 0xDBFF) {
      // A high surrogate must be followed by "\u" and a low one; together
      // they encode one code point above U+FFFF.
      if (s_.substr(pos_, 2) != "\\u")
        return fail_at(start, "high surrogate \\u" + hex4(cp) + " not followed by a low surrogate");
      pos_ += 2;
      uint32_t lo;
      if (!parse_hex4(lo)) return false;
      if (lo < 0xDC00 || lo > 0xDFFF)
        return fail_at(
            start, "high surrogate \\u" + hex4(cp) + " followed by \\u" + hex4(lo) + ", which is not a low surrogate");
      cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
    }
    append_utf8(out, cp);
    return true;
  }

  static std::string hex4(uint32_t v) {
    char buf[8];
    snprintf(buf, sizeof buf, "%04X", v);
    return buf;
  }

  // Validates one UTF-8 sequence starting at pos_ (a byte >= 0x80) and
  // copies it. Overlong forms, encoded surrogates and code points above
  // U+10FFFF are refused (RFC 3629), as RFC 8259 requires UTF-8 text.
  bool copy_utf8(std::string& out) {
    const size_t start = pos_;
    auto byte = [&](size_t i) { return static_cast<unsigned char>(s_[i]); };
    unsigned char b0 = byte(pos_);
    size_t len;
    uint32_t cp;
    if (b0 >= 0xC2 && b0 <= 0xDF) {
      len = 2;
      cp = b0 & 0x1F;
    } else if (b0 >= 0xE0 && b0 <= 0xEF) {
      len = 3;
      cp = b0 & 0x0F;
    } else if (b0 >= 0xF0 && b0 <= 0xF4) {
      len = 4;
      cp = b0 & 0x07;
    } else {
      return fail_at(start, "invalid UTF-8 " + describe_here() + " in a string");
    }
    if (s_.size() - pos_ < len) return fail_at(start, "truncated UTF-8 sequence in a string");
    for (size_t i = 1; i < len; ++i) {
      unsigned char b = byte(pos_ + i);
      if ((b & 0xC0) != 0x80) return fail_at(pos_ + i, "invalid UTF-8 continuation byte in a string");
      cp = cp << 6 | (b & 0x3F);
    }
    if ((len == 3 && cp < 0x800) || (len == 4 && cp < 0x10000))
      return fail_at(start, "overlong UTF-8 sequence in a string");
    if (cp >= 0xD800 && cp <= 0xDFFF) return fail_at(start, "UTF-8 encoded surrogate in a string");
    if (cp > 0x10FFFF) return fail_at(start, "UTF-8 sequence above U+10FFFF in a string");
    out.append(s_.substr(pos_, len));
    pos_ += len;
    return true;
  }

  bool parse_string(std::string& out) {
    const size_t open = pos_;
    ++pos_;  // opening quote
    for (;;) {
      // Copy the plain run in one go: most strings have no escapes.
      size_t run = pos_;
      while (run < s_.size()) {
        unsigned char c = static_cast<unsigned char>(s_[run]);
        if (c == '"' || c == '\\' || c < 0x20 || c >= 0x80) break;
        ++run;
      }
      out.append(s_.substr(pos_, run - pos_));
      pos_ = run;
      if (at_end()) return fail_at(pos_, "unterminated string (opened at byte " + std::to_string(open) + ")");
      unsigned char c = static_cast<unsigned char>(s_[pos_]);
      if (c == '"') {
        ++pos_;
        return true;
      }
      if (c == '\\') {
        if (!parse_escape(out)) return false;
      } else if (c < 0x20) {
        return fail_expected("a string character (control characters must be escaped)");
      } else if (!copy_utf8(out)) {
        return false;
      }
    }
  }

  bool parse_number(JsonValue& out) {
    // The grammar is checked by hand because from_chars accepts forms JSON
    // does not ("01", ".5", "1.", "+1", "inf").
    const size_t start = pos_;
    auto digit = [&] { return !at_end() && s_[pos_] >= '0' && s_[pos_] <= '9'; };
    if (peek() == '-') ++pos_;
    if (!digit()) return fail_expected("a digit");
    if (s_[pos_] == '0') {
      ++pos_;
      if (digit()) return fail_at(pos_, "leading zeros are not allowed in numbers");
    } else {
      while (digit()) ++pos_;
    }
    bool integral = true;
    if (peek() == '.') {
      integral = false;
      ++pos_;
      if (!digit()) return fail_expected("a digit after the decimal point");
      while (digit()) ++pos_;
    }
    if (peek() == 'e' || peek() == 'E') {
      integral = false;
      ++pos_;
      if (peek() == '+' || peek() == '-') ++pos_;
      if (!digit()) return fail_expected("a digit in the exponent");
      while (digit()) ++pos_;
    }
    const char* first = s_.data() + start;
    const char* last = s_.data() + pos_;
    if (integral) {
      int64_t i;
      auto [p, ec] = std::from_chars(first, last, i);
      if (ec == std::errc() && p == last) {
        out = JsonValue::integer(i);
        return true;
      }
      // Beyond int64: still a valid number, kept as a double (inexact).
    }
    double d;
    auto [p, ec] = std::from_chars(first, last, d);
    if (ec == std::errc::result_out_of_range) {
      // Overflow has no finite double; underflow rounds to zero harmlessly.
      bool negative_exponent = false;
      for (const char* q = first; q < last; ++q) {
        if ((*q == 'e' || *q == 'E') && q + 1 < last && q[1] == '-') negative_exponent = true;
      }
      if (!negative_exponent) return fail_at(start, "number " + std::string(first, last) + " is out of range");
      d = 0.0;
    } else if (ec != std::errc() || p != last) {
      return fail_at(start, "unreadable number");
    }
    out = JsonValue::number(d);
    return true;
  }

  std::string_view s_;
  const JsonLimits& limits_;
  size_t pos_ = 0;
  std::string error_;
};

}  // namespace

Parsed<JsonValue> parse_json(std::string_view text, const JsonLimits& limits) {
  if (text.size() > limits.max_bytes) {
    return invalid("JSON document is " + std::to_string(text.size()) + " bytes, more than the limit of " +
                   std::to_string(limits.max_bytes));
  }
  Parser parser(text, limits);
  return parser.parse_document();
}

}  // namespace meshd
