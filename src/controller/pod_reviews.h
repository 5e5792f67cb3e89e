// PodReviews: pods' service-account tokens reviewed off the API thread.
//
// A TokenReview is an HTTPS round trip to the Kubernetes API server, up to
// its deadline (3 s). Made on the API thread, it would stall every stream
// meanwhile: discovery for every proxy, and each other pod's Certify. So
// one thread of its own runs the reviews in order (the verifier and its
// cache are that thread's alone), and hands the results back through an
// eventfd the API's poll loop watches; the API thread then issues the
// certificate as for any other credential.
#pragma once

#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "base/result.h"
#include "controller/certifier.h"
#include "proto/api.pb.h"

namespace meshd::controller {

class PodReviews {
 public:
  // Requests waiting or under review at once; past it, a pod is told to
  // retry (its proxy backs off), so a burst cannot queue without bound.
  static constexpr size_t kMaxWaiting = 256;

  struct Job {
    uint64_t stream = 0;      // the API stream that asked
    uint64_t request_id = 0;  // its request's id
    proto::Certify request;
  };
  struct Done {
    Job job;
    Parsed<std::string> identity;  // what the token proves, or why nothing
  };

  // clock: the wall clock in seconds, read when a review starts.
  PodReviews(std::unique_ptr<CredentialVerifier> verifier, std::function<uint64_t()> clock);
  ~PodReviews();  // stops the thread once the review in progress ends
  PodReviews(const PodReviews&) = delete;
  PodReviews& operator=(const PodReviews&) = delete;

  // False when kMaxWaiting requests are waiting already.
  bool submit(Job job);
  // Readable while finished reviews are waiting to be taken.
  int fd() const { return fd_; }
  // The finished reviews, in the order they were submitted.
  std::vector<Done> take();

 private:
  void loop();

  std::unique_ptr<CredentialVerifier> verifier_;
  std::function<uint64_t()> clock_;
  int fd_ = -1;
  std::mutex mu_;
  std::condition_variable wake_;
  std::deque<Job> waiting_;
  std::vector<Done> done_;
  size_t in_flight_ = 0;  // waiting, under review, or done but not taken
  bool stopping_ = false;
  std::thread thread_;
};

}  // namespace meshd::controller
