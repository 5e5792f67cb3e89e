#include "admin/server.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <cstring>
#include <vector>

#include "base/clock.h"
#include "base/log.h"
#include "io/socket.h"

namespace meshd::admin {
namespace {

const char* reason(int status) {
  switch (status) {
    case 200: return "OK";
    case 202: return "Accepted";
    case 400: return "Bad Request";
    case 403: return "Forbidden";
    case 404: return "Not Found";
    case 405: return "Method Not Allowed";
    case 408: return "Request Timeout";
    case 414: return "URI Too Long";
    case 431: return "Request Header Fields Too Large";
    case 503: return "Service Unavailable";
    case 505: return "HTTP Version Not Supported";
    default: return "Error";
  }
}

std::string render(const Response& r, bool head_only) {
  std::string out = "HTTP/1.1 " + std::to_string(r.status) + " " + reason(r.status) + "\r\n";
  out += "Content-Type: " + r.content_type + "\r\n";
  out += "Content-Length: " + std::to_string(r.body.size()) + "\r\n";
  out += "Connection: close\r\n\r\n";
  if (!head_only) out += r.body;
  return out;
}

bool is_loopback(const sockaddr_storage& peer) {
  if (peer.ss_family == AF_INET) {
    const auto* in = reinterpret_cast<const sockaddr_in*>(&peer);
    return (ntohl(in->sin_addr.s_addr) >> 24) == 127;
  }
  if (peer.ss_family == AF_INET6) {
    const auto* in6 = reinterpret_cast<const sockaddr_in6*>(&peer);
    if (IN6_IS_ADDR_LOOPBACK(&in6->sin6_addr)) return true;
    // An IPv4 client of a dual-stack listener: ::ffff:127.x.y.z.
    return IN6_IS_ADDR_V4MAPPED(&in6->sin6_addr) && in6->sin6_addr.s6_addr[12] == 127;
  }
  return false;
}

struct Client {
  int fd = -1;
  uint64_t deadline = 0;
  bool loopback = false;
  std::string in;
  std::string out;
  size_t sent = 0;
};

}  // namespace

RequestLine parse_request_head(std::string_view head) noexcept {
  RequestLine r;
  std::string_view line = head.substr(0, head.find('\n'));
  if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
  auto sp1 = line.find(' ');
  auto sp2 = sp1 == std::string_view::npos ? sp1 : line.find(' ', sp1 + 1);
  if (sp1 == std::string_view::npos || sp2 == std::string_view::npos || line.find(' ', sp2 + 1) != line.npos) {
    r.error = 400;
    return r;
  }
  std::string_view method = line.substr(0, sp1);
  std::string_view target = line.substr(sp1 + 1, sp2 - sp1 - 1);
  std::string_view version = line.substr(sp2 + 1);
  if (version != "HTTP/1.1" && version != "HTTP/1.0") {
    r.error = version.starts_with("HTTP/") ? 505 : 400;
    return r;
  }
  if (target.empty() || target.front() != '/') {
    r.error = 400;
    return r;
  }
  if (target.size() > 1024) {
    r.error = 414;
    return r;
  }
  for (char c : target)
    if (static_cast<unsigned char>(c) <= 0x20 || c == 0x7f) {
      r.error = 400;
      return r;
    }
  if (method == "HEAD")
    r.head = true;
  else if (method == "POST")
    r.post = true;
  else if (method != "GET") {
    r.error = 405;
    return r;
  }
  auto q = target.find('?');
  r.path = std::string(target.substr(0, q));
  if (q != std::string_view::npos) r.query = std::string(target.substr(q + 1));
  return r;
}

namespace {

int hex_digit(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

// Percent-decodes one name or value; what went wrong, else empty.
std::string decode_component(std::string_view in, std::string* out) {
  out->clear();
  for (size_t i = 0; i < in.size(); ++i) {
    char c = in[i];
    if (c == '+') {
      c = ' ';
    } else if (c == '%') {
      int hi = i + 2 < in.size() ? hex_digit(in[i + 1]) : -1;
      int lo = i + 2 < in.size() ? hex_digit(in[i + 2]) : -1;
      if (hi < 0 || lo < 0) return "bad percent-encoding";
      c = static_cast<char>(hi * 16 + lo);
      i += 2;
    }
    if (static_cast<unsigned char>(c) < 0x20 || c == 0x7f) return "control character";
    if (out->size() == kMaxQueryValue) return "longer than " + std::to_string(kMaxQueryValue) + " bytes";
    out->push_back(c);
  }
  return {};
}

// A name as it can be shown in an error: printable, short.
std::string shown(std::string_view raw) {
  std::string out;
  for (char c : raw.substr(0, 40)) out += static_cast<unsigned char>(c) > 0x20 && c != 0x7f ? c : '?';
  if (raw.size() > 40) out += "...";
  return out;
}

}  // namespace

Parsed<std::vector<QueryParam>> parse_query(std::string_view query) {
  std::vector<QueryParam> out;
  bool more = !query.empty();
  while (more) {
    auto amp = query.find('&');
    std::string_view part = query.substr(0, amp);
    more = amp != std::string_view::npos;
    query = more ? query.substr(amp + 1) : std::string_view();
    if (part.empty()) return invalid("empty parameter (\"&&\" or a trailing '&')");
    auto eq = part.find('=');
    std::string_view raw_name = part.substr(0, eq);
    if (raw_name.empty()) return invalid("parameter without a name ('" + shown(part) + "')");
    QueryParam p;
    if (auto why = decode_component(raw_name, &p.name); !why.empty())
      return invalid("parameter name '" + shown(raw_name) + "': " + why);
    if (eq == std::string_view::npos) return invalid("parameter '" + p.name + "' has no value (" + p.name + "=VALUE)");
    if (auto why = decode_component(part.substr(eq + 1), &p.value); !why.empty())
      return invalid("parameter '" + p.name + "': " + why);
    if (out.size() == kMaxQueryParams) return invalid("more than " + std::to_string(kMaxQueryParams) + " parameters");
    out.push_back(std::move(p));
  }
  return out;
}

Server::~Server() {
  stop();
  io::close_fd(listen_fd_);
  io::close_fd(stop_fd_);
}

Result<void> Server::bind(const SocketAddr& addr) noexcept {
  auto fd = io::listen_tcp(addr, false, 64);
  if (!fd) return std::unexpected(fd.error());
  listen_fd_ = *fd;
  stop_fd_ = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
  if (stop_fd_ < 0) return fail_errno();
  return {};
}

void Server::start(Handler handler, bool accepts_post) {
  handler_ = std::move(handler);
  accepts_post_ = accepts_post;
  thread_ = std::thread([this] { serve(); });
}

void Server::stop() {
  if (!thread_.joinable()) return;
  uint64_t one = 1;
  ssize_t ignored = ::write(stop_fd_, &one, sizeof one);
  (void)ignored;
  thread_.join();
}

void Server::serve() {
  std::vector<Client> clients;
  std::vector<pollfd> fds;
  while (true) {
    fds.clear();
    fds.push_back({stop_fd_, POLLIN, 0});
    // At the client limit, stop accepting until one finishes: the backlog
    // holds the rest.
    fds.push_back({static_cast<int>(clients.size()) < kMaxClients ? listen_fd_ : -1, POLLIN, 0});
    for (auto& c : clients) fds.push_back({c.fd, static_cast<short>(c.out.empty() ? POLLIN : POLLOUT), 0});
    int n = poll(fds.data(), fds.size(), 500);
    if (n < 0 && errno != EINTR) break;
    if (fds[0].revents) break;
    uint64_t now = monotonic_ms();
    if (fds[1].revents & POLLIN) {
      sockaddr_storage peer{};
      socklen_t peer_len = sizeof peer;
      int fd = accept4(listen_fd_, reinterpret_cast<sockaddr*>(&peer), &peer_len, SOCK_NONBLOCK | SOCK_CLOEXEC);
      if (fd >= 0)
        clients.push_back({fd, now + kClientTimeoutMs, is_loopback(peer), {}, {}, 0});
      else if (errno == EMFILE || errno == ENFILE)
        poll(nullptr, 0, 100);  // out of descriptors: do not spin on a listener that stays readable
    }
    for (size_t i = 0; i + 2 < fds.size(); ++i) {
      Client& c = clients[i];
      short ev = fds[i + 2].revents;
      if (ev & (POLLIN | POLLHUP | POLLERR)) {
        if (c.out.empty()) {
          char buf[4096];
          ssize_t r = recv(c.fd, buf, sizeof buf, 0);
          if (r <= 0) {
            c.deadline = 0;  // closed or failed: drop it
            continue;
          }
          c.in.append(buf, static_cast<size_t>(r));
          // RFC 9112 lets a server accept a bare LF as a line end.
          auto end = c.in.find("\r\n\r\n");
          auto bare = c.in.find("\n\n");
          if (bare != std::string::npos && (end == std::string::npos || bare < end)) end = bare;
          if (end != std::string::npos) {
            RequestLine req = parse_request_head(std::string_view(c.in).substr(0, end + 1));
            Response resp;
            if (req.post && !accepts_post_) req.error = 405;
            if (req.error != 0) {
              resp.status = req.error;
              resp.body = std::string(reason(req.error)) + "\n";
            } else {
              resp = handler_(Request{req.path, req.query, req.post, c.loopback});
            }
            c.out = render(resp, req.head);
          } else if (c.in.size() > kMaxRequestHead) {
            Response resp{431, "text/plain; charset=utf-8", "request head too large\n"};
            c.out = render(resp, false);
          }
        } else if (ev & (POLLHUP | POLLERR)) {
          c.deadline = 0;
        }
      }
      if (!c.out.empty() && (ev & POLLOUT)) {
        ssize_t w = send(c.fd, c.out.data() + c.sent, c.out.size() - c.sent, MSG_NOSIGNAL);
        if (w < 0 && errno != EAGAIN) c.deadline = 0;
        if (w > 0) c.sent += static_cast<size_t>(w);
        if (c.sent == c.out.size()) c.deadline = 0;
      }
    }
    // Finished, failed and timed-out clients leave together.
    std::erase_if(clients, [now](Client& c) {
      if (c.deadline > now) return false;
      io::close_fd(c.fd);
      return true;
    });
  }
  for (auto& c : clients) io::close_fd(c.fd);
}

}  // namespace meshd::admin
