#include "runtime/cluster/cluster_router.hpp"

#include <deque>
#include <map>
#include <set>
#include <unordered_map>

#include <caf/event_based_actor.hpp>
#include <caf/sec.hpp>
#include <caf/stateful_actor.hpp>

#include "runtime/core/error.hpp"
#include "runtime/core/messages.hpp"
#include "topology/placement.hpp"

namespace troupe::cluster {

namespace {

using namespace std::chrono_literals;
using clock_type = std::chrono::steady_clock;


/// A message accepted and not yet answered.
struct entry {
  caf::message content;
  caf::response_promise rp;
  bool is_request = false;
  /// The node holding it; empty while it waits in the queue.
  std::string node;
  /// The group router holding it (a remote one is monitored).
  caf::actor_addr router;
  uint32_t dispatch = 0;
  clock_type::time_point deadline;
};

struct router_state;
using router_actor = caf::stateful_actor<router_state>;

/// The state of a cluster router. Owned by its actor.
struct router_state {
  static inline const char* name = "troupe.cluster_router";

  router_actor* self = nullptr;
  topology::topology topo;
  const topology::group_decl* decl = nullptr;
  std::string me;
  std::shared_ptr<group_directory> local;
  group_spec spec;
  /// Live peers and their agents.
  std::map<std::string, caf::actor> peers;
  /// Nodes an operator drained: the plan leaves them out.
  std::set<std::string> drained;
  /// The node that owns each instance under the current plan.
  std::vector<std::string> owners;
  /// The distinct hosting nodes, in instance order.
  std::vector<std::string> hosts;
  /// Remote group routers, looked up through their node's agent.
  std::map<std::string, caf::actor> routers;
  std::set<std::string> lookups;
  std::unordered_map<uint64_t, entry> pending;
  std::deque<uint64_t> queue;
  uint64_t next_seq = 1;
  size_t next_rr = 0;
  std::map<std::string, uint64_t> routed;
  uint64_t resent = 0;
  std::deque<dead_letter> recent_dead;

  // -- placement ---------------------------------------------------------------

  void replan() {
    std::set<std::string> alive{me};
    for (auto& kv : peers)
      alive.insert(kv.first);
    for (auto& d : drained)
      alive.erase(d);
    owners.assign(decl->instances, std::string{});
    hosts.clear();
    for (auto& a : topology::place(topo, alive).assignments) {
      if (a.group != decl->name)
        continue;
      owners[a.instance] = a.node;
      if (std::find(hosts.begin(), hosts.end(), a.node) == hosts.end())
        hosts.push_back(a.node);
    }
  }

  /// The node a message goes to, or "" when no live node hosts the group.
  std::string choose(const caf::message& content) {
    if (hosts.empty())
      return {};
    if (spec.route == routing::key_hash && spec.key) {
      uint64_t key = 0;
      try {
        key = spec.key(content);
      } catch (...) {
        key = 0;
      }
      return owners[key % owners.size()];
    }
    if (std::find(hosts.begin(), hosts.end(), me) != hosts.end())
      return me; // local instances first
    return hosts[next_rr++ % hosts.size()];
  }

  /// The group router on `node`, or invalid (then a lookup is started).
  caf::actor router_on(const std::string& node) {
    if (node == me)
      return local->get(decl->name);
    auto i = routers.find(node);
    if (i != routers.end())
      return i->second;
    lookup(node);
    return nullptr;
  }

  void lookup(const std::string& node) {
    auto p = peers.find(node);
    if (p == peers.end() || lookups.count(node))
      return;
    lookups.insert(node);
    self->request(p->second, topo.cluster.failure_timeout * 2, group_atom::value, decl->name)
      .then(
        [this, node](caf::actor& r) {
          lookups.erase(node);
          if (r && peers.count(node)) {
            // A request to a remote actor that died is never answered in CAF
            // 0.17.6: watch it, and send again what it held when it goes.
            self->monitor(r);
            routers[node] = r;
            pump();
          }
        },
        [this, node](caf::error&) { lookups.erase(node); });
  }

  // -- accepting -----------------------------------------------------------------

  caf::result<caf::message> accept(caf::message content, bool is_request) {
    auto rp = self->make_response_promise();
    if (pending.size() >= spec.max_in_flight) {
      if (is_request)
        rp.deliver(caf::make_error(ec::group_saturated, decl->name));
      else
        dead(std::move(content), "group saturated");
      return rp;
    }
    auto seq = next_seq++;
    auto& e = pending[seq];
    e.content = std::move(content);
    e.is_request = is_request;
    e.deadline = clock_type::now() + spec.call_timeout;
    if (is_request)
      e.rp = std::move(rp);
    queue.push_back(seq);
    pump();
    return caf::message{};
  }

  void dead(caf::message content, std::string why) {
    recent_dead.push_back(dead_letter{decl->name, std::move(why), std::move(content), 0});
    while (recent_dead.size() > spec.dead_letter_history)
      recent_dead.pop_front();
    if (spec.dead_letters)
      self->send(spec.dead_letters, recent_dead.back());
  }

  /// Answers `seq` by the fallback (or `otherwise`) and forgets it.
  void degrade(uint64_t seq, caf::error otherwise) {
    auto i = pending.find(seq);
    if (i == pending.end())
      return;
    auto e = std::move(i->second);
    pending.erase(i);
    if (!e.is_request) {
      dead(std::move(e.content), render(otherwise));
      return;
    }
    if (!spec.fallback) {
      e.rp.deliver(std::move(otherwise));
      return;
    }
    try {
      auto answer = spec.fallback(e.content);
      if (answer)
        e.rp.deliver(std::move(*answer));
      else
        e.rp.deliver(std::move(answer.error()));
    } catch (std::exception& ex) {
      e.rp.deliver(caf::make_error(ec::fallback_failed, decl->name, ex.what()));
    }
  }

  // -- dispatching ---------------------------------------------------------------

  /// Sends what waits in the queue to its node, keeping what cannot go yet.
  void pump() {
    std::deque<uint64_t> waiting;
    while (!queue.empty()) {
      auto seq = queue.front();
      queue.pop_front();
      auto i = pending.find(seq);
      if (i == pending.end())
        continue;
      auto& e = i->second;
      auto node = choose(e.content);
      if (node.empty()) {
        // In a minority (still joining, or cut off) this node cannot tell
        // whether the group runs: hold the message until the call timeout.
        // In a majority, no host means the group is down: fallback now.
        if ((peers.size() + 1) * 2 <= topo.nodes.size() && topo.nodes.size() > 1) {
          waiting.push_back(seq);
          continue;
        }
        degrade(seq, caf::make_error(ec::group_down, decl->name,
                                     std::string{"no live node hosts it"}));
        continue;
      }
      auto router = router_on(node);
      if (!router) {
        waiting.push_back(seq); // its router is being looked up or started
        continue;
      }
      dispatch(seq, e, node, router);
    }
    queue = std::move(waiting);
  }

  void dispatch(uint64_t seq, entry& e, const std::string& node, const caf::actor& router) {
    e.node = node;
    e.router = router.address();
    auto d = ++e.dispatch;
    ++routed[node];
    self->request(router, caf::infinite, envelope{e.content})
      .then([this, seq, d](reply& r) { on_reply(seq, d, r); },
            [this, seq, d](caf::error& err) { on_failure(seq, d, err); });
  }

  void on_reply(uint64_t seq, uint32_t d, reply& r) {
    auto i = pending.find(seq);
    if (i == pending.end() || i->second.dispatch != d)
      return;
    if (i->second.is_request)
      i->second.rp.deliver(std::move(r.content));
    pending.erase(i);
  }

  void on_failure(uint64_t seq, uint32_t d, caf::error& err) {
    auto i = pending.find(seq);
    if (i == pending.end() || i->second.dispatch != d)
      return;
    auto& e = i->second;
    if (is(err, caf::sec::request_receiver_down) || err == ec::group_stopping) {
      // That router is gone or going (its group moved or restarted): send
      // the message again under the current plan.
      if (e.node != me)
        routers.erase(e.node);
      resend(seq, e);
      pump();
      return;
    }
    if (e.is_request)
      e.rp.deliver(std::move(err));
    pending.erase(i);
  }

  void resend(uint64_t seq, entry& e) {
    e.node.clear();
    e.router = caf::actor_addr{};
    ++e.dispatch; // a late answer from the old node is ignored
    ++resent;
    queue.push_front(seq);
  }

  // -- membership ------------------------------------------------------------------

  void on_member_up(const std::string& name, const caf::actor& agent) {
    peers[name] = agent;
    routers.erase(name);
    replan();
    pump();
  }

  void on_member_down(const std::string& name) {
    peers.erase(name);
    routers.erase(name);
    replan();
    for (auto& [seq, e] : pending)
      if (e.node == name)
        resend(seq, e);
    pump();
  }

  /// A remote group router died (its group moved or restarted there).
  void on_router_down(const caf::down_msg& msg) {
    for (auto i = routers.begin(); i != routers.end();) {
      if (i->second.address() == msg.source)
        i = routers.erase(i);
      else
        ++i;
    }
    for (auto& [seq, e] : pending)
      if (e.router == msg.source)
        resend(seq, e);
    pump();
  }

  void on_tick() {
    auto now = clock_type::now();
    std::vector<uint64_t> expired;
    for (auto& [seq, e] : pending)
      if (e.is_request && e.deadline <= now)
        expired.push_back(seq);
    for (auto seq : expired) {
      queue.erase(std::remove(queue.begin(), queue.end(), seq), queue.end());
      pending[seq].dispatch++;
      degrade(seq, caf::make_error(ec::call_timeout, decl->name));
    }
    pump();
  }

  std::vector<std::string> routes() const {
    std::vector<std::string> result;
    for (auto& [node, n] : routed)
      result.push_back(node + " " + std::to_string(n));
    result.push_back("resent " + std::to_string(resent));
    result.push_back("in_flight " + std::to_string(pending.size()));
    return result;
  }
};

caf::behavior router_impl(router_actor* self, topology::topology topo, std::string group,
                          std::string me, caf::actor agent,
                          std::shared_ptr<group_directory> local, group_spec spec) {
  auto& st = self->state;
  st.self = self;
  st.topo = std::move(topo);
  st.decl = st.topo.group(group);
  st.me = std::move(me);
  st.local = std::move(local);
  st.spec = std::move(spec);
  st.replan();
  self->request(agent, 30s, subscribe_atom::value, caf::actor{self}).then([] {});
  self->set_default_handler([self](caf::scheduled_actor*, caf::message_view& x) {
    auto is_request = self->current_mailbox_element()->mid.is_request();
    return self->state.accept(x.move_content_to_message(), is_request);
  });
  self->set_down_handler([self](caf::down_msg& msg) { self->state.on_router_down(msg); });
  self->send(self, tick_atom::value);
  return {
    [self](member_up_atom, std::string& name, caf::actor& peer_agent) {
      self->state.on_member_up(name, peer_agent);
    },
    [self](member_down_atom, std::string& name, std::string&) {
      self->state.on_member_down(name);
    },
    [self](scale_atom, std::string& group, uint32_t n) {
      auto& st = self->state;
      for (auto& g : st.topo.groups)
        if (g.name == group && g.instances != n) {
          g.instances = n;
          st.decl = st.topo.group(st.decl->name);
          st.replan();
          st.pump();
        }
    },
    [self](drain_atom, std::string& name, bool drained) {
      auto& st = self->state;
      if (drained ? st.drained.insert(name).second : st.drained.erase(name) > 0) {
        st.replan();
        st.pump();
      }
    },
    [self](routes_atom) { return self->state.routes(); },
    [self](dead_letters_atom) {
      auto& d = self->state.recent_dead;
      return std::vector<dead_letter>(d.begin(), d.end());
    },
    [self](tick_atom) {
      self->state.on_tick();
      self->delayed_send(self, std::max(caf::timespan{10ms}, self->state.spec.call_timeout / 10),
                         tick_atom::value);
    },
  };
}

} // namespace

caf::expected<caf::actor> spawn_cluster_router(caf::actor_system& sys, topology::topology topo,
                                               std::string group, std::string me,
                                               caf::actor agent,
                                               std::shared_ptr<group_directory> local,
                                               group_spec spec) {
  if (!topo.group(group))
    return caf::make_error(ec::invalid_argument,
                           "no group '" + group + "' in " + topo.source);
  if (auto err = validate(spec))
    return err;
  return sys.spawn(router_impl, std::move(topo), std::move(group), std::move(me),
                   std::move(agent), std::move(local), std::move(spec));
}

} // namespace troupe::cluster
