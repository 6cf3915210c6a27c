#pragma once

#include <functional>
#include <string>

#include <caf/actor.hpp>
#include <caf/expected.hpp>

#include "runtime/core/log.hpp"
#include "runtime/core/trace.hpp"

#include "runtime/group/group_spec.hpp"
#include "runtime/node/domain.hpp"

namespace troupe::fraud {

/// What a fraud-detector group needs of its node to follow the cluster's
/// model roll-out (all optional: without them it scores with its model).
struct group_context {
  /// Reaches the model-monitor, which decides the roll-out.
  std::function<caf::actor(const std::string& domain)> router_of;
  /// Where the last roll-out seen is kept (`model-rollout.json`).
  std::string state_dir;
  log_fn log;
  /// Where each transaction's score span goes.
  trace::probe probe;
  /// The top features are computed for scores over this only (the
  /// `explain_above` setting; below 0: for every score).
  double explain_above = -1;
};

/// The `fraud-detector` group. Each worker owns its own copy of the current
/// model (an XGBoost booster is not shared between threads).
///
/// It follows the cluster's model roll-out (`rollout.hpp`): each second
/// while batches come, one worker asks the model-monitor for it. With a
/// candidate on trial in `split`, a transaction of a user `in_canary` is
/// scored by the candidate, every other by the model in use; in `shadow`,
/// the model in use scores everything and the candidate's score rides
/// along (`shadow_version`, `shadow_probability`). A worker changes models
/// only between batches: every transaction is scored once, by the models
/// of one roll-out generation.
///
/// - `(score_atom, std::vector<enriched_transaction>)`: scores the batch with
///   one model, with each score's top three features.
/// - `(model_load_atom, path)`: loads and checks the model; answers its
///   version, or an error and the old model stays. Every worker switches at
///   its next batch, so no batch is scored by two models and none is lost.
/// - `(model_status_atom)`: "version (path)".
///
/// Fails (and so refuses to host the group) when the model cannot be loaded.
/// `crash_every` > 0 injects faults: each worker throws on every
/// `crash_every`-th batch it gets (to watch supervision and redelivery work;
/// the `crash_every` group setting, 0 in production). A non-empty
/// `crash_on_user` makes a worker throw on every batch holding a transaction
/// of that user: a poison event (the `crash_on_user` setting, for drills).
caf::expected<group_spec> make_group(const std::string& name, size_t instances,
                                     const std::string& model_path, uint64_t crash_every = 0,
                                     std::string crash_on_user = {}, group_context ctx = {});

/// The `fraud-detector` domain's registration (actors/domains.cpp): its settings
/// schema and group factory.
troupe::domain domain_entry();

} // namespace troupe::fraud
