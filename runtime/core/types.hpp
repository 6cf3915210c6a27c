#pragma once

#include <caf/actor_system_config.hpp>

namespace troupe {

/// Registers every Troupe message type and Troupe's error category with
/// `cfg`. Call once per actor system, before it starts; every process of a
/// cluster must register the same types.
void register_types(caf::actor_system_config& cfg);

/// An actor system configuration with Troupe's types registered: what every
/// Troupe process (node, launcher, benchmark) starts its actor system with.
struct config : caf::actor_system_config {
  config() {
    register_types(*this);
  }
};

} // namespace troupe
