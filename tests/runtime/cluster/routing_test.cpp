// Cross-node routing with real node processes: n1 sends requests to a group
// that only n2 and n3 host, and one of them fails mid-stream.

#include "runtime/cluster/cluster_router.hpp"

#include <fstream>
#include <regex>

#include <doctest/doctest.h>

#include "tests/support/cluster_file.hpp"

using namespace std::chrono_literals;
using namespace troupe::test;

namespace {

constexpr auto join_timeout = 15000ms;

/// Three nodes; `remote` runs on n2 and n3 only, so n1's requests cross nodes.
struct routing_file : cluster_file {
  routing_file()
    : cluster_file("routing", "a-shared-secret",
                   "heartbeat_interval = \"100ms\"\nfailure_timeout = \"500ms\"\n",
                   "[[group]]\nname = \"remote\"\ndomain = \"echo\"\ninstances = 2\n"
                   "nodes = [\"n2\", \"n3\"]\n") {
  }
};

/// The count n1's traffic summary reports for `key` ("n2", "resent", ...).
long routed(child_process& n1, const std::string& key) {
  std::smatch m;
  auto out = n1.output();
  if (!std::regex_search(out, m, std::regex{"routes of remote: .*"}))
    return -1;
  std::string line = m[0];
  if (!std::regex_search(line, m, std::regex{"(^|, |: )" + key + " ([0-9]+)"}))
    return 0;
  return std::stol(m[2]);
}

} // namespace

TEST_CASE("requests reach a group on other nodes, and none is lost when one is killed") {
  routing_file f;
  auto n2 = start_node(f, "n2");
  auto n3 = start_node(f, "n3");
  auto n1 = start_node(f, "n1",
                  {"--rate", "1000", "--group", "remote", "--duration", "6s", "--expect-no-loss"});
  REQUIRE(n1->wait_for("[n1] member n2 up", join_timeout));
  REQUIRE(n1->wait_for("[n1] member n3 up", join_timeout));
  // Let traffic flow to both, then kill n2 mid-stream.
  REQUIRE(n2->wait_for("[n2] hosting remote: #0", join_timeout));
  auto mark = n1->mark();
  CHECK(!n1->wait_for("lost", 1500ms, mark)); // still running: no summary yet
  auto moved = n3->mark();
  n2->signal(SIGKILL);
  CHECK(n1->wait_for("[n1] member n2 down", 3000ms, mark));
  CHECK(n3->wait_for("[n3] hosting remote: #0 (moved), #1", 5000ms, moved));
  CHECK(n1->wait_exit(30000ms) == 0);
  CHECK(n1->output().find(", lost 0;") != std::string::npos);
  CHECK(routed(*n1, "n2") > 0);
  CHECK(routed(*n1, "n3") > 0);
  MESSAGE(n1->output().substr(n1->output().find("[n1] traffic: sent")));
}

TEST_CASE("a frozen hosting node's requests go to the survivor, none lost, and it rejoins") {
  routing_file f;
  auto n2 = start_node(f, "n2");
  auto n3 = start_node(f, "n3");
  auto n1 = start_node(f, "n1",
                  {"--rate", "1000", "--group", "remote", "--duration", "12s", "--expect-no-loss"});
  REQUIRE(n1->wait_for("[n1] member n2 up", join_timeout));
  REQUIRE(n1->wait_for("[n1] member n3 up", join_timeout));
  REQUIRE(n2->wait_for("[n2] hosting remote: #0", join_timeout));
  auto m1 = n1->mark();
  CHECK(!n1->wait_for("lost", 1500ms, m1));
  auto moved = n3->mark();
  n2->signal(SIGSTOP);
  CHECK(n1->wait_for("[n1] member n2 down", 3000ms, m1));
  CHECK(n3->wait_for("[n3] hosting remote: #0 (moved), #1", 5000ms, moved));
  // Resume n2 while the traffic still flows: it rejoins n1 and takes its
  // instance back once n3 has let it go, so `remote` #0 never runs twice.
  auto m2 = n1->mark();
  auto m3 = n3->mark();
  auto back = n2->mark();
  n2->signal(SIGCONT);
  CHECK(n1->wait_for("[n1] member n2 up", 5000ms, m2));
  auto released = n3->wait_for("[n3] hosting remote: #1", 5000ms, m3);
  CHECK(released);
  if (!released)
    MESSAGE("n1:\n" << n1->output() << "n2:\n" << n2->output() << "n3:\n" << n3->output());
  CHECK(n2->wait_for("[n2] paused for", 5000ms, back));
  CHECK(n2->wait_for("[n2] hosting remote: none", 5000ms, back));
  CHECK(n2->wait_for("[n2] hosting remote: #0", 5000ms, back));
  CHECK(n1->wait_exit(30000ms) == 0);
  CHECK(n1->output().find(", lost 0;") != std::string::npos);
  CHECK(routed(*n1, "resent") > 0); // what the frozen node held was sent again
  MESSAGE(n1->output().substr(n1->output().find("[n1] traffic: sent")));
}

TEST_CASE("requests reach an instance that went home after it ran elsewhere while its node was away") {
  routing_file f;
  // n2 starts late: n3 first hosts n2's instance (#0, moved), then hands it
  // home; n1's traffic must follow it there.
  auto n3 = start_node(f, "n3");
  auto n1 = start_node(f, "n1",
                  {"--rate", "500", "--group", "remote", "--duration", "10s", "--expect-no-loss"});
  REQUIRE(n3->wait_for("[n3] hosting remote: #0 (moved), #1", join_timeout));
  auto m1 = n1->mark();
  CHECK(!n1->wait_for("lost", 1500ms, m1));
  auto n2 = start_node(f, "n2");
  CHECK(n2->wait_for("[n2] hosting remote: #0", join_timeout));
  CHECK(n1->wait_exit(30000ms) == 0);
  CHECK(n1->output().find(", lost 0;") != std::string::npos);
  CHECK(routed(*n1, "n2") > 0);
  MESSAGE(n1->output().substr(n1->output().find("[n1] traffic: sent")));
}

TEST_CASE("a caller that hosted an instance while its home was away follows it home") {
  cluster_file f{"routing", "a-shared-secret",
                 "heartbeat_interval = \"100ms\"\nfailure_timeout = \"500ms\"\n",
                 "[[group]]\nname = \"single\"\ndomain = \"echo\"\ninstances = 1\n"
                 "nodes = [\"n3\", \"n1\", \"n2\"]\n"};
  std::vector<std::string> argv{TROUPE_BINARY, "node", "--config", f.path, "--name", "n1",
                                "--rate", "500", "--group", "single", "--duration", "10s",
                                "--expect-no-loss"};
  auto n1 = child_process::start(argv);
  REQUIRE(n1);
  argv[5] = "n2";
  auto n2 = child_process::start(argv);
  REQUIRE(n2);
  REQUIRE(n1->wait_for("[n1] hosting single: #0 (moved)", join_timeout));
  auto m1 = n1->mark();
  CHECK(!n1->wait_for("lost", 1500ms, m1));
  auto n3 = child_process::start({TROUPE_BINARY, "node", "--config", f.path, "--name", "n3"});
  REQUIRE(n3);
  CHECK(n3->wait_for("[n3] hosting single: #0", join_timeout));
  CHECK(n1->wait_exit(30000ms) == 0);
  CHECK(n2->wait_exit(30000ms) == 0);
  CHECK(n1->output().find(", lost 0;") != std::string::npos);
  CHECK(n2->output().find(", lost 0;") != std::string::npos);
  MESSAGE(n1->output().substr(n1->output().find("[n1] traffic: sent")));
  MESSAGE(n2->output().substr(n2->output().find("[n2] traffic: sent")));
}
