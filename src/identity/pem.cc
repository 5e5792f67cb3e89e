#include "identity/pem.h"

#include <array>
#include <cstdint>

namespace meshd::identity {
namespace {

constexpr char kAlphabet[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

constexpr std::array<int8_t, 256> make_reverse() {
  std::array<int8_t, 256> r{};
  for (auto& v : r) v = -1;
  for (int i = 0; i < 64; ++i) r[static_cast<uint8_t>(kAlphabet[i])] = static_cast<int8_t>(i);
  return r;
}
constexpr auto kReverse = make_reverse();

std::string base64_encode(std::string_view in) {
  std::string out;
  out.reserve((in.size() + 2) / 3 * 4);
  size_t i = 0;
  for (; i + 3 <= in.size(); i += 3) {
    uint32_t v =
        static_cast<uint8_t>(in[i]) << 16 | static_cast<uint8_t>(in[i + 1]) << 8 | static_cast<uint8_t>(in[i + 2]);
    out += kAlphabet[v >> 18];
    out += kAlphabet[(v >> 12) & 63];
    out += kAlphabet[(v >> 6) & 63];
    out += kAlphabet[v & 63];
  }
  if (size_t left = in.size() - i; left > 0) {
    uint32_t v = static_cast<uint8_t>(in[i]) << 16 | (left == 2 ? static_cast<uint8_t>(in[i + 1]) << 8 : 0);
    out += kAlphabet[v >> 18];
    out += kAlphabet[(v >> 12) & 63];
    out += left == 2 ? kAlphabet[(v >> 6) & 63] : '=';
    out += '=';
  }
  return out;
}

// Whitespace anywhere is ignored (line breaks, CRLF, indentation); '=' only
// as the final padding.
Parsed<std::string> base64_decode(std::string_view in) {
  std::string out;
  out.reserve(in.size() / 4 * 3);
  uint32_t acc = 0;
  int bits = 0, chars = 0, pad = 0;
  for (char c : in) {
    if (c == ' ' || c == '\n' || c == '\r' || c == '\t') continue;
    if (c == '=') {
      ++pad;
      ++chars;
      continue;
    }
    int8_t v = kReverse[static_cast<uint8_t>(c)];
    if (v < 0) return invalid("base64 has a character that is not base64");
    if (pad > 0) return invalid("base64 has data after '=' padding");
    acc = (acc << 6) | static_cast<uint32_t>(v);
    bits += 6;
    ++chars;
    if (bits >= 8) {
      bits -= 8;
      out += static_cast<char>((acc >> bits) & 0xff);
    }
  }
  if (chars % 4 != 0 || pad > 2) return invalid("base64 length is not a multiple of 4");
  // Leftover bits must be zero, or two encodings would decode alike.
  if ((acc & ((1u << bits) - 1)) != 0) return invalid("base64 has non-zero padding bits");
  return out;
}

}  // namespace

std::string pem_encode(std::string_view label, std::string_view der) {
  std::string b64 = base64_encode(der);
  std::string out = "-----BEGIN " + std::string(label) + "-----\n";
  for (size_t i = 0; i < b64.size(); i += 64) {
    out.append(b64, i, 64);
    out += '\n';
  }
  out += "-----END " + std::string(label) + "-----\n";
  return out;
}

Parsed<std::vector<std::string>> pem_decode_all(std::string_view text, std::string_view label) {
  const std::string begin = "-----BEGIN " + std::string(label) + "-----";
  const std::string end = "-----END " + std::string(label) + "-----";
  const std::string name(label);
  std::vector<std::string> blocks;
  size_t pos = 0;
  while ((pos = text.find(begin, pos)) != std::string_view::npos) {
    size_t body = pos + begin.size();
    size_t stop = text.find(end, body);
    if (stop == std::string_view::npos) {
      return invalid("PEM " + name + " block " + std::to_string(blocks.size() + 1) + " has no END line");
    }
    std::string_view b64 = text.substr(body, stop - body);
    // Another BEGIN before our END means a truncated block.
    if (b64.find("-----") != std::string_view::npos) {
      return invalid("PEM " + name + " block " + std::to_string(blocks.size() + 1) + " is not terminated");
    }
    auto der = base64_decode(b64);
    if (!der) return invalid("PEM " + name + " block " + std::to_string(blocks.size() + 1) + ": " + der.error());
    if (der->empty()) return invalid("PEM " + name + " block " + std::to_string(blocks.size() + 1) + " is empty");
    blocks.push_back(std::move(*der));
    pos = stop + end.size();
  }
  if (blocks.empty()) return invalid("no PEM " + name + " block found");
  return blocks;
}

}  // namespace meshd::identity
