#include "actors/alerter/alerter.hpp"

#include <chrono>
#include <memory>

#include <nlohmann/json.hpp>

#include "runtime/core/error.hpp"
#include "runtime/kafka/client.hpp"
#include "runtime/redis/connection.hpp"

using namespace std::chrono_literals;

namespace troupe::alert {

namespace {

struct worker_state {
  std::unique_ptr<redis::connection> redis;
  std::unique_ptr<kafka::producer> producer;
};

int64_t now_ms() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
           std::chrono::system_clock::now().time_since_epoch())
    .count();
}

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
    {"raised_at", now_ms()},
    {"node", node}};
  return j.dump();
}

group_spec make_group(const std::string& name, size_t instances, alerter_settings cfg) {
  group_spec g;
  g.name = name;
  g.instances = instances;
  g.detached = true;
  g.worker = [cfg](caf::event_based_actor*, size_t) -> caf::behavior {
    auto st = std::make_shared<worker_state>();
    return {
      [st, cfg](alert_atom, std::vector<scored_transaction>& batch) -> caf::result<uint64_t> {
        std::vector<const scored_transaction*> over;
        for (auto& s : batch)
          if (s.probability > cfg.threshold)
            over.push_back(&s);
        if (over.empty())
          return uint64_t{0};
        if (!st->redis || !st->redis->alive()) {
          auto c = redis::connection::make(cfg.redis, 500ms);
          if (!c)
            return c.error();
          st->redis = std::move(*c);
        }
        if (!st->producer) {
          auto p = kafka::producer::make(kafka::defaults(cfg.kafka));
          if (!p)
            return p.error();
          st->producer = std::move(*p);
        }
        auto ttl = std::to_string(cfg.remember.count());
        // Claim each id; read the state of those claimed before.
        std::vector<std::vector<std::string>> cmds;
        for (auto s : over)
          cmds.push_back({"SET", "alert:" + s->item.tx.id, "pending", "NX", "EX", ttl});
        for (auto s : over)
          cmds.push_back({"GET", "alert:" + s->item.tx.id});
        auto replies = st->redis->pipeline(cmds);
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
        auto failures = std::make_shared<std::atomic<int>>(0);
        for (auto s : to_send) {
          auto err = st->producer->produce(cfg.topic, s->item.tx.id,
                                           alert_json(*s, cfg.threshold, cfg.node),
                                           [failures](const caf::error& e) {
                                             if (e)
                                               ++*failures;
                                           });
          if (err)
            return err;
        }
        if (auto err = st->producer->flush(5s))
          return err;
        if (*failures > 0)
          return caf::make_error(ec::invalid_argument, std::to_string(failures->load())
                                                         + " alerts not confirmed by Kafka");
        std::vector<std::vector<std::string>> sent;
        for (auto s : to_send)
          sent.push_back({"SET", "alert:" + s->item.tx.id, "sent", "XX", "EX", ttl});
        auto marked = st->redis->pipeline(sent);
        if (!marked)
          return marked.error();
        return fresh;
      },
    };
  };
  return g;
}

} // namespace troupe::alert
