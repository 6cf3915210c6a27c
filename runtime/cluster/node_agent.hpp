#pragma once

#include <functional>
#include <map>
#include <memory>
#include <string>

#include <caf/actor.hpp>
#include <caf/actor_system.hpp>
#include <caf/expected.hpp>
#include <caf/io/middleman_actor.hpp>

#include "runtime/cluster/audit.hpp"
#include "runtime/core/log.hpp"
#include "runtime/core/messages.hpp"
#include "runtime/node/node.hpp"
#include "topology/topology.hpp"

namespace troupe::cluster {

class tls_tunnel;

/// CAF's connection timeout, in failure timeouts: a link silent this long
/// is closed even while other members still hear its peer (the node agent
/// closes a silent link after one failure timeout when none does).
constexpr int link_silence_bound = 4;

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
/// peers ask for one with `(group_atom, name)`. `transport` is the
/// middleman actor peers are dialled through (`secure_transport.hpp`; CAF's
/// own when invalid).
///
/// `describe_node` gives what the node is for operators (its supervisors,
/// HTTP port, Kafka and Redis; the agent adds its name, groups and
/// decisions) at each `node_info_atom`; without it, what a local
/// `(node_info_atom, node_info)` last said. `on_halt` runs once when an
/// operator stops the node (`halt_atom`); without it, the agent itself
/// exits with `ec::stopped_by_operator`. `audit` gets every operator
/// command the agent executes (drain, scale, log level, stop, token
/// revoke) and every command an operator's shell reports
/// (`(audit_atom, command, ok, result)`); without it, they are only logged.
caf::expected<caf::actor> spawn_node_agent(caf::actor_system& sys, topology::topology topo,
                                           std::string self_name,
                                           std::shared_ptr<group_directory> directory,
                                           log_fn log,
                                           caf::io::middleman_actor transport = {},
                                           std::function<node_info()> describe_node = {},
                                           std::function<void()> on_halt = {},
                                           std::function<void(audit_entry)> audit = {},
                                           std::shared_ptr<tls_tunnel> tunnel = {});

/// Configures a node's actor system from the topology: the middleman's
/// heartbeat and connection timeout, and `node.threads` scheduler threads
/// when set (`config` already chose one per core).
/// Call on the configuration before the actor system starts.
void configure_system(caf::actor_system_config& cfg, const topology::cluster_settings& c,
                      const topology::node_spec& node);

} // namespace troupe::cluster
