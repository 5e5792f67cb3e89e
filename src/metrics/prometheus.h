// Prometheus text exposition format (version 0.0.4): HELP and TYPE once per
// family, then samples; label values escaped as the format requires.
#pragma once

#include <cstdint>
#include <initializer_list>
#include <span>
#include <string>
#include <string_view>
#include <utility>

#include "metrics/histogram.h"

namespace meshd::metrics {

using Label = std::pair<std::string_view, std::string_view>;

class PrometheusWriter {
 public:
  // Starts a metric family; type is "counter", "gauge" or "histogram".
  void family(std::string_view name, std::string_view type, std::string_view help);
  void sample(std::string_view name, std::initializer_list<Label> labels, uint64_t value);
  void sample(std::string_view name, std::initializer_list<Label> labels, double value);
  // Labels built at run time (a series whose label set varies).
  void sample(std::string_view name, std::span<const Label> labels, uint64_t value);
  // name_bucket{...,le} for every bound, then name_sum and name_count.
  void histogram(std::string_view name, std::initializer_list<Label> labels, const Histogram& h);
  const std::string& str() const { return out_; }

 private:
  void labels(std::span<const Label> labels);
  std::string out_;
};

}  // namespace meshd::metrics
