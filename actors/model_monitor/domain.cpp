#include "actors/model_monitor/monitor.hpp"

#include "runtime/core/error.hpp"

namespace troupe::monitor {

troupe::domain domain_entry() {
  using topology::setting_type;
  troupe::domain d;
  d.schema.name = "model-monitor";
  d.schema.settings = {
    {"scores_topic", setting_type::string, "fraud-scores", {}, {}, false,
     "the scored-event log it reads (the alerter's scores_topic)"},
    {"feedback_topic", setting_type::string, "fraud-feedback", {}, {}, false,
     "labels: {\"schema\":1,\"transaction\":ID,\"label\":\"fraud\"|\"legit\",\"at\":ms}"},
    {"events_topic", setting_type::string, "model-events", {}, {}, false,
     "where drift_detected and quality_dropped records go"},
    {"dead_letter_topic", setting_type::string, "dead-letters", {}, {}, false,
     "where a malformed label goes, with its reason"},
    {"reference", setting_type::string, "actors/fraud_detector/model/fraud.reference.json", {},
     {}, true,
     "the training reference of the model in use, relative to the node's working directory "
     "(empty: no drift measured)"},
    {"window", setting_type::duration, "10m", 1000, {}, false,
     "the sliding window every figure covers"},
    {"psi_threshold", setting_type::number, "0.25", 0.001, 100, false,
     "a feature's population stability index from which it drifts"},
    {"min_events", setting_type::integer, "500", 1, 1e9, false,
     "scores of a model in the window before drift is judged"},
    {"skip_features", setting_type::string, "hour_of_day", {}, {}, true,
     "features (comma-separated) whose PSI is shown but not judged: a cyclic one concentrates "
     "in any window shorter than its cycle"},
    {"recall_threshold", setting_type::number, "0", 0, 1, false,
     "recall under which quality dropped (0: not judged)"},
    {"min_labels", setting_type::integer, "50", 1, 1e9, false,
     "labelled frauds of a model in the window before recall is judged"},
    {"label_horizon", setting_type::duration, "1h", 1000, {}, false,
     "how long a score waits for its label, and a label for its score"},
    {"canary_labels", setting_type::integer, "300", 1, 1e9, false,
     "labelled scores of a candidate on trial (since the trial began) before it is judged"},
    {"canary_min_fraud", setting_type::integer, "30", 1, 1e9, false,
     "labelled frauds of the candidate, and of the model in use, before the trial is judged"},
    {"canary_tolerance", setting_type::number, "0.05", 0, 1, false,
     "how much AUC, recall and precision the candidate may lose against the model in use "
     "and still be promoted"},
    {"auto_promote", setting_type::boolean, "true", {}, {}, false,
     "judge trials automatically: promote a candidate whose quality holds, roll back the "
     "others (false: operators decide)"},
  };
  d.make_group = [](const topology::group_decl& decl, uint32_t instances,
                    const domain_context& ctx) -> caf::expected<group_spec> {
    if (instances != 1)
      return caf::make_error(ec::invalid_argument,
                             "the model-monitor runs one instance (each label must meet its "
                             "score): declare instances = 1");
    monitor_settings s;
    s.kafka = ctx.kafka;
    s.node = ctx.node;
    s.scores_topic = topology::setting(decl, "scores_topic");
    s.feedback_topic = topology::setting(decl, "feedback_topic");
    s.events_topic = topology::setting(decl, "events_topic");
    s.dead_letter_topic = topology::setting(decl, "dead_letter_topic");
    s.reference = topology::setting(decl, "reference");
    s.window = std::chrono::duration_cast<std::chrono::milliseconds>(
      topology::duration(decl, "window"));
    s.psi_threshold = topology::number(decl, "psi_threshold");
    s.min_events = static_cast<uint64_t>(topology::number(decl, "min_events"));
    s.skip_features.clear();
    auto skip = topology::setting(decl, "skip_features");
    for (size_t at = 0; at <= skip.size();) {
      auto comma = std::min(skip.find(',', at), skip.size());
      auto name = skip.substr(at, comma - at);
      name.erase(0, name.find_first_not_of(' '));
      name.erase(name.find_last_not_of(' ') + 1);
      if (!name.empty())
        s.skip_features.insert(name);
      at = comma + 1;
    }
    s.recall_threshold = topology::number(decl, "recall_threshold");
    s.min_labels = static_cast<uint64_t>(topology::number(decl, "min_labels"));
    s.label_horizon = std::chrono::duration_cast<std::chrono::milliseconds>(
      topology::duration(decl, "label_horizon"));
    s.canary_labels = static_cast<uint64_t>(topology::number(decl, "canary_labels"));
    s.canary_min_fraud = static_cast<uint64_t>(topology::number(decl, "canary_min_fraud"));
    s.canary_tolerance = topology::number(decl, "canary_tolerance");
    s.auto_promote = topology::setting(decl, "auto_promote") == "true";
    s.log = ctx.log.with_group(decl.name);
    return make_group(decl.name, instances, s);
  };
  return d;
}

} // namespace troupe::monitor
