#pragma once

#include <chrono>
#include <string>

#include "runtime/core/log.hpp"
#include "runtime/core/messages.hpp"
#include "runtime/group/group_spec.hpp"
#include "runtime/node/domain.hpp"

namespace troupe::alert {

/// Settings of the `alerter` group (`[[group]] settings` in the topology).
struct alerter_settings {
  double threshold = 0.5;
  std::string topic = "fraud-alerts";
  std::string kafka;
  std::string redis;
  /// Node name, written into each alert.
  std::string node;
  /// How long an alerted transaction id is remembered (replays within it
  /// never raise a second alert).
  std::chrono::seconds remember{7 * 24 * 3600};
  /// Each alert Kafka confirmed is logged here (info, with its transaction id).
  log_fn log;
};

/// The JSON of one alert (schema 1): the transaction, its score, the model,
/// the threshold, the top features, whether its features were degraded, the
/// time it was raised and the node that raised it.
std::string alert_json(const scored_transaction& s, double threshold, const std::string& node);

/// The `alerter` group: detached workers, each with a Redis connection and a
/// Kafka producer.
///
/// `(alert_atom, std::vector<scored_transaction>)` raises an alert for each
/// score over the threshold, at most once per transaction id: the id is
/// claimed in Redis (`SET alert:{id} pending NX`), the alert is produced, and
/// once Kafka confirmed it the claim becomes `sent`. A replay after that finds
/// `sent` and raises nothing; one that finds `pending` (a crash between the
/// claim and the confirmation) produces again, the only window in which a
/// consumer may see an alert twice. Answers how many alerts were new, once
/// Kafka confirmed them (the worker takes other batches meanwhile); fails
/// (so that the caller retries) while Redis or Kafka cannot be reached.
/// Each worker connects when it starts, so the first alert does not wait.
group_spec make_group(const std::string& name, size_t instances, alerter_settings settings);

/// The `alerter` domain's registration (actors/domains.cpp): its settings
/// schema and group factory.
troupe::domain domain_entry();

} // namespace troupe::alert
