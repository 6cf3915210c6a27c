// The `troupe` executable: one binary, one subcommand per job.
//   troupe node    run a node (its root supervisor and groups)
//   troupe check   validate a topology file and print its placement plan
//   troupe up      launch the local cluster (node processes, embedded Kafka and Redis)
//   troupe kafka   run the embedded Kafka (librdkafka's mock cluster) alone
//   troupe bench   the runtime's micro-benchmarks (scripts/bench-supervision)
//   troupe token   print a signed, expiring WebSocket client token for a user
//   troupe shell   the operator's shell: join the cluster and command it

#include <algorithm>
#include <sys/resource.h>
#include <atomic>
#include <csignal>
#include <cstdio>
#include <fstream>
#include <iostream>

#include <unistd.h>
#include <condition_variable>
#include <mutex>
#include <thread>
#include <optional>
#include <set>
#include <sstream>

#include <CLI/CLI.hpp>
#include <caf/all.hpp>
#include <caf/io/middleman.hpp>

#include "actors/echo/echo.hpp"
#include "runtime/cli/bench.hpp"
#include "runtime/cli/shell.hpp"
#include "runtime/core/duration.hpp"
#include "runtime/core/error.hpp"
#include "runtime/core/messages.hpp"
#include "runtime/core/types.hpp"
#include "actors/domains.hpp"
#include "runtime/redis/connection.hpp"
#include "runtime/cluster/auth.hpp"
#include "runtime/cluster/node_agent.hpp"
#include "runtime/launcher/up.hpp"
#include "runtime/node/cluster_node.hpp"
#include "runtime/node/node.hpp"
#include "topology/placement.hpp"
#include "topology/topology.hpp"

using namespace std::chrono_literals;

namespace troupe::cli {

namespace {

std::atomic<bool> stop_requested{false};

extern "C" void on_signal(int) {
  stop_requested = true;
}

// -- traffic for `troupe node --rate` -------------------------------------------

using tick_atom = caf::atom_constant<caf::atom("tick")>;
using report_atom = caf::atom_constant<caf::atom("report")>;

struct traffic_report {
  uint64_t sent = 0;
  uint64_t answered = 0;
  uint64_t failed = 0;
  uint64_t injected = 0;
  /// Round trip of each answered request, in microseconds.
  std::vector<double> rtt_us;
  std::chrono::steady_clock::time_point first_answer;
  std::chrono::steady_clock::time_point last_answer;
  /// The longest time without an answer, between two answers: with a group
  /// of one instance, how long its failover took.
  double longest_gap_ms = 0;

  void on_answer(std::chrono::steady_clock::time_point sent_at) {
    auto now = std::chrono::steady_clock::now();
    rtt_us.push_back(std::chrono::duration<double, std::micro>(now - sent_at).count());
    if (answered == 0)
      first_answer = now;
    else
      longest_gap_ms = std::max(
        longest_gap_ms, std::chrono::duration<double, std::milli>(now - last_answer).count());
    last_answer = now;
    ++answered;
  }

  /// "latency p50 .. us, p99 .. us, longest gap .. ms, .. answers/s".
  std::string summary() {
    if (rtt_us.empty())
      return "no answers";
    std::sort(rtt_us.begin(), rtt_us.end());
    auto at = [&](double p) { return rtt_us[static_cast<size_t>(p * (rtt_us.size() - 1))]; };
    auto span = std::chrono::duration<double>(last_answer - first_answer).count();
    char buf[200];
    std::snprintf(buf, sizeof(buf),
                  "latency p50 %.0f us, p99 %.0f us, longest gap %.1f ms, %.0f answers/s",
                  at(0.5), at(0.99), longest_gap_ms, span > 0 ? (answered - 1) / span : 0.0);
    return buf;
  }
};

/// How `traffic` loads a group: open loop at `rate` per second (for
/// `duration`), or closed loop with `window` requests in flight until `count`
/// were sent.
struct traffic_plan {
  uint64_t rate = 0;
  uint64_t crash_every = 0;
  caf::timespan duration{0};
  uint64_t window = 0;
  uint64_t count = 0;
};

/// Sends requests to the group as `plan` says, kills one of its workers every
/// `crash_every` messages, and once done waits for the last answers and
/// reports to `observer`: (report_atom, sent, answered, failed, injected,
/// summary).
caf::behavior traffic(caf::event_based_actor* self, std::function<caf::actor()> target,
                      traffic_plan plan, caf::actor observer) {
  auto rep = std::make_shared<traffic_report>();
  rep->rtt_us.reserve(plan.window > 0 ? plan.count : 1 << 16);
  auto start = std::chrono::steady_clock::now();
  auto victim = std::make_shared<size_t>(0);
  auto finishing = std::make_shared<bool>(false);
  auto reachable = std::make_shared<bool>(false);
  auto finish_if_done = [=] {
    if (*finishing && rep->answered + rep->failed == rep->sent) {
      self->send(observer, report_atom::value, rep->sent, rep->answered, rep->failed,
                 rep->injected, rep->summary());
      self->quit();
    }
  };
  // Sends one request; `again` runs when it is answered or failed.
  auto send_one = std::make_shared<std::function<void(caf::actor)>>();
  std::weak_ptr<std::function<void(caf::actor)>> again = send_one; // no cycle
  *send_one = [=](caf::actor router) {
    auto seq = rep->sent++;
    auto sent_at = std::chrono::steady_clock::now();
    auto next = [=] {
      if (plan.window > 0 && !*finishing) {
        if (stop_requested || rep->sent >= plan.count)
          *finishing = true;
        else if (auto r = target(); r && again.lock())
          (*again.lock())(r);
      }
      finish_if_done();
    };
    self->request(router, 10s, seq).then(
      [=](uint64_t echoed) {
        if (echoed == seq)
          rep->on_answer(sent_at);
        else
          ++rep->failed;
        next();
      },
      [=](caf::error& err) {
        ++rep->failed;
        if (rep->failed <= 5)
          std::cerr << "[traffic] request " << seq << " failed: " << render(err) << "\n";
        next();
      });
    if (plan.crash_every > 0 && seq > 0 && seq % plan.crash_every == 0) {
      ++rep->injected;
      self->request(router, 1s, supervisor_atom::value).then([=](caf::actor& sup) {
        if (!sup)
          return;
        self->request(sup, 1s, which_children_atom::value)
          .then([=](std::vector<child_info>& kids) {
            if (kids.empty())
              return;
            auto& k = kids[(*victim)++ % kids.size()];
            if (k.handle)
              self->send_exit(k.handle, caf::exit_reason::kill);
          });
      });
    }
  };
  // Open loop ticks every 1 ms at up to 2,000/s, else every 10 ms.
  auto tick = plan.rate > 0 && plan.rate <= 2000 ? 1ms : 10ms;
  self->send(self, tick_atom::value);
  return {
    [=](tick_atom) {
      if (plan.window > 0) {
        // Closed loop: fill the window once the router is there and the
        // group answers (a node just started may not have joined the nodes
        // hosting it yet: asked again every 10 ms, for up to 10 s, before
        // anything is counted); answers keep it full.
        auto router = target();
        if (!router) {
          self->delayed_send(self, 10ms, tick_atom::value);
          return;
        }
        if (!*reachable) {
          self->request(router, 1s, uint64_t{0})
            .then(
              [=](uint64_t) {
                *reachable = true;
                self->send(self, tick_atom::value);
              },
              [=](caf::error&) {
                *reachable = std::chrono::steady_clock::now() - start >= 10s;
                self->delayed_send(self, 10ms, tick_atom::value);
              });
          return;
        }
        for (uint64_t i = 0; i < plan.window && rep->sent < plan.count; ++i)
          (*send_one)(router);
        return;
      }
      auto elapsed = std::chrono::steady_clock::now() - start;
      if (stop_requested || (plan.duration.count() > 0 && elapsed >= plan.duration)) {
        *finishing = true;
        finish_if_done();
        return;
      }
      // Catch up to rate x elapsed.
      auto due = static_cast<uint64_t>(
        plan.rate * std::chrono::duration_cast<std::chrono::microseconds>(elapsed).count() / 1e6);
      auto router = target();
      while (rep->sent < due && router)
        (*send_one)(router);
      self->delayed_send(self, tick, tick_atom::value);
    },
  };
}

void print_status(caf::scoped_actor& self, node& n) {
  for (auto& name : n.group_names()) {
    auto router = n.group(name);
    self->request(router, 1s, status_atom::value)
      .receive(
        [&](group_status& st) {
          std::printf("[%s] group %s: %s, workers %u/%u, accepted %llu, completed %llu, "
                      "in flight %llu, worker restarts %llu, redelivered %llu, requeued %llu, "
                      "dead letters %llu, rejected %llu\n",
                      n.name().c_str(), st.name.c_str(), st.state.c_str(), st.live_workers,
                      st.instances, (unsigned long long) st.accepted,
                      (unsigned long long) st.completed, (unsigned long long) st.in_flight,
                      (unsigned long long) st.worker_restarts,
                      (unsigned long long) st.redelivered, (unsigned long long) st.requeued,
                      (unsigned long long) st.dead_letters, (unsigned long long) st.rejected);
        },
        [&](caf::error& err) {
          std::printf("[%s] group %s: no status (%s)\n", n.name().c_str(), name.c_str(),
                      render(err).c_str());
        });
  }
  std::fflush(stdout);
}

void print_tree(caf::scoped_actor& self, const caf::actor& sup, const std::string& indent) {
  self->request(sup, 1s, which_children_atom::value)
    .receive(
      [&](std::vector<child_info>& kids) {
        for (auto& k : kids) {
          std::printf("%s%s (%s, %s, restarts %llu)\n", indent.c_str(), k.name.c_str(),
                      k.state.c_str(), k.restart.c_str(), (unsigned long long) k.restarts);
          if (k.is_supervisor && k.handle) {
            // A group router answers for its workers' supervisor.
            caf::actor inner = k.handle;
            self->request(k.handle, 1s, supervisor_atom::value)
              .receive([&](caf::actor& s) { inner = s; }, [](caf::error&) {});
            print_tree(self, inner, indent + "  ");
          }
        }
      },
      [](caf::error&) {});
}

struct node_options {
  std::string config;
  std::string group = "echo";
  std::string kafka;
  std::string redis;
  /// The file holding the Redis password (the embedded Redis's, from `troupe up`).
  std::string redis_password_file;
  std::string name = "n1";
  size_t instances = 2;
  std::string duration = "0";
  uint64_t rate = 0;
  uint64_t crash_every = 0;
  uint64_t window = 0;
  uint64_t count = 10000;
  bool expect_no_loss = false;
  std::string status_every = "1s";
  /// How long an orderly stop may take before the process exits anyway.
  std::string shutdown_timeout = "8s";
  /// Overrides the topology's log level and format (empty: keep them).
  std::string log_level;
  std::string log_format;
};

/// The bound on a node's orderly stop, as a supervisor bounds a child's
/// shutdown before killing it: once armed, the process exits after
/// `timeout` with the code it was stopping with, whatever is still running
/// (a Kafka client waiting on a broker, say). Nothing is lost by it: what
/// the node had not committed is read again by its group's next member, and
/// alerts keep their claims. Disarmed by its destructor, which runs after
/// the actor system's (declare it first).
class shutdown_deadline {
public:
  ~shutdown_deadline() {
    {
      std::lock_guard<std::mutex> guard{mtx_};
      done_ = true;
    }
    cv_.notify_all();
    if (thread_.joinable())
      thread_.join();
  }

  void arm(caf::timespan timeout, log_fn log, int rc) {
    thread_ = std::thread{[this, timeout, log, rc] {
      std::unique_lock<std::mutex> guard{mtx_};
      if (cv_.wait_for(guard, timeout, [this] { return done_; }))
        return;
      log.error("stopping took longer than " + to_duration_string(timeout)
                + ": exiting without waiting for the rest (what this node had not committed "
                  "is read again by its group)");
      std::fflush(stdout);
      std::fflush(stderr);
      std::_Exit(rc);
    }};
  }

private:
  std::mutex mtx_;
  std::condition_variable cv_;
  bool done_ = false;
  std::thread thread_;
};

/// The topology file at `path`, or nothing once its first problem was
/// printed (`FILE:LINE: KEY: PROBLEM`, after `prefix`).
std::optional<topology::topology> load_topology(const std::string& path,
                                                const std::string& prefix) {
  auto t = actors::load_topology(path);
  if (!t) {
    auto text = render(t.error());
    std::cerr << prefix << text.substr(text.find(": ") + 2) << "\n";
    return std::nullopt;
  }
  return std::move(*t);
}

/// `troupe node --config FILE --name N`: one node of a cluster: its agent
/// (membership, authentication, failure detection) and its placement manager,
/// which hosts the groups the plan gives this node. It logs each member
/// joining and leaving and each change of what it hosts.
int run_cluster_node(const node_options& opt, caf::timespan duration) {
  auto topo = load_topology(opt.config, "troupe node: ");
  if (!topo)
    return 2;
  auto self_spec = topo->node(opt.name);
  if (!self_spec) {
    std::cerr << "troupe node: no node '" << opt.name << "' in " << opt.config << "\n";
    return 2;
  }
  auto spec = *self_spec;
  // The log: the cluster's level and format, the node's own level, then the
  // command line's.
  auto level = spec.log.value_or(topo->cluster.log);
  auto format = topo->cluster.format;
  // An option given overrides; a bad one is refused with the choices.
  auto override_with = [](const std::string& text, auto parse, auto& out, const char* option) {
    if (text.empty())
      return true;
    auto x = parse(text);
    if (!x) {
      std::cerr << "troupe node: " << option << ": " << render(x.error()) << "\n";
      return false;
    }
    out = *x;
    return true;
  };
  if (!override_with(opt.log_level, parse_log_level, level, "--log-level")
      || !override_with(opt.log_format, parse_log_format, format, "--log-format"))
    return 2;
  auto log = log_fn{logger::make(opt.name, level, format)};
  auto shutdown_timeout = parse_duration(opt.shutdown_timeout);
  if (!shutdown_timeout || shutdown_timeout->count() <= 0) {
    std::cerr << "troupe node: --shutdown-timeout: "
              << (shutdown_timeout ? std::string{"must be more than 0"}
                                   : render(shutdown_timeout.error()))
              << "\n";
    return 2;
  }
  // Outlives the actor system: it bounds the system's shutdown too.
  shutdown_deadline deadline;
  config cfg;
  cluster::configure_system(cfg, topo->cluster, spec);
  caf::actor_system sys{cfg};
  // The node is one supervision tree (runtime/node/cluster_node.hpp).
  cluster_node_options nopt;
  nopt.topo = *topo;
  nopt.name = opt.name;
  nopt.kafka = opt.kafka;
  nopt.redis = opt.redis;
  nopt.log = log;
  // The Redis password: the file given (the embedded Redis's), else the
  // topology's `redis_password_file`.
  if (!opt.redis_password_file.empty()) {
    std::ifstream in{opt.redis_password_file};
    std::string pw;
    if (!in || !std::getline(in, pw) || pw.empty()) {
      std::cerr << "troupe node: --redis-password-file: cannot read a password from '"
                << opt.redis_password_file << "'\n";
      return 2;
    }
    redis::connection::set_password(pw);
  } else {
    redis::connection::set_password(topo->cluster.redis_password);
  }
  nopt.domains = &actors::domains();
  auto node = cluster_node::start(sys, std::move(nopt));
  if (!node) {
    std::cerr << "troupe node: " << render(node.error()) << "\n";
    // A port that cannot be bound may be free later; anything else is bad input.
    return node.error() == ec::cannot_bind ? 1 : 2;
  }
  std::signal(SIGINT, on_signal);
  std::signal(SIGTERM, on_signal);
  // The node's one actor outside its tree: this thread, waiting for the
  // root to end (node_info::running_actors counts it).
  caf::scoped_actor self{sys};
  auto root = (*node)->root();
  self->monitor(root);
  caf::actor driver;
  if (opt.rate > 0 || opt.window > 0) {
    if (!topo->group(opt.group)) {
      log("no group '" + opt.group + "' to send traffic to");
      return 2;
    }
    if (opt.window > 0)
      log("traffic: " + std::to_string(opt.count) + " requests, " + std::to_string(opt.window)
          + " in flight, to group " + opt.group);
    else
      log("traffic: " + std::to_string(opt.rate) + " requests/s to group " + opt.group);
    traffic_plan plan{opt.rate, 0, duration, opt.window, opt.count};
    auto* n = node->get();
    driver = sys.spawn(traffic, std::function<caf::actor()>{[n, g = opt.group] {
                         return n->router(g);
                       }},
                       plan, caf::actor{self});
  }
  auto started = std::chrono::steady_clock::now();
  int rc = 0;
  while (!stop_requested && !(*node)->halted()
         && (driver || duration.count() == 0
             || std::chrono::steady_clock::now() - started < duration)) {
    bool lost = false;
    bool done = false;
    self->receive(
      [&](report_atom, uint64_t sent, uint64_t answered, uint64_t, uint64_t,
          std::string& summary) {
        auto routes = std::string{};
        self->request((*node)->router(opt.group), 5s, routes_atom::value)
          .receive(
            [&](std::vector<std::string>& xs) {
              for (auto& x : xs)
                routes += (routes.empty() ? "" : ", ") + x;
            },
            [](caf::error&) {});
        log("traffic: sent " + std::to_string(sent) + ", answered " + std::to_string(answered)
            + ", lost " + std::to_string(sent - answered) + "; routes of " + opt.group + ": "
            + routes);
        log("traffic: " + summary);
        if (opt.expect_no_loss && (sent == 0 || sent != answered))
          rc = 1;
        done = true;
      },
      [&](caf::down_msg& dm) {
        // The root supervisor gave up: the node exits and `troupe up`
        // restarts the process (process-level supervision).
        log.error("node supervisor ended (" + render(dm.reason) + "): exiting");
        lost = true;
      },
      caf::after(50ms) >> [] {});
    if (lost) {
      rc = 1;
      break;
    }
    if (done)
      break;
  }
  log((*node)->halted() ? "stopping: asked by an operator" : "stopping");
  deadline.arm(*shutdown_timeout, log, rc);
  self->demonitor(root);
  (*node)->stop();
  return rc;
}

int run_node(const node_options& opt) {
  auto duration = parse_duration(opt.duration);
  auto status_every = parse_duration(opt.status_every);
  for (auto* d : {&duration, &status_every})
    if (!*d) {
      std::cerr << "troupe node: " << render(d->error()) << "\n";
      return 2;
    }
  if (!opt.config.empty() && opt.crash_every > 0) {
    std::cerr << "troupe node: --crash-every applies to a standalone node (without --config)\n";
    return 2;
  }
  if (!opt.config.empty())
    return run_cluster_node(opt, *duration);
  config cfg;
  caf::actor_system sys{cfg};
  node_config ncfg;
  ncfg.name = opt.name;
  ncfg.groups.push_back(echo::make_group("echo", opt.instances));
  auto made = node::make(sys, ncfg);
  if (!made) {
    std::cerr << "troupe node: " << render(made.error()) << "\n";
    return 2;
  }
  auto& n = **made;
  std::signal(SIGINT, on_signal);
  std::signal(SIGTERM, on_signal);
  caf::scoped_actor self{sys};
  // The root supervisor starts its groups after make() returns.
  auto deadline = std::chrono::steady_clock::now() + 5s;
  while (!n.group("echo") && std::chrono::steady_clock::now() < deadline)
    self->receive(caf::after(1ms) >> [] {});
  std::printf("[%s] node up: root supervisor with group echo x%zu%s\n", n.name().c_str(),
              opt.instances,
              opt.rate ? (", traffic " + std::to_string(opt.rate) + "/s"
                          + (opt.crash_every
                               ? ", a worker killed every " + std::to_string(opt.crash_every)
                                   + " messages"
                               : std::string{}))
                           .c_str()
                       : "");
  std::fflush(stdout);
  caf::actor driver;
  if (opt.rate > 0 || opt.window > 0)
    driver = sys.spawn(traffic, std::function<caf::actor()>{[&n] { return n.group("echo"); }},
                       traffic_plan{opt.rate, opt.crash_every, *duration, opt.window, opt.count},
                       caf::actor{self});
  traffic_report rep;
  std::string summary;
  bool reported = false;
  auto started = std::chrono::steady_clock::now();
  auto next_status = started + *status_every;
  for (;;) {
    self->receive(
      [&](report_atom, uint64_t sent, uint64_t answered, uint64_t failed, uint64_t injected,
          std::string& text) {
        rep.sent = sent;
        rep.answered = answered;
        rep.failed = failed;
        rep.injected = injected;
        summary = std::move(text);
        reported = true;
      },
      caf::after(50ms) >> [] {});
    auto now = std::chrono::steady_clock::now();
    if (status_every->count() > 0 && now >= next_status) {
      print_status(self, n);
      next_status = now + *status_every;
    }
    if (reported)
      break;
    if (!driver && (stop_requested || (duration->count() > 0 && now - started >= *duration)))
      break;
  }
  print_status(self, n);
  std::printf("[%s] supervision tree:\n", n.name().c_str());
  print_tree(self, n.root(), "  ");
  int rc = 0;
  if (driver) {
    auto lost = rep.sent - rep.answered;
    std::printf("[%s] traffic: sent %llu, answered %llu, lost %llu, workers killed %llu\n",
                n.name().c_str(), (unsigned long long) rep.sent,
                (unsigned long long) rep.answered, (unsigned long long) lost,
                (unsigned long long) rep.injected);
    std::printf("[%s] traffic: %s\n", n.name().c_str(), summary.c_str());
    if (opt.expect_no_loss && (lost > 0 || rep.sent == 0)) {
      std::fprintf(stderr, "troupe node: %llu messages lost\n", (unsigned long long) lost);
      rc = 1;
    }
  }
  n.stop();
  std::printf("[%s] stopped\n", n.name().c_str());
  return rc;
}

/// `troupe check --domains`: every registered domain with its fallbacks and
/// its settings (type, default, bounds, meaning): what a `[[group]]`'s
/// `settings = {...}` may say.
int run_list_domains() {
  auto bound = [](const topology::setting_spec& s) -> std::string {
    auto show = [&](double x) {
      if (s.type == topology::setting_type::duration)
        return to_duration_string(std::chrono::milliseconds(static_cast<int64_t>(x)));
      if (x == static_cast<double>(static_cast<long long>(x)))
        return std::to_string(static_cast<long long>(x));
      std::ostringstream out;
      out << x;
      return out.str();
    };
    if (s.min && s.max)
      return show(*s.min) + " to " + show(*s.max);
    if (s.min)
      return "at least " + show(*s.min);
    if (s.max)
      return "at most " + show(*s.max);
    return "-";
  };
  for (auto& d : actors::domains()) {
    auto& schema = d.schema;
    std::string fallbacks;
    for (auto& f : schema.fallbacks)
      fallbacks += (fallbacks.empty() ? "" : ", ") + f;
    std::cout << schema.name << (fallbacks.empty() ? "" : " (fallbacks: " + fallbacks + ")")
              << (d.service_name.empty() ? "" : " [node service: " + d.service_name + "]")
              << "\n";
    if (schema.settings.empty())
      std::cout << "  (no settings)\n";
    for (auto& s : schema.settings) {
      // "an integer" -> "integer", "a duration string such as ..." -> "duration"
      auto type = std::string{topology::to_string(s.type)};
      type = type.substr(type.find(' ') + 1);
      type = type.substr(0, type.find(' '));
      std::cout << "  " << s.key << "  " << type << "  "
                << (s.fallback.empty() ? "\"\"" : s.fallback) << "  " << bound(s) << "  "
                << s.doc << "\n";
    }
  }
  return 0;
}

/// `troupe check FILE [--without n1,n2]`: exit 0 and the plan, or exit 2 and
/// the first problem (file:line: key: problem).
int run_check(const std::string& path, const std::string& without) {
  auto t = load_topology(path, "");
  if (!t)
    return 2;
  std::set<std::string> alive;
  for (auto& n : t->nodes)
    alive.insert(n.name);
  std::string lost;
  std::stringstream list{without};
  for (std::string name; std::getline(list, name, ',');) {
    if (name.empty())
      continue;
    if (!t->node(name)) {
      std::cerr << "troupe check: --without names unknown node '" << name << "'\n";
      return 2;
    }
    alive.erase(name);
    lost += (lost.empty() ? "" : ", ") + name;
  }
  std::cout << path << ": ok: cluster " << t->cluster.name << ", " << t->nodes.size()
            << " nodes, " << t->groups.size() << " groups\n";
  for (auto& n : t->nodes)
    std::cout << "  node " << n.name << " " << n.host << " cluster:" << n.cluster_port
              << " http:" << n.http_port << (alive.count(n.name) ? "" : " (lost)") << "\n";
  std::cout << "placement" << (lost.empty() ? "" : " without " + lost) << ":\n";
  std::cout << topology::describe(*t, topology::place(*t, alive));
  return 0;
}

/// `troupe token USER [--ttl 1h] [--role user|operator] [--config FILE]`:
/// a signed, expiring WebSocket token for USER in that cluster, from its
/// client token key (generated at the default path when there is none yet).
int run_token(const std::string& user, const std::string& ttl_text, const std::string& role,
              const std::string& path) {
  auto t = load_topology(path, "");
  if (!t)
    return 2;
  if (user.empty() || user.size() > 128) {
    std::cerr << "troupe token: a user id has 1 to 128 bytes\n";
    return 2;
  }
  if (role != "user" && role != "operator") {
    std::cerr << "troupe token: --role is user or operator\n";
    return 2;
  }
  auto ttl = parse_duration(ttl_text);
  auto ttl_s = ttl ? std::chrono::duration_cast<std::chrono::seconds>(*ttl).count() : 0;
  if (!ttl || ttl_s < 1 || ttl_s > cluster::max_client_token_ttl_s) {
    std::cerr << "troupe token: --ttl is from 1s to 720h (30 days), got '" << ttl_text << "'\n";
    return 2;
  }
  auto key = cluster::load_client_token_key(t->cluster.client_token_key_file,
                                            t->cluster.client_token_key_generated);
  if (!key) {
    std::cerr << "troupe token: " << render(key.error()) << "\n";
    return 2;
  }
  cluster::client_claims c;
  c.issuer = t->cluster.name;
  c.user = user;
  c.role = role;
  c.issued_at = unix_ms() / 1000;
  c.expires_at = c.issued_at + ttl_s;
  std::cout << cluster::sign_client_token(*key, c) << "\n";
  return 0;
}

} // namespace

} // namespace troupe::cli

int main(int argc, char** argv) {
  using namespace troupe::cli;
  // Every Troupe process may open as many files as the host allows it (a
  // node's clients, peers, Kafka and Redis connections): the soft limit is
  // raised to the hard one.
  if (rlimit nofile{}; getrlimit(RLIMIT_NOFILE, &nofile) == 0 && nofile.rlim_cur < nofile.rlim_max) {
    nofile.rlim_cur = nofile.rlim_max;
    setrlimit(RLIMIT_NOFILE, &nofile);
  }
  CLI::App app{"troupe: a fault-tolerant actor runtime for real-time ML products"};
  app.require_subcommand(1);

  node_options nopt;
  auto* node_cmd = app.add_subcommand("node", "run one node: its root supervisor and groups");
  node_cmd->add_option("--config", nopt.config,
                       "topology file: run this node of that cluster (node agent, membership)");
  node_cmd->add_option("--name", nopt.name, "node name")->capture_default_str();
  node_cmd->add_option("--kafka", nopt.kafka, "Kafka bootstrap list (overrides the topology's)");
  node_cmd->add_option("--group", nopt.group, "with --config and --rate: the group to load")
    ->capture_default_str();
  node_cmd->add_option("--redis", nopt.redis, "Redis URL (overrides the topology's)");
  node_cmd->add_option("--redis-password-file", nopt.redis_password_file,
                       "the file holding the Redis password (troupe up gives the embedded one's)");
  node_cmd->add_option("--log-level", nopt.log_level,
                       "error, warning, info, debug or trace (overrides the topology's)");
  node_cmd->add_option("--log-format", nopt.log_format, "text or json (overrides the topology's)");
  node_cmd->add_option("--instances", nopt.instances, "workers of the echo group")
    ->capture_default_str();
  node_cmd->add_option("--duration", nopt.duration, "stop after this long (0: on SIGINT/SIGTERM)")
    ->capture_default_str();
  node_cmd->add_option("--rate", nopt.rate, "requests per second through the echo group");
  node_cmd->add_option("--crash-every", nopt.crash_every, "kill a worker every N requests");
  node_cmd->add_option("--window", nopt.window,
                       "closed loop instead of --rate: this many requests in flight");
  node_cmd->add_option("--count", nopt.count, "with --window: requests to send")
    ->capture_default_str();
  node_cmd->add_flag("--expect-no-loss", nopt.expect_no_loss,
                     "exit 1 unless every request was answered");
  node_cmd->add_option("--shutdown-timeout", nopt.shutdown_timeout,
                       "with --config: how long stopping may take before the process exits "
                       "anyway")
    ->capture_default_str();
  node_cmd->add_option("--status-every", nopt.status_every, "status line period (0: off)")
    ->capture_default_str();

  std::string check_file = "cluster.conf";
  std::string check_without;
  auto* check_cmd = app.add_subcommand("check", "validate a topology file and print its placement");
  check_cmd->add_option("file", check_file, "the topology file")->capture_default_str();
  bool check_domains = false;
  check_cmd->add_flag("--domains", check_domains,
                      "list every domain's settings (type, default, bounds) instead");
  check_cmd->add_option("--without", check_without,
                        "comma-separated nodes to treat as lost (shows failover placement)");

  troupe::launcher::up_options uopt;
  auto* up_cmd = app.add_subcommand("up", "launch the local cluster of a topology file");
  up_cmd->add_option("file", uopt.config, "the topology file")->capture_default_str();
  up_cmd->add_option("--log-level", uopt.log_level,
                     "every node's log level: error, warning, info, debug or trace");
  up_cmd->add_option("--log-format", uopt.log_format, "every node's log format: text or json");

  std::string token_user;
  std::string token_file = "cluster.conf";
  std::string token_ttl = "1h";
  std::string token_role = "user";
  auto* token_cmd = app.add_subcommand(
    "token", "print a signed, expiring WebSocket client token for a user");
  token_cmd->add_option("user", token_user, "the user id")->required();
  token_cmd->add_option("--ttl", token_ttl, "how long it is valid (at most 720h)")
    ->capture_default_str();
  token_cmd->add_option("--role", token_role, "user, or operator (every feed and alert)")
    ->capture_default_str();
  token_cmd->add_option("--config", token_file, "the topology file (its cluster and client token key)")
    ->capture_default_str();

  troupe::cli::shell_options sopt;
  double shell_timeout_s = 3;
  auto* shell_cmd = app.add_subcommand(
    "shell", "the operator's shell: join the cluster and command it (`help` inside)");
  shell_cmd->add_option("--config", sopt.config, "the topology file (its nodes and secret)")
    ->capture_default_str();
  shell_cmd->add_option("--connect", sopt.connect,
                        "the node to ask first: a name, or host:cluster_port");
  shell_cmd->add_option("-c,--command", sopt.command, "run one command and exit");
  shell_cmd->add_flag("--json", sopt.json, "answer each command with one JSON document");
  shell_cmd->add_option("--timeout", shell_timeout_s,
                        "seconds a node may take to answer one request")
    ->capture_default_str()
    ->check(CLI::Range(0.1, 60.0));

  int brokers = 3;
  auto* kafka_cmd = app.add_subcommand("kafka", "run the embedded Kafka alone, print its bootstrap");
  kafka_cmd->add_option("--brokers", brokers, "mock brokers")->capture_default_str()
    ->check(CLI::Range(1, 16));
  std::vector<std::string> kafka_topics;
  kafka_cmd->add_option("--topic", kafka_topics, "a topic to create, NAME:PARTITIONS (repeatable)");
  std::string kafka_topology;
  kafka_cmd->add_option("--topics-of", kafka_topology,
                        "create the topics this topology file's groups name, as troupe up does");

  troupe::cli::bench_options bopt;
  auto* bench_cmd = app.add_subcommand("bench", "benchmarks (scripts/bench-supervision, bench-cluster, bench-pipeline)");
  bench_cmd
    ->add_option("what", bopt.what,
                 "restart | router | raw | remote-server | remote | kafka-consume | "
                 "kafka-latency | redis-features | pipeline | broadcast | feed | log | "
                 "crowd | publish")
    ->required()
    ->check(CLI::IsMember({"restart", "router", "raw", "remote-server", "remote", "log",
                           "kafka-consume", "kafka-latency", "redis-features",
                           "pipeline", "broadcast", "feed", "crowd", "publish"}));
  bench_cmd->add_option("--url", bopt.url, "broadcast, feed: WebSocket URL");
  bench_cmd->add_option("--gateway", bopt.urls,
                        "crowd: a gateway's WebSocket URL (repeatable; clients round-robin)");
  bench_cmd->add_option("--source", bopt.sources,
                        "crowd: a local address to connect from (repeatable, used in turn)");
  bench_cmd->add_option("--token-key", bopt.token_key,
                        "crowd: the cluster's client token key file");
  bench_cmd->add_option("--cluster", bopt.cluster, "crowd: the cluster's name (tokens' issuer)");
  bench_cmd->add_option("--users", bopt.user_prefix, "crowd: user ids are USERS-0, USERS-1, ...")
    ->capture_default_str();
  bench_cmd->add_option("--seconds", bopt.seconds, "crowd: the longest it runs")
    ->capture_default_str();
  bench_cmd->add_flag("--each", bopt.each, "feed: one feed_ms line per timed request");
  bench_cmd->add_flag("--raw", bopt.raw,
                      "crowd: clients of raw broadcast servers; publish: to the --gateway "
                      "raw broadcast servers over WebSocket, not to Kafka");
  bench_cmd->add_option("--token", bopt.token, "feed: the client token (troupe token USER)");
  bench_cmd->add_option("--subscribers", bopt.subscribers, "broadcast, crowd: subscribers")
    ->capture_default_str();
  bench_cmd->add_option("--hold", bopt.hold_seconds,
                        "broadcast: seconds to hold idle connections before publishing");
  bench_cmd->add_option("--kafka", bopt.kafka,
                        "kafka-consume, kafka-latency, pipeline, broadcast: bootstrap list "
                        "(broadcast without it: publish to a raw server over WebSocket)");
  bench_cmd->add_option("--redis", bopt.redis, "redis-features: redis://host:port");
  std::string bench_redis_password_file;
  bench_cmd->add_option("--redis-password-file", bench_redis_password_file,
                        "redis-features: the file holding the Redis password (troupe up's)");
  bench_cmd->add_option("--topic", bopt.topic, "kafka-consume, kafka-latency: topic")->capture_default_str();
  bench_cmd->add_option("--events", bopt.events, "redis-features, pipeline: events file");
  bench_cmd->add_option("--rate", bopt.rate, "pipeline: transactions/s (0: flat out); kafka-latency: records/s; "
                        "feed: requests/s (0: one after the other)")
    ->capture_default_str();
  bench_cmd->add_option("--port", bopt.port, "remote, remote-server: the echo actor's port");
  bench_cmd->add_option("--secure", bopt.secure,
                        "remote, remote-server: through the cluster transport keyed by this secret");
  bench_cmd->add_option("--count", bopt.count, "crashes or messages")->capture_default_str();
  bench_cmd->add_option("--workers", bopt.workers, "router: workers in the group")
    ->capture_default_str();
  bench_cmd->add_option("--window", bopt.window, "requests in flight")->capture_default_str();
  bench_cmd->add_flag("--send", bopt.send,
                      "router: one-way messages (acknowledged to the router in batches), "
                      "not requests; raw: one-way sends under the same credit window");
  bench_cmd->add_flag("--cold", bopt.cold,
                      "pipeline: no warm-up; the pipeline's first transactions are timed");
  bench_cmd->add_option("--fill", bopt.fill,
                        "kafka-latency: records produced untimed, flat out, before the timed ones")
    ->capture_default_str();
  bench_cmd->add_option("--work-us", bopt.work_us,
                        "router: microseconds of CPU-bound work per message in each worker")
    ->capture_default_str();

  CLI11_PARSE(app, argc, argv);
  if (*node_cmd)
    return run_node(nopt);
  if (*check_cmd)
    return check_domains ? run_list_domains() : run_check(check_file, check_without);
  if (*up_cmd) {
    char self_path[4096];
    auto n = readlink("/proc/self/exe", self_path, sizeof(self_path) - 1);
    if (n <= 0) {
      std::cerr << "troupe up: cannot find its own executable\n";
      return 1;
    }
    uopt.troupe_binary.assign(self_path, static_cast<size_t>(n));
    uopt.domains = troupe::schemas_of(troupe::actors::domains());
    return troupe::launcher::run_up(uopt);
  }
  if (*kafka_cmd) {
    std::vector<std::pair<std::string, int>> topics;
    for (auto& t : kafka_topics) {
      auto colon = t.rfind(':');
      int n = 0;
      if (colon == std::string::npos || colon == 0
          || std::sscanf(t.c_str() + colon + 1, "%d", &n) != 1 || n < 1 || n > 1000) {
        std::fprintf(stderr, "troupe kafka: --topic %s: expected NAME:PARTITIONS (1 to 1000)\n",
                     t.c_str());
        return 2;
      }
      topics.emplace_back(t.substr(0, colon), n);
    }
    return troupe::launcher::run_kafka(brokers, topics, kafka_topology,
                                       troupe::schemas_of(troupe::actors::domains()));
  }
  if (*token_cmd)
    return run_token(token_user, token_ttl, token_role, token_file);
  if (*shell_cmd) {
    sopt.timeout = std::chrono::duration_cast<caf::timespan>(
      std::chrono::duration<double>(shell_timeout_s));
    sopt.domains = troupe::schemas_of(troupe::actors::domains());
    return troupe::cli::run_shell(sopt);
  }
  if (!bench_redis_password_file.empty()) {
    std::ifstream in{bench_redis_password_file};
    std::string pw;
    if (!std::getline(in, pw) || pw.empty()) {
      std::cerr << "troupe bench: --redis-password-file: cannot read a password from '"
                << bench_redis_password_file << "'\n";
      return 2;
    }
    troupe::redis::connection::set_password(pw);
  }
  return run_bench(bopt);
}
