#pragma once

#include <chrono>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include <caf/actor.hpp>
#include <caf/actor_system.hpp>
#include <caf/allowed_unsafe_message_type.hpp>
#include <caf/error.hpp>
#include <caf/expected.hpp>
#include <caf/timespan.hpp>

#include "runtime/core/log.hpp"

namespace troupe {

// -- child specs ---------------------------------------------------------------

/// When a child is restarted (OTP's restart types).
enum class restart_type : uint8_t {
  /// Always restarted.
  permanent,
  /// Restarted only after an abnormal exit (anything but `normal` or `user_shutdown`).
  transient,
  /// Never restarted; its spec is removed when it exits.
  temporary,
};

/// How a child is stopped when its supervisor stops it.
struct shutdown_spec {
  /// Send `user_shutdown`, wait this long for the exit, then kill. Ignored
  /// when `brutal_kill` or `infinity` is set.
  caf::timespan timeout = std::chrono::seconds(5);
  /// Kill at once, without asking.
  bool brutal_kill = false;
  /// Wait for ever (the default for supervisor children, which stop their own children first).
  bool infinity = false;

  /// Ask, then kill after `t`.
  static shutdown_spec after(caf::timespan t) { return {t, false, false}; }
  /// Kill at once.
  static shutdown_spec kill() { return {caf::timespan{0}, true, false}; }
  /// Ask and wait for ever.
  static shutdown_spec wait() { return {caf::timespan{0}, false, true}; }
};

/// Starts one instance of a child. Runs inside the supervisor, so it must not
/// block: spawn and return. The supervisor links itself to the result.
using start_fn = std::function<caf::expected<caf::actor>(caf::actor_system&)>;

/// One child of a supervisor.
struct child_spec {
  /// Unique among its siblings; used in the tree, the crash history and logs.
  std::string name;
  /// Starts an instance; an error counts as a crash of the child.
  start_fn start;
  restart_type restart = restart_type::permanent;
  shutdown_spec shutdown;
  /// True when the child is a supervisor itself (set by `supervisor_child`).
  bool is_supervisor = false;
};

// -- supervisor specs ----------------------------------------------------------

/// What a supervisor does when a child exits and is to be restarted.
enum class strategy : uint8_t {
  /// Restart that child only.
  one_for_one,
  /// Stop every other child (in reverse start order), then restart all in start order.
  one_for_all,
  /// Stop the children started after it (in reverse order), then restart it and them in order.
  rest_for_one,
};

/// Exponential backoff for restarts: the n-th consecutive restart of a child
/// waits `min * 2^n`, at most `max`, each delay scaled by a random factor in
/// `[1 - jitter, 1 + jitter]`. The count starts again once a child has run
/// for `reset_after` without exiting.
struct backoff_spec {
  caf::timespan min = std::chrono::milliseconds(10);
  caf::timespan max = std::chrono::seconds(5);
  double jitter = 0.2;
  caf::timespan reset_after = std::chrono::seconds(5);
};

/// A supervisor: its strategy, its restart intensity and its children.
struct supervisor_spec {
  std::string name;
  strategy strat = strategy::one_for_one;
  /// At most `intensity` restarts within `period`; one more and the supervisor
  /// stops its children and exits with `ec::max_restart_intensity`.
  int intensity = 1;
  caf::timespan period = std::chrono::seconds(5);
  std::optional<backoff_spec> backoff;
  /// Started in this order, stopped in the reverse order.
  std::vector<child_spec> children;
  /// Children arrive at run time (`start_child_atom`), so the supervisor may
  /// start with none. Without it, an empty supervisor is a mistake and refused.
  bool dynamic = false;
  /// How many crashes the supervisor remembers for `crashes_atom`.
  size_t crash_history = 64;
  /// Where the supervisor reports each crash and what it did about it
  /// (a warning; an error when it gives up), like OTP's supervisor reports.
  /// Lines carry the log's group, or else the crashed child's name up to
  /// its `/`. Empty: no reports.
  log_fn log;
};

/// Returns an error naming the problem if `x` makes no sense.
caf::error validate(const child_spec& x);

/// Returns an error naming the problem if `x` makes no sense (zero period,
/// negative intensity, no children, duplicate names, bad backoff, ...).
caf::error validate(const supervisor_spec& x);

/// Returns the delay before the `attempt`-th consecutive restart (0-based),
/// with `unit_random` in `[0, 1)` choosing the jitter.
caf::timespan backoff_delay(const backoff_spec& x, uint32_t attempt, double unit_random);

/// Names for logs and `child_info`.
const char* to_string(restart_type x);
const char* to_string(strategy x);

} // namespace troupe

// A child spec holds a start function: it only ever travels between local actors.
CAF_ALLOW_UNSAFE_MESSAGE_TYPE(troupe::child_spec)
