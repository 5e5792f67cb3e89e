// FileStamp: enough of a file's stat() to tell that it changed, for files
// that are replaced while we run (Kubernetes rotates projected tokens and
// its CA bundle by swapping a symlink, which stat() follows: a new inode).
#pragma once

#include <sys/stat.h>

#include <cstdint>
#include <optional>
#include <string>

namespace meshd::controller {

struct FileStamp {
  uint64_t dev = 0, ino = 0, size = 0;
  int64_t mtime_ns = 0;

  // nullopt when the file cannot be stat()ed (reading it will say why).
  static std::optional<FileStamp> of(const std::string& path) {
    struct stat st {};
    if (::stat(path.c_str(), &st) != 0) return std::nullopt;
    return FileStamp{static_cast<uint64_t>(st.st_dev), static_cast<uint64_t>(st.st_ino),
                     static_cast<uint64_t>(st.st_size),
                     static_cast<int64_t>(st.st_mtim.tv_sec) * 1'000'000'000 + st.st_mtim.tv_nsec};
  }
  bool operator==(const FileStamp&) const = default;
};

}  // namespace meshd::controller
