// Placement-driven hosting with real node processes: each node hosts what
// the plan of the live nodes gives it, read through its log.

#include "runtime/cluster/placement_manager.hpp"

#include <fstream>
#include <map>

#include <doctest/doctest.h>

#include "tests/support/cluster_file.hpp"

using namespace std::chrono_literals;
using namespace troupe::test;

namespace {

constexpr auto join_timeout = 15000ms;

/// Three nodes; `probe` has one instance at home on each, `single` runs once,
/// preferring n3, then n1; `news` is a group that cannot start (its model
/// file does not exist).
struct hosting_file : cluster_file {
  hosting_file()
    : cluster_file("hosting", "a-shared-secret",
                   "heartbeat_interval = \"100ms\"\nfailure_timeout = \"500ms\"\n",
                   "[[group]]\nname = \"probe\"\ndomain = \"echo\"\ninstances = 3\n"
                   "[[group]]\nname = \"single\"\ndomain = \"echo\"\ninstances = 1\n"
                   "nodes = [\"n3\", \"n1\", \"n2\"]\n"
                   "[[group]]\nname = \"news\"\ndomain = \"fraud-detector\"\nnodes = [\"n1\"]\n"
                   "settings = { model = \"/nonexistent/model.json\" }\n") {
  }
};

/// The last line of `out` that starts with `prefix`, or "".
std::string last_hosting(const std::string& out, const std::string& prefix) {
  auto i = out.rfind(prefix);
  if (i == std::string::npos)
    return {};
  return out.substr(i, out.find('\n', i) - i);
}

/// Re-reads the nodes' logs until `pred` holds, for at most 10 s.
template <class Pred>
bool eventually(Pred pred) {
  auto deadline = std::chrono::steady_clock::now() + 10s;
  while (!pred()) {
    if (std::chrono::steady_clock::now() >= deadline)
      return false;
    pollfd none{-1, 0, 0};
    poll(&none, 0, 50); // let the nodes' logs grow before reading them again
  }
  return true;
}

} // namespace

TEST_CASE("nodes host nothing until a majority is up, then each hosts its home instances") {
  hosting_file f;
  auto n1 = start_node(f, "n1");
  CHECK(n1->wait_for("[n1] minority: 1 of 3 nodes seen; hosting nothing", join_timeout));
  auto n2 = start_node(f, "n2");
  auto n3 = start_node(f, "n3");
  CHECK(n1->wait_for("[n1] majority: ", join_timeout));
  CHECK(n3->wait_for("[n3] hosting single: #0", join_timeout));
  CHECK(n3->wait_for("[n3] hosting probe: #2", join_timeout));
  CHECK(n2->wait_for("[n2] hosting probe: #1", join_timeout));
  CHECK(n1->wait_for("[n1] hosting probe: #0", join_timeout));
  CHECK(n1->wait_for("[n1] cannot host news: ", join_timeout));
  CHECK(n1->wait_for("/nonexistent/model.json", join_timeout));
}

TEST_CASE("a killed node's instances move to the survivors and go home when it returns") {
  hosting_file f;
  auto n1 = start_node(f, "n1");
  auto n2 = start_node(f, "n2");
  auto n3 = start_node(f, "n3");
  REQUIRE(n3->wait_for("[n3] hosting single: #0", join_timeout));
  REQUIRE(n1->wait_for("[n1] member n3 up", join_timeout));
  REQUIRE(n2->wait_for("[n2] member n3 up", join_timeout));
  auto m1 = n1->mark();
  auto m2 = n2->mark();
  n3->signal(SIGKILL);
  // single prefers n1 after n3; probe #2 goes to the less loaded of n1 and n2
  // (a tie, so n1, the first listed).
  CHECK(n1->wait_for("[n1] hosting single: #0 (moved)", 5000ms, m1));
  CHECK(n1->wait_for("[n1] hosting probe: #0, #2 (moved)", 5000ms, m1));
  CHECK(!n2->wait_for("hosting single", 500ms, m2)); // exactly one survivor took it
  n3->wait_exit(5000ms);
  m1 = n1->mark();
  auto n3b = start_node(f, "n3");
  CHECK(n1->wait_for("[n1] hosting single: none", join_timeout, m1));
  CHECK(n1->wait_for("[n1] hosting probe: #0 group=probe\n", join_timeout, m1));
  CHECK(n3b->wait_for("[n3] hosting single: #0", join_timeout));
}

TEST_CASE("a node that loses the majority stops hosting, and hosts again when it is back") {
  hosting_file f;
  auto n1 = start_node(f, "n1");
  auto n2 = start_node(f, "n2");
  auto n3 = start_node(f, "n3");
  REQUIRE(n1->wait_for("[n1] hosting probe: #0", join_timeout));
  REQUIRE(n1->wait_for("[n1] member n2 up", join_timeout));
  REQUIRE(n1->wait_for("[n1] member n3 up", join_timeout));
  auto m1 = n1->mark();
  n2->signal(SIGSTOP);
  n3->signal(SIGSTOP);
  CHECK(n1->wait_for("[n1] minority: 1 of 3 nodes seen; hosting nothing", 5000ms, m1));
  CHECK(n1->wait_for("[n1] hosting probe: none", 5000ms, m1));
  m1 = n1->mark();
  auto m3 = n3->mark();
  n2->signal(SIGCONT);
  n3->signal(SIGCONT);
  CHECK(n1->wait_for("[n1] majority: ", join_timeout, m1));
  CHECK(n1->wait_for("[n1] hosting probe: #0", join_timeout, m1));
  CHECK(n3->wait_for("[n3] member n1 up", join_timeout, m3));
  CHECK(n1->wait_for("[n1] member n3 up", join_timeout, m1));
  // On resume n2 and n3 may also lose each other for a moment; n1 may then
  // rightly hold `single` while n3 sees a minority. What must hold once all
  // see each other: `single` is back home on n3 and no longer on n1.
  CHECK(eventually([&] {
    return last_hosting(n3->output(), "[n3] hosting single:")
             == "[n3] hosting single: #0 group=single"
           && last_hosting(n1->output(), "[n1] hosting single:")
                != "[n1] hosting single: #0 (moved) group=single";
  }));
}
