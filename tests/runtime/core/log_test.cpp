// The node's structured log, its overload budget and the process registry.

#include "runtime/core/log.hpp"

#include <cstdio>
#include <regex>
#include <thread>

#include <doctest/doctest.h>
#include <nlohmann/json.hpp>

#include "runtime/core/error.hpp"
#include "runtime/core/registry.hpp"

using namespace troupe;

namespace {

/// Everything written to `f` so far.
std::string contents(std::FILE* f) {
  std::fflush(f);
  std::rewind(f);
  std::string out;
  char buf[4096];
  size_t n;
  while ((n = std::fread(buf, 1, sizeof(buf), f)) > 0)
    out.append(buf, n);
  return out;
}

std::vector<std::string> lines_of(const std::string& text) {
  std::vector<std::string> result;
  size_t at = 0;
  while (at < text.size()) {
    auto nl = text.find('\n', at);
    result.push_back(text.substr(at, nl - at));
    at = nl == std::string::npos ? text.size() : nl + 1;
  }
  return result;
}

} // namespace

TEST_CASE("a text line carries the time, the level, the node, the message and the set fields") {
  logger l{"n1", log_level::info, log_format::text, stdout};
  // 2026-11-30T11:09:41.123Z
  auto line = l.format_line(1796036981123, log_level::warning, "fraud-detector", "tx-42",
                            "supervisor fraud-detector.workers: fraud-detector/0 exited");
  CHECK(line
        == "2026-11-30T11:09:41.123Z WARN  [n1] supervisor fraud-detector.workers: "
           "fraud-detector/0 exited group=fraud-detector event=tx-42");
  // Without fields, the line ends with the message; a field with a space is
  // quoted, and a newline in the message cannot start a new line.
  CHECK(l.format_line(0, log_level::info, "", "", "member n2 up")
        == "1970-01-01T00:00:00.000Z INFO  [n1] member n2 up");
  CHECK(l.format_line(0, log_level::error, "", "bad id", "two\nlines")
        == "1970-01-01T00:00:00.000Z ERROR [n1] two\\nlines event=\"bad id\"");
}

TEST_CASE("a JSON line is one object with ts, level, node, group, event and msg") {
  logger l{"n2", log_level::info, log_format::json, stdout};
  auto line = l.format_line(1796036981123, log_level::debug, "ingestor", "tx-\"7\"",
                            "scored 0.93\tby model \x01 v1");
  auto j = nlohmann::json::parse(line);
  CHECK(j["ts"] == "2026-11-30T11:09:41.123Z");
  CHECK(j["level"] == "debug");
  CHECK(j["node"] == "n2");
  CHECK(j["group"] == "ingestor");
  CHECK(j["event"] == "tx-\"7\"");
  CHECK(j["msg"] == "scored 0.93\tby model \x01 v1");
  CHECK(line.find('\n') == std::string::npos);
  // Unset fields are left out.
  auto plain = nlohmann::json::parse(l.format_line(0, log_level::info, "", "", "up"));
  CHECK(!plain.contains("group"));
  CHECK(!plain.contains("event"));
}

TEST_CASE("lines above the level are not written, and the level can change while running") {
  auto* f = std::tmpfile();
  REQUIRE(f);
  auto l = logger::make("n1", log_level::info, log_format::text, f);
  log_fn log{l, "ranker"};
  log.debug("hidden", "e1");
  log.info("shown", "e2");
  log("shown too");
  CHECK(!log.enabled(log_level::debug));
  l->set_level(log_level::debug);
  CHECK(log.enabled(log_level::debug));
  log.debug("now shown", "e3");
  log.trace("still hidden");
  l->set_level(log_level::error);
  log.warning("hidden again");
  log.with_group("alerter").error("an error");
  auto lines = lines_of(contents(f));
  REQUIRE(lines.size() == 4);
  CHECK(lines[0].find("INFO  [n1] shown group=ranker event=e2") != std::string::npos);
  CHECK(lines[1].find("INFO  [n1] shown too group=ranker") != std::string::npos);
  CHECK(lines[2].find("DEBUG [n1] now shown group=ranker event=e3") != std::string::npos);
  CHECK(lines[3].find("ERROR [n1] an error group=alerter") != std::string::npos);
  CHECK(l->lines(log_level::info) == 2);
  CHECK(l->lines(log_level::debug) == 1);
  CHECK(l->lines(log_level::warning) == 0);
  // An empty log_fn writes nothing and is false.
  log_fn none;
  CHECK(!none);
  none.error("nowhere");
  std::fclose(f);
}

TEST_CASE("levels and formats are parsed by name, and a bad name is refused with the choices") {
  CHECK(parse_log_level("debug") == log_level::debug);
  CHECK(parse_log_level("warn") == log_level::warning);
  CHECK(parse_log_format("json") == log_format::json);
  auto bad = parse_log_level("verbose");
  REQUIRE(!bad);
  CHECK(render(bad.error()).find("unknown log level 'verbose' (expected error, warning, info, "
                                 "debug or trace)")
        != std::string::npos);
  auto bad_format = parse_log_format("xml");
  REQUIRE(!bad_format);
  CHECK(render(bad_format.error()).find("expected text or json") != std::string::npos);
  for (auto x : {log_level::error, log_level::warning, log_level::info, log_level::debug,
                 log_level::trace})
    CHECK(parse_log_level(to_string(x)) == x);
}

TEST_CASE("lines from many threads at once are never torn or mixed") {
  auto* f = std::tmpfile();
  REQUIRE(f);
  auto l = logger::make("n1", log_level::info, log_format::json, f);
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t)
    threads.emplace_back([l, t] {
      log_fn log{l, "g" + std::to_string(t)};
      for (int i = 0; i < 2000; ++i)
        log.info(std::string(static_cast<size_t>(i % 300), 'x'), std::to_string(i));
    });
  for (auto& t : threads)
    t.join();
  auto lines = lines_of(contents(f));
  REQUIRE(lines.size() == 8000);
  std::map<std::string, int> per_group;
  for (auto& line : lines) {
    auto j = nlohmann::json::parse(line, nullptr, false);
    REQUIRE(!j.is_discarded());
    ++per_group[j["group"].get<std::string>()];
    CHECK(j["msg"].get<std::string>().size()
          == static_cast<size_t>(std::stoi(j["event"].get<std::string>()) % 300));
  }
  CHECK(per_group.size() == 4);
  for (auto& [g, n] : per_group)
    CHECK(n == 2000);
  std::fclose(f);
}

TEST_CASE("a log budget lets a burst through each second and tells how many it held back") {
  log_budget b{3};
  uint64_t held = 0;
  int passed = 0;
  for (int i = 0; i < 10; ++i)
    if (b.take_at(100, held))
      ++passed;
  CHECK(passed == 3);
  CHECK(held == 0);
  // The next second: the first line through learns of the 7 held back.
  CHECK(b.take_at(101, held));
  CHECK(held == 7);
  CHECK(b.take_at(101, held));
  CHECK(held == 0);
}

TEST_CASE("the registry keeps counters, and gauges that only their owner may erase") {
  auto& r = registry::instance();
  auto& c = r.counter("troupe_test_things_total", "Things.", {{"kind", "a"}});
  c += 3;
  CHECK(&r.counter("troupe_test_things_total", "Things.", {{"kind", "a"}}) == &c);
  int owner_a = 0, owner_b = 0;
  r.set_gauge("troupe_test_depth", "Depth.", {{"q", "1"}}, 5, &owner_a);
  r.set_gauge("troupe_test_depth", "Depth.", {{"q", "2"}}, 7, &owner_a);
  // b takes q=2 over; a's erase then leaves it alone.
  r.set_gauge("troupe_test_depth", "Depth.", {{"q", "2"}}, 8, &owner_b);
  r.erase_gauges(&owner_a);
  std::vector<std::string> seen;
  for (auto& s : r.samples())
    if (s.name.rfind("troupe_test_", 0) == 0)
      seen.push_back(s.name + "{" + s.ls[0].second + "}=" + std::to_string(int(s.value))
                     + (s.is_counter ? " counter" : " gauge"));
  CHECK(seen
        == std::vector<std::string>{"troupe_test_depth{2}=8 gauge",
                                    "troupe_test_things_total{a}=3 counter"});
  r.erase_gauge("troupe_test_depth", {{"q", "2"}}, &owner_a);
  r.erase_gauge("troupe_test_depth", {{"q", "2"}}, &owner_b);
  for (auto& s : r.samples())
    CHECK(s.name != "troupe_test_depth");
}
