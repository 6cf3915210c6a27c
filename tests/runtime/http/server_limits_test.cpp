// The HTTP server's connection caps against one greedy client and against
// many: real sockets on loopback addresses (127.0.0.0/8 is all local).

#include "runtime/http/server.hpp"

#include <chrono>
#include <string>
#include <vector>

#include <doctest/doctest.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

using namespace std::chrono_literals;
using namespace troupe;

namespace {

/// A TCP connection from `from` (a loopback address) to 127.0.0.1:port.
int connect_from(const char* from, uint16_t port) {
  auto fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in local{};
  local.sin_family = AF_INET;
  inet_pton(AF_INET, from, &local.sin_addr);
  if (bind(fd, reinterpret_cast<sockaddr*>(&local), sizeof(local)) != 0) {
    close(fd);
    return -1;
  }
  sockaddr_in sa{};
  sa.sin_family = AF_INET;
  sa.sin_port = htons(port);
  inet_pton(AF_INET, "127.0.0.1", &sa.sin_addr);
  if (connect(fd, reinterpret_cast<sockaddr*>(&sa), sizeof(sa)) != 0) {
    close(fd);
    return -1;
  }
  return fd;
}

/// Sends a GET on `fd` and reads until the status line or the end: true if
/// the server answered 200 within 5 s.
bool answered(int fd) {
  std::string req = "GET / HTTP/1.1\r\nHost: x\r\n\r\n";
  if (send(fd, req.data(), req.size(), MSG_NOSIGNAL) <= 0)
    return false;
  std::string got;
  auto deadline = std::chrono::steady_clock::now() + 5s;
  while (got.find("\r\n") == std::string::npos && std::chrono::steady_clock::now() < deadline) {
    pollfd p{fd, POLLIN, 0};
    if (poll(&p, 1, 100) <= 0)
      continue;
    char buf[512];
    auto n = recv(fd, buf, sizeof(buf), 0);
    if (n <= 0)
      return false;
    got.append(buf, static_cast<size_t>(n));
  }
  return got.rfind("HTTP/1.1 200", 0) == 0;
}

/// True if the server closed `fd` (end of stream or reset) within 5 s
/// without sending anything.
bool closed_by_server(int fd) {
  pollfd p{fd, POLLIN, 0};
  if (poll(&p, 1, 5000) <= 0)
    return false;
  char c;
  return recv(fd, &c, 1, 0) <= 0;
}

template <class Pred>
bool eventually(Pred pred) {
  for (auto deadline = std::chrono::steady_clock::now() + 5s;
       std::chrono::steady_clock::now() < deadline;) {
    if (pred())
      return true;
    pollfd none{-1, 0, 0};
    poll(&none, 0, 10);
  }
  return pred();
}

} // namespace

TEST_CASE("one address gets at most max_connections_per_address connections, and a slot "
          "frees when one closes") {
  http::server_limits limits;
  limits.max_connections_per_address = 5;
  limits.max_connections = 100;
  auto srv = http::server::make(
    "127.0.0.1", 0, 2, [](const std::string&) { return http::response{200, "text/plain", "ok"}; },
    nullptr, limits);
  REQUIRE(srv);
  auto port = (*srv)->port();
  std::vector<int> held;
  for (int i = 0; i < 5; ++i) {
    auto fd = connect_from("127.0.0.1", port);
    REQUIRE(fd >= 0);
    held.push_back(fd);
  }
  CHECK(eventually([&] { return (*srv)->counters().open_connections.load() == 5; }));
  // The sixth from the same address is closed unread; another address is served.
  auto sixth = connect_from("127.0.0.1", port);
  REQUIRE(sixth >= 0);
  CHECK(closed_by_server(sixth));
  close(sixth);
  CHECK((*srv)->counters().refused_over_address.load() == 1);
  auto other = connect_from("127.0.0.2", port);
  REQUIRE(other >= 0);
  CHECK(answered(other));
  close(other);
  // The held ones are served, and closing one makes room again.
  CHECK(answered(held[0]));
  close(held[0]);
  held.erase(held.begin());
  CHECK(eventually([&] { return (*srv)->counters().open_connections.load() == 4; }));
  auto again = connect_from("127.0.0.1", port);
  REQUIRE(again >= 0);
  CHECK(answered(again));
  close(again);
  for (auto fd : held)
    close(fd);
  CHECK(eventually([&] { return (*srv)->counters().open_connections.load() == 0; }));
}

TEST_CASE("past max_connections over all addresses, new connections are closed at once and "
          "counted") {
  http::server_limits limits;
  limits.max_connections_per_address = 100;
  limits.max_connections = 6;
  auto srv = http::server::make(
    "127.0.0.1", 0, 2, [](const std::string&) { return http::response{200, "text/plain", "ok"}; },
    nullptr, limits);
  REQUIRE(srv);
  auto port = (*srv)->port();
  std::vector<int> held;
  const char* from[] = {"127.0.0.2", "127.0.0.3", "127.0.0.4"};
  for (int i = 0; i < 6; ++i) {
    auto fd = connect_from(from[i % 3], port);
    REQUIRE(fd >= 0);
    held.push_back(fd);
  }
  CHECK(eventually([&] { return (*srv)->counters().open_connections.load() == 6; }));
  for (auto addr : {"127.0.0.5", "127.0.0.2"}) {
    auto fd = connect_from(addr, port);
    REQUIRE(fd >= 0);
    CHECK(closed_by_server(fd));
    close(fd);
  }
  CHECK((*srv)->counters().refused_over_total.load() == 2);
  for (auto fd : held)
    CHECK(answered(fd));
  for (auto fd : held)
    close(fd);
  CHECK(eventually([&] { return (*srv)->counters().open_connections.load() == 0; }));
}
