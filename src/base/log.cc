#include "base/log.h"

#include <unistd.h>
#include <atomic>
#include <cstdio>
#include <cstring>
#include <ctime>

namespace meshd::log {
namespace {
std::atomic<Level> g_level{Level::kInfo};
const char* const kNames[] = {"DEBUG", "INFO", "WARN", "ERROR"};
}  // namespace

void set_level(Level l) noexcept { g_level.store(l, std::memory_order_relaxed); }
Level level() noexcept { return g_level.load(std::memory_order_relaxed); }

bool parse_level(const char* text, Level* out) noexcept {
  for (int i = 0; i < 4; ++i) {
    if (strcasecmp(text, kNames[i]) == 0) {
      *out = static_cast<Level>(i);
      return true;
    }
  }
  return false;
}

void write(Level l, const char* component, const char* fmt, ...) noexcept {
  // Format into one buffer and write(2) it whole, so that lines from several
  // threads never interleave.
  char line[1024];
  timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  tm t;
  gmtime_r(&ts.tv_sec, &t);
  int n =
      snprintf(line, sizeof line, "%04d-%02d-%02dT%02d:%02d:%02d.%03ldZ %s %s: ", t.tm_year + 1900, t.tm_mon + 1,
               t.tm_mday, t.tm_hour, t.tm_min, t.tm_sec, ts.tv_nsec / 1000000, kNames[static_cast<int>(l)], component);
  va_list ap;
  va_start(ap, fmt);
  int m = vsnprintf(line + n, sizeof line - n - 1, fmt, ap);
  va_end(ap);
  size_t len = static_cast<size_t>(n) + (m < 0 ? 0 : std::min<size_t>(m, sizeof line - n - 2));
  line[len++] = '\n';
  ssize_t ignored = ::write(2, line, len);
  (void)ignored;
}

}  // namespace meshd::log
