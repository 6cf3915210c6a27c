#include "runtime/metrics/collector.hpp"

#include <cstdio>
#include <map>
#include <optional>

#include <unistd.h>

#include <caf/event_based_actor.hpp>
#include <caf/stateful_actor.hpp>

#include "runtime/core/duration.hpp"
#include "runtime/core/messages.hpp"
#include "runtime/core/registry.hpp"

namespace troupe::metrics {

namespace {

/// Internal: gather the figures now, `(collect_atom)`.
using collect_atom = caf::atom_constant<caf::atom("collect")>;

struct group_figures {
  std::string name;
  std::optional<group_status> status;
  std::vector<crash_record> crashes;
};

/// One of the node's own supervisors: its children and recent crashes.
struct supervisor_figures {
  std::string name;
  std::vector<child_info> children;
  std::vector<crash_record> crashes;
};

/// When this process started (the node's start, whatever restarts the
/// collector).
const int64_t process_start_ms = unix_ms();

/// One gathering of every group's figures.
struct round {
  std::vector<group_figures> groups;
  std::vector<supervisor_figures> supervisors;
  std::vector<member_info> members;
  size_t outstanding = 0;
};

/// Bytes of resident memory of this process (0 if unknown).
double resident_bytes() {
  auto* f = std::fopen("/proc/self/statm", "r");
  if (!f)
    return 0;
  unsigned long size = 0;
  unsigned long resident = 0;
  auto n = std::fscanf(f, "%lu %lu", &size, &resident);
  std::fclose(f);
  return n == 2 ? static_cast<double>(resident) * static_cast<double>(sysconf(_SC_PAGESIZE)) : 0;
}

/// An exit reason's kind, for a label: what comes before its first `:`
/// (`killed_by_operator: shell/...` gives `killed_by_operator`), at most 80
/// bytes, so that the label's values stay few.
std::string reason_kind(const std::string& s) {
  auto kind = s.substr(0, s.find(':'));
  return kind.size() <= 80 ? kind : kind.substr(0, 77) + "...";
}

struct collector_state {
  static inline const char* name = "troupe.metrics_collector";

  caf::stateful_actor<collector_state>* self = nullptr;
  collector_settings cfg;
  std::shared_ptr<snapshot> out;
  int64_t started_ms = process_start_ms;
  std::shared_ptr<round> current;

  void collect() {
    if (current)
      return; // the last round is still waiting for answers
    auto r = std::make_shared<round>();
    current = r;
    for (auto& name : cfg.directory ? cfg.directory->names() : std::vector<std::string>{}) {
      if (name.empty() || name[0] == '@')
        continue;
      auto router = cfg.directory->get(name);
      if (!router)
        continue;
      r->groups.push_back(group_figures{name, std::nullopt, {}});
      auto index = r->groups.size() - 1;
      r->outstanding += 2;
      self->request(router, cfg.ask_timeout, status_atom::value)
        .then(
          [this, r, index](group_status& s) {
            r->groups[index].status = std::move(s);
            done(r);
          },
          [this, r](caf::error&) { done(r); });
      self->request(router, cfg.ask_timeout, supervisor_atom::value)
        .then(
          [this, r, index](caf::actor& sup) {
            if (!sup) {
              done(r);
              return;
            }
            self->request(sup, cfg.ask_timeout, crashes_atom::value)
              .then(
                [this, r, index](std::vector<crash_record>& xs) {
                  r->groups[index].crashes = std::move(xs);
                  done(r);
                },
                [this, r](caf::error&) { done(r); });
          },
          [this, r](caf::error&) { done(r); });
    }
    auto sups = cfg.node_supervisors ? cfg.node_supervisors()
                                     : std::vector<std::pair<std::string, caf::actor>>{};
    for (auto& [sup_name, sup] : sups) {
      if (!sup)
        continue;
      r->supervisors.push_back(supervisor_figures{sup_name, {}, {}});
      auto index = r->supervisors.size() - 1;
      r->outstanding += 2;
      self->request(sup, cfg.ask_timeout, which_children_atom::value)
        .then(
          [this, r, index](std::vector<child_info>& xs) {
            r->supervisors[index].children = std::move(xs);
            done(r);
          },
          [this, r](caf::error&) { done(r); });
      self->request(sup, cfg.ask_timeout, crashes_atom::value)
        .then(
          [this, r, index](std::vector<crash_record>& xs) {
            r->supervisors[index].crashes = std::move(xs);
            done(r);
          },
          [this, r](caf::error&) { done(r); });
    }
    if (cfg.agent) {
      ++r->outstanding;
      self->request(cfg.agent, cfg.ask_timeout, members_atom::value)
        .then(
          [this, r](std::vector<member_info>& xs) {
            r->members = std::move(xs);
            done(r);
          },
          [this, r](caf::error&) { done(r); });
    }
    if (r->outstanding == 0) {
      ++r->outstanding;
      done(r);
    }
  }

  void done(const std::shared_ptr<round>& r) {
    if (--r->outstanding > 0)
      return;
    out->set(std::make_shared<const std::string>(render(*r)));
    if (current == r)
      current = nullptr;
  }

  std::string render(const round& r) const {
    exposition e;
    labels node{{"node", cfg.node}};
    e.gauge("troupe_node_start_time_seconds", "When this node process started (Unix time).",
            node, static_cast<double>(started_ms) / 1000.0);
    e.gauge("process_resident_memory_bytes", "Resident memory of this node process.", node,
            resident_bytes());
    for (auto& m : r.members)
      if (m.state != "self")
        e.gauge("troupe_cluster_member_up",
                "1 if this node sees the peer up (both ways authenticated), else 0.",
                {{"node", cfg.node}, {"peer", m.name}}, m.state == "up" ? 1 : 0);
    auto each = [&](auto fn) {
      for (auto& g : r.groups)
        if (g.status)
          fn(labels{{"node", cfg.node}, {"group", g.name}}, *g.status);
    };
    each([&](const labels& ls, const group_status& s) {
      for (auto state : {"up", "degraded", "down"}) {
        auto x = ls;
        x.emplace_back("state", state);
        e.gauge("troupe_group_state", "1 for the group's state on this node (up, degraded, down).",
                x, s.state == state ? 1 : 0);
      }
    });
    each([&](const labels& ls, const group_status& s) {
      e.gauge("troupe_group_instances", "Instances of the group this node hosts.", ls,
              s.instances);
    });
    each([&](const labels& ls, const group_status& s) {
      e.gauge("troupe_group_live_workers", "Of those, workers running now.", ls, s.live_workers);
    });
    each([&](const labels& ls, const group_status& s) {
      e.counter("troupe_group_events_in_total", "Messages the group accepted.", ls,
                static_cast<double>(s.accepted));
    });
    each([&](const labels& ls, const group_status& s) {
      e.counter("troupe_group_events_out_total", "Messages the group answered.", ls,
                static_cast<double>(s.completed));
    });
    each([&](const labels& ls, const group_status& s) {
      e.gauge("troupe_group_in_flight", "Accepted and not yet answered (queued or at a worker).",
              ls, static_cast<double>(s.in_flight));
    });
    each([&](const labels& ls, const group_status& s) {
      e.gauge("troupe_group_queue_depth", "Accepted messages waiting for a worker.", ls,
              static_cast<double>(s.queued));
    });
    each([&](const labels& ls, const group_status& s) {
      e.counter("troupe_group_dead_letters_total",
                "Messages the group gave up on (poison, saturation, stopping).", ls,
                static_cast<double>(s.dead_letters));
    });
    each([&](const labels& ls, const group_status& s) {
      e.counter("troupe_group_rejected_total", "Requests refused because the group was saturated.",
                ls, static_cast<double>(s.rejected));
    });
    each([&](const labels& ls, const group_status& s) {
      e.counter("troupe_group_fallbacks_total",
                "Requests answered by the group's fallback (group down, call timeout).", ls,
                static_cast<double>(s.fallbacks));
    });
    each([&](const labels& ls, const group_status& s) {
      e.counter("troupe_group_redelivered_total",
                "Messages sent again after they crashed their worker.", ls,
                static_cast<double>(s.redelivered));
    });
    each([&](const labels& ls, const group_status& s) {
      for (auto& [kind, n] : {std::pair<const char*, uint64_t>{"worker", s.worker_restarts},
                              std::pair<const char*, uint64_t>{"group", s.group_restarts}}) {
        auto x = ls;
        x.emplace_back("kind", kind);
        e.counter("troupe_group_restarts_total",
                  "Restarts by supervision: of a worker, or of the whole group.", x,
                  static_cast<double>(n));
      }
    });
    each([&](const labels& ls, const group_status& s) {
      e.histogram("troupe_group_latency_seconds",
                  "Acceptance to answer of the group's requests on this node.", ls,
                  histogram::from_raw(s.latency_buckets, s.latency_sum_ms));
    });
    for (auto& g : r.groups) {
      std::map<std::string, uint64_t> by_reason;
      for (auto& c : g.crashes)
        ++by_reason[reason_kind(c.reason)];
      for (auto& [reason, n] : by_reason)
        e.gauge("troupe_group_recent_crashes",
                "Crashes in the group supervisor's recent history (bounded), by kind of exit reason.",
                {{"node", cfg.node}, {"group", g.name}, {"reason", reason}},
                static_cast<double>(n));
    }
    for (auto& sup : r.supervisors)
      for (auto& c : sup.children)
        e.counter("troupe_node_restarts_total",
                  "Restarts of the node's own actors (agent, placement, routers, services) "
                  "and whole groups, by supervisor and child.",
                  {{"node", cfg.node}, {"supervisor", sup.name}, {"child", c.name}},
                  static_cast<double>(c.restarts));
    for (auto& sup : r.supervisors) {
      std::map<std::pair<std::string, std::string>, uint64_t> by_reason;
      for (auto& c : sup.crashes)
        ++by_reason[{c.child, reason_kind(c.reason)}];
      for (auto& [key, n] : by_reason)
        e.gauge("troupe_node_recent_crashes",
                "Crashes in a node supervisor's recent history (bounded), by child and kind of "
                "exit reason.",
                {{"node", cfg.node}, {"supervisor", sup.name}, {"child", key.first},
                 {"reason", key.second}},
                static_cast<double>(n));
    }
    if (cfg.log)
      for (auto level : {log_level::error, log_level::warning, log_level::info, log_level::debug,
                         log_level::trace})
        e.counter("troupe_log_messages_total", "Log lines this node wrote, by level.",
                  {{"node", cfg.node}, {"level", to_string(level)}},
                  static_cast<double>(cfg.log->lines(level)));
    if (cfg.with_registry) {
      for (auto& x : registry::instance().samples()) {
        // Every series has the node's label once: a second `node` makes
        // Prometheus refuse the whole scrape.
        labels ls{{"node", cfg.node}};
        for (auto& l : x.ls)
          if (l.first != "node")
            ls.push_back(l);
        if (x.is_counter)
          e.counter(x.name, x.help, ls, x.value);
        else
          e.gauge(x.name, x.help, ls, x.value);
      }
    }
    if (cfg.extra)
      cfg.extra(e);
    return e.text();
  }
};

} // namespace

caf::actor spawn_collector(caf::actor_system& sys, collector_settings settings,
                           std::shared_ptr<snapshot> out) {
  return sys.spawn([settings = std::move(settings), out = std::move(out)](
                     caf::stateful_actor<collector_state>* self) -> caf::behavior {
    auto& st = self->state;
    st.self = self;
    st.cfg = settings;
    st.out = out;
    self->send(self, collect_atom::value);
    return {
      [self](collect_atom) {
        self->state.collect();
        self->delayed_send(self, self->state.cfg.interval, collect_atom::value);
      },
    };
  });
}

} // namespace troupe::metrics
