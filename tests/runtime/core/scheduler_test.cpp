#include "runtime/core/scheduler.hpp"

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <functional>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

#include <caf/all.hpp>
#include <caf/scheduler/coordinator.hpp>
#include <doctest/doctest.h>

using namespace std::chrono_literals;

namespace {

using clock_type = std::chrono::steady_clock;
using go_atom = caf::atom_constant<caf::atom("go")>;

/// Two scheduler threads that, once idle, sleep for 10 s unless woken: a
/// job queued on a busy thread can only reach the other one by a wake-up.
struct sleepy_config : caf::actor_system_config {
  explicit sleepy_config(bool waking) {
    set("scheduler.max-threads", size_t{2});
    set("work-stealing.moderate-poll-attempts", size_t{0});
    set("work-stealing.relaxed-sleep-duration", caf::timespan{10s});
    if (waking)
      troupe::use_waking_scheduler(*this);
  }
};

/// What the actors of one trial saw.
struct trial {
  /// Set by each receiver when it runs.
  std::vector<std::shared_ptr<std::atomic<bool>>> ran;
  /// Set by the busy actor: every receiver ran while it was still busy.
  std::atomic<bool> all_ran_while_busy{false};
  std::atomic<bool> busy_started{false};
  /// The busy actor saw the other thread asleep before it began.
  std::atomic<bool> others_asleep{false};
  std::atomic<bool> busy_done{false};

  /// Told whenever one of the flags above is set.
  std::mutex lock;
  std::condition_variable changed;

  explicit trial(size_t receivers) {
    for (size_t i = 0; i < receivers; ++i)
      ran.push_back(std::make_shared<std::atomic<bool>>(false));
  }

  /// Sets `flag` and tells whoever waits.
  void set(std::atomic<bool>& flag) {
    {
      std::unique_lock<std::mutex> guard{lock};
      flag = true;
    }
    changed.notify_all();
  }

  /// Waits (bounded) until `done()` holds.
  template <class Predicate>
  bool wait(Predicate done, clock_type::duration limit) {
    std::unique_lock<std::mutex> guard{lock};
    return changed.wait_for(guard, limit, done);
  }

  bool all_ran() const {
    for (auto& r : ran)
      if (!*r)
        return false;
    return true;
  }
};

caf::behavior receiver(caf::event_based_actor*, trial* t, size_t i) {
  return {[t, i](go_atom) { t->set(*t->ran[i]); }};
}

/// On `go`, waits until the other thread sleeps (`others_asleep`), wakes
/// `wake` (from this scheduler thread) and then keeps its thread busy until
/// every receiver ran or 3 s passed.
caf::behavior busy(caf::event_based_actor* self, std::vector<caf::actor> wake, trial* t,
                   std::function<bool()> others_asleep) {
  return {[self, wake, t, others_asleep](go_atom) {
    t->others_asleep = others_asleep();
    for (auto& r : wake)
      self->send(r, go_atom::value);
    t->set(t->busy_started);
    auto until = clock_type::now() + 3s;
    while (clock_type::now() < until && !t->all_ran())
      std::this_thread::yield();
    t->all_ran_while_busy = t->all_ran();
    t->set(t->busy_done);
  }};
}

/// Waits (bounded) until at least `n` scheduler threads of `sys`, running
/// `Policy`, have been asleep (`waitdata.sleeping`, read under its lock) for
/// 5 ms on end: longer than a thread's last look for work before it waits,
/// so they are waiting.
template <class Policy>
bool asleep(caf::actor_system& sys, size_t n, clock_type::duration limit) {
  auto* sched = dynamic_cast<caf::scheduler::coordinator<Policy>*>(&sys.scheduler());
  if (sched == nullptr)
    return false;
  auto until = clock_type::now() + limit;
  auto since = clock_type::now();
  for (;;) {
    size_t sleeping = 0;
    for (size_t i = 0; i < sched->num_workers(); ++i) {
      auto& wait = sched->worker_by_id(i)->data().waitdata;
      std::unique_lock<std::mutex> guard{wait.lock};
      sleeping += wait.sleeping ? 1 : 0;
    }
    auto now = clock_type::now();
    if (sleeping < n)
      since = now;
    else if (now - since >= 5ms)
      return true;
    if (now >= until)
      return false;
    std::this_thread::yield();
  }
}

/// Runs one trial: a busy actor that wakes one receiver from its own thread
/// (`from_actor`), or receivers woken from this non-scheduler thread while
/// the busy actor holds its thread.
bool receivers_ran_while_busy(bool waking, bool from_actor) {
  // Before the actor system: its actors point to it until they are gone.
  trial t{from_actor ? 1u : 4u};
  sleepy_config cfg{waking};
  caf::actor_system sys{cfg};
  std::vector<caf::actor> receivers;
  for (size_t i = 0; i < t.ran.size(); ++i)
    receivers.push_back(sys.spawn(receiver, &t, i));
  auto* s = &sys;
  std::function<bool()> others_asleep = [s, waking] {
    return waking ? asleep<troupe::waking_stealing>(*s, 1, 5s)
                  : asleep<caf::policy::work_stealing>(*s, 1, 5s);
  };
  auto b = sys.spawn(busy, from_actor ? receivers : std::vector<caf::actor>{}, &t, others_asleep);
  caf::anon_send(b, go_atom::value);
  REQUIRE(t.wait([&] { return t.busy_started.load(); }, 10s));
  REQUIRE(t.others_asleep);
  if (!from_actor)
    for (auto& r : receivers)
      caf::anon_send(r, go_atom::value);
  REQUIRE(t.wait([&] { return t.busy_done.load(); }, 5s));
  bool result = t.all_ran_while_busy;
  // The receivers run at the latest once the busy actor is done.
  CHECK(t.wait([&] { return t.all_ran(); }, 5s));
  for (auto& r : receivers)
    caf::anon_send_exit(r, caf::exit_reason::user_shutdown);
  caf::anon_send_exit(b, caf::exit_reason::user_shutdown);
  return result;
}

} // namespace

TEST_CASE("an actor woken by a busy actor runs on the sleeping thread, not after the busy one") {
  CHECK(receivers_ran_while_busy(true, true));
}

TEST_CASE("under CAF's own work stealing that actor waits for the busy one") {
  // What the waking scheduler changes: the other thread sleeps on.
  CHECK_FALSE(receivers_ran_while_busy(false, true));
}

TEST_CASE("messages from outside the scheduler wake a sleeping thread when theirs is busy") {
  CHECK(receivers_ran_while_busy(true, false));
}

TEST_CASE("the waking scheduler counts its wake-ups") {
  trial t{1};
  sleepy_config cfg{true};
  caf::actor_system sys{cfg};
  auto r = sys.spawn(receiver, &t, size_t{0});
  auto* s = &sys;
  std::atomic<uint64_t> before{0};
  auto b = sys.spawn(busy, std::vector<caf::actor>{r}, &t, std::function<bool()>{[s, &before] {
                       auto ok = asleep<troupe::waking_stealing>(*s, 1, 5s);
                       before = troupe::scheduler_wakeups(*s);
                       return ok;
                     }});
  caf::anon_send(b, go_atom::value);
  REQUIRE(t.wait([&] { return t.busy_done.load(); }, 10s));
  REQUIRE(t.others_asleep);
  CHECK(t.all_ran_while_busy);
  CHECK(troupe::scheduler_wakeups(sys) > before.load());
  caf::anon_send_exit(r, caf::exit_reason::user_shutdown);
  caf::anon_send_exit(b, caf::exit_reason::user_shutdown);
}
