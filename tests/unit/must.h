// must(): the value of a Parsed<T> the test needs, or a failed REQUIRE that
// shows the error (instead of an unhelpful "has_value() is false").
#pragma once

#include <catch2/catch.hpp>

#include <string>
#include <utility>

#include "base/result.h"

namespace meshd::test {

template <class T>
T must(Parsed<T> p) {
  INFO((p.has_value() ? std::string() : p.error()));
  REQUIRE(p.has_value());
  return std::move(*p);
}

}  // namespace meshd::test
