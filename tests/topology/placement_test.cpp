#include "topology/placement.hpp"

#include <doctest/doctest.h>

#include "runtime/core/error.hpp"
#include "tests/support/domains.hpp"

using namespace troupe;
using namespace troupe::topology;
using troupe::test::load;
using troupe::test::parse;

namespace {

topology::topology three_nodes(const std::string& groups) {
  auto t = parse(R"([cluster]
name = "t"
secret = "0123456789"
[[node]]
name = "a"
cluster_port = 1
http_port = 2
[[node]]
name = "b"
cluster_port = 3
http_port = 4
[[node]]
name = "c"
cluster_port = 5
http_port = 6
)" + groups,
                 "p.conf");
  REQUIRE_MESSAGE(t, render(t.error()));
  return *t;
}

std::vector<std::string> where(const plan& p, const std::string& group) {
  std::vector<std::string> result;
  for (auto& a : p.assignments)
    if (a.group == group)
      result.push_back(a.node + (a.at_home ? "" : "*"));
  return result;
}

} // namespace

TEST_CASE("instances go to their home nodes in preference order, wrapping around") {
  auto t = three_nodes("[[group]]\nname=\"g\"\ndomain=\"echo\"\ninstances=5\nnodes=[\"b\",\"a\",\"c\"]\n");
  CHECK(where(place(t), "g") == std::vector<std::string>{"b", "a", "c", "b", "a"});
}

TEST_CASE("only the instances of a lost node move, to the least loaded survivor") {
  auto t = three_nodes("[[group]]\nname=\"g\"\ndomain=\"echo\"\ninstances=3\n");
  // a and c hold one each: a tie, which goes by preference (a is listed first).
  CHECK(where(place(t, {"a", "c"}), "g") == std::vector<std::string>{"a", "a*", "c"});
  // b holds #1 already, c nothing: #0 goes to c.
  auto t2 = three_nodes("[[group]]\nname=\"g\"\ndomain=\"echo\"\ninstances=2\n");
  CHECK(where(place(t2, {"b", "c"}), "g") == std::vector<std::string>{"c*", "b"});
}

TEST_CASE("placement is a pure function of the live nodes: every survivor computes the same") {
  auto t = three_nodes("[[group]]\nname=\"g\"\ndomain=\"echo\"\ninstances=4\nnodes=[\"c\",\"a\"]\n");
  auto p1 = place(t, {"a", "b"});
  auto p2 = place(t, {"b", "a"});
  CHECK(where(p1, "g") == where(p2, "g"));
  CHECK(where(p1, "g") == std::vector<std::string>{"a*", "a", "a*", "a"});
}

TEST_CASE("instances return home when their node returns") {
  auto t = three_nodes("[[group]]\nname=\"g\"\ndomain=\"echo\"\ninstances=3\n");
  auto before = where(place(t), "g");
  CHECK(where(place(t, {"b", "c"}), "g") == std::vector<std::string>{"b*", "b", "c"});
  CHECK(where(place(t), "g") == before);
}

TEST_CASE("a single-instance group is placed exactly once whatever is alive") {
  auto t = three_nodes("[[group]]\nname=\"g\"\ndomain=\"echo\"\ninstances=1\n");
  for (auto alive : std::vector<std::set<std::string>>{{"a", "b", "c"}, {"b", "c"}, {"c"}}) {
    auto p = place(t, alive);
    CHECK(where(p, "g").size() == 1);
  }
}

TEST_CASE("a group none of whose nodes is alive is unplaced, the others are not") {
  auto t = three_nodes("[[group]]\nname=\"g\"\ndomain=\"echo\"\nnodes=[\"a\"]\n"
                       "[[group]]\nname=\"h\"\ndomain=\"echo\"\n");
  auto p = place(t, {"b"});
  CHECK(p.unplaced == std::vector<std::string>{"g"});
  CHECK(where(p, "h") == std::vector<std::string>{"b*"});
}
