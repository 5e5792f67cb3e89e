#include "base/json_value.h"

#include <catch2/catch.hpp>
#include <string>

using meshd::JsonLimits;
using meshd::JsonValue;
using meshd::parse_json;

namespace {

// The error text of a parse that must fail.
std::string error_of(std::string_view text, const JsonLimits& limits = {}) {
  auto r = parse_json(text, limits);
  REQUIRE_FALSE(r.has_value());
  return r.error();
}

}  // namespace

TEST_CASE("json: scalars", "[json]") {
  CHECK(parse_json("null")->is_null());
  CHECK(parse_json("true")->as_bool() == true);
  CHECK(parse_json("false")->as_bool() == false);
  CHECK(parse_json("  \t\r\n 42 \n")->as_int() == 42);
  CHECK(parse_json("\"hi\"")->as_string() == "hi");
  CHECK(parse_json("-0")->as_int() == 0);
}

TEST_CASE("json: numbers keep exact int64 when integral", "[json]") {
  CHECK(parse_json("9223372036854775807")->as_int() == INT64_MAX);
  CHECK(parse_json("-9223372036854775808")->as_int() == INT64_MIN);
  // Past int64: still a number, but not claimed to be exact.
  auto big = parse_json("18446744073709551616");
  REQUIRE(big);
  CHECK_FALSE(big->as_int());
  CHECK(big->as_double() == Approx(1.8446744073709552e19));
  CHECK(parse_json("1e3")->as_int() == 1000);
  CHECK(parse_json("133.2")->as_double() == Approx(133.2));
  CHECK_FALSE(parse_json("133.2")->as_int());
  CHECK(parse_json("-2.5E-3")->as_double() == Approx(-0.0025));
  CHECK(parse_json("1e-400")->as_double() == 0.0);  // underflow rounds to zero
  CHECK_FALSE(parse_json("-1")->as_uint());
  CHECK(parse_json("7")->as_uint() == 7u);
}

TEST_CASE("json: number grammar is strict", "[json]") {
  for (const char* bad : {"01", "-", "+1", ".5", "1.", "1e", "1e+", "0x10", "Infinity", "NaN", "-inf", "1.5.2"}) {
    INFO(bad);
    CHECK_FALSE(parse_json(bad));
  }
  CHECK(error_of("1e400").find("out of range") != std::string::npos);
  CHECK(error_of("01") == "invalid JSON at byte 1: leading zeros are not allowed in numbers");
}

TEST_CASE("json: strings and escapes", "[json]") {
  CHECK(parse_json(R"("a\"b\\c\/d\b\f\n\r\t")")->as_string() == "a\"b\\c/d\b\f\n\r\t");
  CHECK(parse_json(R"("\u0041\u00e9\u20AC")")->as_string() == "A\xC3\xA9\xE2\x82\xAC");
  // A surrogate pair is one code point: U+1F600 as 4 UTF-8 bytes.
  CHECK(parse_json(R"("\uD83D\uDE00")")->as_string() == "\xF0\x9F\x98\x80");
  CHECK(parse_json(R"("\u0000")")->as_string() == std::string(1, '\0'));
  // Raw UTF-8 passes through.
  CHECK(parse_json("\"caf\xC3\xA9 \xF0\x9F\x98\x80\"")->as_string() == "caf\xC3\xA9 \xF0\x9F\x98\x80");
}

TEST_CASE("json: bad strings are refused with the offset", "[json]") {
  CHECK(error_of(R"("\uD83D")").find("not followed by a low surrogate") != std::string::npos);
  CHECK(error_of(R"("\uD83D\u0041")").find("not a low surrogate") != std::string::npos);
  CHECK(error_of(R"("\uDE00")").find("lone low surrogate") != std::string::npos);
  CHECK(error_of(R"("\u12G4")").find("4 hex digits") != std::string::npos);
  CHECK(error_of(R"("\x")") == "invalid JSON at byte 2: expected one of \" \\ / b f n r t u after '\\', found 'x'");
  CHECK(error_of("\"a\tb\"").find("control characters must be escaped") != std::string::npos);
  CHECK(error_of("\"abc") == "invalid JSON at byte 4: unterminated string (opened at byte 0)");
  CHECK(error_of("\"\xC0\xAF\"").find("invalid UTF-8") != std::string::npos);  // overlong '/'
  CHECK(error_of("\"\xE0\x80\xAF\"").find("overlong") != std::string::npos);
  CHECK(error_of("\"\xED\xA0\x80\"").find("surrogate") != std::string::npos);  // CESU-8
  CHECK(error_of("\"\xF4\x90\x80\x80\"").find("above U+10FFFF") != std::string::npos);
  CHECK(error_of("\"\xE2\x82\"").find("UTF-8") != std::string::npos);  // truncated
  CHECK(error_of("\"\xFF\"").find("byte 0xff") != std::string::npos);
}

TEST_CASE("json: arrays and objects keep document order", "[json]") {
  auto v = parse_json(R"({"b": 1, "a": [true, null, "x", {"k": []}], "c": {}})");
  REQUIRE(v);
  REQUIRE(v->is_object());
  REQUIRE(v->size() == 3);
  CHECK(v->members()[0].first == "b");
  CHECK(v->members()[1].first == "a");
  CHECK(v->members()[2].first == "c");
  CHECK((*v)["a"].size() == 4);
  CHECK((*v)["a"][0].as_bool() == true);
  CHECK((*v)["a"][1].is_null());
  CHECK((*v)["a"][3]["k"].is_array());
  CHECK((*v)["c"].is_object());
  CHECK(v->find("b")->as_int() == 1);
  CHECK(v->find("zzz") == nullptr);
}

TEST_CASE("json: missing and mistyped fields read as absent, never crash", "[json]") {
  auto v = parse_json(R"({"n": "not a number", "arr": [1]})");
  REQUIRE(v);
  CHECK_FALSE((*v)["n"].as_int());
  CHECK_FALSE((*v)["missing"]["deeper"]["still"].as_string());
  CHECK((*v)["missing"].is_null());
  CHECK((*v)["arr"][5].is_null());
  CHECK((*v)["arr"]["key"].is_null());
  CHECK(v->items().empty());
  CHECK((*v)["n"].members().empty());
}

TEST_CASE("json: structural errors name the offset and what was expected", "[json]") {
  CHECK(error_of("") == "invalid JSON at byte 0: expected a value, found end of input");
  CHECK(error_of("[1,]") ==
        "invalid JSON at byte 3: expected a value (object, array, string, number, true, false or null), found ']'");
  CHECK(error_of("{\"a\":1,}") == "invalid JSON at byte 7: expected a string key, found '}'");
  CHECK(error_of("{\"a\" 1}") == "invalid JSON at byte 5: expected ':' after an object key, found '1'");
  CHECK(error_of("{\"a\":1 \"b\":2}") ==
        "invalid JSON at byte 7: expected ',' or '}' after an object member, found '\"'");
  CHECK(error_of("[1 2]") == "invalid JSON at byte 3: expected ',' or ']' after an array element, found '2'");
  CHECK(error_of("{'a':1}") == "invalid JSON at byte 1: expected a string key, found '''");
  CHECK(error_of("tru") == "invalid JSON at byte 0: expected 'true', found 't'");
  CHECK(error_of("1 2") == "invalid JSON at byte 2: expected end of input after the value, found '2'");
  CHECK(error_of("{} // c") == "invalid JSON at byte 3: expected end of input after the value, found '/'");
  CHECK(error_of("\xEF\xBB\xBF{}").find("byte 0xef") != std::string::npos);  // BOM
  CHECK(error_of("\f1").find("byte 0x0c") != std::string::npos);             // not JSON whitespace
}

TEST_CASE("json: duplicate keys are refused", "[json]") {
  CHECK(error_of(R"({"a":1,"b":2,"a":3})") == "invalid JSON at byte 13: duplicate object key \"a\"");
  CHECK(parse_json(R"({"a":{"x":1},"b":{"x":2}})"));  // same key in different objects is fine
}

TEST_CASE("json: truncated documents never parse", "[json]") {
  const std::string doc =
      R"({"version":"0.1.0","pid":12,"list":[1,2.5,-3e2,"s\u00e9\uD83D\uDE00",true,false,null],"o":{"k":{}}})";
  REQUIRE(parse_json(doc));
  for (size_t n = 0; n < doc.size(); ++n) {
    INFO("prefix of " << n << " bytes");
    CHECK_FALSE(parse_json(std::string_view(doc).substr(0, n)));
  }
}

TEST_CASE("json: garbage never crashes", "[json]") {
  // A fixed pseudo-random byte stream (deterministic: no flaky seeds), plus
  // mutations of a valid document: every result must be a value or an error.
  uint64_t state = 0x9E3779B97F4A7C15ull;
  auto next = [&] {
    state ^= state << 13;
    state ^= state >> 7;
    state ^= state << 17;
    return state;
  };
  const std::string alphabet = "{}[]\":,-0123456789.eE+truefalsnl \\u\x80\xC3\xF0\x01";
  for (int i = 0; i < 2000; ++i) {
    std::string s;
    size_t len = next() % 64;
    for (size_t j = 0; j < len; ++j) s += alphabet[next() % alphabet.size()];
    auto r = parse_json(s);
    if (!r) CHECK(r.error().starts_with("invalid JSON at byte "));
  }
  const std::string doc = R"({"a":[1,{"b":"c\n"},null],"d":-1.5e3})";
  for (int i = 0; i < 2000; ++i) {
    std::string s = doc;
    s[next() % s.size()] = static_cast<char>(next() & 0xFF);
    (void)parse_json(s);
  }
}

TEST_CASE("json: depth is limited", "[json]") {
  std::string ok = std::string(64, '[') + std::string(64, ']');
  CHECK(parse_json(ok));
  std::string deep = std::string(65, '[') + std::string(65, ']');
  CHECK(error_of(deep) == "invalid JSON at byte 64: nesting deeper than 64 levels");
  // Hostile depth far beyond the stack: refused, not a crash.
  std::string hostile(1'000'000, '[');
  CHECK(error_of(hostile).find("nesting deeper than 64") != std::string::npos);
  std::string objs;
  for (int i = 0; i < 100; ++i) objs += "{\"a\":";
  CHECK(error_of(objs).find("nesting deeper") != std::string::npos);
  JsonLimits shallow;
  shallow.max_depth = 2;
  CHECK(parse_json("[[1]]", shallow));
  CHECK_FALSE(parse_json("[[[1]]]", shallow));
}

TEST_CASE("json: size is limited", "[json]") {
  JsonLimits small;
  small.max_bytes = 16;
  CHECK(parse_json("[1,2,3]", small));
  CHECK(error_of("[1,2,3,4,5,6,7,8,9]", small) == "JSON document is 19 bytes, more than the limit of 16");
}

TEST_CASE("json: many keys in one object stay fast and correct", "[json]") {
  std::string doc = "{";
  for (int i = 0; i < 20000; ++i) doc += (i ? ",\"k" : "\"k") + std::to_string(i) + "\":" + std::to_string(i);
  doc += "}";
  auto v = parse_json(doc);
  REQUIRE(v);
  CHECK(v->size() == 20000);
  CHECK((*v)["k19999"].as_int() == 19999);
}

TEST_CASE("json: equality", "[json]") {
  CHECK(*parse_json("[1,{\"a\":\"b\"}]") == *parse_json(" [ 1 , { \"a\" : \"b\" } ] "));
  CHECK_FALSE(*parse_json("[1]") == *parse_json("[2]"));
  CHECK(*parse_json("1000") == *parse_json("1e3"));
  CHECK(JsonValue::object({{"x", JsonValue::integer(1)}}) == *parse_json("{\"x\":1}"));
}
