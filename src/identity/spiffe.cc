#include "identity/spiffe.h"

namespace meshd::identity {
namespace {

constexpr std::string_view kScheme = "spiffe://";

bool td_char(char c) { return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '.' || c == '-' || c == '_'; }

bool path_char(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' || c == '-' || c == '_';
}

// For messages: ids come from peers, so never echo control bytes or more
// than a screenful.
std::string printable(std::string_view s) {
  std::string out;
  for (char c : s.substr(0, 120)) out += (c >= 0x20 && c < 0x7f) ? c : '?';
  if (s.size() > 120) out += "...";
  return out;
}

}  // namespace

Parsed<void> check_trust_domain(std::string_view td) {
  if (td.empty()) return invalid("trust domain is empty");
  if (td.size() > 255) return invalid("trust domain is longer than 255 bytes");
  for (char c : td) {
    if (!td_char(c)) {
      return invalid("trust domain '" + printable(td) +
                     "' may only contain lowercase letters, digits, '.', '-' and '_'");
    }
  }
  return {};
}

Parsed<void> check_identity(std::string_view id) {
  if (id.size() > kMaxIdentityBytes) {
    return invalid("identity is " + std::to_string(id.size()) + " bytes, more than the " +
                   std::to_string(kMaxIdentityBytes) + " allowed");
  }
  const std::string shown = printable(id);
  if (!id.starts_with(kScheme)) return invalid("identity '" + shown + "' does not start with spiffe://");
  std::string_view rest = id.substr(kScheme.size());
  size_t slash = rest.find('/');
  std::string_view td = rest.substr(0, slash);
  // Name the usual URL parts explicitly: "may only contain" would hide them.
  if (td.find('@') != std::string_view::npos) return invalid("identity '" + shown + "' has userinfo");
  if (td.find(':') != std::string_view::npos) return invalid("identity '" + shown + "' has a port");
  if (auto ok = check_trust_domain(td); !ok) return invalid("identity '" + shown + "': " + ok.error());
  if (slash == std::string_view::npos) return invalid("identity '" + shown + "' has no path");
  std::string_view path = rest.substr(slash);
  if (path.find('?') != std::string_view::npos) return invalid("identity '" + shown + "' has a query");
  if (path.find('#') != std::string_view::npos) return invalid("identity '" + shown + "' has a fragment");
  while (!path.empty()) {
    path.remove_prefix(1);  // the '/'
    size_t end = path.find('/');
    std::string_view seg = path.substr(0, end);
    if (seg.empty()) return invalid("identity '" + shown + "' has an empty path segment");
    if (seg == "." || seg == "..") return invalid("identity '" + shown + "' has a '.' or '..' path segment");
    for (char c : seg) {
      if (!path_char(c)) {
        return invalid("identity '" + shown + "': path segments may only contain letters, digits, '.', '-' and '_'");
      }
    }
    path = end == std::string_view::npos ? std::string_view() : path.substr(end);
  }
  return {};
}

std::string host_identity(std::string_view trust_domain, std::string_view host) {
  return std::string(kScheme) + std::string(trust_domain) + "/host/" + std::string(host);
}

std::string pod_identity(std::string_view td, std::string_view ns, std::string_view sa) {
  return std::string(kScheme) + std::string(td) + "/ns/" + std::string(ns) + "/sa/" + std::string(sa);
}

std::string controller_identity(std::string_view td) { return std::string(kScheme) + std::string(td) + "/controller"; }

std::string_view trust_domain_of(std::string_view id) {
  if (!id.starts_with(kScheme)) return {};
  std::string_view rest = id.substr(kScheme.size());
  return rest.substr(0, rest.find('/'));
}

}  // namespace meshd::identity
