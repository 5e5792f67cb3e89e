// A small parser for the Prometheus text exposition format (0.0.4), for
// meshd-ctl commands that read a proxy's GET /metrics (stat).
//
// Pure: text in, samples out, no I/O. The text comes from a process the
// operator points us at, so nothing in it is trusted: the body, each line
// and the labels of a sample are bounded, and a line that does not parse is
// skipped and counted rather than failing the whole scrape (a newer proxy
// may write something this parser does not know).
#pragma once

#include <cstddef>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "base/result.h"

namespace meshd::ctl::prom {

struct Sample {
  std::string name;
  std::vector<std::pair<std::string, std::string>> labels;  // in the order written, values unescaped
  double value = 0;                                         // may be +Inf, -Inf or NaN

  // The value of label `key`, if the sample has it.
  std::optional<std::string_view> label(std::string_view key) const;
};

struct Limits {
  size_t max_body_bytes = 16u << 20;  // above this the whole body is refused
  size_t max_line_bytes = 64u << 10;  // a longer line is skipped as malformed
  size_t max_labels = 64;             // per sample; more is malformed
  size_t max_samples = 1u << 18;      // kept samples; more refuses the body
};

struct ParseResult {
  std::vector<Sample> samples;
  size_t parsed = 0;        // sample lines that parsed, kept or not
  size_t malformed = 0;     // sample lines skipped because they did not parse
  std::string first_error;  // "line 12: ..." for the first of them; empty when none
};

// Parses a whole /metrics body. Comments (# HELP, # TYPE, others) and blank
// lines are skipped. `keep`, when given, filters samples by metric name
// (after the line parsed, so malformed lines are counted either way). The
// only errors are a body larger than limits.max_body_bytes and more than
// limits.max_samples samples kept.
Parsed<ParseResult> parse(std::string_view text, const Limits& limits = {},
                          bool (*keep)(std::string_view name) = nullptr);

// One sample line, without its newline: name, optional {labels}, value and
// an optional integer timestamp (ignored). The error says what was wrong.
Parsed<Sample> parse_sample_line(std::string_view line, const Limits& limits = {});

// A sample value or an "le" bound: a float, "+Inf", "-Inf" or "NaN" (case
// insensitive, as Prometheus accepts).
std::optional<double> parse_value(std::string_view text);

}  // namespace meshd::ctl::prom
