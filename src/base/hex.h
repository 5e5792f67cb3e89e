// The value of one hex digit. A header of its own, with no dependency: the
// HTTP chunk framer uses it and is built alone (by clang) into its fuzzer.
#pragma once

namespace meshd {

// 0 to 15 for a hex digit in either case; -1 for anything else.
constexpr int hex_value(char c) noexcept {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

}  // namespace meshd
