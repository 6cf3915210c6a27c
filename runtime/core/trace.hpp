#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <type_traits>
#include <vector>

#include <nlohmann/json_fwd.hpp>

namespace troupe::trace {

/// Where an event is in its trace (W3C Trace Context): the trace id (128
/// bits), the span that handed it on (the parent of the next span), the
/// trace flags (bit 0: sampled, its spans are exported).
struct context {
  uint64_t trace_hi = 0;
  uint64_t trace_lo = 0;
  uint64_t span = 0;
  uint8_t flags = 0;

  bool valid() const {
    return trace_hi != 0 || trace_lo != 0;
  }

  bool sampled() const {
    return (flags & 1) != 0;
  }
};

/// Parses a `traceparent` header, version 00: `00-<32 hex trace id>-<16
/// hex parent id>-<2 hex flags>`, lowercase, neither id all zeros (W3C
/// Trace Context, level 1). A future version's longer value is read by its
/// first four fields. Anything else: none.
std::optional<context> parse_traceparent(std::string_view text);

/// `00-<trace id>-<span>-<flags>`.
std::string traceparent(const context& x);

/// The 32 lowercase hex digits of a trace id.
std::string trace_hex(uint64_t hi, uint64_t lo);

/// The 16 lowercase hex digits of a span id.
std::string span_hex(uint64_t id);

/// A random span id (never 0), from a per-thread generator.
uint64_t new_span_id();

/// A new trace: random id, sampled with probability `sample` (0 to 1).
context new_trace(double sample);

/// Now, in Unix nanoseconds.
int64_t unix_ns();

/// One stage's work on one event.
struct span {
  uint64_t trace_hi = 0;
  uint64_t trace_lo = 0;
  uint64_t id = 0;
  uint64_t parent = 0;
  uint8_t flags = 0;
  /// The place (node, group, instance) from `tracer::place`.
  uint32_t where = 0;
  int64_t start_ns = 0;
  int64_t end_ns = 0;
  /// "ingest", "enrich", "score", "alert".
  std::string name;
  /// The transaction id.
  std::string event;
  /// Empty: ok; else why the stage failed.
  std::string error;
};

/// Where spans happen.
struct place {
  std::string node;
  std::string group;
  uint32_t instance = 0;
};

/// A node's spans: the latest `capacity` in memory, for `troupe shell -c
/// 'trace <id>'`, and the sampled ones queued for the `traces` topic (at
/// most `export_capacity`; beyond, dropped and counted). Thread-safe; one
/// lock per batch of spans.
class tracer {
public:
  tracer(std::string node, size_t capacity = 100000, size_t export_capacity = 50000);

  const std::string& node() const {
    return node_;
  }

  /// The id of a place, registered once (by a worker at start).
  uint32_t place_of(const std::string& group, uint32_t instance);

  /// The place of an id.
  place where(uint32_t id) const;

  /// Records spans.
  void record(std::vector<span> spans);

  /// Records a stage that worked on `xs` from `start_ns` until now: one
  /// span per event with a trace, its parent the event's span. `ctx_of`
  /// gives an element's (context, event id). Each event's context then
  /// names its new span, when `hand_on`.
  template <class Range, class F>
  void stage(uint32_t where, std::string_view name, int64_t start_ns, Range& xs, F ctx_of,
             std::string_view error = {}, bool hand_on = false) {
    std::vector<span> out;
    out.reserve(xs.size());
    auto end = unix_ns();
    for (auto& x : xs) {
      auto [ctx, event] = ctx_of(x);
      if (!ctx->valid())
        continue;
      span s;
      s.trace_hi = ctx->trace_hi;
      s.trace_lo = ctx->trace_lo;
      s.id = new_span_id();
      s.parent = ctx->span;
      s.flags = ctx->flags;
      s.where = where;
      s.start_ns = start_ns;
      s.end_ns = end;
      s.name = name;
      s.event = *event;
      s.error = error;
      if constexpr (!std::is_const_v<std::remove_pointer_t<decltype(ctx)>>) {
        if (hand_on)
          ctx->span = s.id;
      }
      out.push_back(std::move(s));
    }
    if (!out.empty())
      record(std::move(out));
  }

  /// The spans in memory of event `event`, oldest first.
  std::vector<span> find(const std::string& event) const;

  /// Takes up to `max` spans queued for export.
  std::vector<span> take_exports(size_t max);

  /// Spans dropped because the export queue was full.
  uint64_t dropped() const {
    return dropped_.load(std::memory_order_relaxed);
  }

  /// `{"trace_id","span_id","parent_span_id","name","node","group",
  /// "instance","start_ns","end_ns","duration_ms","outcome","error"}`.
  nlohmann::json to_json(const span& s) const;

  /// An OTLP/JSON `ExportTraceServiceRequest` of `spans` (OpenTelemetry's
  /// JSON encoding: ids in hex, times as strings of Unix nanoseconds), the
  /// resource naming the service `troupe` and this node.
  nlohmann::json to_otlp(const std::vector<span>& spans) const;

private:
  std::string node_;
  size_t capacity_;
  size_t export_capacity_;
  mutable std::mutex mtx_;
  std::vector<span> ring_;
  size_t next_ = 0;
  std::vector<span> exports_;
  std::vector<place> places_;
  std::atomic<uint64_t> dropped_{0};
};

/// What a group's workers record their spans with: the node's tracer
/// (null: no tracing) and the cluster-wide instance number of a worker.
struct probe {
  std::shared_ptr<tracer> to;
  std::function<uint32_t(const std::string& group, size_t index)> instance_of;

  explicit operator bool() const {
    return to != nullptr;
  }

  /// The place of worker `index` of `group` (0 without a tracer).
  uint32_t place(const std::string& group, size_t index) const {
    if (!to)
      return 0;
    return to->place_of(group, instance_of ? instance_of(group, index)
                                           : static_cast<uint32_t>(index));
  }
};

} // namespace troupe::trace
