#pragma once

#include <caf/actor.hpp>
#include <caf/actor_system.hpp>
#include <caf/expected.hpp>

#include "runtime/group/group_spec.hpp"
#include "runtime/supervision/spec.hpp"

namespace troupe {

/// Spawns a group after `validate(spec)` and returns its router, the group's
/// stable address.
///
/// Lifecycle: the router starts a supervisor for the workers and monitors
/// it. Every message the router does not know is routed: it is numbered, sent
/// to a worker as a `routed`, and kept until the worker acknowledges it in a
/// `routed_acks` (batched while the worker is busy). A worker that crashes on a message gets it again
/// once restarted, up to `poison_after` times, then the message goes to dead
/// letters and its requester gets `ec::poison_message`; messages the dead
/// worker never started move to its replacement. When the supervisor gives
/// up, requests are answered by the fallback (or `ec::group_down`), the group
/// reports itself `down`, and it starts a new supervisor after
/// `restart_delay`. Past `max_in_flight`, requests get `ec::group_saturated`.
///
/// Fire-and-forget messages (no request) take the same path but get no
/// answer; when they cannot be taken they go to dead letters, never dropped.
///
/// Control messages: `status_atom`, `dead_letters_atom`, `supervisor_atom`.
caf::expected<caf::actor> spawn_group(caf::actor_system& sys, group_spec spec);

/// A child spec that runs the group under a node's root supervisor.
/// `on_start` (optional) learns each new router, e.g. to update a directory.
caf::expected<child_spec> group_child(group_spec spec,
                                      std::function<void(const caf::actor&)> on_start = {});

} // namespace troupe
