#pragma once

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include <caf/actor.hpp>
#include <caf/actor_system.hpp>
#include <caf/expected.hpp>
#include <nlohmann/json_fwd.hpp>

#include "runtime/core/log.hpp"
#include "runtime/core/trace.hpp"
#include "runtime/group/group_spec.hpp"
#include "runtime/http/server.hpp"
#include "runtime/metrics/prometheus.hpp"
#include "runtime/node/node.hpp"
#include "runtime/supervision/spec.hpp"
#include "topology/topology.hpp"

namespace troupe {

// -- node services ------------------------------------------------------------------

/// A part a domain adds to every node of a cluster that declares a group of
/// that domain, whether or not the node hosts one of its instances: the news
/// window and hub, the WebSocket gateway. The node owns it from start to
/// stop; its actors run as children of the node's services supervisor
/// (`NODE.services`), started in order after the collector and before the
/// HTTP server, so a crashed one is restarted like any other actor.
///
/// The HTTP server calls `route`, `websocket`, `health` and `metrics` from
/// its I/O threads and the collector: they must be thread-safe.
class node_service {
public:
  virtual ~node_service() = default;

  /// The service's actors. Each start function must not block, and must
  /// re-wire whatever keeps the previous instance's handle (a restart).
  virtual std::vector<child_spec> children() = 0;

  /// An HTTP `GET` route of the node's server; status 0 means "not mine".
  virtual http::response route(const std::string& target) const;

  /// The node's WebSocket handler at `/ws` (null: the service has none).
  virtual http::ws_handler* websocket();

  /// Tightens the HTTP server's limits (send queue, message size).
  virtual void limit(http::server_limits& limits) const;

  /// Adds the service's figures to `/healthz`.
  virtual void health(nlohmann::json& out) const;

  /// Adds the service's figures to `/metrics`.
  virtual void metrics(troupe::metrics::exposition& out) const;

  /// Adds what operators read through the shell to the node's description
  /// (`node_info::report`), under the service's own key.
  virtual void report(nlohmann::json& out) const;
};

/// What a domain's node service is built with.
struct service_context {
  caf::actor_system* sys = nullptr;
  const topology::topology* topo = nullptr;
  const topology::node_spec* node = nullptr;
  /// The node's agent now (it changes when the agent restarts).
  std::function<caf::actor()> agent;
  /// The node's directory: routers of hosted groups, and `@name` services
  /// for peers to find.
  std::shared_ptr<group_directory> directory;
  /// Redis's URL (`redis://host:port`), as the node was started with it.
  std::string redis;
  log_fn log;
};

// -- domains ---------------------------------------------------------------------

/// What a domain's workers may need from the node that hosts them.
struct domain_context {
  /// The node's name, for logs.
  std::string node;
  /// Kafka's bootstrap list and Redis's URL (`redis://host:port`), as the
  /// node was started with them (the topology's, or `troupe up`'s embedded
  /// ones).
  std::string kafka;
  std::string redis;
  /// The node's span recorder (null: no tracing), and the share of new
  /// traces that are sampled (exported).
  std::shared_ptr<trace::tracer> tracer;
  double trace_sample = 0;
  /// The cluster-wide instance number of a group's worker `index` here.
  std::function<uint32_t(const std::string& group, size_t index)> instance_of;
  /// The tracer and instance numbers together, for a group's workers.
  trace::probe probe() const {
    return {tracer, instance_of};
  }
  /// The cluster's state directory on this host (the topology's
  /// `state_dir`, resolved): what must outlive the node's processes.
  std::string state_dir;
  /// The address through which this node reaches the group running
  /// `domain` anywhere in the cluster (its cluster router; a local group
  /// router on a standalone node). Invalid while there is none.
  std::function<caf::actor(const std::string& domain)> router_of;
  /// The node's log.
  log_fn log;
  /// A node service by name (null when the node runs none of that name).
  std::function<std::shared_ptr<node_service>(const std::string& name)> service_of;

  /// The node service `name` as a `T` (null when absent or of another type).
  template <class T>
  std::shared_ptr<T> service(const std::string& name) const {
    return service_of ? std::dynamic_pointer_cast<T>(service_of(name)) : nullptr;
  }
};

/// One domain Troupe can run as a group: everything the runtime needs to
/// know of it, registered once (`actors/domains.cpp`). Adding a domain
/// touches its own folder and one registration line.
struct domain {
  /// Its name, fallbacks and settings schema: the topology parser and
  /// `troupe check` validate every group of it against this.
  topology::domain_schema schema;
  /// Builds the domain's part of a group spec (its worker, fallback and
  /// limits) for `instances` instances on this node. The settings in
  /// `decl` are valid; an error means it cannot start here (a model that
  /// does not load). `build_group` adds the topology's supervision and
  /// routing settings.
  std::function<caf::expected<group_spec>(const topology::group_decl& decl, uint32_t instances,
                                          const domain_context& ctx)>
    make_group;
  /// The node service the domain contributes, by name (empty: none), and
  /// how to build it from the topology's groups of this domain.
  std::string service_name;
  std::function<caf::expected<std::shared_ptr<node_service>>(
    const service_context& ctx, const std::vector<const topology::group_decl*>& groups)>
    make_service;
};

/// Every registered domain, in a fixed order.
using domain_list = std::vector<domain>;

/// The schemas of `domains`, for `topology::parse`.
topology::domain_schemas schemas_of(const domain_list& domains);

/// The domain named `name`, or null.
const domain* find_domain(const domain_list& domains, const std::string& name);

/// The group spec of `decl` with `instances` instances on this node: the
/// domain's part (`domain::make_group`) with the supervision, routing and
/// restart settings the topology gives it. An error names a domain not in
/// `domains`, or one that cannot start here.
caf::expected<group_spec> build_group(const domain_list& domains, const topology::group_decl& decl,
                                      uint32_t instances, const domain_context& ctx);

} // namespace troupe
