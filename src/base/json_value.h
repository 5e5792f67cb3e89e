// A strict, bounded JSON reader (RFC 8259) for documents meshd's tools
// receive: /status.json in meshd-ctl, later discovery and config files.
//
// Strict because two parsers that disagree about one document are a security
// bug waiting to happen: no comments, no trailing commas, no NaN, no lone
// surrogates, no invalid UTF-8, no duplicate object keys. Bounded because the
// input may come from a process we do not trust: nesting depth and document
// size are capped, so hostile input gets an error, never a crash or an
// unbounded allocation. Errors name the byte offset and what was expected.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <variant>
#include <vector>

#include "base/result.h"

namespace meshd {

class JsonValue;
using JsonMember = std::pair<std::string, JsonValue>;

class JsonValue {
 public:
  enum class Kind : uint8_t { kNull, kBool, kNumber, kString, kArray, kObject };

  JsonValue() noexcept = default;  // null
  static JsonValue boolean(bool b);
  static JsonValue number(double d);
  static JsonValue integer(int64_t i);
  static JsonValue string(std::string s);
  static JsonValue array(std::vector<JsonValue> items);
  static JsonValue object(std::vector<JsonMember> members);

  Kind kind() const noexcept { return kind_; }
  bool is_null() const noexcept { return kind_ == Kind::kNull; }
  bool is_bool() const noexcept { return kind_ == Kind::kBool; }
  bool is_number() const noexcept { return kind_ == Kind::kNumber; }
  bool is_string() const noexcept { return kind_ == Kind::kString; }
  bool is_array() const noexcept { return kind_ == Kind::kArray; }
  bool is_object() const noexcept { return kind_ == Kind::kObject; }

  // Each accessor returns nullopt when the value is of another kind, so a
  // reader can tolerate missing or mistyped fields without checking kinds.
  std::optional<bool> as_bool() const noexcept;
  std::optional<double> as_double() const noexcept;
  // Only when the number is integral and exactly representable as int64
  // ("120", "1e3"); "1.5" or "1e30" give nullopt.
  std::optional<int64_t> as_int() const noexcept;
  // as_int() when it is >= 0.
  std::optional<uint64_t> as_uint() const noexcept;
  // Views into this value: valid while it lives.
  std::optional<std::string_view> as_string() const noexcept;

  // Empty unless this is an array / object. Object members keep the order
  // of the document.
  const std::vector<JsonValue>& items() const noexcept;
  const std::vector<JsonMember>& members() const noexcept;
  size_t size() const noexcept;  // items or members; 0 otherwise

  // nullptr when this is not an object or has no such key.
  const JsonValue* find(std::string_view key) const noexcept;
  // For chained lookups of optional fields: doc["memory"]["rss_bytes"].
  // A missing key (or a non-object) gives a shared null value.
  const JsonValue& operator[](std::string_view key) const noexcept;
  // Array element, or the shared null value when out of range.
  const JsonValue& operator[](size_t index) const noexcept;

  bool operator==(const JsonValue& o) const noexcept;

 private:
  // One variant for the variable-size payload keeps a value at 64 bytes
  // (separate members would take ~104): a hostile "[0,0,0,...]" costs
  // 32-64x its size in memory (vector growth included), not 50-100x.
  using Payload = std::variant<std::monostate, std::string, std::vector<JsonValue>, std::vector<JsonMember>>;
  Kind kind_ = Kind::kNull;
  bool bool_ = false;
  bool exact_int_ = false;  // int_ holds the exact value of the number
  int64_t int_ = 0;
  double num_ = 0;
  Payload payload_;
};

struct JsonLimits {
  // The whole document. With at most ~64x amplification (see JsonValue),
  // 1 MiB of input costs at most ~64 MiB; callers expecting bigger
  // documents raise it.
  size_t max_bytes = 1u << 20;
  int max_depth = 64;  // nested arrays/objects
};

// Parses exactly one JSON value, with optional surrounding whitespace.
// The error reads like "invalid JSON at byte 17: expected ',' or '}' after
// an object member, found 'x'".
Parsed<JsonValue> parse_json(std::string_view text, const JsonLimits& limits = {});

}  // namespace meshd
