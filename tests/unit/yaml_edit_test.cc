#include "ctl/yaml_edit.h"

#include <catch2/catch.hpp>
#include <string>
#include <vector>

using meshd::ctl::yaml::Document;
using meshd::ctl::yaml::Node;
using meshd::ctl::yaml::split_stream;
using meshd::ctl::yaml::Style;
using meshd::ctl::yaml::Value;

namespace {

Document parse(const std::string& text) {
  auto d = Document::parse(text, 1);
  INFO(text);
  REQUIRE(d);
  return *d;
}

// Keeps the tests' calls short: at(node, {"spec", "template"}).
const Node* at(const Node& root, std::initializer_list<std::string_view> path) { return root.at(path); }

}  // namespace

TEST_CASE("yaml: stream split keeps every byte", "[inject][yaml]") {
  std::string text = "# leading comment\n---\na: 1\n--- # second\n\n---\nb: 2\n...\n";
  auto parts = split_stream(text);
  std::string joined;
  int docs = 0;
  for (const auto& p : parts) {
    joined += p.text;
    docs += p.is_document;
  }
  CHECK(joined == text);
  CHECK(docs == 5);  // before the first ---, a, empty, b, after ...
  CHECK(parts[2].text == "a: 1\n");
  CHECK(parts[2].first_line == 3);
  CHECK(parts[3].text == "--- # second\n");
  // "----" and "---x" are not separators.
  CHECK(split_stream("a: ----\n---x: 1\n").size() == 1);
}

TEST_CASE("yaml: mappings, comments, quoted keys and both sequence styles", "[inject][yaml]") {
  Document d = parse(
      "# top\n"
      "apiVersion: v1   # trailing\n"
      "\n"
      "\"kind\": Pod\n"
      "metadata:\n"
      "  # between keys\n"
      "  name: 'it''s'\n"
      "  'quoted key': \"a \\\"b\\\"\"\n"
      "spec:\n"
      "  containers:\n"
      "  - name: a\n"
      "    ports:\n"
      "      - containerPort: 80\n"
      "  # between items\n"
      "  - name: b\n"
      "  volumes:\n"
      "    - name: v\n");
  const Node& root = d.root();
  REQUIRE(root.is_map());
  CHECK(root.entries.size() == 4);
  CHECK(d.scalar(*root.get("kind")) == "Pod");
  CHECK(d.scalar(*root.get("apiVersion")) == "v1");
  CHECK(d.scalar(*at(root, {"metadata", "name"})) == "it's");
  CHECK(d.scalar(*at(root, {"metadata", "quoted key"})) == "a \"b\"");
  const Node* containers = at(root, {"spec", "containers"});
  REQUIRE(containers);
  REQUIRE(containers->is_seq());
  CHECK(containers->col == 2);  // not indented under its key
  REQUIRE(containers->entries.size() == 2);
  CHECK(d.scalar(*containers->entries[1].value.get("name")) == "b");
  CHECK(containers->entries[0].value.col == 4);
  CHECK(containers->entries[0].line == 10);
  CHECK(containers->entries[0].end_line() == 13);
  const Node* volumes = at(root, {"spec", "volumes"});
  REQUIRE(volumes);
  CHECK(volumes->col == 4);  // indented
  CHECK(d.indent_step() == 2);
  CHECK_FALSE(d.sequences_indented(at(root, {"spec"})));
}

TEST_CASE("yaml: block scalars and multi-line plain scalars are skipped whole", "[inject][yaml]") {
  Document d = parse(
      "data:\n"
      "  script: |\n"
      "    initContainers:\n"
      "    - name: meshd-proxy\n"
      "\n"
      "    # not a comment\n"
      "  folded: >-\n"
      "      text\n"
      "  plain: first\n"
      "    second\n"
      "\n"
      "    third\n"
      "  after: x\n"
      "list:\n"
      "- |\n"
      "  a: b\n"
      "- &anchor !!str tagged\n"
      "- *anchor\n");
  const Node* data = d.root().get("data");
  REQUIRE(data);
  CHECK(data->entries.size() == 4);
  CHECK(data->get("initContainers") == nullptr);
  CHECK(data->get("script")->kind == Node::Kind::kBlockScalar);
  CHECK(data->get("script")->end_line == 6);
  CHECK(d.scalar(*data->get("plain")) == "first second third");
  CHECK(d.scalar(*data->get("after")) == "x");
  const Node* list = d.root().get("list");
  REQUIRE(list);
  REQUIRE(list->entries.size() == 3);
  CHECK(list->entries[0].value.kind == Node::Kind::kBlockScalar);
  CHECK(d.scalar(list->entries[1].value) == "tagged");
  CHECK(list->entries[2].value.kind == Node::Kind::kAlias);
}

TEST_CASE("yaml: flow collections are opaque nodes", "[inject][yaml]") {
  Document d = parse(
      "a: {}\n"
      "b: [ ]\n"
      "c: {x: 1,\n"
      "    y: [2, \"]\"]}  # comment\n"
      "d: ~\n"
      "e:\n"
      "f: [1]\n");
  const Node& r = d.root();
  CHECK(r.get("a")->kind == Node::Kind::kFlow);
  CHECK(r.get("a")->empty_value(d.text()));
  CHECK(r.get("b")->empty_value(d.text()));
  CHECK(r.get("c")->kind == Node::Kind::kFlow);
  CHECK(r.get("c")->end_line == 4);
  CHECK_FALSE(r.get("c")->empty_value(d.text()));
  CHECK(r.get("d")->empty_value(d.text()));
  CHECK(r.get("e")->kind == Node::Kind::kNull);
  CHECK_FALSE(r.get("f")->empty_value(d.text()));
  // A whole JSON document is one flow node.
  Document j = parse("{\"kind\": \"Pod\",\n \"spec\": {}}\n");
  CHECK(j.root().kind == Node::Kind::kFlow);
}

TEST_CASE("yaml: what the reader refuses, with the line", "[inject][yaml]") {
  auto error = [](const std::string& text, size_t first_line = 1) {
    auto d = Document::parse(text, first_line);
    REQUIRE_FALSE(d);
    return d.error();
  };
  CHECK(error("a:\n\tb: 1\n") == "line 2: a tab in indentation (YAML allows only spaces)");
  CHECK(error("? a\n: b\n") == "line 1: complex mapping keys ('? ') are not supported");
  CHECK(error("a:\n  b: 1\n   c: 2\n", 10) ==
        "line 12: unexpected indentation (column 4; the mapping's keys are at column 3)");
  CHECK(error("a: 1\na: 2\n") == "line 2: duplicate key 'a'");
  CHECK(error("a: {b: 1\n") == "line 1: unterminated flow collection ('{')");
  CHECK(error("a: \"open\n") == "line 1: unterminated quoted scalar");
  CHECK(error("a: 1\n- b\n") == "line 2: a sequence item where a mapping key was expected");
  std::string deep;
  for (int i = 0; i < 100000; ++i) deep += "- ";
  CHECK(error(deep + "x\n") == "line 1: nesting deeper than 200 levels");
  std::string nested;
  for (int i = 0; i < 300; ++i) nested += std::string(static_cast<size_t>(i), ' ') + "k:\n";
  CHECK(error(nested) == "line 201: nesting deeper than 200 levels");
}

TEST_CASE("yaml: CRLF lines and a last line without a newline", "[inject][yaml]") {
  Document d = parse("a:\r\n  b: 1\r\nc: 2");
  CHECK(d.crlf());
  CHECK(d.scalar(*at(d.root(), {"a", "b"})) == "1");
  CHECK(d.scalar(*d.root().get("c")) == "2");
  auto e = meshd::ctl::yaml::insert_lines_before(d, 3, "d: 3\n");
  CHECK(meshd::ctl::yaml::apply_edits(d.text(), {e}) == "a:\r\n  b: 1\r\nc: 2\r\nd: 3");
  Document plain = parse("a: 1\nb: 2");
  auto r = meshd::ctl::yaml::remove_lines(plain, 1, 2);
  CHECK(meshd::ctl::yaml::apply_edits(plain.text(), {r}) == "a: 1");
}

TEST_CASE("yaml: emitting in a document's style", "[inject][yaml]") {
  Value v = Value::mapping({{"name", Value::str("x")},
                            {"args", Value::sequence({Value::str("--port"), Value::str("80")})},
                            {"nested", Value::mapping({{"k", Value::str("true")}, {"e", Value::mapping({})}})}});
  CHECK(meshd::ctl::yaml::emit_seq_items(Value::sequence({v}), 2, Style{2, false}) ==
        "  - name: x\n"
        "    args:\n"
        "    - --port\n"
        "    - \"80\"\n"
        "    nested:\n"
        "      k: \"true\"\n"
        "      e: {}\n");
  CHECK(meshd::ctl::yaml::emit_map_entries(v, 0, Style{4, true}) ==
        "name: x\n"
        "args:\n"
        "    - --port\n"
        "    - \"80\"\n"
        "nested:\n"
        "    k: \"true\"\n"
        "    e: {}\n");
  CHECK(Value::str("a: b").scalar == "\"a: b\"");
  CHECK(Value::str("- x").scalar == "\"- x\"");
  CHECK(Value::str("null").scalar == "\"null\"");
  CHECK(Value::str("meshd/meshd:0.1.0").scalar == "meshd/meshd:0.1.0");
  // Re-read: what is emitted parses back.
  Document d = parse(meshd::ctl::yaml::emit_map_entries(v, 0, Style{3, false}));
  CHECK(d.scalar(*at(d.root(), {"nested", "k"})) == "true");
  CHECK(d.indent_step() == 3);
}
