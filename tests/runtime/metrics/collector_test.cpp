#include "runtime/metrics/collector.hpp"

#include "actors/echo/echo.hpp"
#include "runtime/node/node.hpp"
#include "tests/support/fixture.hpp"

using namespace std::chrono_literals;
using namespace troupe;
using namespace troupe::test;

namespace {

/// Waits (bounded) until the collector's rendering contains `needle`.
std::string wait_for_text(fixture& f, metrics::snapshot& snap, const std::string& needle) {
  auto deadline = std::chrono::steady_clock::now() + 10s;
  for (;;) {
    auto text = snap.get();
    if (text->find(needle) != std::string::npos)
      return *text;
    REQUIRE_MESSAGE(std::chrono::steady_clock::now() < deadline,
                    "no '" << needle << "' in:\n"
                           << *text);
    f.self->receive(caf::after(10ms) >> [] {});
  }
}

} // namespace

TEST_CASE_FIXTURE(fixture, "a node's metrics count each group's events, restarts and latency") {
  node_config cfg;
  cfg.name = "n1";
  cfg.groups.push_back(echo::make_group("echo", 2));
  auto n = node::make(sys, cfg);
  REQUIRE_MESSAGE(n, render(n.error()));
  auto deadline = std::chrono::steady_clock::now() + 5s;
  while (!(*n)->group("echo")) {
    REQUIRE(std::chrono::steady_clock::now() < deadline);
    self->receive(caf::after(1ms) >> [] {});
  }
  auto echo = (*n)->group("echo");
  for (uint64_t i = 0; i < 25; ++i)
    CHECK(ask<uint64_t>(echo, i) == i);
  // Crash one worker: the supervisor restarts it and records why.
  auto sup = ask<caf::actor>(echo, supervisor_atom::value);
  auto kids = children_of(sup);
  REQUIRE(!kids.empty());
  caf::anon_send<caf::message_priority::high>(
    kids[0].handle, caf::exit_msg{caf::actor_addr{}, caf::make_error(ec::invalid_argument, "injected")});
  auto snap = std::make_shared<metrics::snapshot>();
  metrics::collector_settings ms;
  ms.node = "n1";
  ms.directory = (*n)->directory();
  ms.interval = 50ms;
  ms.extra = [](metrics::exposition& e) { e.gauge("extra_figure", "From the node.", {}, 7); };
  auto collector = metrics::spawn_collector(sys, ms, snap);
  auto text = wait_for_text(*this, *snap,
                            "troupe_group_restarts_total{node=\"n1\",group=\"echo\",kind=\"worker\"} 1");
  CHECK(text.find("troupe_group_events_in_total{node=\"n1\",group=\"echo\"} 25\n")
        != std::string::npos);
  CHECK(text.find("troupe_group_events_out_total{node=\"n1\",group=\"echo\"} 25\n")
        != std::string::npos);
  CHECK(text.find("troupe_group_latency_seconds_count{node=\"n1\",group=\"echo\"} 25\n")
        != std::string::npos);
  CHECK(text.find("troupe_group_instances{node=\"n1\",group=\"echo\"} 2\n") != std::string::npos);
  CHECK(text.find("troupe_group_recent_crashes{node=\"n1\",group=\"echo\",reason=") != std::string::npos);
  CHECK(text.find("reason=\"invalid_argument\"} 1\n") != std::string::npos);
  CHECK(text.find("extra_figure 7\n") != std::string::npos);
  CHECK(text.find("process_resident_memory_bytes{node=\"n1\"} ") != std::string::npos);
  caf::anon_send_exit(collector, caf::exit_reason::user_shutdown);
}
