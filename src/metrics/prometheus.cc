#include "metrics/prometheus.h"

#include <cmath>
#include <cstdio>
#include <vector>

namespace meshd::metrics {

void PrometheusWriter::family(std::string_view name, std::string_view type, std::string_view help) {
  out_ += "# HELP ";
  out_ += name;
  out_ += ' ';
  // HELP text escapes only backslash and newline.
  for (char c : help) {
    if (c == '\\')
      out_ += "\\\\";
    else if (c == '\n')
      out_ += "\\n";
    else
      out_ += c;
  }
  out_ += "\n# TYPE ";
  out_ += name;
  out_ += ' ';
  out_ += type;
  out_ += '\n';
}

void PrometheusWriter::labels(std::span<const Label> labels) {
  if (labels.empty()) return;
  out_ += '{';
  bool first = true;
  for (const auto& [k, v] : labels) {
    if (!first) out_ += ',';
    first = false;
    out_ += k;
    out_ += "=\"";
    for (char c : v) {
      if (c == '\\')
        out_ += "\\\\";
      else if (c == '"')
        out_ += "\\\"";
      else if (c == '\n')
        out_ += "\\n";
      else
        out_ += c;
    }
    out_ += '"';
  }
  out_ += '}';
}

void PrometheusWriter::sample(std::string_view name, std::initializer_list<Label> l, uint64_t value) {
  out_ += name;
  labels(std::span<const Label>(l.begin(), l.size()));
  out_ += ' ';
  out_ += std::to_string(value);
  out_ += '\n';
}

void PrometheusWriter::sample(std::string_view name, std::span<const Label> l, uint64_t value) {
  out_ += name;
  labels(l);
  out_ += ' ';
  out_ += std::to_string(value);
  out_ += '\n';
}

void PrometheusWriter::sample(std::string_view name, std::initializer_list<Label> l, double value) {
  out_ += name;
  labels(std::span<const Label>(l.begin(), l.size()));
  char buf[40];
  if (std::isnan(value))
    snprintf(buf, sizeof buf, " NaN\n");
  else if (std::isinf(value))
    snprintf(buf, sizeof buf, value > 0 ? " +Inf\n" : " -Inf\n");
  else
    snprintf(buf, sizeof buf, " %.17g\n", value);
  out_ += buf;
}

void PrometheusWriter::histogram(std::string_view name, std::initializer_list<Label> l, const Histogram& h) {
  Histogram::Snapshot snap = h.snapshot();
  std::vector<Label> with_le(l.begin(), l.end());
  with_le.emplace_back("le", "");
  std::string series = std::string(name) + "_bucket";
  for (size_t i = 0; i < Histogram::kBuckets; ++i) {
    std::string le = i < Histogram::kBoundsMs.size() ? std::to_string(Histogram::kBoundsMs[i]) : "+Inf";
    with_le.back().second = le;
    out_ += series;
    labels(with_le);
    out_ += ' ';
    out_ += std::to_string(snap.cumulative[i]);
    out_ += '\n';
  }
  sample(std::string(name) + "_sum", l, snap.sum_ms);
  sample(std::string(name) + "_count", l, snap.count);
}

}  // namespace meshd::metrics
