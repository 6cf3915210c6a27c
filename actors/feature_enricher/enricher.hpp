#pragma once

#include "runtime/core/trace.hpp"

#include <string>

#include <caf/timespan.hpp>

#include "runtime/group/group_spec.hpp"
#include "runtime/node/domain.hpp"

namespace troupe::enrich {

/// The `feature-enricher` group: detached workers, each with its own Redis
/// connection (`feature_store`).
///
/// `(enrich_atom, std::vector<transaction>)` answers the batch's features in
/// one pipelined round trip. While Redis is unreachable it tries to
/// reconnect at most every `retry` (with a short connect timeout), and:
/// - for the first `degrade_after` of the outage (as this node's workers saw
///   it) it fails the batch with `store_unavailable`: the ingestor holds the
///   batch and tries it again, and past its limit of unfinished events
///   pauses its partitions, so Kafka is the buffer;
/// - after that it answers at once with degraded vectors
///   (`enriched_transaction::degraded`), which the ingestor sends to be
///   scored again once Redis is back.
/// When Redis is back it answers with real features again by itself. A batch may
/// take `feature_store::batch_timeout` in Redis (a slow reply under load is
/// not an outage). Every degraded batch is counted
/// (`troupe_enricher_degraded_events_total`) and logged as a warning with
/// its reason (at most 20 lines a second per worker).
group_spec make_group(const std::string& name, size_t instances, const std::string& redis_url,
                      caf::timespan retry = std::chrono::seconds(1), log_fn log = {},
                      caf::timespan degrade_after = std::chrono::seconds(20),
                      trace::probe probe = {});

/// The `feature-enricher` domain's registration (actors/domains.cpp): its settings
/// schema and group factory.
troupe::domain domain_entry();

} // namespace troupe::enrich
