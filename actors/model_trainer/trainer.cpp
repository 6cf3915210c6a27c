#include "actors/model_trainer/trainer.hpp"

#include <cstdio>
#include <ctime>
#include <filesystem>
#include <fstream>
#include <map>
#include <memory>
#include <unordered_map>

#include <caf/all.hpp>
#include <nlohmann/json.hpp>

#include "actors/fraud_detector/model.hpp"
#include "actors/fraud_detector/rollout.hpp"
#include "actors/model_trainer/training.hpp"
#include "runtime/core/duration.hpp"
#include "runtime/core/error.hpp"
#include "runtime/core/hash.hpp"
#include "runtime/core/messages.hpp"
#include "runtime/kafka/client.hpp"

using namespace std::chrono_literals;

namespace troupe::trainer {

namespace {

uint32_t bucket(const std::string& id) {
  return fnv1a_32(id) % 100;
}

std::string utc_stamp(int64_t ms) {
  auto t = static_cast<std::time_t>(ms / 1000);
  std::tm tm{};
  gmtime_r(&t, &tm);
  char out[32];
  std::strftime(out, sizeof(out), "%Y%m%dT%H%M%S", &tm);
  return out;
}

struct worker_state {
  caf::event_based_actor* self = nullptr;
  trainer_settings cfg;
  std::string name;
  std::unique_ptr<kafka::consumer> events;
  std::unique_ptr<kafka::producer> producer;
  int64_t last_trained = 0;
  int64_t next_scheduled = 0;
  std::string why_idle;

  void on_poll() {
    auto now = unix_ms();
    if (cfg.every.count() > 0) {
      if (next_scheduled == 0)
        next_scheduled = now + cfg.every.count();
      if (now >= next_scheduled) {
        next_scheduled = now + cfg.every.count();
        train("schedule");
      }
    }
    if (cfg.on_drift) {
      if (!events) {
        // Off the pipeline's path: fetches wait 100 ms when nothing is new.
        auto conf = kafka::defaults(cfg.kafka);
        conf["fetch.wait.max.ms"] = "100";
        auto c = kafka::consumer::make(conf, "troupe." + cfg.log.group(), {cfg.events_topic});
        if (c) {
          events = std::move(*c);
          why_idle.clear();
        } else if (render(c.error()) != why_idle) {
          why_idle = render(c.error());
          cfg.log.write(log_level::warning, name + ": cannot read " + cfg.events_topic + ": "
                                              + why_idle);
        }
      }
      if (events) {
        std::vector<kafka::partition_offset> next;
        std::string trigger;
        for (auto& r : events->poll(100, 100ms)) {
          next.push_back({r.topic, r.partition, r.offset + 1});
          auto j = nlohmann::json::parse(r.value, nullptr, false);
          if (j.is_object() && j.contains("type") && j["type"].is_string()
              && (j["type"] == "drift_detected" || j["type"] == "quality_dropped"))
            trigger = j["type"].get<std::string>() + " of " + j.value("model", std::string{"?"});
        }
        if (!trigger.empty()) {
          if (now - last_trained >= cfg.cooldown.count())
            train(trigger);
          else
            cfg.log(name + ": " + trigger + " within the cooldown after the last training: "
                    "not training again yet");
        }
        if (!next.empty())
          events->commit(next);
      } else {
        self->delayed_send(self, 1s, poll_atom::value);
        return;
      }
    } else {
      self->delayed_send(self, 200ms, poll_atom::value);
      return;
    }
    self->send(self, poll_atom::value);
  }

  void emit(const nlohmann::json& record) {
    if (!producer) {
      auto p = kafka::producer::make(kafka::defaults(cfg.kafka));
      if (!p) {
        cfg.log.write(log_level::warning, name + ": cannot write to " + cfg.events_topic + ": "
                                            + render(p.error()));
        return;
      }
      producer = std::move(*p);
    }
    if (auto err = producer->produce(cfg.events_topic, record.value("model", std::string{}),
                                     record.dump()))
      cfg.log.write(log_level::warning, name + ": cannot write to " + cfg.events_topic + ": "
                                          + render(err));
    else
      producer->flush(5s);
  }

  /// Asks the model-monitor and waits for its answer (this worker is
  /// detached: waiting blocks no scheduler thread).
  template <class... Ts>
  caf::expected<std::string> ask_monitor(caf::timespan timeout, Ts&&... xs) {
    auto monitor = cfg.router_of ? cfg.router_of("model-monitor") : caf::actor{};
    if (!monitor)
      return caf::make_error(ec::io_failure, "no model-monitor reachable");
    caf::scoped_actor sa{self->system()};
    caf::expected<std::string> out{caf::make_error(ec::io_failure, "no answer")};
    sa->request(monitor, timeout, std::forward<Ts>(xs)...)
      .receive([&](std::string& text) { out = std::move(text); },
               [&](caf::error& err) { out = std::move(err); });
    return out;
  }

  /// The model in use: the roll-out's, else the configured one.
  std::string in_use() {
    auto answer = ask_monitor(5s, model_rollout_atom::value);
    if (!answer)
      return cfg.model;
    auto j = nlohmann::json::parse(*answer, nullptr, false);
    auto r = fraud::rollout::from_json(j.is_object() && j.contains("rollout") ? j["rollout"] : j);
    return r && !r->current_path.empty() ? r->current_path : cfg.model;
  }

  /// Trains a candidate now; the outcome as JSON.
  std::string train(const std::string& reason) {
    auto started = std::chrono::steady_clock::now();
    auto now = unix_ms();
    last_trained = now;
    nlohmann::json out{{"reason", reason}, {"node", cfg.node}};
    auto failed = [&](const std::string& why) {
      out["ok"] = false;
      out["error"] = why;
      cfg.log.write(log_level::warning, name + ": training (" + reason + ") failed: " + why);
      return out.dump();
    };
    auto since = now - cfg.window.count();
    auto conf = kafka::defaults(cfg.kafka);
    std::unordered_map<std::string, bool> labels;
    auto err = kafka::read_since(
      conf, cfg.feedback_topic, since,
      [&](const kafka::record& r) {
        auto j = nlohmann::json::parse(r.value, nullptr, false);
        if (j.is_object() && j.value("schema", 0) == 1 && j.contains("transaction")
            && j["transaction"].is_string() && j.contains("label") && j["label"].is_string())
          labels[j["transaction"].get<std::string>()] = j["label"] == "fraud";
      },
      60s);
    if (err)
      return failed("reading " + cfg.feedback_topic + ": " + render(err));
    auto cols = fraud::feature_names().size();
    dataset train_set, holdout_set;
    train_set.columns = holdout_set.columns = cols;
    // (id, features, fraud), ordered by id before training: the same log
    // gives the same model, whatever order the partitions were read in.
    std::map<std::string, std::pair<std::vector<float>, bool>> joined;
    err = kafka::read_since(
      conf, cfg.scores_topic, since,
      [&](const kafka::record& r) {
        auto j = nlohmann::json::parse(r.value, nullptr, false);
        if (!j.is_object() || !j.contains("transaction") || !j["transaction"].is_string()
            || !j.contains("features") || !j["features"].is_array()
            || j["features"].size() != cols || j.value("degraded", false))
          return;
        auto id = j["transaction"].get<std::string>();
        auto l = labels.find(id);
        if (l == labels.end() || joined.count(id))
          return;
        std::vector<float> row(cols);
        for (size_t i = 0; i < cols; ++i)
          row[i] = j["features"][i].is_number() ? j["features"][i].get<float>() : 0.0f;
        joined.emplace(id, std::make_pair(std::move(row), l->second));
      },
      120s);
    if (err)
      return failed("reading " + cfg.scores_topic + ": " + render(err));
    for (auto& [id, x] : joined)
      (bucket(id) < cfg.holdout ? holdout_set : train_set).add(x.first, x.second);
    size_t fraud = 0;
    for (auto y : train_set.labels)
      fraud += y > 0.5f;
    out["rows"] = train_set.size();
    out["held_out"] = holdout_set.size();
    out["fraud"] = fraud;
    if (train_set.size() < cfg.min_rows || fraud < cfg.min_fraud)
      return failed("too few labelled scores in the last " + std::to_string(cfg.window.count() / 1000)
                    + " s: " + std::to_string(train_set.size()) + " rows, " + std::to_string(fraud)
                    + " frauds (needs " + std::to_string(cfg.min_rows) + " and "
                    + std::to_string(cfg.min_fraud) + ")");
    auto version = cfg.version_prefix + "-" + utc_stamp(now);
    namespace fs = std::filesystem;
    std::error_code ec;
    auto dir = fs::path{cfg.registry} / version;
    for (int n = 2; fs::exists(dir, ec); ++n)
      dir = fs::path{cfg.registry} / (version + "-" + std::to_string(n));
    version = dir.filename().string();
    fs::create_directories(dir, ec);
    if (ec)
      return failed("cannot create " + dir.string() + ": " + ec.message());
    auto path = (dir / "model.json").string();
    params p;
    p.rounds = cfg.rounds;
    if (auto e = train_model(train_set, p, version, fraud::feature_names(), path)) {
      fs::remove_all(dir, ec);
      return failed(render(e));
    }
    auto secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
    auto candidate = fraud::model::make(path);
    if (!candidate) {
      fs::remove_all(dir, ec);
      return failed("the candidate does not load: " + render(candidate.error()));
    }
    auto current = fraud::model::make(in_use());
    auto n = holdout_set.size();
    auto cand_scores = n ? (*candidate)->predict(holdout_set.rows, n)
                         : caf::expected<std::vector<float>>{std::vector<float>{}};
    if (!cand_scores) {
      fs::remove_all(dir, ec);
      return failed(render(cand_scores.error()));
    }
    auto cand = evaluate(*cand_scores, holdout_set.labels, cfg.threshold);
    out["version"] = version;
    out["training_seconds"] = secs;
    out["candidate"] = to_json(cand);
    bool accepted = true;
    if (current) {
      auto cur_scores = n ? (*current)->predict(holdout_set.rows, n)
                          : caf::expected<std::vector<float>>{std::vector<float>{}};
      if (cur_scores) {
        auto cur = evaluate(*cur_scores, holdout_set.labels, cfg.threshold);
        out["current"] = to_json(cur);
        out["current"]["model"] = (*current)->version();
        accepted = cand.auc >= cur.auc;
      }
    } else {
      out["current"] = {{"error", render(current.error())}};
    }
    out["ok"] = true;
    out["accepted"] = accepted;
    nlohmann::json event{{"schema", 1},
                         {"type", accepted ? "model_registered" : "model_rejected"},
                         {"model", version},
                         {"reason", reason},
                         {"held_out", out["held_out"]},
                         {"candidate", out["candidate"]},
                         {"at", unix_ms()},
                         {"node", cfg.node}};
    if (out.contains("current"))
      event["current"] = out["current"];
    if (!accepted) {
      fs::remove_all(dir, ec);
      cfg.log.write(log_level::warning, name + ": candidate " + version + " rejected: "
                                          + out.dump());
      emit(event);
      return out.dump();
    }
    {
      std::ofstream ref{(dir / "reference.json").string()};
      ref << reference_of(train_set, version, fraud::feature_names()).dump(1) << "\n";
    }
    auto sum = sha256_file(path);
    out["path"] = path;
    out["sha256"] = sum;
    nlohmann::json meta = out;
    meta["schema"] = 1;
    meta["trained_at"] = now;
    meta["window_ms"] = cfg.window.count();
    {
      std::ofstream m{(dir / "meta.json").string()};
      m << meta.dump(1) << "\n";
    }
    event["path"] = path;
    event["sha256"] = sum;
    cfg.log.write(log_level::warning, name + ": registered " + version + " (" + reason
                                        + "): " + out.dump());
    emit(event);
    if (cfg.canary_share > 0 || cfg.canary_mode == "shadow") {
      // The registry is this host's: the path must be the same on every
      // fraud-detector's host (one host, or a shared file system).
      auto abs = fs::absolute(path, ec).string();
      auto answer = ask_monitor(20s, model_canary_atom::value, ec ? path : abs,
                                cfg.canary_share, cfg.canary_mode);
      if (answer) {
        out["canary"] = {{"mode", cfg.canary_mode}, {"share", cfg.canary_share}};
        cfg.log(name + ": " + version + " on trial (" + cfg.canary_mode + ", "
                + std::to_string(cfg.canary_share) + "% of users)");
      } else {
        out["canary"] = {{"error", render(answer.error())}};
        cfg.log.write(log_level::warning, name + ": " + version + " not put on trial: "
                                            + render(answer.error()));
      }
    }
    return out.dump();
  }
};

} // namespace

group_spec make_group(const std::string& name, size_t instances, trainer_settings cfg) {
  group_spec g;
  g.name = name;
  g.instances = instances;
  g.detached = true; // Kafka and training block
  g.call_timeout = std::chrono::minutes(5);
  g.worker = [cfg, name](caf::event_based_actor* self, size_t index) -> caf::behavior {
    auto st = std::make_shared<worker_state>();
    st->self = self;
    st->cfg = cfg;
    st->name = name + "/" + std::to_string(index);
    self->send(self, poll_atom::value);
    return {
      [st](poll_atom) { st->on_poll(); },
      [st](model_train_atom) -> std::string { return st->train("operator"); },
    };
  };
  return g;
}

} // namespace troupe::trainer
