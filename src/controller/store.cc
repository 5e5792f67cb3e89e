#include "controller/store.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <array>
#include <cerrno>
#include <cstring>

#include "base/bytes.h"
#include "base/log.h"
#include "proto/frame.h"

namespace meshd::controller {
namespace {

constexpr size_t kHeader = 8;

const std::array<uint32_t, 256>& crc_table() {
  static const std::array<uint32_t, 256> table = [] {
    std::array<uint32_t, 256> t{};
    for (uint32_t i = 0; i < 256; ++i) {
      uint32_t c = i;
      for (int k = 0; k < 8; ++k) c = (c & 1) ? (c >> 1) ^ 0x82F63B78u : c >> 1;  // Castagnoli
      t[i] = c;
    }
    return t;
  }();
  return table;
}

std::string record(const proto::Entry& e) {
  std::string body = proto::serialize_deterministic(e);
  std::string out(kHeader, '\0');
  store_be32(out.data(), static_cast<uint32_t>(body.size()));
  store_be32(out.data() + 4, crc32c(body.data(), body.size()));
  return out + body;
}

bool write_all(int fd, const std::string& data) {
  size_t done = 0;
  while (done < data.size()) {
    ssize_t n = ::write(fd, data.data() + done, data.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return false;
    done += static_cast<size_t>(n);
  }
  return true;
}

std::string errno_text(const std::string& what, const std::string& path) {
  return what + " " + path + ": " + std::strerror(errno);
}

}  // namespace

uint32_t crc32c(const void* data, size_t size, uint32_t crc) noexcept {
  const auto& t = crc_table();
  const auto* p = static_cast<const unsigned char*>(data);
  crc = ~crc;
  for (size_t i = 0; i < size; ++i) crc = t[(crc ^ p[i]) & 0xff] ^ (crc >> 8);
  return ~crc;
}

Store::~Store() {
  if (fd_ >= 0) ::close(fd_);
}

Parsed<Store::Opened> Store::open(const std::string& dir, Registry* registry) {
  dir_ = dir;
  path_ = dir + "/registry.log";
  if (::mkdir(dir.c_str(), 0700) != 0 && errno != EEXIST) return invalid(errno_text("cannot create", dir));
  fd_ = ::open(path_.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600);
  if (fd_ < 0) return invalid(errno_text("cannot open", path_));

  // Read the whole log: it holds one record per live entry after a
  // compaction, plus what was appended since.
  std::string data;
  char buf[1 << 16];
  while (true) {
    ssize_t n = ::read(fd_, buf, sizeof buf);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return invalid(errno_text("cannot read", path_));
    if (n == 0) break;
    data.append(buf, static_cast<size_t>(n));
  }

  Opened out;
  size_t pos = 0;
  while (pos < data.size()) {
    if (data.size() - pos < kHeader) break;  // torn header at the end
    uint32_t len = load_be32(data.data() + pos);
    uint32_t crc = load_be32(data.data() + pos + 4);
    if (len > kMaxRecordBytes)
      return invalid(path_ + ": corrupt record at offset " + std::to_string(pos) + " (length " + std::to_string(len) +
                     ")");
    if (data.size() - pos - kHeader < len) break;  // torn body at the end
    const char* body = data.data() + pos + kHeader;
    proto::Entry e;
    if (crc32c(body, len) != crc || !e.ParseFromArray(body, static_cast<int>(len)) || !validate(e))
      return invalid(path_ + ": corrupt record at offset " + std::to_string(pos) +
                     " (checksum or contents); the registry is not loaded rather than loaded in part");
    registry->apply(e);
    ++out.records;
    pos += kHeader + len;
  }
  if (pos < data.size()) {
    // Only the last append can be torn, and it was never acknowledged.
    out.truncated_bytes = data.size() - pos;
    if (::ftruncate(fd_, static_cast<off_t>(pos)) != 0) return invalid(errno_text("cannot truncate", path_));
    LOG_WARN("store", "%s: cut off %llu bytes of an unfinished last write at offset %zu", path_.c_str(),
             static_cast<unsigned long long>(out.truncated_bytes), pos);
  }
  if (::lseek(fd_, static_cast<off_t>(pos), SEEK_SET) < 0) return invalid(errno_text("cannot seek", path_));
  size_ = pos;
  return out;
}

Parsed<bool> Store::append(const proto::Entry& e) { return append(std::span<const proto::Entry>(&e, 1)); }

Parsed<bool> Store::append(std::span<const proto::Entry> entries) {
  // One write and one fdatasync for the whole batch: a registration of many
  // endpoints costs one disk flush, not one per endpoint.
  std::string r;
  for (const auto& e : entries) r += record(e);
  if (r.empty()) return true;
  if (!write_all(fd_, r) || ::fdatasync(fd_) != 0) {
    std::string why = errno_text("cannot write", path_);
    // Leave no half record behind for the next append to follow.
    if (::ftruncate(fd_, static_cast<off_t>(size_)) == 0) ::lseek(fd_, static_cast<off_t>(size_), SEEK_SET);
    return invalid(why);
  }
  size_ += r.size();
  return true;
}

Parsed<bool> Store::compact(const Registry& registry) {
  std::string tmp = dir_ + "/registry.log.new";
  int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  if (fd < 0) return invalid(errno_text("cannot create", tmp));
  std::string all;
  registry.for_each([&](const proto::Entry& e) { all += record(e); });
  if (!write_all(fd, all) || ::fsync(fd) != 0) {
    std::string why = errno_text("cannot write", tmp);
    ::close(fd);
    ::unlink(tmp.c_str());
    return invalid(why);
  }
  ::close(fd);
  if (::rename(tmp.c_str(), path_.c_str()) != 0) return invalid(errno_text("cannot rename over", path_));
  // The rename itself must survive a crash: sync the directory.
  int dfd = ::open(dir_.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dfd >= 0) {
    ::fsync(dfd);
    ::close(dfd);
  }
  int nfd = ::open(path_.c_str(), O_RDWR | O_CLOEXEC);
  if (nfd < 0) return invalid(errno_text("cannot reopen", path_));
  ::close(fd_);
  fd_ = nfd;
  size_ = all.size();
  if (::lseek(fd_, static_cast<off_t>(size_), SEEK_SET) < 0) return invalid(errno_text("cannot seek", path_));
  return true;
}

}  // namespace meshd::controller
