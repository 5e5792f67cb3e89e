// The registry file: services and their endpoints, written by an operator
// in TOML, read with toml++ (Debian's libtomlplusplus-dev; chosen because it
// reports the line and column of every value, works without exceptions and
// is header-only, so a bad edit is refused with the exact line at fault).
//
//   [[service]]
//   name = "web.prod"
//   ports = [80]
//   virtual_addresses = ["10.96.0.10:80"]
//   protocol = "http1"            # detect (default), opaque, http1, h2
//
//     [[service.endpoint]]
//     address = "10.0.0.7:8080"
//     weight = 100                # default 100
//     identity = "spiffe://mesh.local/ns/prod/sa/web"
//     meshed = true
//     labels = { zone = "a", version = "v2" }
//
//     [[service.policy]]          # who may connect to the endpoints' port 8080
//     port = 8080                 # 0 or absent: every port
//     default = "deny"
//       [[service.policy.rule]]
//       name = "web-clients"
//       identities = ["spiffe://mesh.local/ns/prod/*"]
//       networks = ["10.0.0.0/8"]
//
// Each [[service.policy]] becomes the entry (service, "policy:PORT"); its
// syntax and meaning are policy/policy_file.h's and policy/authz.h's.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <string_view>
#include <vector>

#include "base/result.h"
#include "controller/registry.h"

namespace meshd::controller {

// Parses a registry file into entries owned by "file:PATH", versions unset.
// Errors read "PATH:LINE: what is wrong".
Parsed<std::vector<proto::Entry>> parse_registry_file(std::string_view text, const std::string& path);

// Turns successive good versions of the file into registry changes: new and
// changed entries get a fresh version, entries gone from the file become
// tombstones, unchanged ones are not re-sent. A bad edit changes nothing and
// the last good state stays.
class FileSource {
 public:
  explicit FileSource(std::string path) : path_(std::move(path)) {}
  const std::string& path() const noexcept { return path_; }
  std::string owner() const { return "file:" + path_; }

  // Reads the file now; now_ms seeds versions (they only ever grow).
  Parsed<std::vector<proto::Entry>> reload(uint64_t now_ms);
  // The same from text already read (tests, and the watcher's own read).
  Parsed<std::vector<proto::Entry>> update(std::string_view text, uint64_t now_ms);

 private:
  std::string path_;
  uint64_t version_ = 0;
  std::map<EntryKey, std::string> current_;  // key -> value bytes, as last loaded
};

}  // namespace meshd::controller
