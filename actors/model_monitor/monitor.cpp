#include "actors/model_monitor/monitor.hpp"

#include <algorithm>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <unordered_map>

#include <caf/all.hpp>
#include <nlohmann/json.hpp>

#include "actors/fraud_detector/model.hpp"
#include "actors/fraud_detector/rollout.hpp"
#include "actors/model_monitor/quality.hpp"
#include "runtime/core/duration.hpp"
#include "runtime/core/error.hpp"
#include "runtime/core/messages.hpp"
#include "runtime/core/registry.hpp"
#include "runtime/kafka/client.hpp"
#include "runtime/kafka/dead_letter.hpp"

using namespace std::chrono_literals;

namespace troupe::monitor {

namespace {

/// A score waiting for its label (and the candidate's beside it, in shadow).
struct waiting_score {
  std::string model;
  double score = 0;
  bool alert = false;
  int64_t at = 0;
  int64_t scored_at = 0;
  std::string shadow_model;
  double shadow_score = 0;
  bool shadow_alert = false;
};

/// The training reference beside a model file: `DIR/reference.json` for a
/// registered `DIR/model.json`, else `NAME.reference.json` for `NAME.json`.
std::string reference_beside(const std::string& model_path) {
  auto slash = model_path.rfind('/');
  auto dir = slash == std::string::npos ? std::string{} : model_path.substr(0, slash + 1);
  auto file = model_path.substr(dir.size());
  if (file == "model.json")
    return dir + "reference.json";
  auto dot = file.rfind(".json");
  return dir + (dot == std::string::npos ? file : file.substr(0, dot)) + ".reference.json";
}

/// A label that came before its score.
struct waiting_label {
  bool fraud = false;
  int64_t at = 0;
};

/// Why a label is refused (empty: it is good), and what it says.
std::string check_label(const std::string& value, std::string& id, bool& fraud) {
  if (value.size() > 4096)
    return "too large: " + std::to_string(value.size()) + " bytes (limit 4096)";
  auto j = nlohmann::json::parse(value, nullptr, false);
  if (j.is_discarded())
    return "not valid JSON";
  if (!j.is_object())
    return "not a JSON object";
  auto schema = j.find("schema");
  if (schema == j.end() || !schema->is_number_integer())
    return "missing field 'schema'";
  if (schema->get<int64_t>() != 1)
    return "unsupported schema " + schema->dump();
  auto tx = j.find("transaction");
  if (tx == j.end())
    return "missing field 'transaction'";
  if (!tx->is_string() || tx->get<std::string>().empty() || tx->get<std::string>().size() > 128)
    return "field 'transaction' must be a transaction id (1 to 128 characters)";
  auto label = j.find("label");
  if (label == j.end())
    return "missing field 'label'";
  if (!label->is_string() || (*label != "fraud" && *label != "legit"))
    return "field 'label' must be \"fraud\" or \"legit\"";
  auto at = j.find("at");
  if (at == j.end())
    return "missing field 'at'";
  if (!at->is_number_integer())
    return "field 'at' must be an integer (Unix milliseconds)";
  id = tx->get<std::string>();
  fraud = *label == "fraud";
  return {};
}

struct worker_state {
  caf::event_based_actor* self = nullptr;
  monitor_settings cfg;
  std::string name;
  std::unique_ptr<kafka::consumer> consumer;
  std::unique_ptr<kafka::producer> producer;
  std::optional<reference> ref;
  std::unique_ptr<window> win;
  std::unordered_map<std::string, waiting_score> scores;
  std::deque<std::pair<std::string, int64_t>> score_order;
  std::unordered_map<std::string, waiting_label> labels;
  std::deque<std::pair<std::string, int64_t>> label_order;
  /// Per model, the crossings under way (`drift`, `quality`).
  std::map<std::string, std::set<std::string>> crossed;
  nlohmann::json recent_events = nlohmann::json::array();
  std::map<kafka::partition_offset, int64_t> to_commit;
  int64_t last_judged = 0;
  int64_t last_commit = 0;
  uint64_t dead_letters = 0;
  std::set<std::string> gauged;
  std::string why_idle;
  /// The model roll-out, once read back from `events_topic`.
  fraud::rollout ro;
  bool ro_ready = false;
  /// Per model, the labelled scores made since the trial began.
  std::map<std::string, counts> trial;
  /// An automatic decision Kafka did not confirm (retried each second).
  std::string pending_decision;

  ~worker_state() {
    registry::instance().erase_gauges(this);
  }

  void start() {
    win = std::make_unique<window>(cfg.window.count());
    if (!cfg.reference.empty()) {
      auto r = load_reference(cfg.reference);
      if (r)
        ref = std::move(*r);
      else
        cfg.log.write(log_level::warning,
                      name + ": no drift is measured: " + render(r.error()));
    }
  }

  caf::error connect() {
    if (!producer) {
      auto p = kafka::producer::make(kafka::defaults(cfg.kafka));
      if (!p)
        return p.error();
      producer = std::move(*p);
    }
    if (!ro_ready) {
      if (auto err = read_rollout())
        return err;
      ro_ready = true;
      follow_reference();
      cfg.log(name + ": model roll-out " + std::to_string(ro.generation) + " read back from "
              + cfg.events_topic + ": " + ro.to_json().dump());
    }
    if (!consumer) {
      // Off the pipeline's path: a fetch that waits 100 ms at the broker
      // when nothing is new, not the pipeline's 1 ms (against the
      // embedded mock, one broker thread serves every fetch).
      auto conf = kafka::defaults(cfg.kafka);
      conf["fetch.wait.max.ms"] = "100";
      auto c = kafka::consumer::make(conf, "troupe." + cfg.log.group(),
                                     {cfg.scores_topic, cfg.feedback_topic});
      if (!c)
        return c.error();
      consumer = std::move(*c);
      cfg.log(name + ": member of consumer group troupe." + cfg.log.group() + " on "
              + cfg.scores_topic + ", " + cfg.feedback_topic);
    }
    return caf::none;
  }

  void on_poll() {
    if (auto err = connect()) {
      auto why = render(err);
      if (why != why_idle)
        cfg.log.write(log_level::warning, name + ": cannot read yet: " + why);
      why_idle = why;
      self->delayed_send(self, 1s, poll_atom::value);
      return;
    }
    why_idle.clear();
    auto records = consumer->poll(1000, 50ms);
    auto revoked = consumer->take_revoked();
    for (auto& r : revoked)
      to_commit.erase(r);
    bool lettered = false;
    auto now = unix_ms();
    for (auto& r : records) {
      if (r.topic == cfg.scores_topic)
        on_score(r, now);
      else
        lettered |= on_label(r, now);
      auto& next = to_commit[kafka::partition_offset{r.topic, r.partition, 0}];
      next = std::max(next, r.offset + 1);
    }
    expire(now);
    if (now - last_judged >= 1000) {
      judge(now);
      last_judged = now;
    }
    if (!to_commit.empty() && (lettered || now - last_commit >= 1000)) {
      // A dead letter is confirmed before the offset of its label moves on.
      if (!lettered || !producer->flush(10s)) {
        std::vector<kafka::partition_offset> next;
        for (auto& [where, offset] : to_commit)
          next.push_back({where.topic, where.partition, offset});
        if (!consumer->commit(next))
          to_commit.clear();
        last_commit = now;
      }
    }
    self->send(self, poll_atom::value);
  }

  void on_score(const kafka::record& r, int64_t now) {
    auto ev = parse_scored_event(r.value);
    if (!ev)
      return; // the alerter writes the log: nothing else is expected there
    auto& id = ev->transaction;
    if (scores.count(id))
      return; // read again (a rebalance): counted once
    waiting_score w{std::move(ev->model), ev->score, ev->alert, now, ev->scored_at.value_or(now),
                    {}, 0, false};
    auto score = w.score;
    if (!ev->shadow_model.empty()) {
      w.shadow_model = std::move(ev->shadow_model);
      w.shadow_score = ev->shadow_score;
      w.shadow_alert = ev->shadow_alert;
      auto& c = win->at(w.shadow_model, now);
      ++c.scored;
      c.alerts += w.shadow_alert ? 1 : 0;
      ++c.scores[score_bin(w.shadow_score)];
    }
    auto& c = win->at(w.model, now);
    ++c.scored;
    c.alerts += w.alert ? 1 : 0;
    ++c.scores[score_bin(score)];
    if (ref && ref->model == w.model && ev->has_features) {
      auto& fs = ev->features;
      if (c.features.size() < ref->features.size())
        c.features.resize(ref->features.size());
      for (size_t i = 0; i < ref->features.size() && i < fs.size(); ++i) {
        if (!fs[i])
          continue;
        auto& bins = c.features[i];
        bins.resize(ref->features[i].shares.size());
        ++bins[bin_of(ref->features[i].edges, *fs[i])];
      }
    }
    if (auto l = labels.find(id); l != labels.end()) {
      count_label(w, l->second.fraud, now);
      labels.erase(l);
      return;
    }
    scores[id] = std::move(w);
    score_order.emplace_back(id, now);
  }

  /// True when the label went to the dead letters.
  bool on_label(const kafka::record& r, int64_t now) {
    std::string id;
    bool fraud = false;
    auto why = check_label(r.value, id, fraud);
    if (!why.empty()) {
      producer->produce(cfg.dead_letter_topic, r.key,
                        kafka::dead_letter_json(why, r.topic, r.partition, r.offset, r.key,
                                                r.value));
      ++dead_letters;
      cfg.log.write(log_level::warning, name + ": label at " + r.topic + "/"
                                          + std::to_string(r.partition) + "@"
                                          + std::to_string(r.offset) + " refused: " + why);
      return true;
    }
    if (auto s = scores.find(id); s != scores.end()) {
      count_label(s->second, fraud, now);
      scores.erase(s); // a second label for it counts once
      return false;
    }
    labels[id] = {fraud, now};
    label_order.emplace_back(id, now);
    return false;
  }

  static void add_label(counts& c, double score, bool alert, bool fraud) {
    ++c.labelled;
    if (fraud) {
      ++(alert ? c.tp : c.fn);
      ++c.pos[score_bin(score)];
    } else {
      ++(alert ? c.fp : c.tn);
      ++c.neg[score_bin(score)];
    }
  }

  void count_label(const waiting_score& w, bool fraud, int64_t now) {
    add_label(win->at(w.model, now), w.score, w.alert, fraud);
    if (!w.shadow_model.empty())
      add_label(win->at(w.shadow_model, now), w.shadow_score, w.shadow_alert, fraud);
    // The trial counts the scores made while it ran.
    if (ro.has_candidate() && w.scored_at >= ro.started_at) {
      add_label(trial[w.model], w.score, w.alert, fraud);
      if (!w.shadow_model.empty())
        add_label(trial[w.shadow_model], w.shadow_score, w.shadow_alert, fraud);
    }
  }

  void expire(int64_t now) {
    auto horizon = cfg.label_horizon.count();
    while (!score_order.empty()
           && (score_order.front().second + horizon < now || score_order.size() > cfg.max_waiting)) {
      auto i = scores.find(score_order.front().first);
      if (i != scores.end() && i->second.at == score_order.front().second)
        scores.erase(i);
      score_order.pop_front();
    }
    while (!label_order.empty()
           && (label_order.front().second + horizon < now || label_order.size() > cfg.max_waiting)) {
      auto i = labels.find(label_order.front().first);
      if (i != labels.end() && i->second.at == label_order.front().second)
        labels.erase(i);
      label_order.pop_front();
    }
  }

  /// Sets the gauges and judges each model's window.
  void judge(int64_t now) {
    judge_trial(now);
    auto& reg = registry::instance();
    std::set<std::string> seen;
    for (auto& [model, c] : win->total(now)) {
      auto q = summarize(model, c, ref && ref->model == model ? &*ref : nullptr);
      seen.insert(model);
      registry::labels l{{"group", cfg.log.group()}, {"model", model}};
      reg.set_gauge("troupe_model_scored", "Scores in the model monitor's window.", l,
                    static_cast<double>(q.scored), this);
      reg.set_gauge("troupe_model_alert_rate", "Alerts per score in the window.", l,
                    q.alert_rate, this);
      reg.set_gauge("troupe_model_labelled", "Labelled scores in the window.", l,
                    static_cast<double>(q.labelled), this);
      reg.set_gauge("troupe_model_precision", "Alerts that were fraud, of the labelled.", l,
                    q.precision, this);
      reg.set_gauge("troupe_model_recall", "Labelled frauds that raised an alert.", l, q.recall,
                    this);
      reg.set_gauge("troupe_model_auc", "Area under the ROC curve of the labelled scores.", l,
                    q.auc, this);
      nlohmann::json over = nlohmann::json::object();
      for (auto& [feature, v] : q.psi) {
        registry::labels lf{{"group", cfg.log.group()}, {"model", model}, {"feature", feature}};
        reg.set_gauge("troupe_model_feature_psi",
                      "Population stability index of a feature against the model's training "
                      "reference, over the window.",
                      lf, v, this);
        if (cfg.skip_features.count(feature))
          continue;
        if (v >= cfg.psi_threshold)
          over[feature] = v;
      }
      // Each feature crosses on its own: one drifting already does not
      // hide another that starts to.
      auto& x = crossed[model];
      if (q.scored >= cfg.min_events)
        for (auto& [feature, v] : q.psi) {
          if (cfg.skip_features.count(feature))
            continue;
          auto key = "drift:" + feature;
          if (v >= cfg.psi_threshold && !x.count(key)) {
            x.insert(key);
            emit("drift_detected", model,
                 {{"feature", feature}, {"psi", v}, {"over", over}, {"scored", q.scored}}, now);
          } else if (v < 0.8 * cfg.psi_threshold && x.erase(key) > 0) {
            cfg.log(name + ": model " + model + ": " + feature + " no longer drifts (PSI "
                    + std::to_string(v) + ")");
          }
        }
      if (cfg.recall_threshold > 0 && q.labelled_fraud >= cfg.min_labels) {
        if (q.recall < cfg.recall_threshold && !x.count("quality")) {
          x.insert("quality");
          emit("quality_dropped", model,
               {{"recall", q.recall},
                {"precision", q.precision},
                {"auc", q.auc},
                {"labelled_fraud", q.labelled_fraud}},
               now);
        } else if (x.count("quality") && q.recall >= cfg.recall_threshold) {
          x.erase("quality");
          cfg.log(name + ": model " + model + ": recall back to " + std::to_string(q.recall));
        }
      }
    }
    for (auto& model : gauged)
      if (!seen.count(model))
        for (auto name : {"troupe_model_scored", "troupe_model_alert_rate",
                          "troupe_model_labelled", "troupe_model_precision",
                          "troupe_model_recall", "troupe_model_auc"})
          reg.erase_gauge(name, {{"group", cfg.log.group()}, {"model", model}}, this);
    gauged = seen;
  }

  void emit(const std::string& type, const std::string& model, nlohmann::json fields,
            int64_t now) {
    fields["schema"] = 1;
    fields["type"] = type;
    fields["model"] = model;
    fields["window_ms"] = cfg.window.count();
    fields["at"] = now;
    fields["node"] = cfg.node;
    auto text = fields.dump();
    cfg.log.write(log_level::warning, name + ": " + type + ": " + text);
    recent_events.push_back(fields);
    if (recent_events.size() > 20)
      recent_events.erase(recent_events.begin());
    if (auto err = producer->produce(cfg.events_topic, model, text))
      cfg.log.write(log_level::warning, name + ": cannot write " + type + " to "
                                          + cfg.events_topic + ": " + render(err));
  }

  // -- the model roll-out ----------------------------------------------------------

  /// Reads the latest roll-out back from `events_topic` (none there: the
  /// configured models, generation 0).
  caf::error read_rollout() {
    fraud::rollout latest;
    auto err = kafka::read_since(
      kafka::defaults(cfg.kafka), cfg.events_topic, 0,
      [&](const kafka::record& r) {
        if (r.key != "rollout")
          return;
        auto j = nlohmann::json::parse(r.value, nullptr, false);
        if (!j.is_object() || !j.contains("rollout"))
          return;
        auto x = fraud::rollout::from_json(j["rollout"]);
        if (x && x->generation > latest.generation)
          latest = std::move(*x);
      },
      30s);
    if (err && render(err).find("no partitions of") == std::string::npos)
      return caf::make_error(ec::io_failure, "reading the model roll-out back from "
                                               + cfg.events_topic + ": " + render(err));
    ro = std::move(latest);
    return caf::none;
  }

  /// Drift is measured against the reference of the model in use.
  void follow_reference() {
    auto path = ro.current_path.empty() ? cfg.reference : reference_beside(ro.current_path);
    if (path.empty())
      return;
    auto r = load_reference(path);
    if (r) {
      if (!ref || ref->model != r->model)
        cfg.log(name + ": drift measured against " + path + " (" + r->model + ")");
      ref = std::move(*r);
    } else {
      cfg.log.write(log_level::warning,
                    name + ": no reference for the model in use: " + render(r.error()));
    }
  }

  /// Makes `next` the roll-out once Kafka confirmed its record `type` on
  /// `events_topic`; an error leaves the roll-out as it was.
  caf::error change(fraud::rollout next, const std::string& type, nlohmann::json fields) {
    if (!ro_ready)
      return caf::make_error(ec::io_failure, "the model roll-out is not read back yet from "
                                                + cfg.events_topic);
    if (auto err = connect())
      return err;
    next.generation = ro.generation + 1;
    fields["schema"] = 1;
    fields["type"] = type;
    fields["rollout"] = next.to_json();
    fields["at"] = unix_ms();
    fields["node"] = cfg.node;
    auto outcome = std::make_shared<std::pair<std::mutex, std::optional<caf::error>>>();
    auto text = fields.dump();
    if (auto err = producer->produce(cfg.events_topic, "rollout", text,
                                     [outcome](const caf::error& e) {
                                       std::lock_guard<std::mutex> guard{outcome->first};
                                       outcome->second = e;
                                     }))
      return err;
    if (auto err = producer->flush(10s))
      return caf::make_error(ec::io_failure, cfg.events_topic + " did not confirm the "
                                               + type + " record: " + render(err));
    {
      std::lock_guard<std::mutex> guard{outcome->first};
      if (!outcome->second)
        return caf::make_error(ec::io_failure,
                               cfg.events_topic + " did not confirm the " + type + " record");
      if (*outcome->second)
        return *outcome->second;
    }
    ro = std::move(next);
    trial.clear();
    follow_reference();
    cfg.log.write(log_level::warning, name + ": " + type + ": " + text);
    recent_events.push_back(fields);
    if (recent_events.size() > 20)
      recent_events.erase(recent_events.begin());
    return caf::none;
  }

  /// The trial's figures: the candidate's and the model in use's (every
  /// other model scored since the trial began).
  std::pair<quality, quality> trial_figures() const {
    counts cand, base;
    for (auto& [model, c] : trial)
      (model == ro.candidate_model ? cand : base).add(c);
    return {summarize(ro.candidate_model, cand, nullptr), summarize("in use", base, nullptr)};
  }

  void judge_trial(int64_t now) {
    auto& reg = registry::instance();
    registry::labels l{{"group", cfg.log.group()}};
    reg.set_gauge("troupe_model_rollout_generation",
                  "The model roll-out's generation (each change adds one).", l,
                  static_cast<double>(ro.generation), this);
    if (!ro.has_candidate() || !cfg.auto_promote)
      return;
    auto [cand, base] = trial_figures();
    if (cand.labelled < cfg.canary_labels || cand.labelled_fraud < cfg.canary_min_fraud
        || base.labelled_fraud < cfg.canary_min_fraud)
      return;
    auto tol = cfg.canary_tolerance;
    bool holds = cand.auc >= base.auc - tol && cand.recall >= base.recall - tol
                 && cand.precision >= base.precision - tol;
    nlohmann::json fields{{"model", ro.candidate_model},
                          {"decided_by", "model-monitor"},
                          {"candidate", to_json(cand)},
                          {"in_use", to_json(base)},
                          {"tolerance", tol}};
    auto next = ro;
    std::string type;
    if (holds) {
      type = "model_promoted";
      next.previous_model = ro.current_model;
      next.previous_path = ro.current_path;
      next.current_model = ro.candidate_model;
      next.current_path = ro.candidate_path;
    } else {
      type = "model_rolled_back";
    }
    next.candidate_model.clear();
    next.candidate_path.clear();
    next.share = 0;
    next.started_at = 0;
    if (auto err = change(std::move(next), type, std::move(fields))) {
      if (pending_decision != render(err))
        cfg.log.write(log_level::warning, name + ": " + type + " of " + ro.candidate_model
                                            + " waits: " + render(err));
      pending_decision = render(err);
      return;
    }
    pending_decision.clear();
    (void) now;
  }

  nlohmann::json rollout_view() const {
    nlohmann::json out{{"rollout", ro.to_json()}, {"ready", ro_ready}, {"node", cfg.node}};
    if (ro.has_candidate()) {
      auto [cand, base] = trial_figures();
      out["trial"] = {{"candidate", to_json(cand)},
                      {"in_use", to_json(base)},
                      {"needs_labels", cfg.canary_labels},
                      {"needs_fraud", cfg.canary_min_fraud},
                      {"tolerance", cfg.canary_tolerance},
                      {"auto_promote", cfg.auto_promote}};
    }
    nlohmann::json changes = nlohmann::json::array();
    for (auto& e : recent_events)
      if (e.contains("rollout"))
        changes.push_back(e);
    out["changes"] = changes;
    return out;
  }

  caf::result<std::string> canary(const std::string& path, uint32_t share,
                                  const std::string& mode_text) {
    auto mode = fraud::parse_canary_mode(mode_text);
    if (!mode)
      return mode.error();
    if (*mode == fraud::canary_mode::split && (share < 1 || share > 100))
      return caf::make_error(ec::invalid_argument,
                             "a split's share must be 1 to 100 (percent of users)");
    if (!ro_ready)
      return caf::make_error(ec::io_failure, "the model roll-out is not read back yet from "
                                                + cfg.events_topic);
    if (ro.has_candidate())
      return caf::make_error(ec::invalid_argument,
                             ro.candidate_model + " is on trial: promote or roll it back first");
    auto m = fraud::model::make(path);
    if (!m)
      return m.error();
    if ((*m)->version() == ro.current_model)
      return caf::make_error(ec::invalid_argument, (*m)->version() + " is in use already");
    auto next = ro;
    next.candidate_model = (*m)->version();
    next.candidate_path = path;
    next.share = *mode == fraud::canary_mode::shadow ? 0 : share;
    next.mode = *mode;
    next.started_at = unix_ms();
    if (auto err = change(std::move(next), "canary_started",
                          {{"model", (*m)->version()}, {"decided_by", "operator"}}))
      return err;
    return rollout_view().dump();
  }

  caf::result<std::string> promote(const std::string& version) {
    if (!ro.has_candidate() || ro.candidate_model != version)
      return caf::make_error(ec::invalid_argument,
                             version + " is not on trial"
                               + (ro.has_candidate() ? " (on trial: " + ro.candidate_model + ")"
                                                     : std::string{" (nothing is)"}));
    nlohmann::json fields{{"model", version}, {"decided_by", "operator"}};
    auto [cand, base] = trial_figures();
    fields["candidate"] = to_json(cand);
    fields["in_use"] = to_json(base);
    auto next = ro;
    next.previous_model = ro.current_model;
    next.previous_path = ro.current_path;
    next.current_model = ro.candidate_model;
    next.current_path = ro.candidate_path;
    next.candidate_model.clear();
    next.candidate_path.clear();
    next.share = 0;
    next.started_at = 0;
    if (auto err = change(std::move(next), "model_promoted", std::move(fields)))
      return err;
    return rollout_view().dump();
  }

  caf::result<std::string> rollback(const std::string& version) {
    auto next = ro;
    nlohmann::json fields{{"model", version}, {"decided_by", "operator"}};
    if (ro.has_candidate() && ro.candidate_model == version) {
      auto [cand, base] = trial_figures();
      fields["candidate"] = to_json(cand);
      fields["in_use"] = to_json(base);
      next.candidate_model.clear();
      next.candidate_path.clear();
      next.share = 0;
      next.started_at = 0;
    } else if (!ro.current_path.empty() && ro.current_model == version) {
      if (ro.has_candidate())
        return caf::make_error(ec::invalid_argument,
                               ro.candidate_model
                                 + " is on trial: promote or roll it back first");
      fields["back_to"] = ro.previous_path.empty() ? "the configured model" : ro.previous_model;
      next.current_model = ro.previous_model;
      next.current_path = ro.previous_path;
      next.previous_model.clear();
      next.previous_path.clear();
    } else {
      return caf::make_error(ec::invalid_argument,
                             version + " is neither on trial nor promoted (in use: "
                               + (ro.current_path.empty() ? std::string{"the configured model"}
                                                          : ro.current_model)
                               + (ro.has_candidate() ? ", on trial: " + ro.candidate_model
                                                     : std::string{})
                               + ")");
    }
    if (auto err = change(std::move(next), "model_rolled_back", std::move(fields)))
      return err;
    return rollout_view().dump();
  }

  std::string view() const {
    nlohmann::json models = nlohmann::json::array();
    auto now = unix_ms();
    for (auto& [model, c] : win->total(now))
      models.push_back(to_json(summarize(model, c, ref && ref->model == model ? &*ref : nullptr)));
    return nlohmann::json{{"node", cfg.node},
                          {"window_ms", cfg.window.count()},
                          {"reference", ref ? ref->model : std::string{}},
                          {"waiting_scores", scores.size()},
                          {"waiting_labels", labels.size()},
                          {"dead_letters", dead_letters},
                          {"models", models},
                          {"events", recent_events}}
      .dump();
  }
};

} // namespace

group_spec make_group(const std::string& name, size_t instances, monitor_settings cfg) {
  group_spec g;
  g.name = name;
  g.instances = instances;
  g.detached = true; // it blocks on Kafka
  g.worker = [cfg, name](caf::event_based_actor* self, size_t index) -> caf::behavior {
    auto st = std::make_shared<worker_state>();
    st->self = self;
    st->cfg = cfg;
    st->name = name + "/" + std::to_string(index);
    st->start();
    self->send(self, poll_atom::value);
    return {
      [st](poll_atom) { st->on_poll(); },
      [st](model_quality_atom) -> std::string { return st->view(); },
      [st](model_rollout_atom) -> caf::result<std::string> {
        if (!st->ro_ready)
          return caf::make_error(ec::io_failure, "the model roll-out is not read back yet from "
                                                    + st->cfg.events_topic);
        return st->rollout_view().dump();
      },
      [st](model_canary_atom, std::string& path, uint32_t share, std::string& mode) {
        return st->canary(path, share, mode);
      },
      [st](model_promote_atom, std::string& version) { return st->promote(version); },
      [st](model_rollback_atom, std::string& version) { return st->rollback(version); },
    };
  };
  return g;
}

} // namespace troupe::monitor
