#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <string>

#include <caf/expected.hpp>

#include "runtime/core/log.hpp"

namespace troupe::kafka {
class producer;
} // namespace troupe::kafka

namespace troupe::cluster {

/// One operator command as a node saw it: who asked (the operator's name,
/// `shell/HOST:PID`), from where (its process's CAF node id), what, and
/// what came of it.
struct audit_entry {
  int64_t at_ms = 0;
  /// The node that executed or received it.
  std::string node;
  std::string who;
  std::string from;
  /// The command as text (`drain n2`, `scale ranker 3`, or the shell's
  /// command line).
  std::string command;
  /// `node`: the agent executed it; `shell`: the operator's shell reported
  /// a whole command it ran (commands that go to supervisors and routers,
  /// reads).
  std::string source = "node";
  bool ok = true;
  /// `ok`, or the error.
  std::string result = "ok";
};

/// The JSON record of an entry (the `audit` topic's value).
std::string to_json(const audit_entry& x);

/// Where a node's audit entries go: one structured log line each (`audit
/// who=... from=... command="..." result=...`, at warning so that every
/// level but `error` keeps it) and one record on the Kafka topic `topic`
/// (keyed by the node's name). The produce only queues: it never blocks
/// the caller (an actor); a record Kafka refuses is counted
/// (`troupe_audit_records_failed_total`) and its log line stays.
class audit_trail {
public:
  /// Without a bootstrap list (a node without Kafka), log lines only.
  static caf::expected<std::shared_ptr<audit_trail>>
  make(std::string node, const std::string& bootstrap, std::string topic, log_fn log);

  ~audit_trail();

  void record(audit_entry x);

  uint64_t recorded() const {
    return recorded_.load(std::memory_order_relaxed);
  }
  uint64_t failed() const {
    return failed_->load(std::memory_order_relaxed);
  }

private:
  audit_trail() = default;

  std::string node_;
  std::string topic_;
  log_fn log_;
  std::unique_ptr<kafka::producer> producer_;
  std::atomic<uint64_t> recorded_{0};
  std::shared_ptr<std::atomic<uint64_t>> failed_ = std::make_shared<std::atomic<uint64_t>>(0);
};

} // namespace troupe::cluster
