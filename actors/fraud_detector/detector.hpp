#pragma once

#include <string>

#include <caf/expected.hpp>

#include "runtime/group/group_spec.hpp"
#include "runtime/node/domain.hpp"

namespace troupe::fraud {

/// The `fraud-detector` group. Each worker owns its own copy of the current
/// model (an XGBoost booster is not shared between threads).
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
                                     std::string crash_on_user = {});

/// The `fraud-detector` domain's registration (actors/domains.cpp): its settings
/// schema and group factory.
troupe::domain domain_entry();

} // namespace troupe::fraud
