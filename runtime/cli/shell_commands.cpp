// `troupe shell`'s commands: one table (name, arguments, help, arity,
// runner) and the session that runs them on a cluster.
#include "runtime/cli/shell_commands.hpp"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <ctime>
#include <functional>
#include <map>
#include <optional>

#include <caf/all.hpp>

#include "actors/ranker/ranking.hpp"
#include "runtime/cli/shell_link.hpp"
#include "runtime/core/duration.hpp"
#include "runtime/core/error.hpp"
#include "runtime/core/histogram.hpp"
#include "runtime/core/messages.hpp"
#include "runtime/core/types.hpp"
#include "runtime/kafka/client.hpp"

namespace troupe::cli {

namespace {

using json = nlohmann::json;
using namespace std::chrono_literals;

outcome usage(const std::string& why) {
  outcome o;
  o.rc = shell_usage;
  o.text = why + "\n";
  o.doc = {{"error", "usage"}, {"message", why}};
  return o;
}

outcome failed(const std::string& why) {
  outcome o;
  o.rc = shell_failed;
  o.text = why + "\n";
  o.doc = {{"error", "failed"}, {"message", why}};
  return o;
}

std::string pad(std::string s, size_t n) {
  if (s.size() < n)
    s.append(n - s.size(), ' ');
  return s;
}

std::string fixed(double x, int digits = 1) {
  char buf[64];
  std::snprintf(buf, sizeof(buf), "%.*f", digits, x);
  return buf;
}

std::string human_duration(int64_t ms) {
  if (ms < 0)
    ms = 0;
  auto s = ms / 1000;
  char buf[64];
  if (s < 60)
    std::snprintf(buf, sizeof(buf), "%llds", static_cast<long long>(s));
  else if (s < 3600)
    std::snprintf(buf, sizeof(buf), "%lldm%02llds", static_cast<long long>(s / 60),
                  static_cast<long long>(s % 60));
  else
    std::snprintf(buf, sizeof(buf), "%lldh%02lldm", static_cast<long long>(s / 3600),
                  static_cast<long long>((s % 3600) / 60));
  return buf;
}

std::string clock_time(int64_t ms) {
  std::time_t t = static_cast<std::time_t>(ms / 1000);
  std::tm tm{};
  gmtime_r(&t, &tm);
  char buf[32];
  std::strftime(buf, sizeof(buf), "%H:%M:%S", &tm);
  return std::string{buf} + "." + std::to_string(1000 + ms % 1000).substr(1) + "Z";
}

struct local_group {
  std::string node;
  std::vector<uint32_t> instances;
  caf::actor router;
  std::optional<group_status> status;
};
class session;

using args = std::vector<std::string>;

/// One command: what `help` says of it, how many arguments it takes, and
/// what runs it.
struct command {
  const char* name;
  const char* args;
  const char* summary;
  const char* details;
  size_t min_args;
  size_t max_args;
  outcome (*run)(session& s, const std::vector<std::string>& args);
};

class session : public shell_session, cluster_link {
public:
  using cluster_link::cluster_link;

  bool join(std::string& why) override {
    return cluster_link::join(why);
  }

  outcome run(const std::vector<std::string>& w) override {
    if (w.empty())
      return {};
    auto a = args(w.begin() + 1, w.end());
    for (auto& c : table()) {
      if (w[0] != c.name)
        continue;
      if (a.size() < c.min_args || a.size() > c.max_args)
        return c.max_args == 0 ? usage(w[0] + " takes no argument")
                               : usage("usage: " + w[0] + " " + c.args);
      auto o = c.run(*this, a);
      audit(w, o);
      return o;
    }
    std::string known;
    for (auto& c : table())
      known += (known.empty() ? "" : ", ") + std::string{c.name};
    return usage("unknown command '" + w[0] + "' (known: " + known + "; `help` explains them)");
  }

  /// Reports a command that ran to the first node it is connected to, for
  /// the node's audit trail (`help` and `quit` aside).
  void audit(const std::vector<std::string>& w, const outcome& o) {
    if (w[0] == "help" || w[0] == "quit")
      return;
    std::string line;
    for (auto& x : w)
      line += (line.empty() ? "" : " ") + x;
    std::string result = "ok";
    if (o.rc != 0) {
      result = o.text.substr(0, o.text.find('\n')).substr(0, 512);
      if (result.empty())
        result = "exit code " + std::to_string(o.rc);
    }
    for (auto& n : topo_.nodes) {
      auto i = links_.find(n.name);
      if (i == links_.end() || !i->second.agent)
        continue;
      if (!ask_void(i->second.agent, audit_atom::value, line, o.rc == 0, result))
        return;
    }
  }

  /// Every command, in `help`'s order.
  static const std::vector<command>& table() {
    static const std::vector<command> xs = {
        {"help", "[command]", "list the commands, or explain one", "",
         0, 1, [](session& s, const args& a) { return s.help(a); }},
        {"nodes", "", "each node: state, address, uptime, the groups it hosts",
         "The state is the first reachable node's view (up, joining, down), or\n"
         "`unreachable` when the shell itself cannot reach the node.",
         0, 0, [](session& s, const args& a) { return s.nodes(); }},
        {"groups", "", "each group: state, instances and where, restarts",
         "State: up (every declared instance runs, every worker up), degraded\n"
         "(fewer instances or workers), down (no instance runs, or a supervisor\n"
         "gave up: the fallback answers).",
         0, 0, [](session& s, const args& a) { return s.groups(); }},
        {"tree", "[node]", "the live supervision tree of every node (or one)",
         "Each child with its state and its restarts.",
         0, 1, [](session& s, const args& a) { return s.tree(a.empty() ? "" : a[0]); }},
        {"stats", "[group]", "events in/out per second, latency p50/p99, in flight, dead letters",
         "Measured over one second: the shell reads every node's counters twice.\n"
         "Latency is acceptance to answer at the group's routers, in that second\n"
         "(or since the group started when nothing was answered in it).",
         0, 1, [](session& s, const args& a) { return s.stats(a.empty() ? "" : a[0]); }},
        {"crashes", "[group]", "the recent crash history with reasons",
         "From each node's group supervisors (their bounded history) and root\n"
         "supervisor, oldest first.",
         0, 1, [](session& s, const args& a) { return s.crashes(a.empty() ? "" : a[0]); }},
        {"restart", "<group>", "restart the group on every node that hosts it",
         "Its supervisor stops it (workers in reverse order) and starts it again,\n"
         "as OTP's terminate_child and restart_child.",
         1, 1, [](session& s, const args& a) { return s.restart(a[0]); }},
        {"kill", "<group>[/<instance>] | <node>:<part>",
         "inject a crash: a group's workers, one instance's, or a part of a node",
         "The worker exits with reason killed_by_operator; its supervisor\n"
         "restarts it. Instances are the cluster-wide numbers `groups` shows.\n"
         "`kill n1:collector` crashes one of a node's own actors, as `tree`\n"
         "names them (agent, placement, router/GROUP, collector, traces, news-hub,\n"
         "gateway-helper, client-tokens, http, or a supervisor): its supervisor\n"
         "restarts it.",
         1, 1, [](session& s, const args& a) { return s.kill(a[0]); }},
        {"publish", "<topic> <json>", "produce one record to a Kafka topic",
         "The JSON must parse; it goes to the cluster's Kafka as it is.",
         2, 2, [](session& s, const args& a) { return s.publish(a[0], a[1]); }},
        {"model", "status | quality | train | canary <path> [<percent>|shadow] | promote <v> | "
                  "rollback <v> | load <path>",
         "the fraud model's life: its roll-out, how it does, training, trials",
         "`model status` shows the cluster's model roll-out (the model in use, the\n"
         "one before it, the candidate on trial with its share and the trial's\n"
         "figures) and what each fraud-detector group scores with.\n"
         "`model canary PATH [PERCENT|shadow]` puts the model at PATH on trial:\n"
         "it decides for PERCENT of the users (by a hash of the user id; 10 by\n"
         "default), or in shadow scores every transaction beside the model in use,\n"
         "which decides. The model-monitor promotes it when its measured quality\n"
         "holds and rolls it back otherwise; `model promote VERSION` and\n"
         "`model rollback VERSION` decide now (rollback of the model in use returns\n"
         "to the one before it). Every change is a record on model-events that\n"
         "Kafka confirmed before it takes effect; every fraud-detector follows it\n"
         "within a second, between batches: no transaction is lost or scored twice.\n"
         "`model load PATH` makes PATH the model of the fraud-detector groups\n"
         "reachable now, until they restart (the roll-out's model goes first).\n"
         "`model quality` shows each model-monitor's window per model version:\n"
         "scores, alerts, labelled scores, precision, recall, AUC, the feature\n"
         "drifting most (PSI against the training reference), and its recent\n"
         "drift_detected / quality_dropped events. `model train` has each\n"
         "model-trainer train a candidate now from the scored-event log and the\n"
         "labels, compare it with the model in use on a held-out slice, and\n"
         "register it if it does at least as well (up to 5 minutes).",
         1, 3, [](session& s, const args& a) { return s.model_command(a); }},
        {"trace", "<transaction id>", "a transaction's path through the pipeline, with timings",
         "Every reachable node's spans of the transaction (each node keeps its\n"
         "latest 100,000): ingest (from the read to the batch's end), enrich,\n"
         "score and alert, each with its node, group, instance, start, duration\n"
         "and outcome, ordered by start; a retried stage shows each attempt. The\n"
         "trace id is the producer's (`traceparent` header) or new at ingest; the\n"
         "alert and the scored event name it. Sampled traces also go to the\n"
         "`traces` topic as OTLP JSON.",
         1, 1, [](session& s, const args& a) { return s.trace(a[0]); }},
        {"ranking", "", "the ranking's A/B variants: shares, weights, click-through, vs control",
         "Every reachable node's counts, summed: personalised feeds answered per\n"
         "variant, the articles they showed (impressions) and the reads of shown\n"
         "articles by the user they were shown to (click-through: reads per\n"
         "impression). Each variant is compared with `control` (else the first\n"
         "declared): the difference in points, and a two-proportion z-test\n"
         "(z and its two-sided p). Counts start at zero when a node starts.",
         0, 0, [](session& s, const args& a) { return s.ranking(); }},
        {"scale", "<group> <n>", "run n instances of a group (1 to 1024)",
         "Every reachable node plans with the new count: new instances start where\n"
         "the plan puts them (claimed as usual), surplus ones stop, and messages\n"
         "keep flowing (key_hash keys are spread over the new count). Waits (30 s\n"
         "at most) until n instances run. The count is cluster state: a node that\n"
         "restarts learns it from its peers (a whole cluster restarted starts\n"
         "from the topology file again).",
         2, 2, [](session& s, const args& a) { return s.scale_command(a); }},
        {"drain", "<node>", "move every instance off a node (it stays a member)",
         "Every reachable node's placement leaves the node out; its instances\n"
         "move to their next nodes as when a node is lost. Waits (30 s at most)\n"
         "until the node hosts nothing. Nodes the shell cannot reach, or that\n"
         "restart later, learn it from their peers. `undrain` reverses it.",
         1, 1, [](session& s, const args& a) { return s.drain(a[0], true); }},
        {"undrain", "<node>", "let a drained node host again", "",
         1, 1, [](session& s, const args& a) { return s.drain(a[0], false); }},
        {"stop", "<node>", "drain a node, then stop its process (exit code 0)",
         "`troupe up` does not restart a node that stopped this way.",
         1, 1, [](session& s, const args& a) { return s.stop(a[0]); }},
        {"shutdown", "", "stop every node, in reverse topology order",
         "Each node stops in order (groups, then its agent) and exits with code 0;\n"
         "`troupe up` then stops Kafka and Redis and ends.",
         0, 0, [](session& s, const args& a) { return s.shutdown(); }},
        {"log", "[<level> [<node>]]", "each node's log level, or set it (every node, or one)",
         "Levels, from quiet to verbose: error, warning, info, debug, trace.\n"
         "debug adds a line per event (its id as `event=`), trace more. The level\n"
         "lives in the running node: a restarted node logs at the topology's\n"
         "`log_level` again.",
         0, 2, [](session& s, const args& a) { return s.log_level(a.empty() ? "" : a[0], a.size() < 2 ? "" : a[1]); }},
        {"token", "revoke <user>", "revoke every client token of a user, on every node",
         "Every token of the user issued up to now is refused from now on, and the\n"
         "user's open WebSockets are closed (1008, \"token revoked\"): on the node\n"
         "asked at once, on the others within a second. The revocation is kept in\n"
         "Redis; a token the user gets afterwards (troupe token) works.",
         2, 2, [](session& s, const args& a) { return s.token_command(a); }},
        {"quit", "", "leave the shell (also exit, Ctrl-D)", "",
         0, 0, [](session& s, const args& a) { return outcome{}; }},
    };
    return xs;
  }

private:
  /// Every node's local part of each group (or of `only`), with status.
  std::map<std::string, std::vector<local_group>>
  locals(const std::map<std::string, node_info>& infos, const std::string& only = "") {
    std::map<std::string, std::vector<local_group>> result;
    for (auto& [node, info] : infos) {
      auto agent = links_[node].agent;
      for (size_t i = 0; i < info.groups.size(); ++i) {
        auto& g = info.groups[i];
        if (!only.empty() && g != only)
          continue;
        local_group lg;
        lg.node = node;
        lg.instances = i < info.instances.size() ? info.instances[i] : std::vector<uint32_t>{};
        auto router = ask<caf::actor>(agent, group_atom::value, g);
        if (router && *router) {
          lg.router = *router;
          if (auto s = ask<group_status>(lg.router, status_atom::value))
            lg.status = std::move(*s);
        }
        result[g].push_back(std::move(lg));
      }
    }
    return result;
  }

  outcome unreachable_all(const std::map<std::string, std::string>& down) {
    outcome o;
    o.rc = shell_unreachable;
    std::string why;
    for (auto& [n, e] : down)
      why += "\n  " + n + ": " + e;
    o.text = "no node of cluster " + topo_.cluster.name + " answered:" + why + "\n";
    o.doc = {{"error", "unreachable"}, {"nodes", down}};
    return o;
  }

  static void note_unreachable(outcome& o, const std::map<std::string, std::string>& down) {
    for (auto& [n, e] : down)
      o.text += "(" + n + " unreachable: " + e + ")\n";
    if (!down.empty())
      o.doc["unreachable"] = down;
  }

  // -- commands --------------------------------------------------------------------

  outcome help(const std::vector<std::string>& args) {
    outcome o;
    if (args.size() > 1)
      return usage("usage: help [command]");
    if (args.size() == 1) {
      for (auto& c : table())
        if (args[0] == c.name) {
          o.text = std::string{c.name} + (*c.args ? " " : "") + c.args + "\n  " + c.summary
                   + "\n" + (*c.details ? std::string{c.details} + "\n" : "");
          o.doc = {{"command", c.name}, {"args", c.args}, {"summary", c.summary}};
          return o;
        }
      return usage("no command '" + args[0] + "' (`help` lists them)");
    }
    o.doc["commands"] = json::array();
    for (auto& c : table()) {
      auto head = std::string{c.name} + (*c.args ? " " : "") + c.args;
      o.text += "  " + pad(head, 30) + c.summary + "\n";
      o.doc["commands"].push_back({{"command", c.name}, {"args", c.args}, {"summary", c.summary}});
    }
    return o;
  }

  outcome nodes() {
    auto [infos, down] = reach();
    if (infos.empty())
      return unreachable_all(down);
    // The membership view of the first node that answered.
    std::map<std::string, member_info> view;
    std::string viewer;
    for (auto& name : ordered_nodes()) {
      if (!infos.count(name))
        continue;
      if (auto ms = ask<std::vector<member_info>>(links_[name].agent, members_atom::value)) {
        viewer = name;
        for (auto& m : *ms)
          view[m.name] = m;
        break;
      }
    }
    outcome o;
    o.doc["view_of"] = viewer;
    o.doc["nodes"] = json::array();
    o.text = pad("NODE", 8) + pad("STATE", 13) + pad("ADDRESS", 22) + pad("UPTIME", 10)
             + "GROUPS\n";
    auto now = unix_ms();
    for (auto& n : topo_.nodes) {
      auto i = infos.find(n.name);
      std::string state = i == infos.end() ? "unreachable" : "up";
      if (auto v = view.find(n.name); v != view.end() && v->second.state != "self")
        state = i == infos.end() ? v->second.state + "/unreachable" : v->second.state;
      json row = {{"name", n.name},
                  {"state", state},
                  {"address", n.host + ":" + std::to_string(n.cluster_port)}};
      std::string uptime = "-";
      std::string groups;
      if (i != infos.end()) {
        uptime = human_duration(now - i->second.started_ms);
        row["uptime_s"] = (now - i->second.started_ms) / 1000;
        row["http_port"] = i->second.http_port;
        row["running_actors"] = i->second.running_actors;
        row["groups"] = i->second.groups;
        for (size_t k = 0; k < i->second.groups.size(); ++k) {
          groups += (groups.empty() ? "" : ", ") + i->second.groups[k];
          auto& ids = i->second.instances[k];
          if (!ids.empty()) {
            groups += " ";
            for (size_t j = 0; j < ids.size(); ++j)
              groups += (j ? "," : "") + std::string{"#"} + std::to_string(ids[j]);
          }
        }
      } else {
        row["error"] = down[n.name];
      }
      o.doc["nodes"].push_back(row);
      o.text += pad(n.name, 8) + pad(state, 13)
                + pad(n.host + ":" + std::to_string(n.cluster_port), 22) + pad(uptime, 10)
                + (groups.empty() ? "-" : groups) + "\n";
    }
    if (!down.empty())
      o.doc["unreachable"] = down;
    return o;
  }

  /// A group's state over the cluster: down when no instance runs or a
  /// local part is down, degraded when fewer than declared run or some
  /// worker is restarting, else up.
  static std::string cluster_state(uint32_t want, const std::vector<local_group>& parts,
                                   uint32_t running) {
    if (running == 0)
      return "down";
    bool degraded = running < want;
    for (auto& p : parts) {
      if (!p.status)
        degraded = true;
      else if (p.status->state == "down")
        return "down";
      else if (p.status->state != "up")
        degraded = true;
    }
    return degraded ? "degraded" : "up";
  }

  outcome groups() {
    auto [infos, down] = reach();
    if (infos.empty())
      return unreachable_all(down);
    auto parts = locals(infos);
    outcome o;
    o.doc["groups"] = json::array();
    o.text = pad("GROUP", 24) + pad("STATE", 10) + pad("INSTANCES", 11) + pad("RESTARTS", 10)
             + "WHERE\n";
    for (auto& g : topo_.groups) {
      auto& ps = parts[g.name];
      uint32_t running = 0;
      uint64_t worker_restarts = 0;
      uint64_t group_restarts = 0;
      std::string where;
      json places = json::array();
      for (auto& p : ps) {
        running += static_cast<uint32_t>(p.instances.empty() && p.status ? p.status->instances
                                                                          : p.instances.size());
        std::string ids;
        for (auto id : p.instances)
          ids += (ids.empty() ? "#" : ",#") + std::to_string(id);
        where += (where.empty() ? "" : "; ") + p.node + (ids.empty() ? "" : " " + ids);
        json place = {{"node", p.node}, {"instances", p.instances}};
        if (p.status) {
          worker_restarts += p.status->worker_restarts;
          group_restarts += p.status->group_restarts;
          place["state"] = p.status->state;
          place["live_workers"] = p.status->live_workers;
          place["worker_restarts"] = p.status->worker_restarts;
          place["group_restarts"] = p.status->group_restarts;
        }
        places.push_back(place);
      }
      auto want = declared(g, infos);
      auto state = cluster_state(want, ps, running);
      o.doc["groups"].push_back({{"name", g.name},
                                 {"domain", g.domain},
                                 {"state", state},
                                 {"instances", running},
                                 {"declared", want},
                                 {"restarts", worker_restarts + group_restarts},
                                 {"worker_restarts", worker_restarts},
                                 {"group_restarts", group_restarts},
                                 {"where", places}});
      o.text += pad(g.name, 24) + pad(state, 10)
                + pad(std::to_string(running) + "/" + std::to_string(want), 11)
                + pad(std::to_string(worker_restarts + group_restarts), 10)
                + (where.empty() ? "-" : where) + "\n";
    }
    note_unreachable(o, down);
    return o;
  }

  /// Walks a supervisor's children, depth first.
  void walk(const caf::actor& sup, const std::string& indent, std::string& text, json& out,
            int depth) {
    auto kids = ask<std::vector<child_info>>(sup, which_children_atom::value);
    if (!kids) {
      text += indent + "(no answer: " + render(kids.error()) + ")\n";
      return;
    }
    for (auto& k : *kids) {
      json node = {{"name", k.name},
                   {"state", k.state},
                   {"restart", k.restart},
                   {"restarts", k.restarts},
                   {"supervisor", k.is_supervisor}};
      text += indent + k.name + " (" + k.state
              + (k.is_supervisor ? ", supervisor" : "") + ", " + k.restart + ", restarts "
              + std::to_string(k.restarts) + ")\n";
      if (k.is_supervisor && k.handle && depth < 8) {
        node["children"] = json::array();
        // A group's child is its router, which owns the group's supervisor.
        auto sup = ask<caf::actor>(k.handle, supervisor_atom::value);
        if (sup && *sup) {
          json workers = {{"name", k.name + ".workers"}, {"supervisor", true},
                          {"children", json::array()}};
          text += indent + "  " + k.name + ".workers (supervisor of the group's workers)\n";
          walk(*sup, indent + "    ", text, workers["children"], depth + 1);
          node["children"].push_back(workers);
        } else {
          walk(k.handle, indent + "  ", text, node["children"], depth + 1);
        }
      }
      out.push_back(node);
    }
  }

  outcome tree(const std::string& only) {
    if (!only.empty() && !topo_.node(only))
      return usage("no node '" + only + "' in " + topo_.source);
    auto [infos, down] = reach();
    if (infos.empty())
      return unreachable_all(down);
    outcome o;
    for (auto& [name, info] : infos) {
      if (!only.empty() && name != only)
        continue;
      json kids = json::array();
      o.text += name + "\n  " + name + ".root (supervisor, rest_for_one)\n";
      walk(info.root, "    ", o.text, kids, 0);
      o.doc[name] = {{"name", name + ".root"}, {"children", kids}};
    }
    if (!only.empty() && !infos.count(only)) {
      auto r = failed(only + " is unreachable: " + down[only]);
      return r;
    }
    note_unreachable(o, down);
    return o;
  }

  outcome stats(const std::string& only) {
    if (!only.empty() && !topo_.group(only))
      return usage("no group '" + only + "' in " + topo_.source);
    auto [infos, down] = reach();
    if (infos.empty())
      return unreachable_all(down);
    auto first = locals(infos, only);
    auto t0 = std::chrono::steady_clock::now();
    self_->receive(caf::after(1s) >> [] {});
    std::map<std::string, std::vector<local_group>> second;
    for (auto& [g, parts] : first)
      for (auto& p : parts) {
        local_group again = p;
        again.status.reset();
        if (p.router)
          if (auto s = ask<group_status>(p.router, status_atom::value))
            again.status = std::move(*s);
        second[g].push_back(std::move(again));
      }
    auto secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    outcome o;
    o.doc["interval_s"] = secs;
    o.doc["groups"] = json::array();
    o.text = pad("GROUP", 24) + pad("IN/S", 10) + pad("OUT/S", 10) + pad("P50 MS", 9)
             + pad("P99 MS", 9) + pad("IN FLIGHT", 11) + pad("DEAD", 7) + "FALLBACKS\n";
    for (auto& g : topo_.groups) {
      if (!only.empty() && g.name != only)
        continue;
      double in = 0;
      double out = 0;
      uint64_t in_flight = 0;
      uint64_t dead = 0;
      uint64_t fallbacks = 0;
      histogram window;
      histogram total;
      auto& a = first[g.name];
      auto& b = second[g.name];
      for (size_t i = 0; i < a.size() && i < b.size(); ++i) {
        if (!a[i].status || !b[i].status)
          continue;
        auto& x = *a[i].status;
        auto& y = *b[i].status;
        // A restarted router starts its counters again: count from zero.
        bool reset = y.accepted < x.accepted || y.completed < x.completed;
        in += static_cast<double>(reset ? y.accepted : y.accepted - x.accepted);
        out += static_cast<double>(reset ? y.completed : y.completed - x.completed);
        in_flight += y.in_flight;
        dead += y.dead_letters;
        fallbacks += y.fallbacks;
        auto hy = histogram::from_raw(y.latency_buckets, y.latency_sum_ms);
        total.merge(hy);
        std::vector<uint64_t> delta(y.latency_buckets.size());
        for (size_t k = 0; k < delta.size(); ++k)
          delta[k] = y.latency_buckets[k]
                     - (reset || k >= x.latency_buckets.size() ? 0 : x.latency_buckets[k]);
        window.merge(histogram::from_raw(delta, 0));
      }
      auto& lat = window.count() > 0 ? window : total;
      json row = {{"name", g.name},
                  {"in_per_s", in / secs},
                  {"out_per_s", out / secs},
                  {"latency_p50_ms", lat.quantile_ms(0.5)},
                  {"latency_p99_ms", lat.quantile_ms(0.99)},
                  {"latency_window", window.count() > 0 ? "last second" : "since start"},
                  {"in_flight", in_flight},
                  {"dead_letters", dead},
                  {"fallbacks", fallbacks}};
      o.doc["groups"].push_back(row);
      o.text += pad(g.name, 24) + pad(fixed(in / secs), 10) + pad(fixed(out / secs), 10)
                + pad(lat.count() ? fixed(lat.quantile_ms(0.5), 2) : "-", 9)
                + pad(lat.count() ? fixed(lat.quantile_ms(0.99), 2) : "-", 9)
                + pad(std::to_string(in_flight), 11) + pad(std::to_string(dead), 7)
                + std::to_string(fallbacks) + "\n";
    }
    note_unreachable(o, down);
    return o;
  }

  outcome crashes(const std::string& only) {
    if (!only.empty() && !topo_.group(only))
      return usage("no group '" + only + "' in " + topo_.source);
    auto [infos, down] = reach();
    if (infos.empty())
      return unreachable_all(down);
    struct row {
      crash_record r;
      std::string node;
      std::string group;
    };
    std::vector<row> rows;
    // A supervisor that does not answer (busy restarting its children past
    // the shell's timeout) is named: the history is then incomplete, and
    // the command fails rather than show part of it as the whole.
    json unanswered = json::array();
    for (auto& [g, parts] : locals(infos, only))
      for (auto& p : parts) {
        if (!p.router)
          continue;
        auto sup = ask<caf::actor>(p.router, supervisor_atom::value);
        if (!sup || !*sup)
          continue;
        if (auto xs = ask<std::vector<crash_record>>(*sup, crashes_atom::value))
          for (auto& r : *xs)
            rows.push_back({r, p.node, g});
        else
          unanswered.push_back(
            {{"node", p.node}, {"supervisor", g}, {"error", render(xs.error())}});
      }
    // The node's own supervisors: the root, and the groups', routers' and
    // services' supervisors under it.
    for (auto& [node, info] : infos) {
      for (auto& [name, sup] : node_supervisors(info)) {
        if (auto xs = ask<std::vector<crash_record>>(sup, crashes_atom::value)) {
          for (auto& r : *xs)
            if (only.empty() || r.child == only || r.child == "router/" + only)
              rows.push_back({r, node, only.empty() ? r.child : only});
        } else {
          unanswered.push_back(
            {{"node", node}, {"supervisor", name}, {"error", render(xs.error())}});
        }
      }
    }
    std::sort(rows.begin(), rows.end(),
              [](const row& a, const row& b) { return a.r.when_ms < b.r.when_ms; });
    outcome o;
    o.doc["crashes"] = json::array();
    o.text = rows.empty() ? "no crashes recorded\n"
                          : pad("TIME", 15) + pad("NODE", 6) + pad("GROUP", 20) + pad("CHILD", 24)
                              + pad("ACTION", 16) + "REASON\n";
    for (auto& x : rows) {
      o.doc["crashes"].push_back({{"when_ms", x.r.when_ms},
                                  {"node", x.node},
                                  {"group", x.group},
                                  {"child", x.r.child},
                                  {"reason", x.r.reason},
                                  {"action", x.r.action}});
      o.text += pad(clock_time(x.r.when_ms), 15) + pad(x.node, 6) + pad(x.group, 20)
                + pad(x.r.child, 24) + pad(x.r.action, 16) + x.r.reason + "\n";
    }
    if (!unanswered.empty()) {
      o.rc = shell_failed;
      o.doc["unanswered"] = unanswered;
      for (auto& u : unanswered)
        o.text += "incomplete: " + u["node"].get<std::string>() + " "
                  + u["supervisor"].get<std::string>() + " did not answer ("
                  + u["error"].get<std::string>() + ")\n";
    }
    note_unreachable(o, down);
    return o;
  }

  outcome restart(const std::string& group) {
    if (!topo_.group(group))
      return usage("no group '" + group + "' in " + topo_.source);
    auto [infos, down] = reach();
    if (infos.empty())
      return unreachable_all(down);
    outcome o;
    o.doc["restarted"] = json::array();
    for (auto& [node, info] : infos) {
      if (std::find(info.groups.begin(), info.groups.end(), group) == info.groups.end())
        continue;
      auto err = ask_void(info.groups_root, terminate_child_atom::value, group);
      caf::expected<caf::actor> again{caf::actor{}};
      if (!err)
        again = ask<caf::actor>(info.groups_root, restart_child_atom::value, group);
      if (err || !again) {
        auto why = render(err ? err : again.error());
        o.rc = shell_failed;
        o.text += node + ": " + group + " not restarted: " + why + "\n";
        o.doc["failed"][node] = why;
        continue;
      }
      o.text += node + ": " + group + " restarted\n";
      o.doc["restarted"].push_back(node);
    }
    if (o.doc["restarted"].empty() && o.rc == shell_ok) {
      o.rc = shell_failed;
      o.text += "no reachable node hosts " + group + "\n";
    }
    note_unreachable(o, down);
    return o;
  }

  /// A node's own supervisors: its root and the supervisors right under
  /// it, with the names `tree` shows.
  std::vector<std::pair<std::string, caf::actor>> node_supervisors(const node_info& info) {
    std::vector<std::pair<std::string, caf::actor>> result{{info.name + ".root", info.root}};
    if (auto kids = ask<std::vector<child_info>>(info.root, which_children_atom::value))
      for (auto& k : *kids)
        if (k.is_supervisor && k.handle)
          result.emplace_back(k.name, k.handle);
    return result;
  }

  /// `kill NODE:CHILD`: a crash of one of the node's own actors (`agent`,
  /// `placement`, `router/GROUP`, `collector`, `news-hub`, `http`, ...), or
  /// of one of its supervisors, as `tree` names them.
  outcome kill_node_part(const std::string& node, const std::string& child) {
    if (!topo_.node(node))
      return usage("no node '" + node + "' in " + topo_.source);
    auto [infos, down] = reach();
    auto i = infos.find(node);
    if (i == infos.end())
      return failed(node + " is unreachable: " + down[node]);
    caf::actor target;
    std::vector<std::string> names;
    std::string silent;
    for (auto& [name, sup] : node_supervisors(i->second)) {
      auto kids = ask<std::vector<child_info>>(sup, which_children_atom::value);
      if (!kids) {
        silent += "; " + name + " did not answer (" + render(kids.error()) + ")";
        continue;
      }
      for (auto& k : *kids) {
        names.push_back(k.name);
        if (k.name == child && k.handle)
          target = k.handle;
      }
    }
    if (!target) {
      std::string known;
      for (auto& n : names)
        known += (known.empty() ? "" : ", ") + n;
      if (!silent.empty())
        return failed("no running part '" + child + "' found on " + node + silent);
      return usage("no running part '" + child + "' on " + node + " (parts: " + known + ")");
    }
    auto reason = caf::make_error(ec::killed_by_operator, me_);
    self_->send<caf::message_priority::high>(target, caf::exit_msg{self_->address(), reason});
    // One round trip on the same connection after it: the exit has reached
    // the node before the shell may end (its transport relays what is
    // written; a process that ends at once could take it along).
    for (auto& [name, sup] : node_supervisors(i->second))
      if (sup != target && ask<std::vector<child_info>>(sup, which_children_atom::value))
        break;
    outcome o;
    o.text = node + ": killed " + child + "\n";
    o.doc["killed"] = json::array({{{"node", node}, {"child", child}}});
    // Its own node's agent may be what was killed: the next command dials again.
    if (child == "agent")
      lost(node, reason);
    return o;
  }

  outcome kill(const std::string& target) {
    if (auto colon = target.find(':'); colon != std::string::npos)
      return kill_node_part(target.substr(0, colon), target.substr(colon + 1));
    auto slash = target.find('/');
    auto group = target.substr(0, slash);
    std::optional<uint32_t> instance;
    if (slash != std::string::npos) {
      auto text = target.substr(slash + 1);
      char* end = nullptr;
      auto n = std::strtoul(text.c_str(), &end, 10);
      if (text.empty() || *end != '\0')
        return usage("the instance in '" + target + "' must be a number, as `groups` shows it");
      instance = static_cast<uint32_t>(n);
    }
    auto decl = topo_.group(group);
    if (!decl)
      return usage("no group '" + group + "' in " + topo_.source);
    auto [infos, down] = reach();
    if (infos.empty())
      return unreachable_all(down);
    if (auto n = declared(*decl, infos); instance && *instance >= n)
      return usage(group + " has instances 0 to " + std::to_string(n - 1));
    outcome o;
    o.doc["killed"] = json::array();
    auto reason = caf::make_error(ec::killed_by_operator, me_);
    for (auto& [g, parts] : locals(infos, group))
      for (auto& p : parts) {
        if (!p.router)
          continue;
        auto sup = ask<caf::actor>(p.router, supervisor_atom::value);
        if (!sup || !*sup)
          continue;
        auto kids = ask<std::vector<child_info>>(*sup, which_children_atom::value);
        if (!kids)
          continue;
        for (size_t k = 0; k < kids->size(); ++k) {
          auto& child = (*kids)[k];
          // The worker `GROUP/k` runs the k-th instance this node hosts.
          auto local = child.name.substr(child.name.rfind('/') + 1);
          auto index = static_cast<size_t>(std::strtoul(local.c_str(), nullptr, 10));
          auto id = index < p.instances.size() ? p.instances[index] : index;
          if ((instance && id != *instance) || !child.handle)
            continue;
          self_->send<caf::message_priority::high>(child.handle,
                                                   caf::exit_msg{self_->address(), reason});
          o.text += p.node + ": killed " + group + " #" + std::to_string(id) + " (" + child.name
                    + ")\n";
          o.doc["killed"].push_back({{"node", p.node}, {"instance", id}, {"child", child.name}});
        }
        // A round trip after the exits: they reached the node (see kill_node_part).
        ask<std::vector<child_info>>(*sup, which_children_atom::value);
      }
    if (o.doc["killed"].empty()) {
      o.rc = shell_failed;
      o.text += "no running worker of " + target + " on a reachable node\n";
    }
    note_unreachable(o, down);
    return o;
  }

  outcome publish(const std::string& topic, const std::string& text) {
    auto parsed = json::parse(text, nullptr, false);
    if (parsed.is_discarded())
      return usage("the record is not valid JSON: " + text);
    auto [infos, down] = reach();
    if (infos.empty())
      return unreachable_all(down);
    auto bootstrap = infos.begin()->second.kafka;
    if (!producer_ || bootstrap != bootstrap_) {
      auto conf = kafka::defaults(bootstrap);
      auto p = kafka::producer::make(conf);
      if (!p)
        return failed("cannot produce to " + bootstrap + ": " + render(p.error()));
      producer_ = std::move(*p);
      bootstrap_ = bootstrap;
    }
    std::string key;
    if (parsed.is_object())
      for (auto k : {"id", "user"})
        if (auto i = parsed.find(k); i != parsed.end() && i->is_string()) {
          key = i->get<std::string>();
          break;
        }
    if (auto err = producer_->produce(topic, key, parsed.dump()))
      return failed("cannot produce to " + topic + ": " + render(err));
    if (auto err = producer_->flush(timeout_))
      return failed("not confirmed by Kafka at " + bootstrap + ": " + render(err));
    outcome o;
    o.text = "published to " + topic + (key.empty() ? "" : " (key " + key + ")") + "\n";
    o.doc = {{"published", topic}, {"key", key}, {"bootstrap", bootstrap}};
    return o;
  }

  /// The instance count every node plans with (an operator's `scale`, or
  /// the topology's).
  static uint32_t declared(const topology::group_decl& g,
                           const std::map<std::string, node_info>& infos) {
    for (auto& [name, info] : infos)
      for (size_t i = 0; i < info.scaled_groups.size() && i < info.scaled_instances.size(); ++i)
        if (info.scaled_groups[i] == g.name)
          return info.scaled_instances[i];
    return g.instances;
  }

  outcome scale(const std::string& group, uint32_t n) {
    auto decl = topo_.group(group);
    if (!decl)
      return usage("no group '" + group + "' in " + topo_.source);
    auto [infos, down] = reach();
    if (infos.empty())
      return unreachable_all(down);
    outcome o;
    for (auto& [name, info] : infos)
      if (auto err = ask_void(links_[name].agent, scale_atom::value, group, n)) {
        o.rc = shell_failed;
        o.text += name + ": " + render(err) + "\n";
        o.doc["failed"][name] = render(err);
      }
    if (o.rc != shell_ok)
      return o;
    auto deadline = std::chrono::steady_clock::now() + 30s;
    for (;;) {
      std::map<std::string, std::string> gone;
      auto now = describe_all(gone);
      uint32_t running = 0;
      for (auto& [name, info] : now)
        for (size_t i = 0; i < info.groups.size(); ++i)
          if (info.groups[i] == group)
            running += static_cast<uint32_t>(info.instances[i].size());
      if (running == n) {
        o.text += group + ": " + std::to_string(n) + " instances running\n";
        o.doc["scaled"] = group;
        o.doc["instances"] = n;
        break;
      }
      if (std::chrono::steady_clock::now() > deadline) {
        o.rc = shell_failed;
        o.text += group + ": " + std::to_string(running) + " of " + std::to_string(n)
                  + " instances running after 30 s\n";
        o.doc["error"] = "timeout";
        o.doc["running"] = running;
        break;
      }
      self_->receive(caf::after(100ms) >> [] {});
    }
    note_unreachable(o, down);
    return o;
  }

  /// `token revoke USER`: stored by the first node that keeps client tokens.
  outcome token_command(const std::vector<std::string>& a) {
    if (a[0] != "revoke")
      return usage("token revoke <user>");
    auto& user = a[1];
    if (user.empty() || user.size() > 128)
      return usage("a user id has 1 to 128 bytes");
    auto [infos, down] = reach();
    if (infos.empty())
      return unreachable_all(down);
    outcome o;
    std::string why;
    for (auto& n : topo_.nodes) {
      if (!infos.count(n.name))
        continue;
      auto at = ask<int64_t>(links_[n.name].agent, revoke_atom::value, user);
      if (!at) {
        why += "\n  " + n.name + ": " + render(at.error());
        continue;
      }
      o.text = "revoked the client tokens of " + user + " issued up to " + std::to_string(*at)
               + " (unix seconds), on every node within a second (stored by " + n.name + ")\n";
      o.doc = {{"user", user}, {"revoked_up_to", *at}, {"node", n.name}};
      note_unreachable(o, down);
      return o;
    }
    o.rc = shell_failed;
    o.text = "no node could revoke the tokens of " + user + ":" + why + "\n";
    o.doc = {{"error", "failed"}, {"user", user}};
    note_unreachable(o, down);
    return o;
  }

  /// `log`: each node's log level; with `level`, sets it on every node (or
  /// on `node`).
  outcome log_level(const std::string& level, const std::string& node) {
    if (!level.empty()) {
      if (auto x = parse_log_level(level); !x) {
        auto why = render(x.error());
        return usage(why.substr(why.find(": ") + 2));
      }
    }
    if (!node.empty() && !topo_.node(node))
      return usage("no node '" + node + "' in " + topo_.source);
    auto [infos, down] = reach();
    if (infos.empty())
      return unreachable_all(down);
    outcome o;
    o.doc["nodes"] = json::object();
    for (auto& [name, info] : infos) {
      if (!node.empty() && name != node)
        continue;
      auto agent = links_[name].agent;
      auto answer = level.empty() ? ask<std::string>(agent, log_level_atom::value)
                                  : ask<std::string>(agent, log_level_atom::value, level);
      if (!answer) {
        o.rc = shell_failed;
        o.text += name + ": " + render(answer.error()) + "\n";
        o.doc["failed"][name] = render(answer.error());
        continue;
      }
      if (level.empty()) {
        o.text += pad(name, 10) + *answer + "\n";
        o.doc["nodes"][name] = *answer;
      } else {
        o.text += name + ": log level " + *answer + " -> " + level + "\n";
        o.doc["nodes"][name] = {{"before", *answer}, {"level", level}};
      }
    }
    if (!node.empty() && !infos.count(node)) {
      o.rc = shell_failed;
      o.text += node + ": unreachable\n";
    }
    note_unreachable(o, down);
    return o;
  }

  /// `model load PATH` (non-empty `path`) or `model status`, on every node
  /// hosting a fraud-detector group.
  outcome model(const std::string& path) {
    std::vector<std::string> groups;
    for (auto& g : topo_.groups)
      if (g.domain == "fraud-detector")
        groups.push_back(g.name);
    if (groups.empty())
      return failed("this cluster runs no fraud-detector group");
    auto [infos, down] = reach();
    if (infos.empty())
      return unreachable_all(down);
    outcome o;
    o.doc["nodes"] = json::array();
    for (auto& g : groups) {
      auto parts = locals(infos, g); // kept: the loop below refers into it
      for (auto& p : parts[g]) {
        if (!p.router)
          continue;
        caf::expected<std::string> answer{std::string{}};
        if (path.empty())
          answer = ask<std::string>(p.router, model_status_atom::value);
        else
          answer = ask<std::string>(p.router, model_load_atom::value, path);
        json row = {{"node", p.node}, {"group", g}};
        if (answer) {
          row[path.empty() ? "model" : "loaded"] = *answer;
          o.text += p.node + " " + g + ": " + (path.empty() ? "" : "loaded ") + *answer + "\n";
        } else {
          o.rc = shell_failed;
          row["error"] = render(answer.error());
          o.text += p.node + " " + g + ": " + render(answer.error()) + "\n";
        }
        o.doc["nodes"].push_back(row);
      }
    }
    if (o.doc["nodes"].empty()) {
      o.rc = shell_failed;
      o.text += "no reachable node hosts a fraud-detector group\n";
    }
    note_unreachable(o, down);
    return o;
  }

  /// The ranking's A/B comparison: the declared variants of the ranker
  /// groups, and every reachable node's counts summed.
  outcome ranking() {
    struct row {
      uint32_t share = 0;
      std::string weights;
      uint64_t feeds = 0;
      uint64_t impressions = 0;
      uint64_t reads = 0;
    };
    std::vector<std::string> order;
    std::map<std::string, row> rows;
    bool rankers = false;
    for (auto& g : topo_.groups) {
      if (g.domain != "ranker")
        continue;
      rankers = true;
      auto vs = rank::parse_variants(topology::setting(g, "variants"));
      if (!vs)
        continue; // `troupe check` refused such a file already
      for (auto& v : *vs) {
        if (!rows.count(v.name))
          order.push_back(v.name);
        auto& r = rows[v.name];
        r.share = v.share;
        char w[64];
        std::snprintf(w, sizeof(w), "%.2f/%.2f/%.2f", v.weights.affinity, v.weights.bias,
                      v.weights.recency);
        r.weights = w;
      }
    }
    if (!rankers)
      return failed("this cluster runs no ranker group");
    auto [infos, down] = reach();
    if (infos.empty())
      return unreachable_all(down);
    for (auto& [name, info] : infos) {
      auto report = json::parse(info.report.empty() ? "{}" : info.report, nullptr, false);
      if (!report.is_object() || !report.contains("ranking") || !report["ranking"].is_object())
        continue;
      for (auto& [variant, x] : report["ranking"].items()) {
        if (!rows.count(variant))
          order.push_back(variant); // counted before a topology change
        auto& r = rows[variant];
        r.feeds += x.value("feeds", uint64_t{0});
        r.impressions += x.value("impressions", uint64_t{0});
        r.reads += x.value("reads", uint64_t{0});
      }
    }
    auto base = rows.count("control") ? std::string{"control"} : order.front();
    auto ctr = [](const row& r) {
      return r.impressions ? static_cast<double>(r.reads) / static_cast<double>(r.impressions)
                           : 0.0;
    };
    outcome o;
    o.doc["baseline"] = base;
    o.doc["variants"] = json::array();
    o.text = pad("VARIANT", 14) + pad("SHARE", 7) + pad("WEIGHTS A/B/R", 16) + pad("FEEDS", 9)
             + pad("SHOWN", 10) + pad("READS", 9) + pad("CTR", 9) + "VS " + base + "\n";
    auto& b = rows[base];
    for (auto& name : order) {
      auto& r = rows[name];
      json j = {{"name", name},         {"share", r.share},
                {"weights", r.weights}, {"feeds", r.feeds},
                {"impressions", r.impressions}, {"reads", r.reads},
                {"ctr", ctr(r)}};
      std::string versus;
      if (name != base && r.impressions > 0 && b.impressions > 0) {
        // Two-proportion z-test of the click-through rates.
        auto n1 = static_cast<double>(b.impressions);
        auto n2 = static_cast<double>(r.impressions);
        auto pooled = static_cast<double>(b.reads + r.reads) / (n1 + n2);
        auto se = std::sqrt(pooled * (1 - pooled) * (1 / n1 + 1 / n2));
        auto diff = ctr(r) - ctr(b);
        j["difference"] = diff;
        char text[96];
        if (se > 0) {
          auto z = diff / se;
          auto p = std::erfc(std::fabs(z) / std::sqrt(2.0));
          j["z"] = z;
          j["p"] = p;
          std::snprintf(text, sizeof(text), "%+.2f pts, z %.2f, p %.3f", 100 * diff, z, p);
        } else {
          std::snprintf(text, sizeof(text), "%+.2f pts", 100 * diff);
        }
        versus = text;
      }
      char rate[32];
      std::snprintf(rate, sizeof(rate), "%.2f%%", 100 * ctr(r));
      o.text += pad(name, 14) + pad(r.share ? std::to_string(r.share) + "%" : "-", 7)
                + pad(r.weights.empty() ? "-" : r.weights, 16) + pad(std::to_string(r.feeds), 9)
                + pad(std::to_string(r.impressions), 10) + pad(std::to_string(r.reads), 9)
                + pad(rate, 9) + versus + "\n";
      o.doc["variants"].push_back(std::move(j));
    }
    note_unreachable(o, down);
    return o;
  }

  /// `model train`: every model-trainer group trains a candidate now (up to
  /// 5 minutes) and says what became of it.
  outcome model_train() {
    std::vector<std::string> groups;
    for (auto& g : topo_.groups)
      if (g.domain == "model-trainer")
        groups.push_back(g.name);
    if (groups.empty())
      return failed("this cluster runs no model-trainer group");
    auto [infos, down] = reach();
    if (infos.empty())
      return unreachable_all(down);
    outcome o;
    o.doc["trained"] = json::array();
    for (auto& g : groups) {
      auto parts = locals(infos, g); // kept: the loop below refers into it
      for (auto& p : parts[g]) {
        if (!p.router)
          continue;
        auto answer = ask_for<std::string>(std::chrono::minutes(5), p.router,
                                           model_train_atom::value);
        json row = {{"node", p.node}, {"group", g}};
        if (!answer) {
          o.rc = shell_failed;
          row["error"] = render(answer.error());
          o.text += p.node + " " + g + ": " + render(answer.error()) + "\n";
          o.doc["trained"].push_back(row);
          continue;
        }
        auto r = json::parse(*answer, nullptr, false);
        if (r.is_discarded())
          continue;
        row.update(r);
        if (!r.value("ok", false)) {
          o.rc = shell_failed;
          o.text += p.node + " " + g + ": no candidate: " + r.value("error", std::string{}) + "\n";
        } else {
          char text[512];
          auto& c = r["candidate"];
          std::snprintf(text, sizeof(text),
                        "%s %s: %s %s in %.1f s on %llu rows; held out %llu: AUC %.3f, "
                        "recall %.3f, precision %.3f",
                        p.node.c_str(), g.c_str(),
                        r.value("accepted", false) ? "registered" : "rejected",
                        r.value("version", std::string{}).c_str(),
                        r.value("training_seconds", 0.0),
                        static_cast<unsigned long long>(r.value("rows", uint64_t{0})),
                        static_cast<unsigned long long>(r.value("held_out", uint64_t{0})),
                        c.value("auc", 0.0), c.value("recall", 0.0), c.value("precision", 0.0));
          o.text += text;
          if (r.contains("current") && r["current"].contains("auc")) {
            std::snprintf(text, sizeof(text), " (in use, %s: AUC %.3f, recall %.3f)",
                          r["current"].value("model", std::string{}).c_str(),
                          r["current"].value("auc", 0.0), r["current"].value("recall", 0.0));
            o.text += text;
          }
          o.text += "\n";
          if (r.contains("canary") && !r["canary"].contains("error"))
            o.text += "  on trial: model status shows it; model promote|rollback "
                      + r.value("version", std::string{}) + " decides now\n";
          else if (r.contains("path"))
            o.text += "  put it on trial: model canary " + r["path"].get<std::string>() + "\n";
        }
        o.doc["trained"].push_back(row);
      }
    }
    if (o.doc["trained"].empty()) {
      o.rc = shell_failed;
      o.text += "no reachable node runs a model-trainer instance\n";
    }
    note_unreachable(o, down);
    return o;
  }

  /// `model quality`: every model-monitor group's view of each model
  /// version over its window.
  outcome model_quality() {
    std::vector<std::string> groups;
    for (auto& g : topo_.groups)
      if (g.domain == "model-monitor")
        groups.push_back(g.name);
    if (groups.empty())
      return failed("this cluster runs no model-monitor group");
    auto [infos, down] = reach();
    if (infos.empty())
      return unreachable_all(down);
    outcome o;
    o.doc["monitors"] = json::array();
    for (auto& g : groups) {
      auto parts = locals(infos, g); // kept: the loop below refers into it
      for (auto& p : parts[g]) {
        if (!p.router)
          continue;
        auto answer = ask<std::string>(p.router, model_quality_atom::value);
        if (!answer) {
          o.rc = shell_failed;
          o.text += p.node + " " + g + ": " + render(answer.error()) + "\n";
          o.doc["monitors"].push_back(
            {{"node", p.node}, {"group", g}, {"error", render(answer.error())}});
          continue;
        }
        auto view = json::parse(*answer, nullptr, false);
        if (view.is_discarded())
          continue;
        view["group"] = g;
        char head[160];
        std::snprintf(head, sizeof(head), "%s on %s: window %.0f s, reference %s\n", g.c_str(),
                      p.node.c_str(), view.value("window_ms", 0.0) / 1000,
                      view.value("reference", std::string{"-"}).c_str());
        o.text += head;
        o.text += "  " + pad("MODEL", 12) + pad("SCORED", 9) + pad("ALERTS", 8)
                  + pad("LABELLED", 10) + pad("PRECISION", 11) + pad("RECALL", 8)
                  + pad("AUC", 7) + "LARGEST PSI\n";
        for (auto& m : view["models"]) {
          std::string worst = "-";
          double most = -1;
          for (auto& [feature, v] : m["psi"].items())
            if (v.get<double>() > most) {
              most = v.get<double>();
              worst = feature;
            }
          char row[256];
          std::snprintf(row, sizeof(row), "  %-12s%-9llu%-8llu%-10llu%-11.3f%-8.3f%-7.3f%s",
                        m["model"].get<std::string>().c_str(),
                        static_cast<unsigned long long>(m["scored"].get<uint64_t>()),
                        static_cast<unsigned long long>(m["alerts"].get<uint64_t>()),
                        static_cast<unsigned long long>(m["labelled"].get<uint64_t>()),
                        m["precision"].get<double>(), m["recall"].get<double>(),
                        m["auc"].get<double>(), worst.c_str());
          o.text += row;
          if (most >= 0) {
            char v[32];
            std::snprintf(v, sizeof(v), " %.3f", most);
            o.text += v;
          }
          o.text += "\n";
        }
        for (auto& e : view["events"])
          o.text += "  event: " + e.dump() + "\n";
        o.doc["monitors"].push_back(std::move(view));
      }
    }
    if (o.doc["monitors"].empty()) {
      o.rc = shell_failed;
      o.text += "no reachable node runs a model-monitor instance\n";
    }
    note_unreachable(o, down);
    return o;
  }

  /// Tells every reachable node that `node` is (no longer) drained; with
  /// `wait`, until `node` hosts nothing (or 30 s passed).
  outcome drain(const std::string& node, bool drained, bool wait = true) {
    if (!topo_.node(node))
      return usage("no node '" + node + "' in " + topo_.source);
    auto [infos, down] = reach();
    if (infos.empty())
      return unreachable_all(down);
    outcome o;
    o.doc["told"] = json::array();
    for (auto& [name, info] : infos) {
      if (auto err = ask_void(links_[name].agent, drain_atom::value, node, drained)) {
        o.rc = shell_failed;
        o.text += name + ": " + render(err) + "\n";
        o.doc["failed"][name] = render(err);
        continue;
      }
      o.doc["told"].push_back(name);
    }
    if (!drained || !wait || !infos.count(node)) {
      o.text += std::string{drained ? "draining " : "no longer draining "} + node + "\n";
      note_unreachable(o, down);
      return o;
    }
    auto deadline = std::chrono::steady_clock::now() + 30s;
    for (;;) {
      auto agent = agent_of(node);
      auto info = agent ? ask<node_info>(*agent, node_info_atom::value)
                        : caf::expected<node_info>{agent.error()};
      if (info && info->groups.empty()) {
        o.text += node + " drained: it hosts nothing\n";
        o.doc["drained"] = node;
        break;
      }
      if (std::chrono::steady_clock::now() > deadline) {
        o.rc = shell_failed;
        o.text += node + " still hosts groups after 30 s\n";
        o.doc["error"] = "timeout";
        break;
      }
      self_->receive(caf::after(100ms) >> [] {});
    }
    note_unreachable(o, down);
    return o;
  }

  outcome stop(const std::string& node) {
    auto d = drain(node, true);
    if (d.rc != shell_ok)
      return d;
    outcome o = d;
    if (auto err = stop_one(node)) {
      o.rc = shell_failed;
      o.text += node + " not stopped: " + render(err) + "\n";
      return o;
    }
    o.text += node + " stopped\n";
    o.doc["stopped"] = node;
    return o;
  }

  /// Asks one node to stop; waits (bounded) until its agent is gone.
  caf::error stop_one(const std::string& node) {
    auto agent = agent_of(node);
    if (!agent)
      return agent.error();
    auto target = *agent;
    self_->monitor(target);
    if (auto err = ask_void(target, halt_atom::value))
      return err;
    bool gone = false;
    auto deadline = std::chrono::steady_clock::now() + 30s;
    while (!gone && std::chrono::steady_clock::now() < deadline)
      self_->receive([&](caf::down_msg& dm) { gone = dm.source == target.address(); },
                     caf::after(100ms) >> [] {});
    links_[node].agent = nullptr;
    links_[node].error = "stopped";
    if (!gone)
      return caf::make_error(caf::sec::request_timeout, "still running after 30 s");
    return caf::none;
  }

  outcome shutdown() {
    auto [infos, down] = reach();
    if (infos.empty())
      return unreachable_all(down);
    outcome o;
    o.doc["stopped"] = json::array();
    auto order = topo_.nodes;
    std::reverse(order.begin(), order.end());
    for (auto& n : order) {
      if (!infos.count(n.name))
        continue;
      if (auto err = stop_one(n.name)) {
        o.rc = shell_failed;
        o.text += n.name + " not stopped: " + render(err) + "\n";
        continue;
      }
      o.text += n.name + " stopped\n";
      o.doc["stopped"].push_back(n.name);
    }
    note_unreachable(o, down);
    return o;
  }

  /// Asks the model-monitor (the first reachable instance) `xs`, up to
  /// 20 s: the model roll-out's commands. `what` names the request.
  template <class... Ts>
  outcome ask_rollout(const std::string& what, Ts... xs) {
    std::vector<std::string> groups;
    for (auto& g : topo_.groups)
      if (g.domain == "model-monitor")
        groups.push_back(g.name);
    if (groups.empty())
      return failed("this cluster runs no model-monitor group, which holds the model roll-out");
    auto [infos, down] = reach();
    if (infos.empty())
      return unreachable_all(down);
    std::string last_error = "no reachable node runs a model-monitor instance";
    for (auto& g : groups) {
      auto parts = locals(infos, g); // kept: the loop below refers into it
      for (auto& p : parts[g]) {
        if (!p.router)
          continue;
        auto answer = ask_for<std::string>(std::chrono::seconds(20), p.router, xs...);
        if (!answer) {
          last_error = p.node + " " + g + ": " + render(answer.error());
          if (answer.error() == ec::invalid_argument)
            return failed(what + ": " + render(answer.error()));
          continue;
        }
        auto view = json::parse(*answer, nullptr, false);
        if (view.is_discarded())
          continue;
        outcome o;
        o.doc = view;
        o.text = rollout_text(view);
        note_unreachable(o, down);
        return o;
      }
    }
    auto o = failed(what + ": " + last_error);
    note_unreachable(o, down);
    return o;
  }

  static std::string rollout_text(const json& view) {
    auto& r = view["rollout"];
    auto name = [](const json& m) {
      auto path = m.value("path", std::string{});
      return path.empty() ? std::string{"the configured model"}
                          : m.value("model", std::string{}) + " (" + path + ")";
    };
    std::string text = "model roll-out, generation " + std::to_string(r.value("generation", 0))
                       + "\n  in use:   " + name(r["current"]) + "\n";
    if (r["current"].value("path", std::string{}) != "")
      text += "  before:   " + name(r["previous"]) + "\n";
    if (r["candidate"].is_object()) {
      auto& c = r["candidate"];
      text += "  on trial: " + c.value("model", std::string{}) + " ("
              + (c.value("mode", std::string{}) == "shadow"
                   ? std::string{"shadow: scores every transaction, decides none"}
                   : std::to_string(c.value("share", 0)) + "% of users decide by it")
              + "), " + c.value("path", std::string{}) + "\n";
      if (view.contains("trial")) {
        auto& t = view["trial"];
        text += "    " + pad("", 10) + pad("LABELLED", 10) + pad("FRAUD", 7) + pad("PRECISION", 11)
                + pad("RECALL", 8) + "AUC\n";
        for (auto key : {"candidate", "in_use"}) {
          auto& q = t[key];
          char row[160];
          std::snprintf(row, sizeof(row), "    %-10s%-10llu%-7llu%-11.3f%-8.3f%.3f\n",
                        std::string{key} == "in_use" ? "in use" : "candidate",
                        static_cast<unsigned long long>(q.value("labelled", uint64_t{0})),
                        static_cast<unsigned long long>(q.value("labelled_fraud", uint64_t{0})),
                        q.value("precision", 0.0), q.value("recall", 0.0), q.value("auc", 0.5));
          text += row;
        }
        char rule[200];
        std::snprintf(rule, sizeof(rule),
                      "    %s after %llu labelled scores and %llu frauds of each; holds within "
                      "%.3f of AUC, recall and precision\n",
                      t.value("auto_promote", false) ? "judged by itself" : "operators judge",
                      static_cast<unsigned long long>(t.value("needs_labels", uint64_t{0})),
                      static_cast<unsigned long long>(t.value("needs_fraud", uint64_t{0})),
                      t.value("tolerance", 0.0));
        text += rule;
      }
    } else {
      text += "  on trial: nothing\n";
    }
    if (view.contains("changes"))
      for (auto& e : view["changes"])
        text += "  change: " + e.value("type", std::string{}) + " "
                + e.value("model", std::string{}) + " by "
                + e.value("decided_by", std::string{"?"}) + "\n";
    return text;
  }

  /// `trace ID`: every reachable node's spans of transaction `id`.
  outcome trace(const std::string& id) {
    auto [infos, down] = reach();
    if (infos.empty())
      return unreachable_all(down);
    outcome o;
    json spans = json::array();
    for (auto& [name, info] : infos) {
      auto answer = ask<std::string>(links_[name].agent, trace_atom::value, id);
      if (!answer) {
        o.rc = shell_failed;
        o.text += name + ": " + render(answer.error()) + "\n";
        o.doc["failed"][name] = render(answer.error());
        continue;
      }
      auto j = json::parse(*answer, nullptr, false);
      if (j.is_object() && j.contains("spans") && j["spans"].is_array())
        for (auto& s : j["spans"])
          spans.push_back(s);
    }
    std::sort(spans.begin(), spans.end(), [](const json& a, const json& b) {
      return a.value("start_ns", int64_t{0}) < b.value("start_ns", int64_t{0});
    });
    o.doc["transaction"] = id;
    o.doc["spans"] = spans;
    if (spans.empty()) {
      o.rc = shell_failed;
      o.text += "no node holds spans of transaction " + id
                + " (not read yet, or older than the latest 100,000 spans of each node)\n";
      note_unreachable(o, down);
      return o;
    }
    std::string trace_id;
    int64_t t0 = 0;
    for (auto& s : spans) {
      auto t = s.value("trace_id", std::string{});
      if (t != trace_id) {
        trace_id = t;
        t0 = s.value("start_ns", int64_t{0});
        o.text += "transaction " + id + ", trace " + t
                  + (s.value("sampled", false) ? " (sampled: also on the traces topic)" : "")
                  + "\n  " + pad("START", 12) + pad("DURATION", 12) + pad("STAGE", 8)
                  + pad("NODE", 8) + pad("GROUP#INSTANCE", 22) + pad("SPAN", 18) + "OUTCOME\n";
      }
      char at[32], took[32];
      std::snprintf(at, sizeof(at), "+%.3f ms",
                    static_cast<double>(s.value("start_ns", int64_t{0}) - t0) / 1e6);
      std::snprintf(took, sizeof(took), "%.3f ms", s.value("duration_ms", 0.0));
      auto outcome_text = s.value("outcome", std::string{});
      if (!s.value("error", std::string{}).empty())
        outcome_text += ": " + s.value("error", std::string{});
      o.text += "  " + pad(at, 12) + pad(took, 12) + pad(s.value("name", std::string{}), 8)
                + pad(s.value("node", std::string{}), 8)
                + pad(s.value("group", std::string{}) + "#"
                        + std::to_string(s.value("instance", 0)),
                      22)
                + pad(s.value("span_id", std::string{}), 18) + outcome_text + "\n";
    }
    note_unreachable(o, down);
    return o;
  }

  /// `model load PATH` or `model status`.
  outcome model_command(const args& a) {
    static const std::string usage_line =
      "usage: model status | model quality | model train | model canary <path> "
      "[<percent> | shadow] | model promote <version> | model rollback <version> | "
      "model load <path>";
    if (a.size() == 2 && a[0] == "load")
      return model(a[1]);
    if (a.size() == 1 && a[0] == "status") {
      // The cluster's roll-out, then what each fraud-detector scores with.
      auto groups = model("");
      bool monitored = false;
      for (auto& g : topo_.groups)
        monitored |= g.domain == "model-monitor";
      if (!monitored)
        return groups;
      auto ro = ask_rollout("model status", model_rollout_atom::value);
      outcome o;
      o.rc = ro.rc != 0 ? ro.rc : groups.rc;
      o.text = ro.text + groups.text;
      o.doc = {{"rollout", ro.doc}, {"groups", groups.doc}};
      return o;
    }
    if (a.size() == 1 && a[0] == "quality")
      return model_quality();
    if (a.size() == 1 && a[0] == "train")
      return model_train();
    if (a.size() >= 2 && a.size() <= 3 && a[0] == "canary") {
      uint32_t share = 10;
      std::string mode = "split";
      if (a.size() == 3) {
        if (a[2] == "shadow") {
          mode = "shadow";
          share = 0;
        } else {
          auto text = a[2];
          if (!text.empty() && text.back() == '%')
            text.pop_back();
          char* end = nullptr;
          auto v = std::strtoul(text.c_str(), &end, 10);
          if (text.empty() || *end != '\0' || v < 1 || v > 100)
            return usage("model canary: the share must be 1 to 100 (percent of users) or "
                         "shadow, not '" + a[2] + "'");
          share = static_cast<uint32_t>(v);
        }
      }
      return ask_rollout("model canary", model_canary_atom::value, a[1], share, mode);
    }
    if (a.size() == 2 && a[0] == "promote")
      return ask_rollout("model promote", model_promote_atom::value, a[1]);
    if (a.size() == 2 && a[0] == "rollback")
      return ask_rollout("model rollback", model_rollback_atom::value, a[1]);
    return usage(usage_line);
  }

  /// `scale GROUP N`, N from 1 to 1024.
  outcome scale_command(const args& a) {
    char* end = nullptr;
    auto n = std::strtoul(a[1].c_str(), &end, 10);
    if (a[1].empty() || *end != '\0' || n < 1 || n > 1024)
      return usage("the instance count must be a number from 1 to 1024");
    return scale(a[0], static_cast<uint32_t>(n));
  }

  std::unique_ptr<kafka::producer> producer_;
  std::string bootstrap_;
};

} // namespace

std::unique_ptr<shell_session> shell_session::make(caf::actor_system& sys,
                                                   topology::topology topo, std::string entry,
                                                   caf::timespan timeout) {
  return std::make_unique<session>(sys, std::move(topo), std::move(entry), timeout);
}

std::vector<std::string> command_names() {
  std::vector<std::string> result;
  for (auto& c : session::table())
    result.push_back(c.name);
  return result;
}

/// Splits a command line into words; double or single quotes group words,
/// and a `{` starts a JSON argument that runs to the end of the line.
std::vector<std::string> split(const std::string& line) {
  std::vector<std::string> words;
  std::string cur;
  bool in_word = false;
  char quote = 0;
  for (size_t i = 0; i < line.size(); ++i) {
    char c = line[i];
    if (quote) {
      if (c == quote)
        quote = 0;
      else
        cur += c;
      continue;
    }
    if (!in_word && (c == '{' || c == '[')) {
      words.push_back(line.substr(i));
      return words;
    }
    if (c == '"' || c == '\'') {
      quote = c;
      in_word = true;
    } else if (std::isspace(static_cast<unsigned char>(c))) {
      if (in_word)
        words.push_back(cur);
      cur.clear();
      in_word = false;
    } else {
      cur += c;
      in_word = true;
    }
  }
  if (in_word)
    words.push_back(cur);
  return words;
}

/// A group's figures on one node.
} // namespace troupe::cli
