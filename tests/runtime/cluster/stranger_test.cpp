// The cluster port against strangers: real node processes, attacked by this
// test process as a raw CAF program, a plain TCP client, a TLS client keyed
// by another secret, a local process looking for a BASP socket, and a holder
// of the secret sending an anonymous halt.

#include "runtime/cluster/secure_transport.hpp"

#include <fstream>
#include <future>
#include <sstream>
#include <regex>
#include <set>
#include <thread>

#include <doctest/doctest.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <caf/all.hpp>
#include <caf/io/middleman.hpp>

#include "runtime/cluster/auth.hpp"
#include "runtime/core/messages.hpp"
#include "runtime/core/types.hpp"
#include "tests/support/cluster_file.hpp"
#include "tests/support/loopback.hpp"

using namespace std::chrono_literals;
using namespace troupe;
using namespace troupe::test;

namespace {

constexpr auto join_timeout = 15000ms;

const std::string timing = "heartbeat_interval = \"100ms\"\nfailure_timeout = \"500ms\"\n";

/// A CAF actor system of this test process, as a stranger's program would
/// start one.
struct stranger_system {
  config cfg;
  std::unique_ptr<caf::actor_system> sys;

  stranger_system() {
    cfg.load<caf::io::middleman>();
    cfg.set("middleman.heartbeat-interval", caf::timespan{100ms});
    cfg.set("middleman.connection-timeout", caf::timespan{500ms});
    sys = std::make_unique<caf::actor_system>(cfg);
  }
};

/// Connects through `mm` to 127.0.0.1:port: the published actor, or null.
caf::actor dial(caf::actor_system& sys, const caf::io::middleman_actor& mm, uint16_t port,
                std::string& why) {
  caf::actor result;
  caf::scoped_actor self{sys};
  self->request(mm, 5s, caf::connect_atom::value, std::string{"127.0.0.1"}, port)
    .receive(
      [&](caf::node_id&, caf::strong_actor_ptr& ptr, std::set<std::string>&) {
        result = caf::actor_cast<caf::actor>(ptr);
        if (!result)
          why = "no actor published";
      },
      [&](caf::error& e) { why = caf::to_string(e); });
  return result;
}

/// Reads what `fd` yields until it closes or `timeout` passes: (bytes read,
/// closed by the peer).
std::pair<size_t, bool> drain(int fd, std::chrono::milliseconds timeout) {
  auto deadline = std::chrono::steady_clock::now() + timeout;
  size_t total = 0;
  for (;;) {
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
                  deadline - std::chrono::steady_clock::now())
                  .count();
    if (left <= 0)
      return {total, false};
    pollfd p{fd, POLLIN, 0};
    if (poll(&p, 1, static_cast<int>(left)) <= 0)
      continue;
    char buf[4096];
    auto n = recv(fd, buf, sizeof(buf), 0);
    if (n <= 0)
      return {total, true};
    total += static_cast<size_t>(n);
  }
}

/// The BASP header of a direct message to actor `id` (CAF 0.17.6's layout:
/// operation, padding, flags, payload length, operation data, source and
/// destination actor), followed by `payload`.
std::string basp_frame(uint64_t dest, const std::string& payload) {
  std::string out;
  auto put = [&](uint64_t x, int bytes) {
    for (int i = bytes - 1; i >= 0; --i)
      out.push_back(static_cast<char>((x >> (8 * i)) & 0xff));
  };
  put(1, 1); // direct_message
  put(0, 3);
  put(0, 4);
  put(payload.size(), 4);
  put(0, 8);
  put(0, 8);
  put(dest, 8);
  return out + payload;
}

/// The socket inodes process `pid` holds (from /proc/PID/fd).
std::set<std::string> socket_inodes_of(int pid) {
  std::set<std::string> result;
  auto dir = "/proc/" + std::to_string(pid) + "/fd";
  for (int fd = 0; fd < 65536; ++fd) {
    char target[256];
    auto path = dir + "/" + std::to_string(fd);
    auto n = readlink(path.c_str(), target, sizeof(target) - 1);
    if (n <= 0)
      continue;
    std::string t{target, static_cast<size_t>(n)};
    if (t.rfind("socket:[", 0) == 0)
      result.insert(t.substr(8, t.size() - 9));
  }
  return result;
}

/// What process `pid` listens on: its listening Unix sockets (paths, `@`
/// for abstract ones) and its listening TCP ports (IPv4 and IPv6).
struct listening {
  std::vector<std::string> unix_sockets;
  std::set<uint16_t> tcp_ports;
};

listening listening_of(int pid) {
  listening result;
  auto mine = socket_inodes_of(pid);
  std::ifstream unix_table{"/proc/" + std::to_string(pid) + "/net/unix"};
  std::string line;
  std::getline(unix_table, line); // header
  while (std::getline(unix_table, line)) {
    // Num RefCount Protocol Flags Type St Inode [Path]
    std::istringstream in{line};
    std::string num, refs, proto, flags, type, st, inode, path;
    in >> num >> refs >> proto >> flags >> type >> st >> inode >> path;
    auto accepting = (std::stoul(flags, nullptr, 16) & 0x10000) != 0; // __SO_ACCEPTCON
    if (accepting && mine.count(inode) > 0)
      result.unix_sockets.push_back(path.empty() ? "(unnamed)" : path);
  }
  for (auto table : {"tcp", "tcp6"}) {
    std::ifstream tcp{"/proc/" + std::to_string(pid) + "/net/" + table};
    std::getline(tcp, line);
    while (std::getline(tcp, line)) {
      // sl local_address rem_address st tx:rx tr:tm retrnsmt uid timeout inode
      std::istringstream in{line};
      std::string sl, local, remote, st, txrx, trtm, retr, uid, timeout, inode;
      in >> sl >> local >> remote >> st >> txrx >> trtm >> retr >> uid >> timeout >> inode;
      if (st == "0A" && mine.count(inode) > 0)
        result.tcp_ports.insert(
          static_cast<uint16_t>(std::stoul(local.substr(local.find(':') + 1), nullptr, 16)));
    }
  }
  return result;
}

std::string metrics_of(uint16_t http_port) {
  return loopback_exchange(http_port, "GET /metrics HTTP/1.0\r\nHost: localhost\r\n\r\n");
}

/// The value of `troupe_cluster_refused_connections_total` for `reason`.
uint64_t refused(const std::string& metrics, const std::string& reason) {
  std::regex rx{"troupe_cluster_refused_connections_total\\{[^}]*reason=\"" + reason
                + "\"[^}]*\\} (\\d+)"};
  std::smatch m;
  return std::regex_search(metrics, m, rx) ? std::stoull(m[1]) : 0;
}

} // namespace

TEST_CASE("a stranger without the secret reaches no actor: a raw CAF program, a plain client, "
          "another key are refused, logged and counted, and no local socket speaks BASP") {
  cluster_file f{"guarded", "the-cluster-secret", timing};
  auto n1 = start_node(f, "n1");
  auto n2 = start_node(f, "n2");
  REQUIRE(n1->wait_for("[n1] member n2 up", join_timeout));
  auto port = f.ports.at("n1").first;
  auto mark = n1->mark();
  stranger_system stranger;
  // 1. A raw CAF program dials the cluster port, as `remote_actor` would.
  std::string why;
  auto agent = dial(*stranger.sys, stranger.sys->middleman().actor_handle(), port, why);
  CHECK(!agent);
  MESSAGE("raw CAF program: " << why);
  CHECK(n1->wait_for("[n1] connection to the cluster port from 127.0.0.1:", 10000ms, mark));
  // 2. A plain TCP client writes BASP direct messages to actor ids 1..500
  //    (a halt for each): no byte comes back and the connection is closed.
  {
    auto fd = socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in sa{};
    sa.sin_family = AF_INET;
    sa.sin_port = htons(port);
    inet_pton(AF_INET, "127.0.0.1", &sa.sin_addr);
    REQUIRE(connect(fd, reinterpret_cast<sockaddr*>(&sa), sizeof(sa)) == 0);
    std::string frames;
    for (uint64_t id = 1; id <= 500; ++id)
      frames += basp_frame(id, "halt");
    auto sent = send(fd, frames.data(), frames.size(), MSG_NOSIGNAL);
    CHECK(sent > 0);
    auto [bytes, closed] = drain(fd, 5000ms);
    CHECK(bytes == 0);
    CHECK(closed);
    close(fd);
  }
  // 3. A TLS client keyed by another secret fails its handshake.
  {
    topology::cluster_settings other;
    other.name = "guarded";
    other.secret = "not-the-cluster-secret";
    auto log = log_fn{logger::make("stranger", log_level::warning, log_format::text, stderr)};
    auto tunnel = cluster::tls_tunnel::make(other, 2s, log);
    REQUIRE(tunnel);
    // The dial hands over a connection only once the node spoke through
    // TLS: here it never does, and the dial ends with the failed handshake.
    std::promise<caf::expected<cluster::tls_connection>> dialled;
    (*tunnel)->dial("127.0.0.1", port, [&dialled](caf::expected<cluster::tls_connection> x) {
      dialled.set_value(std::move(x));
    });
    auto result = dialled.get_future();
    REQUIRE(result.wait_for(5000ms) == std::future_status::ready);
    auto link = result.get();
    CHECK(!link);
    CHECK((*tunnel)->refused() >= 1);
  }
  // 4. Another local process (this one) looks for a way to BASP that skips
  // TLS: there is none. The node listens on no Unix socket at all, and on
  // TCP only at its TLS cluster port and its HTTP port; the connections CAF
  // reads come from the tunnel inside the process.
  {
    auto open = listening_of(n1->pid());
    CHECK_MESSAGE(open.unix_sockets.empty(), open.unix_sockets.front());
    CHECK(open.tcp_ports.count(port) == 1);
    for (auto p : open.tcp_ports)
      CHECK_MESSAGE((p == port || p == f.ports.at("n1").second), "listening on port " << p);
  }
  // Nothing happened to the node: it serves, its peer is still up, and every
  // attempt is counted.
  // (/metrics is rendered once a second.)
  std::string metrics;
  for (auto deadline = std::chrono::steady_clock::now() + 5s;
       std::chrono::steady_clock::now() < deadline;) {
    metrics = metrics_of(f.ports.at("n1").second);
    if (refused(metrics, "tls_handshake") + refused(metrics, "handshake_timeout") >= 3)
      break;
    std::this_thread::sleep_for(100ms);
  }
  CHECK(refused(metrics, "tls_handshake") + refused(metrics, "handshake_timeout") >= 3);
  CHECK(n1->output().find("stopping") == std::string::npos);
  CHECK(n1->output().find("member n2 down", mark) == std::string::npos);
  CHECK(n1->wait_exit(0ms) == -1);
}

TEST_CASE("a message with no sender is never the node's own: an anonymous halt from a "
          "connection that holds the secret is ignored") {
  cluster_file f{"guarded", "the-cluster-secret", timing};
  auto n1 = start_node(f, "n1");
  auto n2 = start_node(f, "n2");
  REQUIRE(n1->wait_for("[n1] member n2 up", join_timeout));
  stranger_system insider;
  topology::cluster_settings c;
  c.name = "guarded";
  c.secret = "the-cluster-secret";
  auto log = log_fn{logger::make("insider", log_level::warning, log_format::text, stderr)};
  auto tunnel = cluster::tls_tunnel::make(c, 2s, log);
  REQUIRE(tunnel);
  std::shared_ptr<cluster::tls_tunnel> shared = std::move(*tunnel);
  auto mm = cluster::spawn_secure_middleman(*insider.sys, shared, log);
  std::string why;
  auto agent = dial(*insider.sys, mm, f.ports.at("n1").first, why);
  REQUIRE_MESSAGE(agent, why);
  auto mark = n1->mark();
  caf::anon_send(agent, halt_atom::value, true);
  caf::anon_send(agent, halt_atom::value);
  CHECK(n1->wait_for("[n1] ignored a halt from outside this process", 5000ms, mark));
  {
    // The unproven connection's request for a description is refused too.
    caf::scoped_actor self{*insider.sys};
    bool refused_info = false;
    self->request(agent, 5s, node_info_atom::value)
      .receive([&](node_info&) {}, [&](caf::error&) { refused_info = true; });
    CHECK(refused_info);
    CHECK(!n1->wait_for("stopping", 1000ms, mark));
    CHECK(n1->wait_exit(0ms) == -1);
    // The one-way challenge is closed to operators.
    bool one_way_refused = false;
    self->request(agent, 5s, hello_atom::value, std::string{"shell/insider:1"},
                  std::string{"guarded"})
      .receive([&](std::string&) {}, [&](caf::error&) { one_way_refused = true; });
    CHECK(one_way_refused);
    // The mutual handshake: the node proves the secret first, bound to this
    // shell's name and nonce and its own; a proof replayed for another
    // shell or nonce does not verify.
    auto mine = cluster::make_nonce();
    std::vector<std::string> hello;
    self->request(agent, 5s, hello_atom::value, std::string{"shell/insider:1"},
                  std::string{"guarded"}, mine)
      .receive([&](std::vector<std::string>& x) { hello = x; }, [&](caf::error&) {});
    REQUIRE(hello.size() == 3);
    CHECK(hello[1] == "n1");
    CHECK(cluster::same_proof(hello[2],
                              cluster::make_mutual_proof("the-cluster-secret", "guarded", "node",
                                                         "n1", "shell/insider:1", mine, hello[0])));
    CHECK(!cluster::same_proof(hello[2], cluster::make_mutual_proof(
                                           "the-cluster-secret", "guarded", "node", "n1",
                                           "shell/other:2", mine, hello[0])));
    // A proof bound to another node (the verifier) is refused, and uses up
    // the challenge.
    bool wrong_refused = false;
    self->request(agent, 5s, auth_atom::value, std::string{"shell/insider:1"},
                  cluster::make_mutual_proof("the-cluster-secret", "guarded", "operator",
                                             "shell/insider:1", "n2", hello[0], mine))
      .receive([&]() {}, [&](caf::error&) { wrong_refused = true; });
    CHECK(wrong_refused);
    mine = cluster::make_nonce();
    hello.clear();
    self->request(agent, 5s, hello_atom::value, std::string{"shell/insider:1"},
                  std::string{"guarded"}, mine)
      .receive([&](std::vector<std::string>& x) { hello = x; }, [&](caf::error&) {});
    REQUIRE(hello.size() == 3);
    auto proof = cluster::make_mutual_proof("the-cluster-secret", "guarded", "operator",
                                            "shell/insider:1", "n1", hello[0], mine);
    bool proved = false;
    self->request(agent, 5s, auth_atom::value, std::string{"shell/insider:1"}, proof)
      .receive([&]() { proved = true; }, [&](caf::error&) {});
    REQUIRE(proved);
    bool described = false;
    self->request(agent, 5s, node_info_atom::value)
      .receive([&](node_info&) { described = true; }, [&](caf::error&) {});
    CHECK(described);
  }
  mark = n1->mark();
  caf::anon_send_exit(mm, caf::exit_reason::user_shutdown);
  agent = nullptr;
  mm = caf::io::middleman_actor{};
  insider.sys.reset(); // the process's connections close
  CHECK(n1->wait_for("[n1] operator shell/insider:1 disconnected", 5000ms, mark));
}

TEST_CASE("with an admin port, metrics and health are served there and not on the client port") {
  auto admin = free_ports(1).front();
  cluster_file f{"admin", "admin-secret-1", "", "", {"n1"}};
  {
    // The same file with n1's admin port.
    std::ifstream in{f.path};
    std::stringstream text;
    text << in.rdbuf();
    std::ofstream out{f.path};
    out << text.str() << "admin_port = " << admin << "\n";
  }
  auto n1 = start_node(f, "n1");
  REQUIRE(n1->wait_for("admin http on 127.0.0.1:" + std::to_string(admin), 15000ms));
  auto client = f.ports.at("n1").second;
  auto get = [](uint16_t port, const std::string& path) {
    return loopback_exchange(port, "GET " + path + " HTTP/1.0\r\nHost: localhost\r\n\r\n");
  };
  CHECK(get(client, "/metrics").find("HTTP/1.0 404") == 0);
  CHECK(get(client, "/healthz").find("HTTP/1.0 404") == 0);
  auto metrics = get(admin, "/metrics");
  CHECK(metrics.find("HTTP/1.0 200") == 0);
  CHECK(metrics.find("troupe_") != std::string::npos);
  CHECK(get(admin, "/healthz").find("\"status\":\"ok\"") != std::string::npos);
  // The admin port serves nothing else.
  CHECK(get(admin, "/").find("HTTP/1.0 404") == 0);
  CHECK(get(admin, "/ws").find("HTTP/1.0 404") == 0);
}
