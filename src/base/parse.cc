#include "base/parse.h"

#include <charconv>

namespace meshd {

std::string_view trim(std::string_view t) {
  while (!t.empty() && (t.front() == ' ' || t.front() == '\t' || t.front() == '\r' || t.front() == '\n'))
    t.remove_prefix(1);
  while (!t.empty() && (t.back() == ' ' || t.back() == '\t' || t.back() == '\r' || t.back() == '\n'))
    t.remove_suffix(1);
  return t;
}

std::vector<std::string> split_list(std::string_view text, char sep) {
  std::vector<std::string> out;
  while (true) {
    auto pos = text.find(sep);
    auto item = trim(text.substr(0, pos));
    if (!item.empty()) out.emplace_back(item);
    if (pos == std::string_view::npos) break;
    text.remove_prefix(pos + 1);
  }
  return out;
}

Parsed<uint64_t> parse_u64(std::string_view text) {
  uint64_t v = 0;
  auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), v);
  if (text.empty() || ec != std::errc() || end != text.data() + text.size())
    return invalid("'" + std::string(text) + "' is not a whole number");
  return v;
}

Parsed<uint16_t> parse_port(std::string_view text) {
  auto v = parse_u64(text);
  if (!v || *v == 0 || *v > 65535) return invalid("'" + std::string(text) + "' is not a port (1-65535)");
  return static_cast<uint16_t>(*v);
}

std::string PortRange::str() const {
  return first == last ? std::to_string(first) : std::to_string(first) + ":" + std::to_string(last);
}

Parsed<PortRange> parse_port_range(std::string_view text) {
  auto sep = text.find_first_of("-:");
  if (sep == std::string_view::npos) {
    auto p = parse_port(text);
    if (!p) return invalid(p.error());
    return PortRange{*p, *p};
  }
  auto a = parse_port(text.substr(0, sep));
  auto b = parse_port(text.substr(sep + 1));
  if (!a || !b || *a > *b)
    return invalid("'" + std::string(text) + "' is not a port range (FIRST-LAST, 1-65535, FIRST <= LAST)");
  return PortRange{*a, *b};
}

namespace {
// Splits "500ms" into 500 and "ms".
bool split_number(std::string_view text, uint64_t* number, std::string_view* unit) {
  size_t i = 0;
  while (i < text.size() && text[i] >= '0' && text[i] <= '9') ++i;
  if (i == 0) return false;
  auto [end, ec] = std::from_chars(text.data(), text.data() + i, *number);
  if (ec != std::errc() || end != text.data() + i) return false;
  *unit = text.substr(i);
  return true;
}
}  // namespace

Parsed<uint64_t> parse_duration_ms(std::string_view text) {
  uint64_t n = 0;
  std::string_view unit;
  const std::string bad = "'" + std::string(text) + "' is not a duration (e.g. 500ms, 10s, 5m, 1h)";
  if (!split_number(text, &n, &unit)) return invalid(bad);
  uint64_t scale;
  if (unit == "ms")
    scale = 1;
  else if (unit == "s")
    scale = 1000;
  else if (unit == "m")
    scale = 60'000;
  else if (unit == "h")
    scale = 3'600'000;
  else
    return invalid(bad);
  if (n > UINT64_MAX / scale) return invalid(bad);
  return n * scale;
}

Parsed<uint64_t> parse_size(std::string_view text) {
  uint64_t n = 0;
  std::string_view unit;
  const std::string bad = "'" + std::string(text) + "' is not a size (e.g. 16KiB, 4MiB, 1024)";
  if (!split_number(text, &n, &unit)) return invalid(bad);
  uint64_t scale;
  if (unit.empty() || unit == "B")
    scale = 1;
  else if (unit == "K" || unit == "KiB" || unit == "k")
    scale = 1ull << 10;
  else if (unit == "M" || unit == "MiB")
    scale = 1ull << 20;
  else if (unit == "G" || unit == "GiB")
    scale = 1ull << 30;
  else
    return invalid(bad);
  if (n > UINT64_MAX / scale) return invalid(bad);
  return n * scale;
}

}  // namespace meshd
