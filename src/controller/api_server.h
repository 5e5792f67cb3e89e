// ApiServer: the controller's stream endpoint (default :4190). Proxies and
// meshd-ctl connect, send framed Requests and get framed Responses; a
// Subscribe stays open and receives every change to its service.
//
// A single thread serves every stream with poll(): the controller's work
// per message is small, and one thread keeps the registry free of locks.
// Every peer is bounded: frame size (FrameDecoder), subscriptions per
// stream, and bytes queued towards a peer that does not read (it is
// disconnected, and must resubscribe to get a fresh snapshot).
//
// With a certificate (set_tls), a stream that starts with a TLS record is
// TLS: the controller proves it is spiffe://TRUST-DOMAIN/controller, and
// clients need no certificate (a proxy asks for its first one here).
// Certify and RevokeToken are answered only over TLS, so join tokens and
// certificates never cross in clear. Discovery is also served to plaintext
// streams, so that a proxy without the mesh's identity (meshing off on one
// host) still finds services; it learns nothing secret.
#pragma once

#include <poll.h>

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <set>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "base/addr.h"
#include "controller/certifier.h"
#include "controller/controller.h"
#include "controller/pod_reviews.h"
#include "proto/frame.h"
#include "transport/stream_tls.h"

namespace meshd::controller {

// More file descriptors for the API's poll loop (the gossip sockets), so
// that everything that touches the registry runs on this one thread.
class PollHook {
 public:
  virtual ~PollHook() = default;
  // Appends the fds to wait on.
  virtual void add_fds(std::vector<pollfd>* fds) = 0;
  // The fds it added, with what happened to them; also called on timeouts.
  virtual void on_events(std::span<const pollfd> fds) = 0;
  // How long the loop may sleep before the hook needs to run again.
  virtual int timeout_ms() = 0;
};

class ApiServer {
 public:
  static constexpr size_t kMaxClients = 4096;
  static constexpr size_t kMaxSubscriptionsPerStream = 10000;
  static constexpr size_t kMaxQueuedBytes = 16u << 20;

  // now_ms: the wall clock in milliseconds (entries are versioned by it).
  ApiServer(Controller* controller, Stats* stats, std::function<uint64_t()> now_ms)
      : controller_(controller), stats_(stats), now_ms_(std::move(now_ms)) {}
  ~ApiServer();
  Parsed<bool> listen(const SocketAddr& addr);
  // Where it listens (the port the kernel chose, for port 0).
  SocketAddr local_address() const;
  // Serves until stop_fd is readable; tick() runs about every tick_ms.
  void run(int stop_fd, unsigned tick_ms, const std::function<void()>& tick);
  // Sends each change to the streams subscribed to its service.
  void publish(const Changes& changes);
  void set_poll_hook(PollHook* hook) { hook_ = hook; }
  // Answers ListMembers; without it, the request is refused (no gossip).
  void set_members(std::function<proto::MemberList()> members) { members_ = std::move(members); }
  // Answers Certify; without it, the request is refused (no --identity-dir).
  // Its join tokens' revocations and uses are kept in the registry, shared
  // with the other replicas (controller/token_marks.h).
  void set_certifier(Certifier* certifier) {
    certifier_ = certifier;
    if (certifier_ != nullptr) certifier_->set_ledger(controller_);
  }
  // Reviews pods' service-account tokens for Certify, off this thread;
  // without it, pod tokens are refused.
  void set_pod_reviews(PodReviews* reviews) { pod_reviews_ = reviews; }
  // Streams accepted from now on are TLS with this context (a server
  // context for kControlAlpn); open streams keep theirs.
  void set_tls(std::shared_ptr<const transport::TlsContext> ctx) { tls_ = std::move(ctx); }

 private:
  struct Client {
    uint64_t id = 0;  // never reused, unlike fd: names it to a pod review
    int fd = -1;
    std::string peer;
    proto::FrameDecoder decoder;
    std::string out;
    size_t sent = 0;
    std::map<std::string, uint64_t> subscriptions;          // service -> request id
    std::map<std::string, uint64_t> address_subscriptions;  // unknown address -> request id
    std::unique_ptr<transport::StreamTls> tls;              // null: plaintext
    bool started = false;                                   // its first bytes were seen
    bool closing = false;
  };
  void accept_clients();
  void read_from(Client& c);
  void write_to(Client& c);
  void handle(Client& c, const proto::Request& req);
  void answer_certify(Client& c, uint64_t request_id, const proto::Certify& request,
                      const Parsed<std::string>* pod_review);
  // Answers the Certify requests whose pod token review is done.
  void finish_reviews();
  void send(Client& c, const proto::Response& resp);
  // Queues a frame already serialized (header and body), as send() does.
  void send_frame(Client& c, std::string_view header, std::string_view body);
  // Queues bytes of frames for c: encrypted on a TLS stream.
  void queue(Client& c, std::string_view header, std::string_view body);
  // The first bytes decide: a TLS ClientHello, or plaintext (refused when
  // this controller has a certificate).
  Parsed<void> start_stream(Client& c, std::string_view first);
  void drop(Client& c, const std::string& why);

  Controller* controller_;
  Stats* stats_;
  std::function<uint64_t()> now_ms_;
  PollHook* hook_ = nullptr;
  std::function<proto::MemberList()> members_;
  Certifier* certifier_ = nullptr;
  PodReviews* pod_reviews_ = nullptr;
  uint64_t streams_accepted_ = 0;
  std::shared_ptr<const transport::TlsContext> tls_;
  std::string plain_;  // decrypted bytes, reused across reads
  std::string frame_;  // one frame being encrypted, reused
  int listen_fd_ = -1;
  std::vector<std::unique_ptr<Client>> clients_;
  void subscribe(Client& c, const std::string& service, uint64_t id);
  void unsubscribe(Client& c, uint64_t id);
  // Addresses asked about that no service had: looked at again on changes.
  void resolve_waiting_addresses();
  std::map<std::string, std::set<Client*>> subscribers_;
  std::map<std::string, std::set<Client*>> address_waiters_;
  uint64_t waiters_checked_at_ = 0;  // the controller's address_generation() then
};

}  // namespace meshd::controller
