// CaDir: an identity directory as `meshd-ctl identity init` writes it (a
// root, an issuer under it, the join-token key), in a temporary directory
// removed with it; for the tests of whatever loads one.
#pragma once

#include <stdlib.h>
#include <unistd.h>

#include <cstdint>
#include <ctime>
#include <fstream>
#include <string>
#include <vector>

#include "identity/cert.h"
#include "identity/key.h"
#include "identity/pem.h"
#include "tests/unit/must.h"

namespace meshd::test {

inline const std::string kTokenKey(64, 'a');  // 32 bytes in hex

struct CaDir {
  std::string dir;
  uint64_t now = static_cast<uint64_t>(time(nullptr));
  CaDir() {
    char tmpl[] = "/tmp/meshd-ca-XXXXXX";
    dir = mkdtemp(tmpl);
    auto root_key = must(identity::PrivateKey::generate());
    std::string root = must(identity::make_ca(root_key, "root", now - 60, now + 86400 * 365, nullptr, -1));
    identity::Issuer r{root, std::move(root_key)};
    auto issuer_key = must(identity::PrivateKey::generate());
    std::string issuer = must(identity::make_ca(issuer_key, "issuer", now - 60, now + 86400 * 30, &r, 0));
    write("ca.crt", identity::pem_encode("CERTIFICATE", root));
    write("issuer.crt", identity::pem_encode("CERTIFICATE", issuer));
    write("issuer.key", issuer_key.pem());
    write("token.key", kTokenKey + "\n");
    anchors = {root};
  }
  ~CaDir() {
    for (const char* f : {"ca.crt", "issuer.crt", "issuer.key", "token.key"}) unlink((dir + "/" + f).c_str());
    rmdir(dir.c_str());
  }
  void write(const std::string& name, const std::string& text) const { std::ofstream(dir + "/" + name) << text; }
  std::vector<std::string> anchors;
};

}  // namespace meshd::test
