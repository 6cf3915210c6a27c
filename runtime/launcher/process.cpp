#include "runtime/launcher/process.hpp"

#include <atomic>
#include <csignal>
#include <cstring>
#include <thread>

#include <fcntl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <caf/event_based_actor.hpp>
#include <caf/exit_reason.hpp>
#include <caf/send.hpp>

#include "runtime/core/error.hpp"
#include "runtime/core/messages.hpp"

namespace troupe::launcher {

namespace {

/// Forks and execs `argv` with stdout and stderr on a pipe; returns the pid
/// and the pipe's read end, or an error.
caf::expected<std::pair<pid_t, int>> spawn_process(const std::vector<std::string>& argv) {
  int fds[2];
  if (pipe2(fds, O_CLOEXEC) != 0)
    return caf::make_error(ec::process_exited, std::string{"pipe failed"});
  auto pid = fork();
  if (pid < 0) {
    close(fds[0]);
    close(fds[1]);
    return caf::make_error(ec::process_exited, std::string{"fork failed"});
  }
  if (pid == 0) {
    // The child: its own process group, so a terminal's Ctrl-C reaches only
    // `troupe up`, which then stops the nodes in order.
    setpgid(0, 0);
    dup2(fds[1], STDOUT_FILENO);
    dup2(fds[1], STDERR_FILENO);
    std::vector<char*> args;
    for (auto& a : argv)
      args.push_back(const_cast<char*>(a.c_str()));
    args.push_back(nullptr);
    execv(args[0], args.data());
    _exit(127);
  }
  close(fds[1]);
  return std::make_pair(pid, fds[0]);
}

std::string describe(int status) {
  if (WIFEXITED(status))
    return "exit code " + std::to_string(WEXITSTATUS(status));
  if (WIFSIGNALED(status))
    return std::string{"killed by signal "} + strsignal(WTERMSIG(status));
  return "ended";
}

/// What the process actor and its reader thread share.
struct process_state {
  /// False once the process has exited; set before it is reaped, so that its
  /// PID is never signalled after it could have been reused.
  std::atomic<bool> alive{true};
  /// Set when the supervisor asked us to stop: the exit is then not a crash.
  caf::error stop_reason;
};

/// Reads the process's output line by line, then reaps it and tells `owner`.
void reader(pid_t pid, int fd, line_fn on_line, caf::actor owner,
            std::shared_ptr<process_state> st) {
  std::string buf;
  char chunk[4096];
  for (;;) {
    auto n = read(fd, chunk, sizeof(chunk));
    if (n <= 0)
      break;
    buf.append(chunk, static_cast<size_t>(n));
    for (size_t nl; (nl = buf.find('\n')) != std::string::npos;) {
      on_line(buf.substr(0, nl));
      buf.erase(0, nl + 1);
    }
  }
  if (!buf.empty())
    on_line(buf);
  close(fd);
  siginfo_t info{};
  waitid(P_PID, static_cast<id_t>(pid), &info, WEXITED | WNOWAIT); // a zombie keeps its PID
  st->alive = false;
  int status = 0;
  waitpid(pid, &status, 0);
  caf::anon_send(owner, process_exit_atom::value, describe(status));
}

caf::behavior process_impl(caf::event_based_actor* self, std::string name,
                           std::vector<std::string> argv, line_fn on_line,
                           std::function<void(int)> on_start, caf::timespan stop_timeout) {
  auto started = spawn_process(argv);
  if (!started) {
    self->quit(started.error());
    return {};
  }
  auto [pid, fd] = *started;
  if (on_start)
    on_start(pid);
  auto st = std::make_shared<process_state>();
  std::thread{reader, pid, fd, on_line, caf::actor{self}, st}.detach();
  // Whatever ends this actor ends its process: no orphan survives it.
  self->attach_functor([pid = pid, st](const caf::error&) {
    if (st->alive)
      ::kill(pid, SIGKILL);
  });
  self->set_exit_handler([self, pid = pid, st, stop_timeout](caf::exit_msg& msg) {
    if (!msg.reason || msg.reason == caf::exit_reason::normal || st->stop_reason)
      return;
    // Ask the process to stop; kill it if it has not after the timeout. The
    // reader's process_exit_atom then ends this actor with the same reason.
    st->stop_reason = msg.reason;
    ::kill(pid, SIGTERM);
    self->delayed_send(self, stop_timeout, shutdown_timeout_atom::value, uint64_t{0});
  });
  return {
    [self, name, st](process_exit_atom, std::string& how) {
      if (st->stop_reason)
        self->quit(st->stop_reason);
      else if (how == "exit code 0")
        self->quit(); // ended on purpose (a node an operator stopped)
      else
        self->quit(caf::make_error(ec::process_exited, name, how));
    },
    [pid = pid, st](shutdown_timeout_atom, uint64_t) {
      if (st->alive)
        ::kill(pid, SIGKILL);
    },
  };
}

} // namespace

child_spec process_child(std::string name, std::vector<std::string> argv, line_fn on_line,
                         std::function<void(int pid)> on_start, caf::timespan stop_timeout) {
  child_spec result;
  result.name = name;
  // The actor itself takes care of the process's shutdown timeout; the
  // supervisor waits a little longer before it kills the actor.
  result.shutdown = shutdown_spec::after(stop_timeout + std::chrono::seconds(1));
  result.start = [name, argv, on_line, on_start, stop_timeout](caf::actor_system& sys)
    -> caf::expected<caf::actor> {
    return sys.spawn(process_impl, name, argv, on_line, on_start, stop_timeout);
  };
  return result;
}

} // namespace troupe::launcher
