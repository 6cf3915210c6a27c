#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include <caf/error.hpp>
#include <caf/expected.hpp>
#include <caf/timespan.hpp>

#include "runtime/core/log.hpp"

struct rd_kafka_s;
struct rd_kafka_topic_partition_list_s;

namespace troupe::kafka {

/// librdkafka settings (`bootstrap.servers` and the rest), by name.
using settings = std::map<std::string, std::string>;

/// What Troupe sets unless told otherwise: short linger and fetch waits
/// (the mock cluster waits the full `fetch.wait.max.ms` on an empty fetch,
/// and `linger.ms=0` collapses throughput), errors-only logging.
settings defaults(const std::string& bootstrap);

/// Where the Kafka clients of this process report what librdkafka says:
/// its log lines (`1/1 brokers are down`, a failed connect) and its client
/// errors become lines of `log` (`kafka rdkafka#consumer-3: FAIL: ...`, at
/// the level librdkafka gives them) instead of unstructured stderr, and
/// each client error counts in `troupe_kafka_client_errors_total{error}`.
/// A node sets its log at start; without one, lines go to stderr. Applies
/// to clients made after the call.
void set_client_log(log_fn log);

/// The `fetch.wait.max.ms` of `defaults()` from now on (the topology's
/// `kafka_fetch_wait`, set by a node at start; 1 ms until then).
void set_fetch_wait(std::chrono::milliseconds wait);

/// A topic partition and an offset (the next one to read, when committed).
struct partition_offset {
  std::string topic;
  int32_t partition = 0;
  int64_t offset = 0;

  friend bool operator<(const partition_offset& a, const partition_offset& b) {
    return std::tie(a.topic, a.partition) < std::tie(b.topic, b.partition);
  }
};

/// One consumed record.
struct record {
  std::string topic;
  int32_t partition = 0;
  int64_t offset = 0;
  std::string key;
  std::string value;
  /// Its `traceparent` header (W3C Trace Context), as it came; empty
  /// without one (a consumer group member's records only).
  std::string traceparent;
};

/// A Kafka producer (librdkafka) with a thread of its own that serves
/// delivery reports. Built by `make()`. Thread-safe.
class producer {
public:
  /// Called once per record, on the producer's thread: none, or why the
  /// record could not be delivered.
  using done_fn = std::function<void(const caf::error&)>;

  static caf::expected<std::unique_ptr<producer>> make(const settings& conf);

  /// Flushes for up to 5 s, then stops.
  ~producer();

  producer(const producer&) = delete;
  producer& operator=(const producer&) = delete;

  /// Queues one record (key decides the partition). Fails at once when the
  /// local queue is full or the topic is unknown; else `done` says later.
  caf::error produce(const std::string& topic, const std::string& key, const std::string& value,
                     done_fn done = {});

  /// What became of one record: where it landed, or why it did not. A
  /// failed record is `possibly_persisted` when the broker may have written
  /// it anyway (the request was sent and its answer lost): only reading the
  /// partition tells.
  struct delivery {
    caf::error error;
    int32_t partition = -1;
    int64_t offset = -1;
    bool possibly_persisted = false;
  };

  using report_fn = std::function<void(const delivery&)>;

  /// Queues one record for `partition` of `topic`; `report` says later, on
  /// the producer's thread, what became of it.
  caf::error produce_to(const std::string& topic, int32_t partition, const std::string& key,
                        const std::string& value, report_fn report);

  /// How many partitions `topic` has (a metadata round trip).
  caf::expected<int32_t> partitions(const std::string& topic, caf::timespan timeout);

  /// The offset the next record of `topic`/`partition` will get (a round trip).
  caf::expected<int64_t> end_offset(const std::string& topic, int32_t partition,
                                    caf::timespan timeout);

  /// Waits until everything queued was delivered or failed.
  caf::error flush(caf::timespan timeout);

  uint64_t delivered() const {
    return delivered_.load();
  }

  uint64_t failed() const {
    return failed_.load();
  }

private:
  producer() = default;
  static void on_delivery(rd_kafka_s*, const void* msg, void* opaque);

  rd_kafka_s* rk_ = nullptr;
  std::thread poller_;
  std::atomic<bool> stop_{false};
  std::atomic<uint64_t> delivered_{0};
  std::atomic<uint64_t> failed_{0};
};

/// A member of a Kafka consumer group. Built by `make()`, which subscribes.
///
/// Not thread-safe: one owner (a detached actor or a thread) calls
/// everything, and `poll` blocks up to its timeout. Offsets are committed only
/// by `commit` (auto-commit is off): the owner commits what it has finished.
class consumer {
public:
  static caf::expected<std::unique_ptr<consumer>>
  make(const settings& conf, const std::string& group, const std::vector<std::string>& topics);

  /// Leaves the group (its partitions go to the other members at once),
  /// in the background: the close waits for the group coordinator, as long
  /// as a request timeout when it cannot be reached (a broker down, this
  /// host cut off), and the owner must not wait for that to stop. Records
  /// and commits end here; the process waits for pending closes at exit.
  ~consumer();

  consumer(const consumer&) = delete;
  consumer& operator=(const consumer&) = delete;

  /// Up to `max` records: waits at most `timeout` for the first, then takes
  /// what is already there. Serves rebalances as they come, and stops at the
  /// first one: records from `rebalanced_at()` on belong to the new
  /// assignment, those before it to the old one.
  std::vector<record> poll(size_t max, caf::timespan timeout);

  /// Where in the last `poll`'s records a rebalance happened (npos: none).
  /// An owner drops the revoked partitions' state there, before taking the
  /// records after it (a partition revoked and assigned again within one
  /// poll would otherwise lose what was read after its reassignment).
  size_t rebalanced_at() const {
    return rebalanced_at_;
  }

  /// Commits, per partition, the next offset to read (synchronously).
  caf::error commit(const std::vector<partition_offset>& next);

  /// The committed offsets of the group for these partitions (-1001: none).
  caf::expected<std::vector<partition_offset>> committed(const std::vector<partition_offset>& of,
                                                         caf::timespan timeout);

  caf::error pause(const std::vector<partition_offset>& partitions);
  caf::error resume(const std::vector<partition_offset>& partitions);

  /// The partitions assigned to this member now.
  std::vector<partition_offset> assignment() const {
    return assigned_;
  }

  /// Partitions revoked since the last call (their records in flight will
  /// be read again by their new owner: at-least-once).
  std::vector<partition_offset> take_revoked();

  /// Non-fatal consume errors since the last call (at most 100), for the
  /// caller's log; each is also counted in
  /// `troupe_kafka_consumer_errors_total`.
  std::vector<std::string> take_errors();

  /// One log line for the errors since the last call, or "" if none.
  std::string error_summary();

  /// Per assigned partition, the records not yet committed: the partition's
  /// high watermark (as the last fetch saw it) minus the offset this member
  /// last committed, or, before its first commit, minus its read position,
  /// or, before it read anything, minus where it starts (the group's
  /// committed offset, else the partition's start). Partitions whose
  /// figures are not known yet are left out. `poll` publishes the same
  /// figures, at most 4 times a second, as `troupe_kafka_consumer_lag` in
  /// the process's registry.
  std::vector<partition_offset> lag();

  /// The stall watch: "" while this member makes progress or has nothing
  /// to do, else why it is wedged. A member is wedged when, not paused, it
  /// holds partitions it has not paused with unread records and read
  /// nothing for `after`; or
  /// when it held no partitions for `after` while a partition of its topics
  /// had unread records and its group's committed offset did not move for
  /// `after` (nobody reads it). The owner treats a wedged member as crashed:
  /// its supervisor restarts it with a fresh consumer. Each call is cheap
  /// but for the empty case, which asks the group's offsets (a round trip)
  /// at most every `after / 2`; after each wedge found empty in a process,
  /// the next needs twice as long (up to 16 times), until a member of the
  /// group gets partitions again.
  std::string stalled(caf::timespan after, bool paused);

private:
  consumer() = default;
  static void on_rebalance(rd_kafka_s*, int err, rd_kafka_topic_partition_list_s* parts,
                           void* opaque);
  void publish_lag();
  /// Asks the group's committed offsets of assigned partitions whose start
  /// is not known yet (a 200 ms round trip; after a failure, not again for
  /// 5 s).
  void learn_starts();

  rd_kafka_s* rk_ = nullptr;
  /// What the rebalance callback acts for: this consumer, or nothing once
  /// it is closing in the background.
  struct rebalance_target* target_ = nullptr;
  std::string group_;
  /// The next offset to read, as this member last committed it.
  std::map<std::pair<std::string, int32_t>, int64_t> committed_;
  std::map<std::string, std::atomic<uint64_t>*> read_counters_;
  int64_t lag_published_ms_ = 0;
  /// Where reading started, per partition, for the lag before anything was
  /// read: the group's committed offset, or the partition's start.
  std::map<std::pair<std::string, int32_t>, int64_t> starts_;
  int64_t next_start_query_ms_ = 0;
  std::vector<partition_offset> assigned_;
  std::vector<partition_offset> revoked_;
  std::vector<std::string> errors_;
  bool rebalanced_ = false;
  size_t rebalanced_at_ = std::string::npos;
  std::vector<std::string> topics_;
  /// Partitions paused by the owner (until resumed or revoked).
  std::set<std::pair<std::string, int32_t>> paused_;
  // The stall watch's clock (steady milliseconds).
  int64_t watch_read_ms_ = 0;
  int64_t watch_poll_ms_ = 0;
  int64_t watch_empty_ms_ = -1;
  int64_t watch_next_check_ms_ = 0;
  /// Per partition with unread records: the group's committed offset and
  /// since when it has not moved.
  std::map<std::pair<std::string, int32_t>, std::pair<int64_t, int64_t>> watch_still_;
};

/// Which of `keys` `topic`/`partition` holds as record keys, at offsets from
/// `from` up to the partition's end as of the call. Reads the range with a
/// consumer of its own (no group; `read_committed`): for the rare check of
/// whether an earlier attempt's records landed.
caf::expected<std::set<std::string>> find_keys(const settings& conf, const std::string& topic,
                                               int32_t partition, int64_t from,
                                               const std::set<std::string>& keys,
                                               caf::timespan timeout);

/// Every record of every partition of `topic` written at or after
/// `since_ms` (the records' own timestamps; where a partition starts is
/// asked of Kafka by time, and the partition's start is taken when the
/// cluster cannot answer that), up to each partition's end as of the call,
/// handed to `each`. A consumer of its own, no group (`read_committed`):
/// for a bounded scan such as a model's training set. Fails when it takes
/// longer than `timeout`.
caf::error read_since(const settings& conf, const std::string& topic, int64_t since_ms,
                      const std::function<void(const record&)>& each, caf::timespan timeout);

/// For each partition of `topic` (0 .. partitions-1): the offset the
/// consumer group `group` committed (-1001 when none) and the partition's
/// end (the offset the next record will get). Joins no group: safe to ask
/// while the group runs.
caf::expected<std::vector<std::pair<int64_t, int64_t>>>
group_progress(const settings& conf, const std::string& group, const std::string& topic,
               int partitions, caf::timespan timeout);

/// `group_progress` asked again and again over one client: for a caller
/// that waits for a group to reach the end of a topic (a bench, a test). A
/// fresh client per look costs the broker a connection, metadata and a
/// coordinator lookup, and costs the caller a client's threads, each time;
/// this one asks for the committed offsets and for every partition's end in
/// one request each.
class progress_reader {
public:
  /// A client for `group`'s progress on `topic` (partitions 0 ..
  /// partitions-1); joins no group.
  static caf::expected<std::unique_ptr<progress_reader>>
  make(const settings& conf, const std::string& group, const std::string& topic, int partitions);

  ~progress_reader();
  progress_reader(const progress_reader&) = delete;
  progress_reader& operator=(const progress_reader&) = delete;

  /// Per partition: the committed offset (-1001 when none) and the end.
  caf::expected<std::vector<std::pair<int64_t, int64_t>>> read(caf::timespan timeout);

  /// Whether the group committed every partition up to its end.
  bool at_end(caf::timespan timeout);

private:
  progress_reader(rd_kafka_s* rk, std::string topic, int partitions)
    : rk_(rk), topic_(std::move(topic)), partitions_(partitions) {
  }

  rd_kafka_s* rk_;
  std::string topic_;
  int partitions_;
};

} // namespace troupe::kafka
