#pragma once

#include <memory>
#include <string>

#include <caf/actor_system.hpp>
#include <caf/expected.hpp>

#include "runtime/core/log.hpp"
#include "runtime/core/trace.hpp"
#include "runtime/node/node.hpp"

namespace troupe {

/// What a node's `traces` service is built with.
struct trace_service_settings {
  std::shared_ptr<trace::tracer> tracer;
  /// Kafka's bootstrap list; the topic the sampled spans go to.
  std::string kafka;
  std::string topic = "traces";
  /// Where the service registers itself as `@traces` (the node agent asks
  /// it there for an operator's `trace`).
  std::shared_ptr<group_directory> directory;
  log_fn log;
};

/// The node's `traces` service (a detached actor: Kafka's producer may
/// block): every 250 ms it writes the sampled spans the tracer queued to
/// `topic`, at most 500 per record, each record an OTLP/JSON
/// `ExportTraceServiceRequest` keyed by the node (what an OpenTelemetry
/// Collector's Kafka receiver reads with `encoding: otlp_json`). Spans
/// Kafka refuses are counted (`troupe_traces_export_failed_total`), not
/// retried: tracing never holds the pipeline back. `(trace_atom, id)`
/// answers the spans this node holds of transaction `id`, JSON
/// `{"node", "spans": [...]}`.
caf::expected<caf::actor> spawn_trace_service(caf::actor_system& sys,
                                              trace_service_settings settings);

} // namespace troupe
