#include "controller/registry_file.h"

#include "config/toml.h"

#include <fstream>
#include <set>
#include <sstream>

#include "base/addr.h"
#include "base/parse.h"
#include "policy/authz.h"
#include "policy/policy_file.h"
#include "proto/frame.h"

namespace meshd::controller {
namespace {

using config::at;
using config::known_keys;
using config::string_of;

Parsed<proto::Protocol> protocol_of(const std::string& path, const toml::node& n) {
  auto s = string_of(path, n, "protocol");
  if (!s) return invalid(s.error());
  if (*s == "detect") return proto::PROTOCOL_UNSPECIFIED;
  if (*s == "opaque") return proto::PROTOCOL_OPAQUE;
  if (*s == "http1") return proto::PROTOCOL_HTTP1;
  if (*s == "h2") return proto::PROTOCOL_H2;
  return invalid(at(path, n) + "protocol '" + *s + "' is not detect, opaque, http1 or h2");
}

// A service's own HTTP request timeout: a duration such as "2s" or "500ms",
// up to an hour (longer is no timeout at all; leave it unset for the proxy's).
Parsed<uint32_t> request_timeout_of(const std::string& path, const toml::node& n) {
  auto s = string_of(path, n, "request_timeout");
  if (!s) return invalid(s.error());
  auto ms = parse_duration_ms(*s);
  if (!ms) return invalid(at(path, n) + "request_timeout: " + ms.error());
  if (*ms == 0 || *ms > 3'600'000) return invalid(at(path, n) + "request_timeout must be between 1ms and 1h");
  return static_cast<uint32_t>(*ms);
}

// A service's own retryable statuses: [502, 503]; [] for no retries.
Parsed<bool> retry_statuses_of(const std::string& path, const toml::node& n, proto::Service* def) {
  const toml::array* a = n.as_array();
  if (a == nullptr) return invalid(at(path, n) + "retry_statuses must be an array of 5xx statuses, such as [503]");
  for (const toml::node& s : *a) {
    auto v = s.value<int64_t>();
    if (!v || *v < 500 || *v > 599) return invalid(at(path, s) + "a retry status must be 500-599");
    def->add_retry_statuses(static_cast<uint32_t>(*v));
  }
  def->set_retry_statuses_set(true);
  return true;
}

Parsed<proto::Entry> endpoint_of(const std::string& path, const std::string& service, const toml::node& node) {
  const toml::table* t = node.as_table();
  if (t == nullptr) return invalid(at(path, node) + "an endpoint must be a table");
  if (auto r = known_keys(path, *t, {"address", "weight", "identity", "meshed", "labels"}, "an endpoint"); !r)
    return invalid(r.error());
  proto::Entry e;
  e.set_service(service);
  auto* ep = e.mutable_address_of();
  const toml::node* address = t->get("address");
  if (address == nullptr) return invalid(at(path, node) + "endpoint of '" + service + "' has no address");
  auto a = string_of(path, *address, "address");
  if (!a) return invalid(a.error());
  auto parsed = SocketAddr::parse(*a);
  if (!parsed) return invalid(at(path, *address) + parsed.error());
  // Canonical form, so that "[FD00::1]:80" and "[fd00::1]:80" are one key.
  e.set_endpoint(parsed->str());
  ep->set_address(parsed->str());
  ep->set_weight(100);
  if (const toml::node* w = t->get("weight")) {
    auto v = w->value<int64_t>();
    if (!v || *v < 0 || *v > 10000) return invalid(at(path, *w) + "weight must be a whole number 0-10000");
    ep->set_weight(static_cast<uint32_t>(*v));
  }
  if (const toml::node* id = t->get("identity")) {
    auto v = string_of(path, *id, "identity");
    if (!v) return invalid(v.error());
    if (!v->starts_with("spiffe://")) return invalid(at(path, *id) + "identity '" + *v + "' is not a spiffe:// URI");
    ep->set_identity(*v);
  }
  if (const toml::node* m = t->get("meshed")) {
    auto v = m->value<bool>();
    if (!v) return invalid(at(path, *m) + "meshed must be true or false");
    ep->set_meshed(*v);
  }
  if (const toml::node* l = t->get("labels")) {
    const toml::table* labels = l->as_table();
    if (labels == nullptr) return invalid(at(path, *l) + "labels must be a table of strings");
    for (const auto& [k, v] : *labels) {
      auto s = string_of(path, v, "a label value");
      if (!s) return invalid(s.error());
      (*ep->mutable_labels())[std::string(k.str())] = *s;
    }
  }
  return e;
}

}  // namespace

Parsed<std::vector<proto::Entry>> parse_registry_file(std::string_view text, const std::string& path) {
  toml::parse_result parsed = toml::parse(text, std::string_view(path));
  if (!parsed) {
    const auto& err = parsed.error();
    return invalid(path + ":" + std::to_string(err.source().begin.line) + ": " + std::string(err.description()));
  }
  const toml::table& root = parsed.table();
  for (const auto& [k, v] : root)
    if (k.str() != "service") return invalid(at(path, v) + "unknown key '" + std::string(k.str()) + "' at top level");

  std::vector<proto::Entry> out;
  std::set<EntryKey> seen;
  const toml::node* services = root.get("service");
  if (services == nullptr) return out;  // an empty registry is a registry
  const toml::array* list = services->as_array();
  if (list == nullptr) return invalid(at(path, *services) + "'service' must be an array of tables ([[service]])");
  const std::string owner = "file:" + path;
  for (const toml::node& node : *list) {
    const toml::table* t = node.as_table();
    if (t == nullptr) return invalid(at(path, node) + "each service must be a table ([[service]])");
    if (auto r = known_keys(path, *t,
                            {"name", "ports", "virtual_addresses", "protocol", "request_timeout", "retry_statuses",
                             "endpoint", "policy"},
                            "a service");
        !r)
      return invalid(r.error());
    const toml::node* name_node = t->get("name");
    if (name_node == nullptr) return invalid(at(path, node) + "a service has no name");
    auto name = string_of(path, *name_node, "name");
    if (!name) return invalid(name.error());

    proto::Entry svc;
    svc.set_service(*name);
    svc.set_owner(owner);
    svc.set_version(1);  // validated here, set for real by FileSource
    auto* def = svc.mutable_definition();
    def->set_name(*name);
    if (const toml::node* ports = t->get("ports")) {
      const toml::array* a = ports->as_array();
      if (a == nullptr) return invalid(at(path, *ports) + "ports must be an array of port numbers");
      for (const toml::node& p : *a) {
        auto v = p.value<int64_t>();
        if (!v || *v < 1 || *v > 65535) return invalid(at(path, p) + "a port must be 1-65535");
        def->add_ports(static_cast<uint32_t>(*v));
      }
    }
    if (const toml::node* vips = t->get("virtual_addresses")) {
      const toml::array* a = vips->as_array();
      if (a == nullptr) return invalid(at(path, *vips) + "virtual_addresses must be an array of \"IP:PORT\"");
      for (const toml::node& v : *a) {
        auto s = string_of(path, v, "a virtual address");
        if (!s) return invalid(s.error());
        auto addr = SocketAddr::parse(*s);
        if (!addr) return invalid(at(path, v) + addr.error());
        def->add_virtual_addresses(addr->str());
      }
    }
    if (const toml::node* p = t->get("protocol")) {
      auto proto_hint = protocol_of(path, *p);
      if (!proto_hint) return invalid(proto_hint.error());
      def->set_protocol(*proto_hint);
    }
    if (const toml::node* rt = t->get("request_timeout")) {
      auto ms = request_timeout_of(path, *rt);
      if (!ms) return invalid(ms.error());
      def->set_request_timeout_ms(*ms);
    }
    if (const toml::node* rs = t->get("retry_statuses")) {
      if (auto r = retry_statuses_of(path, *rs, def); !r) return invalid(r.error());
    }
    if (auto r = validate(svc); !r) return invalid(at(path, node) + r.error());
    if (!seen.insert(key_of(svc)).second) return invalid(at(path, node) + "service '" + *name + "' is defined twice");
    out.push_back(svc);

    if (const toml::node* eps = t->get("endpoint")) {
      const toml::array* a = eps->as_array();
      if (a == nullptr) return invalid(at(path, *eps) + "endpoints must be written [[service.endpoint]]");
      for (const toml::node& ep : *a) {
        auto e = endpoint_of(path, *name, ep);
        if (!e) return invalid(e.error());
        e->set_owner(owner);
        e->set_version(1);
        if (auto r = validate(*e); !r) return invalid(at(path, ep) + r.error());
        if (!seen.insert(key_of(*e)).second)
          return invalid(at(path, ep) + "endpoint " + e->endpoint() + " of '" + *name + "' is listed twice");
        out.push_back(std::move(*e));
      }
    }

    if (const toml::node* policies = t->get("policy")) {
      const toml::array* a = policies->as_array();
      if (a == nullptr) return invalid(at(path, *policies) + "policies must be written [[service.policy]]");
      for (const toml::node& pn : *a) {
        const toml::table* pt = pn.as_table();
        if (pt == nullptr) return invalid(at(path, pn) + "policies must be written [[service.policy]]");
        auto p = policy::parse_policy_table(*pt, path);
        if (!p) return invalid(p.error());
        proto::Entry e;
        e.set_service(*name);
        e.set_endpoint(policy::policy_key(static_cast<uint16_t>(p->port())));
        e.set_owner(owner);
        e.set_version(1);
        *e.mutable_policy() = std::move(*p);
        if (auto r = validate(e); !r) return invalid(at(path, pn) + r.error());
        if (!seen.insert(key_of(e)).second)
          return invalid(at(path, pn) + "a second policy for port " + std::to_string(e.policy().port()) + " of '" +
                         *name + "'");
        out.push_back(std::move(e));
      }
    }
  }
  return out;
}

Parsed<std::vector<proto::Entry>> FileSource::reload(uint64_t now_ms) {
  std::ifstream in(path_);
  if (!in) return invalid("cannot read registry file " + path_);
  std::ostringstream text;
  text << in.rdbuf();
  if (text.str().size() > (16u << 20)) return invalid("registry file " + path_ + " is larger than 16 MiB");
  return update(text.str(), now_ms);
}

Parsed<std::vector<proto::Entry>> FileSource::update(std::string_view text, uint64_t now_ms) {
  auto parsed = parse_registry_file(text, path_);
  if (!parsed) return parsed;
  // One version for the whole edit, larger than every earlier one even if
  // the clock stepped back.
  uint64_t version = std::max(version_ + 1, now_ms);
  std::map<EntryKey, std::string> next;
  std::vector<proto::Entry> changes;
  for (auto& e : *parsed) {
    e.set_version(0);  // compare values, not versions
    std::string bytes = proto::serialize_deterministic(e);
    auto key = key_of(e);
    auto it = current_.find(key);
    if (it == current_.end() || it->second != bytes) {
      e.set_version(version);
      e.set_updated_unix_ms(now_ms);
      changes.push_back(e);
    }
    next.emplace(std::move(key), std::move(bytes));
  }
  for (const auto& [key, bytes] : current_) {
    if (next.contains(key)) continue;
    proto::Entry gone;
    gone.set_service(key.first);
    gone.set_endpoint(key.second);
    gone.set_owner(owner());
    gone.set_version(version);
    gone.set_tombstone(true);
    gone.set_updated_unix_ms(now_ms);
    changes.push_back(gone);
  }
  if (!changes.empty()) version_ = version;
  current_ = std::move(next);
  return changes;
}

}  // namespace meshd::controller
