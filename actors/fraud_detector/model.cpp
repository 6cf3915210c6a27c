#include "actors/fraud_detector/model.hpp"

#include <algorithm>
#include <cmath>
#include <limits>

#include <xgboost/c_api.h>

#include "runtime/core/error.hpp"

namespace troupe::fraud {

namespace {

caf::error xgb_error(const std::string& what) {
  // XGBoost appends a native stack trace after the first line: keep the
  // message, not the trace.
  std::string last = XGBGetLastError();
  return caf::make_error(ec::invalid_argument, what + ": " + last.substr(0, last.find('\n')));
}

/// A DMatrix owned for the length of one call.
struct matrix {
  DMatrixHandle h = nullptr;
  ~matrix() {
    if (h)
      XGDMatrixFree(h);
  }
};

} // namespace

const std::vector<std::string>& feature_names() {
  static const std::vector<std::string> names{
    "amount",          "tx_1h",       "tx_24h",      "amount_z", "merchants_24h",
    "secs_since_last", "new_country", "new_device",  "prior_tx", "hour_of_day",
    "category"};
  return names;
}

model::model(void* handle, std::string path, std::string version)
  : handle_(handle), path_(std::move(path)), version_(std::move(version)) {
}

model::~model() {
  XGBoosterFree(handle_);
}

caf::expected<std::unique_ptr<model>> model::make(const std::string& path) {
  BoosterHandle h = nullptr;
  if (XGBoosterCreate(nullptr, 0, &h) != 0)
    return xgb_error("cannot create a booster");
  if (XGBoosterLoadModel(h, path.c_str()) != 0) {
    auto err = xgb_error("cannot load model '" + path + "'");
    XGBoosterFree(h);
    return err;
  }
  XGBoosterSetParam(h, "nthread", "1");
  bst_ulong n = 0;
  if (XGBoosterGetNumFeature(h, &n) != 0 || n != feature_names().size()) {
    XGBoosterFree(h);
    return caf::make_error(ec::invalid_argument,
                           "model '" + path + "' expects " + std::to_string(n)
                             + " features, the feature-enricher gives "
                             + std::to_string(feature_names().size()));
  }
  const char* attr = nullptr;
  int found = 0;
  std::string version;
  if (XGBoosterGetAttr(h, "version", &attr, &found) == 0 && found && attr)
    version = attr;
  else
    version = path.substr(path.find_last_of('/') + 1);
  std::unique_ptr<model> result{new model(h, path, std::move(version))};
  // XGBoost configures its predictor on the first prediction (about 2 ms
  // here, 15 times a later one); a loaded model pays it now, so that the
  // first batch of transactions does not.
  std::vector<float> row(feature_names().size(), 0.0f);
  if (auto warm = result->explain(row, 1, 1); !warm)
    return warm.error();
  return result;
}

caf::expected<std::vector<float>> model::predict(const std::vector<float>& rows,
                                                 size_t n) const {
  auto cols = feature_names().size();
  if (rows.size() != n * cols)
    return caf::make_error(ec::invalid_argument, "predict: rows do not match the feature count");
  matrix m;
  if (XGDMatrixCreateFromMat(rows.data(), n, cols, std::numeric_limits<float>::quiet_NaN(), &m.h)
      != 0)
    return xgb_error("cannot build a DMatrix");
  bst_ulong len = 0;
  const float* out = nullptr;
  if (XGBoosterPredict(handle_, m.h, 0, 0, 0, &len, &out) != 0)
    return xgb_error("prediction failed");
  return std::vector<float>(out, out + len);
}

caf::expected<std::vector<score>> model::explain(const std::vector<float>& rows, size_t n,
                                                 size_t top, double above) const {
  auto probs = predict(rows, n);
  if (!probs)
    return probs.error();
  auto cols = feature_names().size();
  std::vector<score> result(n);
  // The rows to explain: those over `above`, in order.
  std::vector<size_t> picked;
  std::vector<float> picked_rows;
  for (size_t r = 0; r < n; ++r) {
    result[r].probability = (*probs)[r];
    result[r].model_version = version_;
    if ((*probs)[r] > above) {
      picked.push_back(r);
      picked_rows.insert(picked_rows.end(), rows.begin() + r * cols,
                         rows.begin() + (r + 1) * cols);
    }
  }
  if (picked.empty() || top == 0)
    return result;
  matrix m;
  if (XGDMatrixCreateFromMat(picked_rows.data(), picked.size(), cols,
                             std::numeric_limits<float>::quiet_NaN(), &m.h)
      != 0)
    return xgb_error("cannot build a DMatrix");
  bst_ulong len = 0;
  const float* contribs = nullptr;
  // Options 4 | 8: per-feature contributions, cols + 1 values per row (the
  // last: bias), by the path-based approximation (Saabas): each tree adds
  // the change of the expected value along the row's path. With exact
  // TreeSHAP (4 alone) the pipeline ran 1,193 transactions/s, with this
  // 2,935 (scripts/bench-pipeline 30000 5000 6).
  if (XGBoosterPredict(handle_, m.h, 4 | 8, 0, 0, &len, &contribs) != 0)
    return xgb_error("contributions failed");
  if (len != picked.size() * (cols + 1))
    return caf::make_error(ec::invalid_argument, "unexpected contribution count");
  std::vector<size_t> order(cols);
  for (size_t k = 0; k < picked.size(); ++k) {
    auto& s = result[picked[k]];
    auto row = contribs + k * (cols + 1);
    for (size_t i = 0; i < cols; ++i)
      order[i] = i;
    auto shown = std::min(top, cols);
    std::partial_sort(order.begin(), order.begin() + shown, order.end(),
                      [&](size_t a, size_t b) { return std::fabs(row[a]) > std::fabs(row[b]); });
    for (size_t i = 0; i < shown; ++i)
      s.top_features.emplace_back(feature_names()[order[i]], row[order[i]]);
  }
  return result;
}

} // namespace troupe::fraud
