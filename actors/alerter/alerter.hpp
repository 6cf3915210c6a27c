#pragma once

#include <chrono>
#include <cstdint>
#include <string>
#include <vector>

#include "runtime/core/log.hpp"
#include "runtime/core/trace.hpp"
#include "runtime/core/messages.hpp"
#include "runtime/group/group_spec.hpp"
#include "runtime/node/domain.hpp"
#include "runtime/redis/connection.hpp"

namespace troupe::alert {

/// Settings of the `alerter` group (`[[group]] settings` in the topology).
struct alerter_settings {
  double threshold = 0.5;
  std::string topic = "fraud-alerts";
  /// The scored-event log: a record for every score, exactly once per
  /// transaction id, by the same claims as the alerts (empty: none).
  std::string scores_topic = "fraud-scores";
  /// How long a logged score's claim is kept: a transaction read again
  /// within it (a rebalance, a crash, a broker outage before the commit) is
  /// not logged twice. About 100 bytes of Redis per transaction of the window.
  std::chrono::seconds scores_remember{15 * 60};
  std::string kafka;
  std::string redis;
  /// Node name, written into each alert.
  std::string node;
  /// How long an alerted transaction id is remembered (replays within it
  /// never raise a second alert).
  std::chrono::seconds remember{7 * 24 * 3600};
  /// Kafka answers for each alert within this (`message.timeout.ms`).
  std::chrono::milliseconds delivery_timeout{10000};
  /// How long an attempt's claim keeps other attempts at the same alert
  /// waiting; past it, the next attempt reads the partition to learn
  /// whether the alert landed. Longer than `delivery_timeout`.
  std::chrono::milliseconds lease{20000};
  /// Fault injection: a worker dies after Kafka confirmed every N-th batch
  /// of alerts, before it marks them `sent` (0: never).
  uint64_t crash_after_confirm_every = 0;
  /// Where each transaction's alert span goes (from its arrival here until
  /// Kafka answered for its records).
  trace::probe probe;
  /// Each alert Kafka confirmed is logged here (info, with its transaction id).
  log_fn log;
};

/// One record's claim, for `claim_records`: its key in Redis (`alert:ID`,
/// `scored:ID`), the partition its attempt writes, an offset of that
/// partition at or below where the record will land, and how long the
/// claim is kept once written (seconds, as text).
struct claim_request {
  std::string key;
  int32_t partition = 0;
  int64_t from = 0;
  std::string ttl;
};

/// Claims every record of a batch for the attempt `token` with one script
/// run (atomic, on Redis's own clock). Answers, per record in order:
/// `claimed` (no claim was there: this attempt writes the record), `sent`
/// (an attempt wrote it; nothing to do), `busy` (another attempt's lease
/// still runs: nothing is changed), `taken PARTITION FROM` (an earlier
/// attempt's lease ended without `sent`: this attempt holds the claim now
/// and must read PARTITION from FROM before writing), or `taken -1 -1` (the
/// earlier claim does not say where it wrote). A claim this attempt holds
/// is `pending TOKEN LEASE_END_MS PARTITION FROM`, kept `ttl` seconds.
/// Fails on I/O errors, timeouts and an unexpected reply.
caf::expected<std::vector<std::string>>
claim_records(redis::connection& redis, const std::string& token, std::chrono::milliseconds lease,
              const std::vector<claim_request>& records);

/// The JSON of one alert (schema 1): the transaction, its score, the model,
/// the threshold, the top features, whether its features were degraded, the
/// time it was raised, the node that raised it, and its `trace` id (32 hex
/// digits, W3C Trace Context) when it has one.
std::string alert_json(const scored_transaction& s, double threshold, const std::string& node);

/// The JSON of one scored event (schema 1), the scored-event log's record:
/// `{"schema", "transaction" (id), "user", "timestamp", "features" (the
/// model's input row, in the fraud-detector's feature order), "score",
/// "model", "alert" (over the threshold), "degraded", "scored_at" (Unix
/// ms), "node", "trace"}`, and, while a candidate model is on trial in shadow,
/// `"shadow": {"model", "score", "alert"}` (its score and whether it would
/// have alerted; only the model in use decides).
std::string scored_json(const scored_transaction& s, double threshold, const std::string& node,
                        int64_t scored_at);

/// The `alerter` group: detached workers, each with a Redis connection and a
/// Kafka producer.
///
/// `(alert_atom, std::vector<scored_transaction>)` raises an alert for each
/// score over the threshold, exactly once per transaction id:
/// - the id is claimed in Redis with a lease (`alert:{id}` = `pending TOKEN
///   LEASE_END PARTITION FROM`): the alert will be written to PARTITION
///   (chosen from the id, so every attempt writes the same one) at an offset
///   not below FROM;
/// - the alert is produced without blind resends, and Kafka answers within
///   `delivery_timeout`: delivered (the claim becomes `sent`), surely not
///   written (the claim is dropped), or possibly written (the lease ends);
/// - another attempt at the same id waits while a lease runs (the batch
///   fails with `in_doubt` and is retried); once the lease ended without
///   `sent` (the worker died after Kafka's confirmation, or its answer was
///   lost), it reads the partition from FROM and writes the alert only if it
///   is not there.
/// Every score of the batch with real features goes the same way to
/// `scores_topic` (the scored-event log, claims `scored:{id}`), so the log
/// holds each scored transaction once, beside its alert. A degraded score
/// is not logged: the transaction is scored again once the feature store
/// is back, and that score is.
/// Answers how many alerts were new; fails (so that the caller retries)
/// while Redis or Kafka cannot be reached.
group_spec make_group(const std::string& name, size_t instances, alerter_settings settings);

/// The `alerter` domain's registration (actors/domains.cpp): its settings
/// schema and group factory.
troupe::domain domain_entry();

} // namespace troupe::alert
