#include "actors/ingestor/ingestor.hpp"

namespace troupe::ingest {

troupe::domain domain_entry() {
  using topology::setting_type;
  troupe::domain d;
  d.schema.name = "ingestor";
  d.schema.settings = {
    {"topic", setting_type::string, "transactions", {}, {}, false,
     "the Kafka topic of transactions the instances read as one consumer group"},
    {"dead_letter_topic", setting_type::string, "dead-letters", {}, {}, false,
     "where a malformed transaction goes, with its reason"},
    {"rescore_topic", setting_type::string, "transactions-rescore", {}, {}, false,
     "where transactions scored with degraded features go, to be scored again once the "
     "feature store is back (read by the same instances)"},
    {"batch", setting_type::integer, "500", 1, 10000, false,
     "the most transactions of one partition sent down the pipeline as one batch"},
    {"report_every", setting_type::duration, "10s", 0, {}, false,
     "how often each instance logs its counters (\"0s\": never)"},
    {"stall_timeout", setting_type::duration, "30s", 1000, {}, false,
     "an instance whose Kafka consumer makes no progress this long (unread records it "
     "does not read, or no partitions while nobody reads one) is restarted with a fresh "
     "consumer"},
  };
  d.make_group = [](const topology::group_decl& decl, uint32_t instances,
                    const domain_context& ctx) -> caf::expected<group_spec> {
    ingestor_settings s;
    s.kafka = ctx.kafka;
    s.redis = ctx.redis;
    s.topic = topology::setting(decl, "topic");
    s.dead_letter_topic = topology::setting(decl, "dead_letter_topic");
    s.rescore_topic = topology::setting(decl, "rescore_topic");
    s.consumer_group = "troupe." + decl.name;
    s.report_every = topology::duration(decl, "report_every");
    s.batch = static_cast<size_t>(topology::number(decl, "batch"));
    s.stall_timeout = topology::duration(decl, "stall_timeout");
    s.router_of = ctx.router_of;
    s.tracer = ctx.tracer;
    s.trace_sample = ctx.trace_sample;
    s.instance_of = ctx.instance_of;
    s.log = ctx.log.with_group(decl.name);
    auto g = make_group(decl.name, instances, s);
    // A pipeline stage's request may wait behind a backlog of batches: the
    // ingestor's own stage timeout decides when to try again.
    g.call_timeout = std::chrono::seconds(30);
    return g;
  };
  return d;
}

} // namespace troupe::ingest
