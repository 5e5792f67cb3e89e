#include "init/templates.h"

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <system_error>

namespace meshd::init {

namespace {
void sort_by_name(std::vector<Template>& all) {
  std::sort(all.begin(), all.end(), [](const Template& a, const Template& b) { return a.name < b.name; });
}
}  // namespace

std::vector<Template> builtin_templates() {
  std::vector<Template> all;
  for (const auto& t : embedded_templates()) all.push_back({t.name, t.text});
  sort_by_name(all);
  return all;
}

Parsed<std::vector<Template>> load_templates(const std::string& dir) {
  namespace fs = std::filesystem;
  std::error_code ec;
  fs::directory_iterator it(dir, ec);
  if (ec) return invalid("--templates: cannot read directory '" + dir + "': " + ec.message());
  std::vector<Template> all;
  for (const auto& entry : it) {
    const auto& path = entry.path();
    if (path.extension() != ".rules" || !entry.is_regular_file(ec)) continue;
    std::ifstream in(path);
    if (!in) return invalid("--templates: cannot read '" + path.string() + "': " + std::strerror(errno));
    std::ostringstream text;
    text << in.rdbuf();
    all.push_back({path.filename().string(), text.str()});
  }
  if (all.empty()) return invalid("--templates: no *.rules files in '" + dir + "'");
  sort_by_name(all);
  return all;
}

}  // namespace meshd::init
