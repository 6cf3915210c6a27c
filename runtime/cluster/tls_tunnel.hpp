#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <vector>
#include <memory>
#include <mutex>
#include <atomic>
#include <string>
#include <string_view>

#include <caf/error.hpp>
#include <caf/expected.hpp>
#include <caf/timespan.hpp>

#include "runtime/cluster/node_agent.hpp"
#include "topology/topology.hpp"

struct ssl_st;

namespace troupe::cluster {

/// What a link's TLS connection and the tunnel share: when the peer last
/// sent bytes (the failure detector's silence), and a way to end the
/// connection from any thread.
class link_state {
public:
  link_state(uint64_t id, int fd);

  uint64_t id() const {
    return id_;
  }

  /// Notes bytes from the peer now.
  void heard() noexcept;

  /// Milliseconds since the peer's last bytes (since the connection began,
  /// before any).
  int64_t silence_ms() const noexcept;

  /// Shuts the socket down both ways (its owner then sees it end), unless
  /// its owner closed it already. Thread-safe.
  void shutdown();

  /// Called by the socket's owner just before it closes the socket, so a
  /// later `shutdown()` cannot reach whatever reuses the descriptor.
  void closing();

private:
  uint64_t id_;
  std::atomic<int64_t> heard_;
  std::mutex mtx_;
  int fd_;
};

/// A cluster connection past its TLS handshake: the TCP socket, its TLS
/// session (an OpenSSL `SSL` bound to the socket, nothing buffered in it),
/// and its link. Closes both unless `release()`d.
class tls_connection {
public:
  tls_connection() = default;
  tls_connection(int fd, ssl_st* ssl, std::shared_ptr<link_state> link);
  tls_connection(tls_connection&& other) noexcept;
  tls_connection& operator=(tls_connection&& other) noexcept;
  tls_connection(const tls_connection&) = delete;
  tls_connection& operator=(const tls_connection&) = delete;
  ~tls_connection();

  int fd() const {
    return fd_;
  }

  ssl_st* ssl() const {
    return ssl_;
  }

  const std::shared_ptr<link_state>& link() const {
    return link_;
  }

  uint64_t id() const {
    return link_ ? link_->id() : 0;
  }

  /// Hands the socket and the session over to the caller.
  void release() {
    fd_ = -1;
    ssl_ = nullptr;
  }

private:
  int fd_ = -1;
  ssl_st* ssl_ = nullptr;
  std::shared_ptr<link_state> link_;
};

/// The cluster transport: every node-to-node and shell-to-node connection
/// is TLS, carrying CAF's BASP unchanged, and CAF's BASP is never on a TCP
/// port.
///
/// Keys: with `[cluster.tls]`, certificates (both sides present one and
/// verify the other's against the cluster's CA; TLS 1.2 or newer); without,
/// the cluster secret itself, as a TLS 1.3 external pre-shared key
/// (HMAC-SHA256 of the secret and the cluster's name, identity
/// `troupe:<cluster>`; ECDHE on top, so past sessions stay secret). A client
/// that holds neither fails the handshake, which is logged and counted
/// (`troupe_cluster_refused_connections_total`), and never sees a BASP byte.
///
/// Why not `libcaf_openssl`: in CAF 0.17.6 its sessions stall. Measured here
/// with the certificates of a test CA: two nodes never finished their
/// handshake (`auth: request_receiver_down`), and three nodes under traffic
/// saw their links fail every few seconds (`remote_link_unreachable`). Its
/// session calls `SSL_read`/`SSL_write` on a non-blocking socket without the
/// retry rules OpenSSL requires (same buffer on `WANT_WRITE`, records left in
/// OpenSSL's buffer after a read).
///
/// So the tunnel does each TLS handshake on a thread of its own (Boost.Asio
/// waiting on the socket, OpenSSL on it), and only a connection that passed
/// it reaches CAF, as a `tls_connection` whose records CAF's own I/O loop
/// then reads and writes (`secure_transport.hpp`):
/// - `listen()` accepts TLS on the node's public `host:cluster_port` and
///   hands each connection that passed the handshake to `accepted`.
/// - `dial()` opens a TLS connection to a peer and, once the peer has
///   spoken, hands it to `done`: the middleman's connection to that peer.
///
/// A refused handshake is logged with its reason and closes the connection,
/// which the agent sees as a failed connection round.
class tls_tunnel {
public:
  /// The node each cluster address belongs to: `"host:port"` -> node name.
  using node_names = std::map<std::string, std::string>;

  /// Loads the certificate, key and CA of `c.tls`, or derives the
  /// pre-shared key from `c.secret` and `c.name` without them; starts the
  /// tunnel's thread. A handshake not done within `handshake_timeout` is
  /// refused.
  ///
  /// With certificates, `dial()` pins the peer's identity: the peer at
  /// an address of `nodes` must present a certificate whose subjectAltName
  /// holds `DNS:<that node's name>` (the subject's CN does not count), and
  /// an address not in `nodes` is not dialled. So a certificate of the
  /// cluster's CA that names another node, or an operator's (which names
  /// none), cannot answer for a node.
  static caf::expected<std::unique_ptr<tls_tunnel>>
  make(const topology::cluster_settings& c, caf::timespan handshake_timeout, log_fn log,
       node_names nodes = {});

  /// The cluster addresses of a topology's nodes: `"host:cluster_port"` ->
  /// name.
  static node_names names_of(const std::vector<topology::node_spec>& nodes);

  /// True when the PEM certificate at `path` names node `name` in its
  /// subjectAltName (`DNS:<name>`).
  static bool certificate_names(const std::string& path, const std::string& name);

  ~tls_tunnel();

  tls_tunnel(const tls_tunnel&) = delete;
  tls_tunnel& operator=(const tls_tunnel&) = delete;

  /// Accepts TLS on `host:port` (binding only `host`) and calls `accepted`
  /// (on the tunnel's thread) with each connection that passed the
  /// handshake. Listening again on the same `host:port` only changes the
  /// callback (an agent published again after a restart).
  caf::error listen(const std::string& host, uint16_t port,
                    std::function<void(tls_connection)> accepted);

  /// Opens a TLS connection to `host:port`, waits until the peer's first
  /// bytes are there (unread), and then calls `done` (on the tunnel's
  /// thread) with the connection, or with the error that ended the
  /// attempt: refused, a failed handshake, or none done within the
  /// handshake timeout.
  void dial(const std::string& host, uint16_t port,
            std::function<void(caf::expected<tls_connection>)> done);

  /// Milliseconds since link `id` last received bytes from its peer (CAF's
  /// heartbeats keep a live link under `heartbeat_interval`), or -1 for a
  /// link that is closed or unknown. Thread-safe.
  int64_t silence_ms(uint64_t id) const;

  /// Closes link `id`: its socket is shut down both ways, so the
  /// middleman sees the connection end (its proxies of the peer's actors go
  /// down) and so does the peer. Thread-safe; does nothing for a link
  /// already closed.
  void close_link(uint64_t id);

  /// "certificates" or "cluster secret (TLS 1.3 PSK)".
  std::string keys() const;

  /// Connections handed over so far (both directions) and handshakes refused
  /// (also counted in `troupe_cluster_refused_connections_total`).
  uint64_t relayed() const;
  uint64_t refused() const;

  struct impl;

private:
  explicit tls_tunnel(std::unique_ptr<impl> ptr);
  std::unique_ptr<impl> impl_;
};

/// The link id written right after `prefix` in `text` (decimal digits to
/// the end), or 0 if `text` does not start with `prefix` or has anything
/// else there.
uint64_t link_id_after(std::string_view text, std::string_view prefix);

/// Blocks SIGPIPE on the calling thread, so a write to a peer that is gone
/// fails with EPIPE instead of ending the process (OpenSSL writes to its
/// socket with plain `send()`). Only the threads that run TLS records (the
/// tunnel's, and CAF's I/O loop) call it, so the process's own handling of
/// SIGPIPE stays as it is.
void block_sigpipe();

/// Counts one connection refused before it reached CAF, by `reason`
/// (`tls_handshake`, `wrong_identity` (a certificate that does not name
/// the node dialled), `handshake_timeout`, `too_many_handshakes`), in
/// `troupe_cluster_refused_connections_total`.
void count_refused_connection(const std::string& reason);

} // namespace troupe::cluster
