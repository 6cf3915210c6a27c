// The feature-enricher's Redis script against the reference features of
// scripts/fraud/fraud_data.py, on a real redis-server.

#include "actors/feature_enricher/feature_store.hpp"

#include <cstdlib>
#include <fstream>

#include <doctest/doctest.h>
#include <nlohmann/json.hpp>
#include <unistd.h>

#include "actors/ingestor/transaction_json.hpp"
#include "runtime/core/error.hpp"
#include "tests/support/python_reference.hpp"
#include "tests/support/redis_server.hpp"

using namespace std::chrono_literals;
using namespace troupe;

namespace {

/// A generated stream: its events and their reference features.
struct stream {
  std::vector<transaction> txs;
  std::vector<std::vector<float>> features;
};

stream reference(int seed, int users, double days) {
  auto j = test::python_reference(
    "reference_features.py", {std::to_string(seed), std::to_string(users), std::to_string(days)});
  stream s;
  for (auto& e : j["events"]) {
    auto tx = ingest::parse_transaction(e.get<std::string>());
    REQUIRE(tx);
    s.txs.push_back(*tx);
  }
  for (auto& row : j["features"]) {
    std::vector<float> v;
    for (auto& x : row)
      v.push_back(static_cast<float>(x.get<double>()));
    s.features.push_back(std::move(v));
  }
  return s;
}

} // namespace

TEST_CASE("the Redis features equal the reference features, batch after batch") {
  auto s = reference(77, 150, 3.0);
  REQUIRE(s.txs.size() > 1000);
  test::redis_server server;
  auto store = enrich::feature_store::make(server.url(), 1s);
  REQUIRE_MESSAGE(store, render(store.error()));
  size_t mismatches = 0;
  for (size_t at = 0; at < s.txs.size(); at += 100) {
    std::vector<transaction> batch(s.txs.begin() + at,
                                   s.txs.begin() + std::min(at + 100, s.txs.size()));
    auto got = (*store)->features(batch);
    REQUIRE_MESSAGE(got, render(got.error()));
    REQUIRE(got->size() == batch.size());
    for (size_t i = 0; i < batch.size(); ++i)
      if ((*got)[i] != s.features[at + i]) {
        if (++mismatches <= 3) {
          std::string a, b;
          for (auto x : (*got)[i])
            a += std::to_string(x) + " ";
          for (auto x : s.features[at + i])
            b += std::to_string(x) + " ";
          MESSAGE(batch[i].id << ": got " << a << "want " << b);
        }
      }
  }
  CHECK(mismatches == 0);
  MESSAGE(s.txs.size() << " transactions compared");
}

TEST_CASE("one user's history in Redis stays bounded whatever its transactions say") {
  test::redis_server server;
  auto store = enrich::feature_store::make(server.url(), 1s);
  REQUIRE_MESSAGE(store, render(store.error()));
  // 12,000 transactions of one user within a day, each from a new country,
  // device and merchant: what a hostile producer could send.
  int64_t t0 = 1'700'000'000'000;
  for (int at = 0; at < 12000; at += 500) {
    std::vector<transaction> batch;
    for (int i = at; i < at + 500; ++i) {
      transaction t;
      t.id = "tx-" + std::to_string(i);
      t.user = "mallory";
      t.amount = 10;
      t.currency = "EUR";
      t.merchant = "m-" + std::to_string(i);
      t.category = "other";
      t.country = "c" + std::to_string(i);
      t.device = "d-" + std::to_string(i);
      t.timestamp = t0 + i;
      batch.push_back(std::move(t));
    }
    auto got = (*store)->features(batch);
    REQUIRE_MESSAGE(got, render(got.error()));
  }
  auto admin = redis::connection::make(server.url(), 1s);
  REQUIRE(admin);
  auto size = [&](const char* cmd, const std::string& key) {
    auto r = (*admin)->command({cmd, key});
    REQUIRE(r);
    return r->number;
  };
  CHECK(size("ZCARD", "u:{mallory}:tx") == 10000);
  CHECK(size("ZCARD", "u:{mallory}:merchants") == 10000);
  CHECK(size("SCARD", "u:{mallory}:countries") == 1000);
  CHECK(size("SCARD", "u:{mallory}:devices") == 1000);
}

TEST_CASE("a replayed transaction gets its first features and counts once") {
  auto s = reference(78, 20, 2.0);
  test::redis_server server;
  auto store = enrich::feature_store::make(server.url(), 1s);
  REQUIRE(store);
  auto half = s.txs.size() / 2;
  std::vector<transaction> first(s.txs.begin(), s.txs.begin() + half);
  REQUIRE((*store)->features(first));
  // Replay the last 30 of the first half (a crash before their offsets were
  // committed), then go on: nothing may be counted twice.
  std::vector<transaction> replay(first.end() - 30, first.end());
  auto again = (*store)->features(replay);
  REQUIRE(again);
  for (size_t i = 0; i < replay.size(); ++i)
    CHECK((*again)[i] == s.features[half - 30 + i]);
  std::vector<transaction> rest(s.txs.begin() + half, s.txs.end());
  auto later = (*store)->features(rest);
  REQUIRE(later);
  for (size_t i = 0; i < rest.size(); ++i)
    CHECK((*later)[i] == s.features[half + i]);
}

TEST_CASE("a lost server fails the call, and a server that forgot the script gets it again") {
  auto s = reference(79, 5, 1.0);
  test::redis_server server;
  auto store = enrich::feature_store::make(server.url(), 1s);
  REQUIRE(store);
  std::vector<transaction> one(s.txs.begin(), s.txs.begin() + 1);
  REQUIRE((*store)->features(one));
  server.stop();
  CHECK(!(*store)->features(one)); // the connection is dead now
  CHECK(!(*store)->alive());
  server.start();
  auto fresh = enrich::feature_store::make(server.url(), 1s);
  REQUIRE(fresh);
  REQUIRE((*fresh)->features(one));
  // The server forgets its scripts (SCRIPT FLUSH, a failover to a replica):
  // EVALSHA answers NOSCRIPT, and the store loads the script and runs again.
  auto admin = redis::connection::make(server.url(), 1s);
  REQUIRE(admin);
  REQUIRE((*admin)->command({"SCRIPT", "FLUSH"}));
  std::vector<transaction> two(s.txs.begin() + 1, s.txs.begin() + 2);
  auto after = (*fresh)->features(two);
  REQUIRE_MESSAGE(after, render(after.error()));
  CHECK((*after)[0] == s.features[1]);
}

TEST_CASE("degraded features keep what needs no history") {
  transaction tx;
  tx.amount = 99.5;
  tx.timestamp = 1767225600000 + 5 * 3600 * 1000; // 05:00 UTC
  tx.category = "travel";
  auto v = enrich::feature_store::degraded(tx);
  REQUIRE(v.size() == 11);
  CHECK(v[0] == 99.5f);
  CHECK(v[5] == 604800.f);
  CHECK(v[9] == 5.f);
  CHECK(v[10] == 7.f);
  tx.category = "unknown";
  CHECK(enrich::feature_store::degraded(tx)[10] == -1.f);
}
