// Result<T>: how fallible calls report failure without exceptions.
//
// The data plane never throws (Envoy's rule): a hot-path call returns
// Result<T>, whose error is an errno value, cheap to copy and to classify.
// Start-up code (config, flags) uses Parsed<T>, whose error is a message meant
// for a human: it names the setting and the value that was wrong.
#pragma once

#include <cerrno>
#include <cstring>
#include <expected>
#include <string>

namespace meshd {

struct Errno {
  int value = 0;
  const char* what() const noexcept { return std::strerror(value); }
};

template <class T>
using Result = std::expected<T, Errno>;

inline std::unexpected<Errno> fail(int err) noexcept { return std::unexpected(Errno{err}); }
// The errno of the last failed libc call.
inline std::unexpected<Errno> fail_errno() noexcept { return std::unexpected(Errno{errno}); }

template <class T>
using Parsed = std::expected<T, std::string>;

inline std::unexpected<std::string> invalid(std::string message) { return std::unexpected(std::move(message)); }

}  // namespace meshd
