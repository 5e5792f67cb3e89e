// The controller's log on disk: what was appended survives a reopen; a torn
// last write is cut off; corruption elsewhere fails the open, loudly.
#include <fcntl.h>
#include <stdlib.h>
#include <unistd.h>
#include <catch2/catch.hpp>

#include <cstdio>
#include <string>

#include "controller/store.h"

using namespace meshd;
using controller::Registry;
using controller::Store;

namespace {
struct TempDir {
  std::string path;
  TempDir() {
    char tmpl[] = "/tmp/meshd-store-test-XXXXXX";
    path = mkdtemp(tmpl);
  }
  ~TempDir() {
    std::remove((path + "/registry.log").c_str());
    std::remove((path + "/registry.log.new").c_str());
    rmdir(path.c_str());
  }
};

proto::Entry entry(int i, uint64_t version = 1, bool tombstone = false) {
  proto::Entry e;
  e.set_service("web.prod");
  e.set_endpoint("10.0.0." + std::to_string(i) + ":80");
  e.set_owner("lease:a");
  e.set_version(version);
  e.set_tombstone(tombstone);
  if (!tombstone) e.mutable_address_of()->set_address(e.endpoint());
  return e;
}

off_t file_size(const std::string& path) {
  int fd = open(path.c_str(), O_RDONLY);
  off_t n = lseek(fd, 0, SEEK_END);
  close(fd);
  return n;
}

void corrupt_byte(const std::string& path, off_t at) {
  int fd = open(path.c_str(), O_RDWR);
  char c;
  REQUIRE(pread(fd, &c, 1, at) == 1);
  c = static_cast<char>(c ^ 0x5a);
  REQUIRE(pwrite(fd, &c, 1, at) == 1);
  close(fd);
}
}  // namespace

TEST_CASE("crc32c: the standard check value") { REQUIRE(controller::crc32c("123456789", 9) == 0xE3069283u); }

TEST_CASE("store: appended entries survive a reopen") {
  TempDir dir;
  Registry written;
  {
    Store s;
    REQUIRE(s.open(dir.path, &written)->records == 0);
    for (int i = 1; i <= 5; ++i) {
      REQUIRE(s.append(entry(i)));
      written.apply(entry(i));
    }
    REQUIRE(s.append(entry(2, 2, true)));
    written.apply(entry(2, 2, true));
  }
  Registry read;
  Store s;
  auto opened = s.open(dir.path, &read);
  REQUIRE(opened);
  REQUIRE(opened->records == 6);
  REQUIRE(read.canonical() == written.canonical());
  REQUIRE(read.service("web.prod").size() == 4);
}

TEST_CASE("store: a torn last write is cut off, the rest kept") {
  TempDir dir;
  {
    Registry r;
    Store s;
    REQUIRE(s.open(dir.path, &r));
    REQUIRE(s.append(entry(1)));
    REQUIRE(s.append(entry(2)));
  }
  std::string log = dir.path + "/registry.log";
  off_t full = file_size(log);
  REQUIRE(truncate(log.c_str(), full - 3) == 0);  // the process died mid-write
  Registry r;
  Store s;
  auto opened = s.open(dir.path, &r);
  REQUIRE(opened);
  REQUIRE(opened->records == 1);
  REQUIRE(opened->truncated_bytes > 0);
  REQUIRE(r.size() == 1);
  // Appending after the cut works and survives.
  REQUIRE(s.append(entry(3)));
  Registry again;
  Store t;
  REQUIRE(t.open(dir.path, &again)->records == 2);
}

TEST_CASE("store: corruption before the end fails the open, naming where") {
  TempDir dir;
  {
    Registry r;
    Store s;
    REQUIRE(s.open(dir.path, &r));
    REQUIRE(s.append(entry(1)));
    REQUIRE(s.append(entry(2)));
  }
  corrupt_byte(dir.path + "/registry.log", 12);  // inside the first record's body
  Registry r;
  Store s;
  auto opened = s.open(dir.path, &r);
  REQUIRE_FALSE(opened);
  REQUIRE(opened.error().find("corrupt record at offset 0") != std::string::npos);
  REQUIRE(opened.error().find("registry.log") != std::string::npos);
}

TEST_CASE("store: compaction keeps exactly the registry, and shrinks the log") {
  TempDir dir;
  Registry r;
  Store s;
  REQUIRE(s.open(dir.path, &r));
  for (uint64_t v = 1; v <= 20; ++v) {
    REQUIRE(s.append(entry(1, v)));
    r.apply(entry(1, v));
  }
  uint64_t before = s.log_bytes();
  REQUIRE(s.compact(r));
  REQUIRE(s.log_bytes() < before / 10);
  REQUIRE(s.append(entry(2)));
  r.apply(entry(2));
  Registry read;
  Store t;
  REQUIRE(t.open(dir.path, &read)->records == 2);
  REQUIRE(read.canonical() == r.canonical());
}

TEST_CASE("store: an unusable data directory is a clear error") {
  Registry r;
  Store s;
  auto opened = s.open("/proc/meshd-cannot-be-here", &r);
  REQUIRE_FALSE(opened);
  REQUIRE(opened.error().find("/proc/meshd-cannot-be-here") != std::string::npos);
}
