#pragma once

#include <cstdint>
#include <string>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

namespace troupe::test {

/// Sends `request` to 127.0.0.1:port on a fresh connection and returns what
/// comes back until the peer closes, or one read's worth when `one_read`
/// (a Redis reply); every read waits at most `timeout_s`. Empty if the
/// connection failed.
inline std::string loopback_exchange(uint16_t port, const std::string& request,
                                     bool one_read = false, int timeout_s = 5) {
  int s = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = htons(port);
  timeval tv{timeout_s, 0};
  setsockopt(s, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
  std::string reply;
  if (connect(s, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) == 0
      && write(s, request.data(), request.size()) > 0) {
    char buf[65536];
    for (ssize_t n; (n = read(s, buf, sizeof(buf))) > 0;) {
      reply.append(buf, static_cast<size_t>(n));
      if (one_read)
        break;
    }
  }
  close(s);
  return reply;
}

} // namespace troupe::test
