#include "actors/catalogue.hpp"

#include "actors/echo/echo.hpp"
#include "runtime/core/error.hpp"

namespace troupe::actors {

caf::expected<group_spec> make_group(const topology::group_decl& decl, uint32_t instances) {
  group_spec g;
  if (decl.domain == "echo")
    g = echo::make_group(decl.name, instances);
  else
    return caf::make_error(ec::invalid_argument,
                           "domain " + decl.domain + " is not in this build yet");
  g.instances = instances;
  g.strat = decl.strat;
  g.intensity = decl.intensity;
  g.period = decl.period;
  g.backoff = decl.backoff;
  g.restart_delay = decl.restart_delay;
  if (decl.routing == "key_hash") {
    // Messages carry their key first: a string (a user id) or a number.
    g.route = routing::key_hash;
    g.key = [](const caf::message& m) -> uint64_t {
      if (m.empty())
        return 0;
      if (m.match_element<std::string>(0))
        return std::hash<std::string>{}(m.get_as<std::string>(0));
      if (m.match_element<uint64_t>(0))
        return m.get_as<uint64_t>(0);
      return 0;
    };
  }
  return g;
}

} // namespace troupe::actors
