// The fraud model through libxgboost's C API, against python3-xgboost's own
// predictions for the same rows (scripts/fraud/reference_scores.py).

#include "actors/fraud_detector/model.hpp"

#include <cmath>
#include <cstdlib>
#include <fstream>

#include <doctest/doctest.h>
#include <nlohmann/json.hpp>
#include <unistd.h>

#include "actors/fraud_detector/detector.hpp"
#include "runtime/core/error.hpp"
#include "runtime/core/messages.hpp"
#include "runtime/core/types.hpp"
#include "tests/support/python_reference.hpp"
#include "runtime/group/group.hpp"

#include <caf/all.hpp>
#include <map>
#include <set>

using namespace troupe;

namespace {

const std::string model_path = std::string{TROUPE_SOURCE_DIR} + "/actors/fraud_detector/model/fraud.json";

/// Rows and python3-xgboost's predictions for them (seed, users).
nlohmann::json reference(int seed, int users) {
  return test::python_reference("reference_scores.py",
                                {model_path, std::to_string(seed), std::to_string(users)});
}

} // namespace

TEST_CASE("troupe's scores equal python3-xgboost's predictions for the same rows within 1e-6") {
  auto ref = reference(4242, 300);
  auto m = fraud::model::make(model_path);
  REQUIRE(m);
  CHECK((*m)->version() == ref["version"].get<std::string>());
  std::vector<float> rows;
  for (auto& row : ref["rows"])
    for (auto& x : row)
      rows.push_back(x.get<float>());
  auto n = ref["rows"].size();
  REQUIRE(n > 1000);
  auto scores = (*m)->predict(rows, n);
  REQUIRE(scores);
  REQUIRE(scores->size() == n);
  double worst = 0;
  size_t frauds = 0, alerts = 0;
  for (size_t i = 0; i < n; ++i) {
    worst = std::max(worst, std::fabs((*scores)[i] - ref["predictions"][i].get<double>()));
    frauds += ref["labels"][i].get<int>();
    alerts += (*scores)[i] > 0.5;
  }
  CHECK(worst <= 1e-6);
  CHECK(frauds > 0);
  CHECK(alerts > 0); // the rows exercise both sides of the threshold
  MESSAGE(n << " rows, largest difference " << worst << ", " << frauds << " fraud");
}

TEST_CASE("each score names its model and the features that pushed it most") {
  auto m = fraud::model::make(model_path);
  REQUIRE(m);
  // A large night-time amount from a new country and device, against a calm one.
  std::vector<float> rows{
    2500.f, 0.f, 1.f, 9.5f, 1.f, 200.f, 1.f, 1.f, 40.f, 3.f, 8.f, // suspicious
    25.f,   0.f, 2.f, 0.1f, 2.f, 30000.f, 0.f, 0.f, 40.f, 14.f, 0.f}; // ordinary
  auto s = (*m)->explain(rows, 2, 3);
  REQUIRE(s);
  REQUIRE(s->size() == 2);
  CHECK((*s)[0].probability > (*s)[1].probability);
  CHECK((*s)[0].model_version == "fraud-v1");
  REQUIRE((*s)[0].top_features.size() == 3);
  CHECK(std::fabs((*s)[0].top_features[0].second) >= std::fabs((*s)[0].top_features[1].second));
  auto plain = (*m)->predict(rows, 2);
  REQUIRE(plain);
  CHECK((*s)[0].probability == (*plain)[0]);
}

TEST_CASE("only scores over explain_above get their top features, the same ones as when all are explained") {
  auto m = fraud::model::make(model_path);
  REQUIRE(m);
  std::vector<float> rows{
    25.f,   0.f, 2.f, 0.1f, 2.f, 30000.f, 0.f, 0.f, 40.f, 14.f, 0.f,  // ordinary
    2500.f, 0.f, 1.f, 9.5f, 1.f, 200.f, 1.f, 1.f, 40.f, 3.f, 8.f,     // suspicious
    30.f,   0.f, 3.f, 0.2f, 2.f, 20000.f, 0.f, 0.f, 40.f, 12.f, 0.f}; // ordinary
  auto all = (*m)->explain(rows, 3, 3);
  REQUIRE(all);
  REQUIRE((*all)[1].probability > (*all)[0].probability);
  REQUIRE((*all)[1].probability > (*all)[2].probability);
  // Between the suspicious row's probability and the others'.
  auto above = std::max((*all)[0].probability, (*all)[2].probability);
  auto some = (*m)->explain(rows, 3, 3, above);
  REQUIRE(some);
  REQUIRE(some->size() == 3);
  for (size_t r = 0; r < 3; ++r) {
    CHECK((*some)[r].probability == (*all)[r].probability);
    CHECK((*some)[r].model_version == (*all)[r].model_version);
  }
  CHECK((*some)[0].top_features.empty());
  CHECK((*some)[2].top_features.empty());
  REQUIRE((*some)[1].top_features.size() == 3);
  for (size_t i = 0; i < 3; ++i) {
    CHECK((*some)[1].top_features[i].first == (*all)[1].top_features[i].first);
    CHECK((*some)[1].top_features[i].second == doctest::Approx((*all)[1].top_features[i].second));
  }
  // Over every score: none explained, all still scored.
  auto none = (*m)->explain(rows, 3, 3, 1.0);
  REQUIRE(none);
  for (size_t r = 0; r < 3; ++r) {
    CHECK((*none)[r].probability == (*all)[r].probability);
    CHECK((*none)[r].top_features.empty());
  }
}

TEST_CASE("a missing or broken model file is an error, not a crash") {
  auto missing = fraud::model::make("/nonexistent/fraud.json");
  REQUIRE(!missing);
  CHECK(render(missing.error()).find("cannot load model '/nonexistent/fraud.json'")
        != std::string::npos);
  char tmpl[] = "/tmp/troupe-model-XXXXXX";
  auto fd = mkstemp(tmpl);
  REQUIRE(write(fd, "{not json", 9) == 9);
  close(fd);
  auto broken = fraud::model::make(tmpl);
  std::remove(tmpl);
  CHECK(!broken);
  auto m = fraud::model::make(model_path);
  REQUIRE(m);
  CHECK(!(*m)->predict({1.f, 2.f}, 1)); // wrong width
}

TEST_CASE("a model swapped by a message to the group while batches flow scores each batch with exactly one model and loses none") {
  // A second model: the same trees under another version.
  char tmpl[] = "/tmp/troupe-model-v2-XXXXXX";
  auto fd = mkstemp(tmpl);
  REQUIRE(fd >= 0);
  close(fd);
  std::string v2 = tmpl;
  auto cmd = "/usr/bin/python3 -c \"import xgboost as x; b = x.Booster(model_file='" + model_path
             + "'); b.set_attr(version='fraud-v2'); b.save_model('" + v2 + ".json')\"";
  REQUIRE(std::system(cmd.c_str()) == 0);
  v2 += ".json";
  troupe::config cfg;
  caf::actor_system sys{cfg};
  caf::scoped_actor self{sys};
  auto spec = fraud::make_group("fraud-detector", 3, model_path);
  REQUIRE(spec);
  auto router = spawn_group(sys, *spec);
  REQUIRE(router);
  // 300 batches of 10 in flight at once; the swap lands in the middle.
  enriched_transaction e;
  e.features = {25.f, 0.f, 2.f, 0.1f, 2.f, 30000.f, 0.f, 0.f, 40.f, 14.f, 0.f};
  std::vector<enriched_transaction> batch(10, e);
  std::map<std::string, int> batches_by_version;
  int answered = 0, mixed = 0;
  // A driver sends 300 requests at once, the swap among them, and reports.
  auto observer = caf::actor{self};
  auto target = *router;
  sys.spawn([=](caf::event_based_actor* d) {
    auto result = std::make_shared<std::map<std::string, int>>();
    auto left = std::make_shared<int>(300);
    for (int i = 0; i < 300; ++i) {
      if (i == 150)
        d->request(target, std::chrono::seconds(10), model_load_atom::value, v2)
          .then([](std::string&) {}, [](caf::error&) {});
      d->request(target, std::chrono::seconds(10), score_atom::value, batch)
        .then(
          [=](std::vector<scored_transaction>& scores) {
            std::set<std::string> versions;
            for (auto& s : scores)
              versions.insert(s.model_version);
            ++(*result)[versions.size() == 1 ? *versions.begin() : "mixed"];
            if (--*left == 0)
              d->send(observer, *result);
          },
          [=](caf::error&) {
            ++(*result)["failed"];
            if (--*left == 0)
              d->send(observer, *result);
          });
    }
  });
  self->receive(
    [&](std::map<std::string, int>& r) {
      batches_by_version = r;
      answered = 300 - r["failed"];
      mixed = r["mixed"];
    },
    caf::after(std::chrono::seconds(30)) >> [&] { FAIL("the driver did not finish"); });
  CHECK(answered == 300);
  CHECK(mixed == 0);
  CHECK(batches_by_version["fraud-v1"] > 0);
  CHECK(batches_by_version["fraud-v2"] > 0);
  self->request(*router, std::chrono::seconds(5), model_status_atom::value)
    .receive([&](std::string& status) { CHECK(status.find("fraud-v2") == 0); },
             [&](caf::error& err) { FAIL(render(err)); });
  // A file that does not load is refused, and the current model stays.
  self->request(*router, std::chrono::seconds(5), model_load_atom::value,
                std::string{"/nonexistent.json"})
    .receive([&](std::string&) { FAIL("a missing model was accepted"); },
             [&](caf::error& err) { CHECK(render(err).find("cannot load model") != std::string::npos); });
  self->send_exit(*router, caf::exit_reason::user_shutdown);
  std::remove(v2.c_str());
  std::remove(v2.substr(0, v2.size() - 5).c_str());
}
