// Listener: one bound socket of one worker, with a multishot accept armed on
// it. Each accepted socket goes to the worker, tagged with what the listener
// is for (outbound, inbound or an explicit --forward).
#pragma once

#include <string>

#include "base/addr.h"
#include "io/op.h"
#include "metrics/tcp_stats.h"

struct io_uring_cqe;

namespace meshd::proxy {

class Worker;

enum class ListenerKind : uint8_t {
  kOutbound,  // redirected outbound: go to the original destination
  kInbound,   // redirected inbound: go to the application at the original port
  kForward,   // explicit: go to a fixed target
};

struct ListenerSpec {
  std::string name;  // "outbound", "inbound", "forward"
  ListenerKind kind = ListenerKind::kOutbound;
  metrics::Direction direction = metrics::Direction::kOutbound;
  SocketAddr address;
  SocketAddr target;        // kForward to an IP
  std::string target_name;  // kForward to a name: a service, else DNS (then target_port)
  uint16_t target_port = 0;
};

class Listener final : public io::OpOwner {
 public:
  Listener(Worker* worker, const ListenerSpec* spec, int fd) noexcept
      : worker_(worker), spec_(spec), fd_(fd), accept_op_(this, 0) {}
  Listener(const Listener&) = delete;
  Listener& operator=(const Listener&) = delete;

  const ListenerSpec& spec() const noexcept { return *spec_; }
  void arm() noexcept;
  // Stops accepting: cancels the accept and closes the socket once the
  // accept's last completion has arrived.
  void stop() noexcept;
  bool stopped() const noexcept { return fd_ < 0; }
  bool needs_rearm() const noexcept { return fd_ >= 0 && !stopping_ && !accept_op_.in_flight; }

  void on_complete(io::Op& op, const io_uring_cqe& cqe) noexcept override;

 private:
  Worker* worker_;
  const ListenerSpec* spec_;
  int fd_;
  io::Op accept_op_;
  bool stopping_ = false;
  int last_error_ = 0;  // the accept error last logged
};

}  // namespace meshd::proxy
