#pragma once

// Child processes for tests that run real node processes: start one, read
// its output with bounded waits, signal it by PID, and reap it. Only the
// processes a test started are ever signalled.

#include <chrono>
#include <memory>
#include <string>
#include <vector>

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

namespace troupe::test {

/// A child process whose stdout and stderr the test reads.
class child_process {
public:
  /// Starts `argv[0]` with `argv`; returns null if fork or pipe fail.
  static std::unique_ptr<child_process> start(const std::vector<std::string>& argv) {
    int fds[2];
    if (pipe(fds) != 0)
      return nullptr;
    auto pid = fork();
    if (pid < 0)
      return nullptr;
    if (pid == 0) {
      dup2(fds[1], STDOUT_FILENO);
      dup2(fds[1], STDERR_FILENO);
      close(fds[0]);
      close(fds[1]);
      std::vector<char*> args;
      for (auto& a : argv)
        args.push_back(const_cast<char*>(a.c_str()));
      args.push_back(nullptr);
      execv(args[0], args.data());
      _exit(127);
    }
    close(fds[1]);
    fcntl(fds[0], F_SETFL, fcntl(fds[0], F_GETFL) | O_NONBLOCK);
    return std::unique_ptr<child_process>{new child_process(pid, fds[0])};
  }

  ~child_process() {
    if (running_) {
      ::kill(pid_, SIGCONT);
      ::kill(pid_, SIGKILL);
      waitpid(pid_, nullptr, 0);
    }
    close(fd_);
  }

  pid_t pid() const {
    return pid_;
  }

  /// Everything the process printed so far.
  const std::string& output() {
    drain(0);
    return out_;
  }

  /// The current end of the output, to wait for something printed after it.
  size_t mark() {
    drain(0);
    return out_.size();
  }

  /// Waits until the output after `from` contains `needle`, at most `timeout`.
  bool wait_for(const std::string& needle, std::chrono::milliseconds timeout, size_t from = 0) {
    auto deadline = std::chrono::steady_clock::now() + timeout;
    for (;;) {
      if (out_.find(needle, from) != std::string::npos)
        return true;
      auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
        deadline - std::chrono::steady_clock::now());
      if (left.count() <= 0)
        return false;
      drain(static_cast<int>(left.count()));
    }
  }

  /// Sends `sig` to this process (and only to it).
  void signal(int sig) {
    if (running_)
      ::kill(pid_, sig);
  }

  /// Waits for the process to end, at most `timeout`; returns its exit code,
  /// 128 + signal if killed, or -1 on timeout.
  int wait_exit(std::chrono::milliseconds timeout) {
    auto deadline = std::chrono::steady_clock::now() + timeout;
    while (running_) {
      int status = 0;
      auto r = waitpid(pid_, &status, WNOHANG);
      if (r == pid_) {
        running_ = false;
        exit_code_ = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
        break;
      }
      if (std::chrono::steady_clock::now() >= deadline)
        return -1;
      drain(10); // keep the pipe from filling while we wait
    }
    drain(0);
    return exit_code_;
  }

private:
  child_process(pid_t pid, int fd) : pid_(pid), fd_(fd) {
    // nop
  }

  /// Reads what is available, waiting at most `timeout_ms` for the first byte.
  void drain(int timeout_ms) {
    pollfd p{fd_, POLLIN, 0};
    if (poll(&p, 1, timeout_ms) <= 0)
      return;
    char buf[4096];
    for (;;) {
      auto n = read(fd_, buf, sizeof(buf));
      if (n <= 0)
        return;
      out_.append(buf, static_cast<size_t>(n));
    }
  }

  pid_t pid_;
  int fd_;
  bool running_ = true;
  int exit_code_ = -1;
  std::string out_;
};

/// A TCP port on 127.0.0.1 that was free a moment ago.
/// `n` distinct free loopback ports: each socket stays bound until all are
/// chosen (one at a time, the kernel may hand out the same port twice).
inline std::vector<uint16_t> free_ports(size_t n) {
  std::vector<int> held;
  std::vector<uint16_t> result;
  for (size_t i = 0; i < n; ++i) {
    int s = socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    bind(s, reinterpret_cast<sockaddr*>(&addr), sizeof(addr));
    socklen_t len = sizeof(addr);
    getsockname(s, reinterpret_cast<sockaddr*>(&addr), &len);
    held.push_back(s);
    result.push_back(ntohs(addr.sin_port));
  }
  for (auto s : held)
    close(s);
  return result;
}

inline uint16_t free_port() {
  int s = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = 0;
  bind(s, reinterpret_cast<sockaddr*>(&addr), sizeof(addr));
  socklen_t len = sizeof(addr);
  getsockname(s, reinterpret_cast<sockaddr*>(&addr), &len);
  close(s);
  return ntohs(addr.sin_port);
}

} // namespace troupe::test
