#include "actors/model_monitor/monitor.hpp"

#include <algorithm>
#include <map>
#include <memory>
#include <set>
#include <unordered_map>

#include <caf/all.hpp>
#include <nlohmann/json.hpp>

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

/// A score waiting for its label.
struct waiting_score {
  std::string model;
  double score = 0;
  bool alert = false;
  int64_t at = 0;
};

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
    if (!consumer) {
      auto c = kafka::consumer::make(kafka::defaults(cfg.kafka), "troupe." + cfg.log.group(),
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
    auto j = nlohmann::json::parse(r.value, nullptr, false);
    if (j.is_discarded() || !j.is_object() || !j.contains("transaction")
        || !j["transaction"].is_string() || !j.contains("score") || !j["score"].is_number())
      return; // the alerter writes the log: nothing else is expected there
    auto id = j["transaction"].get<std::string>();
    if (scores.count(id))
      return; // read again (a rebalance): counted once
    auto model = j.value("model", std::string{"unknown"});
    auto score = j["score"].get<double>();
    auto alert = j.value("alert", false);
    auto& c = win->at(model, now);
    ++c.scored;
    c.alerts += alert ? 1 : 0;
    ++c.scores[score_bin(score)];
    if (ref && ref->model == model && j.contains("features") && j["features"].is_array()) {
      auto& fs = j["features"];
      if (c.features.size() < ref->features.size())
        c.features.resize(ref->features.size());
      for (size_t i = 0; i < ref->features.size() && i < fs.size(); ++i) {
        if (!fs[i].is_number())
          continue;
        auto& bins = c.features[i];
        bins.resize(ref->features[i].shares.size());
        ++bins[bin_of(ref->features[i].edges, fs[i].get<double>())];
      }
    }
    if (auto l = labels.find(id); l != labels.end()) {
      count_label(model, score, alert, l->second.fraud, now);
      labels.erase(l);
      return;
    }
    scores[id] = {model, score, alert, now};
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
      count_label(s->second.model, s->second.score, s->second.alert, fraud, now);
      scores.erase(s); // a second label for it counts once
      return false;
    }
    labels[id] = {fraud, now};
    label_order.emplace_back(id, now);
    return false;
  }

  void count_label(const std::string& model, double score, bool alert, bool fraud, int64_t now) {
    auto& c = win->at(model, now);
    ++c.labelled;
    if (fraud) {
      ++(alert ? c.tp : c.fn);
      ++c.pos[score_bin(score)];
    } else {
      ++(alert ? c.fp : c.tn);
      ++c.neg[score_bin(score)];
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
    };
  };
  return g;
}

} // namespace troupe::monitor
