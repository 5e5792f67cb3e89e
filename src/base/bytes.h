// Big-endian (network order) integers in byte buffers, as wire formats
// carry them: HTTP/2 frames, DNS answers, the mesh's frames, store records
// and gossip packets. One place, so no format reads them its own way.
#pragma once

#include <cstddef>
#include <cstdint>

namespace meshd {

// The N bytes at p, most significant first.
template <size_t N>
constexpr uint64_t load_be(const void* p) noexcept {
  static_assert(N >= 1 && N <= 8);
  const auto* b = static_cast<const unsigned char*>(p);
  uint64_t v = 0;
  for (size_t i = 0; i < N; ++i) v = (v << 8) | b[i];
  return v;
}

inline uint16_t load_be16(const void* p) noexcept { return static_cast<uint16_t>(load_be<2>(p)); }
inline uint32_t load_be24(const void* p) noexcept { return static_cast<uint32_t>(load_be<3>(p)); }
inline uint32_t load_be32(const void* p) noexcept { return static_cast<uint32_t>(load_be<4>(p)); }
inline uint64_t load_be64(const void* p) noexcept { return load_be<8>(p); }

// v's low N bytes at p, most significant first.
template <size_t N>
constexpr void store_be(void* p, uint64_t v) noexcept {
  static_assert(N >= 1 && N <= 8);
  auto* b = static_cast<unsigned char*>(p);
  for (size_t i = N; i-- > 0; v >>= 8) b[i] = static_cast<unsigned char>(v);
}

inline void store_be32(void* p, uint32_t v) noexcept { store_be<4>(p, v); }
inline void store_be64(void* p, uint64_t v) noexcept { store_be<8>(p, v); }

}  // namespace meshd
