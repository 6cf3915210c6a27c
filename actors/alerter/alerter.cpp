#include "actors/alerter/alerter.hpp"

#include <algorithm>
#include <chrono>
#include <map>
#include <type_traits>
#include <cstdio>
#include <memory>
#include <set>
#include <stdexcept>

#include <nlohmann/json.hpp>

#include "runtime/core/duration.hpp"
#include "runtime/core/error.hpp"
#include "runtime/core/hash.hpp"
#include "runtime/core/json_text.hpp"
#include "runtime/kafka/client.hpp"
#include "runtime/redis/connection.hpp"

using namespace std::chrono_literals;

namespace troupe::alert {

namespace {

/// The claim script, for every record of a batch in one call: `KEYS[i]`
/// (the claim of record i) is absent (never written), `sent`, or `pending
/// TOKEN LEASE_END_MS PARTITION FROM` (an attempt under way: it produces to
/// PARTITION, at an offset not below FROM, and may be taken over once the
/// lease ended). ARGV[1] is this attempt's token, ARGV[2] the lease in ms,
/// then three per record: its PARTITION, FROM and the claim's TTL in
/// seconds. Answers, per record, `claimed`, `sent`, `busy` (another
/// attempt's lease runs), or `taken PARTITION FROM` (an earlier attempt's
/// lease ended with its outcome unknown: read PARTITION from FROM to see
/// whether its record landed). Time is Redis's own, so every node agrees.
/// One call per batch, not one per record: a batch of 100 costs Redis one
/// script run instead of 100 (the script is atomic as a whole, which no
/// record's answer depends on).
constexpr const char* claim_script = R"(
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local lease_end = now + tonumber(ARGV[2])
local out = {}
for i, key in ipairs(KEYS) do
  local a = 3 * i
  local v = redis.call('GET', key)
  local answer
  if v == 'sent' then
    answer = 'sent'
  else
    local tok, lease, p, from
    if v then
      tok, lease, p, from = string.match(v, '^pending (%S+) (%d+) (%-?%d+) (%-?%d+)$')
    end
    if tok and tonumber(lease) > now then
      answer = 'busy'
    else
      redis.call('SET', key, 'pending ' .. ARGV[1] .. ' ' .. lease_end .. ' ' .. ARGV[a] .. ' ' .. ARGV[a + 1], 'EX', ARGV[a + 2])
      if not v then
        answer = 'claimed'
      elseif tok then
        answer = 'taken ' .. p .. ' ' .. from
      else
        answer = 'taken -1 -1'
      end
    end
  end
  out[i] = answer
end
return out
)";

/// Ends this attempt's lease at once, or drops its claim, if the claim is
/// still its own: ARGV[1] token, ARGV[2] `drop` (the alert surely did not
/// land: the next attempt claims afresh) or `end` (it may have: the next
/// attempt reads the partition first).
constexpr const char* settle_script = R"(
local v = redis.call('GET', KEYS[1])
if not v then return 0 end
local tok, lease, p, from = string.match(v, '^pending (%S+) (%d+) (%-?%d+) (%-?%d+)$')
if tok ~= ARGV[1] then return 0 end
if ARGV[2] == 'drop' then redis.call('DEL', KEYS[1]) return 1 end
redis.call('SET', KEYS[1], 'pending ' .. tok .. ' 0 ' .. p .. ' ' .. from, 'KEEPTTL')
return 1
)";

/// The partition of `fraud-alerts` an alert goes to: FNV-1a of its
/// transaction id, so every attempt at one alert writes the same partition.
int32_t partition_of(const std::string& id, int32_t partitions) {
  return static_cast<int32_t>(fnv1a_32(id) % static_cast<uint32_t>(partitions));
}

/// What became of one record sent.
enum send_status : int32_t { delivered = 0, not_persisted = 1, possibly_persisted = 2 };

/// A topic written exactly once per transaction id: the alerts (records for
/// the scores over the threshold), and the scored-event log (a record for
/// every score). Each record is claimed in Redis under `prefix + id`.
struct sink {
  std::string topic;
  std::string prefix;
  /// How long a claim marked sent is kept (`remember`, `scores_remember`).
  std::string ttl;
  int32_t partitions = 0;
  /// Per partition, an offset at or below that of the next record written
  /// there: where a later check for it starts reading.
  std::vector<int64_t> floor;
};

constexpr size_t alerts = 0;
constexpr size_t scores = 1;

/// One record of a batch: which sink, for which score, and its key (the
/// Kafka record's, and its claim's after the sink's prefix): the
/// transaction id.
struct record {
  size_t sink = alerts;
  const scored_transaction* s = nullptr;
  std::string key;
};

/// A batch whose records Kafka has not answered for yet.
struct unconfirmed {
  answer_later answer;
  std::vector<std::string> ids;
  std::vector<size_t> sinks;
  /// Per record, what the log says of it (alerts only), and what became of it.
  std::vector<std::string> notes;
  std::vector<int32_t> status;
  size_t waiting = 0;
  /// New alerts (the batch's answer).
  uint64_t fresh = 0;
  /// Records whose earlier attempt was still under way: the batch fails
  /// once the rest is done, and its retry finds them settled.
  size_t busy = 0;
  /// The batch's traced transactions and when it came: their alert spans
  /// end when the batch is answered.
  std::vector<std::pair<trace::context, std::string>> traced;
  int64_t started = 0;
};

struct worker_state {
  caf::event_based_actor* self = nullptr;
  alerter_settings cfg;
  std::string token_prefix;
  std::unique_ptr<redis::connection> redis;
  std::unique_ptr<kafka::producer> producer;
  std::vector<sink> sinks;
  std::map<uint64_t, unconfirmed> batches;
  uint64_t next_batch = 0;
  uint64_t confirmed_batches = 0;
  /// Said once: an alert came without its top features.
  bool warned_unexplained = false;
  uint32_t place = 0;

  /// The alert spans of `xs` (pairs of context and id, or scores).
  template <class Range>
  void spans(int64_t started, const Range& xs, const caf::error& err) {
    if (!cfg.probe)
      return;
    auto text = err ? render(err) : std::string{};
    cfg.probe.to->stage(place, "alert", started, xs,
                        [](const auto& x) {
                          if constexpr (std::is_same_v<std::decay_t<decltype(x)>,
                                                       scored_transaction>)
                            return std::make_pair(&x.item.tx.trace, &x.item.tx.id);
                          else
                            return std::make_pair(&x.first, &x.second);
                        },
                        text);
  }

  void init() {
    sinks.resize(2);
    sinks[alerts].topic = cfg.topic;
    sinks[alerts].prefix = "alert:";
    sinks[alerts].ttl = std::to_string(cfg.remember.count());
    sinks[scores].topic = cfg.scores_topic;
    sinks[scores].prefix = "scored:";
    sinks[scores].ttl = std::to_string(cfg.scores_remember.count());
  }

  caf::error connect() {
    if (!redis || !redis->alive()) {
      redis.reset();
      auto c = redis::connection::make(cfg.redis, 500ms, "alerter");
      if (!c)
        return c.error();
      redis = std::move(*c);
    }
    if (!producer) {
      auto p = kafka::producer::make(producer_conf());
      if (!p)
        return p.error();
      producer = std::move(*p);
    }
    for (auto& k : sinks) {
      if (k.partitions != 0 || k.topic.empty())
        continue;
      auto n = producer->partitions(k.topic, 5s);
      if (!n)
        return n.error();
      std::vector<int64_t> ends;
      for (int32_t p = 0; p < *n; ++p) {
        auto end = producer->end_offset(k.topic, p, 5s);
        if (!end)
          return end.error();
        ends.push_back(*end);
      }
      k.floor = std::move(ends);
      k.partitions = *n;
    }
    return caf::none;
  }

  kafka::settings producer_conf() const {
    auto conf = kafka::defaults(cfg.kafka);
    // Kafka answers for every record within this (delivered, or failed and
    // then surely not written, or failed and possibly written), well
    // inside the claim's lease and the ingestor's stage timeout.
    conf["message.timeout.ms"] = std::to_string(cfg.delivery_timeout.count());
    // No blind resend: a request whose answer was lost comes back as
    // "possibly persisted", and the next attempt reads the partition
    // instead of writing the record a second time.
    conf["message.send.max.retries"] = "0";
    // A batch's records are queued together and waited for: send at once.
    conf["linger.ms"] = "0";
    return conf;
  }

  /// Claims the batch's records (an alert for each score over the
  /// threshold, a scored event for each score) and produces them; answers
  /// once Kafka answered for them all (`on_sent`), so the worker takes the
  /// next batch meanwhile.
  caf::result<uint64_t> on_batch(const std::vector<scored_transaction>& batch) {
    std::vector<record> records;
    for (auto& s : batch)
      if (s.probability > cfg.threshold) {
        records.push_back({alerts, &s, s.item.tx.id});
        if (s.top_features.empty() && !warned_unexplained) {
          warned_unexplained = true;
          cfg.log.warning("alert " + s.item.tx.id + " has no top features: the fraud-detector's "
                            "explain_above is over this alerter's threshold "
                            + std::to_string(cfg.threshold),
                          s.item.tx.id);
        }
      }
    // A score with degraded features is not logged: the transaction is
    // scored again once the feature store is back, and that score is. So
    // the log needs Redis only when the store (the same Redis) is back, and
    // batches scored degraded without an alert go on while it is away.
    if (!cfg.scores_topic.empty())
      for (auto& s : batch)
        if (!s.item.degraded)
          records.push_back({scores, &s, s.item.tx.id});
    if (records.empty())
      return uint64_t{0};
    if (auto err = connect())
      return err;
    auto id = next_batch++;
    auto token = token_prefix + std::to_string(id);
    std::vector<claim_request> claims;
    claims.reserve(records.size());
    for (auto& r : records) {
      auto& k = sinks[r.sink];
      auto p = partition_of(r.key, k.partitions);
      claims.push_back({k.prefix + r.key, p, k.floor[p], k.ttl});
    }
    auto replies = claim_records(*redis, token, cfg.lease, claims);
    if (!replies)
      return replies.error();
    std::vector<record> to_send;
    std::vector<bool> is_fresh;
    // Earlier attempts whose outcome is unknown, by sink and partition:
    // read first.
    std::map<std::pair<size_t, int32_t>, std::pair<int64_t, std::set<std::string>>> check;
    std::map<std::pair<size_t, std::string>, record> checked;
    size_t busy = 0;
    for (size_t i = 0; i < records.size(); ++i) {
      auto& k = sinks[records[i].sink];
      auto& state = (*replies)[i];
      if (state == "claimed") {
        to_send.push_back(records[i]);
        is_fresh.push_back(true);
      } else if (state == "busy") {
        ++busy;
      } else if (state.rfind("taken ", 0) == 0) {
        int32_t p = -1;
        long long from = -1;
        std::sscanf(state.c_str() + 6, "%d %lld", &p, &from);
        if (p < 0 || p >= k.partitions) {
          // A claim that does not say where its attempt wrote (or a topic
          // whose partitions changed): write the record again.
          to_send.push_back(records[i]);
          is_fresh.push_back(false);
          continue;
        }
        auto& c = check[{records[i].sink, p}];
        auto& key = records[i].key;
        c.first = c.second.empty() ? from : std::min<int64_t>(c.first, from);
        c.second.insert(key);
        checked[{records[i].sink, key}] = records[i];
      }
    }
    std::vector<std::pair<std::string, size_t>> landed;
    for (auto& [where, c] : check) {
      auto& k = sinks[where.first];
      auto found = kafka::find_keys(kafka::defaults(cfg.kafka), k.topic, where.second, c.first,
                                    c.second, cfg.delivery_timeout);
      if (!found)
        return found.error(); // the claims stay taken: the retry reads again
      for (auto& key : c.second) {
        if (found->count(key) > 0) {
          landed.emplace_back(k.prefix + key, where.first);
          if (where.first == alerts)
            cfg.log.info("alert already written by an earlier attempt", key);
        } else {
          to_send.push_back(checked[{where.first, key}]);
          is_fresh.push_back(false);
        }
      }
    }
    if (!landed.empty())
      if (auto err = mark_sent(landed))
        return err;
    if (to_send.empty()) {
      if (busy > 0)
        return caf::make_error(ec::in_doubt, std::to_string(busy)
                                               + " records have an earlier attempt under way");
      return uint64_t{0};
    }
    auto& b = batches[id];
    b.busy = busy;
    auto handle = caf::actor{self};
    auto now = unix_ms();
    // Every record rendered first, then all queued in one tight loop: with
    // `linger.ms=0` the producer's thread sends what is queued when it
    // wakes, so records queued one per rendering would go out as many
    // small requests (each one a request for the broker, a fetch for every
    // reader, and a delivery report round) instead of a few large ones.
    std::vector<std::string> payloads;
    payloads.reserve(to_send.size());
    for (auto& r : to_send)
      payloads.push_back(r.sink == alerts ? alert_json(*r.s, cfg.threshold, cfg.node)
                                          : scored_json(*r.s, cfg.threshold, cfg.node, now));
    for (size_t i = 0; i < to_send.size(); ++i) {
      auto& r = to_send[i];
      auto& k = sinks[r.sink];
      auto n = b.ids.size();
      auto p = partition_of(r.key, k.partitions);
      auto err = producer->produce_to(
        k.topic, p, r.key, payloads[i],
        [handle, id, n](const kafka::producer::delivery& d) {
          int32_t status = !d.error                ? delivered
                           : d.possibly_persisted ? possibly_persisted
                                                  : not_persisted;
          caf::anon_send(handle, alert_sent_atom::value, id, static_cast<uint64_t>(n), status,
                         d.partition, d.offset);
        });
      b.ids.push_back(r.key);
      b.sinks.push_back(r.sink);
      b.status.push_back(err ? not_persisted : -1);
      b.notes.push_back(r.sink != alerts ? std::string{}
                                         : "alert: user " + r.s->item.tx.user + ", score "
                                             + std::to_string(r.s->probability) + " over "
                                             + std::to_string(cfg.threshold) + ", model "
                                             + r.s->model_version);
      if (!err) {
        ++b.waiting;
        if (is_fresh[i] && r.sink == alerts)
          ++b.fresh;
      }
    }
    if (b.waiting == 0) {
      auto result = settle(id);
      batches.erase(id);
      if (!result)
        return result.error();
      return *result;
    }
    b.answer = answer_later::take(self);
    return caf::delegated<uint64_t>{};
  }

  void on_sent(uint64_t id, uint64_t n, int32_t status, int32_t partition, int64_t offset) {
    auto i = batches.find(id);
    if (i == batches.end() || n >= i->second.status.size())
      return;
    auto& b = i->second;
    auto& k = sinks[b.sinks[n]];
    if (status == delivered && partition >= 0 && partition < k.partitions)
      k.floor[partition] = std::max(k.floor[partition], offset + 1);
    b.status[n] = status;
    if (--b.waiting > 0)
      return;
    auto with_alerts = std::find(b.sinks.begin(), b.sinks.end(), alerts) != b.sinks.end();
    if (cfg.crash_after_confirm_every > 0 && with_alerts
        && ++confirmed_batches % cfg.crash_after_confirm_every == 0)
      throw std::runtime_error("injected fault (crash_after_confirm_every "
                               + std::to_string(cfg.crash_after_confirm_every)
                               + "): Kafka confirmed the batch's records, none marked sent");
    auto result = settle(id);
    if (!result)
      b.answer.deliver(result.error());
    else
      b.answer.deliver(*result);
    spans(b.started, b.traced, result ? caf::error{} : result.error());
    batches.erase(id);
  }

  /// Once Kafka answered for every record of batch `id`: the delivered ones
  /// become `sent`; a failed one's claim is dropped (surely not written) or
  /// its lease ended (possibly written: the retry reads the partition).
  caf::expected<uint64_t> settle(uint64_t id) {
    auto i = batches.find(id);
    if (i == batches.end())
      return uint64_t{0};
    auto& b = i->second;
    std::vector<std::pair<std::string, size_t>> sent;
    std::vector<std::vector<std::string>> cmds;
    auto token = token_prefix + std::to_string(id);
    size_t failed = 0;
    for (size_t n = 0; n < b.ids.size(); ++n) {
      auto key = sinks[b.sinks[n]].prefix + b.ids[n];
      if (b.status[n] == delivered) {
        sent.emplace_back(std::move(key), b.sinks[n]);
        continue;
      }
      ++failed;
      cmds.push_back({"EVAL", settle_script, "1", std::move(key), token,
                      b.status[n] == possibly_persisted ? "end" : "drop"});
    }
    auto fresh = b.fresh;
    auto busy = b.busy;
    auto ids = b.ids;
    auto notes = b.notes;
    auto status = b.status;
    if (!cmds.empty()) {
      // Best effort: a claim left as it is ends with its lease.
      if (connect() == caf::none)
        redis->pipeline(cmds);
    }
    if (!sent.empty())
      if (auto err = mark_sent(sent))
        return err;
    for (size_t n = 0; n < ids.size(); ++n)
      if (status[n] == delivered && !notes[n].empty())
        cfg.log.info(notes[n], ids[n]);
    if (failed > 0)
      return caf::make_error(ec::io_failure,
                             std::to_string(failed) + " records not confirmed by Kafka");
    if (busy > 0)
      return caf::make_error(ec::in_doubt,
                             std::to_string(busy) + " records have an earlier attempt under way");
    return fresh;
  }

  /// Marks claims (`alert:ID`, `scored:ID`, with their sinks) sent.
  caf::error mark_sent(const std::vector<std::pair<std::string, size_t>>& keys) {
    if (auto err = connect())
      return err;
    std::vector<std::vector<std::string>> sent;
    for (auto& [key, k] : keys)
      sent.push_back({"SET", key, "sent", "EX", sinks[k].ttl});
    auto marked = redis->pipeline(sent);
    return marked ? caf::none : marked.error();
  }
};

} // namespace

caf::expected<std::vector<std::string>>
claim_records(redis::connection& redis, const std::string& token, std::chrono::milliseconds lease,
              const std::vector<claim_request>& records) {
  if (records.empty())
    return std::vector<std::string>{};
  std::vector<std::string> args{"EVAL", claim_script, std::to_string(records.size())};
  args.reserve(5 + 4 * records.size());
  for (auto& r : records)
    args.push_back(r.key);
  args.push_back(token);
  args.push_back(std::to_string(lease.count()));
  for (auto& r : records) {
    args.push_back(std::to_string(r.partition));
    args.push_back(std::to_string(r.from));
    args.push_back(r.ttl);
  }
  auto reply = redis.command(args);
  if (!reply)
    return reply.error();
  if (reply->kind != redis::reply::array || reply->elements.size() != records.size())
    return caf::make_error(ec::io_failure,
                           "the claim of " + std::to_string(records.size()) + " records failed: "
                             + (reply->kind == redis::reply::error ? reply->text
                                                                   : std::string{"unexpected reply"}));
  std::vector<std::string> states;
  states.reserve(records.size());
  for (auto& e : reply->elements) {
    if (e.kind != redis::reply::string)
      return caf::make_error(ec::io_failure, "the claim answered a record with: " + e.text);
    states.push_back(std::move(e.text));
  }
  return states;
}

std::string alert_json(const scored_transaction& s, double threshold, const std::string& node) {
  auto& tx = s.item.tx;
  nlohmann::json top = nlohmann::json::array();
  for (size_t i = 0; i < s.top_features.size(); ++i)
    top.push_back({{"feature", s.top_features[i]}, {"contribution", s.top_contributions[i]}});
  nlohmann::json j{
    {"schema", 1},
    {"transaction",
     {{"id", tx.id}, {"user", tx.user}, {"amount", tx.amount}, {"currency", tx.currency},
      {"merchant", tx.merchant}, {"category", tx.category}, {"country", tx.country},
      {"device", tx.device}, {"timestamp", tx.timestamp}}},
    {"score", s.probability},
    {"model", s.model_version},
    {"threshold", threshold},
    {"top_features", top},
    {"degraded", s.item.degraded},
    {"raised_at", unix_ms()},
    {"node", node}};
  if (tx.trace.valid())
    j["trace"] = trace::trace_hex(tx.trace.trace_hi, tx.trace.trace_lo);
  return j.dump();
}

std::string scored_json(const scored_transaction& s, double threshold, const std::string& node,
                        int64_t scored_at) {
  // Written straight to text, one record per transaction: the keys in the
  // order nlohmann::json writes them (sorted), the values as it would.
  auto& tx = s.item.tx;
  std::string out;
  out.reserve(320 + 24 * s.item.features.size());
  out += s.probability > threshold ? "{\"alert\":true" : "{\"alert\":false";
  out += s.item.degraded ? ",\"degraded\":true" : ",\"degraded\":false";
  out += ",\"features\":[";
  for (size_t i = 0; i < s.item.features.size(); ++i) {
    if (i > 0)
      out += ',';
    append_json_number(out, static_cast<double>(s.item.features[i]));
  }
  out += "],\"model\":";
  append_json_string(out, s.model_version);
  out += ",\"node\":";
  append_json_string(out, node);
  out += ",\"schema\":1,\"score\":";
  append_json_number(out, static_cast<double>(s.probability));
  out += ",\"scored_at\":";
  append_json_number(out, scored_at);
  if (!s.shadow_version.empty()) {
    out += s.shadow_probability > threshold ? ",\"shadow\":{\"alert\":true"
                                            : ",\"shadow\":{\"alert\":false";
    out += ",\"model\":";
    append_json_string(out, s.shadow_version);
    out += ",\"score\":";
    append_json_number(out, static_cast<double>(s.shadow_probability));
    out += '}';
  }
  out += ",\"timestamp\":";
  append_json_number(out, tx.timestamp);
  if (tx.trace.valid()) {
    out += ",\"trace\":";
    append_json_string(out, trace::trace_hex(tx.trace.trace_hi, tx.trace.trace_lo));
  }
  out += ",\"transaction\":";
  append_json_string(out, tx.id);
  out += ",\"user\":";
  append_json_string(out, tx.user);
  out += '}';
  return out;
}

group_spec make_group(const std::string& name, size_t instances, alerter_settings cfg) {
  group_spec g;
  g.name = name;
  g.instances = instances;
  g.detached = true;
  g.worker = [cfg](caf::event_based_actor* self, size_t index) -> caf::behavior {
    auto st = std::make_shared<worker_state>();
    st->self = self;
    st->cfg = cfg;
    st->init();
    st->place = cfg.probe.place(cfg.log.group(), index);
    // Unique per worker incarnation: a restarted worker never mistakes an
    // earlier incarnation's claim for its own.
    st->token_prefix = cfg.node + "/" + std::to_string(index) + "/"
                       + std::to_string(std::chrono::steady_clock::now().time_since_epoch().count())
                       + "/";
    // Connect now, so the first alert does not wait for it (a failure here
    // is tried again by the first batch that needs the connection).
    st->connect();
    return {
      [st](alert_atom, std::vector<scored_transaction>& batch) -> caf::result<uint64_t> {
        auto started = trace::unix_ns();
        auto before = st->next_batch;
        auto r = st->on_batch(batch);
        if (st->cfg.probe) {
          if (r.flag == caf::rt_delegated && st->next_batch != before) {
            // Answered once Kafka answered: the spans end then.
            auto& b = st->batches[st->next_batch - 1];
            b.started = started;
            for (auto& s : batch)
              if (s.item.tx.trace.valid())
                b.traced.emplace_back(s.item.tx.trace, s.item.tx.id);
          } else {
            st->spans(started, batch, r.flag == caf::rt_error ? r.err : caf::error{});
          }
        }
        return r;
      },
      [st](alert_sent_atom, uint64_t id, uint64_t k, int32_t status, int32_t partition,
           int64_t offset) { st->on_sent(id, k, status, partition, offset); },
    };
  };
  return g;
}

} // namespace troupe::alert
