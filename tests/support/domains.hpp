#pragma once

#include <string>

#include "actors/domains.hpp"
#include "topology/topology.hpp"

namespace troupe::test {

/// The topology parser with this build's registered domains.
inline caf::expected<topology::topology> parse(const std::string& text,
                                               const std::string& source) {
  return topology::parse(text, source, schemas_of(actors::domains()));
}

/// The topology loader with this build's registered domains.
inline caf::expected<topology::topology> load(const std::string& path) {
  return topology::load(path, schemas_of(actors::domains()));
}

} // namespace troupe::test
