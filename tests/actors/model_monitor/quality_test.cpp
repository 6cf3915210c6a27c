// The model monitor's figures: PSI, AUC from score histograms, the sliding
// window, and the training reference file.

#include "actors/model_monitor/quality.hpp"

#include <algorithm>
#include <cmath>
#include <random>

#include <doctest/doctest.h>

#include "runtime/core/error.hpp"

using namespace troupe;
using namespace troupe::monitor;

namespace {

/// The exact AUC: pairs of (fraud, legitimate), a tie counting half.
double exact_auc(const std::vector<double>& pos, const std::vector<double>& neg) {
  double wins = 0;
  for (auto p : pos)
    for (auto n : neg)
      wins += p > n ? 1 : p == n ? 0.5 : 0;
  return wins / static_cast<double>(pos.size() * neg.size());
}

} // namespace

TEST_CASE("a feature's bin counts the edges below its value, as the reference's bins do") {
  std::vector<double> edges{1.0, 2.0, 5.0};
  CHECK(bin_of(edges, 0.5) == 0);
  CHECK(bin_of(edges, 1.0) == 0); // (-inf, 1]
  CHECK(bin_of(edges, 1.5) == 1);
  CHECK(bin_of(edges, 5.0) == 2);
  CHECK(bin_of(edges, 9.0) == 3);
}

TEST_CASE("PSI is zero for the reference's own shares and grows with the shift") {
  std::vector<double> ref{0.25, 0.25, 0.25, 0.25};
  CHECK(psi(ref, {100, 100, 100, 100}) == doctest::Approx(0).epsilon(1e-12));
  CHECK(psi(ref, {}) == 0);
  // By hand: shares 0.4, 0.3, 0.2, 0.1.
  auto x = psi(ref, {40, 30, 20, 10});
  auto want = (0.4 - 0.25) * std::log(0.4 / 0.25) + (0.3 - 0.25) * std::log(0.3 / 0.25)
              + (0.2 - 0.25) * std::log(0.2 / 0.25) + (0.1 - 0.25) * std::log(0.1 / 0.25);
  CHECK(x == doctest::Approx(want).epsilon(1e-12));
  // Everything in one bin: large, and finite (empty bins floored at 1e-4).
  auto all = psi(ref, {0, 0, 0, 400});
  CHECK(std::isfinite(all));
  CHECK(all > 2.0);
  CHECK(x < all);
}

TEST_CASE("the AUC from score histograms equals the exact pairwise AUC of the binned scores") {
  std::mt19937 rng{7};
  std::normal_distribution<double> fraud{0.7, 0.15}, legit{0.3, 0.15};
  std::vector<double> pos, neg;
  std::vector<uint64_t> hp(score_bins), hn(score_bins);
  for (int i = 0; i < 300; ++i) {
    auto s = std::clamp(fraud(rng), 0.0, 1.0);
    pos.push_back(static_cast<double>(score_bin(s)));
    ++hp[score_bin(s)];
  }
  for (int i = 0; i < 2000; ++i) {
    auto s = std::clamp(legit(rng), 0.0, 1.0);
    neg.push_back(static_cast<double>(score_bin(s)));
    ++hn[score_bin(s)];
  }
  CHECK(auc(hp, hn) == doctest::Approx(exact_auc(pos, neg)).epsilon(1e-12));
  CHECK(auc(hp, hn) > 0.9);
  CHECK(auc(hn, hp) == doctest::Approx(1 - auc(hp, hn)).epsilon(1e-12));
  CHECK(auc(hp, std::vector<uint64_t>(score_bins)) == 0.5);
  CHECK(score_bin(0) == 0);
  CHECK(score_bin(1.0) == score_bins - 1);
  CHECK(score_bin(-3) == 0);
  CHECK(score_bin(std::nan("")) == 0);
}

TEST_CASE("the window sums its slices per model and drops what is older than its span") {
  window w{10000}; // ten slices of 1 s
  w.at("v1", 1000).scored += 1;
  w.at("v1", 5500).scored += 2;
  w.at("v2", 5600).scored += 5;
  auto t = w.total(6000);
  CHECK(t["v1"].scored == 3);
  CHECK(t["v2"].scored == 5);
  // At 12.5 s the slice of 1 s ([1 s, 2 s)) has left the window.
  w.at("v1", 12500).scored += 4;
  t = w.total(12500);
  CHECK(t["v1"].scored == 6);
  t = w.total(30000);
  CHECK(t.count("v1") == 0);
}

TEST_CASE("quality: alert rate, precision and recall from the labelled counts") {
  counts c;
  c.scored = 1000;
  c.alerts = 50;
  c.labelled = 100;
  c.tp = 30;
  c.fp = 10;
  c.fn = 20;
  c.tn = 40;
  auto q = summarize("v1", c, nullptr);
  CHECK(q.alert_rate == doctest::Approx(0.05));
  CHECK(q.precision == doctest::Approx(0.75));
  CHECK(q.recall == doctest::Approx(0.6));
  CHECK(q.labelled_fraud == 50);
  CHECK(q.psi.empty());
  auto j = to_json(q);
  CHECK(j["model"] == "v1");
  CHECK(j["recall"].get<double>() == doctest::Approx(0.6));
}

TEST_CASE("the checked-in model's reference parses, and a broken one says what is wrong") {
  auto r = load_reference(std::string{TROUPE_SOURCE_DIR}
                          + "/actors/fraud_detector/model/fraud.reference.json");
  REQUIRE_MESSAGE(r, "the reference of actors/fraud_detector/model/fraud.json");
  CHECK(r->model == "fraud-v1");
  REQUIRE(r->features.size() == 11);
  CHECK(r->features[0].name == "amount");
  for (auto& f : r->features) {
    double sum = 0;
    for (auto s : f.shares)
      sum += s;
    CHECK(sum == doctest::Approx(1.0).epsilon(1e-9));
  }
  auto problem = [](const std::string& text) {
    auto x = parse_reference(text);
    REQUIRE_FALSE(x);
    return render(x.error());
  };
  CHECK(problem("[]") == "invalid_argument: model reference: not a JSON object");
  CHECK(problem(R"({"schema":2})") == "invalid_argument: model reference: schema must be 1");
  CHECK(problem(R"({"schema":1,"model":"m","features":[{"name":"a","edges":[2,1],"shares":[1,0,0]}]})")
        == "invalid_argument: model reference: feature a: edges must be ascending");
  CHECK(problem(R"({"schema":1,"model":"m","features":[{"name":"a","edges":[1],"shares":[1]}]})")
        == "invalid_argument: model reference: feature a: one share per bin (edges + 1)");
  CHECK(!load_reference("/nonexistent/reference.json"));
}

TEST_CASE("a scored event is read in one pass as the JSON document says, and what is not a scored event is refused") {
  auto ev = parse_scored_event(
    R"({"alert":true,"degraded":false,"features":[12.5,3,"x",null,0.53417328764587,[1,2],{"a":1},-2.0],)"
    R"("model":"fraud-v1","node":"n1","schema":1,"score":0.75,"scored_at":1767225600123,)"
    R"("shadow":{"alert":false,"model":"fraud-v2","score":0.25,"extra":[1,{"b":2}]},)"
    R"("timestamp":1767225600000,"trace":"0af7","transaction":"t-1","user":"u-\"7\""})");
  REQUIRE(ev);
  CHECK(ev->transaction == "t-1");
  CHECK(ev->score == 0.75);
  CHECK(ev->model == "fraud-v1");
  CHECK(ev->alert);
  CHECK(ev->scored_at == 1767225600123);
  CHECK(ev->has_features);
  REQUIRE(ev->features.size() == 8);
  CHECK(ev->features[0] == 12.5);
  CHECK(ev->features[1] == 3.0);
  CHECK(!ev->features[2]);
  CHECK(!ev->features[3]);
  CHECK(ev->features[4] == 0.53417328764587);
  CHECK(!ev->features[5]); // an array entry is one entry, not a number
  CHECK(!ev->features[6]);
  CHECK(ev->features[7] == -2.0);
  CHECK(ev->shadow_model == "fraud-v2");
  CHECK(ev->shadow_score == 0.25);
  CHECK(!ev->shadow_alert);

  // Defaults for what is absent or of another type; the last of a repeated key counts.
  ev = parse_scored_event(R"({"transaction":"t-2","score":1,"model":7,"alert":"yes","scored_at":1e300,)"
                          R"("features":[1],"features":"none","shadow":{"model":"m","score":"high"}})");
  REQUIRE(ev);
  CHECK(ev->score == 1.0);
  CHECK(ev->model == "unknown");
  CHECK(!ev->alert);
  CHECK(!ev->scored_at);
  CHECK(!ev->has_features);
  CHECK(ev->features.empty());
  CHECK(ev->shadow_model.empty());
  ev = parse_scored_event(R"({"transaction":"t-3","score":0.5,"scored_at":18446744073709551615,)"
                          R"("transaction":"t-4","shadow":{"model":"m","score":0.5},"shadow":null})");
  REQUIRE(ev);
  CHECK(ev->transaction == "t-4");
  CHECK(!ev->scored_at);
  CHECK(ev->shadow_model.empty());

  for (auto bad : {"", "not json", "[]", "[{\"transaction\":\"t\",\"score\":1}]", "5", "null",
                   "{\"score\":0.5}", "{\"transaction\":\"t\"}", "{\"transaction\":7,\"score\":0.5}",
                   "{\"transaction\":\"t\",\"score\":\"0.5\"}", "{\"transaction\":\"t\",\"score\":0.5",
                   "{\"transaction\":\"t\",\"score\":0.5} trailing",
                   "{\"transaction\":\"t\",\"score\":0.5,\"transaction\":null}"})
    CHECK_MESSAGE(!parse_scored_event(bad), bad);
}

TEST_CASE("the scored-event reader agrees with the JSON document on every record the alerter writes") {
  // The document's reading (what the monitor did before): the same values.
  for (auto text : {R"({"alert":false,"degraded":false,"features":[1.0,2.5],"model":"m","node":"n1","schema":1,"score":0.125,"scored_at":5,"timestamp":1,"transaction":"t","user":"u"})",
                    R"({"alert":true,"degraded":true,"features":[],"model":"m","node":"n1","schema":1,"score":0.875,"scored_at":6,"shadow":{"alert":true,"model":"c","score":0.9},"timestamp":1,"trace":"ab","transaction":"t2","user":"u"})"}) {
    auto j = nlohmann::json::parse(text);
    auto ev = parse_scored_event(text);
    REQUIRE(ev);
    CHECK(ev->transaction == j["transaction"].get<std::string>());
    CHECK(ev->score == j["score"].get<double>());
    CHECK(ev->model == j.value("model", std::string{"unknown"}));
    CHECK(ev->alert == j.value("alert", false));
    CHECK(ev->scored_at == j["scored_at"].get<int64_t>());
    REQUIRE(ev->features.size() == j["features"].size());
    for (size_t i = 0; i < ev->features.size(); ++i)
      CHECK(ev->features[i] == j["features"][i].get<double>());
    CHECK(ev->has_features);
    CHECK(ev->shadow_model == (j.contains("shadow") ? j["shadow"]["model"].get<std::string>() : ""));
  }
}
