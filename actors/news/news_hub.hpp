#pragma once

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include <caf/actor.hpp>
#include <caf/actor_system.hpp>

#include "runtime/core/log.hpp"
#include "actors/news/article_store.hpp"

namespace troupe::news {

/// Hands one encoded message to the local subscribers of any of `channels`
/// (each subscriber gets it once): the WebSocket gateway's `publish`.
using publish_fn =
  std::function<void(const std::vector<std::string>& channels, std::shared_ptr<const std::string>)>;

/// The name under which a node's agent gives out its news hub to trusted
/// peers (`(group_atom, name)`; group names cannot start with '@').
constexpr const char* hub_service = "@news";

/// What a node's news hub needs.
struct hub_settings {
  std::string node;
  std::shared_ptr<article_store> store;
  publish_fn publish;
  /// The node agent: the hub subscribes to membership and asks each peer's
  /// agent for that peer's hub. Invalid on a standalone node.
  caf::actor agent;
  /// Where a node's cluster-view snapshot goes on this node (the gateway's
  /// `console_snapshot`); may be empty.
  std::function<void(const std::string& node, const std::string& json)> console;
  log_fn log;
};

/// Spawns a node's news hub: the one place where articles, reads and alerts
/// enter a node's news state, and the CAF path by which they reach every
/// other node (the middleman, never a home-made protocol).
///
/// - `(article_atom, article, relayed)`: adds the article to the window; if
///   it is new and breaking, pushes `{"type":"breaking","article":{...}}`
///   (encoded once) to `breaking:<category>` and `breaking:*`. A hub that
///   got it from Kafka (`relayed` false) sends it on to every peer hub.
/// - `(alert_push_atom, id, user, json, relayed)`: pushes
///   `{"type":"alert","alert":{...}}` to `alerts` and `alerts:<user>`, once
///   per id (Kafka may deliver twice), and relays it likewise.
/// - `(read_atom, article_id, relayed)`: counts a read for trending; relayed.
/// - `(console_atom, node, json, relayed)`: a node's part of the live page's
///   cluster view, handed to `console` and, from this node's console
///   (`relayed` false), relayed to every peer hub.
/// - `(window_atom)`: the window, for a peer hub that just joined, which
///   fills its own from it (without pushing anything).
caf::actor spawn_news_hub(caf::actor_system& sys, hub_settings settings);

/// The JSON pushed for a breaking article.
std::string breaking_json(const article& a);

} // namespace troupe::news
