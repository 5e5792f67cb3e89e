// Store: the controller's registry on disk, so that nothing acknowledged is
// lost across a restart.
//
// An append-only log in the data directory: each record is a 4-byte length,
// a 4-byte CRC-32C of the payload, and one serialized Entry. append() writes
// and fsyncs before it returns, so an acknowledged entry is on disk. On open
// the log is replayed: a record cut short at the very end is an append that
// was never acknowledged (the process died mid-write) and is cut off with a
// warning; a record that fails its checksum anywhere else is corruption, and
// open fails naming the file and the offset rather than silently dropping
// state. compact() rewrites the log as the registry's current entries, to a
// new file renamed over the old one, so a crash leaves one or the other.
#pragma once

#include <cstdint>
#include <span>
#include <string>

#include "base/result.h"
#include "controller/registry.h"

namespace meshd::controller {

uint32_t crc32c(const void* data, size_t size, uint32_t crc = 0) noexcept;

class Store {
 public:
  ~Store();
  Store() = default;
  Store(const Store&) = delete;
  Store& operator=(const Store&) = delete;

  struct Opened {
    size_t records = 0;            // records replayed
    uint64_t truncated_bytes = 0;  // an unacknowledged torn tail that was cut off
  };
  // Opens (creating) DIR/registry.log and merges every record into *registry.
  Parsed<Opened> open(const std::string& dir, Registry* registry);
  // Appends e (or all of entries) and makes it durable (fdatasync) before
  // returning; on failure nothing of it stays in the log.
  Parsed<bool> append(const proto::Entry& e);
  Parsed<bool> append(std::span<const proto::Entry> entries);
  // Rewrites the log as exactly registry's entries.
  Parsed<bool> compact(const Registry& registry);
  uint64_t log_bytes() const noexcept { return size_; }
  const std::string& path() const noexcept { return path_; }

  static constexpr uint32_t kMaxRecordBytes = 1u << 20;

 private:
  std::string dir_;
  std::string path_;
  int fd_ = -1;
  uint64_t size_ = 0;
};

}  // namespace meshd::controller
