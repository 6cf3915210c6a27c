#include "actors/websocket_broadcaster/node_services.hpp"

#include <sstream>

#include <caf/all.hpp>
#include <nlohmann/json.hpp>

#include "actors/news/news_hub.hpp"
#include "actors/websocket_broadcaster/page_html.hpp"
#include "runtime/core/error.hpp"

namespace troupe::ws {

namespace {

/// Internal: the gateway's grace after its last worker stopped is over.
using grace_over_atom = caf::atom_constant<caf::atom("graceover")>;

caf::error bad_setting(const topology::group_decl& g, const std::string& key,
                       const std::string& problem) {
  return caf::make_error(ec::invalid_argument,
                         "group " + g.name + ": " + key + " " + problem);
}

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
      .then([answer, rid](feed& f) { answer(feed_json(f, rid)); },
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

} // namespace

caf::expected<std::unique_ptr<node_services>>
node_services::make(caf::actor_system& sys, const topology::topology& topo,
                    const topology::node_spec& node, const caf::actor& agent,
                    std::shared_ptr<group_directory> directory,
                    log_fn log, route_fn extra_routes) {
  std::unique_ptr<node_services> ptr{new node_services};
  ptr->node_ = node.name;
  ptr->directory_ = directory;
  ptr->articles_ = std::make_shared<news::article_store>();
  gateway_settings gs;
  gs.cluster = topo.cluster.name;
  gs.secret = topo.cluster.secret;
  gs.log = log;
  http::server_limits limits;
  for (auto& g : topo.groups) {
    if (g.domain != "websocket-broadcaster")
      continue;
    gs.operators.clear();
    std::stringstream list{topology::setting(g, "operators")};
    for (std::string name; std::getline(list, name, ',');)
      if (!name.empty())
        gs.operators.insert(name);
    auto rate = topology::number(g, "rate_limit");
    if (!rate)
      return rate.error();
    if (*rate <= 0)
      return bad_setting(g, "rate_limit", "must be positive");
    gs.rate = *rate;
    gs.burst = 2 * *rate;
    auto queue = topology::number(g, "send_queue");
    if (!queue)
      return queue.error();
    if (*queue < 1)
      return bad_setting(g, "send_queue", "must be at least 1");
    limits.send_queue = static_cast<size_t>(*queue);
    auto max = topology::number(g, "max_message");
    if (!max)
      return max.error();
    if (*max < 256)
      return bad_setting(g, "max_message", "must be at least 256 bytes");
    limits.max_message = static_cast<size_t>(*max);
    break;
  }
  ptr->gateway_ = std::make_shared<gateway>(gs);
  ptr->helper_ = sys.spawn(gateway_helper, std::weak_ptr<gateway>(ptr->gateway_), gs.feed_timeout);
  ptr->gateway_->set_requester(ptr->helper_);
  ptr->gateway_->set_timer([timer = ptr->helper_](caf::timespan after) {
    caf::delayed_anon_send(timer, after, grace_over_atom::value);
  });
  news::hub_settings hs;
  hs.node = node.name;
  hs.store = ptr->articles_;
  hs.publish = [gw = ptr->gateway_](const std::vector<std::string>& channels,
                                    std::shared_ptr<const std::string> msg) {
    gw->publish(channels, std::move(msg));
  };
  hs.agent = agent;
  hs.log = log;
  ptr->hub_ = news::spawn_news_hub(sys, hs);
  ptr->gateway_->set_hub(ptr->hub_);
  ptr->gateway_->set_store(ptr->articles_);
  if (directory)
    directory->put(news::hub_service, ptr->hub_);
  if (node.http_port == 0)
    return ptr;
  auto* self = ptr.get();
  auto routes = [self, extra_routes](const std::string& target) -> http::response {
    if (extra_routes) {
      auto r = extra_routes(target);
      if (r.status != 0)
        return r;
    }
    auto path = target.substr(0, target.find('?'));
    if (path == "/" || path == "/index.html")
      return {200, "text/html; charset=utf-8", page_html};
    if (path == "/healthz") {
      std::string why;
      nlohmann::json groups = nlohmann::json::array();
      if (self->directory_)
        for (auto& name : self->directory_->names())
          if (name[0] != '@')
            groups.push_back(name);
      nlohmann::json j{{"node", self->node_},
                       {"status", "ok"},
                       {"websocket", self->gateway_->accepting(why)},
                       {"clients", self->gateway_->clients()},
                       {"articles", self->articles_->size()},
                       {"groups", groups}};
      return {200, "application/json", j.dump() + "\n"};
    }
    return {404, "text/plain; charset=utf-8", "not found: " + path + "\n"};
  };
  auto srv = http::server::make(node.host, node.http_port, 2, routes, ptr->gateway_.get(), limits);
  if (!srv) {
    caf::anon_send_exit(ptr->hub_, caf::exit_reason::user_shutdown);
    caf::anon_send_exit(ptr->helper_, caf::exit_reason::user_shutdown);
    return srv.error();
  }
  ptr->server_ = std::move(*srv);
  return ptr;
}

node_services::~node_services() {
  server_.reset();
  if (hub_)
    caf::anon_send_exit(hub_, caf::exit_reason::user_shutdown);
  if (helper_)
    caf::anon_send_exit(helper_, caf::exit_reason::user_shutdown);
}

void node_services::fill(actors::domain_context& ctx) const {
  ctx.articles = articles_;
  ctx.gateway = gateway_;
  ctx.hub = [hub = hub_] { return hub; };
}

uint16_t node_services::http_port() const {
  return server_ ? server_->port() : 0;
}

void node_services::metrics(troupe::metrics::exposition& e) const {
  troupe::metrics::labels node{{"node", node_}};
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
  e.counter("troupe_ws_pushes_total", "Breaking news and alerts pushed (one per publish).", node,
            n(gc.pushes));
  if (!server_)
    return;
  auto& sc = server_->counters();
  e.counter("troupe_http_requests_total", "Plain HTTP requests served.", node,
            n(sc.http_requests));
  e.counter("troupe_ws_opened_total", "WebSocket connections opened.", node, n(sc.ws_opened));
  e.counter("troupe_ws_closed_total", "WebSocket connections closed, for any reason.", node,
            n(sc.ws_closed));
  e.counter("troupe_ws_dropped_total",
            "WebSocket clients disconnected because their send queue was full (too slow).",
            node, n(sc.ws_dropped_slow));
  e.counter("troupe_ws_messages_in_total", "WebSocket messages received.", node,
            n(sc.ws_messages_in));
  e.counter("troupe_ws_messages_out_total", "WebSocket messages sent.", node,
            n(sc.ws_messages_out));
  e.counter("troupe_ws_bad_frames_total",
            "WebSocket frames refused (binary, invalid UTF-8, oversized).", node,
            n(sc.ws_bad_frames));
}

} // namespace troupe::ws
