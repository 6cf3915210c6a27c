#include "runtime/node/node.hpp"

#include "actors/echo/echo.hpp"
#include "tests/support/fixture.hpp"

using namespace std::chrono_literals;
using namespace troupe;
using namespace troupe::test;

namespace {

caf::actor wait_for_group(fixture& f, node& n, const std::string& name,
                          const caf::actor& not_this = nullptr) {
  auto deadline = std::chrono::steady_clock::now() + 5s;
  for (;;) {
    auto g = n.group(name);
    if (g && g != not_this)
      return g;
    REQUIRE_MESSAGE(std::chrono::steady_clock::now() < deadline, "group " << name << " not up");
    f.self->receive(caf::after(1ms) >> [] {});
  }
}

} // namespace

TEST_CASE_FIXTURE(fixture, "a node's root supervisor holds one child per group") {
  node_config cfg;
  cfg.name = "n1";
  cfg.groups.push_back(echo::make_group("echo", 2));
  cfg.groups.push_back(echo::make_group("other", 1));
  auto n = node::make(sys, cfg);
  REQUIRE_MESSAGE(n, render(n.error()));
  auto echo = wait_for_group(*this, **n, "echo");
  wait_for_group(*this, **n, "other");
  auto kids = children_of((*n)->root());
  REQUIRE(kids.size() == 2);
  CHECK(kids[0].name == "echo");
  CHECK(kids[1].name == "other");
  CHECK(kids[0].is_supervisor);
  CHECK(ask<std::string>(echo, std::string{"hello"}) == "hello");
  CHECK(ask<uint64_t>(echo, uint64_t{7}) == 7u);
}

TEST_CASE_FIXTURE(fixture, "a killed group router is restarted and the directory follows it") {
  node_config cfg;
  cfg.groups.push_back(echo::make_group("echo", 1));
  auto n = node::make(sys, cfg);
  REQUIRE(n);
  auto first = wait_for_group(*this, **n, "echo");
  caf::anon_send_exit(first, caf::exit_reason::kill);
  auto second = wait_for_group(*this, **n, "echo", first);
  CHECK(second != first);
  CHECK(ask<std::string>(second, std::string{"again"}) == "again");
  auto crashes = crashes_of((*n)->root());
  REQUIRE(crashes.size() == 1);
  CHECK(crashes[0].child == "echo");
  CHECK(crashes[0].reason == "kill");
}

TEST_CASE_FIXTURE(fixture, "stopping a node stops its groups and their workers") {
  node_config cfg;
  cfg.groups.push_back(echo::make_group("echo", 2));
  auto n = node::make(sys, cfg);
  REQUIRE(n);
  auto echo = wait_for_group(*this, **n, "echo");
  auto sup = ask<caf::actor>(echo, supervisor_atom::value);
  auto workers = children_of(sup);
  REQUIRE(workers.size() == 2);
  for (auto& w : workers)
    self->monitor(w.handle);
  self->monitor(echo);
  (*n)->stop();
  for (auto& w : workers)
    CHECK(expect_down(w.handle) == caf::exit_reason::user_shutdown);
  CHECK(expect_down(echo) == caf::exit_reason::user_shutdown);
}

TEST_CASE_FIXTURE(fixture, "a node refuses a nonsensical group spec before starting anything") {
  node_config cfg;
  cfg.groups.push_back(echo::make_group("echo", 0));
  auto n = node::make(sys, cfg);
  REQUIRE(!n);
  CHECK(render(n.error()) == "invalid_spec: group 'echo': zero instances");
}
