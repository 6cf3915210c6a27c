#include "actors/model_monitor/quality.hpp"

#include <algorithm>
#include <cmath>
#include <fstream>
#include <sstream>
#include <type_traits>

#include "runtime/core/error.hpp"

namespace troupe::monitor {

namespace {

/// The SAX handler behind parse_scored_event: keeps the top-level keys it
/// knows, the `features` array's numbers and the `shadow` object's keys,
/// and walks past everything else.
struct scored_event_reader {
  using json = nlohmann::json;
  using number_integer_t = json::number_integer_t;
  using number_unsigned_t = json::number_unsigned_t;
  using number_float_t = json::number_float_t;
  using string_t = json::string_t;
  using binary_t = json::binary_t;

  scored_event ev;
  bool has_transaction = false;
  bool has_score = false;
  bool has_shadow_model = false;
  bool has_shadow_score = false;
  /// Nesting: 1 inside the top-level object, 2 inside one of its values.
  int depth = 0;
  bool top_is_object = false;
  /// The key the next value at depth 1 (or inside `shadow`, at depth 2) is for.
  std::string current;
  /// Where the walk is: the `features` array (at depth 2), the `shadow`
  /// object (at depth 2), or neither.
  enum { elsewhere, in_features, in_shadow } where = elsewhere;

  /// A scalar at the current position.
  template <class T>
  void scalar(const T& x) {
    if (depth == 1) {
      top(x);
    } else if (depth == 2 && where == in_features) {
      if constexpr (std::is_arithmetic_v<T> && !std::is_same_v<T, bool>)
        ev.features.emplace_back(static_cast<double>(x));
      else
        ev.features.emplace_back(std::nullopt);
    } else if (depth == 2 && where == in_shadow) {
      shadow(x);
    }
  }

  template <class T>
  void top(const T& x) {
    if constexpr (std::is_same_v<T, std::string>) {
      if (current == "transaction") {
        ev.transaction = x;
        has_transaction = true;
      } else if (current == "model") {
        ev.model = x;
      } else {
        absent();
      }
    } else if constexpr (std::is_same_v<T, bool>) {
      if (current == "alert")
        ev.alert = x;
      else
        absent();
    } else if constexpr (std::is_arithmetic_v<T>) {
      if (current == "score") {
        ev.score = static_cast<double>(x);
        has_score = true;
      } else if (current == "scored_at") {
        // Milliseconds; a value no int64_t holds counts as absent.
        if constexpr (std::is_floating_point_v<T>) {
          if (std::isfinite(x) && x >= -9.2e18 && x <= 9.2e18)
            ev.scored_at = static_cast<int64_t>(x);
          else
            ev.scored_at.reset();
        } else if constexpr (std::is_unsigned_v<T>) {
          if (x <= static_cast<T>(INT64_MAX))
            ev.scored_at = static_cast<int64_t>(x);
          else
            ev.scored_at.reset();
        } else {
          ev.scored_at = static_cast<int64_t>(x);
        }
      } else {
        absent();
      }
    } else {
      absent();
    }
  }

  /// A value of the wrong type (or null) under a key the monitor reads.
  void absent() {
    if (current == "transaction")
      has_transaction = false;
    else if (current == "score")
      has_score = false;
    else if (current == "model")
      ev.model = "unknown";
    else if (current == "alert")
      ev.alert = false;
    else if (current == "scored_at")
      ev.scored_at.reset();
    else if (current == "features") {
      ev.features.clear();
      ev.has_features = false;
    }
    else if (current == "shadow")
      has_shadow_model = has_shadow_score = false;
  }

  template <class T>
  void shadow(const T& x) {
    if constexpr (std::is_same_v<T, std::string>) {
      if (current == "model") {
        ev.shadow_model = x;
        has_shadow_model = true;
      } else if (current == "score") {
        has_shadow_score = false;
      }
    } else if constexpr (std::is_same_v<T, bool>) {
      if (current == "alert")
        ev.shadow_alert = x;
    } else if constexpr (std::is_arithmetic_v<T>) {
      if (current == "score") {
        ev.shadow_score = static_cast<double>(x);
        has_shadow_score = true;
      }
    } else if (current == "model") {
      has_shadow_model = false;
    } else if (current == "score") {
      has_shadow_score = false;
    }
  }

  /// An object or array starting inside a value at depth 1: as a features
  /// entry or a shadow value, it is not the number or string expected.
  void nested() {
    if (depth == 2 && where == in_features)
      ev.features.emplace_back(std::nullopt);
    else if (depth == 2 && where == in_shadow)
      shadow(nullptr);
  }

  bool null() {
    scalar(nullptr);
    return true;
  }
  bool boolean(bool x) {
    scalar(x);
    return true;
  }
  bool number_integer(number_integer_t x) {
    scalar(x);
    return true;
  }
  bool number_unsigned(number_unsigned_t x) {
    scalar(x);
    return true;
  }
  bool number_float(number_float_t x, const string_t&) {
    scalar(x);
    return true;
  }
  bool string(string_t& x) {
    scalar(x);
    return true;
  }
  bool binary(binary_t&) {
    return true; // JSON text has none
  }
  bool start_object(std::size_t) {
    if (depth == 0) {
      top_is_object = true;
    } else if (depth == 1) {
      if (current == "shadow") {
        where = in_shadow;
        ev.shadow_model.clear();
        ev.shadow_score = 0;
        ev.shadow_alert = false;
        has_shadow_model = has_shadow_score = false;
      } else {
        absent();
      }
    } else {
      nested();
    }
    ++depth;
    return true;
  }
  bool key(string_t& k) {
    if (depth == 1 || (depth == 2 && where == in_shadow))
      current = std::move(k);
    return true;
  }
  bool end_object() {
    if (--depth == 1)
      where = elsewhere;
    return true;
  }
  bool start_array(std::size_t) {
    if (depth == 1) {
      if (current == "features") {
        where = in_features;
        ev.has_features = true;
        ev.features.clear();
        ev.features.reserve(16);
      } else {
        absent();
      }
    } else {
      nested();
    }
    ++depth;
    return top_is_object; // a top-level array is no scored event
  }
  bool end_array() {
    if (--depth == 1)
      where = elsewhere;
    return true;
  }
  bool parse_error(std::size_t, const std::string&, const nlohmann::detail::exception&) {
    return false;
  }
};

} // namespace

std::optional<scored_event> parse_scored_event(std::string_view text) {
  scored_event_reader r;
  if (!nlohmann::json::sax_parse(text, &r) || !r.top_is_object || !r.has_transaction
      || !r.has_score)
    return std::nullopt;
  if (!r.has_shadow_model || !r.has_shadow_score)
    r.ev.shadow_model.clear();
  return std::move(r.ev);
}

caf::expected<reference> parse_reference(const std::string& text) {
  auto bad = [](const std::string& why) {
    return caf::make_error(ec::invalid_argument, "model reference: " + why);
  };
  auto j = nlohmann::json::parse(text, nullptr, false);
  if (j.is_discarded() || !j.is_object())
    return bad("not a JSON object");
  if (j.value("schema", 0) != 1)
    return bad("schema must be 1");
  if (!j.contains("model") || !j["model"].is_string())
    return bad("\"model\" must be a string");
  if (!j.contains("features") || !j["features"].is_array())
    return bad("\"features\" must be an array");
  reference r;
  r.model = j["model"].get<std::string>();
  for (auto& f : j["features"]) {
    feature_reference x;
    if (!f.is_object() || !f.contains("name") || !f["name"].is_string()
        || !f.contains("edges") || !f["edges"].is_array() || !f.contains("shares")
        || !f["shares"].is_array())
      return bad("each feature needs \"name\", \"edges\" and \"shares\"");
    x.name = f["name"].get<std::string>();
    for (auto& e : f["edges"]) {
      if (!e.is_number())
        return bad("feature " + x.name + ": edges must be numbers");
      x.edges.push_back(e.get<double>());
    }
    if (!std::is_sorted(x.edges.begin(), x.edges.end()))
      return bad("feature " + x.name + ": edges must be ascending");
    for (auto& s : f["shares"]) {
      if (!s.is_number() || s.get<double>() < 0)
        return bad("feature " + x.name + ": shares must be numbers, at least 0");
      x.shares.push_back(s.get<double>());
    }
    if (x.shares.size() != x.edges.size() + 1)
      return bad("feature " + x.name + ": one share per bin (edges + 1)");
    r.features.push_back(std::move(x));
  }
  return r;
}

caf::expected<reference> load_reference(const std::string& path) {
  std::ifstream in{path};
  if (!in)
    return caf::make_error(ec::invalid_argument, "cannot read the model reference '" + path + "'");
  std::stringstream ss;
  ss << in.rdbuf();
  return parse_reference(ss.str());
}

size_t bin_of(const std::vector<double>& edges, double x) {
  return static_cast<size_t>(std::lower_bound(edges.begin(), edges.end(), x) - edges.begin());
}

double psi(const std::vector<double>& expected, const std::vector<uint64_t>& counts) {
  uint64_t n = 0;
  for (auto c : counts)
    n += c;
  if (n == 0)
    return 0;
  constexpr double floor = 1e-4;
  double result = 0;
  for (size_t i = 0; i < expected.size() && i < counts.size(); ++i) {
    auto e = std::max(expected[i], floor);
    auto a = std::max(static_cast<double>(counts[i]) / static_cast<double>(n), floor);
    result += (a - e) * std::log(a / e);
  }
  return result;
}

size_t score_bin(double score) {
  if (!(score > 0))
    return 0;
  auto b = static_cast<size_t>(score * score_bins);
  return std::min(b, score_bins - 1);
}

double auc(const std::vector<uint64_t>& pos, const std::vector<uint64_t>& neg) {
  double p = 0, n = 0;
  for (auto x : pos)
    p += static_cast<double>(x);
  for (auto x : neg)
    n += static_cast<double>(x);
  if (p == 0 || n == 0)
    return 0.5;
  // For each bin, the fraud there beats every legitimate one in lower bins
  // and ties (half) with those in the same bin.
  double below = 0, wins = 0;
  for (size_t i = 0; i < pos.size() && i < neg.size(); ++i) {
    wins += static_cast<double>(pos[i]) * (below + 0.5 * static_cast<double>(neg[i]));
    below += static_cast<double>(neg[i]);
  }
  return wins / (p * n);
}

void counts::add(const counts& o) {
  scored += o.scored;
  alerts += o.alerts;
  auto sum = [](std::vector<uint64_t>& into, const std::vector<uint64_t>& from) {
    if (into.size() < from.size())
      into.resize(from.size());
    for (size_t i = 0; i < from.size(); ++i)
      into[i] += from[i];
  };
  sum(scores, o.scores);
  if (features.size() < o.features.size())
    features.resize(o.features.size());
  for (size_t i = 0; i < o.features.size(); ++i)
    sum(features[i], o.features[i]);
  labelled += o.labelled;
  tp += o.tp;
  fp += o.fp;
  fn += o.fn;
  tn += o.tn;
  sum(pos, o.pos);
  sum(neg, o.neg);
}

window::window(int64_t span_ms, size_t slices)
  : span_ms_(span_ms), width_ms_(std::max<int64_t>(1, span_ms / static_cast<int64_t>(slices))) {
}

counts& window::at(const std::string& model, int64_t now_ms) {
  auto start = now_ms - now_ms % width_ms_;
  if (slices_.empty() || slices_.back().start < start)
    slices_.push_back(slice{start, {}});
  while (!slices_.empty() && slices_.front().start + span_ms_ <= now_ms - width_ms_)
    slices_.pop_front();
  // A clock that went back counts in the newest slice.
  return slices_.back().by_model[model];
}

std::map<std::string, counts> window::total(int64_t now_ms) const {
  std::map<std::string, counts> result;
  for (auto& s : slices_) {
    // The slices that overlap (now - span, now].
    if (s.start + width_ms_ <= now_ms - span_ms_)
      continue;
    for (auto& [model, c] : s.by_model)
      result[model].add(c);
  }
  return result;
}

quality summarize(const std::string& model, const counts& c, const reference* ref) {
  quality q;
  q.model = model;
  q.scored = c.scored;
  q.alerts = c.alerts;
  q.alert_rate = c.scored ? static_cast<double>(c.alerts) / static_cast<double>(c.scored) : 0;
  double total = 0;
  for (size_t i = 0; i < c.scores.size(); ++i)
    total += static_cast<double>(c.scores[i]) * (static_cast<double>(i) + 0.5) / score_bins;
  q.mean_score = c.scored ? total / static_cast<double>(c.scored) : 0;
  if (ref)
    for (size_t i = 0; i < ref->features.size(); ++i)
      q.psi.emplace_back(ref->features[i].name,
                         i < c.features.size() ? psi(ref->features[i].shares, c.features[i])
                                               : 0.0);
  q.labelled = c.labelled;
  q.labelled_fraud = c.tp + c.fn;
  q.precision = c.tp + c.fp ? static_cast<double>(c.tp) / static_cast<double>(c.tp + c.fp) : 0;
  q.recall = c.tp + c.fn ? static_cast<double>(c.tp) / static_cast<double>(c.tp + c.fn) : 0;
  q.auc = auc(c.pos, c.neg);
  return q;
}

nlohmann::json to_json(const quality& q) {
  nlohmann::json psi = nlohmann::json::object();
  for (auto& [name, v] : q.psi)
    psi[name] = v;
  return {{"model", q.model},
          {"scored", q.scored},
          {"alerts", q.alerts},
          {"alert_rate", q.alert_rate},
          {"mean_score", q.mean_score},
          {"psi", psi},
          {"labelled", q.labelled},
          {"labelled_fraud", q.labelled_fraud},
          {"precision", q.precision},
          {"recall", q.recall},
          {"auc", q.auc}};
}

} // namespace troupe::monitor
