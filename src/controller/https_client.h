// HttpsClient: one HTTPS POST at a time to one server, blocking, for the
// controller's calls to the Kubernetes API (TokenReview).
//
// Each request opens a new connection (Connection: close): calls are rare
// (a pod's first certificate) and a fresh connection has no state to go
// stale. Connect, TLS handshake, request and response share one deadline,
// so a server that accepts and then says nothing costs at most timeout_ms.
// The socket is non-blocking under wolfSSL's own socket I/O and every wait
// is a poll() against that deadline.
//
// TLS 1.2 or 1.3 (what API servers speak), the server's certificate must
// chain to the CA file and name the host of the URL: its IP address
// (iPAddress SAN) when the URL has one, else the DNS name (SNI is sent for
// names). The CA file is re-read when it changes; a name is resolved once,
// at create().
//
// Not thread-safe: one caller at a time.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "base/addr.h"
#include "base/result.h"
#include "controller/file_stamp.h"
#include "controller/http_response.h"

struct WOLFSSL_CTX;

namespace meshd::controller {

struct HttpsOptions {
  std::string url;      // https://HOST[:PORT], port 443 by default; no path
  std::string ca_file;  // PEM: the CAs the server's certificate must chain to
  uint64_t timeout_ms = 3000;
  HttpLimits limits;
};

// The parts of an https:// URL that name a server.
struct HttpsUrl {
  std::string host;  // as written, without brackets
  uint16_t port = 443;
  std::optional<SocketAddr> ip;   // when host is a literal address
  std::string authority() const;  // HOST:PORT, IPv6 in brackets
};
Parsed<HttpsUrl> parse_https_url(std::string_view url);

using HttpHeaders = std::vector<std::pair<std::string, std::string>>;

class HttpsClient {
 public:
  static Parsed<std::unique_ptr<HttpsClient>> create(HttpsOptions options);
  ~HttpsClient();
  HttpsClient(const HttpsClient&) = delete;
  HttpsClient& operator=(const HttpsClient&) = delete;

  // POST path with body; headers are extra "Name: value" pairs (Host,
  // Content-Length and Connection are set here). Any complete response is
  // a success, whatever its status; the error says why there was none.
  Parsed<HttpResponse> post(std::string_view path, const HttpHeaders& headers, std::string_view body);

  // HOST:PORT, for messages.
  std::string name() const { return url_.authority(); }

 private:
  HttpsClient(HttpsOptions options, HttpsUrl url, std::vector<SocketAddr> addrs)
      : options_(std::move(options)), url_(std::move(url)), addrs_(std::move(addrs)) {}
  // Builds the TLS context from the CA file when it is new or changed; a
  // bad new file keeps the last good context (and says so once).
  Parsed<void> refresh_context();

  HttpsOptions options_;
  HttpsUrl url_;
  std::vector<SocketAddr> addrs_;
  WOLFSSL_CTX* ctx_ = nullptr;
  std::optional<FileStamp> ca_stamp_;
};

}  // namespace meshd::controller
