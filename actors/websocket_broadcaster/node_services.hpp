#pragma once

#include <functional>
#include <memory>
#include <string>

#include <caf/actor.hpp>
#include <caf/actor_system.hpp>
#include <caf/expected.hpp>

#include "runtime/core/log.hpp"
#include "actors/domain_context.hpp"
#include "actors/news/article_store.hpp"
#include "actors/websocket_broadcaster/gateway.hpp"
#include "runtime/http/server.hpp"
#include "runtime/metrics/prometheus.hpp"
#include "runtime/node/node.hpp"
#include "topology/topology.hpp"

namespace troupe::ws {

/// What one node runs for the news groups besides their workers: the
/// article window, the news hub, the WebSocket gateway, and the node's HTTP
/// server on `http_port` (`/` the live page, `/healthz`, `/ws`, plus the
/// routes the node adds). Built by `make()`; the destructor closes the
/// server (and so every client), then stops the hub.
class node_services {
public:
  /// Extra `GET` routes, tried before the built-in ones; an empty body with
  /// status 0 means "not mine".
  using route_fn = http::route_fn;

  /// Builds the services of node `node` of `topo`. The gateway's settings
  /// come from the first `websocket-broadcaster` group of the topology.
  /// `agent` may be invalid (a standalone node); `directory` receives the
  /// hub as `@news`, for peers' hubs to find it.
  static caf::expected<std::unique_ptr<node_services>>
  make(caf::actor_system& sys, const topology::topology& topo, const topology::node_spec& node,
       const caf::actor& agent, std::shared_ptr<group_directory> directory,
       log_fn log, route_fn extra_routes = {});

  ~node_services();

  /// Fills the news parts of a domain context.
  void fill(actors::domain_context& ctx) const;

  std::shared_ptr<news::article_store> articles() const {
    return articles_;
  }
  std::shared_ptr<gateway> gw() const {
    return gateway_;
  }
  caf::actor hub() const {
    return hub_;
  }
  /// The HTTP server's port (0: none).
  uint16_t http_port() const;
  /// Adds the figures of the gateway, the HTTP server and the article
  /// window to a node's `/metrics`.
  void metrics(troupe::metrics::exposition& e) const;

private:
  node_services() = default;

  std::string node_;
  std::shared_ptr<group_directory> directory_;
  std::shared_ptr<news::article_store> articles_;
  std::shared_ptr<gateway> gateway_;
  caf::actor hub_;
  /// The gateway's helper: wakes it when its grace after a detach is over,
  /// and asks workers for feeds.
  caf::actor helper_;
  std::unique_ptr<http::server> server_;
};

} // namespace troupe::ws
