#include "ctl/yaml_edit.h"

#include <algorithm>
#include <cctype>
#include <functional>
#include <unordered_set>
#include <utility>

#include "base/json.h"

namespace meshd::ctl::yaml {

namespace {

bool is_space_or_end(std::string_view s, size_t i) { return i >= s.size() || s[i] == ' ' || s[i] == '\t'; }

std::string_view trim_spaces(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t' || s.back() == '\r')) s.remove_suffix(1);
  return s;
}

class Parser {
 public:
  Parser(const std::string& text, const std::vector<Line>& lines, size_t first_line)
      : t_(text), lines_(lines), first_line_(first_line) {}

  Parsed<Node> root() {
    Node out;
    size_t j = next_content(0);
    if (j >= lines_.size()) return out;
    if (!node_at(j, lines_[j].indent, -1, out)) return invalid(err_);
    size_t k = next_content(std::max(out.end_line, j + 1));
    if (k < lines_.size()) {
      fail(k, "unexpected content at column " + std::to_string(lines_[k].indent + 1) +
                  " (indentation matches no mapping or sequence above it)");
      return invalid(err_);
    }
    return out;
  }

 private:
  const std::string& t_;
  const std::vector<Line>& lines_;
  size_t first_line_;
  std::string err_;
  static constexpr int kMaxDepth = 200;
  int depth_ = 0;

  bool fail(size_t line, const std::string& msg) {
    if (err_.empty()) err_ = "line " + std::to_string(first_line_ + line) + ": " + msg;
    return false;
  }
  std::string_view content(size_t i) const {
    return std::string_view(t_).substr(lines_[i].begin, lines_[i].end - lines_[i].begin);
  }
  // The line's text from column col (empty past its end).
  std::string_view from(size_t i, int col) const {
    std::string_view c = content(i);
    return static_cast<size_t>(col) >= c.size() ? std::string_view() : c.substr(static_cast<size_t>(col));
  }
  size_t next_content(size_t i) const {
    while (i < lines_.size() && (lines_[i].blank || lines_[i].comment)) ++i;
    return i;
  }
  size_t line_of(size_t offset) const {
    auto it =
        std::upper_bound(lines_.begin(), lines_.end(), offset, [](size_t off, const Line& l) { return off < l.begin; });
    return static_cast<size_t>(it - lines_.begin()) - 1;
  }
  // After a value's text on line i from column col: only spaces and a comment.
  bool rest_is_comment(size_t i, size_t col) const {
    std::string_view rest = from(i, static_cast<int>(col));
    rest = trim_spaces(rest);
    return rest.empty() || rest.front() == '#';
  }

  // Whether the text at (i, col) is a mapping key; sets key (decoded) and
  // the column just past the ':'.
  bool key_at(size_t i, int col, std::string* key, int* after) {
    std::string_view s = from(i, col);
    if (s.empty()) return false;
    char c = s[0];
    if (c == '"' || c == '\'') {
      size_t k = 1;
      std::string out;
      while (k < s.size()) {
        if (c == '"' && s[k] == '\\' && k + 1 < s.size()) {
          out += s[k + 1];
          k += 2;
          continue;
        }
        if (s[k] == c) {
          if (c == '\'' && k + 1 < s.size() && s[k + 1] == '\'') {
            out += '\'';
            k += 2;
            continue;
          }
          break;
        }
        out += s[k++];
      }
      if (k >= s.size()) return false;
      size_t p = k + 1;
      while (p < s.size() && s[p] == ' ') ++p;
      if (p < s.size() && s[p] == ':' && is_space_or_end(s, p + 1)) {
        *key = out;
        *after = col + static_cast<int>(p) + 1;
        return true;
      }
      return false;
    }
    if (c == '[' || c == '{' || c == '|' || c == '>' || c == '#' || c == '*' || c == '&' || c == '!' || c == '%' ||
        c == '@' || c == '`')
      return false;
    if (c == '-' && is_space_or_end(s, 1)) return false;
    for (size_t k = 0; k < s.size(); ++k) {
      if (s[k] == '#' && k > 0 && (s[k - 1] == ' ' || s[k - 1] == '\t')) return false;
      if (s[k] == ':' && is_space_or_end(s, k + 1)) {
        *key = std::string(trim_spaces(s.substr(0, k)));
        *after = col + static_cast<int>(k) + 1;
        return true;
      }
    }
    return false;
  }

  bool check_tab(size_t i) {
    std::string_view c = content(i);
    size_t ind = static_cast<size_t>(lines_[i].indent);
    if (ind < c.size() && c[ind] == '\t') return fail(i, "a tab in indentation (YAML allows only spaces)");
    return true;
  }

  // A value starting at (i, pos) after "key:" or "-": inline, or on the
  // next lines. owner: the column of the key or dash.
  bool inline_value(size_t i, int pos, int owner, bool map_value, Node& out) {
    std::string_view s = content(i);
    size_t p = static_cast<size_t>(pos);
    for (;;) {
      while (p < s.size() && (s[p] == ' ' || s[p] == '\t')) ++p;
      if (p < s.size() && (s[p] == '&' || s[p] == '!')) {  // anchor or tag: skipped
        while (p < s.size() && s[p] != ' ' && s[p] != '\t') ++p;
        continue;
      }
      break;
    }
    if (p >= s.size() || s[p] == '#') {
      size_t j = next_content(i + 1);
      if (j < lines_.size() && lines_[j].indent > owner) {
        if (!check_tab(j)) return false;
        return node_at(j, lines_[j].indent, owner, out);
      }
      if (map_value && j < lines_.size() && lines_[j].indent == owner && owner >= 0) {
        std::string_view r = from(j, owner);
        if (!r.empty() && r[0] == '-' && is_space_or_end(r, 1)) return seq_at(j, owner, out);
      }
      out.kind = Node::Kind::kNull;
      out.col = static_cast<int>(p);
      out.line = i;
      out.end_line = i + 1;
      out.text_begin = out.text_end = lines_[i].begin + std::min(p, s.size());
      return true;
    }
    return node_at(i, static_cast<int>(p), owner, out);
  }

  bool node_at(size_t i, int col, int owner, Node& out) {
    // Each level is a few stack frames: a bound keeps a hostile input
    // ("- - - - ...") from exhausting the stack.
    if (depth_ >= kMaxDepth) return fail(i, "nesting deeper than " + std::to_string(kMaxDepth) + " levels");
    ++depth_;
    bool ok = node_at_depth(i, col, owner, out);
    --depth_;
    return ok;
  }

  bool node_at_depth(size_t i, int col, int owner, Node& out) {
    std::string_view s = from(i, col);
    out.col = col;
    out.line = i;
    out.end_line = i + 1;
    size_t begin = lines_[i].begin + static_cast<size_t>(col);
    out.text_begin = begin;
    out.text_end = lines_[i].end;
    if (s.empty()) {
      out.kind = Node::Kind::kNull;
      return true;
    }
    char c = s[0];
    if (c == '-' && is_space_or_end(s, 1)) return seq_at(i, col, out);
    if (c == '?' && is_space_or_end(s, 1)) return fail(i, "complex mapping keys ('? ') are not supported");
    std::string key;
    int after = 0;
    if (key_at(i, col, &key, &after)) return map_at(i, col, out);
    if (c == '|' || c == '>') {
      out.kind = Node::Kind::kBlockScalar;
      size_t last = i;
      for (size_t j = i + 1; j < lines_.size(); ++j) {
        if (lines_[j].blank) continue;
        if (lines_[j].indent <= owner) break;
        last = j;
      }
      out.end_line = last + 1;
      out.text_end = lines_[last].end;
      // Keep chomping ("|+"): the blank lines after the text are part of
      // the value, so nothing may be inserted between them and it.
      if (s.substr(0, s.find(' ')).find('+') != std::string_view::npos)
        while (out.end_line < lines_.size() && lines_[out.end_line].blank) ++out.end_line;
      return true;
    }
    if (c == '[' || c == '{') {
      out.kind = Node::Kind::kFlow;
      int depth = 0;
      char quote = 0;
      size_t k = begin;
      for (; k < t_.size(); ++k) {
        char d = t_[k];
        if (quote) {
          if (d == '\\' && quote == '"') {
            ++k;
          } else if (d == quote) {
            quote = 0;
          }
          continue;
        }
        if (d == '"' || d == '\'') {
          quote = d;
        } else if (d == '#' && k > 0 && (t_[k - 1] == ' ' || t_[k - 1] == '\n')) {
          while (k < t_.size() && t_[k] != '\n') ++k;
        } else if (d == '[' || d == '{') {
          ++depth;
        } else if (d == ']' || d == '}') {
          if (--depth == 0) break;
        }
      }
      if (k >= t_.size()) return fail(i, "unterminated flow collection ('" + std::string(1, c) + "')");
      size_t li = line_of(k);
      if (!rest_is_comment(li, k + 1 - lines_[li].begin)) return fail(li, "unexpected text after a flow collection");
      out.text_end = k + 1;
      out.end_line = li + 1;
      return true;
    }
    if (c == '"' || c == '\'') {
      out.kind = Node::Kind::kScalar;
      size_t k = begin + 1;
      for (; k < t_.size(); ++k) {
        if (c == '"' && t_[k] == '\\') {
          ++k;
          continue;
        }
        if (t_[k] == c) {
          if (c == '\'' && k + 1 < t_.size() && t_[k + 1] == '\'') {
            ++k;
            continue;
          }
          break;
        }
      }
      if (k >= t_.size()) return fail(i, "unterminated quoted scalar");
      size_t li = line_of(k);
      if (!rest_is_comment(li, k + 1 - lines_[li].begin)) return fail(li, "unexpected text after a quoted scalar");
      out.text_end = k + 1;
      out.end_line = li + 1;
      return true;
    }
    if (c == '*') {
      out.kind = Node::Kind::kAlias;
      size_t k = 0;
      while (k < s.size() && s[k] != ' ' && s[k] != '\t') ++k;
      out.text_end = begin + k;
      if (!rest_is_comment(i, static_cast<size_t>(col) + k)) return fail(i, "unexpected text after an alias");
      return true;
    }
    // A plain scalar, perhaps continued on more indented lines.
    out.kind = Node::Kind::kScalar;
    size_t k = 0;
    while (k < s.size() && !(s[k] == '#' && k > 0 && (s[k - 1] == ' ' || s[k - 1] == '\t'))) ++k;
    out.text_end = begin + trim_spaces(s.substr(0, k)).size();
    for (size_t j = i + 1; j < lines_.size(); ++j) {
      if (lines_[j].blank) continue;
      if (lines_[j].comment || lines_[j].indent <= owner) break;
      // "key: value" cannot continue a plain scalar: it is misplaced
      // structure, left for the caller to report.
      std::string k2;
      int after2 = 0;
      if (key_at(j, lines_[j].indent, &k2, &after2)) break;
      std::string_view cj = content(j);
      size_t m = 0;
      while (m < cj.size() && !(cj[m] == '#' && m > 0 && (cj[m - 1] == ' ' || cj[m - 1] == '\t'))) ++m;
      out.end_line = j + 1;
      std::string_view body = cj.substr(0, m);
      while (!body.empty() && (body.back() == ' ' || body.back() == '\t')) body.remove_suffix(1);
      out.text_end = lines_[j].begin + body.size();
    }
    return true;
  }

  bool map_at(size_t i, int col, Node& out) {
    out.kind = Node::Kind::kMap;
    out.col = col;
    out.line = i;
    size_t li = i;
    std::unordered_set<std::string> keys;
    for (;;) {
      Entry e;
      int after = 0;
      if (!key_at(li, col, &e.key, &after)) {
        std::string_view s = trim_spaces(from(li, col));
        if (!s.empty() && s[0] == '-') return fail(li, "a sequence item where a mapping key was expected");
        return fail(li, "expected 'key: value' at column " + std::to_string(col + 1));
      }
      if (!keys.insert(e.key).second) return fail(li, "duplicate key '" + e.key + "'");
      e.line = li;
      e.col = col;
      e.at_line_start = lines_[li].indent == col;
      if (!inline_value(li, after, col, true, e.value)) return false;
      size_t end = e.end_line();
      out.entries.push_back(std::move(e));
      out.end_line = end;
      size_t j = next_content(end);
      if (j >= lines_.size() || lines_[j].indent < col) return true;
      if (!check_tab(j)) return false;
      if (lines_[j].indent > col)
        return fail(j, "unexpected indentation (column " + std::to_string(lines_[j].indent + 1) +
                           "; the mapping's keys are at column " + std::to_string(col + 1) + ")");
      li = j;
    }
  }

  bool seq_at(size_t i, int col, Node& out) {
    out.kind = Node::Kind::kSeq;
    out.col = col;
    out.line = i;
    size_t li = i;
    for (;;) {
      Entry e;
      e.line = li;
      e.col = col;
      e.at_line_start = lines_[li].indent == col;
      if (!inline_value(li, col + 1, col, false, e.value)) return false;
      size_t end = e.end_line();
      out.entries.push_back(std::move(e));
      out.end_line = end;
      size_t j = next_content(end);
      if (j >= lines_.size() || lines_[j].indent < col) return true;
      if (!check_tab(j)) return false;
      std::string_view s = from(j, col);
      if (lines_[j].indent == col) {
        if (!s.empty() && s[0] == '-' && is_space_or_end(s, 1)) {
          li = j;
          continue;
        }
        return true;  // the next key of a mapping whose sequence is not indented
      }
      return fail(j, "unexpected indentation (column " + std::to_string(lines_[j].indent + 1) +
                         "; the sequence's items are at column " + std::to_string(col + 1) + ")");
    }
  }
};

void walk(const Node& n, const std::function<void(const Node&, const Entry&)>& f);

}  // namespace

const Node* Node::get(std::string_view key) const {
  const Entry* e = entry(key);
  return e ? &e->value : nullptr;
}

const Node* Node::at(std::initializer_list<std::string_view> path) const {
  const Node* n = this;
  for (std::string_view key : path) {
    n = n->get(key);
    if (n == nullptr) return nullptr;
  }
  return n;
}

const Entry* Node::entry(std::string_view key) const {
  if (kind != Kind::kMap) return nullptr;
  for (const Entry& e : entries)
    if (e.key == key) return &e;
  return nullptr;
}

bool Node::empty_value(std::string_view doc) const {
  if (kind == Kind::kNull) return true;
  std::string_view s = doc.substr(text_begin, text_end - text_begin);
  if (kind == Kind::kFlow) {
    std::string compact;
    for (char c : s)
      if (c != ' ' && c != '\t' && c != '\n' && c != '\r') compact += c;
    return compact == "{}" || compact == "[]";
  }
  if (kind == Kind::kScalar) return s == "~" || s == "null" || s == "Null" || s == "NULL";
  return false;
}

Parsed<Document> Document::parse(std::string text, size_t first_line) {
  Document d;
  d.text_ = std::move(text);
  d.first_line_ = first_line;
  const std::string& t = d.text_;
  size_t pos = 0;
  while (pos < t.size()) {
    Line l;
    l.begin = pos;
    size_t nl = t.find('\n', pos);
    l.next = nl == std::string::npos ? t.size() : nl + 1;
    l.end = nl == std::string::npos ? t.size() : nl;
    if (l.end > l.begin && t[l.end - 1] == '\r') {
      --l.end;
      d.crlf_ = true;
    }
    size_t k = l.begin;
    while (k < l.end && t[k] == ' ') ++k;
    l.indent = static_cast<int>(k - l.begin);
    size_t m = k;
    while (m < l.end && (t[m] == ' ' || t[m] == '\t')) ++m;
    l.blank = m == l.end;
    l.comment = !l.blank && (t[m] == '#' || (k == l.begin && t[k] == '%'));
    d.lines_.push_back(l);
    pos = l.next;
  }
  Parser p(d.text_, d.lines_, first_line);
  auto root = p.root();
  if (!root) return invalid(root.error());
  d.root_ = std::move(*root);
  // A line inside a multi-line scalar or flow is part of its text, even one
  // that starts with '#': only lines outside every value are comments (an
  // insertion "above an entry's comments" must never land inside a string).
  walk(d.root_, [&d](const Node&, const Entry& e) {
    const Node& v = e.value;
    if (v.is_map() || v.is_seq()) return;
    for (size_t k = v.line + 1; k < v.end_line && k < d.lines_.size(); ++k) d.lines_[k].comment = false;
  });
  return d;
}

std::string Document::scalar(const Node& n) const {
  std::string_view raw = std::string_view(text_).substr(n.text_begin, n.text_end - n.text_begin);
  if (n.kind == Node::Kind::kNull) return "";
  if (n.kind != Node::Kind::kScalar) return std::string(raw);
  // Folds line breaks into spaces (enough for names and annotation values).
  auto fold = [](std::string_view s) {
    std::string out;
    size_t pos = 0;
    bool first = true;
    while (pos <= s.size()) {
      size_t nl = s.find('\n', pos);
      std::string_view part = s.substr(pos, nl == std::string_view::npos ? std::string_view::npos : nl - pos);
      part = first ? part : trim_spaces(part);
      if (!first) {
        std::string_view lead = out;
        while (!lead.empty() && (lead.back() == ' ' || lead.back() == '\r')) lead.remove_suffix(1);
        out.resize(lead.size());
        if (!part.empty()) out += ' ';
      }
      out += part;
      first = false;
      if (nl == std::string_view::npos) break;
      pos = nl + 1;
    }
    return out;
  };
  if (!raw.empty() && raw.front() == '\'' && raw.size() >= 2) {
    std::string f = fold(raw.substr(1, raw.size() - 2));
    std::string out;
    for (size_t i = 0; i < f.size(); ++i) {
      out += f[i];
      if (f[i] == '\'' && i + 1 < f.size() && f[i + 1] == '\'') ++i;
    }
    return out;
  }
  if (!raw.empty() && raw.front() == '"' && raw.size() >= 2) {
    std::string f = fold(raw.substr(1, raw.size() - 2));
    std::string out;
    for (size_t i = 0; i < f.size(); ++i) {
      if (f[i] != '\\' || i + 1 >= f.size()) {
        out += f[i];
        continue;
      }
      char e = f[++i];
      switch (e) {
        case 'n': out += '\n'; break;
        case 't': out += '\t'; break;
        case '0': out += '\0'; break;
        default: out += e; break;
      }
    }
    return out;
  }
  return fold(raw);
}

namespace {

void walk(const Node& n, const std::function<void(const Node&, const Entry&)>& f) {
  for (const Entry& e : n.entries) {
    f(n, e);
    walk(e.value, f);
  }
}

}  // namespace

int Document::indent_step() const {
  int best = 0;
  walk(root_, [&](const Node& parent, const Entry& e) {
    if (parent.kind != Node::Kind::kMap || e.value.kind != Node::Kind::kMap || e.value.line <= e.line) return;
    int step = e.value.col - e.col;
    if (step > 0 && (best == 0 || step < best)) best = step;
  });
  return best == 0 ? 2 : std::min(best, 8);
}

bool Document::sequences_indented(const Node* hint) const {
  auto judge = [](const Node& parent, const Entry& e) -> int {
    if (parent.kind != Node::Kind::kMap || e.value.kind != Node::Kind::kSeq || e.value.line <= e.line) return -1;
    return e.value.col > e.col ? 1 : 0;
  };
  if (hint && hint->kind == Node::Kind::kMap)
    for (const Entry& e : hint->entries)
      if (int j = judge(*hint, e); j >= 0) return j == 1;
  int found = -1;
  walk(root_, [&](const Node& parent, const Entry& e) {
    if (found < 0) found = judge(parent, e);
  });
  return found == 1;
}

std::vector<StreamPart> split_stream(std::string_view text) {
  std::vector<StreamPart> parts;
  StreamPart doc{true, "", 1};
  size_t pos = 0, line_no = 1;
  while (pos < text.size()) {
    size_t nl = text.find('\n', pos);
    size_t next = nl == std::string_view::npos ? text.size() : nl + 1;
    std::string_view line = text.substr(pos, next - pos);
    bool sep = (line.starts_with("---") || line.starts_with("...")) &&
               (line.size() == 3 || line[3] == ' ' || line[3] == '\t' || line[3] == '\n' || line[3] == '\r');
    if (sep) {
      parts.push_back(std::move(doc));
      parts.push_back(StreamPart{false, std::string(line), line_no});
      doc = StreamPart{true, "", line_no + 1};
    } else {
      doc.text += line;
    }
    pos = next;
    ++line_no;
  }
  parts.push_back(std::move(doc));
  return parts;
}

std::string apply_edits(std::string_view text, std::vector<Edit> edits) {
  std::stable_sort(edits.begin(), edits.end(), [](const Edit& a, const Edit& b) { return a.begin > b.begin; });
  std::string out(text);
  for (const Edit& e : edits) out.replace(e.begin, e.end - e.begin, e.text);
  return out;
}

size_t line_start(const Document& d, size_t line) {
  return line < d.lines().size() ? d.lines()[line].begin : d.text().size();
}

Edit insert_lines_before(const Document& d, size_t line, std::string lines) {
  if (d.crlf()) {
    std::string c;
    for (char ch : lines) {
      if (ch == '\n') c += '\r';
      c += ch;
    }
    lines = std::move(c);
  }
  const std::string& t = d.text();
  size_t at = line_start(d, line);
  if (at == t.size() && !t.empty() && t.back() != '\n' && !lines.empty()) {
    // After a last line without a newline: the newline goes first.
    std::string nl = d.crlf() ? "\r\n" : "\n";
    lines = nl + lines.substr(0, lines.size() - nl.size());
  }
  return Edit{at, at, std::move(lines)};
}

Edit remove_lines(const Document& d, size_t first, size_t end) {
  const std::string& t = d.text();
  size_t begin = line_start(d, first);
  size_t stop = line_start(d, end);
  if (stop == t.size() && !t.empty() && t.back() != '\n' && first > 0) begin = d.lines()[first - 1].end;
  return Edit{begin, stop, ""};
}

// JSON's escaping is valid in a YAML double-quoted scalar, control
// characters included.
std::string double_quote(std::string_view s) {
  std::string out;
  JsonWriter::escape_into(out, s);
  return out;
}

Value Value::str(std::string_view s) {
  bool plain = !s.empty() && s.front() != ' ' && s.back() != ' ';
  static constexpr std::string_view kSpecialFirst = ",[]{}#&*!|>'\"%@`~";
  if (plain && kSpecialFirst.find(s.front()) != std::string_view::npos) plain = false;
  // '-', '?' and ':' start a plain scalar only when something but a space follows.
  if (plain && (s.front() == '-' || s.front() == '?' || s.front() == ':') && (s.size() == 1 || s[1] == ' '))
    plain = false;
  if (plain && (s.starts_with("---") || s.starts_with("..."))) plain = false;
  for (size_t i = 0; plain && i < s.size(); ++i) {
    char c = s[i];
    if (c == '\n' || c == '\t' || c == '"' || c == '\\') plain = false;
    if (c == ':' && (i + 1 == s.size() || s[i + 1] == ' ')) plain = false;
    if (c == '#' && i > 0 && s[i - 1] == ' ') plain = false;
  }
  // Words and numbers YAML would read as something else than a string.
  static constexpr std::string_view kReserved[] = {"true", "false", "yes", "no", "on", "off", "null",
                                                   "True", "False", "Yes", "No", "On", "Off", "Null",
                                                   "TRUE", "FALSE", "YES", "NO", "ON", "OFF", "NULL"};
  for (std::string_view r : kReserved)
    if (s == r) plain = false;
  if (plain && (std::isdigit(static_cast<unsigned char>(s.front())) || s.front() == '.' || s.front() == '+'))
    plain = false;
  return plain ? raw(std::string(s)) : quoted(s);
}

Value Value::raw(std::string s) {
  Value v;
  v.scalar = std::move(s);
  return v;
}

Value Value::quoted(std::string_view s) { return raw(double_quote(s)); }

Value Value::mapping(std::vector<std::pair<std::string, Value>> m) {
  Value v;
  v.kind = Kind::kMap;
  v.map = std::move(m);
  return v;
}

Value Value::sequence(std::vector<Value> s) {
  Value v;
  v.kind = Kind::kSeq;
  v.seq = std::move(s);
  return v;
}

std::string emit_map_entries(const Value& map, int col, const Style& style) {
  std::string out;
  std::string pad(static_cast<size_t>(col), ' ');
  for (const auto& [k, v] : map.map) {
    switch (v.kind) {
      case Value::Kind::kScalar: out += pad + k + ": " + v.scalar + "\n"; break;
      case Value::Kind::kMap:
        if (v.map.empty()) {
          out += pad + k + ": {}\n";
        } else {
          out += pad + k + ":\n" + emit_map_entries(v, col + style.step, style);
        }
        break;
      case Value::Kind::kSeq:
        if (v.seq.empty()) {
          out += pad + k + ": []\n";
        } else {
          out += pad + k + ":\n" + emit_seq_items(v, style.seq_indented ? col + style.step : col, style);
        }
        break;
    }
  }
  return out;
}

std::string emit_seq_items(const Value& seq, int col, const Style& style) {
  std::string out;
  std::string pad(static_cast<size_t>(col), ' ');
  for (const Value& item : seq.seq) {
    if (item.kind == Value::Kind::kScalar) {
      out += pad + "- " + item.scalar + "\n";
      continue;
    }
    std::string s =
        item.kind == Value::Kind::kMap ? emit_map_entries(item, col + 2, style) : emit_seq_items(item, col + 2, style);
    if (s.size() > static_cast<size_t>(col)) s[static_cast<size_t>(col)] = '-';
    out += s;
  }
  return out;
}

}  // namespace meshd::ctl::yaml
