#include "actors/fraud_detector/detector.hpp"

namespace troupe::fraud {

troupe::domain domain_entry() {
  using topology::setting_type;
  troupe::domain d;
  d.schema.name = "fraud-detector";
  d.schema.settings = {
    {"model", setting_type::string, "actors/fraud_detector/model/fraud.json", {}, {}, false,
     "the XGBoost model file (JSON), relative to the node's working directory"},
    {"explain_above", setting_type::number, "0.5", 0, 1, false,
     "the top features (what alerts show) are computed for scores over this only: at most "
     "the alerter's threshold"},
    {"crash_every", setting_type::integer, "0", 0, 1e9, false,
     "fault injection: each worker throws on every Nth batch (0: never)"},
    {"crash_on_user", setting_type::string, "", {}, {}, true,
     "fault injection: a worker throws on every batch holding a transaction of this user "
     "(a poison event; empty: never)"},
  };
  d.make_group = [](const topology::group_decl& decl, uint32_t instances,
                    const domain_context& ctx) -> caf::expected<group_spec> {
    group_context gctx;
    gctx.router_of = ctx.router_of;
    gctx.state_dir = ctx.state_dir;
    gctx.log = ctx.log.with_group(decl.name);
    gctx.probe = ctx.probe();
    gctx.explain_above = topology::number(decl, "explain_above");
    auto g = make_group(decl.name, instances, topology::setting(decl, "model"),
                        static_cast<uint64_t>(topology::number(decl, "crash_every")),
                        topology::setting(decl, "crash_on_user"), std::move(gctx));
    if (g)
      g->call_timeout = std::chrono::seconds(30); // a backlog is not a failure
    return g;
  };
  return d;
}

} // namespace troupe::fraud
