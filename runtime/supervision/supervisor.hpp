#pragma once

#include <exception>

#include <caf/actor.hpp>
#include <caf/actor_system.hpp>
#include <caf/expected.hpp>
#include <caf/scheduled_actor.hpp>

#include "runtime/supervision/spec.hpp"

namespace troupe {

/// Spawns a supervisor for `spec`, after `validate(spec)`.
///
/// Lifecycle: the supervisor starts its children in order as it initialises
/// (after this function returns, as every CAF actor does). If a child fails to
/// start, it stops the ones already started and exits with
/// `ec::failed_to_start_child`. It monitors every child (CAF 0.17 makes a
/// `kill` fatal to a linked supervisor even when it traps exits) and an exit
/// hook sends its own exit reason to the children still running, so they die
/// with it as OTP's links make them. A child's exit is a crash unless it is
/// `normal` or `user_shutdown` (thrown exceptions, `quit(error)`, `kill` and
/// unreachable nodes all are).
/// Restarts follow the strategy, the restart intensity and the optional
/// backoff. Past the intensity it stops its children in reverse start order
/// and exits with `ec::max_restart_intensity`, which its own supervisor sees.
/// An exit signal from anyone else (its parent, an operator) with a reason
/// other than `normal` stops the children in reverse order, each within its
/// shutdown spec, and exits with that reason.
///
/// Messages: `which_children_atom`, `crashes_atom`, `start_child_atom`,
/// `terminate_child_atom`, `restart_child_atom`, `delete_child_atom`
/// (runtime/core/messages.hpp). Every request is answered.
caf::expected<caf::actor> spawn_supervisor(caf::actor_system& sys, supervisor_spec spec);

/// A child spec that runs a supervisor for `spec` (nested trees). Its
/// shutdown waits for ever by default: a supervisor stops its own children
/// within their timeouts first.
caf::expected<child_spec> supervisor_child(supervisor_spec spec,
                                           restart_type restart = restart_type::permanent);

/// Makes `self` exit with `sec::runtime_error` and the exception's text when
/// a handler throws, instead of CAF's default that prints to stderr and
/// drops the text. Supervisors then record the text in their crash history.
void report_exceptions(caf::scheduled_actor* self);

/// The exit reason `report_exceptions` gives for `eptr`: `sec::runtime_error`
/// with the exception's text; for an exception handler of one's own that
/// does more first.
caf::error exception_reason(std::exception_ptr eptr);

/// True for exit reasons that are not crashes: none, `normal`, `user_shutdown`.
bool is_clean_exit(const caf::error& reason);

} // namespace troupe
