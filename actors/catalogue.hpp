#pragma once

#include <caf/expected.hpp>

#include "runtime/group/group_spec.hpp"
#include "topology/topology.hpp"

namespace troupe::actors {

/// The group spec for `decl` with `instances` instances on one node: the
/// domain's worker with the supervision, routing and restart settings the
/// topology gives it. An error names a domain this build does not run yet.
caf::expected<group_spec> make_group(const topology::group_decl& decl, uint32_t instances);

} // namespace troupe::actors
