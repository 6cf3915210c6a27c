#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include <caf/expected.hpp>

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

/// The weights of the formula's three parts. The E-News ranking formula's
/// own, 0.40 / 0.30 / 0.30, are the `control` variant's.
struct weights {
  double affinity = 0.40;
  double bias = 0.30;
  double recency = 0.30;
};

/// One arm of the ranking's A/B test: a name, the share of users (percent)
/// it ranks for, and its weights.
struct variant {
  std::string name;
  uint32_t share = 100;
  rank::weights weights;
};

/// The ranker's variants when its settings name none: `control`, every user,
/// the E-News ranking formula's weights.
inline constexpr const char* default_variants = "control:100:0.40/0.30/0.30";

/// Parses the ranker's `variants` setting: `NAME:SHARE:AFFINITY/BIAS/RECENCY`,
/// comma-separated (`"control:50:0.40/0.30/0.30, fresh:50:0.20/0.20/0.60"`).
/// 1 to 8 variants; names of 1 to 32 characters `[a-z0-9_-]`, each once;
/// shares whole percents from 1, 100 in all; weights finite, at least 0,
/// adding up to 1. An error says which variant is wrong and why.
caf::expected<std::vector<variant>> parse_variants(const std::string& text);

/// The user's bucket, 0 to 99: FNV-1a of `"ranking-variant:" + user`, so
/// that a user keeps one variant on every node and across restarts, and
/// the buckets do not follow the ranker's own routing by user.
uint32_t bucket_of(const std::string& user);

/// The variant that ranks for `user`: the first whose cumulative share
/// passes the user's bucket. `variants` must be what `parse_variants` gave.
const variant& variant_for(const std::vector<variant>& variants, const std::string& user);

/// The E-News ranking formula: the deterministic score of `a` for `p` at `now_ms`:
///   0.40 affinity + 0.30 (1 - |bias - preference|) + 0.30 / (1 + 0.1 hours old)
/// with each part in the result; a variant gives its own weights `w`.
ranked_article score(const article& a, const preferences& p, int64_t now_ms,
                     const weights& w = {});

/// The best `k` of `candidates` published within `max_age_ms`, best first
/// (ties: newer first, then by id), by the weights `w`.
std::vector<ranked_article> top_k(const std::vector<article>& candidates, const preferences& p,
                                  int64_t now_ms, size_t k, int64_t max_age_ms,
                                  const weights& w = {});

} // namespace troupe::rank
