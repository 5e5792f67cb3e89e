// The one translation unit with Catch2's main(); every *_test.cc is linked with it.
//
// GCC 12 at -O1 with ASan/UBSan (MODE=asan) reports a false
// -Wmaybe-uninitialized inside <regex>, which Catch2's implementation uses;
// it is libstdc++'s code, not ours, so the warning is silenced for this file.
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#define CATCH_CONFIG_MAIN
#include <catch2/catch.hpp>
