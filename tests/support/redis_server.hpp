#pragma once

// A private redis-server for a test: a free loopback port, a fresh folder,
// no persistence. It can be stopped and started again on the same port (for
// the "Redis goes away and returns" cases). Ended by its PID, never by name.

#include <chrono>
#include <cstdio>
#include <memory>
#include <string>

#include <unistd.h>

#include <doctest/doctest.h>

#include "tests/support/process.hpp"

namespace troupe::test {

class redis_server {
public:
  redis_server() : port_(free_port()) {
    char tmpl[] = "/tmp/troupe-redis-test-XXXXXX";
    dir_ = mkdtemp(tmpl);
    start();
  }

  ~redis_server() {
    stop();
    rmdir(dir_.c_str());
  }

  redis_server(const redis_server&) = delete;

  uint16_t port() const {
    return port_;
  }

  std::string url() const {
    return "redis://127.0.0.1:" + std::to_string(port_);
  }

  /// Starts the server and waits until it answers on its port.
  void start() {
    proc_ = child_process::start({"/usr/bin/redis-server", "--bind", "127.0.0.1", "--port",
                                  std::to_string(port_), "--save", "", "--appendonly", "no",
                                  "--dir", dir_});
    REQUIRE(proc_);
    REQUIRE(proc_->wait_for("Ready to accept connections", std::chrono::milliseconds{10000}));
  }

  /// Ends the server at once (SIGKILL): what a crash looks like to clients.
  void stop() {
    if (!proc_)
      return;
    proc_->signal(SIGKILL);
    proc_->wait_exit(std::chrono::milliseconds{5000});
    proc_.reset();
  }

private:
  uint16_t port_;
  std::string dir_;
  std::unique_ptr<child_process> proc_;
};

} // namespace troupe::test
