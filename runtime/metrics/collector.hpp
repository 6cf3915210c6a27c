#pragma once

#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include <caf/actor.hpp>
#include <caf/actor_system.hpp>
#include <caf/timespan.hpp>

#include "runtime/core/log.hpp"
#include "runtime/metrics/prometheus.hpp"
#include "runtime/node/node.hpp"

namespace troupe::metrics {

/// The latest rendered exposition, shared between the collector (writer)
/// and the HTTP server's threads (readers). Never blocks a reader for
/// longer than a pointer copy.
class snapshot {
public:
  std::shared_ptr<const std::string> get() const {
    std::lock_guard<std::mutex> guard{mtx_};
    return text_;
  }
  void set(std::shared_ptr<const std::string> text) {
    std::lock_guard<std::mutex> guard{mtx_};
    text_ = std::move(text);
  }

private:
  mutable std::mutex mtx_;
  std::shared_ptr<const std::string> text_ = std::make_shared<const std::string>();
};

/// What a node's collector reads.
struct collector_settings {
  std::string node;
  /// The routers of the groups this node hosts (names starting with `@` are
  /// node services, not groups, and are skipped).
  std::shared_ptr<group_directory> directory;
  /// The node agent, for the members it sees (invalid: no cluster).
  caf::actor agent;
  /// How often the figures are gathered and rendered.
  caf::timespan interval = std::chrono::seconds(1);
  /// How long one group may take to answer before its figures are left out
  /// of a round.
  caf::timespan ask_timeout = std::chrono::milliseconds(500);
  /// Adds the node's own figures (the gateway's, the HTTP server's) to each
  /// rendering; called on the collector's thread.
  std::function<void(exposition&)> extra;
  /// The node's own supervisors (root, groups, routers, services): their
  /// children's restarts and their recent crashes (empty: none).
  std::function<std::vector<std::pair<std::string, caf::actor>>()> node_supervisors;
  /// The node's logger, for its lines per level (null: none).
  std::shared_ptr<logger> log;
  /// Also renders the process's registry (Kafka consumer lag, Redis errors).
  bool with_registry = true;
};

/// Spawns a node's metrics collector: every `interval` it asks each local
/// group router for its status (counters, latency histogram) and its
/// supervisor for its recent crashes, asks the agent for the members, and
/// renders the Prometheus text into `out`, which `/metrics` serves. Scrapes
/// never wait on actors: they read the last rendering (at most `interval`
/// old).
caf::actor spawn_collector(caf::actor_system& sys, collector_settings settings,
                           std::shared_ptr<snapshot> out);

} // namespace troupe::metrics
