#pragma once

#include <memory>
#include <string>

#include <caf/actor_system.hpp>
#include <caf/expected.hpp>
#include <caf/io/middleman_actor.hpp>

#include "runtime/cluster/tls_tunnel.hpp"
#include "runtime/core/log.hpp"

namespace troupe::cluster {

/// The process's way into the cluster: a middleman actor (CAF's
/// `middleman_actor` interface, so `publish_atom`, `connect_atom` and
/// `unpublish_atom` work as with CAF's own) whose connections all go
/// through `tunnel`.
///
/// - `publish_atom` (port P on host H) has the tunnel accept TLS on H:P and
///   hand each connection that passed the handshake to the doorman CAF
///   gets, inside the process (an eventfd wakes CAF's I/O loop for each).
///   No socket on the host speaks BASP, Unix or TCP: another local process
///   has nothing to connect to but the TLS port.
/// - `connect_atom` (H, P) waits, without blocking the middleman, until the
///   tunnel's TLS connection to H:P is up and the peer has spoken, then
///   hands CAF that connection (CAF 0.17.6 closes a client connection still
///   silent at its next heartbeat tick, so it must not get one before the
///   peer spoke).
///
/// CAF's BASP then runs unchanged over these connections: its handshake,
/// heartbeats and proxies. CAF's own I/O loop reads and writes their TLS
/// records (a scribe whose stream decrypts and encrypts in place of plain
/// `recv`/`send`), so a message crosses no other thread on its way. Until a
/// connection has passed the TLS handshake, no byte of it reaches CAF, so
/// no actor is reachable by a stranger.
///
/// The tunnel link a BASP connection runs over, from the address CAF gives
/// for a node's connection (`(get_atom, node_id)` to the middleman answers
/// `link:<id>` for connections of this transport); 0 for any other.
uint64_t link_of_address(const std::string& addr);

caf::io::middleman_actor spawn_secure_middleman(caf::actor_system& sys,
                                                std::shared_ptr<tls_tunnel> tunnel,
                                                log_fn log);

} // namespace troupe::cluster
