// ASCII case for protocol text (HTTP header names and tokens, host names):
// never the C locale's tolower(), which could make a byte mean something
// else on another machine.
#pragma once

#include <string_view>

namespace meshd {

constexpr char ascii_lower(char c) noexcept { return c >= 'A' && c <= 'Z' ? static_cast<char>(c - 'A' + 'a') : c; }

constexpr bool equals_ignore_case(std::string_view a, std::string_view b) noexcept {
  if (a.size() != b.size()) return false;
  for (size_t i = 0; i < a.size(); ++i)
    if (ascii_lower(a[i]) != ascii_lower(b[i])) return false;
  return true;
}

}  // namespace meshd
