#include "actors/feature_enricher/enricher.hpp"

namespace troupe::enrich {

troupe::domain domain_entry() {
  troupe::domain d;
  d.schema.name = "feature-enricher";
  d.schema.settings = {
    {"degrade_after", topology::setting_type::duration, "20s", 0, {}, false,
     "how long batches wait (held, Kafka buffering) while the feature store is unreachable "
     "before they are scored with degraded features and sent to be scored again later"},
  };
  d.make_group = [](const topology::group_decl& decl, uint32_t instances,
                    const domain_context& ctx) -> caf::expected<group_spec> {
    auto g = make_group(decl.name, instances, ctx.redis, std::chrono::seconds(1),
                        ctx.log.with_group(decl.name), topology::duration(decl, "degrade_after"),
                        ctx.probe());
    g.call_timeout = std::chrono::seconds(30); // a backlog is not a failure
    return g;
  };
  return d;
}

} // namespace troupe::enrich
