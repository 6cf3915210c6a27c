#pragma once

#include <cstddef>
#include <cstdint>
#include <deque>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <caf/expected.hpp>
#include <nlohmann/json.hpp>

namespace troupe::monitor {

/// One feature's training reference: bin edges (the training rows'
/// deciles, without repeats) and the share of training rows in each of the
/// `edges.size() + 1` bins `(-inf, e0], (e0, e1], ..., (e_last, inf)`.
struct feature_reference {
  std::string name;
  std::vector<double> edges;
  std::vector<double> shares;
};

/// A model's training reference (`MODEL.reference.json`, written by
/// scripts/train-fraud-model): what drift is measured against.
struct reference {
  std::string model;
  std::vector<feature_reference> features;
};

/// What the monitor reads of one record of the scored-event log.
struct scored_event {
  std::string transaction;
  double score = 0;
  /// "unknown" when the record names none.
  std::string model = "unknown";
  bool alert = false;
  std::optional<int64_t> scored_at;
  /// Whether the record has a `features` array, and per entry its value
  /// (`std::nullopt` for an entry that is not a number).
  bool has_features = false;
  std::vector<std::optional<double>> features;
  /// A shadow model's score (empty model: none).
  std::string shadow_model;
  double shadow_score = 0;
  bool shadow_alert = false;
};

/// Reads a scored event (the alerter's record) in one pass, without
/// building a JSON document: the monitor reads one per transaction. Empty
/// when the text is not a JSON object with a string `transaction` and a
/// number `score`; a value of the wrong type elsewhere counts as absent.
/// Of a key given twice, the last counts.
std::optional<scored_event> parse_scored_event(std::string_view text);

/// Parses a reference (schema 1); an error names what is wrong.
caf::expected<reference> parse_reference(const std::string& text);

/// Reads and parses the reference at `path`.
caf::expected<reference> load_reference(const std::string& path);

/// The bin of `x` for `edges`: how many edges are below it.
size_t bin_of(const std::vector<double>& edges, double x);

/// The population stability index of `counts` (live) against `expected`
/// shares: sum over bins of (a - e) ln(a / e), shares floored at 1e-4 so
/// that an empty bin counts and never divides by zero. 0 without counts.
double psi(const std::vector<double>& expected, const std::vector<uint64_t>& counts);

/// Scores are counted in this many bins of equal width over [0, 1].
constexpr size_t score_bins = 100;

/// The bin of a score (clamped to [0, 1]).
size_t score_bin(double score);

/// The area under the ROC curve from the score histograms of labelled
/// fraud (`pos`) and legitimate (`neg`) transactions: the chance that a
/// fraud scores above a legitimate one, a tie within a bin counting half.
/// 0.5 without both kinds.
double auc(const std::vector<uint64_t>& pos, const std::vector<uint64_t>& neg);

/// One model version's counts over a span of time. Every figure is a sum,
/// so spans, nodes and instances add up.
struct counts {
  uint64_t scored = 0;
  uint64_t alerts = 0;
  std::vector<uint64_t> scores = std::vector<uint64_t>(score_bins);
  /// Per feature of the reference, per bin.
  std::vector<std::vector<uint64_t>> features;
  uint64_t labelled = 0;
  /// Labelled transactions by label (fraud or not) and alert (raised or not).
  uint64_t tp = 0;
  uint64_t fp = 0;
  uint64_t fn = 0;
  uint64_t tn = 0;
  /// Score histograms of the labelled fraud and legitimate transactions.
  std::vector<uint64_t> pos = std::vector<uint64_t>(score_bins);
  std::vector<uint64_t> neg = std::vector<uint64_t>(score_bins);

  void add(const counts& other);
};

/// A sliding window of counts per model version: `slices` slices of equal
/// width covering `span_ms`; a slice older than the span is dropped.
class window {
public:
  explicit window(int64_t span_ms, size_t slices = 10);

  /// The counts of `model` in the slice of `now_ms`.
  counts& at(const std::string& model, int64_t now_ms);

  /// Every model's counts over the window ending at `now_ms`.
  std::map<std::string, counts> total(int64_t now_ms) const;

  int64_t span_ms() const {
    return span_ms_;
  }

private:
  struct slice {
    int64_t start = 0;
    std::map<std::string, counts> by_model;
  };
  int64_t span_ms_;
  int64_t width_ms_;
  std::deque<slice> slices_;
};

/// What a model version's window says: volumes, alert rate, drift per
/// feature, and quality against the labels.
struct quality {
  std::string model;
  uint64_t scored = 0;
  uint64_t alerts = 0;
  double alert_rate = 0;
  /// Mean score (bin centres).
  double mean_score = 0;
  /// PSI per feature of the reference (empty without one for the model).
  std::vector<std::pair<std::string, double>> psi;
  uint64_t labelled = 0;
  uint64_t labelled_fraud = 0;
  double precision = 0;
  double recall = 0;
  double auc = 0.5;
};

/// The quality of `c`, drift against `ref` (may be null).
quality summarize(const std::string& model, const counts& c, const reference* ref);

/// `{"model", "scored", "alerts", "alert_rate", "mean_score", "psi": {feature: v},
/// "labelled", "labelled_fraud", "precision", "recall", "auc"}`.
nlohmann::json to_json(const quality& q);

} // namespace troupe::monitor
