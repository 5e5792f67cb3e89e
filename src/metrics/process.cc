#include "metrics/process.h"

#include <dirent.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include <cstdio>
#include <cstring>

#include "metrics/prometheus.h"
#include "version.h"

namespace meshd::metrics {
namespace {
double g_start_real = 0;
double g_start_mono = 0;

double clock_seconds(clockid_t id) noexcept {
  timespec ts;
  clock_gettime(id, &ts);
  return static_cast<double>(ts.tv_sec) + static_cast<double>(ts.tv_nsec) / 1e9;
}
}  // namespace

void mark_start_time() noexcept {
  g_start_real = clock_seconds(CLOCK_REALTIME);
  g_start_mono = clock_seconds(CLOCK_MONOTONIC);
}
double start_time_seconds() noexcept { return g_start_real; }
double uptime_seconds() noexcept { return clock_seconds(CLOCK_MONOTONIC) - g_start_mono; }

ProcessStats read_process_stats() noexcept {
  ProcessStats out;
  long page = sysconf(_SC_PAGESIZE);
  if (FILE* f = fopen("/proc/self/statm", "r")) {
    unsigned long size = 0, resident = 0;
    if (fscanf(f, "%lu %lu", &size, &resident) == 2) {
      out.virtual_bytes = size * static_cast<uint64_t>(page);
      out.rss_bytes = resident * static_cast<uint64_t>(page);
    }
    fclose(f);
  }
  rusage ru{};
  if (getrusage(RUSAGE_SELF, &ru) == 0) {
    out.cpu_seconds = static_cast<double>(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) +
                      static_cast<double>(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1e6;
  }
  if (DIR* d = opendir("/proc/self/fd")) {
    while (dirent* e = readdir(d))
      if (e->d_name[0] != '.') ++out.open_fds;
    closedir(d);
    if (out.open_fds > 0) --out.open_fds;  // the directory handle itself
  }
  rlimit rl{};
  if (getrlimit(RLIMIT_NOFILE, &rl) == 0) out.max_fds = rl.rlim_cur;
  if (DIR* d = opendir("/proc/self/task")) {
    while (dirent* e = readdir(d))
      if (e->d_name[0] != '.') ++out.threads;
    closedir(d);
  }
  return out;
}

void write_process_metrics(PrometheusWriter& w) {
  ProcessStats p = read_process_stats();
  w.family("process_resident_memory_bytes", "gauge", "Resident memory size in bytes.");
  w.sample("process_resident_memory_bytes", {}, p.rss_bytes);
  w.family("process_virtual_memory_bytes", "gauge", "Virtual memory size in bytes.");
  w.sample("process_virtual_memory_bytes", {}, p.virtual_bytes);
  w.family("process_cpu_seconds_total", "counter", "User and system CPU time spent in seconds.");
  w.sample("process_cpu_seconds_total", {}, p.cpu_seconds);
  w.family("process_open_fds", "gauge", "Open file descriptors.");
  w.sample("process_open_fds", {}, p.open_fds);
  w.family("process_max_fds", "gauge", "Limit on open file descriptors.");
  w.sample("process_max_fds", {}, p.max_fds);
  w.family("process_start_time_seconds", "gauge", "Start time of the process since the epoch in seconds.");
  w.sample("process_start_time_seconds", {}, start_time_seconds());
  w.family("meshd_build_info", "gauge", "meshd's version; the value is always 1.");
  w.sample("meshd_build_info", {{"version", MESHD_VERSION}, {"git_rev", MESHD_GIT_REV}}, uint64_t{1});
}

}  // namespace meshd::metrics
