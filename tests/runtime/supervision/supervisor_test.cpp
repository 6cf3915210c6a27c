#include "runtime/supervision/supervisor.hpp"

#include <algorithm>

#include "tests/support/fixture.hpp"

using namespace std::chrono_literals;
using namespace troupe;
using namespace troupe::test;

namespace {

const std::vector<std::string> abc = {"a", "b", "c"};

supervisor_spec three_probes(fixture& f, strategy s, int intensity = 5) {
  return make_spec("sup", s, intensity, 10s, {f.probe("a"), f.probe("b"), f.probe("c")});
}

caf::actor handle_of(fixture& f, const caf::actor& sup, const std::string& name) {
  for (auto& c : f.children_of(sup))
    if (c.name == name)
      return c.handle;
  FAIL("no child named " << name);
  return nullptr;
}

} // namespace

TEST_CASE_FIXTURE(fixture, "a supervisor starts its children in order") {
  auto sup = start_supervisor(three_probes(*this, strategy::one_for_one));
  CHECK(next_events(3) == std::vector<std::string>{"started:a", "started:b", "started:c"});
  auto kids = children_of(sup);
  REQUIRE(kids.size() == 3);
  for (auto& k : kids) {
    CHECK(k.state == "running");
    CHECK(k.handle);
  }
}

TEST_CASE_FIXTURE(fixture, "a one_for_one supervisor restarts only the crashed child") {
  auto sup = start_supervisor(three_probes(*this, strategy::one_for_one));
  next_events(3);
  auto b = handle_of(*this, sup, "b");
  caf::anon_send(b, crash_atom::value);
  CHECK(expect_stopped("b") == "runtime_error: crash requested");
  auto b2 = expect_started("b");
  CHECK(b2 != b);
  expect_no_event();
  CHECK(handle_of(*this, sup, "b") == b2);
  CHECK(ask<std::string>(b2, ping_atom::value) == "b");
}

TEST_CASE_FIXTURE(fixture,
                  "a one_for_all supervisor stops the siblings in reverse order and "
                  "restarts all in start order") {
  auto sup = start_supervisor(three_probes(*this, strategy::one_for_all));
  next_events(3);
  caf::anon_send(handle_of(*this, sup, "b"), crash_atom::value);
  CHECK(next_events(6)
        == std::vector<std::string>{"stopped:b", "stopped:c", "stopped:a", "started:a",
                                    "started:b", "started:c"});
  expect_no_event();
}

TEST_CASE_FIXTURE(fixture,
                  "a rest_for_one supervisor restarts the crashed child and the ones "
                  "started after it, in order") {
  auto sup = start_supervisor(three_probes(*this, strategy::rest_for_one));
  next_events(3);
  auto a = handle_of(*this, sup, "a");
  caf::anon_send(handle_of(*this, sup, "b"), crash_atom::value);
  CHECK(next_events(4)
        == std::vector<std::string>{"stopped:b", "stopped:c", "started:b", "started:c"});
  expect_no_event();
  CHECK(handle_of(*this, sup, "a") == a);
}

TEST_CASE_FIXTURE(fixture,
                  "a supervisor past its restart intensity stops its children in reverse "
                  "order and exits with max_restart_intensity") {
  auto sup = start_supervisor(make_spec("sup", strategy::one_for_one, 2, 10s,
                                        {probe("a"), probe("b"), probe("c")}));
  next_events(3);
  for (int i = 0; i < 2; ++i) {
    caf::anon_send(handle_of(*this, sup, "a"), crash_atom::value);
    expect_stopped("a");
    expect_started("a");
  }
  caf::anon_send(handle_of(*this, sup, "a"), crash_atom::value);
  CHECK(next_events(3) == std::vector<std::string>{"stopped:a", "stopped:c", "stopped:b"});
  auto reason = expect_down(sup);
  CHECK(reason == ec::max_restart_intensity);
  CHECK(render(reason) == "max_restart_intensity: sup");
}

TEST_CASE_FIXTURE(fixture, "restarts older than the period do not count towards the intensity") {
  auto sup = start_supervisor(
    make_spec("sup", strategy::one_for_one, 1, 200ms, {probe("a")}));
  expect_started("a");
  for (int i = 0; i < 3; ++i) {
    // One restart per period never exceeds an intensity of one.
    self->receive(caf::after(250ms) >> [] {});
    caf::anon_send(handle_of(*this, sup, "a"), crash_atom::value);
    expect_stopped("a");
    expect_started("a");
  }
  CHECK(children_of(sup).at(0).restarts == 3);
}

TEST_CASE_FIXTURE(fixture, "intensity escalation climbs a three-level tree to the root") {
  // root -> middle -> leaf -> worker; leaf allows one restart, the others none.
  auto leaf = supervisor_child(make_spec("leaf", strategy::one_for_one, 1, 10s, {probe("w")}));
  REQUIRE(leaf);
  auto middle = supervisor_child(
    make_spec("middle", strategy::one_for_one, 0, 10s, {*leaf, probe("m")}));
  REQUIRE(middle);
  auto root = start_supervisor(
    make_spec("root", strategy::one_for_one, 0, 10s, {probe("r"), *middle}));
  // w is started by the leaf supervisor, m by the middle one: two actors, so
  // their order is not defined.
  auto started = next_events(3);
  CHECK(started[0] == "started:r");
  std::sort(started.begin(), started.end());
  CHECK(started == std::vector<std::string>{"started:m", "started:r", "started:w"});
  auto leaf_sup = handle_of(*this, handle_of(*this, root, "middle"), "leaf");
  caf::anon_send(handle_of(*this, leaf_sup, "w"), crash_atom::value);
  expect_stopped("w");
  expect_started("w");
  caf::anon_send(handle_of(*this, leaf_sup, "w"), crash_atom::value);
  // leaf gives up, middle may not restart it (intensity 0): middle stops m,
  // root may not restart middle either: root stops r and exits.
  CHECK(next_events(3) == std::vector<std::string>{"stopped:w", "stopped:m", "stopped:r"});
  CHECK(expect_down(root) == ec::max_restart_intensity);
}

TEST_CASE_FIXTURE(fixture, "a parent restarts a child supervisor that gave up") {
  auto leaf = supervisor_child(make_spec("leaf", strategy::one_for_one, 0, 10s, {probe("w")}));
  REQUIRE(leaf);
  auto root = start_supervisor(make_spec("root", strategy::one_for_one, 3, 10s, {*leaf}));
  expect_started("w");
  auto leaf1 = handle_of(*this, root, "leaf");
  caf::anon_send(handle_of(*this, leaf1, "w"), crash_atom::value);
  expect_stopped("w");
  expect_started("w");
  auto leaf2 = handle_of(*this, root, "leaf");
  CHECK(leaf2 != leaf1);
  auto crashes = crashes_of(root);
  REQUIRE(crashes.size() == 1);
  CHECK(crashes[0].child == "leaf");
  CHECK(crashes[0].reason == "max_restart_intensity: leaf");
  CHECK(crashes[0].action == "restarted");
}

TEST_CASE_FIXTURE(fixture, "orderly shutdown stops children in reverse start order") {
  auto sup = start_supervisor(three_probes(*this, strategy::one_for_one));
  next_events(3);
  caf::anon_send_exit(sup, caf::exit_reason::user_shutdown);
  CHECK(next_events(3) == std::vector<std::string>{"stopped:c", "stopped:b", "stopped:a"});
  CHECK(expect_down(sup) == caf::exit_reason::user_shutdown);
}

TEST_CASE_FIXTURE(fixture, "a child that ignores shutdown is killed after its shutdown timeout") {
  auto sup = start_supervisor(make_spec(
    "sup", strategy::one_for_one, 1, 10s,
    {probe("a"),
     probe("deaf", restart_type::permanent, shutdown_spec::after(300ms), on_shutdown::ignore)}));
  next_events(2);
  auto t0 = std::chrono::steady_clock::now();
  caf::anon_send_exit(sup, caf::exit_reason::user_shutdown);
  // The kill is reported from an exit hook, so its event may trail a's.
  std::vector<std::string> stops;
  for (int i = 0; i < 2; ++i) {
    auto e = next_event();
    stops.push_back(e.kind + ":" + e.name + ":" + e.reason);
  }
  std::sort(stops.begin(), stops.end());
  CHECK(stops == std::vector<std::string>{"stopped:a:user_shutdown", "stopped:deaf:kill"});
  CHECK(expect_down(sup) == caf::exit_reason::user_shutdown);
  auto waited = std::chrono::steady_clock::now() - t0;
  CHECK(waited >= 300ms);
  CHECK(waited < 3s);
}

TEST_CASE_FIXTURE(fixture, "a brutal_kill child is killed without being asked") {
  auto sup = start_supervisor(make_spec(
    "sup", strategy::one_for_one, 1, 10s,
    {probe("a", restart_type::permanent, shutdown_spec::kill(), on_shutdown::ignore)}));
  expect_started("a");
  auto t0 = std::chrono::steady_clock::now();
  caf::anon_send_exit(sup, caf::exit_reason::user_shutdown);
  CHECK(expect_stopped("a") == "kill");
  CHECK(std::chrono::steady_clock::now() - t0 < 1s);
  expect_down(sup);
}

TEST_CASE_FIXTURE(fixture, "a permanent child is restarted even after a normal exit") {
  auto sup = start_supervisor(make_spec("sup", strategy::one_for_one, 3, 10s, {probe("a")}));
  expect_started("a");
  caf::anon_send(handle_of(*this, sup, "a"), quit_atom::value, caf::error{});
  CHECK(expect_stopped("a") == "normal");
  expect_started("a");
}

TEST_CASE_FIXTURE(fixture,
                  "a transient child is restarted after a crash but not after a normal exit") {
  auto sup = start_supervisor(
    make_spec("sup", strategy::one_for_one, 3, 10s, {probe("a", restart_type::transient)}));
  expect_started("a");
  caf::anon_send(handle_of(*this, sup, "a"), crash_atom::value);
  expect_stopped("a");
  expect_started("a");
  caf::anon_send(handle_of(*this, sup, "a"), quit_atom::value,
                 caf::error{caf::exit_reason::user_shutdown});
  expect_stopped("a");
  expect_no_event(200ms);
  auto kids = children_of(sup);
  REQUIRE(kids.size() == 1);
  CHECK(kids[0].state == "terminated");
}

TEST_CASE_FIXTURE(fixture, "a temporary child is never restarted and its spec is removed") {
  auto sup = start_supervisor(make_spec(
    "sup", strategy::one_for_one, 3, 10s, {probe("a"), probe("t", restart_type::temporary)}));
  next_events(2);
  caf::anon_send(handle_of(*this, sup, "t"), crash_atom::value);
  expect_stopped("t");
  expect_no_event(200ms);
  auto kids = children_of(sup);
  REQUIRE(kids.size() == 1);
  CHECK(kids[0].name == "a");
  auto crashes = crashes_of(sup);
  REQUIRE(crashes.size() == 1);
  CHECK(crashes[0].action == "removed");
}

TEST_CASE_FIXTURE(fixture,
                  "a thrown exception, a returned error and a kill each count as crashes") {
  auto sup = start_supervisor(make_spec("sup", strategy::one_for_one, 10, 10s, {probe("a")}));
  expect_started("a");
  caf::anon_send(handle_of(*this, sup, "a"), crash_atom::value);
  expect_stopped("a");
  expect_started("a");
  caf::anon_send(handle_of(*this, sup, "a"), quit_atom::value,
                 caf::make_error(caf::sec::runtime_error, std::string{"disk full"}));
  expect_stopped("a");
  expect_started("a");
  caf::anon_send_exit(handle_of(*this, sup, "a"), caf::exit_reason::kill);
  expect_stopped("a");
  expect_started("a");
  auto crashes = crashes_of(sup);
  REQUIRE(crashes.size() == 3);
  CHECK(crashes[0].reason == "runtime_error: crash requested");
  CHECK(crashes[1].reason == "runtime_error: disk full");
  CHECK(crashes[2].reason == "kill");
  for (auto& c : crashes) {
    CHECK(c.child == "a");
    CHECK(c.action == "restarted");
    CHECK(c.when_ms > 0);
  }
  CHECK(children_of(sup).at(0).restarts == 3);
}

TEST_CASE_FIXTURE(fixture, "the crash history is bounded") {
  auto spec = make_spec("sup", strategy::one_for_one, 100, 10s, {probe("a")});
  spec.crash_history = 4;
  auto sup = start_supervisor(spec);
  expect_started("a");
  for (int i = 0; i < 10; ++i) {
    caf::anon_send(handle_of(*this, sup, "a"), crash_atom::value);
    expect_stopped("a");
    expect_started("a");
  }
  CHECK(crashes_of(sup).size() == 4);
}

TEST_CASE_FIXTURE(fixture, "backoff delays each restart within its bounds and grows") {
  auto spec = make_spec("sup", strategy::one_for_one, 100, 60s, {probe("a")});
  spec.backoff = backoff_spec{50ms, 200ms, 0.2, 10s};
  auto sup = start_supervisor(spec);
  expect_started("a");
  std::vector<caf::timespan> delays;
  for (int i = 0; i < 4; ++i) {
    caf::anon_send(handle_of(*this, sup, "a"), crash_atom::value);
    expect_stopped("a");
    auto t0 = std::chrono::steady_clock::now();
    expect_started("a");
    delays.push_back(std::chrono::steady_clock::now() - t0);
  }
  // Expected: 50, 100, 200, 200 ms, each within +-20 % (plus scheduling slack above).
  CHECK(delays[0] >= 40ms);
  CHECK(delays[0] < 150ms);
  CHECK(delays[1] >= 80ms);
  CHECK(delays[2] >= 160ms);
  CHECK(delays[3] >= 160ms);
  CHECK(delays[3] < 500ms);
  auto crashes = crashes_of(sup);
  CHECK(crashes.back().action == "restart_delayed");
}

TEST_CASE_FIXTURE(fixture,
                  "a start function that fails at startup stops the started children and "
                  "the supervisor exits with failed_to_start_child") {
  child_spec bad;
  bad.name = "bad";
  bad.start = [](caf::actor_system&) -> caf::expected<caf::actor> {
    return caf::make_error(caf::sec::runtime_error, std::string{"no model file"});
  };
  auto sup = start_supervisor(
    make_spec("sup", strategy::one_for_one, 3, 10s, {probe("a"), bad, probe("c")}));
  expect_started("a");
  expect_stopped("a");
  auto reason = expect_down(sup);
  CHECK(reason == ec::failed_to_start_child);
  CHECK(render(reason) == "failed_to_start_child: sup, bad, runtime_error: no model file");
  expect_no_event();
}

TEST_CASE_FIXTURE(fixture,
                  "a start function that fails on restart counts as a crash and escalates") {
  auto attempts = std::make_shared<std::atomic<int>>(0);
  auto ok = probe("flaky");
  child_spec flaky = ok;
  flaky.start = [attempts, ok](caf::actor_system& sys) -> caf::expected<caf::actor> {
    if ((*attempts)++ == 0)
      return ok.start(sys);
    throw std::runtime_error("cannot start twice");
  };
  auto sup = start_supervisor(make_spec("sup", strategy::one_for_one, 3, 10s, {flaky}));
  auto first = expect_started("flaky");
  caf::anon_send(first, crash_atom::value);
  expect_stopped("flaky");
  CHECK(expect_down(sup) == ec::max_restart_intensity);
  auto n = attempts->load();
  CHECK(n == 4); // the start plus three failing restarts within the intensity
}

TEST_CASE_FIXTURE(fixture, "every request is answered while a slow shutdown job runs") {
  auto sup = start_supervisor(make_spec(
    "sup", strategy::one_for_all, 5, 10s,
    {probe("a"),
     probe("slow", restart_type::permanent, shutdown_spec::after(300ms), on_shutdown::ignore),
     probe("c")}));
  next_events(3);
  caf::anon_send(handle_of(*this, sup, "c"), crash_atom::value);
  // While "slow" is being stopped, which_children still answers.
  auto kids = children_of(sup);
  CHECK(kids.size() == 3);
  CHECK(next_events(6)
        == std::vector<std::string>{"stopped:c", "stopped:slow", "stopped:a", "started:a",
                                    "started:slow", "started:c"});
}
