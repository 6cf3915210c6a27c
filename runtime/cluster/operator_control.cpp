// The node agent's operator control plane: what operators ask of a node
// (its description, drain, scale, log level, halt) and the decisions peers
// share, each kept as one last-writer-wins register.
#include "runtime/cluster/agent_state.hpp"

#include <caf/event_based_actor.hpp>

#include "runtime/core/error.hpp"

namespace troupe::cluster {

int64_t agent_state::next_stamp(const std::map<std::string, operator_decision>& known,
                                const std::string& key) {
  auto now = unix_ms();
  auto i = known.find(key);
  return i != known.end() && i->second.stamp_ms >= now ? i->second.stamp_ms + 1 : now;
}

std::optional<uint32_t> agent_state::take(std::map<std::string, operator_decision>& known,
                                          const operator_decision& d, uint32_t fallback) {
  auto i = known.find(d.key);
  if (i != known.end() && d.stamp_ms <= i->second.stamp_ms)
    return std::nullopt;
  auto before = i != known.end() ? i->second.value : fallback;
  known[d.key] = d;
  return before;
}

void agent_state::apply_drain(const operator_decision& d, const std::string& from) {
  auto before = take(drains, d, 0);
  if (!before || *before == d.value)
    return;
  log((d.value ? "draining " : "no longer draining ") + d.key + from);
  // The listeners plan with it: the placement manager (what this node
  // hosts) and the cluster routers (where messages go).
  for (auto& l : listeners)
    self->send(l, drain_atom::value, d.key, d.value == 1);
}

void agent_state::apply_scale(const operator_decision& d, const std::string& from) {
  auto before = take(scales, d, topo.group(d.key)->instances);
  if (!before || *before == d.value)
    return;
  log.with_group(d.key)("scaling " + d.key + ": " + std::to_string(*before) + " -> "
                        + std::to_string(d.value) + " instances" + from);
  for (auto& l : listeners)
    self->send(l, scale_atom::value, d.key, d.value);
}

void agent_state::share(operator_decisions d) {
  for (auto& [name, p] : peers)
    if (p.state == "up" && p.agent)
      self->send(p.agent, decisions_atom::value, d);
}

operator_decisions agent_state::decisions() const {
  operator_decisions result;
  for (auto& kv : drains)
    result.drains.push_back(kv.second);
  for (auto& kv : scales)
    result.scales.push_back(kv.second);
  return result;
}

audit_entry agent_state::sender_entry(const std::string& command) {
  audit_entry x;
  auto nid = sender_node();
  auto t = trusted.find(nid);
  x.who = t != trusted.end() ? t->second : sender_local() ? "this node" : "unknown";
  x.from = nid ? to_string(nid) : std::string{"this process"};
  x.command = command;
  return x;
}

void agent_state::audited(const std::string& command, const caf::error& err) {
  auto x = sender_entry(command);
  x.ok = !err;
  x.result = err ? render(err) : "ok";
  record(std::move(x));
}

void agent_state::record(audit_entry x) {
  if (audit) {
    audit(std::move(x));
    return;
  }
  log.warning("audit who=" + x.who + " command=" + x.command + " result=" + x.result);
}

bool agent_state::is_operator(const std::string& name) {
  return name.rfind("shell/", 0) == 0;
}

node_info agent_state::describe() const {
  auto result = describe_node ? describe_node() : info;
  result.name = me;
  if (result.started_ms == 0)
    result.started_ms = started_ms;
  result.running_actors = self->system().registry().running();
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

caf::message_handler operator_handlers(agent_actor* self) {
  return {
    [self](node_info_atom) -> caf::result<node_info> {
      if (!self->state.sender_trusted())
        return caf::make_error(ec::not_authenticated);
      return self->state.describe();
    },
    [self](node_info_atom, node_info& info) -> caf::result<void> {
      if (!self->state.sender_local())
        return caf::make_error(ec::not_authenticated);
      self->state.info = std::move(info);
      return caf::unit;
    },
    [self](drain_atom, std::string& node, bool drained) -> caf::result<void> {
      auto& st = self->state;
      if (!st.sender_trusted())
        return caf::make_error(ec::not_authenticated);
      auto command = std::string{drained ? "drain " : "undrain "} + node;
      if (!st.topo.node(node)) {
        auto err = caf::make_error(ec::invalid_argument, "no node '" + node + "' in this cluster");
        st.audited(command, err);
        return err;
      }
      operator_decision d{node, drained ? 1u : 0u, agent_state::next_stamp(st.drains, node)};
      st.apply_drain(d, "");
      st.share({{d}, {}});
      st.audited(command, {});
      return caf::unit;
    },
    [self](scale_atom, std::string& group, uint32_t n) -> caf::result<void> {
      auto& st = self->state;
      if (!st.sender_trusted())
        return caf::make_error(ec::not_authenticated);
      auto command = "scale " + group + " " + std::to_string(n);
      caf::error err;
      if (!st.topo.group(group))
        err = caf::make_error(ec::invalid_argument, "no group '" + group + "' in this cluster");
      else if (n < 1 || n > 1024)
        err = caf::make_error(ec::invalid_argument, std::string{"a group has 1 to 1024 instances"});
      if (err) {
        st.audited(command, err);
        return err;
      }
      operator_decision d{group, n, agent_state::next_stamp(st.scales, group)};
      st.apply_scale(d, "");
      st.share({{}, {d}});
      st.audited(command, {});
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
      if (!x) {
        st.audited("log " + level, x.error());
        return x.error();
      }
      auto& l = st.log.get();
      if (!l)
        return caf::make_error(ec::invalid_argument, std::string{"this node has no log"});
      st.audited("log " + level, {});
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
    [self](trace_atom, std::string& id) -> caf::result<caf::message> {
      // An operator's `trace`: the spans this node holds of the event.
      auto& st = self->state;
      if (!st.sender_trusted())
        return caf::make_error(ec::not_authenticated);
      auto spans = st.directory->get("@traces");
      if (!spans)
        return caf::make_error(ec::group_down,
                               std::string{"this node's traces service is not running"});
      return self->delegate(spans, trace_atom::value, std::move(id));
    },
    [self](revoke_atom, std::string& user) -> caf::result<int64_t> {
      auto& st = self->state;
      if (!st.sender_trusted())
        return caf::make_error(ec::not_authenticated);
      // The node's client token keeper (a service of the
      // websocket-broadcaster domain) stores it in Redis, where every
      // node reads it within a second.
      auto command = "token revoke " + user;
      auto keeper = st.directory->get("@client-tokens");
      if (!keeper) {
        auto err = caf::make_error(ec::group_down,
                                   std::string{"this node keeps no client tokens (it runs no "
                                               "websocket-broadcaster service)"});
        st.audited(command, err);
        return err;
      }
      // Who asked, kept for the answer's audit entry.
      auto who = st.sender_entry(command);
      auto rp = self->make_response_promise<int64_t>();
      auto record = [self, who](const caf::error& err) mutable {
        who.ok = !err;
        who.result = err ? render(err) : "ok";
        self->state.record(who);
      };
      self->request(keeper, std::chrono::seconds(5), revoke_atom::value, std::move(user))
        .then(
          [rp, record](int64_t at) mutable {
            record({});
            rp.deliver(at);
          },
          [rp, record](caf::error& err) mutable {
            record(err);
            rp.deliver(std::move(err));
          });
      return rp;
    },
    [self](audit_atom, std::string& command, bool ok, std::string& result) -> caf::result<void> {
      // A whole command an operator's shell ran (one that went to
      // supervisors or routers, or a read): recorded with who sent it.
      auto& st = self->state;
      if (!st.sender_trusted())
        return caf::make_error(ec::not_authenticated);
      if (command.size() > 4096)
        command.resize(4096);
      if (result.size() > 4096)
        result.resize(4096);
      auto x = st.sender_entry(command);
      x.source = "shell";
      x.ok = ok;
      x.result = ok ? "ok" : result;
      st.record(std::move(x));
      return caf::unit;
    },
    [self](audit_atom, std::string& who, std::string& from, std::string& source,
           std::string& command, bool ok, std::string& result) -> caf::result<void> {
      // An operator's action taken through an actor of this process (the
      // live page's console), with the operator its caller authenticated.
      auto& st = self->state;
      if (!st.sender_local())
        return caf::make_error(ec::not_authenticated);
      audit_entry x;
      x.who = who.substr(0, 256);
      x.from = from.substr(0, 256);
      x.source = source.substr(0, 32);
      x.command = command.substr(0, 4096);
      x.ok = ok;
      x.result = ok ? "ok" : result.substr(0, 4096);
      st.record(std::move(x));
      return caf::unit;
    },
    [self](halt_atom) -> caf::result<void> {
      if (!self->state.sender_trusted())
        return caf::make_error(ec::not_authenticated);
      auto who = self->state.trusted.count(self->state.sender_node())
                   ? self->state.trusted[self->state.sender_node()]
                   : std::string{"this node"};
      self->state.log("stopping: asked by " + who);
      self->state.audited("stop " + self->state.me, {});
      // Answer first, then end: the node process sees the agent end with
      // this reason, stops in order and exits with code 0.
      self->delayed_send(self, std::chrono::milliseconds(50), halt_atom::value, true);
      return caf::unit;
    },
    [self](halt_atom, bool) {
      if (!self->state.sender_local()) {
        self->state.log.warning("ignored a halt from outside this process");
        return;
      }
      if (auto& halt = self->state.on_halt) {
        halt();
        halt = nullptr;
        return;
      }
      self->quit(caf::make_error(ec::stopped_by_operator));
    },
  };
}

} // namespace troupe::cluster
