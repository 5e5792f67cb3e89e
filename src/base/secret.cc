#include "base/secret.h"

// wolfSSL's headers depend on the build options it was compiled with.
#include <wolfssl/options.h>
#include <wolfssl/wolfcrypt/hmac.h>

#include <cerrno>
#include <cstring>
#include <fstream>
#include <sstream>

#include "base/hex.h"
#include "base/parse.h"

namespace meshd {
namespace {}  // namespace

Mac hmac_sha256(std::string_view key, std::string_view a, std::string_view b) noexcept {
  Mac out{};
  Hmac h;
  if (wc_HmacInit(&h, nullptr, INVALID_DEVID) != 0) return out;
  if (wc_HmacSetKey(&h, WC_SHA256, reinterpret_cast<const byte*>(key.data()), static_cast<word32>(key.size())) == 0 &&
      wc_HmacUpdate(&h, reinterpret_cast<const byte*>(a.data()), static_cast<word32>(a.size())) == 0 &&
      wc_HmacUpdate(&h, reinterpret_cast<const byte*>(b.data()), static_cast<word32>(b.size())) == 0)
    wc_HmacFinal(&h, out.data());
  wc_HmacFree(&h);
  return out;
}

bool equal_in_constant_time(const uint8_t* a, const uint8_t* b, size_t n) noexcept {
  uint8_t diff = 0;
  for (size_t i = 0; i < n; ++i) diff |= static_cast<uint8_t>(a[i] ^ b[i]);
  return diff == 0;
}

std::string hex_encode(std::string_view bytes) {
  static constexpr char kDigits[] = "0123456789abcdef";
  std::string out;
  out.reserve(bytes.size() * 2);
  for (unsigned char c : bytes) {
    out.push_back(kDigits[c >> 4]);
    out.push_back(kDigits[c & 15]);
  }
  return out;
}

std::optional<std::string> hex_decode(std::string_view hex) {
  if (hex.size() % 2 != 0) return std::nullopt;
  std::string out;
  out.reserve(hex.size() / 2);
  for (size_t i = 0; i < hex.size(); i += 2) {
    int hi = hex_value(hex[i]), lo = hex_value(hex[i + 1]);
    if (hi < 0 || lo < 0) return std::nullopt;
    out.push_back(static_cast<char>(hi * 16 + lo));
  }
  return out;
}

Parsed<std::string> secret_from_text(std::string_view text, std::string_view what, const std::string& origin,
                                     size_t min_bytes) {
  std::string_view t = trim(text);
  auto decoded = t.empty() ? std::nullopt : hex_decode(t);
  std::string bytes = decoded ? *decoded : std::string(t);
  if (bytes.size() < min_bytes)
    return invalid(std::string(what) + " " + origin + " holds " + std::to_string(bytes.size()) + " bytes" +
                   (decoded ? " (hex)" : "") + "; at least " + std::to_string(min_bytes) +
                   " are needed (e.g. openssl rand -hex 32 > FILE)");
  return bytes;
}

Parsed<std::string> load_secret(const std::string& path, std::string_view what, size_t min_bytes) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return invalid("cannot read " + std::string(what) + " file " + path + ": " + std::strerror(errno));
  std::ostringstream s;
  s << in.rdbuf();
  if (s.str().size() > 4096) return invalid(std::string(what) + " file " + path + " is over 4096 bytes: not a key");
  return secret_from_text(s.str(), what, "file " + path, min_bytes);
}

}  // namespace meshd
