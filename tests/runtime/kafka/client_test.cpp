// The Kafka producer and consumer against librdkafka's mock cluster (the
// real protocol on loopback), and against an independent client.

#include "runtime/kafka/client.hpp"

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <map>

#include <doctest/doctest.h>

#include "runtime/core/error.hpp"
#include "runtime/core/registry.hpp"
#include "runtime/kafka/embedded_kafka.hpp"

using namespace std::chrono_literals;
using namespace troupe;

namespace {

/// Polls until `n` records arrived or `deadline` passed.
std::vector<kafka::record> read(kafka::consumer& c, size_t n, std::chrono::seconds deadline) {
  std::vector<kafka::record> got;
  auto until = std::chrono::steady_clock::now() + deadline;
  while (got.size() < n && std::chrono::steady_clock::now() < until) {
    auto batch = c.poll(500, 100ms);
    got.insert(got.end(), batch.begin(), batch.end());
  }
  return got;
}

} // namespace

TEST_CASE("records are consumed in order per key, and every delivery is reported") {
  auto mock = kafka::embedded_kafka::make(3, {{"events", 4}});
  REQUIRE(mock);
  auto p = kafka::producer::make(kafka::defaults((*mock)->bootstrap()));
  REQUIRE(p);
  std::atomic<int> done{0};
  for (int i = 0; i < 2000; ++i)
    REQUIRE(!(*p)->produce("events", "k" + std::to_string(i % 20), std::to_string(i),
                           [&](const caf::error& err) {
                             if (!err)
                               ++done;
                           }));
  REQUIRE(!(*p)->flush(10s));
  CHECK(done == 2000);
  CHECK((*p)->delivered() == 2000);
  auto c = kafka::consumer::make(kafka::defaults((*mock)->bootstrap()), "g", {"events"});
  REQUIRE(c);
  auto got = read(**c, 2000, 30s);
  REQUIRE(got.size() == 2000);
  std::map<std::string, int> last;
  std::set<int32_t> partitions;
  for (auto& r : got) {
    auto v = std::stoi(r.value);
    auto i = last.find(r.key);
    if (i != last.end())
      CHECK(v > i->second);
    last[r.key] = v;
    partitions.insert(r.partition);
  }
  CHECK(last.size() == 20);
  CHECK(partitions.size() == 4);
  CHECK((*c)->assignment().size() == 4);
}

TEST_CASE("a new member of the group starts after the last committed offset") {
  auto mock = kafka::embedded_kafka::make(1, {{"t", 1}});
  REQUIRE(mock);
  auto conf = kafka::defaults((*mock)->bootstrap());
  auto p = kafka::producer::make(conf);
  REQUIRE(p);
  for (int i = 0; i < 100; ++i)
    REQUIRE(!(*p)->produce("t", "k", std::to_string(i)));
  REQUIRE(!(*p)->flush(10s));
  {
    auto a = kafka::consumer::make(conf, "g", {"t"});
    REQUIRE(a);
    auto got = read(**a, 100, 30s);
    REQUIRE(got.size() == 100);
    // Only the first 60 were finished: commit the next offset to read.
    REQUIRE(!(*a)->commit({{"t", 0, 60}}));
    auto c = (*a)->committed({{"t", 0, 0}}, 5s);
    REQUIRE(c);
    CHECK(c->at(0).offset == 60);
  }
  auto b = kafka::consumer::make(conf, "g", {"t"});
  REQUIRE(b);
  auto again = read(**b, 40, 30s);
  REQUIRE(again.size() == 40);
  CHECK(again.front().offset == 60);
  CHECK(again.front().value == "60");
  CHECK(again.back().value == "99");
}

TEST_CASE("paused partitions deliver nothing until they are resumed") {
  auto mock = kafka::embedded_kafka::make(1, {{"t", 2}});
  REQUIRE(mock);
  auto conf = kafka::defaults((*mock)->bootstrap());
  auto p = kafka::producer::make(conf);
  REQUIRE(p);
  REQUIRE(!(*p)->produce("t", "a", "first"));
  REQUIRE(!(*p)->flush(5s));
  auto c = kafka::consumer::make(conf, "g", {"t"});
  REQUIRE(c);
  REQUIRE(read(**c, 1, 30s).size() == 1);
  auto parts = (*c)->assignment();
  REQUIRE(parts.size() == 2);
  REQUIRE(!(*c)->pause(parts));
  for (int i = 0; i < 10; ++i)
    REQUIRE(!(*p)->produce("t", std::to_string(i), "later"));
  REQUIRE(!(*p)->flush(5s));
  CHECK(read(**c, 1, 1s).empty());
  REQUIRE(!(*c)->resume(parts));
  CHECK(read(**c, 10, 10s).size() == 10);
}

namespace {

/// The registry's lag gauge of `group` on `topic`/0 (-1: none).
double lag_gauge(const std::string& group, const std::string& topic) {
  for (auto& s : registry::instance().samples())
    if (s.name == "troupe_kafka_consumer_lag"
        && s.ls == registry::labels{{"consumer_group", group}, {"topic", topic}, {"partition", "0"}})
      return s.value;
  return -1;
}

} // namespace

TEST_CASE("a consumer's lag counts the records it has not committed, and /metrics sees it") {
  auto mock = kafka::embedded_kafka::make(1, {{"lagging", 1}});
  REQUIRE(mock);
  auto conf = kafka::defaults((*mock)->bootstrap());
  auto p = kafka::producer::make(conf);
  REQUIRE(p);
  for (int i = 0; i < 100; ++i)
    REQUIRE(!(*p)->produce("lagging", "k", std::to_string(i)));
  REQUIRE(!(*p)->flush(5s));
  auto c = kafka::consumer::make(conf, "lag-group", {"lagging"});
  REQUIRE(c);
  // Read exactly 10: before any commit, the lag counts from the position.
  std::vector<kafka::record> got;
  auto until = std::chrono::steady_clock::now() + 30s;
  while (got.size() < 10 && std::chrono::steady_clock::now() < until) {
    auto batch = (*c)->poll(10 - got.size(), 100ms);
    got.insert(got.end(), batch.begin(), batch.end());
  }
  REQUIRE(got.size() == 10);
  auto lag = (*c)->lag();
  REQUIRE(lag.size() == 1);
  CHECK(lag[0].topic == "lagging");
  CHECK(lag[0].offset == 90);
  REQUIRE(!(*c)->commit({{"lagging", 0, 10}}));
  // Read the rest without committing: the lag stays what is uncommitted.
  until = std::chrono::steady_clock::now() + 30s;
  while (got.size() < 100 && std::chrono::steady_clock::now() < until) {
    auto batch = (*c)->poll(100, 100ms);
    got.insert(got.end(), batch.begin(), batch.end());
  }
  REQUIRE(got.size() == 100);
  lag = (*c)->lag();
  REQUIRE(lag.size() == 1);
  CHECK(lag[0].offset == 90);
  REQUIRE(!(*c)->commit({{"lagging", 0, 100}}));
  CHECK((*c)->lag()[0].offset == 0);
  // The polls publish it to the registry (at most 4 times a second).
  until = std::chrono::steady_clock::now() + 5s;
  while (lag_gauge("lag-group", "lagging") != 0 && std::chrono::steady_clock::now() < until)
    (*c)->poll(1, 50ms);
  CHECK(lag_gauge("lag-group", "lagging") == 0);
  // A member that leaves takes its gauges with it.
  c->reset();
  CHECK(lag_gauge("lag-group", "lagging") == -1);
}

TEST_CASE("an idle member reports a lag of 0 for partitions with nothing to read") {
  auto mock = kafka::embedded_kafka::make(1, {{"quiet", 2}});
  REQUIRE(mock);
  auto c = kafka::consumer::make(kafka::defaults((*mock)->bootstrap()), "idle-group", {"quiet"});
  REQUIRE(c);
  // Polls (nothing arrives) until both partitions are assigned and their
  // lag is known: where the member starts, as the group committed nothing.
  auto until = std::chrono::steady_clock::now() + 30s;
  std::vector<kafka::partition_offset> lag;
  while (lag.size() < 2 && std::chrono::steady_clock::now() < until) {
    CHECK((*c)->poll(10, 50ms).empty());
    lag = (*c)->lag();
  }
  REQUIRE(lag.size() == 2);
  for (auto& x : lag)
    CHECK(x.offset == 0);
}

TEST_CASE("a consume error is counted by its name and summarised in one log line") {
  auto mock = kafka::embedded_kafka::make(1, {{"no-offset", 1}});
  REQUIRE(mock);
  auto conf = kafka::defaults((*mock)->bootstrap());
  // A new group with nothing committed may not pick a start by itself: the
  // consumer reports an error instead of reading.
  conf["auto.offset.reset"] = "error";
  auto c = kafka::consumer::make(conf, "error-group", {"no-offset"});
  REQUIRE(c);
  std::string summary;
  auto until = std::chrono::steady_clock::now() + 30s;
  while (summary.empty() && std::chrono::steady_clock::now() < until) {
    CHECK((*c)->poll(10, 100ms).empty());
    summary = (*c)->error_summary();
  }
  CHECK_MESSAGE(summary.rfind("Kafka consume error", 0) == 0, summary);
  CHECK_MESSAGE(summary.find("no-offset") != std::string::npos, summary);
  // Once taken, the errors are gone; the counter keeps them.
  CHECK((*c)->take_errors().empty());
  double counted = 0;
  for (auto& x : registry::instance().samples())
    if (x.name == "troupe_kafka_consumer_errors_total"
        && x.ls == registry::labels{{"consumer_group", "error-group"},
                                    {"error", "_AUTO_OFFSET_RESET"}})
      counted = x.value;
  CHECK(counted >= 1);
}

TEST_CASE("a bad setting is refused with its name") {
  auto p = kafka::producer::make({{"no.such.setting", "1"}});
  REQUIRE(!p);
  CHECK(render(p.error()).find("kafka setting no.such.setting") != std::string::npos);
}

TEST_CASE("an independent client (python3-kafka) produces records that Troupe consumes") {
  auto mock = kafka::embedded_kafka::make(1, {{"t", 1}});
  REQUIRE(mock);
  auto cmd = "/usr/bin/python3 -c \"from kafka import KafkaProducer\n"
             "p = KafkaProducer(bootstrap_servers='" + (*mock)->bootstrap() + "')\n"
             "for i in range(50): p.send('t', key=b'k', value=b'py-%d' % i)\n"
             "p.flush(10)\" 2>&1";
  REQUIRE(std::system(cmd.c_str()) == 0);
  auto c = kafka::consumer::make(kafka::defaults((*mock)->bootstrap()), "g", {"t"});
  REQUIRE(c);
  auto got = read(**c, 50, 30s);
  REQUIRE(got.size() == 50);
  CHECK(got.front().value == "py-0");
  CHECK(got.back().value == "py-49");
}

TEST_CASE("librdkafka's own lines and client errors go to the node's log, and errors are counted") {
  // A log into a file this test reads back.
  std::FILE* out = std::tmpfile();
  REQUIRE(out);
  kafka::set_client_log(log_fn{logger::make("n1", log_level::info, log_format::text, out)});
  // Nothing listens on port 1 of loopback: the client cannot connect.
  auto c = kafka::consumer::make(kafka::defaults("127.0.0.1:1"), "down-group", {"t"});
  REQUIRE(c);
  auto errors = [] {
    double n = 0;
    for (auto& x : registry::instance().samples())
      if (x.name == "troupe_kafka_client_errors_total")
        n += x.value;
    return n;
  };
  auto until = std::chrono::steady_clock::now() + 20s;
  while (errors() == 0 && std::chrono::steady_clock::now() < until)
    (*c)->poll(10, 100ms);
  CHECK(errors() >= 1);
  c->reset();
  kafka::set_client_log({});
  std::fflush(out);
  std::rewind(out);
  std::string text;
  char buf[4096];
  for (size_t n; (n = std::fread(buf, 1, sizeof(buf), out)) > 0;)
    text.append(buf, n);
  std::fclose(out);
  // Whole structured lines from the node's log, naming the client.
  CHECK_MESSAGE(text.find("[n1] kafka rdkafka#consumer-") != std::string::npos, text);
  CHECK_MESSAGE(text.find("127.0.0.1:1") != std::string::npos, text);
}

TEST_CASE("the stall watch finds a member that holds partitions with unread records and reads nothing, and one that holds none while nobody reads") {
  auto mock = kafka::embedded_kafka::make(1, {{"work", 1}});
  REQUIRE(mock);
  auto conf = kafka::defaults((*mock)->bootstrap());
  auto p = kafka::producer::make(conf);
  REQUIRE(p);
  for (int i = 0; i < 50; ++i)
    REQUIRE(!(*p)->produce("work", "k", std::to_string(i)));
  REQUIRE(!(*p)->flush(10s));
  // `a` takes the only partition and reads ten records one by one, then
  // keeps calling poll for none (max 0): it holds unread records it never
  // takes.
  auto a = kafka::consumer::make(conf, "stall", {"work"});
  REQUIRE(a);
  std::vector<kafka::record> got;
  auto until = std::chrono::steady_clock::now() + 30s;
  while (got.size() < 10 && std::chrono::steady_clock::now() < until) {
    auto one = (*a)->poll(1, 100ms);
    got.insert(got.end(), one.begin(), one.end());
  }
  REQUIRE(got.size() == 10);
  REQUIRE((*a)->assignment().size() == 1);
  // Reading normally, it is not wedged.
  CHECK((*a)->stalled(1s, false).empty());
  // `b` joins: the group has one partition, so `b` holds none.
  auto b = kafka::consumer::make(conf, "stall", {"work"});
  REQUIRE(b);
  std::string a_stall, b_stall;
  until = std::chrono::steady_clock::now() + 40s;
  while ((a_stall.empty() || b_stall.empty()) && std::chrono::steady_clock::now() < until) {
    (*a)->poll(0, 50ms);
    (*b)->poll(1, 50ms);
    if (a_stall.empty())
      a_stall = (*a)->stalled(1s, false);
    if (b_stall.empty() && (*b)->assignment().empty())
      b_stall = (*b)->stalled(1s, false);
  }
  INFO(a_stall);
  INFO(b_stall);
  REQUIRE((*a)->assignment().size() == 1);
  CHECK(a_stall.find("holds 1 partitions with ") != std::string::npos);
  CHECK(a_stall.find(" unread records and read nothing for ") != std::string::npos);
  CHECK(b_stall.find("held no partitions for ") != std::string::npos);
  CHECK(b_stall.find("1 partitions of its topics had unread records and no progress")
        != std::string::npos);
  // Paused, a member is never wedged.
  CHECK((*a)->stalled(1s, true).empty());
  double wedged = 0;
  for (auto& x : registry::instance().samples())
    if (x.name == "troupe_kafka_consumer_wedged_total"
        && x.ls == registry::labels{{"consumer_group", "stall"}})
      wedged = x.value;
  CHECK(wedged == 2);
}
