// Op: one io_uring operation, embedded in the object that owns it.
//
// A submission's user_data points at its Op, so a completion finds its owner
// without any lookup and no operation allocates (liburing's proxy.c encodes
// the same facts in user_data; Seastar's completions are objects too). An
// owner counts its Ops in flight and is never freed while any remain.
#pragma once

#include <cstdint>

struct io_uring_cqe;

namespace meshd::io {

class Op;

class OpOwner {
 public:
  virtual void on_complete(Op& op, const io_uring_cqe& cqe) noexcept = 0;

 protected:
  ~OpOwner() = default;
};

class Op {
 public:
  Op() = default;
  Op(OpOwner* o, uint8_t k, uint8_t i = 0) : owner(o), kind(k), index(i) {}
  Op(const Op&) = delete;
  Op& operator=(const Op&) = delete;

  OpOwner* owner = nullptr;
  uint8_t kind = 0;   // which operation, in the owner's own terms
  uint8_t index = 0;  // e.g. which half of a connection
  bool in_flight = false;
};

}  // namespace meshd::io
