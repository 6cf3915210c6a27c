#include "actors/websocket_broadcaster/news_service.hpp"

#include <sstream>

#include <caf/all.hpp>
#include <nlohmann/json.hpp>

#include "actors/news/news_hub.hpp"
#include "actors/websocket_broadcaster/console.hpp"
#include "actors/websocket_broadcaster/page_html.hpp"
#include "runtime/cluster/auth.hpp"
#include "runtime/core/duration.hpp"
#include "runtime/core/error.hpp"
#include "runtime/redis/connection.hpp"

namespace troupe::ws {

namespace {

/// Internal: the gateway's grace after its last worker stopped is over.
using grace_over_atom = caf::atom_constant<caf::atom("graceover")>;

/// The gateway's helper actor: its grace timer, and its feed requester.
struct helper_state {
  static inline const char* name = "troupe.gateway_helper";
  caf::stateful_actor<helper_state>* self = nullptr;
  std::weak_ptr<gateway> gw;
  caf::timespan timeout{};

  /// Asks a worker for `user`'s feed and answers `session`. A worker that
  /// stops with the request in its mailbox (its group moved away, or
  /// restarts) bounces it: the request goes to another worker, at most three
  /// tries, all within `left`.
  void ask(uint64_t session, std::string rid, std::string user, uint32_t k, int tries,
           caf::timespan left) {
    auto g = gw.lock();
    if (!g)
      return;
    auto answer = [g, session](std::string json) {
      g->answer(session, std::make_shared<const std::string>(std::move(json)));
    };
    auto worker = g->pick_worker();
    if (!worker) {
      answer(gateway::error_json(
        "unavailable", "no websocket-broadcaster instance runs on this node now", rid));
      return;
    }
    auto start = std::chrono::steady_clock::now();
    self->request(worker, left, feed_atom::value, user, k)
      .then(
        [g, session, answer, rid](feed& f) {
          g->shown(session, f);
          answer(feed_json(f, rid));
        },
            [=](caf::error& err) {
              auto spent = std::chrono::duration_cast<caf::timespan>(
                std::chrono::steady_clock::now() - start);
              if (err == caf::sec::request_receiver_down && tries < 3 && spent < left) {
                ask(session, rid, user, k, tries + 1, left - spent);
                return;
              }
              answer(gateway::error_json("feed_failed", render(err), rid));
            });
  }
};

caf::behavior gateway_helper(caf::stateful_actor<helper_state>* self, std::weak_ptr<gateway> gw,
                             caf::timespan timeout) {
  self->state.self = self;
  self->state.gw = std::move(gw);
  self->state.timeout = timeout;
  return {
    [self](grace_over_atom) {
      if (auto g = self->state.gw.lock())
        g->close_if_detached();
    },
    [self](feed_atom, uint64_t session, std::string& rid, std::string& user, uint32_t k) {
      self->state.ask(session, std::move(rid), std::move(user), k, 1, self->state.timeout);
    },
  };
}

/// The Redis hash of revocations: user -> tokens issued at or before this
/// second are refused. Shared by the cluster's nodes.
constexpr const char* revocations_key = "troupe:revoked-client-tokens";

/// The node's client token keeper (detached: it waits on Redis). Every
/// second it reads the cluster's revocations into the gateway and sweeps
/// the gateway's clients; `(revoke_atom, user)` from the node's agent
/// stores a revocation.
struct keeper_state {
  static inline const char* name = "troupe.client_tokens";
  std::weak_ptr<gateway> gw;
  std::string redis_url;
  std::unique_ptr<redis::connection> conn;
  bool reported_down = false;
  log_fn log;

  /// A live connection, or null (logged once per outage).
  redis::connection* connection() {
    if (conn && conn->alive())
      return conn.get();
    conn.reset();
    auto c = redis::connection::make(redis_url, std::chrono::seconds(1), "client-tokens");
    if (!c) {
      if (!reported_down)
        log.warning("client tokens: cannot read revocations from Redis (" + render(c.error())
                    + "); the ones known here still hold");
      reported_down = true;
      return nullptr;
    }
    if (reported_down)
      log("client tokens: Redis reachable again");
    reported_down = false;
    conn = std::move(*c);
    return conn.get();
  }

  void refresh() {
    auto g = gw.lock();
    if (!g)
      return;
    if (auto c = redis_url.empty() ? nullptr : connection()) {
      if (auto r = c->command({"HGETALL", revocations_key});
          r && r->kind == redis::reply::array) {
        std::unordered_map<std::string, int64_t> revoked;
        std::vector<std::string> stale;
        auto oldest = unix_ms() / 1000 - cluster::max_client_token_ttl_s;
        for (size_t i = 0; i + 1 < r->elements.size(); i += 2) {
          int64_t at = std::strtoll(r->elements[i + 1].text.c_str(), nullptr, 10);
          // Every token issued before it has expired by now.
          if (at < oldest)
            stale.push_back(r->elements[i].text);
          else
            revoked[r->elements[i].text] = at;
        }
        g->set_revocations(revoked);
        if (!stale.empty()) {
          std::vector<std::string> cmd{"HDEL", revocations_key};
          cmd.insert(cmd.end(), stale.begin(), stale.end());
          c->command(cmd);
        }
      }
    }
    g->sweep();
  }
};

caf::behavior client_token_keeper(caf::stateful_actor<keeper_state>* self,
                                  std::weak_ptr<gateway> gw, std::string redis_url, log_fn log) {
  self->state.gw = std::move(gw);
  self->state.redis_url = std::move(redis_url);
  self->state.log = std::move(log);
  self->send(self, sweep_atom::value);
  return {
    [self](sweep_atom) {
      self->state.refresh();
      self->delayed_send(self, std::chrono::seconds(1), sweep_atom::value);
    },
    [self](revoke_atom, const std::string& user) -> caf::result<int64_t> {
      // From this node's agent only, which checked the operator.
      auto& sender = self->current_sender();
      if (!sender || sender->node() != self->node())
        return caf::make_error(ec::not_authenticated);
      if (user.empty() || user.size() > 128)
        return caf::make_error(ec::invalid_argument, std::string{"a user id has 1 to 128 bytes"});
      auto at = unix_ms() / 1000;
      auto c = self->state.redis_url.empty() ? nullptr : self->state.connection();
      if (!c)
        return caf::make_error(ec::store_unavailable,
                               std::string{"Redis is unreachable: the revocation is not stored"});
      auto r = c->command({"HSET", revocations_key, user, std::to_string(at)});
      if (!r || r->kind == redis::reply::error)
        return caf::make_error(ec::store_unavailable,
                               "the revocation is not stored: "
                                 + (r ? r->text : render(r.error())));
      if (auto g = self->state.gw.lock()) {
        g->revoke(user, at);
        g->sweep();
      }
      self->state.log("client tokens of " + user + " issued up to "
                      + std::to_string(at) + " revoked");
      return at;
    },
  };
}

} // namespace

caf::expected<std::shared_ptr<node_service>>
news_service::make(const service_context& ctx,
                   const std::vector<const topology::group_decl*>& groups) {
  std::shared_ptr<news_service> ptr{new news_service};
  ptr->ctx_ = ctx;
  ptr->articles_ = std::make_shared<news::article_store>();
  gateway_settings gs;
  gs.cluster = ctx.topo->cluster.name;
  gs.node = ctx.node->name;
  auto key = cluster::load_client_token_key(ctx.topo->cluster.client_token_key_file,
                                            ctx.topo->cluster.client_token_key_generated);
  if (!key)
    return key.error();
  gs.token_key = std::move(*key);
  gs.log = ctx.log;
  if (!groups.empty()) {
    // The schema checked every value; the first group's settings hold.
    auto& g = *groups.front();
    gs.unauthenticated_idle = topology::duration(g, "unauthenticated_idle_timeout");
    gs.rate = topology::number(g, "rate_limit");
    gs.burst = 2 * gs.rate;
    ptr->limits_.send_queue = static_cast<size_t>(topology::number(g, "send_queue"));
    ptr->limits_.max_message = static_cast<size_t>(topology::number(g, "max_message"));
    ptr->limits_.max_connections = static_cast<size_t>(topology::number(g, "max_connections"));
    ptr->limits_.max_connections_per_address =
      static_cast<size_t>(topology::number(g, "max_connections_per_address"));
  }
  ptr->gateway_ = std::make_shared<gateway>(gs);
  ptr->gateway_->set_store(ptr->articles_);
  return std::shared_ptr<node_service>{std::move(ptr)};
}

caf::actor news_service::hub() const {
  std::lock_guard<std::mutex> guard{mtx_};
  return hub_;
}

std::vector<child_spec> news_service::children() {
  std::vector<child_spec> result;
  // The hub: relays articles, reads and alerts between the nodes' hubs and
  // pushes them to this node's gateway.
  child_spec hub;
  hub.name = "news-hub";
  hub.start = [this](caf::actor_system& sys) -> caf::expected<caf::actor> {
    news::hub_settings hs;
    hs.node = ctx_.node->name;
    hs.store = articles_;
    hs.publish = [gw = gateway_](const std::vector<std::string>& channels,
                                 std::shared_ptr<const std::string> msg) {
      gw->publish(channels, std::move(msg));
    };
    hs.agent = ctx_.agent();
    hs.console = [gw = gateway_](const std::string& node, const std::string& json) {
      gw->console_snapshot(node, json);
    };
    hs.log = ctx_.log;
    auto h = news::spawn_news_hub(sys, hs);
    {
      std::lock_guard<std::mutex> guard{mtx_};
      hub_ = h;
    }
    gateway_->set_hub(h);
    if (ctx_.directory)
      ctx_.directory->put(news::hub_service, h);
    return h;
  };
  result.push_back(std::move(hub));
  // The gateway's helper: its grace timer and its feed requester.
  child_spec helper;
  helper.name = "gateway-helper";
  helper.start = [this](caf::actor_system& sys) -> caf::expected<caf::actor> {
    auto h = sys.spawn(gateway_helper, std::weak_ptr<gateway>(gateway_),
                       gateway_settings{}.feed_timeout);
    gateway_->set_requester(h);
    gateway_->set_timer([h](caf::timespan after) {
      caf::delayed_anon_send(h, after, grace_over_atom::value);
    });
    return h;
  };
  result.push_back(std::move(helper));
  // The client token keeper: revocations and the clients' sweep.
  child_spec keeper;
  keeper.name = "client-tokens";
  keeper.start = [this](caf::actor_system& sys) -> caf::expected<caf::actor> {
    auto k = sys.spawn<caf::detached>(client_token_keeper, std::weak_ptr<gateway>(gateway_),
                                      ctx_.redis, ctx_.log);
    if (ctx_.directory)
      ctx_.directory->put(client_tokens_service, k);
    return k;
  };
  result.push_back(std::move(keeper));
  // The console: this node's part of the live page's cluster view, and the
  // operators' actions from the page.
  child_spec console;
  console.name = "console";
  console.start = [this](caf::actor_system& sys) -> caf::expected<caf::actor> {
    console_settings cs;
    cs.node = ctx_.node->name;
    cs.agent = ctx_.agent;
    cs.hub = [this] { return this->hub(); };
    cs.directory = ctx_.directory;
    cs.gw = gateway_;
    cs.log = ctx_.log;
    auto c = spawn_console(sys, std::move(cs));
    if (ctx_.directory)
      ctx_.directory->put(console_service, c);
    // The gateway runs on I/O threads: it asks through a local actor made
    // for the one message, so the console sees a sender of its own process.
    gateway_->set_console([&sys, c](uint64_t session, const std::string& rid,
                                    const std::string& who, const std::string& from,
                                    const std::string& action, const std::string& target) {
      caf::scoped_actor tmp{sys};
      tmp->send(c, console_command_atom::value, session, rid, who, from, action, target);
    });
    return c;
  };
  result.push_back(std::move(console));
  return result;
}

http::response news_service::route(const std::string& target) const {
  auto path = target.substr(0, target.find('?'));
  if (path == "/" || path == "/index.html")
    return {200, "text/html; charset=utf-8", page_html};
  return {0, "", ""};
}

http::ws_handler* news_service::websocket() {
  return gateway_.get();
}

void news_service::limit(http::server_limits& limits) const {
  limits.send_queue = limits_.send_queue;
  limits.max_message = limits_.max_message;
  limits.max_connections = limits_.max_connections;
  limits.max_connections_per_address = limits_.max_connections_per_address;
}

void news_service::health(nlohmann::json& out) const {
  std::string why;
  out["websocket"] = gateway_->accepting(why);
  out["clients"] = gateway_->clients();
  out["articles"] = articles_->size();
}

void news_service::report(nlohmann::json& out) const {
  auto& r = out["ranking"] = nlohmann::json::object();
  for (auto& [name, v] : gateway_->variants())
    r[name] = {{"feeds", v.feeds}, {"impressions", v.impressions}, {"reads", v.reads}};
}

void news_service::metrics(troupe::metrics::exposition& e) const {
  troupe::metrics::labels node{{"node", ctx_.node->name}};
  auto n = [](const std::atomic<uint64_t>& x) {
    return static_cast<double>(x.load(std::memory_order_relaxed));
  };
  e.gauge("troupe_articles_window", "Articles in this node's window (ranking candidates).", node,
          static_cast<double>(articles_->size()));
  auto& gc = gateway_->counters();
  e.gauge("troupe_ws_connections", "WebSocket clients connected to this node now.", node,
          static_cast<double>(gateway_->clients()));
  e.counter("troupe_ws_requests_total", "WebSocket requests (ops) received.", node,
            n(gc.requests));
  e.counter("troupe_ws_errors_total", "WebSocket requests answered with an error.", node,
            n(gc.errors));
  e.counter("troupe_ws_rate_limited_total", "WebSocket requests refused by the rate limit.",
            node, n(gc.rate_limited));
  e.counter("troupe_ws_feeds_total", "Feed requests sent on to the ranker.", node, n(gc.feeds));
  e.counter("troupe_ws_auth_failures_total",
            "WebSocket authentications refused (bad, expired or revoked tokens, tokens in URLs).",
            node, n(gc.auth_failures));
  troupe::metrics::labels expired{{"node", ctx_.node->name}, {"reason", "token_expired"}};
  troupe::metrics::labels revoked{{"node", ctx_.node->name}, {"reason", "token_revoked"}};
  troupe::metrics::labels idle{{"node", ctx_.node->name}, {"reason", "idle_without_token"}};
  e.counter("troupe_ws_closed_by_policy_total", "WebSocket clients closed by the gateway's sweep.",
            expired, n(gc.expired));
  e.counter("troupe_ws_closed_by_policy_total", "WebSocket clients closed by the gateway's sweep.",
            revoked, n(gc.revoked));
  e.counter("troupe_ws_closed_by_policy_total", "WebSocket clients closed by the gateway's sweep.",
            idle, n(gc.idle_closed));
  e.counter("troupe_ws_pushes_total", "Breaking news and alerts pushed (one per publish).", node,
            n(gc.pushes));
  for (auto& [name, v] : gateway_->variants()) {
    troupe::metrics::labels l{{"node", ctx_.node->name}, {"variant", name}};
    e.counter("troupe_ranking_feeds_total", "Personalised feeds answered, by A/B variant.", l,
              static_cast<double>(v.feeds));
    e.counter("troupe_ranking_impressions_total",
              "Articles shown in personalised feeds, by A/B variant.", l,
              static_cast<double>(v.impressions));
    e.counter("troupe_ranking_reads_total",
              "Reads of shown articles by the user they were shown to, by A/B variant "
              "(click-through: reads / impressions).",
              l, static_cast<double>(v.reads));
  }
}

} // namespace troupe::ws
