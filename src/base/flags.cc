#include "base/flags.h"

namespace meshd {

FlagParser& FlagParser::value(std::string_view name, std::string_view alias, std::string* out, bool* seen) {
  flags_.push_back(Flag{name, alias, out, seen});
  return *this;
}

FlagParser& FlagParser::toggle(std::string_view name, std::string_view alias, bool* out) {
  flags_.push_back(Flag{name, alias, nullptr, out});
  return *this;
}

const FlagParser::Flag* FlagParser::lookup(std::string_view name) const {
  for (const Flag& f : flags_) {
    if (f.name == name || (!f.alias.empty() && f.alias == name)) return &f;
  }
  return nullptr;
}

Parsed<std::vector<std::string_view>> FlagParser::parse(std::span<const std::string_view> args) const {
  std::vector<std::string_view> positional;
  for (size_t i = 0; i < args.size(); ++i) {
    std::string_view arg = args[i];
    if (arg == "--") {
      positional.insert(positional.end(), args.begin() + static_cast<ptrdiff_t>(i) + 1, args.end());
      break;
    }
    // A lone "-" is conventionally an argument (stdin), not a flag.
    if (arg.size() < 2 || arg[0] != '-') {
      positional.push_back(arg);
      continue;
    }
    std::string_view name = arg;
    std::string_view inline_value;
    bool has_inline = false;
    if (size_t eq = arg.find('='); eq != std::string_view::npos) {
      name = arg.substr(0, eq);
      inline_value = arg.substr(eq + 1);
      has_inline = true;
    }
    const Flag* f = lookup(name);
    if (!f) return invalid("unknown flag '" + std::string(name) + "'");
    if (!f->value) {
      if (has_inline) return invalid(std::string(name) + " takes no value (got '" + std::string(arg) + "')");
      *f->seen = true;
      continue;
    }
    if (has_inline) {
      *f->value = std::string(inline_value);
    } else {
      if (i + 1 >= args.size()) return invalid(std::string(name) + " needs a value");
      *f->value = std::string(args[++i]);
    }
    if (f->seen) *f->seen = true;
  }
  return positional;
}

}  // namespace meshd
