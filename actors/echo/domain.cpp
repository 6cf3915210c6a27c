#include "actors/echo/echo.hpp"

namespace troupe::echo {

troupe::domain domain_entry() {
  troupe::domain d;
  d.schema.name = "echo";
  d.make_group = [](const topology::group_decl& decl, uint32_t instances,
                    const domain_context&) -> caf::expected<group_spec> {
    return make_group(decl.name, instances);
  };
  return d;
}

} // namespace troupe::echo
