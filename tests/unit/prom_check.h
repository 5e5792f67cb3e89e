// Checks on rendered Prometheus text shared by the metrics tests.
#pragma once

#include <catch2/catch.hpp>
#include <string>

namespace meshd::test {

// Every sample line belongs to the family whose TYPE line came last: a
// scraper drops samples that do not.
inline void require_samples_follow_their_family(const std::string& text) {
  std::string family;
  size_t pos = 0;
  while (pos < text.size()) {
    size_t eol = text.find('\n', pos);
    std::string line = text.substr(pos, eol - pos);
    pos = eol + 1;
    if (line.rfind("# TYPE ", 0) == 0) {
      family = line.substr(7, line.find(' ', 7) - 7);
    } else if (!line.empty() && line[0] != '#') {
      INFO(line);
      REQUIRE(line.rfind(family, 0) == 0);
    }
  }
}

}  // namespace meshd::test
