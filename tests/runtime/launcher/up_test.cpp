// `troupe up` and `troupe kafka` as a user runs them: real processes, read
// through their output; the embedded Redis and Kafka checked with real clients.

#include "runtime/launcher/up.hpp"

#include <cerrno>
#include <filesystem>
#include <fstream>
#include <regex>
#include <sstream>

#include <sys/syscall.h>

#include <doctest/doctest.h>

#include <sys/resource.h>
#include <sys/stat.h>
#include <librdkafka/rdkafka.h>

#include "tests/support/cluster_file.hpp"
#include "tests/support/loopback.hpp"

using namespace std::chrono_literals;
using namespace troupe::test;

namespace {

constexpr auto join_timeout = 20000ms;

/// Three nodes on free loopback ports, with the given Kafka and Redis.
struct topology_file : cluster_file {
  topology_file(const std::string& kafka, const std::string& redis,
                const std::string& more_cluster_keys = {})
    : cluster_file("up-test", "a-shared-secret",
                   "kafka = \"" + kafka + "\"\nredis = \"" + redis + "\"\n" + more_cluster_keys,
                   "[[group]]\nname = \"ingestor\"\ndomain = \"ingestor\"\n") {
  }
};

/// The PIDs `troupe up` reported for `who`, in order.
std::vector<int> pids_of(child_process& up, const std::string& who) {
  std::vector<int> result;
  std::regex pattern{"\\[up\\] " + who + " started, pid ([0-9]+)"};
  auto& out = up.output();
  for (std::sregex_iterator i{out.begin(), out.end(), pattern}, end; i != end; ++i)
    result.push_back(std::stoi((*i)[1]));
  return result;
}

/// The nice value of every thread of process `pid` (one entry per thread).
std::vector<int> nice_of_threads(int pid) {
  std::vector<int> result;
  std::error_code ec;
  for (auto& t : std::filesystem::directory_iterator{"/proc/" + std::to_string(pid) + "/task", ec}) {
    std::ifstream in{t.path() / "stat"};
    std::string stat{std::istreambuf_iterator<char>{in}, {}};
    auto close = stat.rfind(')'); // after the command name, which may hold spaces
    if (close == std::string::npos)
      continue;
    std::istringstream fields{stat.substr(close + 2)};
    std::string field;
    // Field 19 of stat is the nice value; fields 3 to 18 come before it.
    for (int i = 3; i <= 19 && fields >> field; ++i)
      if (i == 19)
        result.push_back(std::stoi(field));
  }
  return result;
}

/// True once the process `pid` has exited: waits on a pidfd, which becomes
/// readable when the process ends (bounded by 5 s).
bool gone(int pid) {
  int fd = static_cast<int>(syscall(SYS_pidfd_open, pid, 0));
  if (fd < 0)
    return errno == ESRCH; // no such process any more
  pollfd p{fd, POLLIN, 0};
  auto exited = poll(&p, 1, 5000) == 1;
  close(fd);
  return exited;
}

/// One Redis command's raw reply (RESP), over a fresh connection.
std::string redis_command(uint16_t port, const std::vector<std::string>& args,
                          const std::string& password = {}) {
  auto encode = [](const std::vector<std::string>& xs) {
    std::string cmd = "*" + std::to_string(xs.size()) + "\r\n";
    for (auto& a : xs)
      cmd += "$" + std::to_string(a.size()) + "\r\n" + a + "\r\n";
    return cmd;
  };
  if (password.empty())
    return loopback_exchange(port, encode(args), true, 2);
  // AUTH, the command, QUIT (Redis then closes): the middle reply.
  auto all = loopback_exchange(port, encode({"AUTH", password}) + encode(args) + encode({"QUIT"}),
                               false, 2);
  if (all.rfind("+OK\r\n", 0) != 0 || all.size() < 10)
    return "AUTH failed: " + all;
  return all.substr(5, all.size() - 10);
}

/// The embedded Redis's generated password (empty if it has none).
std::string redis_password(const std::string& state_dir) {
  std::ifstream in{state_dir + "/redis/password"};
  std::string pw;
  std::getline(in, pw);
  return pw;
}

/// The port of the embedded Redis `troupe up` reports ready (0 if it does
/// not within the join timeout).
uint16_t embedded_redis_port(child_process& up) {
  if (!up.wait_for("[up] redis ready at redis://127.0.0.1:", join_timeout))
    return 0;
  std::smatch m;
  auto out = up.output();
  if (!std::regex_search(out, m, std::regex{"redis ready at redis://127\\.0\\.0\\.1:([0-9]+)"}))
    return 0;
  return static_cast<uint16_t>(std::stoi(m[1]));
}

/// Everything in the files under `dir`, concatenated.
std::string files_under(const std::string& dir) {
  std::string all;
  std::error_code ec;
  for (auto& e : std::filesystem::recursive_directory_iterator(dir, ec))
    if (e.is_regular_file()) {
      std::ifstream in{e.path()};
      all.append(std::istreambuf_iterator<char>{in}, std::istreambuf_iterator<char>{});
    }
  return all;
}

std::string redis_ping(uint16_t port, const std::string& password = {}) {
  return redis_command(port, {"PING"}, password);
}

/// The topic names a Kafka cluster reports, through librdkafka.
std::vector<std::string> kafka_topics(const std::string& bootstrap) {
  std::vector<std::string> result;
  char err[512];
  auto conf = rd_kafka_conf_new();
  rd_kafka_conf_set(conf, "bootstrap.servers", bootstrap.c_str(), err, sizeof(err));
  auto rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, err, sizeof(err));
  REQUIRE(rk);
  const rd_kafka_metadata_t* md = nullptr;
  if (rd_kafka_metadata(rk, 1, nullptr, &md, 5000) == RD_KAFKA_RESP_ERR_NO_ERROR) {
    for (int i = 0; i < md->topic_cnt; ++i)
      result.push_back(md->topics[i].topic);
    rd_kafka_metadata_destroy(md);
  }
  rd_kafka_destroy(rk);
  return result;
}

} // namespace

TEST_CASE("troupe up starts every local node, restarts a killed one, and stops leaving no "
          "process") {
  topology_file f{"127.0.0.1:9092", "redis://127.0.0.1:6379"};
  auto up = child_process::start({TROUPE_BINARY, "up", f.path});
  REQUIRE(up);
  CHECK(up->wait_for("[n1] member n2 up", join_timeout));
  CHECK(up->wait_for("[n1] member n3 up", join_timeout));
  CHECK(up->wait_for("[n2] member n3 up", join_timeout));
  auto before = pids_of(*up, "n2");
  REQUIRE(before.size() == 1);
  auto mark = up->mark();
  kill(before[0], SIGKILL); // a node process: a child of the troupe up this test started
  CHECK(up->wait_for("[n1] member n2 down", 5000ms, mark));
  CHECK(up->wait_for("[up] n2 started, pid", 5000ms, mark));
  CHECK(up->wait_for("[n1] member n2 up", join_timeout, mark));
  auto after = pids_of(*up, "n2");
  REQUIRE(after.size() == 2);
  CHECK(after[1] != before[0]);
  std::vector<int> all;
  for (auto n : {"n1", "n2", "n3"})
    all.push_back(pids_of(*up, n).back());
  up->signal(SIGTERM);
  CHECK(up->wait_exit(20000ms) == 0);
  CHECK(up->output().find("[up] stopped") != std::string::npos);
  for (auto pid : all)
    CHECK_MESSAGE(gone(pid), "process " << pid << " outlived troupe up");
}

TEST_CASE("troupe up runs embedded Kafka and Redis that real clients can use") {
  // redis_nice = 0: the embedded Redis runs at the launcher's priority.
  topology_file f{"embedded", "embedded", "redis_nice = 0\n"};
  auto up = child_process::start({TROUPE_BINARY, "up", f.path});
  REQUIRE(up);
  auto port = embedded_redis_port(*up);
  REQUIRE(port != 0);
  std::smatch m;
  auto out = up->output();
  // It has a generated password, readable by its owner only; without it a
  // local client cannot touch a key (say, mark an alert sent).
  auto state = f.dir + "/.troupe-state";
  auto pw = redis_password(state);
  CHECK(pw.size() == 64);
  struct stat st{};
  REQUIRE(stat((state + "/redis/password").c_str(), &st) == 0);
  CHECK((st.st_mode & 0777) == 0600);
  REQUIRE(stat((state + "/redis/redis.conf").c_str(), &st) == 0);
  CHECK((st.st_mode & 0777) == 0600);
  CHECK(redis_command(port, {"SET", "alert:tx-1", "sent"}).rfind("-NOAUTH", 0) == 0);
  CHECK(redis_command(port, {"PING"}, "not-the-password").rfind("AUTH failed", 0) == 0);
  CHECK(redis_ping(port, pw) == "+PONG\r\n");
  REQUIRE(std::regex_search(out, m, std::regex{"kafka \\(embedded mock cluster, [0-9]+ brokers?\\) at ([0-9.:,]+)"}));
  auto topics = kafka_topics(m[1]);
  CHECK(std::find(topics.begin(), topics.end(), "transactions") != topics.end());
  CHECK(std::find(topics.begin(), topics.end(), "dead-letters") != topics.end());
  // The nodes were told where both are.
  CHECK(up->wait_for("[n1] kafka at " + m[1].str() + ", redis at redis://127.0.0.1:"
                       + std::to_string(port),
                     join_timeout));
  auto redis_pid = pids_of(*up, "redis");
  REQUIRE(redis_pid.size() == 1);
  CHECK(up->output().find("redis runs at nice") == std::string::npos);
  CHECK(nice_of_threads(redis_pid[0])
        == std::vector<int>(nice_of_threads(redis_pid[0]).size(), getpriority(PRIO_PROCESS, 0)));
  up->signal(SIGINT);
  CHECK(up->wait_exit(20000ms) == 0);
  CHECK(gone(redis_pid[0]));
}

TEST_CASE("the embedded Redis killed with kill -9 comes back with its data: it persists to the "
          "cluster's state directory") {
  topology_file f{"embedded", "embedded"};
  auto up = child_process::start({TROUPE_BINARY, "up", f.path});
  REQUIRE(up);
  auto port = embedded_redis_port(*up);
  REQUIRE(port != 0);
  auto out = up->output();
  auto dir = f.dir + "/.troupe-state/redis";
  CHECK(out.find("[up] redis keeps its data in " + dir) != std::string::npos);
  auto pw = redis_password(f.dir + "/.troupe-state");
  // What the pipeline keeps there: a user's features and an alert's claim.
  CHECK(redis_command(port, {"HSET", "features:u-1", "count", "7"}, pw) == ":1\r\n");
  CHECK(redis_command(port, {"SET", "alert:tx-1", "sent"}, pw) == "+OK\r\n");
  // Once Redis wrote them to its append-only file, killing the process
  // cannot lose them (the kernel holds the written pages).
  auto deadline = std::chrono::steady_clock::now() + 10s;
  while (files_under(dir).find("alert:tx-1") == std::string::npos
         && std::chrono::steady_clock::now() < deadline)
    up->wait_for("never printed", 50ms);
  REQUIRE(files_under(dir).find("alert:tx-1") != std::string::npos);
  auto pids = pids_of(*up, "redis");
  REQUIRE(pids.size() == 1);
  // Ahead of the nodes on this host's cores: nice -10 by default (root may
  // raise a priority; anyone else is told it stays the launcher's).
  auto permitted = geteuid() == 0;
  if (permitted) {
    CHECK(out.find("[up] redis runs at nice -10") != std::string::npos);
    CHECK(nice_of_threads(pids[0]) == std::vector<int>(nice_of_threads(pids[0]).size(), -10));
    CHECK(!nice_of_threads(pids[0]).empty());
  } else {
    CHECK(out.find("[up] warning: cannot run redis at nice -10") != std::string::npos);
  }
  auto mark = up->mark();
  kill(pids[0], SIGKILL); // the redis-server this test's troupe up started
  REQUIRE(up->wait_for("[up] redis started, pid", 10000ms, mark));
  // The restarted server gets the same priority.
  if (permitted) {
    REQUIRE(up->wait_for("[up] redis runs at nice -10", 10000ms, mark));
    auto again = pids_of(*up, "redis");
    REQUIRE(again.size() == 2);
    CHECK(nice_of_threads(again[1]) == std::vector<int>(nice_of_threads(again[1]).size(), -10));
  }
  deadline = std::chrono::steady_clock::now() + 10s;
  while (redis_ping(port, pw) != "+PONG\r\n" && std::chrono::steady_clock::now() < deadline)
    up->wait_for("never printed", 50ms);
  // The same password after the restart: the nodes' connections still work.
  CHECK(redis_password(f.dir + "/.troupe-state") == pw);
  CHECK(redis_command(port, {"HGET", "features:u-1", "count"}, pw) == "$1\r\n7\r\n");
  CHECK(redis_command(port, {"GET", "alert:tx-1"}, pw) == "$4\r\nsent\r\n");
  up->signal(SIGTERM);
  CHECK(up->wait_exit(20000ms) == 0);
}

TEST_CASE("troupe kafka prints a bootstrap list and stops on SIGTERM") {
  auto k = child_process::start({TROUPE_BINARY, "kafka", "--brokers", "1"});
  REQUIRE(k);
  REQUIRE(k->wait_for("bootstrap: 127.0.0.1:", 10000ms));
  std::smatch m;
  auto out = k->output();
  REQUIRE(std::regex_search(out, m, std::regex{"bootstrap: ([0-9.:,]+)"}));
  CHECK(kafka_topics(m[1]).empty()); // reachable, and no topics yet
  k->signal(SIGTERM);
  CHECK(k->wait_exit(10000ms) == 0);
}

TEST_CASE("troupe up refuses a file with no node on this host") {
  char tmpl[] = "/tmp/troupe-up-XXXXXX";
  std::string dir = mkdtemp(tmpl);
  auto path = dir + "/c.conf";
  std::ofstream{path} << "[cluster]\nname = \"x\"\nsecret = \"0123456789\"\n"
                      << "[[node]]\nname = \"far\"\nhost = \"192.0.2.10\"\ncluster_port = 1\n"
                      << "http_port = 2\n";
  auto up = child_process::start({TROUPE_BINARY, "up", path});
  REQUIRE(up);
  CHECK(up->wait_exit(10000ms) == 2);
  CHECK(up->output().find("no node of " + path + " lives on this host") != std::string::npos);
  std::remove(path.c_str());
  rmdir(dir.c_str());
}
