#include "actors/alerter/alerter.hpp"

#include <chrono>
#include <map>
#include <memory>

#include <nlohmann/json.hpp>

#include "runtime/core/duration.hpp"
#include "runtime/core/error.hpp"
#include "runtime/kafka/client.hpp"
#include "runtime/redis/connection.hpp"

using namespace std::chrono_literals;

namespace troupe::alert {

namespace {

/// A batch whose alerts Kafka has not confirmed yet.
struct unconfirmed {
  answer_later answer;
  std::vector<std::string> ids;
  /// Per id, what the log says of its alert.
  std::vector<std::string> notes;
  size_t waiting = 0;
  size_t failed = 0;
  uint64_t fresh = 0;
};

struct worker_state {
  caf::event_based_actor* self = nullptr;
  alerter_settings cfg;
  std::unique_ptr<redis::connection> redis;
  std::unique_ptr<kafka::producer> producer;
  std::map<uint64_t, unconfirmed> batches;
  uint64_t next_batch = 0;

  caf::error connect() {
    if (!redis || !redis->alive()) {
      redis.reset();
      auto c = redis::connection::make(cfg.redis, 500ms, "alerter");
      if (!c)
        return c.error();
      redis = std::move(*c);
    }
    if (!producer) {
      auto conf = kafka::defaults(cfg.kafka);
      // A batch whose alerts Kafka cannot take fails within this, and the
      // ingestor sends it again (its stage timeout is longer).
      conf["message.timeout.ms"] = "10000";
      // Alerts are few (one transaction in 60 here) and waited for: send
      // each at once instead of lingering for a batch.
      conf["linger.ms"] = "0";
      auto p = kafka::producer::make(conf);
      if (!p)
        return p.error();
      producer = std::move(*p);
    }
    return caf::none;
  }

  /// Claims the ids of the scores over the threshold and produces their
  /// alerts; answers once Kafka confirmed them all (`on_sent`), so the
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
    auto ttl = std::to_string(cfg.remember.count());
    // Claim each id; read the state of those claimed before.
    std::vector<std::vector<std::string>> cmds;
    for (auto s : over)
      cmds.push_back({"SET", "alert:" + s->item.tx.id, "pending", "NX", "EX", ttl});
    for (auto s : over)
      cmds.push_back({"GET", "alert:" + s->item.tx.id});
    auto replies = redis->pipeline(cmds);
    if (!replies)
      return replies.error();
    std::vector<const scored_transaction*> to_send;
    uint64_t fresh = 0;
    for (size_t i = 0; i < over.size(); ++i) {
      auto claimed = (*replies)[i].kind == redis::reply::status;
      auto state = (*replies)[over.size() + i].text;
      if (claimed) {
        ++fresh;
        to_send.push_back(over[i]);
      } else if (state == "pending") {
        to_send.push_back(over[i]); // an earlier attempt died before Kafka confirmed
      }
    }
    if (to_send.empty())
      return uint64_t{0};
    auto id = next_batch++;
    auto& b = batches[id];
    b.fresh = fresh;
    auto handle = caf::actor{self};
    for (auto s : to_send) {
      auto err = producer->produce(cfg.topic, s->item.tx.id,
                                   alert_json(*s, cfg.threshold, cfg.node),
                                   [handle, id](const caf::error& e) {
                                     caf::anon_send(handle, alert_sent_atom::value, id, !e);
                                   });
      if (err) {
        // Those already queued still report; the batch fails when they did.
        ++b.failed;
        break;
      }
      b.ids.push_back(s->item.tx.id);
      b.notes.push_back("alert: user " + s->item.tx.user + ", score "
                        + std::to_string(s->probability) + " over "
                        + std::to_string(cfg.threshold) + ", model " + s->model_version);
      ++b.waiting;
    }
    if (b.waiting == 0) {
      batches.erase(id);
      return caf::make_error(ec::io_failure, "Kafka refused the alerts");
    }
    b.answer = answer_later::take(self);
    return caf::delegated<uint64_t>{};
  }

  void on_sent(uint64_t id, bool ok) {
    auto i = batches.find(id);
    if (i == batches.end())
      return;
    auto& b = i->second;
    if (!ok)
      ++b.failed;
    if (--b.waiting > 0)
      return;
    if (b.failed > 0) {
      // The claims stay `pending`: the retry produces these alerts again.
      b.answer.deliver(caf::make_error(ec::io_failure, std::to_string(b.failed)
                                                               + " alerts not confirmed by Kafka"));
    } else if (auto err = mark_sent(b.ids)) {
      b.answer.deliver(err);
    } else {
      for (size_t k = 0; k < b.ids.size(); ++k)
        cfg.log.info(b.notes[k], b.ids[k]);
      b.answer.deliver(b.fresh);
    }
    batches.erase(i);
  }

  caf::error mark_sent(const std::vector<std::string>& ids) {
    if (auto err = connect())
      return err;
    auto ttl = std::to_string(cfg.remember.count());
    std::vector<std::vector<std::string>> sent;
    for (auto& id : ids)
      sent.push_back({"SET", "alert:" + id, "sent", "XX", "EX", ttl});
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
  g.worker = [cfg](caf::event_based_actor* self, size_t) -> caf::behavior {
    auto st = std::make_shared<worker_state>();
    st->self = self;
    st->cfg = cfg;
    // Connect now, so the first alert does not wait for it (a failure here
    // is tried again by the first batch that needs the connection).
    st->connect();
    return {
      [st](alert_atom, std::vector<scored_transaction>& batch) -> caf::result<uint64_t> {
        return st->on_batch(batch);
      },
      [st](alert_sent_atom, uint64_t id, bool ok) { st->on_sent(id, ok); },
    };
  };
  return g;
}

} // namespace troupe::alert
