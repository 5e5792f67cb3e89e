// The iptables rule templates meshd-init renders.
//
// The templates in iptables/*.rules are compiled into the binary (the Makefile
// generates embedded_templates() from them) so that meshd-init works alone in
// a pod init container, where the source tree is not around; --templates DIR
// reads them from a directory instead, for operators who adapt the rules.
#pragma once

#include <string>
#include <vector>

#include "base/result.h"

namespace meshd::init {

// Aggregate-initialized by the generated file: {"inbound.rules", R"(...)"}.
struct EmbeddedTemplate {
  const char* name;
  const char* text;
};

const std::vector<EmbeddedTemplate>& embedded_templates();

struct Template {
  std::string name;  // file name, used in error messages ("outbound.rules:12: ...")
  std::string text;
};

// The compiled-in templates, sorted by name (the order they are rendered in).
std::vector<Template> builtin_templates();

// Every DIR/*.rules, sorted by name; an error if DIR cannot be read or holds
// none, because rendering nothing would silently install no rules.
Parsed<std::vector<Template>> load_templates(const std::string& dir);

}  // namespace meshd::init
