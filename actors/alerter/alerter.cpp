#include "actors/alerter/alerter.hpp"

#include <chrono>
#include <map>
#include <cstdio>
#include <memory>
#include <set>
#include <stdexcept>

#include <nlohmann/json.hpp>

#include "runtime/core/duration.hpp"
#include "runtime/core/error.hpp"
#include "runtime/kafka/client.hpp"
#include "runtime/redis/connection.hpp"

using namespace std::chrono_literals;

namespace troupe::alert {

namespace {

/// The claim script: `alert:{id}` is absent (never alerted), `sent`, or
/// `pending TOKEN LEASE_END_MS PARTITION FROM` (an attempt under way: it
/// produces to PARTITION, at an offset not below FROM, and may be taken
/// over once the lease ended). Answers `claimed`, `sent`, `busy` (another
/// attempt's lease runs), or `taken PARTITION FROM` (an earlier attempt's
/// lease ended with its outcome unknown: read PARTITION from FROM to see
/// whether its alert landed). Time is Redis's own, so every node agrees.
constexpr const char* claim_script = R"(
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local v = redis.call('GET', KEYS[1])
if v == 'sent' then return 'sent' end
local mine = 'pending ' .. ARGV[1] .. ' ' .. (now + tonumber(ARGV[2])) .. ' ' .. ARGV[3] .. ' ' .. ARGV[4]
local tok, lease, p, from
if v then
  tok, lease, p, from = string.match(v, '^pending (%S+) (%d+) (%-?%d+) (%-?%d+)$')
  if tok and tonumber(lease) > now then return 'busy' end
end
redis.call('SET', KEYS[1], mine, 'EX', ARGV[5])
if not v then return 'claimed' end
if tok then return 'taken ' .. p .. ' ' .. from end
return 'taken -1 -1'
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
  uint32_t h = 2166136261u;
  for (unsigned char c : id) {
    h ^= c;
    h *= 16777619u;
  }
  return static_cast<int32_t>(h % static_cast<uint32_t>(partitions));
}

/// What became of one alert sent.
enum send_status : int32_t { delivered = 0, not_persisted = 1, possibly_persisted = 2 };

/// A batch whose alerts Kafka has not answered for yet.
struct unconfirmed {
  answer_later answer;
  std::vector<std::string> ids;
  /// Per id, what the log says of its alert, and what became of it.
  std::vector<std::string> notes;
  std::vector<int32_t> status;
  size_t waiting = 0;
  uint64_t fresh = 0;
  /// Alerts whose earlier attempt was still under way: the batch fails
  /// once the rest is done, and its retry finds them settled.
  size_t busy = 0;
};

struct worker_state {
  caf::event_based_actor* self = nullptr;
  alerter_settings cfg;
  std::string token_prefix;
  std::unique_ptr<redis::connection> redis;
  std::unique_ptr<kafka::producer> producer;
  int32_t partitions = 0;
  /// Per partition of the topic, an offset at or below that of the next
  /// alert written there: where a later check for it starts reading.
  std::vector<int64_t> floor;
  std::map<uint64_t, unconfirmed> batches;
  uint64_t next_batch = 0;
  uint64_t confirmed_batches = 0;

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
    if (partitions == 0) {
      auto n = producer->partitions(cfg.topic, 5s);
      if (!n)
        return n.error();
      std::vector<int64_t> ends;
      for (int32_t p = 0; p < *n; ++p) {
        auto end = producer->end_offset(cfg.topic, p, 5s);
        if (!end)
          return end.error();
        ends.push_back(*end);
      }
      floor = std::move(ends);
      partitions = *n;
    }
    return caf::none;
  }

  kafka::settings producer_conf() const {
    auto conf = kafka::defaults(cfg.kafka);
    // Kafka answers for every alert within this (delivered, or failed and
    // then surely not written, or failed and possibly written), well
    // inside the claim's lease and the ingestor's stage timeout.
    conf["message.timeout.ms"] = std::to_string(cfg.delivery_timeout.count());
    // No blind resend: a request whose answer was lost comes back as
    // "possibly persisted", and the next attempt reads the partition
    // instead of writing the alert a second time.
    conf["message.send.max.retries"] = "0";
    // Alerts are few and waited for: send each at once.
    conf["linger.ms"] = "0";
    return conf;
  }

  /// Claims the ids of the scores over the threshold and produces their
  /// alerts; answers once Kafka answered for them all (`on_sent`), so the
  /// worker takes the next batch meanwhile.
  caf::result<uint64_t> on_batch(const std::vector<scored_transaction>& batch) {
    std::vector<const scored_transaction*> over;
    for (auto& s : batch)
      if (s.probability > cfg.threshold)
        over.push_back(&s);
    if (over.empty())
      return uint64_t{0};
    if (auto err = connect())
      return err;
    auto id = next_batch++;
    auto token = token_prefix + std::to_string(id);
    auto ttl = std::to_string(cfg.remember.count());
    auto lease = std::to_string(std::chrono::duration_cast<std::chrono::milliseconds>(cfg.lease).count());
    std::vector<std::vector<std::string>> cmds;
    for (auto s : over) {
      auto p = partition_of(s->item.tx.id, partitions);
      cmds.push_back({"EVAL", claim_script, "1", "alert:" + s->item.tx.id, token, lease,
                      std::to_string(p), std::to_string(floor[p]), ttl});
    }
    auto replies = redis->pipeline(cmds);
    if (!replies)
      return replies.error();
    std::vector<const scored_transaction*> to_send;
    std::vector<bool> is_fresh;
    // Earlier attempts whose outcome is unknown, by partition: read first.
    std::map<int32_t, std::pair<int64_t, std::set<std::string>>> check;
    std::map<std::string, const scored_transaction*> checked;
    size_t busy = 0;
    for (size_t i = 0; i < over.size(); ++i) {
      auto& r = (*replies)[i];
      if (r.kind == redis::reply::error)
        return caf::make_error(ec::io_failure, "alert claim failed: " + r.text);
      auto& state = r.text;
      if (state == "claimed") {
        to_send.push_back(over[i]);
        is_fresh.push_back(true);
      } else if (state == "busy") {
        ++busy;
      } else if (state.rfind("taken ", 0) == 0) {
        int32_t p = -1;
        long long from = -1;
        std::sscanf(state.c_str() + 6, "%d %lld", &p, &from);
        if (p < 0 || p >= partitions) {
          // A claim that does not say where its attempt wrote (or a topic
          // whose partitions changed): write the alert again.
          to_send.push_back(over[i]);
          is_fresh.push_back(false);
          continue;
        }
        auto& c = check[p];
        c.first = c.second.empty() ? from : std::min<int64_t>(c.first, from);
        c.second.insert(over[i]->item.tx.id);
        checked[over[i]->item.tx.id] = over[i];
      }
    }
    std::vector<std::string> landed;
    for (auto& [p, c] : check) {
      auto found = kafka::find_keys(kafka::defaults(cfg.kafka), cfg.topic, p, c.first, c.second,
                                    cfg.delivery_timeout);
      if (!found)
        return found.error(); // the claims stay taken: the retry reads again
      for (auto& key : c.second) {
        if (found->count(key) > 0) {
          landed.push_back(key);
          cfg.log.info("alert already written by an earlier attempt", key);
        } else {
          to_send.push_back(checked[key]);
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
                                               + " alerts have an earlier attempt under way");
      return uint64_t{0};
    }
    auto& b = batches[id];
    b.busy = busy;
    auto handle = caf::actor{self};
    for (auto s : to_send) {
      auto k = b.ids.size();
      auto p = partition_of(s->item.tx.id, partitions);
      auto err = producer->produce_to(
        cfg.topic, p, s->item.tx.id, alert_json(*s, cfg.threshold, cfg.node),
        [handle, id, k](const kafka::producer::delivery& d) {
          int32_t status = !d.error                ? delivered
                           : d.possibly_persisted ? possibly_persisted
                                                  : not_persisted;
          caf::anon_send(handle, alert_sent_atom::value, id, static_cast<uint64_t>(k), status,
                         d.partition, d.offset);
        });
      b.ids.push_back(s->item.tx.id);
      b.status.push_back(err ? not_persisted : -1);
      b.notes.push_back("alert: user " + s->item.tx.user + ", score "
                        + std::to_string(s->probability) + " over "
                        + std::to_string(cfg.threshold) + ", model " + s->model_version);
      if (!err) {
        ++b.waiting;
        if (is_fresh[k])
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

  void on_sent(uint64_t id, uint64_t k, int32_t status, int32_t partition, int64_t offset) {
    if (status == delivered && partition >= 0 && partition < partitions)
      floor[partition] = std::max(floor[partition], offset + 1);
    auto i = batches.find(id);
    if (i == batches.end() || k >= i->second.status.size())
      return;
    auto& b = i->second;
    b.status[k] = status;
    if (--b.waiting > 0)
      return;
    if (cfg.crash_after_confirm_every > 0
        && ++confirmed_batches % cfg.crash_after_confirm_every == 0)
      throw std::runtime_error("injected fault (crash_after_confirm_every "
                               + std::to_string(cfg.crash_after_confirm_every)
                               + "): Kafka confirmed the alerts, none marked sent");
    auto result = settle(id);
    if (!result)
      b.answer.deliver(result.error());
    else
      b.answer.deliver(*result);
    batches.erase(id);
  }

  /// Once Kafka answered for every alert of batch `id`: the delivered ones
  /// become `sent`; a failed one's claim is dropped (surely not written) or
  /// its lease ended (possibly written: the retry reads the partition).
  caf::expected<uint64_t> settle(uint64_t id) {
    auto i = batches.find(id);
    if (i == batches.end())
      return uint64_t{0};
    auto& b = i->second;
    std::vector<std::string> sent;
    std::vector<std::vector<std::string>> cmds;
    auto token = token_prefix + std::to_string(id);
    size_t failed = 0;
    for (size_t k = 0; k < b.ids.size(); ++k) {
      if (b.status[k] == delivered) {
        sent.push_back(b.ids[k]);
        continue;
      }
      ++failed;
      cmds.push_back({"EVAL", settle_script, "1", "alert:" + b.ids[k], token,
                      b.status[k] == possibly_persisted ? "end" : "drop"});
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
    for (size_t k = 0; k < ids.size(); ++k)
      if (status[k] == delivered)
        cfg.log.info(notes[k], ids[k]);
    if (failed > 0)
      return caf::make_error(ec::io_failure,
                             std::to_string(failed) + " alerts not confirmed by Kafka");
    if (busy > 0)
      return caf::make_error(ec::in_doubt,
                             std::to_string(busy) + " alerts have an earlier attempt under way");
    return fresh;
  }

  caf::error mark_sent(const std::vector<std::string>& ids) {
    if (auto err = connect())
      return err;
    auto ttl = std::to_string(cfg.remember.count());
    std::vector<std::vector<std::string>> sent;
    for (auto& id : ids)
      sent.push_back({"SET", "alert:" + id, "sent", "EX", ttl});
    auto marked = redis->pipeline(sent);
    return marked ? caf::none : marked.error();
  }
};

} // namespace

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
  return j.dump();
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
        return st->on_batch(batch);
      },
      [st](alert_sent_atom, uint64_t id, uint64_t k, int32_t status, int32_t partition,
           int64_t offset) { st->on_sent(id, k, status, partition, offset); },
    };
  };
  return g;
}

} // namespace troupe::alert
