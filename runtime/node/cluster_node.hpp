#pragma once

#include <atomic>
#include <memory>
#include <string>

#include <caf/actor.hpp>
#include <caf/actor_system.hpp>
#include <caf/expected.hpp>

#include "runtime/core/log.hpp"
#include "runtime/node/domain.hpp"
#include "topology/topology.hpp"

namespace troupe {

/// How one node of a cluster is started (`troupe node --config`).
struct cluster_node_options {
  topology::topology topo;
  /// This node's name in `topo`.
  std::string name;
  /// Kafka's bootstrap list and Redis's URL when they differ from the
  /// topology's (`troupe up`'s embedded ones); empty: the topology's.
  std::string kafka;
  std::string redis;
  log_fn log;
  /// The domains this build runs (`actors::domains()`).
  const domain_list* domains = nullptr;
};

/// One node of a cluster as one supervision tree, started in this order and
/// stopped in reverse (README "The supervision trees"):
///
/// ```
/// NODE.root                (rest_for_one: a child's crash restarts those after it)
/// ├── agent                membership, authentication, operator commands
/// ├── NODE.groups          dynamic supervisor: one child per hosted group
/// ├── placement            keeps NODE.groups equal to the placement plan
/// ├── NODE.routers         one_for_one: router/GROUP, a cluster router per group
/// └── NODE.services        one_for_one: collector, the domains' node services
///                          (news-hub, gateway-helper), http (the node's HTTP
///                          server: /metrics, /healthz, /ws and the domains' routes)
/// ```
///
/// Each child depends only on those before it, which is why the root is
/// `rest_for_one` (OTP's choice for such a chain): a restarted agent gives
/// the groups, placement, routers and services a new agent to talk to; a
/// restarted groups supervisor is re-planned by a new placement manager.
/// Every child is permanent. Past 5 restarts in 60 s the root gives up and
/// the node process exits with code 1, for `troupe up` (the process
/// supervisor) to start it again.
///
/// Owned by the thread that started it; `stop()` (or the destructor) stops
/// the tree in reverse start order and waits for it.
class cluster_node {
public:
  /// Starts the node: binds its cluster port and HTTP port (an error names
  /// what could not be bound), then the tree.
  static caf::expected<std::unique_ptr<cluster_node>> start(caf::actor_system& sys,
                                                           cluster_node_options opt);

  ~cluster_node();

  /// The root supervisor (monitor it: the node is lost when it ends).
  caf::actor root() const;

  /// The cluster router of `group` now (invalid for an unknown group).
  caf::actor router(const std::string& group) const;

  /// The HTTP port the node serves (0: none).
  uint16_t http_port() const;

  /// True once an operator asked this node to stop (`troupe shell stop`).
  bool halted() const;

  /// Stops the tree in reverse start order; returns once it is gone.
  void stop();

  struct state;

private:
  explicit cluster_node(std::shared_ptr<state> st);

  std::shared_ptr<state> st_;
};

} // namespace troupe
