// Registrar: a host's proxy telling the controller which services it fronts
// (`meshd --register NAME=PORT`), under a lease it keeps renewing, so that a
// host that disappears has its endpoints removed when the lease runs out.
//
// It runs on a thread of its own with blocking calls (never on a worker):
// every lease/3 it registers again, moving to the next controller when one
// does not answer, with a jittered backoff. On shutdown it deregisters
// first, so that new traffic stops arriving while open connections drain.
#pragma once

#include <condition_variable>
#include <cstdint>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "base/addr.h"
#include "discovery/controller_call.h"

namespace meshd::discovery {

class Resolver;

struct Registration {
  std::string service;
  uint16_t port = 0;
};

class Registrar {
 public:
  // resolver: for controllers given by name (may be null when none is).
  // identity: what this proxy's inbound presents (mTLS), told to clients'
  // proxies so that they verify it; empty without identity.
  Registrar(std::vector<HostPort> controllers, Resolver* resolver, std::vector<Registration> registrations,
            uint64_t lease_ms, std::string identity = {}, ControlTls tls = {});
  ~Registrar();
  void start();
  // Deregisters (best effort, bounded) and stops the thread.
  void stop();

 private:
  void run();
  bool register_once(const HostPort& controller);
  void deregister_all();
  // IP:PORT of this host's endpoint on port, as the controller knows it.
  std::string endpoint_address(uint16_t port) const;

  std::vector<HostPort> controllers_;
  Resolver* resolver_;
  std::vector<Registration> registrations_;
  uint64_t lease_ms_;
  std::string identity_;
  ControlTls tls_;
  std::string hostname_;
  std::string owner_;
  size_t current_ = 0;               // which controller answered last
  std::optional<SocketAddr> local_;  // this host, as seen on the way to the controller
  std::mutex mu_;
  std::condition_variable cv_;
  bool stopping_ = false;
  std::thread thread_;
};

}  // namespace meshd::discovery
