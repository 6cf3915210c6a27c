// The fraud pipeline end to end with real parts: librdkafka's mock cluster
// (in this process), a real redis-server, and `troupe node` processes
// hosting the ingestor, feature-enricher, fraud-detector and alerter.

#include <chrono>
#include <cstdlib>
#include <fstream>
#include <map>
#include <set>

#include <doctest/doctest.h>
#include <nlohmann/json.hpp>
#include <unistd.h>

#include "runtime/core/error.hpp"
#include "runtime/kafka/client.hpp"
#include "runtime/kafka/embedded_kafka.hpp"
#include "tests/support/cluster_file.hpp"
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
  char tmpl[] = "/tmp/troupe-expected-XXXXXX";
  auto fd = mkstemp(tmpl);
  REQUIRE(fd >= 0);
  close(fd);
  std::string out = tmpl;
  auto cmd = "cd " + source_dir + "/scripts/fraud && /usr/bin/python3 expected_alerts.py "
             + std::to_string(seed) + " " + std::to_string(users) + " " + std::to_string(days)
             + " " + model + " 0.5 " + out;
  REQUIRE(std::system(cmd.c_str()) == 0);
  std::ifstream in{out};
  auto j = nlohmann::json::parse(in);
  std::remove(out.c_str());
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

} // namespace

TEST_CASE("10,000 transactions end to end: each scored, alerts exactly the model's decisions, bad events in dead letters") {
  auto want = expected(2026, 920, 3.0);
  REQUIRE(want.events.size() >= 10000);
  REQUIRE(want.alerts.size() > 50);
  auto mock = kafka::embedded_kafka::make(
    3, {{"transactions", 12}, {"dead-letters", 1}, {"fraud-alerts", 4}});
  REQUIRE(mock);
  auto bootstrap = (*mock)->bootstrap();
  redis_server redis;
  cluster_file f{"pipeline", "a-shared-secret", "", pipeline_groups("[\"n1\"]"), {"n1"}};
  auto node = child_process::start({TROUPE_BINARY, "node", "--config", f.path, "--name", "n1",
                                    "--kafka", bootstrap, "--redis", redis.url()});
  REQUIRE(node);
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
  node->signal(SIGTERM);
  CHECK(node->wait_exit(10000ms) == 0);
}
