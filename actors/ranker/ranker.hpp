#pragma once

#include <chrono>
#include <memory>
#include <string>

#include "actors/news/article_store.hpp"
#include "actors/ranker/ranking.hpp"
#include "runtime/group/group_spec.hpp"
#include "runtime/node/domain.hpp"

namespace troupe::rank {

/// Settings of the `ranker` group.
struct ranker_settings {
  std::string redis;
  /// The node's article window (fed by its news hub).
  std::shared_ptr<news::article_store> store;
  /// Items in a feed when the request asks for 0; at most `max_k`.
  size_t top_k = 10;
  size_t max_k = 100;
  /// Candidates published longer ago than this are not ranked.
  int64_t max_age_ms = 48LL * 3600 * 1000;
  /// The trending fallback counts reads of articles this recent.
  int64_t trending_window_ms = 24LL * 3600 * 1000;
  /// The ranking's A/B variants (`variants`); users are assigned by
  /// `variant_for`.
  std::vector<variant> variants = *parse_variants(default_variants);
};

/// The `ranker` group: detached workers, each with a Redis connection.
///
/// `(rank_atom, user, k)` answers a `feed`: the user's preferences from
/// Redis (`prefs:{user}`, see `preferences`), every candidate of the node's
/// window scored by the E-News ranking formula (`score`) with the weights
/// of the user's A/B variant (named in the answer), the best `k` with the
/// parts of each score. A user without preferences, or a Redis that cannot
/// be reached, gets the documented defaults (`default_preferences
/// == true` in the answer): a feed is never refused for want of them.
///
/// The group declares the fallback `trending`: while it is down (its
/// supervisor gave up, or no live node hosts an instance) the router
/// answers with the most read recent articles, `degraded: true`, from the
/// same window. Personalised answers return by themselves when it is back.
group_spec make_group(const std::string& name, size_t instances, ranker_settings settings);

/// The trending answer for a `(rank_atom, user, k)` request.
feed trending_feed(const news::article_store& store, const ranker_settings& settings,
                   const std::string& user, uint32_t k);

/// The `ranker` domain's registration (actors/domains.cpp): its settings
/// schema and group factory.
troupe::domain domain_entry();

} // namespace troupe::rank
