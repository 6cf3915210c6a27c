#include "runtime/cluster/placement_manager.hpp"

#include <chrono>
#include <map>
#include <set>

#include <caf/event_based_actor.hpp>
#include <caf/stateful_actor.hpp>

#include "runtime/core/duration.hpp"
#include "runtime/core/error.hpp"
#include "runtime/core/messages.hpp"
#include "runtime/group/group.hpp"
#include "topology/placement.hpp"

namespace troupe::cluster {

namespace {

using namespace std::chrono_literals;

struct manager_state;
using manager_actor = caf::stateful_actor<manager_state>;

using instance_key = std::pair<std::string, uint32_t>;

/// The state of a placement manager. Owned by its actor.
struct manager_state {
  static inline const char* name = "troupe.placement_manager";

  manager_actor* self = nullptr;
  topology::topology topo;
  std::string me;
  caf::actor groups;
  group_factory factory;
  std::shared_ptr<group_directory> directory;
  log_fn log;
  /// Live peers and their agents (this node not included).
  std::map<std::string, caf::actor> peers;
  /// Nodes an operator drained: they host nothing, their instances move.
  std::set<std::string> drained;
  bool minority = false;
  bool had_majority = false;
  /// What the plan of the live nodes gives this node: group -> instance -> moved.
  std::map<std::string, std::map<uint32_t, bool>> desired;
  /// What runs here now.
  std::map<std::string, std::map<uint32_t, bool>> hosted;
  /// Groups whose local instances are being stopped: until the supervisor
  /// confirms, this node still answers claims for them with "holds".
  std::map<std::string, int> stopping;
  /// Claims under way, with the round they belong to.
  std::map<instance_key, uint64_t> claims;
  /// Peers seen up since this manager started.
  std::set<std::string> seen;
  /// Until the start-up grace is over, a node not seen up yet keeps its
  /// instances: nodes started together join within moments of each other,
  /// and moving a late one's instances away and back would restart those
  /// groups (and rebalance their Kafka consumer groups) for nothing.
  bool grace_over = false;
  uint64_t next_round = 1;
  /// When this node last lost a peer. For `takeover_delay` after it, no
  /// instance starts here: a peer that is cut off rather than dead still
  /// runs its instances until it sees itself in a minority (after its own
  /// failure timeout) and stops them, and the same instance must never run
  /// on both sides of a partition (Akka's stable-after, OTP's
  /// `net_ticktime` margin).
  std::chrono::steady_clock::time_point last_loss{};
  /// The instances each local group was last started with (logged again
  /// once its supervisor confirms they stopped).
  std::map<std::string, std::vector<uint32_t>> running;

  bool fenced() const {
    return std::chrono::steady_clock::now() - last_loss < topo.cluster.takeover_delay;
  }

  size_t live_count() const {
    return peers.size() + 1;
  }

  const std::string& home_of(const topology::group_decl& g, uint32_t instance) const {
    return g.nodes[instance % g.nodes.size()];
  }

  // -- planning ------------------------------------------------------------------

  void replan() {
    auto n = topo.nodes.size();
    desired.clear();
    if (live_count() * 2 <= n && n > 1) {
      if (!minority)
        // A warning once a majority was lost; at start, the usual wait.
        log.write(had_majority ? log_level::warning : log_level::info,
                  "minority: " + std::to_string(live_count()) + " of " + std::to_string(n)
                    + " nodes seen; hosting nothing until a majority is back");
      minority = true;
    } else {
      if (minority)
        log("majority: " + std::to_string(live_count()) + " of " + std::to_string(n)
            + " nodes seen");
      minority = false;
      had_majority = true;
      std::set<std::string> alive{me};
      for (auto& kv : peers)
        alive.insert(kv.first);
      if (!grace_over)
        for (auto& n : topo.nodes)
          if (seen.count(n.name) == 0)
            alive.insert(n.name); // not seen yet: its instances wait for it
      for (auto& d : drained)
        alive.erase(d);
      for (auto& a : topology::place(topo, alive).assignments)
        if (a.node == me)
          desired[a.group][a.instance] = !a.at_home;
    }
    reconcile();
  }

  /// Stops what is no longer ours at once; claims what is newly ours.
  void reconcile() {
    for (auto& g : topo.groups) {
      auto& want = desired[g.name];
      auto& have = hosted[g.name];
      bool changed = false;
      for (auto i = have.begin(); i != have.end();) {
        if (want.count(i->first) == 0) {
          i = have.erase(i);
          changed = true;
        } else {
          ++i;
        }
      }
      if (changed)
        restart_local(g);
      if (fenced())
        continue; // the tick claims once the takeover delay is over
      for (auto& [instance, moved] : want)
        if (have.count(instance) == 0 && claims.count({g.name, instance}) == 0)
          claim(g, instance);
    }
  }

  // -- claims ----------------------------------------------------------------------

  /// Asks every live peer about `instance` of `g`; starts it when no peer
  /// holds it and, for a moved instance, a majority of all nodes (this one
  /// included) sees its home down. Two claimants: the home node wins, else
  /// the lower name. An unconfirmed claim is retried on the next tick.
  void claim(const topology::group_decl& g, uint32_t instance) {
    auto key = instance_key{g.name, instance};
    auto round = next_round++;
    claims[key] = round;
    auto home = home_of(g, instance);
    struct tally {
      size_t pending;
      size_t home_down = 1; // this node, which is claiming because home is not live
      bool blocked = false;
      /// The peers this claim asked. Only their word counts: a node that
      /// came up after the claim began was not asked, even if this node
      /// sees it by the time the answers arrive.
      std::set<std::string> asked;
    };
    auto t = std::make_shared<tally>();
    t->pending = peers.size();
    for (auto& kv : peers)
      t->asked.insert(kv.first);
    if (home == me)
      t->home_down = 0;
    auto finish = [this, key, round, t, home, group = g.name] {
      auto i = claims.find(key);
      if (i == claims.end() || i->second != round)
        return; // superseded
      claims.erase(i);
      auto& want = desired[group];
      auto w = want.find(key.second);
      if (w == want.end())
        return; // no longer ours
      auto moved = home != me;
      auto confirmed = !moved || t->home_down * 2 > topo.nodes.size();
      if (t->blocked || !confirmed || fenced())
        return; // the tick retries (a peer lost meanwhile: after the delay)
      hosted[group][key.second] = w->second;
      if (auto decl = topo.group(group))
        restart_local(*decl);
    };
    if (peers.empty()) {
      finish();
      return;
    }
    for (auto& [peer, agent] : peers) {
      self->request(agent, topo.cluster.failure_timeout * 2, claim_atom::value, g.name, instance,
                    home)
        .then(
          [this, t, finish, peer = peer, home](bool holds, bool claiming, bool home_down,
                                               const std::vector<std::string>& live) {
            if (holds)
              t->blocked = true;
            // A node the peer sees and this one does not (a partition
            // healing, this node reconnecting to one peer before another)
            // may run the instance: wait until this node sees it too.
            for (auto& n : live)
              if (n != me && t->asked.count(n) == 0)
                t->blocked = true;
            // Both claiming: the home node wins, else the lower name.
            if (claiming && (peer == home || (me != home && peer < me)))
              t->blocked = true;
            if (home_down)
              ++t->home_down;
            if (--t->pending == 0)
              finish();
          },
          [t, finish](caf::error&) {
            t->blocked = true; // an unanswered peer confirms nothing
            if (--t->pending == 0)
              finish();
          });
    }
  }

  /// A peer's question about `instance` of `group`.
  caf::message answer(const std::string& group, uint32_t instance, const std::string& home) {
    auto h = hosted.find(group);
    bool holds = (h != hosted.end() && h->second.count(instance) > 0) || stopping[group] > 0;
    bool claiming = claims.count({group, instance}) > 0;
    bool home_down = home != me && (peers.count(home) == 0 || drained.count(home) > 0);
    std::vector<std::string> live{me};
    for (auto& kv : peers)
      live.push_back(kv.first);
    return caf::make_message(holds, claiming, home_down, std::move(live));
  }

  // -- local groups ----------------------------------------------------------------

  /// Stops the local group of `g` and starts it with the instances hosted now.
  void restart_local(const topology::group_decl& g) {
    auto log_error = [this, name = g.name](const char* what) {
      return [this, name, what](caf::error& err) {
        if (err != ec::no_such_child)
          log.warning(std::string{what} + " " + name + " failed: " + render(err));
      };
    };
    directory->put(g.name, caf::actor{});
    // Sent in order to one supervisor, which handles them in order.
    ++stopping[g.name];
    auto was = std::move(running[g.name]);
    running[g.name].clear();
    self->request(groups, 30s, terminate_child_atom::value, g.name)
      .then(
        [this, name = g.name, was = std::move(was)] {
          --stopping[name];
          // What ran here until now, confirmed stopped: with the `hosting`
          // lines, each node's log says what it ran and when.
          if (!was.empty())
            log.with_group(name)("stopped hosting " + name + ": " + instance_list(was));
        },
            [this, name = g.name, on_error = log_error("stopping")](caf::error& err) mutable {
              --stopping[name];
              on_error(err);
            });
    self->request(groups, 30s, delete_child_atom::value, g.name)
      .then([] {}, log_error("removing"));
    auto& have = hosted[g.name];
    auto ids = ids_of(have);
    directory->set_instances(g.name, ids);
    auto glog = log.with_group(g.name);
    if (have.empty()) {
      glog("hosting " + g.name + ": none");
      return;
    }
    auto spec = factory(g, static_cast<uint32_t>(have.size()));
    if (!spec) {
      glog.error("cannot host " + g.name + ": " + render(spec.error()));
      return;
    }
    spec->log = glog;
    auto child = group_child(*spec, [dir = directory, name = g.name](const caf::actor& r) {
      dir->put(name, r);
      // A router that ends leaves the directory: one that registered after
      // its group was stopped (the stop raced its start) must not stay.
      caf::actor_cast<caf::abstract_actor*>(r)->attach_functor(
        [dir, name, addr = r.address()] { dir->erase_if(name, addr); });
    });
    if (!child) {
      glog.error("cannot host " + g.name + ": " + render(child.error()));
      return;
    }
    self->request(groups, 30s, start_child_atom::value, *child)
      .then([](caf::actor&) {}, log_error("starting"));
    running[g.name] = std::move(ids);
    std::string line = "hosting " + g.name + ":";
    bool first = true;
    for (auto& [instance, moved] : have) {
      line += (first ? " #" : ", #") + std::to_string(instance) + (moved ? " (moved)" : "");
      first = false;
    }
    glog(line);
  }

  static std::vector<uint32_t> ids_of(const std::map<uint32_t, bool>& have) {
    std::vector<uint32_t> ids;
    for (auto& kv : have)
      ids.push_back(kv.first);
    return ids;
  }

  static std::string instance_list(const std::vector<uint32_t>& ids) {
    std::string out;
    for (auto id : ids)
      out += (out.empty() ? "#" : ", #") + std::to_string(id);
    return out;
  }
};

} // namespace

caf::timespan startup_grace(const topology::topology& topo) {
  return topo.cluster.failure_timeout * 4;
}

namespace {

caf::behavior manager_impl(manager_actor* self, topology::topology topo, std::string me,
                           caf::actor agent, caf::actor groups, group_factory factory,
                           std::shared_ptr<group_directory> directory, log_fn log) {
  auto& st = self->state;
  st.self = self;
  st.topo = std::move(topo);
  st.me = me;
  st.groups = std::move(groups);
  st.factory = std::move(factory);
  st.directory = std::move(directory);
  st.log = std::move(log);
  self->request(agent, 30s, manager_atom::value, caf::actor{self}).then([] {});
  self->request(agent, 30s, subscribe_atom::value, caf::actor{self}).then([] {});
  self->send(self, tick_atom::value);
  self->delayed_send(self, startup_grace(st.topo), startup_grace_atom::value);
  // A manager started again after a crash finds the groups its predecessor
  // started: they stop, so that what runs here is what this one plans.
  for (auto& g : st.topo.groups) {
    self->request(st.groups, 30s, terminate_child_atom::value, g.name)
      .then([] {}, [](caf::error&) {});
    self->request(st.groups, 30s, delete_child_atom::value, g.name)
      .then([] {}, [](caf::error&) {});
  }
  st.replan();
  return {
    [self](member_up_atom, std::string& name, caf::actor& peer_agent) {
      // A claim in flight did not ask this node: void it, so that the
      // next one asks everyone seen now.
      self->state.claims.clear();
      self->state.peers[name] = peer_agent;
      self->state.seen.insert(name);
      self->state.replan();
    },
    [self](startup_grace_atom) {
      auto& st = self->state;
      st.grace_over = true;
      std::string late;
      for (auto& n : st.topo.nodes)
        if (n.name != st.me && st.seen.count(n.name) == 0)
          late += (late.empty() ? "" : ", ") + n.name;
      if (!late.empty())
        st.log("not seen since start: " + late + "; their instances may move now");
      st.replan();
    },
    [self](member_down_atom, std::string& name, std::string&) {
      auto& st = self->state;
      if (st.peers.erase(name) > 0) {
        st.last_loss = std::chrono::steady_clock::now();
        if (!st.minority && st.live_count() * 2 > st.topo.nodes.size())
          st.log("lost " + name + ": what it hosted starts elsewhere after the takeover delay ("
                 + to_duration_string(st.topo.cluster.takeover_delay) + ")");
      }
      st.replan();
    },
    [self](scale_atom, std::string& group, uint32_t n) {
      for (auto& g : self->state.topo.groups)
        if (g.name == group && g.instances != n) {
          g.instances = n;
          self->state.replan();
        }
    },
    [self](drain_atom, std::string& node, bool drained) {
      auto& d = self->state.drained;
      if (drained ? d.insert(node).second : d.erase(node) > 0)
        self->state.replan();
    },
    [self](claim_atom, std::string& group, uint32_t instance, std::string& home) {
      return self->state.answer(group, instance, home);
    },
    [self](tick_atom) {
      self->state.reconcile();
      self->delayed_send(self, self->state.topo.cluster.heartbeat_interval, tick_atom::value);
    },
  };
}

} // namespace

caf::expected<caf::actor> spawn_placement_manager(caf::actor_system& sys, topology::topology topo,
                                                  std::string me, caf::actor agent,
                                                  caf::actor groups, group_factory factory,
                                                  std::shared_ptr<group_directory> directory,
                                                  log_fn log) {
  if (!topo.node(me))
    return caf::make_error(ec::invalid_argument, "node '" + me + "' is not in " + topo.source);
  return sys.spawn(manager_impl, std::move(topo), std::move(me), std::move(agent),
                   std::move(groups), std::move(factory), std::move(directory), std::move(log));
}

} // namespace troupe::cluster
