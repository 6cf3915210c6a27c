// The E-News ranking formula, checked term by term on fixed data.

#include "actors/ranker/ranking.hpp"

#include <doctest/doctest.h>

using namespace troupe;

namespace {

constexpr int64_t hour = 3600 * 1000;
constexpr int64_t now = 1767225600000;

article make(const std::string& id, const std::string& category, double bias, int64_t age_ms) {
  article a;
  a.id = id;
  a.headline = "headline " + id;
  a.category = category;
  a.bias = bias;
  a.published_ms = now - age_ms;
  return a;
}

} // namespace

TEST_CASE("a score is 0.40 affinity + 0.30 bias alignment + 0.30 recency") {
  rank::preferences p;
  p.categories = {{"politics", 0.9}, {"sports", 0.2}};
  p.bias = 0.3;
  auto r = rank::score(make("a", "politics", 0.7, 5 * hour), p, now);
  CHECK(r.affinity == doctest::Approx(0.9).epsilon(1e-12));
  CHECK(r.bias_alignment == doctest::Approx(1 - 0.4).epsilon(1e-12));
  CHECK(r.recency == doctest::Approx(1 / 1.5).epsilon(1e-12));
  CHECK(r.score == doctest::Approx(0.40 * 0.9 + 0.30 * 0.6 + 0.30 / 1.5).epsilon(1e-12));
  auto other = rank::score(make("b", "science", 0.3, 0), p, now);
  CHECK(other.affinity == 0);
  CHECK(other.bias_alignment == 1);
  CHECK(other.recency == 1);
  CHECK(other.score == doctest::Approx(0.6).epsilon(1e-12));
}

TEST_CASE("an article from the future counts as just published") {
  auto r = rank::score(make("f", "x", 0.5, -2 * hour), rank::default_preferences(), now);
  CHECK(r.recency == 1);
}

TEST_CASE("top_k returns the best k in order, newer first on ties") {
  rank::preferences p;
  p.categories = {{"politics", 1.0}, {"sports", 0.5}};
  p.bias = 0.5;
  std::vector<article> xs = {
    make("p-old", "politics", 0.5, 30 * hour), make("p-new", "politics", 0.5, 1 * hour),
    make("s-new", "sports", 0.5, 0),           make("tie-a", "sports", 0.5, 0),
    make("w", "weather", 0.0, 0),              make("ancient", "politics", 0.5, 100 * hour)};
  auto top = rank::top_k(xs, p, now, 4, 48 * hour);
  REQUIRE(top.size() == 4);
  // p-new: 0.4 + 0.3 + 0.3/1.1; p-old: 0.4 + 0.3 + 0.3/4; s-new and tie-a:
  // 0.2 + 0.3 + 0.3 (same score and time: by id); w: 0 + 0.15 + 0.3.
  CHECK(top[0].item.id == "p-new");
  CHECK(top[1].item.id == "s-new");
  CHECK(top[2].item.id == "tie-a");
  CHECK(top[3].item.id == "p-old");
  CHECK(top[0].score == doctest::Approx(0.7 + 0.3 / 1.1).epsilon(1e-12));
  CHECK(top[3].score == doctest::Approx(0.7 + 0.075).epsilon(1e-12));
  for (auto& r : top)
    CHECK(r.item.id != "ancient");
}

TEST_CASE("preferences read from Redis fields, skipping junk and clamping") {
  auto p = rank::parse_preferences({"bias", "0.8", "category:politics", "0.9",
                                    "category:sports", "7", "category:x", "abc", "other", "0.1",
                                    "unrelated", "0.5"});
  CHECK(p.bias == 0.8);
  CHECK(p.categories.at("politics") == 0.9);
  CHECK(p.categories.at("sports") == 1.0);
  CHECK(p.categories.count("x") == 0);
  CHECK(p.other == doctest::Approx(0.1));
  auto d = rank::default_preferences();
  CHECK(d.other == 0.5);
  CHECK(d.bias == 0.5);
}
