#pragma once

#include <memory>
#include <mutex>
#include <string>

#include <caf/actor.hpp>
#include <caf/expected.hpp>

#include "actors/news/article_store.hpp"
#include "actors/news/window_service.hpp"
#include "actors/websocket_broadcaster/gateway.hpp"
#include "runtime/node/domain.hpp"

namespace troupe::ws {

/// The node directory's entry of the client token keeper, to which the
/// node's agent hands an operator's `token revoke`.
constexpr const char* client_tokens_service = "@client-tokens";

/// What every node of a cluster with a `websocket-broadcaster` group runs
/// for news personalisation and push, besides the group's workers: the
/// article window, the news hub, the WebSocket gateway (the node's `/ws`),
/// the gateway's helper, and the live page at `/`.
///
/// The node owns it from start to stop. Its actors are children of the
/// node's services supervisor: `news-hub`, `gateway-helper` and
/// `client-tokens` (revocations, expiries and idle clients without a token),
/// and `console` (the live page's cluster view and actions). A restarted
/// one is wired in again by its start function (the gateway's hub and
/// requester, the `@news` entry of the node's directory for peers' hubs);
/// the window and the gateway's clients live on.
class news_service : public news::window_service {
public:
  /// Builds the service of one node. The gateway's settings come from the
  /// first of `groups` (the topology's `websocket-broadcaster` groups).
  static caf::expected<std::shared_ptr<node_service>>
  make(const service_context& ctx, const std::vector<const topology::group_decl*>& groups);

  std::shared_ptr<news::article_store> articles() const override {
    return articles_;
  }
  std::shared_ptr<gateway> gw() const {
    return gateway_;
  }
  /// The news hub now (invalid while it restarts).
  caf::actor hub() const;

  // -- node_service ------------------------------------------------------------------
  std::vector<child_spec> children() override;
  http::response route(const std::string& target) const override;
  http::ws_handler* websocket() override;
  void limit(http::server_limits& limits) const override;
  void health(nlohmann::json& out) const override;
  /// `ranking`: each A/B variant's feeds, impressions and reads here.
  void report(nlohmann::json& out) const override;
  void metrics(troupe::metrics::exposition& out) const override;

private:
  news_service() = default;

  service_context ctx_;
  http::server_limits limits_;
  std::shared_ptr<news::article_store> articles_;
  std::shared_ptr<gateway> gateway_;
  mutable std::mutex mtx_;
  caf::actor hub_;
};

} // namespace troupe::ws
