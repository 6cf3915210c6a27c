// The fraud pipeline end to end with real parts: librdkafka's mock cluster
// (in this process), a real redis-server, and `troupe node` processes
// hosting the ingestor, feature-enricher, fraud-detector and alerter.

#include <chrono>
#include <cstdlib>
#include <fstream>
#include <map>
#include <regex>
#include <set>
#include <thread>
#include <algorithm>

#include <doctest/doctest.h>
#include <nlohmann/json.hpp>
#include <unistd.h>

#include "runtime/core/error.hpp"
#include "runtime/kafka/client.hpp"
#include "runtime/kafka/embedded_kafka.hpp"
#include "tests/support/cluster_file.hpp"
#include "tests/support/loopback.hpp"
#include "tests/support/python_reference.hpp"
#include "tests/support/redis_server.hpp"

using namespace std::chrono_literals;
using namespace troupe;
using namespace troupe::test;

namespace {

const std::string source_dir = TROUPE_SOURCE_DIR;
const std::string model = source_dir + "/actors/fraud_detector/model/fraud.json";

/// A generated stream and the alerts python3-xgboost says it must raise.
struct expectation {
  std::vector<std::pair<std::string, std::string>> events; // (user, JSON)
  std::set<std::string> alerts;
};

expectation expected(int seed, int users, double days) {
  auto j = python_reference("expected_alerts.py", {std::to_string(seed), std::to_string(users),
                                                   std::to_string(days), model, "0.5"});
  expectation e;
  for (auto& ev : j["events"])
    e.events.emplace_back(ev[0].get<std::string>(), ev[1].get<std::string>());
  for (auto& id : j["alerts"])
    e.alerts.insert(id.get<std::string>());
  return e;
}

std::string pipeline_groups(const std::string& nodes) {
  return "[[group]]\nname = \"ingestor\"\ndomain = \"ingestor\"\ninstances = 2\nnodes = " + nodes
         + "\nsettings = { report_every = \"1s\" }\n"
           "[[group]]\nname = \"feature-enricher\"\ndomain = \"feature-enricher\"\ninstances = 2\n"
           "nodes = " + nodes + "\n"
           "[[group]]\nname = \"fraud-detector\"\ndomain = \"fraud-detector\"\ninstances = 2\n"
           "nodes = " + nodes + "\nsettings = { model = \"" + model + "\" }\n"
           "[[group]]\nname = \"alerter\"\ndomain = \"alerter\"\ninstances = 1\n"
           "nodes = " + nodes + "\n";
}

/// What every case runs against: librdkafka's mock cluster (3 brokers) with
/// the pipeline's topics, and a private redis-server.
struct parts {
  std::unique_ptr<kafka::embedded_kafka> mock;
  std::string bootstrap;
  redis_server redis;

  parts() {
    auto m = kafka::embedded_kafka::make(
      3, {{"transactions", 12}, {"dead-letters", 1}, {"fraud-alerts", 4}});
    REQUIRE(m);
    mock = std::move(*m);
    bootstrap = mock->bootstrap();
  }
};

/// Reads `topic` from the start until `n` records arrived or `deadline`.
std::vector<kafka::record> read_all(const std::string& bootstrap, const std::string& topic,
                                    size_t n, std::chrono::seconds deadline) {
  auto c = kafka::consumer::make(kafka::defaults(bootstrap), "test-reader-" + topic, {topic});
  REQUIRE(c);
  std::vector<kafka::record> got;
  auto until = std::chrono::steady_clock::now() + deadline;
  while (got.size() < n && std::chrono::steady_clock::now() < until) {
    auto batch = (*c)->poll(1000, 100ms);
    got.insert(got.end(), batch.begin(), batch.end());
  }
  // Whatever arrives a little later would be a duplicate: look for it.
  auto extra = (*c)->poll(1000, 500ms);
  got.insert(got.end(), extra.begin(), extra.end());
  return got;
}

/// Waits until the ingestors' consumer group has committed every partition
/// of `transactions` up to its end.
bool all_committed(const std::string& bootstrap, std::chrono::seconds deadline) {
  auto until = std::chrono::steady_clock::now() + deadline;
  for (;;) {
    auto progress = kafka::group_progress(kafka::defaults(bootstrap), "troupe.ingestor",
                                          "transactions", 12, 5s);
    auto done = progress && std::all_of(progress->begin(), progress->end(), [](auto& p) {
                  return p.first == p.second;
                });
    if (done || std::chrono::steady_clock::now() >= until)
      return done;
  }
}

/// The body of `GET path` from 127.0.0.1:port ("" if it failed).
std::string http_get(uint16_t port, const std::string& path) {
  auto reply = loopback_exchange(
    port, "GET " + path + " HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n");
  auto body = reply.find("\r\n\r\n");
  return body == std::string::npos ? std::string{} : reply.substr(body + 4);
}

/// Produces every event with its user as key (a user's events share a
/// partition, so they stay in order).
void produce(const std::string& bootstrap, const expectation& want) {
  auto p = kafka::producer::make(kafka::defaults(bootstrap));
  REQUIRE(p);
  for (auto& [user, json] : want.events)
    REQUIRE(!(*p)->produce("transactions", user, json));
  REQUIRE(!(*p)->flush(30s));
}

} // namespace

TEST_CASE("10,000 transactions end to end: each scored, alerts exactly the model's decisions, bad events in dead letters") {
  auto want = expected(2026, 920, 3.0);
  REQUIRE(want.events.size() >= 10000);
  REQUIRE(want.alerts.size() > 50);
  parts env;
  auto& bootstrap = env.bootstrap;
  auto& redis = env.redis;
  cluster_file f{"pipeline", "a-shared-secret", "", pipeline_groups("[\"n1\"]"), {"n1"}};
  auto node = start_node(f, "n1", {"--kafka", bootstrap, "--redis", redis.url()});
  auto p = kafka::producer::make(kafka::defaults(bootstrap));
  REQUIRE(p);
  for (auto& [user, json] : want.events)
    REQUIRE(!(*p)->produce("transactions", user, json));
  // One bad event of each kind, between the good ones.
  std::map<std::string, std::string> bad{
    {"bad-json", "{\"schema\":1,"},
    {"bad-missing", R"({"schema":1,"id":"x","amount":1,"currency":"EUR","merchant":"m","category":"c","country":"DE","device":"d","timestamp":1})"},
    {"bad-type", R"({"schema":1,"id":"x","user":"u","amount":"1","currency":"EUR","merchant":"m","category":"c","country":"DE","device":"d","timestamp":1})"},
    {"bad-schema", R"({"schema":9,"id":"x"})"},
    {"bad-large", std::string(70000, ' ') + "{}"},
    {"bad-binary", std::string{"\xff\xfe\x00\x01", 4}}};
  for (auto& [key, value] : bad)
    REQUIRE(!(*p)->produce("transactions", key, value));
  REQUIRE(!(*p)->flush(30s));
  auto alerts = read_all(bootstrap, "fraud-alerts", want.alerts.size(), 90s);
  std::multiset<std::string> ids;
  for (auto& r : alerts)
    ids.insert(r.key);
  std::set<std::string> unique(ids.begin(), ids.end());
  CHECK(ids.size() == unique.size()); // no alert twice
  CHECK(unique == want.alerts);       // exactly the model's decisions
  MESSAGE(want.events.size() << " transactions, " << want.alerts.size() << " alerts expected, "
                             << unique.size() << " raised");
  REQUIRE(!alerts.empty());
  auto a = nlohmann::json::parse(alerts.front().value);
  CHECK(a["model"] == "fraud-v1");
  CHECK(a["score"].get<double>() > 0.5);
  CHECK(a["top_features"].size() == 3);
  CHECK(a["transaction"]["id"] == alerts.front().key);
  auto dead = read_all(bootstrap, "dead-letters", bad.size(), 30s);
  REQUIRE(dead.size() == bad.size());
  std::map<std::string, std::string> reasons;
  for (auto& r : dead)
    reasons[r.key] = nlohmann::json::parse(r.value)["reason"].get<std::string>();
  CHECK(reasons["bad-json"].find("not valid JSON") != std::string::npos);
  CHECK(reasons["bad-missing"].find("missing field 'user'") != std::string::npos);
  CHECK(reasons["bad-type"].find("field 'amount' must be a number") != std::string::npos);
  CHECK(reasons["bad-schema"].find("unsupported schema 9") != std::string::npos);
  CHECK(reasons["bad-large"].find("too large") != std::string::npos);
  CHECK(reasons["bad-binary"].find("not valid JSON") != std::string::npos);
  // The original bytes travel with the reason.
  for (auto& r : dead)
    if (r.key == "bad-binary")
      CHECK(nlohmann::json::parse(r.value)["value_base64"] == "//4AAQ==");
  // Every event was read and scored: the ingestors' counters, summed over
  // both instances, settle at the totals.
  auto counters = [&] {
    auto out = node->output();
    uint64_t scored = 0, dead_letters = 0;
    for (auto name : {std::string{"[n1] ingestor/0: "}, std::string{"[n1] ingestor/1: "}}) {
      auto at = out.rfind(name + "read");
      if (at == std::string::npos)
        continue;
      scored += std::stoull(out.substr(out.find("scored ", at) + 7));
      dead_letters += std::stoull(out.substr(out.find("dead letters ", at) + 13));
    }
    return std::make_pair(scored, dead_letters);
  };
  auto until = std::chrono::steady_clock::now() + 15s;
  while (counters() != std::make_pair(uint64_t{want.events.size()}, uint64_t{bad.size()})
         && std::chrono::steady_clock::now() < until)
    node->wait_for("\n", 200ms, node->mark()); // the next report line
  CHECK(counters().first == want.events.size());
  CHECK(counters().second == bad.size());
  if (counters().first != want.events.size()) {
    auto out = node->output();
    MESSAGE("the node's last lines:\n" << out.substr(out.size() > 4000 ? out.size() - 4000 : 0));
  }
  // ... and committed: the group's offsets reach the end of every partition.
  CHECK(all_committed(bootstrap, 15s));
  node->signal(SIGTERM);
  CHECK(node->wait_exit(10000ms) == 0);
}

TEST_CASE("a malformed record of 500 KB is dead-lettered truncated and its partition goes on: every later event scored and committed") {
  auto want = expected(2028, 200, 1.0);
  REQUIRE(want.events.size() > 300);
  REQUIRE(!want.alerts.empty());
  parts env;
  auto& bootstrap = env.bootstrap;
  cluster_file f{"pipeline", "a-shared-secret", "", pipeline_groups("[\"n1\"]"), {"n1"}};
  auto node = start_node(f, "n1", {"--kafka", bootstrap, "--redis", env.redis.url()});
  REQUIRE(node->wait_for("member of consumer group", 20000ms));
  // The large record first, on the first user's partition, then that
  // user's events and everyone else's: all must get through behind it.
  auto p = kafka::producer::make(kafka::defaults(bootstrap));
  REQUIRE(p);
  std::string huge(500000, 'x');
  auto big_key = want.events.front().first;
  REQUIRE(!(*p)->produce("transactions", big_key, huge));
  for (auto& [user, json] : want.events)
    REQUIRE(!(*p)->produce("transactions", user, json));
  REQUIRE(!(*p)->flush(30s));
  auto dead = read_all(bootstrap, "dead-letters", 1, 30s);
  REQUIRE(dead.size() == 1);
  auto letter = nlohmann::json::parse(dead[0].value);
  CHECK(letter["truncated"] == true);
  CHECK(letter["size"] == 500000);
  CHECK(letter["sha256"] == "c7adf6280412b3f9acbd4759796fdb295f7894b4a2a7a9d3412b3c72d2434442");
  CHECK(letter["reason"].get<std::string>().find("too large") != std::string::npos);
  CHECK(dead[0].key == big_key);
  // Everything behind it was scored, alerted and committed.
  auto alerts = read_all(bootstrap, "fraud-alerts", want.alerts.size(), 60s);
  std::set<std::string> ids;
  for (auto& r : alerts)
    ids.insert(r.key);
  CHECK(ids == want.alerts);
  CHECK(all_committed(bootstrap, 30s));
  node->signal(SIGTERM);
  CHECK(node->wait_exit(10000ms) == 0);
}

TEST_CASE("workers crashing and a node killed with kill -9 mid-stream lose no transaction and raise no alert twice") {
  auto want = expected(2027, 600, 3.0);
  REQUIRE(want.events.size() > 6000);
  parts env;
  auto& bootstrap = env.bootstrap;
  auto& redis = env.redis;
  // Every stage on every node, the detector's workers crashing on every 7th
  // batch; the alerter at home on n1, so that n3's loss replays into it.
  auto all = std::string{"[\"n1\", \"n2\", \"n3\"]"};
  std::string groups =
    "[[group]]\nname = \"ingestor\"\ndomain = \"ingestor\"\ninstances = 3\nnodes = " + all
    + "\nsettings = { report_every = \"1s\" }\n"
      "[[group]]\nname = \"feature-enricher\"\ndomain = \"feature-enricher\"\ninstances = 3\n"
      "nodes = " + all + "\n"
      "[[group]]\nname = \"fraud-detector\"\ndomain = \"fraud-detector\"\ninstances = 3\n"
      "nodes = " + all + "\nsettings = { model = \"" + model + "\", crash_every = 7 }\n"
      "[[group]]\nname = \"alerter\"\ndomain = \"alerter\"\ninstances = 1\n"
      "nodes = [\"n1\", \"n2\"]\n";
  cluster_file f{"pipeline", "a-shared-secret",
                 "heartbeat_interval = \"100ms\"\nfailure_timeout = \"500ms\"\n", groups};
  std::map<std::string, std::unique_ptr<child_process>> nodes;
  for (auto name : {"n1", "n2", "n3"}) {
    nodes[name] = start_node(f, name, {"--kafka", bootstrap, "--redis", redis.url()});
  }
  for (auto name : {"n1", "n2", "n3"})
    REQUIRE(nodes[name]->wait_for("member of consumer group", 20000ms));
  produce(bootstrap, want);
  // Read alerts as they come; kill n3 once a third of them arrived.
  auto reader = kafka::consumer::make(kafka::defaults(bootstrap), "test-reader", {"fraud-alerts"});
  REQUIRE(reader);
  std::multiset<std::string> ids;
  bool killed = false;
  auto until = std::chrono::steady_clock::now() + 120s;
  while (std::set<std::string>(ids.begin(), ids.end()).size() < want.alerts.size()
         && std::chrono::steady_clock::now() < until) {
    for (auto& r : (*reader)->poll(1000, 100ms))
      ids.insert(r.key);
    if (!killed && ids.size() >= want.alerts.size() / 3) {
      nodes["n3"]->signal(SIGKILL);
      killed = true;
    }
  }
  for (auto& r : (*reader)->poll(1000, 1000ms)) // late duplicates, if any
    ids.insert(r.key);
  REQUIRE(killed);
  std::set<std::string> unique(ids.begin(), ids.end());
  CHECK(ids.size() == unique.size());
  CHECK(unique == want.alerts);
  CHECK(all_committed(bootstrap, 30s));
  auto out = nodes["n1"]->output() + nodes["n2"]->output();
  MESSAGE(want.events.size() << " transactions, " << unique.size() << " of "
                             << want.alerts.size() << " alerts, " << ids.size() - unique.size()
                             << " duplicates");
}

TEST_CASE("an independent client (python3-kafka, scripts/load-transactions) produces transactions and reads exactly the alerts the model decided") {
  constexpr int seed = 3031;
  auto want = expected(seed, 300, 3.0);
  parts env;
  cluster_file f{"pipeline", "a-shared-secret", "", pipeline_groups("[\"n1\"]"), {"n1"}};
  auto node = start_node(f, "n1", {"--kafka", env.bootstrap, "--redis", env.redis.url()});
  REQUIRE(node->wait_for("member of consumer group", 20000ms));
  // The whole 3-day stream of 300 users (so the script generates exactly
  // `want`'s events), at 3,000/s; the script waits for the last alerts
  // until 15 s pass without one (at most 90 s).
  auto cmd = "/usr/bin/python3 " + source_dir + "/scripts/load-transactions --bootstrap "
             + env.bootstrap + " --seed " + std::to_string(seed) + " --users 300 --count "
             + std::to_string(want.events.size()) + " --rate 3000 --wait 90 --quiet 15 --show 1 2>&1";
  auto pipe = popen(cmd.c_str(), "r");
  REQUIRE(pipe != nullptr);
  std::string out;
  char buf[4096];
  while (auto n = fread(buf, 1, sizeof(buf), pipe))
    out.append(buf, n);
  auto rc = pclose(pipe);
  INFO(out);
  CHECK(rc == 0);
  std::smatch m;
  REQUIRE(std::regex_search(out, m, std::regex{"alerts ([0-9]+); precision ([0-9.]+), recall"}));
  CHECK(std::stoul(m[1]) == want.alerts.size());
  // It printed an alert as it came, with its score and top features.
  CHECK(std::regex_search(out, std::regex{"alert [^ ]+: user .* score 0\\.[0-9]+ by fraud-v1 on n1; top features: "}));
  node->signal(SIGTERM);
  CHECK(node->wait_exit(10000ms) == 0);
}

TEST_CASE("Redis stopped and started again mid-stream: no crash, degraded features meanwhile, full recovery") {
  auto want = expected(2028, 400, 3.0);
  parts env;
  auto& bootstrap = env.bootstrap;
  auto& redis = env.redis;
  cluster_file f{"pipeline", "a-shared-secret", "", pipeline_groups("[\"n1\"]"), {"n1"}};
  auto node = start_node(f, "n1", {"--kafka", bootstrap, "--redis", redis.url()});
  REQUIRE(node->wait_for("member of consumer group", 20000ms));
  redis.stop();
  produce(bootstrap, want);
  // Events are still scored, with degraded features, while Redis is away
  // (alerts wait: their dedupe needs Redis, so their batches are retried).
  auto degraded = [&] {
    std::smatch m;
    auto out = node->output();
    uint64_t most = 0;
    std::regex pattern{"\\(([0-9]+) degraded\\)"};
    for (std::sregex_iterator i{out.begin(), out.end(), pattern}, end; i != end; ++i)
      most = std::max<uint64_t>(most, std::stoull((*i)[1]));
    return most;
  };
  auto until = std::chrono::steady_clock::now() + 20s;
  while (degraded() == 0 && std::chrono::steady_clock::now() < until)
    node->wait_for("degraded)", 500ms, node->mark());
  CHECK(degraded() > 0);
  // No degradation is silent: the enricher says why, and counts it.
  CHECK(node->wait_for("transactions with degraded features (io_failure: cannot connect to",
                       5000ms));
  auto counted = [&] {
    auto text = http_get(f.ports["n1"].second, "/metrics");
    std::string series = "troupe_enricher_degraded_events_total{node=\"n1\","
                         "group=\"feature-enricher\"} ";
    auto at = text.find(series);
    return at == std::string::npos ? 0.0 : std::stod(text.substr(at + series.size()));
  };
  until = std::chrono::steady_clock::now() + 10s;
  while (counted() == 0 && std::chrono::steady_clock::now() < until)
    node->wait_for("degraded features", 500ms, node->mark());
  CHECK(counted() > 0);
  redis.start();
  // Back: every event ends finished and committed, and the node never died.
  CHECK(all_committed(bootstrap, 60s));
  auto alerts = read_all(bootstrap, "fraud-alerts", 1, 10s);
  CHECK(!alerts.empty());
  node->signal(SIGTERM);
  CHECK(node->wait_exit(10000ms) == 0);
}
