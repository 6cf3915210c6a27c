#pragma once

#include <functional>
#include <memory>
#include <string>

#include <caf/actor.hpp>
#include <caf/actor_system.hpp>
#include <caf/expected.hpp>

#include "runtime/cluster/node_agent.hpp"
#include "runtime/group/group_spec.hpp"
#include "runtime/node/node.hpp"
#include "topology/topology.hpp"

namespace troupe::cluster {

/// Builds the spec of group `decl` with `instances` instances on this node,
/// or an error for a domain this build cannot run (runtime/node/domain.hpp).
using group_factory =
  std::function<caf::expected<group_spec>(const topology::group_decl& decl, uint32_t instances)>;

/// Spawns the placement manager of node `me`: it keeps the groups this node
/// hosts equal to the placement plan of the live nodes.
///
/// Lifecycle: it subscribes to `agent`'s membership events and, on each,
/// recomputes `topology::place()` for the live nodes. A group whose share on
/// this node changed is stopped and started again with its new instances
/// under `groups` (a dynamic supervisor); callers find the current router in
/// `directory`. A node that sees no majority of the cluster (itself
/// included) hosts nothing until it does again, so a node cut off or frozen
/// never keeps instances the majority has moved elsewhere (Akka's
/// keep-majority rule).
///
/// Before it starts an instance, it claims it: every live peer is asked
/// whether it runs or is claiming that instance, and whether it sees the
/// instance's home node down. It starts the instance only when no peer holds
/// it and, for an instance away from home, a majority of all nodes sees the
/// home down; two claimants yield to the home node, else to the lower name.
/// Unconfirmed claims are retried every heartbeat interval. So two nodes whose
/// views differ for a moment (n1 sees {n1, n2}, n3 sees {n2, n3}) never both
/// run an instance: n2 answers for n3. Instances that are no longer ours stop
/// at once. Each change is logged: `hosting echo: #0, #2 (moved)`.
///
/// For its first `startup_grace()` a manager leaves a node it has not seen up
/// yet its instances (they wait for it) instead of moving them at once:
/// nodes started together join within moments of each other, and moving a
/// late one's instances away and back would restart those groups, and
/// rebalance their Kafka consumer groups, for nothing. Past it, a node still
/// not seen is treated as lost (logged `not seen since start: n3`).
/// How long a placement manager waits, from its start, for nodes it has
/// not seen up before moving their instances: 4 failure timeouts (2 s with
/// the default 500 ms).
caf::timespan startup_grace(const topology::topology& topo);

caf::expected<caf::actor> spawn_placement_manager(caf::actor_system& sys, topology::topology topo,
                                                  std::string me, caf::actor agent,
                                                  caf::actor groups, group_factory factory,
                                                  std::shared_ptr<group_directory> directory,
                                                  log_fn log);

} // namespace troupe::cluster
