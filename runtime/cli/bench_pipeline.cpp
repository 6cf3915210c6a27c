// `troupe bench kafka-consume | redis-features | pipeline`: the figures of
// scripts/bench-pipeline, against a running local cluster's embedded Kafka
// and Redis.

#include "runtime/cli/bench.hpp"

#include <algorithm>
#include <atomic>
#include <cstdlib>
#include <cstring>
#include <chrono>
#include <cstdio>
#include <fstream>
#include <limits>
#include <map>
#include <mutex>
#include <thread>
#include <unordered_map>

#include <nlohmann/json.hpp>
#include <unistd.h>

#include "actors/feature_enricher/feature_store.hpp"
#include "actors/ingestor/transaction_json.hpp"
#include "runtime/core/duration.hpp"
#include "runtime/core/error.hpp"
#include "runtime/kafka/client.hpp"

using namespace std::chrono_literals;

namespace troupe::cli {

namespace {

using clock_type = std::chrono::steady_clock;

double pct(std::vector<double> xs, double p) {
  if (xs.empty())
    return 0;
  std::sort(xs.begin(), xs.end());
  return xs[static_cast<size_t>(p * static_cast<double>(xs.size() - 1) + 0.5)];
}

/// The events of `path` (one JSON transaction per line), each id and user
/// tagged with `tag` so that a run never meets the features or alert claims
/// of an earlier one.
caf::expected<std::vector<transaction>> load_events(const std::string& path,
                                                    const std::string& tag, uint64_t count) {
  std::ifstream in{path};
  if (!in)
    return caf::make_error(ec::invalid_argument, "cannot read " + path);
  std::vector<transaction> txs;
  for (std::string line; std::getline(in, line) && txs.size() < count;) {
    auto tx = ingest::parse_transaction(line);
    if (!tx)
      return caf::make_error(ec::invalid_argument, path + ": " + render(tx.error()));
    tx->id += "-" + tag;
    tx->user += "-" + tag;
    txs.push_back(std::move(*tx));
  }
  return txs;
}

/// Waits until the ingestors' consumer group committed every partition of
/// `transactions` to its end.
bool all_committed(const kafka::settings& conf, caf::timespan timeout) {
  // One client for every look: it runs on the cores the pipeline under
  // test runs on (a fresh client each 20 ms took a few percent of them).
  auto reader = kafka::progress_reader::make(conf, "troupe.ingestor", "transactions", 12);
  if (!reader)
    return false;
  for (auto until = clock_type::now() + timeout; clock_type::now() < until;) {
    if ((*reader)->at_end(5s))
      return true;
    std::this_thread::sleep_for(20ms);
  }
  return false;
}

int fail(const caf::error& err) {
  std::fprintf(stderr, "troupe bench: %s\n", render(err).c_str());
  return 1;
}

} // namespace

/// Raw librdkafka consume rate: a fresh group reads `count` records of the
/// topic from the start.
int bench_kafka_consume(const bench_options& opt) {
  auto c = kafka::consumer::make(kafka::defaults(opt.kafka),
                                 "bench-raw-" + std::to_string(::getpid()), {opt.topic});
  if (!c)
    return fail(c.error());
  uint64_t got = 0;
  clock_type::time_point first;
  auto until = clock_type::now() + 120s;
  while (got < opt.count && clock_type::now() < until) {
    auto batch = (*c)->poll(10000, 100ms);
    if (got == 0 && !batch.empty())
      first = clock_type::now();
    got += batch.size();
  }
  auto secs = std::chrono::duration<double>(clock_type::now() - first).count();
  std::printf("raw_consume_per_s %.0f\n", static_cast<double>(got) / secs);
  return got >= opt.count ? 0 : 1;
}

/// Raw Kafka hop latency: records produced at `rate` to `topic` (with the
/// transactions' producer settings) and read by a fresh consumer group (with
/// the ingestors' settings), each timed from produce to read. The pipeline
/// has two such hops (transactions in, alerts out). With `fill`, that many
/// records go to the topic first, untimed and flat out; the timed records
/// carry this run's nonce, so that a topic measured before is measured
/// again on its longer log.
int bench_kafka_latency(const bench_options& opt) {
  auto conf = kafka::defaults(opt.kafka);
  auto producer = kafka::producer::make(conf);
  if (!producer)
    return fail(producer.error());
  // The topic may hold earlier runs' records (the same topic, measured
  // run after run): this run's carry its nonce.
  auto nonce = static_cast<int64_t>(clock_type::now().time_since_epoch().count()) ^ ::getpid();
  auto fill_tag = std::string{"fill"};
  for (uint64_t i = 0; i < opt.fill; ++i)
    while ((*producer)->produce(opt.topic, "k" + std::to_string(i % 1000), fill_tag))
      std::this_thread::sleep_for(1ms);
  if (opt.fill > 0)
    (*producer)->flush(60s);
  auto c = kafka::consumer::make(conf, "bench-hop-" + std::to_string(nonce), {opt.topic});
  if (!c)
    return fail(c.error());
  // Warm up, untimed: the topic exists, the consumer joined and read a
  // record of the producer's (so both have their connections). A new
  // group reads the topic from its start first.
  bool warm = false;
  auto warm_tag = "warm-up-" + std::to_string(nonce);
  for (auto until = clock_type::now() + 60s; !warm && clock_type::now() < until;) {
    (*producer)->produce(opt.topic, "warm-up", warm_tag);
    for (auto& r : (*c)->poll(10000, 100ms))
      warm = warm || r.value == warm_tag;
  }
  if (!warm)
    return fail(caf::make_error(ec::invalid_argument, "no warm-up record read in 60 s"));
  std::vector<double> latency_ms;
  latency_ms.reserve(opt.count);
  std::atomic<bool> done{false};
  std::atomic<uint64_t> got{0};
  std::thread reader{[&] {
    while (!done.load() && got.load() < opt.count)
      for (auto& r : (*c)->poll(1000, 50ms)) {
        int64_t sent = 0;
        int64_t tag = 0;
        if (r.value.size() == sizeof(sent) + sizeof(tag)) {
          std::memcpy(&sent, r.value.data(), sizeof(sent));
          std::memcpy(&tag, r.value.data() + sizeof(sent), sizeof(tag));
          if (tag != nonce)
            continue;
          auto now = clock_type::now().time_since_epoch().count();
          latency_ms.push_back(static_cast<double>(now - sent) / 1e6);
          ++got;
        }
      }
  }};
  auto rate = opt.rate > 0 ? opt.rate : 1000;
  auto t0 = clock_type::now();
  for (uint64_t i = 0; i < opt.count; ++i) {
    std::this_thread::sleep_until(t0 + std::chrono::microseconds(static_cast<int64_t>(i * 1e6 / rate)));
    int64_t now = clock_type::now().time_since_epoch().count();
    std::string value(sizeof(now) + sizeof(nonce), '\0');
    std::memcpy(value.data(), &now, sizeof(now));
    std::memcpy(value.data() + sizeof(now), &nonce, sizeof(nonce));
    while ((*producer)->produce(opt.topic, "k" + std::to_string(i % 1000), value))
      std::this_thread::sleep_for(1ms);
  }
  (*producer)->flush(10s);
  for (auto until = clock_type::now() + 10s; clock_type::now() < until;) {
    if (got.load() >= opt.count)
      break;
    std::this_thread::sleep_for(20ms);
  }
  done = true;
  reader.join();
  std::printf("raw_kafka_hop_records %zu\n", latency_ms.size());
  std::printf("raw_kafka_hop_p50_ms %.2f\n", pct(latency_ms, 0.5));
  std::printf("raw_kafka_hop_p99_ms %.2f\n", pct(latency_ms, 0.99));
  return latency_ms.size() >= opt.count ? 0 : 1;
}

/// Raw pipelined Redis rate of the feature updates: the feature script over
/// the events, batches of 100, one connection.
int bench_redis_features(const bench_options& opt) {
  auto txs = load_events(opt.events, "r" + std::to_string(::getpid()), opt.count);
  if (!txs)
    return fail(txs.error());
  auto store = enrich::feature_store::make(opt.redis, 2s);
  if (!store)
    return fail(store.error());
  auto t0 = clock_type::now();
  for (size_t at = 0; at < txs->size(); at += 100) {
    std::vector<transaction> batch(txs->begin() + at,
                                   txs->begin() + std::min(at + 100, txs->size()));
    auto f = (*store)->features(batch);
    if (!f)
      return fail(f.error());
  }
  auto secs = std::chrono::duration<double>(clock_type::now() - t0).count();
  std::printf("raw_redis_features_per_s %.0f\n", static_cast<double>(txs->size()) / secs);
  return 0;
}

/// The pipeline end to end on the running cluster: produce the events at
/// `rate` (0: as fast as possible), then time until the ingestors' group
/// committed every partition to its end; meanwhile read the alerts and time
/// each from its transaction's produce to its arrival.
int bench_pipeline(const bench_options& opt) {
  auto tag = "p" + std::to_string(::getpid()) + "-" + std::to_string(opt.rate);
  auto txs = load_events(opt.events, tag, opt.count);
  if (!txs)
    return fail(txs.error());
  auto conf = kafka::defaults(opt.kafka);
  auto producer = kafka::producer::make(conf);
  if (!producer)
    return fail(producer.error());
  auto reader = kafka::consumer::make(conf, "bench-alerts-" + tag, {"fraud-alerts"});
  if (!reader)
    return fail(reader.error());
  // Join and skip what is there before producing.
  for (auto until = clock_type::now() + 15s;
       (*reader)->assignment().empty() && clock_type::now() < until;)
    (*reader)->poll(1000, 100ms);
  if (!opt.cold) {
    // Warm up, untimed: the producer's connections to every partition leader
    // and the pipeline's first batches (a cold producer holds its first
    // records until it has the metadata, which is not the pipeline's time).
    auto warm = load_events(opt.events, "w" + tag, 300);
    if (!warm)
      return fail(warm.error());
    for (auto& tx : *warm)
      while ((*producer)->produce("transactions", tx.user, ingest::to_json(tx)))
        std::this_thread::sleep_for(1ms);
    (*producer)->flush(30s);
    if (!all_committed(conf, 60s))
      return fail(caf::make_error(ec::invalid_argument, "the warm-up was not finished in 60 s"));
  } else {
    // Cold: the pipeline sees its first transactions now. Only this bench's
    // own producer is warmed: its connection (a record on a topic no group
    // reads) and its metadata of the transactions topic.
    (*producer)->produce("bench-warm-up", "warm-up", "warm-up");
    (*producer)->flush(10s);
    if (auto n = (*producer)->partitions("transactions", 10s); !n)
      return fail(n.error());
  }
  std::mutex mtx;
  struct sent_times {
    clock_type::time_point steady;
    int64_t wall_ms;
  };
  std::unordered_map<std::string, sent_times> sent_at;
  sent_at.reserve(txs->size());
  // Produce to alert read; and its two parts, produce to `raised_at` (the
  // alerter's wall clock, same machine) and `raised_at` to read.
  std::vector<double> latency_ms, raised_ms, delivered_ms;
  // Produce to alert read of the transactions produced in the first second.
  std::vector<double> first_second_ms;
  clock_type::time_point load_start = clock_type::now() + 24h; // set below
  // The reader stops half a second after `stop_at` is set (the last alerts
  // in flight), or at once if it is never set and the bench fails.
  std::atomic<int64_t> stop_at{std::numeric_limits<int64_t>::max()};
  std::thread alerts{[&] {
    while (clock_type::now().time_since_epoch().count() < stop_at.load()) {
      for (auto& r : (*reader)->poll(1000, 50ms)) {
        auto now = clock_type::now();
        auto wall = unix_ms();
        auto j = nlohmann::json::parse(r.value, nullptr, false);
        std::lock_guard<std::mutex> guard{mtx};
        auto i = sent_at.find(r.key);
        if (i == sent_at.end())
          continue;
        latency_ms.push_back(std::chrono::duration<double, std::milli>(now - i->second.steady).count());
        if (i->second.steady < load_start + 1s)
          first_second_ms.push_back(latency_ms.back());
        if (std::getenv("TROUPE_BENCH_TRACE"))
          std::fprintf(stderr, "trace %.1f %.1f\n",
                       std::chrono::duration<double, std::milli>(i->second.steady - load_start).count(),
                       latency_ms.back());
        if (j.is_object() && j["raised_at"].is_number_integer()) {
          auto raised = j["raised_at"].get<int64_t>();
          raised_ms.push_back(static_cast<double>(raised - i->second.wall_ms));
          delivered_ms.push_back(static_cast<double>(wall - raised));
        }
      }
    }
  }};
  auto t0 = clock_type::now();
  {
    std::lock_guard<std::mutex> guard{mtx};
    load_start = t0;
  }
  for (size_t i = 0; i < txs->size(); ++i) {
    if (opt.rate > 0) {
      auto due = t0 + std::chrono::microseconds(static_cast<int64_t>(i * 1e6 / opt.rate));
      // Sleep, not spin: a spinning producer would take one of the
      // cores the cluster under test runs on.
      if (due > clock_type::now())
        std::this_thread::sleep_until(due);
    }
    auto& tx = (*txs)[i];
    {
      std::lock_guard<std::mutex> guard{mtx};
      sent_at[tx.id] = {clock_type::now(), unix_ms()};
    }
    while (auto err = (*producer)->produce("transactions", tx.user, ingest::to_json(tx))) {
      (void) err; // local queue full: let it drain
      std::this_thread::yield();
    }
  }
  (*producer)->flush(30s);
  auto produced = std::chrono::duration<double>(clock_type::now() - t0).count();
  auto finished = all_committed(conf, 300s);
  auto total = std::chrono::duration<double>(clock_type::now() - t0).count();
  stop_at = (clock_type::now() + 500ms).time_since_epoch().count();
  alerts.join();
  std::printf("pipeline_produced_per_s %.0f\n", static_cast<double>(txs->size()) / produced);
  std::printf("pipeline_tx_per_s %.0f\n", static_cast<double>(txs->size()) / total);
  std::lock_guard<std::mutex> guard{mtx};
  std::printf("pipeline_alerts %zu\n", latency_ms.size());
  std::printf("pipeline_alert_p50_ms %.2f\n", pct(latency_ms, 0.5));
  std::printf("pipeline_alert_p99_ms %.2f\n", pct(latency_ms, 0.99));
  std::printf("pipeline_first_second_alerts %zu\n", first_second_ms.size());
  std::printf("pipeline_first_second_p99_ms %.2f\n", pct(first_second_ms, 0.99));
  std::printf("pipeline_raised_p50_ms %.2f\n", pct(raised_ms, 0.5));
  std::printf("pipeline_raised_p99_ms %.2f\n", pct(raised_ms, 0.99));
  std::printf("pipeline_delivered_p50_ms %.2f\n", pct(delivered_ms, 0.5));
  std::printf("pipeline_delivered_p99_ms %.2f\n", pct(delivered_ms, 0.99));
  return finished ? 0 : 1;
}

} // namespace troupe::cli
