// A TapSink for the taps' unit tests (h1_tap_test, h2_tap_test): records
// every event as a line of text; tags are 1, 2, 3... in request order.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "http/h1_tap.h"

namespace meshd::http {

class TapRecorder final : public TapSink {
 public:
  // with_heads: requests are recorded with their authority, and response
  // heads as lines of their own (HTTP/2, where streams interleave).
  explicit TapRecorder(bool with_heads = false) : with_heads_(with_heads) {}

  void on_detected(Protocol p) noexcept override { add(std::string("detected ") + protocol_name(p)); }
  void* on_request(const RequestHead& head) noexcept override {
    ++issued;
    add("request " + std::to_string(issued) + " " + std::string(head.method_name) + " " +
        (with_heads_ ? std::string(head.authority) + " " : std::string()) + std::string(head.target));
    return reinterpret_cast<void*>(static_cast<uintptr_t>(issued));
  }
  void on_response_head(void* tag, uint16_t status, uint64_t ttfb_us) noexcept override {
    if (with_heads_) add("head " + id(tag) + " " + std::to_string(status) + " ttfb=" + std::to_string(ttfb_us));
  }
  void on_response(void* tag, uint16_t status, uint64_t ttfb_us, bool complete, int32_t grpc) noexcept override {
    answer(tag);
    add("response " + id(tag) + " " + std::to_string(status) + " ttfb=" + std::to_string(ttfb_us) +
        (complete ? " complete" : " incomplete") + (grpc >= 0 ? " grpc=" + std::to_string(grpc) : ""));
  }
  void on_failure(void* tag, std::string_view error) noexcept override {
    answer(tag);
    add("failure " + id(tag) + " " + std::string(error));
  }
  void on_rejected(uint16_t status, std::string_view reason) noexcept override {
    add("rejected " + std::to_string(status) + " " + std::string(reason));
  }
  void on_abandoned(std::string_view reason) noexcept override { add("abandoned " + std::string(reason)); }

  // Every tag handed out was answered exactly once.
  bool all_answered_once() const {
    if (answers.size() != issued) return false;
    for (const auto& [tag, n] : answers)
      if (n != 1 || tag == 0 || tag > issued) return false;
    return true;
  }

  std::vector<std::string> events;
  uintptr_t issued = 0;
  std::map<uintptr_t, int> answers;

 private:
  void add(std::string e) { events.push_back(std::move(e)); }
  static std::string id(void* tag) { return std::to_string(reinterpret_cast<uintptr_t>(tag)); }
  void answer(void* tag) { ++answers[reinterpret_cast<uintptr_t>(tag)]; }

  bool with_heads_;
};

}  // namespace meshd::http
