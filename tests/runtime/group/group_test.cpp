#include "runtime/group/group.hpp"

#include <atomic>
#include <mutex>
#include <future>
#include <set>

#include "tests/support/fixture.hpp"

using namespace std::chrono_literals;
using namespace troupe;
using namespace troupe::test;

namespace {

using hang_atom = caf::atom_constant<caf::atom("hang")>;
using done_atom = caf::atom_constant<caf::atom("done")>;
using slow_atom = caf::atom_constant<caf::atom("slow")>;

/// Doubles ints, names its worker for strings, throws on "poison".
group_spec doubling_group(size_t instances) {
  group_spec g;
  g.name = "doubler";
  g.instances = instances;
  g.intensity = 100;
  g.period = 60s;
  g.worker = [](caf::event_based_actor* self, size_t index) -> caf::behavior {
    return {
      [](int x) { return x * 2; },
      [index](const std::string& s) -> std::string {
        if (s == "poison")
          throw std::runtime_error("cannot digest poison");
        return s + "@" + std::to_string(index);
      },
      [self](hang_atom) { self->make_response_promise(); }, // never answers
    };
  };
  return g;
}

/// Sends `n` int requests 0..n-1 to `dest` at once and reports
/// `(done_atom, ok, errors)` to `observer` when every one was answered.
caf::actor drive(caf::actor_system& sys, caf::actor dest, int n, caf::actor observer,
                 std::shared_ptr<std::vector<int>> answers) {
  return sys.spawn([=](caf::event_based_actor* self) {
    auto ok = std::make_shared<int>(0);
    auto errors = std::make_shared<int>(0);
    auto finish = [=] {
      if (*ok + *errors == n)
        self->send(observer, done_atom::value, *ok, *errors);
    };
    for (int i = 0; i < n; ++i)
      self->request(dest, 30s, i).then(
        [=](int x) {
          (*answers)[i] = x;
          ++*ok;
          finish();
        },
        [=](caf::error& err) {
          if (getenv("TROUPE_DEBUG") && *errors < 5)
            MESSAGE("request " << i << " failed: " << render(err));
          ++*errors;
          finish();
        });
  });
}

/// Waits for a driver's `(done_atom, ok, errors)` and checks that every one
/// of its requests was answered, each with its number doubled.
void expect_all_doubled(fixture& f, const std::vector<int>& answers) {
  int ok = 0;
  f.self->receive([&](done_atom, int o, int) { ok = o; },
                  caf::after(30s) >> [] { FAIL("the driver did not finish"); });
  CHECK(ok == static_cast<int>(answers.size()));
  for (size_t i = 0; i < answers.size(); ++i)
    CHECK(answers[i] == static_cast<int>(i) * 2);
}

/// Waits until `pred` holds, polling the group at most every 10 ms, at most `limit`.
template <class Pred>
bool eventually(fixture& f, Pred pred, caf::timespan limit = 5s) {
  auto deadline = std::chrono::steady_clock::now() + limit;
  while (std::chrono::steady_clock::now() < deadline) {
    if (pred())
      return true;
    f.self->receive(caf::after(10ms) >> [] {});
  }
  return pred();
}

caf::actor start_group(fixture& f, group_spec spec) {
  auto g = spawn_group(f.sys, std::move(spec));
  REQUIRE_MESSAGE(g, render(g.error()));
  f.cleanup.push_back(*g);
  return *g;
}

} // namespace

TEST_CASE_FIXTURE(fixture, "a group answers requests through its workers in turn") {
  auto g = start_group(*this, doubling_group(2));
  CHECK(ask<int>(g, 21) == 42);
  std::set<std::string> seen;
  for (int i = 0; i < 10; ++i)
    seen.insert(ask<std::string>(g, std::string{"hi"}));
  CHECK(seen == std::set<std::string>{"hi@0", "hi@1"});
  auto st = ask<group_status>(g, status_atom::value);
  CHECK(st.state == "up");
  CHECK(st.live_workers == 2);
  CHECK(st.completed == 11);
  CHECK(st.in_flight == 0);
}

TEST_CASE_FIXTURE(fixture, "key_hash routing keeps every message of a key on one worker") {
  auto spec = doubling_group(4);
  spec.route = routing::key_hash;
  spec.key = [](const caf::message& m) -> uint64_t {
    return m.match_element<std::string>(0) ? std::hash<std::string>{}(m.get_as<std::string>(0))
                                           : 0;
  };
  auto g = start_group(*this, spec);
  for (auto user : {"alice", "bob", "carol", "dave", "erin"}) {
    auto first = ask<std::string>(g, std::string{user});
    for (int i = 0; i < 5; ++i)
      CHECK(ask<std::string>(g, std::string{user}) == first);
  }
}

TEST_CASE_FIXTURE(fixture,
                  "no message is lost when a worker crashes on every 100th message, and "
                  "there are no more redeliveries than crashes") {
  constexpr int n = 10000;
  auto invocations = std::make_shared<std::atomic<int>>(0);
  auto crashes = std::make_shared<std::atomic<int>>(0);
  auto successes = std::make_shared<std::vector<std::atomic<int>>>(n);
  auto crashed_once = std::make_shared<std::set<int>>();
  auto mtx = std::make_shared<std::mutex>();
  group_spec spec;
  spec.name = "flaky";
  spec.instances = 2;
  spec.intensity = 1000;
  spec.period = 60s;
  spec.max_in_flight = n;
  spec.worker = [=](caf::event_based_actor*, size_t) -> caf::behavior {
    return {[=](int x) {
      ++*invocations;
      if (x % 100 == 0) {
        std::lock_guard<std::mutex> guard{*mtx};
        if (crashed_once->insert(x).second) {
          ++*crashes;
          throw std::runtime_error("crash on " + std::to_string(x));
        }
      }
      ++(*successes)[x];
      return x * 2;
    }};
  };
  auto g = start_group(*this, spec);
  auto answers = std::make_shared<std::vector<int>>(n, -1);
  drive(sys, g, n, caf::actor{self}, answers);
  int ok = 0;
  int errors = 0;
  self->receive([&](done_atom, int o, int e) {
    ok = o;
    errors = e;
  }, caf::after(60s) >> [] { FAIL("the driver did not finish"); });
  CHECK(ok == n);
  CHECK(errors == 0);
  for (int i = 0; i < n; ++i) {
    REQUIRE((*answers)[i] == i * 2);
    REQUIRE((*successes)[i].load() == 1);
  }
  CHECK(crashes->load() == 100);
  CHECK(invocations->load() == n + crashes->load());
  auto st = ask<group_status>(g, status_atom::value);
  CHECK(st.redelivered == 100);
  CHECK(st.redelivered <= static_cast<uint64_t>(crashes->load()));
  CHECK(st.dead_letters == 0);
  CHECK(st.completed == static_cast<uint64_t>(n));
  CHECK(st.worker_restarts == 100);
  CHECK(st.in_flight == 0);
}

TEST_CASE_FIXTURE(fixture, "a poison message reaches dead letters with its reason") {
  auto spec = doubling_group(1);
  spec.poison_after = 3;
  auto g = start_group(*this, spec);
  auto err = ask_error<std::string>(g, std::string{"poison"});
  CHECK(err == ec::poison_message);
  CHECK(render(err)
        == "poison_message: doubler, poison message: crashed its worker 3 times, last: "
           "runtime_error: cannot digest poison");
  auto letters = ask<std::vector<dead_letter>>(g, dead_letters_atom::value);
  REQUIRE(letters.size() == 1);
  CHECK(letters[0].group == "doubler");
  CHECK(letters[0].crashes == 3);
  CHECK(letters[0].content.match_element<std::string>(0));
  CHECK(letters[0].content.get_as<std::string>(0) == "poison");
  // The group keeps serving.
  CHECK(ask<int>(g, 5) == 10);
  auto st = ask<group_status>(g, status_atom::value);
  CHECK(st.dead_letters == 1);
  CHECK(st.redelivered == 2);
}

TEST_CASE_FIXTURE(fixture, "dead letters also go to the group's dead-letter actor") {
  auto spec = doubling_group(1);
  spec.poison_after = 1;
  spec.dead_letters = caf::actor{self};
  auto g = start_group(*this, spec);
  ask_error<std::string>(g, std::string{"poison"});
  bool got = false;
  self->receive([&](dead_letter& d) {
    got = true;
    CHECK(d.reason.find("cannot digest poison") != std::string::npos);
  }, caf::after(event_timeout) >> [] {});
  CHECK(got);
}

TEST_CASE_FIXTURE(fixture,
                  "a group answers with its fallback while down and normally after it "
                  "recovers") {
  auto spec = doubling_group(1);
  spec.intensity = 0;
  spec.poison_after = 5;
  spec.restart_delay = 300ms;
  spec.fallback = [](const caf::message&) -> caf::expected<caf::message> {
    return caf::make_message(std::string{"trending (degraded)"});
  };
  auto g = start_group(*this, spec);
  CHECK(ask<std::string>(g, std::string{"a"}) == "a@0");
  // A crash with intensity 0: the supervisor gives up at once.
  CHECK(ask<std::string>(g, std::string{"poison"}) == "trending (degraded)");
  CHECK(ask<group_status>(g, status_atom::value).state == "down");
  CHECK(ask<std::string>(g, std::string{"b"}) == "trending (degraded)");
  CHECK(eventually(*this, [&] { return ask<group_status>(g, status_atom::value).state == "up"; }));
  CHECK(ask<std::string>(g, std::string{"c"}) == "c@0");
  auto st = ask<group_status>(g, status_atom::value);
  CHECK(st.group_restarts == 1);
  CHECK(st.fallbacks == 2);
}

TEST_CASE_FIXTURE(fixture, "a group without a fallback answers group_down while down") {
  auto spec = doubling_group(1);
  spec.intensity = 0;
  spec.restart_delay = 10s;
  auto g = start_group(*this, spec);
  CHECK(ask_error<std::string>(g, std::string{"poison"}) == ec::group_down);
  CHECK(ask_error<int>(g, 1) == ec::group_down);
}

TEST_CASE_FIXTURE(fixture, "a saturated group answers group_saturated instead of queueing") {
  auto spec = doubling_group(1);
  spec.max_in_flight = 10;
  spec.worker_window = 2;
  auto g = start_group(*this, spec);
  constexpr int n = 2000;
  auto answers = std::make_shared<std::vector<int>>(n, -1);
  drive(sys, g, n, caf::actor{self}, answers);
  int ok = 0;
  int errors = 0;
  self->receive([&](done_atom, int o, int e) {
    ok = o;
    errors = e;
  }, caf::after(30s) >> [] { FAIL("the driver did not finish"); });
  CHECK(ok + errors == n);
  CHECK(ok >= 10);
  CHECK(errors > 0);
  auto st = ask<group_status>(g, status_atom::value);
  CHECK(st.rejected == static_cast<uint64_t>(errors));
  CHECK(st.in_flight == 0);
  CHECK(ask<int>(g, 1) == 2); // idle again, it takes requests
}

TEST_CASE_FIXTURE(fixture, "a request no worker answers in time gets the fallback") {
  auto spec = doubling_group(1);
  spec.call_timeout = 200ms;
  spec.fallback = [](const caf::message&) -> caf::expected<caf::message> {
    return caf::make_message(std::string{"fallback"});
  };
  auto g = start_group(*this, spec);
  CHECK(ask<std::string>(g, hang_atom::value) == "fallback");
  CHECK(ask<int>(g, 4) == 8);
}

TEST_CASE_FIXTURE(fixture,
                  "a request kept by its handler does not hold up the messages batched behind it") {
  auto spec = doubling_group(1);
  spec.call_timeout = 3s;
  spec.worker_window = 1000;
  spec.detached = true; // its first message holds it until the test opens the gate
  auto gate = std::make_shared<std::promise<void>>();
  std::shared_future<void> opened = gate->get_future().share();
  spec.worker = [opened](caf::event_based_actor* self, size_t) -> caf::behavior {
    return {
      [opened](slow_atom) {
        opened.wait_for(30s);
        return 0;
      },
      [](int x) { return x * 2; },
      [self](hang_atom) { self->make_response_promise(); }, // never answers
    };
  };
  spec.fallback = [](const caf::message&) -> caf::expected<caf::message> {
    return caf::make_message(std::string{"fallback"});
  };
  auto g = start_group(*this, spec);
  // While the worker is held by its first message, one actor sends the kept
  // request and 500 more: the router hands them over in batches
  // (routed_batch), the kept request first. Once all are handed over the
  // worker goes on; each handler runs on its own message and is
  // acknowledged, the kept one is not, and ends at the call timeout with the
  // fallback.
  auto slow = self->request(g, 10s, slow_atom::value);
  auto answers = std::make_shared<std::vector<int>>(500, -1);
  auto kept = std::make_shared<std::string>();
  auto observer = caf::actor{self};
  sys.spawn([=](caf::event_based_actor* d) {
    auto ok = std::make_shared<int>(0);
    auto done = std::make_shared<int>(0);
    auto finish = [=] {
      if (++*done == 501)
        d->send(observer, done_atom::value, *ok, 0);
    };
    d->request(g, 10s, hang_atom::value).then(
      [=](std::string& x) {
        *kept = x;
        finish();
      },
      [=](caf::error&) { finish(); });
    for (int i = 0; i < 500; ++i)
      d->request(g, 10s, i).then(
        [=](int x) {
          (*answers)[i] = x;
          ++*ok;
          finish();
        },
        [=](caf::error&) { finish(); });
  });
  CHECK(eventually(*this, [&] {
    auto st = ask<group_status>(g, status_atom::value);
    return st.in_flight == 502 && st.queued == 0;
  }));
  gate->set_value();
  expect_all_doubled(*this, *answers);
  CHECK(*kept == "fallback");
  slow.receive([](int) {}, [](caf::error& err) { FAIL("the slow request failed: " << render(err)); });
}

TEST_CASE_FIXTURE(fixture, "messages queued at a killed worker move to its replacement") {
  auto spec = doubling_group(1);
  auto g = start_group(*this, spec);
  auto answers = std::make_shared<std::vector<int>>(500, -1);
  drive(sys, g, 500, caf::actor{self}, answers);
  auto sup = ask<caf::actor>(g, supervisor_atom::value);
  auto kids = children_of(sup);
  REQUIRE(kids.size() == 1);
  caf::anon_send_exit(kids[0].handle, caf::exit_reason::kill);
  expect_all_doubled(*this, *answers);
}

TEST_CASE_FIXTURE(fixture, "stopping a group answers its pending requests and stops its workers") {
  auto spec = doubling_group(2);
  spec.call_timeout = 10s;
  auto g = start_group(*this, spec);
  auto sup = ask<caf::actor>(g, supervisor_atom::value);
  self->monitor(g);
  self->monitor(sup);
  auto pending = self->request(g, 10s, hang_atom::value);
  // The request reaches the router before the exit signal (same sender).
  self->send_exit(g, caf::exit_reason::user_shutdown);
  caf::error answer;
  pending.receive([](std::string&) { FAIL("no value expected"); },
                  [&](caf::error& err) { answer = err; });
  CHECK(answer == ec::group_stopping);
  CHECK(expect_down(sup) == caf::exit_reason::user_shutdown);
  CHECK(expect_down(g) == caf::exit_reason::user_shutdown);
}

TEST_CASE("a nonsensical group spec is refused with an error naming the problem") {
  auto spec = doubling_group(1);
  auto problem = [](const group_spec& s) {
    auto err = validate(s);
    return err ? render(err) : std::string{};
  };
  CHECK(problem(spec).empty());
  auto s = spec;
  s.instances = 0;
  CHECK(problem(s) == "invalid_spec: group 'doubler': zero instances");
  s = spec;
  s.worker = nullptr;
  CHECK(problem(s) == "invalid_spec: group 'doubler': no worker function");
  s = spec;
  s.route = routing::key_hash;
  CHECK(problem(s) == "invalid_spec: group 'doubler': key_hash routing without a key function");
  s = spec;
  s.worker_window = 0;
  CHECK(problem(s) == "invalid_spec: group 'doubler': worker_window must be at least 1");
  s = spec;
  s.name.clear();
  CHECK(problem(s) == "invalid_spec: group spec without a name");
}

TEST_CASE_FIXTURE(fixture, "a group answers an envelope from a cluster router with a reply") {
  auto g = start_group(*this, doubling_group(1));
  auto r = ask<reply>(g, envelope{caf::make_message(21)});
  REQUIRE(r.content.match_element<int>(0));
  CHECK(r.content.get_as<int>(0) == 42);
  // Errors stay errors, so a cluster router can tell them from answers.
  auto spec = doubling_group(1);
  spec.poison_after = 1;
  auto g2 = start_group(*this, spec);
  CHECK(ask_error<reply>(g2, envelope{caf::make_message(std::string{"poison"})})
        == ec::poison_message);
}

TEST_CASE_FIXTURE(fixture,
                  "a worker that answers later takes other messages meanwhile, and its "
                  "answers and errors reach the caller, in a reply when they came in an "
                  "envelope") {
  using later_atom = caf::atom_constant<caf::atom("later")>;
  using release_atom = caf::atom_constant<caf::atom("release")>;
  group_spec g;
  g.name = "deferring";
  g.instances = 1;
  // `later` requests wait until `release`, which answers them all (x * 10,
  // or an error for a negative x) and itself with how many it answered.
  g.worker = [](caf::event_based_actor* self, size_t) -> caf::behavior {
    auto held = std::make_shared<std::vector<std::pair<int, answer_later>>>();
    return {
      [self, held](later_atom, int x) -> caf::result<int> {
        held->emplace_back(x, answer_later::take(self));
        return caf::delegated<int>{};
      },
      [held](release_atom) -> int {
        auto n = static_cast<int>(held->size());
        for (auto& [x, answer] : *held) {
          if (x < 0)
            answer.deliver(caf::make_error(ec::invalid_argument, "negative"));
          else
            answer.deliver(x * 10);
        }
        held->clear();
        return n;
      },
    };
  };
  auto group = start_group(*this, g);
  auto answers = std::make_shared<std::vector<std::string>>();
  auto mtx = std::make_shared<std::mutex>();
  auto note = [=](std::string x) {
    std::lock_guard<std::mutex> guard{*mtx};
    answers->push_back(std::move(x));
  };
  auto caller = sys.spawn([=](caf::event_based_actor* c) {
    for (int x : {1, 2, -3})
      c->request(group, 10s, later_atom::value, x)
        .then([=](int y) { note(std::to_string(y)); },
              [=](caf::error& err) { note(render(err)); });
    c->request(group, 10s, envelope{caf::make_message(later_atom::value, 7)})
      .then(
        [=](reply& r) {
          note(r.content.match_elements<int>() ? "reply " + std::to_string(r.content.get_as<int>(0))
                                               : "reply of another type");
        },
        [=](caf::error& err) { note("envelope: " + render(err)); });
  });
  cleanup.push_back(caller);
  // The worker answers `release` while the four requests wait for it.
  int released = 0;
  for (auto deadline = std::chrono::steady_clock::now() + 5s;
       released < 4 && std::chrono::steady_clock::now() < deadline;)
    released += ask<int>(group, release_atom::value);
  CHECK(released == 4);
  CHECK(eventually(*this, [&] {
    std::lock_guard<std::mutex> guard{*mtx};
    return answers->size() == 4;
  }));
  std::lock_guard<std::mutex> guard{*mtx};
  std::sort(answers->begin(), answers->end());
  CHECK(*answers
        == std::vector<std::string>{"10", "20", "invalid_argument: negative", "reply 70"});
}
