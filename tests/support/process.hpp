#pragma once

// Child processes for tests that run real node processes: start one, read
// its output with bounded waits, signal it by PID, and reap it. Only the
// processes a test started are ever signalled.

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <random>
#include <stdexcept>
#include <memory>
#include <string>
#include <vector>

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <sys/file.h>
#include <sys/socket.h>
#include <sys/stat.h>
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

/// Ports for tests are reserved outside the kernel's ephemeral range, so
/// nothing the kernel hands out (a Redis or Kafka port that `troupe up`
/// chose, a node's outgoing connection) can take a port a test wrote into a
/// topology; each is held by a lock file under /tmp/troupe-test-ports for
/// the life of this process, so tests running side by side never pick the
/// same one. The Python tests' helper (troupe_cluster.py) does the same.
inline bool reserve_port(uint16_t port) {
  static std::vector<int> held;
  ::mkdir("/tmp/troupe-test-ports", 0777);
  auto path = "/tmp/troupe-test-ports/" + std::to_string(port);
  int fd = ::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0666);
  if (fd < 0)
    return false;
  if (::flock(fd, LOCK_EX | LOCK_NB) != 0) {
    ::close(fd);
    return false;
  }
  int s = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = htons(port);
  bool free = bind(s, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) == 0;
  ::close(s);
  if (!free) {
    ::close(fd);
    return false;
  }
  held.push_back(fd);
  return true;
}

/// `n` distinct loopback ports, free now and reserved (see `reserve_port`).
inline std::vector<uint16_t> free_ports(size_t n) {
  unsigned low = 32768, high = 60999;
  if (auto* f = std::fopen("/proc/sys/net/ipv4/ip_local_port_range", "r")) {
    if (std::fscanf(f, "%u %u", &low, &high) != 2) {
      low = 32768;
      high = 60999;
    }
    std::fclose(f);
  }
  auto lo = low > 21000 ? 20000u : high + 1;
  auto hi = low > 21000 ? low - 1 : 65535u;
  std::mt19937 random{std::random_device{}()};
  std::uniform_int_distribution<unsigned> pick{lo, hi};
  std::vector<uint16_t> result;
  for (size_t tries = 0; result.size() < n && tries < 100 * n + 1000; ++tries) {
    auto port = static_cast<uint16_t>(pick(random));
    if (std::find(result.begin(), result.end(), port) == result.end() && reserve_port(port))
      result.push_back(port);
  }
  if (result.size() != n)
    throw std::runtime_error("no free ports for a test between " + std::to_string(lo) + " and "
                             + std::to_string(hi));
  return result;
}

inline uint16_t free_port() {
  return free_ports(1).front();
}

} // namespace troupe::test
