#include "actors/model_trainer/trainer.hpp"

#include "runtime/core/error.hpp"

namespace troupe::trainer {

troupe::domain domain_entry() {
  using topology::setting_type;
  troupe::domain d;
  d.schema.name = "model-trainer";
  d.schema.settings = {
    {"model", setting_type::string, "actors/fraud_detector/model/fraud.json", {}, {}, false,
     "the model in use, which a candidate must match on the held-out slice"},
    {"registry", setting_type::string, ".troupe-state/models", {}, {}, false,
     "where registered models go (REGISTRY/VERSION/model.json, reference.json, meta.json), "
     "relative to the node's working directory"},
    {"scores_topic", setting_type::string, "fraud-scores", {}, {}, false,
     "the scored-event log a training set is drawn from"},
    {"feedback_topic", setting_type::string, "fraud-feedback", {}, {}, false,
     "the labels joined with it"},
    {"events_topic", setting_type::string, "model-events", {}, {}, false,
     "read for drift_detected and quality_dropped; model_registered and model_rejected go there"},
    {"window", setting_type::duration, "24h", 1000, {}, false,
     "how far back a training set reaches"},
    {"min_rows", setting_type::integer, "500", 10, 1e9, false,
     "labelled scores a training needs"},
    {"min_fraud", setting_type::integer, "20", 2, 1e9, false, "frauds among them"},
    {"holdout", setting_type::integer, "20", 5, 50, false,
     "percent of the labelled scores held out to compare the candidate with the model in use"},
    {"rounds", setting_type::integer, "150", 1, 5000, false, "boosting rounds"},
    {"threshold", setting_type::number, "0.5", 0, 1, false,
     "the alert threshold, for the precision and recall reported"},
    {"on_drift", setting_type::boolean, "true", {}, {}, false,
     "train when the model-monitor reports drift or a quality drop"},
    {"cooldown", setting_type::duration, "10m", 0, {}, false,
     "the least time between two trainings on drift"},
    {"every", setting_type::duration, "0s", 0, {}, false, "train this often (0: never)"},
    {"canary_share", setting_type::integer, "0", 0, 100, false,
     "put a registered candidate on trial for this percent of the users at once (0: register "
     "only, unless canary_mode is shadow)"},
    {"canary_mode", setting_type::string, "split", {}, {}, false,
     "split (the candidate decides for its share of the users) or shadow (it scores beside "
     "the model in use, which decides)"},
  };
  d.schema.check_together = [](const topology::settings_map& s)
    -> std::optional<topology::setting_problem> {
    auto i = s.find("canary_mode");
    if (i != s.end() && i->second != "split" && i->second != "shadow")
      return topology::setting_problem{"canary_mode", "must be split or shadow, not '"
                                                        + i->second + "'"};
    return std::nullopt;
  };
  d.make_group = [](const topology::group_decl& decl, uint32_t instances,
                    const domain_context& ctx) -> caf::expected<group_spec> {
    if (instances != 1)
      return caf::make_error(ec::invalid_argument,
                             "the model-trainer runs one instance: declare instances = 1");
    auto ms = [&](const char* key) {
      return std::chrono::duration_cast<std::chrono::milliseconds>(topology::duration(decl, key));
    };
    trainer_settings s;
    s.kafka = ctx.kafka;
    s.node = ctx.node;
    s.model = topology::setting(decl, "model");
    s.registry = topology::setting(decl, "registry");
    s.scores_topic = topology::setting(decl, "scores_topic");
    s.feedback_topic = topology::setting(decl, "feedback_topic");
    s.events_topic = topology::setting(decl, "events_topic");
    s.window = ms("window");
    s.min_rows = static_cast<size_t>(topology::number(decl, "min_rows"));
    s.min_fraud = static_cast<size_t>(topology::number(decl, "min_fraud"));
    s.holdout = static_cast<uint32_t>(topology::number(decl, "holdout"));
    s.rounds = static_cast<int>(topology::number(decl, "rounds"));
    s.threshold = topology::number(decl, "threshold");
    s.on_drift = topology::setting(decl, "on_drift") == "true";
    s.cooldown = ms("cooldown");
    s.every = ms("every");
    s.canary_share = static_cast<uint32_t>(topology::number(decl, "canary_share"));
    s.canary_mode = topology::setting(decl, "canary_mode");
    s.router_of = ctx.router_of;
    s.log = ctx.log.with_group(decl.name);
    return make_group(decl.name, instances, s);
  };
  return d;
}

} // namespace troupe::trainer
