#pragma once

#include <functional>
#include <memory>
#include <string>

#include <caf/actor.hpp>

#include "runtime/core/log.hpp"

namespace troupe::news {
class article_store;
} // namespace troupe::news

namespace troupe::ws {
class gateway;
} // namespace troupe::ws

namespace troupe::actors {

/// What a domain's workers may need from the node that hosts them.
struct domain_context {
  /// The node's name, for logs.
  std::string node;
  /// Kafka's bootstrap list and Redis's URL (`redis://host:port`), as the
  /// node was started with them (the topology's, or `troupe up`'s embedded
  /// ones).
  std::string kafka;
  std::string redis;
  /// The address through which this node reaches the group running
  /// `domain` anywhere in the cluster (its cluster router; a local group
  /// router on a standalone node). Invalid while there is none.
  std::function<caf::actor(const std::string& domain)> router_of;
  /// One log line; the node prefixes its name.
  log_fn log;
  /// The node's window of recent articles (ranker candidates, trending).
  std::shared_ptr<news::article_store> articles;
  /// The node's WebSocket gateway (null: the node serves no HTTP port).
  std::shared_ptr<ws::gateway> gateway;
  /// The node's news hub.
  std::function<caf::actor()> hub;
};

} // namespace troupe::actors
