#include "runtime/kafka/client.hpp"

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <cstring>
#include <mutex>
#include <thread>

#include <librdkafka/rdkafka.h>

#include "runtime/core/duration.hpp"
#include "runtime/core/error.hpp"
#include "runtime/core/registry.hpp"

namespace troupe::kafka {

namespace {

constexpr const char* lag_name = "troupe_kafka_consumer_lag";

registry::labels lag_labels(const std::string& group, const std::string& topic,
                            int32_t partition) {
  return {{"consumer_group", group}, {"topic", topic}, {"partition", std::to_string(partition)}};
}

caf::error kafka_error(const std::string& what, rd_kafka_resp_err_t err) {
  // A record too large fails the same way however often it is sent again.
  auto code = err == RD_KAFKA_RESP_ERR_MSG_SIZE_TOO_LARGE
                  || err == RD_KAFKA_RESP_ERR_RECORD_LIST_TOO_LARGE
                ? ec::too_large
                : ec::io_failure;
  return caf::make_error(code, what + ": " + rd_kafka_err2str(err));
}

int to_ms(caf::timespan t) {
  return static_cast<int>(std::chrono::duration_cast<std::chrono::milliseconds>(t).count());
}

int64_t steady_ms() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
           std::chrono::steady_clock::now().time_since_epoch())
    .count();
}

/// A configuration from `conf`, or the first setting librdkafka refused.
/// The process's sink for librdkafka's own lines (`set_client_log`).
struct client_log {
  std::mutex mtx;
  log_fn log;

  static client_log& instance() {
    static client_log x;
    return x;
  }

  log_fn get() {
    std::lock_guard<std::mutex> guard{mtx};
    return log;
  }
};

/// librdkafka's syslog levels (0 emergency ... 7 debug) as Troupe's.
log_level level_of(int syslog_level) {
  if (syslog_level <= 3)
    return log_level::error;
  if (syslog_level == 4)
    return log_level::warning;
  return syslog_level <= 6 ? log_level::info : log_level::debug;
}

void on_client_log(const rd_kafka_t* rk, int level, const char* fac, const char* buf) {
  auto line = std::string{"kafka "} + rd_kafka_name(rk) + ": " + fac + ": " + buf;
  if (auto log = client_log::instance().get())
    log.write(level_of(level), line);
  else
    std::fprintf(stderr, "%s\n", line.c_str());
}

void on_client_error(rd_kafka_t* rk, int err, const char* reason, void*) {
  auto code = static_cast<rd_kafka_resp_err_t>(err);
  registry::instance()
    .counter("troupe_kafka_client_errors_total",
             "Errors a Kafka client of this node reported (brokers down, transport "
             "failures, ...), by librdkafka's error name.",
             {{"error", rd_kafka_err2name(code)}})
    .fetch_add(1, std::memory_order_relaxed);
  auto line = std::string{"kafka "} + rd_kafka_name(rk) + ": error " + rd_kafka_err2name(code)
              + ": " + reason;
  if (auto log = client_log::instance().get())
    log.warning(line);
  else
    std::fprintf(stderr, "%s\n", line.c_str());
}

caf::expected<rd_kafka_conf_t*> make_conf(const settings& conf) {
  auto c = rd_kafka_conf_new();
  rd_kafka_conf_set_log_cb(c, on_client_log);
  rd_kafka_conf_set_error_cb(c, on_client_error);
  char err[512];
  for (auto& [k, v] : conf)
    if (rd_kafka_conf_set(c, k.c_str(), v.c_str(), err, sizeof(err)) != RD_KAFKA_CONF_OK) {
      rd_kafka_conf_destroy(c);
      return caf::make_error(ec::invalid_argument, "kafka setting " + k + ": " + err);
    }
  return c;
}

/// A librdkafka partition list of `xs` (with their offsets).
rd_kafka_topic_partition_list_t* to_list(const std::vector<partition_offset>& xs) {
  auto list = rd_kafka_topic_partition_list_new(static_cast<int>(xs.size()));
  for (auto& x : xs)
    rd_kafka_topic_partition_list_add(list, x.topic.c_str(), x.partition)->offset = x.offset;
  return list;
}

std::vector<partition_offset> from_list(const rd_kafka_topic_partition_list_t* list) {
  std::vector<partition_offset> xs;
  for (int i = 0; i < list->cnt; ++i)
    xs.push_back({list->elems[i].topic, list->elems[i].partition, list->elems[i].offset});
  return xs;
}

} // namespace

void set_client_log(log_fn log) {
  auto& sink = client_log::instance();
  std::lock_guard<std::mutex> guard{sink.mtx};
  sink.log = std::move(log);
}

namespace {

std::atomic<int64_t> fetch_wait_ms{1};

} // namespace

void set_fetch_wait(std::chrono::milliseconds wait) {
  fetch_wait_ms.store(std::max<int64_t>(wait.count(), 1));
}

settings defaults(const std::string& bootstrap) {
  return {{"bootstrap.servers", bootstrap},
          {"linger.ms", "1"},
          {"fetch.wait.max.ms", std::to_string(fetch_wait_ms.load())},
          // A lost member's partitions move after this long (librdkafka's
          // default is 45 s).
          {"session.timeout.ms", "6000"},
          {"heartbeat.interval.ms", "500"},
          {"log_level", "3"}};
}

// -- producer ------------------------------------------------------------------------

void producer::on_delivery(rd_kafka_s*, const void* raw, void* opaque) {
  auto msg = static_cast<const rd_kafka_message_t*>(raw);
  auto self = static_cast<producer*>(opaque);
  delivery d;
  d.partition = msg->partition;
  d.offset = msg->offset;
  if (msg->err) {
    ++self->failed_;
    d.error = kafka_error("delivery failed", msg->err);
    d.possibly_persisted = rd_kafka_message_status(msg) != RD_KAFKA_MSG_STATUS_NOT_PERSISTED;
  } else {
    ++self->delivered_;
  }
  if (auto report = static_cast<report_fn*>(msg->_private)) {
    (*report)(d);
    delete report;
  }
}

caf::expected<std::unique_ptr<producer>> producer::make(const settings& conf) {
  auto c = make_conf(conf);
  if (!c)
    return c.error();
  std::unique_ptr<producer> p{new producer};
  rd_kafka_conf_set_dr_msg_cb(*c, [](rd_kafka_t* rk, const rd_kafka_message_t* m, void* o) {
    on_delivery(rk, m, o);
  });
  rd_kafka_conf_set_opaque(*c, p.get());
  char err[512];
  p->rk_ = rd_kafka_new(RD_KAFKA_PRODUCER, *c, err, sizeof(err));
  if (!p->rk_) {
    rd_kafka_conf_destroy(*c);
    return caf::make_error(ec::invalid_argument, std::string{"cannot create a producer: "} + err);
  }
  auto raw = p.get();
  p->poller_ = std::thread{[raw] {
    while (!raw->stop_)
      rd_kafka_poll(raw->rk_, 50);
  }};
  return p;
}

producer::~producer() {
  rd_kafka_flush(rk_, 5000);
  stop_ = true;
  poller_.join();
  rd_kafka_poll(rk_, 0);
  rd_kafka_destroy(rk_);
}

caf::error producer::produce(const std::string& topic, const std::string& key,
                             const std::string& value, done_fn done) {
  report_fn report;
  if (done)
    report = [done = std::move(done)](const delivery& d) { done(d.error); };
  return produce_to(topic, RD_KAFKA_PARTITION_UA, key, value, std::move(report));
}

caf::error producer::produce_to(const std::string& topic, int32_t partition,
                                const std::string& key, const std::string& value,
                                report_fn report) {
  auto opaque = report ? new report_fn(std::move(report)) : nullptr;
  auto err = rd_kafka_producev(
    rk_, RD_KAFKA_V_TOPIC(topic.c_str()), RD_KAFKA_V_PARTITION(partition),
    RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
    RD_KAFKA_V_KEY(key.data(), key.size()),
    RD_KAFKA_V_VALUE(const_cast<char*>(value.data()), value.size()),
    RD_KAFKA_V_OPAQUE(opaque), RD_KAFKA_V_END);
  if (err) {
    delete opaque;
    return kafka_error("cannot produce to " + topic, err);
  }
  return caf::none;
}

caf::expected<int32_t> producer::partitions(const std::string& topic, caf::timespan timeout) {
  auto rkt = rd_kafka_topic_new(rk_, topic.c_str(), nullptr);
  const rd_kafka_metadata_t* md = nullptr;
  auto rc = rd_kafka_metadata(rk_, 0, rkt, &md, to_ms(timeout));
  rd_kafka_topic_destroy(rkt);
  if (rc)
    return kafka_error("metadata of " + topic, rc);
  int32_t n = 0;
  auto topic_err = RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART;
  for (int i = 0; i < md->topic_cnt; ++i)
    if (topic == md->topics[i].topic) {
      n = md->topics[i].partition_cnt;
      topic_err = md->topics[i].err;
    }
  rd_kafka_metadata_destroy(md);
  if (n <= 0)
    return kafka_error("metadata of " + topic, topic_err);
  return n;
}

caf::expected<int64_t> producer::end_offset(const std::string& topic, int32_t partition,
                                            caf::timespan timeout) {
  int64_t low = 0, high = 0;
  auto rc = rd_kafka_query_watermark_offsets(rk_, topic.c_str(), partition, &low, &high,
                                             to_ms(timeout));
  if (rc)
    return kafka_error("end of " + topic + "/" + std::to_string(partition), rc);
  return high;
}

caf::error producer::flush(caf::timespan timeout) {
  auto err = rd_kafka_flush(rk_, to_ms(timeout));
  if (err)
    return kafka_error("flush", err);
  return caf::none;
}

// -- consumer ------------------------------------------------------------------------

/// The consumer a client's rebalance callback acts for (null while the
/// client closes in the background).
struct rebalance_target {
  consumer* self;
};

namespace {

/// Closes consumers in the background, each on a thread of its own (a close
/// that waits for an unreachable coordinator holds up no other). At process
/// exit it waits for the closes under way, for at most 10 s, so members
/// leave their groups.
class closer {
public:
  static closer& instance() {
    static closer x;
    return x;
  }

  void close(rd_kafka_t* rk, rebalance_target* target) {
    {
      std::lock_guard<std::mutex> guard{mtx_};
      ++running_;
    }
    std::thread{[this, rk, target] {
      rd_kafka_consumer_close(rk);
      rd_kafka_destroy(rk);
      delete target;
      std::lock_guard<std::mutex> guard{mtx_};
      --running_;
      cv_.notify_all();
    }}.detach();
  }

  ~closer() {
    std::unique_lock<std::mutex> lock{mtx_};
    cv_.wait_for(lock, std::chrono::seconds(10), [this] { return running_ == 0; });
  }

private:
  std::mutex mtx_;
  std::condition_variable cv_;
  size_t running_ = 0;
};

} // namespace

void consumer::on_rebalance(rd_kafka_s* rk, int err_code, rd_kafka_topic_partition_list_s* parts,
                            void* opaque) {
  auto self = static_cast<rebalance_target*>(opaque)->self;
  auto err = static_cast<rd_kafka_resp_err_t>(err_code);
  // NULL while the member is not in a group (a rebalance served by
  // rd_kafka_consumer_close, after it left): then it is not cooperative.
  auto protocol = rd_kafka_rebalance_protocol(rk);
  auto cooperative = protocol != nullptr && std::strcmp(protocol, "COOPERATIVE") == 0;
  if (self == nullptr) {
    // Closing in the background: give the partitions back, nothing more.
    if (err == RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS)
      rd_kafka_assign(rk, nullptr);
    else if (cooperative)
      rd_kafka_error_destroy(rd_kafka_incremental_unassign(rk, parts));
    else
      rd_kafka_assign(rk, nullptr);
    return;
  }
  auto xs = from_list(parts);
  self->rebalanced_ = true;
  self->watch_read_ms_ = steady_ms();
  if (err == RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS) {
    if (cooperative)
      rd_kafka_error_destroy(rd_kafka_incremental_assign(rk, parts));
    else
      rd_kafka_assign(rk, parts);
    // librdkafka keeps a partition's pause across a revocation and a new
    // assignment of it to this member: a partition paused by flow control
    // when it was revoked would never be fetched again (its lag stays, its
    // alerts are never raised). Assigned means unpaused.
    rd_kafka_resume_partitions(rk, parts);
    for (auto& x : xs) {
      self->assigned_.push_back(x);
      self->paused_.erase({x.topic, x.partition}); // assigned unpaused
    }
  } else {
    rd_kafka_resume_partitions(rk, parts);
    if (cooperative)
      rd_kafka_error_destroy(rd_kafka_incremental_unassign(rk, parts));
    else
      rd_kafka_assign(rk, nullptr);
    for (auto& x : xs) {
      self->revoked_.push_back(x);
      registry::instance().erase_gauge(lag_name, lag_labels(self->group_, x.topic, x.partition),
                                       self);
      self->committed_.erase({x.topic, x.partition});
      self->starts_.erase({x.topic, x.partition});
      self->paused_.erase({x.topic, x.partition});
      self->assigned_.erase(std::remove_if(self->assigned_.begin(), self->assigned_.end(),
                                           [&](const partition_offset& a) {
                                             return a.topic == x.topic
                                                    && a.partition == x.partition;
                                           }),
                            self->assigned_.end());
    }
  }
}

caf::expected<std::unique_ptr<consumer>>
consumer::make(const settings& conf, const std::string& group,
               const std::vector<std::string>& topics) {
  auto all = conf;
  all["group.id"] = group;
  all["enable.auto.commit"] = "false";
  all.emplace("auto.offset.reset", "earliest");
  auto c = make_conf(all);
  if (!c)
    return c.error();
  std::unique_ptr<consumer> k{new consumer};
  k->group_ = group;
  k->topics_ = topics;
  rd_kafka_conf_set_rebalance_cb(
    *c, [](rd_kafka_t* rk, rd_kafka_resp_err_t err, rd_kafka_topic_partition_list_t* parts,
           void* opaque) { on_rebalance(rk, err, parts, opaque); });
  k->target_ = new rebalance_target{k.get()};
  rd_kafka_conf_set_opaque(*c, k->target_);
  char err[512];
  k->rk_ = rd_kafka_new(RD_KAFKA_CONSUMER, *c, err, sizeof(err));
  if (!k->rk_) {
    rd_kafka_conf_destroy(*c);
    return caf::make_error(ec::invalid_argument, std::string{"cannot create a consumer: "} + err);
  }
  rd_kafka_poll_set_consumer(k->rk_);
  auto list = rd_kafka_topic_partition_list_new(static_cast<int>(topics.size()));
  for (auto& t : topics)
    rd_kafka_topic_partition_list_add(list, t.c_str(), RD_KAFKA_PARTITION_UA);
  auto sub = rd_kafka_subscribe(k->rk_, list);
  rd_kafka_topic_partition_list_destroy(list);
  if (sub)
    return kafka_error("cannot subscribe", sub);
  return k;
}

consumer::~consumer() {
  registry::instance().erase_gauges(this);
  if (rk_ == nullptr) {
    delete target_;
    return;
  }
  target_->self = nullptr;
  closer::instance().close(rk_, target_);
}

std::vector<record> consumer::poll(size_t max, caf::timespan timeout) {
  std::vector<record> out;
  auto wait = to_ms(timeout);
  rebalanced_at_ = std::string::npos;
  auto started = steady_ms();
  if (started - watch_poll_ms_ > 1000)
    watch_read_ms_ = started; // the owner was not reading meanwhile
  watch_poll_ms_ = started;
  while (out.size() < max) {
    rebalanced_ = false;
    auto m = rd_kafka_consumer_poll(rk_, out.empty() ? wait : 0);
    if (rebalanced_ && rebalanced_at_ == std::string::npos)
      rebalanced_at_ = out.size();
    if (!m)
      break;
    if (m->err) {
      if (m->err != RD_KAFKA_RESP_ERR__PARTITION_EOF) {
        registry::instance()
          .counter("troupe_kafka_consumer_errors_total",
                   "Errors a consumer group member met while reading (the broker down, a "
                   "partition lost, ...), by librdkafka's error name.",
                   {{"consumer_group", group_}, {"error", rd_kafka_err2name(m->err)}})
          .fetch_add(1, std::memory_order_relaxed);
        if (errors_.size() < 100)
          // Where it happened, when the error concerns a partition.
          errors_.push_back((m->rkt ? std::string{rd_kafka_topic_name(m->rkt)} + "/"
                                        + std::to_string(m->partition) + ": "
                                  : std::string{})
                            + rd_kafka_message_errstr(m));
      }
    } else {
      record r;
      r.topic = rd_kafka_topic_name(m->rkt);
      r.partition = m->partition;
      r.offset = m->offset;
      if (m->key)
        r.key.assign(static_cast<const char*>(m->key), m->key_len);
      if (m->payload)
        r.value.assign(static_cast<const char*>(m->payload), m->len);
      // W3C Trace Context: the record's trace, when its producer had one.
      rd_kafka_headers_t* headers = nullptr;
      if (rd_kafka_message_headers(m, &headers) == RD_KAFKA_RESP_ERR_NO_ERROR && headers) {
        const void* v = nullptr;
        size_t n = 0;
        if (rd_kafka_header_get_last(headers, "traceparent", &v, &n) == RD_KAFKA_RESP_ERR_NO_ERROR
            && v && n <= 256)
          r.traceparent.assign(static_cast<const char*>(v), n);
      }
      auto& counter = read_counters_[r.topic];
      if (!counter)
        counter = &registry::instance().counter("troupe_kafka_consumer_records_total",
                                                "Records a consumer group member read.",
                                                {{"consumer_group", group_}, {"topic", r.topic}});
      counter->fetch_add(1, std::memory_order_relaxed);
      out.push_back(std::move(r));
    }
    rd_kafka_message_destroy(m);
    if (rebalanced_at_ != std::string::npos)
      break; // the rest in the next poll, after the owner caught up
  }
  if (!out.empty())
    watch_read_ms_ = steady_ms();
  auto now = unix_ms();
  if (now - lag_published_ms_ >= 250) {
    lag_published_ms_ = now;
    publish_lag();
  }
  return out;
}

std::vector<partition_offset> consumer::lag() {
  std::vector<partition_offset> result;
  if (assigned_.empty())
    return result;
  auto list = to_list(assigned_);
  rd_kafka_position(rk_, list);
  auto positions = from_list(list);
  rd_kafka_topic_partition_list_destroy(list);
  for (auto& p : positions) {
    int64_t low = RD_KAFKA_OFFSET_INVALID;
    int64_t high = RD_KAFKA_OFFSET_INVALID;
    if (rd_kafka_get_watermark_offsets(rk_, p.topic.c_str(), p.partition, &low, &high)
          != RD_KAFKA_RESP_ERR_NO_ERROR
        || high < 0)
      continue;
    auto i = committed_.find({p.topic, p.partition});
    auto from = i != committed_.end() ? i->second : p.offset;
    if (from < 0) {
      auto s = starts_.find({p.topic, p.partition});
      if (s == starts_.end())
        continue; // not known yet
      from = s->second;
    }
    result.push_back({p.topic, p.partition, std::max<int64_t>(0, high - from)});
  }
  return result;
}

namespace {

/// Per consumer group, how many wedges were found by members that held no
/// partitions, since one of its members last held some.
std::mutex empty_wedges_mtx;
std::map<std::string, int> empty_wedges;

void count_wedged(const std::string& group) {
  registry::instance()
    .counter("troupe_kafka_consumer_wedged_total",
             "Consumer group members found wedged (holding partitions with unread records "
             "and reading nothing, or holding none while nobody reads a partition) and "
             "restarted with a fresh consumer.",
             {{"consumer_group", group}})
    .fetch_add(1, std::memory_order_relaxed);
}

} // namespace

std::string consumer::stalled(caf::timespan after_span, bool paused) {
  auto now = steady_ms();
  auto after = to_ms(after_span);
  if (paused) {
    watch_read_ms_ = now;
    return {};
  }
  if (!assigned_.empty()) {
    watch_empty_ms_ = -1;
    watch_still_.clear();
    {
      std::lock_guard<std::mutex> guard{empty_wedges_mtx};
      empty_wedges.erase(group_);
    }
    if (now - watch_read_ms_ < after)
      return {};
    // Paused partitions are not expected to be read.
    std::vector<partition_offset> active;
    for (auto& a : assigned_)
      if (paused_.count({a.topic, a.partition}) == 0)
        active.push_back(a);
    if (active.empty()) {
      watch_read_ms_ = now;
      return {};
    }
    auto list = to_list(active);
    rd_kafka_position(rk_, list);
    auto positions = from_list(list);
    rd_kafka_topic_partition_list_destroy(list);
    int64_t unread = 0;
    for (auto& p : positions) {
      int64_t low = -1, high = -1;
      if (rd_kafka_get_watermark_offsets(rk_, p.topic.c_str(), p.partition, &low, &high) == 0
          && high >= 0 && p.offset >= 0 && high > p.offset)
        unread += high - p.offset;
    }
    if (unread == 0) {
      watch_read_ms_ = now;
      return {};
    }
    count_wedged(group_);
    return "holds " + std::to_string(active.size()) + " partitions with " + std::to_string(unread)
           + " unread records and read nothing for "
           + std::to_string((now - watch_read_ms_) / 1000) + " s";
  }
  if (watch_empty_ms_ < 0)
    watch_empty_ms_ = now;
  int wedges = 0;
  {
    std::lock_guard<std::mutex> guard{empty_wedges_mtx};
    wedges = std::min(empty_wedges[group_], 4);
  }
  auto needed = after << wedges;
  if (now - watch_empty_ms_ < needed || now < watch_next_check_ms_)
    return {};
  watch_next_check_ms_ = now + after / 2;
  // The group's committed offsets and the ends of every partition.
  std::vector<partition_offset> all;
  for (auto& t : topics_) {
    auto rkt = rd_kafka_topic_new(rk_, t.c_str(), nullptr);
    const rd_kafka_metadata_t* md = nullptr;
    auto rc = rd_kafka_metadata(rk_, 0, rkt, &md, 2000);
    rd_kafka_topic_destroy(rkt);
    if (rc)
      return {};
    for (int i = 0; i < md->topic_cnt; ++i)
      if (t == md->topics[i].topic)
        for (int p = 0; p < md->topics[i].partition_cnt; ++p)
          all.push_back({t, md->topics[i].partitions[p].id, RD_KAFKA_OFFSET_INVALID});
    rd_kafka_metadata_destroy(md);
  }
  if (all.empty())
    return {};
  auto list = to_list(all);
  auto rc = rd_kafka_committed(rk_, list, 2000);
  auto committed = from_list(list);
  rd_kafka_topic_partition_list_destroy(list);
  if (rc)
    return {};
  size_t stuck = 0;
  std::map<std::pair<std::string, int32_t>, std::pair<int64_t, int64_t>> still;
  for (auto& c : committed) {
    int64_t low = -1, high = -1;
    if (rd_kafka_query_watermark_offsets(rk_, c.topic.c_str(), c.partition, &low, &high, 2000))
      return {};
    auto at = c.offset >= 0 ? c.offset : low;
    if (at >= high)
      continue; // nothing unread
    auto key = std::make_pair(c.topic, c.partition);
    auto i = watch_still_.find(key);
    if (i != watch_still_.end() && i->second.first == at) {
      still[key] = i->second;
      if (now - i->second.second >= needed)
        ++stuck;
    } else {
      still[key] = {at, now};
    }
  }
  watch_still_ = std::move(still);
  if (stuck == 0)
    return {};
  {
    std::lock_guard<std::mutex> guard{empty_wedges_mtx};
    ++empty_wedges[group_];
  }
  count_wedged(group_);
  return "held no partitions for " + std::to_string((now - watch_empty_ms_) / 1000) + " s while "
         + std::to_string(stuck) + " partitions of its topics had unread records and no progress";
}

void consumer::learn_starts() {
  auto now = unix_ms();
  if (now < next_start_query_ms_)
    return;
  std::vector<partition_offset> unknown;
  for (auto& a : assigned_)
    if (!committed_.count({a.topic, a.partition}) && !starts_.count({a.topic, a.partition}))
      unknown.push_back({a.topic, a.partition, RD_KAFKA_OFFSET_INVALID});
  if (unknown.empty())
    return;
  auto list = to_list(unknown);
  auto err = rd_kafka_committed(rk_, list, 200);
  auto known = from_list(list);
  rd_kafka_topic_partition_list_destroy(list);
  // At most once a second while a start is unknown; 5 s after a failure.
  next_start_query_ms_ = now + (err ? 5000 : 1000);
  if (err)
    return;
  for (auto& k : known) {
    if (k.offset >= 0) {
      starts_[{k.topic, k.partition}] = k.offset;
      continue;
    }
    // Nothing committed: the member starts at the partition's start
    // (auto.offset.reset=earliest), once a fetch told where that is.
    int64_t low = RD_KAFKA_OFFSET_INVALID;
    int64_t high = RD_KAFKA_OFFSET_INVALID;
    if (rd_kafka_get_watermark_offsets(rk_, k.topic.c_str(), k.partition, &low, &high)
          == RD_KAFKA_RESP_ERR_NO_ERROR
        && low >= 0)
      starts_[{k.topic, k.partition}] = low;
  }
}

void consumer::publish_lag() {
  learn_starts();
  for (auto& x : lag())
    registry::instance().set_gauge(
      lag_name,
      "Records of a partition this consumer has not yet committed (high watermark minus the "
      "member's last commit; before one, its read position or where it starts).",
      lag_labels(group_, x.topic, x.partition), static_cast<double>(x.offset), this);
}

caf::error consumer::commit(const std::vector<partition_offset>& next) {
  if (next.empty())
    return caf::none;
  auto list = to_list(next);
  auto err = rd_kafka_commit(rk_, list, 0);
  rd_kafka_topic_partition_list_destroy(list);
  if (err)
    return kafka_error("commit", err);
  for (auto& n : next)
    committed_[{n.topic, n.partition}] = n.offset;
  return caf::none;
}

caf::expected<std::vector<partition_offset>>
consumer::committed(const std::vector<partition_offset>& of, caf::timespan timeout) {
  auto list = to_list(of);
  auto err = rd_kafka_committed(rk_, list, to_ms(timeout));
  auto result = from_list(list);
  rd_kafka_topic_partition_list_destroy(list);
  if (err)
    return kafka_error("committed", err);
  return result;
}

caf::error consumer::pause(const std::vector<partition_offset>& partitions) {
  auto list = to_list(partitions);
  auto err = rd_kafka_pause_partitions(rk_, list);
  rd_kafka_topic_partition_list_destroy(list);
  if (err)
    return kafka_error("pause", err);
  for (auto& x : partitions)
    paused_.insert({x.topic, x.partition});
  return caf::none;
}

caf::error consumer::resume(const std::vector<partition_offset>& partitions) {
  auto list = to_list(partitions);
  auto err = rd_kafka_resume_partitions(rk_, list);
  rd_kafka_topic_partition_list_destroy(list);
  if (err)
    return kafka_error("resume", err);
  for (auto& x : partitions)
    paused_.erase({x.topic, x.partition});
  // Reading picks up again now: the stall watch's clock starts here.
  watch_read_ms_ = steady_ms();
  return caf::none;
}

std::vector<partition_offset> consumer::take_revoked() {
  return std::exchange(revoked_, {});
}

std::string consumer::error_summary() {
  auto errors = take_errors();
  if (errors.empty())
    return {};
  return "Kafka consume error" + std::string{errors.size() > 1 ? "s" : ""} + ": " + errors.front()
         + (errors.size() > 1 ? " (and " + std::to_string(errors.size() - 1) + " more)" : "");
}

std::vector<std::string> consumer::take_errors() {
  return std::exchange(errors_, {});
}

namespace {

/// A consumer handle that joins no group (it only assigns partitions or
/// asks offsets); the caller destroys it.
caf::expected<rd_kafka_t*> make_consumer_client(const settings& conf) {
  auto c = make_conf(conf);
  if (!c)
    return c.error();
  char err[512];
  auto rk = rd_kafka_new(RD_KAFKA_CONSUMER, *c, err, sizeof(err));
  if (!rk) {
    rd_kafka_conf_destroy(*c);
    return caf::make_error(ec::invalid_argument, std::string{"cannot create a client: "} + err);
  }
  return rk;
}

/// A consumer for reading ranges it assigns itself: no commits, the end of
/// each partition reported, committed records only. `group` names it in
/// the brokers' logs; it never joins that group.
caf::expected<rd_kafka_t*> make_scan_client(const settings& conf, const std::string& group) {
  auto all = conf;
  all["group.id"] = group;
  all["enable.auto.commit"] = "false";
  all["enable.auto.offset.store"] = "false";
  all["enable.partition.eof"] = "true";
  all["isolation.level"] = "read_committed";
  return make_consumer_client(all);
}

} // namespace

caf::expected<std::set<std::string>> find_keys(const settings& conf, const std::string& topic,
                                               int32_t partition, int64_t from,
                                               const std::set<std::string>& keys,
                                               caf::timespan timeout) {
  auto client = make_scan_client(conf, "troupe.read-back");
  if (!client)
    return client.error();
  auto rk = *client;
  std::set<std::string> found;
  auto done = [&](caf::error e) -> caf::expected<std::set<std::string>> {
    rd_kafka_destroy(rk);
    if (e)
      return e;
    return std::move(found);
  };
  auto where = topic + "/" + std::to_string(partition);
  auto until = std::chrono::steady_clock::now() + timeout;
  int64_t low = 0, high = 0;
  auto rc = rd_kafka_query_watermark_offsets(rk, topic.c_str(), partition, &low, &high,
                                             to_ms(timeout));
  if (rc)
    return done(kafka_error("end of " + where, rc));
  from = std::max(from, low);
  if (from >= high || keys.empty())
    return done({});
  auto list = to_list({{topic, partition, from}});
  rc = rd_kafka_assign(rk, list);
  rd_kafka_topic_partition_list_destroy(list);
  if (rc)
    return done(kafka_error("cannot read " + where, rc));
  while (std::chrono::steady_clock::now() < until) {
    auto m = rd_kafka_consumer_poll(rk, 100);
    if (!m)
      continue;
    auto end = false;
    if (!m->err) {
      std::string key{m->key ? static_cast<const char*>(m->key) : "", m->key_len};
      if (keys.count(key) > 0)
        found.insert(std::move(key));
      end = m->offset + 1 >= high;
    } else if (m->err == RD_KAFKA_RESP_ERR__PARTITION_EOF) {
      end = m->offset >= high;
    }
    rd_kafka_message_destroy(m);
    if (end)
      return done({});
  }
  return done(caf::make_error(ec::io_failure, "reading " + where + " took too long"));
}

caf::error read_since(const settings& conf, const std::string& topic, int64_t since_ms,
                      const std::function<void(const record&)>& each, caf::timespan timeout) {
  auto client = make_scan_client(conf, "troupe.scan");
  if (!client)
    return client.error();
  auto rk = *client;
  auto done = [&](caf::error e) {
    rd_kafka_destroy(rk);
    return e;
  };
  auto ms = to_ms(timeout);
  auto until = std::chrono::steady_clock::now() + timeout;
  auto rkt = rd_kafka_topic_new(rk, topic.c_str(), nullptr);
  const rd_kafka_metadata_t* md = nullptr;
  auto rc = rd_kafka_metadata(rk, 0, rkt, &md, ms);
  rd_kafka_topic_destroy(rkt);
  if (rc)
    return done(kafka_error("metadata of " + topic, rc));
  int32_t n = 0;
  for (int i = 0; i < md->topic_cnt; ++i)
    if (topic == md->topics[i].topic)
      n = md->topics[i].partition_cnt;
  rd_kafka_metadata_destroy(md);
  if (n <= 0)
    return done(caf::make_error(ec::io_failure, "no partitions of " + topic));
  // Where each partition starts, by time; the partition's start where the
  // cluster does not answer (the records' timestamps filter then).
  std::vector<partition_offset> from;
  std::map<int32_t, int64_t> high;
  for (int32_t p = 0; p < n; ++p) {
    int64_t lo = 0, hi = 0;
    rc = rd_kafka_query_watermark_offsets(rk, topic.c_str(), p, &lo, &hi, ms);
    if (rc)
      return done(kafka_error("end of " + topic + "/" + std::to_string(p), rc));
    if (lo < hi) {
      from.push_back({topic, p, lo});
      high[p] = hi;
    }
  }
  if (from.empty())
    return done({});
  auto times = to_list(from);
  for (int i = 0; i < times->cnt; ++i)
    times->elems[i].offset = since_ms;
  if (rd_kafka_offsets_for_times(rk, times, ms) == RD_KAFKA_RESP_ERR_NO_ERROR)
    for (int i = 0; i < times->cnt; ++i)
      if (!times->elems[i].err && times->elems[i].offset >= 0)
        for (auto& f : from)
          if (f.partition == times->elems[i].partition)
            f.offset = std::max(f.offset, times->elems[i].offset);
  rd_kafka_topic_partition_list_destroy(times);
  for (auto i = from.begin(); i != from.end();)
    if (i->offset >= high[i->partition]) {
      high.erase(i->partition);
      i = from.erase(i);
    } else {
      ++i;
    }
  if (from.empty())
    return done({});
  auto list = to_list(from);
  rc = rd_kafka_assign(rk, list);
  rd_kafka_topic_partition_list_destroy(list);
  if (rc)
    return done(kafka_error("cannot read " + topic, rc));
  while (!high.empty()) {
    if (std::chrono::steady_clock::now() >= until)
      return done(caf::make_error(ec::io_failure, "reading " + topic + " took too long"));
    auto m = rd_kafka_consumer_poll(rk, 100);
    if (!m)
      continue;
    int32_t p = m->partition;
    int64_t next = -1;
    if (!m->err) {
      rd_kafka_timestamp_type_t type;
      auto ts = rd_kafka_message_timestamp(m, &type);
      if (ts < 0 || ts >= since_ms) {
        record r;
        r.topic = topic;
        r.partition = p;
        r.offset = m->offset;
        r.key.assign(m->key ? static_cast<const char*>(m->key) : "", m->key_len);
        r.value.assign(m->payload ? static_cast<const char*>(m->payload) : "", m->len);
        each(r);
      }
      next = m->offset + 1;
    } else if (m->err == RD_KAFKA_RESP_ERR__PARTITION_EOF) {
      next = m->offset;
    }
    rd_kafka_message_destroy(m);
    if (auto h = high.find(p); h != high.end() && next >= h->second)
      high.erase(h);
  }
  return done({});
}

caf::expected<std::vector<std::pair<int64_t, int64_t>>>
group_progress(const settings& conf, const std::string& group, const std::string& topic,
               int partitions, caf::timespan timeout) {
  auto reader = progress_reader::make(conf, group, topic, partitions);
  if (!reader)
    return reader.error();
  return (*reader)->read(timeout);
}

caf::expected<std::unique_ptr<progress_reader>>
progress_reader::make(const settings& conf, const std::string& group, const std::string& topic,
                      int partitions) {
  auto all = conf;
  all["group.id"] = group;
  auto client = make_consumer_client(all);
  if (!client)
    return client.error();
  return std::unique_ptr<progress_reader>{new progress_reader(*client, topic, partitions)};
}

progress_reader::~progress_reader() {
  rd_kafka_destroy(rk_);
}

caf::expected<std::vector<std::pair<int64_t, int64_t>>>
progress_reader::read(caf::timespan timeout) {
  std::vector<partition_offset> parts;
  for (int p = 0; p < partitions_; ++p)
    parts.push_back({topic_, p, RD_KAFKA_OFFSET_INVALID});
  auto committed = to_list(parts);
  auto rc = rd_kafka_committed(rk_, committed, to_ms(timeout));
  std::vector<std::pair<int64_t, int64_t>> result;
  if (!rc) {
    // Every partition's end in one ListOffsets request: the "timestamp"
    // RD_KAFKA_OFFSET_END (-1) asks for the latest offset, as a watermark
    // query does one partition at a time.
    for (auto& x : parts)
      x.offset = RD_KAFKA_OFFSET_END;
    auto ends = to_list(parts);
    rc = rd_kafka_offsets_for_times(rk_, ends, to_ms(timeout));
    for (int p = 0; !rc && p < partitions_; ++p) {
      if (ends->elems[p].err) {
        rc = ends->elems[p].err;
        break;
      }
      result.emplace_back(committed->elems[p].offset, ends->elems[p].offset);
    }
    rd_kafka_topic_partition_list_destroy(ends);
  }
  rd_kafka_topic_partition_list_destroy(committed);
  if (rc)
    return kafka_error("group progress", rc);
  return result;
}

bool progress_reader::at_end(caf::timespan timeout) {
  auto p = read(timeout);
  return p && std::all_of(p->begin(), p->end(), [](auto& x) { return x.first == x.second; });
}

} // namespace troupe::kafka
