// The admin endpoint: a small HTTP/1.1 server on its own thread, away from
// the workers, so that a scrape never delays a proxied byte.
//
// It serves GET only, answers each request with Connection: close, bounds
// what a client may send (request head size, concurrent clients, time) and
// answers anything else with a proper 4xx.
#pragma once

#include <atomic>
#include <functional>
#include <string>
#include <string_view>
#include <thread>

#include "base/addr.h"
#include "base/result.h"

namespace meshd::admin {

struct Response {
  int status = 200;
  std::string content_type = "text/plain; charset=utf-8";
  std::string body;
};

// Routes a request path (query string removed) to a response.
using Handler = std::function<Response(std::string_view path)>;

// Parses the head of an HTTP request: the path of a GET or HEAD, or the
// error status to answer with (400, 405, 414, 505). Pure, for tests.
struct RequestLine {
  int error = 0;
  bool head = false;
  std::string path;
};
RequestLine parse_request_head(std::string_view head) noexcept;

class Server {
 public:
  ~Server();
  // Binds now (so a taken port fails start-up), serves once start() runs.
  Result<void> bind(const SocketAddr& addr) noexcept;
  void start(Handler handler);
  void stop();

  static constexpr size_t kMaxRequestHead = 8192;
  static constexpr int kMaxClients = 64;
  static constexpr int kClientTimeoutMs = 5000;

 private:
  void serve();
  int listen_fd_ = -1;
  int stop_fd_ = -1;
  Handler handler_;
  std::thread thread_;
};

}  // namespace meshd::admin
