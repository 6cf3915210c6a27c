#include "actors/echo/echo.hpp"

namespace troupe::echo {

group_spec make_group(std::string name, size_t instances) {
  group_spec g;
  g.name = std::move(name);
  g.instances = instances;
  g.intensity = 1000;
  g.period = std::chrono::seconds(10);
  g.worker = [](caf::event_based_actor*, size_t) -> caf::behavior {
    return {
      [](std::string& s) { return std::move(s); },
      [](uint64_t seq) { return seq; },
    };
  };
  return g;
}

} // namespace troupe::echo
