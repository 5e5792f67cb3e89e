// ClientSessionCache: the TLS sessions a client worker can resume, one per
// upstream endpoint, so that reconnecting to a known peer costs an
// abbreviated handshake instead of a full one.
//
// One per worker thread, not thread-safe (no lock on the data path). An
// entry belongs to the TlsContext that made it: after a certificate renewal
// the new context's lookups miss and drop the old entries, because a
// session resumed under the old identity would present the old certificate.
//
// Entries are kept serialized (wolfSSL_i2d_SSL_SESSION: the ticket, the
// secret and the peer's chain, ~1-2 KB), not as WOLFSSL_SESSION objects:
// in this wolfSSL build one WOLFSSL_SESSION takes ~38 KB of heap (measured;
// SESSION_CERTS gives it fixed-size certificate slots), which would make
// 1024 cached sessions cost 38 MB per worker. find() decodes the one
// session being offered.
#pragma once

#include <wolfssl/options.h>
#include <wolfssl/ssl.h>

#include <cstddef>
#include <cstdint>
#include <list>
#include <string>
#include <string_view>
#include <unordered_map>

#include "transport/tls_context.h"

namespace meshd::transport {

class ClientSessionCache {
 public:
  static constexpr size_t kDefaultCapacity = 1024;
  // A serialized session larger than this is not kept (ours are ~1-2 KB).
  static constexpr size_t kMaxEntryBytes = 16 * 1024;

  explicit ClientSessionCache(size_t capacity = kDefaultCapacity) : capacity_(capacity == 0 ? 1 : capacity) {}
  ~ClientSessionCache() { clear(); }
  ClientSessionCache(const ClientSessionCache&) = delete;
  ClientSessionCache& operator=(const ClientSessionCache&) = delete;

  // The session to offer when connecting to key (an endpoint address) with
  // ctx, or null. The cache owns it; it stays valid until the next find(),
  // store(), erase() or clear() (TlsSession::start copies it at once).
  WOLFSSL_SESSION* find(std::string_view key, const TlsContext* ctx);
  // Takes ownership of owned (from TlsSession::get1_session) and frees it
  // once serialized, replacing the key's previous entry. Null removes the
  // entry (a resumption that failed should not be offered again).
  void store(std::string_view key, const TlsContext* ctx, WOLFSSL_SESSION* owned);
  void erase(std::string_view key);
  void clear();
  size_t size() const { return map_.size(); }
  // Serialized bytes held, for status reporting.
  size_t bytes() const { return bytes_; }

 private:
  struct Entry {
    std::string key;
    uint64_t generation;
    std::string session_der;
  };
  using List = std::list<Entry>;

  void drop(List::iterator it);
  void release_found();

  size_t capacity_;
  size_t bytes_ = 0;
  List lru_;                                                  // most recently used first
  std::unordered_map<std::string_view, List::iterator> map_;  // keys point into the list's strings
  WOLFSSL_SESSION* found_ = nullptr;                          // what the last find() returned
};

}  // namespace meshd::transport
