#pragma once

#include <caf/actor_system_config.hpp>

#include "runtime/core/scheduler.hpp"

namespace troupe {

/// Registers every Troupe message type and Troupe's error category with
/// `cfg`. Call once per actor system, before it starts; every process of a
/// cluster must register the same types.
void register_types(caf::actor_system_config& cfg);

/// Sets CAF's scheduler to `threads` threads (0: one per core) that spin
/// briefly when idle and then sleep until work arrives (woken by the
/// thread that queues it, `waking_stealing`, or after 1 ms). CAF's default is at
/// least 4 threads, each polling for 25 ms (50 µs sleeps) after its last
/// job: with three nodes, Kafka and Redis on two cores, those wake-ups took
/// more CPU than the work (18 % of a core per idle node, 7 % now) and
/// tripled the pipeline's latency.
void configure_scheduler(caf::actor_system_config& cfg, size_t threads);

/// An actor system configuration with Troupe's types registered, its
/// scheduler settings and `waking_stealing`: what every Troupe process
/// (node, launcher, benchmark) starts its actor system with.
struct config : caf::actor_system_config {
  config() {
    register_types(*this);
    configure_scheduler(*this, 0);
    use_waking_scheduler(*this);
  }
};

} // namespace troupe
