#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <caf/expected.hpp>
#include <caf/timespan.hpp>

namespace troupe::http {

/// An HTTP answer.
struct response {
  unsigned status = 200;
  std::string content_type = "text/plain; charset=utf-8";
  std::string body;
};

/// Answers `GET target` (path and query as sent). Called on an I/O thread:
/// it must not block.
using route_fn = std::function<response(const std::string& target)>;

/// WebSocket close codes (RFC 6455, section 7.4.1) Troupe sends.
namespace close_code {
constexpr uint16_t normal = 1000;
constexpr uint16_t going_away = 1001;
/// A binary frame: the protocol is JSON text.
constexpr uint16_t unsupported_data = 1003;
/// A text frame that is not UTF-8 (sent by Beast itself).
constexpr uint16_t bad_payload = 1007;
/// Too many requests past the rate limit.
constexpr uint16_t policy_violation = 1008;
/// A message over the size limit (sent by Beast itself).
constexpr uint16_t too_big = 1009;
/// A handler failed (a bug); the node keeps serving.
constexpr uint16_t internal_error = 1011;
/// The node no longer runs the gateway (its group instance stopped).
constexpr uint16_t service_restart = 1012;
} // namespace close_code

/// One WebSocket connection, as the server hands it to its `ws_handler`.
/// Thread-safe: `send` and `close` may be called from any thread; the work
/// happens on the connection's strand.
class ws_session {
public:
  virtual ~ws_session() = default;

  /// Unique per server.
  uint64_t id() const {
    return id_;
  }

  /// Queues a text message. The same encoded message may go to many
  /// sessions: it is shared, never copied. A session whose queue is full
  /// (a client that does not read) is disconnected at once.
  virtual void send(std::shared_ptr<const std::string> text) = 0;

  /// Sends a close frame with `code` and `reason`, then ends the connection.
  virtual void close(uint16_t code, std::string reason) = 0;

  /// The peer's address, for logs.
  virtual std::string remote() const = 0;

protected:
  explicit ws_session(uint64_t id) : id_(id) {
  }

private:
  uint64_t id_;
};

/// Queues one encoded message to many sessions of a server at once: one
/// task per I/O thread, not one per session.
using deliver_fn = std::function<void(std::vector<std::shared_ptr<ws_session>>&& sessions,
                                      std::shared_ptr<const std::string> msg)>;

/// What the server does with WebSocket connections (at path `/ws`).
class ws_handler {
public:
  virtual ~ws_handler() = default;

  /// The server hands over its `deliver` when it starts, and an empty one
  /// before it stops (which must wait for a call in progress).
  virtual void set_deliver(deliver_fn fn) = 0;

  /// Whether to take an upgrade request for `target`; otherwise the client
  /// gets 503 with `why`.
  virtual bool accepting(std::string& why) = 0;

  /// A connection is open; `target` is the upgrade request's (with query).
  virtual void on_open(const std::shared_ptr<ws_session>& s, const std::string& target) = 0;

  /// A complete text message arrived (valid UTF-8, within the size limit).
  virtual void on_text(const std::shared_ptr<ws_session>& s, std::string text) = 0;

  /// The connection ended (`why` in words, for logs).
  virtual void on_close(const std::shared_ptr<ws_session>& s, const std::string& why) = 0;
};

/// Limits of the server's connections.
struct server_limits {
  /// Largest WebSocket message taken; bigger ones are closed with 1009.
  size_t max_message = 64 * 1024;
  /// Messages waiting to be written to one client; past it, disconnected.
  size_t send_queue = 1024;
  /// The kernel's send buffer of each WebSocket (SO_SNDBUF), so that a
  /// client that stops reading shows in the send queue soon.
  int socket_send_buffer = 64 * 1024;
  /// How long an HTTP client may take to send its request.
  caf::timespan request_timeout = std::chrono::seconds(10);
  /// Open connections (HTTP and WebSocket) at once, over all clients; past
  /// it a new connection is closed at once and counted. The node lowers it
  /// to what its open-files limit allows.
  size_t max_connections = 16000;
  /// Open connections at once from one IP address.
  size_t max_connections_per_address = 1000;
};

/// TLS on the server's port (`https://` and `wss://`): the certificate
/// chain and key it presents (PEM files). TLS 1.2 or newer.
struct server_tls {
  std::string certificate;
  std::string key;
};

/// Counters, read with relaxed loads.
struct server_counters {
  std::atomic<uint64_t> http_requests{0};
  std::atomic<uint64_t> ws_opened{0};
  std::atomic<uint64_t> ws_closed{0};
  /// Disconnected because their send queue was full.
  std::atomic<uint64_t> ws_dropped_slow{0};
  std::atomic<uint64_t> ws_messages_in{0};
  std::atomic<uint64_t> ws_messages_out{0};
  std::atomic<uint64_t> ws_bad_frames{0};
  /// Connections closed at accept: over `max_connections`, or over
  /// `max_connections_per_address`.
  std::atomic<uint64_t> refused_over_total{0};
  std::atomic<uint64_t> refused_over_address{0};
  /// Open connections now.
  std::atomic<uint64_t> open_connections{0};
  /// TLS handshakes that failed or timed out (with `server_tls`).
  std::atomic<uint64_t> tls_refused{0};
};

/// An HTTP and WebSocket server (Boost.Beast) on threads of its own: plain
/// `GET` routes, and WebSocket upgrades at `/ws` handed to a `ws_handler`.
/// Built by `make()`, which binds; the destructor stops the threads and
/// closes every connection.
class server {
public:
  /// Binds `host:port` (port 0: any free port) and starts `threads` I/O
  /// threads. `routes` answers every plain request; `ws` (may be null: no
  /// WebSockets) must outlive the server.
  /// With `tls`, every connection starts with a TLS handshake (within
  /// `request_timeout`); a client that does not speak TLS is closed.
  static caf::expected<std::unique_ptr<server>> make(const std::string& host, uint16_t port,
                                                     size_t threads, route_fn routes,
                                                     ws_handler* ws, server_limits limits = {},
                                                     std::optional<server_tls> tls = {});

  /// True when the server speaks TLS.
  bool secure() const;

  ~server();

  server(const server&) = delete;
  server& operator=(const server&) = delete;

  /// The bound port.
  uint16_t port() const;

  /// Open WebSocket connections.
  uint64_t connections() const;

  const server_counters& counters() const;

  struct impl;

private:
  explicit server(std::unique_ptr<impl> ptr);
  std::unique_ptr<impl> impl_;
};

} // namespace troupe::http
