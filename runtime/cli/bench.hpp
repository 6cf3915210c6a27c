#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace troupe::cli {

/// Options of `troupe bench`.
struct bench_options {
  /// `restart`: crash-to-replacement-answer latency of a one_for_one child.
  /// `router`: requests per second through a group router.
  /// `raw`: plain CAF actor-to-actor sends and requests, the baseline.
  /// `remote-server`: an echo actor published on 127.0.0.1:`port`.
  /// `remote`: plain CAF round trips to it (window 1 and `window`).
  /// `log`: the node's log (text, json, a line below the level) against
  /// plain printf lines, from `workers` threads, `count` lines each.
  std::string what;
  uint16_t port = 0;
  /// remote-server, remote: when set, through the cluster transport keyed by
  /// this secret (TLS 1.3 PSK, BASP on the Unix socket) instead of plain BASP.
  std::string secure;
  /// kafka-consume, redis-features, pipeline: the running cluster's parts.
  std::string kafka;
  std::string redis;
  std::string topic = "transactions";
  /// A file of transactions, one JSON event per line.
  std::string events;
  /// pipeline: transactions per second (0: as fast as possible);
  /// kafka-latency: records per second.
  double rate = 0;
  uint64_t count = 10000;
  size_t workers = 1;
  size_t window = 64;
  /// broadcast, feed: the WebSocket URL (ws://HOST:PORT/PATH[?query]).
  std::string url;
  /// feed: the client token presented in the first message (`troupe token`).
  std::string token;
  /// broadcast: subscribers to connect.
  size_t subscribers = 1000;
  /// broadcast: seconds to hold the idle connections before publishing
  /// (the script reads the server's memory meanwhile).
  int hold_seconds = 0;
  /// router: one-way messages (acknowledged by the workers to the router in
  /// batches, kept by it until then) instead of requests; the producer keeps
  /// at most `window` unfinished, credited back every 1,000.
  bool send = false;
  /// router: microseconds of CPU-bound work per message in each worker.
  double work_us = 0;
  /// pipeline: no warm-up, the pipeline's first transactions are timed.
  bool cold = false;
  /// crowd: the gateways' URLs (ws://ADDRESS:PORT/PATH), clients spread
  /// over them round-robin.
  std::vector<std::string> urls;
  /// crowd: local addresses the clients connect from, in turn.
  std::vector<std::string> sources;
  /// crowd: the cluster's client token key file and name; each client
  /// signs a token of its own for user `user_prefix-I`.
  std::string token_key;
  std::string cluster;
  std::string user_prefix = "crowd";
  /// crowd: the longest it runs, in seconds.
  int seconds = 900;
  /// crowd: the clients of raw broadcast servers (the floor): no token, no
  /// subscription, ready once connected. publish: `urls` are raw broadcast
  /// servers, each sent every article over a WebSocket, instead of Kafka.
  bool raw = false;
  /// feed: also one `feed_ms X` line per timed request.
  bool each = false;
  /// kafka-latency: records produced flat out to the topic before the
  /// timed ones (untimed), so that the hop is measured on a log as long as
  /// the pipeline's.
  uint64_t fill = 0;
};

int bench_kafka_consume(const bench_options& opt);
int bench_kafka_latency(const bench_options& opt);
int bench_redis_features(const bench_options& opt);
int bench_pipeline(const bench_options& opt);
int bench_broadcast(const bench_options& opt);
int bench_feed(const bench_options& opt);
int bench_crowd(const bench_options& opt);

/// A WebSocket URL's parts: ws://HOST:PORT[/TARGET] (TARGET "/" when none).
struct url_parts {
  std::string host;
  std::string port;
  std::string target;
};

/// Splits `url`; false unless it is ws://HOST:PORT[/...].
bool parse_url(const std::string& url, url_parts& out);

/// The number after `"id":"bench-` in a pushed article, or -1: the
/// benchmark articles' ids, shared by the broadcast and crowd clients.
int64_t bench_id(const std::string& text);
int bench_publish(const bench_options& opt);

/// Runs one measurement and prints its figures as `name value` lines.
int run_bench(const bench_options& opt);

} // namespace troupe::cli
