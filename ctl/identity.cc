// meshd-ctl identity init / inspect.
//
// init makes the files the controller's CA needs: a root (the trust anchor
// every proxy is given out of band), an issuer below it whose key the
// controller replicas hold, and the join-token key. Keys are written 0600
// into a 0700 directory, and nothing is overwritten without --force.
#include "ctl/identity.h"

#include <fcntl.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <unistd.h>

#include <wolfssl/options.h>
// wolfSSL's options must come first.
#include <wolfssl/wolfcrypt/hash.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <ctime>
#include <optional>
#include <string>
#include <vector>

#include "base/flags.h"
#include "base/parse.h"
#include "ctl/common.h"
#include "identity/cert.h"
#include "identity/key.h"
#include "identity/pem.h"
#include "identity/spiffe.h"

namespace meshd::ctl {
namespace {

namespace id = meshd::identity;

constexpr std::string_view kIdentityHelp =
    "Usage: meshd-ctl identity init --trust-domain TD --dir DIR [flags]\n"
    "       meshd-ctl identity token (--host NAME --trust-domain TD | --identity ID) [flags]\n"
    "       meshd-ctl identity revoke (TOKEN | TOKEN-ID) [--dir DIR] [--controller HOST:PORT]\n"
    "       meshd-ctl identity inspect FILE\n"
    "\n"
    "init creates the mesh certificate authority in DIR (made 0700 if new):\n"
    "  ca.crt      the root certificate: the trust anchor every proxy is given\n"
    "              (--trust-anchors); with --ca-cert, a copy of that file\n"
    "  issuer.crt  the issuer CA certificate, signed by the root\n"
    "  issuer.key  the issuer's private key (0600), for the controller replicas\n"
    "  token.key   32 random bytes in hex (0600), the key that signs join tokens\n"
    "Without --ca-cert, the root's private key is not written anywhere: make a\n"
    "new root (and re-distribute ca.crt) to replace the issuer.\n"
    "\n"
    "  --trust-domain TD   the SPIFFE trust domain, e.g. mesh.example (required)\n"
    "  --dir DIR           where to write the files (required)\n"
    "  --root-ttl DUR      root validity (default 87600h, ten years)\n"
    "  --issuer-ttl DUR    issuer validity (default 8760h, one year)\n"
    "  --ca-cert FILE      sign the issuer with your own CA instead of a new root:\n"
    "  --ca-key FILE       its certificate (PEM) and EC P-256 key (PEM or DER);\n"
    "                      the issuer's validity is cut to end with that CA's\n"
    "  --force             overwrite existing files\n"
    "\n"
    "token prints a join token for one identity (see meshd-ctl identity token --help).\n"
    "revoke makes every controller replica refuse one (see meshd-ctl identity revoke --help).\n"
    "\n"
    "inspect prints each certificate in FILE (PEM, or one DER certificate):\n"
    "its identity or common name, validity, CA flag, serial and fingerprint.\n"
    "\n"
    "Exit status: 0 success, 1 the command failed, 2 bad usage.\n";

constexpr size_t kMaxInputFile = 1 << 20;
// CAs are backdated so that a host whose clock is somewhat behind still
// accepts a CA made just now.
constexpr uint64_t kCaBackdateS = 3600;

int fail(const Io& io, const std::string& message) {
  fprintf(io.err, "meshd-ctl identity: %s\n", message.c_str());
  return kExitFailure;
}

Parsed<std::string> read_file(const std::string& path) {
  int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return invalid(path + ": " + strerror(errno));
  std::string out;
  char buf[16384];
  for (;;) {
    ssize_t n = read(fd, buf, sizeof buf);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      int e = errno;
      close(fd);
      return invalid(path + ": " + strerror(e));
    }
    if (n == 0) break;
    out.append(buf, static_cast<size_t>(n));
    if (out.size() > kMaxInputFile) {
      close(fd);
      return invalid(path + ": larger than 1 MiB, not a certificate or key file");
    }
  }
  close(fd);
  return out;
}

bool exists(const std::string& path) {
  struct stat st;
  return lstat(path.c_str(), &st) == 0;
}

// Written to a temporary file first, so that a crash never leaves half a
// key; without force, link() refuses to replace a file that appeared since
// the check.
Parsed<void> write_file(const std::string& path, std::string_view data, mode_t mode, bool force) {
  const std::string tmp = path + ".tmp." + std::to_string(getpid());
  int fd = open(tmp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, mode);
  if (fd < 0) return invalid(tmp + ": " + strerror(errno));
  size_t done = 0;
  while (done < data.size()) {
    ssize_t n = write(fd, data.data() + done, data.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) break;
    done += static_cast<size_t>(n);
  }
  int e = done == data.size() && fsync(fd) == 0 ? 0 : errno;
  if (close(fd) != 0 && e == 0) e = errno;
  if (e == 0) {
    if (force ? rename(tmp.c_str(), path.c_str()) : link(tmp.c_str(), path.c_str())) e = errno;
  }
  if (e != 0 || !force) unlink(tmp.c_str());
  if (e != 0) return invalid(path + ": " + strerror(e));
  return {};
}

std::string fingerprint(std::string_view der) {
  byte digest[WC_SHA256_DIGEST_SIZE];
  if (wc_Sha256Hash(reinterpret_cast<const byte*>(der.data()), static_cast<word32>(der.size()), digest) != 0) {
    return "?";
  }
  static constexpr char kHex[] = "0123456789ABCDEF";
  std::string out;
  for (byte b : digest) {
    if (!out.empty()) out += ':';
    out += kHex[b >> 4];
    out += kHex[b & 15];
  }
  return out;
}

Parsed<uint64_t> ttl_flag(std::string_view name, const std::string& text, uint64_t default_s) {
  if (text.empty()) return default_s;
  auto ms = parse_duration_ms(text);
  if (!ms) return invalid(std::string(name) + ": " + ms.error());
  if (*ms < 1000) return invalid(std::string(name) + ": must be at least 1s");
  return *ms / 1000;
}

// Certificates from PEM text, or the text itself as one DER certificate.
Parsed<std::vector<std::string>> certificates_in(const std::string& path, const std::string& text) {
  if (text.find("-----BEGIN") == std::string::npos) return std::vector<std::string>{text};
  auto certs = id::pem_decode_all(text, "CERTIFICATE");
  if (!certs) return invalid(path + ": " + certs.error());
  return certs;
}

std::string ca_name(std::string_view role, std::string_view td) {
  std::string name = "meshd " + std::string(role) + " " + std::string(td);
  return name.size() < 64 ? name : "meshd " + std::string(role);
}

struct InitFlags {
  std::string trust_domain, dir, root_ttl, issuer_ttl, ca_cert, ca_key;
  bool force = false;
};

int run_init(std::span<const std::string_view> args, const Io& io) {
  InitFlags f;
  bool help = false;
  FlagParser flags;
  flags.value("--trust-domain", "", &f.trust_domain)
      .value("--dir", "", &f.dir)
      .value("--root-ttl", "", &f.root_ttl)
      .value("--issuer-ttl", "", &f.issuer_ttl)
      .value("--ca-cert", "", &f.ca_cert)
      .value("--ca-key", "", &f.ca_key)
      .toggle("--force", "", &f.force)
      .toggle("--help", "-h", &help);
  auto usage = [&io](const std::string& m) { return usage_error(io, "identity", m); };
  auto pos = flags.parse(args);
  if (!pos) return usage(pos.error());
  if (help) {
    write_all(io.out, kIdentityHelp);
    return kExitOk;
  }
  if (!pos->empty()) return usage("init takes no arguments, only flags");
  if (f.trust_domain.empty()) return usage("init needs --trust-domain");
  if (auto ok = id::check_trust_domain(f.trust_domain); !ok) return usage("--trust-domain: " + ok.error());
  if (f.dir.empty()) return usage("init needs --dir");
  if (f.ca_cert.empty() != f.ca_key.empty()) return usage("--ca-cert and --ca-key go together");
  const bool own_ca = !f.ca_cert.empty();
  if (own_ca && !f.root_ttl.empty()) return usage("--root-ttl makes no sense with --ca-cert");
  auto root_ttl = ttl_flag("--root-ttl", f.root_ttl, 87600 * 3600ull);
  if (!root_ttl) return usage(root_ttl.error());
  auto issuer_ttl = ttl_flag("--issuer-ttl", f.issuer_ttl, 8760 * 3600ull);
  if (!issuer_ttl) return usage(issuer_ttl.error());
  if (!own_ca && *issuer_ttl > *root_ttl) return usage("--issuer-ttl must not be longer than --root-ttl");

  const std::string ca_path = f.dir + "/ca.crt", issuer_path = f.dir + "/issuer.crt", key_path = f.dir + "/issuer.key",
                    token_path = f.dir + "/token.key";
  if (!f.force) {
    std::string existing;
    for (const std::string* p : {&ca_path, &issuer_path, &key_path, &token_path}) {
      if (exists(*p)) existing += (existing.empty() ? "" : ", ") + *p;
    }
    if (!existing.empty()) return fail(io, "not overwriting " + existing + " (use --force to replace)");
  }

  const uint64_t now = static_cast<uint64_t>(time(nullptr));
  uint64_t not_before = now - kCaBackdateS;
  std::string anchors_pem;  // what goes into ca.crt
  std::string anchor_der;   // the certificate the issuer chains to
  std::optional<id::Issuer> parent;
  uint64_t issuer_not_after = now + *issuer_ttl;
  if (own_ca) {
    auto text = read_file(f.ca_cert);
    if (!text) return fail(io, "--ca-cert " + text.error());
    auto certs = certificates_in(f.ca_cert, *text);
    if (!certs) return fail(io, "--ca-cert " + certs.error());
    auto info = id::parse_cert(certs->front());
    if (!info) return fail(io, "--ca-cert " + f.ca_cert + ": " + info.error());
    if (!info->is_ca) return fail(io, "--ca-cert " + f.ca_cert + ": the certificate is not a CA");
    if (now < info->not_before_unix_s || now > info->not_after_unix_s) {
      return fail(io, "--ca-cert " + f.ca_cert + ": not valid now (valid " + id::format_time(info->not_before_unix_s) +
                          " to " + id::format_time(info->not_after_unix_s) + ")");
    }
    auto key_text = read_file(f.ca_key);
    if (!key_text) return fail(io, "--ca-key " + key_text.error());
    auto key = key_text->find("-----BEGIN") != std::string::npos ? id::PrivateKey::from_pem(*key_text)
                                                                 : id::PrivateKey::from_der(*key_text);
    explicit_bzero(key_text->data(), key_text->size());
    if (!key) return fail(io, "--ca-key " + f.ca_key + ": " + key.error());
    if (key->public_der() != info->public_key_der) {
      return fail(io, "--ca-key " + f.ca_key + " is not the key of --ca-cert " + f.ca_cert);
    }
    for (const std::string& c : *certs) anchors_pem += id::pem_encode("CERTIFICATE", c);
    anchor_der = certs->front();
    parent.emplace(id::Issuer{certs->front(), std::move(*key)});
    not_before = std::max(not_before, info->not_before_unix_s);
    if (issuer_not_after > info->not_after_unix_s) {
      issuer_not_after = info->not_after_unix_s;
      fprintf(io.err, "meshd-ctl identity: the issuer's validity is cut to end with --ca-cert's, %s\n",
              id::format_time(issuer_not_after).c_str());
    }
  } else {
    auto key = id::PrivateKey::generate();
    if (!key) return fail(io, "root key: " + key.error());
    auto root = id::make_ca(*key, ca_name("root", f.trust_domain), not_before, now + *root_ttl, nullptr, -1);
    if (!root) return fail(io, "root certificate: " + root.error());
    anchors_pem = id::pem_encode("CERTIFICATE", *root);
    anchor_der = *root;
    parent.emplace(id::Issuer{*root, std::move(*key)});
  }

  auto issuer_key = id::PrivateKey::generate();
  if (!issuer_key) return fail(io, "issuer key: " + issuer_key.error());
  // pathLen 0: the issuer signs leaves only, so a stolen issuer key cannot
  // mint further CAs.
  auto issuer = id::make_ca(*issuer_key, ca_name("issuer", f.trust_domain), not_before, issuer_not_after, &*parent, 0);
  if (!issuer) return fail(io, "issuer certificate: " + issuer.error());
  if (auto ok = id::verify_chain(*issuer, {}, {anchor_der}, now); !ok) {
    return fail(io, "the new issuer does not verify against the trust anchor: " + ok.error());
  }

  unsigned char token[32];
  if (getrandom(token, sizeof token, 0) != static_cast<ssize_t>(sizeof token)) {
    return fail(io, std::string("token key: getrandom: ") + strerror(errno));
  }
  static constexpr char kHex[] = "0123456789abcdef";
  std::string token_hex;
  for (unsigned char b : token) {
    token_hex += kHex[b >> 4];
    token_hex += kHex[b & 15];
  }
  token_hex += '\n';
  explicit_bzero(token, sizeof token);

  if (mkdir(f.dir.c_str(), 0700) != 0 && errno != EEXIST) return fail(io, f.dir + ": " + strerror(errno));
  struct stat st;
  if (stat(f.dir.c_str(), &st) != 0 || !S_ISDIR(st.st_mode)) return fail(io, f.dir + " is not a directory");
  if (st.st_mode & 077) {
    fprintf(io.err, "meshd-ctl identity: warning: %s is accessible to other users (mode %03o); keys are 0600\n",
            f.dir.c_str(), st.st_mode & 0777);
  }
  std::string key_pem = issuer_key->pem();
  const std::string issuer_pem = id::pem_encode("CERTIFICATE", *issuer);
  struct Out {
    const std::string& path;
    std::string_view data;
    mode_t mode;
    std::string what;
  };
  const Out outs[] = {
      {ca_path, anchors_pem, 0644, own_ca ? "trust anchor (copy of " + f.ca_cert + ")" : "root CA, the trust anchor"},
      {issuer_path, issuer_pem, 0644, "issuer CA"},
      {key_path, key_pem, 0600, "issuer private key"},
      {token_path, token_hex, 0600, "join-token key"},
  };
  for (const Out& o : outs) {
    if (auto ok = write_file(o.path, o.data, o.mode, f.force); !ok) {
      explicit_bzero(key_pem.data(), key_pem.size());
      explicit_bzero(token_hex.data(), token_hex.size());
      return fail(io, ok.error());
    }
    fprintf(io.out, "wrote %-28s %s\n", o.path.c_str(), o.what.c_str());
  }
  explicit_bzero(key_pem.data(), key_pem.size());
  explicit_bzero(token_hex.data(), token_hex.size());
  auto anchor_info = id::parse_cert(anchor_der);
  fprintf(io.out, "trust domain %s; issuer valid until %s; trust anchor valid until %s\n", f.trust_domain.c_str(),
          id::format_time(issuer_not_after).c_str(),
          anchor_info ? id::format_time(anchor_info->not_after_unix_s).c_str() : "?");
  fprintf(io.out, "trust anchor SHA256 fingerprint %s\n", fingerprint(anchor_der).c_str());
  return kExitOk;
}

std::string printable(std::string_view s) {
  std::string out;
  for (char c : s) out += (c >= 0x20 && c < 0x7f) ? c : '?';
  return out;
}

int run_inspect(std::span<const std::string_view> args, const Io& io) {
  bool help = false;
  FlagParser flags;
  flags.toggle("--help", "-h", &help);
  auto pos = flags.parse(args);
  if (!pos) return usage_error(io, "identity", pos.error());
  if (help) {
    write_all(io.out, kIdentityHelp);
    return kExitOk;
  }
  if (pos->size() != 1) return usage_error(io, "identity", "inspect takes one FILE");
  const std::string path((*pos)[0]);
  auto text = read_file(path);
  if (!text) return fail(io, text.error());
  auto certs = certificates_in(path, *text);
  if (!certs) return fail(io, certs.error());
  const uint64_t now = static_cast<uint64_t>(time(nullptr));
  int rc = kExitOk;
  for (size_t i = 0; i < certs->size(); ++i) {
    auto info = id::parse_cert((*certs)[i]);
    if (!info) {
      fprintf(io.err, "meshd-ctl identity: %s: certificate %zu: %s\n", path.c_str(), i + 1, info.error().c_str());
      rc = kExitFailure;
      continue;
    }
    const char* state = now < info->not_before_unix_s  ? "not yet valid"
                        : now > info->not_after_unix_s ? "EXPIRED"
                                                       : "valid";
    fprintf(io.out, "certificate %zu:\n", i + 1);
    if (!info->identity.empty()) fprintf(io.out, "  identity     %s\n", printable(info->identity).c_str());
    if (!info->subject_cn.empty()) fprintf(io.out, "  common name  %s\n", printable(info->subject_cn).c_str());
    fprintf(io.out, "  validity     %s to %s (%s)\n", id::format_time(info->not_before_unix_s).c_str(),
            id::format_time(info->not_after_unix_s).c_str(), state);
    fprintf(io.out, "  CA           %s\n", info->is_ca ? "yes" : "no");
    fprintf(io.out, "  serial       %s\n", info->serial_hex.c_str());
    fprintf(io.out, "  SHA256       %s\n", fingerprint((*certs)[i]).c_str());
  }
  return rc;
}

}  // namespace

int run_identity(std::span<const std::string_view> args, const Io& io) {
  if (args.empty()) return usage_error(io, "identity", "expected init, token, revoke or inspect");
  std::string_view sub = args[0];
  if (sub == "--help" || sub == "-h" || sub == "help") {
    write_all(io.out, kIdentityHelp);
    return kExitOk;
  }
  if (sub == "init") return run_init(args.subspan(1), io);
  if (sub == "inspect") return run_inspect(args.subspan(1), io);
  if (sub == "token") return run_identity_token(args.subspan(1), io);
  if (sub == "revoke") return run_identity_revoke(args.subspan(1), io);
  return usage_error(io, "identity",
                     "unknown subcommand '" + std::string(sub) + "' (expected init, token, revoke or inspect)");
}

}  // namespace meshd::ctl
