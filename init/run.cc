#include "init/run.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>

#include "base/parse.h"

extern char** environ;

namespace meshd::init {

namespace {

std::string find_program(const std::string& name) {
  if (name.find('/') != std::string::npos) return name;
  const char* env_path = std::getenv("PATH");
  std::string path = env_path ? env_path : "/usr/bin:/bin";
  path += ":/usr/sbin:/sbin:/usr/local/sbin";
  for (const auto& dir : split_list(path, ':')) {
    std::string candidate = dir + "/" + name;
    if (access(candidate.c_str(), X_OK) == 0) return candidate;
  }
  return "";
}

int64_t now_ms() {
  timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return int64_t{ts.tv_sec} * 1000 + ts.tv_nsec / 1000000;
}

struct Fd {
  int fd = -1;
  ~Fd() { reset(); }
  void reset() {
    if (fd >= 0) close(fd);
    fd = -1;
  }
};

// A SIGPIPE from writing to a program that exited early must become EPIPE,
// not kill us. Blocking it in this thread (instead of ignoring it for the
// whole process) keeps the change local; a SIGPIPE raised meanwhile is
// consumed before the old mask comes back.
class SigpipeBlocked {
 public:
  SigpipeBlocked() {
    sigset_t pipe_only;
    sigemptyset(&pipe_only);
    sigaddset(&pipe_only, SIGPIPE);
    pthread_sigmask(SIG_BLOCK, &pipe_only, &old_);
    sigset_t pending;
    sigpending(&pending);
    was_pending_ = sigismember(&pending, SIGPIPE) == 1;
  }
  ~SigpipeBlocked() {
    sigset_t pending;
    sigpending(&pending);
    if (!was_pending_ && sigismember(&pending, SIGPIPE) == 1) {
      sigset_t pipe_only;
      sigemptyset(&pipe_only);
      sigaddset(&pipe_only, SIGPIPE);
      timespec zero{};
      sigtimedwait(&pipe_only, nullptr, &zero);
    }
    pthread_sigmask(SIG_SETMASK, &old_, nullptr);
  }
  const sigset_t& old_mask() const { return old_; }

 private:
  sigset_t old_;
  bool was_pending_ = false;
};

}  // namespace

Parsed<RunResult> run_program(const std::vector<std::string>& argv, std::string_view input, int timeout_ms) {
  if (argv.empty()) return invalid("run_program: empty command");
  const std::string& name = argv[0];
  std::string path = find_program(name);
  if (path.empty())
    return invalid(name + " not found in PATH, /usr/sbin or /sbin (is the iptables package installed?)");

  // [0] read end, [1] write end; O_CLOEXEC so that only the dup2'ed copies
  // reach the program.
  int in_pipe[2], out_pipe[2], err_pipe[2];
  if (pipe2(in_pipe, O_CLOEXEC) != 0) return invalid(name + ": pipe: " + std::strerror(errno));
  Fd in_r{in_pipe[0]}, in_w{in_pipe[1]};
  if (pipe2(out_pipe, O_CLOEXEC) != 0) return invalid(name + ": pipe: " + std::strerror(errno));
  Fd out_r{out_pipe[0]}, out_w{out_pipe[1]};
  if (pipe2(err_pipe, O_CLOEXEC) != 0) return invalid(name + ": pipe: " + std::strerror(errno));
  Fd err_r{err_pipe[0]}, err_w{err_pipe[1]};

  SigpipeBlocked sigpipe_blocked;

  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_adddup2(&actions, in_r.fd, 0);
  posix_spawn_file_actions_adddup2(&actions, out_w.fd, 1);
  posix_spawn_file_actions_adddup2(&actions, err_w.fd, 2);
  posix_spawnattr_t attr;
  posix_spawnattr_init(&attr);
  // The program gets the signal mask and SIGPIPE behaviour it would get from
  // a shell, not ours.
  sigset_t pipe_only;
  sigemptyset(&pipe_only);
  sigaddset(&pipe_only, SIGPIPE);
  posix_spawnattr_setsigdefault(&attr, &pipe_only);
  posix_spawnattr_setsigmask(&attr, &sigpipe_blocked.old_mask());
  posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETSIGDEF | POSIX_SPAWN_SETSIGMASK);

  std::vector<char*> args;
  for (const auto& a : argv) args.push_back(const_cast<char*>(a.c_str()));
  args.push_back(nullptr);
  pid_t pid = -1;
  int rc = posix_spawn(&pid, path.c_str(), &actions, &attr, args.data(), environ);
  posix_spawn_file_actions_destroy(&actions);
  posix_spawnattr_destroy(&attr);
  if (rc != 0) return invalid("cannot run " + path + ": " + std::strerror(rc));

  in_r.reset();
  out_w.reset();
  err_w.reset();
  fcntl(in_w.fd, F_SETFL, O_NONBLOCK);
  if (input.empty()) in_w.reset();

  RunResult result;
  const int64_t deadline = now_ms() + timeout_ms;
  bool timed_out = false;
  while (out_r.fd >= 0 || err_r.fd >= 0 || in_w.fd >= 0) {
    pollfd fds[3] = {{out_r.fd, POLLIN, 0}, {err_r.fd, POLLIN, 0}, {in_w.fd, POLLOUT, 0}};
    int64_t left = deadline - now_ms();
    if (left <= 0) {
      timed_out = true;
      break;
    }
    int n = poll(fds, 3, static_cast<int>(left));
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) break;
    if (fds[2].revents) {
      ssize_t w = write(in_w.fd, input.data(), input.size());
      if (w > 0) input.remove_prefix(static_cast<size_t>(w));
      // EPIPE: the program stopped reading; its exit status will say why.
      if ((w < 0 && errno != EAGAIN && errno != EINTR) || input.empty()) in_w.reset();
    }
    for (int i = 0; i < 2; ++i) {
      if (!fds[i].revents) continue;
      Fd& fd = i == 0 ? out_r : err_r;
      char buf[16384];
      ssize_t r = read(fd.fd, buf, sizeof buf);
      if (r > 0)
        (i == 0 ? result.out : result.err).append(buf, static_cast<size_t>(r));
      else if (r == 0 || (errno != EAGAIN && errno != EINTR))
        fd.reset();
    }
  }
  if (timed_out) kill(pid, SIGKILL);
  int status = 0;
  while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  if (timed_out) return invalid(name + " did not finish within " + std::to_string(timeout_ms / 1000) + "s");
  result.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  return result;
}

std::string describe_failure(const RunResult& result) {
  std::string line;
  for (const auto& part : split_list(result.err, '\n')) {
    if (!line.empty()) line += "; ";
    line += part;
  }
  if (!line.empty()) return line;
  if (result.exit_code > 128) return "killed by signal " + std::to_string(result.exit_code - 128);
  return "exit status " + std::to_string(result.exit_code);
}

}  // namespace meshd::init
