#include "base/flags.h"

#include <catch2/catch.hpp>
#include <vector>

using meshd::FlagParser;

TEST_CASE("flags: forms", "[ctl][flags]") {
  std::string admin, output;
  bool help = false, admin_seen = false;
  FlagParser p;
  p.value("--admin", "", &admin, &admin_seen).value("--output", "-o", &output).toggle("--help", "-h", &help);

  std::vector<std::string_view> a = {"--admin", "1.2.3.4:5", "-o=json", "pos", "-h", "--", "--not-a-flag", "-"};
  auto r = p.parse(a);
  REQUIRE(r);
  CHECK(admin == "1.2.3.4:5");
  CHECK(admin_seen);
  CHECK(output == "json");
  CHECK(help);
  CHECK(*r == std::vector<std::string_view>{"pos", "--not-a-flag", "-"});

  std::vector<std::string_view> last_wins = {"-o", "text", "--output=json"};
  REQUIRE(p.parse(last_wins));
  CHECK(output == "json");
}

TEST_CASE("flags: errors name the flag", "[ctl][flags]") {
  std::string v;
  bool b = false;
  FlagParser p;
  p.value("--admin", "", &v).toggle("--help", "-h", &b);
  std::vector<std::string_view> unknown = {"--nope"};
  CHECK(p.parse(unknown).error() == "unknown flag '--nope'");
  std::vector<std::string_view> unknown_inline = {"--nope=1"};
  CHECK(p.parse(unknown_inline).error() == "unknown flag '--nope'");
  std::vector<std::string_view> no_value = {"--admin"};
  CHECK(p.parse(no_value).error() == "--admin needs a value");
  std::vector<std::string_view> switch_value = {"--help=yes"};
  CHECK(p.parse(switch_value).error() == "--help takes no value (got '--help=yes')");
}
