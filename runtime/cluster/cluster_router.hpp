#pragma once

#include <memory>
#include <string>

#include <caf/actor.hpp>
#include <caf/actor_system.hpp>
#include <caf/expected.hpp>

#include "runtime/group/group_spec.hpp"
#include "runtime/node/node.hpp"
#include "topology/topology.hpp"

namespace troupe::cluster {

/// Spawns the cluster router of `group` on node `me`: the address that
/// callers on this node use for the group, wherever its instances run.
///
/// It keeps the placement plan of the live nodes (from `agent`'s membership
/// events) and routes each message to a node that hosts the group:
/// - `round_robin`: this node if it hosts instances (local first), else the
///   hosting nodes in turn;
/// - `key_hash`: the node that owns instance `key % instances`.
///
/// The message goes to that node's group router in an `envelope` (one CAF
/// request), and the cluster router keeps it until the `reply` comes back.
/// When a node is lost, or its router is stopped or replaced, everything
/// pending there is sent again under the new plan. That is at-least-once
/// across nodes: CAF 0.17.6 never fails a request whose remote receiver died,
/// so the router monitors the remote routers and acts on their down messages
/// and on `member_down`. A group no live node hosts answers by its fallback
/// (or `ec::group_down`), but only once this node sees a majority; before
/// that (joining, cut off), messages wait up to the call timeout; past `max_in_flight`,
/// `ec::group_saturated`; past `call_timeout`, the fallback or
/// `ec::call_timeout`. Fire-and-forget messages that cannot be taken are
/// kept as dead letters (`dead_letters_atom`).
///
/// `spec` gives the routing key, the fallback and the limits (the group's own
/// spec). `(routes_atom)` answers how many messages went to each node.
caf::expected<caf::actor> spawn_cluster_router(caf::actor_system& sys, topology::topology topo,
                                               std::string group, std::string me,
                                               caf::actor agent,
                                               std::shared_ptr<group_directory> local,
                                               group_spec spec);

} // namespace troupe::cluster
