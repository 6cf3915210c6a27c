#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <vector>
#include <memory>
#include <string>
#include <string_view>

#include <caf/error.hpp>
#include <caf/expected.hpp>
#include <caf/timespan.hpp>

#include "runtime/cluster/node_agent.hpp"
#include "topology/topology.hpp"

namespace troupe::cluster {

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
/// So each process terminates TLS itself, on a thread of its own with
/// Boost.Asio's OpenSSL streams:
/// - `listen()` accepts TLS on the node's public `host:cluster_port` and
///   relays each connection that passed the handshake to the node's BASP
///   socket: a Unix socket in the abstract namespace that accepts only
///   connections from its own process (`secure_transport.hpp`).
/// - `dial()` opens a TLS connection to a peer and, once the peer has
///   spoken, hands over the local end of a socket pair whose other end it
///   relays over it: the middleman's connection to that peer (no port on
///   this host to dial).
///
/// A refused handshake is logged with its reason and closes the connection,
/// which the agent sees as a failed connection round. A closed TLS
/// connection closes its BASP connection at once, so a killed peer is still
/// seen at once; a frozen one is still seen by the middleman's heartbeats,
/// which pass through unchanged.
class tls_tunnel {
public:
  /// One relayed connection, as `dial()` hands it over: the middleman's end
  /// of its socket pair and the link's id in this tunnel.
  struct link {
    int fd = -1;
    uint64_t id = 0;
  };

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

  /// Accepts TLS on `host:port` (binding only `host`) and relays to the
  /// Unix socket `basp` (an abstract name starts with a NUL). Listening
  /// again on the same `host:port` only changes where it relays to (an agent
  /// published again after a restart).
  caf::error listen(const std::string& host, uint16_t port, const std::string& basp);

  /// Opens a TLS connection to `host:port`, waits for the peer's first
  /// bytes, and then calls `done` (on the tunnel's thread) with the local
  /// end of a socket pair relayed over it (non-blocking, owned by the
  /// caller) and the link's id, or with the error that ended the attempt: refused, a failed
  /// handshake, or none done within the handshake timeout.
  void dial(const std::string& host, uint16_t port,
            std::function<void(caf::expected<link>)> done);

  /// Milliseconds since link `id` last received bytes from its peer (CAF's
  /// heartbeats keep a live link under `heartbeat_interval`), or -1 for a
  /// link that is closed or unknown. Thread-safe.
  int64_t silence_ms(uint64_t id) const;

  /// Closes link `id`: both its TLS connection and the middleman's side,
  /// which so sees the connection end (its proxies of the peer's actors go
  /// down). Thread-safe; does nothing for a link already closed.
  void close_link(uint64_t id);

  /// The abstract Unix socket name a relay binds before connecting to the
  /// BASP socket (so the BASP side learns the link's id), and the id such a
  /// name holds (0 for any other name).
  static std::string link_name(uint64_t id);
  static uint64_t link_of(const std::string& name);

  /// "certificates" or "cluster secret (TLS 1.3 PSK)".
  std::string keys() const;

  /// Connections relayed so far (both directions) and handshakes refused
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

/// Counts one connection refused before it reached CAF, by `reason`
/// (`tls_handshake`, `wrong_identity` (a certificate that does not name
/// the node dialled), `handshake_timeout`, `too_many_handshakes`,
/// `foreign_process`), in
/// `troupe_cluster_refused_connections_total`.
void count_refused_connection(const std::string& reason);

} // namespace troupe::cluster
