// The admin endpoint: a small HTTP/1.1 server on its own thread, away from
// the workers, so that a scrape never delays a proxied byte.
//
// It serves GET and HEAD (and POST to a server started with accepts_post,
// for actions such as meshd's /shutdown), answers each request with
// Connection: close, bounds
// what a client may send (request head size, concurrent clients, time) and
// answers anything else with a proper 4xx.
#pragma once

#include <atomic>
#include <cstddef>
#include <functional>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "base/addr.h"
#include "base/result.h"

namespace meshd::admin {

struct Response {
  int status = 200;
  std::string content_type = "text/plain; charset=utf-8";
  std::string body;
};

// What a handler is asked: the target's path and its query, apart. The
// query stays raw (percent-encoded): an endpoint that takes parameters
// reads it with parse_query() and answers 400 to what it does not know;
// the others ignore it.
struct Request {
  std::string_view path;       // up to '?'
  std::string_view query;      // after '?'; empty when none
  bool post = false;           // POST (only on a server started with accepts_post); else GET or HEAD
  bool from_loopback = false;  // the client's address is 127.0.0.0/8 or ::1 (it is on this host or pod)
};

// Routes a request to a response.
using Handler = std::function<Response(const Request& request)>;

// Parses the head of an HTTP request: the path and query of a GET, HEAD or
// POST, or the error status to answer with (400, 405, 414, 505). Pure, for
// tests.
struct RequestLine {
  int error = 0;
  bool head = false;
  bool post = false;
  std::string path;
  std::string query;  // raw, without the '?'
};
RequestLine parse_request_head(std::string_view head) noexcept;

struct QueryParam {
  std::string name;
  std::string value;  // percent-decoded; '+' is a space
};

// At most this many parameters, and this many bytes in a decoded name or
// value (the request target is at most 1024 bytes anyway).
inline constexpr size_t kMaxQueryParams = 16;
inline constexpr size_t kMaxQueryValue = 512;

// Splits "a=1&b=x%2Fy" into its parameters, in order, strictly: every
// parameter is NAME=VALUE with a non-empty name, percent escapes are two
// hex digits, and no decoded byte is a control character. The error is one
// line naming the parameter ("parameter 'b': bad percent-encoding").
Parsed<std::vector<QueryParam>> parse_query(std::string_view query);

class Server {
 public:
  ~Server();
  // Binds now (so a taken port fails start-up), serves once start() runs.
  Result<void> bind(const SocketAddr& addr) noexcept;
  // accepts_post: POST requests reach the handler (their body is not read);
  // otherwise they are answered 405.
  void start(Handler handler, bool accepts_post = false);
  void stop();

  static constexpr size_t kMaxRequestHead = 8192;
  static constexpr int kMaxClients = 64;
  static constexpr int kClientTimeoutMs = 5000;

 private:
  void serve();
  int listen_fd_ = -1;
  int stop_fd_ = -1;
  Handler handler_;
  bool accepts_post_ = false;
  std::thread thread_;
};

}  // namespace meshd::admin
