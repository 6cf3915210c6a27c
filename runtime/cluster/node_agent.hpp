#pragma once

#include <functional>
#include <map>
#include <string>

#include <caf/actor.hpp>
#include <caf/actor_system.hpp>
#include <caf/expected.hpp>

#include "runtime/core/log.hpp"
#include "runtime/core/messages.hpp"
#include "runtime/node/node.hpp"
#include "topology/topology.hpp"

namespace troupe::cluster {

/// Where to dial a peer instead of its `host:cluster_port` (node name ->
/// host, port): the local ends of the TLS tunnel.
using dial_map = std::map<std::string, std::pair<std::string, uint16_t>>;

/// Spawns the node agent of node `self_name` of topology `topo`.
///
/// Lifecycle: the caller publishes the agent on the node's cluster port
/// (`publish()`); the agent then connects to every peer of the topology
/// through the middleman (never blocking a scheduler thread), retries each
/// heartbeat interval until it reaches it, and runs the challenge both ways:
/// a peer is `up` only when it accepted our proof and proved itself to us.
/// A peer is lost when its agent's proxy goes down: a killed process closes
/// the connection at once, a frozen one misses the middleman's heartbeats
/// (configured from the topology on both ends) for `failure_timeout`. Lost
/// peers are retried, so a returning node rejoins by itself.
///
/// Unauthenticated remote senders reach only `hello_atom` and `auth_atom`;
/// their refusals are logged. Local actors may ask `members_atom` and
/// `subscribe_atom`, and name the placement manager (`manager_atom`) to which
/// the agent forwards trusted peers' `claim_atom` requests.
/// `directory` holds the routers of the groups this node hosts: trusted
/// peers ask for one with `(group_atom, name)`. `dial` replaces the address
/// dialled for some peers (the TLS tunnel's local ends).
///
/// `describe_node` gives what the node is for operators (its supervisors,
/// HTTP port, Kafka and Redis; the agent adds its name, groups and
/// decisions) at each `node_info_atom`; without it, what a local
/// `(node_info_atom, node_info)` last said. `on_halt` runs once when an
/// operator stops the node (`halt_atom`); without it, the agent itself
/// exits with `ec::stopped_by_operator`.
caf::expected<caf::actor> spawn_node_agent(caf::actor_system& sys, topology::topology topo,
                                           std::string self_name,
                                           std::shared_ptr<group_directory> directory,
                                           log_fn log, dial_map dial = {},
                                           std::function<node_info()> describe_node = {},
                                           std::function<void()> on_halt = {});

/// Publishes `agent` on the node's host and cluster port (binding only that
/// host). Blocks the calling thread until bound: call it from `main`, not
/// from an actor.
caf::error publish(caf::actor_system& sys, const caf::actor& agent,
                   const topology::node_spec& node);

/// With `[cluster.tls]`: publishes `agent` on 127.0.0.1 and an ephemeral
/// port, for the TLS tunnel (`tls_tunnel.hpp`) to relay to; returns the port.
caf::expected<uint16_t> publish_on_loopback(caf::actor_system& sys, const caf::actor& agent);

/// Configures a node's actor system from the topology: the middleman's
/// heartbeat and connection timeout, and `node.threads` scheduler threads
/// when set (`config` already chose one per core).
/// Call on the configuration before the actor system starts.
void configure_system(caf::actor_system_config& cfg, const topology::cluster_settings& c,
                      const topology::node_spec& node);

} // namespace troupe::cluster
