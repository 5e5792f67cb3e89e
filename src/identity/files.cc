#include "identity/files.h"

#include <sys/stat.h>

#include <cerrno>
#include <cstring>
#include <fstream>
#include <sstream>

#include "identity/cert.h"
#include "identity/pem.h"

namespace meshd::identity {

Parsed<std::string> read_small_file(const std::string& path, size_t max_bytes) {
  struct stat st {};
  if (stat(path.c_str(), &st) != 0) return invalid("cannot read " + path + ": " + std::strerror(errno));
  if (!S_ISREG(st.st_mode)) return invalid(path + " is not a regular file");
  if (static_cast<size_t>(st.st_size) > max_bytes)
    return invalid(path + " is larger than " + std::to_string(max_bytes) + " bytes");
  std::ifstream in(path, std::ios::binary);
  if (!in) return invalid("cannot read " + path + ": " + std::strerror(errno));
  std::ostringstream s;
  s << in.rdbuf();
  return s.str();
}

Parsed<std::vector<std::string>> load_certificates(const std::string& path) {
  auto text = read_small_file(path);
  if (!text) return std::unexpected(text.error());
  auto certs = pem_decode_all(*text, "CERTIFICATE");
  if (!certs) return invalid(path + ": " + certs.error());
  for (size_t i = 0; i < certs->size(); ++i)
    if (auto info = parse_cert((*certs)[i]); !info)
      return invalid(path + ": certificate " + std::to_string(i + 1) + ": " + info.error());
  return certs;
}

Parsed<std::vector<std::string>> load_anchors(const std::string& path) {
  auto certs = load_certificates(path);
  if (!certs) return certs;
  for (const auto& der : *certs)
    if (auto info = parse_cert(der); !info || !info->is_ca)
      return invalid(path + " holds a certificate that is not a CA");
  return certs;
}

}  // namespace meshd::identity
