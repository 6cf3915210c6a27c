#include "runtime/core/scheduler.hpp"

#include <caf/actor_system.hpp>
#include <caf/scheduler/coordinator.hpp>

namespace troupe {

namespace {

using waking_coordinator = caf::scheduler::coordinator<waking_stealing>;

} // namespace

void use_waking_scheduler(caf::actor_system_config& cfg) {
  // A scheduler module loaded by the configuration replaces CAF's own.
  cfg.module_factories.push_back([](caf::actor_system& sys) -> caf::actor_system::module* {
    return new waking_coordinator(sys);
  });
}

uint64_t scheduler_wakeups(caf::actor_system& sys) {
  auto* sched = dynamic_cast<waking_coordinator*>(&sys.scheduler());
  return sched != nullptr ? sched->data().wakeups.load(std::memory_order_relaxed) : 0;
}

} // namespace troupe
