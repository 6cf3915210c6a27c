#pragma once

#include <caf/actor_system_config.hpp>

namespace troupe {

/// Registers every Troupe message type and Troupe's error category with
/// `cfg`. Call once per actor system, before it starts; every process of a
/// cluster must register the same types.
void register_types(caf::actor_system_config& cfg);

} // namespace troupe
