#include "runtime/group/group_spec.hpp"

#include "runtime/core/error.hpp"

namespace troupe {

caf::error validate(const group_spec& x) {
  auto invalid = [&](const std::string& what) {
    return caf::make_error(ec::invalid_spec,
                           x.name.empty() ? what : "group '" + x.name + "': " + what);
  };
  if (x.name.empty())
    return invalid("group spec without a name");
  if (x.instances == 0)
    return invalid("zero instances");
  if (!x.worker)
    return invalid("no worker function");
  if (x.route == routing::key_hash && !x.key)
    return invalid("key_hash routing without a key function");
  if (x.intensity < 0)
    return invalid("negative restart intensity " + std::to_string(x.intensity));
  if (x.period <= caf::timespan{0})
    return invalid("restart period must be positive");
  if (x.max_in_flight == 0)
    return invalid("max_in_flight must be at least 1");
  if (x.worker_window == 0)
    return invalid("worker_window must be at least 1");
  if (x.poison_after == 0)
    return invalid("poison_after must be at least 1");
  if (x.call_timeout <= caf::timespan{0})
    return invalid("call_timeout must be positive");
  if (x.restart_delay < caf::timespan{0})
    return invalid("restart_delay must not be negative");
  if (x.dead_letter_history == 0)
    return invalid("dead_letter_history must be at least 1");
  return caf::none;
}

} // namespace troupe
