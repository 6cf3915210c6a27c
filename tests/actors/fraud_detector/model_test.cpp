// The fraud model through libxgboost's C API, against python3-xgboost's own
// predictions for the same rows (scripts/fraud/reference_scores.py).

#include "actors/fraud_detector/model.hpp"

#include <cmath>
#include <cstdlib>
#include <fstream>

#include <doctest/doctest.h>
#include <nlohmann/json.hpp>
#include <unistd.h>

#include "runtime/core/error.hpp"

using namespace troupe;

namespace {

const std::string model_path = std::string{TROUPE_SOURCE_DIR} + "/actors/fraud_detector/model/fraud.json";

/// Rows and python3-xgboost's predictions for them (seed, users).
nlohmann::json reference(int seed, int users) {
  char tmpl[] = "/tmp/troupe-scores-XXXXXX";
  auto fd = mkstemp(tmpl);
  REQUIRE(fd >= 0);
  close(fd);
  std::string out = tmpl;
  auto cmd = "cd " + std::string{TROUPE_SOURCE_DIR} + "/scripts/fraud && /usr/bin/python3 "
             + "reference_scores.py " + model_path + " " + std::to_string(seed) + " "
             + std::to_string(users) + " " + out;
  REQUIRE(std::system(cmd.c_str()) == 0);
  std::ifstream in{out};
  auto j = nlohmann::json::parse(in);
  std::remove(out.c_str());
  return j;
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
