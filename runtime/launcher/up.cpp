#include "runtime/launcher/up.hpp"

#include <atomic>
#include <cerrno>
#include <csignal>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <mutex>
#include <set>
#include <thread>

#include <arpa/inet.h>
#include <ifaddrs.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/rand.h>

#include <caf/all.hpp>

#include "runtime/core/error.hpp"
#include "runtime/core/messages.hpp"
#include "runtime/core/types.hpp"
#include "runtime/kafka/embedded_kafka.hpp"
#include "runtime/launcher/process.hpp"
#include "runtime/supervision/supervisor.hpp"
#include "topology/topology.hpp"

using namespace std::chrono_literals;

namespace troupe::launcher {

namespace {

std::atomic<bool> stop_requested{false};

extern "C" void on_stop_signal(int) {
  stop_requested = true;
}

std::mutex out_mtx;

/// Prints `line` as `[who] line`, unless the process already named itself:
/// a node's log line (`TIME LEVEL [who] ...`, or a JSON object with its
/// `node`) is printed as it is.
void print(const std::string& who, const std::string& line) {
  std::lock_guard<std::mutex> guard{out_mtx};
  auto prefix = "[" + who + "]";
  auto named = line.rfind(prefix, 0) == 0 || line.rfind("{\"ts\":", 0) == 0;
  if (!named) {
    auto at = line.find(" " + prefix + " ");
    named = at != std::string::npos && at < 32;
  }
  if (named)
    std::printf("%s\n", line.c_str());
  else
    std::printf("%s %s\n", prefix.c_str(), line.c_str());
  std::fflush(stdout);
}

/// Gives process `pid` (every thread it has, and so every thread it starts
/// later) the nice value `nice`; an empty string when done, else why not.
std::string set_nice(int pid, int nice) {
  std::string why;
  auto one = [&](int tid) {
    if (::setpriority(PRIO_PROCESS, static_cast<id_t>(tid), nice) != 0 && why.empty()
        && errno != ESRCH)
      why = std::strerror(errno);
  };
  one(pid); // the main thread first: threads it starts from now on inherit it
  std::error_code ec;
  for (auto& t : std::filesystem::directory_iterator{"/proc/" + std::to_string(pid) + "/task", ec})
    if (auto tid = std::atoi(t.path().filename().c_str()); tid > 0 && tid != pid)
      one(tid);
  return why;
}

/// The addresses of this host: loopback and every interface.
std::set<std::string> local_addresses() {
  std::set<std::string> result{"localhost", "127.0.0.1", "::1"};
  ifaddrs* ifs = nullptr;
  if (getifaddrs(&ifs) != 0)
    return result;
  for (auto i = ifs; i; i = i->ifa_next) {
    if (!i->ifa_addr)
      continue;
    char buf[INET6_ADDRSTRLEN];
    if (i->ifa_addr->sa_family == AF_INET) {
      inet_ntop(AF_INET, &reinterpret_cast<sockaddr_in*>(i->ifa_addr)->sin_addr, buf, sizeof(buf));
      result.insert(buf);
    } else if (i->ifa_addr->sa_family == AF_INET6) {
      inet_ntop(AF_INET6, &reinterpret_cast<sockaddr_in6*>(i->ifa_addr)->sin6_addr, buf,
                sizeof(buf));
      result.insert(buf);
    }
  }
  freeifaddrs(ifs);
  return result;
}

bool is_local(const std::string& host, const std::set<std::string>& mine) {
  return mine.count(host) > 0 || host.rfind("127.", 0) == 0;
}

/// The embedded Redis's password and configuration in `dir`: the password
/// (32 random bytes, hex) is generated on first use and kept in
/// `dir/password`; `dir/redis.conf` says `requirepass` with it. Both are
/// readable by their owner only. Returns the configuration's path.
caf::expected<std::string> embedded_redis_auth(const std::string& dir) {
  auto pw_path = dir + "/password";
  std::string pw;
  if (std::ifstream in{pw_path}; in)
    std::getline(in, pw);
  if (pw.size() < 32) {
    unsigned char raw[32];
    if (RAND_bytes(raw, sizeof(raw)) != 1)
      return caf::make_error(ec::io_failure, std::string{"no random bytes for the Redis password"});
    static const char* hex = "0123456789abcdef";
    pw.clear();
    for (auto b : raw) {
      pw.push_back(hex[b >> 4]);
      pw.push_back(hex[b & 0xf]);
    }
  }
  auto write_private = [](const std::string& path, const std::string& text) -> bool {
    auto fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0)
      return false;
    ::fchmod(fd, 0600);
    auto ok = ::write(fd, text.data(), text.size()) == static_cast<ssize_t>(text.size());
    ::close(fd);
    return ok;
  };
  auto conf_path = dir + "/redis.conf";
  if (!write_private(pw_path, pw + "\n") || !write_private(conf_path, "requirepass " + pw + "\n"))
    return caf::make_error(ec::io_failure, "cannot write the Redis password under " + dir + ": "
                                             + std::strerror(errno));
  return conf_path;
}

/// A free port on 127.0.0.1 that is none of `taken` (the ports the topology
/// gives its nodes: those are free now only because the nodes have not
/// bound them yet).
uint16_t free_loopback_port(const std::set<uint16_t>& taken) {
  std::vector<int> held;
  uint16_t port = 0;
  for (int tries = 0; tries < 64 && port == 0; ++tries) {
    int s = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    bind(s, reinterpret_cast<sockaddr*>(&addr), sizeof(addr));
    socklen_t len = sizeof(addr);
    getsockname(s, reinterpret_cast<sockaddr*>(&addr), &len);
    // Held until one is chosen, so that the next try gets another.
    held.push_back(s);
    if (taken.count(ntohs(addr.sin_port)) == 0)
      port = ntohs(addr.sin_port);
  }
  for (auto s : held)
    close(s);
  return port;
}

/// Every port the topology's nodes bind (cluster, client and admin ports).
std::set<uint16_t> topology_ports(const topology::topology& topo) {
  std::set<uint16_t> result;
  for (auto& n : topo.nodes)
    for (auto p : {n.cluster_port, n.http_port, n.admin_port})
      if (p != 0)
        result.insert(p);
  return result;
}

/// True if `bootstrap` (`host:port,...`) names one of `ports`.
bool names_port(const std::string& bootstrap, const std::set<uint16_t>& ports) {
  size_t at = 0;
  while (at < bootstrap.size()) {
    auto end = bootstrap.find(',', at);
    if (end == std::string::npos)
      end = bootstrap.size();
    auto colon = bootstrap.rfind(':', end - 1);
    if (colon != std::string::npos && colon >= at) {
      auto p = std::atoi(bootstrap.substr(colon + 1, end - colon - 1).c_str());
      if (p > 0 && p < 65536 && ports.count(static_cast<uint16_t>(p)) > 0)
        return true;
    }
    at = end + 1;
  }
  return false;
}

/// True once something accepts TCP connections on 127.0.0.1:port.
bool accepts(uint16_t port) {
  int s = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = htons(port);
  auto ok = connect(s, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) == 0;
  close(s);
  return ok;
}

/// The topics the groups name in their settings or their domains' defaults
/// (every key that ends in `topic`).
std::vector<std::pair<std::string, int>> topics_of(const topology::topology& t) {
  std::set<std::string> names;
  auto is_topic = [](const std::string& key) {
    return key.size() >= 5 && key.compare(key.size() - 5, 5, "topic") == 0;
  };
  // The parser filled in every setting's default.
  for (auto& g : t.groups)
    for (auto& [key, value] : g.settings)
      if (is_topic(key) && !value.empty()) // empty: a topic the group does not write
        names.insert(value);
  std::vector<std::pair<std::string, int>> result;
  for (auto& n : names)
    result.emplace_back(n, 12); // many partitions: the mock keeps ~5 MiB each
  // The nodes' audit trail of operator commands: one partition, one order.
  if (!names.count("audit"))
    result.emplace_back("audit", 1);
  // The nodes' sampled spans, OTLP JSON (runtime/node/trace_service.hpp).
  if (!names.count("traces"))
    result.emplace_back("traces", 3);
  return result;
}

/// A supervisor of one, so that a process that keeps dying is given up on
/// alone (its supervisor is a temporary child of the root).
child_spec supervised(child_spec process) {
  supervisor_spec s;
  s.name = process.name;
  s.intensity = 5;
  s.period = std::chrono::seconds(60);
  s.backoff = backoff_spec{100ms, 5s, 0.2, 10s};
  s.children.push_back(std::move(process));
  auto child = supervisor_child(std::move(s), restart_type::temporary);
  return *child; // the spec above is valid by construction
}

} // namespace

int run_up(const up_options& opt) {
  auto topo = topology::load(opt.config, opt.domains);
  if (!topo) {
    auto text = render(topo.error());
    std::fprintf(stderr, "troupe up: %s\n", text.substr(text.find(": ") + 2).c_str());
    return 2;
  }
  auto mine = local_addresses();
  std::vector<topology::node_spec> local;
  for (auto& n : topo->nodes)
    if (is_local(n.host, mine))
      local.push_back(n);
  if (local.empty()) {
    std::fprintf(stderr, "troupe up: no node of %s lives on this host\n", opt.config.c_str());
    return 2;
  }
  std::signal(SIGINT, on_stop_signal);
  std::signal(SIGTERM, on_stop_signal);
  std::signal(SIGPIPE, SIG_IGN);
  config cfg;
  caf::actor_system sys{cfg};
  supervisor_spec root;
  root.name = "up";
  root.intensity = 1000;
  root.period = std::chrono::seconds(1);
  // -- embedded Kafka ------------------------------------------------------------
  std::unique_ptr<kafka::embedded_kafka> mock;
  auto bootstrap = topo->cluster.kafka;
  if (bootstrap == "embedded") {
    // The mock brokers listen on ports the kernel picks: one that a node
    // of the topology is about to bind is refused and another made (the
    // refused one held meanwhile, so the next one differs).
    std::vector<std::unique_ptr<kafka::embedded_kafka>> refused;
    for (int tries = 0; tries < 8 && !mock; ++tries) {
      auto k = kafka::embedded_kafka::make(1, topics_of(*topo));
      if (!k) {
        std::fprintf(stderr, "troupe up: %s\n", render(k.error()).c_str());
        return 1;
      }
      if (names_port((*k)->bootstrap(), topology_ports(*topo)))
        refused.push_back(std::move(*k));
      else
        mock = std::move(*k);
    }
    refused.clear();
    if (!mock) {
      std::fprintf(stderr, "troupe up: the embedded Kafka found no port outside the topology's\n");
      return 1;
    }
    bootstrap = mock->bootstrap();
    print("up", "kafka (embedded mock cluster, 1 broker) at " + bootstrap);
  }
  // -- embedded Redis --------------------------------------------------------------
  // It persists every write to an append-only file in the cluster's state
  // directory, fsynced every second: a Redis killed and started again (by
  // its supervisor here, or with the next `troupe up`) has the features,
  // the alert claims and the preferences it had.
  auto redis = topo->cluster.redis;
  std::string redis_dir;
  std::string redis_password_file;
  uint16_t redis_port = 0;
  if (redis == "embedded") {
    redis_dir = topo->cluster.state_dir + "/redis";
    std::error_code made;
    std::filesystem::create_directories(redis_dir, made);
    if (made) {
      std::fprintf(stderr, "troupe up: cannot create the state directory %s: %s\n",
                   redis_dir.c_str(), made.message().c_str());
      return 2;
    }
    // Its password: generated once, kept beside its data (owner-only), and
    // given to redis-server in a configuration file (never on a command
    // line, which every local user can read) and to the nodes as a path.
    auto conf = embedded_redis_auth(redis_dir);
    if (!conf) {
      std::fprintf(stderr, "troupe up: %s\n", render(conf.error()).c_str());
      return 2;
    }
    redis_password_file = redis_dir + "/password";
    redis_port = free_loopback_port(topology_ports(*topo));
    if (redis_port == 0) {
      std::fprintf(stderr, "troupe up: no free loopback port for the embedded Redis\n");
      return 1;
    }
    redis = "redis://127.0.0.1:" + std::to_string(redis_port);
    print("up", "redis keeps its data in " + redis_dir + "; its password is in "
                  + redis_password_file);
    root.children.push_back(supervised(process_child(
      "redis",
      {"/usr/bin/redis-server", *conf, "--bind", "127.0.0.1", "--port",
       std::to_string(redis_port), "--save", "", "--appendonly", "yes", "--appendfsync",
       "everysec", "--dir", redis_dir},
      [](const std::string& line) { print("redis", line); },
      [nice = topo->cluster.redis_nice](int pid) {
        print("up", "redis started, pid " + std::to_string(pid));
        // Ahead of the nodes on this host's cores (topology key redis_nice).
        if (nice == 0)
          return;
        if (auto why = set_nice(pid, nice); why.empty())
          print("up", "redis runs at nice " + std::to_string(nice));
        else
          print("up", "warning: cannot run redis at nice " + std::to_string(nice) + " (" + why
                        + "; it needs root or CAP_SYS_NICE): it runs at the launcher's priority");
      })));
  }
  // -- nodes -------------------------------------------------------------------------
  // Transient: a node that exits with code 0 was stopped on purpose (an
  // operator's `stop` or `shutdown`) and stays stopped; any other end is a
  // crash, and the node is started again.
  for (auto& n : local) {
    auto name = n.name;
    std::vector<std::string> args{opt.troupe_binary, "node",  "--config", opt.config,
                                  "--name",          name,    "--kafka",  bootstrap,
                                  "--redis",         redis};
    if (!redis_password_file.empty())
      args.insert(args.end(), {"--redis-password-file", redis_password_file});
    if (!opt.log_level.empty())
      args.insert(args.end(), {"--log-level", opt.log_level});
    if (!opt.log_format.empty())
      args.insert(args.end(), {"--log-format", opt.log_format});
    auto child = process_child(
      name, std::move(args),
      [name](const std::string& line) { print(name, line); },
      [name](int pid) { print("up", name + " started, pid " + std::to_string(pid)); });
    child.restart = restart_type::transient;
    root.children.push_back(supervised(std::move(child)));
  }
  auto sup = spawn_supervisor(sys, root);
  if (!sup) {
    std::fprintf(stderr, "troupe up: %s\n", render(sup.error()).c_str());
    return 1;
  }
  caf::scoped_actor self{sys};
  self->monitor(*sup);
  if (redis_port != 0) {
    auto deadline = std::chrono::steady_clock::now() + 10s;
    while (!accepts(redis_port) && std::chrono::steady_clock::now() < deadline)
      self->receive(caf::after(20ms) >> [] {});
    print("up", accepts(redis_port) ? "redis ready at " + redis : "redis did not start");
  }
  print("up", "cluster " + topo->cluster.name + ": " + std::to_string(local.size())
                + " local node(s); Ctrl-C stops everything in order");
  // -- run until told to stop; report nodes given up on ------------------------------
  std::set<std::string> running;
  for (auto& c : root.children)
    running.insert(c.name);
  bool root_down = false;
  while (!stop_requested && !root_down) {
    self->receive([&](caf::down_msg&) { root_down = true; }, caf::after(200ms) >> [] {});
    if (root_down || stop_requested)
      break;
    std::vector<child_info> kids;
    caf::error asked;
    self->request(*sup, 1s, which_children_atom::value)
      .receive([&](std::vector<child_info>& xs) { kids = std::move(xs); },
               [&](caf::error& err) { asked = err; });
    if (asked) {
      // No answer is no news: the supervisor is busy (a slow shutdown of a
      // child) or the machine is loaded. Its own end shows as a down message.
      continue;
    }
    std::set<std::string> now;
    for (auto& k : kids)
      now.insert(k.name);
    for (auto& name : running)
      if (now.count(name) == 0)
        print("up", name + " kept dying (5 restarts in 60s): given up on");
    running = now;
    if (running.empty())
      break;
    // Every local node stopped on purpose: the cluster was shut down.
    size_t stopped = 0;
    for (auto& k : kids) {
      if (!k.is_supervisor || !k.handle || k.name == "redis")
        continue;
      self->request(k.handle, 1s, which_children_atom::value)
        .receive(
          [&](std::vector<child_info>& xs) {
            if (!xs.empty() && xs[0].state == "terminated")
              ++stopped;
          },
          [](caf::error&) {});
    }
    if (stopped == local.size()) {
      print("up", "every node was stopped on purpose: stopping Kafka and Redis");
      break;
    }
  }
  print("up", "stopping");
  if (!root_down) {
    self->send_exit(*sup, caf::exit_reason::user_shutdown);
    self->receive([](caf::down_msg&) {});
  }
  mock.reset();
  print("up", "stopped");
  return running.empty() ? 1 : 0;
}

int run_kafka(int brokers, std::vector<std::pair<std::string, int>> topics,
              const std::string& topology_file,
              const std::vector<topology::domain_schema>& domains) {
  if (!topology_file.empty()) {
    auto topo = topology::load(topology_file, domains);
    if (!topo) {
      std::fprintf(stderr, "troupe kafka: %s\n", render(topo.error()).c_str());
      return 2;
    }
    for (auto& t : topics_of(*topo))
      topics.push_back(t);
  }
  auto k = kafka::embedded_kafka::make(brokers, topics);
  if (!k) {
    std::fprintf(stderr, "troupe kafka: %s\n", render(k.error()).c_str());
    return 1;
  }
  std::signal(SIGINT, on_stop_signal);
  std::signal(SIGTERM, on_stop_signal);
  std::printf("bootstrap: %s\n", (*k)->bootstrap().c_str());
  std::fflush(stdout);
  // Commands on standard input, one per line: `down` takes every broker
  // down (a broker outage), `up` brings them back. End of input ignored.
  std::string line;
  bool input = true;
  while (!stop_requested) {
    pollfd in{STDIN_FILENO, POLLIN, 0};
    if (!input || ::poll(&in, 1, 50) <= 0) {
      if (!input)
        std::this_thread::sleep_for(50ms);
      continue;
    }
    char buf[256];
    auto n = ::read(STDIN_FILENO, buf, sizeof(buf));
    if (n <= 0) {
      input = false;
      continue;
    }
    line.append(buf, static_cast<size_t>(n));
    for (auto eol = line.find('\n'); eol != std::string::npos; eol = line.find('\n')) {
      auto cmd = line.substr(0, eol);
      line.erase(0, eol + 1);
      if (cmd == "down" || cmd == "up") {
        auto err = (*k)->set_down(cmd == "down");
        if (err)
          std::printf("error: %s\n", render(err).c_str());
        else
          std::printf("brokers %s\n", cmd.c_str());
      } else if (!cmd.empty()) {
        std::printf("error: unknown command '%s' (down | up)\n", cmd.c_str());
      }
      std::fflush(stdout);
    }
  }
  return 0;
}

} // namespace troupe::launcher
