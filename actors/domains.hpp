#pragma once

#include "runtime/node/domain.hpp"

namespace troupe::actors {

/// Every domain this build runs, registered in `domains.cpp`: one line
/// each. The topology parser, `troupe check`, `troupe up` and every node
/// take their settings schemas and group factories from here.
const domain_list& domains();

/// `topology::load` with the settings schemas of `domains()`.
caf::expected<topology::topology> load_topology(const std::string& path);

} // namespace troupe::actors
