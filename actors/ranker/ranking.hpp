#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "runtime/core/messages.hpp"

namespace troupe::rank {

/// A user's preferences, as Redis holds them in the hash `prefs:{user}`:
/// field `bias` (0 to 1) and one field `category:<name>` (0 to 1) per
/// category the user cares about; field `other` is the affinity of every
/// category not listed (default 0).
struct preferences {
  std::map<std::string, double> categories;
  double other = 0;
  double bias = 0.5;
};

/// For a user without preferences (or while Redis cannot be reached): every
/// category 0.5, bias 0.5: the feed is ordered by recency and closeness to
/// the centre.
preferences default_preferences();

/// Preferences from the fields and values of `HGETALL prefs:{user}`.
/// Values that are not numbers are skipped; numbers are clamped to [0, 1].
preferences parse_preferences(const std::vector<std::string>& fields_and_values);

/// The E-News ranking formula: the deterministic score of `a` for `p` at `now_ms`:
///   0.40 affinity + 0.30 (1 - |bias - preference|) + 0.30 / (1 + 0.1 hours old)
/// with each part in the result.
ranked_article score(const article& a, const preferences& p, int64_t now_ms);

/// The best `k` of `candidates` published within `max_age_ms`, best first
/// (ties: newer first, then by id).
std::vector<ranked_article> top_k(const std::vector<article>& candidates, const preferences& p,
                                  int64_t now_ms, size_t k, int64_t max_age_ms);

} // namespace troupe::rank
