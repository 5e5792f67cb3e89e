// Logging: one line per event on stderr, "LEVEL component: message".
//
// Logging is for events an operator acts on (start, stop, a listener that
// failed, a config error); per-connection facts go to metrics, never to the
// log, so that a flood of connections cannot flood the log.
#pragma once

#include <cstdarg>

namespace meshd::log {

enum class Level { kDebug = 0, kInfo = 1, kWarn = 2, kError = 3 };

void set_level(Level level) noexcept;
Level level() noexcept;
bool parse_level(const char* text, Level* out) noexcept;

void write(Level level, const char* component, const char* fmt, ...) noexcept __attribute__((format(printf, 3, 4)));

}  // namespace meshd::log

#define MESHD_LOG(lvl, component, ...)                                       \
  do {                                                                       \
    if (::meshd::log::Level::lvl >= ::meshd::log::level())                   \
      ::meshd::log::write(::meshd::log::Level::lvl, component, __VA_ARGS__); \
  } while (0)
#define LOG_DEBUG(c, ...) MESHD_LOG(kDebug, c, __VA_ARGS__)
#define LOG_INFO(c, ...) MESHD_LOG(kInfo, c, __VA_ARGS__)
#define LOG_WARN(c, ...) MESHD_LOG(kWarn, c, __VA_ARGS__)
#define LOG_ERROR(c, ...) MESHD_LOG(kError, c, __VA_ARGS__)
