#pragma once

#include <cstdint>
#include <string>

#include <caf/atom.hpp>
#include <caf/error.hpp>
#include <caf/make_message.hpp>
#include <caf/message.hpp>
#include <caf/sec.hpp>

namespace troupe {

/// Every error Troupe itself raises. Travels as `caf::error` with category
/// `troupe`, so it crosses actor and node boundaries like CAF's own `sec`.
enum class ec : uint8_t {
  /// Not an error.
  none = 0,
  /// A supervisor, child or group spec makes no sense; the context says why.
  invalid_spec,
  /// A supervisor restarted children more often than its intensity allows
  /// within its period and gave up (OTP: `shutdown` after `reached_max_restart_intensity`).
  max_restart_intensity,
  /// A child's start function failed while its supervisor started.
  failed_to_start_child,
  /// No child of that name under this supervisor.
  no_such_child,
  /// The child is running, so it cannot be deleted or started again.
  child_running,
  /// A child of that name exists already.
  child_exists,
  /// The group holds as many messages as it may: back off and try again.
  group_saturated,
  /// The group's supervisor gave up and the group declares no fallback.
  group_down,
  /// The message crashed its worker too often and went to dead letters.
  poison_message,
  /// No worker answered within the group's call timeout and the group declares no fallback.
  call_timeout,
  /// The group is shutting down.
  group_stopping,
  /// The fallback function itself failed.
  fallback_failed,
  /// A command-line or configuration value is invalid.
  invalid_argument,
  /// A topology file (cluster.conf) is malformed or cannot be placed; the
  /// context names the file, the line and the key.
  invalid_topology,
  /// A peer failed the cluster's challenge (wrong secret, wrong cluster, unknown node).
  not_authenticated,
  /// A supervised operating-system process exited; the context says how.
  process_exited,
  /// An operator injected this crash (`troupe shell`'s `kill`).
  killed_by_operator,
  /// An operator stopped this node (`troupe shell`'s `stop`, `shutdown`).
  stopped_by_operator,
  /// Talking to another system failed: a connection that could not be made
  /// or was lost, a request that timed out, a server that refused the work
  /// for now. Not the input's fault: try again later.
  io_failure,
  /// A port could not be bound (in use, or the address is not this host's).
  cannot_bind,
  /// A record is larger than Kafka accepts: sent as it is, it never will be.
  too_large,
  /// An earlier attempt at the same work may still land (its outcome is not
  /// known yet): try again once it is settled.
  in_doubt,
  /// The feature store has been unreachable for less than the enricher's
  /// `degrade_after`: the batch waits (is retried) instead of being scored
  /// without the user's history.
  store_unavailable,
};

/// Returns the name of `x`, e.g. `"group_saturated"`.
std::string to_string(ec x);

/// The category atom of Troupe's errors.
constexpr caf::atom_value ec_category = caf::atom("troupe");

/// Renders an error of any category, including Troupe's, for logs and answers.
std::string render(const caf::error& x);

/// True if `x` is CAF's system error `code` (whatever its context).
bool is(const caf::error& x, caf::sec code);

} // namespace troupe

CAF_ERROR_CODE_ENUM(troupe::ec, "troupe")
