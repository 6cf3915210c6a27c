#include "actors/ranker/ranker.hpp"

#include "actors/news/window_service.hpp"

namespace troupe::rank {

troupe::domain domain_entry() {
  using topology::setting_type;
  troupe::domain d;
  d.schema.name = "ranker";
  d.schema.fallbacks = {"trending"};
  d.schema.settings = {
    {"top_k", setting_type::integer, "10", 1, 100, false,
     "items in a feed when the request asks for none"},
    {"max_age", setting_type::duration, "48h", 1, {}, false,
     "candidates published longer ago are not ranked"},
    {"trending_window", setting_type::duration, "24h", 1, {}, false,
     "the trending fallback counts reads this recent"},
    {"variants", setting_type::string, default_variants, {}, {}, false,
     "the ranking's A/B variants, NAME:SHARE:AFFINITY/BIAS/RECENCY, comma-separated; "
     "users are assigned by a hash of their id"},
  };
  d.schema.check_together = [](const topology::settings_map& s)
    -> std::optional<topology::setting_problem> {
    auto i = s.find("variants");
    if (i == s.end())
      return std::nullopt;
    if (auto v = parse_variants(i->second); !v)
      return topology::setting_problem{"variants", v.error().context().get_as<std::string>(0)};
    return std::nullopt;
  };
  d.make_group = [](const topology::group_decl& decl, uint32_t instances,
                    const domain_context& ctx) -> caf::expected<group_spec> {
    ranker_settings s;
    s.redis = ctx.redis;
    auto news = ctx.service<news::window_service>(news::window_service::name);
    s.store = news ? news->articles() : std::make_shared<news::article_store>();
    s.top_k = static_cast<size_t>(topology::number(decl, "top_k"));
    auto ms = [&](const char* key) {
      return std::chrono::duration_cast<std::chrono::milliseconds>(topology::duration(decl, key))
        .count();
    };
    s.max_age_ms = ms("max_age");
    s.trending_window_ms = ms("trending_window");
    auto variants = parse_variants(topology::setting(decl, "variants"));
    if (!variants)
      return variants.error();
    s.variants = std::move(*variants);
    return make_group(decl.name, instances, s);
  };
  return d;
}

} // namespace troupe::rank
