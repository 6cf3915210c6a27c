#pragma once

#include <functional>
#include <memory>
#include <string>

#include <caf/actor.hpp>
#include <caf/timespan.hpp>

#include "runtime/core/log.hpp"
#include "actors/websocket_broadcaster/gateway.hpp"
#include "runtime/group/group_spec.hpp"
#include "runtime/node/domain.hpp"

namespace troupe::ws {

/// Settings of the `websocket-broadcaster` group.
struct broadcaster_settings {
  std::string kafka;
  std::string articles_topic = "articles";
  std::string alerts_topic = "fraud-alerts";
  std::string dead_letter_topic = "dead-letters";
  /// The consumer group every instance of the cluster joins.
  std::string consumer_group = "troupe.websocket-broadcaster";
  /// The node's gateway (invalid: this node serves no WebSockets) and its
  /// news hub.
  std::shared_ptr<gateway> gw;
  std::function<caf::actor()> hub;
  /// The cluster router of a domain (`ranker`).
  std::function<caf::actor(const std::string&)> router_of;
  /// How far in the future an article may be dated (clock skew between its
  /// source and this node); later ones are dead-lettered.
  caf::timespan max_future_skew = std::chrono::minutes(5);
  log_fn log;
};

/// The `websocket-broadcaster` group. Each worker:
/// - attaches to its node's WebSocket gateway (which takes clients while
///   one is attached) and answers the feed requests of the gateway's
///   requester by delegating them to the `ranker` group's cluster router
///   (so a down ranker answers with its `trending` fallback);
/// - runs, linked to it, a detached reader in the Kafka consumer group
///   `consumer_group` on the articles and alerts topics: Kafka spreads the
///   partitions over the instances of the whole cluster. Each article is
///   checked (`parse_article`); a bad one goes to the dead-letter topic with
///   its reason. Good articles and alerts go to the node's news hub, which
///   relays them to every node's hub and so to every node's subscribers.
///   Offsets are committed once the hub has them.
group_spec make_group(const std::string& name, size_t instances, broadcaster_settings settings);

/// The `websocket-broadcaster` domain's registration (actors/domains.cpp): its settings
/// schema and group factory.
troupe::domain domain_entry();

} // namespace troupe::ws
