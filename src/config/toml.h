// What every TOML file meshd reads (the registry file, the policy file)
// needs: toml++ set up without exceptions, and errors that name the file and
// line at fault.
#pragma once

#define TOML_HEADER_ONLY 1
#define TOML_EXCEPTIONS 0
#include <toml++/toml.h>

#include <initializer_list>
#include <string>
#include <string_view>

#include "base/result.h"

namespace meshd::config {

// "PATH:LINE: ", the start of an error about node n.
inline std::string at(const std::string& path, const toml::node& n) {
  return path + ":" + std::to_string(n.source().begin.line) + ": ";
}

// Refuses keys we do not know: a typo ("adress") must not silently mean
// "no address".
inline Parsed<bool> known_keys(const std::string& path, const toml::table& t,
                               std::initializer_list<std::string_view> keys, const char* what) {
  for (const auto& [k, v] : t) {
    bool ok = false;
    for (auto known : keys) ok = ok || k.str() == known;
    if (!ok) return invalid(at(path, v) + "unknown key '" + std::string(k.str()) + "' in " + what);
  }
  return true;
}

inline Parsed<std::string> string_of(const std::string& path, const toml::node& n, const char* what) {
  auto v = n.value<std::string>();
  if (!v) return invalid(at(path, n) + what + " must be a string");
  return *v;
}

}  // namespace meshd::config
