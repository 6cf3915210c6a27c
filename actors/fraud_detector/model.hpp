#pragma once

#include <cstddef>
#include <memory>
#include <string>
#include <vector>

#include <caf/expected.hpp>

namespace troupe::fraud {

/// The names of the model's features, in the order of its feature vector
/// (defined in scripts/fraud/fraud_data.py, computed by the
/// feature-enricher).
const std::vector<std::string>& feature_names();

/// One score: the fraud probability, the model that gave it, and the
/// features that pushed it most (largest absolute SHAP contributions, in
/// log-odds), so that a reader can see why.
struct score {
  float probability = 0;
  std::string model_version;
  /// (feature name, contribution), largest magnitude first.
  std::vector<std::pair<std::string, float>> top_features;
};

/// An XGBoost model loaded through libxgboost's C API.
///
/// Built by `make()`, which returns an error for a missing or invalid file.
/// Not thread-safe: each fraud-detector worker owns its own (a worker is one
/// actor, so never used from two threads at once). Prediction uses one
/// thread and never allocates per feature.
class model {
public:
  /// Loads the JSON model at `path`. Its version is the booster attribute
  /// `version` (written by scripts/train-fraud-model), else the file name.
  static caf::expected<std::unique_ptr<model>> make(const std::string& path);

  ~model();

  model(const model&) = delete;
  model& operator=(const model&) = delete;

  const std::string& version() const {
    return version_;
  }

  const std::string& path() const {
    return path_;
  }

  /// Probabilities for `n` rows of `feature_names().size()` values each
  /// (row-major).
  caf::expected<std::vector<float>> predict(const std::vector<float>& rows, size_t n) const;

  /// Scores `n` rows with the `top` largest contributions of each row whose
  /// probability is over `above` (the others get none: computing them took
  /// most of the scoring time, and only alerts show them).
  caf::expected<std::vector<score>> explain(const std::vector<float>& rows, size_t n,
                                            size_t top = 3, double above = -1) const;

private:
  model(void* handle, std::string path, std::string version);

  void* handle_;
  std::string path_;
  std::string version_;
};

} // namespace troupe::fraud
