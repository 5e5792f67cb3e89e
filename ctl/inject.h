// meshd-ctl inject / uninject: Kubernetes manifests in, the same manifests
// out with (or without) the meshd init container and native sidecar.
//
// The manifests are edited as text through ctl/yaml_edit.h: documents that
// are not changed come out byte for byte, and in changed ones only the
// added (or removed) lines differ.
#pragma once

#include <string>
#include <string_view>
#include <vector>

namespace meshd::ctl {

inline constexpr std::string_view kProxyContainer = "meshd-proxy";
inline constexpr std::string_view kInitContainer = "meshd-init";
inline constexpr std::string_view kInjectedAnnotation = "meshd.io/injected";

// Flag values: the defaults for every object; annotations on a pod template
// override them for that object.
struct InjectOptions {
  std::string version;     // MESHD_VERSION: the annotation's value and image tags
  std::string image;       // empty: meshd/meshd:VERSION
  std::string init_image;  // empty: meshd/meshd-init:VERSION
  std::string controller;
  std::string trust_domain;
  std::string trust_anchors_configmap = "meshd-trust-anchors";
  std::string skip_inbound_ports;
  std::string skip_outbound_ports;
  std::string skip_subnets;
  std::string opaque_ports;
  std::string proxy_cpu_request = "100m";
  std::string proxy_memory_request = "20Mi";
  std::string proxy_memory_limit = "250Mi";
};

struct InjectResult {
  std::string output;               // the whole stream; meaningful only when errors is empty
  std::vector<std::string> notes;   // one per object: "deployment/web injected"
  std::vector<std::string> errors;  // "document 2 (Deployment web), line 14: ..."
};

InjectResult inject_manifests(std::string_view input, const InjectOptions& options);
InjectResult uninject_manifests(std::string_view input);

// Checks the flag values as the annotations are checked; the error names
// the flag.
std::string check_inject_options(const InjectOptions& options);

}  // namespace meshd::ctl
