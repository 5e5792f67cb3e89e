#include "ctl/prom_text.h"

#include <charconv>
#include <system_error>

namespace meshd::ctl::prom {

namespace {

bool is_blank(char c) { return c == ' ' || c == '\t'; }
bool is_alpha(char c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z'); }
bool is_digit(char c) { return c >= '0' && c <= '9'; }
bool is_name_start(char c) { return is_alpha(c) || c == '_' || c == ':'; }
bool is_name_char(char c) { return is_name_start(c) || is_digit(c); }
bool is_label_start(char c) { return is_alpha(c) || c == '_'; }
bool is_label_char(char c) { return is_label_start(c) || is_digit(c); }

// Reads one line at a time; every method leaves `pos` on the next unread
// byte and never reads past the end.
struct Cursor {
  std::string_view s;
  size_t pos = 0;

  bool done() const { return pos >= s.size(); }
  char peek() const { return done() ? '\0' : s[pos]; }
  void skip_blanks() {
    while (!done() && is_blank(s[pos])) ++pos;
  }
  std::string_view token() {
    size_t start = pos;
    while (!done() && !is_blank(s[pos])) ++pos;
    return s.substr(start, pos - start);
  }
};

// A label value between double quotes, the opening one already consumed.
// The format has three escapes; anything else after a backslash is refused
// rather than guessed at.
Parsed<std::string> label_value(Cursor& c) {
  std::string v;
  while (!c.done()) {
    char ch = c.s[c.pos++];
    if (ch == '"') return v;
    if (ch != '\\') {
      v += ch;
      continue;
    }
    if (c.done()) break;
    char esc = c.s[c.pos++];
    if (esc == '\\')
      v += '\\';
    else if (esc == '"')
      v += '"';
    else if (esc == 'n')
      v += '\n';
    else
      return invalid(std::string("unknown escape '\\") + esc + "' in a label value");
  }
  return invalid("unterminated label value");
}

Parsed<bool> labels(Cursor& c, Sample& out, const Limits& limits) {
  for (;;) {
    c.skip_blanks();
    if (c.peek() == '}') break;  // also allows "{}" and a trailing comma
    size_t start = c.pos;
    if (!is_label_start(c.peek())) return invalid("bad label name at column " + std::to_string(c.pos + 1));
    while (is_label_char(c.peek())) ++c.pos;
    std::string name(c.s.substr(start, c.pos - start));
    c.skip_blanks();
    if (c.peek() != '=') return invalid("expected '=' after label " + name);
    ++c.pos;
    c.skip_blanks();
    if (c.peek() != '"') return invalid("expected '\"' to open the value of label " + name);
    ++c.pos;
    auto value = label_value(c);
    if (!value) return invalid(value.error() + " (label " + name + ")");
    for (const auto& [k, v] : out.labels) {
      if (k == name) return invalid("label " + name + " appears twice");
    }
    if (out.labels.size() >= limits.max_labels)
      return invalid("more than " + std::to_string(limits.max_labels) + " labels");
    out.labels.emplace_back(std::move(name), std::move(*value));
    c.skip_blanks();
    if (c.peek() == ',') {
      ++c.pos;
      continue;
    }
    if (c.peek() != '}') return invalid(c.done() ? "labels not closed with '}'" : "expected ',' or '}' after a label");
    break;
  }
  ++c.pos;  // the '}'
  return true;
}

bool is_integer(std::string_view t) {
  if (t.starts_with('-') || t.starts_with('+')) t.remove_prefix(1);
  if (t.empty()) return false;
  for (char ch : t) {
    if (!is_digit(ch)) return false;
  }
  return true;
}

// Short, printable rendering of peer text for error messages.
std::string printable(std::string_view s, size_t max = 40) {
  std::string out;
  for (size_t i = 0; i < s.size() && i < max; ++i) {
    unsigned char ch = static_cast<unsigned char>(s[i]);
    out += (ch >= 0x20 && ch < 0x7f) ? static_cast<char>(ch) : '.';
  }
  if (s.size() > max) out += "...";
  return out;
}

}  // namespace

std::optional<std::string_view> Sample::label(std::string_view key) const {
  for (const auto& [k, v] : labels) {
    if (k == key) return std::string_view(v);
  }
  return std::nullopt;
}

std::optional<double> parse_value(std::string_view text) {
  std::string_view t = text;
  // from_chars takes "-", not "+"; Prometheus writes "+Inf".
  if (t.starts_with('+')) {
    t.remove_prefix(1);
    if (t.starts_with('+') || t.starts_with('-')) return std::nullopt;
  }
  if (t.empty()) return std::nullopt;
  double v = 0;
  auto [p, ec] = std::from_chars(t.data(), t.data() + t.size(), v);
  // Out of range ("1e999") is refused too: it is no counter a proxy writes.
  if (ec != std::errc() || p != t.data() + t.size()) return std::nullopt;
  return v;
}

Parsed<Sample> parse_sample_line(std::string_view line, const Limits& limits) {
  Cursor c{line};
  c.skip_blanks();
  Sample out;
  size_t start = c.pos;
  if (!is_name_start(c.peek())) return invalid("bad metric name \"" + printable(line.substr(c.pos)) + "\"");
  while (is_name_char(c.peek())) ++c.pos;
  out.name = std::string(line.substr(start, c.pos - start));
  if (c.peek() == '{') {
    ++c.pos;
    if (auto ok = labels(c, out, limits); !ok) return invalid(ok.error());
  } else if (!is_blank(c.peek())) {
    return invalid(c.done() ? "no value after " + out.name : "bad metric name \"" + printable(line) + "\"");
  }
  c.skip_blanks();
  std::string_view value_text = c.token();
  if (value_text.empty()) return invalid("no value after " + out.name);
  auto value = parse_value(value_text);
  if (!value) return invalid("bad value \"" + printable(value_text) + "\" for " + out.name);
  out.value = *value;
  c.skip_blanks();
  if (!c.done()) {
    std::string_view ts = c.token();
    if (!is_integer(ts)) return invalid("bad timestamp \"" + printable(ts) + "\" for " + out.name);
    c.skip_blanks();
    if (!c.done()) return invalid("unexpected text after the timestamp of " + out.name);
  }
  return out;
}

Parsed<ParseResult> parse(std::string_view text, const Limits& limits, bool (*keep)(std::string_view name)) {
  if (text.size() > limits.max_body_bytes)
    return invalid("body of " + std::to_string(text.size()) + " bytes is larger than the limit of " +
                   std::to_string(limits.max_body_bytes));
  ParseResult r;
  size_t line_no = 0;
  auto malformed = [&](const std::string& why) {
    if (r.malformed++ == 0) r.first_error = "line " + std::to_string(line_no) + ": " + why;
  };
  while (!text.empty()) {
    size_t eol = text.find('\n');
    std::string_view line = text.substr(0, eol);
    text.remove_prefix(eol == std::string_view::npos ? text.size() : eol + 1);
    ++line_no;
    if (line.ends_with('\r')) line.remove_suffix(1);
    if (line.size() > limits.max_line_bytes) {
      malformed("longer than " + std::to_string(limits.max_line_bytes) + " bytes");
      continue;
    }
    size_t first = line.find_first_not_of(" \t");
    if (first == std::string_view::npos || line[first] == '#') continue;  // blank, HELP, TYPE, comment
    auto sample = parse_sample_line(line, limits);
    if (!sample) {
      malformed(sample.error());
      continue;
    }
    ++r.parsed;
    if (keep != nullptr && !keep(sample->name)) continue;
    if (r.samples.size() >= limits.max_samples)
      return invalid("more than " + std::to_string(limits.max_samples) + " samples");
    r.samples.push_back(std::move(*sample));
  }
  return r;
}

}  // namespace meshd::ctl::prom
