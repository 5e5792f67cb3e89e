// A failed invariant in a fuzz target: says which, then aborts, so that
// libFuzzer keeps the input as a reproducer (crash-<sha1>).
#pragma once

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <span>

#define FUZZ_CHECK(cond, what)                                                                     \
  do {                                                                                             \
    if (!(cond)) {                                                                                 \
      std::fprintf(stderr, "%s:%d: invariant broken: %s (%s)\n", __FILE__, __LINE__, what, #cond); \
      std::abort();                                                                                \
    }                                                                                              \
  } while (0)

namespace meshd::fuzz {

// Bytes copied into a heap block of exactly their size, so that ASan sees
// any read past them.
struct Exact {
  explicit Exact(std::span<const char> from) : size(from.size()), bytes(std::make_unique<char[]>(from.size())) {
    std::copy(from.begin(), from.end(), bytes.get());
  }
  std::span<const char> span() const { return {bytes.get(), size}; }
  size_t size;
  std::unique_ptr<char[]> bytes;
};

}  // namespace meshd::fuzz
