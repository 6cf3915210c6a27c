#include "actors/websocket_broadcaster/console.hpp"

#include <functional>
#include <map>

#include <caf/all.hpp>
#include <nlohmann/json.hpp>

#include "runtime/core/duration.hpp"
#include "runtime/core/error.hpp"
#include "runtime/core/histogram.hpp"
#include "runtime/core/messages.hpp"

using namespace std::chrono_literals;

namespace troupe::ws {

namespace {

using json = nlohmann::json;

/// Internal: the console's own tick, `(console_tick_atom)`.
using console_tick_atom = caf::atom_constant<caf::atom("contick")>;

struct console_state {
  console_settings cfg;
  /// What this node's agent answered last.
  std::vector<member_info> members;
  node_info info;
  /// Per hosted group: its status and recent crashes, as last answered.
  std::map<std::string, group_status> status;
  std::map<std::string, std::vector<crash_record>> crashes;
  std::map<std::string, bool> drained;
  /// Peers up now, and their agents (from the agent's member events).
  std::map<std::string, caf::actor> peers;

  static inline const char* name = "troupe.console";
};

using console_actor = caf::stateful_actor<console_state>;

json snapshot(console_state& st) {
  json members = json::array();
  for (auto& m : st.members)
    members.push_back({{"name", m.name}, {"state", m.state}, {"since_ms", m.since_ms}});
  json groups = json::array();
  for (size_t i = 0; i < st.info.groups.size(); ++i) {
    auto& g = st.info.groups[i];
    json row = {{"name", g},
                {"instances", i < st.info.instances.size() ? st.info.instances[i]
                                                           : std::vector<uint32_t>{}}};
    if (auto s = st.status.find(g); s != st.status.end()) {
      auto& x = s->second;
      auto h = histogram::from_raw(x.latency_buckets, x.latency_sum_ms);
      row.update({{"state", x.state},
                  {"live_workers", x.live_workers},
                  {"accepted", x.accepted},
                  {"completed", x.completed},
                  {"in_flight", x.in_flight},
                  {"dead_letters", x.dead_letters},
                  {"fallbacks", x.fallbacks},
                  {"worker_restarts", x.worker_restarts},
                  {"group_restarts", x.group_restarts},
                  {"p99_ms", h.count() ? h.quantile_ms(0.99) : 0.0}});
    }
    json crashes = json::array();
    if (auto c = st.crashes.find(g); c != st.crashes.end()) {
      auto& xs = c->second;
      for (size_t k = xs.size() > 5 ? xs.size() - 5 : 0; k < xs.size(); ++k)
        crashes.push_back({{"child", xs[k].child},
                           {"when_ms", xs[k].when_ms},
                           {"reason", xs[k].reason.substr(0, 200)},
                           {"action", xs[k].action}});
    }
    row["crashes"] = std::move(crashes);
    groups.push_back(std::move(row));
  }
  json drained = json::array();
  for (auto& [node, d] : st.drained)
    if (d)
      drained.push_back(node);
  json out = {{"node", st.cfg.node},  {"at", unix_ms()},       {"members", std::move(members)},
              {"groups", std::move(groups)}, {"drained", std::move(drained)}};
  if (auto gw = st.cfg.gw.lock()) {
    out["ws_connections"] = gw->clients();
    out["alerts_pushed"] = gw->counters().alerts_pushed.load(std::memory_order_relaxed);
  }
  return out;
}

/// Sends the snapshot to the hub, which publishes it here and relays it.
void publish(console_actor* self) {
  auto& st = self->state;
  auto hub = st.cfg.hub ? st.cfg.hub() : caf::actor{};
  if (hub)
    self->send(hub, console_atom::value, st.cfg.node, snapshot(st).dump(), false);
}

/// Asks the agent for the members (then publishes) and refreshes the
/// hosted groups' status and crashes for the next snapshot.
void refresh(console_actor* self) {
  auto& st = self->state;
  auto agent = st.cfg.agent ? st.cfg.agent() : caf::actor{};
  if (!agent) {
    publish(self);
    return;
  }
  self->request(agent, 900ms, members_atom::value)
    .then(
      [self](std::vector<member_info>& ms) {
        self->state.members = std::move(ms);
        publish(self);
      },
      [self](caf::error&) { publish(self); });
  self->request(agent, 900ms, node_info_atom::value)
    .then([self](node_info& info) { self->state.info = std::move(info); }, [](caf::error&) {});
  if (!st.cfg.directory)
    return;
  for (auto& g : st.info.groups) {
    auto router = st.cfg.directory->get(g);
    if (!router)
      continue;
    self->request(router, 900ms, status_atom::value)
      .then([self, g](group_status& s) { self->state.status[g] = std::move(s); },
            [](caf::error&) {});
    self->request(router, 900ms, supervisor_atom::value)
      .then(
        [self, g](caf::actor& sup) {
          if (!sup)
            return;
          self->request(sup, 900ms, crashes_atom::value)
            .then([self, g](std::vector<crash_record>& xs) { self->state.crashes[g] = std::move(xs); },
                  [](caf::error&) {});
        },
        [](caf::error&) {});
  }
}

/// Answers the page that asked (`{"type":"command",...}`) and records the
/// action in the audit trail.
void done(console_actor* self, uint64_t session, const std::string& rid, const std::string& who,
          const std::string& from, const std::string& line, const caf::error& err,
          const std::string& outcome = {}) {
  auto& st = self->state;
  json answer = {{"type", "command"}, {"command", line}, {"ok", !err}};
  if (!outcome.empty())
    answer["outcome"] = outcome;
  if (err)
    answer["error"] = render(err);
  if (!rid.empty())
    answer["id"] = json::parse(rid, nullptr, false);
  if (auto gw = st.cfg.gw.lock())
    gw->answer(session, std::make_shared<const std::string>(answer.dump()));
  if (auto agent = st.cfg.agent ? st.cfg.agent() : caf::actor{})
    self->send(agent, audit_atom::value, who, from, std::string{"page"}, line, !err,
               err ? render(err) : std::string{"ok"});
  st.cfg.log((err ? "page command failed: " : "page command: ") + line + " (by " + who + " from "
             + from + ")" + (err ? ": " + render(err) : std::string{})
             + (outcome.empty() ? std::string{} : " (" + outcome + ")"));
}

/// This node's part of `restart GROUP` or `kill GROUP/INSTANCE`: `cb(acted,
/// outcome)` once done (`acted` false: this node does not host it, or it
/// failed).
void exec_here(console_actor* self, const std::string& who, const std::string& action,
               const std::string& target, std::function<void(bool, std::string)> cb) {
  auto& st = self->state;
  if (action == "restart") {
    if (!st.info.groups_root
        || std::find(st.info.groups.begin(), st.info.groups.end(), target)
             == st.info.groups.end())
      return cb(false, "does not host " + target);
    auto groups_root = st.info.groups_root;
    self->request(groups_root, 10s, terminate_child_atom::value, target)
      .then(
        [=]() {
          self->request(groups_root, 10s, restart_child_atom::value, target)
            .then([=](caf::actor&) { cb(true, "restarted " + target); },
                  [=](caf::error& err) { cb(false, render(err)); });
        },
        [=](caf::error& err) { cb(false, render(err)); });
    return;
  }
  // kill GROUP/INSTANCE: the worker of that instance, if this node runs it.
  auto slash = target.find('/');
  auto group = target.substr(0, slash);
  char* end = nullptr;
  auto text = slash == std::string::npos ? std::string{} : target.substr(slash + 1);
  auto instance = std::strtoul(text.c_str(), &end, 10);
  if (text.empty() || *end != '\0')
    return cb(false, "kill takes GROUP/INSTANCE");
  size_t index = 0;
  bool found = false;
  for (size_t i = 0; i < st.info.groups.size() && !found; ++i)
    if (st.info.groups[i] == group && i < st.info.instances.size())
      for (size_t k = 0; k < st.info.instances[i].size(); ++k)
        if (st.info.instances[i][k] == instance) {
          index = k;
          found = true;
          break;
        }
  auto router = st.cfg.directory ? st.cfg.directory->get(group) : caf::actor{};
  if (!found || !router)
    return cb(false, "does not host " + target);
  self->request(router, 5s, supervisor_atom::value)
    .then(
      [=](caf::actor& sup) {
        if (!sup)
          return cb(false, "the group is down here");
        self->request(sup, 5s, which_children_atom::value)
          .then(
            [=](std::vector<child_info>& kids) {
              for (auto& child : kids) {
                auto local = child.name.substr(child.name.rfind('/') + 1);
                if (static_cast<size_t>(std::strtoul(local.c_str(), nullptr, 10)) != index
                    || !child.handle)
                  continue;
                self->send<caf::message_priority::high>(
                  child.handle,
                  caf::exit_msg{self->address(), caf::make_error(ec::killed_by_operator, who)});
                return cb(true, "killed " + target + " (" + child.name + ")");
              }
              cb(false, "no running worker of " + target);
            },
            [=](caf::error& err) { cb(false, render(err)); });
      },
      [=](caf::error& err) { cb(false, render(err)); });
}

void run_command(console_actor* self, uint64_t session, const std::string& rid,
                 const std::string& who, const std::string& from, const std::string& action,
                 const std::string& target) {
  auto& st = self->state;
  auto line = action + " " + target;
  auto fail = [&](const std::string& why) {
    done(self, session, rid, who, from, line, caf::make_error(ec::invalid_argument, why));
  };
  auto agent = st.cfg.agent ? st.cfg.agent() : caf::actor{};
  if (!agent)
    return fail("this node has no agent now");
  if (action == "drain" || action == "undrain") {
    self->request(agent, 5s, drain_atom::value, target, action == "drain")
      .then([=]() { done(self, session, rid, who, from, line, caf::none); },
            [=](caf::error& err) { done(self, session, rid, who, from, line, err); });
    return;
  }
  if (action != "restart" && action != "kill")
    return fail("unknown action '" + action + "' (drain, undrain, restart, kill)");
  // As the shell does: on every node that hosts it. This node's part here,
  // each peer's by its console (the `@console` entry of its directory).
  struct tally {
    size_t left = 0;
    bool acted = false;
    std::vector<std::string> outcomes;
  };
  auto t = std::make_shared<tally>();
  t->left = 1 + st.peers.size();
  auto one = [=](const std::string& node, bool acted, const std::string& outcome) {
    t->acted = t->acted || acted;
    if (acted)
      t->outcomes.push_back(node + ": " + outcome);
    if (--t->left > 0)
      return;
    std::string all;
    for (auto& x : t->outcomes)
      all += (all.empty() ? "" : "; ") + x;
    done(self, session, rid, who, from, line,
         t->acted ? caf::error{}
                  : caf::make_error(ec::invalid_argument, "no reachable node runs " + target),
         all);
  };
  exec_here(self, who, action, target, [=, node = st.cfg.node](bool acted, std::string outcome) {
    one(node, acted, outcome);
  });
  for (auto& [node, peer_agent] : st.peers) {
    auto name = node;
    self->request(peer_agent, 5s, group_atom::value, std::string{console_service})
      .then(
        [=](caf::actor& console) {
          if (!console)
            return one(name, false, "no console");
          self->request(console, 15s, console_exec_atom::value, who, from, action, target)
            .then([=](bool acted, std::string& outcome) { one(name, acted, outcome); },
                  [=](caf::error& err) { one(name, false, render(err)); });
        },
        [=](caf::error& err) { one(name, false, render(err)); });
  }
}

caf::behavior console_impl(console_actor* self, console_settings cfg) {
  self->state.cfg = std::move(cfg);
  // Membership changes and drains show at once, not at the next tick.
  if (auto agent = self->state.cfg.agent ? self->state.cfg.agent() : caf::actor{})
    self->send(agent, subscribe_atom::value, caf::actor{self});
  self->send(self, console_tick_atom::value);
  return {
    [self](console_tick_atom) {
      if (self->current_sender().get() != self->ctrl())
        return;
      refresh(self);
      self->delayed_send(self, 1s, console_tick_atom::value);
    },
    [self](member_up_atom, std::string& node, caf::actor& peer_agent) {
      self->state.peers[node] = peer_agent;
      refresh(self);
    },
    [self](member_down_atom, std::string& node, std::string&) {
      self->state.peers.erase(node);
      refresh(self);
    },
    [self](console_exec_atom, std::string& who, std::string& from, std::string& action,
           std::string& target) -> caf::result<bool, std::string> {
      // A peer's console (over the cluster's authenticated transport) asks
      // for this node's part of a page's command; never an anonymous one.
      auto src = self->current_sender();
      if (!src || (action != "restart" && action != "kill"))
        return caf::make_error(ec::not_authenticated);
      auto rp = self->make_response_promise<bool, std::string>();
      self->state.cfg.log("page command " + action + " " + target + " (by " + who + " from "
                          + from + ", through a peer's console)");
      exec_here(self, who, action, target,
                [rp](bool acted, std::string outcome) mutable { rp.deliver(acted, outcome); });
      return rp;
    },
    [self](drain_atom, std::string& node, bool drained) {
      self->state.drained[node] = drained;
      refresh(self);
    },
    [](scale_atom, std::string&, uint32_t) {},
    [self](console_command_atom, uint64_t session, std::string& rid, std::string& who,
           std::string& from, std::string& action, std::string& target) {
      // Only the node's own gateway (through a local actor) may ask.
      auto src = self->current_sender();
      if (!src || src->node() != self->system().node())
        return;
      run_command(self, session, rid, who, from, action, target);
    },
  };
}

} // namespace

caf::actor spawn_console(caf::actor_system& sys, console_settings cfg) {
  return sys.spawn(console_impl, std::move(cfg));
}

} // namespace troupe::ws
