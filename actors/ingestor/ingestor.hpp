#pragma once

#include <functional>
#include <string>

#include <caf/actor.hpp>
#include <caf/timespan.hpp>

#include "runtime/core/log.hpp"
#include "runtime/core/trace.hpp"
#include "runtime/group/group_spec.hpp"
#include "runtime/node/domain.hpp"

namespace troupe::ingest {

/// Settings of the `ingestor` group.
struct ingestor_settings {
  std::string kafka;
  /// Redis (`redis://host:port`), where each dead letter Kafka confirmed is
  /// marked, so that an event read again (after a rebalance or a restart)
  /// does not get a second one ("": no marks).
  std::string redis;
  std::string topic = "transactions";
  std::string dead_letter_topic = "dead-letters";
  /// Where transactions scored with degraded features go (their original
  /// JSON, keyed by user), to be read by the same consumer group and scored
  /// again once the feature store is back ("": nowhere).
  std::string rescore_topic = "transactions-rescore";
  /// The consumer group every ingestor instance of the cluster joins.
  std::string consumer_group = "troupe-ingestor";
  /// At most this many transactions per batch sent down the pipeline (a batch
  /// takes what its partition has queued: small under light load, for
  /// latency; large under heavy load, for throughput).
  size_t batch = 500;
  /// Read but unfinished events; past it the partitions are paused, below
  /// half of it resumed.
  size_t max_pending = 5000;
  /// How long a stage may take before the batch is tried again.
  caf::timespan stage_timeout = std::chrono::seconds(30);
  /// Batches of this instance in the pipeline at once (over all its
  /// partitions): more only queue inside the stages, where they would time
  /// out and be retried, multiplying the work under load.
  size_t max_batches = 4;
  /// A worker whose consumer is wedged this long (see
  /// `kafka::consumer::stalled`) stops, and its supervisor restarts it with
  /// a fresh consumer.
  caf::timespan stall_timeout = std::chrono::seconds(30);
  /// How often finished offsets are committed.
  caf::timespan commit_every = std::chrono::milliseconds(100);
  /// How often each instance logs its counters (0: never).
  caf::timespan report_every = std::chrono::seconds(10);
  /// The routers of the next stages, by domain (`feature-enricher`,
  /// `fraud-detector`, `alerter`).
  std::function<caf::actor(const std::string&)> router_of;
  /// The node's span recorder (null: no tracing), the share of new traces
  /// sampled, and the cluster-wide instance number of a worker.
  std::shared_ptr<trace::tracer> tracer;
  double trace_sample = 0;
  std::function<uint32_t(const std::string&, size_t)> instance_of;
  log_fn log;
};

/// The `ingestor` group: each worker is a detached member of the Kafka
/// consumer group `consumer_group`, so Kafka spreads the partitions over the
/// instances of the whole cluster and moves them when one is lost.
///
/// - Each event is parsed (`parse_transaction`). A bad one goes to the
///   dead-letter topic as JSON with its reason, where it was read, and its
///   original bytes; the stream never stops for it.
/// - Good events of one partition go down the pipeline in order, one batch
///   in flight per partition (so a user's transactions, which share a
///   partition, are enriched in order): feature-enricher, fraud-detector,
///   alerter. A stage that fails or times out is tried again.
/// - An event is finished when the alerter answered for its batch (or its
///   dead letter was confirmed). Per partition, the offset after the
///   contiguous finished prefix is committed: at-least-once from Kafka to
///   alert, across worker crashes, node loss and rebalances.
/// - Past `max_pending` unfinished events the partitions are paused, instead
///   of buffering without bound; below half of it they are resumed.
group_spec make_group(const std::string& name, size_t instances, ingestor_settings settings);


/// The `ingestor` domain's registration (actors/domains.cpp): its settings
/// schema and group factory.
troupe::domain domain_entry();

} // namespace troupe::ingest
