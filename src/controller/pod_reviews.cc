#include "controller/pod_reviews.h"

#include <sys/eventfd.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "base/log.h"
#include "transport/tls_context.h"

namespace meshd::controller {

PodReviews::PodReviews(std::unique_ptr<CredentialVerifier> verifier, std::function<uint64_t()> clock)
    : verifier_(std::move(verifier)), clock_(std::move(clock)) {
  fd_ = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
  if (fd_ < 0) LOG_ERROR("pod-reviews", "eventfd: %s", std::strerror(errno));
  thread_ = std::thread([this] { loop(); });
}

PodReviews::~PodReviews() {
  {
    std::lock_guard lock(mu_);
    stopping_ = true;
  }
  wake_.notify_all();
  thread_.join();
  if (fd_ >= 0) ::close(fd_);
}

bool PodReviews::submit(Job job) {
  {
    std::lock_guard lock(mu_);
    if (in_flight_ >= kMaxWaiting || fd_ < 0) return false;
    ++in_flight_;
    waiting_.push_back(std::move(job));
  }
  wake_.notify_one();
  return true;
}

std::vector<PodReviews::Done> PodReviews::take() {
  uint64_t n = 0;
  (void)::read(fd_, &n, sizeof n);  // reset the eventfd; empty is fine
  std::lock_guard lock(mu_);
  std::vector<Done> out;
  out.swap(done_);
  in_flight_ -= out.size();
  return out;
}

void PodReviews::loop() {
  std::unique_lock lock(mu_);
  for (;;) {
    wake_.wait(lock, [this] { return stopping_ || !waiting_.empty(); });
    if (stopping_) break;
    Job job = std::move(waiting_.front());
    waiting_.pop_front();
    lock.unlock();
    auto identity = verifier_->verify(job.request.k8s_token(), clock_());
    lock.lock();
    done_.push_back({std::move(job), std::move(identity)});
    const uint64_t one = 1;
    (void)::write(fd_, &one, sizeof one);
  }
  lock.unlock();
  transport::release_thread_crypto();  // it verified the API server's TLS
}

}  // namespace meshd::controller
