#pragma once

#include <cstddef>
#include <string>
#include <vector>

#include <caf/expected.hpp>
#include <nlohmann/json.hpp>

namespace troupe::trainer {

/// A labelled training set: `rows.size() == labels.size() * columns`.
struct dataset {
  size_t columns = 0;
  std::vector<float> rows;
  std::vector<float> labels;
  size_t size() const {
    return labels.size();
  }
  void add(const std::vector<float>& row, bool fraud);
};

/// How a model does on a labelled set at a threshold.
struct evaluation {
  size_t rows = 0;
  size_t fraud = 0;
  double auc = 0.5;
  double precision = 0;
  double recall = 0;
};

/// The exact AUC of `scores` against `labels` (ties count half).
double exact_auc(const std::vector<float>& scores, const std::vector<float>& labels);

evaluation evaluate(const std::vector<float>& scores, const std::vector<float>& labels,
                    double threshold);

nlohmann::json to_json(const evaluation& e);

/// XGBoost's parameters for a fraud model (those of scripts/train-fraud-model).
struct params {
  int rounds = 150;
  int max_depth = 5;
  double eta = 0.15;
  int seed = 7;
};

/// Trains a model on `train` with libxgboost's C API (one thread,
/// deterministic), names it `version` (booster attributes `version` and
/// `features`), and saves it as JSON at `path`.
caf::error train_model(const dataset& train, const params& p, const std::string& version,
                       const std::vector<std::string>& feature_names, const std::string& path);

/// The training reference of `train` (per feature, the deciles as bin
/// edges and each bin's share), as the model-monitor reads it.
nlohmann::json reference_of(const dataset& train, const std::string& version,
                            const std::vector<std::string>& feature_names);

/// The SHA-256 of a file, hex; empty when it cannot be read.
std::string sha256_file(const std::string& path);

} // namespace troupe::trainer
