#include "runtime/core/types.hpp"

#include <algorithm>
#include <thread>

#include "runtime/core/error.hpp"
#include "runtime/core/messages.hpp"

namespace troupe {

void configure_scheduler(caf::actor_system_config& cfg, size_t threads) {
  if (threads == 0)
    threads = std::max(1u, std::thread::hardware_concurrency());
  cfg.set("scheduler.max-threads", threads);
  cfg.set("work-stealing.moderate-poll-attempts", size_t{0});
  cfg.set("work-stealing.relaxed-sleep-duration", caf::timespan{std::chrono::milliseconds(1)});
}

void register_types(caf::actor_system_config& cfg) {
  cfg.add_message_type<child_info>("troupe.child_info");
  cfg.add_message_type<std::vector<child_info>>("std::vector<troupe.child_info>");
  cfg.add_message_type<crash_record>("troupe.crash_record");
  cfg.add_message_type<std::vector<crash_record>>("std::vector<troupe.crash_record>");
  cfg.add_message_type<routed>("troupe.routed");
  cfg.add_message_type<routed_batch>("troupe.routed_batch");
  cfg.add_message_type<routed_acks>("troupe.routed_acks");
  cfg.add_message_type<envelope>("troupe.envelope");
  cfg.add_message_type<reply>("troupe.reply");
  cfg.add_message_type<dead_letter>("troupe.dead_letter");
  cfg.add_message_type<std::vector<dead_letter>>("std::vector<troupe.dead_letter>");
  cfg.add_message_type<group_status>("troupe.group_status");
  cfg.add_message_type<member_info>("troupe.member_info");
  cfg.add_message_type<operator_decisions>("troupe.operator_decisions");
  cfg.add_message_type<std::vector<member_info>>("std::vector<troupe.member_info>");
  cfg.add_message_type<node_info>("troupe.node_info");
  cfg.add_message_type<transaction>("troupe.transaction");
  cfg.add_message_type<enriched_transaction>("troupe.enriched_transaction");
  cfg.add_message_type<std::vector<enriched_transaction>>(
    "std::vector<troupe.enriched_transaction>");
  cfg.add_message_type<std::vector<transaction>>("std::vector<troupe.transaction>");
  cfg.add_message_type<scored_transaction>("troupe.scored_transaction");
  cfg.add_message_type<std::vector<scored_transaction>>("std::vector<troupe.scored_transaction>");
  cfg.add_message_type<article>("troupe.article");
  cfg.add_message_type<std::vector<article>>("std::vector<troupe.article>");
  cfg.add_message_type<ranked_article>("troupe.ranked_article");
  cfg.add_message_type<std::vector<ranked_article>>("std::vector<troupe.ranked_article>");
  cfg.add_message_type<feed>("troupe.feed");
  cfg.add_error_category(ec_category, [](uint8_t code, caf::atom_value, const caf::message& ctx) {
    return render(caf::error{code, ec_category, ctx});
  });
}

} // namespace troupe
