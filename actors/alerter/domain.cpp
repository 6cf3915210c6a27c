#include "actors/alerter/alerter.hpp"

namespace troupe::alert {

troupe::domain domain_entry() {
  using topology::setting_type;
  troupe::domain d;
  d.schema.name = "alerter";
  d.schema.settings = {
    {"threshold", setting_type::number, "0.5", 0, 1, false,
     "a transaction whose fraud score is over it raises an alert"},
    {"topic", setting_type::string, "fraud-alerts", {}, {}, false,
     "the Kafka topic alerts are produced to"},
    {"scores_topic", setting_type::string, "fraud-scores", {}, {}, true,
     "the scored-event log: every scored transaction, once, with its features, score and model "
     "(empty: none)"},
    {"scores_remember", setting_type::duration, "15m", 60000, {}, false,
     "how long a logged score's transaction id is kept, so that an event read again is not "
     "logged twice (about 100 bytes of Redis per transaction)"},
    {"remember", setting_type::duration, "168h", 1000, {}, false,
     "how long an alerted transaction id is kept, so a replay raises no second alert"},
    {"crash_after_confirm_every", setting_type::integer, "0", 0, 1e9, false,
     "fault injection: a worker dies after Kafka confirmed every Nth batch of alerts, before "
     "marking them sent (0: never)"},
  };
  d.make_group = [](const topology::group_decl& decl, uint32_t instances,
                    const domain_context& ctx) -> caf::expected<group_spec> {
    alerter_settings s;
    s.threshold = topology::number(decl, "threshold");
    s.topic = topology::setting(decl, "topic");
    s.scores_topic = topology::setting(decl, "scores_topic");
    s.scores_remember = std::chrono::duration_cast<std::chrono::seconds>(
      topology::duration(decl, "scores_remember"));
    s.remember = std::chrono::duration_cast<std::chrono::seconds>(
      topology::duration(decl, "remember"));
    s.kafka = ctx.kafka;
    s.redis = ctx.redis;
    s.node = ctx.node;
    s.crash_after_confirm_every =
      static_cast<uint64_t>(topology::number(decl, "crash_after_confirm_every"));
    s.log = ctx.log.with_group(decl.name);
    s.probe = ctx.probe();
    auto g = make_group(decl.name, instances, s);
    g.call_timeout = std::chrono::seconds(30); // a backlog is not a failure
    return g;
  };
  return d;
}

} // namespace troupe::alert
