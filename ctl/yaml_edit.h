// A small, strict reader of block-style YAML structure, for editing
// Kubernetes manifests as text (meshd-ctl inject / uninject) so that
// comments, quoting and unrelated fields survive byte for byte.
//
// It does not build values: it finds nodes (block mappings, block
// sequences, scalars) and their line spans, so that a caller can insert or
// remove whole lines. What it understands: documents split by '---' and
// '...' lines; block mappings ("key: value", quoted keys); block sequences
// ("- item", indented under their key or not); plain, quoted and block
// scalars ('|', '>') spanning several lines, which are skipped whole (text in
// them that looks like YAML is not structure); comments and blank lines;
// anchors and tags before a value. Flow collections ('{...}', '[...]') are
// kept as opaque nodes: a caller may replace an empty one but should refuse
// to edit inside any other. CRLF line ends are read, and inserted lines
// use them too. What it refuses (an error with the line): tabs in
// indentation, complex keys ('? '), duplicate keys, unterminated quotes and
// flows, indentation that does not line up with any node, and nesting
// deeper than 200 levels.
#pragma once

#include <cstddef>
#include <initializer_list>
#include <string>
#include <string_view>
#include <vector>

#include "base/result.h"

namespace meshd::ctl::yaml {

struct Entry;

struct Node {
  enum class Kind { kNull, kScalar, kBlockScalar, kFlow, kAlias, kMap, kSeq };
  Kind kind = Kind::kNull;
  int col = 0;                 // column of the first key, dash or scalar character
  size_t line = 0;             // first line (0-based, within the document)
  size_t end_line = 0;         // one past the last line with content of this node
  size_t text_begin = 0;       // scalar, flow, alias: byte range of the value text
  size_t text_end = 0;         // (without a trailing comment), offsets in the document
  std::vector<Entry> entries;  // kMap: key/value pairs; kSeq: items (key empty)

  bool is_map() const { return kind == Kind::kMap; }
  bool is_seq() const { return kind == Kind::kSeq; }
  // kNull, or a flow collection with nothing in it ("{}", "[]"), or "~" /
  // "null": what a caller may replace by a block collection.
  bool empty_value(std::string_view doc) const;
  const Node* get(std::string_view key) const;  // kMap only; nullptr if absent
  // get() key after key: {"spec", "template"}; nullptr where one is absent.
  const Node* at(std::initializer_list<std::string_view> path) const;
  const Entry* entry(std::string_view key) const;
};

struct Entry {
  std::string key;            // decoded (quotes removed); empty for a sequence item
  size_t line = 0;            // line of the key or the dash
  int col = 0;                // column of the key or the dash
  bool at_line_start = true;  // nothing but indentation before col on its line
  Node value;
  size_t end_line() const { return value.end_line > line ? value.end_line : line + 1; }
};

struct Line {
  size_t begin = 0;      // offset of the first byte
  size_t end = 0;        // offset past the content (before "\n", or "\r\n")
  size_t next = 0;       // offset of the next line (past the newline), or the size
  int indent = 0;        // leading spaces
  bool blank = false;    // only spaces
  bool comment = false;  // only a comment after the indentation
};

// One document of a stream, parsed.
class Document {
 public:
  // text: the document's bytes (without its '---' line). first_line: the
  // 1-based line number of text's first line in the stream, for errors.
  static Parsed<Document> parse(std::string text, size_t first_line);

  const std::string& text() const { return text_; }
  const std::vector<Line>& lines() const { return lines_; }
  const Node& root() const { return root_; }
  bool has_content() const { return root_.kind != Node::Kind::kNull; }
  // 1-based line number in the stream.
  size_t line_no(size_t line) const { return first_line_ + line; }
  // The scalar's value: plain (folded over lines), '...' or "..." decoded.
  // Block scalars, flows and aliases: their raw text.
  std::string scalar(const Node& n) const;
  // The indentation step of nested mappings (2 when it cannot tell).
  int indent_step() const;
  // Whether block sequences under a key are indented past it, judged from
  // this mapping's sequences first, then the document's (false by default,
  // as kubectl writes them).
  bool sequences_indented(const Node* hint) const;
  bool crlf() const { return crlf_; }

 private:
  std::string text_;
  size_t first_line_ = 1;
  std::vector<Line> lines_;
  Node root_;
  bool crlf_ = false;
};

// A stream split into documents. Separators ('---', '...') and everything
// between documents are kept so that the stream can be written back.
struct StreamPart {
  bool is_document = false;
  std::string text;       // the bytes (a separator line, or a document)
  size_t first_line = 1;  // 1-based
};
std::vector<StreamPart> split_stream(std::string_view text);

// Text edits on one document: replace [begin, end) by text. Edits must not
// overlap; they are applied from the end.
struct Edit {
  size_t begin = 0;
  size_t end = 0;
  std::string text;
};
std::string apply_edits(std::string_view text, std::vector<Edit> edits);

// Offsets for whole-line edits on a parsed document.
size_t line_start(const Document& d, size_t line);  // d.text().size() past the end
// An edit inserting `lines` (each ending in "\n") after line `line - 1`,
// i.e. before line `line`; handles a last line without a newline and CRLF.
Edit insert_lines_before(const Document& d, size_t line, std::string lines);
// An edit removing lines [first, end).
Edit remove_lines(const Document& d, size_t first, size_t end);

// A value to write, for inserting new structure in the document's style.
struct Value {
  enum class Kind { kScalar, kMap, kSeq };
  Kind kind = Kind::kScalar;
  std::string scalar;  // written as is: the caller quotes
  std::vector<std::pair<std::string, Value>> map;
  std::vector<Value> seq;

  static Value str(std::string_view s);     // double-quoted when YAML needs it
  static Value raw(std::string s);          // written as is (numbers, booleans)
  static Value quoted(std::string_view s);  // always double-quoted
  static Value mapping(std::vector<std::pair<std::string, Value>> m);
  static Value sequence(std::vector<Value> s);
};
struct Style {
  int step = 2;
  bool seq_indented = false;
};
// Lines for the entries of `map` (a kMap) at column col.
std::string emit_map_entries(const Value& map, int col, const Style& style);
// Lines for the items of `seq` (a kSeq) with their dashes at column col.
std::string emit_seq_items(const Value& seq, int col, const Style& style);

// "a b" -> "\"a b\"": a JSON-style double-quoted scalar.
std::string double_quote(std::string_view s);

}  // namespace meshd::ctl::yaml
