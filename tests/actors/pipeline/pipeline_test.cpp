// The fraud pipeline end to end with real parts: librdkafka's mock cluster
// (in this process), a real redis-server, and `troupe node` processes
// hosting the ingestor, feature-enricher, fraud-detector and alerter.

#include <chrono>
#include <cmath>
#include <cstdlib>
#include <fstream>
#include <map>
#include <tuple>
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
  /// Each transaction's score by python3-xgboost on the reference features.
  std::map<std::string, double> scores;
};

expectation expected(int seed, int users, double days) {
  auto j = python_reference("expected_alerts.py", {std::to_string(seed), std::to_string(users),
                                                   std::to_string(days), model, "0.5"});
  expectation e;
  for (auto& ev : j["events"])
    e.events.emplace_back(ev[0].get<std::string>(), ev[1].get<std::string>());
  for (auto& id : j["alerts"])
    e.alerts.insert(id.get<std::string>());
  for (auto& [id, score] : j["scores"].items())
    e.scores[id] = score.get<double>();
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
      3, {{"transactions", 12},
          {"transactions-rescore", 12},
          {"dead-letters", 1},
          {"fraud-alerts", 4},
          {"fraud-scores", 4}});
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

/// Every record `topic` (of `partitions` partitions) holds now.
std::vector<kafka::record> read_everything(const std::string& bootstrap, const std::string& topic,
                                           int partitions) {
  auto ends = kafka::group_progress(kafka::defaults(bootstrap), "test-ends", topic, partitions, 5s);
  REQUIRE(ends);
  size_t n = 0;
  for (auto& e : *ends)
    n += static_cast<size_t>(e.second);
  auto got = read_all(bootstrap, topic, n, 60s);
  CHECK(got.size() == n);
  return got;
}

/// The scored-event log against the clean run: every transaction of `want`
/// (but `absent`) logged once with its features, the reference score
/// (within 1e-5) and `alert` as the clean run decided; no transaction twice;
/// no degraded score (a transaction scored degraded is logged when it is
/// scored again). With `rescored`, scores may differ from the reference
/// (a user whose transactions were scored degraded has another history).
void check_scored_log(const std::string& bootstrap, const expectation& want,
                      const std::set<std::string>& absent = {}, bool rescored = false) {
  std::map<std::string, int> count;
  std::map<std::string, nlohmann::json> clean;
  size_t degraded = 0, wrong_score = 0, wrong_alert = 0, malformed = 0;
  for (auto& r : read_everything(bootstrap, "fraud-scores", 4)) {
    auto j = nlohmann::json::parse(r.value, nullptr, false);
    if (j.is_discarded() || !j.contains("transaction") || !j.contains("features")
        || j["features"].size() != 11) {
      ++malformed;
      continue;
    }
    ++count[r.key];
    auto id = j["transaction"].get<std::string>();
    if (j["degraded"].get<bool>())
      ++degraded;
    CHECK(r.key == id);
    clean[id] = j;
  }
  size_t twice = 0, missing = 0, unexpected = 0;
  for (auto& [key, n] : count)
    twice += n > 1 ? 1 : 0;
  for (auto& [id, score] : want.scores) {
    if (absent.count(id))
      continue;
    auto i = clean.find(id);
    if (i == clean.end()) {
      ++missing;
      continue;
    }
    if (!rescored && std::fabs(i->second["score"].get<double>() - score) > 1e-5)
      ++wrong_score;
    if (!rescored && i->second["alert"].get<bool>() != (want.alerts.count(id) > 0))
      ++wrong_alert;
    CHECK(i->second["model"] == "fraud-v1");
  }
  for (auto& [id, j] : clean)
    if (!want.scores.count(id) || absent.count(id))
      ++unexpected;
  MESSAGE("scored-event log: " << clean.size() << " transactions, " << degraded << " degraded, "
                               << twice << " twice, " << missing << " missing");
  CHECK(malformed == 0);
  CHECK(twice == 0);
  CHECK(missing == 0);
  CHECK(unexpected == 0);
  CHECK(wrong_score == 0);
  CHECK(wrong_alert == 0);
  CHECK(degraded == 0);
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
    if (done || std::chrono::steady_clock::now() >= until) {
      if (!done && progress)
        for (size_t i = 0; i < progress->size(); ++i)
          if ((*progress)[i].first != (*progress)[i].second)
            MESSAGE("partition " << i << ": committed " << (*progress)[i].first << ", end "
                                 << (*progress)[i].second);
      return done;
    }
  }
}

/// Keeps a failed case's whole node log in /tmp (the case's folder goes
/// with it) and says where.
void keep_log(child_process& node, const std::string& what) {
  auto path = "/tmp/troupe-" + what + "-" + std::to_string(::getpid()) + ".log";
  std::ofstream{path} << node.output();
  MESSAGE("the node's whole log: " << path);
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
  // A batch read again after a rebalance finds its confirmed dead letters
  // marked in Redis and does not write them again; one still in flight at
  // the rebalance may be written twice. Each names its source record
  // (topic, partition, offset), which identifies it: every bad event has
  // one, and a second one is an exact copy.
  std::map<std::tuple<std::string, int64_t, int64_t>, std::string> distinct;
  for (auto& r : dead) {
    auto j = nlohmann::json::parse(r.value);
    auto where = std::make_tuple(j["topic"].get<std::string>(), j["partition"].get<int64_t>(),
                                 j["offset"].get<int64_t>());
    auto [it, fresh] = distinct.emplace(where, r.value);
    if (!fresh)
      CHECK(it->second == r.value);
  }
  if (dead.size() != distinct.size())
    MESSAGE((dead.size() - distinct.size()) << " dead letters written twice");
  REQUIRE(distinct.size() == bad.size());
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
  // A batch read again after a rebalance (the second instance joining while
  // the first already reads) is scored again: at least once, so the sums
  // reach the totals and may pass them; the alerts above and the commits
  // below are exact.
  auto until = std::chrono::steady_clock::now() + 15s;
  while ((counters().first < want.events.size() || counters().second < bad.size())
         && std::chrono::steady_clock::now() < until)
    node->wait_for("\n", 200ms, node->mark()); // the next report line
  CHECK(counters().first >= want.events.size());
  CHECK(counters().second >= bad.size());
  if (counters().first > want.events.size())
    MESSAGE((counters().first - want.events.size()) << " events scored again after a rebalance");
  // ... and committed: the group's offsets reach the end of every partition.
  auto committed = all_committed(bootstrap, 15s);
  CHECK(committed);
  // Every scored transaction is in the scored-event log once, rebalance or not.
  check_scored_log(bootstrap, want);
  if (counters().first < want.events.size() || !committed || unique != want.alerts)
    keep_log(*node, "pipeline-end-to-end");
  node->signal(SIGTERM);
  CHECK(node->wait_exit(10000ms) == 0);
}

TEST_CASE("an alert the fraud-detector was told not to explain carries no top features, and the alerter says why once") {
  auto want = expected(2029, 200, 1.0);
  REQUIRE(!want.alerts.empty());
  // Every alert is over the threshold (0.5); explained are only the
  // scores over 0.9999.
  auto groups = pipeline_groups("[\"n1\"]");
  auto at = groups.find("settings = { model = ");
  REQUIRE(at != std::string::npos);
  groups.insert(at + std::string{"settings = { "}.size(), "explain_above = 0.9999, ");
  parts env;
  cluster_file f{"pipeline", "a-shared-secret", "", groups, {"n1"}};
  auto node = start_node(f, "n1", {"--kafka", env.bootstrap, "--redis", env.redis.url()});
  auto p = kafka::producer::make(kafka::defaults(env.bootstrap));
  REQUIRE(p);
  for (auto& [user, json] : want.events)
    REQUIRE(!(*p)->produce("transactions", user, json));
  REQUIRE(!(*p)->flush(30s));
  auto alerts = read_all(env.bootstrap, "fraud-alerts", want.alerts.size(), 60s);
  std::set<std::string> ids;
  size_t unexplained = 0;
  for (auto& r : alerts) {
    ids.insert(r.key);
    auto a = nlohmann::json::parse(r.value);
    if (a["score"].get<double>() <= 0.9999) {
      CHECK(a["top_features"].empty());
      ++unexplained;
    } else {
      CHECK(a["top_features"].size() == 3);
    }
  }
  CHECK(ids == want.alerts); // the same decisions, explained or not
  REQUIRE(unexplained > 0);
  if (!node->wait_for("has no top features: the fraud-detector's explain_above is over this "
                      "alerter's threshold",
                      10000ms))
    FAIL(node->output());
  auto out = node->output();
  size_t said = 0;
  for (auto at = out.find("has no top features"); at != std::string::npos;
       at = out.find("has no top features", at + 1))
    ++said;
  CHECK(said == 1); // one alerter worker: once
}

TEST_CASE("a malformed record of 500 KB is dead-lettered truncated and its partition goes on: every later event scored and committed") {
  auto want = expected(2028, 200, 1.0);
  REQUIRE(want.events.size() > 300);
  REQUIRE(!want.alerts.empty());
  parts env;
  auto& bootstrap = env.bootstrap;
  cluster_file f{"pipeline", "a-shared-secret", "", pipeline_groups("[\"n1\"]"), {"n1"}};
  auto node = start_node(f, "n1", {"--kafka", bootstrap, "--redis", env.redis.url()});
  if (!node->wait_for("member of consumer group", 20000ms))
    FAIL(node->output());
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
  REQUIRE(!dead.empty());
  // At least once: a second one would be an exact copy (read again after a
  // rebalance), never another record.
  for (auto& d : dead)
    CHECK(d.value == dead[0].value);
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
  check_scored_log(bootstrap, want);
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

TEST_CASE("Redis away for less than degrade_after: batches are held, nothing is scored degraded, and the alerts are exactly the clean run's") {
  auto want = expected(2028, 400, 3.0);
  parts env;
  auto& bootstrap = env.bootstrap;
  auto& redis = env.redis;
  cluster_file f{"pipeline", "a-shared-secret", "", pipeline_groups("[\"n1\"]"), {"n1"}};
  auto node = start_node(f, "n1", {"--kafka", bootstrap, "--redis", redis.url()});
  REQUIRE(node->wait_for("member of consumer group", 20000ms));
  redis.stop();
  produce(bootstrap, want);
  // The enricher holds (the default degrade_after is 20 s): it says so.
  CHECK(node->wait_for("the feature store is unreachable (", 20000ms));
  CHECK(node->wait_for("holding batches for up to 20s, then scoring with degraded features",
                       1000ms));
  redis.start();
  CHECK(node->wait_for("the feature store is reachable again", 20000ms));
  auto committed = all_committed(bootstrap, 60s);
  CHECK(committed);
  if (!committed) {
    auto text = node->output();
    std::string failed;
    for (size_t at = text.find("failed ("); at != std::string::npos && failed.size() < 3000;
         at = text.find("failed (", at + 1))
      failed += text.substr(text.rfind('\n', at), 300);
    MESSAGE("failures:\n" << failed);
  }
  std::multiset<std::string> ids;
  for (auto& r : read_everything(bootstrap, "fraud-alerts", 4))
    ids.insert(r.key);
  std::set<std::string> unique(ids.begin(), ids.end());
  CHECK(unique == want.alerts);
  CHECK(ids.size() == unique.size());
  check_scored_log(bootstrap, want);
  auto out = node->output();
  CHECK(out.find("transactions with degraded features") == std::string::npos);
  auto metrics = http_get(f.ports["n1"].second, "/metrics");
  CHECK(metrics.find("troupe_enricher_held_batches_total{node=\"n1\",group=\"feature-enricher\"} ")
        != std::string::npos);
  node->signal(SIGTERM);
  CHECK(node->wait_exit(10000ms) == 0);
}

TEST_CASE("Redis away for longer than degrade_after: degraded scores are marked and counted, and once Redis is back every degraded transaction is scored again, so no alert of the clean run is missed") {
  auto want = expected(2028, 400, 3.0);
  parts env;
  auto& bootstrap = env.bootstrap;
  auto& redis = env.redis;
  auto groups = pipeline_groups("[\"n1\"]");
  groups.replace(groups.find("name = \"feature-enricher\"\ndomain = \"feature-enricher\"\n"),
                 std::string{"name = \"feature-enricher\"\ndomain = \"feature-enricher\"\n"}.size(),
                 "name = \"feature-enricher\"\ndomain = \"feature-enricher\"\n"
                 "settings = { degrade_after = \"2s\" }\n");
  cluster_file f{"pipeline", "a-shared-secret", "", groups, {"n1"}};
  auto node = start_node(f, "n1", {"--kafka", bootstrap, "--redis", redis.url()});
  REQUIRE(node->wait_for("member of consumer group", 20000ms));
  // A failed check shows the node's log: what its ingestors, the feature
  // store and the alerter said while Redis was away and once it was back.
  INFO("the log of n1:\n" << node->output());
  redis.stop();
  // The stream trickles in (chunks of 20), so that batches stay small and
  // many carry no alert: those finish degraded while Redis is away (one
  // with an alert waits, its claim needs Redis).
  auto p = kafka::producer::make(kafka::defaults(bootstrap));
  REQUIRE(p);
  for (size_t i = 0; i < want.events.size(); ++i) {
    REQUIRE(!(*p)->produce("transactions", want.events[i].first, want.events[i].second));
    if (i % 20 == 19)
      REQUIRE(!(*p)->flush(10s));
  }
  REQUIRE(!(*p)->flush(30s));
  CHECK(node->wait_for("holding batches for up to 2s, then scoring with degraded features",
                       20000ms));
  // Past degrade_after, events are scored with degraded features: said,
  // counted, and sent to be scored again.
  CHECK(node->wait_for("transactions with degraded features (io_failure: cannot connect to",
                       20000ms));
  auto counted = [&](const std::string& series) {
    auto text = http_get(f.ports["n1"].second, "/metrics");
    auto at = text.find(series);
    return at == std::string::npos ? 0.0 : std::stod(text.substr(at + series.size()));
  };
  auto degraded_series = std::string{"troupe_enricher_degraded_events_total{node=\"n1\","
                                     "group=\"feature-enricher\"} "};
  auto until = std::chrono::steady_clock::now() + 20s;
  while (counted(degraded_series) == 0 && std::chrono::steady_clock::now() < until)
    node->wait_for("degraded features", 500ms, node->mark());
  CHECK(counted(degraded_series) > 0);
  auto sent_again = [&] {
    auto out = node->output();
    std::regex pattern{"to score again ([0-9]+)"};
    uint64_t most = 0;
    for (std::sregex_iterator i{out.begin(), out.end(), pattern}, end; i != end; ++i)
      most = std::max<uint64_t>(most, std::stoull((*i)[1]));
    return most;
  };
  until = std::chrono::steady_clock::now() + 30s;
  while (sent_again() == 0 && std::chrono::steady_clock::now() < until)
    node->wait_for("to score again", 1000ms, node->mark());
  CHECK(sent_again() > 0);
  redis.start();
  CHECK(node->wait_for("the feature store is reachable again", 20000ms));
  // Back: every event and every re-scoring finished and committed.
  auto rescore_done = [&](std::chrono::seconds deadline) {
    auto end = std::chrono::steady_clock::now() + deadline;
    for (;;) {
      auto progress = kafka::group_progress(kafka::defaults(bootstrap), "troupe.ingestor",
                                            "transactions-rescore", 12, 5s);
      auto done = progress && std::all_of(progress->begin(), progress->end(), [](auto& p) {
                    return p.second == 0 || p.first == p.second;
                  });
      if (done || std::chrono::steady_clock::now() >= end)
        return done;
    }
  };
  CHECK(all_committed(bootstrap, 60s));
  CHECK(rescore_done(60s));
  // The transactions scored with degraded features: each went to the
  // rescore topic (and was read from it again: committed above).
  std::set<std::string> rescored, rescored_users;
  for (auto& r : read_everything(bootstrap, "transactions-rescore", 12)) {
    rescored.insert(nlohmann::json::parse(r.value)["id"].get<std::string>());
    rescored_users.insert(r.key);
  }
  CHECK(!rescored.empty());
  std::map<std::string, std::string> user_of;
  for (auto& [user, json] : want.events)
    user_of[nlohmann::json::parse(json)["id"].get<std::string>()] = user;
  std::map<std::string, int> count;
  std::set<std::string> unexplained;
  for (auto& r : read_everything(bootstrap, "fraud-alerts", 4)) {
    ++count[r.key];
    auto degraded = nlohmann::json::parse(r.value)["degraded"].get<bool>();
    if (want.alerts.count(r.key) == 0 && !degraded && rescored_users.count(user_of[r.key]) == 0)
      unexplained.insert(r.key);
  }
  // No alert twice. Every alert of the clean run is raised unless its user
  // had transactions scored degraded (those were scored again, late, with
  // the user's history as it stood once Redis was back, and the user's
  // later transactions saw that history); any other alert is marked
  // degraded or belongs to such a user.
  size_t missing = 0, missing_unscored = 0, twice = 0;
  for (auto& id : want.alerts)
    if (count.count(id) == 0) {
      ++missing;
      if (rescored_users.count(user_of[id]) == 0) {
        ++missing_unscored;
        MESSAGE("missing " << id << " of " << user_of[id]);
      }
    }
  for (auto& [id, n] : count)
    twice += n > 1 ? 1 : 0;
  MESSAGE(want.alerts.size() << " alerts expected; " << rescored.size()
                             << " transactions scored degraded and again; " << missing
                             << " clean-run alerts not raised (all of users scored degraded), "
                             << twice << " twice, " << count.size() << " raised");
  CHECK(missing_unscored == 0);
  CHECK(twice == 0);
  CHECK(unexplained.empty());
  // The log has each transaction's clean score once: those scored degraded
  // first are logged when scored again.
  check_scored_log(bootstrap, want, {}, true);
  node->signal(SIGTERM);
  CHECK(node->wait_exit(10000ms) == 0);
}

TEST_CASE("the Kafka brokers down for 5 s mid-stream: every ingestor gets partitions again, every transaction is committed and the alerts are the clean run's") {
  auto want = expected(2029, 600, 3.0);
  REQUIRE(want.events.size() > 6000);
  parts env;
  auto& bootstrap = env.bootstrap;
  cluster_file f{"pipeline", "a-shared-secret",
                 "heartbeat_interval = \"100ms\"\nfailure_timeout = \"500ms\"\n",
                 pipeline_groups("[\"n1\", \"n2\"]")};
  std::map<std::string, std::unique_ptr<child_process>> nodes;
  for (auto name : {"n1", "n2"})
    nodes[name] = start_node(f, name, {"--kafka", bootstrap, "--redis", env.redis.url()});
  for (auto name : {"n1", "n2"})
    REQUIRE(nodes[name]->wait_for("member of consumer group", 20000ms));
  produce(bootstrap, want);
  auto reader = kafka::consumer::make(kafka::defaults(bootstrap), "test-reader", {"fraud-alerts"});
  REQUIRE(reader);
  std::multiset<std::string> ids;
  auto read_some = [&](std::chrono::milliseconds wait) {
    for (auto& r : (*reader)->poll(1000, wait))
      ids.insert(r.key);
  };
  auto until = std::chrono::steady_clock::now() + 60s;
  while (ids.size() < want.alerts.size() / 4 && std::chrono::steady_clock::now() < until)
    read_some(100ms);
  REQUIRE(ids.size() >= want.alerts.size() / 4);
  REQUIRE(!env.mock->set_down(true));
  auto mark1 = nodes["n1"]->mark();
  auto back = std::chrono::steady_clock::now() + 5s;
  // Five seconds of outage, waited on the nodes' own complaints about it.
  while (std::chrono::steady_clock::now() < back)
    nodes["n1"]->wait_for("\n", std::chrono::duration_cast<std::chrono::milliseconds>(
                                  back - std::chrono::steady_clock::now()),
                          nodes["n1"]->mark());
  REQUIRE(!env.mock->set_down(false));
  CHECK(nodes["n1"]->wait_for("brokers are down", 1000ms, mark1));
  CHECK(all_committed(bootstrap, 120s));
  // The whole topic, read after the fact by a reader that saw no outage.
  ids.clear();
  for (auto& r : read_everything(bootstrap, "fraud-alerts", 4))
    ids.insert(r.key);
  std::set<std::string> unique(ids.begin(), ids.end());
  MESSAGE(want.events.size() << " transactions, " << unique.size() << " of "
                             << want.alerts.size() << " alerts, " << ids.size() - unique.size()
                             << " duplicates");
  CHECK(unique == want.alerts);
  CHECK(ids.size() == unique.size());
  check_scored_log(bootstrap, want);
  if (unique != want.alerts) {
    auto out = nodes["n1"]->output() + nodes["n2"]->output();
    MESSAGE("the nodes' last lines:\n" << out.substr(out.size() > 6000 ? out.size() - 6000 : 0));
  }
}

TEST_CASE("a poison event inside a batch is split out and dead-lettered with the stage's reason, and the rest of its batch and partition is scored with the clean run's alerts") {
  auto want = expected(2031, 300, 3.0);
  parts env;
  auto& bootstrap = env.bootstrap;
  auto groups = pipeline_groups("[\"n1\"]");
  auto at = groups.find("settings = { model = ");
  groups.insert(at + std::string{"settings = { "}.size(), "crash_on_user = \"poison-user\", ");
  cluster_file f{"pipeline", "a-shared-secret", "", groups, {"n1"}};
  auto node = start_node(f, "n1", {"--kafka", bootstrap, "--redis", env.redis.url()});
  REQUIRE(node->wait_for("member of consumer group", 20000ms));
  // Three valid events of a user whose events crash the detector, spread
  // through the stream (on one partition, among other users' events).
  auto p = kafka::producer::make(kafka::defaults(bootstrap));
  REQUIRE(p);
  std::set<std::string> poison;
  for (size_t i = 0; i < want.events.size(); ++i) {
    if (i % (want.events.size() / 3) == want.events.size() / 6) {
      auto id = "poison-" + std::to_string(i);
      poison.insert(id);
      REQUIRE(!(*p)->produce("transactions", "poison-user",
                             R"({"schema":1,"id":")" + id + R"(","user":"poison-user","amount":12.5,)"
                               R"("currency":"EUR","merchant":"m-1","category":"grocery",)"
                               R"("country":"DE","device":"d-1","timestamp":1767225600000})"));
    }
    REQUIRE(!(*p)->produce("transactions", want.events[i].first, want.events[i].second));
  }
  REQUIRE(!(*p)->flush(30s));
  REQUIRE(poison.size() == 3);
  auto committed = all_committed(bootstrap, 120s);
  CHECK(committed);
  if (!committed) {
    auto text = node->output();
    std::string lines;
    for (size_t at = text.find("ingestor/"); at != std::string::npos && lines.size() < 6000;
         at = text.find("ingestor/", at + 1))
      if (text.compare(at, 30, "ingestor/0: read") != 0 && text.compare(at, 30, "ingestor/1: read") != 0)
        lines += text.substr(at, text.find('\n', at) - at) + "\n";
    MESSAGE(lines);
  }
  std::set<std::string> dead_ids;
  for (auto& r : read_everything(bootstrap, "dead-letters", 1)) {
    auto letter = nlohmann::json::parse(r.value);
    auto tx = nlohmann::json::parse(letter["value"].get<std::string>());
    dead_ids.insert(tx["id"].get<std::string>());
    CHECK(letter["reason"].get<std::string>().find("fraud-detector failed on this event: ")
          != std::string::npos);
    CHECK(letter["reason"].get<std::string>().find("poison") != std::string::npos);
    CHECK(r.key == "poison-user");
  }
  CHECK(dead_ids == poison);
  std::multiset<std::string> ids;
  for (auto& r : read_everything(bootstrap, "fraud-alerts", 4))
    ids.insert(r.key);
  std::set<std::string> unique(ids.begin(), ids.end());
  CHECK(unique == want.alerts);
  CHECK(ids.size() == unique.size());
  // The poison events were never scored: not in the log; every other event is, once.
  check_scored_log(bootstrap, want);
  CHECK(node->wait_for("): trying its events one by one", 1000ms));
  node->signal(SIGTERM);
  CHECK(node->wait_exit(10000ms) == 0);
}

TEST_CASE("a node frozen for 3 s with SIGSTOP and the alerter dying between Kafka's confirmation and its sent mark: every transaction committed, the clean run's alerts, none twice") {
  auto want = expected(2032, 600, 3.0);
  REQUIRE(want.events.size() > 6000);
  parts env;
  auto& bootstrap = env.bootstrap;
  auto groups = pipeline_groups("[\"n1\", \"n2\"]");
  groups += "settings = { crash_after_confirm_every = 4 }\n"; // the alerter's, the last group
  cluster_file f{"pipeline", "a-shared-secret",
                 "heartbeat_interval = \"100ms\"\nfailure_timeout = \"500ms\"\n", groups};
  std::map<std::string, std::unique_ptr<child_process>> nodes;
  for (auto name : {"n1", "n2"})
    nodes[name] = start_node(f, name, {"--kafka", bootstrap, "--redis", env.redis.url()});
  for (auto name : {"n1", "n2"})
    REQUIRE(nodes[name]->wait_for("member of consumer group", 20000ms));
  produce(bootstrap, want);
  auto reader = kafka::consumer::make(kafka::defaults(bootstrap), "test-reader", {"fraud-alerts"});
  REQUIRE(reader);
  size_t seen = 0;
  auto until = std::chrono::steady_clock::now() + 60s;
  while (seen < want.alerts.size() / 4 && std::chrono::steady_clock::now() < until)
    seen += (*reader)->poll(1000, 100ms).size();
  REQUIRE(seen >= want.alerts.size() / 4);
  reader->reset();
  nodes["n2"]->signal(SIGSTOP);
  // Three seconds frozen, measured on n1's own lines meanwhile.
  auto thaw = std::chrono::steady_clock::now() + 3s;
  while (std::chrono::steady_clock::now() < thaw)
    nodes["n1"]->wait_for("\n", std::chrono::duration_cast<std::chrono::milliseconds>(
                                  thaw - std::chrono::steady_clock::now()),
                          nodes["n1"]->mark());
  nodes["n2"]->signal(SIGCONT);
  CHECK(all_committed(bootstrap, 180s));
  std::multiset<std::string> ids;
  for (auto& r : read_everything(bootstrap, "fraud-alerts", 4))
    ids.insert(r.key);
  std::set<std::string> unique(ids.begin(), ids.end());
  MESSAGE(want.events.size() << " transactions, " << unique.size() << " of "
                             << want.alerts.size() << " alerts, " << ids.size() - unique.size()
                             << " duplicates");
  CHECK(unique == want.alerts);
  CHECK(ids.size() == unique.size());
  auto out = nodes["n1"]->output() + nodes["n2"]->output();
  // The alerter did die after confirmations, and the next attempts found
  // those alerts already written instead of writing them again.
  CHECK(out.find("crash_after_confirm_every 4") != std::string::npos);
  CHECK(out.find("alert already written by an earlier attempt") != std::string::npos);
  // The scored events of those batches were confirmed and not marked either:
  // taken over and read back, never written twice.
  check_scored_log(bootstrap, want);
}
