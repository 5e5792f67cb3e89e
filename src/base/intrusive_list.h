// An intrusive doubly-linked list: O(1) insert, remove and move-to-back with
// no allocation. Workers keep connections in such lists ordered by deadline,
// so a timer sweep only looks at the heads.
#pragma once

#include <cstddef>

namespace meshd {

struct ListLink {
  ListLink* prev = nullptr;
  ListLink* next = nullptr;
  void* owner = nullptr;  // the object this link is embedded in
  bool linked() const noexcept { return next != nullptr; }
  void unlink() noexcept {
    if (!linked()) return;
    prev->next = next;
    next->prev = prev;
    prev = next = nullptr;
  }
};

template <class T, ListLink T::*Link>
class IntrusiveList {
 public:
  IntrusiveList() noexcept { head_.prev = head_.next = &head_; }
  IntrusiveList(const IntrusiveList&) = delete;
  IntrusiveList& operator=(const IntrusiveList&) = delete;

  bool empty() const noexcept { return head_.next == &head_; }
  void push_back(T* item) noexcept {
    ListLink* l = &(item->*Link);
    l->unlink();
    l->owner = item;
    l->prev = head_.prev;
    l->next = &head_;
    head_.prev->next = l;
    head_.prev = l;
  }
  // Inserts item after the last item for which after(other) is false, so
  // that a list kept in order stays so (walks from the back: O(1) when
  // items mostly arrive in order).
  template <class After>
  void insert_from_back(T* item, After after) noexcept {
    ListLink* l = &(item->*Link);
    l->unlink();
    l->owner = item;
    ListLink* at = head_.prev;
    while (at != &head_ && after(from_link(at))) at = at->prev;
    l->prev = at;
    l->next = at->next;
    at->next->prev = l;
    at->next = l;
  }
  T* front() noexcept { return empty() ? nullptr : from_link(head_.next); }
  T* pop_front() noexcept {
    T* item = front();
    if (item != nullptr) (item->*Link).unlink();
    return item;
  }
  // Calls f on each item; f may unlink the item it is given.
  template <class F>
  void for_each(F&& f) {
    for (ListLink* l = head_.next; l != &head_;) {
      ListLink* next = l->next;
      f(from_link(l));
      l = next;
    }
  }

 private:
  static T* from_link(ListLink* l) noexcept { return static_cast<T*>(l->owner); }
  ListLink head_;
};

}  // namespace meshd
