#pragma once

#include <caf/expected.hpp>

#include "actors/domain_context.hpp"
#include "runtime/group/group_spec.hpp"
#include "topology/topology.hpp"

namespace troupe::actors {

/// The group spec for `decl` with `instances` instances on one node: the
/// domain's worker with the supervision, routing and restart settings the
/// topology gives it, and what it needs of its node from `ctx`. An error
/// names a domain this build does not run yet, or a domain that cannot start
/// (a model that does not load).
caf::expected<group_spec> make_group(const topology::group_decl& decl, uint32_t instances,
                                     const domain_context& ctx = {});

} // namespace troupe::actors
