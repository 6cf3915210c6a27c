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

TEST_CASE("a variant's weights replace the formula's, and control's are the formula's own") {
  rank::preferences p;
  p.categories = {{"politics", 0.9}};
  p.bias = 0.3;
  auto a = make("a", "politics", 0.7, 5 * hour);
  auto control = rank::parse_variants(rank::default_variants);
  REQUIRE(control);
  REQUIRE(control->size() == 1);
  CHECK((*control)[0].name == "control");
  CHECK((*control)[0].share == 100);
  // The same double as the formula's literal weights, to the last bit.
  CHECK(rank::score(a, p, now, (*control)[0].weights).score == rank::score(a, p, now).score);
  rank::weights fresh{0.0, 0.0, 1.0};
  CHECK(rank::score(a, p, now, fresh).score == doctest::Approx(1 / 1.5).epsilon(1e-12));
  // Recency alone puts the newest first, where the formula puts affinity first.
  std::vector<article> xs{make("old-match", "politics", 0.3, 30 * hour),
                          make("new-other", "sports", 0.9, 0)};
  CHECK(rank::top_k(xs, p, now, 2, 48 * hour)[0].item.id == "old-match");
  CHECK(rank::top_k(xs, p, now, 2, 48 * hour, fresh)[0].item.id == "new-other");
}

TEST_CASE("variants parse from NAME:SHARE:AFFINITY/BIAS/RECENCY and users split by their shares") {
  auto vs = rank::parse_variants(" control:70:0.40/0.30/0.30 ,fresh:30:0.2/0.2/0.6");
  REQUIRE(vs);
  REQUIRE(vs->size() == 2);
  CHECK((*vs)[1].name == "fresh");
  CHECK((*vs)[1].share == 30);
  CHECK((*vs)[1].weights.recency == 0.6);
  size_t fresh = 0;
  constexpr size_t users = 100000;
  for (size_t i = 0; i < users; ++i) {
    auto user = "u-" + std::to_string(i);
    auto& v = rank::variant_for(*vs, user);
    // A user keeps one variant.
    CHECK(&v == &rank::variant_for(*vs, user));
    fresh += v.name == "fresh";
  }
  // 30 % of 100,000 users, within 1 point.
  CHECK(fresh > 29000);
  CHECK(fresh < 31000);
  // The bucket is FNV-1a of "ranking-variant:" + user, modulo 100 (the
  // WebSocket test computes it the same way).
  CHECK(rank::bucket_of("ana") < 100);
}

TEST_CASE("a bad variants setting names the variant and what is wrong with it") {
  auto problem = [](const std::string& text) {
    auto vs = rank::parse_variants(text);
    REQUIRE_FALSE(vs);
    return vs.error().context().get_as<std::string>(0);
  };
  CHECK(problem("") == "variant 1 is empty: write NAME:SHARE:AFFINITY/BIAS/RECENCY, "
                       "comma-separated");
  CHECK(problem("control:100:0.4/0.3/0.3,") == "variant 2 is empty: write "
                                               "NAME:SHARE:AFFINITY/BIAS/RECENCY, "
                                               "comma-separated");
  CHECK(problem("control") == "variant 1 ('control') is not NAME:SHARE:AFFINITY/BIAS/RECENCY");
  CHECK(problem("Control:100:0.4/0.3/0.3")
        == "variant 1: the name 'Control' must be 1 to 32 characters of a-z, 0-9, _ and -");
  CHECK(problem("a:50:0.4/0.3/0.3,a:50:0.4/0.3/0.3") == "variant 'a' is named twice");
  CHECK(problem("a:50.5:0.4/0.3/0.3")
        == "variant 'a': the share '50.5' must be a whole percent from 1 to 100");
  CHECK(problem("a:0:0.4/0.3/0.3")
        == "variant 'a': the share '0' must be a whole percent from 1 to 100");
  CHECK(problem("a:100:0.4/0.6") == "variant 'a': the weights '0.4/0.6' must be "
                                    "AFFINITY/BIAS/RECENCY");
  CHECK(problem("a:100:0.4/0.3/0.3/0") == "variant 'a': the weights '0.4/0.3/0.3/0' must be "
                                          "AFFINITY/BIAS/RECENCY");
  CHECK(problem("a:100:0.4/nan/0.3") == "variant 'a': the weight 'nan' must be a number, "
                                        "at least 0");
  CHECK(problem("a:100:1.5/-0.5/0") == "variant 'a': the weight '-0.5' must be a number, "
                                       "at least 0");
  CHECK(problem("a:100:0.5/0.3/0.3") == "variant 'a': the weights 0.5/0.3/0.3 must add up to 1");
  CHECK(problem("a:60:0.4/0.3/0.3,b:30:0.4/0.3/0.3")
        == "the variants' shares add up to 90, not 100");
  CHECK(problem("a:1:1/0/0,b:1:1/0/0,c:1:1/0/0,d:1:1/0/0,e:1:1/0/0,f:1:1/0/0,g:1:1/0/0,"
                "h:93:1/0/0,i:1:1/0/0")
        == "at most 8 variants");
}
