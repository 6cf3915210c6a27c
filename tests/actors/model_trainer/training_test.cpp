// The model-trainer's parts: AUC, evaluation, training with libxgboost's C
// API, the training reference, the checksum.

#include "actors/model_trainer/training.hpp"

#include <cstdio>
#include <fstream>
#include <random>

#include <unistd.h>

#include <doctest/doctest.h>

#include "actors/fraud_detector/model.hpp"

using namespace troupe;
using namespace troupe::trainer;

TEST_CASE("the exact AUC counts the pairs a fraud outscores, ties half") {
  CHECK(exact_auc({0.1f, 0.4f, 0.35f, 0.8f}, {0, 0, 1, 1}) == doctest::Approx(0.75));
  CHECK(exact_auc({0.5f, 0.5f}, {0, 1}) == doctest::Approx(0.5));
  CHECK(exact_auc({0.9f, 0.1f}, {1, 0}) == doctest::Approx(1.0));
  CHECK(exact_auc({0.9f, 0.1f}, {1, 1}) == 0.5); // one class only
  auto e = evaluate({0.9f, 0.8f, 0.2f, 0.7f, 0.1f}, {1, 0, 1, 1, 0}, 0.5);
  CHECK(e.rows == 5);
  CHECK(e.fraud == 3);
  CHECK(e.precision == doctest::Approx(2.0 / 3));
  CHECK(e.recall == doctest::Approx(2.0 / 3));
}

TEST_CASE("a model trained with the C API learns a pattern, saves its version, and loads as the fraud-detector's") {
  std::mt19937 rng{3};
  std::uniform_real_distribution<float> u{0, 10};
  auto cols = fraud::feature_names().size();
  dataset train, test;
  train.columns = test.columns = cols;
  for (int i = 0; i < 3000; ++i) {
    std::vector<float> row(cols);
    for (auto& x : row)
      x = u(rng);
    // Fraud: a high first feature and a low third one.
    bool fraud = row[0] > 7 && row[2] < 4;
    (i % 5 == 0 ? test : train).add(row, fraud);
  }
  auto path = std::string{"/tmp/troupe-training-test-"} + std::to_string(::getpid()) + ".json";
  params p;
  p.rounds = 40;
  REQUIRE(!train_model(train, p, "fraud-test-1", fraud::feature_names(), path));
  auto m = fraud::model::make(path);
  REQUIRE_MESSAGE(m, "the trained model loads");
  CHECK((*m)->version() == "fraud-test-1");
  auto scores = (*m)->predict(test.rows, test.size());
  REQUIRE(scores);
  auto e = evaluate(*scores, test.labels, 0.5);
  CHECK(e.auc > 0.99);
  CHECK(e.recall > 0.9);
  // Deterministic: the same data and parameters give the same file.
  auto again = path + ".again.json";
  REQUIRE(!train_model(train, p, "fraud-test-1", fraud::feature_names(), again));
  CHECK(sha256_file(path) == sha256_file(again));
  CHECK(sha256_file(path).size() == 64);
  std::remove(path.c_str());
  std::remove(again.c_str());
  dataset empty;
  empty.columns = cols;
  CHECK(train_model(empty, p, "x", fraud::feature_names(), path));
}

TEST_CASE("the training reference has the deciles as edges and each bin's share") {
  dataset d;
  d.columns = 1;
  for (int i = 1; i <= 100; ++i)
    d.add({static_cast<float>(i)}, false);
  auto r = reference_of(d, "v", {"amount"});
  CHECK(r["model"] == "v");
  auto& f = r["features"][0];
  CHECK(f["name"] == "amount");
  REQUIRE(f["edges"].size() == 9);
  // numpy.quantile(1..100, 0.1) = 10.9
  CHECK(f["edges"][0].get<double>() == doctest::Approx(10.9).epsilon(1e-6));
  double sum = 0;
  for (auto& s : f["shares"])
    sum += s.get<double>();
  CHECK(sum == doctest::Approx(1.0));
  CHECK(f["shares"][0].get<double>() == doctest::Approx(0.10));
  // A constant column: one edge, everything in its first bin.
  dataset c;
  c.columns = 1;
  for (int i = 0; i < 10; ++i)
    c.add({1.0f}, false);
  auto rc = reference_of(c, "v", {"new_device"});
  CHECK(rc["features"][0]["edges"].size() == 1);
  CHECK(rc["features"][0]["shares"][0].get<double>() == doctest::Approx(1.0));
}

TEST_CASE("the checksum of a file is its SHA-256, and empty for a missing one") {
  auto path = std::string{"/tmp/troupe-sha-test-"} + std::to_string(::getpid());
  std::ofstream{path} << "abc";
  CHECK(sha256_file(path) == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
  std::remove(path.c_str());
  CHECK(sha256_file(path).empty());
}
