// Reading what operators hand over as files: certificates (PEM), keys and
// tokens. Small files only, so that a wrong path (a device, a huge log) is
// refused with its name instead of being read for ever.
#pragma once

#include <string>
#include <vector>

#include "base/result.h"

namespace meshd::identity {

inline constexpr size_t kMaxIdentityFileBytes = 1 << 20;

// The whole file, up to max_bytes; the error names the file.
Parsed<std::string> read_small_file(const std::string& path, size_t max_bytes = kMaxIdentityFileBytes);

// Every PEM CERTIFICATE block in the file, as DER, each one parseable.
Parsed<std::vector<std::string>> load_certificates(const std::string& path);

// The trust anchors in a PEM file (--trust-anchors): CA certificates only.
Parsed<std::vector<std::string>> load_anchors(const std::string& path);

}  // namespace meshd::identity
