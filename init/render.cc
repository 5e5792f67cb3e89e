#include "init/render.h"

#include "base/parse.h"

namespace meshd::init {

namespace {

std::string known_names(const RenderVars& vars) {
  std::string out;
  for (const auto& [name, _] : vars.scalars) out += (out.empty() ? "" : ", ") + name;
  for (const auto& [name, _] : vars.lists) out += (out.empty() ? "" : ", ") + name;
  return out;
}

// One piece of a template line: literal text or a placeholder name.
struct Piece {
  std::string text;
  bool placeholder = false;
};

}  // namespace

Parsed<std::vector<std::string>> render_template(const Template& t, const RenderVars& vars) {
  std::vector<std::string> out;
  std::string_view text = t.text;
  int line_no = 0;
  while (!text.empty()) {
    auto nl = text.find('\n');
    std::string_view line = trim(text.substr(0, nl));
    text.remove_prefix(nl == std::string_view::npos ? text.size() : nl + 1);
    ++line_no;
    const std::string where = t.name + ":" + std::to_string(line_no) + ": ";
    if (line.empty() || line.front() == '#') continue;
    if (line.front() == '*' || line == "COMMIT")
      return invalid(where + "'" + std::string(line) +
                     "' does not belong in a template: meshd-init writes the *nat and COMMIT lines itself");

    std::vector<Piece> pieces;
    const std::vector<std::string>* list = nullptr;
    std::string list_name;
    while (!line.empty()) {
      auto open = line.find("{{");
      pieces.push_back({std::string(line.substr(0, open)), false});
      if (open == std::string_view::npos) break;
      auto close = line.find("}}", open + 2);
      if (close == std::string_view::npos) return invalid(where + "'{{' without a closing '}}'");
      std::string name(trim(line.substr(open + 2, close - open - 2)));
      if (auto l = vars.lists.find(name); l != vars.lists.end()) {
        if (list && list_name != name)
          return invalid(where + "more than one list placeholder ({{" + list_name + "}} and {{" + name +
                         "}}) on one line");
        list = &l->second;
        list_name = name;
      } else if (!vars.scalars.contains(name)) {
        return invalid(where + "unknown placeholder {{" + name + "}} (known: " + known_names(vars) + ")");
      }
      pieces.push_back({name, true});
      line.remove_prefix(close + 2);
    }

    auto expand = [&](const std::string* element) {
      std::string s;
      for (const auto& p : pieces) {
        if (!p.placeholder)
          s += p.text;
        else if (p.text == list_name && element)
          s += *element;
        else
          s += vars.scalars.find(p.text)->second;
      }
      return s;
    };
    if (list) {
      for (const auto& element : *list) out.push_back(expand(&element));
    } else {
      out.push_back(expand(nullptr));
    }
  }
  return out;
}

}  // namespace meshd::init
