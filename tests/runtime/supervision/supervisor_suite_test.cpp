// Ports of Erlang/OTP's lib/stdlib/test/supervisor_SUITE.erl, each named after
// its case. Left out, as they do not apply: simple_one_for_one (groups take
// that role), code_change, child_unlink (children are monitored, not linked),
// global names, the map-spec parsing cases, count_children (which_children
// carries the same facts). An empty supervisor must say `dynamic` (OTP
// accepts any empty one; see spec_test.cpp).

#include "runtime/supervision/supervisor.hpp"

#include <atomic>

#include "tests/support/fixture.hpp"

using namespace std::chrono_literals;
using namespace troupe;
using namespace troupe::test;

namespace {

caf::actor handle_of(fixture& f, const caf::actor& sup, const std::string& name) {
  for (auto& c : f.children_of(sup))
    if (c.name == name)
      return c.handle;
  return nullptr;
}

void crash(fixture& f, const caf::actor& sup, const std::string& name) {
  auto h = handle_of(f, sup, name);
  REQUIRE(h);
  caf::anon_send(h, crash_atom::value);
}

void quit_with(fixture& f, const caf::actor& sup, const std::string& name, caf::error reason) {
  auto h = handle_of(f, sup, name);
  REQUIRE(h);
  caf::anon_send(h, quit_atom::value, std::move(reason));
}

/// A child spec whose start fails the first `failures` times after the first start.
child_spec flaky(fixture& f, const std::string& name, std::shared_ptr<std::atomic<int>> starts,
                 int fail_from, int fail_until) {
  auto ok = f.probe(name);
  child_spec c = ok;
  c.start = [ok, starts, fail_from, fail_until](caf::actor_system& sys) -> caf::expected<caf::actor> {
    auto n = (*starts)++;
    if (n >= fail_from && n < fail_until)
      return caf::make_error(caf::sec::runtime_error, std::string{"start refused"});
    return ok.start(sys);
  };
  return c;
}

} // namespace

TEST_CASE_FIXTURE(fixture, "sup_start_normal: a supervisor starts and stops on shutdown") {
  auto sup = start_supervisor(make_spec("sup", strategy::one_for_one, 2, 3600s, {probe("c")}));
  expect_started("c");
  caf::anon_send_exit(sup, caf::exit_reason::user_shutdown);
  CHECK(expect_stopped("c") == "user_shutdown");
  CHECK(expect_down(sup) == caf::exit_reason::user_shutdown);
}

TEST_CASE_FIXTURE(fixture, "sup_start_normal (dynamic): an empty dynamic supervisor takes children later") {
  auto spec = make_spec("sup", strategy::one_for_one, 2, 3600s, {});
  spec.dynamic = true;
  auto sup = start_supervisor(spec);
  CHECK(children_of(sup).empty());
  ask<caf::actor>(sup, start_child_atom::value, probe("late"));
  expect_started("late");
  caf::anon_send_exit(sup, caf::exit_reason::user_shutdown);
  CHECK(expect_stopped("late") == "user_shutdown");
  CHECK(expect_down(sup) == caf::exit_reason::user_shutdown);
}

TEST_CASE_FIXTURE(fixture, "sup_start_error_return: an invalid spec is refused at start") {
  auto spec = make_spec("sup", strategy::one_for_one, 2, 3600s, {probe("c"), probe("c")});
  auto sup = spawn_supervisor(sys, spec);
  REQUIRE(!sup);
  CHECK(sup.error() == ec::invalid_spec);
}

TEST_CASE_FIXTURE(fixture, "sup_start_fail: a child failing to start fails the supervisor") {
  child_spec bad;
  bad.name = "bad";
  bad.start = [](caf::actor_system&) -> caf::expected<caf::actor> {
    throw std::runtime_error("badmatch");
  };
  auto sup = start_supervisor(make_spec("sup", strategy::one_for_one, 2, 3600s, {bad}));
  CHECK(render(expect_down(sup)) == "failed_to_start_child: sup, bad, runtime_error: badmatch");
}

TEST_CASE_FIXTURE(fixture, "sup_stop_infinity: children with infinite shutdown stop on request") {
  auto sup = start_supervisor(make_spec(
    "sup", strategy::one_for_one, 2, 3600s,
    {probe("child1", restart_type::permanent, shutdown_spec::wait()),
     probe("child2", restart_type::permanent, shutdown_spec::wait())}));
  next_events(2);
  caf::anon_send_exit(sup, caf::exit_reason::user_shutdown);
  CHECK(next_events(2) == std::vector<std::string>{"stopped:child2", "stopped:child1"});
  expect_down(sup);
}

TEST_CASE_FIXTURE(fixture, "sup_stop_timeout: a child that does not stop in time is killed") {
  auto sup = start_supervisor(make_spec(
    "sup", strategy::one_for_one, 2, 3600s,
    {probe("child1", restart_type::permanent, shutdown_spec::after(1s)),
     probe("child2", restart_type::permanent, shutdown_spec::after(200ms), on_shutdown::ignore)}));
  next_events(2);
  caf::anon_send_exit(sup, caf::exit_reason::user_shutdown);
  std::vector<std::string> got;
  for (int i = 0; i < 2; ++i) {
    auto e = next_event();
    got.push_back(e.name + ":" + e.reason);
  }
  std::sort(got.begin(), got.end());
  CHECK(got == std::vector<std::string>{"child1:user_shutdown", "child2:kill"});
  expect_down(sup);
}

TEST_CASE_FIXTURE(fixture, "sup_stop_brutal_kill: a brutal_kill child is killed, others shut down") {
  auto sup = start_supervisor(make_spec(
    "sup", strategy::one_for_one, 2, 3600s,
    {probe("child1", restart_type::permanent, shutdown_spec::after(1s)),
     probe("child2", restart_type::permanent, shutdown_spec::kill())}));
  next_events(2);
  caf::anon_send_exit(sup, caf::exit_reason::user_shutdown);
  std::vector<std::string> got;
  for (int i = 0; i < 2; ++i) {
    auto e = next_event();
    got.push_back(e.name + ":" + e.reason);
  }
  std::sort(got.begin(), got.end());
  CHECK(got == std::vector<std::string>{"child1:user_shutdown", "child2:kill"});
  expect_down(sup);
}

TEST_CASE_FIXTURE(fixture, "child_adm: start, terminate, restart and delete children") {
  auto sup = start_supervisor(make_spec("sup", strategy::one_for_one, 2, 3600s, {probe("base")}));
  expect_started("base");
  auto child1 = ask<caf::actor>(sup, start_child_atom::value, probe("child1"));
  CHECK(expect_started("child1") == child1);
  CHECK(ask_error<caf::actor>(sup, start_child_atom::value, probe("child1")) == ec::child_exists);
  CHECK(ask_void_error(sup, terminate_child_atom::value, std::string{"hej"}) == ec::no_such_child);
  CHECK(ask_void_error(sup, delete_child_atom::value, std::string{"hej"}) == ec::no_such_child);
  CHECK(ask_error<caf::actor>(sup, restart_child_atom::value, std::string{"hej"})
        == ec::no_such_child);
  CHECK(ask_void_error(sup, delete_child_atom::value, std::string{"child1"}) == ec::child_running);
  CHECK(ask_error<caf::actor>(sup, restart_child_atom::value, std::string{"child1"})
        == ec::child_running);
  ask_ok(sup, terminate_child_atom::value, std::string{"child1"});
  CHECK(expect_stopped("child1") == "user_shutdown");
  auto kids = children_of(sup);
  REQUIRE(kids.size() == 2);
  CHECK(kids[1].name == "child1");
  CHECK(!kids[1].handle);
  CHECK(kids[1].state == "terminated");
  auto child1b = ask<caf::actor>(sup, restart_child_atom::value, std::string{"child1"});
  CHECK(expect_started("child1") == child1b);
  CHECK(child1b != child1);
  ask_ok(sup, terminate_child_atom::value, std::string{"child1"});
  expect_stopped("child1");
  ask_ok(sup, terminate_child_atom::value, std::string{"child1"}); // twice is fine
  ask_ok(sup, delete_child_atom::value, std::string{"child1"});
  CHECK(ask_error<caf::actor>(sup, restart_child_atom::value, std::string{"child1"})
        == ec::no_such_child);
  CHECK(children_of(sup).size() == 1);
  ask<caf::actor>(sup, start_child_atom::value, probe("child1"));
  expect_started("child1");
  CHECK(children_of(sup).size() == 2);
  // A terminated child is not restarted by anything but restart_child.
  expect_no_event();
}

TEST_CASE_FIXTURE(fixture, "permanent_normal: a permanent child exiting normally is restarted") {
  auto sup = start_supervisor(make_spec("sup", strategy::one_for_one, 2, 3600s, {probe("c")}));
  expect_started("c");
  quit_with(*this, sup, "c", caf::error{});
  expect_stopped("c");
  expect_started("c");
}

TEST_CASE_FIXTURE(fixture, "transient_normal: a transient child exiting normally is not restarted") {
  auto sup = start_supervisor(
    make_spec("sup", strategy::one_for_one, 2, 3600s, {probe("c", restart_type::transient)}));
  expect_started("c");
  quit_with(*this, sup, "c", caf::error{});
  expect_stopped("c");
  expect_no_event();
  CHECK(children_of(sup).at(0).state == "terminated");
}

TEST_CASE_FIXTURE(fixture, "temporary_normal: a temporary child exiting normally is removed") {
  auto sup = start_supervisor(make_spec(
    "sup", strategy::one_for_one, 2, 3600s, {probe("base"), probe("c", restart_type::temporary)}));
  next_events(2);
  quit_with(*this, sup, "c", caf::error{});
  expect_stopped("c");
  expect_no_event();
  CHECK(children_of(sup).size() == 1);
}

TEST_CASE_FIXTURE(fixture, "permanent_shutdown: a permanent child exiting with shutdown is restarted") {
  auto sup = start_supervisor(make_spec("sup", strategy::one_for_one, 2, 3600s, {probe("c")}));
  expect_started("c");
  quit_with(*this, sup, "c", caf::exit_reason::user_shutdown);
  expect_stopped("c");
  expect_started("c");
}

TEST_CASE_FIXTURE(fixture, "transient_shutdown: a transient child exiting with shutdown is not restarted") {
  auto sup = start_supervisor(
    make_spec("sup", strategy::one_for_one, 2, 3600s, {probe("c", restart_type::transient)}));
  expect_started("c");
  quit_with(*this, sup, "c", caf::exit_reason::user_shutdown);
  expect_stopped("c");
  expect_no_event();
}

TEST_CASE_FIXTURE(fixture, "temporary_shutdown: a temporary child exiting with shutdown is removed") {
  auto sup = start_supervisor(make_spec(
    "sup", strategy::one_for_one, 2, 3600s, {probe("base"), probe("c", restart_type::temporary)}));
  next_events(2);
  quit_with(*this, sup, "c", caf::exit_reason::user_shutdown);
  expect_stopped("c");
  expect_no_event();
  CHECK(children_of(sup).size() == 1);
}

TEST_CASE_FIXTURE(fixture, "permanent_abnormal: a permanent child crashing is restarted") {
  auto sup = start_supervisor(make_spec("sup", strategy::one_for_one, 2, 3600s, {probe("c")}));
  expect_started("c");
  crash(*this, sup, "c");
  expect_stopped("c");
  expect_started("c");
}

TEST_CASE_FIXTURE(fixture, "transient_abnormal: a transient child crashing is restarted") {
  auto sup = start_supervisor(
    make_spec("sup", strategy::one_for_one, 2, 3600s, {probe("c", restart_type::transient)}));
  expect_started("c");
  crash(*this, sup, "c");
  expect_stopped("c");
  expect_started("c");
}

TEST_CASE_FIXTURE(fixture, "temporary_abnormal: a temporary child crashing is not restarted") {
  auto sup = start_supervisor(make_spec(
    "sup", strategy::one_for_one, 2, 3600s, {probe("base"), probe("c", restart_type::temporary)}));
  next_events(2);
  crash(*this, sup, "c");
  expect_stopped("c");
  expect_no_event();
}

TEST_CASE_FIXTURE(fixture, "one_for_one: only the crashed child restarts") {
  auto sup = start_supervisor(
    make_spec("sup", strategy::one_for_one, 2, 3600s, {probe("child1"), probe("child2")}));
  next_events(2);
  auto child2 = handle_of(*this, sup, "child2");
  crash(*this, sup, "child1");
  CHECK(next_events(2) == std::vector<std::string>{"stopped:child1", "started:child1"});
  CHECK(handle_of(*this, sup, "child2") == child2);
}

TEST_CASE_FIXTURE(fixture, "one_for_one_escalation: the third crash in the period ends the supervisor") {
  auto sup = start_supervisor(
    make_spec("sup", strategy::one_for_one, 1, 3600s, {probe("child1"), probe("child2")}));
  next_events(2);
  crash(*this, sup, "child1");
  next_events(2);
  crash(*this, sup, "child1");
  CHECK(next_events(2) == std::vector<std::string>{"stopped:child1", "stopped:child2"});
  CHECK(expect_down(sup) == ec::max_restart_intensity);
}

TEST_CASE_FIXTURE(fixture, "one_for_all: every child restarts") {
  auto sup = start_supervisor(
    make_spec("sup", strategy::one_for_all, 2, 3600s, {probe("child1"), probe("child2")}));
  next_events(2);
  crash(*this, sup, "child1");
  CHECK(next_events(4)
        == std::vector<std::string>{"stopped:child1", "stopped:child2", "started:child1",
                                    "started:child2"});
}

TEST_CASE_FIXTURE(fixture, "one_for_all_escalation: past the intensity all stop and the supervisor ends") {
  auto sup = start_supervisor(
    make_spec("sup", strategy::one_for_all, 1, 3600s, {probe("child1"), probe("child2")}));
  next_events(2);
  crash(*this, sup, "child1");
  next_events(4);
  crash(*this, sup, "child2");
  CHECK(next_events(2) == std::vector<std::string>{"stopped:child2", "stopped:child1"});
  CHECK(expect_down(sup) == ec::max_restart_intensity);
}

TEST_CASE_FIXTURE(fixture,
                  "one_for_all_other_child_fails_restart: a sibling failing to restart is "
                  "retried") {
  auto starts = std::make_shared<std::atomic<int>>(0);
  // child2's second start (its first restart) fails once.
  auto sup = start_supervisor(make_spec("sup", strategy::one_for_all, 3, 3600s,
                                        {probe("child1"), flaky(*this, "child2", starts, 1, 2)}));
  next_events(2);
  crash(*this, sup, "child1");
  CHECK(next_events(4)
        == std::vector<std::string>{"stopped:child1", "stopped:child2", "started:child1",
                                    "started:child2"});
  CHECK(starts->load() == 3);
  auto crashes = crashes_of(sup);
  REQUIRE(crashes.size() == 2);
  CHECK(crashes[1].child == "child2");
  CHECK(crashes[1].action == "restart_retried");
}

TEST_CASE_FIXTURE(fixture, "rest_for_one: the crashed child and the later ones restart") {
  auto sup = start_supervisor(make_spec("sup", strategy::rest_for_one, 2, 3600s,
                                        {probe("child1"), probe("child2"), probe("child3")}));
  next_events(3);
  auto child1 = handle_of(*this, sup, "child1");
  crash(*this, sup, "child2");
  CHECK(next_events(4)
        == std::vector<std::string>{"stopped:child2", "stopped:child3", "started:child2",
                                    "started:child3"});
  CHECK(handle_of(*this, sup, "child1") == child1);
}

TEST_CASE_FIXTURE(fixture, "rest_for_one_escalation: past the intensity all stop in reverse order") {
  auto sup = start_supervisor(make_spec("sup", strategy::rest_for_one, 1, 3600s,
                                        {probe("child1"), probe("child2"), probe("child3")}));
  next_events(3);
  crash(*this, sup, "child2");
  next_events(4);
  crash(*this, sup, "child2");
  CHECK(next_events(3)
        == std::vector<std::string>{"stopped:child2", "stopped:child3", "stopped:child1"});
  CHECK(expect_down(sup) == ec::max_restart_intensity);
}

TEST_CASE_FIXTURE(fixture,
                  "rest_for_one_other_child_fails_restart: a later child failing to restart is "
                  "retried") {
  auto starts = std::make_shared<std::atomic<int>>(0);
  auto sup = start_supervisor(make_spec("sup", strategy::rest_for_one, 3, 3600s,
                                        {probe("child1"), flaky(*this, "child2", starts, 1, 2)}));
  next_events(2);
  crash(*this, sup, "child1");
  CHECK(next_events(4)
        == std::vector<std::string>{"stopped:child1", "stopped:child2", "started:child1",
                                    "started:child2"});
}

TEST_CASE_FIXTURE(fixture, "multiple_restarts: a child whose restart fails twice comes back on the third") {
  auto starts = std::make_shared<std::atomic<int>>(0);
  auto sup = start_supervisor(
    make_spec("sup", strategy::one_for_one, 4, 3600s, {flaky(*this, "c", starts, 1, 3)}));
  expect_started("c");
  crash(*this, sup, "c");
  expect_stopped("c");
  expect_started("c");
  CHECK(starts->load() == 4);
  CHECK(children_of(sup).at(0).state == "running");
}

TEST_CASE_FIXTURE(fixture, "hanging_restart_loop: a child that never restarts ends the supervisor, not a loop") {
  auto starts = std::make_shared<std::atomic<int>>(0);
  auto sup = start_supervisor(
    make_spec("sup", strategy::one_for_one, 8, 3600s, {flaky(*this, "c", starts, 1, 1000000)}));
  expect_started("c");
  crash(*this, sup, "c");
  expect_stopped("c");
  CHECK(expect_down(sup) == ec::max_restart_intensity);
  CHECK(starts->load() == 9);
}

TEST_CASE_FIXTURE(fixture,
                  "do_not_save_child_specs_for_temporary_children: a terminated temporary "
                  "child is forgotten") {
  auto sup = start_supervisor(make_spec("sup", strategy::one_for_one, 2, 3600s, {probe("base")}));
  expect_started("base");
  ask<caf::actor>(sup, start_child_atom::value, probe("t", restart_type::temporary));
  expect_started("t");
  ask_ok(sup, terminate_child_atom::value, std::string{"t"});
  expect_stopped("t");
  CHECK(children_of(sup).size() == 1);
  CHECK(ask_error<caf::actor>(sup, restart_child_atom::value, std::string{"t"})
        == ec::no_such_child);
}

TEST_CASE_FIXTURE(fixture, "tree: killing a supervisor takes its whole subtree down") {
  auto leaf = supervisor_child(make_spec("leaf", strategy::one_for_one, 1, 3600s, {probe("w")}));
  REQUIRE(leaf);
  auto root = start_supervisor(make_spec("root", strategy::one_for_one, 1, 3600s, {*leaf}));
  expect_started("w");
  caf::anon_send_exit(root, caf::exit_reason::kill);
  CHECK(expect_stopped("w") == "kill");
  CHECK(expect_down(root) == caf::exit_reason::kill);
}
