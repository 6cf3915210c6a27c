#pragma once

#include <cstdint>
#include <memory>
#include <string>

#include <caf/error.hpp>
#include <caf/expected.hpp>
#include <caf/timespan.hpp>

#include "runtime/cluster/node_agent.hpp"
#include "topology/topology.hpp"

namespace troupe::cluster {

/// TLS between nodes, carrying CAF's own BASP connections unchanged.
///
/// Why not libcaf_openssl: in CAF 0.17.6 its sessions stall. Measured here
/// with the certificates of a test CA: two nodes never finished their
/// handshake (`auth: request_receiver_down`), and three nodes under traffic
/// saw their links fail every few seconds (`remote_link_unreachable`). Its
/// session calls `SSL_read`/`SSL_write` on a non-blocking socket without the
/// retry rules OpenSSL requires (same buffer on `WANT_WRITE`, records left in
/// OpenSSL's buffer after a read).
///
/// So each node terminates TLS itself, on a thread of its own with
/// Boost.Asio's OpenSSL streams:
/// - `listen()` accepts TLS on the node's public `host:cluster_port` and
///   relays each connection, once the peer's certificate checked out against
///   the cluster's CA, to the agent's BASP port on 127.0.0.1.
/// - `dial()` gives a 127.0.0.1 port for one peer: each connection the
///   middleman opens there is relayed over a new TLS connection to that peer.
///
/// Both sides present their certificate and verify the other's (TLS 1.2 or
/// newer). A refused handshake is logged with its reason and closes the
/// connection, which the agent sees as a failed connection round. A closed
/// TLS connection closes its BASP connection at once, so a killed peer is
/// still seen at once; a frozen one is still seen by the middleman's
/// heartbeats, which pass through unchanged.
class tls_tunnel {
public:
  /// Loads the certificate, key and CA; starts the tunnel's thread.
  static caf::expected<std::unique_ptr<tls_tunnel>>
  make(const topology::tls_settings& tls, caf::timespan handshake_timeout, log_fn log);

  ~tls_tunnel();

  tls_tunnel(const tls_tunnel&) = delete;
  tls_tunnel& operator=(const tls_tunnel&) = delete;

  /// Accepts TLS on `host:port` (binding only `host`) and relays to
  /// 127.0.0.1:`basp_port`.
  caf::error listen(const std::string& host, uint16_t port, uint16_t basp_port);

  /// Returns a 127.0.0.1 port whose connections go over TLS to `host:port`
  /// (the node `peer`, named in logs).
  caf::expected<uint16_t> dial(const std::string& peer, const std::string& host, uint16_t port);

  /// Connections relayed so far (both directions) and handshakes refused.
  uint64_t relayed() const;
  uint64_t refused() const;

  struct impl;

private:
  explicit tls_tunnel(std::unique_ptr<impl> ptr);
  std::unique_ptr<impl> impl_;
};

} // namespace troupe::cluster
