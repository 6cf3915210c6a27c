#include "actors/model_trainer/training.hpp"

#include <algorithm>
#include <cmath>
#include <fstream>
#include <limits>
#include <numeric>
#include <sstream>

#include <openssl/sha.h>
#include <xgboost/c_api.h>

#include "runtime/core/error.hpp"

namespace troupe::trainer {

void dataset::add(const std::vector<float>& row, bool fraud) {
  rows.insert(rows.end(), row.begin(), row.end());
  labels.push_back(fraud ? 1.0f : 0.0f);
}

double exact_auc(const std::vector<float>& scores, const std::vector<float>& labels) {
  std::vector<size_t> order(scores.size());
  std::iota(order.begin(), order.end(), 0);
  std::sort(order.begin(), order.end(), [&](size_t a, size_t b) { return scores[a] < scores[b]; });
  // Mann-Whitney: the ranks of the frauds (ties share their mean rank).
  double pos = 0, neg = 0, rank_sum = 0;
  for (size_t i = 0; i < order.size();) {
    size_t j = i;
    while (j < order.size() && scores[order[j]] == scores[order[i]])
      ++j;
    double mean_rank = (static_cast<double>(i) + static_cast<double>(j) + 1) / 2;
    for (size_t k = i; k < j; ++k)
      if (labels[order[k]] > 0.5) {
        rank_sum += mean_rank;
        ++pos;
      } else {
        ++neg;
      }
    i = j;
  }
  if (pos == 0 || neg == 0)
    return 0.5;
  return (rank_sum - pos * (pos + 1) / 2) / (pos * neg);
}

evaluation evaluate(const std::vector<float>& scores, const std::vector<float>& labels,
                    double threshold) {
  evaluation e;
  e.rows = labels.size();
  size_t tp = 0, fp = 0, fn = 0;
  for (size_t i = 0; i < labels.size(); ++i) {
    bool fraud = labels[i] > 0.5;
    bool alert = scores[i] > threshold;
    e.fraud += fraud ? 1 : 0;
    tp += fraud && alert;
    fp += !fraud && alert;
    fn += fraud && !alert;
  }
  e.precision = tp + fp ? static_cast<double>(tp) / static_cast<double>(tp + fp) : 0;
  e.recall = tp + fn ? static_cast<double>(tp) / static_cast<double>(tp + fn) : 0;
  e.auc = exact_auc(scores, labels);
  return e;
}

nlohmann::json to_json(const evaluation& e) {
  return {{"rows", e.rows},
          {"fraud", e.fraud},
          {"auc", e.auc},
          {"precision", e.precision},
          {"recall", e.recall}};
}

namespace {

caf::error xgb_error(const std::string& what) {
  std::string last = XGBGetLastError();
  return caf::make_error(ec::invalid_argument, what + ": " + last.substr(0, last.find('\n')));
}

} // namespace

caf::error train_model(const dataset& train, const params& p, const std::string& version,
                       const std::vector<std::string>& feature_names, const std::string& path) {
  if (train.size() == 0 || train.rows.size() != train.size() * train.columns)
    return caf::make_error(ec::invalid_argument, "no training rows");
  DMatrixHandle m = nullptr;
  if (XGDMatrixCreateFromMat(train.rows.data(), train.size(), train.columns,
                             std::numeric_limits<float>::quiet_NaN(), &m)
      != 0)
    return xgb_error("cannot build the training matrix");
  BoosterHandle b = nullptr;
  auto fail = [&](const std::string& what) {
    auto err = xgb_error(what);
    if (b)
      XGBoosterFree(b);
    XGDMatrixFree(m);
    return err;
  };
  if (XGDMatrixSetFloatInfo(m, "label", train.labels.data(), train.size()) != 0)
    return fail("cannot set the labels");
  if (XGBoosterCreate(&m, 1, &b) != 0)
    return fail("cannot create a booster");
  const std::vector<std::pair<std::string, std::string>> settings{
    {"objective", "binary:logistic"},
    {"eval_metric", "aucpr"},
    {"max_depth", std::to_string(p.max_depth)},
    {"eta", std::to_string(p.eta)},
    {"subsample", "0.9"},
    {"colsample_bytree", "0.9"},
    {"min_child_weight", "2"},
    {"nthread", "1"},
    {"seed", std::to_string(p.seed)},
    {"tree_method", "hist"}};
  for (auto& [k, v] : settings)
    if (XGBoosterSetParam(b, k.c_str(), v.c_str()) != 0)
      return fail("cannot set " + k);
  for (int i = 0; i < p.rounds; ++i)
    if (XGBoosterUpdateOneIter(b, i, m) != 0)
      return fail("training round " + std::to_string(i) + " failed");
  std::string names;
  for (auto& n : feature_names)
    names += (names.empty() ? "" : ",") + n;
  if (XGBoosterSetAttr(b, "version", version.c_str()) != 0
      || XGBoosterSetAttr(b, "features", names.c_str()) != 0)
    return fail("cannot name the model");
  if (XGBoosterSaveModel(b, path.c_str()) != 0)
    return fail("cannot save the model to '" + path + "'");
  XGBoosterFree(b);
  XGDMatrixFree(m);
  return caf::none;
}

nlohmann::json reference_of(const dataset& train, const std::string& version,
                            const std::vector<std::string>& feature_names) {
  nlohmann::json features = nlohmann::json::array();
  auto n = train.size();
  for (size_t c = 0; c < train.columns && c < feature_names.size(); ++c) {
    std::vector<double> col(n);
    for (size_t r = 0; r < n; ++r)
      col[r] = train.rows[r * train.columns + c];
    std::sort(col.begin(), col.end());
    std::vector<double> edges;
    for (int q = 1; q < 10 && n > 0; ++q) {
      // numpy's default quantile: linear between the closest ranks.
      auto at = static_cast<double>(n - 1) * q / 10;
      auto lo = static_cast<size_t>(std::floor(at));
      auto hi = std::min(lo + 1, n - 1);
      auto v = static_cast<double>(static_cast<float>(col[lo] + (col[hi] - col[lo]) * (at - lo)));
      if (edges.empty() || v > edges.back())
        edges.push_back(v);
    }
    std::vector<double> shares(edges.size() + 1);
    for (auto x : col)
      shares[static_cast<size_t>(std::lower_bound(edges.begin(), edges.end(), x) - edges.begin())]
        += 1.0 / static_cast<double>(n);
    features.push_back({{"name", feature_names[c]}, {"edges", edges}, {"shares", shares}});
  }
  return {{"schema", 1}, {"model", version}, {"rows", n}, {"features", features}};
}

std::string sha256_file(const std::string& path) {
  std::ifstream in{path, std::ios::binary};
  if (!in)
    return {};
  std::stringstream ss;
  ss << in.rdbuf();
  auto data = ss.str();
  unsigned char digest[SHA256_DIGEST_LENGTH];
  SHA256(reinterpret_cast<const unsigned char*>(data.data()), data.size(), digest);
  static const char* hex = "0123456789abcdef";
  std::string out;
  for (auto d : digest) {
    out += hex[d >> 4];
    out += hex[d & 15];
  }
  return out;
}

} // namespace troupe::trainer
