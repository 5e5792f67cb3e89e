// Shared secrets (the gossip cluster key, the join-token key): read from a
// file an operator made, and used for HMAC-SHA256.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "base/result.h"

namespace meshd {

using Mac = std::array<uint8_t, 32>;

// HMAC-SHA256 over a then b (two parts, so a header and a payload need no
// copy into one buffer).
Mac hmac_sha256(std::string_view key, std::string_view a, std::string_view b = {}) noexcept;

// Compares without an early exit, so timing does not tell how many bytes of
// a forged MAC were right.
bool equal_in_constant_time(const uint8_t* a, const uint8_t* b, size_t n) noexcept;

std::string hex_encode(std::string_view bytes);
// Lowercase or uppercase hex digits, even count; nullopt otherwise.
std::optional<std::string> hex_decode(std::string_view hex);

// A secret written as hex (2n hex digits) or as raw bytes, surrounding
// whitespace ignored, of at least min_bytes. `what` ("cluster key") and
// origin ("file /etc/x") name it in the one-line error.
Parsed<std::string> secret_from_text(std::string_view text, std::string_view what, const std::string& origin,
                                     size_t min_bytes);
Parsed<std::string> load_secret(const std::string& path, std::string_view what, size_t min_bytes);

}  // namespace meshd
