#include <wolfssl/options.h>
// wolfSSL's options must come first.
#include <wolfssl/error-ssl.h>
#include <wolfssl/ssl.h>
#include <wolfssl/wolfcrypt/error-crypt.h>

#include <netdb.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <climits>
#include <cstring>
#include <optional>

#include "base/log.h"
#include "base/parse.h"
#include "controller/https_client.h"
#include "identity/files.h"
#include "io/stream.h"

namespace meshd::controller {
namespace {

using Clock = std::chrono::steady_clock;

constexpr size_t kMaxAddresses = 4;
constexpr size_t kMaxCaFileBytes = 1 << 20;
constexpr int kTimedOut = INT_MIN;  // not a wolfSSL error code

struct SslFree {
  void operator()(WOLFSSL* s) const { wolfSSL_free(s); }
};

std::string wolf_reason(int err) {
  return std::string(wolfSSL_ERR_reason_error_string(static_cast<unsigned long>(err))) + " (" + std::to_string(err) +
         ")";
}

// A header value must not end the line it is on (a token read from a file
// with a stray CR or LF would otherwise inject headers).
bool header_safe(std::string_view s) {
  return std::ranges::none_of(s,
                              [](char c) { return (static_cast<unsigned char>(c) < 0x20 && c != '\t') || c == 0x7f; });
}

}  // namespace

std::string HttpsUrl::authority() const {
  return (ip && ip->is_v6() ? "[" + host + "]" : host) + ":" + std::to_string(port);
}

Parsed<HttpsUrl> parse_https_url(std::string_view url) {
  const std::string quoted = "'" + std::string(url) + "'";
  if (!url.starts_with("https://")) return invalid(quoted + " is not an https:// URL");
  std::string_view rest = url.substr(8);
  if (rest.ends_with("/")) rest.remove_suffix(1);
  if (rest.find_first_of("/?#@") != std::string_view::npos)
    return invalid(quoted + ": only https://HOST[:PORT] is supported (no path, query or user)");
  // The port is optional: add the default unless one is there.
  std::string hp(rest);
  bool bracketed = rest.starts_with("[");
  bool has_port = bracketed ? rest.find("]:") != std::string_view::npos
                            : rest.find(':') != std::string_view::npos && rest.find(':') == rest.rfind(':');
  if (!bracketed && rest.find(':') != rest.rfind(':')) return invalid(quoted + ": write an IPv6 address in brackets");
  if (!has_port) hp += ":443";
  auto parsed = HostPort::parse(hp);
  if (!parsed) return invalid(quoted + ": " + parsed.error());
  HttpsUrl out;
  out.host = parsed->host;
  out.port = parsed->port;
  out.ip = parsed->literal();
  return out;
}

Parsed<std::unique_ptr<HttpsClient>> HttpsClient::create(HttpsOptions options) {
  auto url = parse_https_url(options.url);
  if (!url) return invalid(url.error());
  if (options.timeout_ms == 0) return invalid("the timeout must be above 0");
  std::vector<SocketAddr> addrs;
  if (url->ip) {
    addrs.push_back(*url->ip);
  } else {
    // Once, here: a lookup cannot be bounded by our deadline later.
    addrinfo hints{};
    hints.ai_socktype = SOCK_STREAM;
    addrinfo* res = nullptr;
    if (int rc = getaddrinfo(url->host.c_str(), nullptr, &hints, &res); rc != 0 || res == nullptr)
      return invalid("cannot resolve '" + url->host + "': " + gai_strerror(rc));
    for (addrinfo* a = res; a != nullptr && addrs.size() < kMaxAddresses; a = a->ai_next) {
      SocketAddr s = SocketAddr::from_sockaddr(a->ai_addr, a->ai_addrlen);
      if (!s.valid()) continue;
      s.set_port(url->port);
      if (std::ranges::none_of(addrs, [&](const SocketAddr& x) { return x.str() == s.str(); })) addrs.push_back(s);
    }
    freeaddrinfo(res);
    if (addrs.empty()) return invalid("'" + url->host + "' has no IPv4 or IPv6 address");
  }
  if (url->ip) addrs.front().set_port(url->port);
  std::unique_ptr<HttpsClient> c(new HttpsClient(std::move(options), std::move(*url), std::move(addrs)));
  if (auto ok = c->refresh_context(); !ok) return invalid(ok.error());
  return c;
}

HttpsClient::~HttpsClient() {
  if (ctx_ != nullptr) wolfSSL_CTX_free(ctx_);
}

Parsed<void> HttpsClient::refresh_context() {
  auto stamp = FileStamp::of(options_.ca_file);
  // Unchanged (or still missing, which was said when it went): nothing to do.
  if (ctx_ != nullptr && stamp == ca_stamp_) return {};
  auto fresh = [&]() -> Parsed<WOLFSSL_CTX*> {
    auto pem = identity::read_small_file(options_.ca_file, kMaxCaFileBytes);
    if (!pem) return invalid(pem.error());
    WOLFSSL_CTX* ctx = wolfSSL_CTX_new(wolfSSLv23_client_method());
    if (ctx == nullptr) return invalid("out of memory");
    std::unique_ptr<WOLFSSL_CTX, void (*)(WOLFSSL_CTX*)> owned(ctx, wolfSSL_CTX_free);
    // API servers speak TLS 1.2 and 1.3; nothing older is worth allowing.
    if (int rc = wolfSSL_CTX_SetMinVersion(ctx, WOLFSSL_TLSV1_2); rc != WOLFSSL_SUCCESS)
      return invalid("setting TLS 1.2 as the minimum: " + wolf_reason(rc));
    wolfSSL_CTX_set_verify(ctx, WOLFSSL_VERIFY_PEER, nullptr);
    int rc = wolfSSL_CTX_load_verify_buffer(ctx, reinterpret_cast<const unsigned char*>(pem->data()),
                                            static_cast<long>(pem->size()), WOLFSSL_FILETYPE_PEM);
    if (rc != WOLFSSL_SUCCESS) return invalid(options_.ca_file + ": no usable CA certificate: " + wolf_reason(rc));
    return owned.release();
  }();
  if (!fresh) {
    if (ctx_ == nullptr) return invalid(fresh.error());
    // Keep verifying with the CAs we had; say so once per change of the file.
    LOG_WARN("https", "%s; keeping the CA certificates read before", fresh.error().c_str());
    ca_stamp_ = stamp;
    return {};
  }
  if (ctx_ != nullptr) {
    wolfSSL_CTX_free(ctx_);
    LOG_INFO("https", "re-read the CA certificates in %s", options_.ca_file.c_str());
  }
  ctx_ = *fresh;
  ca_stamp_ = stamp;
  return {};
}

Parsed<HttpResponse> HttpsClient::post(std::string_view path, const HttpHeaders& headers, std::string_view body) {
  const auto deadline = Clock::now() + std::chrono::milliseconds(options_.timeout_ms);
  const std::string within = " within " + io::ms_text(options_.timeout_ms);
  if (!path.starts_with("/") || !header_safe(path) || path.find(' ') != std::string_view::npos)
    return invalid("bad request path");
  std::string request = "POST " + std::string(path) + " HTTP/1.1\r\nHost: " + url_.authority() + "\r\n";
  for (const auto& [k, v] : headers) {
    if (k.empty() || !header_safe(k) || !header_safe(v) || k.find(':') != std::string::npos)
      return invalid("the request's " + k + " header has a control character or is malformed");
    request += k + ": " + v + "\r\n";
  }
  request += "Content-Length: " + std::to_string(body.size()) + "\r\nConnection: close\r\n\r\n";
  request += body;

  if (auto ok = refresh_context(); !ok) return invalid(ok.error());

  // Each address gets what is left of the one deadline, and so do the
  // handshake, the request and the answer on the one that answers.
  std::optional<io::Stream> stream;
  std::string connect_errors;
  for (const SocketAddr& a : addrs_) {
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now()).count();
    auto s = io::Stream::connect(a, static_cast<uint64_t>(std::max<long long>(left, 1)));
    if (s) {
      stream.emplace(std::move(*s));
      break;
    }
    connect_errors += (connect_errors.empty() ? "" : "; ") + ("cannot connect to " + a.str() + ": " + s.error());
  }
  if (!stream) return invalid(connect_errors);

  std::unique_ptr<WOLFSSL, SslFree> ssl(wolfSSL_new(ctx_));
  if (!ssl) return invalid("out of memory");
  if (wolfSSL_set_fd(ssl.get(), stream->fd()) != WOLFSSL_SUCCESS) return invalid("wolfSSL_set_fd failed");
  if (url_.ip) {
    // wolfSSL matches an address against the certificate's iPAddress SANs.
    if (wolfSSL_X509_VERIFY_PARAM_set1_ip_asc(wolfSSL_get0_param(ssl.get()), url_.host.c_str()) != WOLFSSL_SUCCESS)
      return invalid("cannot ask wolfSSL to check the address " + url_.host);
  } else {
    if (wolfSSL_check_domain_name(ssl.get(), url_.host.c_str()) != WOLFSSL_SUCCESS)
      return invalid("cannot ask wolfSSL to check the name " + url_.host);
    if (wolfSSL_UseSNI(ssl.get(), WOLFSSL_SNI_HOST_NAME, url_.host.data(),
                       static_cast<unsigned short>(url_.host.size())) != WOLFSSL_SUCCESS)
      return invalid("cannot set the TLS server name " + url_.host);
  }

  // Runs op until it succeeds, waiting on the socket as wolfSSL asks: its
  // result, and the wolfSSL error code when it fails (kTimedOut: the deadline).
  auto drive = [&](auto op) -> std::pair<int, int> {
    for (;;) {
      int rc = op();
      if (rc > 0) return {rc, 0};
      int err = wolfSSL_get_error(ssl.get(), rc);
      short events = err == WOLFSSL_ERROR_WANT_READ ? POLLIN : err == WOLFSSL_ERROR_WANT_WRITE ? POLLOUT : 0;
      if (events == 0) return {rc, err};
      if (!stream->wait(events)) return {rc, kTimedOut};
    }
  };

  auto [hs, hs_err] = drive([&] { return wolfSSL_connect(ssl.get()); });
  if (hs != WOLFSSL_SUCCESS) {
    switch (hs_err) {
      case kTimedOut: return invalid("no TLS handshake" + within);
      case ASN_NO_SIGNER_E:
        return invalid("TLS: the server's certificate is not signed by a CA in " + options_.ca_file);
      case ASN_SIG_CONFIRM_E: return invalid("TLS: the server's certificate has a signature that does not verify");
      case ASN_AFTER_DATE_E: return invalid("TLS: the server's certificate has expired");
      case ASN_BEFORE_DATE_E: return invalid("TLS: the server's certificate is not valid yet");
      case DOMAIN_NAME_MISMATCH: return invalid("TLS: the server's certificate is not for the name " + url_.host);
      case IPADDR_MISMATCH: return invalid("TLS: the server's certificate is not for the address " + url_.host);
      case SOCKET_PEER_CLOSED_E:
      case SOCKET_ERROR_E: return invalid("the connection closed during the TLS handshake");
      default: return invalid("TLS handshake failed: " + wolf_reason(hs_err));
    }
  }

  for (size_t off = 0; off < request.size();) {
    const int chunk = static_cast<int>(std::min<size_t>(request.size() - off, INT_MAX));
    auto [n, err] = drive([&] { return wolfSSL_write(ssl.get(), request.data() + off, chunk); });
    if (n <= 0)
      return invalid(err == kTimedOut ? "could not send the request" + within
                                      : "sending the request: " + wolf_reason(err));
    off += static_cast<size_t>(n);
  }

  HttpResponseReader reader(options_.limits);
  std::string buf(16 * 1024, '\0');
  for (;;) {
    auto [n, err] = drive([&] { return wolfSSL_read(ssl.get(), buf.data(), static_cast<int>(buf.size())); });
    if (n > 0) {
      auto done = reader.feed(std::string_view(buf.data(), static_cast<size_t>(n)));
      if (!done) return invalid(done.error());
      if (*done) break;
      continue;
    }
    if (err == WOLFSSL_ERROR_ZERO_RETURN || err == SOCKET_PEER_CLOSED_E) {
      if (auto ok = reader.end_of_stream(); !ok) return invalid(ok.error());
      break;
    }
    if (err == kTimedOut) return invalid("no complete answer" + within);
    return invalid("reading the answer: " + wolf_reason(err));
  }
  (void)wolfSSL_shutdown(ssl.get());  // close_notify, best effort: the socket never blocks
  return reader.take();
}

}  // namespace meshd::controller
