// Flag parsing shared by the command-line tools (meshd-ctl, meshd-controller), so every one accepts the
// same forms: "--name VALUE", "--name=VALUE", a short alias ("-o json"),
// boolean switches, and "--" to end the flags.
#pragma once

#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "base/result.h"

namespace meshd {

class FlagParser {
 public:
  // A flag that takes a value. `alias` may be empty; `seen`, if given, is
  // set when the flag appears (to tell "--admin ''" from no --admin).
  FlagParser& value(std::string_view name, std::string_view alias, std::string* out, bool* seen = nullptr);
  // A switch without a value ("--help", "-h").
  FlagParser& toggle(std::string_view name, std::string_view alias, bool* out);

  // Fills the registered outputs and returns the positional arguments, or
  // one line naming the flag that was wrong ("unknown flag '--x'",
  // "--admin needs a value"). A repeated flag keeps its last value, as in
  // most CLIs, so scripts can append overrides.
  Parsed<std::vector<std::string_view>> parse(std::span<const std::string_view> args) const;

 private:
  struct Flag {
    std::string_view name;
    std::string_view alias;
    std::string* value = nullptr;  // null for a switch
    bool* seen = nullptr;
  };
  const Flag* lookup(std::string_view name) const;
  std::vector<Flag> flags_;
};

}  // namespace meshd
