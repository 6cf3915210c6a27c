#include "runtime/cluster/audit.hpp"

#include <nlohmann/json.hpp>

#include "runtime/core/duration.hpp"
#include "runtime/core/error.hpp"
#include "runtime/kafka/client.hpp"

namespace troupe::cluster {

std::string to_json(const audit_entry& x) {
  nlohmann::json j{{"schema", 1},         {"at", x.at_ms},           {"node", x.node},
                   {"who", x.who},        {"from", x.from},          {"command", x.command},
                   {"source", x.source},  {"ok", x.ok},              {"result", x.result}};
  return j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
}

caf::expected<std::shared_ptr<audit_trail>>
audit_trail::make(std::string node, const std::string& bootstrap, std::string topic,
                  log_fn log) {
  std::shared_ptr<audit_trail> result{new audit_trail};
  result->node_ = std::move(node);
  result->topic_ = std::move(topic);
  result->log_ = std::move(log);
  if (!bootstrap.empty()) {
    auto conf = kafka::defaults(bootstrap);
    // An audit record is worth its write: every replica, once.
    conf["acks"] = "all";
    conf["enable.idempotence"] = "true";
    auto p = kafka::producer::make(conf);
    if (!p)
      return p.error();
    result->producer_ = std::move(*p);
  }
  return result;
}

audit_trail::~audit_trail() = default;

void audit_trail::record(audit_entry x) {
  if (x.at_ms == 0)
    x.at_ms = unix_ms();
  if (x.node.empty())
    x.node = node_;
  ++recorded_;
  auto quoted = nlohmann::json(x.command).dump(-1, ' ', false,
                                               nlohmann::json::error_handler_t::replace);
  // A warning: it shows at every level but `error`.
  log_.warning("audit who=" + x.who + " from=" + x.from + " source=" + x.source
               + " command=" + quoted + " result=" + (x.ok ? "ok" : "failed: " + x.result));
  if (!producer_)
    return;
  auto failed = failed_;
  auto log = log_;
  auto err = producer_->produce(topic_, node_, to_json(x), [failed, log](const caf::error& e) {
    if (e) {
      ++*failed;
      log.warning("audit record not written to Kafka: " + render(e));
    }
  });
  if (err) {
    ++*failed;
    log_.warning("audit record not written to Kafka: " + render(err));
  }
}

} // namespace troupe::cluster
