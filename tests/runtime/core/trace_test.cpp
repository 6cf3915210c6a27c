// W3C trace context and the node's span recorder.

#include "runtime/core/trace.hpp"

#include <set>

#include <doctest/doctest.h>
#include <nlohmann/json.hpp>

using namespace troupe::trace;

TEST_CASE("a traceparent is read and written as W3C Trace Context says") {
  auto x = parse_traceparent("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01");
  REQUIRE(x);
  CHECK(x->trace_hi == 0x4bf92f3577b34da6ULL);
  CHECK(x->trace_lo == 0xa3ce929d0e0e4736ULL);
  CHECK(x->span == 0x00f067aa0ba902b7ULL);
  CHECK(x->sampled());
  CHECK(traceparent(*x) == "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01");
  CHECK(trace_hex(x->trace_hi, x->trace_lo) == "4bf92f3577b34da6a3ce929d0e0e4736");
  auto y = parse_traceparent("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00");
  REQUIRE(y);
  CHECK_FALSE(y->sampled());
  // A later version: its first four fields.
  CHECK(parse_traceparent("01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra"));
}

TEST_CASE("a traceparent that is not one is refused, not guessed") {
  for (auto bad : {"", "00", "garbage",
                   // all-zero trace id, all-zero parent id
                   "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
                   "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
                   // uppercase, a wrong separator, too long for version 00
                   "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
                   "00_4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
                   "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-x",
                   // version ff is invalid
                   "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
                   "00-4bf92f3577b34da6a3ce929d0e0e473g-00f067aa0ba902b7-01"})
    CHECK_MESSAGE(!parse_traceparent(bad), bad);
}

TEST_CASE("new traces have random ids and are sampled by their share") {
  std::set<std::string> ids;
  int sampled = 0;
  for (int i = 0; i < 10000; ++i) {
    auto t = new_trace(0.25);
    CHECK(t.valid());
    ids.insert(trace_hex(t.trace_hi, t.trace_lo));
    sampled += t.sampled() ? 1 : 0;
  }
  CHECK(ids.size() == 10000);
  CHECK(sampled > 2200);
  CHECK(sampled < 2800);
  CHECK_FALSE(new_trace(0).sampled());
  CHECK(new_trace(1).sampled());
}

TEST_CASE("the tracer keeps the latest spans, finds an event's in order, exports the sampled") {
  tracer t{"n1", 4, 2};
  auto where = t.place_of("fraud-detector", 2);
  CHECK(t.place_of("fraud-detector", 2) == where);
  struct item {
    context ctx;
    std::string id;
  };
  std::vector<item> xs{{{1, 2, 10, 1}, "t-1"}, {{3, 4, 20, 0}, "t-2"}, {{0, 0, 0, 1}, "t-3"}};
  auto of = [](item& x) { return std::make_pair(&x.ctx, &x.id); };
  t.stage(where, "score", unix_ns(), xs, of, {}, true);
  // Handed on: each traced event's span is now the new span.
  CHECK(xs[0].ctx.span != 10);
  CHECK(xs[2].ctx.span == 0); // no trace, no span
  auto found = t.find("t-1");
  REQUIRE(found.size() == 1);
  CHECK(found[0].parent == 10);
  CHECK(found[0].id == xs[0].ctx.span);
  auto j = t.to_json(found[0]);
  CHECK(j["group"] == "fraud-detector");
  CHECK(j["instance"] == 2);
  CHECK(j["node"] == "n1");
  CHECK(j["outcome"] == "ok");
  CHECK(j["trace_id"] == "00000000000000010000000000000002");
  // Only the sampled one (t-1) goes out, as OTLP JSON.
  auto out = t.take_exports(10);
  REQUIRE(out.size() == 1);
  auto otlp = t.to_otlp(out);
  auto& span = otlp["resourceSpans"][0]["scopeSpans"][0]["spans"][0];
  CHECK(span["traceId"] == "00000000000000010000000000000002");
  CHECK(span["parentSpanId"] == "000000000000000a");
  CHECK(span["status"]["code"] == 1);
  CHECK(otlp["resourceSpans"][0]["resource"]["attributes"][0]["value"]["stringValue"] == "troupe");
  // A failed stage, and the ring keeping the latest 4.
  for (int i = 0; i < 3; ++i)
    t.stage(where, "score", unix_ns(), xs, of, "boom");
  CHECK(t.find("t-1").size() == 2);
  CHECK(t.find("t-1").back().error == "boom");
  // The export queue holds 2: the third sampled span is dropped, counted.
  CHECK(t.take_exports(10).size() == 2);
  CHECK(t.dropped() == 1);
}
