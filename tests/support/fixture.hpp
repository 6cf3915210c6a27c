#pragma once

// The fixture every runtime test uses: a real actor system with Troupe's
// types registered, a scoped actor that receives the events of probe
// children, and bounded waits (no sleeps).

#include <chrono>
#include <string>
#include <vector>

#include <caf/all.hpp>
#include <doctest/doctest.h>

#include "runtime/core/error.hpp"
#include "runtime/core/messages.hpp"
#include "runtime/core/types.hpp"
#include "runtime/supervision/spec.hpp"
#include "runtime/supervision/supervisor.hpp"

namespace troupe::test {

// -- test-only atoms -----------------------------------------------------------

/// `(started_atom, name, handle)`: a probe child started.
using started_atom = caf::atom_constant<caf::atom("started")>;
/// `(stopped_atom, name, reason)`: a probe child ended.
using stopped_atom = caf::atom_constant<caf::atom("stopped")>;
/// `(crash_atom)`: a probe child throws.
using crash_atom = caf::atom_constant<caf::atom("crash")>;
/// `(quit_atom, reason)`: a probe child quits with that error (or normally for none).
using quit_atom = caf::atom_constant<caf::atom("quit")>;
/// `(ping_atom) -> name`.
using ping_atom = caf::atom_constant<caf::atom("ping")>;

/// How long any single expected event may take before a test fails.
constexpr auto event_timeout = std::chrono::seconds(5);

struct test_config : caf::actor_system_config {
  test_config() {
    register_types(*this);
    set("scheduler.max-threads", 4);
    use_waking_scheduler(*this);
  }
};

/// How a probe child reacts to its supervisor's `user_shutdown`.
enum class on_shutdown {
  /// Exits at once (it does not trap exits).
  exit,
  /// Traps the signal and ignores it: only a kill ends it.
  ignore,
};

/// An event a probe reported.
struct event {
  std::string kind; // "started" or "stopped"
  std::string name;
  std::string reason; // for "stopped"
  caf::actor handle;  // for "started"
};

struct fixture {
  test_config cfg;
  caf::actor_system sys{cfg};
  caf::scoped_actor self{sys};

  ~fixture() {
    // Leave nothing running: ~actor_system waits for every actor.
    for (auto& a : cleanup)
      caf::anon_send_exit(a, caf::exit_reason::kill);
  }

  std::vector<caf::actor> cleanup;
  std::vector<caf::down_msg> other_downs;

  /// A child spec whose instances report `started` and `stopped` to this
  /// test, answer `ping` with their name, throw on `crash` and quit on `quit`.
  child_spec probe(std::string name, restart_type rt = restart_type::permanent,
                   shutdown_spec sd = shutdown_spec::after(std::chrono::seconds(1)),
                   on_shutdown mode = on_shutdown::exit) {
    child_spec result;
    result.name = name;
    result.restart = rt;
    result.shutdown = sd;
    caf::actor observer = caf::actor{self};
    // Events are sent where their order is the supervisor's: `started` from
    // the start function (which runs inside the supervisor, in start order),
    // `stopped` by the child before it dies. Only a kill, which cannot be
    // trapped, is reported from an exit hook.
    result.start = [name, observer, mode](caf::actor_system& sys) -> caf::expected<caf::actor> {
      auto handle = sys.spawn([name, observer, mode](caf::event_based_actor* p) -> caf::behavior {
        report_exceptions(p);
        p->attach_functor([name, observer](const caf::error& reason) {
          if (reason == caf::exit_reason::kill)
            caf::anon_send(observer, stopped_atom::value, name, std::string{"kill"});
        });
        p->set_exit_handler([p, name, observer, mode](caf::exit_msg& msg) {
          if (mode == on_shutdown::ignore)
            return;
          caf::anon_send(observer, stopped_atom::value, name, render(msg.reason));
          p->quit(std::move(msg.reason));
        });
        return {
          [name](ping_atom) { return name; },
          [name, observer](crash_atom) -> std::string {
            caf::anon_send(observer, stopped_atom::value, name,
                           std::string{"runtime_error: crash requested"});
            throw std::runtime_error("crash requested");
          },
          [p, name, observer](quit_atom, caf::error& reason) {
            caf::anon_send(observer, stopped_atom::value, name,
                           reason ? render(reason) : std::string{"normal"});
            p->quit(std::move(reason));
          },
        };
      });
      caf::anon_send(observer, started_atom::value, name, handle);
      return handle;
    };
    return result;
  }

  /// Waits for the next probe event; fails the test after `event_timeout`.
  event next_event() {
    event result;
    bool got = false;
    self->receive(
      [&](started_atom, std::string& name, caf::actor& handle) {
        result = event{"started", name, "", handle};
        got = true;
      },
      [&](stopped_atom, std::string& name, std::string& reason) {
        result = event{"stopped", name, reason, nullptr};
        got = true;
      },
      caf::after(event_timeout) >> [&] {});
    REQUIRE_MESSAGE(got, "no probe event within the timeout");
    return result;
  }

  /// Waits for `n` events and returns them as "kind:name" strings.
  std::vector<std::string> next_events(size_t n) {
    std::vector<std::string> result;
    for (size_t i = 0; i < n; ++i) {
      auto e = next_event();
      result.push_back(e.kind + ":" + e.name);
    }
    return result;
  }

  /// Waits for `started` of `name` (skipping nothing: the next event must be it).
  caf::actor expect_started(const std::string& name) {
    auto e = next_event();
    REQUIRE(e.kind == "started");
    REQUIRE(e.name == name);
    return e.handle;
  }

  std::string expect_stopped(const std::string& name) {
    auto e = next_event();
    REQUIRE(e.kind == "stopped");
    REQUIRE(e.name == name);
    return e.reason;
  }

  /// Asserts that no probe event arrives within `d`.
  void expect_no_event(caf::timespan d = std::chrono::milliseconds(100)) {
    bool got = false;
    std::string what;
    self->receive(
      [&](started_atom, std::string& name, caf::actor&) { got = true; what = "started:" + name; },
      [&](stopped_atom, std::string& name, std::string&) { got = true; what = "stopped:" + name; },
      caf::after(d) >> [] {});
    CHECK_MESSAGE(!got, "unexpected event " << what);
  }

  /// Sends a request and returns its answer, failing the test on error or timeout.
  template <class T, class... Ts>
  T ask(const caf::actor& dest, Ts&&... xs) {
    T result{};
    self->request(dest, event_timeout, std::forward<Ts>(xs)...)
      .receive([&](T& x) { result = std::move(x); },
               [&](caf::error& err) { FAIL("request failed: " << render(err)); });
    return result;
  }

  /// Sends a request whose answer would be a `T` and returns the error it must end with.
  template <class T, class... Ts>
  caf::error ask_error(const caf::actor& dest, Ts&&... xs) {
    caf::error result;
    self->request(dest, event_timeout, std::forward<Ts>(xs)...)
      .receive([&](T&) { FAIL("expected an error"); },
               [&](caf::error& err) { result = std::move(err); });
    return result;
  }

  /// Like `ask_error` for requests that answer with nothing on success.
  template <class... Ts>
  caf::error ask_void_error(const caf::actor& dest, Ts&&... xs) {
    caf::error result;
    self->request(dest, event_timeout, std::forward<Ts>(xs)...)
      .receive([&]() { FAIL("expected an error"); },
               [&](caf::error& err) { result = std::move(err); });
    return result;
  }

  /// Sends a request that must succeed with no value.
  template <class... Ts>
  void ask_ok(const caf::actor& dest, Ts&&... xs) {
    bool ok = false;
    self->request(dest, event_timeout, std::forward<Ts>(xs)...)
      .receive([&]() { ok = true; },
               [&](caf::error& err) { FAIL("request failed: " << render(err)); });
    REQUIRE(ok);
  }

  /// Spawns a supervisor that must start, monitored by this test.
  caf::actor start_supervisor(supervisor_spec spec) {
    auto sup = spawn_supervisor(sys, std::move(spec));
    REQUIRE_MESSAGE(sup, render(sup.error()));
    self->monitor(*sup);
    cleanup.push_back(*sup);
    return *sup;
  }

  /// Waits for the down message of a monitored actor and returns its reason.
  caf::error expect_down(const caf::actor& who) {
    for (auto i = other_downs.begin(); i != other_downs.end(); ++i) {
      if (i->source == who.address()) {
        auto result = i->reason;
        other_downs.erase(i);
        return result;
      }
    }
    caf::error result;
    bool got = false;
    self->receive_while([&] { return !got; })(
      [&](caf::down_msg& dm) {
        if (dm.source == who.address()) {
          result = dm.reason;
          got = true;
        } else {
          other_downs.push_back(std::move(dm)); // for a later expect_down
        }
      },
      // Probe events that arrive meanwhile are kept for next_event().
      caf::after(event_timeout) >> [&] { FAIL("no down message within the timeout"); });
    return result;
  }

  std::vector<child_info> children_of(const caf::actor& sup) {
    return ask<std::vector<child_info>>(sup, which_children_atom::value);
  }

  std::vector<crash_record> crashes_of(const caf::actor& sup) {
    return ask<std::vector<crash_record>>(sup, crashes_atom::value);
  }
};

/// A supervisor spec with the given strategy and limits over `children`.
inline supervisor_spec make_spec(std::string name, strategy s, int intensity,
                                 caf::timespan period, std::vector<child_spec> children) {
  supervisor_spec result;
  result.name = std::move(name);
  result.strat = s;
  result.intensity = intensity;
  result.period = period;
  result.children = std::move(children);
  return result;
}

} // namespace troupe::test
