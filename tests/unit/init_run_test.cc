// run_program runs real (ubiquitous) programs: sh and cat.
#include <catch2/catch.hpp>

#include <string>

#include "init/run.h"

using namespace meshd::init;

TEST_CASE("run_program feeds stdin and collects stdout", "[init][run]") {
  // Larger than a pipe buffer both ways, so a runner that wrote all input
  // before reading would deadlock here.
  std::string input(1 << 20, 'x');
  auto r = run_program({"cat"}, input);
  REQUIRE(r.has_value());
  CHECK(r->exit_code == 0);
  CHECK(r->out == input);
}

TEST_CASE("run_program reports exit status and stderr", "[init][run]") {
  auto r = run_program({"sh", "-c", "echo line 2 failed >&2; echo more >&2; exit 3"}, "");
  REQUIRE(r.has_value());
  CHECK(r->exit_code == 3);
  CHECK(describe_failure(*r) == "line 2 failed; more");
  auto quiet = run_program({"sh", "-c", "exit 4"}, "");
  REQUIRE(quiet.has_value());
  CHECK(describe_failure(*quiet) == "exit status 4");
}

TEST_CASE("run_program survives a program that does not read its input", "[init][run]") {
  auto r = run_program({"true"}, std::string(1 << 20, 'x'));
  REQUIRE(r.has_value());
  CHECK(r->exit_code == 0);
}

TEST_CASE("run_program names a missing program", "[init][run]") {
  auto r = run_program({"meshd-no-such-program"}, "");
  REQUIRE_FALSE(r.has_value());
  CHECK(r.error().starts_with("meshd-no-such-program not found"));
}

TEST_CASE("run_program bounds the time a program takes", "[init][run]") {
  auto r = run_program({"sleep", "10"}, "", 200);
  REQUIRE_FALSE(r.has_value());
  CHECK(r.error().find("did not finish") != std::string::npos);
}
