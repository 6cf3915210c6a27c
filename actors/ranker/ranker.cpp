#include "actors/ranker/ranker.hpp"

#include <caf/all.hpp>

#include "actors/ranker/ranking.hpp"
#include "runtime/core/duration.hpp"
#include "runtime/core/error.hpp"
#include "runtime/redis/connection.hpp"

using namespace std::chrono_literals;

namespace troupe::rank {

namespace {

size_t items_for(const ranker_settings& cfg, uint32_t k) {
  return k == 0 ? cfg.top_k : std::min<size_t>(k, cfg.max_k);
}

struct worker_state {
  ranker_settings cfg;
  std::unique_ptr<redis::connection> redis;

  /// The user's preferences; nothing when Redis has none or is away.
  std::optional<preferences> lookup(const std::string& user) {
    if (!redis || !redis->alive()) {
      redis.reset();
      auto c = redis::connection::make(cfg.redis, 300ms, "ranker");
      if (!c)
        return std::nullopt;
      redis = std::move(*c);
    }
    auto r = redis->command({"HGETALL", "prefs:" + user});
    if (!r || r->kind != redis::reply::array || r->elements.empty())
      return std::nullopt;
    std::vector<std::string> kv;
    for (auto& e : r->elements)
      kv.push_back(e.text);
    return parse_preferences(kv);
  }

  feed rank(const std::string& user, uint32_t k) {
    feed f;
    f.user = user;
    f.source = "ranker";
    auto prefs = lookup(user);
    f.default_preferences = !prefs;
    auto snap = cfg.store->snapshot();
    f.candidates = snap->size();
    auto& v = variant_for(cfg.variants, user);
    f.variant = v.name;
    f.items = top_k(*snap, prefs ? *prefs : default_preferences(), unix_ms(), items_for(cfg, k),
                    cfg.max_age_ms, v.weights);
    return f;
  }
};

} // namespace

feed trending_feed(const news::article_store& store, const ranker_settings& cfg,
                   const std::string& user, uint32_t k) {
  feed f;
  f.user = user;
  f.source = "trending";
  f.degraded = true;
  f.candidates = store.size();
  f.items = store.trending(items_for(cfg, k), unix_ms(), cfg.trending_window_ms);
  return f;
}

group_spec make_group(const std::string& name, size_t instances, ranker_settings cfg) {
  group_spec g;
  g.name = name;
  g.instances = instances;
  g.detached = true;
  g.worker = [cfg](caf::event_based_actor*, size_t) -> caf::behavior {
    auto st = std::make_shared<worker_state>();
    st->cfg = cfg;
    st->lookup(""); // connect now, so that the first feed does not wait for it
    return {
      [st](rank_atom, std::string& user, uint32_t k) -> feed { return st->rank(user, k); },
    };
  };
  g.fallback = [cfg](const caf::message& m) -> caf::expected<caf::message> {
    if (!m.match_elements<rank_atom, std::string, uint32_t>())
      return caf::make_error(ec::invalid_argument, "the ranker takes (rank, user, k)");
    return caf::make_message(
      trending_feed(*cfg.store, cfg, m.get_as<std::string>(1), m.get_as<uint32_t>(2)));
  };
  return g;
}

} // namespace troupe::rank
