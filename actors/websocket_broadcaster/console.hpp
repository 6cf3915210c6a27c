#pragma once

#include <functional>
#include <memory>
#include <string>

#include <caf/actor.hpp>
#include <caf/actor_system.hpp>

#include "actors/websocket_broadcaster/gateway.hpp"
#include "runtime/core/log.hpp"
#include "runtime/node/node.hpp"

namespace troupe::ws {

/// What a node's console needs.
struct console_settings {
  std::string node;
  /// The node's agent and news hub now (they change when they restart).
  std::function<caf::actor()> agent;
  std::function<caf::actor()> hub;
  /// The node's routers of the groups it hosts.
  std::shared_ptr<group_directory> directory;
  std::weak_ptr<gateway> gw;
  log_fn log;
};

/// A node's part of the live page's cluster view (the operator's console).
///
/// Every second, and at once when a member comes or goes or a node is
/// drained, it sends the node's snapshot to the node's news hub, which
/// hands it to its gateway and relays it to every peer hub (CAF's
/// middleman, as articles and alerts): so each node's gateway holds every
/// node's latest snapshot and pushes the whole view to operators on the
/// `cluster` channel. A snapshot is JSON:
/// `{"node","at","members":[{"name","state","since_ms"}],"groups":[{"name",
/// "instances","state","live_workers","accepted","completed","in_flight",
/// "dead_letters","fallbacks","worker_restarts","group_restarts","p99_ms",
/// "crashes":[{"child","when_ms","reason","action"}]}],"ws_connections",
/// "alerts_pushed","drained"}` (members as this node sees them).
///
/// It also runs the page's operator actions, `(console_command_atom,
/// session, request_id, who, from, action, target)` from its node's gateway
/// (only a local sender is obeyed): `drain NODE`, `undrain NODE`, `restart
/// GROUP` (terminated and started again under the groups supervisor of
/// every node that hosts it) and `kill GROUP/INSTANCE` (the worker of that
/// instance, wherever it runs), as the shell does them. A peer's part goes
/// to that peer's console (`console_exec_atom`, found through the peer's
/// agent as `@console`). Each answers the page (`{"type":"command","ok",
/// ...}`) and is recorded in the audit trail of the page's node
/// (`source=page`, who is the token's user).
caf::actor spawn_console(caf::actor_system& sys, console_settings cfg);

/// The node directory's entry of the console, by which a peer's console
/// asks for this node's part of a `restart` or `kill`.
constexpr const char* console_service = "@console";

} // namespace troupe::ws
