#include "runtime/supervision/spec.hpp"

#include "tests/support/fixture.hpp"

using namespace std::chrono_literals;
using namespace troupe;
using namespace troupe::test;

namespace {

child_spec dummy(std::string name) {
  child_spec c;
  c.name = std::move(name);
  c.start = [](caf::actor_system&) -> caf::expected<caf::actor> { return caf::actor{}; };
  return c;
}

supervisor_spec valid() {
  return make_spec("s", strategy::one_for_one, 1, 5s, {dummy("a"), dummy("b")});
}

std::string problem(const supervisor_spec& s) {
  auto err = validate(s);
  return err ? render(err) : std::string{};
}

} // namespace

TEST_CASE("a sensible supervisor spec is accepted") {
  CHECK(problem(valid()).empty());
}

TEST_CASE("a supervisor spec with a zero period is refused") {
  auto s = valid();
  s.period = 0s;
  CHECK(problem(s) == "invalid_spec: supervisor 's': restart period must be positive");
}

TEST_CASE("a supervisor spec with a negative intensity is refused") {
  auto s = valid();
  s.intensity = -1;
  CHECK(problem(s) == "invalid_spec: supervisor 's': negative restart intensity -1");
}

TEST_CASE("a supervisor spec without children is refused") {
  auto s = valid();
  s.children.clear();
  CHECK(problem(s)
        == "invalid_spec: supervisor 's': no children (set dynamic for a supervisor whose "
           "children arrive at run time)");
  s.dynamic = true;
  CHECK(problem(s).empty());
}

TEST_CASE("a supervisor spec with duplicate child names is refused") {
  auto s = valid();
  s.children.push_back(dummy("a"));
  CHECK(problem(s) == "invalid_spec: supervisor 's': duplicate child name 'a'");
}

TEST_CASE("a supervisor spec without a name is refused") {
  auto s = valid();
  s.name.clear();
  CHECK(problem(s) == "invalid_spec: supervisor spec without a name");
}

TEST_CASE("a child without a start function is refused") {
  auto s = valid();
  s.children[1].start = nullptr;
  CHECK(problem(s) == "invalid_spec: supervisor 's': child 'b' has no start function");
}

TEST_CASE("a child with a zero shutdown timeout is refused") {
  auto s = valid();
  s.children[0].shutdown = shutdown_spec::after(0ms);
  CHECK(problem(s).find("shutdown timeout of zero") != std::string::npos);
}

TEST_CASE("a backoff whose max is below its min or whose jitter is out of range is refused") {
  auto s = valid();
  s.backoff = backoff_spec{100ms, 10ms, 0.1, 1s};
  CHECK(problem(s) == "invalid_spec: supervisor 's': backoff max is below backoff min");
  s.backoff = backoff_spec{10ms, 100ms, 1.5, 1s};
  CHECK(problem(s) == "invalid_spec: supervisor 's': backoff jitter must be in [0, 1)");
  s.backoff = backoff_spec{0ms, 100ms, 0.1, 1s};
  CHECK(problem(s) == "invalid_spec: supervisor 's': backoff min must be positive");
}

TEST_CASE("backoff delays double from min, stop at max and stay within the jitter") {
  backoff_spec b{10ms, 1s, 0.25, 5s};
  // Without jitter (unit random 0.5 means a factor of exactly 1).
  CHECK(backoff_delay(b, 0, 0.5) == caf::timespan{10ms});
  CHECK(backoff_delay(b, 1, 0.5) == caf::timespan{20ms});
  CHECK(backoff_delay(b, 6, 0.5) == caf::timespan{640ms});
  CHECK(backoff_delay(b, 7, 0.5) == caf::timespan{1s});
  CHECK(backoff_delay(b, 1000, 0.5) == caf::timespan{1s});
  // The jitter's extremes.
  CHECK(backoff_delay(b, 0, 0.0) == caf::timespan{7500us});
  CHECK(backoff_delay(b, 0, 0.999999) <= caf::timespan{12500us});
  CHECK(backoff_delay(b, 0, 0.999999) > caf::timespan{12490us});
  for (double r = 0.0; r < 1.0; r += 0.01) {
    auto d = backoff_delay(b, 3, r);
    CHECK(d >= caf::timespan{60ms});
    CHECK(d <= caf::timespan{100ms});
  }
}

TEST_CASE_FIXTURE(fixture, "spawn_supervisor refuses a nonsensical spec without spawning") {
  auto s = valid();
  s.intensity = -3;
  auto sup = spawn_supervisor(sys, s);
  REQUIRE(!sup);
  CHECK(sup.error() == ec::invalid_spec);
  auto nested = supervisor_child(make_spec("n", strategy::one_for_one, 1, 0s, {dummy("x")}));
  REQUIRE(!nested);
  CHECK(render(nested.error()) == "invalid_spec: supervisor 'n': restart period must be positive");
}
