#include "transport/session_cache.h"

namespace meshd::transport {

WOLFSSL_SESSION* ClientSessionCache::find(std::string_view key, const TlsContext* ctx) {
  release_found();
  auto it = map_.find(key);
  if (it == map_.end()) return nullptr;
  if (ctx == nullptr || it->second->generation != ctx->generation()) {
    drop(it->second);  // made under another identity: never useful again
    return nullptr;
  }
  lru_.splice(lru_.begin(), lru_, it->second);
  const std::string& der = it->second->session_der;
  const auto* p = reinterpret_cast<const unsigned char*>(der.data());
  found_ = wolfSSL_d2i_SSL_SESSION(nullptr, &p, static_cast<long>(der.size()));
  if (found_ == nullptr) drop(it->second);
  return found_;
}

void ClientSessionCache::store(std::string_view key_view, const TlsContext* ctx, WOLFSSL_SESSION* owned) {
  release_found();
  std::string key(key_view);  // key_view may point into the entry replaced below
  if (auto it = map_.find(key); it != map_.end()) drop(it->second);
  if (owned == nullptr) return;
  std::string der;
  int len = ctx != nullptr ? wolfSSL_i2d_SSL_SESSION(owned, nullptr) : 0;
  if (len > 0 && static_cast<size_t>(len) <= kMaxEntryBytes) {
    der.resize(static_cast<size_t>(len));
    auto* p = reinterpret_cast<unsigned char*>(der.data());
    if (wolfSSL_i2d_SSL_SESSION(owned, &p) != len) der.clear();
  }
  wolfSSL_SESSION_free(owned);
  if (der.empty()) return;
  while (map_.size() >= capacity_) drop(std::prev(lru_.end()));
  bytes_ += der.size();
  lru_.push_front(Entry{std::move(key), ctx->generation(), std::move(der)});
  map_.emplace(lru_.front().key, lru_.begin());
}

void ClientSessionCache::erase(std::string_view key) {
  release_found();
  if (auto it = map_.find(key); it != map_.end()) drop(it->second);
}

void ClientSessionCache::clear() {
  release_found();
  while (!lru_.empty()) drop(lru_.begin());
}

void ClientSessionCache::drop(List::iterator it) {
  bytes_ -= it->session_der.size();
  map_.erase(it->key);
  lru_.erase(it);
}

void ClientSessionCache::release_found() {
  if (found_ != nullptr) wolfSSL_SESSION_free(found_);
  found_ = nullptr;
}

}  // namespace meshd::transport
