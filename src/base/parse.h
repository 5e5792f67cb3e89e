// Parsers for the small values operators write in flags, files and env vars:
// numbers, ports, port ranges, durations ("500ms", "5s", "2m") and sizes
// ("64KiB"). Each returns a message that says what was expected.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "base/result.h"

namespace meshd {

Parsed<uint64_t> parse_u64(std::string_view text);
Parsed<uint16_t> parse_port(std::string_view text);  // 1..65535

struct PortRange {
  uint16_t first = 0;
  uint16_t last = 0;        // == first for a single port
  std::string str() const;  // "80" or "8000:8080" (iptables' range syntax)
};
// "80", "8000-8080" or "8000:8080".
Parsed<PortRange> parse_port_range(std::string_view text);

// Durations: a number followed by ms, s, m or h. A bare number is refused:
// "30" could mean seconds or milliseconds, and guessing wrong is worse.
Parsed<uint64_t> parse_duration_ms(std::string_view text);
// Sizes: a number with an optional B, KiB, MiB, GiB (or K, M, G) suffix.
Parsed<uint64_t> parse_size(std::string_view text);

// Splits "a,b, c" into {"a","b","c"}; empty items are dropped.
std::vector<std::string> split_list(std::string_view text, char sep = ',');
std::string_view trim(std::string_view text);

}  // namespace meshd
