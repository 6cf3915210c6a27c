#include "actors/ingestor/ingestor.hpp"

#include <algorithm>
#include <deque>
#include <map>
#include <memory>
#include <tuple>

#include <nlohmann/json.hpp>

#include "actors/ingestor/transaction_json.hpp"
#include "runtime/core/duration.hpp"
#include "runtime/core/error.hpp"
#include "runtime/core/histogram.hpp"
#include "runtime/core/messages.hpp"
#include "runtime/kafka/dead_letter.hpp"
#include "runtime/kafka/client.hpp"
#include "runtime/redis/connection.hpp"

using namespace std::chrono_literals;

namespace troupe::ingest {

namespace {

using clock_type = std::chrono::steady_clock;
using partition_key = std::pair<std::string, int32_t>;


/// An event read and parsed, waiting for its batch.
struct queued {
  int64_t offset;
  transaction tx;
  clock_type::time_point read_at;
  /// When it was read, Unix nanoseconds: its ingest span's start.
  int64_t read_ns;
};

/// One partition this worker owns.
struct partition_state {
  /// Parsed and waiting for a batch, in offset order.
  std::deque<queued> queue;
  bool in_flight = false;
  /// Offsets read and not yet committed: finished or not.
  std::map<int64_t, bool> open;
  /// The next offset to read, as committed / as it may be committed now.
  int64_t committed = -1;
  int64_t to_commit = -1;
  /// Results for an older assignment of the partition are ignored.
  uint64_t epoch = 0;
  /// Paused by flow control: too many of its events unfinished.
  bool paused = false;
  /// Events up to this offset go down the pipeline one by one: a batch
  /// that held them failed because of one of them.
  int64_t single_until = -1;
};

/// A batch on its way down the pipeline.
struct batch_state {
  partition_key key;
  /// Its transactions were scored with degraded features before: scored
  /// with degraded features again, the batch waits instead.
  bool again = false;
  /// Answers Kafka still owes for the transactions sent to be scored again.
  size_t rescore_waiting = 0;
  size_t rescore_sent = 0;
  bool rescore_failed = false;
  /// Times this batch, down to one event, was found to blame: its event
  /// goes to the dead letters at the third (a crash that merely happened to
  /// hit it, as injected faults do, rarely repeats three times).
  int strikes = 0;
  uint64_t epoch = 0;
  std::vector<transaction> txs;
  std::vector<int64_t> offsets;
  /// Per transaction: the parent of its ingest span (the producer's span
  /// from `traceparent`, or none) and when it was read. Its ingest span's
  /// id is the transaction's `trace.span`, the parent of the stages' spans.
  std::vector<std::pair<uint64_t, int64_t>> ingest;
  int attempts = 0;
  /// When its oldest event was read, and when its current stage began.
  clock_type::time_point oldest;
  clock_type::time_point stage_start;
};

/// Where a batch's time goes, since the last report.
struct stage_times {
  histogram queued, enrich, score, alert, total;

  std::string summary() const {
    return "queued " + queued.summary() + "; enrich " + enrich.summary() + "; score "
           + score.summary() + "; alert " + alert.summary() + "; read to finished "
           + total.summary();
  }
};

/// A dead letter Kafka has not confirmed yet.
struct pending_dead_letter {
  kafka::record r;
  std::string reason;
  /// The partition's epoch when the event was read: a letter outlives its
  /// partition's stay here only until its answer comes.
  uint64_t epoch = 0;
  int attempts = 0;
  /// Kafka refused it as too large: write it truncated.
  bool truncate = false;
};

struct worker_state {
  caf::event_based_actor* self = nullptr;
  ingestor_settings cfg;
  std::string name;
  /// This worker's place in the tracer.
  uint32_t place = 0;
  std::unique_ptr<kafka::consumer> consumer;
  std::unique_ptr<kafka::producer> dead_letters;
  /// Where confirmed dead letters are marked (none while Redis is away:
  /// tried again after `marks_retry`).
  std::unique_ptr<redis::connection> marks;
  clock_type::time_point marks_retry;
  std::map<partition_key, partition_state> parts;
  /// Dead letters sent and not confirmed, by topic, partition and offset.
  std::map<std::tuple<std::string, int32_t, int64_t>, pending_dead_letter> dead_pending;
  std::map<uint64_t, batch_state> batches;
  uint64_t next_batch = 0;
  uint64_t next_epoch = 0;
  size_t pending = 0;
  bool paused = false;
  clock_type::time_point last_commit = clock_type::now();
  clock_type::time_point last_report = clock_type::now();
  clock_type::time_point last_stage_log;
  clock_type::time_point last_stall_check = clock_type::now();
  /// Partitions assigned at the last look (logged when it changes).
  size_t assigned = 0;
  // counters
  uint64_t read = 0, scored = 0, degraded = 0, alerts = 0, dead = 0, retries = 0, rescore = 0;
  /// Events read again whose dead letter was confirmed before (not written twice).
  uint64_t dead_again = 0;
  stage_times times;
  log_budget dead_log;

  void log(const std::string& line) {
    if (cfg.log)
      cfg.log(name + ": " + line);
  }

  bool connect() {
    if (consumer)
      return true;
    auto conf = kafka::defaults(cfg.kafka);
    std::vector<std::string> topics{cfg.topic};
    if (!cfg.rescore_topic.empty() && cfg.rescore_topic != cfg.topic)
      topics.push_back(cfg.rescore_topic);
    auto c = kafka::consumer::make(conf, cfg.consumer_group, topics);
    if (!c) {
      log("cannot join consumer group " + cfg.consumer_group + ": " + render(c.error()));
      return false;
    }
    auto p = kafka::producer::make(conf);
    if (!p) {
      log("cannot produce dead letters: " + render(p.error()));
      return false;
    }
    consumer = std::move(*c);
    dead_letters = std::move(*p);
    log("member of consumer group " + cfg.consumer_group + " on " + cfg.topic);
    return true;
  }

  partition_state& partition(const partition_key& k) {
    auto i = parts.find(k);
    if (i == parts.end()) {
      i = parts.emplace(k, partition_state{}).first;
      i->second.epoch = ++next_epoch;
    }
    return i->second;
  }

  void drop_revoked() {
    for (auto& r : consumer->take_revoked()) {
      auto i = parts.find({r.topic, r.partition});
      if (i == parts.end())
        continue;
      // Its unfinished events are read again by the partition's new owner.
      pending -= i->second.open.size();
      parts.erase(i);
    }
  }

  void on_poll() {
    if (!connect()) {
      self->delayed_send(self, 1s, poll_atom::value);
      return;
    }
    drop_revoked();
    auto busy = !batches.empty();
    auto recs = consumer->poll(500, busy ? 1ms : 5ms);
    if (auto errors = consumer->error_summary(); !errors.empty())
      cfg.log.warning(name + ": " + errors);
    auto cut = consumer->rebalanced_at();
    auto read_at = clock_type::now();
    auto read_ns = cfg.tracer ? trace::unix_ns() : int64_t{0};
    for (size_t n = 0; n < recs.size(); ++n) {
      if (n == cut)
        drop_revoked(); // records from here on belong to the new assignment
      auto& r = recs[n];
      ++read;
      auto& p = partition({r.topic, r.partition});
      p.open[r.offset] = false;
      ++pending;
      auto tx = parse_transaction(r.value);
      if (!tx) {
        auto why = render(tx.error());
        kafka::log_dead_letter(cfg.log, dead_log, name, why, r);
        send_dead_letter(r, why, p.epoch);
        continue;
      }
      if (cfg.log.enabled(log_level::trace))
        cfg.log.trace(name + ": read " + r.topic + "/" + std::to_string(r.partition) + "@"
                        + std::to_string(r.offset),
                      tx->id);
      if (cfg.tracer) {
        // The producer's trace when its header holds a valid one (a bad
        // header starts a new trace: tracing never refuses an event).
        auto in = r.traceparent.empty() ? std::nullopt : trace::parse_traceparent(r.traceparent);
        tx->trace = in ? *in : trace::new_trace(cfg.trace_sample);
      }
      p.queue.push_back({r.offset, std::move(*tx), read_at, read_ns});
    }
    if (cut != std::string::npos && cut >= recs.size())
      drop_revoked();
    if (cut != std::string::npos) {
      if (auto n = consumer->assignment().size(); n != assigned) {
        assigned = n;
        cfg.log.info(name + ": partitions assigned: " + std::to_string(n));
      }
    }
    launch_ready();
    auto now = clock_type::now();
    if (now - last_commit >= cfg.commit_every) {
      commit();
      last_commit = now;
    }
    flow_control();
    if (now - last_stall_check >= 1s) {
      last_stall_check = now;
      if (auto why = consumer->stalled(cfg.stall_timeout, false); !why.empty()) {
        // Treated as a crash: the supervisor restarts this worker with a
        // fresh consumer; its unfinished events are read again.
        cfg.log.warning(name + ": consumer wedged: " + why
                        + "; restarting with a fresh consumer");
        self->quit(caf::make_error(ec::io_failure, "wedged consumer: " + why));
        return;
      }
    }
    if (cfg.report_every.count() > 0 && now - last_report >= cfg.report_every) {
      report();
      last_report = now;
    }
    self->send(self, poll_atom::value);
  }

  // -- dead letters ---------------------------------------------------------------
  //
  // An event is finished once Kafka confirmed its dead letter: before that
  // its offset is not committed. A letter Kafka does not confirm is sent
  // again, backing off from 100 ms to 5 s, for as long as this worker holds
  // the partition; one too large for Kafka is written truncated (size,
  // SHA-256 and the head of the value), so no event holds back its
  // partition for ever.

  /// What becomes of a dead letter sent: `(dead_letter_done_atom, topic,
  /// partition, offset, status)`.
  enum dead_letter_status : int32_t { dl_confirmed = 0, dl_failed = 1, dl_too_large = 2 };

  static int32_t status_of(const caf::error& e) {
    return !e ? dl_confirmed : e == ec::too_large ? dl_too_large : dl_failed;
  }

  // A dead letter Kafka confirmed is marked in Redis (for a week), by its
  // record's place and an FNV-1a hash of its key and value: an event read
  // again (its partition moved before its offset was committed, or the
  // worker restarted) finds the mark and is finished without a second
  // letter. Best effort: without Redis, or if the worker dies between the
  // confirmation and the mark, the letter is written again (an exact copy);
  // never is an event finished without a confirmed letter.

  static std::string mark_key(const kafka::record& r) {
    uint64_t h = 1469598103934665603ull;
    for (auto* part : {&r.key, &r.value}) {
      for (unsigned char ch : *part) {
        h ^= ch;
        h *= 1099511628211ull;
      }
      h ^= 0xff;
      h *= 1099511628211ull;
    }
    char hex[17];
    std::snprintf(hex, sizeof(hex), "%016llx", static_cast<unsigned long long>(h));
    return "troupe:dead-letter:" + r.topic + ":" + std::to_string(r.partition) + ":"
           + std::to_string(r.offset) + ":" + hex;
  }

  /// One command to the mark store; none (and Redis left alone for a
  /// second) when it is away. Blocks at most 200 ms: this worker is
  /// detached.
  caf::expected<redis::reply> mark_command(const std::vector<std::string>& args) {
    if (cfg.redis.empty())
      return caf::make_error(ec::invalid_argument, std::string{"no Redis"});
    if (!marks) {
      if (clock_type::now() < marks_retry)
        return caf::make_error(ec::io_failure, std::string{"Redis away"});
      auto c = redis::connection::make(cfg.redis, 200ms, "troupe-ingestor");
      if (!c) {
        marks_retry = clock_type::now() + 1s;
        return c.error();
      }
      marks = std::move(*c);
    }
    auto rep = marks->command(args);
    if (!rep || rep->kind == redis::reply::error) {
      marks.reset();
      marks_retry = clock_type::now() + 1s;
      if (!rep)
        return rep.error();
      return caf::make_error(ec::io_failure, rep->text);
    }
    return rep;
  }

  void send_dead_letter(const kafka::record& r, const std::string& reason, uint64_t epoch) {
    dead_pending[{r.topic, r.partition, r.offset}] = pending_dead_letter{r, reason, epoch};
    if (auto rep = mark_command({"EXISTS", mark_key(r)}); rep && rep->number == 1) {
      // Written and confirmed before (by this group): finished.
      ++dead_again;
      self->send(self, dead_letter_done_atom::value, r.topic, r.partition, r.offset,
                 int32_t{dl_confirmed});
      return;
    }
    ++dead;
    produce_dead_letter(r.topic, r.partition, r.offset);
  }

  void produce_dead_letter(const std::string& topic, int32_t part, int64_t off) {
    auto i = dead_pending.find({topic, part, off});
    if (i == dead_pending.end())
      return;
    auto& d = i->second;
    auto json = kafka::dead_letter_json(d.reason, topic, part, off, d.r.key, d.r.value,
                                        d.truncate ? 4096 : kafka::max_dead_letter_bytes);
    auto handle = caf::actor{self};
    auto err = dead_letters->produce(cfg.dead_letter_topic, d.r.key, std::move(json),
                                     [handle, topic, part, off](const caf::error& e) {
                                       caf::anon_send(handle, dead_letter_done_atom::value,
                                                      topic, part, off, status_of(e));
                                     });
    if (err)
      self->send(self, dead_letter_done_atom::value, topic, part, off, status_of(err));
  }

  void launch(const partition_key& k, partition_state& p) {
    auto id = next_batch++;
    auto& b = batches[id];
    b.key = k;
    b.again = k.first == cfg.rescore_topic;
    b.epoch = p.epoch;
    auto n = p.queue.front().offset <= p.single_until ? size_t{1}
                                                      : std::min(cfg.batch, p.queue.size());
    b.oldest = p.queue.front().read_at;
    times.queued.record(clock_type::now() - b.oldest);
    for (size_t i = 0; i < n; ++i) {
      auto& q = p.queue.front();
      b.offsets.push_back(q.offset);
      if (q.tx.trace.valid()) {
        b.ingest.emplace_back(q.tx.trace.span, q.read_ns);
        q.tx.trace.span = trace::new_span_id();
      } else {
        b.ingest.emplace_back(0, 0);
      }
      b.txs.push_back(std::move(q.tx));
      p.queue.pop_front();
    }
    p.in_flight = true;
    run(id);
  }

  /// Whether `err` says something about the batch's input (a worker it
  /// crashed too often, an argument a stage refused) rather than about the
  /// availability of a stage or a store (which a retry outlasts).
  static bool input_caused(const caf::error& err) {
    if (err.category() != ec_category)
      return false; // CAF's own: a request timeout, a dead actor
    switch (static_cast<ec>(err.code())) {
      case ec::poison_message:
      case ec::invalid_argument:
        return true;
      default:
        return false;
    }
  }

  /// A batch failed because of one of its events: its events go down the
  /// pipeline again one by one (the rest wait at the front of the queue, so
  /// order holds), and only the event to blame fails again. Found to blame
  /// three times (tried again after 5 s and 10 s, longer than a group's
  /// restart window, so that crashes that merely hit it do not condemn it),
  /// the event goes to the dead-letter topic with the stage's reason, and
  /// the rest of the partition proceeds.
  void split(uint64_t id, const std::string& stage, const caf::error& err) {
    auto [bp, pp] = live(id);
    if (!bp)
      return;
    auto& b = *bp;
    auto& p = *pp;
    if (b.txs.size() > 1) {
      log(stage + " failed on a batch of " + std::to_string(b.txs.size()) + " (" + render(err)
          + "): trying its events one by one");
      p.single_until = std::max(p.single_until, b.offsets.back());
      for (auto k = b.txs.size(); k-- > 1;) {
        // Back as read: its ingest span starts again with its next batch.
        if (k < b.ingest.size() && b.txs[k].trace.valid())
          b.txs[k].trace.span = b.ingest[k].first;
        p.queue.push_front({b.offsets[k], std::move(b.txs[k]), b.oldest,
                            k < b.ingest.size() ? b.ingest[k].second : int64_t{0}});
      }
      b.txs.resize(1);
      b.ingest.resize(std::min<size_t>(b.ingest.size(), 1));
      b.offsets.resize(1);
      b.attempts = 0;
      run(id);
      return;
    }
    auto& tx = b.txs.front();
    if (++b.strikes < 3) {
      log(stage + " failed on event " + tx.id + " (" + render(err)
          + "): trying it again before it goes to the dead letters");
      self->delayed_send(self, 5s * b.strikes, retry_atom::value, id);
      return;
    }
    kafka::record r{b.key.first, b.key.second, b.offsets.front(), tx.user, to_json(tx), {}};
    auto why = stage + " failed on this event: " + render(err);
    kafka::log_dead_letter(cfg.log, dead_log, name, why, r);
    send_dead_letter(r, why, p.epoch);
    if (cfg.tracer)
      record_ingest(b, "dead letter: " + why);
    p.in_flight = false;
    batches.erase(id);
    launch_ready();
  }

  /// Stage failed: log now and then, try the whole batch again shortly
  /// (every stage is safe to repeat); split it if its input is to blame.
  void stage_failed(uint64_t id, const std::string& stage, const caf::error& err) {
    if (input_caused(err))
      return split(id, stage, err);
    ++retries;
    auto now = clock_type::now();
    if (now - last_stage_log >= 1s) {
      log(stage + " failed (" + render(err) + "), retrying");
      last_stage_log = now;
    }
    // Back off: 200 ms doubling per attempt, at most 5 s.
    auto i = batches.find(id);
    auto attempts = i == batches.end() ? 1 : std::min(i->second.attempts, 5);
    self->delayed_send(self, std::min<caf::timespan>(200ms * (1 << (attempts - 1)), 5s),
                       retry_atom::value, id);
  }

  /// Batch `id` and its partition, or nulls: a batch whose partition moved
  /// away meanwhile is dropped here (its new owner reads the events again).
  std::pair<batch_state*, partition_state*> live(uint64_t id) {
    auto i = batches.find(id);
    if (i == batches.end())
      return {nullptr, nullptr};
    auto pi = parts.find(i->second.key);
    if (pi == parts.end() || pi->second.epoch != i->second.epoch) {
      batches.erase(i);
      return {nullptr, nullptr};
    }
    return {&i->second, &pi->second};
  }

  void run(uint64_t id) {
    auto [bp, pp] = live(id);
    if (!bp)
      return;
    auto& b = *bp;
    ++b.attempts;
    b.stage_start = clock_type::now();
    auto enricher = cfg.router_of ? cfg.router_of("feature-enricher") : caf::actor{};
    if (!enricher)
      return stage_failed(id, "feature-enricher", caf::make_error(ec::group_down));
    self->request(enricher, cfg.stage_timeout, enrich_atom::value, b.txs)
      .then(
        [this, id](std::vector<enriched_transaction>& enriched) {
          lap(id, times.enrich);
          auto detector = cfg.router_of("fraud-detector");
          if (!detector)
            return stage_failed(id, "fraud-detector", caf::make_error(ec::group_down));
          self->request(detector, cfg.stage_timeout, score_atom::value, std::move(enriched))
            .then(
              [this, id](std::vector<scored_transaction>& scores) {
                lap(id, times.score);
                auto alerter = cfg.router_of("alerter");
                if (!alerter)
                  return stage_failed(id, "alerter", caf::make_error(ec::group_down));
                if (cfg.log.enabled(log_level::debug))
                  for (auto& x : scores)
                    cfg.log.debug(name + ": scored " + std::to_string(x.probability) + " by model "
                                    + x.model_version + (x.item.degraded ? " (degraded)" : ""),
                                  x.item.tx.id);
                auto n = scores.size();
                // Degraded scores are final only for now: those
                // transactions are scored again once the feature store is
                // back (a missed alert is raised late, not never).
                std::vector<transaction> again;
                for (auto& x : scores)
                  if (x.item.degraded)
                    again.push_back(x.item.tx);
                auto deg = static_cast<uint64_t>(again.size());
                auto bi = batches.find(id);
                if (bi != batches.end() && bi->second.again && deg > 0)
                  return stage_failed(id, "feature-enricher",
                                      caf::make_error(ec::store_unavailable,
                                                      "still unreachable: the transactions to "
                                                      "score again wait"));
                self->request(alerter, cfg.stage_timeout, alert_atom::value, std::move(scores))
                  .then(
                    [this, id, n, deg, again = std::move(again)](uint64_t fresh) mutable {
                      lap(id, times.alert);
                      scored += n;
                      degraded += deg;
                      alerts += fresh;
                      if (again.empty())
                        finish(id);
                      else
                        send_to_rescore(id, again);
                    },
                    [this, id](caf::error& err) { stage_failed(id, "alerter", err); });
              },
              [this, id](caf::error& err) { stage_failed(id, "fraud-detector", err); });
        },
        [this, id](caf::error& err) { stage_failed(id, "feature-enricher", err); });
  }

  /// Sends batch `id`'s transactions scored with degraded features to the
  /// rescore topic; the batch is finished once Kafka confirmed them all (a
  /// refusal retries the whole batch: every stage is safe to repeat).
  void send_to_rescore(uint64_t id, const std::vector<transaction>& txs) {
    auto i = batches.find(id);
    if (i == batches.end())
      return;
    if (cfg.rescore_topic.empty())
      return finish(id);
    auto& b = i->second;
    b.rescore_waiting = txs.size();
    b.rescore_sent = txs.size();
    b.rescore_failed = false;
    auto handle = caf::actor{self};
    for (auto& tx : txs) {
      auto err = dead_letters->produce(cfg.rescore_topic, tx.user, to_json(tx),
                                       [handle, id](const caf::error& e) {
                                         caf::anon_send(handle, rescore_done_atom::value, id,
                                                        !e);
                                       });
      if (err)
        self->send(self, rescore_done_atom::value, id, false);
    }
  }

  void on_rescore_done(uint64_t id, bool ok) {
    auto i = batches.find(id);
    if (i == batches.end())
      return;
    auto& b = i->second;
    if (!ok)
      b.rescore_failed = true;
    if (b.rescore_waiting == 0 || --b.rescore_waiting > 0)
      return;
    if (b.rescore_failed)
      return stage_failed(id, "rescore", caf::make_error(ec::io_failure,
                                                         "Kafka did not take the transactions "
                                                         "to score again"));
    rescore += b.rescore_sent;
    finish(id);
  }

  /// Records the stage that just ended and starts the next one's clock.
  void lap(uint64_t id, histogram& h) {
    auto i = batches.find(id);
    if (i == batches.end())
      return;
    auto now = clock_type::now();
    h.record(now - i->second.stage_start);
    i->second.stage_start = now;
  }

  void finish(uint64_t id) {
    auto i = batches.find(id);
    if (i == batches.end())
      return;
    times.total.record(clock_type::now() - i->second.oldest);
    if (cfg.tracer)
      record_ingest(i->second);
    auto pi = parts.find(i->second.key);
    if (pi != parts.end() && pi->second.epoch == i->second.epoch) {
      auto& p = pi->second;
      for (auto off : i->second.offsets)
        mark_done(p, off);
      p.in_flight = false;
    }
    batches.erase(i);
    launch_ready();
  }

  /// The batch's ingest spans: from each event's read to its batch's end
  /// (`error`: why its events went to the dead letters instead).
  void record_ingest(const batch_state& b, const std::string& error = {}) {
    std::vector<trace::span> spans;
    spans.reserve(b.txs.size());
    auto end = trace::unix_ns();
    for (size_t k = 0; k < b.txs.size() && k < b.ingest.size(); ++k) {
      auto& tx = b.txs[k];
      if (!tx.trace.valid())
        continue;
      trace::span s;
      s.trace_hi = tx.trace.trace_hi;
      s.trace_lo = tx.trace.trace_lo;
      s.id = tx.trace.span;
      s.parent = b.ingest[k].first;
      s.flags = tx.trace.flags;
      s.where = place;
      s.start_ns = b.ingest[k].second;
      s.end_ns = end;
      s.name = "ingest";
      s.event = tx.id;
      s.error = error;
      spans.push_back(std::move(s));
    }
    if (!spans.empty())
      cfg.tracer->record(std::move(spans));
  }

  /// Gives free batch slots to the partitions with queued events and none
  /// in flight.
  void launch_ready() {
    for (auto& [k, q] : parts)
      if (!q.in_flight && !q.queue.empty() && batches.size() < cfg.max_batches)
        launch(k, q);
  }

  void mark_done(partition_state& p, int64_t offset) {
    auto j = p.open.find(offset);
    if (j != p.open.end())
      j->second = true;
    while (!p.open.empty() && p.open.begin()->second) {
      p.to_commit = p.open.begin()->first + 1;
      p.open.erase(p.open.begin());
      --pending;
    }
  }

  void on_dead_letter_done(const std::string& topic, int32_t part, int64_t off,
                           int32_t status) {
    auto i = dead_pending.find({topic, part, off});
    if (i == dead_pending.end())
      return;
    auto& d = i->second;
    // Marked even when the partition moved meanwhile: its next owner, reading
    // the event again, finds the letter written.
    if (status == dl_confirmed)
      mark_command({"SET", mark_key(d.r), "confirmed", "EX", "604800"});
    auto pi = parts.find({topic, part});
    if (pi == parts.end() || pi->second.epoch != d.epoch) {
      // The partition moved: its next owner reads the event again.
      dead_pending.erase(i);
      return;
    }
    if (status == dl_confirmed) {
      dead_pending.erase(i);
      mark_done(pi->second, off);
      return;
    }
    auto where = topic + "/" + std::to_string(part) + "@" + std::to_string(off);
    if (status == dl_too_large && !d.truncate) {
      d.truncate = true;
      log("dead letter for " + where + " is larger than Kafka takes: writing it truncated");
      produce_dead_letter(topic, part, off);
      return;
    }
    // Never skip an event: its dead letter is sent again, and until Kafka
    // confirms it the event stays unfinished (its offset is not committed).
    auto delay = std::min<caf::timespan>(100ms * (1 << std::min(d.attempts, 6)), 5s);
    ++d.attempts;
    if (d.attempts == 1 || d.attempts % 10 == 0)
      cfg.log.warning(name + ": dead letter for " + where + " not confirmed (attempt "
                      + std::to_string(d.attempts) + "); sending it again in "
                      + to_duration_string(delay));
    self->delayed_send(self, delay, dead_letter_retry_atom::value, topic, part, off);
  }

  void commit() {
    std::vector<kafka::partition_offset> next;
    for (auto& [k, p] : parts)
      if (p.to_commit > p.committed)
        next.push_back({k.first, k.second, p.to_commit});
    if (next.empty())
      return;
    if (auto err = consumer->commit(next)) {
      log("commit failed: " + render(err));
      return;
    }
    for (auto& n : next)
      parts[{n.topic, n.partition}].committed = n.offset;
  }

  /// Pauses only the partitions that are behind: one with more unfinished
  /// events than its share of `max_pending` (at least two batches' worth)
  /// stops being read until it is below half of that; the others go on.
  void flow_control() {
    auto share = std::max(cfg.batch * 2, cfg.max_pending / std::max<size_t>(1, parts.size()));
    std::vector<kafka::partition_offset> to_pause, to_resume;
    for (auto& [k, p] : parts) {
      if (!p.paused && p.open.size() > share)
        to_pause.push_back({k.first, k.second, 0});
      else if (p.paused && p.open.size() < share / 2)
        to_resume.push_back({k.first, k.second, 0});
    }
    if (!to_pause.empty() && !consumer->pause(to_pause))
      for (auto& x : to_pause)
        parts[{x.topic, x.partition}].paused = true;
    if (!to_resume.empty() && !consumer->resume(to_resume))
      for (auto& x : to_resume)
        parts[{x.topic, x.partition}].paused = false;
    paused = std::any_of(parts.begin(), parts.end(), [](auto& kv) { return kv.second.paused; });
  }

  void report() {
    log("read " + std::to_string(read) + ", scored " + std::to_string(scored) + " ("
        + std::to_string(degraded) + " degraded), alerts " + std::to_string(alerts)
        + ", dead letters " + std::to_string(dead)
        + (dead_again ? " (" + std::to_string(dead_again) + " read again, already written)"
                      : std::string{})
        + ", retries " + std::to_string(retries)
        + ", to score again " + std::to_string(rescore)
        + ", pending " + std::to_string(pending) + (paused ? " (some paused)" : "") + ", partitions "
        + std::to_string(parts.size()));
    if (times.total.count() > 0)
      log("batches: " + times.summary());
    times = stage_times{};
  }
};

} // namespace


group_spec make_group(const std::string& name, size_t instances, ingestor_settings cfg) {
  group_spec g;
  g.name = name;
  g.instances = instances;
  g.detached = true;
  g.worker = [cfg, name](caf::event_based_actor* self, size_t index) -> caf::behavior {
    auto st = std::make_shared<worker_state>();
    st->self = self;
    st->cfg = cfg;
    st->name = name + "/" + std::to_string(index);
    if (cfg.tracer)
      st->place = cfg.tracer->place_of(
        name, cfg.instance_of ? cfg.instance_of(name, index) : static_cast<uint32_t>(index));
    self->send(self, poll_atom::value);
    return {
      [st](poll_atom) { st->on_poll(); },
      [st](retry_atom, uint64_t id) { st->run(id); },
      [st](rescore_done_atom, uint64_t id, bool ok) { st->on_rescore_done(id, ok); },
      [st](dead_letter_done_atom, std::string& topic, int32_t part, int64_t off,
           int32_t status) { st->on_dead_letter_done(topic, part, off, status); },
      [st](dead_letter_retry_atom, std::string& topic, int32_t part, int64_t off) {
        st->produce_dead_letter(topic, part, off);
      },
    };
  };
  return g;
}

} // namespace troupe::ingest
