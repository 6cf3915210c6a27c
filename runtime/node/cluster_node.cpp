#include "runtime/node/cluster_node.hpp"

#include <map>
#include <sys/resource.h>
#include <mutex>

#include <caf/all.hpp>
#include <caf/io/middleman.hpp>
#include <caf/io/middleman_actor.hpp>
#include <nlohmann/json.hpp>

#include "runtime/cluster/audit.hpp"
#include "runtime/cluster/cluster_router.hpp"
#include "runtime/cluster/node_agent.hpp"
#include "runtime/cluster/placement_manager.hpp"
#include "runtime/cluster/secure_transport.hpp"
#include "runtime/cluster/tls_tunnel.hpp"
#include "runtime/core/duration.hpp"
#include "runtime/core/error.hpp"
#include "runtime/core/messages.hpp"
#include "runtime/http/server.hpp"
#include "runtime/kafka/client.hpp"
#include "runtime/metrics/collector.hpp"
#include "runtime/node/trace_service.hpp"
#include "runtime/supervision/supervisor.hpp"

namespace troupe {

using namespace std::chrono_literals;

/// Everything the node's start functions share. Owned by the node (and,
/// through shared pointers, by the start functions in its supervisors);
/// the handles change as children restart, so they are read under `mtx`.
struct cluster_node::state {
  caf::actor_system* sys = nullptr;
  cluster_node_options opt;
  topology::node_spec spec;
  std::string kafka;
  std::string redis;
  log_fn log;
  std::shared_ptr<group_directory> directory = std::make_shared<group_directory>();
  /// The cluster router of the first group of each domain: what workers
  /// reach other stages through.
  std::shared_ptr<group_directory> by_domain = std::make_shared<group_directory>();
  /// The cluster transport: TLS (certificates or the cluster secret) on the
  /// cluster port, CAF's BASP only behind it (`secure_transport.hpp`).
  std::shared_ptr<cluster::tls_tunnel> tunnel;
  caf::io::middleman_actor transport;
  /// Operators' commands: log lines and the `audit` topic.
  std::shared_ptr<cluster::audit_trail> audit;
  /// The domains' node services, by name, in registration order.
  std::vector<std::pair<std::string, std::shared_ptr<node_service>>> services;
  std::shared_ptr<metrics::snapshot> metrics_text = std::make_shared<metrics::snapshot>();
  /// The node's spans (runtime/core/trace.hpp), exported by the `traces`
  /// service.
  std::shared_ptr<trace::tracer> tracer;
  std::atomic<bool> halted{false};
  int64_t started_ms = unix_ms();
  /// Where the agent is published: the cluster port, on which host.
  std::string publish_host;
  uint16_t publish_port = 0;

  mutable std::mutex mtx;
  caf::actor agent;
  /// The agent and HTTP server made (and bound) by `start()`, taken by the
  /// first run of their start functions.
  caf::actor first_agent;
  std::unique_ptr<http::server> first_server;
  std::unique_ptr<http::server> first_admin_server;
  caf::actor_addr published;
  caf::actor root;
  caf::actor groups;
  caf::actor routers;
  caf::actor services_sup;
  std::map<std::string, caf::actor> router_of;
  /// The HTTP server's port, and its counters' owner while it runs.
  uint16_t http_port = 0;
  http::server* server = nullptr;

  template <class T>
  T get(T state::*member) const {
    std::lock_guard<std::mutex> guard{mtx};
    return this->*member;
  }

  template <class T>
  void put(T state::*member, T value) {
    std::lock_guard<std::mutex> guard{mtx};
    this->*member = std::move(value);
  }

  std::shared_ptr<node_service> service(const std::string& name) const {
    for (auto& [n, s] : services)
      if (n == name)
        return s;
    return nullptr;
  }

  domain_context context() const {
    domain_context ctx;
    ctx.node = opt.name;
    ctx.kafka = kafka;
    ctx.redis = redis;
    ctx.state_dir = opt.topo.cluster.state_dir;
    ctx.tracer = tracer;
    ctx.instance_of = [dir = directory](const std::string& group, size_t index) {
      auto ids = dir->instances(group);
      return index < ids.size() ? ids[index] : static_cast<uint32_t>(index);
    };
    ctx.trace_sample = opt.topo.cluster.trace_sample;
    ctx.router_of = [dir = by_domain](const std::string& domain) { return dir->get(domain); };
    ctx.log = log;
    // The services live as long as the node: every worker stops before them.
    ctx.service_of = [this](const std::string& name) { return service(name); };
    return ctx;
  }

  node_info describe() const {
    node_info info;
    nlohmann::json report = nlohmann::json::object();
    for (auto& [name, svc] : services)
      svc->report(report);
    info.report = report.dump();
    std::lock_guard<std::mutex> guard{mtx};
    info.root = root;
    info.groups_root = groups;
    info.started_ms = started_ms;
    info.kafka = kafka;
    info.redis = redis;
    info.http_port = http_port;
    return info;
  }

  std::vector<std::pair<std::string, caf::actor>> node_supervisors() const {
    std::lock_guard<std::mutex> guard{mtx};
    return {{opt.name + ".root", root},
            {opt.name + ".groups", groups},
            {opt.name + ".routers", routers},
            {opt.name + ".services", services_sup}};
  }
};

namespace {

/// Internal to the agent's publisher: try publishing again.
using publish_retry_atom = caf::atom_constant<caf::atom("pubretry")>;

using state_ptr = std::shared_ptr<cluster_node::state>;

/// Publishes a restarted agent where its predecessor was, without blocking
/// a scheduler thread: the predecessor's port is unpublished, then the new
/// agent published, tried again every 100 ms for 5 s (the old listener
/// closes asynchronously). If it never binds, the agent is ended with the
/// error, so that its supervisor sees the failure. Short-lived: it ends
/// once the agent is published or given up on.
caf::behavior agent_publisher(caf::event_based_actor* self, state_ptr st, caf::actor agent) {
  auto mm = st->transport;
  auto old = st->get(&cluster_node::state::published);
  if (old)
    self->send(mm, caf::unpublish_atom::value, old, st->publish_port);
  auto tries = std::make_shared<int>(0);
  self->send(self, publish_retry_atom::value);
  return {
    [=](publish_retry_atom) {
      self
        ->request(mm, 5s, caf::publish_atom::value, st->publish_port,
                  caf::actor_cast<caf::strong_actor_ptr>(agent), std::set<std::string>{},
                  st->publish_host, true)
        .then(
          [=](uint16_t) {
            st->put(&cluster_node::state::published, agent.address());
            st->log("agent published again on " + st->publish_host + ":"
                    + std::to_string(st->publish_port));
            self->quit();
          },
          [=](caf::error& err) {
            if (++*tries < 50) {
              self->delayed_send(self, 100ms, publish_retry_atom::value);
              return;
            }
            st->log.error("cannot publish the agent again: " + render(err));
            self->send_exit(agent, err);
            self->quit();
          });
    },
  };
}

caf::expected<caf::actor> spawn_agent(caf::actor_system& sys, const state_ptr& st) {
  std::weak_ptr<cluster_node::state> weak = st;
  return cluster::spawn_node_agent(
    sys, st->opt.topo, st->opt.name, st->directory, st->log, st->transport,
    [weak] { auto s = weak.lock(); return s ? s->describe() : node_info{}; },
    [weak] {
      if (auto s = weak.lock())
        s->halted = true;
    },
    [audit = st->audit](cluster::audit_entry x) {
      if (audit)
        audit->record(std::move(x));
    },
    st->tunnel);
}

/// The agent: the first run takes the one `start()` published; a restart
/// spawns a new one and publishes it in the old one's place.
child_spec agent_child(const state_ptr& st) {
  child_spec c;
  c.name = "agent";
  c.start = [st](caf::actor_system& sys) -> caf::expected<caf::actor> {
    caf::actor agent;
    {
      std::lock_guard<std::mutex> guard{st->mtx};
      agent = std::move(st->first_agent);
      st->first_agent = nullptr;
    }
    if (!agent) {
      auto a = spawn_agent(sys, st);
      if (!a)
        return a.error();
      agent = *a;
      sys.spawn(agent_publisher, st, agent);
    }
    st->put(&cluster_node::state::agent, agent);
    return agent;
  };
  return c;
}

/// A supervisor child whose handle the node keeps in `member`.
child_spec remembered(caf::expected<child_spec> child, const state_ptr& st,
                      caf::actor cluster_node::state::*member) {
  auto c = std::move(*child); // the specs below are valid by construction
  c.start = [st, member, start = std::move(c.start)](caf::actor_system& sys) {
    auto result = start(sys);
    if (result)
      st->put(member, *result);
    return result;
  };
  return c;
}

child_spec placement_child(const state_ptr& st) {
  child_spec c;
  c.name = "placement";
  c.start = [st](caf::actor_system& sys) -> caf::expected<caf::actor> {
    auto factory = [st](const topology::group_decl& d, uint32_t n) {
      return build_group(*st->opt.domains, d, n, st->context());
    };
    return cluster::spawn_placement_manager(sys, st->opt.topo, st->opt.name,
                                            st->get(&cluster_node::state::agent),
                                            st->get(&cluster_node::state::groups), factory,
                                            st->directory, st->log);
  };
  return c;
}

/// One cluster router per group this build can run.
supervisor_spec routers_spec(const state_ptr& st) {
  supervisor_spec s;
  s.name = st->opt.name + ".routers";
  s.dynamic = true; // a topology may declare no group
  s.intensity = 10;
  s.period = 60s;
  s.log = st->log;
  auto ctx = st->context();
  for (auto& g : st->opt.topo.groups) {
    // The group's own spec gives its routing key, fallback and limits.
    auto spec = build_group(*st->opt.domains, g, g.instances, ctx);
    if (!spec)
      continue; // the placement manager logs why it cannot host it
    bool first_of_domain = true;
    for (auto& other : st->opt.topo.groups) {
      if (&other == &g)
        break;
      first_of_domain &= other.domain != g.domain;
    }
    child_spec c;
    c.name = "router/" + g.name;
    c.start = [st, name = g.name, domain = first_of_domain ? g.domain : std::string{},
               spec = *spec](caf::actor_system& sys) -> caf::expected<caf::actor> {
      auto r = cluster::spawn_cluster_router(sys, st->opt.topo, name, st->opt.name,
                                             st->get(&cluster_node::state::agent),
                                             st->directory, spec);
      if (!r)
        return r;
      {
        std::lock_guard<std::mutex> guard{st->mtx};
        st->router_of[name] = *r;
      }
      if (!domain.empty())
        st->by_domain->put(domain, *r);
      return r;
    };
    s.children.push_back(std::move(c));
  }
  return s;
}

/// The node's HTTP server as an actor: it owns the server (I/O threads of
/// its own) and closes it when it ends. Detached, because closing joins
/// the I/O threads.
struct http_owner_state {
  static inline const char* name = "troupe.http_server";
  std::unique_ptr<http::server> server;
  state_ptr node;
  ~http_owner_state() {
    if (node) {
      std::lock_guard<std::mutex> guard{node->mtx};
      if (node->server == server.get())
        node->server = nullptr;
    }
  }
};

caf::behavior http_owner(caf::stateful_actor<http_owner_state>* self,
                         std::shared_ptr<std::unique_ptr<http::server>> server, state_ptr st) {
  self->state.server = std::move(*server);
  self->state.node = std::move(st);
  return {
    [](status_atom) { return std::string{"serving"}; },
  };
}

/// The node's routes: `/metrics`, `/healthz`, then each service's. With an
/// admin port, the client port has no `/metrics` and `/healthz`, and the
/// admin port (`admin`) has nothing else.
http::route_fn node_routes(const state_ptr& st, bool admin = false) {
  std::weak_ptr<cluster_node::state> weak = st;
  bool apart = st->spec.admin_port != 0;
  return [weak, admin, apart](const std::string& target) -> http::response {
    auto st = weak.lock();
    if (!st)
      return {503, "text/plain; charset=utf-8", "stopping\n"};
    auto path = target.substr(0, target.find('?'));
    bool operations = path == "/metrics" || path == "/healthz";
    if (admin ? !operations : apart && operations)
      return {404, "text/plain; charset=utf-8", "not found: " + path + "\n"};
    if (path == "/metrics")
      return {200, "text/plain; version=0.0.4; charset=utf-8", *st->metrics_text->get()};
    if (path == "/healthz") {
      nlohmann::json groups = nlohmann::json::array();
      for (auto& name : st->directory->names())
        if (!name.empty() && name[0] != '@')
          groups.push_back(name);
      nlohmann::json j{{"node", st->opt.name}, {"status", "ok"}, {"groups", groups}};
      j["websocket"] = false;
      for (auto& [name, svc] : st->services)
        svc->health(j);
      return {200, "application/json", j.dump() + "\n"};
    }
    for (auto& [name, svc] : st->services) {
      auto r = svc->route(target);
      if (r.status != 0)
        return r;
    }
    return {404, "text/plain; charset=utf-8", "not found: " + path + "\n"};
  };
}

caf::expected<std::unique_ptr<http::server>> make_server(const state_ptr& st) {
  http::server_limits limits;
  http::ws_handler* ws = nullptr;
  for (auto& [name, svc] : st->services) {
    svc->limit(limits);
    if (!ws)
      ws = svc->websocket();
  }
  // Clients never take the files the node needs for Kafka, Redis, its
  // peers and its models: 2048 of its open-files limit stay theirs.
  rlimit nofile{};
  if (getrlimit(RLIMIT_NOFILE, &nofile) == 0 && nofile.rlim_cur != RLIM_INFINITY) {
    auto room = nofile.rlim_cur > 4096 ? static_cast<size_t>(nofile.rlim_cur) - 2048
                                       : static_cast<size_t>(nofile.rlim_cur) / 2;
    if (limits.max_connections > room) {
      st->log.warning("max_connections " + std::to_string(limits.max_connections)
                      + " is more than the open-files limit (" + std::to_string(nofile.rlim_cur)
                      + ") allows; using " + std::to_string(room));
      limits.max_connections = room;
    }
  }
  // With `[cluster.tls] clients = true`, https:// and wss:// with the
  // node's own certificate.
  std::optional<http::server_tls> tls;
  if (auto& t = st->opt.topo.cluster.tls; t && t->clients) {
    auto mine = t->for_node(st->spec.name);
    tls = http::server_tls{mine.certificate, mine.key};
  }
  return http::server::make(st->spec.host, st->spec.http_port, 2, node_routes(st), ws, limits,
                            std::move(tls));
}

caf::expected<std::unique_ptr<http::server>> make_admin_server(const state_ptr& st) {
  http::server_limits limits;
  limits.max_connections = 64;
  limits.max_connections_per_address = 16;
  return http::server::make(st->spec.admin_host, st->spec.admin_port, 1, node_routes(st, true),
                            nullptr, limits);
}

/// The server `start()` bound (taken once, by a child's first run), or a
/// new one from `make` (a restart).
caf::expected<std::unique_ptr<http::server>>
first_or_new(const state_ptr& st, std::unique_ptr<http::server> cluster_node::state::*first,
             caf::expected<std::unique_ptr<http::server>> (*make)(const state_ptr&)) {
  std::unique_ptr<http::server> srv;
  {
    std::lock_guard<std::mutex> guard{st->mtx};
    srv = std::move((*st).*first);
  }
  if (srv)
    return srv;
  return make(st);
}

/// The node's admin server (`admin_port`): `/metrics` and `/healthz`,
/// owned like the client one by a detached actor.
child_spec admin_http_child(const state_ptr& st) {
  child_spec c;
  c.name = "admin-http";
  c.start = [st](caf::actor_system& sys) -> caf::expected<caf::actor> {
    auto srv = first_or_new(st, &cluster_node::state::first_admin_server, make_admin_server);
    if (!srv)
      return srv.error();
    auto holder = std::make_shared<std::unique_ptr<http::server>>(std::move(*srv));
    return sys.spawn<caf::detached>(http_owner, holder, st);
  };
  return c;
}

child_spec http_child(const state_ptr& st) {
  child_spec c;
  c.name = "http";
  c.start = [st](caf::actor_system& sys) -> caf::expected<caf::actor> {
    auto made = first_or_new(st, &cluster_node::state::first_server, make_server);
    if (!made)
      return made.error();
    auto srv = std::move(*made);
    {
      std::lock_guard<std::mutex> guard{st->mtx};
      st->server = srv.get();
    }
    auto holder = std::make_shared<std::unique_ptr<http::server>>(std::move(srv));
    return sys.spawn<caf::detached>(http_owner, holder, st);
  };
  return c;
}

/// The HTTP server's counters, while one runs.
void server_metrics(const state_ptr& st, metrics::exposition& e) {
  std::lock_guard<std::mutex> guard{st->mtx};
  if (!st->server)
    return;
  metrics::labels node{{"node", st->opt.name}};
  auto n = [](const std::atomic<uint64_t>& x) {
    return static_cast<double>(x.load(std::memory_order_relaxed));
  };
  auto& sc = st->server->counters();
  e.counter("troupe_http_requests_total", "Plain HTTP requests served.", node, n(sc.http_requests));
  e.counter("troupe_ws_opened_total", "WebSocket connections opened.", node, n(sc.ws_opened));
  e.counter("troupe_ws_closed_total", "WebSocket connections closed, for any reason.", node,
            n(sc.ws_closed));
  e.counter("troupe_ws_dropped_total",
            "WebSocket clients disconnected because their send queue was full (too slow).", node,
            n(sc.ws_dropped_slow));
  e.counter("troupe_ws_messages_in_total", "WebSocket messages received.", node,
            n(sc.ws_messages_in));
  e.counter("troupe_ws_messages_out_total", "WebSocket messages sent.", node,
            n(sc.ws_messages_out));
  e.counter("troupe_ws_bad_frames_total",
            "WebSocket frames refused (binary, invalid UTF-8, oversized).", node,
            n(sc.ws_bad_frames));
  e.gauge("troupe_http_open_connections", "Open HTTP and WebSocket connections.", node,
          n(sc.open_connections));
  auto with = [&](const char* reason) {
    auto ls = node;
    ls.emplace_back("reason", reason);
    return ls;
  };
  e.counter("troupe_http_connections_refused_total",
            "Connections closed at accept: over max_connections (total) or over "
            "max_connections_per_address (address).",
            with("total"), n(sc.refused_over_total));
  e.counter("troupe_http_connections_refused_total",
            "Connections closed at accept: over max_connections (total) or over "
            "max_connections_per_address (address).",
            with("address"), n(sc.refused_over_address));
}

child_spec collector_child(const state_ptr& st) {
  child_spec c;
  c.name = "collector";
  c.start = [st](caf::actor_system& sys) -> caf::expected<caf::actor> {
    metrics::collector_settings ms;
    ms.node = st->opt.name;
    ms.directory = st->directory;
    ms.agent = st->get(&cluster_node::state::agent);
    std::weak_ptr<cluster_node::state> weak = st;
    ms.extra = [weak](metrics::exposition& e) {
      auto st = weak.lock();
      if (!st)
        return;
      for (auto& [name, svc] : st->services)
        svc->metrics(e);
      server_metrics(st, e);
    };
    ms.node_supervisors = [weak] {
      auto st = weak.lock();
      return st ? st->node_supervisors() : std::vector<std::pair<std::string, caf::actor>>{};
    };
    ms.log = st->log.get();
    return metrics::spawn_collector(sys, ms, st->metrics_text);
  };
  return c;
}

/// The node's spans to the `traces` topic, and an operator's `trace`.
child_spec traces_child(const state_ptr& st) {
  child_spec c;
  c.name = "traces";
  c.start = [st](caf::actor_system& sys) -> caf::expected<caf::actor> {
    trace_service_settings ts;
    ts.tracer = st->tracer;
    ts.kafka = st->kafka;
    ts.directory = st->directory;
    ts.log = st->log;
    return spawn_trace_service(sys, std::move(ts));
  };
  return c;
}

supervisor_spec services_spec(const state_ptr& st) {
  supervisor_spec s;
  s.name = st->opt.name + ".services";
  s.intensity = 10;
  s.period = 60s;
  s.log = st->log;
  s.children.push_back(collector_child(st));
  s.children.push_back(traces_child(st));
  for (auto& [name, svc] : st->services)
    for (auto& c : svc->children())
      s.children.push_back(std::move(c));
  if (st->spec.http_port != 0)
    s.children.push_back(http_child(st));
  if (st->spec.admin_port != 0)
    s.children.push_back(admin_http_child(st));
  return s;
}

supervisor_spec root_spec(const state_ptr& st) {
  supervisor_spec root;
  root.name = st->opt.name + ".root";
  root.strat = strategy::rest_for_one;
  root.intensity = 5;
  root.period = 60s;
  root.log = st->log;
  root.children.push_back(agent_child(st));
  supervisor_spec groups;
  groups.name = st->opt.name + ".groups";
  groups.dynamic = true;
  groups.intensity = 10;
  groups.period = 60s;
  groups.log = st->log;
  root.children.push_back(
    remembered(supervisor_child(std::move(groups)), st, &cluster_node::state::groups));
  root.children.push_back(placement_child(st));
  root.children.push_back(
    remembered(supervisor_child(routers_spec(st)), st, &cluster_node::state::routers));
  root.children.push_back(
    remembered(supervisor_child(services_spec(st)), st, &cluster_node::state::services_sup));
  return root;
}

} // namespace

cluster_node::cluster_node(std::shared_ptr<state> st) : st_(std::move(st)) {
  // nop
}

cluster_node::~cluster_node() {
  stop();
}

caf::expected<std::unique_ptr<cluster_node>> cluster_node::start(caf::actor_system& sys,
                                                                cluster_node_options opt) {
  auto st = std::make_shared<state>();
  st->sys = &sys;
  auto self_spec = opt.topo.node(opt.name);
  if (!self_spec)
    return caf::make_error(ec::invalid_argument,
                           "no node '" + opt.name + "' in " + opt.topo.source);
  if (!opt.domains)
    return caf::make_error(ec::invalid_argument, std::string{"a node needs its domains"});
  st->spec = *self_spec;
  st->kafka = opt.kafka.empty() ? opt.topo.cluster.kafka : opt.kafka;
  st->redis = opt.redis.empty() ? opt.topo.cluster.redis : opt.redis;
  st->log = opt.log;
  st->tracer = std::make_shared<trace::tracer>(opt.name);
  // librdkafka's own lines and client errors, in the node's log.
  kafka::set_client_log(opt.log);
  kafka::set_fetch_wait(
    std::chrono::duration_cast<std::chrono::milliseconds>(opt.topo.cluster.kafka_fetch_wait));
  st->opt = std::move(opt);
  auto& topo = st->opt.topo;
  auto& log = st->log;
  // Every connection to and from other nodes and shells is TLS, keyed by
  // the certificates of [cluster.tls] or else by the cluster secret; CAF's
  // BASP runs only behind it, on a socket only this process may reach.
  // A handshake gets 4 failure timeouts, and at least 5 s: a node starved of
  // CPU for a moment must not refuse its peers.
  // With certificates, this node presents its own (`{node}` in the paths),
  // and a peer must present one that names the peer dialled.
  auto keys = topo.cluster;
  if (keys.tls) {
    keys.tls = keys.tls->for_node(st->spec.name);
    if (!cluster::tls_tunnel::certificate_names(keys.tls->certificate, st->spec.name))
      log.warning("this node's certificate (" + keys.tls->certificate
                  + ") does not name it (no subjectAltName DNS:" + st->spec.name
                  + "): its peers will refuse to count it as " + st->spec.name);
  }
  auto t = cluster::tls_tunnel::make(
    keys, std::max<caf::timespan>(topo.cluster.failure_timeout * 4, std::chrono::seconds(5)),
    log, cluster::tls_tunnel::names_of(topo.nodes));
  if (!t)
    return t.error();
  st->tunnel = std::move(*t);
  st->transport = cluster::spawn_secure_middleman(sys, st->tunnel, log);
  // The audit trail: every operator command, as a log line and a record on
  // the `audit` topic (none without Kafka).
  auto trail = cluster::audit_trail::make(
    st->spec.name, st->kafka == "embedded" ? std::string{} : st->kafka, "audit", log);
  if (!trail)
    return trail.error();
  st->audit = std::move(*trail);
  // The agent is bound here, before anything starts, so that a port in use
  // is an error of `troupe node` rather than a crash loop.
  auto agent = spawn_agent(sys, st);
  if (!agent)
    return agent.error();
  st->publish_host = st->spec.host;
  st->publish_port = st->spec.cluster_port;
  caf::error published;
  {
    caf::scoped_actor self{sys};
    self
      ->request(st->transport, 10s, caf::publish_atom::value, st->publish_port,
                caf::actor_cast<caf::strong_actor_ptr>(*agent), std::set<std::string>{},
                st->publish_host, true)
      .receive([](uint16_t) {},
               [&](caf::error& err) {
                 published = caf::make_error(ec::cannot_bind,
                                             "cannot listen on " + st->spec.host + ":"
                                               + std::to_string(st->spec.cluster_port) + ": "
                                               + render(err));
               });
  }
  if (published) {
    caf::anon_send_exit(*agent, caf::exit_reason::kill);
    return published;
  }
  st->first_agent = *agent;
  st->published = agent->address();
  log("listening on " + st->spec.host + ":" + std::to_string(st->spec.cluster_port)
      + " in cluster " + topo.cluster.name + " (TLS, keyed by " + st->tunnel->keys() + ")");
  log("kafka at " + st->kafka + ", redis at " + st->redis);
  // The domains' node services, for every domain the topology declares.
  service_context sctx;
  sctx.sys = &sys;
  sctx.topo = &topo;
  sctx.node = &st->spec;
  std::weak_ptr<state> weak = st;
  sctx.agent = [weak] {
    auto s = weak.lock();
    return s ? s->get(&state::agent) : caf::actor{};
  };
  sctx.directory = st->directory;
  sctx.redis = st->redis;
  sctx.log = log;
  for (auto& d : *st->opt.domains) {
    if (!d.make_service || st->service(d.service_name))
      continue;
    std::vector<const topology::group_decl*> groups;
    for (auto& g : topo.groups)
      if (g.domain == d.schema.name)
        groups.push_back(&g);
    if (groups.empty())
      continue;
    auto svc = d.make_service(sctx, groups);
    if (!svc) {
      caf::anon_send_exit(*agent, caf::exit_reason::kill);
      return svc.error();
    }
    st->services.emplace_back(d.service_name, std::move(*svc));
  }
  if (st->spec.http_port != 0) {
    auto srv = make_server(st);
    if (!srv) {
      caf::anon_send_exit(*agent, caf::exit_reason::kill);
      return srv.error();
    }
    st->http_port = (*srv)->port();
    st->first_server = std::move(*srv);
    log("http on " + st->spec.host + ":" + std::to_string(st->http_port)
        + (st->first_server->secure() ? std::string{" with TLS (https://, wss://)"} : std::string{})
        + (st->spec.admin_port != 0 ? std::string{" (live page /, WebSocket /ws)"}
                                      : std::string{" (live page /, /healthz, /metrics, WebSocket /ws)"}));
    if (st->spec.admin_port != 0) {
      auto admin = make_admin_server(st);
      if (!admin) {
        caf::anon_send_exit(*agent, caf::exit_reason::kill);
        return admin.error();
      }
      st->first_admin_server = std::move(*admin);
      log("admin http on " + st->spec.admin_host + ":" + std::to_string(st->spec.admin_port)
          + " (/healthz, /metrics)");
    }
  }
  auto root = spawn_supervisor(sys, root_spec(st));
  if (!root) {
    caf::anon_send_exit(*agent, caf::exit_reason::kill);
    return root.error();
  }
  st->put(&state::root, *root);
  return std::unique_ptr<cluster_node>{new cluster_node(std::move(st))};
}

caf::actor cluster_node::root() const {
  return st_->get(&state::root);
}

caf::actor cluster_node::router(const std::string& group) const {
  std::lock_guard<std::mutex> guard{st_->mtx};
  auto i = st_->router_of.find(group);
  return i == st_->router_of.end() ? caf::actor{} : i->second;
}

uint16_t cluster_node::http_port() const {
  return st_->get(&state::http_port);
}

bool cluster_node::halted() const {
  return st_->halted;
}

void cluster_node::stop() {
  auto root = st_->get(&state::root);
  if (!root)
    return;
  caf::scoped_actor self{*st_->sys};
  self->monitor(root);
  self->send_exit(root, caf::exit_reason::user_shutdown);
  self->receive([](caf::down_msg&) {}, caf::after(60s) >> [] {});
  st_->put(&state::root, caf::actor{});
  auto published = st_->get(&state::published);
  if (auto agent = caf::actor_cast<caf::actor>(published); agent && st_->transport)
    self->send(st_->transport, caf::unpublish_atom::value, agent.address(),
               st_->spec.cluster_port);
  // The transport ends with the node: a dial still waiting for a peer that
  // does not answer (a frozen one) would otherwise hold the exit until its
  // handshake timeout.
  if (st_->transport)
    self->send_exit(st_->transport, caf::exit_reason::user_shutdown);
  // The services outlive every actor that used them.
  st_->services.clear();
}

} // namespace troupe
