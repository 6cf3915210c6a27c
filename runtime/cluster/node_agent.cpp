#include "runtime/cluster/node_agent.hpp"

#include <chrono>
#include <map>
#include <optional>
#include <random>
#include <set>

#include <caf/actor_system_config.hpp>
#include <caf/event_based_actor.hpp>
#include <caf/io/middleman_actor.hpp>
#include <caf/io/middleman.hpp>
#include <caf/stateful_actor.hpp>

#include "runtime/cluster/auth.hpp"
#include "runtime/core/duration.hpp"
#include "runtime/core/error.hpp"
#include "runtime/core/types.hpp"
#include "runtime/core/messages.hpp"

namespace troupe::cluster {

namespace {

/// A peer as the agent tracks it.
struct peer {
  topology::node_spec spec;
  /// Where to dial it: its `host:cluster_port`, or the local end of the TLS
  /// tunnel to it.
  std::string dial_host;
  uint16_t dial_port = 0;
  caf::actor agent;
  caf::node_id nid;
  std::string state = "down";
  bool connecting = false;
  /// The peer accepted our proof.
  bool accepted_us = false;
  int64_t since_ms = 0;
  /// Failed connection rounds since it was last up (for rate-limited logs).
  uint64_t failures = 0;
  /// No new round before this: a lost peer is dialled with exponential
  /// backoff, so that a frozen peer's listen queue collects a handful of
  /// connections rather than one per heartbeat (each of which it would then
  /// accept at once on waking up).
  std::chrono::steady_clock::time_point next_attempt;
};

struct agent_state;
using agent_actor = caf::stateful_actor<agent_state>;

/// The state of a node agent. Owned by the agent actor.
struct agent_state {
  static inline const char* name = "troupe.node_agent";

  agent_actor* self = nullptr;
  topology::topology topo;
  std::string me;
  log_fn log;
  caf::io::middleman_actor mm;
  std::map<std::string, peer> peers;
  /// Nodes that proved themselves to us: node id -> node name.
  std::map<caf::node_id, std::string> trusted;
  /// Challenges handed out and not yet answered: (node id, name) -> nonce.
  std::map<std::pair<caf::node_id, std::string>, std::string> nonces;
  std::vector<caf::actor> listeners;
  /// This node's placement manager, which answers claims.
  caf::actor manager;
  /// The routers of the groups this node hosts.
  std::shared_ptr<group_directory> directory;
  int64_t started_ms = unix_ms();
  std::minstd_rand rng{std::random_device{}()};
  /// When `on_tick` last ran: a longer gap than the failure timeout means this
  /// process was paused.
  std::chrono::steady_clock::time_point last_tick = std::chrono::steady_clock::now();

  /// What the node tells operators about itself; the agent adds its groups.
  node_info info;
  /// What operators decided, one last-writer-wins register per node
  /// (`troupe shell drain`/`undrain`: value 1 or 0) and per group (`scale`:
  /// the instance count), stamped with when it was decided.
  std::map<std::string, operator_decision> drains;
  std::map<std::string, operator_decision> scales;

  /// A stamp for a decision taken here now: later than any known for `key`.
  static int64_t next_stamp(const std::map<std::string, operator_decision>& known,
                            const std::string& key) {
    auto now = unix_ms();
    auto i = known.find(key);
    return i != known.end() && i->second.stamp_ms >= now ? i->second.stamp_ms + 1 : now;
  }

  /// Takes `d` into `known` unless a newer decision for its key is there;
  /// returns the value it replaced, or nothing if `d` was not newer.
  static std::optional<uint32_t> take(std::map<std::string, operator_decision>& known,
                                      const operator_decision& d, uint32_t fallback) {
    auto i = known.find(d.key);
    if (i != known.end() && d.stamp_ms <= i->second.stamp_ms)
      return std::nullopt;
    auto before = i != known.end() ? i->second.value : fallback;
    known[d.key] = d;
    return before;
  }

  /// Takes a drain decision unless a newer one is known; tells the listeners
  /// when it changes what is drained. `from` ends the log line.
  void apply_drain(const operator_decision& d, const std::string& from) {
    auto before = take(drains, d, 0);
    if (!before || *before == d.value)
      return;
    log((d.value ? "draining " : "no longer draining ") + d.key + from);
    // The listeners plan with it: the placement manager (what this node
    // hosts) and the cluster routers (where messages go).
    for (auto& l : listeners)
      self->send(l, drain_atom::value, d.key, d.value == 1);
  }

  /// Takes a scale decision unless a newer one is known; tells the listeners
  /// when it changes the group's instance count.
  void apply_scale(const operator_decision& d, const std::string& from) {
    auto before = take(scales, d, topo.group(d.key)->instances);
    if (!before || *before == d.value)
      return;
    log.with_group(d.key)("scaling " + d.key + ": " + std::to_string(*before) + " -> "
                          + std::to_string(d.value) + " instances" + from);
    for (auto& l : listeners)
      self->send(l, scale_atom::value, d.key, d.value);
  }

  /// Tells every peer up one decision taken here (a peer the shell could
  /// not reach learns it this way; the newer decision wins everywhere).
  void share(operator_decisions d) {
    for (auto& [name, p] : peers)
      if (p.state == "up" && p.agent)
        self->send(p.agent, decisions_atom::value, d);
  }

  /// Every drain and scale decision this agent knows, for a peer.
  operator_decisions decisions() const {
    operator_decisions result;
    for (auto& kv : drains)
      result.drains.push_back(kv.second);
    for (auto& kv : scales)
      result.scales.push_back(kv.second);
    return result;
  }

  /// Operators' shells name themselves `shell/...`; nodes never do (a node
  /// name is a TOML string of the topology, checked against it).
  static bool is_operator(const std::string& name) {
    return name.rfind("shell/", 0) == 0;
  }

  node_info describe() const {
    auto result = info;
    result.name = me;
    result.started_ms = started_ms;
    result.groups.clear();
    result.instances.clear();
    for (auto& name : directory->names()) {
      if (name.empty() || name[0] == '@' || !directory->get(name))
        continue;
      result.groups.push_back(name);
      result.instances.push_back(directory->instances(name));
    }
    result.scaled_groups.clear();
    result.scaled_instances.clear();
    for (auto& [group, d] : scales) {
      result.scaled_groups.push_back(group);
      result.scaled_instances.push_back(d.value);
    }
    return result;
  }

  caf::timespan request_timeout() const {
    return topo.cluster.failure_timeout * 2;
  }

  /// The node the current message came from (invalid for local senders).
  caf::node_id sender_node() {
    auto src = self->current_sender();
    if (!src || src->node() == self->system().node())
      return caf::node_id{};
    return src->node();
  }

  bool sender_trusted() {
    auto nid = sender_node();
    return nid == caf::node_id{} || trusted.count(nid) > 0;
  }

  void notify_up(const std::string& name) {
    for (auto& l : listeners)
      self->send(l, member_up_atom::value, name, peers[name].agent);
  }

  void notify_down(const std::string& name, const std::string& reason) {
    for (auto& l : listeners)
      self->send(l, member_down_atom::value, name, reason);
  }

  // -- incoming challenges ---------------------------------------------------------

  caf::result<std::string> on_hello(const std::string& name, const std::string& cluster) {
    auto nid = sender_node();
    if (cluster != topo.cluster.name) {
      log.warning("refused node '" + name + "': it belongs to cluster '" + cluster + "'");
      return caf::make_error(ec::not_authenticated, "wrong cluster");
    }
    if (is_operator(name)) {
      // An operator's shell (`troupe shell`): it proves the cluster's
      // secret like a node, and may then ask what nodes may ask.
      auto nonce = make_nonce();
      nonces[{nid, name}] = nonce;
      return nonce;
    }
    if (!topo.node(name) || name == me) {
      log.warning("refused node '" + name + "': not a node of this cluster");
      return caf::make_error(ec::not_authenticated, "unknown node");
    }
    auto nonce = make_nonce();
    nonces[{nid, name}] = nonce;
    // A peer we count as up asks to prove itself again: it has lost us (it
    // saw us frozen, say, while we never saw it go), so it no longer trusts
    // us either. Prove ourselves to it again, or it would wait forever.
    auto& p = peers[name];
    if (p.state == "up" && !p.connecting)
      connect(name);
    return nonce;
  }

  caf::result<void> on_auth(const std::string& name, const std::string& proof) {
    auto nid = sender_node();
    auto i = nonces.find({nid, name});
    if (i == nonces.end()) {
      log.warning("refused node '" + name + "': no challenge pending");
      return caf::make_error(ec::not_authenticated, "no challenge");
    }
    auto expected = make_proof(topo.cluster.secret, topo.cluster.name, name, i->second);
    nonces.erase(i);
    if (!same_proof(proof, expected)) {
      log.warning("refused node '" + name + "': wrong secret");
      return caf::make_error(ec::not_authenticated, "wrong secret");
    }
    trusted[nid] = name;
    if (is_operator(name)) {
      log("operator " + name + " connected");
      return caf::unit;
    }
    maybe_up(name);
    return caf::unit;
  }

  // -- outgoing connections ----------------------------------------------------------

  void on_tick() {
    auto now = std::chrono::steady_clock::now();
    auto gap = now - last_tick;
    last_tick = now;
    if (gap > topo.cluster.failure_timeout)
      on_paused(std::chrono::duration_cast<std::chrono::milliseconds>(gap));
    for (auto& [name, p] : peers)
      if (p.state != "up" && !p.connecting && now >= p.next_attempt)
        connect(name);
    self->delayed_send(self, topo.cluster.heartbeat_interval, tick_atom::value);
  }

  void connect(const std::string& name) {
    auto& p = peers[name];
    p.connecting = true;
    auto fail = [this, name](const std::string& step, const std::string& why) {
      auto& p = peers[name];
      p.connecting = false;
      // Back off: heartbeat x 2^failures, at most 2 s, jittered by +-25 %.
      auto base = std::min<int64_t>(
        std::chrono::duration_cast<std::chrono::milliseconds>(topo.cluster.heartbeat_interval)
            .count()
          << std::min<uint64_t>(p.failures, 5),
        2000);
      auto jitter = static_cast<int64_t>(rng() % 51) - 25; // percent
      p.next_attempt = std::chrono::steady_clock::now()
                       + std::chrono::milliseconds(base + base * jitter / 100);
      if (why.find("not_authenticated") != std::string::npos) {
        log.warning("peer '" + name + "' refused us: " + why);
        return;
      }
      // The first failure after being up, then every 10th (about 20 s apart
      // once the backoff reaches its 2 s cap).
      if (p.failures++ % 10 == 0 && p.since_ms != 0)
        log.warning("cannot reach " + name + " (" + step + ": " + why + "), retrying");
    };
    self->request(mm, request_timeout(), caf::connect_atom::value, p.dial_host, p.dial_port)
      .then(
        [this, name, fail](caf::node_id& nid, caf::strong_actor_ptr& ptr,
                           std::set<std::string>&) {
          if (!ptr) {
            fail("connect", "no agent published");
            return;
          }
          auto agent = caf::actor_cast<caf::actor>(ptr);
          self->request(agent, request_timeout(), hello_atom::value, me, topo.cluster.name)
            .then(
              [this, name, nid, agent, fail](std::string& nonce) {
                auto proof = make_proof(topo.cluster.secret, topo.cluster.name, me, nonce);
                self->request(agent, request_timeout(), auth_atom::value, me, proof)
                  .then(
                    [this, name, nid, agent]() {
                      auto& p = peers[name];
                      p.connecting = false;
                      p.accepted_us = true;
                      p.agent = agent;
                      p.nid = nid;
                      self->monitor(agent);
                      if (p.state == "down") {
                        p.state = "joining";
                        p.since_ms = unix_ms();
                      }
                      maybe_up(name);
                    },
                    [fail](caf::error& err) { fail("auth", render(err)); });
              },
              [fail](caf::error& err) { fail("hello", render(err)); });
        },
        [fail](caf::error& err) { fail("connect", render(err)); });
  }

  /// Forgets what was agreed with `p` (both proofs, its agent) and, if it
  /// was up, logs its loss and tells the listeners.
  void lose(const std::string& name, peer& p, const std::string& reason) {
    auto was_up = p.state == "up";
    trusted.erase(p.nid);
    p.agent = nullptr;
    p.nid = caf::node_id{};
    p.accepted_us = false;
    p.state = "down";
    p.since_ms = unix_ms();
    if (was_up) {
      // A peer that stopped on purpose is news; one that was lost, a warning.
      log.write(reason == "user_shutdown" || reason.rfind("stopped_by_operator", 0) == 0
                  ? log_level::info
                  : log_level::warning,
                "member " + name + " down (" + reason + ")");
      notify_down(name, reason);
    }
  }

  /// This process did not run for longer than the failure timeout (SIGSTOP,
  /// a VM pause, a starved host): its peers have declared it down and moved
  /// its instances, while its own view never changed. It leaves the cluster
  /// view at once, so that the placement manager stops what it hosts, and
  /// rejoins through the usual handshake and claims; otherwise a group meant
  /// to run once would run here and at its new home.
  void on_paused(std::chrono::milliseconds gap) {
    log.warning("paused for " + std::to_string(gap.count())
                + " ms (longer than the failure timeout): peers count this node as lost; "
                  "leaving and rejoining");
    for (auto& [name, p] : peers) {
      if (p.agent)
        self->demonitor(p.agent);
      p.next_attempt = {};
      lose(name, p, "this node paused");
    }
  }

  /// Marks `name` up once both directions are authenticated.
  void maybe_up(const std::string& name) {
    auto i = peers.find(name);
    if (i == peers.end())
      return;
    auto& p = i->second;
    if (p.state == "up" || !p.accepted_us)
      return;
    auto t = trusted.find(p.nid);
    if (t == trusted.end() || t->second != name)
      return;
    p.state = "up";
    p.since_ms = unix_ms();
    p.failures = 0;
    log("member " + name + " up");
    notify_up(name);
    // What operators decided, for a peer that was away (or is new).
    auto d = decisions();
    if (!d.drains.empty() || !d.scales.empty())
      self->send(p.agent, decisions_atom::value, std::move(d));
  }

  void on_down(caf::down_msg& msg) {
    for (auto& [name, p] : peers) {
      if (p.agent && p.agent.address() == msg.source) {
        lose(name, p, render(msg.reason));
        return;
      }
    }
  }

  std::vector<member_info> members() const {
    std::vector<member_info> result;
    for (auto& n : topo.nodes) {
      member_info m;
      m.name = n.name;
      m.address = n.host + ":" + std::to_string(n.cluster_port);
      if (n.name == me) {
        m.state = "self";
        m.since_ms = started_ms;
      } else {
        auto& p = peers.at(n.name);
        m.state = p.state;
        m.since_ms = p.since_ms;
      }
      result.push_back(std::move(m));
    }
    return result;
  }
};

caf::behavior agent_impl(agent_actor* self, topology::topology topo, std::string me,
                         std::shared_ptr<group_directory> directory, log_fn log,
                         dial_map dial) {
  auto& st = self->state;
  st.self = self;
  st.directory = std::move(directory);
  st.topo = std::move(topo);
  st.me = std::move(me);
  st.log = std::move(log);
  st.mm = self->system().middleman().actor_handle();
  for (auto& n : st.topo.nodes) {
    if (n.name == st.me)
      continue;
    auto& p = st.peers[n.name];
    p.spec = n;
    auto i = dial.find(n.name);
    p.dial_host = i != dial.end() ? i->second.first : n.host;
    p.dial_port = i != dial.end() ? i->second.second : n.cluster_port;
  }
  self->set_down_handler([self](caf::down_msg& msg) { self->state.on_down(msg); });
  self->send(self, tick_atom::value);
  return {
    [self](hello_atom, std::string& name, std::string& cluster) {
      return self->state.on_hello(name, cluster);
    },
    [self](auth_atom, std::string& name, std::string& proof) {
      return self->state.on_auth(name, proof);
    },
    [self](members_atom) -> caf::result<std::vector<member_info>> {
      if (!self->state.sender_trusted())
        return caf::make_error(ec::not_authenticated);
      return self->state.members();
    },
    [self](subscribe_atom, caf::actor& listener) -> caf::result<void> {
      if (!self->state.sender_trusted())
        return caf::make_error(ec::not_authenticated);
      self->state.listeners.push_back(listener);
      // The members already up, as events (Akka's InitialStateAsEvents): a
      // listener that subscribes late must not miss them. The cluster routers
      // subscribe after their groups' specs are built, which for some domains
      // (a model to load) takes longer than peers take to join.
      for (auto& [name, p] : self->state.peers)
        if (p.state == "up")
          self->send(listener, member_up_atom::value, name, p.agent);
      for (auto& [node, d] : self->state.drains)
        if (d.value == 1)
          self->send(listener, drain_atom::value, node, true);
      for (auto& [group, d] : self->state.scales)
        self->send(listener, scale_atom::value, group, d.value);
      return caf::unit;
    },
    [self](node_info_atom) -> caf::result<node_info> {
      if (!self->state.sender_trusted())
        return caf::make_error(ec::not_authenticated);
      return self->state.describe();
    },
    [self](node_info_atom, node_info& info) -> caf::result<void> {
      if (self->state.sender_node() != caf::node_id{})
        return caf::make_error(ec::not_authenticated);
      self->state.info = std::move(info);
      return caf::unit;
    },
    [self](drain_atom, std::string& node, bool drained) -> caf::result<void> {
      auto& st = self->state;
      if (!st.sender_trusted())
        return caf::make_error(ec::not_authenticated);
      if (!st.topo.node(node))
        return caf::make_error(ec::invalid_argument, "no node '" + node + "' in this cluster");
      operator_decision d{node, drained ? 1u : 0u, agent_state::next_stamp(st.drains, node)};
      st.apply_drain(d, "");
      st.share({{d}, {}});
      return caf::unit;
    },
    [self](scale_atom, std::string& group, uint32_t n) -> caf::result<void> {
      auto& st = self->state;
      if (!st.sender_trusted())
        return caf::make_error(ec::not_authenticated);
      if (!st.topo.group(group))
        return caf::make_error(ec::invalid_argument, "no group '" + group + "' in this cluster");
      if (n < 1 || n > 1024)
        return caf::make_error(ec::invalid_argument,
                               std::string{"a group has 1 to 1024 instances"});
      operator_decision d{group, n, agent_state::next_stamp(st.scales, group)};
      st.apply_scale(d, "");
      st.share({{}, {d}});
      return caf::unit;
    },
    [self](decisions_atom, operator_decisions& d) {
      // From a member only: operators give commands, not decisions.
      auto& st = self->state;
      auto t = st.trusted.find(st.sender_node());
      if (t == st.trusted.end() || agent_state::is_operator(t->second))
        return;
      auto from = " (learned from " + t->second + ")";
      for (auto& x : d.drains)
        if (st.topo.node(x.key) && x.value <= 1)
          st.apply_drain(x, from);
      for (auto& x : d.scales)
        if (st.topo.group(x.key) && x.value >= 1 && x.value <= 1024)
          st.apply_scale(x, from);
    },
    [self](log_level_atom) -> std::string {
      auto& l = self->state.log.get();
      return l ? to_string(l->level()) : "none";
    },
    [self](log_level_atom, std::string& level) -> caf::result<std::string> {
      auto& st = self->state;
      if (!st.sender_trusted())
        return caf::make_error(ec::not_authenticated);
      auto x = parse_log_level(level);
      if (!x)
        return x.error();
      auto& l = st.log.get();
      if (!l)
        return caf::make_error(ec::invalid_argument, std::string{"this node has no log"});
      std::string before = to_string(l->level());
      if (*x != l->level()) {
        auto who = st.trusted.count(st.sender_node()) ? st.trusted[st.sender_node()]
                                                     : std::string{"this node"};
        // A warning, so that it shows at every level but `error`.
        l->set_level(std::max(*x, log_level::warning));
        st.log.warning("log level " + before + " -> " + to_string(*x) + ": asked by " + who);
        l->set_level(*x);
      }
      return before;
    },
    [self](halt_atom) -> caf::result<void> {
      if (!self->state.sender_trusted())
        return caf::make_error(ec::not_authenticated);
      auto who = self->state.trusted.count(self->state.sender_node())
                   ? self->state.trusted[self->state.sender_node()]
                   : std::string{"this node"};
      self->state.log("stopping: asked by " + who);
      // Answer first, then end: the node process sees the agent end with
      // this reason, stops in order and exits with code 0.
      self->delayed_send(self, std::chrono::milliseconds(50), halt_atom::value, true);
      return caf::unit;
    },
    [self](halt_atom, bool) {
      if (self->state.sender_node() == caf::node_id{})
        self->quit(caf::make_error(ec::stopped_by_operator));
    },
    [self](manager_atom, caf::actor& manager) -> caf::result<void> {
      if (self->state.sender_node() != caf::node_id{})
        return caf::make_error(ec::not_authenticated);
      self->state.manager = manager;
      return caf::unit;
    },
    [self](claim_atom atm, std::string& group, uint32_t instance, std::string& home)
      -> caf::result<caf::message> {
      if (!self->state.sender_trusted())
        return caf::make_error(ec::not_authenticated);
      if (!self->state.manager)
        return caf::make_error(ec::group_down, std::string{"no placement manager yet"});
      return self->delegate(self->state.manager, atm, std::move(group), instance,
                            std::move(home));
    },
    [self](group_atom, std::string& name) -> caf::result<caf::actor> {
      if (!self->state.sender_trusted())
        return caf::make_error(ec::not_authenticated);
      return self->state.directory->get(name); // invalid while not hosted here
    },
    [self](tick_atom) {
      if (self->state.sender_node() == caf::node_id{})
        self->state.on_tick();
    },
  };
}

} // namespace

caf::expected<caf::actor> spawn_node_agent(caf::actor_system& sys, topology::topology topo,
                                           std::string self_name,
                                           std::shared_ptr<group_directory> directory,
                                           log_fn log, dial_map dial) {
  if (!topo.node(self_name))
    return caf::make_error(ec::invalid_argument,
                           "node '" + self_name + "' is not in " + topo.source);
  return sys.spawn(agent_impl, std::move(topo), std::move(self_name), std::move(directory),
                   std::move(log), std::move(dial));
}

caf::error publish(caf::actor_system& sys, const caf::actor& agent,
                   const topology::node_spec& node) {
  auto port = sys.middleman().publish(agent, node.cluster_port, node.host.c_str(), true);
  if (!port)
    return caf::make_error(ec::invalid_argument,
                           "cannot listen on " + node.host + ":"
                             + std::to_string(node.cluster_port) + ": " + render(port.error()));
  return caf::none;
}

void configure_system(caf::actor_system_config& cfg, const topology::cluster_settings& c,
                      const topology::node_spec& node) {
  if (node.threads > 0)
    configure_scheduler(cfg, node.threads);
  cfg.load<caf::io::middleman>();
  cfg.set("middleman.heartbeat-interval", c.heartbeat_interval);
  cfg.set("middleman.connection-timeout", c.failure_timeout);
}

caf::expected<uint16_t> publish_on_loopback(caf::actor_system& sys, const caf::actor& agent) {
  auto port = sys.middleman().publish(agent, 0, "127.0.0.1", false);
  if (!port)
    return caf::make_error(ec::invalid_argument,
                           "cannot listen on 127.0.0.1: " + render(port.error()));
  return *port;
}

} // namespace troupe::cluster
